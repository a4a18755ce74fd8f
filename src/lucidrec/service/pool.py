"""Bounded worker pools: the model and the database run here, never on the event loop.

A recommend is CPU work of milliseconds to (before its cost bound) seconds; on the event loop it would
hold up every other request, ``/health`` included. Each pool has a fixed number of threads and a bound
on the requests admitted (running + waiting); past it a request gets ``503`` with ``Retry-After`` at
once instead of waiting in an unbounded queue.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from lucidrec.errors import ConfigError


class PoolSaturated(Exception):
    def __init__(self, name: str, pending: int, retry_after: int):
        self.name, self.pending, self.retry_after = name, pending, retry_after


class WorkPool:
    def __init__(self, name: str, threads: int, max_pending: int):
        if threads < 1 or max_pending < threads:
            raise ConfigError(
                f"{name} pool: threads {threads} and queue {max_pending}: need threads >= 1 and queue >= threads. "
                "Fix: e.g. --threads 2 --queue 64."
            )
        self.name, self.threads, self.max_pending = name, threads, max_pending
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix=f"lucidrec-{name}")
        self._lock = threading.Lock()
        self._pending = 0
        self._seconds = 0.01  # running mean of a job's time, for Retry-After

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, fn, *args):
        """Run ``fn(*args)`` on a pool thread and await its result; ``PoolSaturated`` when full."""
        with self._lock:
            if self._pending >= self.max_pending:
                wait = self._pending * self._seconds / self.threads
                raise PoolSaturated(self.name, self._pending, max(1, math.ceil(wait)))
            self._pending += 1
        future = self._executor.submit(self._timed, fn, args)
        # The slot is freed when the work ends, not when the client goes away: a cancelled request's
        # work still occupies a thread until it finishes.
        future.add_done_callback(self._release)
        return await asyncio.wrap_future(future)

    def _timed(self, fn, args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self._seconds = 0.9 * self._seconds + 0.1 * (time.perf_counter() - t0)

    def _release(self, _future) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
