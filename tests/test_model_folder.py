"""Broken model folders end in one clear error, never a traceback (issue 16, item 6).

Every kind of breakage below is made on a copy of a tiny trained model (with an IVF index, so the faiss
files exist too) and checked through three doors: ``Recommender.load``, ``lucidrec recommend --model``
and ``lucidrec serve`` (in process, with uvicorn replaced by a trap that fails the test if the server
would start; plus one real subprocess). Each case runs twice: as broken (the checksum manifest catches
it) and "resealed" (the manifest rewritten to match the broken files, as a folder saved by an older
version or a hand-edited one would be), where the per-file checks must catch it on their own.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lucidrec.cli.application import app
from lucidrec.errors import ModelError
from lucidrec.io import model_check
from lucidrec.recommender import Recommender

pytest.importorskip("fastapi")
pytest.importorskip("faiss")
from test_service import tiny_service_model  # noqa: E402  (the same session model as the service tests)

runner = CliRunner()


# ---------------------------------------------------------------------- the model and its copies
@pytest.fixture(scope="session")
def indexed_model(tmp_path_factory) -> Path:
    """The tiny service model plus an IVF index, written by the same code `lucidrec index` runs."""
    src = tiny_service_model(tmp_path_factory)
    out = tmp_path_factory.mktemp("indexed") / "model"
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("feedback.db*"))
    rec = Recommender.load(out, load_encoder=False)
    rec.build_index(kind="ivf", progress=False, exact_threshold=1, nlist=4).save(out)
    return out


def linked_copy(src: Path, dst: Path) -> Path:
    """A copy whose files are hard links (the 90 MB encoder is not copied 200 times). Every breaker below
    replaces a file (unlink + write) and never writes into one, so the original is never touched."""
    for p in src.rglob("*"):
        q = dst / p.relative_to(src)
        if p.is_dir():
            q.mkdir(parents=True, exist_ok=True)
        else:
            q.parent.mkdir(parents=True, exist_ok=True)
            os.link(p, q)
    return dst


def put(p: Path, data: bytes | str) -> None:
    p.unlink(missing_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)


def truncate(p: Path) -> None:
    put(p, p.read_bytes()[: p.stat().st_size // 2])


def garbage(p: Path) -> None:
    put(p, np.random.default_rng(0).bytes(p.stat().st_size))


def edit_json(name: str, change):
    def breaker(d: Path):
        obj = json.loads((d / name).read_text())
        obj = change(obj) or obj
        put(d / name, json.dumps(obj))

    return breaker


def edit_config(**kw):
    return edit_json("config.json", lambda m: m["config"].update(kw))


def edit_weights(change):
    def breaker(d: Path):
        from safetensors.numpy import load_file, save_file

        w = load_file(str(d / "weights.safetensors"))
        change(w)
        (d / "weights.safetensors").unlink()
        save_file(w, str(d / "weights.safetensors"))

    return breaker


def edit_npz(change):
    def breaker(d: Path):
        with np.load(d / "interactions.npz") as z:
            arrays = {k: z[k] for k in z.files}
        change(arrays)
        (d / "interactions.npz").unlink()
        np.savez(d / "interactions.npz", **arrays)

    return breaker


def shorten_items(n: int, keys=("item", "title", "categories", "year")):
    return edit_json("items.json", lambda c: {k: (v[:-n] if k in keys else v) for k, v in c.items()})


def flip_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-5] ^= 0x01  # inside the last float: still a readable file, only the checksum can tell
    put(p, bytes(data))


def set_nan(w):
    w["F"][0, 0] = np.nan


# (id, breaker, the file the message must name; "manifest_only": the checksum is the only thing that can tell)
CASES = [
    ("config-missing", lambda d: (d / "config.json").unlink(), "config.json"),
    ("config-garbage", lambda d: garbage(d / "config.json"), "config.json"),
    ("config-no-config-object", edit_json("config.json", lambda m: m.pop("config")), "config.json"),
    ("format-version", edit_json("config.json", lambda m: m.update(format_version=99)), "model format 99"),
    ("config-dim-abc", edit_config(dim="abc"), "config.dim"),
    ("config-dim-negative", edit_config(dim=-4), "config.dim"),
    ("config-mode-unknown", edit_config(mode="sideways"), "config.mode"),
    ("config-unknown-key", edit_config(frobnicate=1), "frobnicate"),
    ("config-bool-as-int", edit_config(epochs=True), "config.epochs"),
    ("weights-missing", lambda d: (d / "weights.safetensors").unlink(), "weights.safetensors"),
    ("weights-truncated", lambda d: truncate(d / "weights.safetensors"), "weights.safetensors"),
    ("weights-garbage", lambda d: garbage(d / "weights.safetensors"), "weights.safetensors"),
    ("weights-array-missing", edit_weights(lambda w: w.pop("bias")), "weights.safetensors"),
    ("weights-wrong-shape", edit_weights(lambda w: w.update(H=w["H"][:-1])), "weights.safetensors"),
    ("weights-int-dtype", edit_weights(lambda w: w.update(bias=w["bias"].astype(np.int32))), "weights.safetensors"),
    ("weights-nan", edit_weights(set_nan), "weights.safetensors"),
    ("item-item-truncated", lambda d: truncate(d / "item_item.safetensors"), "item_item.safetensors"),
    ("item-item-missing", lambda d: (d / "item_item.safetensors").unlink(), "item_item.safetensors"),
    ("items-missing", lambda d: (d / "items.json").unlink(), "items.json"),
    ("items-garbage", lambda d: garbage(d / "items.json"), "items.json"),
    ("items-empty-object", lambda d: put(d / "items.json", "{}"), "items.json"),
    ("items-shorter-than-weights", shorten_items(5), "items.json"),
    ("items-titles-shorter", shorten_items(1, keys=("title",)), "items.json"),
    ("items-duplicate-ids", edit_json("items.json", lambda c: c["item"].__setitem__(1, c["item"][0])), "items.json"),
    (
        "items-wrong-types",
        edit_json("items.json", lambda c: c.update(title=[{"x": 1}] * len(c["title"]))),
        "items.json",
    ),  # noqa: E501
    (
        "items-numeric-strings",
        edit_json("items.json", lambda c: c.update(numeric={"price": ["x"] * len(c["item"])})),
        "items.json",
    ),
    ("items-numeric-short", edit_json("items.json", lambda c: c.update(numeric={"price": [1.0]})), "items.json"),
    ("items-fields-not-object", edit_json("items.json", lambda c: c.update(fields=5)), "items.json"),
    ("config-implicit-event-list", edit_json("config.json", lambda m: m.update(implicit_event=[1])), "config.json"),
    ("interactions-missing", lambda d: (d / "interactions.npz").unlink(), "interactions.npz"),
    ("interactions-truncated", lambda d: truncate(d / "interactions.npz"), "interactions.npz"),
    ("interactions-garbage", lambda d: garbage(d / "interactions.npz"), "interactions.npz"),
    ("interactions-array-missing", edit_npz(lambda a: a.pop("rating")), "interactions.npz"),
    ("interactions-lengths", edit_npz(lambda a: a.update(rating=a["rating"][:-3])), "interactions.npz"),
    ("interactions-unknown-item", edit_npz(lambda a: a["item"].__setitem__(0, "no-such-item")), "interactions.npz"),
    ("onnx-corrupt", lambda d: garbage(d / "encoder" / "model.onnx"), "model.onnx"),
    ("onnx-truncated", lambda d: truncate(d / "encoder" / "model.onnx"), "model.onnx"),
    ("tokenizer-corrupt", lambda d: garbage(d / "encoder" / "tokenizer.json"), "tokenizer.json"),
    ("encoder-json-garbage", lambda d: put(d / "encoder" / "encoder.json", "[1, 2"), "encoder.json"),
    ("encoder-dim-mismatch", edit_json("encoder/encoder.json", lambda m: m.update(dim=7)), "encoder.json"),
    ("faiss-corrupt", lambda d: garbage(d / "index.faiss"), "index.faiss"),
    ("faiss-truncated", lambda d: truncate(d / "index.faiss"), "index.faiss"),
    ("index-proj-truncated", lambda d: truncate(d / "index_proj.npz"), "index_proj.npz"),
    ("index-json-garbage", lambda d: put(d / "index.json", "{"), "index.json"),
    ("manifest-garbage", lambda d: put(d / "manifest.json", "not json"), "manifest.json"),
    (
        "manifest-escapes-folder",
        edit_json("manifest.json", lambda m: m["files"].update({"../x": m["files"]["items.json"]})),
        "manifest.json",
    ),  # noqa: E501
    ("weights-byte-flipped", lambda d: flip_byte(d / "weights.safetensors"), "weights.safetensors"),
]
MANIFEST_ONLY = {"weights-byte-flipped"}  # a valid file with other numbers: only the checksum tells
ABOUT_MANIFEST = {"manifest-garbage", "manifest-escapes-folder"}  # resealing would repair these
ENCODER_CASES = {c[0] for c in CASES if c[2] in ("model.onnx", "tokenizer.json", "encoder.json")}


def case_params():
    for case in CASES:
        yield pytest.param(*case, False, id=case[0])
        if case[0] not in MANIFEST_ONLY | ABOUT_MANIFEST:
            yield pytest.param(*case, True, id=case[0] + "-resealed")


@pytest.fixture
def break_folder(indexed_model, tmp_path):
    def make(breaker, reseal: bool) -> Path:
        d = linked_copy(indexed_model, tmp_path / "model")
        breaker(d)
        if reseal:
            (d / "manifest.json").unlink()
            model_check.write_manifest(d)  # the manifest now agrees with the broken files
        return d

    return make


def assert_clear(text: str, names: str) -> None:
    """One line names the file and the fix: the CLI never folds a message (issue 27.3: a fold that fell
    inside "model format 99" depended on the temp path's length), so no test joins lines back."""
    assert "Traceback" not in text, text
    line = next((ln for ln in text.splitlines() if names in ln), None)
    assert line is not None, text
    assert "Fix:" in line, text


# ---------------------------------------------------------------------- the three doors
@pytest.mark.parametrize("case, breaker, names, reseal", list(case_params()))
def test_load_refuses_a_broken_folder_clearly(break_folder, case, breaker, names, reseal):
    d = break_folder(breaker, reseal)
    with pytest.raises(ModelError) as e:
        Recommender.load(d)
    assert_clear(str(e.value), names)


@pytest.mark.parametrize("case, breaker, names, reseal", list(case_params()))
def test_cli_recommend_refuses_a_broken_folder_clearly(break_folder, case, breaker, names, reseal):
    d = break_folder(breaker, reseal)
    args = ["recommend", "--model", str(d), "--user", "u5"]
    if case in ENCODER_CASES:
        args += ["--query", "something funny"]  # only a query loads the encoder
    res = runner.invoke(app, args)
    assert res.exit_code not in (0, None), res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert_clear(res.output, names)


@pytest.fixture
def no_server(monkeypatch):
    """uvicorn.run replaced: the server must never start on a broken folder (and a sound one reaches it)."""
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append((a, kw)))
    return calls


