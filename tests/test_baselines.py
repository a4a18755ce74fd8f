"""Baselines: shapes and structure on tiny data, pinned quality on ML-100K."""

from __future__ import annotations

import numpy as np
import pytest

from lucidrec.baselines import ALS, BASELINES, EASE, ItemKNN, MostPopular, ease_weights
from lucidrec.errors import ConfigError
from lucidrec.evaluate import fit_and_evaluate
from lucidrec.history import Histories
from lucidrec.splits import split

FACTORIES = [
    pytest.param(MostPopular, {}, id="mostpop"),
    pytest.param(ItemKNN, {"k": 5}, id="itemknn"),
    pytest.param(EASE, {"reg": 10.0}, id="ease"),
    pytest.param(
        ALS,
        {"factors": 8, "iterations": 3},
        id="als",
        marks=[
            pytest.mark.skipif(not ALS.available(), reason="implicit is not installed"),
            pytest.mark.filterwarnings("ignore:OpenBLAS is configured:RuntimeWarning"),
        ],
    ),
]


@pytest.mark.parametrize("factory,params", FACTORIES)
def test_baseline_scores_shape_and_finite(tiny_dataset, factory, params):
    ds = tiny_dataset
    s = split(ds, "ratio")
    model = factory(**params).fit(ds, s.train)
    hist = Histories.from_frame(s.train, ds.n_users, ds.n_items)
    users = np.arange(ds.n_users)
    scores = np.asarray(model.score(users, hist))
    assert scores.shape == (ds.n_users, ds.n_items) == (30, 40)
    assert np.isfinite(scores).all()
    # scoring a subset gives the same rows
    sub = np.array([3, 0, 17])
    assert np.allclose(np.asarray(model.score(sub, hist)), scores[sub])
    assert isinstance(model.get_params(), dict)
    for k, v in params.items():
        assert model.get_params()[k] == v


def test_mostpop_counts(tiny_dataset):
    ds = tiny_dataset
    model = MostPopular().fit(ds, ds.interactions)
    counts = ds.interactions.groupby("iidx").size()
    assert model.counts[counts.index.to_numpy()].tolist() == counts.astype(float).tolist()
    assert model.counts.sum() == len(ds.interactions)


def test_ease_diagonal_zero_and_closed_form(tiny_dataset):
    ds = tiny_dataset
    model = EASE(reg=5.0).fit(ds, ds.interactions)
    b = model.b
    assert b.shape == (40, 40)
    assert np.all(np.diag(b) == 0.0)
    # B minimises ||X - XB||^2 + reg ||B||^2 subject to diag(B) = 0: the stationarity condition is
    # (G + reg I) B = G - diag(mu) for some vector mu, i.e. off-diagonal entries of (G + reg I) B - G vanish.
    x = ds.matrix(ds.interactions).toarray().astype(np.float64)
    g = x.T @ x
    resid = (g + 5.0 * np.eye(40)) @ b - g
    off = resid - np.diag(np.diag(resid))
    assert np.abs(off).max() < 1e-8


def test_ease_weights_direct():
    import scipy.sparse as sp

    x = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=np.float32))
    b = ease_weights(x, 1.0)
    p = np.linalg.inv(x.T.toarray() @ x.toarray() + np.eye(3))
    want = -p / np.diag(p)
    np.fill_diagonal(want, 0.0)
    assert np.allclose(b, want)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_itemknn_keeps_at_most_k_per_column(tiny_dataset, k):
    ds = tiny_dataset
    model = ItemKNN(k=k).fit(ds, ds.interactions)
    sim = model.sim
    assert sim.shape == (40, 40)
    assert ((sim != 0).sum(axis=0) <= k).all()
    assert np.all(np.diag(sim) == 0.0)
    # the kept neighbours are the k most similar ones
    full = ItemKNN(k=10_000).fit(ds, ds.interactions).sim
    for j in range(40):
        kept = sim[:, j][sim[:, j] != 0]
        if len(kept):
            assert kept.min() >= np.sort(full[:, j])[::-1][k - 1] - 1e-12


def test_itemknn_similarity_is_shrunk_cosine(tiny_dataset):
    ds = tiny_dataset
    model = ItemKNN(k=10_000, shrink=10.0).fit(ds, ds.interactions)
    x = ds.matrix(ds.interactions).toarray().astype(np.float64)
    co = x.T @ x
    n = np.sqrt(np.diag(co))
    want = co / (np.outer(n, n) + 10.0 + 1e-12)
    np.fill_diagonal(want, 0.0)
    assert np.allclose(model.sim, want)


def test_invalid_hyperparameters():
    with pytest.raises(ConfigError):
        EASE(reg=0)
    with pytest.raises(ConfigError):
        ItemKNN(k=0)


def test_baseline_registry():
    assert set(BASELINES) == {"mostpop", "itemknn", "ease", "als", "sasrec"}
    for _cls, grid in BASELINES.values():
        assert grid and all(isinstance(g, dict) for g in grid)


# ----------------------------------------------------------------------------- ML-100K quality
@pytest.fixture(scope="module")
def ratio_results(ml100k_ratio):
    out = {}
    for name, factory, params in (
        ("ease", EASE, {"reg": 300}),
        ("itemknn", ItemKNN, {"k": 400}),
        ("mostpop", MostPopular, {}),
    ):
        _, metrics, _ = fit_and_evaluate(factory, params, ml100k_ratio, "test")
        out[name] = metrics
    return out


def test_ease_ndcg_ml100k_ratio(ratio_results):
    assert 0.33 <= ratio_results["ease"]["ndcg@10"] <= 0.38
    assert ratio_results["ease"]["users"] == 943


def test_baseline_ordering_ml100k_ratio(ratio_results):
    ndcg = {k: v["ndcg@10"] for k, v in ratio_results.items()}
    assert ndcg["ease"] > ndcg["itemknn"] > ndcg["mostpop"], ndcg


def test_ease_recall_ml100k_loo(ml100k_loo):
    _, metrics, _ = fit_and_evaluate(EASE, {"reg": 300}, ml100k_loo, "test")
    assert 0.07 <= metrics["recall@10"] <= 0.11
    # one test item per user: recall == hit rate, and precision == recall / K
    assert metrics["recall@10"] == pytest.approx(metrics["hr@10"])
    assert metrics["precision@10"] == pytest.approx(metrics["recall@10"] / 10)


def test_ease_evaluates_on_cold_protocol(ml100k):
    s = split(ml100k, "cold")
    _, metrics, _ = fit_and_evaluate(EASE, {"reg": 300}, s, "test")
    assert 0.0 <= metrics["coverage@10"] <= 1.0
