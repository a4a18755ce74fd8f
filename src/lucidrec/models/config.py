"""Configuration of the hybrid model (no torch needed to read or write it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class HybridConfig:
    dim: int = 128  # latent block size
    cls_hidden: int = 32  # hidden units of the cross term
    item_item: bool = True  # closed-form item-item block (dense EASE or sparse)
    ease_reg: float | None = None  # None: chosen on validation from a small grid
    # "auto": dense EASE up to item_item.DENSE_MAX_ITEMS (10,000) items, the sparse N-neighbour block above;
    # on a dense catalogue the concise block (lucidrec.models.concise: sparse, non-negative, so a few
    # history items carry each score) replaces EASE when its blended validation NDCG@10 is within
    # item_item_tolerance of EASE's. "dense" / "sparse" / "concise" force one (lucidrec.models.item_item).
    item_item_kind: str = "auto"
    neighbors: int | None = None  # sparse block: neighbours kept per item; None: chosen on validation
    mode: str = "mixed"  # "set", "seq" or "mixed" training samples
    epochs: int = 30
    batch_size: int = 128
    samples_per_user: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-5
    l2_emb: float = 1e-6
    id_dropout: float = 0.2
    patience: int = 5
    max_minutes: float = 4.0
    seed: int = 2026
    query_strength: float = 1.0
    init_logit_scale: float = 10.0
    id_embeddings: bool = True  # learned item-ID vectors in the latent block
    cross: bool = True  # the CLS cross-interaction term
    # Training loss (lucidrec.models.losses): "full" softmax over the catalog, "sampled" softmax
    # (log-Q corrected, popularity-sampled negatives), or "auto": sampled above sampled_softmax_above items.
    loss: str = "auto"
    sampled_negatives: int = 2048  # items drawn per batch for sampled softmax
    sampled_softmax_above: int = 50_000
    # Rating-aware user states: a rating below the user's own mean minus this margin is "disliked" and
    # weighs 0 in every block (never cited as support); the item-item block learns to predict every
    # interaction from the liked ones. rating_aware=False: every history item supports. The defaults were
    # chosen on ML-100K ratio validation NDCG@10 (blend): margin 0 -> 0.256, margin 1 + slope 0.25 -> 0.268,
    # not rating-aware -> 0.269 (on ML-100K every rating is an interaction, so a 3-star film below a 3.6
    # mean still predicts what the user watches; margin 0 cost 0.03 test NDCG@10).
    # Off by default: trained side by side, rating-aware test NDCG@10 was ratio 0.3536 vs 0.3634 and loo
    # 0.0605 vs 0.0887 (benchmarks/results/explanations_accuracy.md) - below EASE on ratio and SASRec on
    # loo - so it is an opt-in for applications that must never cite a disliked item.
    rating_aware: bool = False
    dislike_margin: float = 1.0
    rating_slope: float = 0.25  # liked items' item-item input weight: 1 + slope * (rating - user's mean)
    # Each item keeps its N strongest item-item neighbours (concise evidence). None: N chosen on
    # validation (the smallest N within item_item_tolerance of the best); 0: keep every neighbour. Used by
    # the rating-aware block; the plain block's neighbours are item_item_kind/neighbors.
    item_item_neighbours: int | None = None
    # Relative validation NDCG@10 a concise block may give up (rating-aware N; concise vs dense EASE).
    item_item_tolerance: float = 0.01
    # The sequential part of the item-item block (lucidrec.models.sequential): a closed-form transition
    # block (recent items -> next item) mixed into the item-item block when validation prefers it. None:
    # tried on next-item data (mode "seq", what `lucidrec train --protocol loo` uses), never on "set"
    # (ratio) or "mixed"; True / False force it. Dense or concise item-item blocks only (catalogues up to
    # 10k items), not rating-aware. The mixed block has signed entries (the transition part is a ridge
    # regression), so a history item may push an item down - its evidence says so, and still sums exactly.
    sequential: bool | None = None
    # The transformer term (lucidrec.models.transformer): a SASRec-style causal transformer over the recent
    # items, its weight chosen on validation NDCG@10 (0: no term). None: tried on next-item data (mode "seq"),
    # like ``sequential``; True / False force it (catalogues up to 10k items; see training._tries_transformer).
    transformer: bool | None = None
    transformer_minutes: float = 5.0  # wall-clock cap of the transformer's training

    def to_dict(self) -> dict:
        return asdict(self)
