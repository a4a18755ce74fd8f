"""The live feedback store: SQLite in WAL mode, the source of truth for users' histories at serve time.

One row per feedback event. A user's history is their rows in time order; the user tower has no per-user
parameters, so a new row changes the very next recommendation and deleting a user's rows forgets them.
Each thread gets its own connection (sqlite3 connections must not be shared across threads); WAL lets
readers run while one writer commits, and a busy timeout makes concurrent writers (threads or processes)
wait for the lock instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lucidrec.errors import ConfigError

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
"""

# How long a writer waits for another connection's lock before giving up (ms). Writes take well under a
# millisecond, so this only matters under heavy contention; losing a row is worse than waiting.
BUSY_TIMEOUT_MS = 30_000


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

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            raise ConfigError(f"--db {self.path}: is a folder. Fix: give a file path, e.g. {self.path}/feedback.db.")
        if not self.path.parent.exists():
            raise ConfigError(f"--db {self.path}: folder {self.path.parent} does not exist. Fix: create it first.")
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            conn = self._conn()
            # journal_mode=WAL is persistent in the file; synchronous=NORMAL is durable against a process
            # crash in WAL mode (only an OS crash may lose the last commits) and much faster than FULL.
            conn.execute("PRAGMA journal_mode=WAL")
            with conn:
                conn.executescript(SCHEMA)
        except sqlite3.DatabaseError as e:
            raise ConfigError(
                f"--db {self.path}: not a usable SQLite database ({e}). Fix: give a new file path."
            ) from None

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
            conn.execute("PRAGMA synchronous=NORMAL")
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
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            cur = conn.execute(sql, tuple(params))
            conn.execute("COMMIT")
            return cur
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ seeding
    def seeded(self) -> bool:
        return self._conn().execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is not None

    def seed(self, rows: Iterable[tuple[str, str, str, float | None, float]], origin: str) -> int:
        """Load the model's known interactions once, in one transaction, and mark the database seeded.

        Seeding happens only on a database's first start: re-seeding on every start would bring back
        the rows of users who asked to be forgotten."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM meta WHERE key = 'seeded'").fetchone() is not None:
                conn.execute("ROLLBACK")
                return 0
            cur = conn.executemany(
                "INSERT INTO feedback (user, item, event, rating, timestamp, source) VALUES (?, ?, ?, ?, ?, 'seed')",
                rows,
            )
            n = cur.rowcount
            conn.execute("INSERT INTO meta (key, value) VALUES ('seeded', ?)", (f"{origin} at {time.time():.0f}",))
            conn.execute("COMMIT")
            return n
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------------ reads and writes
    def add(self, user: str, item: str, event: str, rating: float | None, timestamp: float) -> int:
        """Append one feedback row; returns its id (ids are never reused: AUTOINCREMENT)."""
        cur = self._write(
            "INSERT INTO feedback (user, item, event, rating, timestamp) VALUES (?, ?, ?, ?, ?)",
            (user, item, event, rating, timestamp),
        )
        return int(cur.lastrowid)

    def history(self, user: str) -> list[FeedbackRow]:
        """The user's rows, oldest first (ties by insertion order)."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, user, item, event, rating, timestamp FROM feedback WHERE user = ? ORDER BY timestamp, id",
                (user,),
            )
            .fetchall()
        )
        return [FeedbackRow(*r) for r in rows]

    def user_rows(self, user: str) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM feedback WHERE user = ?", (user,)).fetchone()[0])

    def delete_user(self, user: str) -> int:
        """Remove every row of ``user``; returns how many were removed."""
        return int(self._write("DELETE FROM feedback WHERE user = ?", (user,)).rowcount)

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
