"""Rating head: predicts explicit ratings with biases + a dot product and no per-user parameters.

    r_ui = mu + b_i + b_u(H) + z_u(H) . q_i
    b_u(H) = sum_j (r_j - mu - b_j) / (|H| + lambda_u)                       (closed form, shrunk)
    z_u(H) = |H|^-1/2 * sum_j (y_j + (r_j - mu - b_j - b_u) x_j)            (asymmetric SVD)
    q_i = Q_i + W t_i,  b_i = bID_i + v . t_i                                (ID + frozen text)

A user is their rated history H, like in the ranking model. Training (torch) samples, per user and
step, a random part of the history as input and predicts the rest, so a rating is never predicted
from itself. Prediction runs in numpy from the exported arrays.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class RatingConfig:
    dim: int = 32
    epochs: int = 60
    lr: float = 2e-3
    weight_decay: float = 0.0
    l2: float = 0.02
    shrink_user: float = 5.0
    batch_size: int = 64
    patience: int = 5
    seed: int = 2026

    def to_dict(self) -> dict:
        return asdict(self)


class RatingPredictor:
    """Numpy prediction from exported arrays (mu, b, Q, Y, X, shrink)."""

    def __init__(self, arrays: dict[str, np.ndarray], shrink_user: float):
        self.a = arrays
        self.shrink = shrink_user

    def user_terms(self, items: np.ndarray, ratings: np.ndarray):
        a = self.a
        mu, b = float(a["mu"][0]), a["b"]
        n = len(items)
        if n == 0:
            return 0.0, np.zeros(a["Q"].shape[1], np.float32)
        res = ratings - mu - b[items]
        bu = float(res.sum() / (n + self.shrink))
        z = (a["Y"][items].sum(0) + ((res - bu)[:, None] * a["X"][items]).sum(0)) / np.sqrt(n)
        return bu, z

    def predict(self, items: np.ndarray, ratings: np.ndarray, targets: np.ndarray) -> np.ndarray:
        bu, z = self.user_terms(np.asarray(items), np.asarray(ratings, dtype=np.float64))
        a = self.a
        return float(a["mu"][0]) + a["b"][targets] + bu + a["Q"][targets] @ z


def fit_rating_model(
    train, valid, n_items: int, text: np.ndarray, cfg: RatingConfig | None = None, progress: bool = False
) -> tuple[RatingPredictor, dict]:
    """Train on the ``train`` frame (uidx, iidx, rating); early stopping on RMSE over ``valid``."""
    import torch

    from lucidrec.models.hybrid import _require_torch

    _require_torch()
    cfg = cfg or RatingConfig()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    d = cfg.dim
    T = torch.as_tensor(text, dtype=torch.float32)
    mu = float(train["rating"].mean())
    P = {
        "bID": torch.zeros(n_items),
        "v": torch.zeros(T.shape[1]),
        "Qid": torch.randn(n_items, d, generator=g) * 0.01,
        "W": torch.randn(T.shape[1], d, generator=g) * 0.01,
        "Y": torch.randn(n_items, d, generator=g) * 0.01,
        "X": torch.randn(n_items, d, generator=g) * 0.01,
    }
    for p in P.values():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(list(P.values()), lr=cfg.lr, weight_decay=cfg.weight_decay)
    seen = np.zeros(n_items, np.float32)
    seen[np.unique(train["iidx"].to_numpy())] = 1.0
    seen_t = torch.as_tensor(seen)

    by_user = {u: (g_["iidx"].to_numpy(), g_["rating"].to_numpy(np.float32)) for u, g_ in train.groupby("uidx")}
    users = np.array([u for u, (i, _) in by_user.items() if len(i) >= 2])

    def item_params():
        b = seen_t * P["bID"] + T @ P["v"]
        Q = seen_t[:, None] * P["Qid"] + T @ P["W"]
        return b, Q

    def batch_loss(batch):
        b, Q = item_params()
        hi, hr, hu, ti, tr, tu = [], [], [], [], [], []
        for k, u in enumerate(batch):
            items, ratings = by_user[u]
            mask = rng.random(len(items)) < 0.8
            if mask.all() or not mask.any():
                mask[rng.integers(len(items))] = not mask.all()
            hi.append(items[mask])
            hr.append(ratings[mask])
            hu.append(np.full(mask.sum(), k))
            ti.append(items[~mask])
            tr.append(ratings[~mask])
            tu.append(np.full((~mask).sum(), k))
        hi, hr, hu = (torch.as_tensor(np.concatenate(x)) for x in (hi, hr, hu))
        ti, tr, tu = (torch.as_tensor(np.concatenate(x)) for x in (ti, tr, tu))
        nb = len(batch)
        n = torch.zeros(nb).index_add_(0, hu, torch.ones(len(hu)))
        res = hr - mu - b[hi]
        bu = torch.zeros(nb).index_add_(0, hu, res) / (n + cfg.shrink_user)
        contrib = P["Y"][hi] + (res - bu[hu])[:, None] * P["X"][hi]
        z = torch.zeros(nb, d).index_add_(0, hu, contrib) / n.sqrt()[:, None]
        pred = mu + b[ti] + bu[tu] + (Q[ti] * z[tu]).sum(1)
        reg = (
            cfg.l2
            * (
                P["bID"][ti].pow(2).sum()
                + P["Qid"][ti].pow(2).sum()
                + P["Y"][hi].pow(2).sum()
                + P["X"][hi].pow(2).sum()
            )
            / len(ti)
        )
        return ((pred - tr) ** 2).mean() + reg

    def export():
        with torch.no_grad():
            b, Q = item_params()
            arr = {
                "mu": np.array([mu], np.float32),
                "b": b.numpy(),
                "Q": Q.numpy(),
                "Y": P["Y"].detach().numpy(),
                "X": P["X"].detach().numpy(),
            }
        return RatingPredictor({k: np.asarray(v, np.float32) for k, v in arr.items()}, cfg.shrink_user)

    def rmse(pred_model, frame):
        errs = []
        for u, g_ in frame.groupby("uidx"):
            items, ratings = by_user.get(u, (np.zeros(0, int), np.zeros(0, np.float32)))
            p = np.clip(pred_model.predict(items, ratings, g_["iidx"].to_numpy()), 1.0, 5.0)
            errs.append(p - g_["rating"].to_numpy())
        e = np.concatenate(errs)
        return float(np.sqrt(np.mean(e**2)))

    best, best_model, bad, history = np.inf, export(), 0, []
    for epoch in range(cfg.epochs):
        order = users.copy()
        rng.shuffle(order)
        for s in range(0, len(order), cfg.batch_size):
            loss = batch_loss(order[s : s + cfg.batch_size])
            opt.zero_grad()
            loss.backward()
            opt.step()
        m = export()
        r = rmse(m, valid)
        history.append({"epoch": epoch + 1, "valid_rmse": r})
        if progress:
            print(f"rating epoch {epoch + 1}: valid RMSE {r:.4f}")
        if r < best - 1e-4:
            best, best_model, bad = r, m, 0
        else:
            bad += 1
            if bad >= cfg.patience:
                break
    return best_model, {"best_valid_rmse": best, "epochs": history}
