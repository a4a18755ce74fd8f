"""The concise item-item block: a sparse, non-negative linear method (SLIM, Ning & Karypis 2011).

Column i of the block is a regression of item i's interactions on every other item's, like EASE, but with
non-negative weights and an L1 + L2 (elastic net) penalty instead of a ridge:

    B[:, i] = argmin_{w >= 0, w_i = 0}  1/(2 n_users) ||x_i - X w||^2 + alpha * l1 ||w||_1 + alpha (1 - l1)/2 ||w||^2

Why it exists: reasons. EASE spreads an item's score over hundreds of weak positive and negative
co-occurrences (on ML-100K the three largest history contributions carry a median 24% of the positive
total), so no short list of history items explains it, and removing the cited ones rarely changes the
recommendation. The elastic net keeps a few dozen non-negative neighbours per item, so a user's score
for an item comes from a few of their items; inside the hybrid it is as accurate as EASE or better (see
the README and benchmarks/results/explanations_default.md for the measured trade-off).

It is a dense n x n float32 array (zero diagonal) served exactly like dense EASE; the fit is one small
coordinate-descent problem per item (scikit-learn's ElasticNet on the sparse interaction matrix), a
few seconds for ML-100K's 1,682 items and the Amazon catalogues' 2-4k.
"""

from __future__ import annotations

import warnings

import numpy as np

from lucidrec.errors import ConfigError, DependencyError

#: Penalty strengths tried on validation, as fractions of the catalogue's typical "alpha_max" (the alpha
#: at which an item's regression keeps no neighbour at all: max_j x_j.x_i / n_users, median over items),
#: so one grid means the same on dense and sparse data. Block alone, validation NDCG@10 peaks at 0.25 on
#: ML-100K ratio, 0.1 on ML-100K loo and 0.5 on both Amazon catalogues (each above dense EASE's best).
GRID = (0.1, 0.25, 0.5)
#: The elastic net's L1 share: mostly ridge (stable weights), enough L1 for a few dozen neighbours.
L1_RATIO = 0.1
#: Coordinate-descent passes per item (scikit-learn's default is 1,000; a hundred reach its tolerance
#: for nearly every item here, and the few that stop early are still feasible non-negative solutions).
MAX_ITER = 100


def typical_alpha_max(X) -> float:
    """Median over items (with any co-occurrence) of max_j x_j . x_i / n_users: the L1 penalty at which an
    item's regression keeps no neighbour. ``X`` binarised; computed on the sparse Gram matrix."""
    import scipy.sparse as sp

    Xb = sp.csr_matrix(X, dtype=np.float64, copy=True)
    Xb.data[:] = 1.0
    G = (Xb.T @ Xb).tocsc()
    G.setdiag(0.0)
    G.eliminate_zeros()
    top = np.asarray(G.max(axis=0).todense()).ravel()
    top = top[top > 0]
    return float(np.median(top)) / max(Xb.shape[0], 1) if len(top) else 1.0


def concise_item_item(
    X, strength: float, l1_ratio: float = L1_RATIO, progress: bool = False, target=None
) -> np.ndarray:
    """The concise block fit on the (users x items) interaction matrix ``X`` (binarised); ``strength``:
    the penalty as a fraction of :func:`typical_alpha_max` (see :data:`GRID`). ``target`` (same shape;
    default ``X``): what each item's regression predicts, e.g. every interaction from liked-only input."""
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import ElasticNet
    except ImportError as e:  # pragma: no cover - scikit-learn comes with lucidrec[train]
        raise DependencyError(
            "the concise item-item block needs scikit-learn. Fix: pip install 'lucidrec[train]'."
        ) from e
    import scipy.sparse as sp

    if strength <= 0 or not 0 < l1_ratio <= 1:
        raise ConfigError(
            f"concise item-item block: strength={strength} must be > 0 and l1_ratio={l1_ratio} in (0, 1]. "
            "Fix: e.g. strength=0.25, l1_ratio=0.1 (the defaults)."
        )
    alpha = strength * typical_alpha_max(X) / l1_ratio
    Xc = sp.csc_matrix(X, dtype=np.float64, copy=True)
    Xc.eliminate_zeros()
    Xc.data[:] = 1.0
    Yc = Xc if target is None else sp.csc_matrix(target, dtype=np.float64)
    n = Xc.shape[1]
    B = np.zeros((n, n), np.float32)
    model = ElasticNet(
        alpha=alpha,
        l1_ratio=l1_ratio,
        positive=True,
        fit_intercept=False,
        copy_X=False,
        max_iter=MAX_ITER,
        tol=1e-4,
        selection="random",
        random_state=0,
    )
    cols = range(n)
    if progress:
        from tqdm.auto import tqdm

        cols = tqdm(cols, desc="concise item-item block", unit="item", mininterval=1.0)
    with warnings.catch_warnings():
        # A few items stop at MAX_ITER; their weights are already within the tolerance's reach.
        warnings.simplefilter("ignore", ConvergenceWarning)
        for i in cols:
            lo, hi = Xc.indptr[i], Xc.indptr[i + 1]
            y = (Yc[:, i].toarray().ravel() > 0).astype(np.float64)
            if not y.any():
                continue  # nobody has item i: its column stays 0 (cold items are imputed from text later)
            # w_i = 0: item i's own column is blanked while its regression is fit, then put back.
            Xc.data[lo:hi] = 0.0
            model.fit(Xc, y)
            Xc.data[lo:hi] = 1.0
            B[:, i] = model.coef_
    np.fill_diagonal(B, 0.0)
    return B


class ConciseItemItem:
    """The concise block alone as an evaluation scorer (for the choice of alpha on validation)."""

    name = "Concise item-item"

    def __init__(self, strength: float = 0.25, l1_ratio: float = L1_RATIO):
        self.strength, self.l1_ratio = float(strength), float(l1_ratio)

    def fit(self, dataset, train) -> ConciseItemItem:
        self.b = concise_item_item(dataset.matrix(train), self.strength, self.l1_ratio)
        return self

    def score(self, users: np.ndarray, histories) -> np.ndarray:
        return np.asarray(histories.binary[users] @ self.b)

    def get_params(self) -> dict:
        return {"strength": self.strength, "l1_ratio": self.l1_ratio}


__all__ = ["GRID", "L1_RATIO", "ConciseItemItem", "concise_item_item", "typical_alpha_max"]
