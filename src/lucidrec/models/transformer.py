"""The transformer term of the score: a SASRec-style causal transformer over the user's recent items.

    s_ui = (item-item + towers + cross, :mod:`lucidrec.models.scoring`) + c * h(H_u) . e_i

``h(H_u)`` is the transformer's output at the last position of the user's most recent ``max_len`` items
(oldest -> newest) and ``e_i`` its item embeddings (the net of :mod:`lucidrec.sasrec`, trained with its
tuned recipe: full-softmax cross-entropy, early stopping on validation NDCG@10). Training
(:func:`lucidrec.training.fit`) adds it on next-item data and picks ``c`` on validation NDCG@10 (``c = 0``:
no term, the model is exactly what it was without it).

Serving needs no torch: :class:`SequenceTransformer` runs the same network in numpy (float64).

**Exact explanations.** ``h`` is not linear in the history, so the term is attributed to the history
items by integrated gradients over their input embeddings ``x_j`` (item embedding times sqrt(d) plus the
position embedding), from the all-zero input (what padding feeds the network) to the real one:

    h(X) = h(0) + sum_j a_j + r,    a_j = int_0^1 J_j(alpha X) x_j d alpha

``J_j x_j`` is a forward-mode derivative (a Jacobian-vector product, one tangent per history item, carried
through the network alongside its values), the integral a Gauss-Legendre rule over ``alpha`` (the network
is smooth: LayerNorm, softmax, erf-GELU) in a variable that spreads out the steps the network takes near the
zero input (:meth:`SequenceTransformer.attribute`); ``r`` is known exactly, and the nodes double until it is
below 1e-5 on every item's score (the unit tests hold it to 1e-4). Item ``i`` then gets ``c * a_j . e_i`` from
history item ``j``, and ``c * h(0) . e_i`` is a constant prior (the same for every user: the all-zero input
gives every position the same vector whatever the length), reported with the item's own term. ``r`` joins
the float residual, so the evidence still sums to the score exactly. A history item outside the window gets 0
from this term; removing a history item re-runs the network on the shorter history (counterfactuals re-score
exactly).
"""

from __future__ import annotations

import numpy as np

#: Prefix of the term's arrays among the model's weights (``weights.safetensors``).
PREFIX = "seq_tf."
#: Gauss-Legendre nodes of the integrated-gradients rule, doubled while the quadrature error on some item's
#: score is above IG_TOL, up to IG_MAX_NODES.
IG_NODES = 96
IG_TOL = 1e-5
IG_MAX_NODES = 384
_CHUNK = 16
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


