"""``lucidrec serve``: start the HTTP service (uvicorn) over a saved model folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

SETTINGS_ENV = "LUCIDREC_SERVICE_SETTINGS"  # how worker processes receive the settings (never the keys)
SERVE_ENCODER_THREADS = 1  # one query-encoder thread per request: the server's parallelism is its requests
# "trace" is left out on purpose: uvicorn's trace log writes raw request lines and ASGI scopes (query
# strings with a refused api_key=..., user ids), which the service's own access log never does.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def register(app: typer.Typer) -> None:
    from lucidrec.cli.common import _friendly

    @app.command()
    @_friendly
    def serve(
        model: Path = typer.Option(..., "--model", help="Model folder written by 'lucidrec train --out DIR'."),
        db: Path = typer.Option(None, "--db", help="SQLite feedback database (default: DIR/feedback.db)."),
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8000, "--port", min=0, max=65535),
        api_keys_file: Path = typer.Option(
            None,
            "--api-keys-file",
            help="File with one API key per line: 'read: KEY' (reads stored users' data) or 'write: KEY' (also "
            "feedback and forgetting); a bare KEY is a write key. Added to $LUCIDREC_API_KEYS (write) and "
            "$LUCIDREC_READ_KEYS (read).",
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
            False, "--demo-key", help="Make a random write key for this run and print it (for trying the web page)."
        ),
        demo_read_key: bool = typer.Option(
            False,
            "--demo-read-key",
            help="Make a random read-only key for this run and print it (it reads users, cannot write or forget).",
        ),
        forwarded_allow_ips: str = typer.Option(
            None,
            "--forwarded-allow-ips",
            help="Comma-separated addresses of reverse proxies whose X-Forwarded-For gives the client address. "
            "Default: none; the header is ignored and throttles count the TCP peer.",
        ),
        workers: int = typer.Option(1, "--workers", min=1, max=64, help="Server processes."),
        log_level: str = typer.Option("info", "--log-level", help="critical, error, warning, info or debug."),
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
        from lucidrec.service.auth import ENV_VAR, READ_ENV_VAR, WRITE, load_keys, new_demo_key

        if require_read_keys and public_reads:
            raise ConfigError(
                "--require-read-keys and --public-reads contradict. Fix: keep one (reads are keyed by default)."
            )
        if log_level.lower() not in LOG_LEVELS:
            why = (
                " ('trace' would log raw request lines: keys sent in a URL, user ids)"
                if log_level.lower() == "trace"
                else ""
            )
            raise ConfigError(
                f"--log-level {log_level}: use one of {', '.join(LOG_LEVELS)}{why}. Fix: --log-level debug."
            )
        log_level = log_level.lower()
        if synchronous.upper() not in ("FULL", "NORMAL"):
            raise ConfigError(f"--synchronous {synchronous}: must be FULL or NORMAL. Fix: --synchronous FULL.")
        if queue < threads:
            raise ConfigError(f"--queue {queue} is under --threads {threads}. Fix: a queue of at least {threads}.")
        if not (model / "config.json").exists():
            raise ConfigError(f"--model {model}: not a model folder (no config.json). Fix: lucidrec train --out DIR.")
        from lucidrec.io.model_io import check_folder
        from lucidrec.recommender import Recommender

        # A broken folder: one clear error here, not uvicorn's "Application startup failed". One process
        # serves the model loaded by this check; several workers each load their own.
        checked = Recommender.from_model(check_folder(model, encoder_threads=SERVE_ENCODER_THREADS))
        keys = load_keys(api_keys_file)
        for wanted, var, kind in ((demo_key, ENV_VAR, "write"), (demo_read_key, READ_ENV_VAR, "read")):
            if not wanted:
                continue
            key = new_demo_key()
            # Workers read keys from the environment they inherit; the key lives only as long as this run.
            os.environ[var] = ",".join([*(k for k in os.environ.get(var, "").split(",") if k.strip()), key])
            keys.setdefault(key, kind)
            typer.echo(f"demo {kind} key for this run (paste it into the web page's key box): {key}")
        if WRITE not in keys.values():
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
        # X-Forwarded-For is honoured only from the proxies named here (uvicorn's default would trust it from
        # 127.0.0.1, so any local client could pick its own address and dodge the failed-key throttle).
        proxy = {"proxy_headers": bool(forwarded_allow_ips)}
        if forwarded_allow_ips:
            proxy["forwarded_allow_ips"] = forwarded_allow_ips
        typer.echo(
            f"lucidrec serving {model} on http://{host}:{port}/ (docs: /docs), feedback db {settings['db_path']}"
        )
        if workers == 1:
            # uvicorn's access log writes raw paths and query strings (user ids, keys sent in a URL); the
            # service's own access log (logger lucidrec.access) writes route templates only.
            app = _build(settings, keys, checked)
            uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, **proxy)
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
                **proxy,
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


def _build(settings: dict, keys: dict[str, str], model=None):
    """The app for ``settings``; ``keys``: every key and its kind (lucidrec.service.auth.load_keys)."""
    from lucidrec.service.app import ServiceSettings, create_app
    from lucidrec.service.auth import READ, WRITE

    limit_native_threads()
    _access_log(settings.get("log_level", "info"))
    return create_app(
        ServiceSettings(
            model_dir=Path(settings["model_dir"]),
            db_path=Path(settings["db_path"]),
            api_keys=[k for k, kind in keys.items() if kind == WRITE],
            read_api_keys=[k for k, kind in keys.items() if kind == READ],
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
    from lucidrec.service.auth import load_keys

    settings = json.loads(os.environ[SETTINGS_ENV])
    return _build(settings, load_keys(settings["api_keys_file"]))
