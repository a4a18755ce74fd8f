"""Progress lines the benchmarks print while they run (stderr, so the tables they print stay clean)."""

from __future__ import annotations

import sys
import time


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
