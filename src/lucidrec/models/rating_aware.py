"""The rating-aware item-item block (issue 14): disliked history items (below the user's own mean rating
minus a margin, or an explicit negative event) give the block no input, liked ones an input that grows
with the rating, while every interaction stays a target; and neighbourhood pruning, so each item's
item-item score comes from a few history items an explanation can name. Dense: meant for catalogues the
dense EASE block serves (``lucidrec.models.item_item.DENSE_MAX_ITEMS``)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from lucidrec.models.scoring import support_weights


def liked_and_all(dataset, frame, margin: float | None, slope: float = 0.0):
    """(X_w, Y) for the rating-aware item-item block: X_w holds each interaction's support weight (0 for
    a disliked one; :func:`lucidrec.models.scoring.support_weights`, per user over the frame's ratings);
    Y holds every interaction."""
    import scipy.sparse as sp

    f = frame.sort_values(["uidx"], kind="stable")
    u = f["uidx"].to_numpy()
    r = f["rating"].to_numpy(dtype=np.float64)
    level = np.ones(len(f))
    starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
    for s, e in zip(starts, np.r_[starts[1:], len(u)]):
        level[s:e] = support_weights(r[s:e], margin, slope)
    shape = (dataset.n_users, dataset.n_items)
    X = sp.csr_matrix((level.astype(np.float32), (u, f["iidx"].to_numpy())), shape=shape)
    return X, dataset.matrix(frame)


def rating_aware_ease(X: sp.csr_matrix, Y: sp.csr_matrix, reg: float) -> np.ndarray:
    """The item-item block for rating-aware inputs: B = argmin ||Y - X B||^2 + reg ||B||^2, diag(B) = 0.

    X holds only what the user liked (disliked rows 0), Y every interaction, so liked items learn to
    predict everything the user watches, disliked ones included - dropping disliked items from plain
    EASE's input loses that signal. Closed form: P = (X'X + reg I)^-1, C = P X'Y, B = C - P diag(gamma)
    with gamma_j = C_jj / P_jj (the Lagrange multipliers of diag(B) = 0)."""
    return _solve(*_products(X, Y), reg)


def _products(X: sp.csr_matrix, Y: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """(X'X, X'Y) as dense float64: computed once for every regularisation tried."""
    return (X.T @ X).toarray().astype(np.float64), (X.T @ Y).toarray().astype(np.float64)


def _solve(gram: np.ndarray, xty: np.ndarray, reg: float) -> np.ndarray:
    g = gram.copy()
    g[np.diag_indices_from(g)] += reg
    p = np.linalg.inv(g)
    c = p @ xty
    b = c - p * (np.diag(c) / np.diag(p))[None, :]
    np.fill_diagonal(b, 0.0)
    return b.astype(np.float32)


def prune_item_item(B: np.ndarray, n: int) -> np.ndarray:
    """Each item keeps its ``n`` strongest item-item neighbours: column i (what predicts item i) keeps
    its ``n`` largest |weights|, so an item's item-item score comes from at most ``n`` history items and
    its explanation can name them. ``n`` 0 or >= the catalog: unchanged."""
    if n <= 0 or n >= B.shape[0] - 1:
        return B
    drop = np.argpartition(-np.abs(B), n, axis=0)[n:]
    out = B.copy()
    np.put_along_axis(out, drop, 0.0, axis=0)
    return out


def choose_rating_aware_block(dataset, train, valid, cfg) -> tuple[float, int, dict]:
    """The rating-aware block's regularisation and neighbourhood size N, on validation NDCG@10 of the
    block alone (its blend with the towers is chosen later): the best reg, then the smallest N whose
    NDCG is within ``cfg.item_item_tolerance`` (relative) of keeping every neighbour."""
    from lucidrec.metrics import RankingAccumulator

    X, Y = liked_and_all(dataset, train, cfg.dislike_margin, cfg.rating_slope)
    rel = dataset.matrix(valid)
    users = np.unique(valid["uidx"].to_numpy())

    def ndcg(B):
        acc = RankingAccumulator(dataset.n_items, ks=(10,), auc=False)
        acc.add(np.asarray(X[users] @ B), rel[users], Y[users])
        return acc.result()["ndcg@10"]

    regs = (100.0, 200.0, 300.0, 500.0, 1000.0) if cfg.ease_reg is None else (float(cfg.ease_reg),)
    products = _products(X, Y)
    reg_scores, best = {}, None  # only the best block is kept: each is n x n
    for r in regs:
        B = _solve(*products, r)
        reg_scores[r] = ndcg(B)
        if best is None or reg_scores[r] > reg_scores[best[0]]:
            best = (r, B)
    reg, B_best = best
    full = reg_scores[reg]
    if cfg.item_item_neighbours is not None:
        n = int(cfg.item_item_neighbours)
        return reg, n, {"reg_valid_ndcg@10": reg_scores, "neighbours": n}
    by_n = {n: ndcg(prune_item_item(B_best, n)) for n in (10, 20, 50, 100, 200, 400)}
    ok = [n for n, v in by_n.items() if v >= full * (1 - cfg.item_item_tolerance)]
    n = min(ok) if ok else 0
    return reg, n, {"reg_valid_ndcg@10": reg_scores, "neighbours_valid_ndcg@10": {**by_n, 0: full}, "neighbours": n}


__all__ = ["choose_rating_aware_block", "liked_and_all", "prune_item_item", "rating_aware_ease"]
