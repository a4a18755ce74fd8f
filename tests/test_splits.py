"""Evaluation protocols: pinned sizes on ML-100K, determinism, partitions, per-protocol invariants."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lucidrec.errors import ConfigError
from lucidrec.splits import kfold, split

KEY = ["uidx", "iidx", "timestamp", "rating"]


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[KEY].sort_values(KEY).reset_index(drop=True)


def assert_partition(dataset, parts):
    """The parts together hold every interaction exactly once."""
    together = pd.concat(parts, ignore_index=True)
    assert len(together) == len(dataset.interactions)
    pd.testing.assert_frame_equal(canonical(together), canonical(dataset.interactions))


# ----------------------------------------------------------------------------- pinned sizes
def test_ratio_sizes_ml100k(ml100k_ratio):
    assert ml100k_ratio.sizes() == (80000, 9988, 10012)
    assert ml100k_ratio.protocol == "ratio"


def test_loo_sizes_ml100k(ml100k_loo):
    assert ml100k_loo.sizes() == (98114, 943, 943)
    assert ml100k_loo.test["uidx"].nunique() == 943
    assert ml100k_loo.valid["uidx"].nunique() == 943


@pytest.mark.parametrize("protocol", ["ratio", "loo", "cold"])
def test_no_interaction_lost_or_duplicated_ml100k(ml100k, protocol):
    s = split(ml100k, protocol)
    assert_partition(ml100k, [s.train, s.valid, s.test])


@pytest.mark.parametrize("protocol", ["ratio", "loo", "cold"])
def test_no_interaction_lost_or_duplicated_tiny(tiny_dataset, protocol):
    s = split(tiny_dataset, protocol)
    assert_partition(tiny_dataset, [s.train, s.valid, s.test])


def test_ratio_per_user_counts(ml100k_ratio):
    s = ml100k_ratio
    n = s.dataset.interactions.groupby("uidx").size()
    tr = s.train.groupby("uidx").size().reindex(n.index, fill_value=0)
    va = s.valid.groupby("uidx").size().reindex(n.index, fill_value=0)
    te = s.test.groupby("uidx").size().reindex(n.index, fill_value=0)
    assert (tr == np.rint(0.8 * n).astype(int)).all()
    assert (va == np.rint(0.1 * n).astype(int)).all()
    assert (tr + va + te == n).all()


# ----------------------------------------------------------------------------- determinism
@pytest.mark.parametrize("protocol", ["ratio", "loo", "cold"])
def test_same_seed_same_split(ml100k, protocol):
    a, b = split(ml100k, protocol, seed=11), split(ml100k, protocol, seed=11)
    for part in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))


def test_default_seed_is_2026(ml100k, ml100k_ratio):
    other = split(ml100k, "ratio", seed=2026)
    pd.testing.assert_frame_equal(other.test, ml100k_ratio.test)
    assert ml100k_ratio.seed == 2026


def test_different_seed_different_ratio_split(ml100k, ml100k_ratio):
    other = split(ml100k, "ratio", seed=1)
    assert other.sizes() == ml100k_ratio.sizes()  # sizes depend only on per-user counts
    a = set(zip(ml100k_ratio.test["uidx"], ml100k_ratio.test["iidx"]))
    b = set(zip(other.test["uidx"], other.test["iidx"]))
    assert a != b
    assert len(a & b) < 0.5 * len(a)


def test_different_seed_different_cold_items(ml100k):
    assert not np.array_equal(split(ml100k, "cold", seed=1).cold_items, split(ml100k, "cold", seed=2).cold_items)


# ----------------------------------------------------------------------------- leave-one-out
def _latest(frame: pd.DataFrame) -> pd.DataFrame:
    """Each user's latest interaction: max timestamp, ties broken by the larger item index."""
    return (
        frame.sort_values(["uidx", "timestamp", "iidx"])
        .groupby("uidx")
        .tail(1)[["uidx", "iidx"]]
        .sort_values("uidx")
        .reset_index(drop=True)
    )


def test_loo_test_is_latest_interaction_ml100k(ml100k, ml100k_loo):
    test = ml100k_loo.test[["uidx", "iidx"]].sort_values("uidx").reset_index(drop=True)
    pd.testing.assert_frame_equal(test, _latest(ml100k.interactions))
    # and validation is the latest of what is left
    rest = pd.concat([ml100k_loo.train, ml100k_loo.valid])
    valid = ml100k_loo.valid[["uidx", "iidx"]].sort_values("uidx").reset_index(drop=True)
    pd.testing.assert_frame_equal(valid, _latest(rest))
    # no train interaction of a user is later than their test interaction
    t_test = ml100k_loo.test.set_index("uidx")["timestamp"]
    assert (ml100k_loo.train["timestamp"].to_numpy() <= t_test.loc[ml100k_loo.train["uidx"]].to_numpy()).all()


def test_loo_ties_broken_by_item(tiny_dataset):
    s = split(tiny_dataset, "loo")
    eligible = tiny_dataset.interactions.groupby("uidx").filter(lambda g: len(g) >= 3)
    test = s.test[["uidx", "iidx"]].sort_values("uidx").reset_index(drop=True)
    pd.testing.assert_frame_equal(test, _latest(eligible))


