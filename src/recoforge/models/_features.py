"""User features in requests, and items added from their attributes after training.

Shared by :mod:`recoforge.models.base` for feature-aware models:

- **User features** (models with ``uses_user_features``): ``fit`` keeps the training
  data's encoder and rows as ``user_encoder_`` / ``user_feature_matrix_``; every Query
  the base class builds then carries ``user_features`` (CSR, n x n_user_features): rows
  given in the request (raw attributes encoded with ``user_encoder_``), else the stored
  row of a known user, else an all-zero row (a new user described by nothing). A model
  fitted without user features sees an (n, 0) matrix, never None.
- **New items** (models with ``scores_new_items``): :func:`add_items` encodes item
  attributes with the model's ``item_encoder_``, lets the model extend its item-side
  state (``_add_items(features)``), then extends the item vocabulary, the history source
  (empty columns), the titles, and drops a stale retrieval index.

Memory: O(nnz) of the encoded rows; never a dense user or item block.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.data.features import FeatureEncoder
from recoforge.data.history import InMemoryHistory
from recoforge.errors import ConfigError, DataError, NotSupportedError
from recoforge.models import _requests as req
from recoforge.models.query import Query

if TYPE_CHECKING:
    from recoforge.models.base import Recommender

#: what a request may pass as user features (see :func:`given_rows`)
UserFeatureInput: TypeAlias = pd.DataFrame | sp.spmatrix | np.ndarray
_log = logging.getLogger(__name__)


# ---------------------------------------------------------------------- user features
def learn_user_features(model: Recommender, data: Dataset) -> None:
    """Keep ``data``'s user encoder and rows on a model that uses user features."""
    if not model.uses_user_features:
        return
    features = data.user_features
    if features is None:
        if model.needs_user_features:
            raise ConfigError(f"{model.name} needs user features and dataset {data.name!r} "
                              f"has none: attach them (fit --user-features FILE, or "
                              f"Dataset(user_features=build_features(...)))")
        model.user_encoder_ = None
        model.user_feature_matrix_ = sp.csr_matrix((len(data.user_index), 0),
                                                   dtype=np.float32)
        return
    matrix = sp.csr_matrix(features.matrix, dtype=np.float32)
    if not np.isfinite(matrix.data).all():
        row = int(np.searchsorted(matrix.indptr, np.flatnonzero(~np.isfinite(matrix.data))[0],
                                  side="right") - 1)
        raise DataError(f"user features of user {data.user_index.ids[row]!r} are not finite")
    model.user_encoder_ = features.encoder
    model.user_feature_matrix_ = matrix


def n_user_features(model: Recommender) -> int:
    stored = getattr(model, "user_feature_matrix_", None)
    return 0 if stored is None else int(stored.shape[1])


def stored_rows(model: Recommender, users: np.ndarray) -> sp.csr_matrix:
    """Stored feature rows of user indices; ``-1`` (new users) gives all-zero rows."""
    users = np.asarray(users, dtype=np.int64)
    stored = getattr(model, "user_feature_matrix_", None)
    if stored is None:
        return sp.csr_matrix((len(users), 0), dtype=np.float32)
    known = np.flatnonzero(users >= 0)
    picker = sp.csr_matrix((np.ones(len(known), np.float32), (known, users[known])),
                           shape=(len(users), stored.shape[0]))
    return sp.csr_matrix(picker @ stored, dtype=np.float32)


def encode_users(model: Recommender, frame: pd.DataFrame) -> sp.csr_matrix:
    """Raw user attributes (one row per user) encoded with the model's ``user_encoder_``."""
    if not model.uses_user_features:
        raise NotSupportedError(f"{model.name} does not use user features")
    encoder = getattr(model, "user_encoder_", None)
    if not isinstance(encoder, FeatureEncoder):
        raise NotSupportedError(f"this {model.name} model was fitted without a user "
                                f"FeatureEncoder (no user features, or a hand-built matrix), "
                                f"so it cannot encode user attributes")
    rows = encoder.transform(frame)
    if not np.isfinite(rows.data).all():
        raise DataError("the given user features encode to non-finite values")
    return rows


