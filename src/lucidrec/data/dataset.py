"""The validated in-memory dataset every other layer reads.

Interactions, items and users are pandas DataFrames with fixed column names; ids are the dataset's own
ids as strings. Items and users also get dense integer indices (row order of the item/user table) so the
numerical layers can work with arrays and sparse matrices.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lucidrec.errors import DataError, UnknownIdError

#: Columns of the interaction table after loading.
INTERACTION_COLUMNS = ("user", "item", "rating", "timestamp", "event")


@dataclass
class ItemSchema:
    """How to read an item table: which column is the title, which are free text, categories, numbers.

    ``categorical`` columns hold lists of strings (e.g. genres); ``numeric`` columns hold floats
    (e.g. the release year). ``year`` names the numeric column that is a year, if any, so titles can be
    shown as "Toy Story (1995)". ``path`` lists the categorical columns that are the levels of one category
    path, broad to narrow (e.g. ``category_1`` .. ``category_5`` of an Amazon product); the item text shows
    them as "Category: A > B > C".
    """

    title: str = "title"
    text: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    numeric: list[str] = field(default_factory=list)
    year: str | None = None
    path: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "title": self.title,
            "text": list(self.text),
            "categorical": list(self.categorical),
            "numeric": list(self.numeric),
            "year": self.year,
            "path": list(self.path),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ItemSchema:
        return cls(**d)


class Dataset:
    """Interactions + item table (+ optional user table), validated on construction.

    Parameters
    ----------
    interactions:
        DataFrame with columns ``user``, ``item`` and optionally ``rating`` (or weight), ``timestamp``
        and ``event``. Ids are converted to strings.
    items:
        DataFrame with an ``item`` column plus the columns named in ``schema``. When omitted, an item
        table with bare ids is built from the interactions.
    users:
        Optional DataFrame with a ``user`` column and any user features.
    name:
        A short name used in messages and reports.
    source:
        Where the data came from (a path), used in error messages.
    """

    def __init__(
        self,
        interactions: pd.DataFrame,
        items: pd.DataFrame | None = None,
        users: pd.DataFrame | None = None,
        schema: ItemSchema | None = None,
        name: str = "dataset",
        source: str = "<memory>",
        item_source: str | None = None,
    ):
        self.name = name
        self.source = source
        self.schema = schema or ItemSchema()
        # Implicit feedback (no rating column): every interaction counts the same, no rating head applies,
        # and explanations name the event ("you bought X") instead of a rating.
        self.has_ratings = "rating" in getattr(interactions, "columns", ())
        self.interactions = _validate_interactions(interactions, source)
        if items is None:
            items = pd.DataFrame({"item": pd.unique(self.interactions["item"])})
            items["title"] = items["item"]
            self.schema = ItemSchema()
        self.items = _validate_items(items, self.schema, item_source or source)
        self.users = None if users is None else _validate_users(users, source)

        known = pd.Index(self.items["item"])
        unknown_mask = ~self.interactions["item"].isin(known)
        if unknown_mask.any():
            row = int(np.flatnonzero(unknown_mask.to_numpy())[0])
            bad = self.interactions["item"].iloc[row]
            raise DataError(
                f"{source}: interaction row {row + 1} names item '{bad}', which is not in the item table "
                f"({int(unknown_mask.sum())} such rows in all). Fix: add the item to the item table or "
                "remove those interactions."
            )
        self.item_ids = self.items["item"].to_numpy(dtype=object)
        self.item_index = {iid: i for i, iid in enumerate(self.item_ids)}
        user_ids = pd.unique(self.interactions["user"])
        if self.users is not None:
            extra = self.users.loc[~self.users["user"].isin(set(user_ids)), "user"].to_numpy()
            user_ids = np.concatenate([user_ids, extra])
        self.user_ids = np.asarray(sorted(user_ids, key=_natural_key), dtype=object)
        self.user_index = {uid: u for u, uid in enumerate(self.user_ids)}
        # Integer codes kept next to the ids: the numerical layers use only these.
        self.interactions["uidx"] = self.interactions["user"].map(self.user_index).astype(np.int64)
        self.interactions["iidx"] = self.interactions["item"].map(self.item_index).astype(np.int64)

    # ----------------------------------------------------------------- sizes and lookups
    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def __len__(self) -> int:
        return len(self.interactions)

    def __repr__(self) -> str:
        return f"Dataset(name={self.name!r}, users={self.n_users}, items={self.n_items}, interactions={len(self)})"

    @property
    def feedback(self) -> str:
        """'explicit' when the interactions carry ratings, else 'implicit'."""
        return "explicit" if self.has_ratings else "implicit"

    @property
    def default_event(self) -> str:
        """What an interaction of this dataset is ('rated', or for implicit data its most common event,
        e.g. 'purchased'); an inline history item without a rating is read as one."""
        if self.has_ratings:
            return "rated"
        events = self.interactions["event"]
        return str(events.mode().iloc[0]) if len(events) else "interacted"

    def item_idx(self, item_id) -> int:
        try:
            return self.item_index[str(item_id)]
        except KeyError:
            raise UnknownIdError(
                f"item '{item_id}' is not in the catalog of '{self.name}' ({self.n_items} items). "
                "Fix: use an item id from the dataset's item table."
            ) from None

    def user_idx(self, user_id) -> int:
        try:
            return self.user_index[str(user_id)]
        except KeyError:
            raise UnknownIdError(
                f"user '{user_id}' is not in '{self.name}'. Fix: pass a known user id, or give the "
                "user's history inline instead."
            ) from None

    def titles(self) -> np.ndarray:
        """Display titles, with the year appended when the schema names a year column."""
        titles = self.items[self.schema.title].astype(str).to_numpy(dtype=object)
        year_col = self.schema.year
        if year_col and year_col in self.items:
            years = self.items[year_col].to_numpy()
            out = []
            for t, y in zip(titles, years):
                if y is not None and not (isinstance(y, float) and np.isnan(y)) and str(int(y)) not in t:
                    out.append(f"{t} ({int(y)})")
                else:
                    out.append(t)
            titles = np.asarray(out, dtype=object)
        return titles

    # ----------------------------------------------------------------- matrices
    def matrix(self, interactions: pd.DataFrame | None = None, value: str = "binary") -> sp.csr_matrix:
        """User x item CSR matrix over the full catalog. ``value`` is 'binary' or 'rating'."""
        inter = self.interactions if interactions is None else interactions
        data = (
            np.ones(len(inter), dtype=np.float32) if value == "binary" else inter["rating"].to_numpy(dtype=np.float32)
        )
        m = sp.csr_matrix(
            (data, (inter["uidx"].to_numpy(), inter["iidx"].to_numpy())),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        if value == "binary":
            m.data[:] = 1.0  # duplicates summed by scipy collapse back to 1
        return m

    def without_users(self, digests: set[str]) -> Dataset:
        """This dataset less every user whose tombstone digest (:func:`lucidrec.forgetting.digest`) is in
        ``digests``: their interactions and user row are gone, as if they had never been in the data (the
        catalog stays). Returns ``self`` when nobody is forgotten."""
        from lucidrec.forgetting import forgotten_mask

        gone_users = forgotten_mask(self.user_ids, digests)
        if not gone_users.any():
            return self
        ds = Dataset.__new__(Dataset)
        ds.__dict__.update(self.__dict__)
        ds.user_ids = self.user_ids[~gone_users]
        ds.user_index = {uid: u for u, uid in enumerate(ds.user_ids)}
        inter = self.interactions[self.interactions["user"].isin(set(ds.user_ids))].copy()
        inter["uidx"] = inter["user"].map(ds.user_index).astype(np.int64)
        ds.interactions = inter.reset_index(drop=True)
        if self.users is not None:
            ds.users = self.users[self.users["user"].isin(set(ds.user_ids))].reset_index(drop=True)
        return ds

    def subset(self, interactions: pd.DataFrame, name: str | None = None) -> Dataset:
        """A dataset with the same catalog and users but only the given interactions."""
        ds = Dataset.__new__(Dataset)
        ds.__dict__.update(self.__dict__)
        ds.interactions = interactions
        ds.name = name or self.name
        return ds


def _natural_key(x: str):
    return (0, int(x), "") if x.isdigit() else (1, 0, x)


def _require_columns(df: pd.DataFrame, cols, what: str, source: str):
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: the {what} table has no column {', '.join(repr(c) for c in missing)} "
            f"(columns found: {', '.join(map(str, df.columns)) or 'none'}). Fix: rename the column or pass a "
            "column mapping, e.g. columns={'user': 'userId'}."
        )


def _numeric_column(df: pd.DataFrame, col: str, source: str) -> pd.Series:
    values = pd.to_numeric(df[col], errors="coerce")
    bad = values.isna() & df[col].notna()
    if df[col].isna().any():
        bad = bad | df[col].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: column '{col}' must be numeric, but row {row + 1} holds {df[col].iloc[row]!r}. "
            f"Fix: correct or drop that row ({int(bad.sum())} bad rows in all)."
        )
    return values.astype(np.float64)


def _validate_interactions(df: pd.DataFrame, source: str) -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{source}: interactions must be a pandas DataFrame, got {type(df).__name__}.")
    _require_columns(df, ["user", "item"], "interaction", source)
    if len(df) == 0:
        raise DataError(f"{source}: the interaction table is empty. Fix: give at least one interaction.")
    for col in ("user", "item"):
        if df[col].isna().any():
            row = int(np.flatnonzero(df[col].isna().to_numpy())[0])
            raise DataError(f"{source}: column '{col}' is empty in row {row + 1}. Fix: fill or drop that row.")
    out = pd.DataFrame({"user": _id_strings(df["user"]), "item": _id_strings(df["item"])})
    out["rating"] = _numeric_column(df, "rating", source) if "rating" in df else 1.0
    out["timestamp"] = (
        _numeric_column(df, "timestamp", source) if "timestamp" in df else np.arange(len(df), dtype=np.float64)
    )
    out["event"] = df["event"].astype(str).to_numpy() if "event" in df else "rated" if "rating" in df else "interacted"
    return out.reset_index(drop=True)


def _id_strings(s: pd.Series) -> pd.Series:
    # Floats such as 12.0 read from CSV become "12", so ids match across files.
    if pd.api.types.is_float_dtype(s) and (s.dropna() % 1 == 0).all():
        s = s.astype("int64")
    return s.astype(str).str.strip()


def _validate_items(items: pd.DataFrame, schema: ItemSchema, source: str) -> pd.DataFrame:
    if not isinstance(items, pd.DataFrame):
        raise DataError(f"{source}: items must be a pandas DataFrame, got {type(items).__name__}.")
    if len(items) == 0:
        raise DataError(f"{source}: the item table is empty. Fix: give at least one item.")
    cols = ["item", schema.title, *schema.text, *schema.categorical, *schema.numeric]
    _require_columns(items, [c for c in dict.fromkeys(cols)], "item", source)
    items = items.copy()
    items["item"] = _id_strings(items["item"])
    dup = items["item"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(
            f"{source}: item id '{items['item'].iloc[row]}' appears more than once in the item table "
            f"(row {row + 1}; {int(dup.sum())} duplicates in all). Fix: keep one row per item id."
        )
    items[schema.title] = items[schema.title].fillna("").astype(str)
    for col in schema.categorical:
        items[col] = items[col].map(_as_list)
    for col in schema.numeric:
        items[col] = pd.to_numeric(items[col], errors="coerce").astype(np.float64)
    for col in schema.text:
        items[col] = items[col].fillna("").astype(str)
    return items.reset_index(drop=True)


def _as_list(v) -> list[str]:
    if isinstance(v, (list, tuple, np.ndarray)):
        return [str(x) for x in v if str(x)]
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return []
    s = str(v).strip()
    if not s:
        return []
    for sep in ("|", ";", ","):
        if sep in s:
            return [p.strip() for p in s.split(sep) if p.strip()]
    return s.split()


def _validate_users(users: pd.DataFrame, source: str) -> pd.DataFrame:
    _require_columns(users, ["user"], "user", source)
    users = users.copy()
    users["user"] = _id_strings(users["user"])
    dup = users["user"].duplicated()
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise DataError(
            f"{source}: user id '{users['user'].iloc[row]}' appears more than once in the user "
            f"table (row {row + 1}). Fix: keep one row per user id."
        )
    return users.reset_index(drop=True)
