"""The sparse item-item block: equals dense EASE at N = n - 1, keeps N neighbours per item, applies by a
row-gather with the exact per-history-item decomposition, saves as CSR, and serves a trained model."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_tiny_frames

import lucidrec.data
from lucidrec.baselines import ease_weights
from lucidrec.errors import ConfigError, ModelError
from lucidrec.io.model_io import ITEM_ITEM_FILE, load_item_item, save_item_item
from lucidrec.models import item_item as ii
from lucidrec.models.scoring import WEIGHT_NAMES, HybridScorer
from lucidrec.training import impute_cold_item_item


def random_interactions(seed: int, users: int = 120, items: int = 30, density: float = 0.15) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    # Item popularity varies so co-occurrence ranks mean something.
    p = density * rng.uniform(0.2, 2.0, size=items)
    return sp.csr_matrix((rng.random((users, items)) < p).astype(np.float32))


# ============================================================== the fit
@pytest.mark.parametrize("seed", range(6))
def test_sparse_with_all_neighbours_is_dense_ease(seed):
    """Property: with N = n - 1 every column's ridge runs over all other items, which is EASE exactly."""
    rng = np.random.default_rng(100 + seed)
    x = random_interactions(seed, users=int(rng.integers(40, 150)), items=int(rng.integers(8, 40)))
    reg = float(rng.choice([0.5, 5.0, 50.0]))
    dense = ease_weights(x, reg)
    sparse = ii.sparse_item_item(x, reg, x.shape[1] - 1)
    assert sp.issparse(sparse)
    np.testing.assert_allclose(sparse.toarray(), dense, atol=1e-5, rtol=1e-4)
    # N larger than the catalogue is the same fit.
    np.testing.assert_allclose(ii.sparse_item_item(x, reg, 10 * x.shape[1]).toarray(), sparse.toarray(), atol=1e-6)


def test_weighted_input_and_separate_target_match_the_full_ridge():
    """B ~ argmin ||Y - X_w B||^2 + reg ||B||^2, diag 0: sparse at N = n - 1 equals the per-column solve."""
    x = random_interactions(3)
    rng = np.random.default_rng(3)
    xw = x.multiply(rng.uniform(0.2, 1.0, size=x.shape)).tocsr()  # e.g. liked items weigh more
    y = random_interactions(4)
    ref = ii.dense_ridge_item_item(xw, 2.0, target=y)
    got = ii.sparse_item_item(xw, 2.0, x.shape[1] - 1, target=y).toarray()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=1e-4)
    assert np.all(np.diag(got) == 0)
    # And the reference itself is EASE when input and target are the same binary matrix.
    np.testing.assert_allclose(ii.dense_ridge_item_item(x, 2.0), ease_weights(x, 2.0), atol=1e-8)


def test_pruned_columns_keep_the_nearest_items_and_solve_their_ridge():
    x = random_interactions(5, users=300, items=50, density=0.2)
    n, N, reg = 50, 6, 3.0
    B = ii.sparse_item_item(x, reg, N)
    g = (x.T @ x).toarray().astype(np.float64)
    csc = B.tocsc()
    assert np.diff(csc.indptr).max() <= N
    for i in (0, 7, 31):
        rows = csc.indices[csc.indptr[i] : csc.indptr[i + 1]]
        co = g[:, i] / np.sqrt(np.diag(g))  # co-occurrence over the neighbour's root popularity (cosine)
        co[i] = -1
        expected = np.lexsort((np.arange(n), -co))[:N]  # the largest, ties by index
        expected = expected[co[expected] > 0]
        assert set(rows) == set(expected)
        S = np.sort(expected)
        sol = np.linalg.solve(g[np.ix_(S, S)] + reg * np.eye(len(S)), g[S, i])
        np.testing.assert_allclose(B[S, i].toarray().ravel(), sol, rtol=1e-4, atol=1e-6)
    assert B.diagonal().max() == 0 and B.diagonal().min() == 0


