"""The Recommender facade: fit, recommend (with reasons), save, load.

Training needs torch (``lucidrec[train]``); a saved model folder serves with numpy + onnxruntime only.
Folder layout: ``config.json`` (config, catalog metadata), ``weights.safetensors`` (towers),
``item_item.safetensors`` (closed-form block), ``items.json`` (catalog), ``interactions.npz``
(the known histories), ``encoder/`` (ONNX text encoder + tokenizer).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec.errors import ConfigError, ModelError, UnknownIdError
from lucidrec.explain import QUERY_LIKE_EVENT, constraint_label
from lucidrec.metrics import top_k
from lucidrec.models.scoring import HybridScorer, UserState
from lucidrec.query import relaxation_tiers

if TYPE_CHECKING:  # heavy imports stay out of the serving start-up path
    import pandas as pd

    from lucidrec.data.dataset import Dataset
    from lucidrec.history import Histories

FORMAT_VERSION = 1
MAX_K = 1000
MAX_QUERY_CHARS = 2000


@dataclass(slots=True)
class HistoryEntry:
    item: int
    rating: float | None = None
    timestamp: float | None = None
    event: str = "rated"


def parse_history(spec: str | Iterable | None) -> list[tuple[str, float | None]]:
    """Parse an inline history: '50,181:5,12' or an iterable of ids / (id, rating) / {"item", "rating"}."""
    if spec is None:
        return []
    out: list[tuple[str, float | None]] = []
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        for p in parts:
            item, _, rating = p.partition(":")
            r = None
            if rating:
                try:
                    r = float(rating)
                except ValueError:
                    raise ConfigError(
                        f"history entry '{p}': rating '{rating}' is not a number. Fix: write "
                        "ITEM or ITEM:RATING, e.g. 181:5."
                    ) from None
            out.append((item.strip(), r))
        return out
    for e in spec:
        # The common case first (a service passes hundreds of (id, rating) pairs per request).
        if type(e) is tuple and len(e) == 2 and (e[1] is None or type(e[1]) in (float, int)):
            out.append((str(e[0]), None if e[1] is None else float(e[1])))
        elif isinstance(e, dict):
            if "item" not in e and "item_id" not in e:
                raise ConfigError(f"history entry {e!r}: no 'item'. Fix: give {{'item': ID, 'rating': R}}.")
            out.append((str(e.get("item", e.get("item_id"))), _rating(e.get("rating"), e)))
        elif isinstance(e, (tuple, list)):
            out.append((str(e[0]), _rating(e[1] if len(e) > 1 else None, e)))
        else:
            out.append((str(e), None))
    return out


def _rating(value, entry) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"history entry {entry!r}: rating {value!r} is not a number. Fix: give a number, e.g. ('181', 5)."
        ) from None


class Recommender:
    """Language-model hybrid recommender: ``s_ui = p_u . f_i + CLS(p_u, f_i)`` with faithful explanations."""

    def __init__(self, config=None, encoder: str | None = None, cache_dir: str | None = None):
        from lucidrec.models.config import HybridConfig

        self.config = config or HybridConfig()
        self.encoder_name = encoder
        self.cache_dir = cache_dir
        self.scorer: HybridScorer | None = None
        self._query_encoder = None
        self._st_encoder = None
        self.train_report: dict = {}

    # ================================================================== training
    def fit(
        self,
        dataset: Dataset,
        train: pd.DataFrame | None = None,
        valid: pd.DataFrame | None = None,
        progress: bool = True,
        refit_item_item: bool = True,
        log_dir: str | None = None,
    ) -> Recommender:
        """Train on ``train`` (default: all interactions), early-stopping on ``valid`` (default: a random 5%
        of ``train`` per user is held out). The closed-form item-item block is refit on train+valid at the
        end so the served model knows every interaction it was given."""
        import pandas as pd

        from lucidrec.baselines import EASE, ease_weights
        from lucidrec.data.text import ItemTextBuilder
        from lucidrec.encoders import CachedEncoder, SentenceTransformerEncoder
        from lucidrec.evaluate import choose_on_validation
        from lucidrec.metrics import RankingAccumulator
        from lucidrec.models.features import FeatureSpace
        from lucidrec.models.hybrid import HybridNet, Sequences, _require_torch, pad_histories, train_hybrid
        from lucidrec.splits import Split

        _require_torch()

        t0 = time.perf_counter()
        cfg = self.config
        if train is None:
            train, valid = _holdout(dataset.interactions, cfg.seed) if valid is None else (dataset.interactions, valid)
        elif valid is None:
            train, valid = _holdout(train, cfg.seed)
        self.dataset_name = dataset.name
        self._set_catalog(dataset)

        # 1. frozen language-model embeddings of the item text (cached on disk)
        self._st_encoder = SentenceTransformerEncoder(self.encoder_name)
        encoder = CachedEncoder(self._st_encoder, self.cache_dir)
        texts = ItemTextBuilder().build(dataset)
        T = encoder.encode(texts, progress=progress)
        self._query_encoder = self._st_encoder
        feats_space = FeatureSpace.fit(dataset)
        G = feats_space.transform(dataset)
        self.feature_space = feats_space

        # 2. the closed-form item-item block, its regularisation chosen on validation
        split = Split(dataset, "custom", train, valid, valid.iloc[:0])
        if cfg.item_item:
            reg = cfg.ease_reg
            if reg is None:
                grid = [{"reg": r} for r in (100.0, 200.0, 300.0, 500.0, 1000.0)]
                reg = choose_on_validation(EASE, grid, split, ks=(10,))["reg"]
            self.ease_reg = float(reg)
            B = impute_cold_item_item(
                ease_weights(dataset.matrix(train), reg).astype(np.float32), T, _seen_items(train, dataset.n_items)
            )
        else:
            self.ease_reg, B = None, None

        # 3. the towers, trained with full softmax; early stopping on validation NDCG@10
        has_id = _seen_items(train, dataset.n_items).astype(np.float32)
        net = HybridNet(dataset.n_items, T, G, B, has_id, cfg)
        seqs = Sequences.from_frame(train, dataset.n_users)
        # Validation users' padded train histories, built once: every epoch and the blend search reuse them.
        valid_users = np.unique(valid["uidx"].to_numpy())
        chunks = [
            (us, pad_histories([seqs.items[u] for u in us], [seqs.ratings[u] for u in us]))
            for us in np.array_split(valid_users, max(1, -(-len(valid_users) // 256)))
        ]
        valid_rel = dataset.matrix(valid)
        train_hist = dataset.matrix(train)

        def validate(model) -> float:
            acc = RankingAccumulator(dataset.n_items, ks=(10,), auc=False)
            for us, batch in chunks:
                acc.add(model(*batch).numpy(), valid_rel[us], train_hist[us])
            return acc.result()["ndcg@10"]

        report = train_hybrid(net, seqs, cfg, validate, progress=progress, log_dir=log_dir)
        if B is not None:
            report["item_item"] = self._blend_on_validation(net, chunks, valid_rel, train_hist)
        weights = net.export()
        if cfg.item_item and refit_item_item:
            known_frame = pd.concat([train, valid])
            B = impute_cold_item_item(
                ease_weights(dataset.matrix(known_frame), self.ease_reg).astype(np.float32),
                T,
                _seen_items(known_frame, dataset.n_items),
            )
        self.scorer = HybridScorer(
            {**weights, "query_latent": np.ones(1, np.float32), "query_text": np.ones(1, np.float32)}, B
        )
        self._torch_net = net
        self._set_known(pd.concat([train, valid], ignore_index=True))
        self._calibrate_query(T)
        report["seconds"] = round(time.perf_counter() - t0, 1)
        report["ease_reg"] = self.ease_reg
        self.train_report = report
        return self

    def _blend_on_validation(self, net, chunks, valid_rel, train_hist) -> dict:
        """Blend the trained towers with the closed-form item-item block: score = c * item_item + towers,
        with the block's recency decay and weight c chosen on validation NDCG@10 (c = 0 keeps the towers
        alone). The towers are trained without the block, so they learn a signal of their own and the
        blend is an honest two-model ensemble rather than a correction fit to the block's own errors."""
        import torch

        from lucidrec.metrics import RankingAccumulator
        from lucidrec.models.features import N_POSITION_BUCKETS, N_RATING_BINS

        with torch.no_grad():
            towers = [net(*batch).numpy() for _, batch in chunks]

        def ndcg(c: float, decay: float, item_item_cache: dict) -> float:
            acc = RankingAccumulator(len(self.item_ids), ks=(10,), auc=False)
            for k, (us, (hist, _rb, pb, mask)) in enumerate(chunks):
                if (decay, k) not in item_item_cache:
                    with torch.no_grad():
                        item_item_cache[(decay, k)] = net.item_item_scores(hist, pb, mask, decay).numpy()
                acc.add(c * item_item_cache[(decay, k)] + towers[k], valid_rel[us], train_hist[us])
            return acc.result()["ndcg@10"]

        cache: dict = {}
        # Scale c relative to the spread of each part so the grid means the same on any dataset.
        spread_t = float(np.median([np.std(t, axis=1).mean() for t in towers])) or 1.0
        with torch.no_grad():
            e0 = net.item_item_scores(*[chunks[0][1][i] for i in (0, 2, 3)], 1.0).numpy()
        spread_e = float(np.std(e0, axis=1).mean()) or 1.0
        unit = spread_t / spread_e
        grid = []
        towers_flat = all(float(np.ptp(t, axis=1).max()) < 1e-9 for t in towers)
        for decay in (1.0, 0.9, 0.75, 0.5):
            for c in ((0.0,) if not towers_flat else ()) + (0.5, 1, 2, 4, 8, 16, 64, 1e4):
                if c == 0.0 and decay != 1.0:
                    continue
                grid.append((ndcg(c * unit, decay, cache), c * unit, decay))
        best = max(grid, key=lambda g: g[0])
        _, c, decay = best
        pi = c * decay ** np.arange(N_POSITION_BUCKETS, dtype=np.float64)
        net.set_item_item_weights(np.ones(N_RATING_BINS, np.float32), pi.astype(np.float32))
        towers_only = next((g[0] for g in grid if g[1] == 0.0), None)
        item_item_only = max(g[0] for g in grid if g[1] >= 1e4 * unit * 0.999)
        return {
            "weight": c,
            "decay": decay,
            "valid_ndcg@10": best[0],
            "towers_only_valid_ndcg@10": towers_only,
            "item_item_only_valid_ndcg@10": item_item_only,
        }

    def _calibrate_query(self, T: np.ndarray):
        """Scale the query terms so a query moves scores about as much as a typical user's history does:
        the spread (p99 - p50) of history scores over the catalog, against that of query similarity."""
        rng = np.random.default_rng(self.config.seed)
        users = self._known_users_with_history()
        if not users:
            return
        sample = rng.choice(users, size=min(100, len(users)), replace=False)
        spreads = []
        for uid in sample:
            s = self.scorer.score(self._state_for(self._known_history(uid), None))
            spreads.append(np.percentile(s, 99) - np.percentile(s, 50))
        probes = T[rng.choice(len(T), size=min(100, len(T)), replace=False)]
        sims = probes @ T.T
        sim_spread = float(np.median(np.percentile(sims, 99, axis=1) - np.percentile(sims, 50, axis=1)))
        latent = probes @ self.scorer.w["Wa"] @ self.scorer.w["F"].T
        lat_spread = float(np.median(np.percentile(latent, 99, axis=1) - np.percentile(latent, 50, axis=1)))
        target = float(np.median(spreads)) * self.config.query_strength
        # Half of the query's pull comes from raw text similarity (readable), half from the learned tower.
        self.scorer.w["query_text"] = np.array([0.5 * target / max(sim_spread, 1e-6)], np.float32)
        self.scorer.w["query_latent"] = np.array([0.5 * target / max(lat_spread, 1e-6)], np.float32)

    # ================================================================== catalog and histories
    def _set_catalog(self, dataset: Dataset):
        from lucidrec.data.text import item_categories, item_years

        self.item_ids = np.asarray(dataset.item_ids, dtype=object)
        self.item_index = {iid: i for i, iid in enumerate(self.item_ids)}
        self._query_parser = None
        self.titles = np.asarray(dataset.titles(), dtype=object)
        self.categories = [sorted(c) for c in item_categories(dataset)]
        self.years = item_years(dataset)

    def _set_known(self, known: pd.DataFrame):
        """Index the stored histories as flat arrays sorted by (user, time): a user's rows are one slice."""
        known = known.sort_values(["user", "timestamp", "iidx"], kind="stable")
        known = known.drop_duplicates(["user", "iidx"], keep="last")
        self._set_known_arrays(
            known["user"].to_numpy(dtype=str),
            known["item"].to_numpy(dtype=str),
            known["rating"].to_numpy(dtype=np.float64),
            known["timestamp"].to_numpy(dtype=np.float64),
            known["event"].to_numpy(dtype=str),
        )

    def _set_known_arrays(self, users, items, ratings, times, events):
        # Vectorised id -> index mapping (a Python loop over 100k rows dominated serving start-up).
        order = np.argsort(self.item_ids.astype(str))
        sorted_ids = self.item_ids.astype(str)[order]
        pos = np.clip(np.searchsorted(sorted_ids, items), 0, len(sorted_ids) - 1)
        found = sorted_ids[pos] == items
        self._k_items = np.where(found, order[pos], -1).astype(np.int64)
        self._k_ratings, self._k_times, self._k_events = ratings, times, events
        starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1] if len(users) else np.array([], int)
        ends = np.r_[starts[1:], len(users)] if len(users) else np.array([], int)
        self._user_slices = {str(users[s]): (int(s), int(e)) for s, e in zip(starts, ends)}
        self._k_users = np.asarray(users)

    def _known_users_with_history(self):
        return list(self._user_slices.keys())

    def _known_history(self, user_id: str) -> list[HistoryEntry]:
        sl = self._user_slices.get(str(user_id))
        if sl is None:
            return []
        s, e = sl
        return [
            HistoryEntry(int(i), float(r), float(t), str(ev))
            for i, r, t, ev in zip(self._k_items[s:e], self._k_ratings[s:e], self._k_times[s:e], self._k_events[s:e])
            if i >= 0
        ]

    def known_user(self, user_id) -> bool:
        return str(user_id) in self._user_slices

    def item_idx(self, item_id) -> int:
        try:
            return self.item_index[str(item_id)]
        except KeyError:
            raise UnknownIdError(
                f"item '{item_id}' is not in this model's catalog ({len(self.item_ids)} items). "
                "Fix: use an item id from the training data."
            ) from None

    def _state_for(self, history: list[HistoryEntry], query_vec: np.ndarray | None) -> UserState:
        items = np.array([h.item for h in history], dtype=np.int64)
        ratings = np.array([5.0 if h.rating is None else h.rating for h in history], dtype=np.float64)
        named = np.array([h.event == QUERY_LIKE_EVENT for h in history], dtype=bool)
        boost = None
        if named.any() and (~named).any():
            # Items the query names ("like Heat") are what the user asks for now: together they weigh as
            # much as the rest of the history, however long it is.
            boost = np.where(named, max(1.0, (~named).sum() / named.sum()), 1.0)
        return self.scorer.user_state(items, ratings, query_vec, boost)

    def encode_query(self, text: str) -> np.ndarray:
        if self._query_encoder is None:
            raise ModelError("this model has no text encoder loaded. Fix: load it with Recommender.load(DIR).")
        return self._query_encoder.encode([text])[0]

    # ================================================================== recommending
    def resolve_history(self, user=None, history=None) -> tuple[list[HistoryEntry], str]:
        """The history used for a request: the known user's stored history, plus any inline items."""
        self._check_ready()
        entries: list[HistoryEntry] = []
        source = "none"
        if user is not None:
            if self.known_user(user):
                entries = self._known_history(str(user))
                source = "stored"
            elif history is None:
                raise UnknownIdError(
                    f"user '{user}' is unknown to this model. Fix: pass the user's history "
                    "inline (--history ITEM[:RATING],...) or a query, or omit --user."
                )
        if history is not None:
            seen = {h.item for h in entries}
            base_t = max([h.timestamp or 0 for h in entries], default=0.0)
            index = self.item_index
            for k, (iid, r) in enumerate(parse_history(history)):
                idx = index.get(iid)
                if idx is None:
                    idx = self.item_idx(iid)  # raises the clear unknown-item error
                if r is not None and not math.isfinite(r):
                    raise ConfigError(f"history item '{iid}': rating must be a finite number.")
                if idx in seen:
                    entries = [e for e in entries if e.item != idx]
                entries.append(HistoryEntry(idx, r, base_t + k + 1, "rated" if r is not None else "liked"))
                seen.add(idx)
            source = "inline" if source == "none" else "stored+inline"
        return entries, source

    def recommend(
        self,
        user=None,
        history=None,
        query: str | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        explain: bool = False,
        lang: str = "en",
        counterfactual: bool = False,
        exclude: Iterable | None = None,
        rewriter=None,
    ) -> dict[str, Any]:
        """Top-``k`` items for a known ``user``, an inline ``history`` (ids or (id, rating)), a ``query``,
        or any mix. Returns ``{"items": [{"item_id", "title", "score", "rank", ...}], ...}``."""
        self._check_ready()
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ConfigError(f"k={k!r}: must be an integer from 1 to {MAX_K}.")
        if lang not in ("en", "zh"):
            raise ConfigError(f"lang='{lang}': supported languages are 'en' and 'zh'.")
        entries, source, parsed, state = self._request_state(user, history, query)
        result = {
            "user": None if user is None else str(user),
            "query": None if parsed is None else parsed.raw,
            "history_source": source,
            "history_size": len(entries),
        }
        result.update(
            self.rank(state, entries, parsed, k, exclude_seen, exclude, explain, lang, counterfactual, rewriter)
        )
        return result

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
        """The ranking half of :meth:`recommend`, for a user state already built: exclusions, candidate
        retrieval, constraints with relaxation, top-k and explanations. ``candidates``: "retrieve" asks the
        index; a batch job that searched the index for many users at once passes each user's candidates
        (None: the whole catalog). Returns ``{"scored", "items", "parsed_query"?}``."""
        base = np.ones(len(self.item_ids), bool)
        if exclude_seen and entries:
            base[[e.item for e in entries]] = False
        if exclude:
            for iid in exclude:
                base[self.item_idx(iid)] = False
        constraints = (
            self.query_parser.constraint_masks(parsed) if parsed is not None and parsed.has_constraints else []
        )
        # With an ANN index, only the retrieved candidates are scored (cross term and explanations included);
        # when they leave fewer than k items that meet every constraint, the whole catalog is scored instead.
        if isinstance(candidates, str):
            candidates = self.candidate_items(state, k + int((~base).sum()))
        while True:
            if candidates is None:
                scores = self.scorer.score(state).astype(np.float64)
                allowed = base
            else:
                scores = np.full(len(self.item_ids), -np.inf)
                scores[candidates] = self.scorer.score(state, candidates)
                allowed = base & np.isfinite(scores)
            tiers = relaxation_tiers(constraints, allowed) if constraints else [([], allowed)]
            if candidates is None or tiers[0][1].sum() >= k:
                break
            candidates = None
        met = np.sum([m for _, m in constraints], axis=0) if constraints else None
        top, relaxed = _top_by_tiers(scores, tiers, k, met)
        if relaxed:
            strict = int(sum(1 for i in top if all(m[i] for _, m in constraints)))
            parsed.notes.append(
                f"only {strict} item(s) meet every constraint; the rest relax, in this order: "
                + "; ".join(constraint_label(c) for c in relaxed)
            )
        if constraints and len(top) < k:
            parsed.notes.append(f"only {len(top)} item(s) are left after the exclusions; a 'no' is never relaxed")
        masked = np.where(allowed, scores, -np.inf)
        items = []
        for rank, i in enumerate(top, 1):
            items.append(
                {
                    "item_id": str(self.item_ids[i]),
                    "title": str(self.titles[i]),
                    "score": round(float(scores[i]), 6),
                    "rank": rank,
                }
            )
            if constraints:
                items[-1]["constraints_met"] = [constraint_label(c) for c, m in constraints if m[i]]
        result = {"scored": "all" if candidates is None else int(len(candidates)), "items": items}
        if parsed is not None:
            result["parsed_query"] = parsed.to_dict()
        if explain and items:
            from lucidrec.explain import explain_items

            explain_items(self, state, entries, top, masked, result, lang, counterfactual, constraints)
            if rewriter is not None:
                # The LLM may rephrase; its text is kept only if every title and number is in the evidence.
                rewriter.ensure_catalog(self.titles)
                for it in result["items"]:
                    rr = rewriter.rewrite(it["title"], it["evidence"], it["reason"], lang)
                    it["reason"], it["reason_source"] = rr.text, rr.source
                    if rr.detail:
                        it["reason_fallback"] = rr.detail
        return result

    def score_items(self, user=None, history=None, query=None, items: Iterable | None = None) -> np.ndarray:
        """Raw scores (no exclusion, no constraint filtering) for the given item ids, or the whole catalog.
        A query contributes as in ``recommend``: its item references join the history and its residual
        text is embedded."""
        _, _, _, state = self._request_state(user, history, query)
        idx = None if items is None else np.array([self.item_idx(i) for i in items])
        return self.scorer.score(state, idx)

    # ================================================================== queries
    @property
    def query_parser(self):
        """The parser for this catalog's vocabulary (built on first use; synonyms from the model folder's
        ``query_synonyms.json`` are added to the built-in tables)."""
        if getattr(self, "_query_parser", None) is None:
            from lucidrec.query import QueryParser

            popularity = np.bincount(self._k_items[self._k_items >= 0], minlength=len(self.item_ids))
            self._query_parser = QueryParser(
                self.categories,
                self.titles,
                self.item_ids,
                self.years,
                popularity=popularity,
                synonyms=getattr(self, "query_synonyms", None),
            )
        return self._query_parser

    def parse_query(self, query: str):
        """Clean and parse a query into constraints + residual text (see :mod:`lucidrec.query`).
        A blank query (empty, only spaces or control characters) is no query: None."""
        self._check_ready()
        cleaned = _clean_query(query)
        return self.query_parser.parse(cleaned) if cleaned else None

    def _request_state(self, user, history, query):
        """What a request scores with: its history (stored + inline + items the query names), the parsed
        query, and the user tower's state. Returns (entries, history source, parsed query or None, state)."""
        entries, source = self.resolve_history(user, history)
        parsed = self.parse_query(query) if query is not None else None
        if parsed is not None:
            entries = self._with_references(entries, parsed)
        return entries, source, parsed, self._state_for(entries, self._query_vector(parsed))

    def _query_vector(self, parsed) -> np.ndarray | None:
        """The embedded residual text, scaled by the share of the request it stands for."""
        if parsed is None or not parsed.text:
            return None
        return (self.encode_query(parsed.text) * np.float32(parsed.text_weight)).astype(np.float32)

    def _with_references(self, entries: list[HistoryEntry], parsed) -> list[HistoryEntry]:
        """Items the query names ("like Heat") join the history as the newest, liked items."""
        have = {e.item for e in entries}
        t = max([e.timestamp or 0.0 for e in entries], default=0.0)
        extra = [
            HistoryEntry(int(i), None, t + k + 1, QUERY_LIKE_EVENT)
            for k, i in enumerate(parsed.like_idx)
            if i not in have
        ]
        return entries + extra

    def _check_ready(self):
        if self.scorer is None:
            raise ModelError("this Recommender is not trained. Fix: call fit(dataset) or Recommender.load(DIR).")

    # ================================================================== batch scoring for evaluation
    def as_scorer(self, dataset: Dataset):
        """A Scorer (evaluation interface) over ``dataset``'s item order, using the histories it is given."""
        return _SavedModelScorer(self, dataset)

    # ================================================================== persistence
    def save(self, out_dir: str | Path, export_encoder: bool = True) -> Path:
        from safetensors.numpy import save_file

        self._check_ready()
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_file(
            {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.scorer.w.items()},
            str(out / "weights.safetensors"),
        )
        if self.scorer.B is not None:
            save_file({"B": np.ascontiguousarray(self.scorer.B)}, str(out / "item_item.safetensors"))
        elif (out / "item_item.safetensors").exists():
            (out / "item_item.safetensors").unlink()
        # Plain JSON and npz rather than parquet: reading them needs no pyarrow/pandas import, which
        # was most of a fresh `lucidrec recommend` process's start-up time.
        catalog = {
            "item": [str(i) for i in self.item_ids],
            "title": [str(t) for t in self.titles],
            "categories": [list(c) for c in self.categories],
            "year": [None if not np.isfinite(y) else float(y) for y in self.years],
        }
        (out / "items.json").write_text(json.dumps(catalog, ensure_ascii=False))
        np.savez(
            out / "interactions.npz",
            user=self._k_users.astype(str),
            item=self.item_ids[self._k_items].astype(str),
            rating=self._k_ratings,
            timestamp=self._k_times,
            event=self._k_events.astype(str),
        )
        if export_encoder:
            if self._st_encoder is not None:
                self._st_encoder.export_onnx(out / "encoder")
            elif not (out / "encoder" / "model.onnx").exists():
                raise ModelError("no encoder to export: this model was loaded without one.")
        meta = {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "dataset": self.dataset_name,
            "ease_reg": self.ease_reg,
            "train_report": self.train_report,
            "feature_space": self.feature_space.to_dict() if hasattr(self, "feature_space") else None,
            "encoder": self._query_encoder.name if self._query_encoder is not None else None,
        }
        (out / "config.json").write_text(json.dumps(meta, indent=2))
        from lucidrec.retrieval import INDEX_FILES

        if getattr(self, "retriever", None) is not None:
            self.retriever.save(out)  # the candidate index travels with the model (lucidrec.retrieval)
        else:
            for f in INDEX_FILES:  # an index left from an earlier model would not match these weights
                (out / f).unlink(missing_ok=True)
        return out

    @classmethod
    def load(cls, model_dir: str | Path, load_encoder: bool = True, encoder_threads: int | None = None) -> Recommender:
        """Load a model folder. ``encoder_threads``: onnxruntime threads for the query encoder (see
        :class:`lucidrec.encoders.OnnxEncoder`)."""
        from safetensors.numpy import load_file

        from lucidrec.models.config import HybridConfig

        d = Path(model_dir)
        if not (d / "config.json").exists():
            raise ModelError(
                f"{d}: not a lucidrec model folder (no config.json). Fix: pass the folder written by "
                "'lucidrec train --out DIR'."
            )
        try:
            meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ModelError(f"{d / 'config.json'}: not valid JSON ({e}). Fix: retrain the model.") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
            raise ModelError(f"{d / 'config.json'}: no 'config' object. Fix: retrain the model or restore the file.")
        if meta.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{d}: model format {meta.get('format_version')} is not supported by this version "
                f"(expects {FORMAT_VERSION}). Fix: retrain with this version of lucidrec."
            )
        for f in ("weights.safetensors", "items.json", "interactions.npz"):
            if not (d / f).exists():
                raise ModelError(f"{d}: missing {f}. Fix: retrain the model or copy the whole folder.")
        rec = cls.__new__(cls)
        try:
            rec.config = HybridConfig(**meta["config"])
        except TypeError as e:
            raise ModelError(
                f"{d / 'config.json'}: config does not match this version ({e}). Fix: retrain the model."
            ) from None
        rec.encoder_name = None
        rec.cache_dir = None
        rec.dataset_name = meta.get("dataset")
        rec.ease_reg = meta.get("ease_reg")
        rec.train_report = meta.get("train_report", {})
        weights = load_file(str(d / "weights.safetensors"))
        B = load_file(str(d / "item_item.safetensors"))["B"] if (d / "item_item.safetensors").exists() else None
        rec.scorer = HybridScorer(weights, B)
        items = json.loads((d / "items.json").read_text(encoding="utf-8"))
        rec.item_ids = np.asarray(items["item"], dtype=object)
        rec.item_index = {iid: i for i, iid in enumerate(rec.item_ids)}
        rec.titles = np.asarray(items["title"], dtype=object)
        rec.categories = [list(c or []) for c in items["categories"]]
        rec.years = np.asarray([np.nan if y is None else y for y in items["year"]], dtype=np.float64)
        with np.load(d / "interactions.npz") as z:
            rec._set_known_arrays(
                z["user"], z["item"], z["rating"].astype(np.float64), z["timestamp"].astype(np.float64), z["event"]
            )
        rec._st_encoder = None
        rec._query_encoder = None
        rec._query_parser = None
        rec.query_synonyms = None
        if (d / "query_synonyms.json").exists():
            rec.query_synonyms = _read_synonyms(d / "query_synonyms.json")
        if load_encoder and (d / "encoder" / "model.onnx").exists():
            from lucidrec.encoders import OnnxEncoder

            rec._query_encoder = OnnxEncoder(d / "encoder", threads=encoder_threads)
        from lucidrec.retrieval import Retriever

        rec.retriever = Retriever.load(d, rec.scorer)  # None when the folder has no index
        rec._retriever_scorer = rec.scorer
        return rec

    # ================================================================== candidate retrieval (lucidrec.retrieval)
    def build_index(self, kind: str = "auto", progress: bool = False, **options):
        """Build the candidate index over this model's item vectors (kept in memory; ``save`` writes it).

        ``kind``: "auto" (exact below ``exact_threshold`` items, IVF above), "exact", "ivf" or "hnsw";
        ``options`` are :class:`lucidrec.retrieval.IndexConfig` fields (nprobe, candidates, text_dim, ...)."""
        from lucidrec.retrieval import IndexConfig, Retriever

        self._check_ready()
        config = IndexConfig.from_dict({**options, "kind": kind})
        self.retriever = Retriever.build(self.scorer, config, progress=progress)
        self._retriever_scorer = self.scorer
        return self.retriever

    def drop_index(self) -> None:
        """Forget the candidate index: every request scores the whole catalog exactly."""
        self.retriever = None

    def candidate_items(self, state: UserState, n: int | None = None) -> np.ndarray | None:
        """Item indices worth scoring exactly for ``state``: at least ``n`` (pass k plus the number of items
        you will exclude), or None when the whole catalog should be scored (no index, an exact index, or an
        index that came up short). The full score, explanations included, is then computed on these only."""
        return self.candidate_items_many([state], n)[0]

    def candidate_items_many(self, states: list[UserState], n: int | None = None) -> list[np.ndarray | None]:
        """:meth:`candidate_items` for many users in one index search (faster per user)."""
        retriever = getattr(self, "retriever", None)
        if retriever is None or retriever.exact:
            return [None] * len(states)
        if getattr(self, "_retriever_scorer", None) is not self.scorer:
            raise ModelError(
                "the candidate index was built for other model weights (the model was retrained). "
                "Fix: call build_index() again, or drop_index()."
            )
        return retriever.candidates(self.scorer, states, n)


