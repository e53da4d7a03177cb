"""The model contract (second edition): models score :class:`Query` batches.

A model subclasses :class:`Recommender`, declares its hyperparameters once in a nested
``Config`` dataclass (:mod:`recoforge.models.params`), declares its capabilities as class
variables, and implements only

- ``_fit(data)``: learned state into attributes ending in ``_``;
- ``_score(query) -> (n, n_items)`` float32 whole-catalogue scores, for models where that
  is cheap; and/or
- ``_score_candidates(query, candidates (n, c)) -> (n, c)``: scores of given items. The
  default gathers from ``_score``; a pair model sets ``scores_full_catalogue = False`` and
  implements only this, and is then never asked for an n x n_items block;
- optionally ``_predict_at(users, items, times)`` (ratings), ``query_vectors(query)`` and
  ``item_vectors()`` (factorised models: score = q . v), ``_similar(items)`` and
  ``_explain(query, item, n)`` whose contributions add up to the score they explain.

The machinery lives in small modules this front calls: :mod:`.query` (the request batch),
:mod:`._requests` (turning caller input into arrays), :mod:`._scoring` (bounded batches,
candidate blocks, top-k) and :mod:`recoforge.artifacts` (save/load).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.dataset import Dataset, as_dataset
from recoforge.data.history import InMemoryHistory
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import Interactions
from recoforge.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    NotSupportedError,
)
from recoforge.models import _features, _queries, _scoring
from recoforge.models import _requests as req
from recoforge.models._labels import ItemTitles, learn_titles
from recoforge.models.params import ModelConfig
from recoforge.models.query import Query
from recoforge.resources import memory_guard

UnknownUsers = Literal["error", "skip", "fallback"]
HistoryInput = req.HistoryInput
BATCH_BYTES = _scoring.BATCH_BYTES
#: a whitelist this much smaller than the catalogue is ranked through the candidate path
CANDIDATE_RATIO = 8
_log = logging.getLogger(__name__)


class Recommender(ItemTitles):
    """Base class of every recommender.

    Capabilities (class variables, listed by ``recoforge models``, checked by the
    conformance suite): ``predicts_ratings``, ``uses_time``, ``needs_item_features``,
    ``needs_user_features``, ``scores_full_catalogue`` (False for pair models),
    ``factorised`` (``query_vectors . item_vectors`` reproduces the scores) and
    ``user_state``: ``"history"`` (scores come from the history row alone),
    ``"fold_in"`` (per-user parameters; other histories are folded in) or
    ``"trained_only"``; ``needs_history`` (False when an empty history still gets
    meaningful scores, as with popularity; otherwise an unknown user with no events
    follows the ``unknown`` policy); ``uses_user_features`` (the model reads
    ``Query.user_features``: the base class keeps the training data's user encoder and
    rows and fills every query's rows, given ones encoded, else stored, else zeros; never
    None); ``scores_new_items`` (:meth:`add_items` adds items from their attributes).

    Attributes
    ----------
    config : ModelConfig
        The validated hyperparameters (immutable; change them with :meth:`set_params`).
    user_index_, item_index_ : IdIndex
        Vocabularies copied from the training data.
    fallback_ : Recommender or None
        Model answering for unknown users when ``unknown="fallback"``.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    predicts_ratings: ClassVar[bool] = False
    uses_time: ClassVar[bool] = False
    needs_item_features: ClassVar[bool] = False
    needs_user_features: ClassVar[bool] = False
    #: the model reads Query.user_features (filled by the base class, see _features)
    uses_user_features: ClassVar[bool] = False
    #: add_items(info) adds items from their attributes after training
    scores_new_items: ClassVar[bool] = False
    scores_full_catalogue: ClassVar[bool] = True
    factorised: ClassVar[bool] = False
    user_state: ClassVar[Literal["history", "fold_in", "trained_only"]] = "history"
    #: whether a request needs events to be scored (False: e.g. popularity)
    needs_history: ClassVar[bool] = True
    #: similarity of query and item vectors for retrieval ("dot" or "cosine")
    vector_similarity: ClassVar[Literal["dot", "cosine"]] = "dot"
    #: parameters read only at scoring time: set_params honours them without refitting
    scoring_params: ClassVar[frozenset[str]] = frozenset()
    #: learned state of every model (optional): user features of feature-aware models
    state_spec: ClassVar[dict[str, str]] = {
        "user_encoder_": "any: optional",
        "user_feature_matrix_": "users x user_features: optional"}
    config: Any
    user_index_: IdIndex
    item_index_: IdIndex
    fallback_: Recommender | None
    user_encoder_: Any
    user_feature_matrix_: sp.csr_matrix | None
    _history: InMemoryHistory | None = None
    _progress: Callable[..., None] | None = None

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.Config.field_names())
        if unknown:
            raise ConfigError(f"unknown parameter(s) {sorted(unknown)} for {self.name}; "
                              f"valid: {self.Config.field_names()}")
        self.config = self.Config(**params)

    @classmethod
    def capabilities(cls) -> dict[str, Any]:
        """The declared capabilities of this model class."""
        names = ("predicts_ratings", "uses_time", "needs_item_features",
                 "needs_user_features", "uses_user_features", "scores_new_items",
                 "scores_full_catalogue", "factorised", "user_state", "needs_history")
        return {name: getattr(cls, name) for name in names}

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        return self.config.to_dict()

    def set_params(self, **params: Any) -> Recommender:
        """Change hyperparameters (validated).

        On a fitted model, changing a parameter that shapes the learned state resets the
        model to unfitted (refit before use); parameters in ``scoring_params`` are read at
        scoring time and take effect at once. Never a silent mix of old state and new
        configuration.
        """
        unknown = set(params) - set(self.config.field_names())
        if unknown:
            raise ConfigError(f"unknown parameter(s) {sorted(unknown)} for {self.name}; "
                              f"valid: {self.config.field_names()}")
        new = dataclasses.replace(self.config, **params)
        changed = {k for k in params if getattr(new, k) != getattr(self.config, k)}
        self.config = new
        if self.is_fitted and changed - self.scoring_params:
            _log.warning("%s: %s changed; the model is reset to unfitted (refit it)",
                         self.name, ", ".join(sorted(changed - self.scoring_params)))
            self._clear_state()
        return self

    def clone(self) -> Recommender:
        """An unfitted copy with the same hyperparameters."""
        return type(self)(**self.get_params())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def _rng(self) -> np.random.Generator:
        """A fresh generator from the configured seed (call inside ``_fit``)."""
        return np.random.default_rng(getattr(self.config, "seed", None))

    def _clear_state(self) -> None:
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("__")]:
            delattr(self, attr)
        self._history = None

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Dataset | Interactions,
            fallback: str | Recommender | None = None,
            progress: Callable[..., None] | None = None) -> Recommender:
        """Learn from ``data``; returns ``self``.

        Parameters
        ----------
        data : Dataset or Interactions
        fallback : str or Recommender, optional
            A model (or registered name) fitted on the same data that answers for
            users outside the vocabulary when ``recommend(..., unknown="fallback")``.
        progress : callable(done, total, **info), optional
            Called after each epoch / iteration / sweep of iterative models (``info`` may
            hold ``loss``); the CLI shows it as a progress bar.
        """
        data = as_dataset(data)
        if len(data.interactions) == 0:
            raise DataError("cannot fit on empty interactions")
        self._clear_state()
        start = time.perf_counter()
        self._progress = progress
        try:
            with memory_guard(f"fitting {self.name}"):
                self.user_index_ = data.user_index
                self.item_index_ = data.item_index
                self._history = InMemoryHistory(data.matrix())
                self.data_kind_ = data.kind
                self.data_fingerprint_ = data.interactions.fingerprint()
                learn_titles(self, data)
                _features.learn_user_features(self, data)
                self._fit(data)
        except BaseException:
            self._clear_state()  # a failed fit leaves an unfitted model, not half a state
            raise
        finally:
            self._progress = None
        self.fit_seconds_ = time.perf_counter() - start
        self.fitted_at_ = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.fallback_ = None
        if fallback is not None:
            from recoforge.models.registry import create

            model = create(fallback) if isinstance(fallback, str) else fallback.clone()
            self.fallback_ = model.fit(data)
            vars(self.fallback_).pop("item_titles_", None)  # the parent's titles serve
        return self

    def _fit(self, data: Dataset) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _epoch_done(self, done: int, total: int, **info: Any) -> None:
        """Iterative models call this after each epoch: progress hook and DEBUG log."""
        _log.debug("%s: %d/%d %s", self.name, done, total, info)
        if self._progress is not None:
            self._progress(done, total, **info)

    def _score(self, query: Query) -> np.ndarray:
        raise NotSupportedError(f"{type(self).__name__} scores only candidates")

    def _score_candidates(self, query: Query, candidates: np.ndarray) -> np.ndarray:
        """Scores (n, c) of candidate item indices; default: gathered full scores."""
        return _scoring.gather_full(self, query, candidates)

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "item_index_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

    # ------------------------------------------------------------------ histories
    @property
    def history_source(self) -> InMemoryHistory | None:
        """Where known users' histories come from (None: saved without one)."""
        return self._history

    def attach_history(self, history: InMemoryHistory | sp.spmatrix) -> Recommender:
        """Give a loaded model its known users' histories (an in-memory CSR source)."""
        self._check_fitted()
        source = history if isinstance(history, InMemoryHistory) else InMemoryHistory(history)
        if source.matrix.shape != (len(self.user_index_), len(self.item_index_)):
            raise DataError(f"history has shape {source.matrix.shape}; this model needs "
                            f"({len(self.user_index_)}, {len(self.item_index_)})")
        self._history = source
        return self

    @property
    def train_matrix_(self) -> sp.csr_matrix:
        """Known users' histories (users x items CSR) from the history source."""
        if self._history is None:
            raise NotSupportedError(
                f"{self.name} has no history source for known users (it was saved without "
                f"its training history): load it with load_model(path, history=...), or "
                f"save it with include_history=True")
        return self._history.matrix

    @train_matrix_.setter
    def train_matrix_(self, matrix: sp.spmatrix) -> None:
        self._history = InMemoryHistory(matrix)

    def known_query(self, users: np.ndarray) -> Query:
        """A stored Query for known users' indices, histories from the history source."""
        users = np.asarray(users, dtype=np.int64)
        features = _features.stored_rows(self, users) if self.uses_user_features else None
        return Query.for_known(users, self.train_matrix_[users], user_features=features)

    # ------------------------------------------------------------------ recommending
    def recommend(
        self,
        users: Iterable[Any] | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        items: Iterable[Any] | None = None,
        history: HistoryInput | None = None,
        unknown: UnknownUsers = "error",
        unknown_items: Literal["error", "ignore"] = "error",
        batch_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        index: Any = None,
        titles: bool = False,
        user_features: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Top-``k`` recommendations as a DataFrame (user, item, score, rank).

        Parameters
        ----------
        users : ids, optional
            Users to recommend for (all known users when omitted and no ``history``).
        k : int
            List length per user (>= 1).
        exclude_seen : bool
            Drop items in the user's history (stored and given).
        items : ids, optional
            Candidate whitelist; a short one is scored through the candidate path.
        history : DataFrame, mapping or sequence, optional
            Events to score from: a table with ``user``, ``item`` (and optional
            ``rating``) columns, a mapping ``user -> [items]`` or ``user -> {item:
            rating}``, or one item list. Without ``users`` each entry is an anonymous
            request labelled by its key. With ``users`` the entries are those users' new
            events: merged with a known user's stored history (no retraining; models
            with per-user parameters fold them in), or a new user's whole history.
        unknown : {"error", "skip", "fallback"}
            Users outside the vocabulary with no history (or an empty one): raise, drop,
            or answer with ``fallback_``.
        unknown_items : {"error", "ignore"}
            History or whitelist items outside the vocabulary: raise or drop.
        batch_size : int, optional
            Queries scored at once; default keeps the dense score block near 128 MiB.
        progress : callable(done, total), optional
        index : VectorIndex or True, optional
            Retrieve through this index over ``item_vectors()`` (factorised models), or
            through the one kept by :meth:`attach_index` (``True``).
        titles : bool
            Add a ``title`` column (models fitted on data with item titles).
        user_features : DataFrame, optional
            Raw user attributes indexed by user id (models with ``uses_user_features``),
            encoded as the training users' were: they replace a known user's stored
            features and describe new users, who are then scored even without history.
        """
        self._check_fitted()
        k = req.check_k(k)
        batch_size = req.check_batch_size(batch_size)
        req.check_unknown(unknown)
        allowed = _queries.allowed_mask(self, items, unknown_items)
        given = _features.by_label(self, user_features)
        labels, parts, missing = _queries.build_queries(self, users, history, unknown_items)
        parts, missing = _features.with_user_features(self, labels, parts, missing, given)
        width = min(k, len(self.item_index_))
        idx = np.full((len(labels), width), -1, np.int32)
        scores = np.full((len(labels), width), -np.inf, np.float32)
        for rows, query in parts:
            idx[rows], scores[rows] = self._rank(query, k, exclude_seen, allowed, batch_size,
                                                 progress, index)
        answered = np.ones(len(labels), dtype=bool)
        answered[missing] = False
        frame = _queries.result_frame(self, labels[answered], idx[answered], scores[answered])
        if len(missing):
            rest = _queries.answer_missing(self, labels[missing], k, exclude_seen, items, unknown)
            frame = req.order_like(pd.concat([frame, rest], ignore_index=True), list(labels))
        return self._titled(frame, titles, "item")

    def _rank(self, query: Query, k: int, exclude_seen: bool, allowed: np.ndarray | None,
              batch_size: int | None, progress, index=None) -> tuple[np.ndarray, np.ndarray]:
        """Index-level top-k through the index, the candidate path or full scoring."""
        if index is not None:
            return _scoring.rank_with_index(self, index, query, k, exclude_seen, allowed)
        if allowed is not None and allowed.sum() * CANDIDATE_RATIO <= len(self.item_index_):
            whitelist = np.flatnonzero(allowed)
            cand = np.broadcast_to(whitelist, (len(query), len(whitelist)))
            return _scoring.rank_candidates(self, query, np.ascontiguousarray(cand), k,
                                            exclude_seen, batch_size, progress)
        return _scoring.rank_full(self, query, k, exclude_seen, allowed, batch_size, progress)

    def attach_index(self, index: Any) -> Recommender:
        """Keep a retrieval index over :meth:`item_vectors` with the model (saved with it);
        ``recommend(..., index=True)`` then retrieves through it. Build one with
        ``recoforge.ranking.index.VectorIndex.for_model(model, backend=...)``."""
        self._check_fitted()
        _scoring.check_index(self, index)
        self.vector_index_ = index
        return self

    def top_items(self, users: np.ndarray | None = None, k: int = 10, *,
                  histories: sp.csr_matrix | None = None, exclude_seen: bool = True,
                  allowed: np.ndarray | None = None, candidates: np.ndarray | None = None,
                  batch_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  user_features: _features.UserFeatureInput | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Index-level top-``k`` for hot paths (evaluation, serving): no ids, no DataFrame.

        Parameters
        ----------
        users : ndarray of int, optional
            Known users' indices; histories from the history source.
        histories : csr_matrix (n, n_items), optional
            Queries given by history alone (new users); exclusive with ``users``.
        allowed : ndarray of bool (n_items,), optional
            Candidate whitelist.
        candidates : ndarray of int (n, c), optional
            Per-row candidate items (``-1`` padding), scored through the candidate path.
        user_features : DataFrame or matrix, optional
            One row per query, in order: raw attributes or encoded rows (models with
            ``uses_user_features``); default: stored rows of known users, zeros otherwise.

        Returns
        -------
        (indices, scores) : int32 and float32 arrays of shape (n, min(k, n_items)),
            best first, ``-1`` / ``-inf`` padding.
        """
        query = _queries.featured_index_query(self, users, histories, user_features)
        k, batch_size = req.check_k(k), req.check_batch_size(batch_size)
        if candidates is not None:
            return _scoring.rank_candidates(self, query, np.asarray(candidates, np.int64), k,
                                            exclude_seen, batch_size, progress)
        return self._rank(query, k, exclude_seen, allowed, batch_size, progress)

    def score(self, users: np.ndarray | None = None,
              histories: sp.csr_matrix | None = None,
              user_features: _features.UserFeatureInput | None = None) -> np.ndarray:
        """Dense float32 scores (n, n_items) for one batch of known users or histories
        (``user_features`` as in :meth:`top_items`).

        The caller bounds the batch; memory is O(n * n_items).
        """
        query = _queries.featured_index_query(self, users, histories, user_features)
        return _scoring.check_finite(self, self._score(query))

    def score_candidates(self, candidates: np.ndarray, users: np.ndarray | None = None,
                         histories: sp.csr_matrix | None = None,
                         user_features: _features.UserFeatureInput | None = None
                         ) -> np.ndarray:
        """Float32 scores (n, c) of each row's candidate item indices."""
        query = _queries.featured_index_query(self, users, histories, user_features)
        return _scoring.score_candidates(self, query, np.asarray(candidates, np.int64))

    # ------------------------------------------------------------------ other queries
    def predict(self, users: Iterable[Any], items: Iterable[Any],
                unknown: Literal["error", "nan"] = "error",
                times: Iterable[Any] | None = None) -> np.ndarray:
        """Predicted ratings for (user, item) pairs; NaN for unknown ids with ``"nan"``.

        ``times`` (epoch seconds, one per pair) matter only to models with
        ``uses_time = True`` (timeSVD++); the others ignore them. Without them a time-aware
        model predicts as of each user's latest training rating.
        """
        return _queries.predict_pairs(self, users, items, unknown, times)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotSupportedError(f"{type(self).__name__} does not predict ratings")

    def _predict_at(self, users: np.ndarray, items: np.ndarray,
                    times: np.ndarray | None) -> np.ndarray:
        """Predictions at ``times`` (int64 epoch seconds or None); models without
        ``uses_time`` ignore them."""
        return self._predict(users, items)

    def similar_items(self, items: Iterable[Any], k: int = 10, *, by_title: bool = False,
                      titles: bool | None = None) -> pd.DataFrame:
        """The ``k`` items most similar to each given item (item, similar_item, score, rank);
        ``by_title``: ``items`` are titles, ``titles``: add titles (default: ``by_title``)."""
        return _queries.similar_frame(self, items, k, by_title, titles)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Item-to-item scores; default: cosine of :meth:`item_vectors`."""
        vectors = self.item_vectors()
        if vectors is None:
            raise NotSupportedError(f"{type(self).__name__} has no notion of item similarity")
        return _scoring.cosine_rows(vectors, items)

    def explain(self, item: Any, user: Any = None, *, history: HistoryInput | None = None,
                n: int = 5, titles: bool = False) -> pd.DataFrame:
        """Why ``item`` scores as it does for one ``user`` (or for a ``history``).

        Returns a DataFrame (source, id, contribution): the ``n`` history items, neighbour
        users or features that contributed most, as the model's ``_explain`` reports them;
        ``titles`` adds the title of item sources after ``id``.
        """
        self._check_fitted()
        n = req.check_k(n)
        item_idx = int(self.item_index_.to_index([item])[0])
        query = _features.complete(self, _queries.explain_query(self, user, history))
        source, keys, weights = self._explain(query, item_idx, n)
        return self._titled(_queries.contributions_frame(self, source, keys, weights, n),
                            titles, "id")

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """(source, keys, contributions) behind ``item``'s score for a one-row query.

        ``source`` is "item" or "user" (keys are indices, mapped to ids by the caller) or
        "feature" (keys are feature names).
        """
        raise NotSupportedError(f"{type(self).__name__} cannot explain its scores")

    # ------------------------------------------------------------------ new items
    def add_items(self, info: pd.DataFrame) -> Recommender:
        """Add items described only by their attributes (models with ``scores_new_items``).

        ``info`` is indexed by the new item ids and has the attribute columns the training
        item features were built from; rows are encoded with ``item_encoder_``, the model
        extends its item-side state (``_add_items``), and the items join the vocabulary:
        ``recommend``, ``score`` and ``similar_items`` include them, and ``save`` keeps
        them. An attached retrieval index is dropped (attach a new one). Returns ``self``.
        """
        _features.add_items(self, info)
        return self

    def _add_items(self, features: sp.csr_matrix) -> None:
        """Extend the item-side learned state by the encoded rows (m, n_item_features)
        of new items, appended after the current items."""
        raise NotSupportedError(f"{type(self).__name__} cannot add items from attributes")

    def item_vectors(self) -> np.ndarray | None:
        """Item vectors (n_items, d): with :meth:`query_vectors`, score = q . v."""
        return None

    def query_vectors(self, query: Query) -> np.ndarray:
        """Query vectors (n, d) with score = q . v for factorised models."""
        raise NotSupportedError(f"{type(self).__name__} is not a factorised model")

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, overwrite: bool = False, include_history: bool = False,
             include_titles: bool | None = None) -> None:
        """Write the model to a directory: learned state only, checksummed, never pickle.

        Catalogue data is saved on request: the training history with
        ``include_history``, item titles with ``include_titles`` (default: as
        ``include_history``; ``recoforge fit`` saves both).
        """
        from recoforge.artifacts import save_model

        self._check_fitted()
        keep_titles = include_history if include_titles is None else include_titles
        save_model(self, path, overwrite=overwrite, include_history=include_history,
                   skip=frozenset() if keep_titles else frozenset({"item_titles_"}))
