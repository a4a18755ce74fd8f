"""Natural-language queries: hard constraints from the catalog's own vocabulary, plus residual text.

``QueryParser.parse("a 90s comedy, no romance")`` gives a :class:`ParsedQuery` with
``genres=["Comedy"]``, ``exclude_genres=["Romance"]``, ``year=(1990, 1999)`` and the residual free text
(what is left once the constraint phrases and stop words are taken out), which is what gets embedded.

What is understood (English and Chinese, mixed freely):

* **categories** — every value of the catalog's categorical fields (genres; a product's brand and each
  level of its category path), with case, plural, hyphen, apostrophe and "&"/"and" variants ("comedies",
  "sci fi", "lab and scientific products"), plus the catalogue's synonym tables
  (:mod:`lucidrec.query_synonyms`: "funny" -> Comedy, "卡通" -> Animation, "filament" -> 3D Printing Filament).
  Several asked-for genres must *all* hold ("a funny animated film" = Comedy and Animation) unless they
  are joined by "or" / "或" ("a comedy or a drama"), which makes any one of them enough. Values of a field
  each item has at most one of (a brand, one level of a category path) are alternatives: "HATCHBOX or
  eSUN filament" is (HATCHBOX or eSUN) and 3D Printing Filament.
* **numbers with units** — for the catalogue's numeric fields that its vocabulary gives units ("price":
  "$", "dollars", "美元"; "weight": "lb", "kg"): "under $30", "less than 2 lbs", "between $10 and $20",
  "$10-$20", "over 50 dollars", "30美元以下", "低于30元"; the field's low/high words ("cheap" = the cheapest
  quarter of the catalogue, "expensive" = the dearest quarter, "便宜").
* **negations** — "no horror", "not a musical", "without romance", "anything but drama", "不要爱情片":
  every genre inside the negation's clause (up to the next comma, "but", "但" ...) is excluded.
  A genre both asked for and excluded ("a comedy, no comedy") is excluded: a "no" is kept, with a note.
* **years** — decades ("90s", "the eighties", "early 80s", "90年代", "八十年代"), "before 1980",
  "after 2000", "since 1990", "between 1990 and 1995", "1990-1995", "in 1995", "1990年以前",
  "recent" (the catalog's last 5 years), "not too old" (last 15), "old" / "classic" (more than 25 years
  before the catalog's newest item). Bounds outside every item's year are reported and dropped.
* **item references** — "like Toy Story", "something similar to Heat", quoted titles ("《Heat》"),
  "像 Toy Story 一样": matched to catalog titles (articles and years optional, small typos tolerated).
  They act as a pseudo-history; they are not constraints.

The vocabulary comes from the catalog and the stop words / synonyms / units from the catalogue's
vocabulary file, so nothing here is tied to MovieLens or to products.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec.query_synonyms import Vocabulary, vocabulary_for

if TYPE_CHECKING:
    from collections.abc import Callable

    from lucidrec.catalog import Catalogue

#: How clearly the model must read a negated clause as a value to exclude it ("不要战争片" -> not War).
NEGATION_STRENGTH = 0.7
#: An identity value whose name is in this many other items' titles is an ordinary word too.
COMMON_NAME_ITEMS = 10
#: How strongly (relative to its strongest reading) the language model must read a request as a value that
#: a word of it names, for that value to be asked for (QueryParser._check_named_values).
NAMED_VALUE_SUPPORT = 0.5
#: Years the relative phrases cover, counted back from the catalog's newest item.
RECENT_YEARS = 5
NOT_TOO_OLD_YEARS = 15
OLD_YEARS = 25
#: Longest title (in words) looked up after a "like ..." trigger.
_MAX_TITLE_WORDS = 12
#: Bounds on the work of one parse (issue 16: "something like " x 150 took 1.6 s of fuzzy matching):
#: "like ..." triggers looked up, and fuzzy (typo-tolerant) title lookups (~3 ms each on ML-100K).
_MAX_REFERENCE_LOOKUPS = 10
_MAX_FUZZY_LOOKUPS = 6

_NEG_EN = (
    r"no|not|non(?!-)|without|except|excluding|exclude|avoid|nothing|never|don't want|do not want|don't like|"
    r"do not like|dont want|dont like|hate|anything but|other than|minus|isn't|aren't|none of"
)
# "非常" (very) and "特别" (especially) are not negations.
_NEG_ZH = r"不要|不想要|不想看|不看|(?<!特)别|不是|没有|除了|排除|不含|不包括|讨厌|不喜欢|非(?!常)"
#: A negation right before a one-sided numeric bound ("not over", "nothing under", "不要超过"), with at
#: most one filler word in between ("don't go over" is not covered: "don't" alone is no negation here).
_RANGE_NEGATION = re.compile(
    rf"(?:(?<![a-z])(?:{_NEG_EN})(?![a-z])|{_NEG_ZH})\s*(?:(?:go|going|anything|something|items?|products?)\s+)?$"
)
#: A negated clause reading as a value sharing this share of the smaller one's items with what the rest of
#: the request asks for describes the wanted thing (see QueryParser._same_kind_as_wanted).
SAME_KIND_SHARE = 0.5
#: A value stands for a word of the request (see QueryParser._meet_named_maker) when at least this share of
#: its items' titles say the word.
MAKER_WORD_SHARE = 0.5
#: A brand name written in capitals only is read as the phrase unless cued when other makers' titles hold it
#: this many times as often as the brand has items (see QueryParser._common_word_names).
PHRASE_NAME_RATIO = 3
#: Words that mark a name as a brand where its capitals cannot ("from 3D", "3D brand", "3D牌").
_BRAND_CUE_BEFORE = re.compile(r"(?:\bfrom|\bby|\bbrand|\bmade by|品牌)\s*$", re.I)
_BRAND_CUE_AFTER = re.compile(r"\s*(?:brand\b|牌|品牌|的产品)", re.I)
#: Negations that say what the wanted item lacks ("without a cord") rather than what to leave out.
#: Stripped from both ends of the text the language model grounds (see QueryParser._ground).
_EDGE_PUNCTUATION = " \t,.;:!?、，。；：！？…-–—/|"
_PROPERTY_NEGATIONS = frozenset({"without", "不含", "没有", "无"})
#: What ends a negation's clause.
_CLAUSE_END = re.compile(
    r"[,.;!?，。；！？]|\b(?:but|though|however|instead|rather|yet|with)\b|"
    r"\band\s+(?:a|an|some|lots|plenty|also|with)\b|但|而是|只要|要|的"
)
_LIKE_EN = re.compile(
    r"\b(?:(?:something|anything|movies?|films?|one|stuff|more)\s+)?(?:like|similar to|in the style of|"
    r"along the lines of|reminiscent of|reminds me of|in the vein of|same as|as good as|comparable to|"
    r"resembling|akin to)\s+",
)
_LIKE_ZH = re.compile(r"(?:像|类似于?|和|跟|与|如同)\s*")
_VERB_LIKE = re.compile(r"\b(?:i|i'd|id|we|we'd|you|they|would|really|do|don't|dont|you'd)\s+$")
_QUOTED = re.compile(r"[\"“”«»《「『]([^\"“”«»《》「」『』]{1,200})[\"“”«»》」』]")

_WORD_DECADES = {
    "twenties": 1920,
    "thirties": 1930,
    "forties": 1940,
    "fifties": 1950,
    "sixties": 1960,
    "seventies": 1970,
    "eighties": 1980,
    "nineties": 1990,
}
#: A decade in English: "the 90s", "'90s", "1990s", "early 80s", "mid-1970s", "the nineties" (four groups:
#: part of the decade, two digits, three digits, word; read by QueryParser._decade_span).
_DECADE = (
    r"(?:the\s+)?(?:(early|mid|mid-|late)\s*-?\s*)?(?:'?(\d{2})'?s|(\d{3})0'?s|"
    r"(?:nineteen\s+)?(" + "|".join(_WORD_DECADES) + r"))"
)
#: Chinese decades: "90年代", "1990年代", "九十年代".
_ZH_DECADE = r"(\d{2}|\d{4}|[一二三四五六七八九])\s*十?\s*年代"
_BEFORE = r"\b(?:before|prior\s+to|earlier\s+than|older\s+than|pre-?|until|up\s+to)"
_AFTER = r"\b(?:after|later\s+than|newer\s+than|post-?)"
#: Two-sided year ranges written out: "between 1990 and 1995", "from 1990 to 1995", "1990-1995", "1990年到1995年".
_BETWEEN_YEARS = [
    (r"\bbetween\s+(?:the\s+years\s+)?(\d{4})\s+and\s+(\d{4})\b", lambda m: (int(m[1]), int(m[2]))),
    (r"\bfrom\s+(\d{4})\s*(?:to|till|until|through|-)\s*(\d{4})\b", lambda m: (int(m[1]), int(m[2]))),
    (r"\b(\d{4})\s*(?:-|to)\s*(\d{4})\b", lambda m: (int(m[1]), int(m[2]))),
    (r"(\d{4})\s*年?\s*(?:到|至|-|~)\s*(\d{4})\s*年?", lambda m: (int(m[1]), int(m[2]))),
]
#: One year: "in 1995", "1995年", a bare 1800-2099 (tried last).
_SINGLE_YEARS = [
    (r"\b(?:in|from|of|released\s+in|made\s+in|year)\s+(\d{4})\b", lambda m: (int(m[1]), int(m[1]))),
    (r"(\d{4})\s*年(?!代)", lambda m: (int(m[1]), int(m[1]))),
    (r"(?<![\w.])(1[89]\d{2}|20\d{2})(?![\w.])", lambda m: (int(m[1]), int(m[1]))),
]
_ZH_DIGITS = {"一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "零": 0}


@dataclass
class ParsedQuery:
    """A query as understood: constraints (drawn from the catalog) plus the residual text to embed."""

    raw: str
    genres: list[str] = field(default_factory=list)
    genre_mode: str = "all"  # "all": every genre must hold; "any": one is enough ("a comedy or a drama")
    exclude_genres: list[str] = field(default_factory=list)
    year: tuple[int, int] | None = None
    like: list[str] = field(default_factory=list)  # item ids referenced ("like Toy Story")
    like_titles: list[str] = field(default_factory=list)
    like_idx: list[int] = field(default_factory=list)
    # Numeric fields other than the year: field -> [low, high] (None = open), in the field's base unit.
    ranges: dict[str, list] = field(default_factory=dict)
    # Catalogues with several categorical fields: the field each asked-for or excluded value belongs to.
    fields: dict[str, str] = field(default_factory=dict)
    text: str = ""  # residual free text; embedded when non-empty
    # Share of the request the residual text stands for: residual words / (residual words + parsed
    # constraints and titles). The embedded text pulls scores in proportion, so "a dark crime thriller"
    # is mostly its two genres (which filter) and only a third "dark" (which scores).
    text_weight: float = 1.0
    notes: list[str] = field(default_factory=list)
    # Values the language model read the free text as (lucidrec.understanding): soft, they rank and never
    # exclude; most specific first, each {"field", "value", "strength"}.
    soft: list[dict] = field(default_factory=list)
    # What qualifies the wanted thing ("for my 3D printer"): read to understand, not matched or embedded.
    qualifier: str = ""
    # Parts naming a field this catalogue lacks ("under $30" without a price): {"text", "field", "reason",
    # "reason_zh"}. They are neither applied nor embedded, so no reason can claim them.
    not_applied: list[dict] = field(default_factory=list)
    # Where each asked-for value was named: value -> [(start, end, via a synonym table)] (not serialised).
    spans: dict = field(default_factory=dict, repr=False)
    # Values kept as the head of a compound whose modifier named another value ("Shredders" of "paper
    # shredder"; see QueryParser._drop_disjoint_named; not serialised).
    compound_heads: list = field(default_factory=list, repr=False)

    @property
    def has_constraints(self) -> bool:
        return bool(self.genres or self.exclude_genres or self.year or self.ranges or self.soft)

    def to_dict(self) -> dict[str, Any]:
        return {
            "genres": list(self.genres),
            "genre_mode": self.genre_mode,
            "exclude_genres": list(self.exclude_genres),
            "year": None if self.year is None else [int(self.year[0]), int(self.year[1])],
            "like": list(self.like),
            "like_titles": list(self.like_titles),
            "ranges": {f: list(v) for f, v in self.ranges.items()},
            "fields": dict(self.fields),
            "text": self.text,
            "text_weight": round(self.text_weight, 4),
            "notes": list(self.notes),
            "soft": [dict(v) for v in self.soft],
            "qualifier": self.qualifier,
            "not_applied": [dict(v) for v in self.not_applied],
        }


# ---------------------------------------------------------------------------------------------- helpers
def _fold(s: str) -> str:
    """Lower-case, unify quotes and dashes, strip accents: the form every match is made in."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = s.replace("’", "'").replace("‘", "'").replace("–", "-").replace("—", "-")
    return "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))


