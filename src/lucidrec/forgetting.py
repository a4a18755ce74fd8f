"""Forgotten users: tombstones in a model folder, and the one rule every door follows.

A user is forgotten at every door that reads a model folder because the *load* applies the folder's
tombstones: :func:`lucidrec.io.model_io.load` drops every tombstoned user from the known histories, so
``recommend``, ``batch``, ``serve`` (and the database it seeds) never see them again, whichever process
wrote the tombstone. ``lucidrec train --out DIR`` leaves them out of the training data, and
``lucidrec forget`` also removes their rows from the folder's ``interactions.npz``.

A tombstone is the SHA-256 of the user id (with a fixed domain prefix), one hex digest per line in
``forgotten_users.txt``. A digest, not the id: the file does not add a plain copy of the id. It is not
anonymous either (anyone can hash a candidate id and compare); the README says so.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from lucidrec.errors import ConfigError

FILE_NAME = "forgotten_users.txt"
_PREFIX = b"lucidrec-forgotten-user:"
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
INTERACTIONS = "interactions.npz"


def digest(user: str) -> str:
    return hashlib.sha256(_PREFIX + str(user).encode("utf-8")).hexdigest()


def read(model_dir: str | Path) -> set[str]:
    """The digests recorded in ``model_dir`` (empty when there is no tombstone file)."""
    p = Path(model_dir) / FILE_NAME
    try:
        text = p.read_text(encoding="ascii", errors="ignore")
    except (FileNotFoundError, NotADirectoryError):
        return set()
    return {line.strip() for line in text.splitlines() if _DIGEST.match(line.strip())}


def append(model_dir: str | Path, users: Iterable[str]) -> bool:
    """Record ``users`` as forgotten in ``model_dir``; returns False when the folder is not writable.

    One ``O_APPEND`` write of whole lines (a digest line is 65 bytes), so several processes can append at
    once without interleaving; fsync'd before the caller acknowledges the forget. Appending a digest that
    is already there is harmless (forgetting is idempotent)."""
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


def read_forget_file(path: str | Path) -> set[str]:
    """Digests from a file of users to leave out (``lucidrec train --forget-file``): one user id per line,
    or a 64-hex digest as ``forgotten_users.txt`` holds them; blank lines and ``#`` comments are skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"--forget-file {p}: no such file. Fix: give a file with one user id per line.") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"--forget-file {p}: cannot read it ({type(e).__name__}). Fix: a UTF-8 text file.") from None
    out = set()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.add(line if _DIGEST.match(line) else digest(line))
    return out


def forgotten_mask(users: np.ndarray, digests: set[str]) -> np.ndarray:
    """True for each entry of ``users`` whose digest is in ``digests`` (one hash per distinct user)."""
    if not digests or len(users) == 0:
        return np.zeros(len(users), bool)
    uniq, inverse = np.unique(np.asarray(users).astype(str), return_inverse=True)
    gone = np.fromiter((digest(u) in digests for u in uniq), dtype=bool, count=len(uniq))
    return gone[inverse.reshape(-1)]
