"""The sequential part of the item-item block: a closed-form transition model (next item from recent ones).

On leave-one-out the next item depends on the most recent ones (ARCHITECTURE §2, hint 2). Every training
transition of a user's ordered history - the items before position ``t`` -> the item at ``t`` - is one
regression row: the input is the recent history weighted by recency, ``x_t = sum_{j<t} w(t-1-j) e_j``, the
target the one-hot next item. The transition matrix is ridge regression in closed form (SLIT, Choi et al.
2021, "Session-aware Linear Item-Item Models"):

    S = argmin ||Y - X S||^2 + reg ||S||^2 = (X'X + reg I)^-1 X'Y

The recency weight ``w`` is a function of the position from the end of the history through the model's
position buckets (:func:`lucidrec.models.features.position_buckets`), the same buckets the served item-item
block weighs history items by, so training input and serving input have one shape. At serving time the
block is applied exactly like the item-item block - ``score_i = sum_j wE_j S[j, i]`` - and training mixes it
into that block (``(1 - share) * B + share * scale * S``, one matrix): every history item's contribution is
still ``wE_j * B'[j, i]``, so the evidence sums to the score and counterfactuals re-score exactly.

Dense catalogues only (an n x n solve; the block is dense like EASE's).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lucidrec.models.features import N_POSITION_BUCKETS, POSITION_EDGES, position_buckets

#: A representative position from the end (0 = the most recent item) of each position bucket.
BUCKET_POSITION = np.array([0.0, 1.0, 2.0, 3.5, 7.0, 14.5, 34.5, 74.5, 150.0])
assert len(BUCKET_POSITION) == N_POSITION_BUCKETS == len(POSITION_EDGES) + 1
#: Recency decays (per position) and ridge penalties tried on validation for the transition matrix.
DECAY_GRID = (0.5, 0.8)
REG_GRID = (10.0, 100.0, 500.0)
#: Per-position recency decays the blend tries for the served block's history weights. 0.6 and 0.7 were added
#: when the transition block alone preferred them on Amazon validation (benchmarks/accuracy_loo.py --step
#: recency); Office seed 2026 then chose 0.6: blend valid NDCG@10 0.0816 vs 0.0764, test 0.0757 vs 0.0706.
SERVE_DECAYS = (0.6, 0.7, 0.8, 0.9)
#: Inputs older than this many items weigh nothing in a training row (their weight is ~0 at any decay
#: of the grid; the cap bounds the design matrix at max_window nonzeros per transition).
MAX_WINDOW = 50


def position_profile(decay: float) -> np.ndarray:
    """Weight per position bucket: ``decay ** (representative position)`` (bucket 0: the last item, 1)."""
    return (float(decay) ** BUCKET_POSITION).astype(np.float32)


def ordered(frame: pd.DataFrame, n_users: int) -> list[np.ndarray]:
    """Each user's items oldest -> newest (timestamp, then item index: the loo split's order)."""
    from lucidrec.sasrec import ordered_sequences

    return ordered_sequences(frame, n_users)


def transition_design(seqs: list[np.ndarray], n_items: int, profile: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """(X, targets): one row per transition, X[r] = the recency-weighted items before the target."""
    rows, cols, vals, targets = [], [], [], []
    r = 0
    for q in seqs:
        for t in range(1, len(q)):
            prev = q[max(0, t - MAX_WINDOW) : t]
            rows.append(np.full(len(prev), r))
            cols.append(prev)
            vals.append(profile[position_buckets(len(prev))])
            targets.append(q[t])
            r += 1
    if r == 0:
        return sp.csr_matrix((0, n_items)), np.zeros(0, np.int64)
    X = sp.csr_matrix(
        (np.concatenate(vals).astype(np.float64), (np.concatenate(rows), np.concatenate(cols))), shape=(r, n_items)
    )
    return X, np.asarray(targets, np.int64)


def transition_matrices(seqs: list[np.ndarray], n_items: int, decay: float) -> tuple[np.ndarray, np.ndarray]:
    """The normal equations' parts (X'X, X'Y) for one recency decay (shared by every reg)."""
    X, targets = transition_design(seqs, n_items, position_profile(decay))
    Y = sp.csr_matrix((np.ones(len(targets)), (np.arange(len(targets)), targets)), shape=(len(targets), n_items))
    return (X.T @ X).toarray(), (X.T @ Y).toarray()


def solve(gram: np.ndarray, xty: np.ndarray, reg: float) -> np.ndarray:
    """S = (X'X + reg I)^-1 X'Y, float32."""
    g = gram.copy()
    g[np.diag_indices_from(g)] += reg
    return np.linalg.solve(g, xty).astype(np.float32)


def transition_block(frame: pd.DataFrame, n_users: int, n_items: int, decay: float, reg: float) -> np.ndarray:
    """The transition matrix fit on ``frame``'s ordered histories."""
    return solve(*transition_matrices(ordered(frame, n_users), n_items, decay), reg)


def apply(block: np.ndarray, seqs: list[np.ndarray], profile: np.ndarray) -> np.ndarray:
    """Scores (len(seqs), n_items) of histories weighted by ``profile`` (per position bucket)."""
    rows, cols, vals = [], [], []
    for k, q in enumerate(seqs):
        rows.append(np.full(len(q), k))
        cols.append(q)
        vals.append(profile[position_buckets(len(q))])
    x = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(len(seqs), block.shape[0])
    )
    return np.asarray(x @ block)


def choose_transition_block(split, batch_size: int = 1024) -> tuple[dict, np.ndarray]:
    """The transition matrix's recency decay and reg chosen on validation NDCG@10 of the block alone (each
    setting scored with the best serving decay of :data:`SERVE_DECAYS`), and that block as fit on train."""
    from lucidrec.metrics import RankingAccumulator

    ds = split.dataset
    seqs = ordered(split.train, ds.n_users)
    users = np.unique(split.valid["uidx"].to_numpy())
    users = users[[len(seqs[u]) > 0 for u in users]]
    rel, known = ds.matrix(split.valid), ds.matrix(split.train)

    def ndcg(block: np.ndarray, profile: np.ndarray) -> float:
        acc = RankingAccumulator(ds.n_items, ks=(10,), auc=False)
        for s in range(0, len(users), batch_size):
            us = users[s : s + batch_size]
            acc.add(apply(block, [seqs[u] for u in us], profile), rel[us], known[us])
        return acc.result()["ndcg@10"]

    tried, best = [], None
    for decay in DECAY_GRID:
        gram, xty = transition_matrices(seqs, ds.n_items, decay)
        for reg in REG_GRID:
            block = solve(gram, xty, reg)
            score = max(ndcg(block, position_profile(d)) for d in SERVE_DECAYS)
            tried.append({"decay": decay, "reg": reg, "ndcg@10": score})
            if best is None or score > best[0]:
                best = (score, decay, reg, block)
    score, decay, reg, block = best
    return {"decay": decay, "reg": reg, "valid_ndcg@10": score, "valid_grid": tried}, block


__all__ = [
    "BUCKET_POSITION",
    "apply",
    "choose_transition_block",
    "position_profile",
    "transition_block",
    "transition_design",
]
