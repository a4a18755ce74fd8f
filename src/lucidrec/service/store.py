"""The live feedback store: SQLite in WAL mode, the source of truth for users' histories at serve time.

One row per feedback event. A user's history is their rows in time order; the user tower has no per-user
parameters, so a new row changes the very next recommendation and deleting a user's rows forgets them.
Each thread gets its own connection (sqlite3 connections must not be shared across threads); WAL lets
readers run while one writer commits, and a busy timeout makes concurrent writers (threads or processes)
wait for the lock instead of failing.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lucidrec.errors import ConfigError, LucidrecError
from lucidrec.service import tombstones


class StorageError(LucidrecError):
    """The feedback database cannot be used right now (disk full, file removed, I/O error): the service
    answers 503 naming the cause, and /health reports it."""


SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    item TEXT NOT NULL,
    event TEXT NOT NULL,
    rating REAL,
    timestamp REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'api'
);
CREATE INDEX IF NOT EXISTS feedback_user_time ON feedback (user, timestamp, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tombstones (digest TEXT PRIMARY KEY);
"""

# How long a writer waits for another connection's lock before giving up (ms). Writes take well under a
# millisecond, so this only matters under heavy contention; losing a row is worse than waiting.
BUSY_TIMEOUT_MS = 30_000
# Rows of one user read per request (the most recent ones): a user with 100k stored rows must not make a
# request slow. The recommender weighs recent items most; older rows stay stored (and visible in full
# through the history endpoint's paging) but do not reach the model.
DEFAULT_MAX_HISTORY = 1000
SYNCHRONOUS = ("FULL", "NORMAL")


@dataclass(frozen=True)
class FeedbackRow:
    id: int
    user: str
    item: str
    event: str
    rating: float | None
    timestamp: float


