"""The sequential part of the item-item block (lucidrec.models.sequential): a closed-form transition block
learns an order a set model cannot see, validation decides whether it joins the served block, and the
served model still decomposes every score exactly into history items (and re-scores subsets exactly)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lucidrec.data import from_dataframes
from lucidrec.models import sequential as seqmod
from lucidrec.splits import split

N_ITEMS = 40


def chain_frames(n_users: int = 200, seed: int = 3):
    """Histories of triples a -> f(a) -> f(f(a)) for a fixed random successor map f: the next item is
    fixed by the last one, but every item co-occurs as much with its predecessors as with its successors,
    so a set model (co-occurrence, even weighted by recency) cannot tell which of them comes next."""
    rng = np.random.default_rng(seed)
    succ = rng.permutation(N_ITEMS)
    rows = []
    for u in range(n_users):
        seq: list[int] = []
        while len(seq) < int(rng.integers(9, 16)):
            a = int(rng.integers(N_ITEMS))
            triple = [a, int(succ[a]), int(succ[succ[a]])]
            if not set(triple) & set(seq) and len(set(triple)) == 3:
                seq += triple
        rows += [{"user": f"u{u}", "item": f"i{it}", "timestamp": t} for t, it in enumerate(seq)]
    items = pd.DataFrame({"item": [f"i{k}" for k in range(N_ITEMS)], "title": [f"Item {k}" for k in range(N_ITEMS)]})
    return pd.DataFrame(rows), items, succ


def cyclic_frames(n_users: int = 200, seed: int = 3):
    inter, items, _ = chain_frames(n_users, seed)
    return inter, items


def test_position_profile_weighs_the_last_item_most():
    p = seqmod.position_profile(0.8)
    assert p[0] == 1.0 and np.all(np.diff(p) < 0)
    assert np.allclose(seqmod.position_profile(1.0), 1.0)


def test_transition_design_rows_are_the_recency_weighted_prefixes():
    seqs = [np.array([2, 0, 1]), np.array([1])]
    X, y = seqmod.transition_design(seqs, 3, seqmod.position_profile(0.5))
    assert y.tolist() == [0, 1]  # two transitions: 2 -> 0, (2, 0) -> 1; a one-item history gives none
    dense = X.toarray()
    assert np.allclose(dense[0], [0, 0, 1])
    assert np.allclose(dense[1], [1, 0, 0.5])


def test_the_transition_block_learns_the_successor_map_that_ease_cannot():
    from lucidrec.baselines import EASE
    from lucidrec.evaluate import fit_and_evaluate

    inter, items, succ = chain_frames()
    s = split(from_dataframes(inter, items, name="chain"), "loo")
    info, S = seqmod.choose_transition_block(s)
    _, ease, _ = fit_and_evaluate(EASE, {"reg": 10.0}, s, "valid")
    assert info["valid_ndcg@10"] > 0.9 and info["valid_ndcg@10"] > ease["ndcg@10"] + 0.1, (info, ease)
    # each item's strongest successor in the block is its successor under f
    index = {str(v): k for k, v in enumerate(s.dataset.item_ids)}
    nxt = np.array([index[f"i{succ[int(str(v)[1:])]}"] for v in s.dataset.item_ids])
    assert (S.argmax(axis=1) == nxt).mean() > 0.9


@pytest.fixture(scope="module")
def seq_model(tmp_path_factory):
    pytest.importorskip("torch")
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    inter, items = cyclic_frames()
    ds = from_dataframes(inter, items, name="cycle")
    s = split(ds, "loo")
    cache = str(tmp_path_factory.mktemp("cache"))
    cfg = HybridConfig(dim=8, epochs=2, batch_size=32, mode="seq", max_minutes=1.0)
    rec = Recommender(cfg, cache_dir=cache).fit(ds, s.train, s.valid, progress=False)
    return rec, s


def test_validation_keeps_the_sequential_part_and_it_wins(seq_model):
    from lucidrec.evaluate import evaluate_scorer

    rec, s = seq_model
    rep = rec.train_report["sequential"]
    assert rep["kept"] is True and rep["share"] > 0
    assert rep["valid_ndcg@10"] > rep["set_block_valid_ndcg@10"]
    assert rec.train_report["item_item"]["sequential"]["share"] == rep["share"]
    m = evaluate_scorer(rec.as_scorer(s.dataset), s, "test")
    assert m["ndcg@10"] > 0.8, m


def test_set_mode_never_tries_it(tmp_path):
    pytest.importorskip("torch")
    from lucidrec.models.config import HybridConfig
    from lucidrec.recommender import Recommender

    inter, items = cyclic_frames(60)
    ds = from_dataframes(inter, items, name="cycle")
    s = split(ds, "loo")
    cfg = HybridConfig(dim=8, epochs=1, batch_size=32, mode="set")
    rec = Recommender(cfg, cache_dir=str(tmp_path)).fit(ds, s.train, s.valid, progress=False)
    assert "sequential" not in rec.train_report
    assert "sequential" not in (rec.train_report.get("item_item") or {})


def test_scores_still_decompose_exactly_and_subsets_rescore_exactly(seq_model):
    from lucidrec.models.scoring import SubsetScorer

    rec, s = seq_model
    sc = rec.scorer
    hist = np.array([3, 4, 5, 6, 7], dtype=np.int64)
    state = sc.user_state(hist)
    scores = sc.score(state)
    items = np.argsort(-scores)[:5]
    for item, parts in zip(items, sc.decompose_many(state, items)):
        total = parts["history"].sum() + parts["query"] + parts["bias"]
        assert abs(parts["interaction"]) < 1e-4 * max(1.0, abs(scores[item]))
        assert np.isclose(total + parts["interaction"], scores[item], rtol=1e-5, atol=1e-5)
    # the most recent item carries the transition: removing it changes the scores, and a subset's
    # batched re-score equals scoring that shorter history afresh
    keeps = np.array([[True, True, True, True, False], [False, True, True, True, True]])
    sub = SubsetScorer(sc, hist).scores_around(keeps, items[:2])
    for k, keep in enumerate(keeps):
        fresh = sc.score(sc.user_state(hist[keep]))
        assert np.allclose(sub[k, items[k]], fresh[items[k]], rtol=1e-5, atol=1e-5)


def test_the_saved_model_serves_the_same_mixed_block(seq_model, tmp_path):
    from lucidrec.recommender import Recommender

    rec, _ = seq_model
    rec.save(tmp_path / "m")
    back = Recommender.load(tmp_path / "m", load_encoder=False)
    hist = np.array([1, 2, 3], dtype=np.int64)
    a = rec.scorer.score(rec.scorer.user_state(hist))
    b = back.scorer.score(back.scorer.user_state(hist))
    assert np.allclose(a, b, rtol=1e-5, atol=1e-5)


def test_blocks_are_reused_across_seeds_only_when_asked(monkeypatch):
    from lucidrec import training
    from lucidrec.models.config import HybridConfig

    inter, items, _ = chain_frames(40)
    s = split(from_dataframes(inter, items, name="chain"), "loo")
    T = np.ones((s.dataset.n_items, 4), np.float32)
    calls = []

    def compute():
        calls.append(1)
        return {"B": np.zeros(3)}

    training.reuse_blocks(HybridConfig(seed=1), s, T, compute)
    training.reuse_blocks(HybridConfig(seed=2), s, T, compute)
    assert len(calls) == 2  # off by default: every fit computes its blocks
    monkeypatch.setattr(training, "REUSE_BLOCKS_ACROSS_SEEDS", True)
    monkeypatch.setattr(training, "_reused", {})
    a = training.reuse_blocks(HybridConfig(seed=1), s, T, compute)
    a["B"][0] = 5.0  # a caller changing its copy does not change the kept one
    b = training.reuse_blocks(HybridConfig(seed=2), s, T, compute)
    assert len(calls) == 3 and b["B"][0] == 0.0
    training.reuse_blocks(HybridConfig(seed=2, ease_reg=50.0), s, T, compute)  # other block settings
    training.reuse_blocks(HybridConfig(seed=2), s, T + 1.0, compute)  # other text
    assert len(calls) == 5
