"""lucidrec batch: Parquet in/out, equal to Recommender.recommend, clear input errors, Ray equals local.

The Ray test runs Ray locally (2 CPUs, small object store) and must stay in CI: it is the proof that the
distributed path gives the single-process output.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import make_tiny_frames
from typer.testing import CliRunner

import lucidrec.data
from lucidrec.batch import run_batch
from lucidrec.cli.application import app
from lucidrec.errors import ConfigError, DataError
from lucidrec.models.config import HybridConfig
from lucidrec.recommender import Recommender

pytest.importorskip("torch")
runner = CliRunner()
K = 5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    interactions, items = make_tiny_frames()
    ds = lucidrec.data.from_dataframes(interactions, items, name="tiny")
    cache = str(tmp_path_factory.mktemp("cache"))
    rec = Recommender(HybridConfig(epochs=2, dim=8), cache_dir=cache).fit(ds, progress=False)
    return rec.save(tmp_path_factory.mktemp("models") / "tiny", export_encoder=False)


@pytest.fixture(scope="module")
def rec(model_dir):
    return Recommender.load(model_dir, load_encoder=False)


@pytest.fixture(scope="module")
def users_file(tmp_path_factory):
    """Known users, a known user with an extra inline item, and strangers with list histories."""
    path = tmp_path_factory.mktemp("users") / "users.parquet"
    frame = pd.DataFrame(
        {
            "user_id": [f"u{i}" for i in range(2, 13)] + ["stranger", "stranger2"],
            "history": [None] * 10 + [["139"], ["101", "105", "130"], ["110", "111"]],
            "ratings": [None] * 11 + [[5.0, 4.0, 1.0], None],
        }
    )
    frame.to_parquet(path)
    return path, frame


def inline_history(row):
    """The history argument of recommend() for a users-table row (None, a string, ids or (id, rating))."""
    hist, ratings = row.get("history"), row.get("ratings")
    if isinstance(hist, str):
        return hist
    if not isinstance(hist, (list, np.ndarray)):
        return None
    if not isinstance(ratings, (list, np.ndarray)):
        return [str(h) for h in hist]
    return [(str(h), r) for h, r in zip(hist, ratings)]


def expected(rec: Recommender, row) -> list[dict]:
    return rec.recommend(user=row["user_id"], history=inline_history(row), k=K, explain=True)["items"]


def check_equal(out: pd.DataFrame, rec: Recommender, frame: pd.DataFrame, evidence: bool = False):
    assert list(out["user_id"].unique()) == list(frame["user_id"])  # input order kept
    for _, row in frame.iterrows():
        got = out[out["user_id"] == row["user_id"]].sort_values("rank")
        want = expected(rec, row)
        assert list(got["item_id"]) == [it["item_id"] for it in want]
        np.testing.assert_allclose(got["score"], [it["score"] for it in want], atol=1e-6)
        assert list(got["rank"]) == list(range(1, len(want) + 1))
        if evidence:
            for ev, it, score in zip(got["evidence"], want, got["score"]):
                parts = json.loads(ev)
                assert parts == json.loads(json.dumps(it["evidence"]))
                assert sum(p.get("contribution", 0.0) for p in parts) == pytest.approx(score, abs=1e-5)
            assert list(got["reason"]) == [it["reason"] for it in want]


def test_batch_cli_writes_what_recommend_returns(model_dir, rec, users_file, tmp_path):
    path, frame = users_file
    out = tmp_path / "recs.parquet"
    res = runner.invoke(
        app,
        ["batch", "--model", str(model_dir), "--users", str(path), "--out", str(out)]
        + ["--k", str(K), "--chunk-size", "4"],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out)
    assert list(table.columns) == ["user_id", "rank", "item_id", "score", "title"]
    assert str(table["score"].dtype) == "float64" and str(table["rank"].dtype) == "int32"
    assert len(table) == K * len(frame)
    check_equal(table, rec, frame)
    assert not list(tmp_path.glob("*.partial"))


def test_evidence_columns_match_recommend_explain(rec, users_file, tmp_path):
    path, frame = users_file
    summary = run_batch(rec, path, tmp_path / "r.parquet", k=K, evidence=True, chunk_size=5, progress=False)
    assert summary["users"] == len(frame) and summary["rows"] == K * len(frame)
    check_equal(pd.read_parquet(tmp_path / "r.parquet"), rec, frame, evidence=True)


def test_with_an_ann_index_scores_are_exact_on_the_candidates(model_dir, users_file, tmp_path):
    """--index ivf: each output score is the model's exact score of that item (cross term included)."""
    path, frame = users_file
    rec = Recommender.load(model_dir, load_encoder=False)
    summary = run_batch(rec, path, tmp_path / "r.parquet", k=K, index="ivf", progress=False)
    assert summary["index"] == "ivf"
    out = pd.read_parquet(tmp_path / "r.parquet")
    full = Recommender.load(model_dir, load_encoder=False)
    for user, got in out.groupby("user_id", sort=False):
        row = frame[frame["user_id"] == user].iloc[0]
        scores = full.score_items(user=user, history=inline_history(row), items=got["item_id"])
        np.testing.assert_allclose(got["score"], scores, atol=1e-5)


