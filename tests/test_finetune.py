"""Fine-tuning the text encoder on behaviour: pairs, training, resume, LoRA merge, ONNX round trip, cache keys.

Uses the packaged all-MiniLM-L6-v2 with tiny step counts, batch 8 and 16 tokens on a generated catalogue whose
users each watch one "genre" cluster, so co-occurrence carries a signal the text can learn.
"""

from __future__ import annotations

import json
import os
import signal

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("sentence_transformers")

from safetensors.numpy import load_file  # noqa: E402

import lucidrec.data  # noqa: E402
from lucidrec.encoders import SentenceTransformerEncoder, default_model_path  # noqa: E402
from lucidrec.errors import ConfigError, LucidrecError, ModelError  # noqa: E402
from lucidrec.finetune import (  # noqa: E402
    BatchSchedule,
    FinetuneConfig,
    build_pairs,
    cooccurrence_pairs,
    finetune_encoder,
)
from lucidrec.splits import split  # noqa: E402

CLUSTERS = {
    "Sci-Fi": ["Star", "Galaxy", "Robot", "Alien", "Orbit", "Planet", "Laser", "Rocket"],
    "Romance": ["Love", "Wedding", "Heart", "Kiss", "Paris", "Valentine", "Sweet", "Bride"],
    "Horror": ["Blood", "Ghost", "Zombie", "Scream", "Grave", "Curse", "Demon", "Night"],
    "Western": ["Outlaw", "Sheriff", "Saloon", "Cowboy", "Canyon", "Rider", "Gun", "Frontier"],
}


def _behaviour_dataset(seed: int = 3):
    """32 items in 4 clusters; 48 users, each watching 6 items of one cluster (plus one stray item)."""
    rng = np.random.default_rng(seed)
    items, cluster_of = [], []
    for c, (genre, words) in enumerate(CLUSTERS.items()):
        for k, w in enumerate(words):
            items.append({"item": 100 + len(items), "title": f"{w} Story", "year": 1980 + k, "genres": genre})
            cluster_of.append(c)
    cluster_of = np.asarray(cluster_of)
    rows = []
    for u in range(48):
        own = np.flatnonzero(cluster_of == u % 4)
        chosen = list(rng.choice(own, size=6, replace=False)) + [int(rng.integers(0, len(items)))]
        for t, i in enumerate(chosen):
            rows.append({"user": f"u{u}", "item": 100 + int(i), "rating": 4, "timestamp": 1000 * u + t})
    inter = pd.DataFrame(rows).drop_duplicates(["user", "item"])
    return lucidrec.data.from_dataframes(inter, pd.DataFrame(items), name="behaviour")


def _cfg(**kw) -> FinetuneConfig:
    base = dict(
        steps=6,
        batch_size=8,
        lr=1e-4,
        warmup=1,
        max_length=16,
        window=3,
        valid_items=0.2,
        valid_pairs=16,
        eval_every=3,
        checkpoint_every=2,
        patience=10,
        seed=11,
    )
    base.update(kw)
    return FinetuneConfig(**base)


@pytest.fixture(scope="module")
def behaviour():
    return _behaviour_dataset()


@pytest.fixture(scope="module")
def finetuned(behaviour, tmp_path_factory):
    """One full fine-tuning run, exported to ONNX, shared by the tests that only read its output."""
    out = tmp_path_factory.mktemp("enc") / "full"
    report = finetune_encoder(
        behaviour, behaviour.interactions, out, _cfg(steps=8, eval_every=4, checkpoint_every=100), progress=False
    )
    return out, report


def _weights(folder) -> dict[str, np.ndarray]:
    return load_file(str(folder / "model.safetensors"))


def _train_loss(folder, behaviour, batch: np.ndarray) -> float:
    """Loss of a fixed batch of training pairs under the encoder saved in ``folder`` (eval mode)."""
    from lucidrec.data.text import ItemTextBuilder
    from lucidrec.finetune import _Texts, pair_loss

    model = SentenceTransformerEncoder(str(folder)).model
    model.max_seq_length = 16
    model.eval()
    import torch

    with torch.no_grad():
        loss, _ = pair_loss(model, _Texts(model, ItemTextBuilder().build(behaviour)), batch, 20.0)
    return float(loss)


