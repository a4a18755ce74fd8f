"""The transformer term of the score: a SASRec-style causal transformer over the user's recent items.

    s_ui = (item-item + towers + cross, :mod:`lucidrec.models.scoring`) + c * h(H_u) . e_i

``h(H_u)`` is the transformer's output at the last position of the user's most recent ``max_len`` items
(oldest -> newest) and ``e_i`` its item embeddings (the net of :mod:`lucidrec.sasrec`, trained with its
tuned recipe: full-softmax cross-entropy, early stopping on validation NDCG@10). Training
(:func:`lucidrec.training.fit`) adds it on next-item data and picks ``c`` on validation NDCG@10 (``c = 0``:
no term, the model is exactly what it was without it).

Serving needs no torch: :class:`SequenceTransformer` runs the same network in numpy (float64).

**Exact explanations.** ``h`` is not linear in the history, so the term is attributed to the window's items
by integrated gradients over their input embeddings ``x_j = sqrt(d) item_j + pos_j``, along the straight path
from a baseline ``x'`` to the real input:

    h(X) = h(X') + sum_j a_j + r,    a_j = int_0^1 J_j(X' + alpha (X - X')) (x_j - x'_j) d alpha

``J_j v`` is a forward-mode derivative (a Jacobian-vector product, one tangent per window item, carried
through the network alongside its values; :meth:`SequenceTransformer._jvp_last` keeps only the (position,
item) pairs that can be nonzero and runs the first block's and the last row's attention in closed form), the
integral a Gauss-Legendre rule. ``r`` is known exactly, and the rule is chosen on the path's derivative alone
(one tangent) until ``r`` is at most 1e-5 on every item's score (:meth:`SequenceTransformer.attribute`).
Item ``i`` then gets ``c * a_j . e_i`` from window item ``j``, ``c * h(X') . e_i`` is a prior reported with
the item's own term, and ``r`` joins the float residual, so the evidence still sums to the score exactly.

The baseline (``SequenceTransformer.ig_baseline``): ``"zero"`` (default), the all-zero input (what padding
feeds the network; the prior is the same for every user), or ``"positions"``, the window's position
embeddings with every item embedding zeroed (the prior then depends on the window's length, not on its
items). The zero baseline sits on the first LayerNorm's singular point, so its path needs a stretched
variable and more nodes (ML-100K loo, seed 2028, 40 users' windows of 20-50 items: median 76-88 nodes,
about 1 s per request on a loaded core, against 32 nodes and 0.45 s from the positions); but it credits each
item with its position too, and its explanations measured better: PN of the items reasons name 0.922 vs
0.868, PN 0.468 vs 0.430, PS 0.350 vs 0.302, what-if coverage 0.978 vs 0.970 (c at 8 x spread;
benchmarks/explanations.py --ig-baseline). A history item outside the window gets 0 from this term; removing
a history item re-runs the network on the shorter history (counterfactuals re-score exactly).
"""

from __future__ import annotations

import numpy as np

#: Prefix of the term's arrays among the model's weights (``weights.safetensors``).
PREFIX = "seq_tf."
#: Integrated gradients: the first rule tried (Gauss-Legendre nodes, per baseline), the largest error allowed
#: on any item's score, the most nodes, and the stretch S of the path variable (alpha = sinh(S tau) / sinh(S)) from the
#: positions baseline; from the zero baseline S = 1.25 asinh(sigma / sqrt(eps)) (sigma: the inputs' typical
#: spread), the first LayerNorm's scale. Measured on the ML-100K loo model (seed 2028, windows of 20-50
#: items), nodes for 1e-5: positions S = 3 the fewest of {0, 2, 3, 4} (24-56); zero 1.25 the fewest of
#: {0.6, 0.8, 1, 1.25, 1.6} x asinh(...) (64-168).
IG_NODES = {"zero": 64, "positions": 24}
IG_TOL = 1e-5
IG_MAX_NODES = 256
IG_STRETCH = 3.0
IG_BASELINES = ("zero", "positions")
#: Nodes run together: at most _CHUNK, and no more than keep one tangent array within ~_CHUNK_BYTES (the
#: arrays then stay in a core's cache: 50 items' tangents at 2 nodes a chunk ran in 0.65-0.7 s where 16 nodes
#: a chunk took 0.93-1.0, same rule, same core).
_CHUNK = 16
_CHUNK_BYTES = 3_000_000
_LN_EPS = 1e-5