class _SavedModelScorer:
    """Evaluation adapter: scores dataset users from the histories the evaluator passes in."""

    name = "LucidRec"

    def __init__(self, rec: Recommender, dataset: Dataset):
        self.rec = rec
        self.map = np.array([rec.item_index.get(str(i), -1) for i in dataset.item_ids])
        if (self.map < 0).any():
            missing = dataset.item_ids[self.map < 0][:3]
            raise ModelError(
                f"the dataset has items the model does not know (e.g. {', '.join(map(str, missing))}). "
                "Fix: evaluate on the data the model was trained on."
            )

    def fit(self, dataset, train):
        return self

    def get_params(self) -> dict:
        return {"ease_reg": self.rec.ease_reg, "dim": self.rec.config.dim}

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        rows = histories.rows(users)
        out = np.zeros((len(users), len(self.map)), dtype=np.float32)
        for k in range(len(users)):
            lo, hi = rows.binary.indptr[k], rows.binary.indptr[k + 1]
            items = rows.binary.indices[lo:hi]
            order = np.lexsort((items, rows.timestamp.data[lo:hi]))
            state = self.rec.scorer.user_state(self.map[items[order]], rows.rating.data[lo:hi][order])
            out[k] = self.rec.scorer.score(state)[self.map]
        return out


