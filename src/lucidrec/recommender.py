"""The Recommender facade: fit, recommend (with reasons), save, load, build_index.

The class holds a trained model's state (scorer weights, catalog, known histories, encoder, index) and
hands each job to the module that does it:

| job | module |
|---|---|
| training: encode, item-item block, towers, blend, query calibration (torch) | :mod:`lucidrec.training` |
| the model folder: save, load, validation | :mod:`lucidrec.model_io` |
| a request: history resolution, query state, ranking with constraints | :mod:`lucidrec.serving` |
| explanations | :mod:`lucidrec.explain` |
| candidate index | :mod:`lucidrec.retrieval` |

Training needs torch (``lucidrec[train]``); a saved model folder serves with numpy + onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lucidrec import model_io, serving
from lucidrec.errors import ConfigError, ModelError, UnknownIdError
from lucidrec.model_eval import SavedModelScorer, evaluate_saved_model
from lucidrec.models.scoring import HybridScorer, UserState
from lucidrec.serving import MAX_K, MAX_QUERY_CHARS
from lucidrec.training import impute_cold_item_item
from lucidrec.user_history import HistoryEntry, KnownHistories, parse_history

if TYPE_CHECKING:  # heavy imports stay out of the serving start-up path
    import pandas as pd

    from lucidrec.data.dataset import Dataset

FORMAT_VERSION = model_io.FORMAT_VERSION


def _latin_only(text: str) -> bool:
    """True when every letter of ``text`` is Latin (what the English item encoder was trained on)."""
    return all(ord(ch) < 0x250 for ch in text if ch.isalpha())


class Recommender:
    """Language-model hybrid recommender: ``s_ui = p_u . f_i + CLS(p_u, f_i)`` with faithful explanations."""

    def __init__(self, config=None, encoder: str | None = None, cache_dir: str | None = None):
        from lucidrec.models.config import HybridConfig

        self.config = config or HybridConfig()
        self.encoder_name = encoder
        self.cache_dir = cache_dir
        self.scorer: HybridScorer | None = None
        self.known = KnownHistories([], [], [], [], [])
        self.dataset_name: str | None = None
        self.ease_reg: float | None = None
        self.feature_space = None
        self.query_synonyms: dict | None = None
        # Implicit-feedback catalogues (no ratings): the event every interaction is, e.g. "purchased";
        # None for rated data. Inline history items are read as this event, with the training's weight.
        self.implicit_event: str | None = None
        # The catalogue's query vocabulary: per categorical field its values (when there are several
        # fields: brand, category levels), numeric fields (price, weight), and the vocabulary file's words.
        self.fields: dict[str, list[list[str]]] | None = None
        self.numeric: dict[str, np.ndarray] = {}
        self.vocabulary = None
        self.retriever = None
        self._query_encoder = None
        self._st_encoder = None
        self._query_parser = None
        # The language model's reading of this catalogue's requests (lucidrec.understanding), built at fit.
        self.understanding = None
        self.train_report: dict = {}

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

        training.fit(self, dataset, train, valid, progress, refit_item_item, log_dir)
        if understand:
            self.understand_catalog(dataset, progress=progress)
        return self

    def understand_catalog(self, dataset: Dataset, progress: bool = False) -> None:
        """Build the request understanding (multilingual encoder, grounding of the catalogue's values,
        calibrated on the catalogue itself; :mod:`lucidrec.understanding`) for ``dataset``'s catalogue."""
        from lucidrec.data.text import ItemTextBuilder, item_fields
        from lucidrec.understanding import RequestUnderstanding

        has_text = self.scorer is not None and self._query_encoder is not None
        self.understanding = RequestUnderstanding.build(
            item_fields(dataset),
            ItemTextBuilder().build(dataset),
            dataset.titles(),
            progress=progress,
            # The second reader: the model's own item-text encoder, over the item text vectors it was trained on.
            text_encoder=self._query_encoder if has_text else None,
            text_vecs=self.scorer.w["T"] if has_text else None,
        )
        if self.scorer is not None:
            self.understanding.fit_query_map(self.scorer.w["T"])
        self.attach_text_reader()
        self._query_parser = None

    def attach_text_reader(self) -> None:
        """Let the request understanding read English (and Chinese glosses) with this model's item-text
        encoder, through :meth:`encode_query` (so a service's query cache serves it too)."""
        if self.understanding is not None and self._query_encoder is not None:
            self.understanding.text_reader = self._read_request_text

    def _read_request_text(self, text: str) -> np.ndarray:
        return self.encode_query(text)  # looked up per call: a service replaces encode_query with a cached one

    def set_catalog(self, dataset: Dataset) -> None:
        """Take the item ids, titles, categories and years of ``dataset``'s catalog."""
        from lucidrec.data.text import item_categories, item_fields, item_numeric, item_years
        from lucidrec.query_synonyms import vocabulary_for

        self.item_ids = np.asarray(dataset.item_ids, dtype=object)
        self.item_index = {iid: i for i, iid in enumerate(self.item_ids)}
        self._query_parser = None
        self.titles = np.asarray(dataset.titles(), dtype=object)
        self.categories = [sorted(c) for c in item_categories(dataset)]
        self.years = item_years(dataset)
        self.implicit_event = None if getattr(dataset, "has_ratings", True) else dataset.default_event
        self.fields = item_fields(dataset) if len(dataset.schema.categorical) >= 2 else None
        self.numeric = item_numeric(dataset)
        self.vocabulary = vocabulary_for(dataset.name, {v for cats in self.categories for v in cats})

    def set_known(self, known: pd.DataFrame) -> None:
        """Replace the stored histories with an interactions frame's rows."""
        self.known = KnownHistories.from_frame(self.item_ids, known)

    # ================================================================== catalog and histories
    def known_user(self, user_id) -> bool:
        return user_id in self.known

    def item_idx(self, item_id) -> int:
        try:
            return self.item_index[str(item_id)]
        except KeyError:
            raise UnknownIdError(
                f"item '{item_id}' is not in this model's catalog ({len(self.item_ids)} items). "
                "Fix: use an item id from the training data."
            ) from None

    def encode_query(self, text: str) -> np.ndarray:
        """A request's text as the user tower reads it: Latin-script text through the item text encoder,
        other scripts through the multilingual encoder mapped into the item-text space
        (:mod:`lucidrec.understanding`). A model loaded without encoders serves histories only."""
        if self._query_encoder is None:
            raise ModelError("this model has no text encoder loaded. Fix: load it with Recommender.load(DIR).")
        u = self.understanding
        if u is not None and u.query_map is not None and not _latin_only(text):
            # The item text encoder (English MiniLM) reads Latin-script text better than the map does (Scientific
            # en precision 0.93 vs 0.83, benchmarks/results/understanding.md); other scripts only the map reads.
            return u.query_vector(text)
        return self._query_encoder.encode([text])[0]

    # Internal names kept for benchmarks and tests that read the stored histories directly.
    def _known_history(self, user_id: str) -> list[HistoryEntry]:
        return self.known.history(user_id)

    def _known_users_with_history(self) -> list[str]:
        return self.known.user_ids()

    def _state_for(self, history: list[HistoryEntry], query_vec: np.ndarray | None) -> UserState:
        return serving.state_for(self, history, query_vec)

    # ================================================================== recommending (lucidrec.serving)
    def resolve_history(self, user=None, history=None) -> tuple[list[HistoryEntry], str]:
        """The history used for a request: the known user's stored history, plus any inline items."""
        self._check_ready()
        return serving.resolve_history(self, user, history)

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
        self._check_ready()
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
            raise ConfigError(f"k={k!r}: must be an integer from 1 to {MAX_K}.")
        if lang not in ("en", "zh"):
            raise ConfigError(f"lang='{lang}': supported languages are 'en' and 'zh'.")
        entries, source, parsed, state = serving.request_state(self, user, history, query)
        result = {
            "user": None if user is None else str(user),
            "query": None if parsed is None else parsed.raw,
            "history_source": source,
            "history_size": len(entries),
        }
        result.update(
            self.rank(state, entries, parsed, k, exclude_seen, exclude, explain, lang, counterfactual, rewriter)
        )
        return result

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
        :func:`lucidrec.serving.rank`)."""
        return serving.rank(
            self, state, entries, parsed, k, exclude_seen, exclude, explain, lang, counterfactual, rewriter, candidates
        )

    def score_items(self, user=None, history=None, query=None, items: Iterable | None = None) -> np.ndarray:
        """Raw scores (no exclusion, no constraint filtering) for the given item ids, or the whole catalog.
        A query contributes as in ``recommend``: its item references join the history and its residual
        text is embedded."""
        self._check_ready()
        _, _, _, state = serving.request_state(self, user, history, query)
        idx = None if items is None else np.array([self.item_idx(i) for i in items])
        return self.scorer.score(state, idx)

    # ================================================================== queries (lucidrec.query)
    @property
    def query_parser(self):
        """The parser for this catalog's vocabulary (built on first use; synonyms from the model folder's
        ``query_synonyms.json`` are added to the built-in tables)."""
        if self._query_parser is None:
            from lucidrec.query import QueryParser

            self._query_parser = QueryParser(
                self.categories,
                self.titles,
                self.item_ids,
                self.years,
                popularity=self.known.popularity(len(self.item_ids)),
                synonyms=self.query_synonyms,
                fields=self.fields,
                numeric=self.numeric,
                vocabulary=self.vocabulary,
                name=self.dataset_name,
                understanding=self.understanding,
            )
        return self._query_parser

    def parse_query(self, query: str):
        """Clean and parse a query into constraints + residual text (see :mod:`lucidrec.query`).
        A blank query (empty, only spaces or control characters) is no query: None."""
        self._check_ready()
        cleaned = serving.clean_query(query)
        return self.query_parser.parse(cleaned) if cleaned else None

    def _check_ready(self):
        if self.scorer is None:
            raise ModelError("this Recommender is not trained. Fix: call fit(dataset) or Recommender.load(DIR).")

    # ================================================================== evaluation (lucidrec.model_eval)
    def as_scorer(self, dataset: Dataset) -> SavedModelScorer:
        """A Scorer (evaluation interface) over ``dataset``'s item order, using the histories it is given."""
        return SavedModelScorer(self, dataset)

    # ================================================================== persistence (lucidrec.model_io)
    def save(self, out_dir: str | Path, export_encoder: bool = True) -> Path:
        """Write the model folder (see :mod:`lucidrec.model_io` for its layout)."""
        self._check_ready()
        return model_io.save(self, out_dir, export_encoder)

    @classmethod
    def load(cls, model_dir: str | Path, load_encoder: bool = True, encoder_threads: int | None = None) -> Recommender:
        """Load a model folder. ``encoder_threads``: onnxruntime threads for the query encoder (see
        :class:`lucidrec.encoders.OnnxEncoder`)."""
        return model_io.load(cls, model_dir, load_encoder, encoder_threads)

    # ================================================================== candidate retrieval (lucidrec.retrieval)
    def build_index(self, kind: str = "auto", progress: bool = False, **options):
        """Build the candidate index over this model's item vectors (kept in memory; ``save`` writes it).

        ``kind``: "auto" (exact below ``exact_threshold`` items, IVF above), "exact", "ivf" or "hnsw";
        ``options`` are :class:`lucidrec.retrieval.IndexConfig` fields (nprobe, candidates, text_dim, ...)."""
        from lucidrec.retrieval import IndexConfig, Retriever

        self._check_ready()
        config = IndexConfig.from_dict({**options, "kind": kind})
        self.retriever = Retriever.build(self.scorer, config, progress=progress)
        self._retriever_scorer = self.scorer
        return self.retriever

    def drop_index(self) -> None:
        """Forget the candidate index: every request scores the whole catalog exactly."""
        self.retriever = None

    def candidate_items(self, state: UserState, n: int | None = None) -> np.ndarray | None:
        """Item indices worth scoring exactly for ``state``: at least ``n`` (pass k plus the number of items
        you will exclude), or None when the whole catalog should be scored (no index, an exact index, or an
        index that came up short). The full score, explanations included, is then computed on these only."""
        return self.candidate_items_many([state], n)[0]

    def candidate_items_many(self, states: list[UserState], n: int | None = None) -> list[np.ndarray | None]:
        """:meth:`candidate_items` for many users in one index search (faster per user)."""
        retriever = self.retriever
        if retriever is None or retriever.exact:
            return [None] * len(states)
        if getattr(self, "_retriever_scorer", None) is not self.scorer:
            raise ModelError(
                "the candidate index was built for other model weights (the model was retrained). "
                "Fix: call build_index() again, or drop_index()."
            )
        return retriever.candidates(self.scorer, states, n)


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
