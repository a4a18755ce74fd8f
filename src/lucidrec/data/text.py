"""Item text the language model reads: "Toy Story (1995). Genres: Animation, Children's, Comedy.", or for a
product "Stanley Staples. Brand: Stanley. Category: Industrial & Scientific > Fasteners > Staples. <description>".

Also the cleaning of scraped catalogue text (HTML entities, tags and leftovers such as "/>.").
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

import numpy as np

from lucidrec.data.dataset import Dataset

# Scraping leftovers: HTML comments and conditional comments, tags, a stray "/>" (with its dot), "<>".
_HTML_COMMENT = re.compile(r"<!--.*?-->|<!\[[^\]]*\]>|<!-->", re.S)
_HTML_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,300}>")
_JUNK = re.compile(r"\s*/>\.?|<>")
_SPACE_PUNCT = re.compile(r" ([.,;!?])(?=\s|$)")


def clean_text(s) -> str:
    """Catalogue text as a person would read it: HTML entities decoded (twice: '&amp;amp;' happens), tags,
    comments and scraping leftovers ('/>.') removed, whitespace collapsed."""
    if s is None or (isinstance(s, float) and np.isnan(s)):
        return ""
    s = str(s)
    for _ in range(2):
        if "&" not in s:
            break
        s = html.unescape(s)
    s = _HTML_COMMENT.sub(" ", s)
    s = _HTML_TAG.sub(" ", s)
    s = _JUNK.sub(" ", s)
    # A removed tag leaves a space before the punctuation that followed it ("staples</b>." -> "staples .").
    return _SPACE_PUNCT.sub(r"\1", " ".join(s.split()))


# RecBole's ml-100k lists an 'unknown' genre; it carries no meaning for a reader.
_NOISE_VALUES = {"unknown", "unkonwn", ""}


@dataclass
class ItemTextBuilder:
    """Builds one sentence per item from its title, year, categorical and free-text fields.

    ``labels`` renames fields in the text (e.g. {"genres": "Genres"}); ``fields`` limits which
    categorical/text fields are used (default: all in the schema); ``max_chars`` caps the text so one
    long description cannot dominate encoding time, and keeps it inside the encoder's window (the default
    MiniLM reads 256 word pieces, about 1,000 characters of English).
    The schema's category ``path`` fields are rendered as one "Category: A > B > C" part.
    """

    labels: dict[str, str] = field(default_factory=dict)
    fields: list[str] | None = None
    max_chars: int = 512

    def build(self, dataset: Dataset) -> list[str]:
        schema = dataset.schema
        titles = dataset.titles()
        use = self.fields
        path = [c for c in schema.path if c in schema.categorical and (use is None or c in use)]
        cats = [c for c in schema.categorical if (use is None or c in use) and c not in path]
        texts = [c for c in schema.text if use is None or c in use]
        out = []
        items = dataset.items
        cat_values = {c: items[c].to_numpy() for c in cats + path}
        text_values = {c: items[c].to_numpy() for c in texts}
        for i in range(dataset.n_items):
            title = str(titles[i]).rstrip()
            parts = [_sentence(title)]
            for c in cats:
                values = [v for v in cat_values[c][i] if v.lower() not in _NOISE_VALUES]
                if values:
                    parts.append(_sentence(f"{self._label(c)}: {', '.join(values)}"))
            steps = [v for c in path for v in cat_values[c][i] if v.lower() not in _NOISE_VALUES]
            if steps:
                parts.append(_sentence(f"Category: {' > '.join(steps)}"))
            for c in texts:
                v = str(text_values[c][i]).strip()
                if v:
                    parts.append(_sentence(v))
            out.append(" ".join(parts)[: self.max_chars])
        return out

    def _label(self, col: str) -> str:
        return self.labels.get(col, col.replace("_", " ").capitalize())


def _sentence(s: str) -> str:
    return s if s.endswith((".", "!", "?")) else s + "."


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


def item_fields(dataset: Dataset) -> dict[str, list[list[str]]]:
    """Per categorical field, per item, its values without noise values: ``{"brand": [["3M"], ...], ...}``."""
    return {
        c: [[v for v in values if v.lower() not in _NOISE_VALUES] for values in dataset.items[c].to_numpy()]
        for c in dataset.schema.categorical
    }


def item_numeric(dataset: Dataset) -> dict[str, np.ndarray]:
    """Per numeric field other than the year, per item, its value (NaN when unknown): e.g. price, weight."""
    return {
        c: dataset.items[c].to_numpy(dtype=np.float64)
        for c in dataset.schema.numeric
        if c != dataset.schema.year and c in dataset.items
    }