def test_items_without_co_occurrence_get_empty_columns():
    x = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]], np.float32))
    B = ii.sparse_item_item(x, 1.0, 2)
    assert B[:, 2].nnz == 0 and B[:, 3].nnz == 0 and B[3].nnz == 0
    assert B[0, 1] > 0 and B[1, 0] > 0


def test_bad_settings_are_config_errors():
    x = random_interactions(0)
    with pytest.raises(ConfigError, match="reg"):
        ii.sparse_item_item(x, 0.0, 5)
    with pytest.raises(ConfigError, match="neighbors"):
        ii.sparse_item_item(x, 1.0, 0)
    with pytest.raises(ConfigError, match="item_item_kind"):
        ii.resolve_kind("ann", 100)


def test_kind_is_chosen_by_catalogue_size():
    assert ii.resolve_kind("auto", ii.DENSE_MAX_ITEMS) == "dense"
    assert ii.resolve_kind("auto", ii.DENSE_MAX_ITEMS + 1) == "sparse"
    assert ii.resolve_kind("sparse", 10) == "sparse"
    assert ii.resolve_kind("dense", 10**6) == "dense"


def test_top_per_row_keeps_the_largest_and_breaks_ties_by_column():
    m = sp.csr_matrix(np.array([[3.0, -5.0, 3.0, 1.0], [0.0, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]]))
    top = ii.top_per_row(m, 2).toarray()
    np.testing.assert_array_equal(top, [[3, 0, 3, 0], [0, 2, 0, 0], [1, 1, 0, 0]])
    by_abs = ii.top_per_row(m, 1, by_abs=True).toarray()
    np.testing.assert_array_equal(by_abs, [[0, -5, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0]])