@pytest.mark.parametrize(
    "frame,match",
    [
        (pd.DataFrame({"user": ["u2"]}), "no 'user_id' column"),
        (pd.DataFrame({"user_id": ["u2", "u3", "u2"]}), "appears 2 times"),
        (pd.DataFrame({"user_id": [1.5]}), "type double"),
        (pd.DataFrame({"user_id": ["u2"], "history": [[1, 2]], "ratings": [[5.0]]}), "2 history items but 1 ratings"),
        (pd.DataFrame({"user_id": ["nobody"]}), r"row 1 \(user 'nobody'\).*unknown"),
        (pd.DataFrame({"user_id": ["x"], "history": [["no-such-item"]]}), "no-such-item"),
        (pd.DataFrame({"user_id": ["u2"], "ratings": [[5.0]]}), "needs a 'history' column"),
    ],
)
def test_bad_users_files_fail_clearly(model_dir, tmp_path, frame, match):
    path = tmp_path / "users.parquet"
    frame.to_parquet(path)
    out = tmp_path / "recs.parquet"
    res = runner.invoke(app, ["batch", "--model", str(model_dir), "--users", str(path), "--out", str(out)])
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    assert "error:" in res.output
    with pytest.raises(DataError, match=match):
        run_batch(model_dir, path, out, progress=False)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_history_as_an_inline_string(rec, tmp_path):
    path = tmp_path / "users.parquet"
    frame = pd.DataFrame({"user_id": ["a", "u4"], "history": ["110:5,111:1", None]})
    frame.to_parquet(path)
    run_batch(rec, path, tmp_path / "r.parquet", k=K, progress=False)
    check_equal(pd.read_parquet(tmp_path / "r.parquet"), rec, frame.assign(ratings=None))