def given_rows(model: Recommender, user_features: UserFeatureInput, n: int) -> sp.csr_matrix:
    """Feature rows given to an index-level call (one per query row, in order): raw
    attributes in a DataFrame, or an already encoded (n, n_user_features) matrix."""
    if isinstance(user_features, pd.DataFrame):
        rows = encode_users(model, user_features)
    elif sp.issparse(user_features) or isinstance(user_features, np.ndarray):
        rows = sp.csr_matrix(user_features, dtype=np.float32)
        if rows.shape[1] != n_user_features(model):
            raise DataError(f"user_features have {rows.shape[1]} columns; the model's user "
                            f"features have {n_user_features(model)}")
    else:
        raise DataError(f"user_features must be a DataFrame or a matrix, got "
                        f"{type(user_features).__name__}")
    if rows.shape[0] != n:
        raise DataError(f"user_features have {rows.shape[0]} rows for {n} queries")
    return rows


def by_label(model: Recommender, user_features: pd.DataFrame | None
             ) -> tuple[dict[Any, int], sp.csr_matrix] | None:
    """{user label: row} and the encoded rows of a ``recommend`` call's feature table
    (indexed by user id), or None."""
    if user_features is None:
        return None
    if not isinstance(user_features, pd.DataFrame):
        raise DataError(f"user_features must be a DataFrame indexed by user id, got "
                        f"{type(user_features).__name__}")
    if not user_features.index.is_unique:
        dup = user_features.index[user_features.index.duplicated()][0]
        raise DataError(f"user_features has more than one row for user {req.plain(dup)!r}")
    labels = req.label_array(list(user_features.index)).tolist()
    return {label: i for i, label in enumerate(labels)}, encode_users(model, user_features)


def check_labels(given: tuple[dict[Any, int], sp.csr_matrix] | None,
                 labels: np.ndarray) -> None:
    """Every given feature row must belong to a requested user."""
    if given is None:
        return
    wanted = set(labels.tolist())
    stray = [label for label in given[0] if label not in wanted]
    if stray:
        raise DataError(f"user_features has a row for {stray[0]!r}, which is not among the "
                        f"requested users")


def complete(model: Recommender, query: Query, labels: np.ndarray | None = None,
             given: tuple[dict[Any, int], sp.csr_matrix] | sp.csr_matrix | None = None
             ) -> Query:
    """``query`` with ``user_features`` filled (models with ``uses_user_features``):
    given rows (by label, or one per row), else stored rows, else zeros."""
    if not model.uses_user_features:
        return query
    if isinstance(given, sp.csr_matrix):
        return replace_features(query, given)
    rows = stored_rows(model, query.users) if query.user_features is None \
        else sp.csr_matrix(query.user_features, dtype=np.float32)
    if given is not None and labels is not None:
        position, encoded = given
        hits = [(j, position[label]) for j, label in enumerate(labels.tolist())
                if label in position]
        if hits:
            at, src = (np.asarray(x, dtype=np.int64) for x in zip(*hits, strict=True))
            keep = np.ones(len(query), dtype=np.float32)
            keep[at] = 0.0
            picker = sp.csr_matrix((np.ones(len(at), np.float32), (at, src)),
                                   shape=(len(query), encoded.shape[0]))
            rows = sp.csr_matrix(sp.diags(keep) @ rows + picker @ encoded, dtype=np.float32)
    return replace_features(query, rows)


def replace_features(query: Query, rows: sp.csr_matrix) -> Query:
    return Query(users=query.users, history=query.history, stored=query.stored,
                 times=query.times, user_features=rows, context=query.context)


