"""CLI command ``lucidrec forget``: the command-line door to forget users, in a model folder and/or a
feedback database, with what ``DELETE /users/{id}`` does over HTTP and more (see the README, "Privacy").

Every step is idempotent and runs whether or not an earlier step found anything, so a forget that was
interrupted (a killed server, a full disk) is completed by running it again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from lucidrec.cli.common import console, friendly, safe
from lucidrec.errors import ConfigError


def forget_users(users: list[str], model: Path | None, db: Path | None) -> list[dict]:
    """Forget ``users``: a tombstone in the model folder (every later load drops them), their rows erased
    from the feedback database (and its WAL) with a tombstone there too, and their rows removed from the
    folder's ``interactions.npz``. Returns one report per user."""
    from lucidrec import forgetting
    from lucidrec.io.purge import purge_interactions

    reports = [{"user": u, "db_rows": 0, "model_rows": 0, "model_folder_tombstone": False} for u in users]
    if model is not None:
        # The tombstone first: from this moment every load of the folder treats them as strangers, even
        # if a later step fails.
        if not forgetting.append(model, users):
            raise ConfigError(
                f"--model {model}: cannot write {forgetting.FILE_NAME} there (not writable). Fix: run as the "
                "folder's owner, or make the folder writable; nothing was forgotten."
            )
        before = _known_rows(model, users)
        purge_interactions(model)
        for r in reports:
            r["model_folder_tombstone"] = True
            r["model_rows"] = before.get(r["user"], 0)
    if db is not None:
        from lucidrec.service.store import FeedbackStore

        store = FeedbackStore(db)
        try:
            for r in reports:
                r["db_rows"], r["wal_checkpointed"] = store.delete_user(r["user"])
        finally:
            store.close()
    return reports


def _known_rows(model: Path, users: list[str]) -> dict[str, int]:
    """Rows each user still has in the folder's interactions.npz (before it is purged)."""
    import numpy as np

    path = model / "interactions.npz"
    if not path.is_file():
        return {}
    with np.load(path) as z:
        stored = z["user"].astype(str) if "user" in z.files else np.array([], str)
    wanted = set(users)
    names, counts = np.unique(stored[np.isin(stored, list(wanted))], return_counts=True)
    return {str(n): int(c) for n, c in zip(names, counts)}


def register(app: typer.Typer) -> None:
    """Add ``lucidrec forget`` to ``app``."""

    @app.command()
    @friendly
    def forget(
        users: list[str] = typer.Argument(None, help="User ids to forget (any characters; quote them)."),
        model: Path = typer.Option(None, "--model", help="Model folder: tombstone + rows removed from it."),
        db: Path = typer.Option(
            None, "--db", help="Feedback database (default with --model: DIR/feedback.db when it exists)."
        ),
        users_file: Path = typer.Option(None, "--users-file", help="A file with one user id per line."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    ):
        """Forget users: never served, seeded or trained on again. Run it again to finish one that was cut short."""
        ids = list(users or [])
        if users_file is not None:
            ids += _ids_from_file(users_file)
        ids = list(dict.fromkeys(ids))
        if not ids:
            raise ConfigError("no user to forget. Fix: lucidrec forget USER... --model DIR (or --users-file FILE).")
        bad = next((u for u in ids if not u or not u.isprintable()), None)
        if bad is not None:
            raise ConfigError(f"user {bad!r}: empty or holds control characters. Fix: give the id as stored.")
        if model is None and db is None:
            raise ConfigError("nowhere to forget from. Fix: pass --model DIR and/or --db FILE.")
        if model is not None and not (model / "config.json").is_file():
            raise ConfigError(
                f"--model {model}: not a model folder (no config.json). Fix: the folder of 'lucidrec train --out DIR'."
            )
        if db is None and model is not None and (model / "feedback.db").is_file():
            db = model / "feedback.db"  # where 'lucidrec serve --model DIR' keeps it by default
        if db is not None and not db.is_file():
            raise ConfigError(f"--db {db}: no such database. Fix: give the file 'lucidrec serve --db' used.")
        reports = forget_users(ids, model, db)
        if as_json:
            sys.stdout.write(json.dumps({"forgotten": reports, "model": str(model) if model else None,
                                         "db": str(db) if db else None}) + "\n")  # fmt: skip
            return
        for r in reports:
            where = []
            if model is not None:
                where.append(f"{r['model_rows']} training rows removed from {model} (tombstone written)")
            if db is not None:
                where.append(f"{r['db_rows']} stored rows erased from {db}")
            console.print(f"forgot {safe(r['user'])}: " + safe("; ".join(where)), highlight=False)


def _ids_from_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"--users-file {path}: no such file. Fix: one user id per line.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(
            f"--users-file {path}: cannot read it ({type(e).__name__}). Fix: a UTF-8 text file."
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
