"""``lucidrec serve``: start the HTTP service (uvicorn) over a saved model folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

SETTINGS_ENV = "LUCIDREC_SERVICE_SETTINGS"  # how worker processes receive the settings (never the keys)
SERVE_ENCODER_THREADS = 1  # one query-encoder thread per request: the server's parallelism is its requests


def register(app: typer.Typer) -> None:
    from lucidrec.cli_common import _friendly

    @app.command()
    @_friendly
    def serve(
        model: Path = typer.Option(..., "--model", help="Model folder written by 'lucidrec train --out DIR'."),
        db: Path = typer.Option(None, "--db", help="SQLite feedback database (default: DIR/feedback.db)."),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port", min=0, max=65535),
        api_keys_file: Path = typer.Option(
            None, "--api-keys-file", help="File with one API key per line (added to $LUCIDREC_API_KEYS)."
        ),
        public_reads: bool = typer.Option(
            False,
            "--public-reads",
            help="Let anyone read stored histories (/users, /users/{id}/history, /recommend for a user) without "
            "a key. Default: those reads need a key.",
        ),
        require_read_keys: bool = typer.Option(False, "--require-read-keys", hidden=True),  # the default now
        rate_limit: float = typer.Option(50.0, "--rate-limit", min=0, help="Requests/s per API key (0: off)."),
        anon_rate_limit: float = typer.Option(
            10.0, "--anon-rate-limit", min=0, help="Requests/s per client address without a key (0: off)."
        ),
        threads: int = typer.Option(
            1, "--threads", min=1, max=64, help="Worker threads per process for the model (more processes: --workers)."
        ),
        queue: int = typer.Option(
            64, "--queue", min=1, max=10_000, help="Requests a process admits (running + waiting) before 503."
        ),
        max_history: int = typer.Option(
            1000, "--max-history", min=1, max=100_000, help="Most recent stored rows of a user used per request."
        ),
        synchronous: str = typer.Option(
            "FULL",
            "--synchronous",
            help="FULL: every acknowledged write is fsync'd (survives power loss). NORMAL: faster, may lose the "
            "last writes on an OS crash or power loss.",
        ),
        demo_key: bool = typer.Option(
            False, "--demo-key", help="Make a random write key for this run and print it (for the web page)."
        ),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Server processes."),
        log_level: str = typer.Option("info", "--log-level"),
    ):
        """Serve recommendations over HTTP (OpenAPI docs at /docs, web page at /)."""
        from lucidrec.errors import DependencyError

        try:
            import uvicorn

            import lucidrec.service.app  # noqa: F401  (fails here, clearly, without the serve extra)
        except ImportError as e:
            raise DependencyError(
                f"serve needs the 'serve' extra ({e.name} is missing). Fix: pip install 'lucidrec[serve]'."
            ) from None
        from lucidrec.errors import ConfigError
        from lucidrec.service.auth import ENV_VAR, load_api_keys, new_demo_key

        if require_read_keys and public_reads:
            raise ConfigError(
                "--require-read-keys and --public-reads contradict. Fix: keep one (reads are keyed by default)."
            )
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ConfigError(f"--synchronous {synchronous}: must be FULL or NORMAL. Fix: --synchronous FULL.")
        if queue < threads:
            raise ConfigError(f"--queue {queue} is under --threads {threads}. Fix: a queue of at least {threads}.")
        if not (model / "config.json").exists():
            raise ConfigError(f"--model {model}: not a model folder (no config.json). Fix: lucidrec train --out DIR.")
        from lucidrec.model_io import check_folder

        # A broken folder: one clear error here, not uvicorn's "Application startup failed". One process
        # serves the model loaded by this check; several workers each load their own.
        checked = check_folder(model, encoder_threads=SERVE_ENCODER_THREADS)
        keys = load_api_keys(api_keys_file)
        if demo_key:
            key = new_demo_key()
            # Workers read keys from the environment they inherit; the key lives only as long as this run.
            os.environ[ENV_VAR] = ",".join([*(k for k in os.environ.get(ENV_VAR, "").split(",") if k.strip()), key])
            keys.append(key)
            typer.echo(f"demo write key for this run (paste it into the web page's key box): {key}")
        if not keys:
            typer.echo("warning: no API keys configured: /feedback and DELETE /users will answer 401.", err=True)
        settings = {
            "model_dir": str(model.resolve()),
            "db_path": str((db or model / "feedback.db").resolve()),
            "api_keys_file": str(api_keys_file.resolve()) if api_keys_file else None,
            "public_reads": public_reads,
            "rate_limit": rate_limit / workers,  # each worker enforces its share
            "anon_rate_limit": anon_rate_limit / workers,
            "threads": threads,
            "queue": queue,
            "max_history": max_history,
            "synchronous": synchronous.upper(),
            "log_level": log_level,
        }
        typer.echo(
            f"lucidrec serving {model} on http://{host}:{port}/ (docs: /docs), feedback db {settings['db_path']}"
        )
        if workers == 1:
            # uvicorn's access log writes raw paths and query strings (user ids, keys sent in a URL); the
            # service's own access log (logger lucidrec.access) writes route templates only.
            app = _build(settings, keys, checked)
            uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)
        else:
            checked = None  # each worker loads its own; the supervisor keeps no copy
            os.environ[SETTINGS_ENV] = json.dumps(settings)
            uvicorn.run(
                "lucidrec.service.cli:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
                access_log=False,
            )


def limit_native_threads() -> None:
    """One BLAS/OpenMP thread per server process. The server gets its parallelism from concurrent
    requests; a multi-threaded BLAS on top oversubscribes the cores, and its spinning threads made
    recommend 5-7x slower under load on 2 cores (measured: p50 48 ms -> 7 ms with other jobs running)."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")  # worker processes inherit it before they import numpy
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it only the environment (workers) is limited
        return
    threadpool_limits(limits=1)  # numpy is already loaded in this process


def _build(settings: dict, keys: list[str], model=None):
    from lucidrec.service.app import ServiceSettings, create_app

    limit_native_threads()
    _access_log(settings.get("log_level", "info"))
    return create_app(
        ServiceSettings(
            model_dir=Path(settings["model_dir"]),
            db_path=Path(settings["db_path"]),
            api_keys=keys,
            public_reads=settings["public_reads"],
            rate_limit=settings["rate_limit"],
            anon_rate_limit=settings["anon_rate_limit"],
            threads=settings["threads"],
            queue=settings["queue"],
            max_history=settings["max_history"],
            synchronous=settings["synchronous"],
            encoder_threads=SERVE_ENCODER_THREADS,
        ),
        model,
    )


def _access_log(level: str) -> None:
    """The service's access log on stderr at --log-level info or lower (route templates, no ids or keys)."""
    import logging

    logger = logging.getLogger("lucidrec.access")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.getLevelName(level.upper()) if isinstance(logging.getLevelName(level.upper()), int) else 20)


def app_from_env():
    """uvicorn factory for worker processes: settings from the environment, keys re-read from their sources."""
    from lucidrec.service.auth import load_api_keys

    settings = json.loads(os.environ[SETTINGS_ENV])
    return _build(settings, load_api_keys(settings["api_keys_file"]))
