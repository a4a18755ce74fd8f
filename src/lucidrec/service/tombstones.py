"""Tombstones for forgotten users: so a model folder's training copy never brings a forgotten user back.

``DELETE /users/{id}`` erases the user's rows from the feedback store, but the model folder keeps its own
copy of the training interactions (``interactions.npz``) until the model is retrained, and a fresh
``--db`` is seeded from it. A tombstone is the SHA-256 of the user id (with a fixed domain prefix), kept
in ``forgotten_users.txt`` in the model folder (one hex digest per line, appended) and in the store's
``tombstones`` table; seeding skips every user whose digest is in either list.

A digest, not the id: the tombstone file does not add a plain copy of the id. It is not anonymous either
(anyone can hash a candidate id and compare), which is no worse than ``interactions.npz`` itself, which
still holds the id until retraining; the README says so.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

FILE_NAME = "forgotten_users.txt"
_PREFIX = b"lucidrec-forgotten-user:"


def digest(user: str) -> str:
    return hashlib.sha256(_PREFIX + str(user).encode("utf-8")).hexdigest()


def read(model_dir: str | Path) -> set[str]:
    """The digests recorded in ``model_dir`` (empty when there is no tombstone file)."""
    p = Path(model_dir) / FILE_NAME
    try:
        text = p.read_text(encoding="ascii", errors="ignore")
    except FileNotFoundError:
        return set()
    return {line.strip() for line in text.splitlines() if len(line.strip()) == 64}


def append(model_dir: str | Path, users: Iterable[str]) -> bool:
    """Record ``users`` as forgotten in ``model_dir``; returns False when the folder is not writable.

    One ``O_APPEND`` write of whole lines (a digest line is 65 bytes), so several server processes can
    append at once without interleaving; fsync'd before the caller acknowledges the delete."""
    lines = "".join(digest(u) + "\n" for u in users).encode("ascii")
    if not lines:
        return True
    try:
        fd = os.open(Path(model_dir) / FILE_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        os.write(fd, lines)
        os.fsync(fd)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True