class FeedbackStore:
    """Thread-safe access to one SQLite feedback database (one connection per thread)."""

    def __init__(self, path: str | Path, synchronous: str = "FULL"):
        self.path = Path(path)
        self.synchronous = str(synchronous).upper()
        if self.synchronous not in SYNCHRONOUS:
            raise ConfigError(f"synchronous {synchronous!r}: must be FULL or NORMAL. Fix: use FULL (durable).")
        if self.path.is_dir():
            raise ConfigError(f"--db {self.path}: is a folder. Fix: give a file path, e.g. {self.path}/feedback.db.")
        if not self.path.parent.exists():
            raise ConfigError(f"--db {self.path}: folder {self.path.parent} does not exist. Fix: create it first.")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self.last_error: str | None = None  # the cause of the last failed write, until one succeeds
        _create_private(self.path)
        try:
            conn = self._conn()
            # journal_mode=WAL is persistent in the file. synchronous=FULL fsyncs the WAL at every commit,
            # so an acknowledged write survives power loss, not only a process crash (NORMAL: one fsync
            # per checkpoint). Its cost is measured in benchmarks/service.py.
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.executescript(SCHEMA)
            # A write that changes nothing: a database this process can read but not write (a read-only
            # file or folder) fails here, at start-up, not on the first acknowledged write.
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM meta WHERE 0")
            finally:
                _rollback(conn)
        except sqlite3.DatabaseError as e:
            self.close()
            raise ConfigError(_open_error(self.path, e)) from None
        # The file this store writes to: if it is removed or replaced while the server runs, SQLite would go
        # on writing into the unlinked file and every acknowledged write would be lost with it.
        self._inode = _inode(self.path)

    # ------------------------------------------------------------------ connections
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we open transactions explicitly (BEGIN IMMEDIATE) so writers queue on the
            # lock up front instead of failing to upgrade a read lock later.
            conn = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            # Deleted rows are overwritten with zeros, not just unlinked: forgetting a user must not
            # leave their rows readable in free pages of the file.
            conn.execute("PRAGMA secure_delete=ON")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        self._local = threading.local()

    def _write(self, sql: str, params: Iterable = ()) -> sqlite3.Cursor:
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(sql, tuple(params))
                conn.execute("COMMIT")
                return cur
            except BaseException:
                _rollback(conn)
                raise

    @contextlib.contextmanager
    def _writing(self):
        """A connection for one write transaction. The file is checked first (a removed database would
        swallow writes), and an SQLite failure becomes a StorageError naming the cause and the fix."""
        try:
            self.check_file()
            yield self._conn()
        except sqlite3.Error as e:
            self.last_error = _storage_cause(self.path, e)
            raise StorageError(self.last_error) from None
        except StorageError as e:
            self.last_error = str(e)
            raise
        self.last_error = None

    def check_file(self) -> None:
        """StorageError when the database file was removed or replaced after the store opened it."""
        if _inode(self.path) != self._inode:
            raise StorageError(
                f"storage: the feedback database {self.path} was removed or replaced while the server ran, so "
                "nothing more can be stored safely. Fix: restore the file (or its backup) and restart the server."
            )

    def health(self) -> dict:
        """Whether writes can be stored: ``{"ok": bool, "error": cause or None}`` (no I/O beyond a stat)."""
        try:
            self.check_file()
        except StorageError as e:
            return {"ok": False, "error": str(e)}
        return {"ok": self.last_error is None, "error": self.last_error}

    # ------------------------------------------------------------------ seeding
    def seeded(self) -> bool:
        return self._conn().execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is not None

    def seed(
        self, rows: Iterable[tuple[str, str, str, float | None, float]], origin: str, forgotten: set[str] = frozenset()
    ) -> int:
        """Load the model's known interactions once, in one transaction, and mark the database seeded.

        Seeding happens only on a database's first start: re-seeding on every start would bring back
        the rows of users who asked to be forgotten. Users whose tombstone digest is in ``forgotten``
        (or in this database's tombstones) are skipped."""
        forgotten = set(forgotten) | self.tombstone_digests()
        if forgotten:
            known: dict[str, bool] = {}

            def keep(row) -> bool:
                u = row[0]
                if u not in known:
                    known[u] = tombstones.digest(u) not in forgotten
                return known[u]

            rows = filter(keep, rows)
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if conn.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is not None:
                    conn.execute("ROLLBACK")
                    return 0
                cur = conn.executemany(
                    "INSERT INTO feedback (user, item, event, rating, timestamp, source) "
                    "VALUES (?, ?, ?, ?, ?, 'seed')",
                    rows,
                )
                n = cur.rowcount
                conn.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (f"{origin} at {time.time():.0f}",))
                conn.execute("COMMIT")
                return n
            except BaseException:
                _rollback(conn)
                raise

    # ------------------------------------------------------------------ reads and writes
    def add(self, user: str, item: str, event: str, rating: float | None, timestamp: float) -> int:
        """Append one feedback row; returns its id (ids are never reused: AUTOINCREMENT)."""
        cur = self._write(
            "INSERT INTO feedback (user, item, event, rating, timestamp) VALUES (?, ?, ?, ?, ?)",
            (user, item, event, rating, timestamp),
        )
        return int(cur.lastrowid)

    def add_batch(self, rows: list[tuple[str, str, str, float | None, float]]) -> list[tuple[int, int]]:
        """Append rows in one transaction (one fsync under synchronous=FULL); all or none are stored.
        Returns, per row, its id and the user's row count right after it."""
        with self._writing() as conn:
            return self._add_batch(conn, rows)

    def _add_batch(self, conn: sqlite3.Connection, rows) -> list[tuple[int, int]]:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = []
            # One count per user in the batch (under the write lock a per-row COUNT(*) over a 200k-row user
            # held every writer for ~0.3 s), then one more per row inserted.
            counts: dict[str, int] = {}
            for user, item, event, rating, timestamp in rows:
                if user not in counts:
                    counts[user] = int(
                        conn.execute("SELECT COUNT(*) FROM feedback WHERE user = ?", (user,)).fetchone()[0]
                    )
                cur = conn.execute(
                    "INSERT INTO feedback (user, item, event, rating, timestamp) VALUES (?, ?, ?, ?, ?)",
                    (user, item, event, rating, timestamp),
                )
                counts[user] += 1
                out.append((int(cur.lastrowid), counts[user]))
            conn.execute("COMMIT")
            return out
        except BaseException:
            _rollback(conn)
            raise

    def history(self, user: str, limit: int | None = DEFAULT_MAX_HISTORY, offset: int = 0) -> list[FeedbackRow]:
        """The user's most recent ``limit`` rows (skipping the ``offset`` most recent), oldest first (ties by
        insertion order); ``limit=None`` reads them all. The (user, timestamp, id) index serves it backwards,
        so the cost follows ``limit``, not how many rows the user has."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, user, item, event, rating, timestamp FROM feedback WHERE user = ? "
                "ORDER BY timestamp DESC, id DESC LIMIT ? OFFSET ?",
                (user, -1 if limit is None else int(limit), int(offset)),
            )
            .fetchall()
        )
        return [FeedbackRow(*r) for r in reversed(rows)]

    def user_rows(self, user: str) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM feedback WHERE user = ?", (user,)).fetchone()[0])

    def delete_user(self, user: str) -> tuple[int, bool]:
        """Erase every row of ``user`` and record a tombstone (always: forgetting is idempotent, and a
        repeat completes one that was cut short); returns how many rows were removed and whether the WAL
        checkpoint completed (True when there was nothing to erase).

        With secure_delete the rows are overwritten in the pages; the checkpoint then copies those pages
        into the database file and truncates the WAL, so no older copy of the rows stays in either file
        while the server runs. (Copies outside the file remain: see the README.)"""
        with self._writing() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = int(conn.execute("DELETE FROM feedback WHERE user = ?", (user,)).rowcount)
                conn.execute("INSERT OR IGNORE INTO tombstones (digest) VALUES (?)", (tombstones.digest(user),))
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return n, (self.checkpoint() if n else True)

    def is_tombstoned(self, user: str) -> bool:
        q = "SELECT 1 FROM tombstones WHERE digest = ?"
        return self._conn().execute(q, (tombstones.digest(user),)).fetchone() is not None

    def checkpoint(self) -> bool:
        """Copy the WAL into the database file and truncate it to zero bytes; waits (busy timeout) for
        readers of older snapshots. Returns False if it could not complete."""
        busy, _, _ = self._conn().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return busy == 0

    def tombstone_digests(self) -> set[str]:
        return {r[0] for r in self._conn().execute("SELECT digest FROM tombstones")}

    def users(self, limit: int = 50) -> list[tuple[str, int]]:
        """Some users with their row counts (most active first), for the web page's picker."""
        return [
            (str(u), int(n))
            for u, n in self._conn().execute(
                "SELECT user, COUNT(*) AS n FROM feedback GROUP BY user ORDER BY n DESC, user LIMIT ?", (limit,)
            )
        ]

    def count(self, source: str | None = None) -> int:
        if source is None:
            return int(self._conn().execute("SELECT COUNT(*) FROM feedback").fetchone()[0])
        return int(self._conn().execute("SELECT COUNT(*) FROM feedback WHERE source = ?", (source,)).fetchone()[0])

    def ids_present(self, ids: Iterable[int]) -> int:
        """How many of ``ids`` are rows in the store (used to prove no write was lost)."""
        ids = list(ids)
        conn = self._conn()
        found = 0
        for lo in range(0, len(ids), 500):
            chunk = ids[lo : lo + 500]
            q = f"SELECT COUNT(*) FROM feedback WHERE id IN ({','.join('?' * len(chunk))})"
            found += int(conn.execute(q, chunk).fetchone()[0])
        return found


