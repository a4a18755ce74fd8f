"""Item text the language model reads: "Toy Story (1995). Genres: Animation, Children's, Comedy."."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lucidrec.data.dataset import Dataset

# RecBole's ml-100k lists an 'unknown' genre; it carries no meaning for a reader.
_NOISE_VALUES = {"unknown", "unkonwn", ""}


@dataclass
class ItemTextBuilder:
    """Builds one sentence per item from its title, year, categorical and free-text fields.

    ``labels`` renames fields in the text (e.g. {"genres": "Genres"}); ``fields`` limits which
    categorical/text fields are used (default: all in the schema); ``max_chars`` caps the text so one
    long description cannot dominate encoding time.
    """

    labels: dict[str, str] = field(default_factory=dict)
    fields: list[str] | None = None
    max_chars: int = 512

    def build(self, dataset: Dataset) -> list[str]:
        schema = dataset.schema
        titles = dataset.titles()
        use = self.fields
        cats = [c for c in schema.categorical if use is None or c in use]
        texts = [c for c in schema.text if use is None or c in use]
        out = []
        items = dataset.items
        cat_values = {c: items[c].to_numpy() for c in cats}
        text_values = {c: items[c].to_numpy() for c in texts}
        for i in range(dataset.n_items):
            parts = [f"{titles[i]}."]
            for c in cats:
                values = [v for v in cat_values[c][i] if v.lower() not in _NOISE_VALUES]
                if values:
                    parts.append(f"{self._label(c)}: {', '.join(values)}.")
            for c in texts:
                v = str(text_values[c][i]).strip()
                if v:
                    parts.append(v if v.endswith(".") else v + ".")
            out.append(" ".join(parts)[: self.max_chars])
        return out

    def _label(self, col: str) -> str:
        return self.labels.get(col, col.replace("_", " ").capitalize())


def item_categories(dataset: Dataset) -> list[set[str]]:
    """Per item, the set of all its categorical values (e.g. genres), without noise values."""
    cats = dataset.schema.categorical
    out = [set() for _ in range(dataset.n_items)]
    for c in cats:
        for i, values in enumerate(dataset.items[c].to_numpy()):
            out[i].update(v for v in values if v.lower() not in _NOISE_VALUES)
    return out


def item_years(dataset: Dataset) -> np.ndarray:
    col = dataset.schema.year
    if col and col in dataset.items:
        return dataset.items[col].to_numpy(dtype=np.float64)
    return np.full(dataset.n_items, np.nan)
