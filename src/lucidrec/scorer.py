"""The one interface every recommender implements for evaluation: fit on interactions, score users."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from lucidrec.data.dataset import Dataset
from lucidrec.history import Histories


class Scorer(Protocol):
    """``fit(dataset, train)`` learns from the interaction frame ``train`` (rows of ``dataset``);
    ``score(users, histories)`` returns a (len(users), n_items) array for user indices ``users`` whose
    known histories are ``histories.rows(users)``. Models with no per-user parameters use only the
    histories; the evaluator excludes history items itself."""

    name: str

    def fit(self, dataset: Dataset, train: pd.DataFrame) -> Scorer: ...

    def score(self, users: np.ndarray, histories: Histories) -> np.ndarray: ...

    def get_params(self) -> dict: ...