def test_loo_tie_example():
    from lucidrec.data import from_dataframes

    inter = pd.DataFrame({"user": [1, 1, 1, 1], "item": ["c", "a", "b", "d"], "timestamp": [5, 9, 9, 1]})
    items = pd.DataFrame({"item": ["a", "b", "c", "d"], "title": list("ABCD")})
    s = split(from_dataframes(inter, items), "loo")
    assert s.test["item"].tolist() == ["b"]  # timestamp 9 ties; 'b' comes after 'a' in the item table
    assert s.valid["item"].tolist() == ["a"]
    assert sorted(s.train["item"]) == ["c", "d"]


# ----------------------------------------------------------------------------- small users
@pytest.mark.parametrize("protocol", ["ratio", "loo"])
def test_users_with_fewer_than_three_interactions_stay_in_train(tiny_dataset, protocol):
    s = split(tiny_dataset, protocol)
    counts = tiny_dataset.interactions.groupby("user").size()
    small = set(counts[counts < 3].index)
    assert small == {"u0", "u1"}
    assert not (set(s.valid["user"]) | set(s.test["user"])) & small
    train_counts = s.train.groupby("user").size()
    for u in small:
        assert train_counts[u] == counts[u]
    if protocol == "loo":  # everybody else has exactly one test interaction
        assert set(s.test["user"]) == set(counts.index) - small
        assert s.test["user"].is_unique
    else:  # test = n - round(0.8 n) - round(0.1 n), which is 0 for n in (6, 7)
        big = counts[counts >= 3]
        expected = big - np.rint(0.8 * big).astype(int) - np.rint(0.1 * big).astype(int)
        got = s.test.groupby("user").size().reindex(big.index, fill_value=0)
        assert (got == expected).all()


# ----------------------------------------------------------------------------- cold items
def test_cold_split_ml100k(ml100k):
    s = split(ml100k, "cold")
    cold = set(s.cold_items.tolist())
    used = ml100k.interactions["iidx"].nunique()
    assert len(cold) == round(0.1 * used) == 168
    assert not cold & set(s.train["iidx"])
    assert not cold & set(s.valid["iidx"])
    assert set(s.test["iidx"]) == cold  # every held-out item has all its interactions in test
    n_cold_inter = ml100k.interactions["iidx"].isin(cold).sum()
    assert len(s.test) == n_cold_inter


def test_cold_split_tiny(tiny_dataset):
    s = split(tiny_dataset, "cold")
    cold = set(s.cold_items.tolist())
    used = tiny_dataset.interactions["iidx"].nunique()
    assert len(cold) == max(1, round(0.1 * used))
    assert not cold & (set(s.train["iidx"]) | set(s.valid["iidx"]))
    assert set(s.test["iidx"]) <= cold


def test_cold_split_write_lists_cold_items(ml100k, tmp_path):
    s = split(ml100k, "cold")
    s.write(tmp_path)
    listed = (tmp_path / "cold_items.tsv").read_text().split()
    assert sorted(listed) == sorted(ml100k.item_ids[s.cold_items].tolist())


# ----------------------------------------------------------------------------- k-fold
def test_kfold_partitions_ml100k(ml100k):
    folds = list(kfold(ml100k, n_folds=5))
    assert len(folds) == 5
    n = len(ml100k.interactions)
    tests = []
    for train, test in folds:
        assert len(train) + len(test) == n
        assert abs(len(test) - n / 5) <= 1
        assert not set(zip(train["uidx"], train["iidx"])) & set(zip(test["uidx"], test["iidx"]))
        tests.append(test)
    assert_partition(ml100k, tests)


def test_kfold_deterministic_and_validated(tiny_dataset):
    a = [t for _, t in kfold(tiny_dataset, 3, seed=5)]
    b = [t for _, t in kfold(tiny_dataset, 3, seed=5)]
    for x, y in zip(a, b):
        pd.testing.assert_frame_equal(x, y)
    assert_partition(tiny_dataset, a)
    with pytest.raises(ConfigError):
        list(kfold(tiny_dataset, 1))


# ----------------------------------------------------------------------------- misc
def test_unknown_protocol(tiny_dataset):
    with pytest.raises(ConfigError, match="Fix:"):
        split(tiny_dataset, "nope")


def test_split_does_not_touch_the_dataset(tiny_dataset):
    before = tiny_dataset.interactions.copy()
    for p in ("ratio", "loo", "cold"):
        split(tiny_dataset, p)
    pd.testing.assert_frame_equal(tiny_dataset.interactions, before)


def test_write_round_trip(tiny_dataset, tmp_path):
    s = split(tiny_dataset, "ratio")
    paths = s.write(tmp_path)
    assert [p.name for p in paths] == ["train.tsv", "valid.tsv", "test.tsv"]
    for p, part in zip(paths, (s.train, s.valid, s.test)):
        back = pd.read_csv(p, sep="\t", header=None, names=["user", "item", "rating", "timestamp"], dtype=str)
        assert back["user"].tolist() == part["user"].tolist()
        assert back["item"].tolist() == part["item"].tolist()
        assert back["rating"].astype(float).tolist() == part["rating"].tolist()
        assert back["timestamp"].astype(float).tolist() == part["timestamp"].tolist()
