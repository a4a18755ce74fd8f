"""lucidrec: recommendations that explain themselves, powered by a language model.

Public names are imported lazily so that serving (``lucidrec recommend``) starts fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Recommender": "lucidrec.recommender",
    "HybridConfig": "lucidrec.models.config",
    "ALS": "lucidrec.baselines",
    "EASE": "lucidrec.baselines",
    "ItemKNN": "lucidrec.baselines",
    "MostPopular": "lucidrec.baselines",
    "Dataset": "lucidrec.data",
    "ItemSchema": "lucidrec.data",
    "ItemTextBuilder": "lucidrec.data",
    "from_dataframes": "lucidrec.data",
    "load_dataset": "lucidrec.data",
    "load_movielens_100k": "lucidrec.data",
    "Split": "lucidrec.splits",
    "kfold": "lucidrec.splits",
    "split": "lucidrec.splits",
    "ConfigError": "lucidrec.errors",
    "DataError": "lucidrec.errors",
    "DependencyError": "lucidrec.errors",
    "LucidrecError": "lucidrec.errors",
    "ModelError": "lucidrec.errors",
    "UnknownIdError": "lucidrec.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lucidrec' has no attribute {name!r}")
