"""Group commit: concurrent feedback writes share one transaction and one fsync.

With ``synchronous=FULL`` every commit waits for an fsync (about 7 ms on the test machine's disk: 150
single-row commits/s), so one commit per request would cap feedback far below the read rate. One writer
thread takes every write waiting at that moment (up to ``max_batch``), inserts them in one transaction,
commits once, and only then answers each request: every acknowledged row is on disk, and the fsync is
paid once per batch rather than once per row. The queue is bounded: past ``max_pending`` a write gets
``PoolSaturated`` (503 with Retry-After) at once.
"""

from __future__ import annotations

import asyncio
import math
import queue
import threading
import time

from lucidrec.service.pool import PoolSaturated
from lucidrec.service.store import FeedbackStore

_STOP = object()


class BatchWriter:
    def __init__(self, store: FeedbackStore, max_pending: int, max_batch: int = 256):
        self.store, self.max_pending, self.max_batch = store, max_pending, max_batch
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._pending = 0
        self._seconds = 0.01  # running mean of a batch's time, for Retry-After
        self._thread = threading.Thread(target=self._run, name="lucidrec-writer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._pending

    async def add(self, user: str, item: str, event: str, rating: float | None, timestamp: float) -> tuple[int, int]:
        """Insert one row; returns (row id, the user's stored row count) once the row is committed."""
        with self._lock:
            if self._pending >= self.max_pending:
                raise PoolSaturated("write", self._pending, max(1, math.ceil(self._seconds)))
            self._pending += 1
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put(((user, item, event, rating, timestamp), loop, future))
        return await future

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    self._queue.put(_STOP)
                    break
                batch.append(nxt)
            t0 = time.perf_counter()
            try:
                results = self.store.add_batch([row for row, _, _ in batch])
                outcome = [(True, r) for r in results]
            except Exception as e:  # the whole batch failed (rolled back): each request gets the error
                outcome = [(False, e)] * len(batch)
            self._seconds = 0.9 * self._seconds + 0.1 * (time.perf_counter() - t0)
            with self._lock:
                self._pending -= len(batch)
            for (_, loop, future), (ok, value) in zip(batch, outcome):
                try:
                    loop.call_soon_threadsafe(_settle, future, ok, value)
                except RuntimeError:  # that request's event loop is closed (shutdown): nobody to answer
                    pass

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)


def _settle(future: asyncio.Future, ok: bool, value) -> None:
    if future.cancelled():  # the client went away; the row is committed all the same
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
