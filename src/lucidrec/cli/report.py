"""CLI command ``lucidrec report``: one self-contained HTML evaluation page (see :mod:`lucidrec.report`)."""

from __future__ import annotations

from pathlib import Path

import typer

from lucidrec.cli.common import DataOpt, console, friendly, progress, safe


def register(app: typer.Typer) -> None:
    """Add this module's command to ``app``."""

    @app.command()
    @friendly
    def report(
        data: str = DataOpt,
        protocol: str = typer.Option("loo", "--protocol", help="Evaluation protocol: ratio, loo or cold."),
        out_path: Path = typer.Option(Path("report.html"), "--out", help="HTML file to write."),
        seeds: int = typer.Option(1, "--seeds", min=1, help="Seeds for SASRec and LucidRec (2026, 2027, ...)."),
        epochs: int = typer.Option(30, "--epochs", min=1, help="LucidRec training epochs (early stopping)."),
        max_minutes: float = typer.Option(10.0, "--max-minutes", help="Training time cap per model and seed."),
        models: str = typer.Option(
            None, "--models", help="Comma-separated rows to compute (default all), e.g. EASE,SASRec,LucidRec."
        ),
        users: int = typer.Option(50, "--explain-users", min=1, help="Users whose top-10 explanations are checked."),
        lang: str = typer.Option("en", "--lang", help="Language of the example reasons: en or zh."),
    ):
        """Train the baselines, SASRec and LucidRec on a split and write one HTML page: accuracy table,
        NDCG by history length, popularity/coverage, explanation metrics and example recommendations."""
        from lucidrec.report import write_report

        path, rep = write_report(
            data,
            protocol,
            out_path,
            seeds=[2026 + k for k in range(seeds)],
            epochs=epochs,
            max_minutes=max_minutes,
            models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
            explain_users=users,
            lang=lang,
            log=progress,
        )
        best = max(rep["accuracy"], key=lambda r: r["metrics"]["ndcg@10"])
        console.print(
            f"wrote {safe(path)} ({path.stat().st_size // 1024} KiB); best NDCG@10: {best['model']} "
            f"{best['metrics']['ndcg@10']:.4f}"
        )
