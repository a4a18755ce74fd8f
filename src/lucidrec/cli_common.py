"""What every CLI command module shares: the consoles, the common options, error handling, tables.

Command modules (``cli_eval``, ``cli_recommend``, ``service.cli``, ``finetune``, ``batch``) import this
module; :mod:`lucidrec.cli` imports them and assembles the app. Nothing here imports a command module,
so there is no import circle.
"""

from __future__ import annotations

import json
import sys
from functools import wraps

import typer
from rich.console import Console
from rich.table import Table

from lucidrec.errors import ConfigError, LucidrecError

console = Console(stderr=True)
# Pipes get 80 columns by default, too narrow for metric tables.
out = Console(width=None if sys.stdout.isatty() else 150)

DataOpt = typer.Option(
    "ml-100k",
    "--data",
    help="'ml-100k', a folder of RecBole atomic files or of Amazon NAME.inter.json + NAME.item.json, "
    "or a CSV/Parquet file.",
)
ProtocolOpt = typer.Option("ratio", "--protocol", help="Evaluation protocol: ratio, loo or cold.")
SeedOpt = typer.Option(2026, "--seed", help="Seed of the split and of training.")


def friendly(fn):
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


def parse_params(params: list[str]) -> dict:
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


def metric_table(results: list[dict], title: str, ks=(10, 20)) -> Table:
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
            table.add_row(
                r["model"], str(k), *[f"{m[f'{n}@{k}']:.4f}" for n in names], f"{m['auc']:.4f}" if "auc" in m else "-"
            )
    return table


# The name the command modules have used since before this module existed.
_friendly = friendly
