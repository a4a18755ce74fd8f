"""Sampled softmax (lucidrec.models.losses): the same loss as full softmax when the sample is the whole
catalog, an unbiased partition-function estimate, gradients that point where the full softmax's do, and
the automatic choice by catalog size."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lucidrec.errors import ConfigError  # noqa: E402
from lucidrec.models.config import HybridConfig  # noqa: E402
from lucidrec.models.features import N_POSITION_BUCKETS, N_RATING_BINS  # noqa: E402
from lucidrec.models.hybrid import HybridNet, pad_histories  # noqa: E402
from lucidrec.models.losses import (  # noqa: E402
    PopularitySampler,
    flatten_targets,
    full_softmax_loss,
    resolve_loss,
    sampled_softmax_loss,
)

N_ITEMS = 60


def _net(seed: int = 0) -> HybridNet:
    rng = np.random.default_rng(seed)
    text = rng.standard_normal((N_ITEMS, 16)).astype(np.float32)
    feats = rng.standard_normal((N_ITEMS, 3)).astype(np.float32)
    has_id = (rng.random(N_ITEMS) < 0.8).astype(np.float32)
    net = HybridNet(N_ITEMS, text, feats, None, has_id, HybridConfig(dim=8, cls_hidden=4, seed=seed))
    with torch.no_grad():  # untrained nets score all items alike; give every part some weight
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(seed)))
    return net


def _batch(seed: int = 1, margin: float | None = None):
    rng = np.random.default_rng(seed)
    hists, rats, targets = [], [], []
    for _ in range(7):
        items = rng.permutation(N_ITEMS)[: int(rng.integers(3, 12))]
        cut = int(rng.integers(1, len(items)))
        hists.append(items[:cut])
        rats.append(rng.integers(1, 6, size=cut).astype(np.float64))
        targets.append(items[cut:])
    return pad_histories(hists, rats, margin, 0.25 if margin is not None else 0.0), targets


def test_score_items_equals_the_full_forward_for_rating_aware_histories():
    """Disliked items (weight 0 in the towers, support weight in the block) are read the same way by the
    sampled-softmax path as by the full forward pass."""
    net = _net()
    (hist, rb, pb, mask, liked), _ = _batch(margin=0.5)
    assert (liked[mask] == 0).any() and (liked[mask] > 0).any()
    items = torch.as_tensor(np.array([5, 0, 17, 59, 33]))
    with torch.no_grad():
        full = net(hist, rb, pb, mask, liked)
        part = net.score_items(hist, rb, pb, mask, items, None, liked)
        plain = net(hist, rb, pb, mask)
    np.testing.assert_allclose(part.numpy(), full[:, items].numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(full.numpy(), plain.numpy())


def test_score_items_equals_the_full_forward_on_its_columns():
    net = _net()
    (hist, rb, pb, mask, _liked), _ = _batch()
    items = torch.as_tensor(np.array([5, 0, 17, 59, 33]))
    with torch.no_grad():
        full = net(hist, rb, pb, mask)
        part = net.score_items(hist, rb, pb, mask, items)
    np.testing.assert_allclose(part.numpy(), full[:, items].numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sparse_block", [False, True])
def test_score_items_with_the_item_item_block_on(sparse_block):
    from scipy import sparse

    rng = np.random.default_rng(2)
    dense = (rng.random((N_ITEMS, N_ITEMS)) < 0.1) * rng.standard_normal((N_ITEMS, N_ITEMS))
    np.fill_diagonal(dense, 0.0)
    block = sparse.csr_matrix(dense.astype(np.float32)) if sparse_block else dense.astype(np.float32)
    text = rng.standard_normal((N_ITEMS, 16)).astype(np.float32)
    feats = rng.standard_normal((N_ITEMS, 3)).astype(np.float32)
    net = HybridNet(N_ITEMS, text, feats, block, np.ones(N_ITEMS, np.float32), HybridConfig(dim=8, cls_hidden=4))
    net.set_item_item_weights(
        np.linspace(0.5, 1.5, N_RATING_BINS).astype(np.float32),
        np.linspace(1.0, 0.2, N_POSITION_BUCKETS).astype(np.float32),
    )
    (hist, rb, pb, mask, _liked), _ = _batch()
    items = torch.as_tensor(np.array([1, 4, 9, 58]))
    with torch.no_grad():
        full = net(hist, rb, pb, mask)
        part = net.score_items(hist, rb, pb, mask, items)
    assert float(full.abs().max()) > 0.1
    np.testing.assert_allclose(part.numpy(), full[:, items].numpy(), rtol=1e-5, atol=1e-5)


def test_sampled_softmax_is_the_full_softmax_when_the_sample_is_the_whole_catalog():
    net = _net()
    (hist, rb, pb, mask, _liked), targets = _batch()
    scale = net.logit_scale.exp()
    full_scores = net(hist, rb, pb, mask) * scale
    seen = torch.zeros_like(full_scores).scatter_add_(1, hist, mask.float()) > 0
    full = full_softmax_loss(full_scores, seen, targets)
    # The whole catalog once each: Q uniform, S = n, every log-Q correction log(n * 1/n) = 0.
    rows, pos, weight = flatten_targets(targets)
    neg = torch.arange(N_ITEMS)
    sampled = sampled_softmax_loss(
        full_scores[torch.as_tensor(rows), torch.as_tensor(pos)],
        torch.as_tensor(rows),
        torch.as_tensor(pos),
        torch.as_tensor(weight, dtype=torch.float32),
        full_scores,
        neg,
        torch.zeros(N_ITEMS),
        seen,
    )
    assert float(full.detach()) > 0.5  # a real loss, not a degenerate zero
    assert float(sampled.detach()) == pytest.approx(float(full.detach()), rel=1e-5)
    # ... and the gradients agree too.
    g_full = torch.autograd.grad(full, net.Wc, retain_graph=True)[0]
    g_sampled = torch.autograd.grad(sampled, net.Wc)[0]
    assert float((g_sampled - g_full).norm() / g_full.norm()) < 1e-4


def _skewed_problem(seed: int = 3):
    rng = np.random.default_rng(seed)
    n = 400
    counts = np.floor(1000.0 / np.arange(1, n + 1) ** 1.1)  # Zipf-like popularity
    scores = torch.as_tensor(rng.standard_normal(n) * 1.5 + 0.002 * counts, dtype=torch.float64)
    return n, counts, scores


def test_the_partition_function_estimate_is_unbiased():
    n, counts, scores = _skewed_problem()
    target = 7
    sampler = PopularitySampler(counts, seed=11)
    true_z = float(torch.exp(scores).sum())
    estimates = []
    for _ in range(4000):
        neg, log_count = sampler.draw(16)
        terms = scores[torch.as_tensor(neg)] - torch.as_tensor(log_count)
        terms = terms.masked_fill(torch.as_tensor(neg) == target, float("-inf"))
        estimates.append(float(torch.exp(scores[target]) + torch.exp(terms).sum()))
    mean = np.mean(estimates)
    stderr = np.std(estimates) / np.sqrt(len(estimates))
    assert abs(mean - true_z) < 4 * stderr + 1e-9
    assert abs(mean - true_z) < 0.05 * true_z


@pytest.mark.parametrize("corrected", [True, False])
def test_sampled_gradients_point_where_the_full_softmax_gradient_does(corrected):
    n, counts, scores = _skewed_problem()
    target = 3
    s = scores.clone().requires_grad_(True)
    full = torch.logsumexp(s, 0) - s[target]
    (g_full,) = torch.autograd.grad(full, s)
    sampler = PopularitySampler(counts, seed=5)
    g_mean = torch.zeros(n, dtype=torch.float64)
    for _ in range(300):
        neg, log_count = sampler.draw(256)
        log_count = log_count if corrected else np.zeros_like(log_count)
        x = s.clone()
        loss = sampled_softmax_loss(
            x[target : target + 1],
            torch.zeros(1, dtype=torch.long),
            torch.tensor([target]),
            torch.ones(1, dtype=torch.float64),
            x[torch.as_tensor(neg)][None, :],
            torch.as_tensor(neg),
            torch.as_tensor(log_count),
            torch.zeros(1, len(neg), dtype=torch.bool),
        )
        g_mean += torch.autograd.grad(loss, s)[0] / 300
    cos = float(g_mean @ g_full / (g_mean.norm() * g_full.norm()))
    if corrected:
        assert cos > 0.99
    else:  # popular items are over-penalised without the correction
        assert cos < 0.9


def test_auto_loss_switches_to_sampled_above_the_threshold():
    assert resolve_loss("auto", 50_000, 50_000) == "full"
    assert resolve_loss("auto", 50_001, 50_000) == "sampled"
    assert resolve_loss("full", 10**6, 50_000) == "full"
    assert resolve_loss("sampled", 10, 50_000) == "sampled"
    with pytest.raises(ConfigError, match="loss='bpr'"):
        resolve_loss("bpr", 10, 50_000)


def test_training_with_sampled_softmax_learns(tiny_dataset):
    from lucidrec.recommender import Recommender

    cfg = HybridConfig(
        dim=8,
        epochs=8,
        batch_size=16,
        lr=1e-2,
        item_item=False,
        loss="sampled",
        sampled_negatives=16,
        patience=8,
        seed=1,
    )
    rec = Recommender(cfg).fit(tiny_dataset, progress=False)
    assert rec.train_report["loss"].startswith("sampled")
    losses = [e["loss"] for e in rec.train_report["epochs"]]
    assert all(np.isfinite(losses)) and np.mean(losses[-2:]) < 0.9 * losses[0]


def test_sparse_id_gradients_equal_the_dense_ones():
    from lucidrec.models.hybrid import make_optimizers
    from lucidrec.models.losses import sampled_batch_loss

    (hist, rb, pb, mask, _liked), targets = _batch()
    cfg = HybridConfig(dim=8, cls_hidden=4, sampled_negatives=20, id_dropout=0.0)
    grads = {}
    for sparse in (False, True):
        net = _net()
        opts = make_optimizers(net, cfg, sparse_ids=sparse)
        loss = sampled_batch_loss(
            net, hist, rb, pb, mask, targets, PopularitySampler.uniform(N_ITEMS, 1), cfg, np.random.default_rng(0)
        )
        loss.backward()
        g = net.E_t.grad
        assert g.is_sparse == sparse
        grads[sparse] = g.to_dense()
        assert len(opts) == (2 if sparse else 1)
        for opt in opts:
            opt.step()  # SparseAdam accepts the sparse gradients
    assert float(grads[False].abs().max()) > 0
    np.testing.assert_allclose(grads[True].numpy(), grads[False].numpy(), rtol=1e-5, atol=1e-8)