def has_term(weights: dict) -> bool:
    """Whether a model's weights carry a transformer term (older model folders do not)."""
    return f"{PREFIX}item" in weights


def export_weights(net, max_len: int, n_heads: int, weight: float) -> dict[str, np.ndarray]:
    """The numpy arrays of a trained :mod:`lucidrec.sasrec` net (torch), for :class:`SequenceTransformer`."""
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in net.state_dict().items()}
    out = {
        "item": sd["item.weight"][1:],
        "pos": sd["pos.weight"][:max_len],
        "norm_w": sd["norm.weight"],
        "norm_b": sd["norm.bias"],
        "heads": np.array([n_heads], np.float32),
        "weight": np.array([weight], np.float32),
    }
    n_layers = len({k.split(".")[2] for k in sd if k.startswith("blocks.layers.")})
    for layer in range(n_layers):
        p = f"blocks.layers.{layer}."
        for ours, theirs in (
            ("ln1_w", "norm1.weight"), ("ln1_b", "norm1.bias"), ("in_w", "self_attn.in_proj_weight"),
            ("in_b", "self_attn.in_proj_bias"), ("out_w", "self_attn.out_proj.weight"),
            ("out_b", "self_attn.out_proj.bias"), ("ln2_w", "norm2.weight"), ("ln2_b", "norm2.bias"),
            ("l1_w", "linear1.weight"), ("l1_b", "linear1.bias"), ("l2_w", "linear2.weight"), ("l2_b", "linear2.bias"),
        ):  # fmt: skip
            out[f"l{layer}.{ours}"] = sd[p + theirs]
    return {PREFIX + k: v for k, v in out.items()}


def _gelu(x):
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def _gelu_grad(x):
    from scipy.special import erf

    return 0.5 * (1.0 + erf(x / np.sqrt(2.0))) + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi)


def _mm(a, W):
    """``a @ W`` over the last axis of ``a`` as one 2-d product."""
    return (a.reshape(-1, a.shape[-1]) @ W).reshape(*a.shape[:-1], W.shape[1])


def _ln(x, g, b):
    """LayerNorm over the last axis."""
    xc = x - x.mean(-1, keepdims=True)
    return xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + _LN_EPS) * g + b


def _ln_pairs(x, t, rows, g, b):
    """LayerNorm over the last axis of ``x`` (B, L, d) and its derivative along tangents ``t`` (B, P, d),
    tangent k sitting at row ``rows[k]``: ``g r (t - mean(t) - y mean(y t))`` with ``y = (x - mu) r``."""
    d = x.shape[-1]
    xc = x - x.mean(-1, keepdims=True)
    r = 1.0 / np.sqrt((xc * xc).mean(-1, keepdims=True) + _LN_EPS)
    y = xc * r
    yr = y[:, rows]
    m = np.einsum("bpd,bpd->bp", yr, t)[..., None] / d
    yr *= m
    ty = t - t.mean(-1, keepdims=True)
    ty -= yr
    ty *= r[:, rows]
    ty *= g
    return y * g + b, ty


