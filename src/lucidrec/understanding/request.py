"""The structure of a request, by grammar only (no word-to-value table): the parts that name a field
(price, rating, running time, delivery) so they can be applied or reported as not applied, what is wanted
versus what qualifies it, alternatives joined by "or", "like <title>" in Chinese, and the thing a request
likens the wanted one to ("something like a beaker ...", "像长尾夹那样...").

All functions work on the folded (lower-case) request and return character spans, so the parser can mark
what it consumed and leave the rest for the encoder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUM = r"(?:\d+(?:[.,]\d+)?|one|two|three|four|five|six|ten|twenty|thirty|fifty|hundred|[一二两三四五六七八九十百千]+)"
_CMP_EN = (
    r"(?:under|below|less than|cheaper than|no more than|not more than|at most|max(?:imum)?|up to|within|over|"
    r"above|more than|at least|min(?:imum)?|around|about|between|shorter than|longer than)"
)

#: Field kinds a request may name, each with the grammar that recognises it (units, comparisons, the
#: field's own name). A catalogue that has the field applies the part (lucidrec.query); one that lacks it
#: reports the part as not applied. Units and field names only: nothing here maps a phrase to a value.
FIELD_PATTERNS: dict[str, list[str]] = {
    "price": [
        rf"(?:{_CMP_EN}\s+)?(?:\$|usd\s*|us\$|€|£|¥)\s*{_NUM}(?:\s*(?:-|to|and)\s*\$?\s*{_NUM})?(?:\s*(?:or less|or more|max))?",  # noqa: E501 (one pattern reads best on one line)
        rf"(?:{_CMP_EN}\s+)?{_NUM}\s*(?:dollars?|bucks|usd|euros?|pounds sterling)(?:\s*(?:or less|or more))?",
        r"(?:cheap(?:er|est)?|inexpensive|affordable|budget|low[- ]cost|on a budget|(?:a |the )?price[sd]?|pricey|expensive)",  # noqa: E501 (one pattern reads best on one line)
        rf"(?:(?:低于|不超过|不到|少于|高于|超过|大约)\s*)?{_NUM}\s*(?:美元|美金|元|块钱|块|刀)\s*(?:以下|以内|以上|左右)?",
        r"(?:便宜|实惠|价格|价钱|价位|贵的|昂贵|性价比)",
    ],
    "rating": [
        rf"(?:(?:rated|rating(?: of)?|with)\s+)?(?:{_CMP_EN}\s+)?{_NUM}(?:\.\d)?\s*\+?\s*stars?(?:\s*(?:or (?:more|better|higher|above)|and up|rating|reviews?))?",  # noqa: E501 (one pattern reads best on one line)
        r"(?:highly|well|top|best|good)[- ]rated|(?:good|great|positive|top) reviews?|(?:rated|ratings?|reviews?) (?:above|over|at least)",  # noqa: E501 (one pattern reads best on one line)
        rf"(?:评分|评价|好评|星级|口碑)\s*(?:在)?\s*(?:{_NUM}\s*(?:星|分)?)?\s*(?:以上|以下|及以上)?",
        rf"{_NUM}\s*星\s*(?:以上|以下|及以上)?",
    ],
    "duration": [
        rf"(?:{_CMP_EN}\s+)?{_NUM}\s*(?:minutes?|mins?|hours?|hrs?)(?:\s*long)?",
        r"(?:running time|runtime|run time|length)",
        rf"(?:片长|时长)\s*(?:不超过|少于|低于|超过|大于|在)?\s*(?:{_NUM}\s*(?:个)?\s*(?:小时|分钟))?\s*(?:以内|以下|以上)?",
        rf"(?:不超过|少于|低于|超过)?\s*{_NUM}\s*(?:个)?\s*(?:小时|分钟)\s*(?:以内|以下|以上)?",
    ],
    "delivery": [
        r"(?:ships?|shipped|shipping|delivered|delivery|arrives?|arriving)\s+(?:for free|free|fast|today|tomorrow|"
        r"by tomorrow|next[- ]day|overnight|in \w+ days?|within \w+ days?)",
        r"(?:free|fast|next[- ]day|same[- ]day|overnight|two[- ]day|prime)\s+(?:shipping|delivery)",
        r"(?:包邮|免运费|次日达|当日达|送货上门|快递|发货快|配送|"
        r"(?:今天|明天|后天|次日|当天|\d+\s*天内?|[一两二三四五六七]天内?)\s*(?:就能|就|能|可以)?\s*(?:送到|送达|到货|发货|寄到))",
    ],
}
_FIELD_RES = {kind: re.compile("|".join(f"(?:{p})" for p in pats)) for kind, pats in FIELD_PATTERNS.items()}
#: How "understood as" names a field kind that is missing.
FIELD_NAMES = {
    "price": ("price", "价格"),
    "rating": ("rating", "评分"),
    "duration": ("running time", "片长"),
    "delivery": ("delivery", "配送"),
}


@dataclass(frozen=True)
class FieldPart:
    start: int
    end: int
    kind: str  # a key of FIELD_PATTERNS


def field_parts(text: str, used=None) -> list[FieldPart]:
    """Parts of ``text`` that name a field kind, longest first where they overlap, skipping spans already
    used (``used``: boolean per character)."""
    found: list[FieldPart] = []
    for kind, rx in _FIELD_RES.items():
        for m in rx.finditer(text):
            s, e = m.span()
            while s < e and text[s].isspace():
                s += 1
            if e - s < 2 or not _word_bounded(text, s, e):
                continue
            if used is not None and used[s:e].any():
                continue
            found.append(FieldPart(s, e, kind))
    found.sort(key=lambda p: -(p.end - p.start))
    kept: list[FieldPart] = []
    for p in found:
        if all(p.end <= k.start or p.start >= k.end for k in kept):
            kept.append(p)
    return sorted(kept, key=lambda p: p.start)


def _word_bounded(text: str, s: int, e: int) -> bool:
    """A Latin match must not start or end inside a word ("price" in "priceless" is no field)."""
    before = text[s - 1] if s > 0 else " "
    after = text[e] if e < len(text) else " "
    latin = re.compile(r"[a-z0-9]")
    return not (latin.match(text[s]) and latin.match(before)) and not (latin.match(text[e - 1]) and latin.match(after))


def not_applied_note(kind: str, phrase: str, lang: str = "en") -> str:
    en, zh = FIELD_NAMES.get(kind, (kind, kind))
    if lang == "zh":
        return f"“{phrase}”未应用：本目录没有{zh}信息"
    return f"'{phrase}' was not applied: this catalogue has no {en}"


# ------------------------------------------------------------------------------- wanted vs qualifier
_QUALIFIER_EN = re.compile(
    r"\s+(?:for (?:use (?:with|in|on) )?(?:my|a|an|the|your|our|his|her|their|me|him|them|us)?\s*|to use (?:with|in|on)\s+|"  # noqa: E501 (one pattern reads best on one line)
    r"compatible with\s+|that (?:works?|fits?) (?:with|in|on)\s+|that goes (?:with|in|on)\s+|which (?:works?|fits?) with\s+)"  # noqa: E501 (one pattern reads best on one line)
)
_QUALIFIER_ZH = re.compile(r"(?:用的|使用的|适用的|专用的|配套的|看的|玩的|穿的|上用的)")


#: "a gadget that prints name labels", "tabbed sheets to split my three-ring notebook": a clause saying what the
#: wanted thing does (a verb after "that"/"which"/"to"; not a copula, not "to the ..."). What the verb acts on is
#: another thing than the one wanted, so a value named there is not asked for (lucidrec.query's check of
#: named values). Reading only the words up to the verb as what is wanted measured worse (Scientific held-out
#: 0.994 -> 0.950), so the whole request is still read.
_ACTION_CLAUSE = re.compile(
    r"\s(?:that|which|to)\s+(?!(?:be|is|are|was|were|has|have|had|looks?|feels?|seems?|sounds?|the|a|an|my|your|our|"
    r"their|his|her|its|this|that|these|those|me|us|him|them)\b)[a-z]+",
    re.IGNORECASE,
)


def action_clause(text: str) -> int | None:
    """Where what the wanted thing acts on starts ("a gadget that prints| name labels"), or None when the
    request has no such clause (or nothing before it)."""
    m = _ACTION_CLAUSE.search(text)
    return m.end() if m and text[: m.start()].strip() else None


def wanted_and_qualifier(text: str) -> tuple[str, str] | None:
    """Split "filament for my 3D printer" into ("filament", "for my 3D printer"), "3D打印机用的耗材" into
    ("耗材", "3D打印机用的"); None when the request has no such structure. The wanted part comes first in
    English and last in Chinese."""
    m = _QUALIFIER_EN.search(text)
    if m and m.start() > 0 and text[: m.start()].strip():
        return text[: m.start()].strip(), text[m.start() :].strip()
    last = list(_QUALIFIER_ZH.finditer(text))  # the last "用的" binds the wanted thing
    if last and text[last[-1].end() :].strip():
        end = last[-1].end()
        return text[end:].strip(), text[:end].strip()
    k = text.rfind("的")
    if 0 < k < len(text) - 1 and _is_cjk(text[k + 1 :]):
        return text[k + 1 :].strip(), text[: k + 1].strip()
    return None


def alternatives(text: str) -> list[str]:
    """ "something scary or funny" -> ["something scary", "funny"]; one part when there is no "or"."""
    parts = [p.strip(" ,") for p in re.split(r"\s+(?:or|either)\s+|或者|或是|或|还是", text) if p.strip(" ,")]
    return parts if len(parts) >= 2 else [text]


# ------------------------------------------------------------------------------- likenesses ("like <title>")
_LIKE_ZH = re.compile(
    r"(?:像|类似于?|如同|好比|跟|和|与)\s*(?:《)?([^《》，。,.]{1,30}?)(?:》)?\s*"
    r"(?:那样|那种|一样|这样|似的|般|之类|差不多|相似|类似|相近)"
)


def like_phrases_zh(text: str) -> list[tuple[int, int, str]]:
    """Spans of "像玩具总动员那样", "跟《教父》差不多" with the title part ("玩具总动员"). 跟/和/与 ("with",
    "and") count only before a word of likeness (一样, 差不多...), so "机器人和时间旅行" is no reference."""
    return [(m.start(), m.end(), m.group(1).strip()) for m in _LIKE_ZH.finditer(text) if m.group(1).strip()]


_LIKE_EN = re.compile(
    r"(?<![a-z'])(?:(?:kind of|sort of|something|anything|stuff|one)\s+)?"
    r"(?:like|similar to|such as|resembling|akin to)\s+(?P<obj>[^,.;!?]+)",
    re.IGNORECASE,
)
#: What ends the thing named after "like" ("something like Velcro| I can stick on a remote").
_LIKE_OBJECT_END = re.compile(
    r"\s+(?:that|which|who|i|i'd|i'm|you|we|to|for|but|so|and|with|from|on|in|at|except|only|please|though|"
    r"because|if)\b",
    re.IGNORECASE,
)
#: Words that name no thing of their own ("like the ones from the 80s", "like this").
_NOT_A_THING = frozenset(
    "a an the one ones this that these those it them something anything stuff what which mine yours ours "
    "him her his me us you".split()
)
#: "I'd like a stapler", "would like": a wish, not a likeness.
_WISH_BEFORE = re.compile(r"\b(?:i|i'd|id|we|we'd|you|they|would|really|do|don't|dont|you'd)\s+$", re.IGNORECASE)


def like_object(text: str) -> tuple[str, int, int] | None:
    """The thing a request likens the wanted one to, when the parser found no catalogue title in it
    ("something like Post-its" -> "Post-its", "像长尾夹那样夹文件的" -> "长尾夹", "类似黑胶布那种缠电线接头的" ->
    "黑胶布"), with its span: what it names is what the wanted thing is, whatever the rest says it does
    ("...夹文件的", clips files, reads as a filing product). None when there is no such phrase."""
    for m in _LIKE_EN.finditer(text):
        if m.group(0).lower().startswith("like") and _WISH_BEFORE.search(text[: m.start()]):
            continue
        obj = m.group("obj")
        end = _LIKE_OBJECT_END.search(obj)
        obj = obj[: end.start()] if end else obj
        if set(re.findall(r"[\w'-]+", obj.lower())) <= _NOT_A_THING:
            continue  # "films like the ones from the 80s": the likeness names nothing of its own
        start = m.start("obj") + (len(obj) - len(obj.lstrip()))
        return obj.strip(), start, start + len(obj.strip())
    for s, e, phrase in like_phrases_zh(text):
        k = text.find(phrase, s, e)
        return phrase, k, k + len(phrase)
    return None


def _is_cjk(s: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in s)
