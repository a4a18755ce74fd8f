"""Side-by-side accuracy on one split: the classic baselines, SASRec and LucidRec, over seeds.

The one code path behind ``benchmarks/accuracy.py`` and ``lucidrec report``: both call :func:`compare`,
so the report's table holds the benchmark's numbers. Baselines are tuned on the validation part and
retrained on train+valid; SASRec and LucidRec are trained per seed (mean and std over seeds). The
fitted models of the first seed are kept for the report's other sections (per-user accuracy,
popularity of what is recommended, explanations).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lucidrec.evaluate import choose_on_validation, evaluate_scorer, fit_and_evaluate, parts_for
from lucidrec.history import Histories
from lucidrec.metrics import top_k
from lucidrec.splits import Split

#: Training samples LucidRec draws under each protocol (order-free sets, or next-item sequences).
MODE = {"ratio": "set", "loo": "seq", "cold": "set"}
CLASSIC = ("MostPopular", "ItemKNN", "EASE", "ALS")


@dataclass
class Comparison:
    """Rows in the benchmark's JSON shape, plus the first seed's fitted scorers by model name."""

    rows: list[dict] = field(default_factory=list)
    scorers: dict[str, object] = field(default_factory=dict)
    recommender: object | None = None  # the first seed's LucidRec Recommender


def lucidrec_config(protocol: str, seed: int, epochs: int, max_minutes: float):
    from lucidrec.models.config import HybridConfig

    return HybridConfig(seed=seed, mode=MODE.get(protocol, "mixed"), epochs=epochs, max_minutes=max_minutes)


def _mean_std(model: str, protocol: str, runs: list[dict], seeds, params: dict | None = None) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], float)]
    row = {
        "model": model,
        "protocol": protocol,
        "metrics": {k: float(np.mean([r[k] for r in runs])) for k in keys},
        # One run has no spread to report: no std (tables then print the value alone, not "± 0.0000").
        "std": {k: float(np.std([r[k] for r in runs])) for k in keys} if len(runs) > 1 else {},
        "seeds": list(seeds),
        "runs": runs,
    }
    return {**row, "params": params} if params else row


def compare(
    dataset,
    split: Split,
    seeds=(2026,),
    models: list[str] | None = None,
    epochs: int = 30,
    max_minutes: float = 10.0,
    include_als: bool = False,
    text_embeddings: np.ndarray | None = None,
    log: Callable[[str], None] | None = None,
) -> Comparison:
    """Score every wanted model on ``split``'s test part (full ranking). ``models`` names the rows to
    compute (default: all); under ``cold`` the rows are Random, TextKNN and LucidRec (the collaborative
    baselines cannot rank items nobody has interacted with)."""
    from lucidrec.baselines import ALS, BASELINES, RandomScorer, TextNeighbours

    log = log or (lambda _msg: None)
    wanted = None if models is None else {m.lower() for m in models}

    def want(name: str) -> bool:
        return wanted is None or name.lower() in wanted

    out = Comparison()
    protocol = split.protocol
    seeds = list(seeds)
    if protocol == "cold":
        if text_embeddings is None and want("TextKNN"):
            from lucidrec.data import ItemTextBuilder
            from lucidrec.encoders import CachedEncoder, SentenceTransformerEncoder

            text_embeddings = CachedEncoder(SentenceTransformerEncoder()).encode(ItemTextBuilder().build(dataset))
        cold_scorers = [RandomScorer()] + ([TextNeighbours(text_embeddings)] if text_embeddings is not None else [])
        for scorer in cold_scorers:
            if want(scorer.name):
                m = evaluate_scorer(scorer.fit(dataset, split.train_valid()), split, "test")
                out.rows.append({"model": scorer.name, "protocol": protocol, "metrics": m, "params": {}})
                out.scorers[scorer.name] = scorer
                log(f"  {scorer.name}: ndcg@10 {m['ndcg@10']:.4f}")
    else:
        for cls, grid in BASELINES.values():
            if cls.name not in CLASSIC or not want(cls.name):
                continue
            if cls is ALS and not (include_als and ALS.available()):
                continue
            t0 = time.perf_counter()
            params = choose_on_validation(cls, grid, split)
            scorer, m, _ = fit_and_evaluate(cls, params, split, "test")
            out.rows.append(
                {
                    "model": scorer.name,
                    "protocol": protocol,
                    "part": "test",
                    "params": scorer.get_params(),
                    "metrics": m,
                    "seconds": round(time.perf_counter() - t0, 3),
                }
            )
            out.scorers[scorer.name] = scorer
            log(f"  {scorer.name} {scorer.get_params()}: ndcg@10 {m['ndcg@10']:.4f}")
        if want("SASRec"):
            out.rows.append(_run_sasrec(dataset, split, seeds, max_minutes, out, log))
    if want("LucidRec"):
        out.rows.append(_run_lucidrec(dataset, split, seeds, epochs, max_minutes, out, log))
    return out


def _run_sasrec(dataset, split, seeds, max_minutes, out: Comparison, log) -> dict:
    from lucidrec.sasrec import SASRec

    runs = []
    for seed in seeds:
        model, m, secs = fit_and_evaluate(SASRec, {"seed": seed, "max_minutes": max_minutes}, split, "test")
        m["train_seconds"] = secs
        m["best_epoch"] = float(model.report["best_epoch"])
        runs.append(m)
        out.scorers.setdefault("SASRec", model)
        log(
            f"  SASRec seed {seed}: ndcg@10 {m['ndcg@10']:.4f} recall@10 {m['recall@10']:.4f} "
            f"({secs:.0f} s, best epoch {model.report['best_epoch']})"
        )
    params = {k: v for k, v in out.scorers["SASRec"].get_params().items() if k != "seed"}
    return _mean_std("SASRec", split.protocol, runs, seeds, params)


def _run_lucidrec(dataset, split, seeds, epochs, max_minutes, out: Comparison, log) -> dict:
    from lucidrec.recommender import Recommender

    runs = []
    for seed in seeds:
        t0 = time.perf_counter()
        cfg = lucidrec_config(split.protocol, seed, epochs, max_minutes)
        rec = Recommender(cfg).fit(dataset, split.train, split.valid, progress=False, understand=False)  # scored only
        scorer = rec.as_scorer(dataset)
        m = evaluate_scorer(scorer, split, "test")
        m["train_seconds"] = time.perf_counter() - t0
        runs.append(m)
        if out.recommender is None:
            out.recommender, out.scorers["LucidRec"] = rec, scorer
        log(
            f"  LucidRec seed {seed}: ndcg@10 {m['ndcg@10']:.4f} recall@10 {m['recall@10']:.4f} "
            f"({m['train_seconds']:.0f} s, {len(rec.train_report['epochs'])} epochs, "
            f"item-item {rec.train_report.get('item_item')})"
        )
    return _mean_std("LucidRec", split.protocol, runs, seeds)


@dataclass
class PerUser:
    """Per test user: NDCG@k, known-history length, and the top-k item indices recommended (-1 where
    fewer than k candidates were left)."""

    users: np.ndarray
    ndcg: np.ndarray
    history_length: np.ndarray
    top: np.ndarray


def per_user(scorer, split: Split, k: int = 10, batch_size: int = 1024) -> PerUser:
    """Each test user's NDCG@k under the evaluator's rules (known items excluded; under ``cold`` only the
    held-out items are candidates). Its mean equals ``evaluate_scorer(...)["ndcg@k"]``."""
    ds = split.dataset
    _, known, relevant_frame = parts_for(split, "test")
    hist = Histories.from_frame(known, ds.n_users, ds.n_items)
    rel = ds.matrix(relevant_frame)
    users = np.flatnonzero(np.diff(rel.indptr) > 0)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    ndcg, tops = [], []
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = np.array(scorer.score(batch, hist), dtype=np.float64)
        r, c = hist.binary[batch].nonzero()
        scores[r, c] = -np.inf
        if split.cold_items is not None:
            mask = np.ones(ds.n_items, bool)
            mask[split.cold_items] = False
            scores[:, mask] = -np.inf
        top = top_k(scores, k)
        top = np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)  # -1: no candidate left
        rb = rel[batch]
        for row in range(len(batch)):
            relevant = rb.indices[rb.indptr[row] : rb.indptr[row + 1]]
            hits = np.isin(top[row], relevant)
            ideal = discount[: min(len(relevant), k)].sum()
            ndcg.append(float((hits * discount[: len(hits)]).sum() / ideal) if ideal else 0.0)
        tops.append(top)
    length = np.diff(hist.binary.indptr)[users]
    return PerUser(users, np.asarray(ndcg), length, np.concatenate(tops) if tops else np.zeros((0, k), int))


__all__ = ["Comparison", "PerUser", "compare", "lucidrec_config", "per_user"]
