"""The model folder: how a :class:`lucidrec.artifact.TrainedModel` is written and read back (without torch).

Layout: ``config.json`` (format version, config, catalog metadata), ``weights.safetensors`` (towers),
``item_item.safetensors`` (closed-form block), ``items.json`` (catalog: ids, titles, categories, years, and
per-field values / numeric fields when the catalogue has them), ``interactions.npz`` (the known histories),
``vocabulary.json`` (the query vocabulary, :mod:`lucidrec.query_synonyms`), ``encoder/`` (ONNX text encoder +
tokenizer), optionally ``query_synonyms.json`` and the candidate index files (:mod:`lucidrec.retrieval`), and
``manifest.json`` (sha256 of each file, written last, verified at load; :mod:`lucidrec.io.model_check` also checks
that the files agree with each other).
JSON and npz rather than parquet: reading them needs no pyarrow/pandas import, which was most of a fresh
``lucidrec recommend`` process's start-up time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from lucidrec.artifact import ModelMeta, TrainedModel
from lucidrec.catalog import Catalogue
from lucidrec.errors import ModelError
from lucidrec.io import model_check as check
from lucidrec.models.item_item import is_sparse
from lucidrec.models.scoring import HybridScorer
from lucidrec.user_history import KnownHistories

FORMAT_VERSION = 1
#: The item-item block's file (dense ``B`` or CSR arrays, see save_item_item).
ITEM_ITEM_FILE = "item_item.safetensors"


def save(model: TrainedModel, out_dir: str | Path, export_encoder: bool = True) -> Path:
    """Write ``model`` to ``out_dir`` (created if needed); files of an earlier model there are replaced."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        # float16 stays float16 (the text block of large catalogs, lucidrec.models.scoring.TEXT_FLOAT16_FROM)
        {
            k: np.ascontiguousarray(v, dtype=v.dtype if v.dtype == np.float16 else np.float32)
            for k, v in model.scorer.w.items()
        },
        str(out / "weights.safetensors"),
    )
    save_item_item(model.scorer.B, out)
    cat = model.catalogue
    (out / "items.json").write_text(json.dumps(cat.to_items(), ensure_ascii=False))
    if cat.vocabulary is not None:
        # The query vocabulary travels with the model: edit this file to change how one model reads queries.
        (out / "vocabulary.json").write_text(json.dumps(cat.vocabulary.to_dict(), ensure_ascii=False, indent=1))
    if model.query_synonyms:
        # A loaded folder's own synonyms (query_synonyms.json) are kept when it is saved again (a copy, Ray).
        (out / "query_synonyms.json").write_text(json.dumps(model.query_synonyms, ensure_ascii=False, indent=1))
    _save_known(model, out)
    if export_encoder:
        _export_encoder(model, out)
    (out / "config.json").write_text(json.dumps(_meta(model), indent=2))
    from lucidrec.understanding import FILES as UNDERSTANDING_FILES

    if model.understanding is not None:
        model.understanding.save(out)  # the language model's reading of this catalogue (lucidrec.understanding)
    else:
        for f in UNDERSTANDING_FILES:
            (out / f).unlink(missing_ok=True)
    from lucidrec.retrieval import INDEX_FILES

    if model.index is not None:
        model.index.save(out)  # the candidate index travels with the model (lucidrec.retrieval)
    else:
        for f in INDEX_FILES:  # an index left from an earlier model would not match these weights
            (out / f).unlink(missing_ok=True)
    check.write_manifest(out)  # last: a save cut short leaves the old manifest, which then fails to verify
    return out


def _save_known(model: TrainedModel, out: Path) -> None:
    known = model.known
    np.savez(
        out / "interactions.npz",
        user=known.users.astype(str),
        item=model.catalogue.item_ids[known.items].astype(str),
        rating=known.ratings,
        timestamp=known.times,
        event=known.events.astype(str),
    )
    # Users' interactions are personal data: readable by the folder's owner only (issue 16).
    os.chmod(out / "interactions.npz", 0o600)


def _export_encoder(model: TrainedModel, out: Path) -> None:
    """The text encoder's ONNX export: written by an encoder that can export itself (the one training
    used), else copied from the folder the model was loaded from."""
    enc = model.text_encoder
    if enc is not None and hasattr(enc, "export_onnx"):
        enc.export_onnx(out / "encoder")
    elif not (out / "encoder" / "model.onnx").exists():
        src = model.source_dir
        if src is None or not (Path(src) / "encoder" / "model.onnx").exists():
            raise ModelError(
                "no encoder to export: this model was loaded without one. "
                "Fix: save with export_encoder=False, or load the model from a folder that has encoder/."
            )
        import shutil

        # A loaded model carries the ONNX export it was loaded from: copy it along.
        shutil.copytree(Path(src) / "encoder", out / "encoder", dirs_exist_ok=True)