# ---------------------------------------------------------------- pairs
def test_pairs_are_time_neighbours_of_one_user():
    frame = pd.DataFrame(
        {"uidx": [0, 0, 0, 1, 1], "iidx": [5, 6, 7, 5, 9], "timestamp": [3, 1, 2, 0, 1], "rating": 1.0}
    )
    pairs = {tuple(p) for p in cooccurrence_pairs(frame, window=1).tolist()}
    # user 0 in time order: 6, 7, 5; user 1: 5, 9. Never a pair across users, never beyond the window.
    assert pairs == {(6, 7), (7, 5), (5, 9)}
    assert len(cooccurrence_pairs(frame, window=2)) == 4


def test_validation_items_never_in_training_pairs_and_cold_items_rejected(behaviour):
    s = split(behaviour, "cold", seed=5)
    cfg = _cfg()
    pairs = build_pairs(s.train, cfg, forbidden_items=s.cold_items)
    assert not np.isin(pairs.train, s.cold_items).any() and not np.isin(pairs.valid, s.cold_items).any()
    assert not np.isin(pairs.train, pairs.valid_items).any()
    assert (
        np.isin(pairs.valid[:, 1], pairs.valid_items).all() and not np.isin(pairs.valid[:, 0], pairs.valid_items).any()
    )
    with pytest.raises(ModelError, match="cold"):
        build_pairs(behaviour.interactions, cfg, forbidden_items=s.cold_items)


def test_batch_schedule_is_a_function_of_seed_and_step():
    pairs = np.arange(40).reshape(20, 2)
    a, b = BatchSchedule(pairs, 4, seed=1), BatchSchedule(pairs, 4, seed=1)
    assert np.array_equal(a.batch(7), b.batch(7)) and np.array_equal(a.batch(2), BatchSchedule(pairs, 4, 1).batch(2))
    assert not np.array_equal(a.batch(0), BatchSchedule(pairs, 4, seed=2).batch(0))


def test_bad_options_raise_config_errors(behaviour, tmp_path):
    with pytest.raises(ConfigError, match="batch-size"):
        FinetuneConfig(batch_size=1)
    with pytest.raises(ConfigError, match="lr"):
        FinetuneConfig(lr=5.0)
    with pytest.raises(ConfigError, match="resume"):
        finetune_encoder(behaviour, behaviour.interactions, tmp_path / "none", _cfg(), resume=True, progress=False)


# ---------------------------------------------------------------- training
def test_few_steps_change_weights_lower_loss_and_write_report(finetuned, behaviour):
    out, report = finetuned
    base = _weights(default_model_path())
    tuned = _weights(out)
    assert set(tuned) <= set(base)  # the same BERT weights (the base also stores a position_ids buffer)
    assert max(float(np.abs(base[k] - tuned[k]).max()) for k in tuned) > 1e-4
    batch = BatchSchedule(build_pairs(behaviour.interactions, _cfg()).train, 8, seed=0).batch(0)
    assert _train_loss(out, behaviour, batch) < _train_loss(default_model_path(), behaviour, batch)
    hist = report["history"]
    assert [h["step"] for h in hist] == [0, 4, 8]
    assert min(h["val_loss"] for h in hist[1:]) < hist[0]["val_loss"]  # held-out items' pairs got closer
    saved = json.loads((out / "finetune.json").read_text())
    assert saved["steps"] == 8 and saved["mode"] == "full" and saved["peak_rss_mb"] > 0
    assert not (out / "checkpoint").exists()


def test_resume_after_interrupt_matches_uninterrupted_run(behaviour, tmp_path):
    cfg = _cfg(steps=5, eval_every=2, checkpoint_every=2)  # periodic checkpoint at 2, Ctrl-C's at 3
    straight = finetune_encoder(
        behaviour, behaviour.interactions, tmp_path / "a", cfg, progress=False, export_onnx=False
    )

    def stop_at_3(step: int, loss: float):
        if step == 3:  # a real Ctrl-C: the handler defers it to the step boundary and checkpoints there
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(LucidrecError, match="--resume"):
        finetune_encoder(
            behaviour,
            behaviour.interactions,
            tmp_path / "b",
            cfg,
            progress=False,
            export_onnx=False,
            callback=stop_at_3,
        )
    assert json.loads((tmp_path / "b" / "checkpoint" / "state.json").read_text())["step"] == 3
    with pytest.raises(ConfigError, match="--resume"):  # an unfinished run is never silently discarded
        finetune_encoder(behaviour, behaviour.interactions, tmp_path / "b", cfg, progress=False, export_onnx=False)
    with pytest.raises(ConfigError, match="lr"):  # nor continued with other hyperparameters
        finetune_encoder(behaviour, behaviour.interactions, tmp_path / "b", _cfg(lr=3e-4), resume=True, progress=False)
    resumed = finetune_encoder(
        behaviour, behaviour.interactions, tmp_path / "b", cfg, resume=True, progress=False, export_onnx=False
    )
    assert resumed["steps"] == straight["steps"] == 5
    assert resumed["best_step"] == straight["best_step"]
    for h1, h2 in zip(straight["history"], resumed["history"]):
        assert h1["step"] == h2["step"] and h1["val_loss"] == pytest.approx(h2["val_loss"], abs=1e-4)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5