def _words(s: str) -> list[str]:
    """The folded Latin words of ``s`` ("Super Glue" -> ["super", "glue"])."""
    return re.findall(r"[0-9a-z]+(?:[-'][0-9a-z]+)*", _fold(s))


def _title_key(title: str) -> str:
    """'Godfather, The (1972)' -> 'the godfather'; parentheticals (years, a.k.a.) dropped, punctuation gone."""
    t = _fold(title)
    t = re.sub(r"\([^)]*\)", " ", t).strip()
    m = re.match(r"^(.*),\s*(the|a|an|la|le|les|il|el|die|der|das)$", t)
    if m:
        t = f"{m.group(2)} {m.group(1)}"
    return " ".join(re.findall(r"[\w']+", t)).replace("'", "")


def _variants(value: str) -> set[str]:
    """Case / plural / hyphen / apostrophe variants of a catalog value: 'Sci-Fi' -> 'sci fi', 'scifi'..."""
    v = _fold(value)
    base = {v, v.replace("-", " "), v.replace("-", ""), v.replace("'", ""), v.replace("'s", "")}
    if "&" in v:  # "Lab & Scientific Products": "lab and scientific products", "lab scientific products"
        base |= {v.replace("&", "and"), v.replace("&", " ")}
    out = set()
    for b in base:
        b = " ".join(b.split())
        if not b:
            continue
        out |= {b, b + "s", b + "es"}
        if b.endswith("y"):
            out.add(b[:-1] + "ies")
        # Plural catalogue values ("Screws", "Digital Calipers", "Glass Bottles") also match one of them.
        if b.endswith("ies") and len(b) > 4:
            out.add(b[:-3] + "y")
        elif b.endswith(("ses", "xes", "zes", "ches", "shes")) and len(b) > 4:
            out |= {b[:-2], b[:-1]}
        elif b.endswith("s") and not b.endswith(("ss", "'s", "us")) and len(b) > 3:
            out.add(b[:-1])
    return out


def _is_cjk(s: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in s)


def _stem(token: str) -> str:
    """'staples' -> 'staple', 'boxes' -> 'box': title words and query words meet in this form."""
    if len(token) > 4 and token.endswith("es") and token[-3] in "sxz":
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def _zh_number(s: str) -> int | None:
    if s.isdigit():
        return int(s)
    if len(s) == 1 and s in _ZH_DIGITS:
        return _ZH_DIGITS[s]
    return None


