"""Per-catalogue query vocabulary, read from editable JSON files: stop words, synonyms, units.

The query parser's grammar (negations, comparisons, "like ...", years) is in :mod:`lucidrec.query`; every
*word* that belongs to a domain lives in a file under ``lucidrec/vocab/``:

* ``default.json`` - what every catalogue shares: request phrasing with nothing to embed ("please",
  "recommend", "给我"), and the units and words of common numeric fields (price: "$", "dollars", "cheap",
  "便宜"; weight: "lb", "kg", "lighter than"). A numeric field gets these only if the catalogue has it.
* ``<catalogue>.json`` (``ml-100k.json``, ``scientific.json``, ``office.json``) - the catalogue's own
  stop words ("movie", "product") and synonyms: a phrase people type mapped to one of the catalogue's
  values ("funny" -> "Comedy", "filament" -> "3D Printing Filament", "胶带" -> "Adhesive Tapes").
  ``case_sensitive`` lists values that are also ordinary words (the brand "Duck", "Command"): they count
  only when typed with the catalogue's capitals. ``ignore_values`` are values never read from a query.

A catalogue's file is found by its name (the dataset's name, or one listed under ``match``); a catalogue
without a file of its own borrows the packaged file whose synonyms name most of its values (at least
three), so a small film catalogue still understands "喜剧". A model folder keeps the vocabulary it was
trained with in ``vocabulary.json`` (edit it there to change one model), and ``query_synonyms.json`` there
or ``QueryParser(synonyms=...)`` add synonyms on top.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from lucidrec.errors import ModelError

#: How many of a catalogue's values a borrowed vocabulary file must know.
MIN_BORROW_MATCHES = 3


@dataclass
class Vocabulary:
    """The words a query parser uses for one catalogue (see the module docstring)."""

    stop_words: dict[str, list[str]] = field(default_factory=lambda: {"en": [], "zh": []})
    synonyms: dict[str, dict[str, str]] = field(default_factory=lambda: {"en": {}, "zh": {}})
    numeric: dict[str, dict] = field(default_factory=dict)
    case_sensitive: list[str] = field(default_factory=list)
    ignore_values: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    # How a value is shown in a language other than the catalogue's ({"zh": {"Comedy": "喜剧"}}); a value
    # without an entry is shown as the catalogue names it.
    display: dict[str, dict[str, str]] = field(default_factory=dict)

    def display_name(self, value: str, lang: str) -> str:
        return self.display.get(lang, {}).get(value, value)

    @property
    def stop_en(self) -> set[str]:
        return set(self.stop_words.get("en", []))

    @property
    def stop_zh(self) -> list[str]:
        """Chinese stop phrases, longest first (they are removed from unsegmented text in this order)."""
        return sorted(set(self.stop_words.get("zh", [])), key=lambda w: (-len(w), w))

    def merged(self, other: dict, source: str) -> Vocabulary:
        """This vocabulary with a file's content added on top (lists united, tables updated)."""
        out = Vocabulary(
            {k: list(v) for k, v in self.stop_words.items()},
            {k: dict(v) for k, v in self.synonyms.items()},
            {k: dict(v) for k, v in self.numeric.items()},
            list(self.case_sensitive),
            list(self.ignore_values),
            [*self.sources, source],
            {k: dict(v) for k, v in self.display.items()},
        )
        for lang, words in other.get("stop_words", {}).items():
            out.stop_words.setdefault(lang, [])
            out.stop_words[lang] += [w for w in words if w not in out.stop_words[lang]]
        for lang, table in other.get("synonyms", {}).items():
            out.synonyms.setdefault(lang, {}).update(table)
        for name, spec in other.get("numeric", {}).items():
            out.numeric[name] = {**out.numeric.get(name, {}), **spec}
        out.case_sensitive += [v for v in other.get("case_sensitive", []) if v not in out.case_sensitive]
        out.ignore_values += [v for v in other.get("ignore_values", []) if v not in out.ignore_values]
        for lang, table in other.get("display", {}).items():
            out.display.setdefault(lang, {}).update(table)
        return out

    def to_dict(self) -> dict:
        return {
            "stop_words": self.stop_words,
            "synonyms": self.synonyms,
            "numeric": self.numeric,
            "case_sensitive": self.case_sensitive,
            "ignore_values": self.ignore_values,
            "sources": self.sources,
            "display": self.display,
        }

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> Vocabulary:
        return Vocabulary().merged(_checked(d, source), source)


def _checked(d, source: str) -> dict:
    """A vocabulary file's content, with a clear error naming the part that has the wrong shape."""
    fix = "Fix: correct the file (see lucidrec/vocab/default.json for the shape) or delete it."
    if not isinstance(d, dict):
        raise ModelError(f"{source}: a vocabulary must be a JSON object. {fix}")
    for part in ("stop_words", "synonyms", "display"):
        tables = d.get(part, {})
        if not isinstance(tables, dict) or not all(isinstance(t, (list, dict)) for t in tables.values()):
            raise ModelError(f"{source}: '{part}' must map a language ('en', 'zh') to its entries. {fix}")
    for lang, table in d.get("synonyms", {}).items():
        if not isinstance(table, dict) or not all(isinstance(a, str) and isinstance(b, str) for a, b in table.items()):
            raise ModelError(
                f'{source}: synonyms.{lang} must map a phrase to a catalogue value, e.g. {{"funny": "Comedy"}}. {fix}'
            )
    if not isinstance(d.get("numeric", {}), dict):
        raise ModelError(f"{source}: 'numeric' must map a field name to its units and words. {fix}")
    return d


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(name).lower()).strip("-")


def packaged_files() -> dict[str, dict]:
    """The vocabulary files shipped in ``lucidrec/vocab`` (name -> content), ``default`` included."""
    out = {}
    for f in sorted(resources.files("lucidrec").joinpath("vocab").iterdir(), key=lambda p: p.name):
        if f.name.endswith(".json"):
            content = json.loads(f.read_text(encoding="utf-8"))
            out[f.name[: -len(".json")]] = _checked(content, f"lucidrec/vocab/{f.name}")
    return out


def vocabulary_for(name: str | None, values=()) -> Vocabulary:
    """The vocabulary of a catalogue called ``name`` whose categorical values are ``values``: the default
    file, plus the catalogue's own file (by name), or else the file whose synonyms know most of its values."""
    files = packaged_files()
    vocab = Vocabulary().merged(files.pop("default", {}), "default")
    slug = _slug(name) if name else ""
    for fname, content in files.items():
        if slug and (slug == fname or slug in {_slug(m) for m in content.get("match", [])}):
            return vocab.merged(content, fname)
    folded = {str(v).lower() for v in values}
    best, best_hits = None, 0
    for fname, content in files.items():
        targets = {t.lower() for table in content.get("synonyms", {}).values() for t in table.values()}
        hits = len(targets & folded)
        if hits > best_hits:
            best, best_hits = fname, hits
    if best is not None and best_hits >= MIN_BORROW_MATCHES:
        return vocab.merged(files[best], best)
    return vocab


def read_vocabulary(path: str | Path) -> Vocabulary:
    """A ``vocabulary.json`` written with a model (or by hand)."""
    path = Path(path)
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({e}). Fix: correct the file or delete it.") from None
    return Vocabulary.from_dict(d, str(path))


__all__ = ["Vocabulary", "packaged_files", "read_vocabulary", "vocabulary_for"]
