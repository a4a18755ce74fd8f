"""The request pipeline: one :class:`Request` value through components assembled once per model.

The steps of one request, in the order they run (:meth:`Pipeline.recommend`):
1. :func:`resolve_history` - the stored history of a known user, plus any inline items;
2. :meth:`Pipeline.request_state` - parse the query (:class:`lucidrec.pipeline.components.QueryParsing`), add the
   items it names, embed its residual text (:class:`lucidrec.pipeline.components.QueryEncoding`), and build the user
   tower's state (the model's scorer);
3. :meth:`Pipeline.rank` - exclusions, candidate retrieval (:class:`lucidrec.pipeline.components.CandidateRetrieval`),
   the query's constraints with relaxation, top-k, and (optionally) explanations
   (:class:`lucidrec.pipeline.components.Explaining`).
Everything reads a :class:`lucidrec.artifact.TrainedModel`; nothing here trains, saves, or knows the
``Recommender`` facade.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lucidrec.artifact import TrainedModel
from lucidrec.errors import ConfigError, UnknownIdError
from lucidrec.explain import constraint_label
from lucidrec.history_inputs import QUERY_LIKE_EVENT, state_inputs, unrated_rating, user_state
from lucidrec.metrics import top_k
from lucidrec.models.scoring import NEGATIVE_EVENTS, UserState
from lucidrec.pipeline.components import (
    MAX_QUERY_CHARS,
    CandidateRetrieval,
    Explaining,
    QueryEncoding,
    QueryParsing,
    _latin_only,
    clean_query,
)
from lucidrec.query import relaxation_tiers
from lucidrec.user_history import HistoryEntry, parse_history_events

MAX_K = 1000
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Request:
    """One recommendation request: who (a known ``user`` and/or an inline ``history`` of ids or
    (id, rating) pairs), what they ask for (``query``), how many (``k``), what to leave out
    (``exclude_seen``, ``exclude``: item ids) and what to return (``explain``, ``lang``, ``counterfactual``;
    ``rewriter``: an optional LLM reason rewriter, :mod:`lucidrec.rewriter`)."""

    user: Any = None
    history: Any = None
    query: str | None = None
    k: int = 10
    exclude_seen: bool = True
    exclude: Iterable | None = None
    explain: bool = False
    lang: str = "en"
    counterfactual: bool = False
    rewriter: Any = None

    def checked(self) -> Request:
        """This request, after the checks every door shares (a clear error naming the field)."""
        k = self.k
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ConfigError(f"k={k!r}: must be an integer from 1 to {MAX_K}.")
        if self.lang not in LANGUAGES:
            raise ConfigError(f"lang='{self.lang}': supported languages are 'en' and 'zh'.")
        return self


def resolve_history(model: TrainedModel, user=None, history=None) -> tuple[list[HistoryEntry], str]:
    """The history used for a request: the known user's stored history, plus any inline items."""
    implicit = model.catalogue.implicit_event
    entries: list[HistoryEntry] = []
    source = "none"
    if user is not None:
        if user in model.known:
            entries = model.known.history(str(user))
            if implicit:
                # Implicit data has no rating scale (the model reads every interaction alike): a stored
                # row reads as an inline one does, without a rating, so evidence is the same at every door.
                entries = [HistoryEntry(e.item, None, e.timestamp, e.event) for e in entries]
            source = "stored"
        elif history is None:
            raise UnknownIdError(
                f"user '{user}' is unknown to this model. Fix: pass the user's history "
                "inline (--history ITEM[:RATING],...) or a query, or omit --user."
            )
    if history is not None:
        entries = _with_inline(model, entries, history)
        source = "inline" if source == "none" else "stored+inline"
    return entries, source


def _with_inline(model: TrainedModel, entries: list[HistoryEntry], history) -> list[HistoryEntry]:
    """``entries`` with an inline history's items appended (newest last); an item already there moves."""
    implicit = model.catalogue.implicit_event
    seen = {h.item for h in entries}
    base_t = max([h.timestamp or 0 for h in entries], default=0.0)
    index = model.catalogue.item_index
    for k, (iid, r, given) in enumerate(parse_history_events(history)):
        idx = index.get(iid)
        if idx is None:
            idx = model.catalogue.item_idx(iid)  # raises the clear unknown-item error
        if r is not None and not math.isfinite(r):
            raise ConfigError(f"history item '{iid}': rating must be a finite number.")
        if idx in seen:
            entries = [e for e in entries if e.item != idx]
        if implicit:
            r = None  # implicit data has no rating scale: a given rating carries nothing the model knows
        # A negative event (disliked, returned, skipped) stays one on every catalogue: it is never read as
        # the catalogue's implicit event (a purchase), so it never raises what it is about nor is cited.
        negative = given in NEGATIVE_EVENTS
        event = given if negative else (implicit or ("rated" if r is not None else "liked"))
        entries.append(HistoryEntry(idx, r, base_t + k + 1, event))
        seen.add(idx)
    return entries


def state_for(model: TrainedModel, history: list[HistoryEntry], query_vec: np.ndarray | None) -> UserState:
    """The user tower's state for a history (and an embedded query)."""
    return user_state(model.scorer, history, query_vec, model.catalogue.implicit_event)


