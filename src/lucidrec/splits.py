"""Evaluation protocols (ARCHITECTURE section 5), seeded and deterministic.

- ``loo``: per user, sort by timestamp (ties by item order); last = test, second last = validation.
- ``ratio``: per user, random 80/10/10 (seed 2026); train = round(0.8 n), valid = round(0.1 n), test = rest.
- ``cold``: a random 10% of items are held out entirely (all their interactions are test); the other
  interactions are split 90/10 per user into train/valid. Test candidates are the held-out items only.
- ``kfold``: 5-fold cross-validation over all interactions, for rating prediction.
Users with fewer than 3 interactions keep everything in train under ``loo`` and ``ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lucidrec.data.dataset import Dataset
from lucidrec.errors import ConfigError

PROTOCOLS = ("ratio", "loo", "cold")
DEFAULT_SEED = 2026


@dataclass
class Split:
    """Train / valid / test interactions over one dataset (same catalog, same user index)."""

    dataset: Dataset
    protocol: str
    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    seed: int = DEFAULT_SEED
    #: Under ``cold``: item indices held out of training; they are the test candidate set.
    cold_items: np.ndarray | None = field(default=None)

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.valid), len(self.test)

    def train_valid(self) -> pd.DataFrame:
        return pd.concat([self.train, self.valid], ignore_index=True)

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write train/valid/test as ``user<TAB>item<TAB>rating<TAB>timestamp`` with the dataset's ids."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, part in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            p = out / f"{name}.tsv"
            frame = part[["user", "item", "rating", "timestamp"]].copy()
            frame["timestamp"] = frame["timestamp"].map(lambda t: f"{t:.0f}" if float(t).is_integer() else f"{t}")
            frame["rating"] = frame["rating"].map(lambda r: f"{r:g}")
            frame.to_csv(p, sep="\t", index=False, header=False)
            paths.append(p)
        if self.cold_items is not None:
            p = out / "cold_items.tsv"
            pd.Series(self.dataset.item_ids[self.cold_items]).to_csv(p, index=False, header=False)
            paths.append(p)
        return paths


def split(dataset: Dataset, protocol: str = "ratio", seed: int = DEFAULT_SEED) -> Split:
    """Split ``dataset`` by the named protocol."""
    if protocol == "ratio":
        return ratio_split(dataset, seed=seed)
    if protocol == "loo":
        return leave_one_out(dataset)
    if protocol == "cold":
        return cold_item_split(dataset, seed=seed)
    raise ConfigError(f"--protocol '{protocol}' is not known. Fix: use one of {', '.join(PROTOCOLS)}.")


def _positions(uidx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For rows already sorted by user: position within the user's block and the block size."""
    starts = np.r_[0, np.flatnonzero(np.diff(uidx)) + 1]
    sizes = np.diff(np.r_[starts, len(uidx)])
    pos = np.arange(len(uidx)) - np.repeat(starts, sizes)
    return pos, np.repeat(sizes, sizes)


def ratio_split(dataset: Dataset, ratios=(0.8, 0.1, 0.1), seed: int = DEFAULT_SEED) -> Split:
    inter = dataset.interactions
    rng = np.random.default_rng(seed)
    key = rng.random(len(inter))
    order = np.lexsort((key, inter["uidx"].to_numpy()))
    sorted_inter = inter.iloc[order].reset_index(drop=True)
    pos, n = _positions(sorted_inter["uidx"].to_numpy())
    n_train = np.rint(ratios[0] * n).astype(int)
    n_valid = np.rint(ratios[1] * n).astype(int)
    small = n < 3
    part = np.where(pos < n_train, 0, np.where(pos < n_train + n_valid, 1, 2))
    part[small] = 0
    return _make(dataset, "ratio", sorted_inter, part, seed)


def leave_one_out(dataset: Dataset) -> Split:
    inter = dataset.interactions
    order = np.lexsort((inter["iidx"].to_numpy(), inter["timestamp"].to_numpy(), inter["uidx"].to_numpy()))
    sorted_inter = inter.iloc[order].reset_index(drop=True)
    pos, n = _positions(sorted_inter["uidx"].to_numpy())
    part = np.where(pos == n - 1, 2, np.where(pos == n - 2, 1, 0))
    part[n < 3] = 0
    return _make(dataset, "loo", sorted_inter, part, 0)


def cold_item_split(dataset: Dataset, fraction: float = 0.1, seed: int = DEFAULT_SEED) -> Split:
    inter = dataset.interactions
    rng = np.random.default_rng(seed)
    used = np.unique(inter["iidx"].to_numpy())
    cold = np.sort(rng.choice(used, size=max(1, int(round(fraction * len(used)))), replace=False))
    is_cold = np.isin(inter["iidx"].to_numpy(), cold)
    warm = inter[~is_cold]
    key = rng.random(len(warm))
    order = np.lexsort((key, warm["uidx"].to_numpy()))
    warm = warm.iloc[order].reset_index(drop=True)
    pos, n = _positions(warm["uidx"].to_numpy())
    part = np.where(pos < np.rint(0.9 * n), 0, 1)
    part[n < 3] = 0
    test = inter[is_cold].sort_values(["uidx", "timestamp", "iidx"]).reset_index(drop=True)
    return Split(
        dataset,
        "cold",
        warm[part == 0].reset_index(drop=True),
        warm[part == 1].reset_index(drop=True),
        test,
        seed,
        cold_items=cold,
    )


def _make(dataset, protocol, inter, part, seed) -> Split:
    return Split(
        dataset,
        protocol,
        inter[part == 0].reset_index(drop=True),
        inter[part == 1].reset_index(drop=True),
        inter[part == 2].reset_index(drop=True),
        seed,
    )


def kfold(dataset: Dataset, n_folds: int = 5, seed: int = DEFAULT_SEED):
    """Yield (train, test) interaction frames for ``n_folds``-fold CV over all interactions."""
    if n_folds < 2:
        raise ConfigError(f"n_folds={n_folds}: need at least 2 folds. Fix: pass n_folds >= 2.")
    if not getattr(dataset, "has_ratings", True):
        # Implicit feedback has no rating to predict: no rating head is trained or scored on it.
        raise ConfigError(
            f"'{dataset.name}' has no ratings (implicit feedback), so there is nothing for rating "
            "cross-validation to predict. Fix: evaluate ranking instead (protocols ratio, loo or cold)."
        )
    inter = dataset.interactions
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(inter)) % n_folds
    for k in range(n_folds):
        yield inter[fold != k].reset_index(drop=True), inter[fold == k].reset_index(drop=True)
