"""lucidrec: recommendations that explain themselves, powered by a language model."""

from lucidrec.baselines import ALS, EASE, ItemKNN, MostPopular
from lucidrec.data import Dataset, ItemSchema, ItemTextBuilder, from_dataframes, load_dataset, load_movielens_100k
from lucidrec.errors import (ConfigError, DataError, DependencyError, LucidrecError, ModelError,
                             UnknownIdError)
from lucidrec.splits import Split, kfold, split

__version__ = "0.1.0"

__all__ = ["ALS", "EASE", "ConfigError", "DataError", "Dataset", "DependencyError", "ItemKNN", "ItemSchema",
           "ItemTextBuilder", "LucidrecError", "ModelError", "MostPopular", "Split", "UnknownIdError",
           "from_dataframes", "kfold", "load_dataset", "load_movielens_100k", "split"]
