"""The typer app: a thin shell over the Python API, assembled from the command modules.

This module only assembles the app: each command lives in a module of :mod:`lucidrec.cli` with one job, and
every command module imports its shared options and error handling from :mod:`lucidrec.cli.common`, never
from here. Command modules import their heavy dependencies inside the command body so `lucidrec --help`
stays fast.
"""

from __future__ import annotations

import typer

from lucidrec.cli import batch, evaluate, finetune, forget, recommend, report
from lucidrec.service import cli as service_cli

app = typer.Typer(add_completion=False, no_args_is_help=True, help="lucidrec: recommendations that explain themselves.")

evaluate.register(app)  # evaluate, export-run, split, baselines, train, demo
recommend.register(app)  # recommend
service_cli.register(app)  # serve
finetune.register(app)  # finetune-encoder
batch.register(app)  # batch, index
report.register(app)  # report
forget.register(app)  # forget
