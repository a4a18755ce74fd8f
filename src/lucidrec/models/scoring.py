"""Serving-time math of the hybrid model in numpy (no torch): user tower, scores and their exact parts.

    s_ui = p_u . f_i + CLS(p_u, f_i) + b_i
    p_u  = [ sum_j wE_j e_j ;  sum_j wL_j h_j + gq * Wa q ;  sum_j wT_j t_j + bq * q ]
    f_i  = [ B[:, i]        ;  F_i                        ;  t_i                    ]

Blocks: item-item (EASE-style closed form ``B``), learned latent (``H`` history side, ``F`` target side),
text (frozen language-model embeddings ``T``). Because p_u is linear in the history items and the query,
p_u . f_i splits exactly into one term per history item and one for the query; the bias and the cross
term CLS are their own terms. ``decompose`` returns those parts and they sum to ``score`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lucidrec.models.features import position_buckets, rating_bins
from lucidrec.models.item_item import as_block, history_scores, is_sparse
from lucidrec.models.item_item import entries as item_item_entries
from lucidrec.models.transformer import SequenceTransformer

#: Names of the arrays a trained model carries (saved as safetensors).
WEIGHT_NAMES = (
    "F",
    "H",
    "bias",
    "T",
    "Wa",
    "rho_E",
    "pi_E",
    "rho_L",
    "pi_L",
    "alpha",
    "W1",
    "b1",
    "w2",
    "b2",
    "query_latent",
    "query_text",
)
#: Optional weight: ``[margin]`` - ratings below the user's mean minus ``margin`` are "disliked" and
#: enter p_u with weight 0 in every block. Absent in models trained before rating-aware user states.
DISLIKE_MARGIN = "dislike_margin"
#: Optional weight: ``[slope]`` of the liked items' item-item input weight in (rating - user's mean).
RATING_SLOPE = "rating_slope"
#: Events that always count as disliked, whatever the rating.
NEGATIVE_EVENTS = frozenset({"dislike", "disliked", "return", "returned", "skip", "skipped", "negative"})


def liked_mask(ratings: np.ndarray | None, margin: float | None, negative: np.ndarray | None = None) -> np.ndarray:
    """Which history items support recommendations: unrated items, and ratings at or above the user's
    own mean minus ``margin`` (the mean over the rated items of this history). ``margin`` None: every
    item (a model that is not rating-aware). ``negative`` marks explicit negative events (dislike, return,
    skip): never liked."""
    if ratings is None:
        n = 0 if negative is None else len(negative)
        liked = np.ones(n, bool)
    else:
        r = np.asarray(ratings, dtype=np.float64)
        liked = np.ones(len(r), bool)
        rated = np.isfinite(r)
        if margin is not None and rated.any():
            liked[rated] = r[rated] >= r[rated].mean() - margin
    if negative is not None:
        liked &= ~np.asarray(negative, bool)
    return liked


def support_weights(
    ratings: np.ndarray | None, margin: float | None, slope: float = 0.0, negative: np.ndarray | None = None
) -> np.ndarray:
    """Each history item's weight as input to the item-item block: 0 when disliked (see
    :func:`liked_mask`), else ``1 + slope * (rating - user's mean)`` (at least 0.1; unrated items 1), so a
    5-star film says more than a 3-star one."""
    liked = liked_mask(ratings, margin, negative)
    out = liked.astype(np.float64)
    if ratings is not None and slope and margin is not None:
        r = np.asarray(ratings, dtype=np.float64)
        rated = np.isfinite(r)
        if rated.any():
            level = np.clip(1.0 + slope * (r - r[rated].mean()), 0.1, None)
            out = np.where(liked & rated, level, out)
    return out


#: Catalogs of this many items or more keep the text block ``T`` (n x 384, the largest array) in float16:
#: half the memory (768 MB saved at 1M items). Products are computed in float32 from the stored values,
#: so every score and its decomposition are exact for the model as stored.
TEXT_FLOAT16_FROM = 100_000
_TEXT_CHUNK = 65_536


def _s(x) -> float:
    """A scalar weight stored as a 1-element array."""
    return float(np.asarray(x).reshape(-1)[0])


@dataclass
class UserState:
    """The user tower's output for one user: the three blocks of p_u plus the per-item weights."""

    hist: np.ndarray  # item indices, oldest -> newest
    wE: np.ndarray  # weight of each history item in the item-item block
    wL: np.ndarray  # ... in the latent block
    wT: np.ndarray  # ... in the text block
    pE: np.ndarray  # item-item scores over the catalog (sum_j wE_j B[j, :])
    pL: np.ndarray  # latent user vector
    pT: np.ndarray  # text user vector
    query: np.ndarray | None  # query embedding (unit norm, times the residual text's weight) or None
    liked: np.ndarray | None = None  # per history item: supports (True) or disliked (False, weight 0)
    # The transformer term (lucidrec.models.transformer), in models that have one: the history positions
    # its window reads (oldest -> newest) and its output h there; its attribution is computed on demand.
    tf_pos: np.ndarray | None = None
    tf_h: np.ndarray | None = None
    tf_attr: np.ndarray | None = None


class SubsetScorer:
    """Re-scores one request with parts of its history removed, exactly (for counterfactuals): the
    history's rows of every block are gathered once, then each batch of subsets costs a few matrix
    products."""

    def __init__(self, scorer: HybridScorer, hist, ratings=None, boost=None, negative=None, query=None):
        w = scorer.w
        self.scorer = scorer
        self.hist = np.asarray(hist, dtype=np.int64)
        self.ratings, self.boost, self.negative, self.query = ratings, boost, negative, query
        n = len(self.hist)
        self.Bh = scorer.B[self.hist] if (scorer.B is not None and n) else None
        self.Hh, self.Th = w["H"][self.hist], w["T"][self.hist].astype(np.float32)
        self.q_lat = None if query is None else _s(w["query_latent"]) * (query @ w["Wa"])
        self.q_txt = None if query is None else _s(w["query_text"]) * query
        # The whole history's latent vector (a d-vector: no catalog-sized pass needed for it).
        _, wL, _, _ = scorer.history_weights(self.hist, ratings, boost, negative)
        self.pL_full = (wL @ self.Hh if n else np.zeros(self.Hh.shape[1], np.float32)).astype(np.float32)
        if self.q_lat is not None:
            self.pL_full = (self.pL_full + self.q_lat).astype(np.float32)
        self.cls_full = None

    def _parts(self, keeps: np.ndarray):
        """(scores without the cross term (m, n_items), latent user vectors (m, d)) of each subset."""
        sc, w = self.scorer, self.scorer.w
        m, n = keeps.shape
        WE = np.zeros((m, n), np.float32)
        WL = np.zeros((m, n), np.float32)
        WT = np.zeros((m, n), np.float32)

        def sub(a, keep):
            return None if a is None else np.asarray(a)[keep]

        windows = []
        for k, keep in enumerate(keeps):
            WE[k, keep], WL[k, keep], WT[k, keep], liked = sc.history_weights(
                self.hist[keep], sub(self.ratings, keep), sub(self.boost, keep), sub(self.negative, keep)
            )
            if sc.tf is not None:  # the transformer re-reads the shortened history
                windows.append(self.hist[keep][sc.transformer_positions(liked, sub(self.boost, keep))])
        if self.Bh is None:
            pE = np.zeros((m, sc.n_items), np.float32)
        elif is_sparse(self.Bh):  # the sparse block's history rows: (Bh' WE')' keeps the product dense-free
            pE = np.asarray(self.Bh.T @ WE.T).T
        else:
            pE = WE @ self.Bh
        pL = WL @ self.Hh
        pT = WT @ self.Th
        if self.q_lat is not None:
            pL = pL + self.q_lat
            pT = pT + self.q_txt
        out = pE + pL @ w["F"].T + sc.text_scores(pT) + w["bias"]
        if sc.tf is not None:
            out = out + (sc.tf.weight * (sc.tf.hidden(windows) @ sc.tf.item.T)).astype(np.float32)
        return out, pL.astype(np.float32)

    def scores_around(self, keeps: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Scores of each subset, exact for ``items[k]`` and for every item that could score above it;
        for the rest an upper bound that is not above it - enough for exact ranks of ``items`` and the
        exact order of everything ranked above them, at a fraction of the cost.

        The cross term moves at most ``L_i * ||p_u' - p_u||`` when p_u changes (ReLU is 1-Lipschitz;
        ``L_i`` from :meth:`HybridScorer.cross_lipschitz`), so only items whose bound reaches the
        target's exact score need their cross term computed."""
        sc = self.scorer
        keeps = np.asarray(keeps, bool)
        base, pL = self._parts(keeps)
        if self.cls_full is None:
            self.cls_full = sc.cross(self.pL_full)
        lip = sc.cross_lipschitz()
        out = base + self.cls_full[None, :]
        items = np.asarray(items, dtype=np.int64)
        exact_t = base[np.arange(len(keeps)), items] + sc.cross_pairs(pL, items)
        norms = np.linalg.norm(pL - self.pL_full[None, :], axis=1)
        for k in range(len(keeps)):
            ub = out[k] + norms[k] * lip
            maybe = np.flatnonzero(ub > exact_t[k] - 1e-5)
            out[k] = ub  # below the target's score wherever it is not recomputed
            out[k, maybe] = base[k, maybe] + sc.cross(pL[k], maybe)
            out[k, items[k]] = exact_t[k]
        return out


class HybridScorer:
    """Scores and decomposes with a trained model's numpy weights."""

    def __init__(self, weights: dict[str, np.ndarray], item_item: np.ndarray | None):
        self.w = {
            k: v if k == "T" and getattr(v, "dtype", None) == np.float16 else np.asarray(v, dtype=np.float32)
            for k, v in weights.items()
        }
        # Dense (n x n) or scipy CSR (the sparse block, lucidrec.models.item_item); both apply the same way.
        self.B = None if item_item is None else as_block(item_item)
        self.n_items = self.w["F"].shape[0]
        m = self.w.get(DISLIKE_MARGIN)
        #: None: every history item supports (models trained before rating-aware states).
        self.dislike_margin = None if m is None else _s(m)
        self.rating_slope = _s(self.w[RATING_SLOPE]) if RATING_SLOPE in self.w else 0.0
        if self.n_items >= TEXT_FLOAT16_FROM and self.w["T"].dtype != np.float16:
            self.w["T"] = self.w["T"].astype(np.float16)
        #: The transformer term (None in models without one, e.g. every model trained before it).
        self.tf = SequenceTransformer.from_weights(self.w)

    @staticmethod
    def transformer_positions(liked: np.ndarray, boost: np.ndarray | None) -> np.ndarray:
        """History positions the transformer reads: every supporting item (not disliked, not a negative
        event: those weigh 0 in every block), oldest -> newest; the network keeps its window's last items."""
        keep = np.asarray(liked, bool).copy()
        if boost is not None:
            keep &= np.asarray(boost) > 0
        return np.flatnonzero(keep)

    def transformer_attribution(self, state: UserState) -> np.ndarray:
        """Integrated gradients of the transformer's output over the state's window items, (window, d),
        computed once per state."""
        if state.tf_attr is None:
            state.tf_attr = self.tf.attribute(state.hist[state.tf_pos])[0]
        return state.tf_attr

    def text_scores(self, pT: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """``T[items] @ pT`` in float32 for one text vector (d,) or several (m, d) -> (m, items); over the
        whole catalog a float16 block is converted in chunks, never as one float32 copy."""
        T = self.w["T"]
        P = np.asarray(pT, np.float32).T  # (d,) or (d, m)
        if items is not None:
            out = T[items].astype(np.float32) @ P
        elif T.dtype == np.float32:
            out = T @ P
        else:
            out = np.empty((len(T), *P.shape[1:]), np.float32)
            for s in range(0, len(T), _TEXT_CHUNK):
                out[s : s + _TEXT_CHUNK] = T[s : s + _TEXT_CHUNK].astype(np.float32) @ P
        return out.T

    # ------------------------------------------------------------------ user tower
    def user_state(
        self,
        hist: np.ndarray,
        ratings: np.ndarray | None = None,
        query: np.ndarray | None = None,
        boost: np.ndarray | None = None,
        negative: np.ndarray | None = None,
    ) -> UserState:
        """``boost`` multiplies individual history items' weights (e.g. items a query names explicitly);
        the score stays linear in the history, so the decomposition stays exact. ``ratings`` may hold NaN
        for unrated items (binned as 5, always liked). In a rating-aware model, disliked items (see
        :func:`liked_mask`; ``negative`` marks explicit negative events) weigh 0 in every block: they
        are known (never recommended back) but never push anything up."""
        hist = np.asarray(hist, dtype=np.int64)
        n = len(hist)
        w = self.w
        wE, wL, wT, liked = self.history_weights(hist, ratings, boost, negative)
        pE = history_scores(self.B, hist, wE, self.n_items)
        pL = wL @ w["H"][hist] if n else np.zeros(w["H"].shape[1], np.float32)
        pT = wT @ w["T"][hist].astype(np.float32) if n else np.zeros(w["T"].shape[1], np.float32)
        if query is not None:
            pL = pL + _s(w["query_latent"]) * (query @ w["Wa"])
            pT = pT + _s(w["query_text"]) * query
        tf_pos = tf_h = None
        if self.tf is not None:
            tf_pos = self.transformer_positions(liked, boost)[-self.tf.max_len :]
            tf_h = self.tf.hidden([hist[tf_pos]])[0]
        return UserState(hist, wE, wL, wT, pE, pL.astype(np.float32), pT.astype(np.float32), query, liked, tf_pos, tf_h)

    def history_weights(self, hist, ratings=None, boost=None, negative=None):
        """(wE, wL, wT, liked): each history item's weight in the item-item, latent and text blocks."""
        w = self.w
        n = len(hist)
        # No ratings: every item unrated (NaN: binned as 5, always liked).
        rat = np.full(n, np.nan) if ratings is None else np.asarray(ratings, dtype=np.float64)
        r = rating_bins(np.where(np.isnan(rat), 5.0, rat))
        pb = position_buckets(n)
        base_e = w["rho_E"][r] * w["pi_E"][pb]
        base_l = w["rho_L"][r] * w["pi_L"][pb]
        if boost is not None:
            base_e = base_e * boost
            base_l = base_l * boost
        if n and self.dislike_margin is not None:
            level = support_weights(rat, self.dislike_margin, self.rating_slope, negative)
            liked = level > 0
            base_e = base_e * level
            base_l = base_l * liked
        else:
            liked = liked_mask(rat, self.dislike_margin, negative) if n else np.ones(0, bool)
        wE = base_e.astype(np.float32)
        wL = (base_l / np.sqrt(max(n, 1))).astype(np.float32)
        wT = (_s(w["alpha"]) * base_l / max(n, 1)).astype(np.float32)
        return wE, wL, wT, liked

    def cross_pairs(self, PL: np.ndarray, items: np.ndarray) -> np.ndarray:
        """CLS(p_k, f_{items[k]}) for paired user vectors and items: (m, d), (m,) -> (m,)."""
        w = self.w
        F = w["F"][items]
        d = F.shape[1]
        h = PL @ w["W1"][:d] + F @ w["W1"][d : 2 * d] + (F * PL) @ w["W1"][2 * d :] + w["b1"]
        return np.maximum(h, 0.0) @ w["w2"] + _s(w["b2"])

    def cross_lipschitz(self) -> np.ndarray:
        """Per item i, L_i = sum_k |w2_k| ||W1a_k + f_i * W1c_k||: |CLS(p', f_i) - CLS(p, f_i)| <= L_i ||p' - p||."""
        if getattr(self, "_lip", None) is None:
            w = self.w
            F = w["F"].astype(np.float64)
            d = F.shape[1]
            A, C = w["W1"][:d].astype(np.float64), w["W1"][2 * d :].astype(np.float64)
            sq = (A * A).sum(0)[None, :] + 2 * F @ (A * C) + (F * F) @ (C * C)
            self._lip = (np.sqrt(np.clip(sq, 0, None)) @ np.abs(w["w2"]).astype(np.float64)) * (1 + 1e-6)
        return self._lip

    # ------------------------------------------------------------------ scores
    def cross(self, pL: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """CLS(p_u, f_i): a one-hidden-layer MLP over [p_u, f_i, p_u * f_i] (latent block)."""
        w = self.w
        F = w["F"] if items is None else w["F"][items]
        d = F.shape[1]
        W1 = w["W1"]
        h = (pL @ W1[:d]) + F @ W1[d : 2 * d] + (F * pL) @ W1[2 * d :] + w["b1"]
        return np.maximum(h, 0.0) @ w["w2"] + _s(w["b2"])

    def score(self, state: UserState, items: np.ndarray | None = None) -> np.ndarray:
        w = self.w
        sel = slice(None) if items is None else items
        out = (
            state.pE[sel]
            + w["F"][sel] @ state.pL
            + self.text_scores(state.pT, items)
            + w["bias"][sel]
            + self.cross(state.pL, None if items is None else items)
        )
        if self.tf is not None and state.tf_h is not None:
            out = out + (self.tf.weight * (self.tf.item[sel] @ state.tf_h)).astype(np.float32)
        return out

    def decompose(self, state: UserState, item: int) -> dict:
        """Exact parts of one item's score: per history item, query, the item's own term, residual."""
        return self.decompose_many(state, np.array([item], dtype=np.int64))[0]

    def cross_gradients(self, pL: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integrated gradients of CLS along alpha * p_u (alpha 0 -> 1), in closed form.

        Each hidden unit's pre-activation is linear in alpha, h_k(alpha) = alpha * a_k + c_k, so the ReLU
        is active on an interval of alpha whose length ``frac_k`` is exact; the path-averaged gradient is
        g = sum_k w2_k frac_k dh_k/dp_u. Any part x of p_u (p_u is a sum of parts) is attributed x . g,
        and the parts sum to CLS(p_u, f_i) - CLS(0, f_i) up to float error (completeness, no quadrature).
        Returns (g: (items, d), CLS(0, f_i): (items,))."""
        w = self.w
        F = w["F"][items]
        d = F.shape[1]
        W1a, W1b, W1c = w["W1"][:d], w["W1"][d : 2 * d], w["W1"][2 * d :]
        a = (pL @ W1a)[None, :] + (F * pL) @ W1c
        c = F @ W1b + w["b1"]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.clip(-c / a, 0.0, 1.0)  # where the unit switches on or off along the path
        frac = np.where(a > 0, 1.0 - t, np.where(a < 0, t, (c > 0).astype(np.float64)))
        wf = (w["w2"] * frac).astype(np.float64)
        g = wf @ W1a.T.astype(np.float64) + F * (wf @ W1c.T.astype(np.float64))
        base = np.maximum(c, 0.0) @ w["w2"] + _s(w["b2"])
        return g, base

    def decompose_many(self, state: UserState, items: np.ndarray) -> list[dict]:
        """:meth:`decompose` for several items at once: the history rows are gathered once, not per item
        (an explained top-10 for a 500-item history spent most of its time re-gathering them).

        Every unit of score is named: the cross term CLS(p_u, f_i) is split by :meth:`cross_gradients`
        into the history items' and the query's parts (added to theirs), and CLS(0, f_i) joins the item's
        own term ``bias``. ``interaction`` is only the float residual (about 1e-6), kept so the parts
        still sum to the score exactly."""
        w = self.w
        hist = state.hist
        items = np.asarray(items, dtype=np.int64)
        F, T = w["F"][items], w["T"][items].astype(np.float32)
        n = len(hist)
        g, cls0 = self.cross_gradients(state.pL, items)
        q_lat = _s(w["query_latent"]) * (state.query @ w["Wa"]) if state.query is not None else None
        if n:
            item_item = (
                state.wE[:, None] * item_item_entries(self.B, hist, items)
                if self.B is not None
                else np.zeros((n, len(items)), np.float32)
            )
            per_hist = (
                item_item
                + state.wL[:, None] * (w["H"][hist] @ (F.T + g.T))
                + state.wT[:, None] * (w["T"][hist].astype(np.float32) @ T.T)
            )
        else:
            per_hist = np.zeros((0, len(items)), np.float32)
        if q_lat is not None:
            query = (F + g) @ q_lat + _s(w["query_text"]) * (T @ state.query)
        else:
            query = np.zeros(len(items))
        total = self.score(state, items).astype(np.float64)
        own = w["bias"][items] + cls0
        if self.tf is not None and state.tf_h is not None:
            # The transformer term: integrated gradients give each window item its part; the baseline's
            # output (the all-zero input's by default, a prior every user shares; with the "positions"
            # baseline, every window of this length) joins the item's own term; the quadrature error (below
            # 1e-5 on any score) is the residual's.
            E = self.tf.item[items]
            if len(state.tf_pos):
                per_hist = per_hist.astype(np.float64)
                per_hist[state.tf_pos] += self.tf.weight * (self.transformer_attribution(state) @ E.T)
            own = own + self.tf.weight * (E @ self.tf.baseline(len(state.tf_pos)))
        residual = total - per_hist.sum(axis=0) - query - own
        return [
            {
                "history": per_hist[:, j].astype(np.float64),
                "query": float(query[j]),
                "bias": float(own[j]),
                "interaction": float(residual[j]),
            }
            for j, i in enumerate(items)
        ]
