"""API keys: where they come from, which kind each is, how a request presents one, and a constant-time check.

Two kinds of key. A **read** key reads stored users' data (``/users``, ``/users/{id}/history``,
``/recommend`` for a stored user); a **write** key does that and also writes (``POST /feedback``) and
forgets (``DELETE /users/{id}``). Hand a page or a dashboard a read key: it cannot change or erase data.

Keys come from environment variables (``LUCIDREC_API_KEYS``: write keys, ``LUCIDREC_READ_KEYS``: read keys,
comma-separated) and/or a key file, one key per line, ``#`` comments::

    write: 3vQ...long-random...   # read + feedback + forget
    read:  Xc9...long-random...   # reads stored users' data only
    9fK...long-random...          # no kind: a write key (the format before kinds)

A request sends ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Keys are never logged or echoed:
callers get a short, non-reversible key id (for rate limiting and metrics).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path

from lucidrec.errors import ConfigError

ENV_VAR = "LUCIDREC_API_KEYS"
READ_ENV_VAR = "LUCIDREC_READ_KEYS"
MIN_KEY_CHARS = 16
READ, WRITE = "read", "write"
KINDS = (READ, WRITE)


def _check_key(key: str, origin: str) -> str:
    if len(key) < MIN_KEY_CHARS:
        raise ConfigError(
            f"{origin}: an API key is shorter than {MIN_KEY_CHARS} characters. Fix: use long random keys, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(24))'."
        )
    if any(ch.isspace() or not ch.isprintable() for ch in key):
        raise ConfigError(f"{origin}: an API key contains spaces or control characters. Fix: use printable keys.")
    return key


def load_api_keys(keys_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """Write keys from ``LUCIDREC_API_KEYS`` and ``keys_file`` (both may be given; duplicates are dropped)."""
    return [k for k, kind in load_keys(keys_file, environ).items() if kind == WRITE]


def load_keys(keys_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every configured key and its kind (``read`` or ``write``), from the environment and ``keys_file``.
    A key listed as both is a write key."""
    environ = os.environ if environ is None else environ
    keys: dict[str, str] = {}

    def add(key: str, kind: str) -> None:
        if keys.get(key) != WRITE:
            keys[key] = kind

    for var, kind in ((READ_ENV_VAR, READ), (ENV_VAR, WRITE)):
        for k in environ.get(var, "").split(","):
            if k.strip():
                add(_check_key(k.strip(), var), kind)
    if keys_file is not None:
        for key, kind in _read_key_file(Path(keys_file)):
            add(key, kind)
    return keys


def _read_key_file(p: Path) -> list[tuple[str, str]]:
    origin = f"--api-keys-file {p}"
    if not p.is_file():
        raise ConfigError(
            f"{origin}: no such file. Fix: give a file with one key per line ('read: KEY' or 'write: KEY')."
        )
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{origin}: cannot read it ({type(e).__name__}). Fix: a UTF-8 text file.") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, sep, key = line.partition(":")
        if sep and kind.strip().lower() in KINDS:
            kind, key = kind.strip().lower(), key.strip()
        elif sep and " " not in kind and kind.strip().isalpha() and len(kind.strip()) < MIN_KEY_CHARS:
            raise ConfigError(
                f"{origin} line {n}: unknown key kind '{kind.strip()}'. Fix: 'read: KEY' (reads only) or "
                "'write: KEY' (reads, feedback and forgetting)."
            )
        else:
            kind, key = WRITE, line
        out.append((_check_key(key, f"{origin} line {n}"), kind))
    return out


def new_demo_key() -> str:
    return "demo-" + secrets.token_urlsafe(18)


def key_id(key: str) -> str:
    """A short id for a key (a truncated SHA-256): safe to keep in memory, metrics or logs."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries, from ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


# Query parameters that look like a key. Keys are only read from headers; a URL carrying one is refused.
URL_KEY_NAMES = ("api_key", "apikey", "api-key", "key", "token", "access_token", "x-api-key", "authorization")


def key_in_url(params: Mapping[str, str]) -> str | None:
    """The first query parameter name that looks like an API key, or None."""
    return next((n for n in params if n.lower() in URL_KEY_NAMES), None)


class KeyRing:
    """The accepted keys and their kinds. ``kind_of`` compares against every key with
    hmac.compare_digest, so the time it takes does not reveal which key (or how much of one) matched."""

    def __init__(self, keys: Iterable[str] | Mapping[str, str]):
        kinds = dict(keys) if isinstance(keys, Mapping) else {k: WRITE for k in keys}
        self._keys = [(k.encode(), kind) for k, kind in kinds.items()]

    def __len__(self) -> int:
        return len(self._keys)

    def count(self, kind: str) -> int:
        return sum(1 for _, k in self._keys if k == kind)

    def kind_of(self, candidate: str | None) -> str | None:
        """``read``, ``write``, or None when ``candidate`` is no configured key."""
        if candidate is None:
            return None
        c = candidate.encode()
        found = None
        for k, kind in self._keys:  # no early exit: constant work whatever matched
            if hmac.compare_digest(c, k):
                found = kind
        return found

    def match(self, candidate: str | None) -> bool:
        return self.kind_of(candidate) is not None
