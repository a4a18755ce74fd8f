"""Model folder integrity: a checksum manifest written at save and verified at load, a guard that turns
any failure to read a file into one clear :class:`ModelError` naming that file, and the checks that the
files agree with each other (types in config.json, weight shapes and dtypes, catalog length).

A broken folder (truncated, garbage, hand-edited, half-copied, from another version) must never end in
a traceback, nor load and then fail on every request. The per-file table :data:`FILES` is the one place
that lists what a model folder holds: a new file is one line there.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lucidrec.errors import LucidrecError, ModelError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
RETRAIN = "Fix: retrain or re-save the model with 'lucidrec train --out DIR', or copy the whole folder again."
REINDEX = (
    "Fix: rebuild the index with 'lucidrec index --model DIR', or delete index.json, index_proj.npz and index.faiss."
)


@dataclass(frozen=True)
class ModelFile:
    """One file of a model folder. ``group``: when it is read (``model`` always, ``encoder`` only when
    the text encoder is loaded, ``index`` when the folder has a candidate index)."""

    name: str  # path relative to the folder
    required: bool
    group: str = "model"
    fix: str = RETRAIN


FILES: tuple[ModelFile, ...] = (
    ModelFile("config.json", True),
    ModelFile("weights.safetensors", True),
    ModelFile("item_item.safetensors", False),  # required when config.item_item (checked in check_loaded)
    ModelFile("items.json", True),
    ModelFile("interactions.npz", True),
    ModelFile("encoder/model.onnx", False, "encoder"),
    ModelFile("encoder/tokenizer.json", False, "encoder"),
    ModelFile("encoder/encoder.json", False, "encoder"),
    ModelFile("understanding.npz", False),  # request understanding (lucidrec.understanding); older folders lack it
    ModelFile("understanding.json", False),
    ModelFile("index.json", False, "index", REINDEX),
    ModelFile("index_proj.npz", False, "index", REINDEX),
    ModelFile("index.faiss", False, "index", REINDEX),
)
# vocabulary.json and query_synonyms.json are left out on purpose: they are meant to be edited by hand (how
# one model reads queries), so no checksum pins them; their readers still name the file when it is broken.
_BY_NAME = {f.name: f for f in FILES}


def _file(name: str) -> ModelFile:
    return _BY_NAME.get(name, ModelFile(name, False))


# ---------------------------------------------------------------------- reading guard
@contextmanager
def reading(d: Path, name: str) -> Iterator[Path]:
    """Read ``d / name`` inside this block: whatever a broken file makes the reader raise (safetensors,
    numpy/zipfile, json, onnxruntime, tokenizers, faiss each have their own errors) becomes one
    ModelError naming the file and the fix. Errors lucidrec raises on purpose pass through."""
    path = d / name
    try:
        yield path
    except LucidrecError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader's failure on this file means the file is broken
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        raise ModelError(
            f"{path}: unreadable or corrupt ({type(e).__name__}{': ' + detail if detail else ''}). {_file(name).fix}"
        ) from None


def broken(d: Path, name: str, what: str) -> ModelError:
    return ModelError(f"{d / name}: {what}. {_file(name).fix}")


# ---------------------------------------------------------------------- checksum manifest
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def write_manifest(d: str | Path, names: Iterable[str] | None = None, create: bool = True) -> Path | None:
    """Record sha256 and size of the folder's files (:data:`FILES` that exist). ``names``: update only
    these entries of an existing manifest (a file rewritten after save, e.g. the index); ``create=False``
    leaves a folder without a manifest (an older model) as it is."""
    d = Path(d)
    path = d / MANIFEST
    files: dict = {}
    if path.exists():
        try:
            files = dict(json.loads(path.read_text(encoding="utf-8")).get("files", {}))
        except (ValueError, AttributeError, TypeError):
            files = {}
    elif not create:
        return None
    for name in [f.name for f in FILES] if names is None else list(names):
        p = d / name
        if p.is_file():
            files[name] = {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        else:
            files.pop(name, None)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, "algorithm": "sha256", "files": files}, indent=1))
    os.replace(tmp, path)  # never a half-written manifest
    return path


def read_manifest(d: Path) -> dict[str, dict] | None:
    """The manifest's ``{file: {"sha256", "bytes"}}``, or None for a folder saved before manifests."""
    path = d / MANIFEST
    if not path.exists():
        return None
    with reading(d, MANIFEST):
        m = json.loads(path.read_text(encoding="utf-8"))
    files = m.get("files") if isinstance(m, dict) else None
    ok = (
        isinstance(m, dict)
        and m.get("format") == MANIFEST_FORMAT
        and isinstance(files, dict)
        and all(
            isinstance(v, dict) and isinstance(v.get("sha256"), str) and type(v.get("bytes")) is int
            for v in files.values()
        )
    )
    if not ok:
        raise broken(d, MANIFEST, "not a lucidrec checksum manifest of this version")
    for name in files:  # a manifest names files inside the folder only
        if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
            raise broken(d, MANIFEST, f"names a file outside the model folder ({name!r})")
    return files


