"""Shared fixtures: the bundled MovieLens-100K and a small generated dataset."""

from __future__ import annotations

import os

# Never reach the network from the test suite (set before anything imports huggingface libraries).
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np
import pandas as pd
import pytest

import lucidrec.data

TINY_USERS = 30
TINY_ITEMS = 40
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


@pytest.fixture(scope="session")
def ml100k():
    """MovieLens-100K read from the installed recbole wheel (treat as read-only)."""
    return lucidrec.data.load_movielens_100k()


@pytest.fixture(scope="session")
def ml100k_ratio(ml100k):
    from lucidrec.splits import split

    return split(ml100k, "ratio")


@pytest.fixture(scope="session")
def ml100k_loo(ml100k):
    from lucidrec.splits import split

    return split(ml100k, "loo")


def make_tiny_frames(seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    """30 users, 40 items; users u0 and u1 have 1 and 2 interactions (below the split minimum)."""
    rng = np.random.default_rng(seed)
    item_ids = np.arange(100, 100 + TINY_ITEMS)
    rows = []
    for u in range(TINY_USERS):
        n = 1 if u == 0 else 2 if u == 1 else int(rng.integers(3, 16))
        items = rng.choice(item_ids, size=n, replace=False)
        for it in items:
            rows.append(
                {
                    "user": f"u{u}",
                    "item": int(it),
                    "rating": int(rng.integers(1, 6)),
                    # a coarse clock so that some timestamps tie
                    "timestamp": int(rng.integers(0, 50)) * 1000,
                }
            )
    interactions = pd.DataFrame(rows)
    items = pd.DataFrame(
        {
            "item": item_ids,
            "title": [f"Item {i}" for i in item_ids],
            "genres": [
                "|".join(rng.choice(GENRES, size=int(rng.integers(1, 4)), replace=False).tolist()) for _ in item_ids
            ],
            "year": rng.integers(1970, 2020, size=TINY_ITEMS),
            "description": [f"Description of item {i}" for i in item_ids],
        }
    )
    return interactions, items


@pytest.fixture
def tiny_frames():
    return make_tiny_frames()


@pytest.fixture
def tiny_dataset(tiny_frames):
    interactions, items = tiny_frames
    return lucidrec.data.from_dataframes(interactions, items, name="tiny")


def rank_among(scores, allowed, item) -> int:
    """1-based rank of ``item`` among the ``allowed`` items by ``scores`` (ties not counted above it): how
    the counterfactual and decisive-set tests re-check a claimed rank independently."""
    return int((scores[allowed] > scores[item]).sum()) + 1
