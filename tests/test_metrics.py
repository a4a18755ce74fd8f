"""Ranking metrics: a hand-computed example, and agreement with ranx and brute-force AUC on ML-100K."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from lucidrec.baselines import EASE
from lucidrec.evaluate import evaluate_scorer
from lucidrec.history import Histories
from lucidrec.metrics import RankingAccumulator, rating_metrics, top_k

L3 = 1.0 / math.log2(3)  # discount at rank 2
L4 = 1.0 / math.log2(4)  # discount at rank 3


def csr(rows, n_items=6):
    m = np.zeros((len(rows), n_items))
    for r, items in enumerate(rows):
        m[r, list(items)] = 1
    return sp.csr_matrix(m)


# Three users, six items.
#   A: history {0}; relevant {2, 4}; after excluding 0 the ranking is 1, 2, 3, 4, 5.
#   B: history {3}; relevant {5, 2}; items 1 and 2 tie at 0.3 (lower index first): 5, 1, 2, 4, 0.
#   C: no relevant items, so not counted at all.
SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5, 0.4],
        [0.1, 0.3, 0.3, 0.9, 0.2, 0.8],
        [0.5, 0.4, 0.3, 0.2, 0.1, 0.0],
    ]
)
HISTORY = csr([{0}, {3}, set()])
RELEVANT = csr([{2, 4}, {5, 2}, set()])


def hand_metrics():
    a = {  # top-2 [1, 2], hits [0, 1]; top-3 [1, 2, 3], hits [0, 1, 0]
        "precision@2": 1 / 2,
        "recall@2": 1 / 2,
        "f1@2": 1 / 2,
        "ndcg@2": L3 / (1 + L3),
        "hr@2": 1.0,
        "mrr@2": 1 / 2,
        "map@2": (1 / 2) / 2,
        "precision@3": 1 / 3,
        "recall@3": 1 / 2,
        "f1@3": 2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2),
        "ndcg@3": L3 / (1 + L3),
        "hr@3": 1.0,
        "mrr@3": 1 / 2,
        "map@3": (1 / 2) / 2,
        # pos {2: .7, 4: .5} vs neg {1: .8, 3: .6, 5: .4}: 2>3, 2>5, 4>5 -> 3 of 6 pairs
        "auc": 3 / 6,
    }
    b = {  # top-2 [5, 1], hits [1, 0]; top-3 [5, 1, 2], hits [1, 0, 1]
        "precision@2": 1 / 2,
        "recall@2": 1 / 2,
        "f1@2": 1 / 2,
        "ndcg@2": 1 / (1 + L3),
        "hr@2": 1.0,
        "mrr@2": 1.0,
        "map@2": 1 / 2,
        "precision@3": 2 / 3,
        "recall@3": 1.0,
        "f1@3": 2 * (2 / 3) * 1 / (2 / 3 + 1),
        "ndcg@3": (1 + L4) / (1 + L3),
        "hr@3": 1.0,
        "mrr@3": 1.0,
        "map@3": (1 + 2 / 3) / 2,
        # pos {5: .8, 2: .3} vs neg {0: .1, 1: .3, 4: .2}: 5 beats 3; 2 beats 0 and 4, ties 1 -> 5.5 of 6
        "auc": 5.5 / 6,
    }
    out = {k: (a[k] + b[k]) / 2 for k in a}
    out["coverage@2"] = len({1, 2} | {5, 1}) / 6
    out["coverage@3"] = len({1, 2, 3} | {5, 1, 2}) / 6
    out["users"] = 2
    return out


def test_hand_computed_metrics():
    acc = RankingAccumulator(6, ks=(3, 2))
    acc.add(SCORES, RELEVANT, HISTORY)
    got = acc.result()
    want = hand_metrics()
    assert set(got) == set(want)
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k


def test_hand_computed_metrics_in_batches():
    """Adding users one at a time gives the same averages."""
    acc = RankingAccumulator(6, ks=(2, 3))
    for u in range(3):
        acc.add(SCORES[u : u + 1], RELEVANT[u : u + 1], HISTORY[u : u + 1])
    got, want = acc.result(), hand_metrics()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-12), k


def test_history_items_are_excluded():
    # The only relevant item is the top-scored one, but it is in the history: no hit, not recommended.
    scores = np.array([[0.9, 0.1, 0.2, 0.3, 0.4, 0.5]])
    acc = RankingAccumulator(6, ks=(2,))
    acc.add(scores, csr([{1}]), csr([{0}]))
    r = acc.result()
    assert r["precision@2"] == 0.0 and r["hr@2"] == 0.0
    assert r["coverage@2"] == pytest.approx(2 / 6)  # items 5 and 4
    assert r["auc"] == 0.0  # item 1 is below all 4 other candidates
    # Without the exclusion the same ranking would hit at rank 1.
    acc = RankingAccumulator(6, ks=(2,))
    acc.add(scores, csr([{0}]), None)
    assert acc.result()["mrr@2"] == 1.0


def test_fewer_candidates_than_k():
    # Four of six items are known: only two can be recommended; precision still divides by K.
    scores = np.arange(6, dtype=float)[None, :]
    acc = RankingAccumulator(6, ks=(3,))
    acc.add(scores, csr([{0}]), csr([{2, 3, 4, 5}]))
    r = acc.result()
    assert r["precision@3"] == pytest.approx(1 / 3)
    assert r["recall@3"] == 1.0
    assert r["ndcg@3"] == pytest.approx(L3)  # hit at rank 2, ideal at rank 1
    assert r["coverage@3"] == pytest.approx(2 / 6)


def test_candidate_mask():
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4]])
    allowed = np.array([False, False, True, False, True, True])
    acc = RankingAccumulator(6, ks=(2,))
    acc.add(scores, csr([{4}]), None, candidates=allowed)
    r = acc.result()
    assert r["mrr@2"] == 0.5  # ranking 2, 4, 5
    assert r["auc"] == 0.5  # 4 beats 5, loses to 2


def test_users_without_relevant_items_are_skipped():
    acc = RankingAccumulator(6, ks=(2,))
    acc.add(SCORES[2:], RELEVANT[2:], HISTORY[2:])
    assert acc.result()["users"] == 0


def test_top_k_order_and_ties():
    scores = np.array([[0.1, 0.5, 0.5, 0.9, 0.5], [3.0, 2.0, 1.0, 0.0, -1.0]])
    assert top_k(scores, 3).tolist() == [[3, 1, 2], [0, 1, 2]]
    assert top_k(scores, 10).tolist() == [[3, 1, 2, 4, 0], [0, 1, 2, 3, 4]]


def test_rating_metrics():
    m = rating_metrics([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
    assert m["mae"] == pytest.approx(1.0)
    assert m["mse"] == pytest.approx(5 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(5 / 3))


# ----------------------------------------------------------------------------- ML-100K vs ranx / brute force
@pytest.fixture(scope="module")
def ease_run(ml100k_ratio):
    s = ml100k_ratio
    ds = s.dataset
    model = EASE(reg=300).fit(ds, s.train_valid())
    hist = Histories.from_frame(s.train_valid(), ds.n_users, ds.n_items)
    relevant = ds.matrix(s.test)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    scores = np.asarray(model.score(users, hist), dtype=np.float64)
    r, c = hist.binary[users].nonzero()
    scores[r, c] = -np.inf
    return model, s, users, scores, relevant[users]


@pytest.mark.slow
def test_metrics_agree_with_ranx(ease_run):
    ranx = pytest.importorskip("ranx")
    model, s, users, scores, relevant = ease_run
    ds = s.dataset
    top = top_k(scores, 20)
    assert np.isfinite(np.take_along_axis(scores, top, axis=1)).all()
    assert (np.diff(np.take_along_axis(scores, top, axis=1), axis=1) <= 0).all()
    qrels, run = {}, {}
    for row, u in enumerate(users):
        uid = str(ds.user_ids[u])
        qrels[uid] = {str(ds.item_ids[i]): 1 for i in relevant[row].indices}
        # strictly decreasing pseudo-scores so ranx ranks exactly as lucidrec does
        run[uid] = {str(ds.item_ids[i]): float(20 - rank) for rank, i in enumerate(top[row])}
    names = {
        "ndcg": "ndcg",
        "recall": "recall",
        "precision": "precision",
        "f1": "f1",
        "hr": "hit_rate",
        "mrr": "mrr",
        "map": "map",
    }
    ranx_metrics = [f"{v}@{k}" for v in names.values() for k in (10, 20)]
    expected = ranx.evaluate(ranx.Qrels(qrels), ranx.Run(run), ranx_metrics)
    got = evaluate_scorer(model, s, "test", ks=(10, 20))
    assert got["users"] == len(users) == 943
    for ours, theirs in names.items():
        for k in (10, 20):
            assert got[f"{ours}@{k}"] == pytest.approx(float(expected[f"{theirs}@{k}"]), abs=1e-6), f"{ours}@{k}"
    # coverage from the same top lists
    for k in (10, 20):
        assert got[f"coverage@{k}"] == pytest.approx(len(np.unique(top[:, :k])) / ds.n_items, abs=1e-12)


def _brute_force_auc(scores_row: np.ndarray, rel_items: np.ndarray) -> float:
    finite = np.isfinite(scores_row)
    is_pos = np.zeros(len(scores_row), dtype=bool)
    is_pos[rel_items] = True
    pos = scores_row[is_pos & finite]
    neg = scores_row[~is_pos & finite]
    if len(pos) == 0 or len(neg) == 0:
        return 0.5  # lucidrec's convention for an undefined AUC
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / (len(pos) * len(neg)))


def test_auc_matches_pairwise_count(ease_run):
    model, s, users, scores, relevant = ease_run
    # a few single users, fed to the accumulator one at a time
    for row in (0, 1, 17, 500, len(users) - 1):
        acc = RankingAccumulator(s.dataset.n_items, ks=(10,))
        acc.add(scores[row : row + 1], relevant[row : row + 1])
        assert acc.result()["auc"] == pytest.approx(_brute_force_auc(scores[row], relevant[row].indices), abs=1e-12)
    # and the mean over every test user, through evaluate_scorer
    brute = np.mean([_brute_force_auc(scores[r], relevant[r].indices) for r in range(len(users))])
    assert evaluate_scorer(model, s, "test")["auc"] == pytest.approx(brute, abs=1e-9)


def test_auc_with_ties_brute_force():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(20, 12)).astype(float)  # many ties
    rel = rng.random((20, 12)) < 0.3
    rel[:, 0] = True
    hist = (rng.random((20, 12)) < 0.2) & ~rel
    acc_vals = []
    for u in range(20):
        acc = RankingAccumulator(12, ks=(5,))
        acc.add(
            scores[u : u + 1], sp.csr_matrix(rel[u : u + 1].astype(float)), sp.csr_matrix(hist[u : u + 1].astype(float))
        )
        acc_vals.append(acc.result()["auc"])
        s = scores[u].copy()
        s[hist[u]] = -np.inf
        assert acc_vals[-1] == pytest.approx(_brute_force_auc(s, np.flatnonzero(rel[u])), abs=1e-12), u
