"""Per-user histories as aligned sparse matrices (binary, rating, timestamp, event weight)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp


@dataclass
class Histories:
    """Known interactions of every user, as CSR matrices over the full catalog sharing one structure.

    When a user interacted with an item more than once, the latest interaction wins.
    """

    binary: sp.csr_matrix
    rating: sp.csr_matrix
    timestamp: sp.csr_matrix

    @classmethod
    def from_frame(cls, inter: pd.DataFrame, n_users: int, n_items: int) -> Histories:
        inter = inter.sort_values(["uidx", "iidx", "timestamp"]).drop_duplicates(["uidx", "iidx"], keep="last")
        rows, cols = inter["uidx"].to_numpy(), inter["iidx"].to_numpy()

        def mat(values):
            m = sp.csr_matrix((np.asarray(values, dtype=np.float64), (rows, cols)), shape=(n_users, n_items))
            m.sort_indices()
            return m

        binary = mat(np.ones(len(inter)))
        return cls(binary, mat(inter["rating"].to_numpy()), mat(inter["timestamp"].to_numpy()))

    @property
    def n_users(self) -> int:
        return self.binary.shape[0]

    def rows(self, users: np.ndarray) -> Histories:
        return Histories(self.binary[users], self.rating[users], self.timestamp[users])
