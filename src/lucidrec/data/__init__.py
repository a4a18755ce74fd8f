"""Data layer: validated datasets, loaders and the item-text builder."""

from lucidrec.data.dataset import Dataset, ItemSchema
from lucidrec.data.loaders import (
    from_dataframes,
    load_amazon,
    load_atomic,
    load_dataset,
    load_files,
    load_movielens_100k,
    movielens_100k_folder,
)
from lucidrec.data.text import ItemTextBuilder, clean_text, item_categories, item_fields, item_numeric, item_years

__all__ = [
    "Dataset",
    "ItemSchema",
    "ItemTextBuilder",
    "clean_text",
    "from_dataframes",
    "item_categories",
    "item_fields",
    "item_numeric",
    "item_years",
    "load_amazon",
    "load_atomic",
    "load_dataset",
    "load_files",
    "load_movielens_100k",
    "movielens_100k_folder",
]
