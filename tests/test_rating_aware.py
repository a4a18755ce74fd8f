"""The rating-aware item-item block, its pruning, and which history items count as liked (numpy only)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lucidrec.baselines import ease_weights
from lucidrec.models.rating_aware import prune_item_item, rating_aware_ease
from lucidrec.models.scoring import liked_mask, support_weights


def _random_matrices(seed=0, users=60, items=25):
    rng = np.random.default_rng(seed)
    Y = (rng.random((users, items)) < 0.3).astype(np.float32)
    X = Y * (rng.random((users, items)) < 0.7)  # some interactions disliked: rows of X zero there
    return sp.csr_matrix(X), sp.csr_matrix(Y)


def test_rating_aware_ease_solves_the_constrained_least_squares():
    """KKT: the gradient of ||Y - XB||^2 + reg ||B||^2 is zero off the diagonal, and diag(B) = 0."""
    X, Y = _random_matrices()
    reg = 5.0
    B = rating_aware_ease(X, Y, reg).astype(np.float64)
    assert np.allclose(np.diag(B), 0.0)
    Xd, Yd = X.toarray().astype(np.float64), Y.toarray().astype(np.float64)
    grad = (Xd.T @ Xd + reg * np.eye(B.shape[0])) @ B - Xd.T @ Yd
    off = grad - np.diag(np.diag(grad))
    assert np.abs(off).max() < 1e-3 * np.abs(Xd.T @ Yd).max()


def test_rating_aware_ease_equals_ease_when_nothing_is_disliked():
    _, Y = _random_matrices(1)
    np.testing.assert_allclose(rating_aware_ease(Y, Y, 10.0), ease_weights(Y, 10.0), atol=1e-5)


def test_prune_keeps_the_strongest_neighbours_per_item():
    rng = np.random.default_rng(2)
    B = rng.normal(size=(30, 30)).astype(np.float32)
    np.fill_diagonal(B, 0)
    P = prune_item_item(B, 5)
    assert ((P != 0).sum(axis=0) <= 5).all()
    for i in range(30):
        kept = np.flatnonzero(P[:, i])
        assert np.abs(B[kept, i]).min() >= np.sort(np.abs(B[:, i]))[-5] - 1e-7
        np.testing.assert_array_equal(P[kept, i], B[kept, i])
    assert prune_item_item(B, 0) is B


def test_liked_is_relative_to_the_users_own_mean():
    r = np.array([5.0, 4.0, 2.0, np.nan, 1.0])  # mean of the rated: 3.0
    assert list(liked_mask(r, 0.0)) == [True, True, False, True, False]
    assert list(liked_mask(r, 1.0)) == [True, True, True, True, False]
    assert liked_mask(r, None).all()  # a model that is not rating-aware
    w = support_weights(r, 1.0, 0.25)
    np.testing.assert_allclose(w, [1.5, 1.25, 0.75, 1.0, 0.0])
    assert support_weights(r, 1.0, 0.25, np.array([True, False, False, False, False]))[0] == 0.0


def test_liked_and_all_zeroes_disliked_inputs_but_keeps_every_target():
    import lucidrec.data
    from lucidrec.models.rating_aware import liked_and_all

    inter = pd.DataFrame(
        {
            "user": ["a", "a", "a", "b", "b"],
            "item": ["1", "2", "3", "1", "3"],
            "rating": [5, 4, 1, 2, 4],
            "timestamp": range(5),
        }
    )
    items = pd.DataFrame({"item": ["1", "2", "3"], "title": ["A (1990)", "B (1991)", "C (1992)"]})
    ds = lucidrec.data.from_dataframes(inter, items, name="t")
    X, Y = liked_and_all(ds, ds.interactions, 0.0)
    ua, ub = ds.user_index["a"], ds.user_index["b"]
    i1, i2, i3 = (ds.item_index[i] for i in ("1", "2", "3"))
    assert Y[ua, i3] == 1 and X[ua, i3] == 0  # user a rated 3 one star: a target, never an input
    assert X[ua, i1] == 1 and X[ua, i2] == 1
    assert X[ub, i1] == 0 and X[ub, i3] == 1