def test_cold_imputation_matches_the_dense_one_when_nothing_is_pruned():
    rng = np.random.default_rng(8)
    x = random_interactions(8, items=25).tolil()
    cold = np.array([3, 11, 20])
    x[:, cold] = 0
    x = x.tocsr()
    seen = np.ones(25, bool)
    seen[cold] = False
    text = rng.standard_normal((25, 16)).astype(np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    dense = impute_cold_item_item(ease_weights(x, 4.0).astype(np.float32), text, seen, k=4)
    sparse = ii.impute_cold_sparse(ii.sparse_item_item(x, 4.0, 24), text, seen, neighbors=24, k=4)
    np.testing.assert_allclose(sparse.toarray(), dense, atol=1e-5)
    assert sparse[:, cold].nnz > 0 and sparse[cold].nnz > 0
    # Pruned: every imputed column and row keeps at most N entries.
    pruned = ii.impute_cold_sparse(ii.sparse_item_item(x, 4.0, 5), text, seen, neighbors=5, k=4)
    assert np.diff(pruned.tocsc().indptr)[cold].max() <= 5 and np.diff(pruned.indptr)[cold].max() <= 5


# ============================================================== serving: apply and decompose
def random_scorer(B, n: int, seed: int = 0) -> HybridScorer:
    rng = np.random.default_rng(seed)
    from lucidrec.models.features import N_POSITION_BUCKETS as NP
    from lucidrec.models.features import N_RATING_BINS as NR

    d, td, h = 6, 8, 5
    shapes = {
        "F": (n, d),
        "H": (n, d),
        "bias": (n,),
        "T": (n, td),
        "Wa": (td, d),
        "rho_E": (NR,),
        "pi_E": (NP,),
        "rho_L": (NR,),
        "pi_L": (NP,),
        "alpha": (1,),
        "W1": (3 * d, h),
        "b1": (h,),
        "w2": (h,),
        "b2": (1,),
        "query_latent": (1,),
        "query_text": (1,),
    }
    assert set(shapes) == set(WEIGHT_NAMES)
    w = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    w["pi_E"] = np.abs(w["pi_E"]) + 0.1
    return HybridScorer(w, B)


def test_sparse_block_scores_and_decomposes_exactly_like_its_dense_copy():
    x = random_interactions(11, users=200, items=60)
    Bs = ii.sparse_item_item(x, 3.0, 8)
    sparse, dense = random_scorer(Bs, 60), random_scorer(Bs.toarray(), 60)
    assert sp.issparse(sparse.B) and isinstance(dense.B, np.ndarray)
    rng = np.random.default_rng(1)
    hist = rng.choice(60, size=12, replace=False)
    ratings = rng.integers(1, 6, size=12).astype(float)
    query = rng.standard_normal(8).astype(np.float32)
    s_state = sparse.user_state(hist, ratings, query)
    d_state = dense.user_state(hist, ratings, query)
    np.testing.assert_allclose(s_state.pE, d_state.pE, atol=1e-5)
    scores = sparse.score(s_state)
    np.testing.assert_allclose(scores, dense.score(d_state), atol=1e-4)
    items = np.argsort(-scores)[:10]
    for item, parts in zip(items, sparse.decompose_many(s_state, items)):
        total = parts["history"].sum() + parts["query"] + parts["bias"] + parts["interaction"]
        assert total == pytest.approx(float(scores[item]), abs=1e-4)  # evidence sums to the score
        # history item j's item-item part is exactly w_j * B[j, item]
        item_item = s_state.wE * Bs[hist, item].toarray().ravel()
        other = parts["history"] - item_item
        d_parts = dense.decompose(d_state, int(item))
        np.testing.assert_allclose(parts["history"], d_parts["history"], atol=1e-5)
        np.testing.assert_allclose(other, d_parts["history"] - d_state.wE * Bs.toarray()[hist, item], atol=1e-5)


def test_history_and_batch_scores_are_row_gathers():
    x = random_interactions(12, items=40)
    B = ii.sparse_item_item(x, 2.0, 7)
    D = B.toarray()
    hist = np.array([3, 9, 9, 17])
    w = np.array([0.5, 1.0, 2.0, -1.0], np.float32)
    np.testing.assert_allclose(ii.history_scores(B, hist, w, 40), w @ D[hist], atol=1e-6)
    np.testing.assert_allclose(ii.history_scores(D, hist, w, 40), w @ D[hist], atol=1e-6)
    assert not ii.history_scores(B, np.zeros(0, np.int64), np.zeros(0), 40).any()
    padded = np.array([[3, 9, 0], [17, 0, 0]])
    wp = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 0.0]], np.float32)
    expected = np.stack([D[3] + 2 * D[9], 0.5 * D[17]])
    np.testing.assert_allclose(ii.batch_scores(B, padded, wp), expected, atol=1e-6)
    np.testing.assert_allclose(ii.batch_scores(D, padded, wp), expected, atol=1e-6)
    np.testing.assert_allclose(ii.entries(B, hist, np.array([1, 5])), D[np.ix_(hist, [1, 5])])


# ============================================================== the model folder
def test_csr_block_round_trips_through_the_model_folder(tmp_path):
    B = ii.sparse_item_item(random_interactions(13), 2.0, 5)
    save_item_item(B, tmp_path)
    back = load_item_item(tmp_path)
    assert sp.issparse(back) and back.shape == B.shape
    np.testing.assert_array_equal(back.toarray(), B.toarray())
    save_item_item(B.toarray(), tmp_path)  # a dense block replaces it
    assert isinstance(load_item_item(tmp_path), np.ndarray)
    save_item_item(None, tmp_path)
    assert load_item_item(tmp_path) is None and not (tmp_path / ITEM_ITEM_FILE).exists()


def test_corrupt_csr_block_is_a_model_error(tmp_path):
    from safetensors.numpy import save_file

    save_file(
        {
            "indptr": np.array([0, 1, 5], np.int64),
            "indices": np.array([7], np.int32),
            "data": np.array([1.0], np.float32),
            "shape": np.array([2, 2], np.int64),
        },
        str(tmp_path / ITEM_ITEM_FILE),
    )
    with pytest.raises(ModelError, match="corrupt sparse item-item block"):
        load_item_item(tmp_path)
    save_file({"weird": np.zeros(2, np.float32)}, str(tmp_path / ITEM_ITEM_FILE))
    with pytest.raises(ModelError, match="Fix: retrain"):
        load_item_item(tmp_path)


