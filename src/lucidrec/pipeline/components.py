"""The request pipeline's components, each one small job over a :class:`lucidrec.artifact.TrainedModel`.

| component | job |
|---|---|
| :class:`QueryParsing` | clean a request's text, parse it into constraints + residual text (:mod:`lucidrec.query`) |
| :class:`QueryEncoding` | the residual text as the user tower reads it (item-text or multilingual encoder) |
| :class:`CachedQueryEncoding` | the same, with the last few thousand texts remembered (the service uses it) |
| :class:`CandidateRetrieval` | item indices worth scoring exactly (the ANN index), or None: the whole catalogue |
| :class:`Explaining` | evidence, reasons, counterfactuals (:mod:`lucidrec.explain`), then an optional rewriter |

The scorer is the model's own :class:`lucidrec.models.scoring.HybridScorer`. :class:`lucidrec.pipeline.serving.Pipeline`
assembles them once per model.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np

from lucidrec.errors import ConfigError, ModelError

if TYPE_CHECKING:
    from lucidrec.artifact import TrainedModel

MAX_QUERY_CHARS = 2000


def clean_query(query: str) -> str:
    """Control characters become spaces, runs of spaces one; over MAX_QUERY_CHARS is a clear error."""
    if not isinstance(query, str):
        raise ConfigError(f"query must be text, got {type(query).__name__}.")
    cleaned = "".join(ch if ch.isprintable() else " " for ch in query)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > MAX_QUERY_CHARS:
        raise ConfigError(
            f"query is {len(cleaned)} characters long; the limit is {MAX_QUERY_CHARS}. "
            "Fix: shorten it to the essentials (e.g. 'a funny 90s comedy')."
        )
    return cleaned


def _latin_only(text: str) -> bool:
    """True when every letter of ``text`` is Latin (what the English item encoder was trained on)."""
    return all(ord(ch) < 0x250 for ch in text if ch.isalpha())


class QueryParsing:
    """The query parser of one model's catalogue (built on first use: most requests carry no query)."""

    def __init__(self, model: TrainedModel):
        self.model = model
        self._parser = None

    @property
    def parser(self):
        """The :class:`lucidrec.query.QueryParser` over the catalogue's vocabulary; synonyms from the model
        folder's ``query_synonyms.json`` are added to the built-in tables."""
        if self._parser is None:
            from lucidrec.query import QueryParser

            m = self.model
            self._parser = QueryParser.from_catalogue(
                m.catalogue,
                popularity=m.known.popularity(len(m.catalogue)),
                synonyms=m.query_synonyms,
                understanding=m.understanding,
            )
        return self._parser

    def parse(self, query: str):
        """The parsed query (:class:`lucidrec.query.ParsedQuery`); a blank query (empty, only spaces or
        control characters) is no query: None."""
        cleaned = clean_query(query)
        return self.parser.parse(cleaned) if cleaned else None

    def constraint_masks(self, parsed) -> list:
        """(constraint, per-item mask) pairs of a parsed query's constraints; [] when it has none."""
        if parsed is None or not parsed.has_constraints:
            return []
        return self.parser.constraint_masks(parsed)


class QueryEncoding:
    """A request's text as the user tower reads it: Latin-script text through the item text encoder, other
    scripts through the multilingual encoder mapped into the item-text space (:mod:`lucidrec.understanding`).
    A model loaded without encoders serves histories only."""

    def __init__(self, text_encoder, understanding=None):
        self.text_encoder = text_encoder
        self.understanding = understanding

    @property
    def available(self) -> bool:
        return self.text_encoder is not None

    def encode(self, text: str) -> np.ndarray:
        if self.text_encoder is None:
            raise ModelError("this model has no text encoder loaded. Fix: load it with Recommender.load(DIR).")
        u = self.understanding
        if u is not None and u.query_map is not None and not _latin_only(text):
            # The item text encoder (English MiniLM) reads Latin-script text better than the map does (Scientific
            # en precision 0.93 vs 0.83, benchmarks/results/understanding.md); other scripts only the map reads.
            return u.query_vector(text)
        return self.text_encoder.encode([text])[0]

    def encode_many(self, texts: list[str]) -> np.ndarray:
        """Rows of :meth:`encode` for ``texts``, the Latin-script ones in one batch of the item text encoder."""
        latin = [t for t in texts if _latin_only(t)]
        got = dict(zip(latin, self.text_encoder.encode(latin))) if latin and self.text_encoder is not None else {}
        return np.stack([got[t] if t in got else np.asarray(self.encode(t)) for t in texts])


class CachedQueryEncoding:
    """A :class:`QueryEncoding` that remembers the last ``size`` texts: the same query from many users
    costs one encoder call."""

    def __init__(self, inner: QueryEncoding, size: int):
        self.inner = inner
        self.size = size
        self.encode = functools.lru_cache(maxsize=size)(inner.encode)
        self.encode_many = inner.encode_many  # a batch is a request's own parts: nothing to share

    @property
    def available(self) -> bool:
        return self.inner.available

    @property
    def understanding(self):
        return self.inner.understanding


class CandidateRetrieval:
    """Item indices worth scoring exactly for user states: the model's candidate index wraps its scorer.
    No index, or an exact one, answers None (score the whole catalogue)."""

    def __init__(self, model: TrainedModel):
        self.index = model.index
        self.scorer = model.scorer
        self.built_for = model.index_for

    def candidates_many(self, states: list, n: int | None = None) -> list[np.ndarray | None]:
        """At least ``n`` candidates per state (pass k plus the number of items to exclude), in one index
        search; None for a state whose index search came up short."""
        if self.index is None or self.index.exact:
            return [None] * len(states)
        if self.built_for is not self.scorer:
            raise ModelError(
                "the candidate index was built for other model weights (the model was retrained). "
                "Fix: call build_index() again, or drop_index()."
            )
        return self.index.candidates(self.scorer, states, n)


class Explaining:
    """Evidence, reasons and (when asked) verified counterfactuals for the items of a ranked list; an
    optional rewriter then rephrases each reason, kept only if it passes its evidence check."""

    def __init__(self, model: TrainedModel):
        self.model = model

    def explain(self, state, entries, top, masked_scores, result, lang, counterfactual, constraints, rewriter=None):
        from lucidrec.explain import explain_items

        explain_items(self.model, state, entries, top, masked_scores, result, lang, counterfactual, constraints)
        if rewriter is not None:
            # The LLM may rephrase; its text is kept only if every title and number is in the evidence.
            rewriter.ensure_catalog(self.model.catalogue.titles)
            for it in result["items"]:
                rr = rewriter.rewrite(it["title"], it["evidence"], it["reason"], lang)
                it["reason"], it["reason_source"] = rr.text, rr.source
                if rr.detail:
                    it["reason_fallback"] = rr.detail


__all__ = [
    "MAX_QUERY_CHARS",
    "CachedQueryEncoding",
    "CandidateRetrieval",
    "Explaining",
    "QueryEncoding",
    "QueryParsing",
    "clean_query",
]
