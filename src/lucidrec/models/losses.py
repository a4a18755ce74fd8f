"""Training losses of the hybrid model: full softmax over the catalog, or sampled softmax for big ones.

Full softmax scores every item for every training sample: ``(batch, n_items)`` scores plus the cross
term's ``(batch, n_items, cls_hidden)`` hidden layer. That is cheap at ML-100K (1,682 items) and
impossible at a million items (a batch of 128 needs 16 GB for the cross term alone), so above
``HybridConfig.sampled_softmax_above`` items (default 50,000, the size where retrieval also switches from
exact scoring to an index) training uses **sampled softmax**:

- one shared set of ``sampled_negatives`` items per batch is drawn *with replacement* from a proposal
  ``Q`` proportional to ``(training count + 1) ** 0.75`` (popular items are the hard negatives; the
  +1 keeps every item, cold ones included, reachable);
- the softmax denominator ``Z = sum_j exp(s_j)`` over the unseen catalog is replaced by its importance
  sampling estimate ``exp(s_t) + sum_draws exp(s_j - log(S * Q_j))`` (the *log-Q correction*: without
  it popular items would be over-penalised by exactly the rate they are sampled at). Draws that hit the
  target itself ("accidental hits") or an item of the input history are dropped, as the full softmax
  drops seen items.

The estimate of ``Z`` is unbiased, so the loss is consistent: as the sample grows it converges to the
full softmax, and when the "sample" is the whole catalog once each (``Q`` uniform, ``S = n``, every
correction ``log(n * 1/n) = 0``) it *is* the full softmax. Both facts are tested
(tests/test_losses.py). Only the targets and the drawn items are scored, so a step costs
``O(batch * (targets + S))`` instead of ``O(batch * n_items)``.
"""

from __future__ import annotations

import numpy as np

from lucidrec.errors import ConfigError

try:
    import torch
    import torch.nn.functional as F_
except ImportError:  # pragma: no cover - serving installs have no torch
    torch = None

LOSSES = ("auto", "full", "sampled")
#: Exponent of the popularity proposal (word2vec's unigram ** 0.75: between popularity and uniform).
POPULARITY_EXPONENT = 0.75


def resolve_loss(loss: str, n_items: int, sampled_above: int) -> str:
    """``auto``: full softmax up to ``sampled_above`` items, sampled softmax above."""
    if loss not in LOSSES:
        raise ConfigError(f"loss='{loss}': must be one of {', '.join(LOSSES)}. Fix: e.g. loss='auto'.")
    if loss != "auto":
        return loss
    return "sampled" if n_items > sampled_above else "full"


