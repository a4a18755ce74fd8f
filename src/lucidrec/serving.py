"""Request handling: from (user, inline history, query) to a ranked, filtered, explained top-k.

The steps of one request, in the order they run:
1. :func:`resolve_history` - the stored history of a known user, plus any inline items;
2. :func:`request_state` - parse the query, add the items it names, embed its residual text, and build
   the user tower's state;
3. :func:`rank` - exclusions, candidate retrieval, the query's constraints with relaxation, top-k, and
   (optionally) explanations.
Every function reads a trained :class:`lucidrec.recommender.Recommender`; none of them trains or saves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec.errors import ConfigError, UnknownIdError
from lucidrec.explain import QUERY_LIKE_EVENT, constraint_label
from lucidrec.metrics import top_k
from lucidrec.models.scoring import NEGATIVE_EVENTS, UserState
from lucidrec.query import relaxation_tiers
from lucidrec.user_history import HistoryEntry, parse_history_events

if TYPE_CHECKING:
    from lucidrec.recommender import Recommender

MAX_K = 1000
MAX_QUERY_CHARS = 2000


def resolve_history(rec: Recommender, user=None, history=None) -> tuple[list[HistoryEntry], str]:
    """The history used for a request: the known user's stored history, plus any inline items."""
    entries: list[HistoryEntry] = []
    source = "none"
    if user is not None:
        if user in rec.known:
            entries = rec.known.history(str(user))
            if rec.implicit_event:
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
        seen = {h.item for h in entries}
        base_t = max([h.timestamp or 0 for h in entries], default=0.0)
        index = rec.item_index
        for k, (iid, r, given) in enumerate(parse_history_events(history)):
            idx = index.get(iid)
            if idx is None:
                idx = rec.item_idx(iid)  # raises the clear unknown-item error
            if r is not None and not math.isfinite(r):
                raise ConfigError(f"history item '{iid}': rating must be a finite number.")
            if idx in seen:
                entries = [e for e in entries if e.item != idx]
            if rec.implicit_event:
                r = None  # implicit data has no rating scale: a given rating carries nothing the model knows
            # A negative event (disliked, returned, skipped) stays one on every catalogue: it is never read as
            # the catalogue's implicit event (a purchase), so it never raises what it is about nor is cited.
            negative = given in NEGATIVE_EVENTS
            event = given if negative else (rec.implicit_event or ("rated" if r is not None else "liked"))
            entries.append(HistoryEntry(idx, r, base_t + k + 1, event))
            seen.add(idx)
        source = "inline" if source == "none" else "stored+inline"
    return entries, source


def unrated_rating(rec: Recommender) -> float:
    """The rating an unrated history item is read with: for implicit data the weight every training
    interaction had (1); otherwise NaN, binned as the top rating and always liked (the user's mean is
    taken over the rated items only)."""
    return 1.0 if getattr(rec, "implicit_event", None) else np.nan


def state_inputs(history: list[HistoryEntry], unrated: float = np.nan):
    """(items, ratings, boost, negative) of a history, as the user tower reads them."""
    items = np.array([h.item for h in history], dtype=np.int64)
    ratings = np.array([unrated if h.rating is None else h.rating for h in history], dtype=np.float64)
    negative = np.array([h.event in NEGATIVE_EVENTS for h in history], dtype=bool)
    named = np.array([h.event == QUERY_LIKE_EVENT for h in history], dtype=bool)
    boost = None
    if named.any() and (~named).any():
        # Items the query names ("like Heat") are what the user asks for now: together they weigh as
        # much as the rest of the history, however long it is.
        boost = np.where(named, max(1.0, (~named).sum() / named.sum()), 1.0)
    if negative.any():
        # A negative event weighs 0 in every block, in every model: a rating-aware model zeroes it itself,
        # one that is not would read it as an interaction like any other and raise what it is about.
        boost = np.where(negative, 0.0, 1.0 if boost is None else boost)
    return items, ratings, boost, negative if negative.any() else None


def state_for(rec: Recommender, history: list[HistoryEntry], query_vec: np.ndarray | None) -> UserState:
    """The user tower's state for a history (and an embedded query)."""
    items, ratings, boost, negative = state_inputs(history, unrated_rating(rec))
    return rec.scorer.user_state(items, ratings, query_vec, boost, negative)


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


