"""High-level Python API the interfaces (CLI, HTTP) call: evaluate, export runs, run baselines."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lucidrec.baselines import ALS, BASELINES, SLOW_BASELINES
from lucidrec.data import load_dataset
from lucidrec.errors import ConfigError
from lucidrec.evaluate import EvalResult, choose_on_validation, fit_and_evaluate, tune_and_test, write_run
from lucidrec.splits import split as make_split


def _baseline(name: str):
    key = name.lower()
    if key not in BASELINES:
        raise ConfigError(
            f"--model '{name}': not a baseline name nor a model folder. Fix: use one of "
            f"{', '.join(BASELINES)} or the folder written by 'lucidrec train'."
        )
    return BASELINES[key]


def _is_model_dir(model: str) -> bool:
    return Path(model).is_dir()


def evaluate_model(
    model: str,
    data="ml-100k",
    protocol="ratio",
    seed=2026,
    params: dict | None = None,
    progress: Callable | None = None,
) -> dict:
    ds = load_dataset(data)
    s = make_split(ds, protocol, seed)
    if _is_model_dir(model):
        from lucidrec.recommender import evaluate_saved_model

        return evaluate_saved_model(model, s).to_dict()
    cls, grid = _baseline(model)
    if params:
        _, metrics, secs = fit_and_evaluate(cls, params, s, "test")
        return EvalResult(cls.name, protocol, "test", metrics, params, secs).to_dict()
    return tune_and_test(cls, grid, s, progress=progress).to_dict()


def export_model_run(
    model: str,
    out: str | Path,
    data="ml-100k",
    protocol="ratio",
    seed=2026,
    depth=100,
    params: dict | None = None,
    progress: Callable | None = None,
) -> int:
    ds = load_dataset(data)
    s = make_split(ds, protocol, seed)
    if _is_model_dir(model):
        from lucidrec.recommender import Recommender

        scorer = Recommender.load(model, load_encoder=False).as_scorer(ds)
        return write_run(scorer, s, out, depth=depth)
    cls, grid = _baseline(model)
    params = params or choose_on_validation(cls, grid, s, progress=progress)
    scorer = cls(**params).fit(ds, s.train_valid())
    return write_run(scorer, s, out, depth=depth)


def run_baselines(
    data="ml-100k", protocol="ratio", seed=2026, progress: Callable | None = None, include_als: bool = True
) -> list[dict]:
    ds = load_dataset(data)
    s = make_split(ds, protocol, seed)
    results = []
    for key, (cls, grid) in BASELINES.items():
        if cls is ALS and not (include_als and ALS.available()):
            continue
        if key in SLOW_BASELINES:  # minutes of torch training: run on its own (evaluate --model sasrec)
            continue
        results.append(tune_and_test(cls, grid, s, progress=progress).to_dict())
    return results
