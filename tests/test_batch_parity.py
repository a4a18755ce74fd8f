"""Ray equals local on an implicit-feedback product catalogue with fields, numbers and queries.

The catalogue (tests/test_product_queries.py's generated shop: purchases without ratings, a brand, a
three-level category path, a price and a weight) exercises everything a hand-picked Ray payload used to
drop: the implicit event (an inline history item reads as "chose", not "liked"), the catalogue's fields
and numbers (queries such as "under $50" or "not from Hillman" parse against them) and its vocabulary.
The same users file goes through ``run_batch`` locally and on a local Ray cluster; items, scores (float
tolerance), evidence and reasons must be the same.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from test_product_queries import shop_dataset

from lucidrec.batch import run_batch
from lucidrec.models.config import HybridConfig
from lucidrec.recommender import Recommender

pytest.importorskip("torch")
K = 5
# Ray workers run BLAS with one thread, this process with more: sums may differ in the last bits.
ATOL = 1e-6


@pytest.fixture(scope="module")
def shop_model(tmp_path_factory):
    """A tiny model of the generated shop, saved with its ONNX encoder (rows with a query need it)."""
    ds = shop_dataset()
    cache = str(tmp_path_factory.mktemp("cache"))
    rec = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=cache).fit(ds, progress=False)
    folder = rec.save(tmp_path_factory.mktemp("models") / "shop")
    back = Recommender.load(folder)
    # The premises of this test: what the old payload dropped is really there.
    assert back.implicit_event and back.fields and set(back.numeric) == {"price", "weight"}
    assert back._query_encoder is not None
    return folder


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    """Known users, strangers with inline (unrated) histories, and queries over fields and numbers."""
    path = tmp_path_factory.mktemp("users") / "users.parquet"
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u3", "u4", "u5", "new1", "new2", "new3", "new4", "u6"],
            "history": [
                None,
                None,
                None,
                ["p7"],
                None,
                ["p3", "p10", "p21"],
                ["p4", "p9"],
                ["p30"],
                ["p2", "p5"],
                None,
            ],
            "query": [
                None,
                "HATCHBOX filament",
                "duct tape under $50",
                "not from Hillman",
                "staples lighter than 1 lb",
                None,
                "beakers",
                "something like HATCHBOX 3D Printing Filament model 0",
                "eSUN or Duck under $100",
                "便宜的胶带",
            ],
        }
    )
    frame.to_parquet(path)
    return path


def assert_same_json(a, b, where: str):
    """Equal structures; floats equal to ATOL."""
    if isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, abs=ATOL), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for key in a:
            assert_same_json(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for n, (x, y) in enumerate(zip(a, b)):
            assert_same_json(x, y, f"{where}[{n}]")
    else:
        assert a == b, where


def test_ray_equals_local_on_an_implicit_catalogue_with_fields_numbers_and_queries(shop_model, users_file, tmp_path):
    ray = pytest.importorskip("ray")
    # The store holds the model folder once (the ONNX encoder is most of it).
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=400 * 1024**2, log_to_driver=False)
    try:
        outs = {}
        for engine in ("local", "ray"):
            outs[engine] = tmp_path / f"{engine}.parquet"
            kw = {"k": K, "evidence": True, "chunk_size": 3, "engine": engine, "progress": False}
            summary = run_batch(shop_model, users_file, outs[engine], **kw)
            assert summary["engine"] == engine and summary["users"] == 10
    finally:
        ray.shutdown()
    local, remote = pd.read_parquet(outs["local"]), pd.read_parquet(outs["ray"])
    assert len(local) == len(remote) == 10 * K
    for col in ("user_id", "rank", "item_id", "title", "reason"):
        assert list(local[col]) == list(remote[col]), col
    np.testing.assert_allclose(local["score"], remote["score"], atol=ATOL)
    for n, (ea, eb) in enumerate(zip(local["evidence"], remote["evidence"])):
        assert_same_json(json.loads(ea), json.loads(eb), f"row {n} evidence")
    # The catalogue's own reading reached the workers: unrated history items are read as the catalogue's
    # event ("interacted": "you chose X"), never as liked, and the query constraints over fields and
    # numbers were applied.
    assert local["reason"].str.contains("you chose").any() and not local["reason"].str.contains("liked").any()
    constraints = [p for ev in local["evidence"] for p in json.loads(ev) if p["kind"] == "constraint"]
    assert any(c["type"] == "range" for p in constraints for c in p["met"])


def test_ray_equals_local_with_an_index_built_for_the_job(shop_model, tmp_path):
    """A model folder served with an index this job builds (or drops): the workers load a copy of the folder
    with the job's index written into it (and without the encoder: no row has a query)."""
    ray = pytest.importorskip("ray")
    path = tmp_path / "users.parquet"
    frame = pd.DataFrame({"user_id": ["u1", "u7", "new"], "history": [None, ["p11"], ["p3", "p40"]]})
    frame.to_parquet(path)
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    try:
        for index in ("ivf", "exact"):
            outs = {}
            for engine in ("local", "ray"):
                outs[engine] = tmp_path / f"{engine}-{index}.parquet"
                kw = {"k": K, "evidence": True, "index": index, "engine": engine, "progress": False}
                assert run_batch(shop_model, path, outs[engine], **kw)["index"] == index
            local, remote = pd.read_parquet(outs["local"]), pd.read_parquet(outs["ray"])
            assert len(local) == 3 * K
            for col in ("user_id", "rank", "item_id", "reason"):
                assert list(local[col]) == list(remote[col]), (index, col)
            np.testing.assert_allclose(local["score"], remote["score"], atol=ATOL)
    finally:
        ray.shutdown()


def test_an_in_memory_model_whose_encoder_cannot_be_saved_is_refused_before_ray_starts(shop_model, tmp_path):
    """Rows with a query need the workers to load the model's encoder: an in-memory model with an encoder
    that has no saved form is refused with a clear error (Ray is not started)."""
    ray = pytest.importorskip("ray")
    from test_batch import HashEncoder

    from lucidrec.errors import ConfigError

    rec = Recommender.load(shop_model, load_encoder=False)
    rec.source_dir = None  # as if built in memory: no folder to copy the ONNX export from
    rec._query_encoder = HashEncoder()
    path = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": ["u1"], "query": ["duct tape"]}).to_parquet(path)
    with pytest.raises(ConfigError, match="text encoder"):
        run_batch(rec, path, tmp_path / "r.parquet", engine="ray", progress=False)
    assert not ray.is_initialized()
