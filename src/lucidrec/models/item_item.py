"""The item-item block: dense EASE where it fits, a sparse N-neighbour version for large catalogues.

Both kinds are a matrix ``B`` (n x n, zero diagonal) and a history scores ``sum_j w_j B[j, :]``, so the
contribution of history item j to item i is exactly ``w_j * B[j, i]`` whichever kind is served.

**Sparse fit (pruned neighbourhood regression).** Column i of EASE is the ridge regression of item i's
column of X on every other item's column (the zero-diagonal constraint decouples the columns):
``B[:, i] = (G[-i, -i] + reg I)^-1 G[-i, i]`` with ``G = X^T X``. The sparse block solves the same ridge
restricted to item i's N nearest items S_i (co-occurrence over the
neighbour's root popularity, i.e. cosine), ``B[S_i, i] = (G[S_i, S_i] + reg I)^-1 G[S_i, i]``,
so with N = n - 1 it *is* EASE (tested), and with N << n it needs O(n N) memory, the sparse Gram matrix
and one small N x N solve per item (batched). No n x n array is ever formed.

The solver also takes a separate target: ``B ~ argmin ||Y - X_w B||^2 + reg ||B||^2`` with diag(B) = 0
(weighted inputs X_w, e.g. liked items only, predicting every interaction Y): Gram ``X_w^T X_w``,
right-hand side ``X_w^T Y``, neighbours by ``X_w^T Y``.

**Which kind.** ``item_item_kind = "auto"`` picks dense up to :data:`DENSE_MAX_ITEMS` items (the n x n
float64 inverse and its copies take ~2.4 GB there) and sparse above; "dense"/"sparse" force one.

**Serving.** A CSR block is applied by a row-gather of the history rows (never densified to n x n);
explanations read the entries ``B[hist, items]`` of the same matrix, so evidence still sums to the score.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from lucidrec.errors import ConfigError

if TYPE_CHECKING:
    import scipy.sparse as sp

#: ``item_item_kind = "auto"`` fits dense EASE up to this many items, the sparse block above.
DENSE_MAX_ITEMS = 10_000
#: Neighbour counts tried on validation when ``neighbors`` is not set (catalogues up to SELECT_MAX_ITEMS).
NEIGHBOR_GRID = (32, 64, 128, 256)
#: Regularisations tried on validation for the sparse block (same grid as dense EASE).
REG_GRID = (100.0, 200.0, 300.0, 500.0, 1000.0)
#: Above this many items, fitting every grid point is too slow: N is the largest of neighbor_grid(n) and
#: reg DEFAULT_REG unless the config sets them.
SELECT_MAX_ITEMS = 200_000
DEFAULT_NEIGHBORS = 64  # N while the reg is searched on validation
#: A grid point N is tried only while n * N^2 stays under this (the fit's cost is ~n N^2 lookups + n N^3/3
#: flops): all of NEIGHBOR_GRID at 20k items, up to 128 at 100k.
GRID_BUDGET = 2e9


def neighbor_grid(n_items: int) -> tuple[int, ...]:
    """The neighbour counts tried on validation for a catalogue of ``n_items`` items."""
    grid = tuple(k for k in NEIGHBOR_GRID if n_items * k * k <= GRID_BUDGET)
    return grid or NEIGHBOR_GRID[:1]


DEFAULT_REG = 300.0
#: "concise": the sparse non-negative block of :mod:`lucidrec.models.concise` (stored dense, like EASE).
KINDS = ("auto", "dense", "sparse", "concise")


def resolve_kind(kind: str, n_items: int) -> str:
    """ "dense", "sparse" or "concise" for ``item_item_kind`` and a catalogue of ``n_items`` items ("auto"
    gives dense or sparse by size; the training then also tries the concise block on a dense catalogue)."""
    if kind not in KINDS:
        raise ConfigError(
            f"item_item_kind={kind!r}: must be one of {', '.join(KINDS)}. Fix: e.g. item_item_kind='auto'."
        )
    if kind == "auto":
        return "dense" if n_items <= DENSE_MAX_ITEMS else "sparse"
    return kind


def check_neighbors(neighbors) -> None:
    if neighbors is not None and (not isinstance(neighbors, (int, np.integer)) or neighbors < 1):
        raise ConfigError(f"neighbors={neighbors!r}: must be a positive integer or None (chosen on validation).")


# ====================================================================== fitting
def top_per_row(m: sp.csr_matrix, n: int, by_abs: bool = False) -> sp.csr_matrix:
    """Keep the ``n`` largest entries of each row (by value, or |value|); ties broken by column index so
    the result is deterministic. Works in row chunks so memory stays near the matrix's own size."""
    import scipy.sparse as sp

    m = m.tocsr()
    m.sum_duplicates()
    lengths = np.diff(m.indptr)
    if lengths.max(initial=0) <= n:
        return m
    keep = np.zeros(m.nnz, bool)
    # Rows whose length is at most n keep everything; longer rows are ranked in chunks of ~8M entries.
    short = np.repeat(lengths <= n, lengths)
    keep[short] = True
    long_rows = np.flatnonzero(lengths > n)
    start = 0
    while start < len(long_rows):
        stop, budget = start, 0
        while stop < len(long_rows) and (budget == 0 or budget + lengths[long_rows[stop]] <= 8_000_000):
            budget += lengths[long_rows[stop]]
            stop += 1
        rows = long_rows[start:stop]
        pos = np.concatenate([np.arange(m.indptr[r], m.indptr[r + 1]) for r in rows])
        row_of = np.repeat(np.arange(len(rows)), lengths[rows])
        val = np.abs(m.data[pos]) if by_abs else m.data[pos]
        order = np.lexsort((m.indices[pos], -val, row_of))
        first = np.r_[0, np.cumsum(lengths[rows])[:-1]]
        rank = np.empty(len(pos), np.int64)
        rank[order] = np.arange(len(pos)) - np.repeat(first, lengths[rows])
        keep[pos[rank < n]] = True
        start = stop
    out = sp.csr_matrix((m.data[keep], m.indices[keep], np.r_[0, np.cumsum(_row_counts(keep, m.indptr))]), m.shape)
    return out