def verify_manifest(d: Path, groups: set[str]) -> bool:
    """Check every listed file of ``groups`` against its recorded size and sha256. A listed optional file
    that is gone is fine (an index may be deleted; its loader then sees no index); a required one is not.
    Returns False when the folder has no manifest (saved by an older version: structural checks only)."""
    files = read_manifest(d)
    if files is None:
        return False
    for name, entry in files.items():
        spec = _file(name)
        if spec.group not in groups:
            continue
        p = d / name
        if not p.is_file():
            if spec.required:
                raise broken(d, name, "is missing")
            continue
        size = p.stat().st_size
        if size != entry["bytes"]:
            raise broken(d, name, f"has {size} bytes, {entry['bytes']} when saved (truncated or replaced)")
        if sha256_file(p) != entry["sha256"]:
            raise broken(d, name, "changed since the model was saved (sha256 differs from manifest.json)")
    return True


class BackgroundVerify:
    """:func:`verify_manifest` on a thread, overlapping the hashing with the loading of the same files
    (hashlib and file reads release the GIL): on a 108 MB ML-100K folder the checksums alone take about
    0.2 s. :meth:`result` waits and raises what the verification found."""

    def __init__(self, d: Path, groups: set[str]):
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(d, groups), name="lucidrec-verify", daemon=True)
        self._thread.start()

    def _run(self, d: Path, groups: set[str]) -> None:
        try:
            verify_manifest(d, groups)
        except LucidrecError as e:
            self._error = e
        except Exception as e:  # noqa: BLE001 - e.g. a file that cannot be opened: still one clear error
            self._error = ModelError(f"{d}: cannot verify the model's checksums ({type(e).__name__}: {e}). {RETRAIN}")

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise self._error


# ---------------------------------------------------------------------- config.json
_CHOICES = {"mode": ("set", "seq", "mixed")}
_POSITIVE = ("dim", "cls_hidden", "epochs", "batch_size", "samples_per_user")


def _type_ok(value, annotation: str) -> bool:
    kinds = [a.strip() for a in annotation.split("|")]
    if not set(kinds) <= {"int", "float", "bool", "str", "None"}:
        return True  # a field of a richer type: HybridConfig itself is its judge
    if value is None:
        return "None" in kinds
    if isinstance(value, bool):
        return "bool" in kinds
    if isinstance(value, int):
        return "int" in kinds or "float" in kinds
    if isinstance(value, float):
        return "float" in kinds and math.isfinite(value)
    if isinstance(value, str):
        return "str" in kinds
    return False


