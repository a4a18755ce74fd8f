"""The trained-model artifact: everything training produced, as one immutable value.

:func:`lucidrec.training.fit` returns a :class:`TrainedModel`; :mod:`lucidrec.io.model_io` writes exactly one
to a model folder and reads one back; the request pipeline (:mod:`lucidrec.pipeline.serving`), evaluation
(:mod:`lucidrec.model_eval`) and batch jobs consume it whole. A change (new histories, a candidate index,
another vocabulary) is a new artifact made with :meth:`TrainedModel.replace`, never an edit in place.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lucidrec.catalog import Catalogue
from lucidrec.models.config import HybridConfig
from lucidrec.models.scoring import HybridScorer
from lucidrec.user_history import KnownHistories


@dataclass(frozen=True, eq=False)
class ModelMeta:
    """What training reports about itself (written to ``config.json``)."""

    train_report: dict = field(default_factory=dict)
    ease_reg: float | None = None
    #: The item-feature space's description (:meth:`lucidrec.models.features.FeatureSpace.to_dict`).
    feature_space: dict | None = None
    #: The name of the item-text encoder the model was trained with (kept when loaded without it).
    encoder: str | None = None


@dataclass(frozen=True, eq=False)
class TrainedModel:
    """config, catalogue, scorer, known histories and meta, plus what travels with them in the folder.

    ``text_encoder``: the item-text encoder queries are read with (the sentence-transformers model after
    training, its ONNX export after loading; None when loaded without it). ``understanding``: the language
    model's reading of this catalogue's requests (:mod:`lucidrec.understanding`), or None.
    ``query_synonyms``: a folder's own ``query_synonyms.json``. ``index``: the candidate index
    (:class:`lucidrec.retrieval.Retriever`), or None for exact scoring, and ``index_for`` the scorer it was
    built for (a scorer replaced later makes the index refuse). ``source_dir``: the folder it was
    loaded from (a save copies the encoder export from there). ``net``: the trained torch network, in
    memory only (never saved)."""

    config: HybridConfig
    catalogue: Catalogue
    scorer: HybridScorer
    known: KnownHistories
    meta: ModelMeta = field(default_factory=ModelMeta)
    text_encoder: Any = None
    understanding: Any = None
    query_synonyms: dict | None = None
    index: Any = None
    index_for: HybridScorer | None = None
    source_dir: Path | None = None
    net: Any = None

    @property
    def n_items(self) -> int:
        return len(self.catalogue)

    def replace(self, **changes) -> TrainedModel:
        """A copy with ``changes`` (dataclass field names) applied."""
        return dataclasses.replace(self, **changes)

    def with_index(self, index) -> TrainedModel:
        """A copy serving with ``index`` (built for this model's scorer), or exactly when None."""
        return dataclasses.replace(self, index=index, index_for=None if index is None else self.scorer)


__all__ = ["ModelMeta", "TrainedModel"]
