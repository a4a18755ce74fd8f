"""What the service does per request, apart from HTTP: histories from the feedback store, filters,
the call into ``Recommender.recommend``, and the privacy guard on reasons.

The store is the source of truth: a known user's history is read from it on every request and passed to
the recommender as an inline history (oldest first), so feedback counts on the very next request and a
forgotten user's rows are simply gone. The model's own copy of the training interactions is used only to
seed the store on its first start.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from lucidrec.errors import ConfigError, UnknownIdError
from lucidrec.service.schemas import EVENT_DEFAULT_RATING, RecommendRequest
from lucidrec.service.store import DEFAULT_MAX_HISTORY, FeedbackRow, FeedbackStore


class CostError(ConfigError):
    """A request over the per-request cost bound (answered 422, naming the field to change)."""


# User attributes that must never reach a reason, whatever a future model puts into its evidence.
SENSITIVE_ATTRIBUTES = frozenset({"age", "gender", "sex", "occupation", "zip", "zip_code", "zipcode", "postcode"})
QUERY_CACHE_SIZE = 4096

# The per-request cost bound. ``request_cost`` estimates a recommend's CPU time in milliseconds on one
# core of the 2-core test machine (ML-100K, 1,682 items, the concise item-item block; fitted on a grid of
# measured requests, k 10-1000 x history 20-664 rows, quiet machine, 2026-12-04): a fixed part, the
# history rows, the query text, the explained items (each one's evidence grows with the history) and a
# counterfactual (candidate removal sets re-scored per item, and a pool of k + 40 items tracked for each:
# it grows with k^2; plus the decisive-set search of the list's head, lucidrec.explain.DECISIVE_ITEMS).
# Measured with the decisive search then part of every explained request (so the explained-item terms
# are upper bounds): explained k=1000 with 664 rows 189 ms; counterfactual k=150 270-457 ms, k=400
# 1.2-2.2 s. The bound admits every request without a counterfactual that the schema
# allows (about 510 ms at most: k=1000, 2,000 rows with the stored ones, a 2,000-character query) and
# counterfactuals up to about k=120 with 1,000 rows (k=90 with 2,000, k=220 with 100).
COST_BASE_MS = 1.0
COST_PER_HISTORY_ROW_MS = 0.003
COST_PER_EXPLAINED_ITEM_MS = 0.05
COST_PER_EXPLAINED_ITEM_ROW_MS = 0.0002
COST_DECISIVE_MS = 6.0
COST_DECISIVE_ROW_MS = 0.011
COST_PER_QUERY_CHAR_MS = 0.025
COST_CF_PER_ITEM_MS = 1.3
COST_CF_PER_ITEM_ROW_MS = 0.0015
COST_CF_PER_ITEM_SQ_MS = 0.004
COST_CF_PER_ITEM_SQ_ROW_MS = 0.000005
DEFAULT_MAX_COST = 600.0


class ModelHolder:
    """Loads the model folder once per process, on first use (thread-safe), and caches query embeddings:
    the same query text from many users costs one encoder call."""

    def __init__(self, model_dir: str | Path, encoder_threads: int | None = None, rec=None):
        """``rec``: the model already loaded from ``model_dir`` (``lucidrec serve`` checks the folder by
        loading it), served as it is instead of a second load."""
        self.model_dir = Path(model_dir)
        self.encoder_threads = encoder_threads
        self._rec = None if rec is None else self._prepare(rec)
        self._lock = threading.Lock()

    @staticmethod
    def _prepare(rec):
        rec.use_query_cache(QUERY_CACHE_SIZE)  # the pipeline's query encoder remembers recent texts
        if getattr(rec, "understanding", None) is not None and rec._query_encoder is not None:
            # The multilingual encoder (~1 s) and the Chinese glossary (~1 s) load on first use: pay that at
            # start-up, not on the first request that carries a query.
            rec.understanding.read("预热 warm up")
        return rec

    @property
    def loaded(self) -> bool:
        return self._rec is not None

    def get(self):
        if self._rec is None:
            with self._lock:
                if self._rec is None:
                    from lucidrec.recommender import Recommender

                    # One encoder thread, no spin-waiting: a server runs many requests at once, and one
                    # thread per request measured 2x faster per query (15 vs 31 ms p50) than two spinning
                    # threads when the cores are busy.
                    self._rec = self._prepare(Recommender.load(self.model_dir, encoder_threads=self.encoder_threads))
        return self._rec

    def seed_rows(self):
        """The model's known interactions as store rows (the loaded model's histories: the folder check
        already refused interactions with items outside the catalog)."""
        rec = self.get()
        k = rec.known
        for u, i, r, t, e in zip(k.users, k.items, k.ratings, k.times, k.events):
            if i >= 0:
                yield (str(u), str(rec.item_ids[i]), str(e), float(r) if np.isfinite(r) else None, float(t))


def row_rating(row: FeedbackRow) -> float | None:
    return row.rating if row.rating is not None else EVENT_DEFAULT_RATING.get(row.event)


def check_item(rec, item: str, field: str) -> None:
    if item not in rec.item_index:
        raise UnknownIdError(
            f"{field}: item '{item}' is not in this model's catalog ({len(rec.item_ids)} items). "
            "Fix: use an id from GET /items?search=..."
        )


def _filter_exclusions(rec, req: RecommendRequest) -> list[str]:
    f = req.filters
    for n, iid in enumerate(f.exclude):
        check_item(rec, iid, f"filters.exclude[{n}]")
    exclude = list(f.exclude)
    if f.genres is not None:
        known = {g.lower() for cats in rec.categories for g in cats}
        wanted = {g.lower() for g in f.genres}
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(
                f"filters.genres: unknown genre(s) {', '.join(unknown)}. Fix: use the catalog's genres, e.g. "
                f"{', '.join(sorted(known)[:6])}."
            )
        exclude += [
            str(rec.item_ids[i]) for i, cats in enumerate(rec.categories) if not wanted & {c.lower() for c in cats}
        ]
    if f.year_min is not None or f.year_max is not None:
        lo = -np.inf if f.year_min is None else f.year_min
        hi = np.inf if f.year_max is None else f.year_max
        years = np.asarray(rec.years, dtype=np.float64)
        # Items without a year cannot be shown to meet a year filter, so they are left out.
        outside = ~((years >= lo) & (years <= hi))
        exclude += [str(x) for x in rec.item_ids[outside]]
    return exclude


def request_cost(req: RecommendRequest, history_rows: int) -> dict[str, float]:
    """The estimated cost of ``req`` in milliseconds, by part (see COST_* above)."""
    rows = history_rows
    explained = req.k if (req.explain or req.counterfactual) else 0
    k_cf = req.k if (req.counterfactual and rows) else 0
    decisive = COST_DECISIVE_MS + COST_DECISIVE_ROW_MS * rows if k_cf else 0.0
    return {
        "base": COST_BASE_MS,
        "history": COST_PER_HISTORY_ROW_MS * rows,
        "k": explained * (COST_PER_EXPLAINED_ITEM_MS + COST_PER_EXPLAINED_ITEM_ROW_MS * rows),
        "query": COST_PER_QUERY_CHAR_MS * len(req.query or ""),
        "counterfactual": k_cf * (COST_CF_PER_ITEM_MS + COST_CF_PER_ITEM_ROW_MS * rows)
        + k_cf**2 * (COST_CF_PER_ITEM_SQ_MS + COST_CF_PER_ITEM_SQ_ROW_MS * rows)
        + decisive,
    }


def check_cost(req: RecommendRequest, stored_rows: int, max_cost: float) -> None:
    """A 422 that names the field to change when ``req`` would cost over ``max_cost`` (0: no bound).
    ``stored_rows`` is the (capped) stored history size, or its upper bound before it is read."""
    if not max_cost:
        return
    n_hist = stored_rows + len(req.history or ())
    parts = request_cost(req, n_hist)
    total = sum(parts.values())
    if total <= max_cost:
        return
    field = max(("counterfactual", "k", "history", "query"), key=lambda n: parts[n])
    if field == "history" and req.user is not None and not req.history:
        field = "user"
    fixes = {
        "counterfactual": f"drop 'counterfactual' or ask for a smaller 'k' (now {req.k}): it re-scores the "
        "catalog for several candidate removal sets per item",
        "k": f"ask for a smaller 'k' (now {req.k}) or set 'explain': false",
        "history": f"send a shorter 'history' (now {len(req.history or ())} items)",
        "user": "send fewer rows in 'history' alongside 'user'",
        "query": f"send a shorter 'query' (now {len(req.query or '')} characters)",
    }
    raise CostError(
        f"{field}: this request's estimated cost {total:.0f} is over the server's per-request bound "
        f"{max_cost:g} ms (" + ", ".join(f"{n} {v:.0f}" for n, v in parts.items()) + f"). Fix: {fixes[field]}."
    )


def recommend(rec, store: FeedbackStore, req: RecommendRequest, max_history: int = DEFAULT_MAX_HISTORY,
              max_cost: float = 0.0) -> dict[str, Any]:  # fmt: skip
    history: list[tuple] = []
    source = []
    if req.user is not None:
        # Only the most recent max_history rows: a user with 100k stored rows costs what 1,000 cost.
        rows = store.history(req.user, limit=max_history)
        # Rows whose item left the catalog (a retrained model) are skipped rather than failing the request.
        # Each row keeps its event: a "disliked" row stays a negative event on every catalogue (on an
        # implicit one it would otherwise read as the catalogue's own event, e.g. a purchase).
        history = [(r.item, row_rating(r), r.event) for r in rows if r.item in rec.item_index]
        if history:
            source.append("store")
        elif req.history is None and not req.query:
            raise UnknownIdError(
                f"user: '{req.user}' has no history (unknown, or forgotten). Fix: send an inline 'history', a "
                "'query', or POST /feedback for this user first."
            )
    check_cost(req, len(history), max_cost)
    if req.history:
        for n, h in enumerate(req.history):
            check_item(rec, h.item, f"history[{n}].item")
        history += [(h.item, h.rating) for h in req.history]
        source.append("inline")
    exclude = _filter_exclusions(rec, req)
    result = rec.recommend(
        history=history or None,
        query=req.query if req.query else None,
        k=req.k,
        exclude_seen=not req.filters.include_seen,
        explain=req.explain or req.counterfactual,
        lang=req.lang,
        counterfactual=req.counterfactual,
        exclude=exclude or None,
    )
    result["user"] = req.user
    result["history_source"] = "+".join(source) or "none"
    if req.explain:
        scrub_sensitive(result, req.lang)
    return result


def scrub_sensitive(result: dict, lang: str) -> None:
    """Drop evidence about sensitive user attributes and re-render the reason without it."""
    from lucidrec.explain import render_reason

    for it in result.get("items", []):
        ev = it.get("evidence") or []
        kept = [e for e in ev if not _sensitive(e)]
        if len(kept) != len(ev):
            it["evidence"] = kept
            it["reason"] = render_reason(it["title"], kept, lang)


def _sensitive(evidence: dict) -> bool:
    names = {str(evidence.get(k, "")).lower() for k in ("kind", "name", "attribute", "feature")}
    return bool(names & SENSITIVE_ATTRIBUTES)


def item_info(rec, idx: int) -> dict:
    y = float(rec.years[idx]) if idx < len(rec.years) else float("nan")
    return {
        "item_id": str(rec.item_ids[idx]),
        "title": str(rec.titles[idx]),
        "genres": list(rec.categories[idx]),
        "year": int(y) if np.isfinite(y) else None,
    }


def search_items(rec, search: str | None, limit: int) -> list[dict]:
    """Items whose title contains ``search`` (case-insensitive) or whose id equals it; all when empty."""
    if not search:
        return [item_info(rec, i) for i in range(min(limit, len(rec.item_ids)))]
    s = search.lower()
    exact = rec.item_index.get(search)
    hits = [] if exact is None else [exact]
    for i, t in enumerate(rec.titles):
        if len(hits) >= limit:
            break
        if i != exact and s in str(t).lower():
            hits.append(i)
    return [item_info(rec, i) for i in hits[:limit]]
