"""The Recommender facade: fit, recommend (with reasons), save, load, build_index.

The facade holds a config, a trained-model artifact (:class:`lucidrec.artifact.TrainedModel`) and the request
pipeline assembled over it (:class:`lucidrec.pipeline.serving.Pipeline`), and hands each job to the module that does it:

| job | module |
|---|---|
| training (torch): item-item block, towers, blend, query weight -> a TrainedModel | :mod:`lucidrec.training` |
| the model folder: write and read a TrainedModel, validation | :mod:`lucidrec.io.model_io` |
| a request: history, query parsing and encoding, retrieval, ranking, explanations | :mod:`lucidrec.pipeline.serving` |
| candidate index | :mod:`lucidrec.retrieval` |

Nothing below this module imports it. Training needs torch (``lucidrec[train]``); a saved model folder
serves with numpy + onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec.artifact import TrainedModel
from lucidrec.errors import ModelError
from lucidrec.io import model_io
from lucidrec.model_eval import SavedModelScorer, evaluate_saved_model
from lucidrec.models.scoring import HybridScorer, UserState
from lucidrec.pipeline.components import CachedQueryEncoding
from lucidrec.pipeline.serving import MAX_K, MAX_QUERY_CHARS, Pipeline, Request, state_for
from lucidrec.training import impute_cold_item_item
from lucidrec.user_history import HistoryEntry, KnownHistories, parse_history

if TYPE_CHECKING:  # heavy imports stay out of the serving start-up path
    import pandas as pd

    from lucidrec.data.dataset import Dataset

FORMAT_VERSION = model_io.FORMAT_VERSION
_NO_HISTORIES = KnownHistories([], [], [], [], [])


class Recommender:
    """Language-model hybrid recommender: ``s_ui = p_u . f_i + CLS(p_u, f_i)`` with faithful explanations."""

    def __init__(self, config=None, encoder: str | None = None, cache_dir: str | None = None):
        from lucidrec.models.config import HybridConfig

        self.config = config or HybridConfig()
        self.encoder_name = encoder
        self.cache_dir = cache_dir
        self._model: TrainedModel | None = None
        self._pipeline: Pipeline | None = None
        self._query_cache: int | None = None

    @classmethod
    def from_model(cls, model: TrainedModel) -> Recommender:
        """A Recommender serving ``model``."""
        rec = cls(model.config)
        rec.model = model
        return rec

    # ================================================================== the pipeline, assembled once per model
    @property
    def model(self) -> TrainedModel | None:
        """The trained model (None until fit or load)."""
        return self._model

    @model.setter
    def model(self, model: TrainedModel | None) -> None:
        self._model = model
        # Assembled now, not on first request: the understanding reads with the pipeline's query encoder from
        # the moment the model is set (a benchmark may then switch that reader off for a while).
        self._pipeline = None if model is None else self._assemble(model)

    def _assemble(self, model: TrainedModel) -> Pipeline:
        pipeline = Pipeline.assemble(model)
        if self._query_cache:
            pipeline = pipeline.with_encoding(CachedQueryEncoding(pipeline.encoding, self._query_cache))
        return pipeline

    @property
    def pipeline(self) -> Pipeline:
        """The request pipeline over the current model."""
        model = self._trained()
        if self._pipeline is None or self._pipeline.model is not model:
            self._pipeline = self._assemble(model)
        return self._pipeline

    def use_query_cache(self, size: int) -> None:
        """Remember the last ``size`` embedded query texts (a service: the same query from many users costs
        one encoder call; the request understanding's item-text reader goes through the same cache)."""
        self._query_cache = size
        if self._model is not None:
            self._pipeline = self._assemble(self._model)

    def _trained(self) -> TrainedModel:
        if self.model is None:
            raise ModelError("this Recommender is not trained. Fix: call fit(dataset) or Recommender.load(DIR).")
        return self.model

    def _check_ready(self):
        self._trained()

    def _replace(self, **changes) -> None:
        self.model = self._trained().replace(**changes)

    # ================================================================== training (lucidrec.training)
    def fit(
        self,
        dataset: Dataset,
        train: pd.DataFrame | None = None,
        valid: pd.DataFrame | None = None,
        progress: bool = True,
        refit_item_item: bool = True,
        log_dir: str | None = None,
        understand: bool = True,
    ) -> Recommender:
        """Train on ``train`` (default: all interactions), early-stopping on ``valid`` (default: a random 5%
        of ``train`` per user is held out). The closed-form item-item block is refit on train+valid at the
        end so the served model knows every interaction it was given. ``understand``: also build the request
        understanding (:meth:`understand_catalog`); a model only scored for evaluation can skip it."""
        from lucidrec import training

        self.model = training.fit(
            self.config, dataset, train, valid, progress, refit_item_item, log_dir, self.encoder_name, self.cache_dir
        )
        if understand:
            self.understand_catalog(dataset, progress=progress)
        return self

    def understand_catalog(self, dataset: Dataset, progress: bool = False) -> None:
        """Build the request understanding (multilingual encoder, grounding of the catalogue's values,
        calibrated on the catalogue itself; :mod:`lucidrec.understanding`) for ``dataset``'s catalogue."""
        from lucidrec.training import understand

        self.model = understand(self._trained(), dataset, progress)

    def set_catalog(self, dataset: Dataset) -> None:
        """Serve ``dataset``'s catalogue (ids, titles, categories, fields, numbers, vocabulary)."""
        from lucidrec.catalog import Catalogue

        self._replace(catalogue=Catalogue.from_dataset(dataset))

    def set_known(self, known: pd.DataFrame) -> None:
        """Replace the stored histories with an interactions frame's rows."""
        self._replace(known=KnownHistories.from_frame(self.item_ids, known))

    # ================================================================== what the model holds (read-only views)
    @property
    def scorer(self) -> HybridScorer | None:
        return None if self.model is None else self.model.scorer

    @scorer.setter
    def scorer(self, scorer: HybridScorer) -> None:
        self._replace(scorer=scorer)  # an index built for the old weights then refuses (build_index again)

    @property
    def catalogue(self):
        return self._trained().catalogue

    @property
    def item_ids(self) -> np.ndarray:
        return self.catalogue.item_ids

    @property
    def item_index(self) -> dict:
        return self.catalogue.item_index

    @property
    def titles(self) -> np.ndarray:
        return self.catalogue.titles

    @property
    def categories(self) -> list[list[str]]:
        return self.catalogue.categories

    @property
    def years(self) -> np.ndarray:
        return self.catalogue.years

    @property
    def fields(self):
        return self.catalogue.fields

    @property
    def numeric(self) -> dict:
        return self.catalogue.numeric

    @property
    def implicit_event(self) -> str | None:
        return self.catalogue.implicit_event

    @property
    def dataset_name(self) -> str | None:
        return self.catalogue.name

    @property
    def vocabulary(self):
        return self.catalogue.vocabulary

    @vocabulary.setter
    def vocabulary(self, vocabulary) -> None:
        self._replace(catalogue=self.catalogue.with_vocabulary(vocabulary))

    @property
    def query_synonyms(self) -> dict | None:
        return None if self.model is None else self.model.query_synonyms

    @query_synonyms.setter
    def query_synonyms(self, synonyms: dict | None) -> None:
        self._replace(query_synonyms=synonyms)

    @property
    def known(self) -> KnownHistories:
        return _NO_HISTORIES if self.model is None else self.model.known

    @property
    def understanding(self):
        return None if self.model is None else self.model.understanding

    @property
    def train_report(self) -> dict:
        return {} if self.model is None else self.model.meta.train_report

    @property
    def ease_reg(self) -> float | None:
        return None if self.model is None else self.model.meta.ease_reg

    @property
    def feature_space(self) -> dict | None:
        """The item-feature space's description (:meth:`lucidrec.models.features.FeatureSpace.to_dict`)."""
        return None if self.model is None else self.model.meta.feature_space

    @property
    def retriever(self):
        return None if self.model is None else self.model.index

    @property
    def source_dir(self) -> Path | None:
        return None if self.model is None else self.model.source_dir

    @source_dir.setter
    def source_dir(self, path) -> None:
        self._replace(source_dir=path)

    @property
    def _query_encoder(self):
        return None if self.model is None else self.model.text_encoder

    @_query_encoder.setter
    def _query_encoder(self, encoder) -> None:
        self._replace(text_encoder=encoder)

    @property
    def _torch_net(self):
        return None if self.model is None else self.model.net

    @property
    def query_parser(self):
        """The parser for this catalog's vocabulary (built on first use; synonyms from the model folder's
        ``query_synonyms.json`` are added to the built-in tables)."""
        return self.pipeline.parsing.parser

    @property
    def _query_parser(self):
        return self.pipeline.parsing._parser

    @_query_parser.setter
    def _query_parser(self, value) -> None:
        if value is not None:
            raise ModelError("the query parser is built from the model's catalogue; only None (rebuild) is accepted.")
        self.model = self._model  # the pipeline assembled again, its parser built anew on first use

    # ================================================================== catalog and histories
    def known_user(self, user_id) -> bool:
        return user_id in self.known

    def item_idx(self, item_id) -> int:
        return self.catalogue.item_idx(item_id)

    def encode_query(self, text: str) -> np.ndarray:
        """A request's text as the user tower reads it (:class:`lucidrec.pipeline.components.QueryEncoding`)."""
        return self.pipeline.encoding.encode(text)

    # Internal names kept for benchmarks and tests that read the stored histories directly.
    def _known_history(self, user_id: str) -> list[HistoryEntry]:
        return self.known.history(user_id)

    def _known_users_with_history(self) -> list[str]:
        return self.known.user_ids()

    def _state_for(self, history: list[HistoryEntry], query_vec: np.ndarray | None) -> UserState:
        return state_for(self._trained(), history, query_vec)

    # ================================================================== recommending (lucidrec.pipeline.serving)
    def resolve_history(self, user=None, history=None) -> tuple[list[HistoryEntry], str]:
        """The history used for a request: the known user's stored history, plus any inline items."""
        from lucidrec.pipeline.serving import resolve_history

        return resolve_history(self._trained(), user, history)

    def recommend(
        self,
        user=None,
        history=None,
        query: str | None = None,
        k: int = 10,
        exclude_seen: bool = True,
        explain: bool = False,
        lang: str = "en",
        counterfactual: bool = False,
        exclude: Iterable | None = None,
        rewriter=None,
    ) -> dict[str, Any]:
        """Top-``k`` items for a known ``user``, an inline ``history`` (ids or (id, rating)), a ``query``,
        or any mix. Returns ``{"items": [{"item_id", "title", "score", "rank", ...}], ...}``."""
        request = Request(user, history, query, k, exclude_seen, exclude, explain, lang, counterfactual, rewriter)
        return self.pipeline.recommend(request)

    def rank(
        self,
        state: UserState,
        entries: list[HistoryEntry],
        parsed=None,
        k: int = 10,
        exclude_seen: bool = True,
        exclude: Iterable | None = None,
        explain: bool = False,
        lang: str = "en",
        counterfactual: bool = False,
        rewriter=None,
        candidates: np.ndarray | None | str = "retrieve",
    ) -> dict[str, Any]:
        """The ranking half of :meth:`recommend` for a user state already built (see
        :meth:`lucidrec.pipeline.serving.Pipeline.rank`)."""
        return self.pipeline.rank(
            state, entries, parsed, k, exclude_seen, exclude, explain, lang, counterfactual, rewriter, candidates
        )

    def score_items(self, user=None, history=None, query=None, items: Iterable | None = None) -> np.ndarray:
        """Raw scores (no exclusion, no constraint filtering) for the given item ids, or the whole catalog.
        A query contributes as in ``recommend``: its item references join the history and its residual
        text is embedded."""
        return self.pipeline.score_items(user, history, query, items)

    def parse_query(self, query: str):
        """Clean and parse a query into constraints + residual text (see :mod:`lucidrec.query`).
        A blank query (empty, only spaces or control characters) is no query: None."""
        return self.pipeline.parsing.parse(query)

    # ================================================================== evaluation (lucidrec.model_eval)
    def as_scorer(self, dataset: Dataset) -> SavedModelScorer:
        """A Scorer (evaluation interface) over ``dataset``'s item order, using the histories it is given."""
        return SavedModelScorer(self._trained(), dataset)

    # ================================================================== persistence (lucidrec.io.model_io)
    def save(self, out_dir: str | Path, export_encoder: bool = True) -> Path:
        """Write the model folder (see :mod:`lucidrec.io.model_io` for its layout)."""
        return model_io.save(self._trained(), out_dir, export_encoder)

    @classmethod
    def load(cls, model_dir: str | Path, load_encoder: bool = True, encoder_threads: int | None = None) -> Recommender:
        """Load a model folder. ``encoder_threads``: onnxruntime threads for the query encoder (see
        :class:`lucidrec.encoders.OnnxEncoder`)."""
        return cls.from_model(model_io.load(model_dir, load_encoder, encoder_threads))

    # ================================================================== candidate retrieval (lucidrec.retrieval)
    def build_index(self, kind: str = "auto", progress: bool = False, **options):
        """Build the candidate index over this model's item vectors (kept in memory; ``save`` writes it).

        ``kind``: "auto" (exact below ``exact_threshold`` items, IVF above), "exact", "ivf" or "hnsw";
        ``options`` are :class:`lucidrec.retrieval.IndexConfig` fields (nprobe, candidates, text_dim, ...)."""
        from lucidrec.retrieval import IndexConfig, Retriever

        model = self._trained()
        config = IndexConfig.from_dict({**options, "kind": kind})
        self.model = model.with_index(Retriever.build(model.scorer, config, progress=progress))
        return self.model.index

    def drop_index(self) -> None:
        """Forget the candidate index: every request scores the whole catalog exactly."""
        self.model = self._trained().with_index(None)

    def candidate_items(self, state: UserState, n: int | None = None) -> np.ndarray | None:
        """Item indices worth scoring exactly for ``state``: at least ``n`` (pass k plus the number of items
        you will exclude), or None when the whole catalog should be scored (no index, an exact index, or an
        index that came up short). The full score, explanations included, is then computed on these only."""
        return self.candidate_items_many([state], n)[0]

    def candidate_items_many(self, states: list[UserState], n: int | None = None) -> list[np.ndarray | None]:
        """:meth:`candidate_items` for many users in one index search (faster per user)."""
        return self.pipeline.retrieval.candidates_many(states, n)


__all__ = [
    "FORMAT_VERSION",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "HistoryEntry",
    "Recommender",
    "evaluate_saved_model",
    "impute_cold_item_item",
    "parse_history",
]