def _meta(model: TrainedModel) -> dict:
    """config.json's content."""
    enc = model.text_encoder
    return {
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "dataset": model.catalogue.name,
        "ease_reg": model.meta.ease_reg,
        "train_report": model.meta.train_report,
        "feature_space": model.meta.feature_space,
        "encoder": getattr(enc, "name", None) if enc is not None else model.meta.encoder,
        "implicit_event": model.catalogue.implicit_event,
    }


def save_item_item(B, out: Path) -> None:
    """The item-item block in :data:`ITEM_ITEM_FILE`: ``B`` for a dense block, ``indptr``/``indices``/
    ``data``/``shape`` for a CSR one (the sparse block, O(n N)); no file when the model has none."""
    from safetensors.numpy import save_file

    path = out / ITEM_ITEM_FILE
    if B is None:
        path.unlink(missing_ok=True)
    elif is_sparse(B):
        B = B.tocsr()
        arrays = {
            "indptr": np.ascontiguousarray(B.indptr, dtype=np.int64),
            "indices": np.ascontiguousarray(B.indices, dtype=np.int32),
            "data": np.ascontiguousarray(B.data, dtype=np.float32),
            "shape": np.asarray(B.shape, dtype=np.int64),
        }
        save_file(arrays, str(path))
    else:
        save_file({"B": np.ascontiguousarray(B, dtype=np.float32)}, str(path))


def load_item_item(d: Path):
    """The block written by :func:`save_item_item` (dense array, scipy CSR matrix, or None), checked."""
    from safetensors.numpy import load_file

    path = d / ITEM_ITEM_FILE
    if not path.exists():
        return None
    arrays = load_file(str(path))
    if "B" in arrays:
        return arrays["B"]
    if not {"indptr", "indices", "data", "shape"} <= set(arrays):
        raise ModelError(f"{path}: neither a dense 'B' nor CSR 'indptr/indices/data/shape'. Fix: retrain the model.")
    import scipy.sparse as sp

    shape = tuple(int(v) for v in arrays["shape"])
    try:
        B = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
        B.check_format(full_check=True)
    except ValueError as e:
        raise ModelError(f"{path}: corrupt sparse item-item block ({e}). Fix: retrain the model.") from None
    return B


def read_meta(d: Path) -> dict:
    """config.json, checked: a clear error for a folder that is not a model of this format."""
    if not (d / "config.json").exists():
        raise ModelError(
            f"{d}: not a lucidrec model folder (no config.json). Fix: pass the folder written by "
            "'lucidrec train --out DIR'."
        )
    with check.reading(d, "config.json"):
        meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise check.broken(d, "config.json", "no 'config' object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{d}: model format {meta.get('format_version')!r} is not supported by this version "
            f"(expects {FORMAT_VERSION}). Fix: retrain with this version of lucidrec ('lucidrec train --out DIR')."
        )
    for f in check.FILES:
        if f.required and not (d / f.name).is_file():
            raise check.broken(d, f.name, "is missing")
    check.check_config(d, meta["config"])
    check.check_meta(d, meta)
    return meta


def load(model_dir: str | Path, load_encoder: bool = True, encoder_threads: int | None = None) -> TrainedModel:
    """Read a model folder into a :class:`TrainedModel`, ready to serve. A broken folder raises one
    ModelError naming the file and the fix (the checksums, verified alongside, then each file's shape and
    agreement with the others)."""
    d = Path(model_dir)
    meta = read_meta(d)
    verify = check.BackgroundVerify(d, {"model", "index"} | ({"encoder"} if load_encoder else set()))
    try:
        model = _read(d, meta, load_encoder, encoder_threads)
    except Exception:
        verify.result()  # a checksum mismatch is the root cause of a file that failed to read: say that
        raise
    verify.result()
    return model


def _read(d: Path, meta: dict, load_encoder: bool, encoder_threads: int | None) -> TrainedModel:
    from safetensors.numpy import load_file

    from lucidrec.models.config import HybridConfig

    config = HybridConfig(**meta["config"])
    with check.reading(d, "weights.safetensors") as p:
        weights = load_file(str(p))
    with check.reading(d, ITEM_ITEM_FILE):
        B = load_item_item(d)
    n_items = check.check_weights(d, weights, B, bool(config.item_item))
    scorer = HybridScorer(weights, B)
    catalogue = _read_catalogue(d, meta, n_items)
    with check.reading(d, "interactions.npz") as p, np.load(p) as z:
        a = check.check_interactions(d, z)
    a = _without_forgotten(d, a)
    known = KnownHistories.from_ids(
        catalogue.item_ids,
        a["user"],
        a["item"],
        a["rating"].astype(np.float64),
        a["timestamp"].astype(np.float64),
        a["event"],
    )
    check.check_known_items(d, known, a["item"])
    synonyms = read_synonyms(d / "query_synonyms.json") if (d / "query_synonyms.json").exists() else None
    encoder = None
    if load_encoder and (d / "encoder" / "model.onnx").exists():
        encoder = _load_encoder(d, encoder_threads, scorer.w["T"].shape[1])
    from lucidrec.understanding import RequestUnderstanding

    with check.reading(d, "understanding.npz"):  # small arrays; the encoder's weights load on first request
        understanding = RequestUnderstanding.load(d, n_items)
    model = TrainedModel(
        config=config,
        catalogue=catalogue,
        scorer=scorer,
        known=known,
        meta=ModelMeta(
            meta.get("train_report") or {}, meta.get("ease_reg"), meta.get("feature_space"), meta.get("encoder")
        ),
        text_encoder=encoder,
        understanding=understanding,
        query_synonyms=synonyms,
        source_dir=d,
    )
    return model.with_index(_load_index(d, scorer))  # None when the folder has no index


