"""Full-ranking evaluation of any Scorer under a Split, hyperparameter search, and run files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lucidrec.errors import DataError
from lucidrec.history import Histories
from lucidrec.metrics import RankingAccumulator, top_k
from lucidrec.splits import Split


@dataclass
class EvalResult:
    model: str
    protocol: str
    part: str
    metrics: dict[str, float]
    params: dict = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "protocol": self.protocol,
            "part": self.part,
            "params": self.params,
            "metrics": self.metrics,
            "seconds": round(self.seconds, 3),
        }


def parts_for(split: Split, part: str):
    """(training frame, known-history frame, relevant frame) for evaluating ``part``."""
    if part == "valid":
        return split.train, split.train, split.valid
    if part == "test":
        tv = split.train_valid()
        return tv, tv, split.test
    raise ValueError(f"part must be 'valid' or 'test', got {part!r}")


@dataclass
class _EvalTarget:
    """What a scored part is compared with: known histories (excluded), relevant items, the users that
    have any, and the candidate mask (None = whole catalog; the cold protocol restricts it)."""

    hist: Histories
    relevant: object
    users: np.ndarray
    candidates: np.ndarray | None


def _eval_target(split: Split, part: str) -> _EvalTarget:
    ds = split.dataset
    _, known_frame, relevant_frame = parts_for(split, part)
    hist = Histories.from_frame(known_frame, ds.n_users, ds.n_items)
    relevant = ds.matrix(relevant_frame)
    users = np.flatnonzero(np.diff(relevant.indptr) > 0)
    candidates = None
    if split.cold_items is not None and part == "test":
        candidates = np.zeros(ds.n_items, dtype=bool)
        candidates[split.cold_items] = True
    return _EvalTarget(hist, relevant, users, candidates)


def evaluate_scorer(scorer, split: Split, part: str = "test", ks=(10, 20), batch_size: int = 1024) -> dict[str, float]:
    """Metrics of an already-fitted ``scorer`` on ``part``; every item in the user's known history is
    excluded from the ranking (full ranking over all other items)."""
    t = _eval_target(split, part)
    if not len(t.users):
        # Nothing to rank for: a metric of no users does not exist (its absence was a KeyError later).
        raise DataError(
            f"the {part} part of the '{split.protocol}' split has no users with interactions "
            f"({split.dataset.n_users} users, {len(split.dataset.interactions)} interactions in all): there is "
            "nothing to evaluate on. Fix: use more data (each user needs several interactions for the split "
            "to hold some out), or pass a separate validation/test part."
        )
    n_candidates = None if t.candidates is None else int(t.candidates.sum())
    acc = RankingAccumulator(split.dataset.n_items, ks, n_candidates=n_candidates)
    for start in range(0, len(t.users), batch_size):
        batch = t.users[start : start + batch_size]
        acc.add(scorer.score(batch, t.hist), t.relevant[batch], t.hist.binary[batch], t.candidates)
    return acc.result()


def fit_and_evaluate(factory: Callable, params: dict, split: Split, part: str, ks=(10, 20)):
    train, _, _ = parts_for(split, part)
    t0 = time.perf_counter()
    scorer = factory(**params).fit(split.dataset, train)
    metrics = evaluate_scorer(scorer, split, part, ks)
    return scorer, metrics, time.perf_counter() - t0


def choose_on_validation(
    factory: Callable,
    grid: list[dict],
    split: Split,
    metric: str = "ndcg@10",
    ks=(10, 20),
    progress: Callable[[str], None] | None = None,
) -> dict:
    """The parameters of ``grid`` whose model, fit on train, scores best on the validation part."""
    if len(grid) == 1:
        return grid[0]
    best, best_params = -np.inf, grid[0]
    for params in grid:
        _, m, _ = fit_and_evaluate(factory, params, split, "valid", ks)
        if progress:
            progress(f"{factory.__name__} {params}: valid {metric} = {m[metric]:.4f}")
        if m[metric] > best:
            best, best_params = m[metric], params
    return best_params


def tune_and_test(
    factory: Callable,
    grid: list[dict],
    split: Split,
    metric: str = "ndcg@10",
    ks=(10, 20),
    progress: Callable[[str], None] | None = None,
) -> EvalResult:
    """Choose hyperparameters on the validation part, retrain on train+valid, score the test part."""
    best_params = choose_on_validation(factory, grid, split, metric, ks, progress)
    scorer, metrics, secs = fit_and_evaluate(factory, best_params, split, "test", ks)
    return EvalResult(scorer.name, split.protocol, "test", metrics, scorer.get_params(), secs)


def write_run(
    scorer, split: Split, path: str | Path, part: str = "test", depth: int = 100, batch_size: int = 1024
) -> int:
    """Write a TSV run ``user<TAB>item<TAB>score`` (dataset ids), up to ``depth`` rows per user, never an
    item from the user's known history. Returns the number of rows written."""
    ds = split.dataset
    t = _eval_target(split, part)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for start in range(0, len(t.users), batch_size):
            batch = t.users[start : start + batch_size]
            scores = np.array(scorer.score(batch, t.hist), dtype=np.float64)
            r, c = t.hist.binary[batch].nonzero()
            scores[r, c] = -np.inf
            if t.candidates is not None:
                scores[:, ~t.candidates] = -np.inf
            top = top_k(scores, depth)
            for row, u in enumerate(batch):
                uid = ds.user_ids[u]
                for i in top[row]:
                    s = scores[row, i]
                    if not np.isfinite(s):
                        break
                    f.write(f"{uid}\t{ds.item_ids[i]}\t{s:.6f}\n")
                    n += 1
    return n
