"""What every CLI command module shares: the consoles, the common options, error handling, tables.

Command modules (:mod:`lucidrec.cli.evaluate`, ``recommend``, ``finetune``, ``batch``, ``report``, ``forget``,
:mod:`lucidrec.service.cli`) import this module; :mod:`lucidrec.cli.application` imports them and assembles the
app. Nothing here imports a command module, so there is no import circle.
"""

from __future__ import annotations

import json
import re
import sys
from functools import wraps

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lucidrec.errors import ConfigError, LucidrecError

# Messages on stderr are never hard-wrapped (soft_wrap): piped into a log, an error stays one line, and
# a terminal wraps long lines by itself. Rich's default would fold at 80 columns on a pipe, wherever
# the width happens to fall (inside a file name, a path of any length).
console = Console(stderr=True, soft_wrap=True)
# Pipes get 80 columns by default, too narrow for metric tables.
out = Console(width=None if sys.stdout.isatty() else 150)

# C0/C1 control characters (ESC, BEL, CR, ...) and the Unicode bidi overrides: in a terminal they move
# the cursor, set the window title or reorder text. Data (titles, queries, ids) never carries them out.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def plain(value) -> str:
    """``value`` as printable text: control characters become spaces (tabs and newlines included: a
    table cell or a message line stays one line)."""
    return _CONTROL.sub(" ", str(value))


def safe(value) -> str:
    """Data printed as data: control characters removed and rich markup escaped, so a title holding
    ``[/]``, ``[link=...]`` or ``[bold red]`` prints those characters instead of styling the terminal
    (or ending the command with a MarkupError)."""
    return escape(plain(value))


DataOpt = typer.Option(
    "ml-100k",
    "--data",
    help="'ml-100k', a folder of RecBole atomic files or of Amazon NAME.inter.json + NAME.item.json, "
    "or a CSV/Parquet file.",
)
ProtocolOpt = typer.Option("ratio", "--protocol", help="Evaluation protocol: ratio, loo or cold.")
SeedOpt = typer.Option(2026, "--seed", help="Seed of the split and of training.")


def progress(message) -> None:
    """A dim progress line on stderr; the message (it may quote paths or ids) is printed as data."""
    console.print(f"[dim]{safe(message)}[/]")


def friendly(fn):
    """Print LucidrecError messages without a traceback and exit non-zero."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except LucidrecError as e:
            # The message quotes user input (ids, paths, queries): printed as data, on one line.
            console.print(f"[bold red]error:[/] {safe(e)}", highlight=False)
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


def _plain_usage_errors() -> None:
    """Typer prints usage errors ("Invalid value for '--k'") in a rich panel that folds at the panel's
    width. On a pipe, click's plain one-line form is used instead; a terminal keeps the panel."""
    try:
        from typer import rich_utils
    except ImportError:  # typer without rich: click's plain form already
        return
    boxed = rich_utils.rich_format_error
    if getattr(boxed, "_lucidrec_plain", False):
        return

    def format_error(e) -> None:
        if sys.stderr.isatty():
            boxed(e)
        else:
            e.show()

    format_error._lucidrec_plain = True
    rich_utils.rich_format_error = format_error


_plain_usage_errors()

# The name the command modules have used since before this module existed.
_friendly = friendly