class QueryParser:
    """Parses queries against one catalog. Build once (it indexes titles and vocabulary); parse is cheap.

    ``categories``: per item, its categorical values; ``titles``, ``item_ids``: per item; ``years``: per item
    (NaN when unknown); ``popularity``: per item, used only to pick among items sharing a title.
    ``fields``: per categorical field, per item, its values (e.g. ``{"brand": [["3M"], ...], "category_3":
    ...}``); when given with two or more fields, constraints name their field and values of one single-valued
    field are alternatives. ``numeric``: per numeric field other than the year, per item, its value (NaN when
    unknown). ``vocabulary``: stop words, synonyms and units (default: the catalogue's file, found from
    ``name`` or from the values; see :mod:`lucidrec.query_synonyms`); ``synonyms`` adds phrases on top.
    """

    def __init__(
        self,
        categories: list[list[str]],
        titles,
        item_ids,
        years,
        popularity=None,
        synonyms: dict[str, dict[str, str]] | None = None,
        fields: dict[str, list[list[str]]] | None = None,
        numeric: dict[str, np.ndarray] | None = None,
        vocabulary: Vocabulary | None = None,
        name: str | None = None,
        understanding=None,
    ):
        self.understanding = understanding  # lucidrec.understanding.RequestUnderstanding, or None
        self.item_ids = [str(i) for i in item_ids]
        self.titles = [str(t) for t in titles]
        years = np.asarray(years, dtype=np.float64)
        known = years[np.isfinite(years)]
        self.year_min = int(known.min()) if len(known) else None
        self.year_max = int(known.max()) if len(known) else None
        self.popularity = np.zeros(len(self.titles)) if popularity is None else np.asarray(popularity, np.float64)
        all_values = sorted({c for cats in categories for c in cats})
        if vocabulary is None:
            vocabulary = vocabulary_for(name, all_values)
        self.vocab = vocabulary
        self._stop_en = vocabulary.stop_en
        self._stop_zh = vocabulary.stop_zh
        ignored = {_fold(v) for v in vocabulary.ignore_values}
        vocab = [v for v in all_values if _fold(v) not in ignored]
        self.vocabulary = vocab
        self.years = years
        # One boolean mask per value, built once: constraints are then cheap per request.
        self._value_masks = {v: np.zeros(len(categories), bool) for v in all_values}
        for i, cats in enumerate(categories):
            for c in cats:
                self._value_masks[c][i] = True
        self._init_fields(fields)
        self._init_numeric(numeric or {})
        by_fold = {_fold(v): v for v in vocab}
        phrases: dict[str, str] = {}
        for v in vocab:
            for p in _variants(v):
                phrases.setdefault(p, v)
        tables = {lang: dict(t) for lang, t in vocabulary.synonyms.items()}
        for lang, extra in (synonyms or {}).items():
            tables.setdefault(lang, {}).update(extra)
        self._synonym_phrases: set[str] = set()  # phrases a word list gave: the user's explicit override
        for table in tables.values():
            for phrase, target in table.items():
                canon = by_fold.get(_fold(target))
                if canon is None:
                    continue  # this catalog has no such value
                for p in {_fold(phrase)} | (set() if _is_cjk(phrase) else _variants(phrase)):
                    phrases[p] = canon
                    self._synonym_phrases.add(p)
        # Values that are also ordinary words ("Duck", "Command") count only as typed in the catalogue.
        self._case_sensitive = {v for v in vocab if _fold(v) in {_fold(c) for c in vocabulary.case_sensitive}}
        # Of those, names without a lowercase letter that name far more of other makers' items than their own
        # ("3D"): capitals cannot tell the brand from the phrase ("3D printer"), only a brand cue can ("from
        # 3D", "3D brand", "3D牌"). Filled by _common_word_names.
        self._phrase_like_names: set[str] = set()
        self._case_sensitive |= self._common_word_names(fields)
        self.phrases = phrases
        latin = sorted((p for p in phrases if not _is_cjk(p)), key=len, reverse=True)
        cjk = sorted((p for p in phrases if _is_cjk(p)), key=len, reverse=True)
        # Latin phrases end at anything but a Latin letter or digit, so "不要hatchbox的" finds "hatchbox".
        self._latin_re = (
            re.compile(r"(?<![0-9a-z'])(" + "|".join(re.escape(p) for p in latin) + r")(?![0-9a-z])") if latin else None
        )
        self._cjk_re = re.compile("(" + "|".join(re.escape(p) for p in cjk) + ")") if cjk else None
        self._title_index: dict[str, list[int]] = {}
        self._token_index: dict[str, set[int]] = {}
        for i, t in enumerate(self.titles):
            key = _title_key(t)
            if not key:
                continue
            self._title_index.setdefault(key, []).append(i)
            art = re.match(r"^(the|a|an) (.+)$", key)
            if art:
                self._title_index.setdefault(art.group(2), []).append(i)
            for tok in key.split():
                self._token_index.setdefault(_stem(tok), set()).add(i)
        self._title_keys = list(self._title_index)

    def _common_word_names(self, fields: dict[str, list[list[str]]] | None) -> set[str]:
        """Identity values (a brand) whose name is also an ordinary phrase of this catalogue ("Super Glue",
        "Duck", "3D"): the folded name appears in the titles of at least COMMON_NAME_ITEMS items it does not
        make. Like the vocabulary's ``case_sensitive`` list, but found from the catalogue: they count only
        when typed with the catalogue's capitals."""
        from collections import Counter

        from lucidrec.understanding.grounding import IDENTITY_FIELDS

        names = [n for n in (fields or {}) if n.lower() in IDENTITY_FIELDS]
        if not names:
            return set()
        tokens = [_words(t) for t in self.titles]
        df: Counter = Counter()  # in how many titles each 1-3 word phrase occurs
        for toks in tokens:
            df.update({" ".join(toks[i : i + n]) for n in (1, 2, 3) for i in range(len(toks) - n + 1)})
        out: set[str] = set()
        for name in names:
            own: Counter = Counter()
            for i, values in enumerate(fields[name]):
                for v in values:
                    key = " ".join(_words(v))
                    if key in " ".join(tokens[i]):
                        own[v] += 1
            made = Counter(v for values in fields[name] for v in values)
            for v in made:
                key = " ".join(_words(v))
                others = df.get(key, 0) - own[v]
                if v != v.lower() and key and others >= COMMON_NAME_ITEMS:
                    out.add(v)
                    if not any(ch.islower() for ch in v) and others >= PHRASE_NAME_RATIO * made[v]:
                        # capitals cannot tell, and the phrase is far commoner than the brand ("3D")
                        self._phrase_like_names.add(v)
        return out

    def _init_fields(self, fields: dict[str, list[list[str]]] | None) -> None:
        """Which field each value belongs to (the field holding it most often) and which fields are
        single-valued (no item has two values: a brand, one level of a category path)."""
        self.field_of: dict[str, str] = {}
        self.single_valued: set[str] = set()
        self._one_value_per_item: bool | None = None  # single-field catalogues: see _single_valued_field
        self.multi_field = bool(fields) and len(fields) >= 2
        if not self.multi_field:
            return
        counts: dict[str, dict[str, int]] = {}
        for name, per_item in fields.items():
            if all(len(v) <= 1 for v in per_item):
                self.single_valued.add(name)
            for values in per_item:
                for v in values:
                    counts.setdefault(v, {}).setdefault(name, 0)
                    counts[v][name] += 1
        self.field_of = {v: max(c.items(), key=lambda kv: kv[1])[0] for v, c in counts.items()}

    def _init_numeric(self, numeric: dict[str, np.ndarray]) -> None:
        """The numeric fields a query can bound: those the vocabulary gives units or words."""
        self.numeric: dict[str, np.ndarray] = {}
        self.numeric_spec: dict[str, dict] = {}
        for name, values in numeric.items():
            spec = self.vocab.numeric.get(name) or self.vocab.numeric.get(name.lower())
            if spec is None:
                continue
            arr = np.asarray(values, dtype=np.float64)
            if not np.isfinite(arr).any():
                continue
            self.numeric[name] = arr
            self.numeric_spec[name] = spec

    @classmethod
    def from_catalogue(
        cls,
        catalogue: Catalogue,
        popularity=None,
        synonyms: dict[str, dict[str, str]] | None = None,
        understanding=None,
    ) -> QueryParser:
        """A parser over a :class:`lucidrec.catalog.Catalogue` (its vocabulary, fields and numbers);
        ``popularity``: per item, to pick among items sharing a title; ``synonyms``: phrases added to the
        vocabulary's tables; ``understanding``: a :class:`lucidrec.understanding.RequestUnderstanding`."""
        return cls(
            catalogue.categories,
            catalogue.titles,
            catalogue.item_ids,
            catalogue.years,
            popularity=popularity,
            synonyms=synonyms,
            fields=catalogue.fields,
            numeric=catalogue.numeric,
            vocabulary=catalogue.vocabulary,
            name=catalogue.name,
            understanding=understanding,
        )

    @classmethod
    def from_dataset(
        cls, dataset, synonyms: dict[str, dict[str, str]] | None = None, vocabulary: Vocabulary | None = None
    ) -> QueryParser:
        """A parser over a :class:`lucidrec.data.Dataset`'s catalog (popularity = interaction counts);
        ``vocabulary`` replaces the catalogue's own."""
        from dataclasses import replace

        from lucidrec.catalog import Catalogue
        from lucidrec.data.text import item_fields

        catalogue = Catalogue.from_dataset(dataset)
        if catalogue.fields is None:
            # The catalogue names fields only when it has two or more; the parser still reads a single
            # identity field (a brand) for its common-word names (see _common_word_names).
            catalogue = replace(catalogue, fields=item_fields(dataset))
        if vocabulary is not None:
            catalogue = catalogue.with_vocabulary(vocabulary)
        popularity = np.bincount(dataset.interactions["iidx"].to_numpy(), minlength=dataset.n_items)
        return cls.from_catalogue(catalogue, popularity=popularity, synonyms=synonyms)

    # ------------------------------------------------------------------ public
    def parse(self, query: str) -> ParsedQuery:
        text = _fold(query)
        if len(text) != len(query):  # folding changed lengths (rare scripts): spans refer to the folded text
            query = text
        pq = ParsedQuery(raw=query)
        used = np.zeros(len(text), dtype=bool)
        self._parse_references(text, used, pq)
        if self.year_min is not None:  # a catalogue without years reads "2000" as a number, not a year
            self._parse_years(text, used, pq)
        self._parse_ranges(text, used, pq)
        self._parse_field_parts(text, used, pq)
        self._parse_translated_references(text, used, pq)
        before_values = used.copy()
        self._parse_genres(text, used, pq, query)
        self._check_named_values(query, text, before_values, used, pq)
        self._meet_named_maker(text, pq)
        self._ground(query, text, used, pq)
        pq.text = self._residual(query, text, used)
        parsed_parts = len(pq.genres) + len(pq.exclude_genres) + (pq.year is not None) + len(pq.like) + len(pq.ranges)
        n_text = len(pq.text.split())
        pq.text_weight = n_text / (n_text + parsed_parts) if n_text else 0.0
        if not pq.text and not pq.has_constraints and not pq.like and not pq.soft:
            pq.notes.append("the query has no words this catalog's vocabulary or the text model can use")
        return pq

    # ------------------------------------------------------------------ understanding (language model)
    def _parse_field_parts(self, text: str, used: np.ndarray, pq: ParsedQuery):
        """Parts naming a field ("under $30", "4 stars or more", "delivered by tomorrow") that the grammar
        above did not apply: the catalogue has no such field, so they are reported, and taken out of the
        text to embed (embedded, "under $30" would pull towards items whose text mentions prices, and a
        reason would claim a match that is not there)."""
        from lucidrec.understanding.request import field_parts, not_applied_note

        for part in field_parts(text, used):
            if part.kind in self.numeric:
                continue  # the catalogue has it; a phrasing the range grammar does not know stays text
            phrase = text[part.start : part.end].strip(" ,")
            used[part.start : part.end] = True
            pq.not_applied.append(
                {
                    "text": phrase,
                    "field": part.kind,
                    "reason": not_applied_note(part.kind, phrase, "en"),
                    "reason_zh": not_applied_note(part.kind, phrase, "zh"),
                }
            )
            pq.notes.append(not_applied_note(part.kind, phrase, "en"))

    def _parse_translated_references(self, text: str, used: np.ndarray, pq: ParsedQuery):
        """"像玩具总动员那样的电影": a title named in another language, found by the multilingual encoder."""
        if self.understanding is None:
            return
        from lucidrec.understanding.request import like_phrases_zh

        for s, e, phrase in like_phrases_zh(text):
            if used[s:e].any():
                continue
            idx = self.understanding.match_title(phrase)
            if idx is None or self.item_ids[idx] in pq.like:
                continue
            used[s:e] = True
            pq.like.append(self.item_ids[idx])
            pq.like_titles.append(self.titles[idx])
            pq.like_idx.append(idx)

    def _read_negated(self, clause: str):
        """The value a negated clause names by meaning, when the model reads it clearly (strength at least
        :data:`NEGATION_STRENGTH`, higher than for a soft value: an exclusion removes items). Its strongest
        value, not the most specific one: "no tape" excludes every tape."""
        u = self.understanding
        if u is None or u.grounder is None or not clause.strip():
            return None
        got = u.ground_clause(clause.strip())
        best = max(got, key=lambda v: v.strength, default=None)
        if best is None or best.strength < NEGATION_STRENGTH or best.value not in self._value_masks:
            return None
        return best

    def _same_kind_as_wanted(self, value: str, text: str, n0: int, end: int, positive) -> bool:
        """Whether ``value`` (what a negated clause reads as) is the kind of thing the rest of the request
        asks for: one holds most (half) of the other's items, so one is the other or inside it (Telephones
        in Office Electronics), as a value named or as the model reads the rest of the request."""
        wanted = [g for _, g in positive]
        rest = (text[:n0] + " " + text[end:]).strip()
        if self.understanding is not None and rest:
            wanted += [v.value for v in self.understanding.ground_clause(rest)]
        a = self._value_masks[value]
        for g in wanted:
            b = self._value_masks.get(g)
            if b is not None and (a & b).sum() >= SAME_KIND_SHARE * min(a.sum(), b.sum()) > 0:
                return True
        return False

    def _check_named_values(self, original: str, text: str, before: np.ndarray, used: np.ndarray, pq: ParsedQuery):
        """A word of a descriptive value's name is no request for that value when the request as a whole
        says otherwise: "filament for my 3D printer" names 3D Printers in what qualifies the filament, "silver
        tape to patch anything" names a safety-sign category called Tape, "the horror of battle" is a war
        film. Such a value is asked for only if the language model's reading of the request supports it
        (at least half as strongly as the value it reads the request as most). A value named only inside
        what qualifies the wanted thing, that no item holds together with another asked-for value, is never
        asked for, whatever named it (the shipped word list maps "3d printer" to 3D Printers). Otherwise a word
        list's phrase is the user's override and stays; so do
        identity fields (a brand) and exclusions ("no horror"), and
        so does any named value when the model reads no value clearly (its strongest below the threshold), or
        when the request says nothing besides value names."""
        from lucidrec.understanding.request import action_clause, wanted_and_qualifier

        u = self.understanding
        if u is None or u.grounder is None or not pq.genres:
            return
        plain = " ".join("".join(" " if b else ch for ch, b in zip(text, before)).split())
        split = wanted_and_qualifier(plain)
        if not self._residual(original, text, used) and split is None:
            # A request made only of value names ("action comedy horror") means exactly those, except a
            # compound of two that no item is both ("paper shredder"): its last word says what is wanted.
            self._drop_disjoint_named(text, "", used, pq, None, compounds_only=True)
            return
        from lucidrec.understanding.grounding import IDENTITY_FIELDS

        # What the request asks for: the text the grammar left, plus the words naming the asked-for values
        # (not the excluded ones: "a comedy, no romance" is read as "a comedy").
        keep = ~used.copy()
        for g in pq.genres:
            for s, e, _ in pq.spans.get(g, []):
                keep[s:e] = True
        keep &= ~before
        kept = " ".join("".join(ch if k else " " for ch, k in zip(text, keep)).split())
        support = None
        acted_from = action_clause(text)
        for g in list(pq.genres):
            spans = pq.spans.get(g, [])
            if not spans or self.field_of.get(g, "").lower() in IDENTITY_FIELDS:
                continue
            # Named only in what qualifies the wanted thing, and no item is both ("3D Printers" for "filament
            # for my 3D printer"): another thing, not the one asked for. "a funny film for kids" stays: films
            # can be both.
            others = [self._value_masks[o] for o in pq.genres if o != g]
            in_qualifier = (
                split is not None
                and all(text[s:e] in split[1] for s, e, _ in spans)
                and bool(others)
                and not any((self._value_masks[g] & m).any() for m in others)
            )
            # Named only in what the wanted thing acts on ("labels" of "a gadget that prints name labels"), not
            # by the verb itself ("something to vacuum the floor" asks for a vacuum).
            acted_on = acted_from is not None and all(s0 >= acted_from for s0, _, _ in spans)
            if any(via for _, _, via in spans) and not in_qualifier:
                continue  # a word list is the user's override: only the request's structure outranks it
            if g not in u.grounder.index_of_value and not (in_qualifier or acted_on):
                continue  # a value the model does not ground (too small or too broad) stays as named
            if not (in_qualifier or acted_on):
                support = u.support(kept) if support is None else support
                if support.get(g, 0.0) >= NAMED_VALUE_SUPPORT or support.get("", 0.0) < u.grounder.threshold:
                    continue  # supported, or the model reads nothing clearly enough to overrule the user's word
            pq.genres.remove(g)
            pq.fields.pop(g, None)
            words = ", ".join(f"'{text[s:e]}'" for s, e, _ in spans)
            for s, e, _ in spans:
                if split is not None and text[s:e] in split[1]:
                    pq.qualifier = split[1]  # "for my 3D printer": read, neither matched nor embedded
                    q0 = text.find(split[1])
                    if q0 >= 0:
                        used[q0 : q0 + len(split[1])] = True
                else:
                    used[s:e] = False  # its words go back to the text the model reads and embeds
            if acted_on and not in_qualifier:
                pq.notes.append(f"{words} also names the category {g}, but it is what the wanted thing acts on")
            else:
                pq.notes.append(f"{words} also names the category {g}, but the request as a whole reads otherwise")
        self._drop_disjoint_named(text, kept, used, pq, support)

    def _drop_disjoint_named(
        self, text: str, kept: str, used: np.ndarray, pq: ParsedQuery, support, compounds_only: bool = False
    ):
        """Two descriptive values named in one request that no item holds together ("ring binders" names
        Binders and, by its first word, a small category called Rings): asking for both would find nothing,
        so the model's reading of the request decides: a value it does not support (or cannot ground at all:
        too small to learn) gives way to one it does. When it supports both ("pens and pencils") both stay.
        Word-list phrases are overrides and always stay; "or" requests ask for any one and are left alone.
        Two such values named as one compound noun ("paper shredder") keep the last word's (the head's), whatever
        the model reads; ``compounds_only``: only that rule (a request made of value names alone)."""
        from lucidrec.understanding.grounding import IDENTITY_FIELDS

        u = self.understanding
        if pq.genre_mode == "any" or len(pq.genres) < 2:
            return
        named = [
            g
            for g in pq.genres
            if pq.spans.get(g)
            and self.field_of.get(g, "").lower() not in IDENTITY_FIELDS
            and not any(via for _, _, via in pq.spans[g])
        ]
        if len(named) < 2:
            return
        if not compounds_only:
            support = u.support(kept) if support is None else support
        support = support or {}
        for g in sorted(named, key=lambda v: support.get(v, 0.0)):
            if g not in pq.genres:
                continue
            rivals = [o for o in named if o != g and o in pq.genres]
            if not rivals or any((self._value_masks[g] & self._value_masks[o]).any() for o in rivals):
                continue
            best = max(rivals, key=lambda o: support.get(o, 0.0))
            modifier = _compound_modifier(text, pq.spans[g], pq.spans[best])
            if modifier is not None:
                # "paper shredder", "printer paper", "binder clips": two words naming values with nothing but
                # a space between are one compound noun, whose last word says what the thing is (in English
                # and Chinese alike); the first only says which kind.
                drop, keep = (g, best) if modifier == 0 else (best, g)
                why = f"but in '{_span_text(text, pq.spans[g], pq.spans[best])}' it only says which kind of {keep}"
                pq.compound_heads.append(keep)
            elif compounds_only:
                continue
            elif support.get(best, 0.0) < NAMED_VALUE_SUPPORT or support.get(g, 0.0) >= NAMED_VALUE_SUPPORT:
                continue  # "pens and pencils": the model reads both, so both are asked for (either will do)
            else:
                drop, keep, why = g, best, f"which no {best} item is in"
            pq.genres.remove(drop)
            pq.fields.pop(drop, None)
            for s, e, _ in pq.spans[drop]:
                used[s:e] = False  # its words go back to the text the model reads and embeds
            words = ", ".join(f"'{text[s:e]}'" for s, e, _ in pq.spans[drop])
            pq.notes.append(f"{words} also names the category {drop}, {why}; {keep} was kept")

    def _meet_named_maker(self, text: str, pq: ParsedQuery):
        """A word naming a value that no item of the asked-for maker is in stands for the value that carries
        the same word, is about it (most of its items' titles say the word) and holds most of the maker's
        items that say it, the purest such value first (not "Tapes, Adhesives & Sealants", which holds the
        maker's glues too): in "Gorilla tape", "tape"
        names a category called Tape in which Gorilla makes nothing, while its duct tapes are Adhesive Tapes.
        Asking for both as named would find nothing and relax the user's own words; the maker is explicit
        and stays. Ties go to the broader value (Adhesive Tapes over Duct Tape, which holds the same Gorilla
        items). Word-list phrases are overrides and stay as they are; so do "or" requests and values no maker
        item is in under any name."""
        from lucidrec.understanding.grounding import IDENTITY_FIELDS

        if pq.genre_mode == "any" or not self.multi_field:
            return
        makers = [g for g in pq.genres if self.field_of.get(g, "").lower() in IDENTITY_FIELDS]
        if not makers:
            return
        made = np.logical_or.reduce([self._value_masks[b] for b in makers])
        for g in list(pq.genres):
            spans = pq.spans.get(g, [])
            if g in makers or not spans or any(via for _, _, via in spans) or (self._value_masks[g] & made).any():
                continue
            words = {_stem(w) for w in _words(g)}
            if not words:
                continue
            saying = set.intersection(*(self._token_index.get(w, set()) for w in words))
            best = None
            for v in self.vocabulary:
                if v == g or v in pq.genres or self.field_of.get(v, "").lower() in IDENTITY_FIELDS:
                    continue
                if not words <= {_stem(w) for w in _words(v)}:
                    continue
                items = np.flatnonzero(self._value_masks[v])
                says = saying.intersection(items.tolist())
                if len(says) < MAKER_WORD_SHARE * len(items):
                    continue
                # The maker's items that say the word, then how purely the value is about it, then breadth.
                key = (int(made[list(says)].sum()), len(says) / len(items), len(items))
                if key[0] and (best is None or key > best[0]):
                    best = (key, v)
            if best is None:
                continue
            v = best[1]
            pq.genres[pq.genres.index(g)] = v
            pq.fields.pop(g, None)
            if self.field_of.get(v):
                pq.fields[v] = self.field_of[v]
            pq.spans[v] = pq.spans.pop(g)
            named = ", ".join(f"'{text[s:e]}'" for s, e, _ in spans)
            pq.notes.append(
                f"{named} names the category {g}, which no {' / '.join(makers)} item is in; read as {v}, which "
                "carries the same word"
            )

    def _ground(self, original: str, text: str, used: np.ndarray, pq: ParsedQuery):
        """Soft values for what the grammar left: the request's free text, grounded in the catalogue by the
        language model. A field already asked for by name keeps the user's value only."""
        if self.understanding is None:
            return
        if not self._residual(original, text, used):
            if pq.like_idx and not (pq.genres or pq.exclude_genres):
                pq.soft = self._like_values(pq)
            return
        kept = "".join(" " if u else ch for ch, u in zip(text, used))
        # Punctuation left at either end by a removed part ("销毁旧文件的机器，[评分四星以上]") means nothing,
        # but the encoder reads it: a trailing comma moved this request from Shredders to Document Scanners.
        kept = " ".join(kept.split()).strip(_EDGE_PUNCTUATION)
        values, qualifier = self.understanding.ground(kept, excluded=pq.exclude_genres)
        named = set(pq.genres) | set(pq.exclude_genres)
        # A single-valued field asked for by name keeps the user's value (an item is in one category); a
        # field whose items hold several values (genres) is open to what the rest of the request reads as
        # ("a suspenseful mystery": Mystery by name, Thriller read from "suspenseful"), and so is a field
        # only excluded from ("no romance").
        asked = set(pq.genres)
        named_fields = {self.field_of.get(g, "") for g in asked} if self.multi_field else ({""} if asked else set())
        named_fields = {f for f in named_fields if self._single_valued_field(f)}
        heads = [self._value_masks[g] for g in pq.compound_heads if g in self._value_masks]
        named_masks = [self._value_masks[g] for g in pq.genres if g in self._value_masks]

        def apart(masks, value) -> bool:  # masks given, and no item of any of them holds ``value``
            return bool(masks) and not any((m & self._value_masks[value]).any() for m in masks)

        soft = []
        for v in values:
            fld = v.field if self.multi_field else ""
            if v.value in named or fld in named_fields or v.value not in self._value_masks:
                continue
            if any(not (self._value_masks[g] & ~self._value_masks[v.value]).any() for g in pq.genres):
                continue  # implied by a value asked for by name (Additive Manufacturing, of the filament)
            if apart(heads, v.value):
                continue  # "paper shredder": the modifier's word read again as Paper; no shredder is paper
            if v.within and apart(named_masks, v.value):
                # Narrowed among the items of a broader value (CatalogGrounder.narrow) to one that no item of a
                # value the user named holds ("floor", left over from "something to vacuum the workshop floor",
                # narrowed to Floor Mats, which no vacuum is): the user's own words rule it out.
                continue
            soft.append({"field": v.field, "value": v.value, "strength": round(v.strength, 3)})
            if v.within:
                soft[-1]["within"] = {"value": v.within, "holding": v.holding, "nearest": v.nearest}
        if not soft and pq.like_idx and not named:
            soft = self._like_values(pq)
        soft = self._with_joint_step(soft)
        pq.soft = soft
        if soft and qualifier:
            pq.qualifier = qualifier
            start = text.find(qualifier)  # the qualifier's words are read, not embedded (they name another thing)
            if start >= 0:
                used[start : start + len(qualifier)] = True

    def _single_valued_field(self, field: str) -> bool:
        """Whether no item holds two values of ``field`` ("" is the one field of a single-field catalogue)."""
        if self.multi_field:
            return field in self.single_valued
        if self._one_value_per_item is None:
            held = np.zeros(len(self.titles), np.int32)
            for mask in self._value_masks.values():
                held += mask
            self._one_value_per_item = bool((held <= 1).all())
        return self._one_value_per_item

    def _like_values(self, pq: ParsedQuery) -> list[dict]:
        """"something like Star Wars": prefer items of the named item's kind, those sharing the most of its
        descriptive values first (all five of Star Wars' genres, then four, then three, ...). The named item
        also joins the history, which brings what people who liked it liked; this says what kind of item
        was asked for."""
        grounder = self.understanding.grounder if self.understanding is not None else None
        if grounder is None:
            return []
        ref = pq.like_idx[0]
        own = [k for k, (_, v) in enumerate(grounder.pairs) if v in self._value_masks and self._value_masks[v][ref]]
        if not own:
            return []
        own.sort(key=lambda k: grounder.log_count[k])
        values = [grounder.pairs[k][1] for k in own]
        field, title = grounder.pairs[own[0]][0], self.titles[ref]
        lowest = max(1, len(values) - 3)
        return [
            {"field": field, "value": values, "strength": 1.0, "like": title, "min_shared": m}
            for m in range(len(values), lowest - 1, -1)
        ]

    def _with_joint_step(self, soft: list[dict]) -> list[dict]:
        """"cartoons the kids can watch" reads as Children's and Animation about equally: where items hold
        several values of one field (genres), the items holding all of them come first, then each."""
        tau = self.understanding.grounder.threshold
        plain = [v for v in soft if isinstance(v["value"], str)]
        if len(plain) < 2:
            return soft
        top = max(v["strength"] for v in plain)
        close = [v for v in plain if v["field"] == plain[0]["field"] and v["strength"] >= max(tau, 0.85 * top)]
        if len(close) < 2:
            return soft
        values = [v["value"] for v in close]
        both = np.logical_and.reduce([self._value_masks[v] for v in values])
        nested = any(not (self._value_masks[a] & ~self._value_masks[b]).any() for a in values for b in values if a != b)
        if not both.any() or nested:
            return soft  # nobody holds them all, or one lies inside another (a category path): the ladder says it
        joint = {"field": close[0]["field"], "value": values, "strength": round(min(v["strength"] for v in close), 3)}
        return [joint] + soft

    def soft_masks(self, pq: ParsedQuery) -> list[tuple[dict, np.ndarray]]:
        """One (constraint, mask) per soft value, most specific first: a ladder the ranking climbs down. A
        step with several values (what a "like" reference is) needs ``min_shared`` of them (default all)."""
        out = []
        for v in pq.soft:
            values = v["value"] if isinstance(v["value"], list) else [v["value"]]
            if not all(x in self._value_masks for x in values):
                continue
            c = {"type": "soft", "field": v["field"], "value": v["value"], "strength": v["strength"]}
            if v.get("like"):
                c["like"] = v["like"]
            if v.get("within"):
                c["within"] = dict(v["within"])
            need = int(v.get("min_shared", len(values)))
            if need < len(values):
                c["min_shared"] = need
            out.append((c, np.sum([self._value_masks[x] for x in values], axis=0) >= need))
        return out

    def constraint_masks(self, pq: ParsedQuery) -> list[tuple[dict, np.ndarray]]:
        """One (constraint, mask over the catalog's items) pair per constraint. Items of unknown year fail a
        year bound."""
        out: list[tuple[dict, np.ndarray]] = []
        for g in pq.exclude_genres:
            out.append((self._tagged({"type": "exclude_genre", "value": g}, g), ~self._value_masks[g]))
        if pq.year is not None:
            lo, hi = pq.year
            with np.errstate(invalid="ignore"):
                out.append(({"type": "year", "value": [lo, hi]}, (self.years >= lo) & (self.years <= hi)))
        for name, (lo, hi) in pq.ranges.items():
            arr = self.numeric[name]
            mask = _in_range(arr, lo, hi)
            c = {"type": "range", "field": name, "value": [lo, hi], "unit": self.numeric_spec[name].get("symbol", "")}
            out.append((c, mask))
        if pq.genres and self.multi_field:
            # Values of one single-valued field (two brands) are alternatives; different fields all hold.
            groups: dict[str, list[str]] = {}
            for g in pq.genres:
                groups.setdefault(self.field_of.get(g, ""), []).append(g)
            for name, values in groups.items():
                if len(values) == 1 or name in self.single_valued or pq.genre_mode == "any":
                    anym = np.logical_or.reduce([self._value_masks[g] for g in values])
                    out.append(({"type": "genre_any", "field": name, "value": list(values)}, anym))
                else:
                    for g in values:
                        out.append(({"type": "genre", "field": name, "value": g}, self._value_masks[g].copy()))
        elif pq.genres:
            if pq.genre_mode == "any" or len(pq.genres) == 1:
                anym = np.logical_or.reduce([self._value_masks[g] for g in pq.genres])
                out.append(({"type": "genre_any", "value": list(pq.genres)}, anym))
            else:
                for g in pq.genres:
                    out.append(({"type": "genre", "value": g}, self._value_masks[g].copy()))
        out += self.soft_masks(pq)
        for c, _ in out:  # how the value is shown in Chinese (the vocabulary file's name, else its own)
            v = c.get("value")
            if isinstance(v, str):
                c["display_zh"] = self.vocab.display_name(v, "zh")
            elif isinstance(v, list) and all(isinstance(x, str) for x in v):
                c["display_zh"] = [self.vocab.display_name(x, "zh") for x in v]
        return out

    def _tagged(self, c: dict, value: str) -> dict:
        """A constraint names its field when the catalogue has several ("brand", "category_3")."""
        if self.multi_field and value in self.field_of:
            c["field"] = self.field_of[value]
        return c

    # ------------------------------------------------------------------ references
    def _parse_references(self, text: str, used: np.ndarray, pq: ParsedQuery):
        found: list[int] = []
        lookups = 0
        fuzzy = [_MAX_FUZZY_LOOKUPS]  # shared by this parse's lookups (a local: the parser serves threads)
        for m in _QUOTED.finditer(text):
            idx = self._match_title(m.group(1).split(), exact_only=False, whole=True)
            if idx is not None:
                found.append(idx)
                used[m.start() : m.end()] = True
                self._consume_trigger_before(text, m.start(), used)
        for m in _LIKE_EN.finditer(text):
            if used[m.start() : m.end()].any():
                continue
            if m.group(0).startswith("like") and _VERB_LIKE.search(text[: m.start()]):
                continue  # "I'd like a comedy" is a wish, not a reference ("something like X" still is)
            lookups += 1
            if lookups > _MAX_REFERENCE_LOOKUPS:
                break
            hit = self._title_after(text, m.end(), used, fuzzy=fuzzy)
            if hit is not None:
                idx, end = hit
                found.append(idx)
                used[m.start() : end] = True
        for m in _LIKE_ZH.finditer(text):
            if used[m.start() : m.end()].any():
                continue
            lookups += 1
            if lookups > _MAX_REFERENCE_LOOKUPS:
                break
            hit = self._title_after(text, m.end(), used, zh=True, fuzzy=fuzzy)
            if hit is not None:
                idx, end = hit
                found.append(idx)
                used[m.start() : end] = True
                tail = re.match(r"\s*(?:一样|差不多|相似|类似|那样|这样)?(?:的)?", text[end:])
                if tail:
                    used[end : end + tail.end()] = True
        for idx in found:
            if idx not in pq.like_idx:
                pq.like_idx.append(idx)
                pq.like.append(self.item_ids[idx])
                pq.like_titles.append(self.titles[idx])

    def _consume_trigger_before(self, text: str, start: int, used: np.ndarray):
        before = text[:start]
        m = re.search(
            r"(?:(?:something|anything|movies?|films?)\s+)?(?:like|similar to)\s*$|(?:像|类似于?)\s*$",
            before,
        )
        if m:
            used[m.start() : start] = True

    def _title_after(
        self, text: str, start: int, used: np.ndarray, zh: bool = False, fuzzy: list[int] | None = None
    ) -> tuple[int, int] | None:
        """The longest catalog title starting at ``start`` (in words); returns (item, end offset)."""
        stop = len(text)
        m = re.compile(r"[,.;!?，。；！？]" + (r"|[\u4e00-\u9fff]" if zh else "")).search(text, start)
        if m:
            stop = m.start()
        words = [(w.group(0), w.start() + start, w.end() + start) for w in re.finditer(r"[\w'&:-]+", text[start:stop])]
        words = [w for w in words if not used[w[1]]][:_MAX_TITLE_WORDS]
        if not words:
            return None
        for n in range(len(words), 0, -1):
            idx = self._match_title([w[0] for w in words[:n]], exact_only=True)
            if idx is not None:
                end = words[n - 1][2]
                # "like Heat (1995)" / "like Heat 1995": the year belongs to the reference.
                y = re.match(r"\s*\(?(\d{4})\)?", text[end:])
                if y and self._title_year(idx) == int(y.group(1)):
                    end += y.end()
                return idx, end
        # Small typos: fuzzy match of the first few words, strict cut-off so ordinary words never match.
        for n in range(min(len(words), 6), 0, -1):
            phrase = " ".join(w[0] for w in words[:n]).replace("'", "")
            if len(phrase) < 5:
                break
            if fuzzy is not None:  # the parse's remaining fuzzy lookups
                if fuzzy[0] <= 0:
                    break
                fuzzy[0] -= 1
            close = difflib.get_close_matches(phrase, self._title_keys, n=1, cutoff=0.88)
            if close:
                return self._best(self._title_index[close[0]]), words[n - 1][2]
        # A few words of a long product title, in any order ("like the Stanley staples"): the most popular
        # item whose title holds every one of at least two content words.
        for n in range(min(len(words), 6), 1, -1):
            toks = [_stem(w[0].replace("'", "")) for w in words[:n]]
            content = [t for t in toks if t not in self._stop_en]
            if len(content) < 2 or toks[-1] in self._stop_en:
                continue
            sets = [self._token_index.get(t) for t in content]
            if any(x is None for x in sets):
                continue
            common = set.intersection(*sets)
            if common:
                return self._best(sorted(common)), words[n - 1][2]
        return None

    def _match_title(self, words: list[str], exact_only: bool, whole: bool = False) -> int | None:
        key = " ".join(re.findall(r"[\w']+", " ".join(words))).replace("'", "")
        year = None
        ym = re.match(r"^(.*?)\s+(\d{4})$", key)
        if key not in self._title_index and ym:
            key, year = ym.group(1), int(ym.group(2))
        hits = self._title_index.get(key)
        if hits is None and not exact_only and len(key) >= 4:
            close = difflib.get_close_matches(key, self._title_keys, n=1, cutoff=0.88)
            hits = self._title_index[close[0]] if close else None
        if not hits:
            return None
        if year is not None:
            same = [i for i in hits if self._title_year(i) == year]
            hits = same or hits
        return self._best(hits)

    def _title_year(self, idx: int) -> int | None:
        m = re.search(r"\((\d{4})\)\s*$", self.titles[idx])
        return int(m.group(1)) if m else None

    def _best(self, hits: list[int]) -> int:
        return max(hits, key=lambda i: (self.popularity[i], -i))

    # ------------------------------------------------------------------ years
    def _decade(self, d: int) -> int:
        """Two-digit decade -> full decade, in the century that overlaps the catalog."""
        options = [1900 + d, 2000 + d]
        if self.year_min is not None:
            inside = [y for y in options if y + 9 >= self.year_min and y <= self.year_max]
            if len(inside) == 1:
                return inside[0]
        return 1900 + d if d >= 30 else 2000 + d

    def _parse_years(self, text: str, used: np.ndarray, pq: ParsedQuery):
        """The request's years: every year phrase (:meth:`_year_patterns`, first match wins a span) is a
        two-sided range or a one-sided bound (:meth:`_take_years`), then they combine into ``pq.year``
        (:meth:`_combine_years`)."""
        ranges: list[tuple[int, int]] = []  # two-sided: a year, a decade, "between" (several = either of them)
        bounds: list[tuple[int, int]] = []  # one-sided: before / after / since / recent (all must hold)
        for pat, read, kind in self._year_patterns():
            for m in re.finditer(pat, text):
                span = read(m)
                if span is not None:
                    self._take_years(m, *span, kind, text, used, pq, ranges, bounds)
        self._combine_years(ranges, bounds, pq)

    def _year_patterns(self) -> list[tuple[str, Callable, str]]:
        """(pattern, reader, kind) for every year phrase, in the order they are tried: a reader turns a match
        into (lo, hi) or None (not a year); kind is ``explicit`` (two-sided, "between"), ``open`` ("before
        X": a bound), ``relative`` ("recent": a bound) or ``named`` (a year or decade)."""
        return (
            [(p, r, "explicit") for p, r in _BETWEEN_YEARS]
            + [(p, r, "open") for p, r in self._bound_year_patterns()]
            + [(_ZH_DECADE, self._zh_decade_span, "explicit")]
            + [(r"(?<!\w)" + _DECADE + r"(?!\w)", self._decade_span, "named")]
            + [(p, r, "relative") for p, r in self._relative_year_patterns()]
            + [(p, r, "named") for p, r in _SINGLE_YEARS]
        )

    def _catalogue_years(self) -> tuple[int, int]:
        """The catalogue's first and last years (0 and 9999 when no item has a year)."""
        lo = self.year_min if self.year_min is not None else 0
        hi = self.year_max if self.year_max is not None else 9999
        return lo, hi

    def _bound_year_patterns(self) -> list[tuple[str, Callable]]:
        """"before the 90s", "after 1995", "since 2000", "1990年以前": one-sided, up to the catalogue's end."""
        lo_cat, hi_cat = self._catalogue_years()
        return [
            (_BEFORE + r"\s*" + _DECADE + r"(?!\w)", lambda m: (lo_cat, self._decade_span(m)[0] - 1)),
            (_AFTER + r"\s*" + _DECADE + r"(?!\w)", lambda m: (self._decade_span(m)[1] + 1, hi_cat)),
            (_BEFORE + r"\s*(\d{4})\b", lambda m: (lo_cat, int(m[1]) - 1)),
            (_AFTER + r"\s*(\d{4})\b", lambda m: (int(m[1]) + 1, hi_cat)),
            (r"\bsince\s+(\d{4})\b", lambda m: (int(m[1]), hi_cat)),
            (r"(\d{4})\s*年?\s*(?:以前|之前|前)", lambda m: (lo_cat, int(m[1]) - 1)),
            (r"(\d{4})\s*年?\s*(?:以来)", lambda m: (int(m[1]), hi_cat)),
            (r"(\d{4})\s*年?\s*(?:以后|之后|后)", lambda m: (int(m[1]) + 1, hi_cat)),
        ]

    def _relative_year_patterns(self) -> list[tuple[str, Callable]]:
        """"not too old", "recent", "old" (English and Chinese): years counted from the catalogue's newest."""
        lo_cat, hi_cat = self._catalogue_years()
        return [
            (
                r"\b(?:(?:not|nothing|isn't|aren't)\s+(?:too|that|very|so|overly)\s+old|not\s+old|fairly\s+recent|newer)\b"
                r"|不太老|不要太老|别太老",
                lambda m: (hi_cat - NOT_TOO_OLD_YEARS + 1, hi_cat),
            ),
            (
                r"\b(?:recent|recently\s+released|latest|newest|modern|new\s+releases?)\b|最近|最新|近年|近几年|新片|新上映",
                lambda m: (hi_cat - RECENT_YEARS + 1, hi_cat),
            ),
            (
                r"(?<!year )(?<!years )(?<!-)\b(?:old|older|oldies|classic|classics|vintage|golden\s+age)\b"
                r"|老电影|老片|经典老片|怀旧",
                lambda m: (lo_cat, hi_cat - OLD_YEARS),
            ),
        ]

    def _decade_span(self, m: re.Match) -> tuple[int, int]:
        """The years of the match's :data:`_DECADE` (its last four groups): "the 90s", "early 1980s",
        "late nineties"."""
        part, two, three, word = m.groups()[-4:]
        if word:
            start = _WORD_DECADES[word]
        elif three:
            start = int(three) * 10
        else:
            start = self._decade(int(two))
        lo, hi = start, start + 9
        if part == "early":
            hi = start + 3
        elif part in ("mid", "mid-"):
            lo, hi = start + 3, start + 6
        elif part == "late":
            lo = start + 6
        return lo, hi

    def _zh_decade_span(self, m: re.Match) -> tuple[int, int] | None:
        """Chinese decades: "90年代", "1990年代", "九十年代"; None when the number is not one."""
        v = _zh_number(m.group(1))
        if v is None:
            return None
        start = v if v >= 1000 else (self._decade(v) if v >= 10 else self._decade(v * 10))
        return start, start + 9

    def _take_years(
        self,
        m: re.Match,
        lo: int,
        hi: int,
        kind: str,
        text: str,
        used: np.ndarray,
        pq: ParsedQuery,
        ranges: list[tuple[int, int]],
        bounds: list[tuple[int, int]],
    ) -> None:
        """Record one year phrase (unless an earlier one took its span): an ``explicit`` range given
        backwards is turned round, a negated one becomes its complement (:meth:`_negated_years`), one outside
        the catalogue's years is ignored with a note; ``open`` and ``relative`` phrases are bounds that all
        must hold, the others ranges."""
        if used[m.start() : m.end()].any():
            return
        used[m.start() : m.end()] = True
        phrase = m.group(0).strip()
        if kind == "explicit" and lo > hi:  # "between 1995 and 1990"
            pq.notes.append(f"the years in '{phrase}' were reversed; read as {hi}-{lo}")
            lo, hi = hi, lo
        if kind != "open":
            span = self._negated_years(m, lo, hi, text, used, pq)
            if span is None:
                return
            lo, hi = span
        if self.year_min is not None and (lo > hi or hi < self.year_min or lo > self.year_max):
            pq.notes.append(
                f"no item matches '{phrase}' (this catalog covers {self.year_min}-{self.year_max}); "
                "that year bound was ignored"
            )
            return
        (bounds if kind in ("open", "relative") else ranges).append((lo, hi))

    def _negated_years(
        self, m: re.Match, lo: int, hi: int, text: str, used: np.ndarray, pq: ParsedQuery
    ) -> tuple[int, int] | None:
        """"not from the 90s": the complement of (lo, hi) when a negation precedes the phrase and the
        complement is one range of the catalogue's years (None, with a note, when it is not); else (lo, hi)."""
        neg = re.search(
            r"(?:\b(?:not|no|except|excluding|without|nothing)\s+(?:from\s+|in\s+)?|不要|不是|除了)$",
            text[: m.start()],
        )
        if not neg:
            return lo, hi
        used[neg.start() : m.start()] = True
        phrase = m.group(0).strip()
        if self.year_max is not None and hi >= self.year_max:
            return self.year_min, lo - 1
        if self.year_min is not None and lo <= self.year_min:
            return hi + 1, self.year_max
        pq.notes.append(f"excluding the years in the middle ('{phrase}') is not supported; ignored")
        return None

    @staticmethod
    def _combine_years(ranges: list[tuple[int, int]], bounds: list[tuple[int, int]], pq: ParsedQuery) -> None:
        """"from 1996 or 1997", "the 80s and 90s": the span of the named years; "before"/"after"/"recent"
        bounds then all apply on top ("90s movies after 1995" = 1996-1999). Contradicting ones: a note."""
        if not ranges and not bounds:
            return
        lo = min([r[0] for r in ranges], default=-(10**9))
        hi = max([r[1] for r in ranges], default=10**9)
        for b_lo, b_hi in bounds:
            lo, hi = max(lo, b_lo), min(hi, b_hi)
        if lo > hi:
            pq.notes.append(
                "the year constraints contradict each other ("
                + ", ".join(f"{a}-{b}" for a, b in ranges + bounds)
                + "); the year was ignored"
            )
            return
        pq.year = (lo, hi)

    # ------------------------------------------------------------------ numbers with units
    def _range_patterns(self) -> list[tuple[re.Pattern, str]]:
        """(pattern, kind) pairs for the numeric fields, built once: kind is below / above / between /
        around. A quantity is an optional "$", a number and an optional unit of one of the fields."""
        if hasattr(self, "_range_res"):
            return self._range_res
        units: dict[str, tuple[str, float]] = {}
        words: dict[str, str] = {}
        cmp_below: dict[str, str] = {}
        cmp_above: dict[str, str] = {}
        for name, spec in self.numeric_spec.items():
            for u, factor in spec.get("units", {}).items():
                units.setdefault(_fold(u), (name, float(factor)))
            for lang_words in spec.get("words", {}).values():
                for w in lang_words:
                    words.setdefault(_fold(w), name)
            for w in (w for ws in spec.get("below", {}).values() for w in ws):
                cmp_below.setdefault(_fold(w), name)
            for w in (w for ws in spec.get("above", {}).values() for w in ws):
                cmp_above.setdefault(_fold(w), name)
        self._units, self._field_words = units, words
        self._cmp_fields = {**cmp_below, **cmp_above}

        def alt(items) -> str:
            return "|".join(re.escape(x) for x in sorted(items, key=len, reverse=True))

        latin_units = [u for u in units if not _is_cjk(u) and u != "$"]
        cjk_units = [u for u in units if _is_cjk(u)]
        unit_re = "|".join(x for x in (alt(latin_units) and rf"(?:{alt(latin_units)})(?![a-z])", alt(cjk_units)) if x)
        sym = r"(\$)?\s*" if "$" in units else r"()"
        q = rf"{sym}(\d+(?:\.\d+)?)\s*({unit_re})?" if unit_re else rf"{sym}(\d+(?:\.\d+)?)()"
        below = alt(
            [
                "under",
                "below",
                "less than",
                "lower than",
                "at most",
                "up to",
                "no more than",
                "not more than",
                "max",
                "maximum",
                "within",
                "<=",
                "<",
                *cmp_below,
            ]
        )
        above = alt(
            [
                "over",
                "above",
                "more than",
                "greater than",
                "at least",
                "min",
                "minimum",
                "no less than",
                "starting at",
                ">=",
                ">",
                *cmp_above,
            ]
        )
        zh_below, zh_above = "低于|少于|不超过|不到|不高于|小于|便宜于|轻于", "高于|超过|多于|至少|大于|不低于|重于"
        res = [
            (rf"\bbetween\s+{q}\s+and\s+{q}", "between"),
            (rf"\bfrom\s+{q}\s+to\s+{q}", "between"),
            (rf"{q}\s*(?:-|~|to|到|至)\s*{q}", "between"),
            (rf"(?:(?<![a-z])(?:{below})|{zh_below})\s*{q}", "below"),
            (rf"(?:(?<![a-z])(?:{above})|{zh_above})\s*{q}", "above"),
            (rf"{q}\s*(?:or less|or under|max\b|以下|以内|之内|或以下)", "below"),
            (rf"{q}\s*(?:or more|and up|and above|plus\b|\+|以上|或以上|起)", "above"),
            (rf"\b(?:around|about|approximately|roughly|大约|大概)\s*{q}", "around"),
            (rf"{q}\s*(?:左右)", "around"),
        ]
        self._range_res = [(re.compile(p), kind) for p, kind in res]
        return self._range_res

    def _quantity(self, sym: str | None, number: str, unit: str | None, text: str, start: int, end: int):
        """(field, value in the field's base unit, how the field was known) for one quantity, or None."""
        value = float(number)
        if unit:
            name, factor = self._units[_fold(unit)]
            return name, value * factor, "unit"
        if sym:
            name, factor = self._units["$"]
            return name, value * factor, "unit"
        phrase = text[start:end]
        for w, name in self._cmp_fields.items():
            if w in phrase:
                return name, value, "comparison"
        # "price under 30", "价格低于30": a field word just before the comparison.
        before = text[max(0, start - 25) : start]
        for w, name in sorted(self._field_words.items(), key=lambda kv: -len(kv[0])):
            if re.search(rf"(?:(?<![a-z]){re.escape(w)}(?![a-z])|{re.escape(w)})[\s:：]*(?:is|of|at|在)?\s*$", before):
                return name, value, "word"
        if len(self.numeric) == 1:
            return next(iter(self.numeric)), value, "only field"
        return None

    def _parse_ranges(self, text: str, used: np.ndarray, pq: ParsedQuery):
        if not self.numeric:
            return
        bounds: dict[str, list[float | None]] = {}

        def add(name: str, lo: float | None, hi: float | None):
            cur = bounds.setdefault(name, [None, None])
            if lo is not None:
                cur[0] = lo if cur[0] is None else max(cur[0], lo)
            if hi is not None:
                cur[1] = hi if cur[1] is None else min(cur[1], hi)

        for rx, kind in self._range_patterns():
            for m in rx.finditer(text):
                if used[m.start() : m.end()].any():
                    continue
                g = m.groups()
                if kind == "between":
                    a = self._quantity(g[0] or g[3], g[1], g[2] or g[5], text, m.start(), m.end())
                    b = self._quantity(g[3] or g[0], g[4], g[5] or g[2], text, m.start(), m.end())
                    if a is None or b is None or a[0] != b[0] or "unit" not in (a[2], b[2]) and a[2] != "word":
                        continue  # "2-3 pack": two numbers without a unit or field are not a range
                    lo, hi = sorted((a[1], b[1]))
                    name = a[0]
                else:
                    qty = self._quantity(g[0], g[1], g[2], text, m.start(), m.end())
                    if qty is None:
                        continue
                    name, v, _ = qty
                    lo, hi = {"below": (None, v), "above": (v, None), "around": (0.8 * v, 1.2 * v)}[kind]
                    neg = _RANGE_NEGATION.search(text[: m.start()])
                    if neg is not None and kind != "around":
                        # "not over $50", "nothing under 2 lbs", "不要超过30美元": the opposite side; the
                        # negation word is this bound's, not a clause excluding catalogue values.
                        lo, hi = hi, lo
                        used[neg.start() : m.start()] = True
                add(name, lo, hi)
                used[m.start() : m.end()] = True
                self._consume_field_word(text, m.start(), used)
        for name, spec in self.numeric_spec.items():
            arr = self.numeric[name]
            for kind, pct in (("low", 25), ("high", 75)):
                for w in sorted({_fold(x) for ws in spec.get(kind, {}).values() for x in ws}, key=len, reverse=True):
                    rx = re.escape(w) if _is_cjk(w) else rf"(?<![a-z]){re.escape(w)}(?![a-z])"
                    for m in re.finditer(rx, text):
                        if used[m.start() : m.end()].any():
                            continue
                        used[m.start() : m.end()] = True
                        cut = round(float(np.nanpercentile(arr, pct)), 2)
                        add(name, None, cut) if kind == "low" else add(name, cut, None)
        for name, (lo, hi) in bounds.items():
            arr = self.numeric[name]
            ok = _in_range(arr, lo, hi)
            if lo is not None and hi is not None and lo > hi:
                pq.notes.append(f"the {name} bounds contradict each other ({lo:g} > {hi:g}); they were ignored")
            elif not ok.any():
                pq.notes.append(f"no item has a {name} in {_bound_text(lo, hi)}; that bound was ignored")
            else:
                pq.ranges[name] = [lo, hi]

    def _consume_field_word(self, text: str, start: int, used: np.ndarray):
        before = text[max(0, start - 25) : start]
        for w in sorted(self._field_words, key=len, reverse=True):
            m = re.search(rf"{re.escape(w)}[\s:：]*(?:is|of|at)?\s*$", before)
            if m:
                used[max(0, start - 25) + m.start() : start] = True
                return

    # ------------------------------------------------------------------ genres and negations
    def _parse_genres(self, text: str, used: np.ndarray, pq: ParsedQuery, original: str | None = None):
        hits: list[tuple[int, int, str]] = []
        for rx in (self._latin_re, self._cjk_re):
            if rx is None:
                continue
            for m in rx.finditer(text):
                if used[m.start() : m.end()].any():
                    continue
                canon = self.phrases[m.group(1)]
                if canon in self._case_sensitive and original is not None and len(original) == len(text):
                    typed = original[m.start() : m.end()]
                    if not typed.startswith(canon[:1]) or (canon.isupper() and not typed.isupper()):
                        continue  # "a duck" is not the brand Duck; "Duck tape" is
                    if canon in self._phrase_like_names and not (
                        _BRAND_CUE_BEFORE.search(original[: m.start()]) or _BRAND_CUE_AFTER.match(original[m.end() :])
                    ):
                        continue  # "3D打印机" is a 3D printer, not the brand 3D
                hits.append((m.start(), m.end(), canon))
        # Latin and Chinese phrases are found apart; where they overlap ("3d" in "3d打印耗材") the longer wins.
        hits.sort(key=lambda h: (h[0], -(h[1] - h[0])))
        kept: list[tuple[int, int, str]] = []
        for h in sorted(hits, key=lambda h: -(h[1] - h[0])):
            if all(h[1] <= k[0] or h[0] >= k[1] for k in kept):
                kept.append(h)
        hits = sorted(kept)
        negations = []
        for rx in (re.compile(r"\b(?:" + _NEG_EN + r")\b"), re.compile(_NEG_ZH)):
            for m in rx.finditer(text):
                if used[m.start() : m.end()].any():
                    continue
                end_m = _CLAUSE_END.search(text, m.end())
                negations.append((m.start(), m.end(), end_m.start() if end_m else len(text)))
        positive: list[tuple[int, str]] = []
        excluded: list[str] = []
        for s, e, canon in hits:
            pq.spans.setdefault(canon, []).append((s, e, text[s:e] in self._synonym_phrases))
            neg = next((n for n in negations if n[1] <= s and e <= n[2]), None)
            used[s:e] = True
            if neg is not None:
                used[neg[0] : neg[1]] = True
                if canon not in excluded:
                    excluded.append(canon)
            else:
                positive.append((s, canon))
        for n0, n1, end in negations:
            if any(n1 <= s and e <= end for s, e, _ in hits):
                continue
            # "nitrile gloves, not latex": what follows a "no" is no value of this catalogue, so it cannot be
            # excluded; embedding it would pull the results *towards* it, so it is left out of the text.
            rest = "".join(" " if used[n1 + k] else ch for k, ch in enumerate(text[n1:end]))
            words = [w for w in re.findall(r"[\w'-]+", rest) if w not in self._stop_en]
            # "thermometers, not infrared ones": the word plus an asked-for value names a value of its own
            # ("Infrared Thermometers"); that one is excluded.
            narrower = [
                self.phrases[f"{w} {_fold(g)}"]
                for w in words
                for _, g in positive
                if f"{w} {_fold(g)}" in self.phrases and self.phrases[f"{w} {_fold(g)}"] != g
            ]
            if narrower and not used[n0:n1].any():
                used[n0:end] = True
                excluded.extend(v for v in dict.fromkeys(narrower) if v not in excluded)
                continue
            read = self._read_negated(rest) if words and not used[n0:n1].any() else None
            if read is not None and self._same_kind_as_wanted(read.value, text, n0, end, positive):
                read = None  # "a phone without a cord": it reads as the very thing asked for, so it says
                # what the wanted item lacks, not which other kind to exclude
            if read is None and words and text[n0:n1] in _PROPERTY_NEGATIONS and not used[n0:n1].any():
                # "without a cord", "不含酒精": a property the wanted item lacks, which item text states
                # ("cordless", "alcohol-free"); the clause stays in the text the model reads.
                pq.notes.append(f"'{text[n0:end].strip()}' is read as part of what is wanted, not as an exclusion")
                continue
            if read is not None:
                # "不要战争片", "nothing scary": the model reads the clause as one of the catalogue's values.
                used[n0:end] = True
                if read.value not in excluded:
                    excluded.append(read.value)
                pq.notes.append(f"'{text[n0:end].strip()}' read as not {read.value} ({read.strength:.2f})")
                continue
            if words and not used[n0:n1].any():
                used[n0:end] = True
                pq.notes.append(
                    f"'{text[n0:end].strip()}' names nothing this catalogue's fields hold, so it could not be "
                    "excluded; it was left out of the text the model embeds"
                )
        genres: list[str] = []
        for _, g in positive:
            if g not in genres:
                genres.append(g)
        both = [g for g in genres if g in excluded]
        if both:
            pq.notes.append(
                f"{', '.join(both)} was both asked for and excluded; the exclusion was kept "
                "(remove the 'no ...' to ask for it)"
            )
            genres = [g for g in genres if g not in excluded]
        if len(genres) >= 2:
            # "a comedy or a drama": any one is enough. Look for "or" between two asked-for genres (of one
            # field, when the catalogue has several: "HATCHBOX or eSUN filament" keeps the filament).
            groups: dict[str, list[int]] = {}
            for s, g in positive:
                if g in genres:
                    groups.setdefault(self.field_of.get(g, "") if self.multi_field else "", []).append(s)
            for spans in groups.values():
                between = text[min(spans) : max(spans)]
                if len(spans) >= 2 and re.search(r"\b(?:or|either)\b|或|还是", between):
                    pq.genre_mode = "any"
        pq.genres, pq.exclude_genres = genres, excluded
        if self.multi_field:
            pq.fields = {v: self.field_of[v] for v in genres + excluded if v in self.field_of}

    # ------------------------------------------------------------------ residual text
    def _residual(self, original: str, folded: str, used: np.ndarray) -> str:
        kept = "".join(ch if not u else " " for ch, u in zip(original, used))
        kept_f = "".join(ch if not u else " " for ch, u in zip(folded, used))
        # Chinese: drop stop phrases inside the CJK runs (no spaces to split on).
        for sw in self._stop_zh:
            kept_f = kept_f.replace(sw, " " * len(sw))
        out = []
        for m in re.finditer(r"(?:[^\s,.;!?，。；！？、:()\"“”《》]|(?<=\d)\.(?=\d))+", kept_f):
            word = m.group(0).strip("'-")
            if not word or word in self._stop_en or not any(ch.isalnum() for ch in word):
                continue
            if re.fullmatch(r"(?:" + _NEG_EN + r")", word) or re.fullmatch(_NEG_ZH, word):
                # "without" stays before a clause that stayed too ("a phone without a cord": a property the
                # wanted item lacks, see _PROPERTY_NEGATIONS); before an excluded value it went with it.
                after = len(folded) - len(folded[m.end() :].lstrip())
                if not (word in _PROPERTY_NEGATIONS and after < len(used) and not used[after]):
                    continue
            out.append(kept[m.start() : m.end()].strip("'-"))
        return " ".join(out)


