"""What a request's history is made of: entries, inline-history parsing, and the stored histories.

A user *is* their history (no per-user parameters), so everything the model knows about users lives
here: :class:`KnownHistories` holds the interactions a model was given (flat arrays sorted by user and
time, one slice per user), and :func:`parse_history` reads the histories that requests pass inline.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lucidrec.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(slots=True)
class HistoryEntry:
    item: int
    rating: float | None = None
    timestamp: float | None = None
    event: str = "rated"


#: The rating scale every door accepts (the HTTP API's and the model's rating bins: 0..5).
RATING_MIN, RATING_MAX = 0.0, 5.0
HISTORY_FORMS = (
    "ITEM or ITEM:RATING separated by commas (e.g. 50,181:5), or a JSON list for ids holding ',' ':' or "
    'spaces (e.g. [["a, b", 5], "c:d"])'
)


def parse_history(spec: str | Iterable | None) -> list[tuple[str, float | None]]:
    """Parse an inline history: '50,181:5,12', a JSON list ('[["a,b", 5], "c:d"]'), or an iterable of ids /
    (id, rating) / {"item", "rating"}. Ratings must be numbers in 0..5."""
    return [(item, rating) for item, rating, _ in parse_history_events(spec)]


def parse_history_events(spec: str | Iterable | None) -> list[tuple[str, float | None, str | None]]:
    """Like :func:`parse_history`, keeping each entry's event when it names one: a dict's ``"event"`` or a
    tuple's third element ("disliked", "clicked"...). None: the catalogue's usual event."""
    if spec is None:
        return []
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("["):
            return parse_history_events(_json_history(text))
        return [_entry_from_text(p.strip()) for p in spec.split(",") if p.strip()]
    out: list[tuple[str, float | None, str | None]] = []
    for e in spec:
        # The common case first (a service passes hundreds of (id, rating) pairs per request).
        if type(e) is tuple and len(e) == 2 and (e[1] is None or type(e[1]) in (float, int)):
            out.append((str(e[0]), _checked(None if e[1] is None else float(e[1]), e), None))
        elif isinstance(e, dict):
            if "item" not in e and "item_id" not in e:
                raise ConfigError(f"history entry {e!r}: no 'item'. Fix: give {{'item': ID, 'rating': R}}.")
            out.append((str(e.get("item", e.get("item_id"))), _rating(e.get("rating"), e), _event(e.get("event"), e)))
        elif isinstance(e, (tuple, list)):
            if not e:
                raise ConfigError(f"history entry {e!r}: empty. Fix: give an item id, e.g. ('181', 5).")
            out.append((str(e[0]), _rating(e[1] if len(e) > 1 else None, e), _event(e[2] if len(e) > 2 else None, e)))
        else:
            out.append((str(e), None, None))
    return out


def _json_history(text: str) -> list:
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"history: starts with '[' but is not valid JSON ({e.msg} at character {e.pos}). Fix: write "
            + HISTORY_FORMS
            + "."
        ) from None
    if not isinstance(value, list) or any(isinstance(v, bool) or v is None for v in value):
        raise ConfigError(
            f"history: a JSON history must be a list of ids or [id, rating] pairs. Fix: write {HISTORY_FORMS}."
        )
    return value


def _entry_from_text(part: str) -> tuple[str, float | None, str | None]:
    """'181:5' -> ('181', 5.0); '181' -> ('181', None). The rating follows the last ':'."""
    if ":" not in part:
        return part, None, None
    item, _, rating = part.rpartition(":")
    try:
        r = float(rating)
    except ValueError:
        raise ConfigError(
            f"history entry '{part}': rating '{rating}' is not a number. Fix: write ITEM or ITEM:RATING, e.g. "
            "181:5; an id holding ':' or ',' goes in a JSON list, e.g. [\"a:b\", [\"c,d\", 4]]."
        ) from None
    return item.strip(), _checked(r, part), None


def _rating(value, entry) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):  # True is an int to Python, never a rating
        raise ConfigError(
            f"history entry {entry!r}: rating {value!r} is not a number. Fix: give 0..5, e.g. ('181', 5)."
        )
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"history entry {entry!r}: rating {value!r} is not a number. Fix: give a number, e.g. ('181', 5)."
        ) from None
    return _checked(r, entry)


def _checked(r: float | None, entry) -> float | None:
    """The HTTP API's rule at every door: a rating is a finite number in 0..5."""
    if r is None:
        return None
    if not (RATING_MIN <= r <= RATING_MAX):  # also False for NaN
        shown = entry if isinstance(entry, str) else repr(entry)
        raise ConfigError(
            f"history entry {shown}: rating {r:g} is outside {RATING_MIN:g}..{RATING_MAX:g}. Fix: give a rating "
            f"from {RATING_MIN:g} to {RATING_MAX:g} (e.g. 181:5), or no rating (181)."
        )
    return r


