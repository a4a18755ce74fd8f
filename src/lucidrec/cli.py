"""Command-line interface (typer): a thin shell over the Python API."""

from __future__ import annotations

import json
import os
import sys
from functools import wraps
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from lucidrec.errors import ConfigError, LucidrecError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="lucidrec: recommendations that explain themselves.")
console = Console(stderr=True)
# Pipes get 80 columns by default, too narrow for metric tables.
out = Console(width=None if sys.stdout.isatty() else 150)

DataOpt = typer.Option("ml-100k", "--data", help="'ml-100k', a folder of RecBole atomic files, or a CSV/Parquet file.")
ProtocolOpt = typer.Option("ratio", "--protocol", help="Evaluation protocol: ratio, loo or cold.")
SeedOpt = typer.Option(2026, "--seed", help="Seed of the split and of training.")


def _friendly(fn):
    """Print LucidrecError messages without a traceback and exit non-zero."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LucidrecError as e:
            console.print(f"[bold red]error:[/] {e}", highlight=False)
            raise typer.Exit(code=2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=130) from None

    return wrapper


def _parse_params(params: list[str]) -> dict:
    out_params = {}
    for p in params or []:
        if "=" not in p:
            raise ConfigError(f"--param '{p}': expected NAME=VALUE, e.g. --param reg=300.")
        k, v = p.split("=", 1)
        try:
            out_params[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out_params[k.strip()] = v
    return out_params


def _metric_table(results: list[dict], title: str, ks=(10, 20)) -> Table:
    """One row per (model, K): the ranking metrics, AUC and coverage."""
    table = Table(title=title)
    names = ("ndcg", "recall", "precision", "f1", "hr", "mrr", "map", "coverage")
    for c in ("model", "K", *names, "auc"):
        table.add_column(c, justify="left" if c == "model" else "right")
    for r in results:
        m = r["metrics"]
        for k in ks:
            if f"ndcg@{k}" not in m:
                continue
            table.add_row(r["model"], str(k), *[f"{m[f'{n}@{k}']:.4f}" for n in names],
                          f"{m['auc']:.4f}" if "auc" in m else "-")
    return table


@app.command()
@_friendly
def evaluate(model: str = typer.Option("ease", "--model", help="Baseline name (mostpop, itemknn, ease, als) or a trained model folder."),
             data: str = DataOpt, protocol: str = ProtocolOpt, seed: int = SeedOpt,
             param: list[str] = typer.Option(None, "--param", help="Fix a hyperparameter, NAME=VALUE (skips tuning)."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")):
    """Evaluate a baseline (tuned on validation, retrained on train+valid) or a trained model on the test part."""
    from lucidrec.api import evaluate_model

    result = evaluate_model(model, data=data, protocol=protocol, seed=seed, params=_parse_params(param),
                            progress=None if as_json else lambda m: console.print(f"[dim]{m}[/]"))
    if as_json:
        out.print_json(json.dumps(result))
    else:
        out.print(_metric_table([result], f"{result['model']} on {result['protocol']} (test, full ranking)"))
        if result.get("params"):
            out.print(f"params: {result['params']}")


@app.command("export-run")
@_friendly
def export_run(model: str = typer.Option("ease", "--model", help="Baseline name or trained model folder."),
               out_path: Path = typer.Option(..., "--out", help="TSV file to write (user, item, score)."),
               data: str = DataOpt, protocol: str = ProtocolOpt, seed: int = SeedOpt,
               depth: int = typer.Option(100, "--depth", min=1, max=10000, help="Rows per user."),
               param: list[str] = typer.Option(None, "--param", help="Fix a hyperparameter, NAME=VALUE.")):
    """Write a TSV run file for the test part: user<TAB>item<TAB>score, best first, up to --depth per user."""
    from lucidrec.api import export_model_run

    n = export_model_run(model, out_path, data=data, protocol=protocol, seed=seed, depth=depth,
                         params=_parse_params(param), progress=lambda m: console.print(f"[dim]{m}[/]"))
    console.print(f"wrote {n} rows to {out_path}")


@app.command("split")
@_friendly
def split_cmd(out_dir: Path = typer.Option(..., "--out", help="Folder for train.tsv, valid.tsv, test.tsv."),
              data: str = DataOpt, protocol: str = ProtocolOpt, seed: int = SeedOpt):
    """Write the split itself (user<TAB>item<TAB>rating<TAB>timestamp, the dataset's own ids)."""
    from lucidrec.data import load_dataset
    from lucidrec.splits import split

    s = split(load_dataset(data), protocol, seed)
    for p in s.write(out_dir):
        console.print(f"wrote {p}")
    tr, va, te = s.sizes()
    out.print(f"{protocol}: train {tr}, valid {va}, test {te}")


@app.command()
@_friendly
def baselines(data: str = DataOpt, protocol: list[str] = typer.Option(["ratio", "loo"], "--protocol"),
              seed: int = SeedOpt, as_json: bool = typer.Option(False, "--json")):
    """Tune and evaluate every baseline on the given protocols and print their table."""
    from lucidrec.api import run_baselines

    all_results = []
    for p in protocol:
        results = run_baselines(data=data, protocol=p, seed=seed, progress=lambda m: console.print(f"[dim]{m}[/]"))
        all_results += results
        if not as_json:
            out.print(_metric_table(results, f"baselines on {p} (test part, full ranking)", ks=(10,)))
    if as_json:
        out.print_json(json.dumps(all_results))


def main():  # pragma: no cover - console entry point
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(app())
