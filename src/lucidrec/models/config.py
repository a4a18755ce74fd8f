"""Configuration of the hybrid model (no torch needed to read or write it)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class HybridConfig:
    dim: int = 64                 # latent block size
    cls_hidden: int = 32          # hidden units of the cross term
    item_item: bool = True        # closed-form item-item block (EASE); off for huge catalogs
    ease_reg: float | None = None  # None: chosen on validation from a small grid
    mode: str = "mixed"           # "set", "seq" or "mixed" training samples
    epochs: int = 40
    batch_size: int = 128
    samples_per_user: int = 4
    lr: float = 3e-3
    weight_decay: float = 1e-5
    l2_emb: float = 1e-6
    id_dropout: float = 0.2
    patience: int = 4
    max_minutes: float = 3.0
    seed: int = 2026
    query_strength: float = 1.0
    init_logit_scale: float = 10.0
    folds: int = 5                # target folds for leakage-free training of the item-item block

    def to_dict(self) -> dict:
        return asdict(self)
