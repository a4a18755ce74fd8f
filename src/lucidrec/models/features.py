"""Item-side inputs of the model: text embeddings and categorical/numeric feature matrices.

Feature building needs no torch so the serving path can rebuild it for new items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from lucidrec.data.dataset import Dataset

#: Edges of the "position from the end of the history" buckets (0 = most recent item).
POSITION_EDGES = np.array([1, 2, 3, 5, 10, 20, 50, 100])
N_POSITION_BUCKETS = len(POSITION_EDGES) + 1
#: Ratings are binned to 0..5 (0 also holds implicit feedback without a rating scale).
N_RATING_BINS = 6


def position_buckets(n: int) -> np.ndarray:
    """Bucket of each position of a length-n history ordered oldest -> newest."""
    from_end = np.arange(n - 1, -1, -1)
    return np.searchsorted(POSITION_EDGES, from_end, side="right")


#: Rating bins (see :func:`rating_bins`) of 1- and 2-star ratings.
LOW_RATING_BINS = (1, 2)


def rating_bins(ratings: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.nan_to_num(np.asarray(ratings, dtype=np.float64), nan=0.0)), 0, 5).astype(np.int64)


@dataclass
class FeatureSpace:
    """Vocabulary of categorical values and statistics of numeric columns, fixed at training time."""

    categories: list[str]
    numeric: list[str]
    numeric_mean: list[float]
    numeric_std: list[float]

    @classmethod
    def fit(cls, dataset: Dataset, min_count: int = 2) -> FeatureSpace:
        from lucidrec.data.text import item_categories

        counts: dict[str, int] = {}
        for cats in item_categories(dataset):
            for c in cats:
                counts[c] = counts.get(c, 0) + 1
        vocab = sorted(c for c, n in counts.items() if n >= min_count)
        means, stds = [], []
        for col in dataset.schema.numeric:
            v = dataset.items[col].to_numpy(dtype=np.float64)
            means.append(float(np.nanmean(v)) if np.isfinite(v).any() else 0.0)
            stds.append(float(np.nanstd(v)) or 1.0 if np.isfinite(v).any() else 1.0)
        return cls(vocab, list(dataset.schema.numeric), means, stds)

    @property
    def dim(self) -> int:
        return len(self.categories) + len(self.numeric)

    def transform(self, dataset: Dataset) -> np.ndarray:
        from lucidrec.data.text import item_categories

        index = {c: k for k, c in enumerate(self.categories)}
        x = np.zeros((dataset.n_items, self.dim), dtype=np.float32)
        for i, cats in enumerate(item_categories(dataset)):
            for c in cats:
                if c in index:
                    x[i, index[c]] = 1.0
        for k, col in enumerate(self.numeric):
            v = (
                dataset.items[col].to_numpy(dtype=np.float64)
                if col in dataset.items
                else np.full(dataset.n_items, np.nan)
            )
            z = (v - self.numeric_mean[k]) / self.numeric_std[k]
            x[:, len(self.categories) + k] = np.nan_to_num(np.clip(z, -5, 5), nan=0.0)
        return x

    def to_dict(self) -> dict:
        return {
            "categories": self.categories,
            "numeric": self.numeric,
            "numeric_mean": self.numeric_mean,
            "numeric_std": self.numeric_std,
        }
