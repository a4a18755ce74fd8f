"""Verified counterfactuals: the smallest set of history items whose removal drops a recommended item
out of the top-k, and the item that takes its place.

Search, guided by the model's own contributions: each history item's contribution to the item and to
the items just below the top-k (from the exact decomposition) predicts, linearly, how ranks move when
a set is removed. Candidate sets - each single item, greedy prefixes ordered by the predicted gain
(against the runners-up together and against each one), and pairs and triples of the strongest
contributors - are checked cheaply against that prediction, and the smallest promising ones are **verified by
re-scoring the full model** (the user's mean, recency buckets and normalisation recomputed, every
candidate item re-ranked), in one batched call. Where every predicted set fails (a nonlinear part such as
the transformer term reads the shorter history afresh), a greedy search guided by re-scored ranks is the
last resort (:func:`_greedy_rescored`). Only a verified set is reported; none within ``MAX_SET`` items
gives ``None``. A reason names the items of its item's counterfactual (one story,
:func:`lucidrec.explain.decisive_sets`); where this search finds none, the same search restricted to the
items a reason may cite as support and to three items gets a second, cheaper try.
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

#: The largest removal set reported; beyond it the answer is "no small set does it" (None).
MAX_SET = 10
#: Top cited history items (as many as the evidence lists) each verified alone before a larger set is reported.
CITED = 5
#: Items below the top-k whose scores the linear prediction tracks (the likely replacements).
POOL_EXTRA = 40
#: The strongest contributors whose pairs and triples are candidate sets too.
COMBINED = 6
#: With ``predicted_only``, the smallest accepted candidate sets kept per item (more are never reached).
PREDICTED_KEEP = 4
#: Strongest contributors the re-scored greedy search (the last resort) chooses among.
GREEDY_POOL = 20
#: Scores this close (relative) to the item's count as ties: no rank claim is made across one.
TIE_EPS = 1e-5


def counterfactuals(
    model,
    entries,
    query_vec,
    top: np.ndarray,
    masked: np.ndarray,
    k: int,
    parts_of,
    only: np.ndarray | None = None,
    max_set: int = MAX_SET,
    items: np.ndarray | None = None,
    predicted_only: bool = False,
    max_rounds: int | None = None,
) -> list:
    """One counterfactual (dict or None) per item of ``top``.

    ``masked``: the request's scores with excluded items at -inf (they stay excluded after a removal:
    a removed history item is still known to the user). ``parts_of(items)``: exact score decompositions
    (:meth:`lucidrec.models.scoring.HybridScorer.decompose_many`) for those items. ``only`` (bool per
    history item) restricts the removal sets to those items, ``max_set`` their size: the decisive
    evidence a reason cites is searched among the items it may cite, up to three. ``items`` (a subset of
    ``top``): search for these only (the others get None). ``predicted_only``: verify only the smallest few sets
    (:data:`PREDICTED_KEEP`) the linear prediction accepts, not the rejected ones - a cheap search for
    reasons, where a missed set costs a weaker reason, not a wrong claim. ``max_rounds``: stop after
    this many batched verification rounds (None: until every candidate is tried)."""
    from lucidrec.history_inputs import state_inputs, unrated_rating
    from lucidrec.models.scoring import SubsetScorer

    n = len(entries)
    top = np.asarray(top, dtype=np.int64)
    rows = np.arange(n) if only is None else np.flatnonzero(np.asarray(only, bool))
    if len(rows) == 0 or len(top) == 0:
        return [None] * len(top)
    wanted = set(top.tolist()) if items is None else {int(i) for i in items}
    allowed = np.isfinite(masked)
    order = np.argsort(-np.where(allowed, masked, -np.inf), kind="stable")
    pool = order[: min(int(allowed.sum()), k + POOL_EXTRA)]
    contrib = np.stack([p["history"] for p in parts_of(pool)], axis=1)  # (n history, pool)
    base = masked[pool]
    col = {int(i): c for c, i in enumerate(pool)}

    subsets = SubsetScorer(
        model.scorer, *state_inputs(entries, unrated_rating(model.catalogue.implicit_event)), query_vec
    )
    top_before = set(order[:k].tolist())
    cands = {}
    for i in top:
        c = col.get(int(i))
        if int(i) not in wanted:
            continue
        # an item outside the best-scored pool (a relaxed constraint tier) gets no counterfactual
        sets = _candidate_sets(contrib[rows], base, c, k, max_set, predicted_only) if c is not None else []
        cands[int(i)] = [rows[s] for s in sets]
    found: dict[int, dict | None] = {}
    # Verify in rounds, every pending item's next candidates in one batched re-score (1, 2, 4... per
    # item); within a round the smallest verified set wins. The first round also verifies each of the
    # item's top cited items alone whenever the first candidate is larger, so a set of two or more is
    # reported only when no cited item alone would do.
    first = {}
    for i, cs in cands.items():
        c = col.get(i)
        extra = []
        if cs and len(cs[0]) > 1 and c is not None and not predicted_only:
            best = rows[np.argsort(-contrib[rows, c], kind="stable")[:CITED]]
            extra = [np.array([j]) for j in best if contrib[j, c] > 0]
        first[i] = cs[:1] + extra
    take, pos = 1, {i: 1 for i in cands}  # round 0 verifies first[i]; later rounds cands[i][1:]
    rounds = 0
    while max_rounds is None or rounds < max_rounds:
        rounds += 1
        if first is not None:
            batch = [(i, s) for i, ss in first.items() for s in ss]
        else:
            batch = [(i, s) for i, cs in cands.items() if i not in found for s in cs[pos[i] : pos[i] + take]]
        if not batch:
            break
        for (i, s), row in zip(batch, _rescored(subsets, allowed, batch, n)):
            if i in found and len(found[i]["removed"]) <= len(s):
                continue
            hit = _check(model, entries, s, i, row, k, top_before)
            if hit is not None:
                found[i] = hit
        if first is not None:
            first = None
            continue
        for i in pos:
            pos[i] += take
        take *= 2
    missing = [i for i in cands if i not in found and col.get(i) is not None]
    if missing and not predicted_only:
        found.update(
            _greedy_rescored(model, entries, subsets, allowed, contrib, col, rows, missing, k, top_before, max_set)
        )
    return [found.get(int(i)) for i in top]


def _rescored(subsets, allowed: np.ndarray, batch: list, n: int) -> np.ndarray:
    """Every ``(item, removed history positions)`` of ``batch`` re-scored in one call (rows; excluded items
    at -inf), exact for the item and for whatever ranks above it (:meth:`SubsetScorer.scores_around`)."""
    keeps = np.ones((len(batch), n), bool)
    for r, (_, s) in enumerate(batch):
        keeps[r, s] = False
    targets = np.array([i for i, _ in batch])
    return np.where(allowed[None, :], subsets.scores_around(keeps, targets).astype(np.float64), -np.inf)


def _greedy_rescored(model, entries, subsets, allowed, contrib, col, rows, items, k, top_before, max_set) -> dict:
    """A last search for items the predicted sets missed, guided by re-scored ranks instead of the linear
    prediction: a nonlinear part of the score (the transformer term reads the shorter history afresh, the
    user's mean and recency are recomputed) can make the prediction miss every set that works. Step by step,
    the candidate whose removal (with those already removed) leaves the item the smallest lead over the
    k-th other item is added; each step re-scores every candidate of every pending item in one batch, and
    the first set that drops the item out of the top-k, verified by that re-score, is reported. Candidates:
    the item's :data:`GREEDY_POOL` strongest contributors."""
    out: dict = {}
    state = {}
    for i in items:
        c = col[i]
        strongest = rows[np.argsort(-contrib[rows, c], kind="stable")[:GREEDY_POOL]]
        state[i] = ([], [int(j) for j in strongest if contrib[j, c] > 0])
    n = len(entries)
    for _ in range(max_set):
        batch = [(i, chosen + [j]) for i, (chosen, left) in state.items() if i not in out for j in left]
        if not batch:
            break
        best: dict = {}
        for (i, s), row in zip(batch, _rescored(subsets, allowed, batch, n)):
            if i in out:
                continue
            hit = _check(model, entries, np.array(s), i, row, k, top_before)
            if hit is not None:
                out[i] = hit
                continue
            others = np.delete(row, i)
            lead = row[i] - np.partition(others, -k)[-k]
            if i not in best or lead < best[i][0]:
                best[i] = (lead, s[-1])
        for i, (_, j) in best.items():
            if i in out:
                continue
            chosen, left = state[i]
            state[i] = (chosen + [j], [x for x in left if x != j])
    return out


def _predicted_rank(contrib: np.ndarray, base: np.ndarray, removed: np.ndarray, c: int) -> np.ndarray:
    """Linear prediction of item ``c``'s rank in the pool after removing each row-set of ``removed``
    ((m, n) bool): every pool item loses the contributions of the removed items."""
    new = base[None, :] - removed.astype(np.float64) @ contrib
    return 1 + (new > new[:, c : c + 1]).sum(axis=1)


def _candidate_sets(
    contrib: np.ndarray, base: np.ndarray, c: int, k: int, max_set: int = MAX_SET, predicted_only: bool = False
) -> list[np.ndarray]:
    """Candidate removal sets (index arrays into the rows of ``contrib``), smallest first: single items
    the prediction says are enough, then greedy prefixes (1..max_set) by predicted gain against the items
    just below the top-k; sets the prediction rejects come after those it accepts."""
    n = contrib.shape[0]
    # the pool is sorted by score: positions k.. are the items just outside the top-k
    below = [j for j in range(k, min(len(base), k + 5)) if j != c] or [j for j in range(len(base)) if j != c]
    if not below:
        return []
    gain = contrib[:, c] - contrib[:, below].max(axis=1)
    greedy = np.argsort(-gain, kind="stable")[: min(max_set, n)]
    greedy = greedy[gain[greedy] > 0] if (gain[greedy] > 0).any() else greedy[:1]
    singles = np.argsort(-contrib[:, c], kind="stable")[: min(max_set, n)]
    sets = [np.array([j]) for j in singles] + [greedy[:m] for m in range(1, len(greedy) + 1)]
    # Last resorts: every positive contributor (up to max_set), and the whole history when it is short.
    positive = np.argsort(-contrib[:, c], kind="stable")[:max_set]
    sets.append(positive[contrib[positive, c] > 0] if (contrib[positive, c] > 0).any() else positive[:1])
    if n <= max_set:
        sets.append(np.arange(n))
    # One greedy path per likely replacement: removing what lifts item c over that one item most (the
    # path against the strongest of them all misses sets that let one particular item overtake).
    # Only the sets of these paths the prediction accepts are tried (the rejected ones would mostly
    # re-verify what the main path already showed fails, at the cost of latency).
    n_main = len(sets)
    for j in below:
        path = np.argsort(-(contrib[:, c] - contrib[:, j]), kind="stable")[: min(max_set, n)]
        sets += [path[:m] for m in range(1, len(path) + 1)]
    # Pairs and triples of the strongest contributors: the greedy paths order items one at a time and
    # miss small sets whose members matter only together.
    strongest = np.argsort(-contrib[:, c], kind="stable")[:COMBINED]
    strongest = strongest[contrib[strongest, c] > 0]
    sets += [np.array(s) for m in (2, 3) if m <= max_set for s in combinations(strongest, m)]
    lengths = np.fromiter((len(s) for s in sets), dtype=np.int64, count=len(sets))
    removed = np.zeros((len(sets), n), bool)
    removed[np.repeat(np.arange(len(sets)), lengths), np.concatenate(sets).astype(np.int64)] = True
    ranks = _predicted_rank(contrib, base, removed, c)
    # Duplicates by their packed membership rows (a per-set tuple of sorted ids cost a third of a request).
    keys = np.packbits(removed, axis=1)
    if predicted_only:  # only the few smallest accepted sets are ever verified: build just those
        out, seen = [], set()
        for r in (idx := np.flatnonzero(ranks > k))[np.argsort(lengths[idx], kind="stable")]:
            key = keys[r].tobytes()
            if key not in seen:
                seen.add(key)
                out.append(np.flatnonzero(removed[r]))
                if len(out) == PREDICTED_KEEP:
                    break
        return out
    seen, ok, rest = set(), [], []
    for r in range(len(sets)):
        if ranks[r] <= k and r >= n_main:
            continue
        key = keys[r].tobytes()
        if key in seen:
            continue
        seen.add(key)
        (ok if ranks[r] > k else rest).append(np.flatnonzero(removed[r]))
    ok.sort(key=len)
    rest.sort(key=len)
    return ok + [s for s in rest if len(s) > (len(ok[0]) if ok else 0)]


def _check(model, entries, s, item: int, row: np.ndarray, k: int, top_before: set) -> dict | None:
    """The counterfactual for removing history positions ``s``, if the re-scored ``row`` shows ``item``
    out of the top-k; the replacement is the best-ranked newcomer to the top-k."""
    target = row[item]
    eps = TIE_EPS * max(1.0, abs(float(target)))
    gap = row - target
    gap[item] = np.inf
    # A near-tie with the item would make the claimed rank hinge on float rounding (the batched re-score
    # and a fresh one may order two equal scores differently): no claim rather than a fragile one.
    if np.any(np.abs(gap[np.isfinite(row)]) <= eps):
        return None
    new_rank = int((row > target).sum()) + 1
    if new_rank <= k:
        return None
    order = np.argpartition(-row, k)[: k + 1]
    order = order[np.argsort(-row[order], kind="stable")]
    new_top, next_score = order[:k], row[order[k]]
    # the replacement must be clear of the (k+1)-th score too, for the same reason
    newcomers = [int(j) for j in new_top if int(j) not in top_before and row[j] > next_score + eps]
    if not newcomers and not row[new_top[-1]] > next_score + eps:
        return None
    replaced_by = newcomers[0] if newcomers else int(new_top[-1])
    removed = [entries[j].item for j in s]
    return {
        "removed": [str(model.catalogue.item_ids[j]) for j in removed],
        "removed_titles": [str(model.catalogue.titles[j]) for j in removed],
        "new_rank": new_rank,
        "replaced_by": str(model.catalogue.item_ids[replaced_by]),
        "replaced_by_title": str(model.catalogue.titles[replaced_by]),
        "verified": True,
    }


def render_counterfactual(title: str, cf: dict | None, lang: str = "en", rated: bool = True) -> str | None:
    """'Without your ratings of A and B, X would fall to #14 and Y would take its place.' (or zh).
    ``rated``: the removed items carry ratings; otherwise (purchases, clicks) they are named as history
    items: 'Without A and B in your history, ...'."""
    if cf is None:
        return None
    rank, other = cf["new_rank"], cf["replaced_by_title"]
    if lang == "zh":
        names = "".join(f"《{t}》" for t in cf["removed_titles"])
        if not rated:
            return f"如果您的历史中没有{names}，《{title}》会降到第{rank}位，由《{other}》取代。"
        return f"如果没有您对{names}的评价，《{title}》会降到第{rank}位，由《{other}》取代。"
    names = cf["removed_titles"]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    if not rated:
        return f"Without {joined} in your history, {title} would fall to #{rank} and {other} would take its place."
    what = "rating of" if len(names) == 1 else "ratings of"
    return f"Without your {what} {joined}, {title} would fall to #{rank} and {other} would take its place."


__all__ = ["MAX_SET", "counterfactuals", "render_counterfactual"]