@pytest.mark.parametrize("case, breaker, names, reseal", list(case_params()))
def test_serve_refuses_a_broken_folder_clearly(break_folder, no_server, case, breaker, names, reseal, tmp_path):
    d = break_folder(breaker, reseal)
    res = runner.invoke(app, ["serve", "--model", str(d), "--db", str(tmp_path / "f.db"), "--port", "0"])
    assert res.exit_code not in (0, None), res.output
    assert no_server == [], "the server started on a broken folder"
    assert_clear(res.output, names)


def test_serve_subprocess_exits_with_the_clear_message(break_folder, tmp_path):
    """A real `lucidrec serve` on a folder whose items.json is shorter than its weights (the issue's
    case that served /health then 500 on every /recommend)."""
    d = break_folder(shorten_items(5), reseal=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    cmd = [
        sys.executable,
        "-m",
        "lucidrec.cli",
        "serve",
        "--model",
        str(d),
        "--db",
        str(tmp_path / "f.db"),
        "--port",
        "0",
    ]  # noqa: E501
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    out = p.stdout + p.stderr
    assert p.returncode not in (0, 3), out  # 3: uvicorn's "Application startup failed"
    assert "items.json" in out and "the weights have" in out and "Fix:" in out, out
    assert "Traceback" not in out and "Application startup failed" not in out, out
    assert not (tmp_path / "f.db").exists(), "the db was seeded from a broken folder"


# ---------------------------------------------------------------------- sound folders
def test_a_sound_folder_passes_every_door(indexed_model, tmp_path, no_server):
    d = linked_copy(indexed_model, tmp_path / "model")
    rec = Recommender.load(d)
    assert rec.retriever is not None and rec.retriever.kind == "ivf" and rec._query_encoder is not None
    res = runner.invoke(app, ["recommend", "--model", str(d), "--user", "u5", "--query", "comedy"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["serve", "--model", str(d), "--db", str(tmp_path / "f.db"), "--port", "0"])
    assert res.exit_code == 0, res.output
    assert len(no_server) == 1


def test_manifest_lists_every_file_with_its_sha256(indexed_model):
    files = model_check.read_manifest(indexed_model)
    present = {f.name for f in model_check.FILES if (indexed_model / f.name).is_file()}
    assert set(files) == present and "index.faiss" in present and "encoder/model.onnx" in present
    for name, entry in files.items():
        assert entry["sha256"] == model_check.sha256_file(indexed_model / name)
        assert entry["bytes"] == (indexed_model / name).stat().st_size


def test_a_folder_saved_before_manifests_still_loads(indexed_model, tmp_path):
    d = linked_copy(indexed_model, tmp_path / "model")
    (d / "manifest.json").unlink()
    assert Recommender.load(d).scorer.n_items == Recommender.load(indexed_model).scorer.n_items


def test_a_deleted_index_is_no_error(indexed_model, tmp_path):
    """Retriever's own fix for a stale index is 'delete the index files': the manifest must allow it."""
    d = linked_copy(indexed_model, tmp_path / "model")
    for f in ("index.json", "index_proj.npz", "index.faiss"):
        (d / f).unlink()
    assert Recommender.load(d).retriever is None


def test_rebuilding_the_index_updates_the_manifest(indexed_model, tmp_path):
    d = linked_copy(indexed_model, tmp_path / "model")
    for f in ("index.json", "index_proj.npz", "index.faiss"):
        (d / f).unlink()  # links: never rewrite the shared inode
    rec = Recommender.load(d, load_encoder=False)
    rec.build_index(kind="ivf", progress=False, exact_threshold=1, nlist=2).save(d)
    assert Recommender.load(d).retriever.index.nlist == 2
