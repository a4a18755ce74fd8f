"""The catalogue a model serves: item ids, titles, categories, years, named fields, numbers, vocabulary.

One :class:`Catalogue` is built in one place (:meth:`Catalogue.from_dataset`, at training), saved with the
model (``items.json`` + ``vocabulary.json``, :meth:`to_items` / :meth:`from_items`), and read by everyone
who needs the catalogue: the query parser, the explainer, serving, evaluation and batch jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec.errors import UnknownIdError

if TYPE_CHECKING:
    from lucidrec.data.dataset import Dataset
    from lucidrec.query_synonyms import Vocabulary


@dataclass(frozen=True, eq=False)
class Catalogue:
    """The items a model knows, in its item order (index ``i`` is row ``i`` of every weight matrix).

    ``fields``: per categorical field its per-item values, when the catalogue has several named fields
    (brand, category levels); ``numeric``: per numeric field (price, weight) its per-item values (NaN when
    unknown); ``implicit_event``: on an implicit-feedback catalogue (no ratings) the event every interaction
    is, e.g. "purchased"; None for rated data."""

    item_ids: np.ndarray
    titles: np.ndarray
    categories: list[list[str]]
    years: np.ndarray
    fields: dict[str, list[list[str]]] | None = None
    numeric: dict[str, np.ndarray] = field(default_factory=dict)
    vocabulary: Vocabulary | None = None
    implicit_event: str | None = None
    name: str | None = None

    def __post_init__(self):
        ids = np.asarray(self.item_ids, dtype=object)
        object.__setattr__(self, "item_ids", ids)
        object.__setattr__(self, "titles", np.asarray(self.titles, dtype=object))
        object.__setattr__(self, "years", np.asarray(self.years, dtype=np.float64))
        object.__setattr__(self, "item_index", {iid: i for i, iid in enumerate(ids)})

    item_index: dict = field(init=False, repr=False)

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> Catalogue:
        """The catalogue of a :class:`lucidrec.data.Dataset` (the one place it is built from data)."""
        from lucidrec.data.text import item_categories, item_fields, item_numeric, item_years
        from lucidrec.query_synonyms import vocabulary_for

        categories = [sorted(c) for c in item_categories(dataset)]
        return cls(
            item_ids=np.asarray(dataset.item_ids, dtype=object),
            titles=np.asarray(dataset.titles(), dtype=object),
            categories=categories,
            years=item_years(dataset),
            fields=item_fields(dataset) if len(dataset.schema.categorical) >= 2 else None,
            numeric=item_numeric(dataset),
            vocabulary=vocabulary_for(dataset.name, {v for cats in categories for v in cats}),
            implicit_event=None if getattr(dataset, "has_ratings", True) else dataset.default_event,
            name=dataset.name,
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def item_idx(self, item_id) -> int:
        """The index of ``item_id``; a clear error for an id the catalogue does not have."""
        try:
            return self.item_index[str(item_id)]
        except KeyError:
            raise UnknownIdError(
                f"item '{item_id}' is not in this model's catalog ({len(self.item_ids)} items). "
                "Fix: use an item id from the training data."
            ) from None

    def with_vocabulary(self, vocabulary: Vocabulary | None) -> Catalogue:
        return replace(self, vocabulary=vocabulary)

    # ------------------------------------------------------------------ the model folder's items.json
    def to_items(self) -> dict[str, Any]:
        """``items.json``'s content (JSON-ready; NaN is written as null)."""
        items: dict[str, Any] = {
            "item": [str(i) for i in self.item_ids],
            "title": [str(t) for t in self.titles],
            "categories": [list(c) for c in self.categories],
            "year": [None if not np.isfinite(y) else float(y) for y in self.years],
        }
        if self.fields:
            items["fields"] = self.fields
        if self.numeric:
            items["numeric"] = {
                k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in self.numeric.items()
            }
        return items

    @classmethod
    def from_items(
        cls,
        items: dict[str, Any],
        vocabulary: Vocabulary | None = None,
        implicit_event: str | None = None,
        name: str | None = None,
    ) -> Catalogue:
        """The catalogue :meth:`to_items` wrote (already checked by :func:`lucidrec.io.model_check.check_items`)."""
        return cls(
            item_ids=np.asarray(items["item"], dtype=object),
            titles=np.asarray(items["title"], dtype=object),
            categories=[list(c or []) for c in items["categories"]],
            years=np.asarray([np.nan if y is None else y for y in items["year"]], dtype=np.float64),
            fields=items.get("fields") or None,
            numeric={
                k: np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)
                for k, v in (items.get("numeric") or {}).items()
            },
            vocabulary=vocabulary,
            implicit_event=implicit_event,
            name=name,
        )


__all__ = ["Catalogue"]