class PopularitySampler:
    """Draws negatives with replacement from ``Q_j ~ (count_j + 1) ** exponent`` (inverse-CDF sampling:
    O(S log n) per draw, no O(n) pass per batch)."""

    def __init__(self, counts: np.ndarray, exponent: float = POPULARITY_EXPONENT, seed: int = 0):
        w = (np.asarray(counts, dtype=np.float64) + 1.0) ** exponent
        self.q = w / w.sum()
        self.cdf = np.cumsum(self.q)
        self.cdf[-1] = 1.0
        self.rng = np.random.default_rng(seed)

    @classmethod
    def uniform(cls, n_items: int, seed: int = 0) -> PopularitySampler:
        return cls(np.zeros(n_items), exponent=0.0, seed=seed)

    def draw(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """``size`` item indices and the log of their expected count in the sample, ``log(S * Q_j)``."""
        idx = np.searchsorted(self.cdf, self.rng.random(size), side="right")
        idx = np.minimum(idx, len(self.q) - 1)
        return idx.astype(np.int64), np.log(size * self.q[idx])


def sampled_softmax_loss(
    pos_scores: torch.Tensor,
    pos_row: torch.Tensor,
    pos_item: torch.Tensor,
    pos_weight: torch.Tensor,
    neg_scores: torch.Tensor,
    neg_item: torch.Tensor,
    neg_log_count: torch.Tensor,
    neg_seen: torch.Tensor,
) -> torch.Tensor:
    """Mean over batch rows of ``sum_t weight_t * -log(exp(s_t) / Z_hat)`` (see the module docstring).

    ``pos_*``: one entry per (row, target) pair - its score, batch row, item and weight (1 / number of
    targets of the row, as the full softmax's target distribution). ``neg_scores`` (rows, S): every row's
    scores of the shared draws ``neg_item`` (S,) with ``neg_log_count`` = log(S * Q_j); ``neg_seen``
    (rows, S) marks draws that are in the row's input history (dropped, like seen items in full softmax).
    Scores must already carry the softmax temperature."""
    corrected = neg_scores - neg_log_count[None, :]
    corrected = corrected.masked_fill(neg_seen, float("-inf"))
    per_pair = corrected[pos_row]  # (P, S)
    per_pair = per_pair.masked_fill(neg_item[None, :] == pos_item[:, None], float("-inf"))  # accidental hits
    log_z = torch.logsumexp(torch.cat([pos_scores[:, None], per_pair], dim=1), dim=1)
    nll = (log_z - pos_scores) * pos_weight
    return torch.zeros(neg_scores.shape[0], dtype=nll.dtype).index_add_(0, pos_row, nll).mean()


def full_softmax_loss(scores: torch.Tensor, seen: torch.Tensor, targets: list[np.ndarray]) -> torch.Tensor:
    """The multinomial likelihood over the whole catalog (``scores`` (rows, n_items), temperature applied):
    seen items are excluded, each row's targets share a weight of one."""
    logp = torch.log_softmax(scores.masked_fill(seen, -1e9), dim=1)
    tgt = np.zeros(tuple(scores.shape), np.float32)
    for k, t in enumerate(targets):
        tgt[k, t] = 1.0 / len(t)
    return -(logp * torch.as_tensor(tgt)).sum(1).mean()


def sampled_batch_loss(
    net, hist, rbin, pbin, mask, targets: list[np.ndarray], sampler, cfg, rng, liked=None
) -> torch.Tensor:
    """One batch's sampled-softmax loss for a :class:`lucidrec.models.hybrid.HybridNet`: draw the shared
    negatives, score targets and draws with ``net.score_items`` (item-ID dropout drawn for those items
    only), and apply :func:`sampled_softmax_loss`."""
    if cfg.sampled_negatives < 1:
        raise ConfigError(f"sampled_negatives={cfg.sampled_negatives!r}: must be a positive integer. Fix: e.g. 2048.")
    neg, log_count = sampler.draw(int(cfg.sampled_negatives))
    rows, pos, weight = flatten_targets(targets)
    items, inverse = np.unique(np.concatenate([pos, neg]), return_inverse=True)
    pos_col, neg_col = inverse[: len(pos)], inverse[len(pos) :]
    id_keep = torch.as_tensor((rng.random(len(items)) >= cfg.id_dropout).astype(np.float32))
    scores = net.score_items(hist, rbin, pbin, mask, torch.as_tensor(items), id_keep, liked) * net.logit_scale.exp()
    h, m = hist.numpy(), mask.numpy()
    seen = np.stack([np.isin(neg, h[k][m[k]]) for k in range(len(h))])
    rows_t = torch.as_tensor(rows)
    # The ID embeddings' L2 penalty on the rows this batch touches (all rows would make every step O(n)).
    touched = torch.as_tensor(np.unique(np.concatenate([items, hist.numpy()[mask.numpy()]])))
    sparse = bool(getattr(net, "sparse_ids", False))
    l2 = F_.embedding(touched, net.E_t, sparse=sparse).pow(2).sum()
    l2 = l2 + F_.embedding(touched, net.E_h, sparse=sparse).pow(2).sum()
    return cfg.l2_emb * l2 + sampled_softmax_loss(
        scores[rows_t, torch.as_tensor(pos_col)],
        rows_t,
        torch.as_tensor(pos),
        torch.as_tensor(weight, dtype=torch.float32),
        scores[:, torch.as_tensor(neg_col)],
        torch.as_tensor(neg),
        torch.as_tensor(log_count, dtype=torch.float32),
        torch.as_tensor(seen),
    )


def flatten_targets(targets: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, item, weight) for every (row, target) pair; a row's targets share a weight of one."""
    rows = np.concatenate([np.full(len(t), k, np.int64) for k, t in enumerate(targets)])
    items = np.concatenate([np.asarray(t, np.int64) for t in targets])
    weights = np.concatenate([np.full(len(t), 1.0 / len(t)) for t in targets])
    return rows, items, weights


__all__ = [
    "LOSSES",
    "PopularitySampler",
    "flatten_targets",
    "full_softmax_loss",
    "resolve_loss",
    "sampled_batch_loss",
    "sampled_softmax_loss",
]
