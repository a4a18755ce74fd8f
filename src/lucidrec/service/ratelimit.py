"""Token buckets: each key (an API key's id, or a client address for anonymous and failed-auth requests)
may make ``rate`` requests per second, with bursts up to ``burst``.

At most ``max_keys`` buckets are kept: past it, buckets that have refilled (idle clients) are dropped, so
made-up keys or addresses cannot grow memory without bound. State lives in the process. With several
server workers each enforces ``rate / workers`` (the serve command divides it), which keeps the total
near the limit without a shared counter on every request.
"""

from __future__ import annotations

import threading
import time

from lucidrec.errors import ConfigError


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None, clock=time.monotonic, max_keys: int = 10_000):
        if not rate >= 0:
            raise ConfigError(f"--rate-limit {rate}: must be >= 0 requests per second (0 turns it off).")
        self.rate = float(rate)
        self.burst = float(burst) if burst is not None else max(1.0, 2.0 * self.rate)
        if self.burst < 1:
            raise ConfigError(f"rate-limit burst {self.burst}: must be at least 1 request.")
        self._clock = clock
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill time)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def acquire(self, key_id: str) -> float:
        """Take one token for ``key_id``. Returns 0.0 when allowed, else the seconds until a token is free."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                if len(self._buckets) > self.max_keys:
                    self._prune(now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            if len(self._buckets) > self.max_keys:
                self._prune(now)
            return (1.0 - tokens) / self.rate

    def _prune(self, now: float) -> None:
        """Drop buckets that are full again (their clients were idle); if none is, the oldest half."""
        full = [k for k, (t, last) in self._buckets.items() if t + (now - last) * self.rate >= self.burst]
        for k in full:
            del self._buckets[k]
        if len(self._buckets) > self.max_keys:
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            for k in by_age[: len(by_age) // 2]:
                del self._buckets[k]
