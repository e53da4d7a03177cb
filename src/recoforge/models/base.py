"""The model contract: one base class owns everything models share.

A model subclasses :class:`Recommender`, declares its hyperparameters once in a nested
``Config`` dataclass (see :mod:`recoforge.models.params`) and implements only

- ``_fit(data)``: learn state into attributes ending in ``_``;
- ``_score(histories, users)``: float32 scores of shape (n_queries, n_items) from the
  queries' history rows (CSR, values = ratings or event weights) and, for known users,
  their indices (``users is None`` for new users given only a history);
- optionally ``_predict(users, items)`` (rating models; time-aware ones set
  ``uses_time`` and override ``_predict_at(users, items, times)``), ``item_vectors()``
  (cosine similar-items) or ``_similar(items)`` (item-to-item scores).

Id mapping, batching with bounded memory, seen-item exclusion, candidate whitelists,
top-k, DataFrames with external ids, unknown-user policy, fallback models, seeding,
``predict``/``similar_items`` and save/load are written here once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.dataset import Dataset, as_dataset
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import Interactions, to_epoch_seconds
from recoforge.errors import (
    ConfigError,
    DataError,
    NotFittedError,
    NotSupportedError,
    UnknownIdError,
)
from recoforge.models.params import ModelConfig
from recoforge.ranking.topk import topk

UnknownUsers = Literal["error", "skip", "fallback"]
HistoryInput: TypeAlias = pd.DataFrame | Mapping[Any, Any] | Iterable[Any]
BATCH_BYTES = 1 << 27  # dense score block per batch: 128 MiB


class Recommender:
    """Base class of every recommender.

    Parameters
    ----------
    **params
        Hyperparameters, validated by the model's ``Config``.

    Attributes
    ----------
    config : ModelConfig
        The validated hyperparameters (immutable; change them with :meth:`set_params`).
    user_index_, item_index_ : IdIndex
        Vocabularies copied from the training data.
    train_matrix_ : csr_matrix
        Training interactions, used as known users' histories and for seen-item exclusion.
    fallback_ : Recommender or None
        Model answering for unknown users when ``unknown="fallback"``.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[ModelConfig]] = ModelConfig
    #: the validated hyperparameters: an instance of the subclass's ``Config``
    config: Any
    user_index_: IdIndex
    item_index_: IdIndex
    train_matrix_: sp.csr_matrix
    fallback_: Recommender | None
    fit_seconds_: float
    #: whether ``_predict`` gives ratings (explicit-feedback models)
    predicts_ratings: ClassVar[bool] = False
    #: whether predictions depend on the time of the rating (see :meth:`predict`)
    uses_time: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.Config.field_names())
        if unknown:
            raise ConfigError(f"unknown parameter(s) {sorted(unknown)} for {self.name}; "
                              f"valid: {self.Config.field_names()}")
        self.config = self.Config(**params)

    # ------------------------------------------------------------------ parameters
    def get_params(self) -> dict[str, Any]:
        return self.config.to_dict()

    def set_params(self, **params: Any) -> Recommender:
        """Change hyperparameters (validated); the learned state is kept until refit."""
        unknown = set(params) - set(self.config.field_names())
        if unknown:
            raise ConfigError(f"unknown parameter(s) {sorted(unknown)} for {self.name}; "
                              f"valid: {self.config.field_names()}")
        self.config = dataclasses.replace(self.config, **params)
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

    # ------------------------------------------------------------------ fitting
    def fit(self, data: Dataset | Interactions,
            fallback: str | Recommender | None = None) -> Recommender:
        """Learn from ``data``; returns ``self``.

        Parameters
        ----------
        data : Dataset or Interactions
        fallback : str or Recommender, optional
            A model (or registered name) fitted on the same data that answers for
            users outside the vocabulary when ``recommend(..., unknown="fallback")``.
        """
        data = as_dataset(data)
        if len(data.interactions) == 0:
            raise DataError("cannot fit on empty interactions")
        for attr in [a for a in vars(self) if a.endswith("_") and not a.startswith("_")]:
            delattr(self, attr)  # refit starts clean
        start = time.perf_counter()
        self.user_index_ = data.user_index
        self.item_index_ = data.item_index
        self.train_matrix_ = data.matrix()
        self.data_kind_ = data.kind
        self.data_fingerprint_ = data.interactions.fingerprint()
        self._fit(data)
        self.fit_seconds_ = time.perf_counter() - start
        self.fitted_at_ = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.fallback_ = None
        if fallback is not None:
            from recoforge.models.registry import create

            model = create(fallback) if isinstance(fallback, str) else fallback.clone()
            self.fallback_ = model.fit(data)
        return self

    def _fit(self, data: Dataset) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _score(self, histories: sp.csr_matrix, users: np.ndarray | None) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def is_fitted(self) -> bool:
        return hasattr(self, "item_index_")

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit() first")

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
    ) -> pd.DataFrame:
        """Top-``k`` recommendations as a DataFrame (user, item, score, rank).

        Parameters
        ----------
        users : ids, optional
            Known users (all of them when omitted and no ``history`` is given).
        k : int
            List length per user (>= 1).
        exclude_seen : bool
            Drop items in the user's training history (or given ``history``).
        items : ids, optional
            Candidate whitelist: only these items may be recommended.
        history : DataFrame, mapping or sequence, optional
            Recommend for users from their history alone, without retraining: a
            DataFrame with ``user``, ``item`` (and optional ``rating``) columns, a mapping
            ``user -> [items]`` or ``user -> {item: rating}``, or one user's item list.
        unknown : {"error", "skip", "fallback"}
            Users outside the vocabulary: raise, drop, or answer with ``fallback_``.
        unknown_items : {"error", "ignore"}
            History or whitelist items outside the vocabulary: raise or drop.
        batch_size : int, optional
            Queries scored at once; default keeps the dense score block near 128 MiB.
        progress : callable(done, total), optional
        """
        self._check_fitted()
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ConfigError(f"k must be a positive integer, got {k!r}")
        allowed = self._allowed_mask(items, unknown_items)
        if history is not None:
            labels, hist = self._history_matrix(history, unknown_items)
            idx, scores = self._rank(hist, None, k, exclude_seen, allowed, batch_size, progress)
            return self._frame(labels, idx, scores)
        if users is None:
            query_ids = self.user_index_.ids
            rows = np.arange(len(query_ids))
        else:
            query_ids = _label_array(_as_list(users))
            rows = self.user_index_.to_index(query_ids, unknown="ignore")
        frames = []
        if (rows < 0).any():
            frames.append(self._recommend_unknown(query_ids, rows, k, exclude_seen, items,
                                                  unknown))
        known = rows >= 0
        hist = self.train_matrix_[rows[known]]
        idx, scores = self._rank(hist, rows[known], k, exclude_seen, allowed, batch_size,
                                 progress)
        frames.insert(0, self._frame(query_ids[known], idx, scores))
        if len(frames) == 1:
            return frames[0]
        return _order_like(pd.concat(frames, ignore_index=True), list(query_ids))

    def _recommend_unknown(self, query_ids, rows, k, exclude_seen, items, unknown
                           ) -> pd.DataFrame:
        missing = query_ids[rows < 0]
        if unknown == "error":
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise UnknownIdError(f"unknown user id {_plain(missing[0])!r}{more}; pass history= "
                                 f"for new users, or unknown='skip' / 'fallback'")
        if unknown == "skip":
            return self._frame(missing[:0], np.empty((0, k), np.int32),
                               np.empty((0, k), np.float32))
        if unknown != "fallback":
            raise ConfigError(f"unknown must be 'error', 'skip' or 'fallback', not {unknown!r}")
        fallback = getattr(self, "fallback_", None)
        if fallback is None:
            raise ConfigError("unknown='fallback' needs a model fitted with fit(..., fallback=)")
        empty: dict[Any, list[Any]] = {user: [] for user in missing}
        return fallback.recommend(k=k, exclude_seen=exclude_seen, items=items,
                                        history=empty)

    def top_items(self, users: np.ndarray | None = None, k: int = 10, *,
                  histories: sp.csr_matrix | None = None, exclude_seen: bool = True,
                  allowed: np.ndarray | None = None, batch_size: int | None = None,
                  progress: Callable[[int, int], None] | None = None,
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Index-level top-``k`` for hot paths (evaluation, serving): no ids, no DataFrame.

        Parameters
        ----------
        users : ndarray of int, optional
            Known users' indices; their training rows are their histories.
        histories : csr_matrix (n, n_items), optional
            Queries given by history alone (new users); exclusive with ``users``.
        allowed : ndarray of bool (n_items,), optional
            Candidate whitelist.

        Returns
        -------
        (indices, scores) : int32 and float32 arrays of shape (n, min(k, n_items)),
            best first, ``-1`` / ``-inf`` padding.
        """
        self._check_fitted()
        if (users is None) == (histories is None):
            raise ConfigError("top_items needs exactly one of users= or histories=")
        if users is not None:
            users = np.asarray(users, dtype=np.int64)
            histories = self.train_matrix_[users]
        return self._rank(histories, users, k, exclude_seen, allowed, batch_size, progress)

    def score(self, users: np.ndarray | None = None,
              histories: sp.csr_matrix | None = None) -> np.ndarray:
        """Dense float32 scores (n, n_items) for one batch of known users or histories.

        The caller bounds the batch; memory is O(n * n_items).
        """
        self._check_fitted()
        if (users is None) == (histories is None):
            raise ConfigError("score needs exactly one of users= or histories=")
        if users is not None:
            users = np.asarray(users, dtype=np.int64)
            histories = self.train_matrix_[users]
        return self._score(histories, users)

    def _rank(self, histories, users, k, exclude_seen, allowed, batch_size, progress):
        """Score in bounded batches and keep the top ``k`` of each row."""
        n, n_items = histories.shape[0], len(self.item_index_)
        batch = batch_size or max(1, BATCH_BYTES // (4 * max(n_items, 1)))
        width = min(k, n_items)
        out_idx = np.full((n, width), -1, np.int32)
        out_scores = np.full((n, width), -np.inf, np.float32)
        for start in range(0, n, batch):
            stop = min(n, start + batch)
            hist = histories[start:stop]
            scores = self._score(hist, None if users is None else users[start:stop])
            exclude = hist if exclude_seen else None
            out_idx[start:stop], out_scores[start:stop] = topk(scores, k, exclude, allowed)
            if progress is not None:
                progress(stop, n)
        return out_idx, out_scores

    def _frame(self, labels: np.ndarray, idx: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
        """Long DataFrame from (n, k) index/score arrays; padding (-1) is dropped."""
        k = idx.shape[1] if idx.ndim == 2 else 0
        valid = (idx >= 0).ravel()
        flat_idx = idx.ravel()[valid]
        return pd.DataFrame({
            "user": np.repeat(labels, k)[valid],
            "item": self.item_index_.to_ids(flat_idx),
            "score": scores.ravel()[valid],
            "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(labels))[valid],
        })

    def _allowed_mask(self, items, unknown_items) -> np.ndarray | None:
        if items is None:
            return None
        idx = self.item_index_.to_index(_as_list(items), unknown=_id_policy(unknown_items))
        mask = np.zeros(len(self.item_index_), dtype=bool)
        mask[idx[idx >= 0]] = True
        return mask

    def _history_matrix(self, history: HistoryInput, unknown_items) -> tuple[np.ndarray,
                                                                              sp.csr_matrix]:
        """Queries' labels and their histories as a CSR over this model's items."""
        labels, rows, items, values = _history_triples(history)
        idx = self.item_index_.to_index(items, unknown=_id_policy(unknown_items))
        keep = idx >= 0
        mat = sp.csr_matrix((values[keep], (rows[keep], idx[keep])),
                            shape=(len(labels), len(self.item_index_)), dtype=np.float32)
        mat.sum_duplicates()
        return _label_array(labels), mat

    # ------------------------------------------------------------------ other queries
    def predict(self, users: Iterable[Any], items: Iterable[Any],
                unknown: Literal["error", "nan"] = "error",
                times: Iterable[Any] | None = None) -> np.ndarray:
        """Predicted ratings for (user, item) pairs; NaN for unknown ids with ``"nan"``.

        ``times`` (epoch seconds, one per pair) matter only to models with
        ``uses_time = True`` (timeSVD++); the others ignore them. Without them a time-aware
        model predicts as of each user's latest training rating.
        """
        self._check_fitted()
        if not self.predicts_ratings:
            raise NotSupportedError(f"{type(self).__name__} does not predict ratings")
        users, items = _as_list(users), _as_list(items)
        if len(users) != len(items):
            raise DataError(f"predict got {len(users)} users but {len(items)} items")
        when = None if times is None else _as_times(times, len(users))
        policy = _id_policy("ignore" if unknown == "nan" else "error")
        u = self.user_index_.to_index(users, unknown=policy)
        i = self.item_index_.to_index(items, unknown=policy)
        out = np.full(len(users), np.nan, dtype=np.float64)
        ok = (u >= 0) & (i >= 0)
        if ok.any():
            out[ok] = self._predict_at(u[ok], i[ok], None if when is None else when[ok])
        return out

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        raise NotSupportedError(f"{type(self).__name__} does not predict ratings")

    def _predict_at(self, users: np.ndarray, items: np.ndarray,
                    times: np.ndarray | None) -> np.ndarray:
        """Predictions at ``times`` (int64 epoch seconds or None); models without
        ``uses_time`` ignore them."""
        return self._predict(users, items)

    def similar_items(self, items: Iterable[Any], k: int = 10) -> pd.DataFrame:
        """The ``k`` items most similar to each given item (item, similar_item, score, rank)."""
        self._check_fitted()
        labels = _as_list(items)
        idx = self.item_index_.to_index(labels)
        scores = self._similar(idx)
        exclude = sp.csr_matrix((np.ones(len(idx), np.float32), (np.arange(len(idx)), idx)),
                                shape=scores.shape)
        top, top_scores = topk(scores, k, exclude)
        frame = self._frame(_label_array(labels), top, top_scores)
        return frame.rename(columns={"user": "item", "item": "similar_item"})

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Item-to-item scores; default: cosine of :meth:`item_vectors`."""
        vectors = self.item_vectors()
        if vectors is None:
            raise NotSupportedError(f"{type(self).__name__} has no notion of item similarity")
        norms = np.linalg.norm(vectors, axis=1)
        norms[norms == 0] = 1.0
        unit = vectors / norms[:, None]
        return (unit[items] @ unit.T).astype(np.float32)

    def explain(self, item: Any, user: Any = None, *, history: HistoryInput | None = None,
                n: int = 5) -> pd.DataFrame:
        """Why ``item`` scores as it does for ``user`` (or for a ``history``).

        Returns a DataFrame (source, id, contribution): the ``n`` history items, neighbour
        users or features that contributed most, as the model's ``_explain`` reports them.
        """
        self._check_fitted()
        if (user is None) == (history is None):
            raise ConfigError("explain needs exactly one of user= or history=")
        item_idx = int(self.item_index_.to_index([item])[0])
        if user is not None:
            user_idx = self.user_index_.to_index([user])
            hist, users = self.train_matrix_[user_idx], user_idx
        else:
            hist, users = self._history_matrix(history, "error")[1][:1], None
        source, keys, weights = self._explain(hist, users, item_idx, n)
        order = np.argsort(-np.abs(np.asarray(weights, dtype=np.float64)), kind="stable")[:n]
        keys = np.asarray(keys)[order]
        vocab = {"item": self.item_index_, "user": self.user_index_}.get(source)
        return pd.DataFrame({"source": source,
                             "id": vocab.to_ids(keys) if vocab is not None else keys,
                             "contribution": np.asarray(weights, dtype=np.float64)[order]})

    def _explain(self, histories: sp.csr_matrix, users: np.ndarray | None, item: int,
                 n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """(source, keys, contributions) behind ``item``'s score for one query.

        ``source`` is "item" or "user" (keys are indices, mapped to ids by the caller) or
        "feature" (keys are feature names).
        """
        raise NotSupportedError(f"{type(self).__name__} cannot explain its scores")

    def item_vectors(self) -> np.ndarray | None:
        """Dense item embeddings (n_items, d) where the model has them."""
        return None

    # ------------------------------------------------------------------ persistence
    def save(self, path: str, overwrite: bool = False) -> None:
        """Write the model to a directory (manifest.json + arrays.npz, no pickle)."""
        from recoforge.artifacts import save_model

        self._check_fitted()
        save_model(self, path, overwrite=overwrite)


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def _as_list(values: Iterable[Any]) -> list[Any]:
    if isinstance(values, (str, bytes, int, np.integer)):
        return [values]
    if isinstance(values, (pd.Series, pd.Index, np.ndarray)):
        return list(values.tolist())
    return list(values)


def _as_times(times: Iterable[Any], n: int) -> np.ndarray:
    """Prediction times (numbers, datetimes or ISO strings) as int64 epoch seconds."""
    column = pd.Series(_as_list(times))
    if len(column) != n:
        raise DataError(f"predict got {n} pairs but {len(column)} times")
    return to_epoch_seconds(column, "times", None)


def _id_policy(unknown_items: str) -> Literal["error", "ignore"]:
    if unknown_items not in ("error", "ignore"):
        raise ConfigError(f"unknown_items must be 'error' or 'ignore', not {unknown_items!r}")
    return "error" if unknown_items == "error" else "ignore"


def _history_triples(history: HistoryInput) -> tuple[list, np.ndarray, list, np.ndarray]:
    """Query labels, and (query row, item id, value) triples, from a history input."""
    if isinstance(history, pd.DataFrame):
        missing = {"user", "item"} - set(history.columns)
        if missing:
            raise DataError(f"history table needs columns user and item; missing {missing}")
        col = next((c for c in ("rating", "value") if c in history.columns), None)
        values = history[col].to_numpy(np.float64) if col else np.ones(len(history))
        rows, uniques = pd.factorize(history["user"].astype(object), sort=False)
        labels, items = list(uniques), history["item"].tolist()
    elif isinstance(history, Mapping):
        if not history:
            raise DataError("history is empty")
        labels, row_list, items, vals = list(history), [], [], []
        for row, entries in enumerate(history.values()):
            pairs = (entries.items() if isinstance(entries, Mapping)
                     else ((item, 1.0) for item in _as_list(entries)))
            for item, value in pairs:
                row_list.append(row)
                items.append(item)
                vals.append(value)
        rows, values = np.asarray(row_list, dtype=np.int64), np.asarray(vals, dtype=np.float64)
    else:
        items = _as_list(history)
        labels, rows, values = [None], np.zeros(len(items), np.int64), np.ones(len(items))
    if not np.all(np.isfinite(values)):
        raise DataError("history ratings must be finite numbers")
    return labels, rows, items, values


def _label_array(labels: Iterable[Any]) -> np.ndarray:
    """Query labels as a typed array (int or str) when homogeneous, else object."""
    arr = np.asarray(list(labels))
    return arr if arr.dtype.kind in "iuU" else np.asarray(list(labels), dtype=object)


def _order_like(frame: pd.DataFrame, labels: list[Any]) -> pd.DataFrame:
    """Rows grouped by user in the order the users were requested."""
    position = {label: i for i, label in enumerate(labels)}
    key = frame["user"].map(position)
    return frame.assign(_o=key).sort_values(["_o", "rank"], kind="stable") \
        .drop(columns="_o").reset_index(drop=True)