def _rule(m: int, S: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes alpha in (0, 1) and weights of the m-node Gauss-Legendre rule in tau, alpha = sinh(S tau) / sinh(S)."""
    t, w = np.polynomial.legendre.leggauss(m)
    tau = (t + 1.0) / 2.0
    return np.sinh(S * tau) / np.sinh(S), w / 2.0 * S * np.cosh(S * tau) / np.sinh(S)


def _next_nodes(tried: dict[int, float], tol: float) -> int:
    """The next node count to try, from the errors of the rules tried so far: the error of a Gauss rule on a
    smooth integrand falls geometrically with the nodes, so the last two give the rate (after the first: 8
    more); a step of 8 at least, the count rounded up to a multiple of 8, and at most doubled. (A node of this
    search costs about 1/8 of one of the per-item pass at 50 items, so it steps finely.)"""
    ms = sorted(tried)
    m = ms[-1]
    step = 8
    if len(ms) >= 2 and 0 < tried[m] < tried[ms[-2]]:
        rate = np.log(tried[ms[-2]] / tried[m]) / (m - ms[-2])  # per node
        step = max(8, int(np.ceil(np.log(tried[m] / tol) / rate)))
    return int(min(IG_MAX_NODES, 2 * m, 8 * np.ceil((m + step) / 8)))


class SequenceTransformer:
    """The transformer term in numpy: ``hidden`` (h at the last position), ``attribute`` (integrated
    gradients), item vectors ``item`` (n_items, d) and the term's weight ``weight`` (c)."""

    def __init__(self, weights: dict[str, np.ndarray], ig_baseline: str = "zero"):
        w = {k[len(PREFIX) :]: np.asarray(v, np.float64) for k, v in weights.items() if k.startswith(PREFIX)}
        self.item = w["item"]
        self.pos = w["pos"]
        self.max_len, self.dim = self.pos.shape
        self.n_heads = int(round(float(w["heads"].reshape(-1)[0])))
        self.weight = float(w["weight"].reshape(-1)[0])
        self.layers = []
        k = 0
        while f"l{k}.in_w" in w:
            self.layers.append({n: w[f"l{k}.{n}"] for n in (
                "ln1_w", "ln1_b", "in_w", "in_b", "out_w", "out_b", "ln2_w", "ln2_b", "l1_w", "l1_b", "l2_w", "l2_b"
            )})  # fmt: skip
            k += 1
        self.norm_w, self.norm_b = w["norm_w"], w["norm_b"]
        self._base: dict[int, np.ndarray] = {}
        #: The integrated gradients' starting point (see the module's docstring): "zero" (the all-zero input)
        #: or "positions" (the window's position embeddings, item embeddings zeroed).
        if ig_baseline not in IG_BASELINES:
            raise ValueError(f"ig_baseline={ig_baseline!r}: expected one of {IG_BASELINES}")
        self.ig_baseline = ig_baseline
        self._ig_cache: dict = {}
        #: Nodes and completeness error (on any item's score) of the last attribution computed (diagnostics).
        self.ig_nodes, self.ig_error = 0, 0.0

    @classmethod
    def from_weights(cls, weights: dict) -> SequenceTransformer | None:
        return cls(weights) if has_term(weights) else None

    # ------------------------------------------------------------------ the network
    def inputs(self, seq: np.ndarray) -> np.ndarray:
        """Input embeddings (n, d) of one window of item indices (oldest -> newest)."""
        seq = np.asarray(seq, np.int64)
        return self.item[seq] * np.sqrt(self.dim) + self.pos[: len(seq)]

    def _block(self, x, p, last: bool = False):
        """One pre-norm block on inputs (B, L, d); ``last``: only the last position's output (its query, the
        residual and the feed-forward of that row alone; keys and values still read every position)."""
        B, L, d, H = x.shape[0], x.shape[1], self.dim, self.n_heads
        dh = d // H
        qkv = _mm(_ln(x, p["ln1_w"], p["ln1_b"]), p["in_w"].T) + p["in_b"]  # (B, L, 3d)
        r0 = L - 1 if last else 0
        mask = np.triu(np.full((L, L), -np.inf), 1)[r0:]
        heads = np.empty((B, L - r0, d))
        for h in range(H):
            cq, ck, cv = (slice(o + h * dh, o + (h + 1) * dh) for o in (0, d, 2 * d))
            s = qkv[:, r0:, cq] @ np.swapaxes(qkv[:, :, ck], 1, 2) / np.sqrt(dh) + mask
            a = np.exp(s - s.max(-1, keepdims=True))
            a /= a.sum(-1, keepdims=True)
            heads[:, :, cq] = a @ qkv[:, :, cv]
        x = x[:, r0:] + _mm(heads, p["out_w"].T) + p["out_b"]
        z = _mm(_ln(x, p["ln2_w"], p["ln2_b"]), p["l1_w"].T) + p["l1_b"]
        return x + _mm(_gelu(z), p["l2_w"].T) + p["l2_b"]

    def _forward(self, x, last: bool = False):
        """Outputs (B, L, d) for inputs (B, L, d); ``last``: the last position's only (B, 1, d)."""
        for k, p in enumerate(self.layers):
            x = self._block(x, p, last and k == len(self.layers) - 1)
        return _ln(x, self.norm_w, self.norm_b)

    def window(self, seq: np.ndarray) -> np.ndarray:
        return np.asarray(seq, np.int64)[-self.max_len :]

    def hidden(self, seqs: list[np.ndarray]) -> np.ndarray:
        """h (m, d) at each sequence's last position (its last ``max_len`` items); an empty one gets h(0)."""
        out = np.empty((len(seqs), self.dim))
        wins = [self.window(s) for s in seqs]
        for n in sorted({len(s) for s in wins}):  # one batch per length: no padding at all
            idx = [k for k, s in enumerate(wins) if len(s) == n]
            if n == 0:
                out[idx] = self.baseline(0)
                continue
            x = np.stack([self.inputs(wins[k]) for k in idx])
            out[idx] = self._forward(x, last=True)[:, -1]
        return out

    def baseline(self, n: int = 0) -> np.ndarray:
        """The integrated gradients' baseline output for a window of ``n`` items. ``ig_baseline ==
        "positions"``: h at the last position of the position embeddings alone (every item embedding zeroed:
        ``x'_j = pos_j``), so it depends on the window's length; ``"zero"``: the all-zero input's output, the
        same for every length. ``n = 0`` (no history): the all-zero input's output, what :meth:`hidden` gives."""
        n = min(int(n), self.max_len) if self.ig_baseline == "positions" else 0
        if n not in self._base:
            x = self.pos[None, :n] if n else np.zeros((1, 1, self.dim))
            self._base[n] = self._forward(x, last=True)[0, -1]
        return self._base[n]

    def attribute(
        self, seq: np.ndarray, tol: float = IG_TOL, nodes: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Integrated gradients of h (at the last position) over the window's input embeddings, from the
        baseline :attr:`ig_baseline`: (a (n, d) per window item, oldest -> newest; h(X) (d,)), with
        ``h(X) = baseline(n) + sum_j a_j + r`` and the quadrature error ``r`` known exactly. The last few
        windows' results are kept (a request explains and re-explains one history).

        The rule (Gauss-Legendre in ``tau``, ``alpha = sinh(S tau) / sinh(S)``: the LayerNorms and the
        attention turn fastest early on the path; S in :data:`IG_STRETCH`'s note) is chosen before any per-item
        work: the sum of the items' integrands is the path's derivative dh/d alpha, one tangent
        (:meth:`_jvp_last` with ``total``, ~20x cheaper than one per item), so a rule's completeness error on
        every item's score, ``max_i |c * e_i . r|``, is measured exactly for the price of that one tangent. The
        node count grows (from :data:`IG_NODES`, extrapolating the error's decay) until it is at most ``tol``,
        up to :data:`IG_MAX_NODES`; then the per-item tangents run on that rule alone and the error is measured
        again on their sum. ``nodes``: use that many nodes, no search (diagnostics)."""
        win = self.window(seq)
        key = win.tobytes()
        if key in self._ig_cache and nodes is None:
            return self._ig_cache[key]
        n = len(win)
        h = self.hidden([win])[0]
        if n == 0:
            return np.zeros((0, self.dim)), h
        P, V = self.pos[:n], self.item[win] * np.sqrt(self.dim)
        S = IG_STRETCH
        if self.ig_baseline == "zero":  # the path alpha X: the first LayerNorm moves within alpha ~ sqrt(eps) / sigma
            V = V + P
            S = 1.25 * float(np.arcsinh(np.median(V.std(axis=1)) / np.sqrt(_LN_EPS))) or 1.0
            P = np.zeros_like(V)
        target = h - self.baseline(n)
        E = abs(self.weight) * self.item

        def integral(m: int, total: bool) -> np.ndarray:
            alphas, wts = _rule(m, S)
            a = np.zeros((1 if total else n, self.dim))
            pairs = n if total else n * (n + 1) // 2  # the tangents' (position, tangent) pairs per node
            chunk = int(np.clip(_CHUNK_BYTES // (8 * pairs * self.dim), 1, _CHUNK))
            for s in range(0, m, chunk):
                al = alphas[s : s + chunk]
                a += np.einsum(
                    "k,ktd->td", wts[s : s + chunk], self._jvp_last(P[None] + al[:, None, None] * V[None], V, total)
                )
            return a

        def error(a_sum: np.ndarray) -> float:
            return float(np.abs(E @ (target - a_sum)).max())

        m = nodes
        if m is None:  # the smallest rule that meets tol, found on the path's derivative alone
            tried = {}
            m = IG_NODES[self.ig_baseline]
            while True:
                tried[m] = error(integral(m, True)[0])
                if tried[m] <= tol or m >= IG_MAX_NODES:
                    break
                m = _next_nodes(tried, tol)
        while True:
            a = integral(m, False)
            err = error(a.sum(0))
            if err <= tol or nodes is not None or m >= IG_MAX_NODES:
                break
            m = min(IG_MAX_NODES, m + 8)  # the sum of the items' tangents is the path's derivative: not expected
        self.ig_nodes, self.ig_error = m, err
        if nodes is None:
            if len(self._ig_cache) >= 16:
                self._ig_cache.pop(next(iter(self._ig_cache)))
            self._ig_cache[key] = (a, h)
        return a, h

    # ------------------------------------------------------------------ forward-mode derivatives for IG
    def _jvp_last(self, x: np.ndarray, V: np.ndarray, total: bool = False) -> np.ndarray:
        """Derivatives of h at the last position of inputs ``x`` (B, L, d) along each window item's own input
        direction (tangent j moves input j by ``V[j]``): (B, L, d), one row per item; ``total``: along all of
        them at once, the path's derivative dh/d alpha (B, 1, d) (the rows' sum, at a fraction of the cost).

        The tangents are sparse and carried as (position, tangent) pairs: tangent j is zero at positions before
        j (causal attention), and before the first attention it is nonzero at position j only; the last block
        needs only the last position's row. Position-wise parts (LayerNorm, projections, feed-forward) run on
        the pairs that can be nonzero, the attention on a dense (tangent, position) grid per node."""
        B, L, _ = x.shape
        if total:  # one tangent moving every position
            pl, pj, start = np.arange(L), np.zeros(L, np.int64), np.zeros(1, np.int64)
        else:  # tangent j moves position j only: the diagonal
            pl = pj = start = np.arange(L)
        t = np.broadcast_to(V, (B, L, self.dim))
        for k, p in enumerate(self.layers):
            x, t, pl, pj = self._block_jvp(x, t, pl, pj, start, p, last=k == len(self.layers) - 1)
        # after the last block: the pairs (L - 1, j), one per tangent
        out = np.zeros((B, len(start), self.dim))
        y, ty = _ln_pairs(x, t, np.zeros(len(pl), np.int64), self.norm_w, self.norm_b)
        out[:, pj] = ty
        return out

    def _block_jvp(self, x, t, pl, pj, start, p, last: bool):
        """One pre-norm block on values ``x`` (B, L, d) and pair tangents ``t`` (B, P, d) at pairs (pl, pj),
        grouped by tangent (tangent ``j`` is zero before position ``start[j]``); returns the new values (the
        last row only when ``last``), tangents and pairs."""
        L, T = x.shape[1], len(start)
        y, ty = _ln_pairs(x, t, pl, p["ln1_w"], p["ln1_b"])
        r0 = L - 1 if last else 0  # the first query row
        if last:  # pairs out: the last row, every tangent
            opl, opj = np.full(T, L - 1), np.arange(T)
        else:  # pairs out: every position at or after the tangent's start
            opj = np.repeat(np.arange(T), L - start)
            opl = np.concatenate([np.arange(s0, L) for s0 in start])
        if last:
            heads, tatt = self._attn_last(y, ty, pl, pj, T, p)
        elif T == L and np.array_equal(pl, np.arange(L)) and np.array_equal(pj, pl):
            heads, tatt = self._attn_first(y, ty, opl, opj, p)
        else:
            heads, tatt = self._attn_dense(y, ty, pl, pj, T, opl, opj, p)
        x = x[:, r0:] + _mm(heads, p["out_w"].T) + p["out_b"]
        tout = _mm(tatt, p["out_w"].T)  # (B, P', d)
        # the residual: the input pairs' tangents, where an output pair has one
        where = np.full(T * L, -1)
        where[pj * L + pl] = np.arange(len(pl))
        src = where[opj * L + opl]
        has = src >= 0
        tout[:, has] += t[:, src[has]]
        orow = opl - r0  # the output pairs' rows in x
        y, ty = _ln_pairs(x, tout, orow, p["ln2_w"], p["ln2_b"])
        z = _mm(y, p["l1_w"].T) + p["l1_b"]
        x = x + _mm(_gelu(z), p["l2_w"].T) + p["l2_b"]
        tout += _mm(_gelu_grad(z)[:, orow] * _mm(ty, p["l1_w"].T), p["l2_w"].T)
        return x, tout, opl, opj

    def _split(self, a):
        """(B, L, d) -> (B, heads, L, d / heads)."""
        B, L, _ = a.shape
        return a.reshape(B, L, self.n_heads, -1).transpose(0, 2, 1, 3)

    def _attn_first(self, y, ty, opl, opj, p):
        """The causal attention's outputs (B, L, d) and their tangents at the pairs (opl, opj) (B, P, d) when
        tangent j sits at position j alone (the first block). Then the logits' tangent is one row and one
        column: ``ts[j, l, m] = [l = j] tq_j . k_m + [m = j] q_l . tk_j``, and each pair's tangent reduces to
        ``a[l, j] (q_l . tk_j (v_j - o_l) + tv_j)``, plus ``sum_m a[j, m] w_jm (v_m - o_j)`` on the diagonal
        (``w_jm = tq_j . k_m``): no (tangent, position, position) grid at all."""
        B, L, d = y.shape
        dh = d // self.n_heads
        qkv = _mm(y, p["in_w"].T) + p["in_b"]
        tqkv = _mm(ty, p["in_w"].T)  # (B, L, 3d): tangent j at position j
        q, k, v = (self._split(qkv[..., o : o + d]) for o in (0, d, 2 * d))
        tq, tk, tv = (self._split(tqkv[..., o : o + d]) for o in (0, d, 2 * d))
        q, tq = q / np.sqrt(dh), tq / np.sqrt(dh)
        s = q @ np.swapaxes(k, 2, 3) + np.triu(np.full((L, L), -np.inf), 1)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)  # (B, H, L, L)
        o = a @ v  # (B, H, L, dh)
        u = (q @ np.swapaxes(tk, 2, 3))[:, :, opl, opj]  # q_l . tk_j per pair (B, H, P)
        coef = a[:, :, opl, opj]
        out = (coef * u)[..., None] * (v[:, :, opj] - o[:, :, opl]) + coef[..., None] * tv[:, :, opj]
        aw = a * (tq @ np.swapaxes(k, 2, 3))  # a_jm w_jm (B, H, L, L)
        diag = np.flatnonzero(opl == opj)
        out[:, :, diag] += aw @ v - aw.sum(-1, keepdims=True) * o
        heads = o.transpose(0, 2, 1, 3).reshape(B, L, d)
        return heads, out.transpose(0, 2, 1, 3).reshape(B, len(opl), d)

    def _attn_last(self, y, ty, pl, pj, T, p):
        """The attention's output at the last position (B, 1, d) and its tangents there (B, T, d), for pair
        tangents grouped by tangent. Keys' and values' tangents enter only through ``q . tk`` and the
        attention-weighted sum of ``tv``, so they are never formed: ``q . tk = ty . (W_k' q)`` per pair and
        ``sum_m a_m tv[m, j] = (sum_m a_m ty[m, j]) W_v'``."""
        B, L, d = y.shape
        H = self.n_heads
        dh = d // H
        Wq, Wk, Wv = (p["in_w"][o : o + d] for o in (0, d, 2 * d))
        kv = _mm(y, p["in_w"][d:].T) + p["in_b"][d:]
        k, v = self._split(kv[..., :d]), self._split(kv[..., d:])  # (B, H, L, dh)
        q = ((y[:, -1] @ Wq.T + p["in_b"][:d]) / np.sqrt(dh)).reshape(B, H, 1, dh)
        s = q @ np.swapaxes(k, 2, 3)  # (B, H, 1, L): the last row sees every position
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = a @ v  # (B, H, 1, dh)
        # the query's tangent: tangent j's pair at the last position (if it has one)
        where = np.full(T * L, -1)
        where[pj * L + pl] = np.arange(len(pl))
        at_last = where[np.arange(T) * L + L - 1]
        tq = np.zeros((B, T, d))
        tq[:, at_last >= 0] = _mm(ty[:, at_last[at_last >= 0]], Wq.T) / np.sqrt(dh)
        ts = self._split(tq) @ np.swapaxes(k, 2, 3)  # (B, H, T, L): tq_j . k_m
        kq = np.einsum("bhe,hed->bhd", q[:, :, 0], Wk.reshape(H, dh, d))  # (B, H, d): W_k,h' q_h per head
        ts[:, :, pj, pl] += np.swapaxes(ty @ np.swapaxes(kq, 1, 2), 1, 2)  # + q . tk[m, j] at each pair
        ta = a * (ts - (a * ts).sum(-1, keepdims=True))
        out = ta @ v  # (B, H, T, dh)
        groups = np.flatnonzero(np.r_[True, pj[1:] != pj[:-1]])  # first pair of each tangent
        buf = np.empty_like(ty)
        for h in range(H):  # sum_m a_m ty[m, j] per tangent, then its values' projection
            np.multiply(ty, a[:, h, 0, pl][..., None], out=buf)
            out[:, h] += np.add.reduceat(buf, groups, axis=1) @ Wv[h * dh : (h + 1) * dh].T
        return o.transpose(0, 2, 1, 3).reshape(B, 1, d), out.transpose(0, 2, 1, 3).reshape(B, T, d)

    def _attn_dense(self, y, ty, pl, pj, T, opl, opj, p):
        """The causal attention's outputs (B, L, d) and their tangents at the pairs (opl, opj), in general (a
        middle block, or one tangent moving every position): the tangents on a dense (tangent, position) grid
        per node."""
        B, L, d = y.shape
        H = self.n_heads
        dh = d // H
        mask = np.triu(np.full((L, L), -np.inf), 1)
        qkv = _mm(y, p["in_w"].T) + p["in_b"]  # (B, L, 3d)
        tqkv = _mm(ty, p["in_w"].T)  # (B, P, 3d)
        # dense tangents per node, (tangent, position, .), zero where no pair is carried (the scatter writes
        # the same cells for every node, so the zeros stay)
        dense = np.zeros((T, L, 3 * d))
        out = np.empty((T, L, d))
        heads = np.empty((B, L, d))
        tatt = np.empty((B, len(opl), d))
        for b in range(B):
            dense[pj, pl] = tqkv[b]
            for h in range(H):
                cq, ck, cv = (slice(o + h * dh, o + (h + 1) * dh) for o in (0, d, 2 * d))
                q = qkv[b, :, cq] / np.sqrt(dh)  # (L, dh)
                k, v = qkv[b, :, ck], qkv[b, :, cv]
                s = q @ k.T + mask
                a = np.exp(s - s.max(-1, keepdims=True))
                a /= a.sum(-1, keepdims=True)  # (L, L)
                heads[b, :, cq] = a @ v
                ts = (dense[:, :, cq].reshape(-1, dh) @ k.T).reshape(T, L, L) / np.sqrt(dh)
                ts += np.swapaxes((dense[:, :, ck].reshape(-1, dh) @ q.T).reshape(T, L, L), 1, 2)
                ta = a * (ts - (a * ts).sum(-1, keepdims=True))
                o = (ta.reshape(-1, L) @ v).reshape(T, L, dh)
                o += np.swapaxes((a @ np.swapaxes(dense[:, :, cv], 0, 1).reshape(L, -1)).reshape(L, T, dh), 0, 1)
                out[:, :, cq] = o
            tatt[b] = out[opj, opl]
        return heads, tatt


# ---------------------------------------------------------------------- training (torch)
def train_term(dataset, train, valid, seed: int, max_minutes: float, threads: int | None = None):
    """A SASRec net (:class:`lucidrec.sasrec.SASRec`) trained with the recipe chosen on ML-100K loo validation
    by ``benchmarks/accuracy_loo.py``'s grid (width 128; lr 2e-3; window and dropout from the data: 50 / 0.2
    on long histories, 20 / 0.5 on short ones), early stopping on ``valid``."""
    from lucidrec.sasrec import SASRec

    return SASRec(dim=128, max_minutes=max_minutes, seed=seed, threads=threads).fit(dataset, train, valid)


__all__ = [
    "IG_MAX_NODES",
    "IG_NODES",
    "IG_TOL",
    "PREFIX",
    "SequenceTransformer",
    "export_weights",
    "has_term",
    "train_term",
]
