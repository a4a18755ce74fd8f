"""API keys: where they come from, how a request presents one, and a constant-time check.

Keys come from the environment variable ``LUCIDREC_API_KEYS`` (comma-separated) and/or a file (one key
per line, ``#`` comments). A request sends ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. Keys are
never logged or echoed: callers get a short, non-reversible key id (for rate limiting and metrics).
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
MIN_KEY_CHARS = 16


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
    """Keys from ``LUCIDREC_API_KEYS`` and ``keys_file`` (both may be given; duplicates are dropped)."""
    environ = os.environ if environ is None else environ
    keys: list[str] = []
    for k in environ.get(ENV_VAR, "").split(","):
        if k.strip():
            keys.append(_check_key(k.strip(), ENV_VAR))
    if keys_file is not None:
        p = Path(keys_file)
        if not p.is_file():
            raise ConfigError(f"--api-keys-file {p}: no such file. Fix: give a file with one key per line.")
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(
                f"--api-keys-file {p}: cannot read it ({type(e).__name__}). Fix: a UTF-8 text file."
            ) from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                keys.append(_check_key(line, f"--api-keys-file {p}"))
    return list(dict.fromkeys(keys))


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
    """The accepted keys. ``match`` compares against every key with hmac.compare_digest, so the time it
    takes does not reveal which key (or how much of one) matched."""

    def __init__(self, keys: Iterable[str]):
        self._keys = [k.encode() for k in keys]

    def __len__(self) -> int:
        return len(self._keys)

    def match(self, candidate: str | None) -> bool:
        if candidate is None:
            return False
        c = candidate.encode()
        ok = False
        for k in self._keys:  # no early exit: constant work whatever matched
            ok |= hmac.compare_digest(c, k)
        return ok
