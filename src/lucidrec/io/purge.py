"""Erasing forgotten users' rows from a model folder's ``interactions.npz`` (``lucidrec forget``).

The tombstones themselves (who is forgotten, and the rule every load applies) are :mod:`lucidrec.forgetting`;
this module rewrites the folder's file without their rows and updates its checksum manifest.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from lucidrec.forgetting import FILE_NAME, INTERACTIONS, forgotten_mask, read
from lucidrec.io import model_check


@contextlib.contextmanager
def _folder_lock(model_dir: Path):
    """An exclusive lock on the folder's tombstone file while interactions.npz and the manifest are
    rewritten: two forgets at once must not write a manifest that disagrees with the file."""
    import fcntl

    fd = os.open(model_dir / FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def purge_interactions(model_dir: str | Path) -> int:
    """Rewrite ``interactions.npz`` without the rows of every tombstoned user; returns how many rows went.

    The new file is written next to the old one and moved over it (a reader sees the old file or the
    new one, never half of either), then the checksum manifest is updated. Nothing to remove: no write."""
    d = Path(model_dir)
    path = d / INTERACTIONS
    digests = read(d)
    if not digests or not path.is_file():
        return 0
    with _folder_lock(d):
        with np.load(path) as z:
            arrays = {k: z[k] for k in z.files}
        if "user" not in arrays:
            return 0
        gone = forgotten_mask(arrays["user"], digests)
        n = int(gone.sum())
        if not n:
            return 0
        keep = ~gone
        tmp = d / (INTERACTIONS + ".tmp.npz")
        np.savez(tmp, **{k: v[keep] if v.ndim == 1 and len(v) == len(gone) else v for k, v in arrays.items()})
        os.chmod(tmp, 0o600)  # personal data: the owner's only, like the file it replaces
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        model_check.write_manifest(d, names=[INTERACTIONS], create=False)
    return n


__all__ = ["purge_interactions"]
