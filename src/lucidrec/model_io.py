"""The model folder: what a trained Recommender writes, and how it is read back (without torch).

Layout: ``config.json`` (format version, config, catalog metadata), ``weights.safetensors`` (towers),
``item_item.safetensors`` (closed-form block), ``items.json`` (catalog: ids, titles, categories, years, and
per-field values / numeric fields when the catalogue has them), ``interactions.npz`` (the known histories),
``vocabulary.json`` (the query vocabulary, :mod:`lucidrec.query_synonyms`), ``encoder/`` (ONNX text encoder +
tokenizer), optionally ``query_synonyms.json`` and the candidate index files (:mod:`lucidrec.retrieval`).
JSON and npz rather than parquet: reading them needs no pyarrow/pandas import, which was most of a fresh
``lucidrec recommend`` process's start-up time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lucidrec.errors import ModelError
from lucidrec.models.scoring import HybridScorer
from lucidrec.user_history import KnownHistories

if TYPE_CHECKING:
    from lucidrec.recommender import Recommender

FORMAT_VERSION = 1


def save(rec: Recommender, out_dir: str | Path, export_encoder: bool = True) -> Path:
    """Write ``rec`` to ``out_dir`` (created if needed); files of an earlier model there are replaced."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in rec.scorer.w.items()},
        str(out / "weights.safetensors"),
    )
    if rec.scorer.B is not None:
        save_file({"B": np.ascontiguousarray(rec.scorer.B)}, str(out / "item_item.safetensors"))
    elif (out / "item_item.safetensors").exists():
        (out / "item_item.safetensors").unlink()
    catalog = {
        "item": [str(i) for i in rec.item_ids],
        "title": [str(t) for t in rec.titles],
        "categories": [list(c) for c in rec.categories],
        "year": [None if not np.isfinite(y) else float(y) for y in rec.years],
    }
    if getattr(rec, "fields", None):
        catalog["fields"] = rec.fields
    if getattr(rec, "numeric", None):
        catalog["numeric"] = {k: [None if not np.isfinite(x) else float(x) for x in v] for k, v in rec.numeric.items()}
    (out / "items.json").write_text(json.dumps(catalog, ensure_ascii=False))
    if getattr(rec, "vocabulary", None) is not None:
        # The query vocabulary travels with the model: edit this file to change how one model reads queries.
        (out / "vocabulary.json").write_text(json.dumps(rec.vocabulary.to_dict(), ensure_ascii=False, indent=1))
    known = rec.known
    np.savez(
        out / "interactions.npz",
        user=known.users.astype(str),
        item=rec.item_ids[known.items].astype(str),
        rating=known.ratings,
        timestamp=known.times,
        event=known.events.astype(str),
    )
    if export_encoder:
        if rec._st_encoder is not None:
            rec._st_encoder.export_onnx(out / "encoder")
        elif not (out / "encoder" / "model.onnx").exists():
            raise ModelError("no encoder to export: this model was loaded without one.")
    meta = {
        "format_version": FORMAT_VERSION,
        "config": rec.config.to_dict(),
        "dataset": rec.dataset_name,
        "ease_reg": rec.ease_reg,
        "train_report": rec.train_report,
        "feature_space": rec.feature_space.to_dict() if getattr(rec, "feature_space", None) is not None else None,
        "encoder": rec._query_encoder.name if rec._query_encoder is not None else None,
        "implicit_event": rec.implicit_event,
    }
    (out / "config.json").write_text(json.dumps(meta, indent=2))
    from lucidrec.retrieval import INDEX_FILES

    if getattr(rec, "retriever", None) is not None:
        rec.retriever.save(out)  # the candidate index travels with the model (lucidrec.retrieval)
    else:
        for f in INDEX_FILES:  # an index left from an earlier model would not match these weights
            (out / f).unlink(missing_ok=True)
    return out


def read_meta(d: Path) -> dict:
    """config.json, checked: a clear error for a folder that is not a model of this format."""
    if not (d / "config.json").exists():
        raise ModelError(
            f"{d}: not a lucidrec model folder (no config.json). Fix: pass the folder written by "
            "'lucidrec train --out DIR'."
        )
    try:
        meta = json.loads((d / "config.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{d / 'config.json'}: not valid JSON ({e}). Fix: retrain the model.") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise ModelError(f"{d / 'config.json'}: no 'config' object. Fix: retrain the model or restore the file.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelError(
            f"{d}: model format {meta.get('format_version')} is not supported by this version "
            f"(expects {FORMAT_VERSION}). Fix: retrain with this version of lucidrec."
        )
    for f in ("weights.safetensors", "items.json", "interactions.npz"):
        if not (d / f).exists():
            raise ModelError(f"{d}: missing {f}. Fix: retrain the model or copy the whole folder.")
    return meta


def load(cls, model_dir: str | Path, load_encoder: bool = True, encoder_threads: int | None = None) -> Recommender:
    """Read a model folder into a new ``cls`` (a Recommender), ready to serve."""
    from safetensors.numpy import load_file

    from lucidrec.models.config import HybridConfig

    d = Path(model_dir)
    meta = read_meta(d)
    try:
        config = HybridConfig(**meta["config"])
    except TypeError as e:
        raise ModelError(
            f"{d / 'config.json'}: config does not match this version ({e}). Fix: retrain the model."
        ) from None
    rec = cls(config)
    rec.dataset_name = meta.get("dataset")
    rec.ease_reg = meta.get("ease_reg")
    rec.train_report = meta.get("train_report", {})
    rec.implicit_event = meta.get("implicit_event")
    weights = load_file(str(d / "weights.safetensors"))
    B = load_file(str(d / "item_item.safetensors"))["B"] if (d / "item_item.safetensors").exists() else None
    rec.scorer = HybridScorer(weights, B)
    items = json.loads((d / "items.json").read_text(encoding="utf-8"))
    rec.item_ids = np.asarray(items["item"], dtype=object)
    rec.item_index = {iid: i for i, iid in enumerate(rec.item_ids)}
    rec.titles = np.asarray(items["title"], dtype=object)
    rec.categories = [list(c or []) for c in items["categories"]]
    rec.years = np.asarray([np.nan if y is None else y for y in items["year"]], dtype=np.float64)
    rec.fields = items.get("fields") or None
    rec.numeric = {
        k: np.asarray([np.nan if x is None else x for x in v], dtype=np.float64)
        for k, v in (items.get("numeric") or {}).items()
    }
    if (d / "vocabulary.json").exists():
        from lucidrec.query_synonyms import read_vocabulary

        rec.vocabulary = read_vocabulary(d / "vocabulary.json")
    with np.load(d / "interactions.npz") as z:
        rec.known = KnownHistories.from_ids(
            rec.item_ids,
            z["user"],
            z["item"],
            z["rating"].astype(np.float64),
            z["timestamp"].astype(np.float64),
            z["event"],
        )
    if (d / "query_synonyms.json").exists():
        rec.query_synonyms = read_synonyms(d / "query_synonyms.json")
    if load_encoder and (d / "encoder" / "model.onnx").exists():
        from lucidrec.encoders import OnnxEncoder

        rec._query_encoder = OnnxEncoder(d / "encoder", threads=encoder_threads)
    from lucidrec.retrieval import Retriever

    rec.retriever = Retriever.load(d, rec.scorer)  # None when the folder has no index
    rec._retriever_scorer = rec.scorer
    return rec


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


__all__ = ["FORMAT_VERSION", "load", "read_meta", "read_synonyms", "save"]
