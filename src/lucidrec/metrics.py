"""Vectorised ranking and rating metrics over full rankings.

Definitions follow ranx / TREC conventions (binary relevance), so numbers can be checked with ranx:
Precision@K = hits/K, Recall@K = hits/|rel|, F1 per user, NDCG@K with gain 1 and IDCG over
min(|rel|, K), HR@K = any hit, MRR@K = 1/rank of the first hit within K, MAP@K = sum of precision at
each hit / |rel|. AUC is over the full candidate ranking (Mann-Whitney, ties count one half).
Coverage@K = distinct items in all users' top-K over the catalog size. Metrics are averaged over
users that have at least one test item.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy is imported lazily: serving uses top_k only and must start fast
    import scipy.sparse as sp

RANKING_METRICS = ("precision", "recall", "f1", "ndcg", "hr", "mrr", "map")


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first (ties broken by lower item index)."""
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    # Sort by score desc, then index asc, for a deterministic order.
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


class RankingAccumulator:
    """Accumulates per-user metric values over batches of users."""

    def __init__(self, n_items: int, ks=(10, 20), auc: bool = True, n_candidates: int | None = None):
        self.ks = tuple(sorted(ks))
        self.n_items = n_items
        # Coverage is over the candidate set (the whole catalog unless a protocol restricts it).
        self.n_candidates = n_candidates or n_items
        self.auc = auc
        self.values: dict[str, list[np.ndarray]] = {}
        self.recommended = {k: np.zeros(n_items, dtype=bool) for k in self.ks}
        self.n_users = 0

    def _add(self, name, v):
        self.values.setdefault(name, []).append(v)

    def add(
        self,
        scores: np.ndarray,
        relevant: sp.csr_matrix,
        excluded: sp.csr_matrix | None = None,
        candidates: np.ndarray | None = None,
    ):
        """Add one batch. ``scores``: (B, n_items) float; ``relevant``: (B, n_items) binary test matrix;
        ``excluded``: (B, n_items) binary known-history matrix; ``candidates``: optional boolean mask of
        items allowed at all (the cold protocol). Users without relevant items are skipped."""
        scores = np.array(scores, dtype=np.float64, copy=True)
        if excluded is not None and excluded.nnz:
            r, c = excluded.nonzero()
            scores[r, c] = -np.inf
        if candidates is not None:
            scores[:, ~candidates] = -np.inf
        n_rel = np.asarray(relevant.sum(axis=1)).ravel()
        keep = n_rel > 0
        if not keep.any():
            return
        scores, relevant, n_rel = scores[keep], relevant[keep], n_rel[keep]
        rel_dense = relevant.toarray() > 0
        kmax = self.ks[-1]
        top = top_k(scores, kmax)
        valid_top = np.isfinite(np.take_along_axis(scores, top, axis=1))
        hits = np.take_along_axis(rel_dense, top, axis=1) & valid_top
        discounts = 1.0 / np.log2(np.arange(2, kmax + 2))
        cum_hits = np.cumsum(hits, axis=1)
        prec_at = cum_hits / np.arange(1, kmax + 1)
        first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), kmax)
        for k in self.ks:
            h = cum_hits[:, k - 1].astype(np.float64)
            p = h / k
            r = h / n_rel
            f1 = np.where(p + r > 0, 2 * p * r / np.where(p + r > 0, p + r, 1), 0.0)
            dcg = (hits[:, :k] * discounts[:k]).sum(axis=1)
            ideal_n = np.minimum(n_rel, k).astype(int)
            idcg = np.cumsum(discounts[:k])[ideal_n - 1]
            self._add(f"precision@{k}", p)
            self._add(f"recall@{k}", r)
            self._add(f"f1@{k}", f1)
            self._add(f"ndcg@{k}", dcg / idcg)
            self._add(f"hr@{k}", (h > 0).astype(np.float64))
            self._add(f"mrr@{k}", np.where(first_hit < k, 1.0 / (first_hit + 1), 0.0))
            self._add(f"map@{k}", (prec_at[:, :k] * hits[:, :k]).sum(axis=1) / n_rel)
            rec_items = top[:, :k][valid_top[:, :k]]
            self.recommended[k][rec_items] = True
        if self.auc:
            self._add("auc", _auc(scores, rel_dense))
        self.n_users += int(keep.sum())

    def result(self) -> dict[str, float]:
        out = {name: float(np.concatenate(v).mean()) for name, v in self.values.items()}
        for k in self.ks:
            out[f"coverage@{k}"] = float(self.recommended[k].sum() / self.n_candidates)
        out["users"] = self.n_users
        return out


def _auc(scores: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Per-row AUC of relevant vs non-relevant among finite-scored candidates."""
    from scipy.stats import rankdata

    finite = np.isfinite(scores)
    # Excluded items (-inf) tie at the bottom; subtract them from the ascending ranks.
    ranks = rankdata(np.where(finite, scores, -np.inf), axis=1, method="average")
    n_excl = (~finite).sum(axis=1, keepdims=True)
    ranks = ranks - n_excl
    pos = rel & finite
    n_pos = pos.sum(axis=1)
    n_neg = finite.sum(axis=1) - n_pos
    rank_sum = np.where(pos, ranks, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, 0.5)


def rating_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(actual, dtype=np.float64)
    mse = float(np.mean(err**2))
    return {"mae": float(np.mean(np.abs(err))), "mse": mse, "rmse": float(np.sqrt(mse))}
