"""Candidate retrieval: exact scoring for small catalogs, a faiss index (IVF or HNSW) for large ones.

The model's score is ``s_ui = pE[i] + F_i . pL + T_i . pT + b_i + CLS(pL, F_i)``. Its two-tower part is
one inner product of an item vector ``[F_i, T_i, b_i]`` with a user vector ``[pL, pT, 1]``, so a
maximum-inner-product index over the model's own item vectors finds the items that part ranks highest.
The full score (cross term, item-item block) is then computed on those candidates only, and so are the
explanations: every reported score is still the model's exact score.

Two choices keep the index small and fast:

- The text block ``T`` (384-d language-model embeddings) is reduced for the index by PCA
  (``text_dim`` components, fitted on a sample); the constant part ``mean . pT`` is the same for every
  item and is dropped. Candidates are re-scored exactly, so PCA only costs recall, which is measured.
- IVF indexes the vectors after the standard MIPS-to-L2 transform (``x -> [x, sqrt(M^2 - |x|^2)]``,
  query ``[q, 0]``): nearest neighbours in L2 are then exactly the largest inner products, and k-means
  clusters (the coarse quantizer) are fitted in a space where distance means something.

``kind="auto"`` scores exactly below ``exact_threshold`` items (one matrix-vector product is fast and
needs no index) and builds IVF above it. Index files live next to the model: ``index.json`` (settings and
a fingerprint of the weights it was built from), ``index_proj.npz`` (the PCA of the text block) and
``index.faiss``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec.errors import ConfigError, DependencyError, ModelError

if TYPE_CHECKING:
    from lucidrec.models.scoring import HybridScorer, UserState

KINDS = ("auto", "exact", "ivf", "hnsw")
INDEX_FILES = ("index.json", "index_proj.npz", "index.faiss")
INDEX_FORMAT = 1
#: Items are turned into index vectors this many at a time, so building never holds a second full copy.
_CHUNK = 100_000


@dataclass
class IndexConfig:
    """How candidates are retrieved. Every field can be overridden in ``Recommender.build_index(...)``."""

    kind: str = "auto"  # auto | exact | ivf | hnsw
    exact_threshold: int = 50_000  # auto: exact scoring below this many items, IVF from here on
    # Items retrieved per user, then scored exactly (cross term included). 1,000 since the query carries
    # the cross term's linear part: recall@100 0.982 at 1M items (0.988 with 2,000, at twice the latency).
    candidates: int = 1000
    # Items added per user from the item-item block's neighbour lists (the top of the block's own score
    # over the union of the history items' neighbours): the index does not see that block.
    neighbour_candidates: int = 1000
    # Items sampled to fit each query's linear approximation of the cross term (0: off); see RetrievalVectors.
    cross_sample: int = 1024
    text_dim: int | None = 64  # PCA components of the text block in the index (None: the full block)
    nlist: int | None = None  # IVF lists (None: about 2 * sqrt(n_items))
    nprobe: int | None = None  # IVF lists visited per query (None: a tenth of the lists)
    storage: str = "flat"  # IVF vector storage: "flat" (float32) or "sq8" (8-bit, 4x smaller)
    hnsw_m: int = 32
    ef_construction: int = 40
    ef_search: int = 256
    train_size: int = 100_000  # vectors sampled to fit the PCA and the coarse quantizer
    threads: int | None = None  # faiss OpenMP threads (None: faiss default)
    seed: int = 2026

    def validate(self) -> IndexConfig:
        if self.kind not in KINDS:
            raise ConfigError(f"kind='{self.kind}': must be one of {', '.join(KINDS)}. Fix: e.g. kind='auto'.")
        if self.storage not in ("flat", "sq8"):
            raise ConfigError(f"storage='{self.storage}': must be 'flat' or 'sq8'. Fix: e.g. storage='flat'.")
        positive = {
            "exact_threshold": self.exact_threshold,
            "candidates": self.candidates,
            "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "train_size": self.train_size,
        }
        for name in ("cross_sample", "neighbour_candidates"):  # 0 switches these off
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{name}={v!r}: must be an integer >= 0 (0: off). Fix: e.g. {name}=1000.")
        optional = {"text_dim": self.text_dim, "nlist": self.nlist, "nprobe": self.nprobe, "threads": self.threads}
        for name, v in {**positive, **optional}.items():
            if v is None and name in optional:
                continue
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ConfigError(f"{name}={v!r}: must be a positive integer. Fix: e.g. {name}=64.")
        return self

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IndexConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(
                f"unknown index option(s) {', '.join(unknown)}. Fix: use only {', '.join(sorted(names))}."
            )
        return cls(**d).validate()


def resolve_kind(config: IndexConfig, n_items: int) -> str:
    """The index kind to build: ``auto`` means exact below ``exact_threshold`` items, IVF from there on."""
    if config.kind != "auto":
        return config.kind
    return "exact" if n_items < config.exact_threshold else "ivf"


def require_faiss():
    try:
        import faiss
    except ImportError:
        raise DependencyError(
            "ANN retrieval needs faiss. Fix: pip install 'lucidrec[scale]' (faiss-cpu), or use kind='exact'."
        ) from None
    return faiss


def weights_fingerprint(scorer: HybridScorer) -> str:
    """A cheap fingerprint of the item-side weights (shapes plus a strided sample), so an index built for
    other weights is detected on load instead of silently returning wrong candidates."""
    w = scorer.w
    n = scorer.n_items
    step = max(1, n // 2000)
    h = hashlib.sha1()
    for name in ("F", "T", "bias"):
        a = np.ascontiguousarray(w[name][::step], dtype=np.float32)
        h.update(f"{name}{w[name].shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:20]


# ====================================================================== item-item neighbours
def _dense(pE, scorer: HybridScorer):
    """The state's item-item scores when they are a full catalog-length array, else None."""
    return pE if isinstance(pE, np.ndarray) and pE.shape == (scorer.n_items,) else None