def request_state(rec: Recommender, user, history, query):
    """What a request scores with: its history (stored + inline + items the query names), the parsed
    query, and the user tower's state. Returns (entries, history source, parsed query or None, state)."""
    entries, source = resolve_history(rec, user, history)
    parsed = rec.parse_query(query) if query is not None else None
    if parsed is not None:
        entries = _with_references(entries, parsed)
    return entries, source, parsed, state_for(rec, entries, _query_vector(rec, parsed))


def _query_vector(rec: Recommender, parsed) -> np.ndarray | None:
    """The embedded residual text, scaled by the share of the request it stands for."""
    if parsed is None or not parsed.text:
        return None
    return (rec.encode_query(parsed.text) * np.float32(parsed.text_weight)).astype(np.float32)


def _with_references(entries: list[HistoryEntry], parsed) -> list[HistoryEntry]:
    """Items the query names ("like Heat") join the history as the newest, liked items."""
    have = {e.item for e in entries}
    t = max([e.timestamp or 0.0 for e in entries], default=0.0)
    extra = [
        HistoryEntry(int(i), None, t + k + 1, QUERY_LIKE_EVENT) for k, i in enumerate(parsed.like_idx) if i not in have
    ]
    return entries + extra


def rank(
    rec: Recommender,
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
    base = np.ones(len(rec.item_ids), bool)
    if exclude_seen and entries:
        base[[e.item for e in entries]] = False
    if exclude:
        for iid in exclude:
            base[rec.item_idx(iid)] = False
    constraints = rec.query_parser.constraint_masks(parsed) if parsed is not None and parsed.has_constraints else []
    # With an ANN index, only the retrieved candidates are scored (cross term and explanations included);
    # when they leave fewer than k items that meet every constraint, the whole catalog is scored instead.
    if isinstance(candidates, str):
        candidates = rec.candidate_items(state, k + int((~base).sum()))
    while True:
        if candidates is None:
            scores = rec.scorer.score(state).astype(np.float64)
            allowed = base
        else:
            scores = np.full(len(rec.item_ids), -np.inf)
            scores[candidates] = rec.scorer.score(state, candidates)
            allowed = base & np.isfinite(scores)
        tiers = relaxation_tiers(constraints, allowed) if constraints else [([], allowed)]
        if candidates is None or tiers[0][1].sum() >= k:
            break
        candidates = None
    met = np.sum([m for _, m in constraints], axis=0) if constraints else None
    if candidates is not None and not constraints:
        # Only the candidates hold finite scores: rank them, not the catalog (a top-k over 1M items per
        # request cost more than scoring the candidates). Sorted, so ties break by item index as top_k does.
        sub = np.sort(candidates[allowed[candidates]])
        top, relaxed = sub[top_k(scores[sub][None, :], min(k, len(sub)))[0]] if len(sub) else sub, []
    else:
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
    items = []
    for position, i in enumerate(top, 1):
        items.append(
            {
                "item_id": str(rec.item_ids[i]),
                "title": str(rec.titles[i]),
                "score": round(float(scores[i]), 6),
                "rank": position,
            }
        )
        if constraints:
            items[-1]["constraints_met"] = [constraint_label(c) for c, m in constraints if m[i]]
    result = {"scored": "all" if candidates is None else int(len(candidates)), "items": items}
    if parsed is not None:
        result["parsed_query"] = parsed.to_dict()
    if (explain or counterfactual) and items:  # a counterfactual needs the evidence it is searched by
        from lucidrec.explain import explain_items

        masked = np.where(allowed, scores, -np.inf)
        explain_items(rec, state, entries, top, masked, result, lang, counterfactual, constraints)
        if rewriter is not None:
            # The LLM may rephrase; its text is kept only if every title and number is in the evidence.
            rewriter.ensure_catalog(rec.titles)
            for it in result["items"]:
                rr = rewriter.rewrite(it["title"], it["evidence"], it["reason"], lang)
                it["reason"], it["reason_source"] = rr.text, rr.source
                if rr.detail:
                    it["reason_fallback"] = rr.detail
    return result


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
    "clean_query",
    "rank",
    "request_state",
    "resolve_history",
    "state_for",
    "state_inputs",
    "unrated_rating",
]
