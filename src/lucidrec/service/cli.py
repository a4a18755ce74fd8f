"""``lucidrec serve``: start the HTTP service (uvicorn) over a saved model folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

SETTINGS_ENV = "LUCIDREC_SERVICE_SETTINGS"  # how worker processes receive the settings (never the keys)


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
        require_read_keys: bool = typer.Option(False, "--require-read-keys", help="Reads need a key too."),
        rate_limit: float = typer.Option(50.0, "--rate-limit", min=0, help="Requests/s per API key (0: off)."),
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

        if not (model / "config.json").exists():
            raise ConfigError(f"--model {model}: not a model folder (no config.json). Fix: lucidrec train --out DIR.")
        from lucidrec.model_io import check_folder

        check_folder(model)  # a broken folder: one clear error here, not uvicorn's "Application startup failed"
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
            "require_read_keys": require_read_keys,
            "rate_limit": rate_limit / workers,  # each worker enforces its share
        }
        typer.echo(
            f"lucidrec serving {model} on http://{host}:{port}/ (docs: /docs), feedback db {settings['db_path']}"
        )
        if workers == 1:
            uvicorn.run(_build(settings, keys), host=host, port=port, log_level=log_level)
        else:
            os.environ[SETTINGS_ENV] = json.dumps(settings)
            uvicorn.run(
                "lucidrec.service.cli:app_from_env",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level=log_level,
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


def _build(settings: dict, keys: list[str]):
    from lucidrec.service.app import ServiceSettings, create_app

    limit_native_threads()
    return create_app(
        ServiceSettings(
            model_dir=Path(settings["model_dir"]),
            db_path=Path(settings["db_path"]),
            api_keys=keys,
            require_read_keys=settings["require_read_keys"],
            rate_limit=settings["rate_limit"],
            encoder_threads=1,
        )
    )


def app_from_env():
    """uvicorn factory for worker processes: settings from the environment, keys re-read from their sources."""
    from lucidrec.service.auth import load_api_keys

    settings = json.loads(os.environ[SETTINGS_ENV])
    return _build(settings, load_api_keys(settings["api_keys_file"]))