def check_config(d: Path, cfg: dict) -> dict:
    """``config.json``'s config object against :class:`HybridConfig`: known keys, types, ranges."""
    from lucidrec.models.config import HybridConfig

    fields = {f.name: str(f.type) for f in dataclasses.fields(HybridConfig)}
    unknown = sorted(set(cfg) - set(fields))
    if unknown:
        raise broken(d, "config.json", f"config has keys this version does not know: {', '.join(unknown)}")
    for name, value in cfg.items():
        if not _type_ok(value, fields[name]):
            raise broken(d, "config.json", f"config.{name} = {value!r} is not of type {fields[name]}")
        if name in _POSITIVE and value < 1:
            raise broken(d, "config.json", f"config.{name} = {value!r} must be at least 1")
        if name in _CHOICES and value not in _CHOICES[name]:
            raise broken(d, "config.json", f"config.{name} = {value!r} must be one of {', '.join(_CHOICES[name])}")
    return cfg


def check_meta(d: Path, meta: dict) -> None:
    """The other fields of config.json that load reads."""
    kinds = {
        "dataset": (str, type(None)),
        "train_report": (dict, type(None)),
        "encoder": (str, type(None)),
        "implicit_event": (str, type(None)),
        "feature_space": (dict, type(None)),
    }
    for key, types in kinds.items():
        if not isinstance(meta.get(key), types):
            raise broken(d, "config.json", f"'{key}' = {meta.get(key)!r} has the wrong type")
    reg = meta.get("ease_reg")
    if reg is not None and (isinstance(reg, bool) or not isinstance(reg, (int, float)) or not math.isfinite(reg)):
        raise broken(d, "config.json", f"'ease_reg' = {reg!r} must be a number or null")


# ---------------------------------------------------------------------- weights
def check_weights(d: Path, w: dict[str, np.ndarray], B, item_item: bool) -> int:
    """Names, dtypes, shapes and finiteness of the towers' arrays; returns the number of items."""
    from lucidrec.models.features import N_POSITION_BUCKETS, N_RATING_BINS
    from lucidrec.models.scoring import WEIGHT_NAMES

    name = "weights.safetensors"
    missing = [k for k in WEIGHT_NAMES if k not in w]
    if missing:
        raise broken(d, name, f"lacks the arrays {', '.join(missing)}")
    for k, v in w.items():
        if not np.issubdtype(v.dtype, np.floating):
            raise broken(d, name, f"array '{k}' has dtype {v.dtype}, expected floats")
        if not np.isfinite(v).all():
            raise broken(d, name, f"array '{k}' holds NaN or infinite values")
    F, T = w["F"], w["T"]
    if F.ndim != 2 or F.shape[0] < 1:
        raise broken(d, name, f"'F' has shape {F.shape}, expected (items, dim)")
    n, dl = F.shape
    dt = T.shape[1] if T.ndim == 2 else -1
    h = w["W1"].shape[1] if w["W1"].ndim == 2 else -1
    expected = {
        "H": (n, dl), "bias": (n,), "T": (n, dt), "Wa": (dt, dl), "W1": (3 * dl, h), "b1": (h,), "w2": (h,),
        "rho_E": (N_RATING_BINS,), "pi_E": (N_POSITION_BUCKETS,), "rho_L": (N_RATING_BINS,),
        "pi_L": (N_POSITION_BUCKETS,), "alpha": (1,), "b2": (1,), "query_latent": (1,), "query_text": (1,),
    }  # fmt: skip
    for k, shape in expected.items():
        if w[k].shape != shape or min(shape) < 1:
            raise broken(d, name, f"array '{k}' has shape {w[k].shape}, expected {shape} for {n} items")
    if item_item and B is None:
        raise broken(d, "item_item.safetensors", "is missing (config.item_item is true)")
    if B is not None:
        if B.shape != (n, n) or not np.issubdtype(B.dtype, np.floating):
            raise broken(d, "item_item.safetensors", f"'B' is {B.dtype} {B.shape}, expected floats ({n}, {n})")
        if not np.isfinite(B.data if hasattr(B, "tocsr") else B).all():  # a CSR block: its stored values
            raise broken(d, "item_item.safetensors", "the block holds NaN or infinite values")
    return n


