"""Natural-language queries: hard constraints from the catalog's own vocabulary, plus residual text.

``QueryParser.parse("a 90s comedy, no romance")`` gives a :class:`ParsedQuery` with
``genres=["Comedy"]``, ``exclude_genres=["Romance"]``, ``year=(1990, 1999)`` and the residual free text
(what is left once the constraint phrases and stop words are taken out), which is what gets embedded.

What is understood (English and Chinese, mixed freely):

* **categories** — every value of the catalog's categorical fields ("genres" below), with case, plural,
  hyphen and apostrophe variants ("comedies", "sci fi", "childrens"), plus the per-language synonym
  tables in :mod:`lucidrec.query_synonyms` ("funny" -> Comedy, "卡通" -> Animation).
  Several asked-for genres must *all* hold ("a funny animated film" = Comedy and Animation) unless they
  are joined by "or" / "或" ("a comedy or a drama"), which makes any one of them enough.
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

The vocabulary comes from the catalog, so nothing here is tied to MovieLens.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lucidrec.query_synonyms import SYNONYMS

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

_STOP_EN = set(
    """a an the some any something anything somethin one ones movie movies film films flick flicks picture
    pictures show shows me i i'd id im i'm we us you my our want wanted wants would like love please find
    give recommend recommendation recommendations suggest suggestion looking look for to watch see seen
    of in on at with and or but that which who is are be it its it's this these those from by about
    really very quite so too just maybe kind sort type genre genres style please thanks thank
    can could should get got need tonight today tomorrow night weekend good great nice fun
    released made set era year years decade story stories tale tales one""".split()
)
_STOP_ZH = [
    "请",
    "给我",
    "帮我",
    "推荐",
    "我想看",
    "我想要",
    "想看",
    "想要",
    "我要",
    "我",
    "要",
    "看",
    "一部",
    "一些",
    "几部",
    "部",
    "电影",
    "影片",
    "片子",
    "片",
    "的",
    "吧",
    "呢",
    "吗",
    "有没有",
    "关于",
    "适合",
    "里面",
    "里",
    "给",
    "故事",
    "都可以",
    "可以",
    "非常",
    "特别",
    "一样",
    "差不多",
    "相似",
    "类似",
    "什么",
    "好看",
    "类型",
    "一点",
    "和",
    "或者",
    "或",
    "还是",
    "也",
    "都",
    "年代",
    "年",
]

_NEG_EN = (
    r"no|not|non|without|except|excluding|exclude|avoid|nothing|never|don't want|do not want|don't like|"
    r"do not like|dont want|dont like|hate|anything but|other than|minus|isn't|aren't|none of"
)
# "非常" (very) and "特别" (especially) are not negations.
_NEG_ZH = r"不要|不想要|不想看|不看|(?<!特)别|不是|没有|除了|排除|不含|不包括|讨厌|不喜欢|非(?!常)"
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
    text: str = ""  # residual free text; embedded when non-empty
    # Share of the request the residual text stands for: residual words / (residual words + parsed
    # constraints and titles). The embedded text pulls scores in proportion, so "a dark crime thriller"
    # is mostly its two genres (which filter) and only a third "dark" (which scores).
    text_weight: float = 1.0
    notes: list[str] = field(default_factory=list)

    @property
    def has_constraints(self) -> bool:
        return bool(self.genres or self.exclude_genres or self.year)

    def to_dict(self) -> dict[str, Any]:
        return {
            "genres": list(self.genres),
            "genre_mode": self.genre_mode,
            "exclude_genres": list(self.exclude_genres),
            "year": None if self.year is None else [int(self.year[0]), int(self.year[1])],
            "like": list(self.like),
            "like_titles": list(self.like_titles),
            "text": self.text,
            "text_weight": round(self.text_weight, 4),
            "notes": list(self.notes),
        }


# ---------------------------------------------------------------------------------------------- helpers
def _fold(s: str) -> str:
    """Lower-case, unify quotes and dashes, strip accents: the form every match is made in."""
    s = unicodedata.normalize("NFKC", s).lower()
    s = s.replace("’", "'").replace("‘", "'").replace("–", "-").replace("—", "-")
    return "".join(ch for ch in unicodedata.normalize("NFKD", s) if not unicodedata.combining(ch))


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
    out = set()
    for b in base:
        b = " ".join(b.split())
        if not b:
            continue
        out |= {b, b + "s", b + "es"}
        if b.endswith("y"):
            out.add(b[:-1] + "ies")
    return out


def _is_cjk(s: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in s)


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
    """

    def __init__(
        self,
        categories: list[list[str]],
        titles,
        item_ids,
        years,
        popularity=None,
        synonyms: dict[str, dict[str, str]] | None = None,
    ):
        self.item_ids = [str(i) for i in item_ids]
        self.titles = [str(t) for t in titles]
        years = np.asarray(years, dtype=np.float64)
        known = years[np.isfinite(years)]
        self.year_min = int(known.min()) if len(known) else None
        self.year_max = int(known.max()) if len(known) else None
        self.popularity = np.zeros(len(self.titles)) if popularity is None else np.asarray(popularity, np.float64)
        vocab = sorted({c for cats in categories for c in cats})
        self.vocabulary = vocab
        self.years = years
        # One boolean mask per value, built once: constraints are then cheap per request.
        self._value_masks = {v: np.zeros(len(categories), bool) for v in vocab}
        for i, cats in enumerate(categories):
            for c in cats:
                self._value_masks[c][i] = True
        by_fold = {_fold(v): v for v in vocab}
        phrases: dict[str, str] = {}
        for v in vocab:
            for p in _variants(v):
                phrases.setdefault(p, v)
        tables = {lang: dict(t) for lang, t in SYNONYMS.items()}
        for lang, extra in (synonyms or {}).items():
            tables.setdefault(lang, {}).update(extra)
        for table in tables.values():
            for phrase, target in table.items():
                canon = by_fold.get(_fold(target))
                if canon is None:
                    continue  # this catalog has no such value
                for p in {_fold(phrase)} | (set() if _is_cjk(phrase) else _variants(phrase)):
                    phrases[p] = canon
        self.phrases = phrases
        latin = sorted((p for p in phrases if not _is_cjk(p)), key=len, reverse=True)
        cjk = sorted((p for p in phrases if _is_cjk(p)), key=len, reverse=True)
        self._latin_re = (
            re.compile(r"(?<![\w'])(" + "|".join(re.escape(p) for p in latin) + r")(?!\w)") if latin else None
        )
        self._cjk_re = re.compile("(" + "|".join(re.escape(p) for p in cjk) + ")") if cjk else None
        self._title_index: dict[str, list[int]] = {}
        for i, t in enumerate(self.titles):
            key = _title_key(t)
            if not key:
                continue
            self._title_index.setdefault(key, []).append(i)
            art = re.match(r"^(the|a|an) (.+)$", key)
            if art:
                self._title_index.setdefault(art.group(2), []).append(i)
        self._title_keys = list(self._title_index)

    @classmethod
    def from_dataset(cls, dataset, synonyms: dict[str, dict[str, str]] | None = None) -> QueryParser:
        """A parser over a :class:`lucidrec.data.Dataset`'s catalog (popularity = interaction counts)."""
        from lucidrec.data.text import item_categories, item_years

        popularity = np.bincount(dataset.interactions["iidx"].to_numpy(), minlength=dataset.n_items)
        return cls(
            [sorted(c) for c in item_categories(dataset)],
            dataset.titles(),
            dataset.item_ids,
            item_years(dataset),
            popularity=popularity,
            synonyms=synonyms,
        )

    # ------------------------------------------------------------------ public
    def parse(self, query: str) -> ParsedQuery:
        text = _fold(query)
        if len(text) != len(query):  # folding changed lengths (rare scripts): spans refer to the folded text
            query = text
        pq = ParsedQuery(raw=query)
        used = np.zeros(len(text), dtype=bool)
        self._parse_references(text, used, pq)
        self._parse_years(text, used, pq)
        self._parse_genres(text, used, pq)
        pq.text = self._residual(query, text, used)
        parsed_parts = len(pq.genres) + len(pq.exclude_genres) + (pq.year is not None) + len(pq.like)
        n_text = len(pq.text.split())
        pq.text_weight = n_text / (n_text + parsed_parts) if n_text else 0.0
        if not pq.text and not pq.has_constraints and not pq.like:
            pq.notes.append("the query has no words this catalog's vocabulary or the text model can use")
        return pq

    def constraint_masks(self, pq: ParsedQuery) -> list[tuple[dict, np.ndarray]]:
        """One (constraint, mask over the catalog's items) pair per constraint. Items of unknown year fail a
        year bound."""
        out: list[tuple[dict, np.ndarray]] = []
        for g in pq.exclude_genres:
            out.append(({"type": "exclude_genre", "value": g}, ~self._value_masks[g]))
        if pq.year is not None:
            lo, hi = pq.year
            with np.errstate(invalid="ignore"):
                out.append(({"type": "year", "value": [lo, hi]}, (self.years >= lo) & (self.years <= hi)))
        if pq.genres:
            if pq.genre_mode == "any" or len(pq.genres) == 1:
                anym = np.logical_or.reduce([self._value_masks[g] for g in pq.genres])
                out.append(({"type": "genre_any", "value": list(pq.genres)}, anym))
            else:
                for g in pq.genres:
                    out.append(({"type": "genre", "value": g}, self._value_masks[g].copy()))
        return out

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
        ranges: list[tuple[int, int]] = []  # two-sided: a year, a decade, "between" (several = either of them)
        bounds: list[tuple[int, int]] = []  # one-sided: before / after / since / recent (all must hold)
        lo_cat = self.year_min if self.year_min is not None else 0
        hi_cat = self.year_max if self.year_max is not None else 9999

        def take(m, lo, hi, explicit: bool = False, open_ended: bool = False, relative: bool = False):
            """Record one year phrase: ``explicit`` two-sided ("between"), ``open_ended`` ("before X"),
            ``relative`` ("recent"); open-ended and relative ones are bounds that all must hold."""
            if used[m.start() : m.end()].any():
                return
            used[m.start() : m.end()] = True
            phrase = m.group(0).strip()
            if explicit and lo > hi:  # "between 1995 and 1990"
                pq.notes.append(f"the years in '{phrase}' were reversed; read as {hi}-{lo}")
                lo, hi = hi, lo
            neg = re.search(
                r"(?:\b(?:not|no|except|excluding|without|nothing)\s+(?:from\s+|in\s+)?|不要|不是|除了)$",
                text[: m.start()],
            )
            if neg and not open_ended:
                # "not from the 90s": the complement, when it is one range of the catalog's years.
                used[neg.start() : m.start()] = True
                if self.year_max is not None and hi >= self.year_max:
                    lo, hi = self.year_min, lo - 1
                elif self.year_min is not None and lo <= self.year_min:
                    lo, hi = hi + 1, self.year_max
                else:
                    pq.notes.append(f"excluding the years in the middle ('{phrase}') is not supported; ignored")
                    return
            if self.year_min is not None and (lo > hi or hi < self.year_min or lo > self.year_max):
                pq.notes.append(
                    f"no item matches '{phrase}' (this catalog covers {self.year_min}-{self.year_max}); "
                    "that year bound was ignored"
                )
                return
            (bounds if open_ended or relative else ranges).append((lo, hi))

        decade = (
            r"(?:the\s+)?(?:(early|mid|mid-|late)\s*-?\s*)?(?:'?(\d{2})'?s|(\d{3})0'?s|"
            r"(?:nineteen\s+)?(" + "|".join(_WORD_DECADES) + r"))"
        )

        def decade_of(m, g0: int):
            part, two, three, word = m.group(g0), m.group(g0 + 1), m.group(g0 + 2), m.group(g0 + 3)
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

        patterns = [
            (r"\bbetween\s+(?:the\s+years\s+)?(\d{4})\s+and\s+(\d{4})\b", lambda m: (int(m[1]), int(m[2]))),
            (r"\bfrom\s+(\d{4})\s*(?:to|till|until|through|-)\s*(\d{4})\b", lambda m: (int(m[1]), int(m[2]))),
            (r"\b(\d{4})\s*(?:-|to)\s*(\d{4})\b", lambda m: (int(m[1]), int(m[2]))),
            (r"(\d{4})\s*年?\s*(?:到|至|-|~)\s*(\d{4})\s*年?", lambda m: (int(m[1]), int(m[2]))),
            (
                r"\b(?:before|prior\s+to|earlier\s+than|older\s+than|pre-?|until|up\s+to)\s*" + decade + r"(?!\w)",
                lambda m: (lo_cat, decade_of(m, 1)[0] - 1),
            ),
            (
                r"\b(?:after|later\s+than|newer\s+than|post-?)\s*" + decade + r"(?!\w)",
                lambda m: (decade_of(m, 1)[1] + 1, hi_cat),
            ),
            (
                r"\b(?:before|prior\s+to|earlier\s+than|older\s+than|pre-?|until|up\s+to)\s*(\d{4})\b",
                lambda m: (lo_cat, int(m[1]) - 1),
            ),
            (r"\b(?:after|later\s+than|newer\s+than|post-?)\s*(\d{4})\b", lambda m: (int(m[1]) + 1, hi_cat)),
            (r"\bsince\s+(\d{4})\b", lambda m: (int(m[1]), hi_cat)),
            (r"(\d{4})\s*年?\s*(?:以前|之前|前)", lambda m: (lo_cat, int(m[1]) - 1)),
            (r"(\d{4})\s*年?\s*(?:以来)", lambda m: (int(m[1]), hi_cat)),
            (r"(\d{4})\s*年?\s*(?:以后|之后|后)", lambda m: (int(m[1]) + 1, hi_cat)),
            (r"(\d{2}|\d{4}|[一二三四五六七八九])\s*十?\s*年代", None),
            (r"(?<!\w)" + decade + r"(?!\w)", lambda m: decade_of(m, 1)),
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
            (r"\b(?:in|from|of|released\s+in|made\s+in|year)\s+(\d{4})\b", lambda m: (int(m[1]), int(m[1]))),
            (r"(\d{4})\s*年(?!代)", lambda m: (int(m[1]), int(m[1]))),
            (r"(?<![\w.])(1[89]\d{2}|20\d{2})(?![\w.])", lambda m: (int(m[1]), int(m[1]))),
        ]
        explicit_patterns = {p for p, _ in patterns[:4]}  # the two-sided "between" forms
        open_patterns = {p for p, _ in patterns[4:12]}  # "before/after/since X": already one-sided
        relative_patterns = {p for p, _ in patterns[14:17]}  # "not too old", "recent", "old"
        for pat, fn in patterns:
            for m in re.finditer(pat, text):
                if fn is None:  # Chinese decades: "90年代", "1990年代", "九十年代"
                    v = _zh_number(m.group(1))
                    if v is None:
                        continue
                    start = v if v >= 1000 else (self._decade(v) if v >= 10 else self._decade(v * 10))
                    take(m, start, start + 9, explicit=True)
                else:
                    lo, hi = fn(m)
                    take(
                        m,
                        lo,
                        hi,
                        explicit=pat in explicit_patterns,
                        open_ended=pat in open_patterns,
                        relative=pat in relative_patterns,
                    )
        if not ranges and not bounds:
            return
        # "from 1996 or 1997", "the 80s and 90s": the span of the named years; "before"/"after"/"recent"
        # bounds then all apply on top ("90s movies after 1995" = 1996-1999).
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

    # ------------------------------------------------------------------ genres and negations
    def _parse_genres(self, text: str, used: np.ndarray, pq: ParsedQuery):
        hits: list[tuple[int, int, str]] = []
        for rx in (self._latin_re, self._cjk_re):
            if rx is None:
                continue
            for m in rx.finditer(text):
                if not used[m.start() : m.end()].any():
                    hits.append((m.start(), m.end(), self.phrases[m.group(1)]))
        hits.sort()
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
            neg = next((n for n in negations if n[1] <= s and e <= n[2]), None)
            used[s:e] = True
            if neg is not None:
                used[neg[0] : neg[1]] = True
                if canon not in excluded:
                    excluded.append(canon)
            else:
                positive.append((s, canon))
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
            # "a comedy or a drama": any one is enough. Look for "or" between two asked-for genres.
            spans = [s for s, g in positive if g in genres]
            between = text[min(spans) : max(spans)]
            if re.search(r"\b(?:or|either)\b|或|还是", between):
                pq.genre_mode = "any"
        pq.genres, pq.exclude_genres = genres, excluded

    # ------------------------------------------------------------------ residual text
    def _residual(self, original: str, folded: str, used: np.ndarray) -> str:
        kept = "".join(ch if not u else " " for ch, u in zip(original, used))
        kept_f = "".join(ch if not u else " " for ch, u in zip(folded, used))
        # Chinese: drop stop phrases inside the CJK runs (no spaces to split on).
        for sw in _STOP_ZH:
            kept_f = kept_f.replace(sw, " " * len(sw))
        out = []
        for m in re.finditer(r"[^\s,.;!?，。；！？、:()\"“”《》]+", kept_f):
            word = m.group(0).strip("'-")
            if not word or word in _STOP_EN or not any(ch.isalnum() for ch in word):
                continue
            if re.fullmatch(r"(?:" + _NEG_EN + r")", word) or re.fullmatch(_NEG_ZH, word):
                continue
            out.append(kept[m.start() : m.end()].strip("'-"))
        return " ".join(out)


def relaxation_tiers(
    constraints: list[tuple[dict, np.ndarray]], allowed: np.ndarray
) -> list[tuple[list[dict], np.ndarray]]:
    """Item masks from strict to loose, used in turn when fewer than k items meet every constraint:
    1. every constraint;  2. several required genres read as "any of" them;  3. no year bound;
    4. no required genre. Exclusions are never relaxed: a "no" is a hard no, and fewer than k items are
    returned instead. Each tier comes with the list of constraints it relaxed."""
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
    year = next((c for c in active if c[0]["type"] == "year"), None)
    if year is not None:
        relaxed = relaxed + [year[0]]
        active = [c for c in active if c[0]["type"] != "year"]
        add(list(relaxed), active)
    genre_c = [c for c in active if c[0]["type"] in ("genre", "genre_any")]
    if genre_c:
        relaxed = relaxed + [c[0] for c in genre_c]
        active = [c for c in active if c[0]["type"] not in ("genre", "genre_any")]
        add(list(relaxed), active)
    return tiers


__all__ = ["ParsedQuery", "QueryParser", "relaxation_tiers"]