def _event(value, entry) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"history entry {entry!r}: event {value!r} is not a name. Fix: e.g. 'liked' or 'disliked'.")
    return value.strip()


class KnownHistories:
    """The stored histories as flat arrays sorted by (user, time): a user's rows are one slice.

    ``items`` holds catalog indices (-1 for an id the catalog does not know, e.g. a stale row)."""

    def __init__(self, users, items, ratings, times, events):
        self.users = np.asarray(users)
        self.items = np.asarray(items, dtype=np.int64)
        self.ratings = np.asarray(ratings, dtype=np.float64)
        self.times = np.asarray(times, dtype=np.float64)
        self.events = np.asarray(events)
        n = len(self.users)
        starts = np.r_[0, np.flatnonzero(self.users[1:] != self.users[:-1]) + 1] if n else np.array([], int)
        ends = np.r_[starts[1:], n] if n else np.array([], int)
        self.slices = {str(self.users[s]): (int(s), int(e)) for s, e in zip(starts, ends)}

    @classmethod
    def from_ids(cls, item_ids: np.ndarray, users, items, ratings, times, events) -> KnownHistories:
        """Build from item *ids* (strings), mapped to catalog indices in one vectorised pass (a Python loop
        over 100k rows dominated serving start-up)."""
        ids = np.asarray(item_ids).astype(str)
        order = np.argsort(ids)
        sorted_ids = ids[order]
        items = np.asarray(items).astype(str)
        if len(sorted_ids):
            pos = np.clip(np.searchsorted(sorted_ids, items), 0, len(sorted_ids) - 1)
            idx = np.where(sorted_ids[pos] == items, order[pos], -1)
        else:
            idx = np.full(len(items), -1)
        return cls(users, idx.astype(np.int64), ratings, times, events)

    @classmethod
    def from_frame(cls, item_ids: np.ndarray, known: pd.DataFrame) -> KnownHistories:
        """From an interactions frame (user, item, rating, timestamp, event); the latest row per pair wins."""
        known = known.sort_values(["user", "timestamp", "iidx"], kind="stable")
        known = known.drop_duplicates(["user", "iidx"], keep="last")
        return cls.from_ids(
            item_ids,
            known["user"].to_numpy(dtype=str),
            known["item"].to_numpy(dtype=str),
            known["rating"].to_numpy(dtype=np.float64),
            known["timestamp"].to_numpy(dtype=np.float64),
            known["event"].to_numpy(dtype=str),
        )

    def user_ids(self) -> list[str]:
        return list(self.slices.keys())

    def __contains__(self, user_id) -> bool:
        return str(user_id) in self.slices

    def history(self, user_id: str) -> list[HistoryEntry]:
        """The user's stored history, oldest first (empty for an unknown user)."""
        sl = self.slices.get(str(user_id))
        if sl is None:
            return []
        s, e = sl
        return [
            HistoryEntry(int(i), float(r), float(t), str(ev))
            for i, r, t, ev in zip(self.items[s:e], self.ratings[s:e], self.times[s:e], self.events[s:e])
            if i >= 0
        ]

    def popularity(self, n_items: int) -> np.ndarray:
        """Interactions per catalog item."""
        return np.bincount(self.items[self.items >= 0], minlength=n_items)


__all__ = ["HistoryEntry", "KnownHistories", "parse_history", "parse_history_events"]
