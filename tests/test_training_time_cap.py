"""--max-minutes is a cap on training time, also within an epoch (one epoch of a large catalogue can
outlast it): the partial epoch is validated and training stops."""

from __future__ import annotations

import pytest
from conftest import make_tiny_frames

import lucidrec.data
from lucidrec.models.config import HybridConfig
from lucidrec.recommender import Recommender

pytest.importorskip("torch")


def test_the_time_cap_stops_training_inside_the_first_epoch(tmp_path):
    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    cfg = HybridConfig(epochs=5, dim=8, batch_size=4, max_minutes=1e-6)
    rec = Recommender(cfg, cache_dir=str(tmp_path)).fit(ds, progress=False)
    epochs = rec.train_report["epochs"]
    assert len(epochs) == 1 and epochs[0]["partial"] is True
    assert rec.train_report["best_valid_ndcg@10"] >= 0.0  # validated, and the model serves
    assert rec.recommend(user=rec._known_users_with_history()[0], k=3)["items"]


def test_without_the_cap_every_epoch_is_whole(tmp_path):
    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    rec = Recommender(HybridConfig(epochs=2, dim=8, batch_size=4), cache_dir=str(tmp_path)).fit(ds, progress=False)
    assert [e.get("partial") for e in rec.train_report["epochs"]] == [None] * len(rec.train_report["epochs"])