def _read_catalogue(d: Path, meta: dict, n_items: int) -> Catalogue:
    with check.reading(d, "items.json") as p:
        items = json.loads(p.read_text(encoding="utf-8"))
    check.check_items(d, items, n_items)
    vocabulary = None
    if (d / "vocabulary.json").exists():
        from lucidrec.query_synonyms import read_vocabulary

        with check.reading(d, "vocabulary.json") as p:
            vocabulary = read_vocabulary(p)
    return Catalogue.from_items(items, vocabulary, meta.get("implicit_event"), meta.get("dataset"))


def _without_forgotten(d: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The interactions less every user tombstoned in the folder (``forgotten_users.txt``): whichever door
    loads the folder (recommend, batch, serve and the database it seeds), a forgotten user is a stranger."""
    from lucidrec.forgetting import forgotten_mask, read

    gone = forgotten_mask(arrays["user"], read(d))
    if not gone.any():
        return arrays
    return {k: v[~gone] for k, v in arrays.items()}


def _load_encoder(d: Path, threads: int | None, text_dim: int):
    """The ONNX encoder. When it fails to load, the tokenizer is tried alone to name the broken file (only
    then: loading it twice on every start cost about 60 ms)."""
    from lucidrec.encoders import OnnxEncoder
    from lucidrec.errors import LucidrecError

    for name in ("encoder/encoder.json", "encoder/tokenizer.json"):
        if not (d / name).is_file():
            raise check.broken(d, name, "is missing")
    with check.reading(d, "encoder/encoder.json") as p:
        check.check_encoder(d, json.loads(p.read_text(encoding="utf-8")), text_dim)
    try:
        return OnnxEncoder(d / "encoder", threads=threads)
    except LucidrecError:
        raise
    except Exception:
        from tokenizers import Tokenizer

        with check.reading(d, "encoder/tokenizer.json") as p:
            Tokenizer.from_file(str(p))
        with check.reading(d, "encoder/model.onnx"):
            raise  # the tokenizer reads: the ONNX model is the broken file


def _load_index(d: Path, scorer: HybridScorer):
    from lucidrec.retrieval import Retriever

    if (d / "index_proj.npz").exists():
        with check.reading(d, "index_proj.npz") as p, np.load(p) as z:
            [z[k] for k in z.files]  # reads (and CRC-checks) every array
    with check.reading(d, "index.faiss"):
        r = Retriever.load(d, scorer)
    if r is not None and r.index is not None and getattr(r.index, "ntotal", scorer.n_items) != scorer.n_items:
        raise check.broken(d, "index.faiss", f"indexes {r.index.ntotal} items, the weights have {scorer.n_items}")
    return r


def check_folder(model_dir: str | Path, encoder_threads: int | None = 1) -> TrainedModel:
    """Everything :func:`load` checks, encoder and index included (``lucidrec serve`` calls it before it
    starts the server, so that a broken folder ends in one clear error rather than a failed startup).
    Returns the loaded model, so a single-process server serves it instead of loading it again."""
    return load(model_dir, load_encoder=True, encoder_threads=encoder_threads)


def read_synonyms(path: Path) -> dict[str, dict[str, str]]:
    """A model folder's ``query_synonyms.json``: ``{"en": {"funny": "Comedy"}, "zh": {...}}``."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: not valid JSON ({e}). Fix: correct the file or delete it.") from None
    ok = isinstance(table, dict) and all(
        isinstance(t, dict) and all(isinstance(a, str) and isinstance(b, str) for a, b in t.items())
        for t in table.values()
    )
    if not ok:
        raise ModelError(
            f'{path}: must map a language to {{"phrase": "catalog value"}}, e.g. {{"en": {{"funny": "Comedy"}}}}. '
            "Fix: correct the file or delete it."
        )
    return table


__all__ = [
    "FORMAT_VERSION",
    "ITEM_ITEM_FILE",
    "check_folder",
    "load",
    "load_item_item",
    "read_meta",
    "read_synonyms",
    "save",
    "save_item_item",
]
