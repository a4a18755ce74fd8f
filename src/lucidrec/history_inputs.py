"""A request's history as the user tower reads it: item indices, ratings, weights and negative events.

Shared by serving (the user state of a request), explanations (which history items may be cited) and
counterfactuals (re-scoring a history with items removed), so all three read a history the same way.
"""

from __future__ import annotations

import numpy as np

from lucidrec.models.scoring import NEGATIVE_EVENTS
from lucidrec.user_history import HistoryEntry

#: The event of a pseudo-history item taken from the query ("something like Heat").
QUERY_LIKE_EVENT = "query_like"


def unrated_rating(implicit_event: str | None) -> float:
    """The rating an unrated history item is read with: for implicit data (a catalogue whose interactions
    are all ``implicit_event``) the weight every training interaction had (1); otherwise NaN, binned as the
    top rating and always liked (the user's mean is taken over the rated items only)."""
    return 1.0 if implicit_event else np.nan


def state_inputs(history: list[HistoryEntry], unrated: float = np.nan):
    """(items, ratings, boost, negative) of a history, as the user tower reads them."""
    items = np.array([h.item for h in history], dtype=np.int64)
    ratings = np.array([unrated if h.rating is None else h.rating for h in history], dtype=np.float64)
    negative = np.array([h.event in NEGATIVE_EVENTS for h in history], dtype=bool)
    named = np.array([h.event == QUERY_LIKE_EVENT for h in history], dtype=bool)
    boost = None
    if named.any() and (~named).any():
        # Items the query names ("like Heat") are what the user asks for now: together they weigh as
        # much as the rest of the history, however long it is.
        boost = np.where(named, max(1.0, (~named).sum() / named.sum()), 1.0)
    if negative.any():
        # A negative event weighs 0 in every block, in every model: a rating-aware model zeroes it itself,
        # one that is not would read it as an interaction like any other and raise what it is about.
        boost = np.where(negative, 0.0, 1.0 if boost is None else boost)
    return items, ratings, boost, negative if negative.any() else None


def user_state(scorer, history: list[HistoryEntry], query_vec: np.ndarray | None, implicit_event: str | None):
    """The user tower's state (:class:`lucidrec.models.scoring.UserState`) for a history and an embedded query."""
    items, ratings, boost, negative = state_inputs(history, unrated_rating(implicit_event))
    return scorer.user_state(items, ratings, query_vec, boost, negative)


__all__ = ["QUERY_LIKE_EVENT", "state_inputs", "unrated_rating", "user_state"]
