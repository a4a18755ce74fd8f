"""Command-line interface (typer): the ``lucidrec`` console entry point (:func:`main`, also
``python -m lucidrec.cli``).

| module | job |
|---|---|
| :mod:`lucidrec.cli.application` | assembles the typer ``app`` from the command modules (only :func:`main` reads it) |
| :mod:`lucidrec.cli.common` | consoles, shared options, error handling, tables: what every command module imports |
| :mod:`lucidrec.cli.evaluate` | evaluate, export-run, split, baselines, train, demo |
| :mod:`lucidrec.cli.recommend` | recommend |
| :mod:`lucidrec.cli.finetune` | finetune-encoder |
| :mod:`lucidrec.cli.batch` | batch, index |
| :mod:`lucidrec.cli.report` | report |
| :mod:`lucidrec.cli.forget` | forget |

``serve`` lives with the service (:mod:`lucidrec.service.cli`). This package's own module imports nothing,
so a command module imported alone does not assemble the app.
"""

from __future__ import annotations

import os
import sys


def main():  # pragma: no cover - console entry point
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from lucidrec.cli.application import app

    sys.exit(app())