# ============================================================== a trained model with the sparse block
def test_trained_model_with_sparse_block_serves_and_explains_exactly(tmp_path):
    pytest.importorskip("torch")
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    cfg = HybridConfig(epochs=2, dim=8, item_item_kind="sparse", neighbors=None)
    rec = Recommender(cfg, cache_dir=str(tmp_path / "cache")).fit(ds, progress=False)
    assert sp.issparse(rec.scorer.B)
    info = rec.train_report["item_item"]
    assert info["kind"] == "sparse" and info["neighbors"] in ii.NEIGHBOR_GRID
    assert {g["neighbors"] for g in info["valid_grid"]} >= set(ii.NEIGHBOR_GRID)
    out = rec.save(tmp_path / "model")
    loaded = Recommender.load(out)
    assert sp.issparse(loaded.scorer.B)
    np.testing.assert_array_equal(loaded.scorer.B.toarray(), rec.scorer.B.toarray())
    user = loaded.known.user_ids()[5]
    res = loaded.recommend(user=user, k=5, explain=True)
    assert len(res["items"]) == 5
    for it in res["items"]:
        contrib = sum(e["contribution"] for e in it["evidence"] if "contribution" in e)
        assert contrib == pytest.approx(it["score"], abs=1e-4)


def test_neighbour_grid_shrinks_with_the_catalogue():
    assert ii.neighbor_grid(2_000) == ii.NEIGHBOR_GRID
    assert max(ii.neighbor_grid(100_000)) == 128
    assert ii.neighbor_grid(10**9) == ii.NEIGHBOR_GRID[:1]


def test_torch_net_applies_a_csr_block_like_the_dense_one():
    torch = pytest.importorskip("torch")
    from lucidrec.models.config import HybridConfig
    from lucidrec.models.hybrid import HybridNet, pad_histories

    n = 30
    Bs = ii.sparse_item_item(random_interactions(21, items=n), 2.0, 6)
    rng = np.random.default_rng(0)
    text, feats = rng.standard_normal((n, 8)).astype(np.float32), rng.standard_normal((n, 3)).astype(np.float32)
    nets = [HybridNet(n, text, feats, B, np.ones(n, np.float32), HybridConfig(dim=4)) for B in (Bs, Bs.toarray())]
    batch = pad_histories([np.array([1, 4, 9]), np.array([2])], [np.array([5.0, 3.0, 4.0]), np.array([1.0])])
    with torch.no_grad():
        for net in nets:
            net.set_item_item_weights(np.linspace(0.5, 1.5, 6), np.linspace(1.0, 0.2, 9))
        out = [net(*batch).numpy() for net in nets]
        e = [net.item_item_scores(batch[0], batch[2], batch[3], 0.9).numpy() for net in nets]
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    np.testing.assert_allclose(e[0], e[1], atol=1e-6)
    assert np.abs(e[0]).max() > 0


def test_huge_catalogues_take_cost_bounded_defaults_without_a_search():
    from types import SimpleNamespace

    from lucidrec.models.config import HybridConfig
    from lucidrec.training import choose_item_item

    split = SimpleNamespace(dataset=SimpleNamespace(n_items=1_000_000))
    assert choose_item_item(HybridConfig(), split) == {"kind": "sparse", "reg": ii.DEFAULT_REG, "neighbors": 32}
    cfg = HybridConfig(ease_reg=50.0, neighbors=16)
    assert choose_item_item(cfg, split) == {"kind": "sparse", "reg": 50.0, "neighbors": 16}
    with pytest.raises(ConfigError, match="item_item_kind"):
        choose_item_item(HybridConfig(item_item_kind="approx"), split)