def _with_references(entries: list[HistoryEntry], parsed) -> list[HistoryEntry]:
    """Items the query names ("like Heat") join the history as the newest, liked items."""
    have = {e.item for e in entries}
    t = max([e.timestamp or 0.0 for e in entries], default=0.0)
    extra = [
        HistoryEntry(int(i), None, t + k + 1, QUERY_LIKE_EVENT) for k, i in enumerate(parsed.like_idx) if i not in have
    ]
    return entries + extra


class Pipeline:
    """The components that answer requests for one trained model, assembled once (:meth:`assemble`)."""

    def __init__(
        self,
        model: TrainedModel,
        parsing: QueryParsing,
        encoding: QueryEncoding,
        retrieval: CandidateRetrieval,
        explaining: Explaining,
    ):
        self.model = model
        self.parsing = parsing
        self.encoding = encoding
        self.retrieval = retrieval
        self.explaining = explaining
        u = model.understanding
        if u is not None and encoding.available:
            # The request understanding's second reader is the model's item-text encoder: through this
            # pipeline's query encoder, so a cached one serves the understanding too.
            u.text_reader = encoding.encode
            u.text_reader_many = encoding.encode_many

    @classmethod
    def assemble(cls, model: TrainedModel) -> Pipeline:
        return cls(
            model,
            QueryParsing(model),
            QueryEncoding(model.text_encoder, model.understanding),
            CandidateRetrieval(model),
            Explaining(model),
        )

    def with_encoding(self, encoding) -> Pipeline:
        """This pipeline with another query encoder (e.g. :class:`lucidrec.pipeline.components.CachedQueryEncoding`)."""
        return Pipeline(self.model, self.parsing, encoding, self.retrieval, self.explaining)

    # ------------------------------------------------------------------ a whole request
    def recommend(self, request: Request) -> dict[str, Any]:
        """Top-k items for ``request``: ``{"user", "query", "history_source", "history_size", "scored",
        "items": [{"item_id", "title", "score", "rank", ...}], "parsed_query"?}``."""
        r = request.checked()
        entries, source, parsed, state = self.request_state(r.user, r.history, r.query)
        result = {
            "user": None if r.user is None else str(r.user),
            "query": None if parsed is None else parsed.raw,
            "history_source": source,
            "history_size": len(entries),
        }
        result.update(
            self.rank(
                state, entries, parsed, r.k, r.exclude_seen, r.exclude, r.explain, r.lang, r.counterfactual, r.rewriter
            )
        )
        return result

    def request_state(self, user, history, query):
        """What a request scores with: its history (stored + inline + items the query names), the parsed
        query, and the user tower's state. Returns (entries, history source, parsed query or None, state)."""
        entries, source = resolve_history(self.model, user, history)
        parsed = self.parsing.parse(query) if query is not None else None
        if parsed is not None:
            entries = _with_references(entries, parsed)
        return entries, source, parsed, state_for(self.model, entries, self.query_vector(parsed))

    def query_vector(self, parsed) -> np.ndarray | None:
        """The embedded residual text, scaled by the share of the request it stands for."""
        if parsed is None or not parsed.text:
            return None
        vec = None
        u = self.model.understanding
        if u is not None and u.text_reader_many is not None and _latin_only(parsed.text):
            # Understanding the request already read this text with the item-text encoder, in its batch
            # (the same encoder and text as below: the same vector), so it is not read twice.
            vec = u.text_reading(parsed.text)
        if vec is None:
            vec = self.encoding.encode(parsed.text)
        return (vec * np.float32(parsed.text_weight)).astype(np.float32)

    # ------------------------------------------------------------------ ranking a built state
    def rank(
        self,
        state: UserState,
        entries: list[HistoryEntry],
        parsed=None,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: Iterable | None = None,
        explain: bool = False,
        lang: str = "en",
        counterfactual: bool = False,
        rewriter=None,
        candidates: np.ndarray | None | str = "retrieve",
    ) -> dict[str, Any]:
        """Exclusions, candidate retrieval, constraints with relaxation, top-k and explanations for a user
        state already built. ``candidates``: "retrieve" asks the index; a batch job that searched the index
        for many users at once passes each user's candidates (None: the whole catalog).
        Returns ``{"scored", "items", "parsed_query"?}``."""
        base = self._allowed(entries, exclude_seen, exclude)
        constraints = self.parsing.constraint_masks(parsed)
        if isinstance(candidates, str):
            candidates = self.retrieval.candidates_many([state], k + int((~base).sum()))[0]
        scores, allowed, tiers, candidates = self._scored(state, base, constraints, candidates, k)
        top = self._top(scores, allowed, tiers, candidates, constraints, parsed, k)
        items = self._items(top, scores, constraints)
        result = {"scored": "all" if candidates is None else int(len(candidates)), "items": items}
        if parsed is not None:
            result["parsed_query"] = parsed.to_dict()
        if (explain or counterfactual) and items:  # a counterfactual needs the evidence it is searched by
            masked = np.where(allowed, scores, -np.inf)
            self.explaining.explain(state, entries, top, masked, result, lang, counterfactual, constraints, rewriter)
        return result

    def _allowed(self, entries: list[HistoryEntry], exclude_seen: bool, exclude: Iterable | None) -> np.ndarray:
        """Per item, whether the request may return it (seen items and ``exclude`` left out)."""
        base = np.ones(len(self.model.catalogue), bool)
        if exclude_seen and entries:
            base[[e.item for e in entries]] = False
        if exclude:
            for iid in exclude:
                base[self.model.catalogue.item_idx(iid)] = False
        return base

    def _scored(self, state, base, constraints, candidates, k):
        """(scores, allowed, relaxation tiers, candidates). With an ANN index only the retrieved candidates
        are scored (cross term and explanations included); when they leave fewer than k items that meet
        every constraint, the whole catalog is scored instead (candidates None)."""
        scorer = self.model.scorer
        while True:
            if candidates is None:
                scores = scorer.score(state).astype(np.float64)
                allowed = base
            else:
                scores = np.full(len(self.model.catalogue), -np.inf)
                scores[candidates] = scorer.score(state, candidates)
                allowed = base & np.isfinite(scores)
            tiers = relaxation_tiers(constraints, allowed) if constraints else [([], allowed)]
            if candidates is None or tiers[0][1].sum() >= k:
                return scores, allowed, tiers, candidates
            candidates = None

    def _top(self, scores, allowed, tiers, candidates, constraints, parsed, k) -> np.ndarray:
        """The top-k item indices; the parsed query's notes say what was relaxed to fill them."""
        met = np.sum([m for _, m in constraints], axis=0) if constraints else None
        if candidates is not None and not constraints:
            # Only the candidates hold finite scores: rank them, not the catalog (a top-k over 1M items per
            # request cost more than scoring the candidates). Sorted, so ties break by item index as top_k does.
            sub = np.sort(candidates[allowed[candidates]])
            return sub[top_k(scores[sub][None, :], min(k, len(sub)))[0]] if len(sub) else sub
        top, relaxed = top_by_tiers(scores, tiers, k, met)
        relaxed = [c for c in relaxed if c["type"] != "soft"]  # a soft value ranks; passing it over is no relaxation
        if relaxed:
            hard = [m for c, m in constraints if c["type"] != "soft"]
            strict = int(sum(1 for i in top if all(m[i] for m in hard)))
            parsed.notes.append(
                f"only {strict} item(s) meet every constraint; the rest relax, in this order: "
                + "; ".join(constraint_label(c) for c in relaxed)
            )
        if constraints and len(top) < k:
            parsed.notes.append(f"only {len(top)} item(s) are left after the exclusions; a 'no' is never relaxed")
        return top

    def _items(self, top: np.ndarray, scores: np.ndarray, constraints) -> list[dict]:
        cat = self.model.catalogue
        items = []
        for position, i in enumerate(top, 1):
            item = {"item_id": str(cat.item_ids[i]), "title": str(cat.titles[i]), "score": round(float(scores[i]), 6)}
            item["rank"] = position
            if constraints:
                item["constraints_met"] = [constraint_label(c) for c, m in constraints if m[i]]
            items.append(item)
        return items

    def score_items(self, user=None, history=None, query=None, items: Iterable | None = None) -> np.ndarray:
        """Raw scores (no exclusion, no constraint filtering) for the given item ids, or the whole catalog."""
        _, _, _, state = self.request_state(user, history, query)
        idx = None if items is None else np.array([self.model.catalogue.item_idx(i) for i in items])
        return self.model.scorer.score(state, idx)