# ---------------------------------------------------------------------- items.json, interactions.npz
def check_items(d: Path, items, n: int) -> None:
    """The catalog: four equally long lists, one entry per weight row, unique string ids."""
    name, keys = "items.json", ("item", "title", "categories", "year")
    if not isinstance(items, dict) or not all(isinstance(items.get(k), list) for k in keys):
        raise broken(d, name, 'not a catalog (expects {"item": [...], "title": [...], "categories": [...], ...})')
    for k in keys:
        if len(items[k]) != n:
            raise broken(d, name, f"'{k}' lists {len(items[k])} entries but the weights have {n} items")
    if not all(isinstance(i, str) for i in items["item"]) or len(set(items["item"])) != n:
        raise broken(d, name, "'item' must list unique string ids")
    if not all(isinstance(t, str) for t in items["title"]):
        raise broken(d, name, "'title' must list strings")
    if not all(c is None or (isinstance(c, list) and all(isinstance(x, str) for x in c)) for c in items["categories"]):
        raise broken(d, name, "'categories' must list lists of strings")
    if not all(_number_or_null(y) for y in items["year"]):
        raise broken(d, name, "'year' must list numbers or null")
    # Product catalogues: per-field values and numeric fields (price, weight), one entry per item.
    fields, numeric = items.get("fields"), items.get("numeric")
    if fields is not None and not isinstance(fields, dict):
        raise broken(d, name, "'fields' must be an object of field -> per-item values")
    if numeric is not None:
        if not isinstance(numeric, dict):
            raise broken(d, name, "'numeric' must be an object of field -> per-item numbers")
        for k, v in numeric.items():
            if not isinstance(v, list) or len(v) != n or not all(_number_or_null(x) for x in v):
                raise broken(d, name, f"'numeric.{k}' must list {n} numbers or null, one per item")


def _number_or_null(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


INTERACTION_KEYS = ("user", "item", "rating", "timestamp", "event")


def check_interactions(d: Path, z) -> dict[str, np.ndarray]:
    """interactions.npz: the five 1-D arrays, equally long, numeric ratings/times. Returns them (each
    read once: an npz decompresses an array on every access)."""
    name = "interactions.npz"
    missing = [k for k in INTERACTION_KEYS if k not in z]
    if missing:
        raise broken(d, name, f"lacks the arrays {', '.join(missing)}")
    arrays = {k: z[k] for k in INTERACTION_KEYS}
    lengths = {len(a) if a.ndim == 1 else -1 for a in arrays.values()}
    if len(lengths) != 1 or -1 in lengths:
        raise broken(d, name, "its arrays are not 1-D of one length")
    for k in ("rating", "timestamp"):
        if arrays[k].dtype.kind not in "iuf":
            raise broken(d, name, f"'{k}' has dtype {arrays[k].dtype}, expected numbers")
    for k in ("user", "item", "event"):
        if arrays[k].dtype.kind not in "UO":
            raise broken(d, name, f"'{k}' has dtype {arrays[k].dtype}, expected strings")
    return arrays


def check_known_items(d: Path, known, raw_items: np.ndarray) -> None:
    """Every interaction names a catalog item (save writes only those; -1 marks an id items.json lacks)."""
    unknown = np.flatnonzero(known.items < 0)
    if len(unknown):
        raise broken(
            d,
            "interactions.npz",
            f"{len(unknown)} rows name items that are not in items.json (e.g. '{raw_items[unknown[0]]}')",
        )


def check_encoder(d: Path, meta, text_dim: int) -> None:
    name = "encoder/encoder.json"
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or type(meta.get("dim")) is not int:
        raise broken(d, name, 'expects {"name": "...", "dim": N}')
    if meta["dim"] != text_dim:
        raise broken(d, name, f"the encoder makes {meta['dim']}-d vectors but the weights' text block is {text_dim}-d")


__all__ = [
    "FILES",
    "BackgroundVerify",
    "MANIFEST",
    "ModelFile",
    "broken",
    "check_config",
    "check_encoder",
    "check_interactions",
    "check_known_items",
    "check_items",
    "check_meta",
    "check_weights",
    "read_manifest",
    "reading",
    "sha256_file",
    "verify_manifest",
    "write_manifest",
]