class HashEncoder:
    """A stand-in text encoder (the test model is saved without its ONNX export)."""

    name, dim = "hash", 384

    def encode(self, texts, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        import zlib

        v = np.stack([np.random.default_rng(zlib.crc32(t.encode())).standard_normal(self.dim) for t in texts])
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def test_rows_with_a_query_equal_recommend_with_that_query(model_dir, tmp_path):
    rec = Recommender.load(model_dir, load_encoder=False)
    rec._query_encoder = HashEncoder()
    path = tmp_path / "users.parquet"
    frame = pd.DataFrame({"user_id": ["u2", "newbie", "u5"], "query": ["something funny", "a drama", None]})
    frame["history"] = pd.Series([None, ["101", "102"], None], dtype=object)
    frame.to_parquet(path)
    run_batch(rec, path, tmp_path / "r.parquet", k=K, evidence=True, chunk_size=2, progress=False)
    out = pd.read_parquet(tmp_path / "r.parquet")
    assert list(out["user_id"].unique()) == ["u2", "newbie", "u5"]
    for _, row in frame.iterrows():
        got = out[out["user_id"] == row["user_id"]]
        q = row["query"] if isinstance(row["query"], str) else None
        want = rec.recommend(user=row["user_id"], history=inline_history(row), query=q, k=K, explain=True)["items"]
        assert list(got["item_id"]) == [it["item_id"] for it in want]
        np.testing.assert_allclose(got["score"], [it["score"] for it in want], atol=1e-6)
        assert list(got["reason"]) == [it["reason"] for it in want]
    # Without an encoder, a query row is a clear error.
    with pytest.raises(DataError, match="without its text encoder"):
        run_batch(Recommender.load(model_dir, load_encoder=False), path, tmp_path / "x.parquet", progress=False)


def test_skip_unknown_and_option_errors(rec, tmp_path):
    path = tmp_path / "users.parquet"
    pd.DataFrame({"user_id": ["u2", "nobody", "u3"]}).to_parquet(path)
    s = run_batch(rec, path, tmp_path / "r.parquet", k=3, skip_unknown=True, progress=False)
    out = pd.read_parquet(tmp_path / "r.parquet")
    assert s["users"] == 3 and list(out["user_id"].unique()) == ["u2", "u3"]
    with pytest.raises(ConfigError, match="engine"):
        run_batch(rec, path, tmp_path / "r.parquet", engine="spark", progress=False)
    with pytest.raises(ConfigError, match="--k"):
        run_batch(rec, path, tmp_path / "r.parquet", k=0, progress=False)
    with pytest.raises(ConfigError, match="Parquet"):
        run_batch(rec, path, tmp_path / "r.csv", progress=False)
    with pytest.raises(DataError, match="not found"):
        run_batch(rec, tmp_path / "missing.parquet", tmp_path / "r.parquet", progress=False)


def assert_same_output(a: pd.DataFrame, b: pd.DataFrame):
    """Same users, items, ranks, titles and reasons; scores and evidence numbers equal to 1e-6. (Ray
    workers run BLAS with one thread, this process with more: sums may differ in the last float bits, so
    numbers are compared with a tolerance, and two items may swap ranks only if their scores tie.)"""
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-6)
    same = (a["item_id"] == b["item_id"]).to_numpy()
    for k in np.flatnonzero(~same):  # a swap is only allowed between (near-)tied items of one user
        other = b[(b["user_id"] == a["user_id"].iloc[k]) & (b["item_id"] == a["item_id"].iloc[k])]
        assert len(other) == 1 and abs(float(other["score"].iloc[0]) - a["score"].iloc[k]) < 1e-6
    for col in ("user_id", "rank"):
        assert list(a[col]) == list(b[col])
    if "evidence" in a:
        for ea, eb, ia, ib in zip(a["evidence"], b["evidence"], a["item_id"], b["item_id"]):
            if ia != ib:
                continue
            pa, pb = json.loads(ea), json.loads(eb)
            assert [p["kind"] for p in pa] == [p["kind"] for p in pb]
            for x, y in zip(pa, pb):
                assert x.get("contribution", 0.0) == pytest.approx(y.get("contribution", 0.0), abs=1e-6)
        assert list(a.loc[same, "reason"]) == list(b.loc[same, "reason"])


def test_ray_engine_output_equals_local(model_dir, users_file, tmp_path):
    """The same job on a local Ray cluster (2 CPUs, 2 actors) writes exactly the local engine's output,
    with the exact scorer and with a faiss index shipped through the object store."""
    ray = pytest.importorskip("ray")
    path, frame = users_file
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2, log_to_driver=False)
    try:
        for index in ("exact", "ivf"):
            local_out, ray_out = tmp_path / f"local-{index}.parquet", tmp_path / f"ray-{index}.parquet"
            kw = {"k": K, "evidence": True, "chunk_size": 3, "index": index, "progress": False}
            run_batch(Recommender.load(model_dir, load_encoder=False), path, local_out, engine="local", **kw)
            s = run_batch(Recommender.load(model_dir, load_encoder=False), path, ray_out, engine="ray", **kw)
            assert s["engine"] == "ray" and s["users"] == len(frame)
            assert_same_output(pd.read_parquet(local_out), pd.read_parquet(ray_out))
        # A bad row raises the same clear error through Ray.
        bad = tmp_path / "bad.parquet"
        pd.DataFrame({"user_id": ["u2", "nobody"]}).to_parquet(bad)
        with pytest.raises(DataError, match="nobody"):
            run_batch(model_dir, bad, tmp_path / "x.parquet", engine="ray", progress=False)
    finally:
        ray.shutdown()


def test_index_command_adds_an_index_to_a_model_folder(model_dir, tmp_path):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(model_dir, folder)
    res = runner.invoke(app, ["index", "--model", str(folder), "--kind", "ivf", "--nlist", "2", "--nprobe", "2"])
    assert res.exit_code == 0, res.output
    back = Recommender.load(folder, load_encoder=False)
    assert back.retriever.kind == "ivf" and back.retriever.config.nprobe == 2
    res = runner.invoke(app, ["index", "--model", str(folder), "--kind", "annoy"])
    assert res.exit_code == 2 and "kind='annoy'" in res.output
