"""CLI train / recommend / evaluate on a saved model (tiny data written as a RecBole atomic folder).

The model is trained once per module through ``lucidrec train`` (epochs 2, dim 8); the embedding cache
goes to a tmp dir through LUCIDREC_CACHE so nothing is written to ~/.cache.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import make_tiny_frames
from typer.testing import CliRunner

from lucidrec.cli.application import app

pytest.importorskip("torch")

runner = CliRunner()
HISTORY_USER = "u5"


def _write_atomic(folder):
    interactions, items = make_tiny_frames()
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    lines += [f"{r.user}\t{r.item}\t{r.rating}\t{r.timestamp}" for r in interactions.itertuples()]
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n", encoding="utf-8")
    lines = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tgenres:token_seq"]
    lines += [f"{r.item}\t{r.title}\t{r.year}\t{' '.join(r.genres.split('|'))}" for r in items.itertuples()]
    (folder / "tiny.item").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return interactions, items


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return {"LUCIDREC_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "tiny"
    interactions, _ = _write_atomic(folder)
    return folder, interactions


@pytest.fixture(scope="module")
def trained(data_dir, env, tmp_path_factory):
    folder, _ = data_dir
    model = tmp_path_factory.mktemp("models") / "tiny-model"
    res = runner.invoke(
        app,
        [
            "train",
            "--data",
            str(folder),
            "--protocol",
            "ratio",
            "--epochs",
            "2",
            "--dim",
            "8",
            "--out",
            str(model),
            "--quiet",
        ],
        env=env,
    )
    assert res.exit_code == 0, res.output
    return model, res


def invoke(env, *args):
    return runner.invoke(app, [str(a) for a in args], env=env)


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


# ============================================================== train
def test_train_writes_a_model_folder(trained, env):
    model, res = trained
    assert "saved to" in res.output and "best valid NDCG@10" in res.output and "item-item block: " in res.output
    assert "Traceback" not in res.output
    for f in ("config.json", "weights.safetensors", "items.json", "interactions.npz", "encoder/model.onnx"):
        assert (model / f).exists(), f
    meta = json.loads((model / "config.json").read_text())
    assert meta["config"]["epochs"] == 2 and meta["config"]["dim"] == 8
    assert meta["dataset"] == "tiny"
    # the embedding cache went to LUCIDREC_CACHE, not the home folder
    assert os.listdir(os.path.join(env["LUCIDREC_CACHE"], "embeddings"))


def test_train_bad_mode(data_dir, env, tmp_path):
    folder, _ = data_dir
    res = invoke(
        env,
        "train",
        "--data",
        folder,
        "--epochs",
        "1",
        "--dim",
        "8",
        "--mode",
        "nope",
        "--out",
        tmp_path / "m",
        "--quiet",
    )
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m").exists()


def test_train_bad_item_item_kind(data_dir, env, tmp_path):
    folder, _ = data_dir
    args = ["train", "--data", folder, "--epochs", "1", "--item-item", "slim", "--out", tmp_path / "m", "--quiet"]
    res = invoke(env, *args)
    assert res.exit_code == 2
    assert "--item-item 'slim'" in res.output and "concise" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "m").exists()


def test_train_missing_data(env, tmp_path):
    res = invoke(
        env, "train", "--data", tmp_path / "nothing-here.csv", "--epochs", "1", "--out", tmp_path / "m", "--quiet"
    )
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output


# ============================================================== recommend
def test_recommend_json(trained, env, data_dir):
    model, _ = trained
    _, interactions = data_dir
    payload = _json(invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 3, "--json"))
    items = payload["items"]
    assert len(items) == 3
    assert payload["user"] == HISTORY_USER and payload["history_source"] == "stored"
    for rank, it in enumerate(items, 1):
        assert isinstance(it["item_id"], str)
        assert isinstance(it["title"], str) and it["title"]
        assert isinstance(it["score"], float)
        assert it["rank"] == rank
    assert [it["score"] for it in items] == sorted((it["score"] for it in items), reverse=True)
    # the model was trained on the ratio split's train+valid part: those are the user's seen items (the
    # test part stays unknown to the model so that 'evaluate' can score it)
    with np.load(model / "interactions.npz") as z:
        seen = {str(i) for u, i in zip(z["user"], z["item"]) if str(u) == HISTORY_USER}
    assert seen and seen < set(interactions.loc[interactions["user"] == HISTORY_USER, "item"].astype(str))
    assert payload["history_size"] == len(seen)
    assert not seen & {it["item_id"] for it in items}
    # --include-seen may bring them back; the ranking covers the whole catalog then
    every = _json(
        invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 40, "--include-seen", "--json")
    )
    assert len(every["items"]) == 40 and seen <= {it["item_id"] for it in every["items"]}


def test_recommend_matches_python_api(trained, env):
    from lucidrec.recommender import Recommender

    model, _ = trained
    payload = _json(invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 5, "--json"))
    want = Recommender.load(model, load_encoder=False).recommend(user=HISTORY_USER, k=5)
    assert payload["items"] == want["items"]


def test_recommend_explain_json(trained, env):
    model, _ = trained
    payload = _json(invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 3, "--explain", "--json"))
    for it in payload["items"]:
        assert isinstance(it["reason"], str) and it["reason"].startswith("Recommended")
        assert isinstance(it["evidence"], list) and it["evidence"]
        total = sum(e["contribution"] for e in it["evidence"] if "contribution" in e)
        assert total == pytest.approx(it["score"], abs=1e-4)


def test_recommend_counterfactual_json(trained, env):
    model, _ = trained
    payload = _json(
        invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 3, "--counterfactual", "--json")
    )
    for it in payload["items"]:
        assert "evidence" in it and "counterfactual" in it
        cf = it["counterfactual"]
        if cf is not None:
            assert cf["new_rank"] > 3 and 1 <= len(cf["removed"]) == len(cf["removed_titles"]) <= 10
            assert cf["replaced_by"] not in {i["item_id"] for i in payload["items"]}
            assert cf["text"].startswith("Without your")


def test_recommend_explain_table_and_chinese(trained, env):
    model, _ = trained
    res = invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 3, "--explain", "--lang", "zh")
    assert res.exit_code == 0, res.output
    assert "推荐《" in res.stdout
    assert "Traceback" not in res.output
    zh = _json(
        invoke(
            env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 2, "--explain", "--lang", "zh", "--json"
        )
    )
    assert all(it["reason"].startswith("推荐《") for it in zh["items"])
    table = invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--k", 3)
    assert table.exit_code == 0 and f"user {HISTORY_USER}" in table.stdout


def test_recommend_inline_history(trained, env):
    model, _ = trained
    payload = _json(invoke(env, "recommend", "--model", model, "--history", "101:5,105", "--k", 3, "--json"))
    assert payload["history_source"] == "inline" and payload["history_size"] == 2
    assert len(payload["items"]) == 3
    assert not {"101", "105"} & {it["item_id"] for it in payload["items"]}


def test_recommend_query(trained, env):
    model, _ = trained
    query = "a scary horror film"
    payload = _json(invoke(env, "recommend", "--model", model, "--query", query, "--k", 4, "--explain", "--json"))
    assert payload["query"] == query and len(payload["items"]) == 4
    # "scary horror" is understood as the genre Horror, which every result has
    assert payload["parsed_query"]["genres"] == ["Horror"]
    assert all(it["constraints_met"] == ["Horror"] for it in payload["items"])
    assert all("fits your request: Horror" in it["reason"] for it in payload["items"])
    both = _json(invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, "--query", query, "--json"))
    assert both["history_source"] == "stored" and len(both["items"]) == 10


def test_recommend_unknown_user(trained, env):
    model, _ = trained
    res = invoke(env, "recommend", "--model", model, "--user", "no-such-user", "--json")
    assert res.exit_code == 2
    assert "error:" in res.output and "no-such-user" in res.output and "Fix" in res.output
    assert "Traceback" not in res.output
    assert res.stdout == ""


def test_recommend_unknown_item_in_history(trained, env):
    model, _ = trained
    res = invoke(env, "recommend", "--model", model, "--history", "101:5,424242")
    assert res.exit_code == 2
    assert "error:" in res.output and "424242" in res.output and "Traceback" not in res.output


def test_recommend_nothing_to_recommend_for(trained, env):
    model, _ = trained
    res = invoke(env, "recommend", "--model", model)
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output


def test_recommend_missing_model(env):
    res = invoke(env, "recommend", "--model", "/nonexistent", "--user", HISTORY_USER)
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output


@pytest.mark.parametrize(
    "args", [["--k", "0"], ["--k", "1001"], ["--lang", "fr"], ["--query", "x" * 5000], ["--history", "101:abc"]]
)
def test_recommend_bad_options(trained, env, args):
    model, _ = trained
    res = invoke(env, "recommend", "--model", model, "--user", HISTORY_USER, *args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output


# ============================================================== evaluate the saved model
def test_evaluate_saved_model(trained, data_dir, env):
    model, _ = trained
    folder, _ = data_dir
    payload = _json(invoke(env, "evaluate", "--model", model, "--data", folder, "--protocol", "ratio", "--json"))
    assert payload["model"] == "LucidRec"
    assert payload["protocol"] == "ratio" and payload["part"] == "test"
    m = payload["metrics"]
    assert 0.0 <= m["ndcg@10"] <= 1.0
    assert m["users"] > 0
    assert payload["params"]["dim"] == 8


def test_evaluate_saved_model_table(trained, data_dir, env):
    model, _ = trained
    folder, _ = data_dir
    res = invoke(env, "evaluate", "--model", model, "--data", folder, "--protocol", "ratio")
    assert res.exit_code == 0, res.output
    assert "LucidRec" in res.stdout and "ndcg" in res.stdout
