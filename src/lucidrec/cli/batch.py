"""CLI commands ``lucidrec batch`` (top-k for every row of a Parquet file, :func:`lucidrec.batch.run_batch`)
and ``lucidrec index`` (build a model folder's candidate index)."""

from __future__ import annotations

from pathlib import Path

import typer

from lucidrec.batch import run_batch


def register(app: typer.Typer) -> None:
    """Add ``lucidrec batch`` and ``lucidrec index`` to the CLI."""
    from lucidrec.cli.common import _friendly, console

    @app.command("batch")
    @_friendly
    def batch_cmd(
        model: Path = typer.Option(..., "--model", help="Model folder written by 'lucidrec train'."),
        users: Path = typer.Option(
            ..., "--users", help="Parquet file: user_id (required), history, ratings, query (optional)."
        ),
        out_path: Path = typer.Option(..., "--out", help="Parquet file to write (one row per recommended item)."),
        k: int = typer.Option(100, "--k", help="Items per user (1-1000)."),
        evidence: bool = typer.Option(False, "--evidence", help="Add the evidence (JSON) and reason columns."),
        engine: str = typer.Option("local", "--engine", help="local (this process) or ray."),
        address: str | None = typer.Option(None, "--address", help="Ray cluster address (default: start Ray here)."),
        chunk_size: int = typer.Option(1000, "--chunk-size", help="Users per chunk (memory grows with it)."),
        index: str = typer.Option(
            "saved",
            "--index",
            help="Candidates: 'saved' (the model folder's index, exact without one), exact, auto, ivf, hnsw.",
        ),
        include_seen: bool = typer.Option(False, "--include-seen", help="Allow items already in the history."),
        skip_unknown: bool = typer.Option(
            False, "--skip-unknown", help="Skip unknown users without a history instead of failing."
        ),
        num_cpus: int | None = typer.Option(None, "--num-cpus", help="CPUs for a Ray started here."),
        workers: int | None = typer.Option(None, "--workers", help="Ray actors (default: one per CPU)."),
    ):
        """Recommend for many users from a Parquet file, in chunks, locally or on Ray."""
        summary = run_batch(
            model,
            users,
            out_path,
            k=k,
            evidence=evidence,
            engine=engine,
            address=address,
            chunk_size=chunk_size,
            index=index,
            exclude_seen=not include_seen,
            skip_unknown=skip_unknown,
            num_cpus=num_cpus,
            workers=workers,
        )
        console.print(
            f"wrote {summary['rows']} rows for {summary['users']} users to {summary['out']} in "
            f"{summary['seconds']:.1f} s ({summary['users_per_second']} users/s, {summary['engine']}, "
            f"{summary['index']} candidates)"
        )

    @app.command("index")
    @_friendly
    def index_cmd(
        model: Path = typer.Option(..., "--model", help="Model folder to add the candidate index to."),
        kind: str = typer.Option("auto", "--kind", help="auto (exact below --exact-threshold), exact, ivf, hnsw."),
        exact_threshold: int = typer.Option(50_000, "--exact-threshold", help="auto: exact below this many items."),
        nprobe: int | None = typer.Option(None, "--nprobe", help="IVF lists searched per query (default: 1/10)."),
        nlist: int | None = typer.Option(None, "--nlist", help="IVF lists (default ~2 sqrt(items))."),
        candidates: int = typer.Option(1000, "--candidates", help="Items retrieved per user, then scored exactly."),
        text_dim: int = typer.Option(64, "--text-dim", help="PCA size of the text block in the index (0: full)."),
        storage: str = typer.Option("flat", "--storage", help="IVF storage: flat or sq8."),
    ):
        """Build the ANN candidate index for a saved model and write it into the model folder."""
        from lucidrec.recommender import Recommender

        rec = Recommender.load(model, load_encoder=False)
        r = rec.build_index(
            kind=kind,
            progress=True,
            exact_threshold=exact_threshold,
            nprobe=nprobe,
            nlist=nlist,
            candidates=candidates,
            text_dim=text_dim or None,
            storage=storage,
        )
        r.save(model)
        console.print(
            f"{r.kind} index for {rec.scorer.n_items} items written to {model} "
            f"(built in {r.info.get('build_seconds', 0.0):.1f} s)"
        )


__all__ = ["register"]