def top_by_tiers(scores: np.ndarray, tiers, k: int, met: np.ndarray | None = None) -> tuple[np.ndarray, list[dict]]:
    """Top-k filled tier by tier (strict constraints first, then each relaxation); returns the items and
    the constraints relaxed to reach k (empty when the strict tier had enough). Within a relaxed tier,
    items meeting more of the constraints (``met``: count per item) come first, then by score: for
    "a funny animated film for kids", an animated children's film before a comedy that is neither."""
    chosen: list[int] = []
    taken = np.zeros(len(scores), bool)
    relaxed: list[dict] = []
    for relax, mask in tiers:
        avail = mask & ~taken
        if not avail.any():
            continue
        need = k - len(chosen)
        if relax and met is not None:
            cand = np.flatnonzero(avail)
            idx = cand[np.lexsort((-scores[cand], -met[cand]))[:need]]
        else:
            idx = top_k(np.where(avail, scores, -np.inf)[None, :], min(need, int(avail.sum())))[0]
        if len(idx) and relax:
            relaxed = relax
        chosen.extend(int(i) for i in idx)
        taken[idx] = True
        if len(chosen) >= k:
            break
    return np.array(chosen, dtype=np.int64), relaxed


__all__ = [
    "MAX_K",
    "MAX_QUERY_CHARS",
    "Pipeline",
    "Request",
    "clean_query",
    "resolve_history",
    "state_for",
    "state_inputs",
    "top_by_tiers",
    "unrated_rating",
]
