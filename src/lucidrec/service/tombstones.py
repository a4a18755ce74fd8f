"""Tombstones for forgotten users, as the service uses them (see :mod:`lucidrec.forgetting`).

``DELETE /users/{id}`` erases the user's rows from the feedback store and appends a tombstone to the
model folder (and to the store's ``tombstones`` table); every load of the folder drops tombstoned users
from its known histories, and seeding a fresh ``--db`` skips them.
"""

from __future__ import annotations

from lucidrec.forgetting import FILE_NAME, append, digest, read
from lucidrec.io.purge import purge_interactions

__all__ = ["FILE_NAME", "append", "digest", "purge_interactions", "read"]
