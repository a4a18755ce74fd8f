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
    # "dense" / "sparse" force one (lucidrec.models.item_item).
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

    def to_dict(self) -> dict:
        return asdict(self)