def item_item_neighbours(scorer: HybridScorer):
    """The scorer's item-item block when it is a scipy sparse matrix (as CSR), else None."""
    B = getattr(scorer, "B", None)
    if B is None:
        return None
    from scipy import sparse

    return B.tocsr() if sparse.issparse(B) else None


def neighbour_top(neighbours, hist: np.ndarray, weights: np.ndarray, m: int, scores: np.ndarray | None = None):
    """The ``m`` items with the largest item-item score ``sum_j weights_j * N[hist_j, i]`` (``N`` a CSR
    neighbour matrix), looked for on the union of the history rows only. Items scoring <= 0 are left out
    (they do not pull an item up). ``scores``: that score over the catalog when the user state already
    holds it (``UserState.pE``); the support is then deduplicated with a bitmap instead of a sort of
    every row entry (the rows of popular items are long)."""
    sub = neighbours[np.asarray(hist, dtype=np.int64)]
    if sub.nnz == 0 or m < 1:
        return np.zeros(0, np.int64)
    if scores is not None:
        mark = np.zeros(neighbours.shape[1], bool)
        mark[sub.indices] = True
        items = np.flatnonzero(mark)
        score = scores[items]
    else:
        items, inverse = np.unique(sub.indices, return_inverse=True)
        row_w = np.repeat(np.asarray(weights, dtype=np.float64), np.diff(sub.indptr))
        score = np.bincount(inverse, weights=sub.data * row_w, minlength=len(items))
    keep = score > 0
    items, score = items[keep], score[keep]
    if len(items) > m:
        items = items[np.argpartition(-score, m - 1)[:m]]
    return items.astype(np.int64)


