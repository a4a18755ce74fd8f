"""Classic baselines behind the Scorer interface: MostPopular, ItemKNN, EASE, ALS (implicit)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from lucidrec.data.dataset import Dataset
from lucidrec.errors import ConfigError, DependencyError
from lucidrec.history import Histories
from lucidrec.sasrec import SASRec


class MostPopular:
    """Scores every item by its number of training interactions."""

    name = "MostPopular"

    def fit(self, dataset: Dataset, train: pd.DataFrame) -> MostPopular:
        self.counts = np.bincount(train["iidx"].to_numpy(), minlength=dataset.n_items).astype(np.float64)
        return self

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        return np.broadcast_to(self.counts, (len(users), len(self.counts))).copy()

    def get_params(self) -> dict:
        return {}


class ItemKNN:
    """Item-based kNN: cosine similarity with shrinkage, keeping the k nearest neighbours per item."""

    name = "ItemKNN"

    def __init__(self, k: int = 200, shrink: float = 10.0):
        if k < 1:
            raise ConfigError(f"ItemKNN k={k}: must be >= 1.")
        self.k, self.shrink = int(k), float(shrink)

    def fit(self, dataset: Dataset, train: pd.DataFrame) -> ItemKNN:
        x = dataset.matrix(train)
        co = (x.T @ x).toarray().astype(np.float64)
        norms = np.sqrt(np.diag(co))
        sim = co / (np.outer(norms, norms) + self.shrink + 1e-12)
        np.fill_diagonal(sim, 0.0)
        k = min(self.k, sim.shape[0] - 1)
        # Keep the top-k neighbours of each target item (column), as in the usual ItemKNN.
        drop = np.argpartition(-sim, k, axis=0)[k:, :]
        np.put_along_axis(sim, drop, 0.0, axis=0)
        self.sim = sim
        return self

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        return np.asarray(histories.binary[users] @ self.sim)

    def get_params(self) -> dict:
        return {"k": self.k, "shrink": self.shrink}


def ease_weights(x: sp.csr_matrix, reg: float) -> np.ndarray:
    """EASE closed form (Steck 2019): B = I - P diagMat(1 / diag(P)), P = (X^T X + reg I)^-1, diag(B) = 0."""
    g = (x.T @ x).toarray().astype(np.float64)
    g[np.diag_indices_from(g)] += reg
    p = np.linalg.inv(g)
    b = -p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    return b


class EASE:
    """Embarrassingly Shallow Autoencoder: a closed-form item-item model, score = x_u @ B."""

    name = "EASE"

    def __init__(self, reg: float = 300.0):
        if reg <= 0:
            raise ConfigError(f"EASE reg={reg}: must be > 0.")
        self.reg = float(reg)

    def fit(self, dataset: Dataset, train: pd.DataFrame) -> EASE:
        self.b = ease_weights(dataset.matrix(train), self.reg)
        return self

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        return np.asarray(histories.binary[users] @ self.b)

    def get_params(self) -> dict:
        return {"reg": self.reg}


class ALS:
    """Implicit-feedback ALS (Hu, Koren, Volinsky 2008) through the ``implicit`` package."""

    name = "ALS"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        seed: int = 2026,
    ):
        self.factors, self.regularization, self.alpha = int(factors), float(regularization), float(alpha)
        self.iterations, self.seed = int(iterations), int(seed)

    @staticmethod
    def available() -> bool:
        try:
            import implicit  # noqa: F401
        except Exception:
            return False
        return True

    def fit(self, dataset: Dataset, train: pd.DataFrame) -> ALS:
        try:
            from implicit.cpu.als import AlternatingLeastSquares
        except Exception as e:
            raise DependencyError(
                f"ALS needs the 'implicit' package ({e}). Fix: pip install 'lucidrec[als]'."
            ) from None
        from threadpoolctl import threadpool_limits

        x = dataset.matrix(train).astype(np.float32) * self.alpha
        with threadpool_limits(1, "blas"):  # implicit is slow with multithreaded BLAS
            model = AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                iterations=self.iterations,
                random_state=self.seed,
                calculate_training_loss=False,
            )
            model.fit(x.tocsr(), show_progress=False)
        self.user_factors = np.asarray(model.user_factors)
        self.item_factors = np.asarray(model.item_factors)
        return self

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        return self.user_factors[users] @ self.item_factors.T

    def get_params(self) -> dict:
        return {
            "factors": self.factors,
            "regularization": self.regularization,
            "alpha": self.alpha,
            "iterations": self.iterations,
        }


#: Baselines and the hyperparameter grids searched on the validation part.
BASELINES = {
    "mostpop": (MostPopular, [{}]),
    "itemknn": (ItemKNN, [{"k": k, "shrink": 10.0} for k in (50, 100, 200, 400)]),
    "ease": (EASE, [{"reg": r} for r in (50.0, 100.0, 200.0, 300.0, 500.0, 1000.0)]),
    "als": (ALS, [{"factors": f, "regularization": 0.05, "alpha": a} for f in (32, 64, 128) for a in (1.0, 5.0)]),
    # Sequential, torch (lucidrec[train]); early stopping on each user's last known item, no grid.
    "sasrec": (SASRec, [{}]),
}
#: Baselines that train a neural network for minutes: left out of quick runs (``lucidrec baselines``, demo).
SLOW_BASELINES = ("sasrec",)


class RandomScorer:
    """Uniform random scores (seeded): the floor every model must clear."""

    name = "Random"

    def __init__(self, seed: int = 2026):
        self.seed = int(seed)

    def fit(self, dataset: Dataset, train: pd.DataFrame) -> RandomScorer:
        self.n_items = dataset.n_items
        return self

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        rng = np.random.default_rng([self.seed, int(users[0]) if len(users) else 0])
        return rng.random((len(users), self.n_items))

    def get_params(self) -> dict:
        return {"seed": self.seed}


class TextNeighbours:
    """Text-only nearest neighbours: mean cosine similarity of an item's text embedding to the user's
    history items' embeddings. Needs no interactions with the item, so it can rank cold items."""

    name = "TextKNN"

    def __init__(self, embeddings: np.ndarray):
        self.emb = np.asarray(embeddings, dtype=np.float32)

    def fit(self, dataset: Dataset, train: pd.DataFrame) -> TextNeighbours:
        return self

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        x = histories.binary[users]
        n = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1.0)
        profile = np.asarray(x @ self.emb) / n[:, None]
        return profile @ self.emb.T

    def get_params(self) -> dict:
        return {}