def _compound_modifier(text: str, a: list, b: list) -> int | None:
    """0 when the one span of ``a`` directly precedes the one span of ``b`` (only spaces or a hyphen between:
    "paper shredder"), 1 when ``b`` directly precedes ``a``, else None (two mentions apart, or "pens and
    pencils"). The first of the two is the compound's modifier."""
    if len(a) != 1 or len(b) != 1:
        return None
    (sa, ea, _), (sb, eb, _) = a[0], b[0]
    if ea <= sb and re.fullmatch(r"[\s-]*", text[ea:sb]):
        return 0
    if eb <= sa and re.fullmatch(r"[\s-]*", text[eb:sa]):
        return 1
    return None


def _span_text(text: str, a: list, b: list) -> str:
    """The text from the first of two spans to the end of the second ("paper shredder")."""
    return text[min(a[0][0], b[0][0]) : max(a[0][1], b[0][1])]


def relaxation_tiers(
    constraints: list[tuple[dict, np.ndarray]], allowed: np.ndarray
) -> list[tuple[list[dict], np.ndarray]]:
    """Item masks from strict to loose, used in turn when fewer than k items meet every constraint:
    1. every constraint;  2. several required genres read as "any of" them;  3. no year or numeric bound;
    4. no required genre. Exclusions are never relaxed: a "no" is a hard no, and fewer than k items are
    returned instead. Each tier comes with the list of constraints it relaxed."""
    soft = [c for c in constraints if c[0]["type"] == "soft"]
    if soft:
        # Soft values (read by the language model) are a ladder inside every hard tier: items holding the
        # most specific value first, then the broader ones, then the rest of the tier.
        hard = relaxation_tiers([c for c in constraints if c[0]["type"] != "soft"], allowed)
        out: list[tuple[list[dict], np.ndarray]] = []
        for relaxed_hard, m in hard:
            for k, (_, mask) in enumerate(soft):
                out.append((relaxed_hard + [c for c, _ in soft[:k]], m & mask))
            out.append((relaxed_hard + [c for c, _ in soft], m))
        return out
    tiers: list[tuple[list[dict], np.ndarray]] = []

    def add(relaxed: list[dict], active: list[tuple[dict, np.ndarray]]):
        m = allowed.copy()
        for _, mask in active:
            m &= mask
        tiers.append((relaxed, m))

    add([], constraints)
    genre_all = [c for c in constraints if c[0]["type"] == "genre"]
    active = list(constraints)
    relaxed: list[dict] = []
    if len(genre_all) >= 2:
        anym = np.zeros_like(allowed)
        for _, m in genre_all:
            anym |= m
        any_c = ({"type": "genre_any", "value": [c[0]["value"] for c in genre_all]}, anym)
        active = [c for c in active if c[0]["type"] != "genre"] + [any_c]
        relaxed = relaxed + [{"type": "genre_mode", "value": "all -> any"}]
        add(list(relaxed), active)
    bounds = [c for c in active if c[0]["type"] in ("year", "range")]
    if bounds:
        relaxed = relaxed + [c[0] for c in bounds]
        active = [c for c in active if c[0]["type"] not in ("year", "range")]
        add(list(relaxed), active)
    genre_c = [c for c in active if c[0]["type"] in ("genre", "genre_any")]
    if genre_c:
        relaxed = relaxed + [c[0] for c in genre_c]
        active = [c for c in active if c[0]["type"] not in ("genre", "genre_any")]
        add(list(relaxed), active)
    return tiers