def _row_counts(mask: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    c = np.r_[0, np.cumsum(mask, dtype=np.int64)]
    return c[indptr[1:]] - c[indptr[:-1]]


def neighbour_lists(cross_t: sp.csr_matrix, n_neighbors: int) -> np.ndarray:
    """(n, N) item indices, -1 padded: row i holds the N items with the largest positive ``cross_t[i, :]``
    (co-occurrence with item i), item i itself excluded. ``N >= n - 1`` keeps every other item.
    ``cross_t`` (CSR) is modified in place."""
    n = cross_t.shape[0]
    if n_neighbors >= n - 1:
        full = np.tile(np.arange(n), (n, 1))
        return full[~np.eye(n, dtype=bool)].reshape(n, n - 1)
    # In place on the caller's (temporary) matrix: drop the diagonal and non-positive entries without
    # the copies setdiag/multiply would make (at 1M items this matrix has ~60M entries).
    c = cross_t
    own_row = np.repeat(np.arange(n, dtype=np.int32), np.diff(c.indptr))
    c.data[(c.indices == own_row) | (c.data <= 0)] = 0
    del own_row
    c.eliminate_zeros()
    top = top_per_row(c, n_neighbors)
    out = np.full((n, n_neighbors), -1, np.int64)
    lengths = np.diff(top.indptr)
    rows = np.repeat(np.arange(n), lengths)
    slot = np.arange(top.nnz) - np.repeat(top.indptr[:-1], lengths)
    out[rows, slot] = top.indices
    return out


def _lookup(m: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """m[rows[k], cols[k]] for index arrays (a compiled binary search per entry, no densification)."""
    if len(rows) == 0:
        return np.zeros(0, np.float64)
    from scipy.sparse._sparsetools import csr_sample_values  # the compiled kernel behind m[rows, cols]

    out = np.zeros(len(rows), dtype=m.data.dtype)
    idx_t = m.indices.dtype
    csr_sample_values(
        m.shape[0], m.shape[1], m.indptr, m.indices, m.data, len(rows), rows.astype(idx_t), cols.astype(idx_t), out
    )
    return out.astype(np.float64, copy=False)


def _one_blas_thread():
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the solve is only slower
        from contextlib import nullcontext

        return nullcontext()
    return threadpool_limits(1, "blas")


def _with_empty_last(m: sp.csr_matrix) -> sp.csr_matrix:
    """``m`` grown by one empty row and column (the padding slot of neighbour lists)."""
    import scipy.sparse as sp

    out = sp.csr_matrix((m.data, m.indices, np.r_[m.indptr, m.indptr[-1]]), shape=(m.shape[0] + 1, m.shape[1] + 1))
    out.has_sorted_indices = m.has_sorted_indices
    return out


def sparse_item_item(
    x: sp.spmatrix,
    reg: float,
    neighbors: int,
    target: sp.spmatrix | None = None,
    batch_entries: int = 4_000_000,
) -> sp.csr_matrix:
    """The sparse block (see the module docstring): ``B[j, i]`` for j among item i's ``neighbors`` most
    co-occurring items (cosine-normalised), the ridge solution restricted to them. ``x``: users x items input (binary or
    weighted); ``target``: users x items target (default ``x``). Returns an n x n float32 CSR matrix."""
    import scipy.sparse as sp

    if reg <= 0:
        raise ConfigError(f"item-item reg={reg}: must be > 0.")
    check_neighbors(neighbors)
    # float32 Gram: counts are exact in float32 and it halves the largest array; solves run in float64.
    x = sp.csr_matrix(x, dtype=np.float32)
    n = x.shape[1]
    gram = (x.T @ x).tocsr()
    gram.sort_indices()
    if target is None:
        cross_t = gram  # symmetric: row i = co-occurrence of item i with every input item
    else:
        y = sp.csr_matrix(target, dtype=np.float32)
        if y.shape != x.shape:
            raise ConfigError(f"target shape {y.shape} differs from input shape {x.shape}.")
        cross_t = (y.T @ x).tocsr()  # row i: X_w^T y_i, the right-hand side of target item i
        cross_t.sort_indices()
    # Neighbours ranked by co-occurrence over sqrt(popularity of the input item) (cosine within a row):
    # raw counts favour the most popular items for every target, which costs accuracy at small N
    # (ML-100K valid NDCG@10 at N = 64: 0.243 by counts, 0.260 by cosine; dense 0.265).
    inv_norm = (1.0 / np.sqrt(np.maximum(gram.diagonal(), 1e-12))).astype(gram.dtype)
    nbrs = neighbour_lists((cross_t @ sp.diags(inv_norm)).tocsr(), min(int(neighbors), max(n - 1, 1)))
    N = nbrs.shape[1]
    # Padded slots (items with fewer than N co-occurring items) point at an extra empty row/column n:
    # their Gram entries and right-hand side read 0, so with reg on the diagonal they solve to exactly 0.
    gram = _with_empty_last(gram)
    cross_t = _with_empty_last(cross_t)
    idx_all = np.where(nbrs >= 0, nbrs, n)
    rows_out, cols_out, vals_out = [], [], []
    step = max(1, batch_entries // max(N * N, 1))
    iu, ju = np.triu_indices(N)
    flat_u, flat_l = iu * N + ju, ju * N + iu
    for s in range(0, n, step):
        idx = idx_all[s : s + step]  # (b, N)
        b = len(idx)
        # Gram submatrices G[S_i, S_i]: the upper triangle looked up, mirrored, reg on the diagonal.
        upper = _lookup(gram, idx[:, iu].ravel(), idx[:, ju].ravel()).reshape(b, -1)
        A = np.empty((b, N * N))
        A[:, flat_l] = upper
        A[:, flat_u] = upper
        A = A.reshape(b, N, N)
        A[:, np.arange(N), np.arange(N)] += reg
        targets = np.repeat(np.arange(s, s + b), N)
        rhs = _lookup(cross_t, targets, idx.ravel()).reshape(b, N, 1)
        with _one_blas_thread():  # threaded BLAS on many small systems can be ~70x slower (measured)
            coef = np.linalg.solve(A, rhs)[..., 0]
        valid = idx < n
        rows_out.append(idx[valid])
        cols_out.append(targets.reshape(b, N)[valid])
        vals_out.append(coef[valid].astype(np.float32))
    rows = np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64)
    cols = np.concatenate(cols_out) if cols_out else np.zeros(0, np.int64)
    vals = np.concatenate(vals_out) if vals_out else np.zeros(0, np.float32)
    out = sp.csr_matrix((vals, (rows, cols)), shape=(n, n), dtype=np.float32)
    out.sort_indices()
    return out


def dense_ridge_item_item(x: sp.spmatrix, reg: float, target: sp.spmatrix | None = None) -> np.ndarray:
    """Reference for tests and small catalogues: every column's full ridge solution, diag 0 (equals
    ``baselines.ease_weights`` when ``target`` is None)."""
    import scipy.sparse as sp

    x = sp.csr_matrix(x, dtype=np.float64)
    y = x if target is None else sp.csr_matrix(target, dtype=np.float64)
    g = (x.T @ x).toarray()
    c = (x.T @ y).toarray()
    n = g.shape[0]
    out = np.zeros((n, n))
    for i in range(n):
        others = np.r_[0:i, i + 1 : n]
        a = g[np.ix_(others, others)] + reg * np.eye(n - 1)
        out[others, i] = np.linalg.solve(a, c[others, i])
    return out


# ====================================================================== cold items
def impute_cold_sparse(
    B: sp.csr_matrix, text: np.ndarray, seen: np.ndarray, neighbors: int, k: int = 10, max_pool: int = 20_000
) -> sp.csr_matrix:
    """The sparse counterpart of ``training.impute_cold_item_item``: an item without interactions borrows
    the column and row of its ``k`` nearest warm items by text (cosine weights, normalised), each pruned to
    its ``neighbors`` largest |entries| so the block stays O(n N). The text neighbours are searched among
    the ``max_pool`` most-connected warm items (all of them on small catalogues; fewer when there are so
    many cold items that the search would pass ~2e9 pairs), in chunks."""
    import scipy.sparse as sp

    cold = np.flatnonzero(~seen)
    warm = np.flatnonzero(seen)
    n = B.shape[0]
    if len(cold) == 0 or len(warm) == 0:
        return B
    # Bound the text search to ~2e9 similarity pairs (e.g. 600k cold items at 1M search ~3k warm ones).
    max_pool = min(max_pool, max(1_000, int(2e9 // len(cold))))
    if len(warm) > max_pool:
        degree = np.diff(B.indptr)[warm] + np.diff(B.tocsc().indptr)[warm]
        warm = np.sort(warm[np.argsort(-degree, kind="stable")[:max_pool]])
    k = min(k, len(warm))
    tw = np.ascontiguousarray(text[warm], dtype=np.float32)
    chunk = max(1, 20_000_000 // len(warm))
    r_, c_, v_ = [], [], []
    for s in range(0, len(cold), chunk):
        ci = cold[s : s + chunk]
        sims = text[ci].astype(np.float32) @ tw.T
        nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        w = np.clip(np.take_along_axis(sims, nn, axis=1), 0.0, None)
        w = w / np.clip(w.sum(axis=1, keepdims=True), 1e-12, None)
        r_.append(warm[nn].ravel())
        c_.append(np.repeat(ci, k))
        v_.append(w.ravel())
    # M[warm neighbour, cold item] = weight: B @ M gives the borrowed columns, M^T @ B1 the borrowed rows.
    M = sp.csr_matrix((np.concatenate(v_), (np.concatenate(r_), np.concatenate(c_))), shape=(n, n), dtype=np.float32)
    # The diagonal is dropped before pruning, so it never takes the place of a real neighbour.
    cols = top_per_row(_no_diag(B @ M).T.tocsr(), neighbors, by_abs=True).T.tocsr()
    B1 = (B + cols).tocsr()
    rows = top_per_row(_no_diag(M.T.tocsr() @ top_per_row(B1, neighbors, by_abs=True)), neighbors, by_abs=True)
    B2 = _no_diag((B1 + rows).tocsr())
    B2.sort_indices()
    return B2.astype(np.float32)


def _no_diag(m):
    m = m.tocsr()
    m.setdiag(0.0)
    m.eliminate_zeros()
    return m


# ====================================================================== applying the block
def is_sparse(B) -> bool:
    """A scipy sparse matrix, told without importing scipy (serving start-up stays light)."""
    return type(B).__module__.startswith("scipy.sparse")


def as_block(B):
    """A block as served: float32 CSR (sorted indices) for a sparse matrix, a float32 array otherwise."""
    if is_sparse(B):
        import scipy.sparse as sp

        out = sp.csr_matrix(B, dtype=np.float32)
        out.sort_indices()
        return out
    return np.asarray(B, dtype=np.float32)


def history_scores(B, hist: np.ndarray, weights: np.ndarray, n_items: int) -> np.ndarray:
    """``sum_j weights_j * B[hist_j, :]`` over the catalogue (float32): a row-gather for a CSR block."""
    if B is None or len(hist) == 0:
        return np.zeros(n_items, np.float32)
    if is_sparse(B):
        import scipy.sparse as sp

        x = sp.csr_matrix(
            (np.asarray(weights, np.float32), (np.zeros(len(hist), np.int64), np.asarray(hist, np.int64))),
            shape=(1, B.shape[0]),
        )
        return np.asarray((x @ B).toarray()[0], dtype=np.float32)
    return np.asarray(weights, np.float32) @ B[hist]


def batch_scores(B, hist: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``history_scores`` for a padded batch: ``hist``/``weights`` (b, L), padded slots weigh 0."""
    import scipy.sparse as sp

    b = hist.shape[0]
    n = B.shape[0]
    rows = np.repeat(np.arange(b), hist.shape[1])
    x = sp.csr_matrix((np.asarray(weights, np.float32).ravel(), (rows, np.asarray(hist).ravel())), shape=(b, n))
    out = x @ B
    return np.asarray(out.toarray() if is_sparse(out) else out, dtype=np.float32)


def entries(B, hist: np.ndarray, items: np.ndarray) -> np.ndarray:
    """``B[hist][:, items]`` as a dense (len(hist), len(items)) array: the per-history-item evidence."""
    if is_sparse(B):
        return np.asarray(B[np.asarray(hist, np.int64)][:, np.asarray(items, np.int64)].toarray(), np.float32)
    return B[np.ix_(hist, items)]


# ====================================================================== a Scorer for the evaluation harness
class SparseEASE:
    """The sparse block as a stand-alone Scorer (fit/score), for validation search and benchmarks."""

    name = "SparseEASE"

    def __init__(self, reg: float = DEFAULT_REG, neighbors: int = DEFAULT_NEIGHBORS):
        if reg <= 0:
            raise ConfigError(f"SparseEASE reg={reg}: must be > 0.")
        check_neighbors(neighbors)
        self.reg, self.neighbors = float(reg), int(neighbors)

    def fit(self, dataset, train) -> SparseEASE:
        self.b = sparse_item_item(dataset.matrix(train), self.reg, self.neighbors)
        return self

    def score(self, users: np.ndarray, histories) -> np.ndarray:
        return np.asarray((histories.binary[users] @ self.b).toarray())

    def get_params(self) -> dict:
        return {"reg": self.reg, "neighbors": self.neighbors}


__all__ = [
    "DEFAULT_NEIGHBORS",
    "DEFAULT_REG",
    "DENSE_MAX_ITEMS",
    "NEIGHBOR_GRID",
    "REG_GRID",
    "SELECT_MAX_ITEMS",
    "SparseEASE",
    "as_block",
    "batch_scores",
    "dense_ridge_item_item",
    "entries",
    "history_scores",
    "impute_cold_sparse",
    "is_sparse",
    "neighbor_grid",
    "neighbour_lists",
    "resolve_kind",
    "sparse_item_item",
    "top_per_row",
]