def test_lora_run_merges_into_an_ordinary_folder(behaviour, tmp_path):
    out = tmp_path / "lora"
    report = finetune_encoder(
        behaviour,
        behaviour.interactions,
        out,
        _cfg(lora=True, lr=2e-3, steps=4, eval_every=2),
        progress=False,
        export_onnx=False,
    )
    assert report["mode"] == "lora" and report["n_trainable_params"] < 500_000
    assert not (out / "adapter_config.json").exists() and (out / "modules.json").exists()
    base, merged = _weights(default_model_path()), _weights(out)
    assert set(merged) <= set(base)  # no lora_A / lora_B / base_layer names: plain BERT weights
    if report["best_step"] > 0:  # adapters only change the attention projections
        changed = [k for k in merged if float(np.abs(base[k] - merged[k]).max()) > 0]
        assert changed and all(any(p in k for p in ("query", "key", "value")) for k in changed)
    enc = SentenceTransformerEncoder(str(out))
    assert enc.encode(["Star Story (1980). Genres: Sci-Fi."]).shape == (1, 384)


# ---------------------------------------------------------------- serving
def test_finetuned_folder_round_trips_through_onnx(finetuned, behaviour, tmp_path):
    from lucidrec.data.text import ItemTextBuilder
    from lucidrec.encoders import OnnxEncoder

    out, report = finetuned
    texts = ItemTextBuilder().build(behaviour)
    st = SentenceTransformerEncoder(str(out))
    assert st.model.max_seq_length == 256  # saved at the serving limit, not the training one
    emb = st.encode(texts)
    assert float(np.abs(emb - OnnxEncoder(out / "onnx").encode(texts)).max()) < 1e-5
    # and through a second export, as `lucidrec train --encoder DIR` does when it saves a model folder
    st.export_onnx(tmp_path / "encoder")
    assert float(np.abs(emb - OnnxEncoder(tmp_path / "encoder").encode(texts)).max()) < 1e-5
    assert report["onnx_max_abs_diff"] < 1e-5
    # the fine-tuned encoder really differs from the default one
    default = SentenceTransformerEncoder().encode(texts)
    assert float(np.abs(emb - default).max()) > 1e-3


def test_cache_key_tells_refinetuned_folder_apart(finetuned, tmp_path):
    """Same folder name, same file size, other weights: the embedding cache must not reuse old vectors."""
    out, _ = finetuned
    enc = SentenceTransformerEncoder.__new__(SentenceTransformerEncoder)
    enc.path, enc.name = out, out.name
    before = enc.key
    copy = tmp_path / out.name
    copy.mkdir()
    raw = bytearray((out / "model.safetensors").read_bytes())
    raw[-4:] = bytes(b ^ 0xFF for b in raw[-4:])  # flip the last weight's bytes: same size, other content
    (copy / "model.safetensors").write_bytes(bytes(raw))
    other = SentenceTransformerEncoder.__new__(SentenceTransformerEncoder)
    other.path, other.name = copy, copy.name
    assert other.key != before and other.key.startswith(out.name)
    default = SentenceTransformerEncoder.__new__(SentenceTransformerEncoder)
    default.path, default.name = default_model_path(), "all-MiniLM-L6-v2"
    assert default.key != before


def test_cli_reports_bad_option_without_traceback():
    from typer.testing import CliRunner

    from lucidrec.cli.application import app

    res = CliRunner().invoke(app, ["finetune-encoder", "--batch-size", "1", "--out", "/tmp/never-written"])
    assert res.exit_code == 2
    assert "batch-size" in res.output and "Fix:" in res.output and "Traceback" not in res.output
