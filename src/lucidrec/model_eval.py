"""Evaluating a trained model folder with the same evaluator and protocols as the baselines."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from lucidrec.errors import ModelError

if TYPE_CHECKING:
    from lucidrec.artifact import TrainedModel
    from lucidrec.data.dataset import Dataset
    from lucidrec.history import Histories


class SavedModelScorer:
    """Evaluation adapter (the :class:`lucidrec.scorer.Scorer` interface): scores dataset users from the
    histories the evaluator passes in, in the dataset's item order."""

    name = "LucidRec"

    def __init__(self, model: TrainedModel, dataset: Dataset):
        self.model = model
        index = model.catalogue.item_index
        self.map = np.array([index.get(str(i), -1) for i in dataset.item_ids])
        if (self.map < 0).any():
            missing = dataset.item_ids[self.map < 0][:3]
            raise ModelError(
                f"the dataset has items the model does not know (e.g. {', '.join(map(str, missing))}). "
                "Fix: evaluate on the data the model was trained on."
            )

    def fit(self, dataset, train):
        return self

    def get_params(self) -> dict:
        return {"ease_reg": self.model.meta.ease_reg, "dim": self.model.config.dim}

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray:
        rows = histories.rows(users)
        out = np.zeros((len(users), len(self.map)), dtype=np.float32)
        for k in range(len(users)):
            lo, hi = rows.binary.indptr[k], rows.binary.indptr[k + 1]
            items = rows.binary.indices[lo:hi]
            order = np.lexsort((items, rows.timestamp.data[lo:hi]))
            state = self.model.scorer.user_state(self.map[items[order]], rows.rating.data[lo:hi][order])
            out[k] = self.model.scorer.score(state)[self.map]
        return out


def evaluate_saved_model(model_dir: str | Path, split):
    """Evaluate a saved model on ``split``'s test part: train+valid histories feed the user tower."""
    from lucidrec.evaluate import EvalResult, evaluate_scorer
    from lucidrec.io.model_io import load

    t0 = time.perf_counter()
    scorer = SavedModelScorer(load(model_dir, load_encoder=False), split.dataset)
    metrics = evaluate_scorer(scorer, split, "test")
    return EvalResult("LucidRec", split.protocol, "test", metrics, scorer.get_params(), time.perf_counter() - t0)
