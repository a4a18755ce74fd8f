"""Grounding a request in the catalogue's own values, learned from the catalogue, not listed.

Every value of a descriptive categorical field (a genre; each level of a category path) gets three views
in the multilingual encoder's space:

* its **name** ("3D Printing Filament"),
* its **centroid**: the mean of its items' text vectors,
* a **neighbour vote**: the share of the request's 30 nearest items (by text) that hold the value.

A request's vector is compared with all three, and a small logistic model turns the resulting
features into the probability that the value is what the request asks for. That model is fit by
**self-supervision** on the catalogue itself: each item's title, used as a request, should select the
item's own values (its own vector is left out of the neighbour vote, so it cannot vote for itself). The
probability is what "understood as" shows ("3D Printing Filament, 0.81"), and a value is inferred only
above :data:`DEFAULT_THRESHOLD` of it. Inferred values are soft: they rank, they never exclude.

Identity fields (brand, author, ...) are not grounded by meaning: a brand is asked for by name, which the
parser's grammar matches exactly and treats as a hard constraint.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from scipy import sparse

#: Fields that name who made an item, not what it is: matched by name only (see the module docstring).
IDENTITY_FIELDS = frozenset({"brand", "brands", "manufacturer", "maker", "author", "authors", "artist", "director"})
#: A value needs this many items to have a centroid worth comparing with.
MIN_VALUE_ITEMS = 3
#: A value held by more than this share of the catalogue tells nothing about a request.
MAX_VALUE_SHARE = 0.5
NEIGHBOURS = 30
DEFAULT_THRESHOLD = 0.5
#: A sub-value keeping this share of its parent's strength leads the ladder (CatalogGrounder.ground).
DESCEND_SHARE = 0.4
#: ... and at least this strength of its own (a reading as weak as 0.2 is not worth leading with).
DESCEND_FLOOR = 0.3
#: ... or, with at least LEAD_MIN of its own, when it reads LEAD_RATIO times as strongly as any sibling. The
#: same test lets a value below the threshold lead when it stands out among all values off its path.
LEAD_MIN = 0.25
LEAD_RATIO = 1.5
#: A value whose items lie (this share of them) inside another's is its sub-value ("Shredders" in
#: "Office Electronics"): found from the catalogue's membership, so any hierarchy works, named or not.
SUBSET_SHARE = 0.9
#: A request read as a value with narrower values inside it is narrowed by its WITHIN_NEIGHBOURS nearest items
#: among that value's own items: the narrower value holding WITHIN_SHARE of them leads (CatalogGrounder.narrow).
WITHIN_NEIGHBOURS = 10
WITHIN_SHARE = 0.5
#: Values this close to the strongest one compete on specificity (see CatalogGrounder.ground).
SPECIFICITY_MARGIN = 0.15
#: Pseudo-requests used to fit the calibration (titles of a random sample of items).
CALIBRATION_ITEMS = 1000
N_FEATURES = 8


@dataclass(frozen=True)
class GroundedValue:
    field: str
    value: str
    strength: float  # calibrated probability that the request asks for this value
    # Set when the value was chosen among a broader value's own items (CatalogGrounder.narrow): that value,
    # and how many of the request's `nearest` items inside it hold this one ("7 of the 10 nearest Vacuums").
    within: str = ""
    holding: int = 0
    nearest: int = 0


def groundable_values(fields: dict[str, list[list[str]]]) -> tuple[list[tuple[str, str]], sparse.csr_matrix]:
    """The (field, value) pairs worth grounding and their item membership (values x items, CSR)."""
    n_items = len(next(iter(fields.values()))) if fields else 0
    pairs: list[tuple[str, str]] = []
    rows: list[np.ndarray] = []
    for name, per_item in fields.items():
        if name.lower() in IDENTITY_FIELDS:
            continue
        members: dict[str, list[int]] = {}
        for i, values in enumerate(per_item):
            for v in values:
                members.setdefault(v, []).append(i)
        for v in sorted(members):
            idx = members[v]
            if len(idx) < MIN_VALUE_ITEMS or len(idx) > MAX_VALUE_SHARE * n_items or not _is_name(v):
                continue
            pairs.append((name, v))
            rows.append(np.asarray(idx, np.int64))
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    member = sparse.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(pairs), n_items))
    return pairs, member


def _is_name(v: str) -> bool:
    """Scraped leftovers in a category path ('2 pack', '60+ x NH &amp; Type 29') are no value to ask for."""
    return bool(re.search(r"[^\W\d_]{3}", v)) and len(v) <= 60


class CatalogGrounder:
    """Maps a request vector to the catalogue's values with calibrated strengths (module docstring)."""

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        member: sparse.csr_matrix,
        item_vecs: np.ndarray,
        name_vecs: np.ndarray,
        coef: np.ndarray,
        threshold: float = DEFAULT_THRESHOLD,
        name_bias: np.ndarray | None = None,
        centroid_bias: np.ndarray | None = None,
    ):
        self.pairs = list(pairs)
        self.member = member.tocsr().astype(np.float32)
        self.item_vecs = np.asarray(item_vecs, np.float32)
        self.name_vecs = np.asarray(name_vecs, np.float32)
        self.coef = np.asarray(coef, np.float64)
        self.threshold = float(threshold)
        counts = np.asarray(self.member.sum(axis=1)).ravel()
        self.counts = counts
        self.log_count = np.log(np.maximum(counts, 1.0))
        cent = np.asarray(self.member @ self.item_vecs) / np.maximum(counts, 1.0)[:, None]
        self.centroids = (cent / np.maximum(np.linalg.norm(cent, axis=1, keepdims=True), 1e-12)).astype(np.float32)
        self.index_of_value = {v: k for k, (_, v) in enumerate(self.pairs)}
        # Fields where an item holds several values (genres): there a request may ask for several at once
        # ("a funny animated film": Comedy and Animation), where one level of a category path offers
        # alternatives of which an item is one.
        per_field: dict[str, np.ndarray] = {}
        for k, (f, _) in enumerate(self.pairs):
            held = per_field.setdefault(f, np.zeros(self.member.shape[1], np.int32))
            held[self.member[k].indices] += 1
        self.multi_valued = {f for f, held in per_field.items() if (held > 1).any()}
        self.sub_values = _sub_values(self.member, counts)
        self.children = _children(self.sub_values)
        self._by_item = self.member.T.tocsr()  # item -> its values: the neighbour vote reads 30 rows
        # How close each value's name and centroid are to any request of this catalogue (the mean over the
        # calibration requests): "Film-Noir" is near every film request, so only its excess over that counts.
        zeros = np.zeros(len(self.pairs), np.float32)
        self.name_bias = zeros if name_bias is None else np.asarray(name_bias, np.float32)
        self.centroid_bias = zeros if centroid_bias is None else np.asarray(centroid_bias, np.float32)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        fields: dict[str, list[list[str]]],
        item_texts: list[str],
        titles: list[str],
        encoder,
        seed: int = 0,
        progress: bool = False,
        item_vecs: np.ndarray | None = None,
    ) -> CatalogGrounder | None:
        """Encode the catalogue, then fit the calibration on its titles as pseudo-requests. None when the
        catalogue has no value worth grounding."""
        pairs, member = groundable_values(fields)
        if not pairs:
            return None
        if item_vecs is None:
            item_vecs = encoder.encode(item_texts, progress=progress)
        name_vecs = encoder.encode([v for _, v in pairs])
        g = cls(pairs, member, item_vecs, name_vecs, np.zeros(N_FEATURES))
        rng = np.random.default_rng(seed)
        sample = rng.choice(len(titles), min(CALIBRATION_ITEMS, len(titles)), replace=False)
        # Each sampled item speaks twice: by its title alone, and by its whole text (which names its values
        # the way a request might name them); its own vector never votes for it.
        requests = [bare_title(titles[i]) for i in sample] + [item_texts[i] if item_texts else "" for i in sample]
        sample = np.concatenate([sample, sample])
        keep = [k for k, r in enumerate(requests) if r]
        sample, requests = sample[keep], [requests[k] for k in keep]
        if len(sample) < 20:
            return None
        q = encoder.encode(requests, progress=progress)
        g.name_bias = (q @ g.name_vecs.T).mean(axis=0)
        g.centroid_bias = (q @ g.centroids.T).mean(axis=0)
        X, y = g._calibration_pairs(q, sample)
        g.coef = _fit_logistic(X, y)
        return g

    def _calibration_pairs(self, q: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(features, label) for each pseudo-request's 20 likeliest values plus its own values."""
        X, y = [], []
        csc = self.member.tocsc()
        for row, item in zip(q, items):
            F = self.features(row, leave_out=int(item))
            own = set(csc[:, int(item)].indices.tolist())
            prior = F[:, 0] + F[:, 1] + F[:, 2]
            cand = set(np.argsort(-prior)[:20].tolist()) | own
            for v in cand:
                X.append(F[v])
                y.append(1.0 if v in own else 0.0)
        return np.asarray(X), np.asarray(y)

    # ------------------------------------------------------------------ use
    def features(self, q: np.ndarray, leave_out: int | None = None, sims: np.ndarray | None = None) -> np.ndarray:
        """Per value: name, centroid and neighbour-vote similarity, each also relative to the best value.
        (The value's size is left out on purpose: among pseudo-requests a big value is often right just
        because many items hold it, a prior that real requests do not share: it made "Drama" win.)"""
        sn = self.name_vecs @ q
        sc = self.centroids @ q
        sims = self.item_vecs @ q if sims is None else np.array(sims, np.float32)  # (own copy: see leave_out)
        if leave_out is not None:
            sims[leave_out] = -np.inf
        k = min(NEIGHBOURS, len(sims) - 1)
        top = np.argpartition(-sims, k)[:k] if k < len(sims) else np.arange(len(sims))
        w = np.maximum(sims[top], 0.0)
        # The neighbours' votes, summed per value straight from the CSR arrays (a sparse product costs more
        # than the vote itself for 30 rows).
        starts, ends = self._by_item.indptr[top], self._by_item.indptr[top + 1]
        counts = ends - starts
        held = np.concatenate([self._by_item.indices[a:b] for a, b in zip(starts, ends)]) if counts.sum() else []
        kv = np.bincount(held, weights=np.repeat(w, counts), minlength=len(self.pairs)) / max(float(w.sum()), 1e-9)
        return np.stack(
            [sn, sc, kv, sn - sn.max(), sc - sc.max(), kv - kv.max(), sn - self.name_bias, sc - self.centroid_bias],
            axis=1,
        )

    def strengths(self, q: np.ndarray, sims: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probability, per value, that the request asks for it (``sims``: ``item_vecs @ q`` when the
        caller has it already)."""
        F = self.features(q, sims=sims)
        z = F @ self.coef[:-1] + self.coef[-1] if len(self.coef) == N_FEATURES + 1 else F @ self.coef
        return 1.0 / (1.0 + np.exp(-z))

    def ground(self, q: np.ndarray, threshold: float | None = None, max_values: int = 4) -> list[GroundedValue]:
        """The values a request asks for, most specific first: a ladder of soft preferences.

        Every level of a category path scores high for a clear request (an item's broad category is as
        much "its" value as its narrow one). So the strongest value is a starting point: the ladder descends
        into its sub-values while the strongest of them keeps :data:`DESCEND_SHARE` of its parent's strength
        ("a machine to destroy confidential documents": Office Electronics, then Shredders), and values
        within :data:`SPECIFICITY_MARGIN` of the strongest join, smallest first. The ranking takes the first
        step's items first and falls back to the broader steps. Values of one multi-valued field that come
        close are alternatives ("cartoons for kids": Animation, Children's)."""
        if not np.any(q):
            return []
        return self.ladder(self.strengths(q), threshold, max_values)

    def ladder(self, p: np.ndarray, threshold: float | None = None, max_values: int = 4) -> list[GroundedValue]:
        """The ladder of :meth:`ground` for per-value strengths ``p`` (one reader's, or several averaged)."""
        best = int(np.argmax(p))
        tau = self.threshold if threshold is None else threshold
        if p[best] < tau and not self._stands_out(p, best):
            return []
        chain = [best]
        while True:
            sub = self.sub_values[chain[0]]
            if not len(sub):
                break
            order = sub[np.argsort(-p[sub])]
            d = int(order[0])
            runner = float(p[order[1]]) if len(order) > 1 else 0.0
            # A sub-value leads when it keeps a good share of its parent's strength, or when it stands out
            # among its siblings (a broad parent's children split its strength: "multimeter" reads Electrical
            # Testing 0.30, twice any other kind of Test, Measure & Inspect).
            clear = p[d] >= max(DESCEND_SHARE * p[chain[0]], DESCEND_FLOOR)
            stands_out = p[d] >= LEAD_MIN and p[d] >= LEAD_RATIO * runner
            if not (clear or stands_out):
                break
            chain.insert(0, d)
        close = np.flatnonzero(p >= max(tau, p[best] - SPECIFICITY_MARGIN))
        if self.pairs[best][0] in self.multi_valued:  # every value the request reads as clearly joins
            joins = [k for k in np.flatnonzero(p >= tau) if self.pairs[k][0] in self.multi_valued]
            close = np.union1d(close, np.asarray(joins, np.int64))
        close = [int(v) for v in close[np.lexsort((-p[close], self.log_count[close]))] if v not in chain]
        steps = (chain + close)[:max_values]
        return [GroundedValue(self.pairs[v][0], self.pairs[v][1], float(p[v])) for v in steps]

    def narrow(self, steps: list[GroundedValue], sims: np.ndarray, p: np.ndarray, max_values: int = 4):
        """The ladder ``steps`` with narrower values put in front while the request's nearest items *inside*
        the leading value agree on one of its children. A calibrated strength compares a narrow value with
        every value of the catalogue, where its few items weigh little ("a shop machine that sucks up water
        spills and sawdust" reads Vacuums 0.48, Wet-Dry Vacuums 0.10); among the vacuums, its WITHIN_NEIGHBOURS
        nearest ones (``sims``: the request's similarity to each item) say which kind it is. The narrower
        step ranks first and the broader ones stay behind it, so a wrong turn costs little."""
        if not steps:
            return steps
        head = self.index_of_value[steps[0].value]
        added: list[tuple[int, int, int, int]] = []  # (value, its parent, items holding it, of nearest)
        while len(self.children[head]):
            kids = self.children[head]
            items = self.member[head].indices
            k = min(WITHIN_NEIGHBOURS, len(items))
            near = items[np.argpartition(-sims[items], k - 1)[:k]]
            share = np.asarray(self.member[kids][:, near].sum(axis=1)).ravel() / k
            best = int(np.argmax(share))
            if share[best] < WITHIN_SHARE:
                break
            added.insert(0, (int(kids[best]), head, int(round(share[best] * k)), k))
            head = int(kids[best])
        if not added:
            return steps
        front = [
            GroundedValue(self.pairs[v][0], self.pairs[v][1], float(p[v]), self.pairs[parent][1], n, k)
            for v, parent, n, k in added
        ]
        chosen = {f.value for f in front}  # a value the ladder had further down moves up, not twice
        return (front + [s for s in steps if s.value not in chosen])[: max(max_values, len(front) + 1)]

    def _stands_out(self, p: np.ndarray, best: int) -> bool:
        """A value below the threshold still leads when it reads LEAD_RATIO times as strongly as every value
        off its own path (its broader and narrower values read alike by nature): "swords, dragons and magic
        kingdoms" reads Fantasy 0.50 and nothing else above 0.33; its reading is weak, but it is one reading."""
        if p[best] < LEAD_MIN:
            return False
        # On its path: values nested in it or it in them (SUBSET_SHARE of the smaller's items), including
        # the levels of a path that hold the very same items ("Workholding" under "Industrial Power & Hand
        # Tools" in a catalogue where the one holds all the other's 35 items).
        shared = np.asarray((self.member @ self.member[best].T).todense()).ravel()
        related = shared >= SUBSET_SHARE * np.minimum(self.counts, self.counts[best]) - 1e-9
        related[best] = True
        rivals = p[~related]
        return not len(rivals) or p[best] >= LEAD_RATIO * float(rivals.max())

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        m = self.member
        return {
            "item_vecs": self.item_vecs.astype(np.float16),
            "name_vecs": self.name_vecs.astype(np.float16),
            "coef": self.coef,
            "threshold": np.array([self.threshold]),
            "name_bias": self.name_bias,
            "centroid_bias": self.centroid_bias,
            "member_indptr": m.indptr.astype(np.int64),
            "member_indices": m.indices.astype(np.int64),
        }

    def meta(self) -> dict:
        return {"values": [list(p) for p in self.pairs]}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict, n_items: int) -> CatalogGrounder:
        pairs = [tuple(p) for p in meta["values"]]
        indptr, indices = arrays["member_indptr"], arrays["member_indices"]
        member = sparse.csr_matrix((np.ones(len(indices), np.float32), indices, indptr), shape=(len(pairs), n_items))
        return cls(
            pairs,
            member,
            arrays["item_vecs"].astype(np.float32),
            arrays["name_vecs"].astype(np.float32),
            arrays["coef"],
            float(arrays["threshold"][0]),
            arrays["name_bias"],
            arrays["centroid_bias"],
        )


def _sub_values(member: sparse.csr_matrix, counts: np.ndarray) -> list[np.ndarray]:
    """Per value, the smaller values whose items lie (SUBSET_SHARE) inside its items."""
    overlap = (member @ member.T).tocsr()  # values x values: shared items
    out = []
    for b in range(member.shape[0]):
        row = overlap.getrow(b)
        cand = row.indices[(row.data >= SUBSET_SHARE * counts[row.indices]) & (counts[row.indices] < counts[b])]
        out.append(cand.astype(np.int64))
    return out


def _children(sub_values: list[np.ndarray]) -> list[np.ndarray]:
    """Per value, its sub-values that lie inside no other of its sub-values (one level down)."""
    out = []
    for subs in sub_values:
        inner = set()
        for s in subs:
            inner.update(int(x) for x in sub_values[int(s)])
        out.append(np.asarray([int(s) for s in subs if int(s) not in inner], np.int64))
    return out


def bare_title(title: str) -> str:
    """A title without its year ("Heat (1995)" -> "Heat"): how a request names it, and a pseudo-request."""
    return re.sub(r"\s*\(\d{4}\)\s*$", "", str(title)).strip()


def _fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-3, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression by Newton steps on standardised features; returns weights for the
    raw features with the intercept last."""
    mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-9
    Xb = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    w = np.zeros(Xb.shape[1])
    reg = l2 * np.eye(Xb.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(Xb @ w)))
        grad = Xb.T @ (p - y) / len(y) + reg @ w
        H = (Xb * (p * (1 - p))[:, None]).T @ Xb / len(y) + reg
        step = np.linalg.solve(H, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    raw = w[:-1] / sd
    return np.append(raw, w[-1] - raw @ mu)