def _seen_items(frame, n_items: int) -> np.ndarray:
    seen = np.zeros(n_items, bool)
    seen[np.unique(frame["iidx"].to_numpy())] = True
    return seen


def impute_cold_item_item(B: np.ndarray, text: np.ndarray, seen: np.ndarray, k: int = 10) -> np.ndarray:
    """Give items without interactions an item-item row and column borrowed from their ``k`` nearest
    warm items by text (weights = cosine similarity, normalised to sum to one). The closed form leaves
    them at zero, which would rank a new item below every warm one whatever its text says; borrowed
    columns keep the score linear in the history, so explanations stay exact."""
    cold = np.flatnonzero(~seen)
    warm = np.flatnonzero(seen)
    if len(cold) == 0 or len(warm) == 0:
        return B
    k = min(k, len(warm))
    sims = text[cold] @ text[warm].T
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.clip(np.take_along_axis(sims, nn, axis=1), 0.0, None)
    w = w / np.clip(w.sum(axis=1, keepdims=True), 1e-12, None)
    B = B.copy()
    for row, i in enumerate(cold):
        nbrs = warm[nn[row]]
        B[:, i] = w[row] @ B[:, nbrs].T
        B[i, :] = w[row] @ B[nbrs, :]
        B[i, i] = 0.0
    return B


