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
from lucidrec.models.item_item import as_block, history_scores
from lucidrec.models.item_item import entries as item_item_entries

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
        if self.n_items >= TEXT_FLOAT16_FROM and self.w["T"].dtype != np.float16:
            self.w["T"] = self.w["T"].astype(np.float16)

    def text_scores(self, pT: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
        """``T[items] @ pT`` in float32; over the whole catalog a float16 block is converted in chunks, never
        as one float32 copy."""
        T = self.w["T"]
        if items is not None:
            return T[items].astype(np.float32) @ pT
        if T.dtype == np.float32:
            return T @ pT
        out = np.empty(len(T), np.float32)
        for s in range(0, len(T), _TEXT_CHUNK):
            out[s : s + _TEXT_CHUNK] = T[s : s + _TEXT_CHUNK].astype(np.float32) @ pT
        return out

    # ------------------------------------------------------------------ user tower
    def user_state(
        self,
        hist: np.ndarray,
        ratings: np.ndarray | None = None,
        query: np.ndarray | None = None,
        boost: np.ndarray | None = None,
    ) -> UserState:
        """``boost`` multiplies individual history items' weights (e.g. items a query names explicitly);
        the score stays linear in the history, so the decomposition stays exact."""
        w = self.w
        hist = np.asarray(hist, dtype=np.int64)
        n = len(hist)
        r = rating_bins(np.full(n, 5.0) if ratings is None else ratings)
        pb = position_buckets(n)
        base_e = w["rho_E"][r] * w["pi_E"][pb]
        base_l = w["rho_L"][r] * w["pi_L"][pb]
        if boost is not None:
            base_e = base_e * boost
            base_l = base_l * boost
        wE = base_e.astype(np.float32)
        wL = (base_l / np.sqrt(max(n, 1))).astype(np.float32)
        wT = (_s(w["alpha"]) * base_l / max(n, 1)).astype(np.float32)
        pE = history_scores(self.B, hist, wE, self.n_items)
        pL = wL @ w["H"][hist] if n else np.zeros(w["H"].shape[1], np.float32)
        pT = wT @ w["T"][hist].astype(np.float32) if n else np.zeros(w["T"].shape[1], np.float32)
        if query is not None:
            pL = pL + _s(w["query_latent"]) * (query @ w["Wa"])
            pT = pT + _s(w["query_text"]) * query
        return UserState(hist, wE, wL, wT, pE, pL.astype(np.float32), pT.astype(np.float32), query)

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
        return (
            state.pE[sel]
            + w["F"][sel] @ state.pL
            + self.text_scores(state.pT, items)
            + w["bias"][sel]
            + self.cross(state.pL, None if items is None else items)
        )

    def decompose(self, state: UserState, item: int) -> dict:
        """Exact parts of one item's score: per history item, query, bias, interaction."""
        return self.decompose_many(state, np.array([item], dtype=np.int64))[0]

    def decompose_many(self, state: UserState, items: np.ndarray) -> list[dict]:
        """:meth:`decompose` for several items at once: the history rows are gathered once, not per item
        (an explained top-10 for a 500-item history spent most of its time re-gathering them)."""
        w = self.w
        hist = state.hist
        items = np.asarray(items, dtype=np.int64)
        F, T = w["F"][items], w["T"][items].astype(np.float32)
        n = len(hist)
        if n:
            item_item = (
                state.wE[:, None] * item_item_entries(self.B, hist, items)
                if self.B is not None
                else np.zeros((n, len(items)), np.float32)
            )
            per_hist = (
                item_item
                + state.wL[:, None] * (w["H"][hist] @ F.T)
                + state.wT[:, None] * (w["T"][hist].astype(np.float32) @ T.T)
            )
        else:
            per_hist = np.zeros((0, len(items)), np.float32)
        if state.query is not None:
            query = _s(w["query_latent"]) * (F @ (state.query @ w["Wa"])) + _s(w["query_text"]) * (T @ state.query)
        else:
            query = np.zeros(len(items))
        interaction = self.cross(state.pL, items)
        return [
            {
                "history": per_hist[:, j].astype(np.float64),
                "query": float(query[j]),
                "bias": float(w["bias"][i]),
                "interaction": float(interaction[j]),
            }
            for j, i in enumerate(items)
        ]