def _rollback(conn: sqlite3.Connection) -> None:
    """Roll back if a transaction is still open: SQLite already rolled back after some errors (a full
    disk), and a second ROLLBACK would raise "cannot rollback" over the real cause."""
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def _inode(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _storage_cause(path: Path, e: sqlite3.Error) -> str:
    """A write failure in words: what happened to the database and how to fix it."""
    msg = str(e)
    low = msg.lower()
    if "full" in low:
        fix = "free disk space on that volume (the rows already stored are intact), then retry"
    elif "readonly" in low or "read-only" in low:
        fix = f"make {path} and its folder writable by the server's user (chmod u+w), then retry"
    elif "unable to open" in low or "no such" in low:
        fix = f"restore {path} (or its folder) and restart the server"
    elif "locked" in low or "busy" in low:
        fix = "retry: another process held the database lock longer than the busy timeout"
    else:
        fix = "check the disk and the file (e.g. sqlite3 FILE 'PRAGMA integrity_check'), then retry"
    return f"storage: the feedback database {path} cannot store this write ({msg}). Fix: {fix}."


def _open_error(path: Path, e: sqlite3.DatabaseError) -> str:
    """Why a database cannot be opened. A read-only file is not a broken one: giving a new path would
    abandon the feedback stored there, so the fix says to make it writable."""
    msg = str(e)
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    if "readonly" in msg.lower() or not writable:
        return (
            f"--db {path}: the database is read-only to this process ({msg}); the server must write feedback "
            f"and its WAL next to it. Fix: make {path} and its folder {path.parent} writable (chmod u+w), or "
            "run as their owner; the stored feedback stays in that file."
        )
    return (
        f"--db {path}: not a usable SQLite database ({msg}). Fix: check it is the feedback database you meant "
        "(sqlite3 FILE 'PRAGMA integrity_check'); to start empty, give a path that does not exist yet."
    )


def _create_private(path: Path) -> None:
    """Create the database file readable by its owner only (0600) before SQLite opens it; SQLite gives its
    -wal and -shm files the same mode. An existing file keeps its mode."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise ConfigError(f"--db {path}: cannot create it ({e.strerror}). Fix: give a writable path.") from None