def _holdout(inter: pd.DataFrame, seed: int, fraction: float = 0.05):
    rng = np.random.default_rng(seed)
    mask = rng.random(len(inter)) < fraction
    counts = inter.groupby("uidx")["uidx"].transform("size").to_numpy()
    mask &= counts >= 5
    return inter[~mask].reset_index(drop=True), inter[mask].reset_index(drop=True)


def _read_synonyms(path: Path) -> dict[str, dict[str, str]]:
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({e}). Fix: correct the file or delete it.") from None
    ok = isinstance(table, dict) and all(
        isinstance(t, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in t.items())
        for t in table.values()
    )
    if not ok:
        raise ModelError(
            f'{path}: must map a language to {{"phrase": "catalog value"}}, e.g. {{"en": {{"funny": "Comedy"}}}}. '
            "Fix: correct the file or delete it."
        )
    return table


def _top_by_tiers(scores: np.ndarray, tiers, k: int, met: np.ndarray | None = None) -> tuple[np.ndarray, list[dict]]:
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


def _clean_query(query: str) -> str:
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


def evaluate_saved_model(model_dir: str | Path, split):
    """Evaluate a saved model on ``split``'s test part: train+valid histories feed the user tower."""
    from lucidrec.evaluate import EvalResult, evaluate_scorer

    t0 = time.perf_counter()
    rec = Recommender.load(model_dir, load_encoder=False)
    scorer = rec.as_scorer(split.dataset)
    metrics = evaluate_scorer(scorer, split, "test")
    return EvalResult("LucidRec", split.protocol, "test", metrics, scorer.get_params(), time.perf_counter() - t0)