def _in_range(arr: np.ndarray, lo: float | None, hi: float | None) -> np.ndarray:
    """Items whose value lies in [lo, hi] (None: open); an unknown value (NaN) is outside every range."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(arr) & (arr >= (-np.inf if lo is None else lo)) & (arr <= (np.inf if hi is None else hi))


def _bound_text(lo, hi, unit: str = "") -> str:
    def num(x) -> str:
        return f"${x:g}" if unit == "$" else f"{x:g}{' ' + unit if unit else ''}"

    if lo is None and hi is None:
        return "any value"
    if lo is None:
        return f"at most {num(hi)}"
    if hi is None:
        return f"at least {num(lo)}"
    return f"{num(lo)}-{num(hi)}"


def range_label(c: dict, lang: str = "en") -> str:
    """'price at most $30', '重量 2-5 lb': one numeric constraint as a person reads it."""
    lo, hi = c["value"]
    unit = c.get("unit", "")
    if lang == "zh":
        u = "美元" if unit == "$" else unit
        if lo is None:
            return f"{c['field']}不超过{hi:g}{u}"
        if hi is None:
            return f"{c['field']}不低于{lo:g}{u}"
        return f"{c['field']}{lo:g}-{hi:g}{u}"
    return f"{c['field']} {_bound_text(lo, hi, unit)}"


__all__ = ["ParsedQuery", "QueryParser", "range_label", "relaxation_tiers"]