def query_rows(model: Recommender, query: Query) -> sp.csr_matrix:
    """The user feature rows a model scores ``query`` with (CSR, n x n_user_features):
    the query's own when set, else stored rows / zeros (queries built outside the base
    class, e.g. by an evaluation protocol)."""
    if query.user_features is not None:
        return sp.csr_matrix(query.user_features, dtype=np.float32)
    return stored_rows(model, query.users)


def featured_new_users(model: Recommender, labels: np.ndarray, missing: np.ndarray,
                       given: tuple[dict[Any, int], sp.csr_matrix] | None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(missing users described by given features, the rest): a feature-aware model
    scores the first from their features alone (an empty history)."""
    if given is None or not model.uses_user_features or not len(missing):
        return missing[:0], missing
    has = np.array([label in given[0] for label in labels[missing].tolist()], dtype=bool)
    return missing[has], missing[~has]


# ---------------------------------------------------------------------- new items
def add_items(model: Recommender, info: pd.DataFrame) -> None:
    """Add items described by attributes (``info`` indexed by new item ids); see
    :meth:`Recommender.add_items`."""
    model._check_fitted()
    if not model.scores_new_items:
        raise NotSupportedError(f"{model.name} cannot add items from their attributes "
                                f"(scores_new_items is False)")
    encoder = getattr(model, "item_encoder_", None)
    if not isinstance(encoder, FeatureEncoder):
        raise NotSupportedError(f"this {model.name} model's item features were not built by "
                                f"a FeatureEncoder, so it cannot encode new items")
    if not isinstance(info, pd.DataFrame) or len(info) == 0:
        raise DataError("add_items takes a non-empty DataFrame of item attributes indexed "
                        "by the new item ids")
    if not info.index.is_unique:
        dup = info.index[info.index.duplicated()][0]
        raise DataError(f"add_items got more than one row for item {req.plain(dup)!r}")
    ids = list(info.index)
    old = model.item_index_
    present = old.to_index(old.parse_external(ids), unknown="ignore") >= 0
    if present.any():
        raise DataError(f"item {req.plain(ids[int(np.flatnonzero(present)[0])])!r} is "
                        f"already in the catalogue; add_items takes new items only")
    index = old.extend(ids)
    features = encoder.transform(info)
    if not np.isfinite(features.data).all():
        raise DataError("the new items' attributes encode to non-finite values")
    model._add_items(features)
    model.item_index_ = index
    _extend_catalogue(model, info, len(index))


def _extend_catalogue(model: Recommender, info: pd.DataFrame, n_items: int) -> None:
    """History columns, titles and the retrieval index after new items were added."""
    history = model.history_source
    if history is not None:
        m = history.matrix
        model._history = InMemoryHistory(sp.csr_matrix((m.data, m.indices, m.indptr),
                                                       shape=(m.shape[0], n_items)))
    titles = getattr(model, "item_titles_", None)
    if titles is not None:
        column = next((c for c in ("title", "name") if c in info.columns), None)
        new = (info[column].astype(str).to_numpy() if column is not None
               else np.asarray([str(i) for i in info.index]))
        model.item_titles_ = np.concatenate([np.asarray(titles).astype(str), new.astype(str)])
    if getattr(model, "vector_index_", None) is not None:
        _log.warning("%s: the attached retrieval index predates the added items and was "
                     "dropped; attach a new one (VectorIndex.for_model)", model.name)
        del model.vector_index_


def with_user_features(model: Recommender, labels: np.ndarray, parts: list, missing: Any,
                       given: Any) -> tuple[list, Any]:
    """Query parts of :meth:`Recommender.recommend` with user features filled in; new
    users described by ``given`` features (and no history) become a part of their own
    rather than missing. Returns (parts, still missing rows)."""
    check_labels(given, labels)
    described, missing = featured_new_users(model, labels, missing, given)
    if len(described):
        empty = sp.csr_matrix((len(described), len(model.item_index_)), dtype=np.float32)
        parts.append((described, Query.from_history(empty)))
    return [(rows, complete(model, q, labels[rows], given)) for rows, q in parts], missing
