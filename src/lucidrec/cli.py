"""Command-line interface (typer): a thin shell over the Python API.

This module only assembles the app: each command lives in a module with one job, and every command
module imports its shared options and error handling from :mod:`lucidrec.cli_common`, never from here.
Command modules import their heavy dependencies inside the command body so `lucidrec --help` stays fast.
"""

from __future__ import annotations

import os
import sys

import typer

from lucidrec import cli_batch, cli_eval, cli_finetune, cli_forget, cli_recommend, cli_report
from lucidrec.service import cli as service_cli

app = typer.Typer(add_completion=False, no_args_is_help=True, help="lucidrec: recommendations that explain themselves.")

cli_eval.register(app)  # evaluate, export-run, split, baselines, train, demo
cli_recommend.register(app)  # recommend
service_cli.register(app)  # serve
cli_finetune.register(app)  # finetune-encoder
cli_batch.register(app)  # batch, index
cli_report.register(app)  # report
cli_forget.register(app)  # forget


def main():  # pragma: no cover - console entry point
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
