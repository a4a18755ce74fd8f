"""The hybrid language-model recommender, trained with torch (``lucidrec[train]``).

s_ui = p_u . f_i + CLS(p_u, f_i) + b_i, with the blocks described in :mod:`lucidrec.models.scoring`.
The torch module mirrors that numpy math exactly; after training its weights are exported to numpy and
the serving path never imports torch.

Training: full softmax over the catalog (cheap at this scale, and it is the multinomial likelihood that
matches full-ranking evaluation). Each sample cuts a user's training history into an input history and
targets: "set" samples drop a random part of the history and predict it (order-free data, the ratio
protocol); "seq" samples cut at a random time and predict the next item (the loo protocol). Item-ID
dropout makes part of the catalog look cold in every batch, so the text pathway learns to rank items
nobody has interacted with. AdamW, early stopping on validation NDCG@10, seeded.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lucidrec.errors import DependencyError
from lucidrec.models.config import HybridConfig
from lucidrec.models.features import N_POSITION_BUCKETS, N_RATING_BINS, position_buckets, rating_bins
from lucidrec.models.item_item import batch_scores, is_sparse
from lucidrec.models.losses import PopularitySampler, full_softmax_loss, resolve_loss, sampled_batch_loss

try:
    import torch
    import torch.nn.functional as F_
except ImportError:  # pragma: no cover - serving installs have no torch
    torch = None


def _require_torch():
    if torch is None:
        raise DependencyError("training needs torch. Fix: pip install torch==2.13.0 && pip install 'lucidrec[train]'.")


def _inv_softplus(y: float) -> float:
    return math.log(math.expm1(y))


class HybridNet(torch.nn.Module if torch is not None else object):
    def __init__(
        self,
        n_items: int,
        text: np.ndarray,
        feats: np.ndarray,
        item_item: np.ndarray | None,
        has_id: np.ndarray,
        cfg: HybridConfig,
    ):
        super().__init__()
        d, td, fd = cfg.dim, text.shape[1], feats.shape[1]
        g = torch.Generator().manual_seed(cfg.seed)

        def rnd(*shape, scale=0.01):
            return torch.nn.Parameter(torch.randn(*shape, generator=g) * scale)

        self.register_buffer("T", torch.as_tensor(text, dtype=torch.float32))
        self.register_buffer("G", torch.as_tensor(feats, dtype=torch.float32))
        # The item-item block: a dense buffer, or a scipy CSR matrix kept outside torch (never densified;
        # it is not trained, so it needs no gradient). See item_item_apply.
        self.B_csr = item_item if is_sparse(item_item) else None
        dense_b = item_item is not None and self.B_csr is None
        self.register_buffer("B", torch.as_tensor(item_item, dtype=torch.float32) if dense_b else torch.zeros(0))
        # The item-item block is not trained by SGD: its history weights (per rating bin and position
        # bucket) are chosen on validation after the towers are trained (see set_item_item_weights).
        self.register_buffer("rho_E", torch.zeros(N_RATING_BINS))
        self.register_buffer("pi_E", torch.zeros(N_POSITION_BUCKETS))
        self.use_B = False
        self.register_buffer("has_id", torch.as_tensor(has_id, dtype=torch.float32))
        self.use_id = cfg.id_embeddings
        self.sparse_ids = False  # sparse gradients for the ID embeddings in score_items (make_optimizers)
        self.use_cross = cfg.cross
        # History-side parts start at zero and the target side small and random: gradients reach both,
        # and the untrained towers score every item alike.
        self.E_t, self.E_h = rnd(n_items, d), rnd(n_items, d, scale=0.0)
        self.Wc, self.Wa = rnd(td, d, scale=0.05), rnd(td, d, scale=0.0)
        self.Gt, self.Gh = rnd(fd, d), rnd(fd, d, scale=0.0)
        self.b_id = torch.nn.Parameter(torch.zeros(n_items))
        self.v = torch.nn.Parameter(torch.zeros(td))
        self.vg = torch.nn.Parameter(torch.zeros(fd))
        one = _inv_softplus(1.0)
        self.rho_L = torch.nn.Parameter(torch.full((N_RATING_BINS,), one))
        self.pi_L = torch.nn.Parameter(torch.full((N_POSITION_BUCKETS,), one))
        self.alpha = torch.nn.Parameter(torch.tensor(0.0))
        h = cfg.cls_hidden
        self.W1 = rnd(3 * d, h, scale=0.05)
        self.b1 = torch.nn.Parameter(torch.zeros(h))
        self.w2 = torch.nn.Parameter(torch.zeros(h))  # the cross term starts at zero
        self.b2 = torch.nn.Parameter(torch.zeros(()))
        # Softmax temperature, used only by the training loss: scaling every score by one positive number
        # changes no ranking, so serving ignores it, but it lets the loss sharpen without inflating weights.
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(cfg.init_logit_scale)))

    def items(self, id_keep: torch.Tensor | None = None):
        """Target-side F, history-side H and bias b for every item; ``id_keep`` zeroes ID parts (cold)."""
        keep = self.has_id if id_keep is None else self.has_id * id_keep
        use = 1.0 if self.use_id else 0.0
        F = use * keep[:, None] * self.E_t + self.T @ self.Wc + self.G @ self.Gt
        H = use * self.has_id[:, None] * self.E_h + self.T @ self.Wa + self.G @ self.Gh
        b = keep * self.b_id + self.T @ self.v + self.G @ self.vg
        return F, H, b, keep

    def set_item_item_weights(self, rho: np.ndarray, pi: np.ndarray):
        """Switch the item-item block on with history weights rho[rating bin] * pi[position bucket]."""
        self.rho_E = torch.as_tensor(rho, dtype=torch.float32)
        self.pi_E = torch.as_tensor(pi, dtype=torch.float32)
        self.use_B = self.B.numel() > 0 or self.B_csr is not None

    def item_item_apply(self, hist: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """sum_j w[b, j] * B[hist[b, j], :] for a padded batch (padded slots carry w = 0), dense or CSR."""
        if self.B_csr is not None:
            return torch.from_numpy(batch_scores(self.B_csr, hist.cpu().numpy(), w.detach().cpu().numpy()))
        x = torch.zeros(hist.shape[0], self.T.shape[0], device=hist.device).scatter_add_(1, hist, w)
        return x @ self.B

    def item_item_scores(self, hist, pbin, mask, decay: float, liked=None, rbin=None, rho=None) -> torch.Tensor:
        """Item-item block scores with position weights decay**bucket and, given ``rho``, rating weights
        rho[rating bin] (for the validation search)."""
        w = (decay ** pbin.float()) * mask.float() * (1.0 if liked is None else liked.float())
        if rho is not None:
            w = w * torch.as_tensor(rho, dtype=torch.float32)[rbin]
        return self.item_item_apply(hist, w)

    def forward(
        self,
        hist: torch.Tensor,
        rbin: torch.Tensor,
        pbin: torch.Tensor,
        mask: torch.Tensor,
        liked: torch.Tensor | None = None,
        id_keep: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Scores (B, n_items) for padded histories ``hist`` (B, L) with rating/position bins and a mask;
        ``liked`` (B, L) zeroes disliked items' weights in every block (they still count in the length
        normalisation and are still excluded from the targets, exactly as the numpy scorer does)."""
        n_items = self.T.shape[0]
        F, H, b, keep = self.items(id_keep)
        length = mask.float().sum(1, keepdim=True).clamp(min=1.0)
        # towers: liked items weigh by their rating bin, disliked 0; item-item: the support weight
        m, m_e = _history_masks(mask, liked)
        base_l = F_.softplus(self.rho_L)[rbin] * F_.softplus(self.pi_L)[pbin] * m
        wL = base_l / length.sqrt()
        wT = self.alpha * base_l / length
        bsz = hist.shape[0]

        def scatter(wts):
            return torch.zeros(bsz, n_items, device=hist.device).scatter_add_(1, hist, wts)

        pL = scatter(wL) @ H
        pT = scatter(wT) @ self.T
        scores = pL @ F.T + (pT @ self.T.T) + b
        if self.use_B:
            base_e = self.rho_E[rbin] * self.pi_E[pbin] * m_e
            scores = scores + self.item_item_apply(hist, base_e) * keep
        return scores + self.cross(pL, F) if self.use_cross else scores

    def score_items(
        self,
        hist: torch.Tensor,
        rbin: torch.Tensor,
        pbin: torch.Tensor,
        mask: torch.Tensor,
        items: torch.Tensor,
        id_keep: torch.Tensor | None = None,
        liked: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The scores of :meth:`forward` for the columns ``items`` only, (B, len(items)); ``id_keep`` is
        indexed like ``items``. Nothing catalog-sized is built: the user tower gathers its history rows
        instead of scattering into (B, n_items), so a sampled-softmax step costs O(B * len(items))."""
        use = 1.0 if self.use_id else 0.0
        keep = self.has_id[items] if id_keep is None else self.has_id[items] * id_keep
        Ti, Gi = self.T[items], self.G[items]
        F = use * keep[:, None] * F_.embedding(items, self.E_t, sparse=self.sparse_ids) + Ti @ self.Wc + Gi @ self.Gt
        b = keep * self.b_id[items] + Ti @ self.v + Gi @ self.vg
        length = mask.float().sum(1, keepdim=True).clamp(min=1.0)
        m, m_e = _history_masks(mask, liked)
        base_l = F_.softplus(self.rho_L)[rbin] * F_.softplus(self.pi_L)[pbin] * m
        # The history side is linear in the frozen text and features, so weight-and-sum them first and
        # project once per user (B x d_text x d), not once per history item (B x L x d_text x d).
        wL = base_l / length.sqrt()
        text_sums = torch.einsum("bkl,bld->bkd", torch.stack([wL, self.alpha * base_l / length], 1), self.T[hist])
        pL = (
            torch.einsum(
                "bl,bld->bd", use * self.has_id[hist] * wL, F_.embedding(hist, self.E_h, sparse=self.sparse_ids)
            )
            + text_sums[:, 0] @ self.Wa
            + torch.einsum("bl,blf->bf", wL, self.G[hist]) @ self.Gh
        )
        pT = text_sums[:, 1]
        scores = pL @ F.T + pT @ Ti.T + b
        if self.use_B:
            base_e = self.rho_E[rbin] * self.pi_E[pbin] * m_e
            if self.B_csr is not None:  # only the columns asked for, never densified
                cols = self.B_csr[:, items.numpy()].tocsr()
                block = torch.from_numpy(batch_scores(cols, hist.numpy(), base_e.detach().numpy()))
            else:
                x = torch.zeros(hist.shape[0], self.T.shape[0]).scatter_add_(1, hist, base_e)
                block = x @ self.B[:, items]
            scores = scores + block * keep
        return scores + self.cross(pL, F) if self.use_cross else scores

    def cross(self, pL: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
        d = F.shape[1]
        # (pL * F) @ W1c == F @ (pL[:, None] * W1c): one batched matmul instead of a 3-operand einsum
        # (measured 3x faster forward and backward on the sampled-softmax step).
        h = (
            (pL @ self.W1[:d])[:, None, :]
            + (F @ self.W1[d : 2 * d])[None]
            + torch.matmul(F[None], pL[:, :, None] * self.W1[2 * d :][None])
            + self.b1
        )
        return torch.relu(h) @ self.w2 + self.b2

    def export(self) -> dict[str, np.ndarray]:
        """Numpy weights for :class:`lucidrec.models.scoring.HybridScorer` (item vectors precomputed)."""
        with torch.no_grad():
            F, H, b, _ = self.items()
            sp = F_.softplus
            out = {
                "F": F,
                "H": H,
                "bias": b,
                "T": self.T,
                "Wa": self.Wa,
                "rho_E": self.rho_E,
                "pi_E": self.pi_E if self.use_B else torch.zeros_like(self.pi_E),
                "rho_L": sp(self.rho_L),
                "pi_L": sp(self.pi_L),
                "alpha": self.alpha.reshape(1),
                "W1": self.W1,
                "b1": self.b1,
                "w2": self.w2,
                "b2": self.b2.reshape(1),
            }
            return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in out.items()}


@dataclass
class Sequences:
    """Each user's training history ordered oldest -> newest (item indices and ratings)."""

    items: list[np.ndarray]
    ratings: list[np.ndarray]

    @classmethod
    def from_frame(cls, inter: pd.DataFrame, n_users: int) -> Sequences:
        inter = inter.sort_values(["uidx", "timestamp", "iidx"]).drop_duplicates(["uidx", "iidx"], keep="last")
        items = [np.zeros(0, np.int64) for _ in range(n_users)]
        ratings = [np.zeros(0, np.float64) for _ in range(n_users)]
        u = inter["uidx"].to_numpy()
        it = inter["iidx"].to_numpy()
        r = inter["rating"].to_numpy(dtype=np.float64)
        starts = np.r_[0, np.flatnonzero(np.diff(u)) + 1]
        ends = np.r_[starts[1:], len(u)]
        for s, e in zip(starts, ends):
            items[u[s]] = it[s:e]
            ratings[u[s]] = r[s:e]
        return cls(items, ratings)


def _history_masks(mask: torch.Tensor, liked: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(towers' weights, item-item weights) per history slot: liked items 1 / their support weight,
    disliked 0, padding 0."""
    m = mask.float()
    if liked is None:
        return m, m
    return m * (liked > 0).float(), m * liked.float()


def pad_histories(
    hists: list[np.ndarray], ratings: list[np.ndarray], dislike_margin: float | None = None, slope: float = 0.0
):
    """Padded tensors (hist, rating bin, position bucket, mask, liked) for a batch of ordered histories;
    ``liked`` holds :func:`lucidrec.models.scoring.support_weights` (0 = disliked; all 1 when
    ``dislike_margin`` is None)."""
    from lucidrec.models.scoring import support_weights

    L = max(1, max(len(h) for h in hists))
    B = len(hists)
    hist = np.zeros((B, L), np.int64)
    rb = np.zeros((B, L), np.int64)
    pb = np.zeros((B, L), np.int64)
    mask = np.zeros((B, L), bool)
    liked = np.zeros((B, L), np.float32)
    for k, (h, r) in enumerate(zip(hists, ratings)):
        n = len(h)
        hist[k, :n] = h
        rb[k, :n] = rating_bins(r)
        pb[k, :n] = position_buckets(n)
        mask[k, :n] = True
        liked[k, :n] = support_weights(r, dislike_margin, slope) if dislike_margin is not None else 1.0
    return tuple(torch.as_tensor(a) for a in (hist, rb, pb, mask, liked))


def _sample(seqs: Sequences, users, rng, mode):
    """Cut each user's history into (input history, targets): "seq" predicts the item after a random
    cut from the items before it; "set" drops a random 10-50% of the history and predicts it."""
    hists, rats, targets = [], [], []
    for u in users:
        it, r = seqs.items[u], seqs.ratings[u]
        n = len(it)
        m = mode if mode != "mixed" else ("seq" if rng.random() < 0.5 else "set")
        if m == "seq":
            t = int(rng.integers(1, n))
            hists.append(it[:t])
            rats.append(r[:t])
            targets.append(it[t : t + 1])
        else:
            keep = rng.random(n) < rng.uniform(0.5, 0.9)
            if keep.all() or not keep.any():
                keep[rng.integers(n)] = not keep.all()
            hists.append(it[keep])
            rats.append(r[keep])
            targets.append(it[~keep])
    return hists, rats, targets


def make_optimizers(net: HybridNet, cfg: HybridConfig, sparse_ids: bool = False) -> list:
    """AdamW over every parameter (ID embeddings with 10x the weight decay, the temperature with none).
    ``sparse_ids`` (sampled softmax): the ID embeddings get sparse gradients (``net.sparse_ids``) and
    SparseAdam, so a step touches only the rows of the batch's items, not all n_items rows (at 1M items the
    dense gradients and AdamW update of the two n x d tables were most of a step); their L2 penalty is then
    applied to those rows in the loss (``losses.sampled_batch_loss``)."""
    net.sparse_ids = sparse_ids
    special = ("E_t", "E_h", "logit_scale")
    others = [p for n, p in net.named_parameters() if n not in special]
    groups = [
        {"params": others, "weight_decay": cfg.weight_decay},
        {"params": [net.logit_scale], "weight_decay": 0.0},
    ]
    if sparse_ids:
        return [torch.optim.AdamW(groups, lr=cfg.lr), torch.optim.SparseAdam([net.E_t, net.E_h], lr=cfg.lr)]
    groups.insert(0, {"params": [net.E_t, net.E_h], "weight_decay": cfg.weight_decay * 10})
    return [torch.optim.AdamW(groups, lr=cfg.lr)]


def train_hybrid(
    net: HybridNet, train_seqs: Sequences, cfg: HybridConfig, validate, progress=True, log_dir: str | None = None
) -> dict:
    """Train ``net`` in place; ``validate(net) -> ndcg@10`` drives early stopping. Returns a history dict."""
    _require_torch()
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    users = np.array([u for u, s in enumerate(train_seqs.items) if len(s) >= 2])
    n_items = net.T.shape[0]
    # Full softmax for small catalogs, sampled softmax above cfg.sampled_softmax_above items (losses.py).
    sampler = None
    if resolve_loss(cfg.loss, n_items, cfg.sampled_softmax_above) == "sampled":
        counts = np.bincount(np.concatenate([np.zeros(0, np.int64), *train_seqs.items]), minlength=n_items)
        sampler = PopularitySampler(counts, seed=cfg.seed)
    opts = make_optimizers(net, cfg, sparse_ids=sampler is not None)
    writer = None
    if log_dir:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(log_dir)
        except Exception:  # tensorboard not installed: logging is optional
            writer = None
    # No "epoch 0" baseline: untrained towers score every item alike, and a tie broken by item order
    # can look deceptively good on validation. At least one trained epoch is always kept.
    best, best_state, bad, history = -1.0, None, 0, []
    start = time.perf_counter()
    step = 0
    for epoch in range(cfg.epochs):
        net.train()
        order = np.tile(users, cfg.samples_per_user)
        rng.shuffle(order)
        losses = []
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch + 1}", leave=False, disable=not progress)
        out_of_time = False
        for s in bar:
            if losses and (time.perf_counter() - start) / 60 > cfg.max_minutes:
                # The cap holds within an epoch too (one epoch of a large catalogue can outlast it):
                # the partial epoch is validated like a full one and training stops.
                out_of_time = True
                break
            batch = order[s : s + cfg.batch_size]
            hists, rats, targets = _sample(train_seqs, batch, rng, cfg.mode)
            if not targets:
                continue
            hist, rb, pb, mask, liked = pad_histories(
                hists, rats, cfg.dislike_margin if cfg.rating_aware else None, cfg.rating_slope
            )
            if sampler is not None:  # sampled softmax: only the targets and the drawn items are scored
                loss = sampled_batch_loss(net, hist, rb, pb, mask, targets, sampler, cfg, rng, liked)
            else:
                id_keep = torch.as_tensor((rng.random(n_items) >= cfg.id_dropout).astype(np.float32))
                scores = net(hist, rb, pb, mask, liked, id_keep)
                seen = torch.zeros_like(scores).scatter_add_(1, hist, mask.float()) > 0
                loss = full_softmax_loss(scores * net.logit_scale.exp(), seen, targets)
                loss = loss + cfg.l2_emb * (net.E_t.pow(2).sum() + net.E_h.pow(2).sum())
            for opt in opts:
                opt.zero_grad()
            loss.backward()
            for opt in opts:
                opt.step()
            losses.append(loss.item())
            step += 1
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if writer:
                writer.add_scalar("train/loss", losses[-1], step)
        net.eval()
        with torch.no_grad():
            ndcg = float(validate(net))
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)),
                "valid_ndcg@10": ndcg,
                "seconds": round(time.perf_counter() - start, 1),
                **({"partial": True} if out_of_time else {}),
            }
        )
        if writer:
            writer.add_scalar("valid/ndcg@10", ndcg, epoch + 1)
        if progress:
            tqdm.write(
                f"epoch {epoch + 1}: loss {np.mean(losses):.4f}  valid NDCG@10 {ndcg:.4f}{'  *' if ndcg > best else ''}"
            )
        if ndcg > best:
            best, bad = ndcg, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            bad += 1
            if bad >= cfg.patience:
                break
        if out_of_time or (time.perf_counter() - start) / 60 > cfg.max_minutes:
            if progress:
                tqdm.write(f"stopping: time budget of {cfg.max_minutes} min reached")
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    if writer:
        writer.close()
    loss_kind = "full" if sampler is None else f"sampled ({cfg.sampled_negatives} negatives)"
    return {"best_valid_ndcg@10": best, "epochs": history, "loss": loss_kind}