# ====================================================================== vectors
class RetrievalVectors:
    """Maps the model's item and user towers to the index space: items ``[F, P(T - mean), b]``, users
    ``[pL + g(pL), P pT, 1]``, where ``P`` holds ``text_dim`` principal directions of ``T`` (identity if
    None) and ``g(pL)`` is the cross term's best linear approximation in ``F`` for this user.

    Why ``g``: the cross term ``CLS(pL, F_i)`` is invisible to an inner-product index, and on the 1M
    synthetic catalog it moved a tenth of the exact top-100 out of the towers' top-2,000. Per user, the
    least-squares fit ``CLS(pL, F_i) ~ g . F_i + c`` over a fixed sample of items (``cross_sample``) is one
    small matrix-vector product, ``g = Pc (CLS(pL, F_S) - mean)`` with ``Pc = (Fc' Fc + lam I)^-1 Fc'``
    precomputed, and it folds into the query's latent block: the item vectors do not change. Measured on
    that catalog (exact inner products, 30 users): the exact top-100 inside the top-1,000 went from 0.79
    to 0.98. Candidates are still re-scored with the full model, so ``g`` only decides which items are
    looked at."""

    def __init__(
        self,
        mean: np.ndarray | None,
        components: np.ndarray | None,
        dim_latent: int,
        dim_text: int,
        cross_items: np.ndarray | None = None,
        cross_proj: np.ndarray | None = None,
    ):
        self.mean = mean
        self.components = components  # (text_dim, d_text) or None: the full text block
        self.dim_latent = dim_latent
        self.dim_text = dim_text if components is None else components.shape[0]
        self.cross_items = cross_items  # (S,) item sample of the cross-term linearisation, or None
        self.cross_proj = cross_proj  # (d_latent, S) its least-squares projection

    @classmethod
    def fit(
        cls, scorer: HybridScorer, text_dim: int | None, sample: int, seed: int, cross_sample: int = 0
    ) -> RetrievalVectors:
        T = scorer.w["T"]
        dl = scorer.w["F"].shape[1]
        rng = np.random.default_rng(seed)
        cross_items, cross_proj = _cross_linearisation(scorer, cross_sample, rng)
        if text_dim is None or text_dim >= T.shape[1]:
            return cls(None, None, dl, T.shape[1], cross_items, cross_proj)
        rows = np.sort(rng.choice(len(T), size=min(sample, len(T)), replace=False))
        x = T[rows].astype(np.float64)
        mean = x.mean(0)
        # Eigenvectors of the d x d covariance, not an SVD of the sample: same directions, without a
        # sample-sized U matrix (an SVD of 100k x 384 doubled the process's peak memory).
        cov = np.cov(x, rowvar=False)
        del x
        vals, vecs = np.linalg.eigh(cov)
        top = vecs[:, np.argsort(vals)[::-1][:text_dim]].T
        return cls(
            mean.astype(np.float32), np.ascontiguousarray(top, dtype=np.float32), dl, text_dim, cross_items, cross_proj
        )

    @property
    def dim(self) -> int:
        return self.dim_latent + self.dim_text + 1

    def items(self, scorer: HybridScorer, start: int = 0, stop: int | None = None) -> np.ndarray:
        w = scorer.w
        stop = scorer.n_items if stop is None else stop
        T = w["T"][start:stop]
        t = T if self.components is None else (T - self.mean) @ self.components.T
        return np.concatenate([w["F"][start:stop], t, w["bias"][start:stop, None]], axis=1).astype(np.float32)

    def users(self, states: list[UserState], scorer: HybridScorer | None = None) -> np.ndarray:
        """Query vectors; with ``scorer`` (and a linearisation fitted) the cross term's linear part is in."""
        pL = np.stack([s.pL for s in states])
        if scorer is not None and self.cross_items is not None:
            pL = pL + np.stack([self.cross_direction(scorer, s.pL) for s in states])
        pT = np.stack([s.pT for s in states])
        t = pT if self.components is None else pT @ self.components.T
        return np.concatenate([pL, t, np.ones((len(states), 1), np.float32)], axis=1).astype(np.float32)

    def cross_direction(self, scorer: HybridScorer, pL: np.ndarray) -> np.ndarray:
        """``g(pL)``: the least-squares slope of ``CLS(pL, F_i)`` in ``F_i`` over the item sample."""
        c = scorer.cross(pL, self.cross_items)
        return (self.cross_proj @ (c - c.mean())).astype(np.float32)

    def as_tuple(self) -> tuple:
        """Constructor arguments (a batch job ships them to its workers)."""
        return (self.mean, self.components, self.dim_latent, self.dim_text, self.cross_items, self.cross_proj)

    def save(self, path: Path):
        arrays = {"dims": np.array([self.dim_latent, self.dim_text])}
        if self.components is not None:
            arrays.update(mean=self.mean, components=self.components)
        if self.cross_items is not None:
            arrays.update(cross_items=self.cross_items, cross_proj=self.cross_proj)
        np.savez(path, **arrays)

    @classmethod
    def load(cls, path: Path) -> RetrievalVectors:
        with np.load(path) as z:
            dl, dt = (int(v) for v in z["dims"])
            cross = (z["cross_items"], z["cross_proj"].astype(np.float32)) if "cross_items" in z else (None, None)
            if "components" in z:
                return cls(z["mean"].astype(np.float32), z["components"].astype(np.float32), dl, dt, *cross)
            return cls(None, None, dl, dt, *cross)