def _ln(x, tx, g, b):
    """LayerNorm over the last axis; ``tx`` (tangents, an extra axis after the batch axis) or None."""
    mu = x.mean(-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(-1, keepdims=True)
    r = 1.0 / np.sqrt(var + _LN_EPS)
    y = xc * r
    if tx is None:
        return y * g + b, None
    txc = tx - tx.mean(-1, keepdims=True)
    tvar = 2.0 * (xc[:, None] * txc).mean(-1, keepdims=True)
    ty = txc * r[:, None] - xc[:, None] * (0.5 * r[:, None] ** 3 * tvar)
    return y * g + b, ty * g


class SequenceTransformer:
    """The transformer term in numpy: ``hidden`` (h at the last position), ``attribute`` (integrated
    gradients), item vectors ``item`` (n_items, d) and the term's weight ``weight`` (c)."""

    def __init__(self, weights: dict[str, np.ndarray]):
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
        self._h0 = None
        self._ig_cache: dict = {}

    @classmethod
    def from_weights(cls, weights: dict) -> SequenceTransformer | None:
        return cls(weights) if has_term(weights) else None

    # ------------------------------------------------------------------ the network
    def inputs(self, seq: np.ndarray) -> np.ndarray:
        """Input embeddings (n, d) of one window of item indices (oldest -> newest)."""
        seq = np.asarray(seq, np.int64)
        return self.item[seq] * np.sqrt(self.dim) + self.pos[: len(seq)]

    def _block(self, x, tx, p, last: bool = False):
        """One pre-norm block; ``last``: only the last position's output (the queries, the residual and
        the feed-forward of that row alone; keys and values still read every position). Every product is
        one 2-d matrix product (batched small products are many times slower in numpy)."""
        B, L, d, H = x.shape[0], x.shape[1], self.dim, self.n_heads
        dh = d // H
        y, ty = _ln(x, tx, p["ln1_w"], p["ln1_b"])
        qkv = _mm(y, p["in_w"].T) + p["in_b"]  # (B, L, 3d)
        tqkv = None if ty is None else _mm(ty, p["in_w"].T)  # (B, T, L, 3d)
        mask = np.triu(np.full((L, L), -np.inf), 1)
        rows = slice(None)
        if last:
            rows, mask = slice(L - 1, L), mask[-1:]
            x = x[:, rows]
            tx = None if tx is None else tx[:, :, rows]
        Lq = x.shape[1]
        heads = np.empty((B, Lq, d))
        theads = None if tx is None else np.empty((B, tx.shape[1], Lq, d))
        for h in range(H):
            cq, ck, cv = (slice(o + h * dh, o + (h + 1) * dh) for o in (0, d, 2 * d))
            for b in range(B):
                q = qkv[b, rows, cq] / np.sqrt(dh)  # (Lq, dh)
                k, v = qkv[b, :, ck], qkv[b, :, cv]  # (L, dh)
                s = q @ k.T + mask
                a = np.exp(s - s.max(-1, keepdims=True))
                a /= a.sum(-1, keepdims=True)  # (Lq, L)
                heads[b, :, cq] = a @ v
                if tqkv is None:
                    continue
                T = tqkv.shape[1]
                tq = tqkv[b, :, rows, cq] / np.sqrt(dh)  # (T, Lq, dh)
                tk, tv = tqkv[b, :, :, ck], tqkv[b, :, :, cv]  # (T, L, dh)
                ts = (tq.reshape(-1, dh) @ k.T).reshape(T, Lq, L)
                ts += np.swapaxes((tk.reshape(-1, dh) @ q.T).reshape(T, L, Lq), 1, 2)
                ta = a * (ts - (a * ts).sum(-1, keepdims=True))
                out = (ta.reshape(-1, L) @ v).reshape(T, Lq, dh)
                out += np.swapaxes((a @ np.swapaxes(tv, 0, 1).reshape(L, -1)).reshape(Lq, T, dh), 0, 1)
                theads[b, :, :, cq] = out
        x = x + _mm(heads, p["out_w"].T) + p["out_b"]
        if tx is not None:
            tx = tx + _mm(theads, p["out_w"].T)
        y, ty = _ln(x, tx, p["ln2_w"], p["ln2_b"])
        z = _mm(y, p["l1_w"].T) + p["l1_b"]
        x = x + _mm(_gelu(z), p["l2_w"].T) + p["l2_b"]
        if tx is not None:
            tx = tx + _mm(_gelu_grad(z)[:, None] * _mm(ty, p["l1_w"].T), p["l2_w"].T)
        return x, tx

    def _forward(self, x, tx=None, last: bool = False):
        """Outputs (B, L, d) for inputs (B, L, d); tangents (B, T, L, d) -> (B, T, L, d) when given;
        ``last``: the last position's only ((B, 1, d), (B, T, 1, d))."""
        for k, p in enumerate(self.layers):
            x, tx = self._block(x, tx, p, last and k == len(self.layers) - 1)
        return _ln(x, tx, self.norm_w, self.norm_b)

    def window(self, seq: np.ndarray) -> np.ndarray:
        return np.asarray(seq, np.int64)[-self.max_len :]

    def hidden(self, seqs: list[np.ndarray]) -> np.ndarray:
        """h (m, d) at each sequence's last position (its last ``max_len`` items); an empty one gets h(0)."""
        out = np.empty((len(seqs), self.dim))
        wins = [self.window(s) for s in seqs]
        for n in sorted({len(s) for s in wins}):  # one batch per length: no padding at all
            idx = [k for k, s in enumerate(wins) if len(s) == n]
            if n == 0:
                out[idx] = self.baseline()
                continue
            x = np.stack([self.inputs(wins[k]) for k in idx])
            out[idx] = self._forward(x, last=True)[0][:, -1]
        return out

    def baseline(self) -> np.ndarray:
        """h(0): the output for the all-zero input (any length gives the same vector)."""
        if self._h0 is None:
            self._h0 = self._forward(np.zeros((1, 1, self.dim)), last=True)[0][0, -1]
        return self._h0

    def attribute(self, seq: np.ndarray, nodes: int = IG_NODES, tol: float = IG_TOL) -> tuple[np.ndarray, np.ndarray]:
        """Integrated gradients of h (at the last position) over the window's input embeddings, from the
        all-zero input: (a (n, d) per window item, oldest -> newest; h(X) (d,)). The quadrature error
        ``r = h(X) - h(0) - a.sum(0)`` is known exactly: the rule doubles its nodes (up to
        :data:`IG_MAX_NODES`) until the term's error on every item's score, ``|c * e_i . r|``, is at most
        ``tol``. The last few windows' results are kept (a request explains and re-explains one history).

        The path alpha X is integrated in tau with alpha = sinh(S tau) / sinh(S), S = 1.25 asinh(sigma /
        sqrt(eps)) (sigma: the inputs' typical spread): the first LayerNorm turns alpha x into alpha x_c /
        sqrt(alpha^2 sigma^2 + eps), which moves almost entirely for alpha below ~sqrt(eps) / sigma (about
        5e-3), and the attention sharpens there too; in tau those steps are spread out. Measured on the
        ML-100K model: 96 nodes leave about 1e-6 on a score, 24-32 plain nodes in alpha leave 1-5."""
        win = self.window(seq)
        key = win.tobytes()
        if key in self._ig_cache:
            return self._ig_cache[key]
        n = len(win)
        h = self.hidden([win])[0]
        if n == 0:
            return np.zeros((0, self.dim)), h
        X = self.inputs(win)
        S = 1.25 * float(np.arcsinh(np.median(X.std(axis=1)) / np.sqrt(_LN_EPS))) or 1.0
        D = np.zeros((n, n, self.dim))  # tangent j moves input j along x_j
        D[np.arange(n), np.arange(n)] = X
        target = h - self.baseline()
        while True:
            t, wts = np.polynomial.legendre.leggauss(nodes)
            tau = (t + 1.0) / 2.0
            alphas = np.sinh(S * tau) / np.sinh(S)
            wts = wts / 2.0 * S * np.cosh(S * tau) / np.sinh(S)
            a = np.zeros((n, self.dim))
            for s in range(0, nodes, _CHUNK):
                al = alphas[s : s + _CHUNK]
                _, tx = self._forward(al[:, None, None] * X[None], np.broadcast_to(D, (len(al), *D.shape)), last=True)
                a += np.einsum("k,ktd->td", wts[s : s + _CHUNK], tx[:, :, -1])
            err = abs(self.weight) * float(np.abs(self.item @ (target - a.sum(0))).max())
            if err <= tol or nodes >= IG_MAX_NODES:
                break
            nodes *= 2
        if len(self._ig_cache) >= 16:
            self._ig_cache.pop(next(iter(self._ig_cache)))
        self._ig_cache[key] = (a, h)
        return a, h


# ---------------------------------------------------------------------- training (torch)
def train_term(dataset, train, valid, seed: int, max_minutes: float, threads: int | None = None):
    """A SASRec net (:class:`lucidrec.sasrec.SASRec`) trained with the recipe chosen on ML-100K loo validation
    by ``benchmarks/accuracy_loo.py``'s grid (width 128; lr 2e-3; window and dropout from the data: 50 / 0.2
    on long histories, 20 / 0.5 on short ones), early stopping on ``valid``."""
    from lucidrec.sasrec import SASRec

    return SASRec(dim=128, max_minutes=max_minutes, seed=seed, threads=threads).fit(dataset, train, valid)


__all__ = ["IG_NODES", "PREFIX", "SequenceTransformer", "export_weights", "has_term", "train_term"]
