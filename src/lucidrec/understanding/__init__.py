"""Understanding a request with the language model: a multilingual encoder, grounding in the catalogue's
own values (learned from the catalogue by self-supervision), and the request's structure (what is wanted,
what qualifies it, alternatives, "like <title>", parts naming fields the catalogue lacks).

:class:`RequestUnderstanding` is built at training time from the catalogue (``build``), saved in the model
folder (``understanding.npz`` + ``understanding.json``) and read back by ``load``; the query parser
(:mod:`lucidrec.query`) calls ``ground`` and ``match_title``. Nothing in it is specific to films or
products, and no word list takes part.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from lucidrec.understanding.encoder import CACHE_SIZE, ENCODER_NAME, MultilingualEncoder, shared_encoder
from lucidrec.understanding.gloss import has_cjk, shared_glossary
from lucidrec.understanding.grounding import CatalogGrounder, GroundedValue, bare_title
from lucidrec.understanding.request import alternatives, like_object, wanted_and_qualifier

FILES = ("understanding.npz", "understanding.json")
#: Bumped when the saved arrays change meaning; a folder with another format is read as one without them.
FORMAT = 3
#: A title named in a Chinese "像……那样" request is taken when its similarity reaches this and leads the
#: runner-up by TITLE_MARGIN (translated titles land near the original, but not on it).
TITLE_MIN_SIMILARITY = 0.5
TITLE_MARGIN = 0.05
#: Weight of a Chinese request's dictionary gloss next to the request as written (see ``read``).
GLOSS_WEIGHT = 1.0
#: How strongly the whole request must read the wanted part's value for that reading to be kept over a whole
#: reading of the thing the qualifier names (see ``_about``).
ABOUT_SUPPORT = 0.1
#: Weight of the item-text reader's reading of a Chinese request's gloss (see ``strengths``).
GLOSS_READER_WEIGHT = 0.5


class RequestUnderstanding:
    """What a trained model knows of its catalogue's language (module docstring)."""

    def __init__(
        self,
        grounder: CatalogGrounder | None,
        title_vecs: np.ndarray,
        encoder: MultilingualEncoder,
        query_map: np.ndarray | None = None,
        query_scale: float = 1.0,
        text_grounder: CatalogGrounder | None = None,
    ):
        self.grounder = grounder
        # A second reader: the same grounding in the space of the model's own item-text encoder (English).
        # It reads English requests, and Chinese ones through their gloss; its vectors come from
        # ``text_reader``, which the model sets (the item-text encoder is the model's, not ours).
        self.text_grounder = text_grounder
        self._text_reader: Callable[[str], np.ndarray] | None = None
        # The same reader over several texts at once (optional; one batch costs little more than one text).
        self.text_reader_many: Callable[[list[str]], np.ndarray] | None = None
        self._text_cache: OrderedDict[str, np.ndarray] = OrderedDict()  # the reader's vectors, per text
        # Per-value strengths per text: the parser asks about one text several times (ground, support).
        self._strength_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        # ... and its similarity to each item (the narrowing reads it right after): a few texts only, as a row
        # is as long as the catalogue.
        self._similarity_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # a service reads requests from several threads
        self.title_vecs = np.asarray(title_vecs, np.float32)
        self.encoder = encoder
        # Multilingual request vector -> the item-text space the model was trained in (see fit_query_map).
        self.query_map = None if query_map is None else np.asarray(query_map, np.float32)
        self.query_scale = float(query_scale)

    @property
    def text_reader(self) -> Callable[[str], np.ndarray] | None:
        return self._text_reader

    @text_reader.setter
    def text_reader(self, reader: Callable[[str], np.ndarray] | None) -> None:
        # Another reader reads requests otherwise: what was read and grounded with the old one is forgotten.
        self._text_reader = reader
        self.text_reader_many = None
        self.clear_caches(encoder=False)

    def fit_query_map(self, item_text_vecs: np.ndarray, ridge: float = 1e-2) -> None:
        """Learn the linear map from the multilingual encoder's space to the space of the model's item text
        vectors (``T``) by ridge regression over the catalogue's own items (each item's text read by both
        encoders), and the scale that makes a mapped vector spread scores over the catalogue as much as an
        item's own text vector does (the query's weight in ``p_u`` was calibrated on those). A request then
        enters ``p_u`` through the multilingual encoder, in English or Chinese, and the score stays one sum."""
        if self.grounder is None:
            return
        U = self.grounder.item_vecs.astype(np.float64)
        T = np.asarray(item_text_vecs, np.float64)
        W = np.linalg.solve(U.T @ U + ridge * len(U) * np.eye(U.shape[1]), U.T @ T)
        rng = np.random.default_rng(0)
        probe = rng.choice(len(U), size=min(200, len(U)), replace=False)
        self.query_map = W.astype(np.float32)
        self.query_scale = 1.0
        mapped = np.stack([self._mapped(u) for u in U[probe].astype(np.float32)])
        own = T[probe] / np.maximum(np.linalg.norm(T[probe], axis=1, keepdims=True), 1e-12)
        self.query_scale = _spread(own, T) / max(_spread(mapped, T), 1e-9)

    def _mapped(self, u: np.ndarray) -> np.ndarray:
        v = u @ self.query_map
        return (v / max(float(np.linalg.norm(v)), 1e-12) * self.query_scale).astype(np.float32)

    def query_vector(self, text: str) -> np.ndarray:
        """The request's vector in the model's item-text space (what ``p_u``'s query terms read): the
        multilingual reading mapped into that space, averaged with the item-text encoder's reading of the
        Chinese gloss where there is one (both on the scale of an English request's vector)."""
        mapped = self._mapped(self.read(text))
        gloss = _gloss(text)
        if gloss and self.text_reader is not None:
            return ((mapped + self._read_text(gloss)) / 2.0).astype(np.float32)
        return mapped

    def read(self, text: str) -> np.ndarray:
        """The request's multilingual vector. A Chinese request is read twice, as written and as its
        dictionary gloss (:mod:`lucidrec.understanding.gloss`), and the two readings are averaged: the
        encoder knows everyday Chinese, the dictionary knows a shop's jargon, and where both agree the
        reading only sharpens."""
        vec = self.encoder.encode_one(text)
        gloss = _gloss(text)
        if not gloss:
            return vec
        both = vec + GLOSS_WEIGHT * self.encoder.encode_one(gloss)
        return (both / max(float(np.linalg.norm(both)), 1e-12)).astype(np.float32)

    @classmethod
    def build(
        cls, fields, item_texts, titles, encoder=None, progress=False, seed=0, text_encoder=None, text_vecs=None
    ) -> RequestUnderstanding:
        """Encode the catalogue's titles and texts and fit the grounding (:class:`CatalogGrounder`). With
        ``text_encoder`` (the model's item-text encoder: ``encode(texts) -> rows``) and ``text_vecs`` (the
        catalogue's item texts as that encoder read them), a second grounding is fit in that space, the same
        way (``text_grounder``); the caller then sets ``text_reader`` to read requests with it."""
        encoder = encoder or shared_encoder()
        titles = [str(t) for t in titles]
        title_vecs = encoder.encode([bare_title(t) for t in titles], progress=progress)
        grounder = CatalogGrounder.build(fields or {}, item_texts, titles, encoder, seed=seed, progress=progress)
        text_grounder = None
        if grounder is not None and text_encoder is not None and text_vecs is not None:
            reader = _UnitEncoder(text_encoder)
            text_grounder = CatalogGrounder.build(
                fields or {}, item_texts, titles, reader, seed=seed, progress=progress, item_vecs=_unit(text_vecs)
            )
            if text_grounder is not None and text_grounder.pairs != grounder.pairs:
                text_grounder = None  # both read the same fields, so this cannot happen; never mix value orders
        return cls(grounder, title_vecs, encoder, text_grounder=text_grounder)

    # ------------------------------------------------------------------ use
    def ground(self, text: str, excluded=()) -> tuple[list[GroundedValue], str | None]:
        """Soft values for a request's free text, and the qualifier that was set aside (None when the whole
        text was grounded). Both the wanted part ("filament" of "filament for my 3D printer") and the whole
        text are grounded; the wanted part is kept when it reads at least as clearly (its strongest value is
        as strong), so a generic head ("电影" of "让我开怀大笑的电影") does not hide what the rest says.
        Alternatives ("scary or funny") are grounded apart and united. ``excluded``: values the user ruled
        out ("no actors and no script" reads as not Drama); they neither lead nor stand in another's way
        ("true stories about real people" reads Documentary 0.47 and Drama 0.45: with Drama ruled out,
        Documentary stands out)."""
        if self.grounder is None or not text.strip():
            return [], None
        skip = tuple(self.grounder.index_of_value[v] for v in excluded if v in self.grounder.index_of_value)
        like = like_object(text)
        if like is not None:
            # "something like Post-its", "像长尾夹那样夹文件的": the parser found no title in the likeness, so it
            # names a kind of thing - the kind wanted - while the rest says what it is for ("夹文件的", clips
            # files, reads as a filing product). Its reading leads when it reads as anything; the whole request
            # still chooses among that value's narrower ones.
            self.prefetch([text, like[0]])
            head = self._ground_alternatives(like[0], skip)
            if head:
                return self._narrowed(head, text), None
        split = wanted_and_qualifier(text)
        # (the qualifier is read only when _about needs it: seldom)
        self.prefetch([text] + ([split[0]] if split is not None else []))
        whole = self._ground_alternatives(text, skip)
        if split is not None:
            head = self._ground_alternatives(split[0], skip)
            if head and (
                not whole or head[0].strength >= max(w.strength for w in whole) or self._about(text, whole, head, split)
            ):
                multi = self.grounder.multi_valued
                if all(h.field in multi for h in head):
                    # "给孩子看的喜剧": where items hold several values, what qualifies the wanted thing
                    # describes it too (a comedy *for children*), so the whole request's values join.
                    extra = [w for w in whole if w.field in multi and all(w.value != h.value for h in head)]
                    if extra:
                        return head + extra, None
                return self._narrowed(head, split[0]), split[1]
        return self._narrowed(whole, text), None

    def _about(self, text: str, whole: list[GroundedValue], head: list[GroundedValue], split: tuple[str, str]) -> bool:
        """Whether the whole request reads as the other thing its qualifier names, while the wanted part reads
        as something no item of that is, and the whole request still supports it: "激光打印机的硒鼓" (a laser
        printer's toner drum) reads Laser Printers 0.89 as a whole, as "激光打印机的" does alone, while "硒鼓"
        reads Laser Printer Toner, which the whole reads at 0.16 - the wanted part's reading is kept. Not
        when the two overlap ("固定木板用的螺丝": screws are what fixes boards, so the qualifier reads Screws
        too), not when the whole request barely reads the wanted part's value (a generic "仪表", instrument,
        reads a bearing category the whole request gives 0.0), and not where items hold several values of a
        field ("给孩子看的喜剧": the qualifier describes the wanted thing too)."""
        g = self.grounder
        if not whole or whole[0].field in g.multi_valued:
            return False
        a, b = g.index_of_value[whole[0].value], g.index_of_value[head[0].value]
        if g.member[a].multiply(g.member[b]).nnz or self.strengths(text)[b] < ABOUT_SUPPORT:
            return False
        qualifier = self.ground_clause(split[1])
        return bool(qualifier) and whole[0].value in {q.value for q in qualifier}

    def strengths(self, text: str) -> np.ndarray:
        """Per groundable value, the probability that ``text`` asks for it: the multilingual reader's
        (:meth:`read`), averaged with the item-text reader's where the model has one. The two encoders err
        differently: the multilingual one knows Chinese and everyday phrasing ("a comfortable seat"), the
        item-text one knows the catalogue's own words ("cowboys" -> Western), and each calibration was fit
        on the catalogue, so the two probabilities are on one scale."""
        with self._lock:
            hit = self._strength_cache.get(text)
        if hit is None:
            self._strengths_many([text])
            with self._lock:
                hit = self._strength_cache.get(text)
            if hit is None:  # pushed out by other requests' texts in between (a busy service): read again
                return self._strengths_many([text], keep=False)[0][0]
        return hit

    def _strengths_many(self, texts: list[str], keep: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
        """(:meth:`strengths`, :meth:`item_similarity`) of several texts, kept in the caches (``keep``). Their
        similarities to the items are one matrix product per reader: the item vectors (4,344 x 512 floats on
        Scientific) are read from memory once for all of a request's texts instead of once per text, which
        is most of what grounding a text costs."""
        if not texts:
            return []
        Q = np.stack([self.read(t) for t in texts])
        S = self.grounder.item_vecs @ Q.T  # items x texts
        out = []
        english = [t if not has_cjk(t) else _gloss(t) for t in texts]
        reads = [k for k, e in enumerate(english) if e] if self.text_grounder is not None and self.text_reader else []
        St = None
        if reads:
            Qt = np.stack([self._read_text(english[k]) for k in reads])
            St = dict(zip(reads, (self.text_grounder.item_vecs @ Qt.T).T))
        for k, text in enumerate(texts):
            sims = S[:, k]
            p = self.grounder.strengths(Q[k], sims)
            if St is not None and k in St:
                # A Chinese request reaches the item-text reader only as its word-by-word gloss, a weaker
                # reading than the multilingual one (which reads the request and the gloss): it counts less.
                w = 1.0 if english[k] is text else GLOSS_READER_WEIGHT
                p = (p + w * self.text_grounder.strengths(self._read_text(english[k]), St[k])) / (1.0 + w)
                sims = (sims + w * St[k]) / (1.0 + w)
            p.setflags(write=False)
            out.append((p, np.ascontiguousarray(sims)))
        if keep:
            with self._lock:
                for text, (p, sims) in zip(texts, out):
                    self._strength_cache[text] = p
                    self._similarity_cache[text] = sims
                while len(self._strength_cache) > CACHE_SIZE:
                    self._strength_cache.popitem(last=False)
                while len(self._similarity_cache) > 8:
                    self._similarity_cache.popitem(last=False)
        return out

    def prefetch(self, texts: list[str]) -> None:
        """Read ``texts`` (and a Chinese text's gloss) with both encoders, each in one batch, into the caches
        that :meth:`read` and :meth:`_read_text` look in. Understanding one request reads its whole text and
        its wanted part, and batching them is what keeps a request near one encoder call's time."""
        texts = [t for t in dict.fromkeys(texts) if t and t.strip()]
        glosses = {t: _gloss(t) for t in texts}
        self.encoder.encode_many(texts + [g for g in glosses.values() if g])
        if self.text_reader is not None and self.text_grounder is not None:
            english = [t if not has_cjk(t) else glosses[t] for t in texts]
            with self._lock:
                todo = list(dict.fromkeys(e for e in english if e and e not in self._text_cache))
            if len(todo) > 1 and self.text_reader_many is not None:
                vecs = _unit(np.asarray(self.text_reader_many(todo), np.float32))
                with self._lock:
                    for t, v in zip(todo, vecs):
                        self._text_cache[t] = v
                    while len(self._text_cache) > CACHE_SIZE:
                        self._text_cache.popitem(last=False)
        # The texts' strengths, all at once (one pass over the item vectors): a text with "or" is grounded
        # by its parts, which need encoding of their own, so it is left to be read when grounded.
        with self._lock:
            todo = [t for t in texts if t not in self._strength_cache and len(alternatives(t)) == 1]
        if self.grounder is not None:
            self._strengths_many(todo)

    def text_reading(self, text: str) -> np.ndarray | None:
        """The item-text reader's vector for ``text`` when understanding a request already read it, else None
        (the caller reads it then: a request's embedded text is often its wanted part, read here first)."""
        with self._lock:
            return self._text_cache.get(text)

    def _read_text(self, text: str) -> np.ndarray:
        """The item-text encoder's unit vector for ``text``, cached like the multilingual encoder's (one
        request is read several times: whole, wanted part, alternatives)."""
        with self._lock:
            hit = self._text_cache.get(text)
        if hit is None:
            hit = _unit(np.asarray(self.text_reader(text), np.float32)[None])[0]
            with self._lock:
                self._text_cache[text] = hit
                if len(self._text_cache) > CACHE_SIZE:
                    self._text_cache.popitem(last=False)
        return hit

    def clear_caches(self, encoder: bool = True) -> None:
        """Forget every cached request vector and reading (benchmarks time requests read cold); with
        ``encoder=False`` the multilingual encoder's vectors (which no setting changes) are kept."""
        with self._lock:
            self._text_cache.clear()
            self._strength_cache.clear()
            self._similarity_cache.clear()
        if encoder:
            self.encoder._cache.clear()

    def ground_clause(self, text: str, skip: tuple[int, ...] = ()) -> list[GroundedValue]:
        """The ladder of values one clause reads as (no wanted/qualifier split, no alternatives); the values at
        the indices ``skip`` (ruled out by the user) read as 0."""
        if self.grounder is None or not text.strip():
            return []
        p = self.strengths(text)
        if skip:
            p = p.copy()
            p[list(skip)] = 0.0
        return self.grounder.ladder(p)

    def _narrowed(self, steps: list[GroundedValue], text: str) -> list[GroundedValue]:
        """``steps`` narrowed among the leading value's own items (:meth:`CatalogGrounder.narrow`)."""
        if not steps or not len(self.grounder.children[self.grounder.index_of_value[steps[0].value]]):
            return steps
        return self.grounder.narrow(steps, self.item_similarity(text), self.strengths(text))

    def item_similarity(self, text: str) -> np.ndarray:
        """The request's similarity to each item's text, by both readers as :meth:`strengths` weighs them
        (kept from reading its strengths, which compares the same vectors)."""
        with self._lock:
            hit = self._similarity_cache.get(text)
        if hit is not None:
            return hit
        return self._strengths_many([text], keep=False)[0][1]  # not read just before, or pushed out since

    def support(self, text: str) -> dict[str, float]:
        """How strongly the request reads as each groundable value, relative to the value it reads as most
        (1.0 for that one): the wanted part's reading when it is at least as clear as the whole's (as in
        :meth:`ground`). Used to check a value the request names by a word of its name ("tape" also names
        a safety-sign category) against what the whole request says."""
        if self.grounder is None or not text.strip():
            return {}
        split = wanted_and_qualifier(text)
        self.prefetch([text] + ([split[0]] if split is not None else []))
        p = self.strengths(text)
        if split is not None:
            head = self.strengths(split[0])
            if head.max() >= p.max():
                p = head
        top = max(float(p.max()), 1e-9)
        return {v: float(p[k]) / top for k, (_, v) in enumerate(self.grounder.pairs)} | {"": top}

    def _ground_alternatives(self, text: str, skip: tuple[int, ...] = ()) -> list[GroundedValue]:
        parts = alternatives(text)
        out: list[GroundedValue] = []
        for part in parts:
            got = self.ground_clause(part, skip)
            if len(parts) > 1 and not got:
                # "scary or something", "... while I saw or file it": one side says nothing, so the "or" is
                # not between values; the request is read as one clause.
                return self.ground_clause(text, skip)
            out.extend(g for g in got if all(g.value != o.value for o in out))
        if len(parts) > 1:
            whole = self.ground_clause(text, skip)
            if whole and whole[0].strength > max(g.strength for g in out):
                # "有魔法、巫师或者奇幻王国的片子" (magic, wizards or fantasy kingdoms): the whole reads one value more
                # clearly than any side reads its own, so the "or" joins parts of one description.
                return whole
        return out

    def match_title(self, phrase: str) -> int | None:
        """The item whose title a (translated) phrase names, or None when no title stands out."""
        if not len(self.title_vecs) or not phrase.strip():
            return None
        sims = self.title_vecs @ self.encoder.encode_one(phrase)
        top = np.argsort(-sims)[:2]
        if sims[top[0]] < TITLE_MIN_SIMILARITY or (len(top) > 1 and sims[top[0]] - sims[top[1]] < TITLE_MARGIN):
            return None
        return int(top[0])

    # ------------------------------------------------------------------ persistence
    def save(self, out: Path) -> None:
        arrays = {"title_vecs": self.title_vecs.astype(np.float16)}
        if self.query_map is not None:
            arrays["query_map"] = self.query_map
            arrays["query_scale"] = np.array([self.query_scale])
        meta = {"format": FORMAT, "encoder": ENCODER_NAME, "grounder": None}
        if self.grounder is not None:
            arrays.update({f"g_{k}": v for k, v in self.grounder.to_arrays().items()})
            meta["grounder"] = self.grounder.meta()
        if self.text_grounder is not None:
            # Its value list is the grounder's (checked at build), so only the arrays are saved.
            arrays.update({f"t_{k}": v for k, v in self.text_grounder.to_arrays().items()})
            meta["text_grounder"] = True
        np.savez(out / FILES[0], **arrays)
        (out / FILES[1]).write_text(json.dumps(meta, ensure_ascii=False))

    @classmethod
    def load(cls, d: Path, n_items: int) -> RequestUnderstanding | None:
        """The folder's understanding, or None for a folder saved before it existed (the parser then works
        from the catalogue's value names and the grammar alone)."""
        if not all((d / f).exists() for f in FILES):
            return None
        meta = json.loads((d / FILES[1]).read_text(encoding="utf-8"))
        if meta.get("encoder") != ENCODER_NAME or meta.get("format") != FORMAT:
            import warnings

            warnings.warn(
                f"{d}: its request understanding was built by another version (format {meta.get('format')}, "
                f"this one reads {FORMAT}); requests are read by the grammar and value names only. Fix: retrain, "
                "or rebuild it with Recommender.understand_catalog(dataset) and save.",
                stacklevel=2,
            )
            return None
        with np.load(d / FILES[0]) as z:
            arrays = {k: z[k] for k in z.files}
        grounder = None
        if meta.get("grounder"):
            g_arrays = {k[2:]: v for k, v in arrays.items() if k.startswith("g_")}
            grounder = CatalogGrounder.from_arrays(g_arrays, meta["grounder"], n_items)
        text_grounder = None
        if grounder is not None and meta.get("text_grounder"):
            t_arrays = {k[2:]: v for k, v in arrays.items() if k.startswith("t_")}
            text_grounder = CatalogGrounder.from_arrays(t_arrays, meta["grounder"], n_items)
        scale = float(arrays["query_scale"][0]) if "query_scale" in arrays else 1.0
        return cls(grounder, arrays["title_vecs"], shared_encoder(), arrays.get("query_map"), scale, text_grounder)


class _UnitEncoder:
    """An encoder whose rows are made unit length (the grounder compares by dot products)."""

    def __init__(self, encoder):
        self.encoder = encoder

    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return _unit(self.encoder.encode(list(texts), progress=progress))


def _gloss(text: str) -> str | None:
    """The English gloss of a Chinese request, or None (no Chinese, no dictionary, or glossing switched off
    by GLOSS_WEIGHT = 0)."""
    if GLOSS_WEIGHT <= 0 or not has_cjk(text):
        return None
    glossary = shared_glossary()
    return glossary.gloss(text) if glossary is not None else None


def _unit(M: np.ndarray) -> np.ndarray:
    M = np.asarray(M, np.float32)
    return M / np.maximum(np.linalg.norm(M, axis=1, keepdims=True), 1e-12)


def _spread(P: np.ndarray, T: np.ndarray) -> float:
    """Median over the rows of P of the p99 - p50 spread of their similarity to the catalogue."""
    s = P @ T.T
    return float(np.median(np.percentile(s, 99, axis=1) - np.percentile(s, 50, axis=1)))


__all__ = ["GroundedValue", "RequestUnderstanding"]