def _cross_linearisation(scorer: HybridScorer, size: int, rng) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The item sample and ``(Fc' Fc + lam I)^-1 Fc'`` of the cross term's per-user linear fit (None when
    ``size`` is 0 or the model has no cross term: its output weights are all zero)."""
    w = scorer.w
    if size <= 0 or not np.any(w["w2"]):
        return None, None
    n = scorer.n_items
    items = np.sort(rng.choice(n, size=min(int(size), n), replace=False)).astype(np.int64)
    Fc = w["F"][items].astype(np.float64)
    Fc -= Fc.mean(0)
    gram = Fc.T @ Fc
    lam = 1e-3 * np.trace(gram) / len(gram)  # a little ridge: the sample may not span every direction
    proj = np.linalg.solve(gram + lam * np.eye(len(gram)), Fc.T)
    return items, proj.astype(np.float32)


# ====================================================================== the retriever
class Retriever:
    """Candidate generation for one model: the index, its vector mapping and its settings."""

    def __init__(self, config: IndexConfig, kind: str, vectors: RetrievalVectors | None, index, info: dict):
        self.config = config
        self.kind = kind
        self.vectors = vectors
        self.index = index  # a faiss index, or None for kind "exact"
        self.info = info  # n_items, fingerprint, build seconds, ...

    @property
    def exact(self) -> bool:
        return self.kind == "exact"

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, scorer: HybridScorer, config: IndexConfig | None = None, progress: bool = False) -> Retriever:
        config = (config or IndexConfig()).validate()
        n = scorer.n_items
        kind = resolve_kind(config, n)
        info = {"n_items": n, "fingerprint": weights_fingerprint(scorer)}
        if kind == "exact":
            return cls(config, kind, None, None, {**info, "build_seconds": 0.0})
        faiss = require_faiss()
        if config.threads:
            faiss.omp_set_num_threads(int(config.threads))
        t0 = time.perf_counter()
        vectors = RetrievalVectors.fit(scorer, config.text_dim, config.train_size, config.seed, config.cross_sample)
        d = vectors.dim
        if kind == "ivf":
            index, extra = _build_ivf(faiss, scorer, vectors, config, progress)
        else:
            index, extra = _build_hnsw(faiss, scorer, vectors, config, progress)
        info.update(extra, dim=d, build_seconds=round(time.perf_counter() - t0, 3))
        r = cls(config, kind, vectors, index, info)
        r.set_search_params()
        return r

    @property
    def nprobe(self) -> int:
        """IVF lists visited per query: the configured value, or a tenth of the lists (on the synthetic
        benchmark recall@100 stopped improving much past ~10% of the lists at 100k and 1M items)."""
        if self.config.nprobe:
            return int(self.config.nprobe)
        return max(1, -(-int(self.info.get("nlist", 1)) // 10))

    def set_search_params(self, nprobe: int | None = None, ef_search: int | None = None, candidates: int | None = None):
        """Change search-time settings (no rebuild): IVF ``nprobe``, HNSW ``ef_search``, ``candidates``."""
        for name, v in (("nprobe", nprobe), ("ef_search", ef_search), ("candidates", candidates)):
            if v is not None:
                if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                    raise ConfigError(f"{name}={v!r}: must be a positive integer. Fix: e.g. {name}=64.")
                setattr(self.config, name, int(v))
        if self.index is None:
            return
        faiss = require_faiss()
        if self.kind == "ivf":
            faiss.extract_index_ivf(self.index).nprobe = self.nprobe
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = int(self.config.ef_search)

    # ------------------------------------------------------------------ searching
    def search(self, user_vectors: np.ndarray, n: int) -> np.ndarray:
        """Top-``n`` item indices per user by the indexed inner product; -1 pads where fewer were found."""
        if self.index is None:
            raise ModelError("an exact retriever has no index to search. Fix: score the catalog exactly.")
        q = np.ascontiguousarray(user_vectors, dtype=np.float32)
        if self.kind == "ivf":
            q = np.concatenate([q, np.zeros((len(q), 1), np.float32)], axis=1)  # the MIPS-to-L2 transform
        n = min(int(n), self.info["n_items"])
        if self.kind == "hnsw" and self.index.hnsw.efSearch < n:
            self.index.hnsw.efSearch = n  # HNSW cannot return more than efSearch results
        _, ids = self.index.search(q, n)
        if self.kind == "ivf":
            ids = self._widen_short(q, ids, n)
        return ids

    def _widen_short(self, q: np.ndarray, ids: np.ndarray, n: int) -> np.ndarray:
        """IVF visits ``nprobe`` lists; when they hold fewer than ``n`` items in all, search those users
        again with 4x as many lists (per-call parameters: the shared index is never modified)."""
        faiss = require_faiss()
        ivf = faiss.extract_index_ivf(self.index)
        nprobe = self.nprobe
        short = np.flatnonzero((ids < 0).any(axis=1))
        while len(short) and nprobe < ivf.nlist:
            nprobe = min(nprobe * 4, ivf.nlist)
            _, again = self.index.search(q[short], n, params=faiss.SearchParametersIVF(nprobe=nprobe))
            ids[short] = again
            short = short[(again < 0).any(axis=1)]
        return ids

    def candidates(
        self, scorer: HybridScorer, states: list[UserState], n: int | None = None, neighbours=None
    ) -> list[np.ndarray | None]:
        """Candidate item indices per user: the index's top ``max(n, candidates)``, joined with the top
        items of the item-item block, which the index does not see. ``neighbours`` is that block as a
        ``scipy.sparse.csr_matrix`` (row ``j``: the neighbours of item ``j`` and their weights; default:
        the scorer's block when it is sparse): the block's score of a user is then nonzero only on the
        union of the history items' rows, so its top ``neighbour_candidates`` are found there without a
        pass over the catalog. A dense block falls back to the top ``max(n, candidates)`` of its scores.
        ``None`` for a user means "score the whole catalog exactly": the retriever is exact, or the index
        found fewer items than asked for even after widening an IVF search (HNSW can run short on tiny
        catalogs)."""
        if self.exact:
            return [None] * len(states)
        want = max(int(n or 0), int(self.config.candidates))
        want = min(want, scorer.n_items)
        own_block = neighbours is None  # the scorer's own block: its scores are already in each state's pE
        if own_block:
            neighbours = item_item_neighbours(scorer)
        ids = self.search(self.vectors.users(states, scorer), want)
        out: list[np.ndarray | None] = []
        for s, row in zip(states, ids):
            row = row[row >= 0]
            if len(row) < want:
                out.append(None)
                continue
            if len(s.hist) and neighbours is not None and self.config.neighbour_candidates:
                pE = _dense(s.pE, scorer) if own_block else None
                top_n = neighbour_top(neighbours, s.hist, s.wE, self.config.neighbour_candidates, pE)
                row = np.union1d(row, top_n)
            elif len(s.hist) and neighbours is None and scorer.B is not None:  # a dense block
                top_e = np.argpartition(-s.pE, want - 1)[:want] if want < len(s.pE) else np.arange(len(s.pE))
                row = np.union1d(row, top_e)
            out.append(row.astype(np.int64))
        return out

    # ------------------------------------------------------------------ persistence
    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for f in INDEX_FILES:  # never leave files of an older index next to this one
            (out / f).unlink(missing_ok=True)
        meta = {"format": INDEX_FORMAT, "kind": self.kind, "config": asdict(self.config), "info": self.info}
        if self.index is not None:
            faiss = require_faiss()
            self.vectors.save(out / "index_proj.npz")
            faiss.write_index(self.index, str(out / "index.faiss"))
        (out / "index.json").write_text(json.dumps(meta, indent=2))
        from lucidrec.io.model_check import write_manifest

        write_manifest(out, INDEX_FILES, create=False)  # the model folder's checksums now cover this index
        return out

    @classmethod
    def load(cls, model_dir: str | Path, scorer: HybridScorer | None = None) -> Retriever | None:
        """The retriever saved in ``model_dir``, or None if it has none. With ``scorer``, checks that the
        index was built from these weights."""
        d = Path(model_dir)
        if not (d / "index.json").exists():
            return None
        try:
            meta = json.loads((d / "index.json").read_text(encoding="utf-8"))
            kind, config, info = meta["kind"], IndexConfig.from_dict(meta["config"]), meta["info"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ConfigError) as e:
            raise ModelError(
                f"{d / 'index.json'}: unreadable index settings ({e}). Fix: rebuild the index "
                f"(lucidrec index --model {d}) or delete {', '.join(INDEX_FILES)}."
            ) from None
        if meta.get("format") != INDEX_FORMAT:
            raise ModelError(
                f"{d / 'index.json'}: index format {meta.get('format')} is not supported (expects "
                f"{INDEX_FORMAT}). Fix: rebuild the index (lucidrec index --model {d})."
            )
        if scorer is not None and (
            info.get("n_items") != scorer.n_items or info.get("fingerprint") != weights_fingerprint(scorer)
        ):
            raise ModelError(
                f"{d}: the saved index was built for other model weights. Fix: rebuild it "
                f"(lucidrec index --model {d}) or delete {', '.join(INDEX_FILES)}."
            )
        if kind == "exact":
            return cls(config, kind, None, None, info)
        for f in ("index_proj.npz", "index.faiss"):
            if not (d / f).exists():
                raise ModelError(f"{d}: missing {f} of the saved index. Fix: rebuild it (lucidrec index --model {d}).")
        faiss = require_faiss()
        if config.threads:
            faiss.omp_set_num_threads(int(config.threads))
        r = cls(
            config, kind, RetrievalVectors.load(d / "index_proj.npz"), faiss.read_index(str(d / "index.faiss")), info
        )
        r.set_search_params()
        return r


# ====================================================================== index builders
def _default_nlist(n: int) -> int:
    # ~2 sqrt(n) lists: 2,000 at 1M items. Coarse k-means costs (39 * nlist) points x nlist centroids, so
    # 4 sqrt(n) took 141 s at 1M on one core against ~35 s here, for the same recall at the same share of
    # the catalog scanned. At least 39 points per list so k-means has enough data for every centroid.
    return int(max(1, min(2 * np.sqrt(n), n // 39)))


def _chunks(n: int, size: int = _CHUNK):
    for s in range(0, n, size):
        yield s, min(s + size, n)


def _build_ivf(faiss, scorer, vectors: RetrievalVectors, config: IndexConfig, progress: bool):
    from tqdm.auto import tqdm

    n, d = scorer.n_items, vectors.dim
    # Max squared norm over all items (one chunked pass): the MIPS-to-L2 transform needs it.
    max_sq = 0.0
    for s, e in _chunks(n):
        max_sq = max(max_sq, float((vectors.items(scorer, s, e) ** 2).sum(1).max()))

    def augmented(s: int, e: int) -> np.ndarray:
        x = vectors.items(scorer, s, e)
        extra = np.sqrt(np.clip(max_sq - (x**2).sum(1), 0.0, None)).astype(np.float32)
        return np.ascontiguousarray(np.concatenate([x, extra[:, None]], axis=1))

    nlist = int(config.nlist or _default_nlist(n))
    if nlist > n:
        raise ConfigError(f"nlist={nlist}: more IVF lists than items ({n}). Fix: use nlist <= {n}, or kind='exact'.")
    index = faiss.index_factory(d + 1, f"IVF{nlist},{'SQ8' if config.storage == 'sq8' else 'Flat'}", faiss.METRIC_L2)
    rng = np.random.default_rng(config.seed)
    rows = np.sort(rng.choice(n, size=min(n, max(config.train_size, 39 * nlist)), replace=False))
    parts = []  # the training sample, gathered chunk by chunk so no full copy of the vectors is made
    for s, e in _chunks(n):
        sel = rows[(rows >= s) & (rows < e)] - s
        if len(sel):
            parts.append(augmented(s, e)[sel])
    train = np.concatenate(parts)
    index.cp.seed = int(config.seed)
    index.cp.niter = 10  # coarse k-means: 10 rounds place the lists well; 25 only costs build time
    index.train(train)
    del train
    for s, e in tqdm(list(_chunks(n)), desc="indexing items", disable=not progress, unit="chunk"):
        index.add(augmented(s, e))
    return index, {"nlist": nlist, "max_sq_norm": max_sq}


def _build_hnsw(faiss, scorer, vectors: RetrievalVectors, config: IndexConfig, progress: bool):
    from tqdm.auto import tqdm

    n, d = scorer.n_items, vectors.dim
    index = faiss.IndexHNSWFlat(d, int(config.hnsw_m), faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = int(config.ef_construction)
    for s, e in tqdm(list(_chunks(n)), desc="indexing items", disable=not progress, unit="chunk"):
        index.add(np.ascontiguousarray(vectors.items(scorer, s, e)))
    return index, {"hnsw_m": int(config.hnsw_m)}


# ====================================================================== exact reference
def exact_top(scorer: HybridScorer, vectors: RetrievalVectors | None, user_vectors: np.ndarray, n: int) -> np.ndarray:
    """Exact top-``n`` by the indexed inner product (the reference ANN recall is measured against)."""
    if vectors is None:
        raise ConfigError("exact_top needs the retrieval vectors of an ANN retriever. Fix: build kind='ivf'.")
    n = min(n, scorer.n_items)
    best_s = np.full((len(user_vectors), 0), -np.inf, np.float32)
    best_i = np.zeros((len(user_vectors), 0), np.int64)
    for s, e in _chunks(scorer.n_items):
        sc = user_vectors @ vectors.items(scorer, s, e).T
        sc = np.concatenate([best_s, sc], axis=1)
        ids = np.concatenate([best_i, np.broadcast_to(np.arange(s, e), (len(user_vectors), e - s))], axis=1)
        keep = np.argpartition(-sc, min(n, sc.shape[1]) - 1, axis=1)[:, :n]
        best_s, best_i = np.take_along_axis(sc, keep, 1), np.take_along_axis(ids, keep, 1)
    order = np.argsort(-best_s, axis=1, kind="stable")
    return np.take_along_axis(best_i, order, 1)


__all__ = [
    "INDEX_FILES",
    "IndexConfig",
    "Retriever",
    "RetrievalVectors",
    "exact_top",
    "item_item_neighbours",
    "neighbour_top",
    "require_faiss",
    "resolve_kind",
    "weights_fingerprint",
]
