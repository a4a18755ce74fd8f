"""SASRec baseline: learns an order a set model cannot see, is seeded, validates its configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from lucidrec.baselines import BASELINES, EASE  # noqa: E402
from lucidrec.data import from_dataframes  # noqa: E402
from lucidrec.errors import ConfigError  # noqa: E402
from lucidrec.evaluate import evaluate_scorer, fit_and_evaluate  # noqa: E402
from lucidrec.sasrec import SASRec, history_sequences, ordered_sequences  # noqa: E402
from lucidrec.splits import split  # noqa: E402

N_ITEMS = 30


def cyclic_dataset(n_users: int = 120, seed: int = 3):
    """Every user walks the item cycle 0 -> 1 -> ... from a random start: the next item is determined by
    the last one, while the set of items a user has seen says little about which one comes next."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        start, n = int(rng.integers(N_ITEMS)), int(rng.integers(6, 12))
        rows += [{"user": f"u{u}", "item": f"i{(start + t) % N_ITEMS}", "timestamp": t} for t in range(n)]
    return from_dataframes(pd.DataFrame(rows), name="cycle")


def small(**kw) -> dict:
    return {
        "max_len": 12,
        "dim": 16,
        "n_layers": 1,
        "n_heads": 1,
        "dropout": 0.0,
        "lr": 5e-3,
        "epochs": 60,
        "patience": 8,
        **kw,
    }


def test_sasrec_learns_the_next_item_that_ease_cannot():
    s = split(cyclic_dataset(), "loo")
    model, m, _ = fit_and_evaluate(SASRec, small(), s, "test")
    _, ease, _ = fit_and_evaluate(EASE, {"reg": 10.0}, s, "test")
    assert m["hr@10"] > 0.9, m
    assert m["ndcg@10"] > 0.8 and m["ndcg@10"] > ease["ndcg@10"] + 0.2, (m["ndcg@10"], ease["ndcg@10"])
    # early stopping kept the best validation epoch
    rep = model.report
    assert rep["best_valid_ndcg@10"] == max(e["valid_ndcg@10"] for e in rep["epochs"])


def test_sasrec_is_seeded():
    s = split(cyclic_dataset(40), "loo")
    a = SASRec(**small(epochs=3, seed=5)).fit(s.dataset, s.train_valid())
    b = SASRec(**small(epochs=3, seed=5)).fit(s.dataset, s.train_valid())
    c = SASRec(**small(epochs=3, seed=6)).fit(s.dataset, s.train_valid())
    from lucidrec.history import Histories

    h = Histories.from_frame(s.train_valid(), s.dataset.n_users, s.dataset.n_items)
    users = np.arange(10)
    assert np.allclose(a.score(users, h), b.score(users, h))
    assert not np.allclose(a.score(users, h), c.score(users, h))
    assert evaluate_scorer(a, s)["users"] == s.dataset.n_users


def test_sequences_follow_time_then_item():
    inter = pd.DataFrame({"user": ["a"] * 4, "item": ["x", "y", "z", "w"], "timestamp": [2, 1, 1, 3]})
    ds = from_dataframes(inter, name="t")
    seqs = ordered_sequences(ds.interactions, ds.n_users)
    names = [ds.item_ids[i] for i in seqs[0]]
    assert names == ["y", "z", "x", "w"]  # ties by item index (y before z: first seen first)
    from lucidrec.history import Histories

    h = Histories.from_frame(ds.interactions, ds.n_users, ds.n_items)
    assert [ds.item_ids[i] for i in history_sequences(h, np.array([0]))[0]] == names


def test_sasrec_config_errors_and_registry():
    with pytest.raises(ConfigError, match="n_heads"):
        SASRec(dim=10, n_heads=3)
    with pytest.raises(ConfigError, match="dropout"):
        SASRec(dropout=1.0)
    with pytest.raises(ConfigError, match="before fit"):
        SASRec().score(np.array([0]), None)
    assert BASELINES["sasrec"][0] is SASRec


def test_unset_window_dropout_and_lr_follow_the_data_and_given_ones_are_kept():
    """The CLI's `--model sasrec` (no parameters) and the benchmarks train the same model: short
    histories (median 9 here) get the short-window setting, long ones RecBole's."""
    s = split(cyclic_dataset(n_users=40), "loo", 2026)
    auto = SASRec(dim=16, n_layers=1, n_heads=1, epochs=1).fit(s.dataset, s.train_valid())
    assert (auto.max_len, auto.dropout, auto.lr) == (20, 0.5, 2e-3)
    assert auto.get_params()["max_len"] == 20
    given = SASRec(max_len=8, dim=16, n_layers=1, n_heads=1, epochs=1).fit(s.dataset, s.train_valid())
    assert (given.max_len, given.dropout, given.lr) == (8, 0.5, 2e-3)
    long = from_dataframes(
        pd.DataFrame(
            [{"user": f"u{u}", "item": f"i{t % N_ITEMS}", "timestamp": t} for u in range(4) for t in range(25)]
        ),
        name="long",
    )
    assert SASRec._data_defaults(long) == {"max_len": 50, "dropout": 0.2, "lr": 2e-3}


def test_the_cli_seed_reaches_sasrec():
    """`lucidrec evaluate --model sasrec --seed N` trains with seed N (it used to train seed 2026 whatever
    the seed), an explicit --param seed=... wins, and other baselines' parameters are left alone."""
    from lucidrec.cli.evaluate import _seeded

    assert _seeded("sasrec", 2027, {}) == {"seed": 2027}
    assert _seeded("SASRec", 2027, {"lr": 0.002}) == {"seed": 2027, "lr": 0.002}
    assert _seeded("sasrec", 2027, {"seed": 5}) == {"seed": 5}
    assert _seeded("ease", 2027, {}) == {}
    s = split(cyclic_dataset(40), "loo")
    runs = [fit_and_evaluate(SASRec, {**small(epochs=2), **_seeded("sasrec", k, {})}, s, "test") for k in (1, 2)]
    assert runs[0][0].seed == 1 and runs[1][0].seed == 2
