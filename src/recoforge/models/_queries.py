"""Turning a recommend call's users and events into Query batches over a model's items.

The rules (see :meth:`Recommender.recommend`): known users without new events form a
stored Query (their trained parameters are used); users with given events form a history
Query (merged with a known user's stored history); unknown users without events are
'missing' and follow the unknown-user policy. Memory: O(events of the request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.errors import ConfigError, DataError, NotSupportedError, UnknownIdError
from recoforge.models import _features, _scoring
from recoforge.models import _requests as req
from recoforge.models.query import Query, merge_histories
from recoforge.ranking.topk import topk

if TYPE_CHECKING:
    from recoforge.models.base import Recommender


def build_queries(model: Recommender, users, history, unknown_items
                   ) -> tuple[np.ndarray, list[tuple[np.ndarray, Query]], np.ndarray]:
    """(labels, [(row positions, Query)], positions of users with nothing to score).

    Known users without new events form a stored Query (their trained parameters are
    used); users with given events form a history Query (merged with the stored
    history of known users); unknown users without events are 'missing'.
    """
    if users is None and history is None:
        rows = np.arange(len(model.user_index_), dtype=np.int64)
        return model.user_index_.ids, [(rows, model.known_query(rows))], rows[:0]
    if history is None:
        labels = req.label_array(req.as_list(users))
        rows = model.user_index_.to_index(labels, unknown="ignore")
        known = np.flatnonzero(rows >= 0)
        parts = [(known, model.known_query(rows[known]))] if len(known) else []
        return labels, parts, np.flatnonzero(rows < 0)
    hist_labels, given = history_matrix(model, history, unknown_items)
    if users is None:
        users_idx = np.full(len(hist_labels), -1, np.int64)
        labels = hist_labels
    else:
        labels, given = align_given(model, users, hist_labels, given)
        users_idx = model.user_index_.to_index(labels, unknown="ignore")
    fresh = given.getnnz(axis=1) > 0
    stored_rows = np.flatnonzero(~fresh & (users_idx >= 0))
    fresh_rows = np.flatnonzero(fresh)
    parts = [(stored_rows, model.known_query(users_idx[stored_rows]))] \
        if len(stored_rows) else []
    if len(fresh_rows):
        sub, ids = given[fresh_rows], users_idx[fresh_rows]
        known = np.flatnonzero(ids >= 0)
        stored = scatter_rows(model.train_matrix_[ids[known]], known, len(fresh_rows)) \
            if len(known) else sp.csr_matrix(sub.shape, dtype=np.float32)
        parts.append((fresh_rows, Query.from_history(merge_histories(stored, sub), ids)))
    if not model.needs_history and (~fresh & (users_idx < 0)).any():
        anonymous = np.flatnonzero(~fresh & (users_idx < 0))
        parts.append((anonymous, Query.from_history(given[anonymous])))
        return labels, parts, anonymous[:0]
    return labels, parts, np.flatnonzero(~fresh & (users_idx < 0))


def align_given(model: Recommender, users, hist_labels, given) -> tuple[np.ndarray, sp.csr_matrix]:
    """Requested users' labels and their given events, one row per requested user."""
    labels = req.label_array(req.as_list(users))
    if len(hist_labels) == 1 and hist_labels[0] is None:
        if len(labels) != 1:
            raise DataError("one item list was given as history for several users; "
                            "pass a mapping user -> items")
        hist_labels = labels
    position = {label: i for i, label in enumerate(labels.tolist())}
    if len(position) != len(labels):
        raise DataError("users are repeated in the request")
    stray = [h for h in hist_labels.tolist() if h not in position]
    if stray:
        raise DataError(f"history given for {req.plain(stray[0])!r}, which is not among "
                        f"the requested users")
    order = np.array([position[h] for h in hist_labels.tolist()], dtype=np.int64)
    return labels, scatter_rows(given, order, len(labels))


def allowed_mask(model: Recommender, items, unknown_items) -> np.ndarray | None:
    policy = req.id_policy(unknown_items)
    if items is None:
        return None
    idx = model.item_index_.to_index(req.as_list(items), unknown=policy)
    mask = np.zeros(len(model.item_index_), dtype=bool)
    mask[idx[idx >= 0]] = True
    return mask


def history_matrix(model: Recommender, history: req.HistoryInput, unknown_items
                    ) -> tuple[np.ndarray, sp.csr_matrix]:
    """Queries' labels and their histories as a CSR over this model's items."""
    labels, rows, items, values = req.history_triples(history)
    idx = model.item_index_.to_index(items, unknown=req.id_policy(unknown_items))
    keep = idx >= 0
    mat = sp.csr_matrix((values[keep], (rows[keep], idx[keep])),
                        shape=(len(labels), len(model.item_index_)), dtype=np.float32)
    mat.sum_duplicates()
    return req.label_array(labels), mat


def answer_missing(model: Recommender, missing, k, exclude_seen, items, unknown) -> pd.DataFrame:
    """Users with nothing to score: raise, skip, or the fallback model's lists."""
    if unknown == "error":
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise UnknownIdError(f"unknown user id {req.plain(missing[0])!r}{more} with no "
                             f"known history; pass history= for new users, or "
                             f"unknown='skip' / 'fallback'")
    if unknown == "skip":
        return result_frame(model, missing[:0], np.empty((0, k), np.int32),
                           np.empty((0, k), np.float32))
    fallback = getattr(model, "fallback_", None)
    if fallback is None:
        raise ConfigError("unknown='fallback' needs a model fitted with fit(..., fallback=)")
    empty: dict[Any, list[Any]] = {user: [] for user in missing.tolist()}
    query = _features.complete(fallback, Query.from_history(
        sp.csr_matrix((len(empty), len(fallback.item_index_)), dtype=np.float32)))
    allowed = allowed_mask(fallback, items, "ignore")
    idx, scores = fallback._rank(query, k, exclude_seen, allowed, None, None)
    return result_frame(fallback, req.label_array(list(empty)), idx, scores)


def index_query(model: Recommender, users: Any, histories: Any) -> Query:
    """The Query of an index-level call: known users' indices or history rows."""
    model._check_fitted()
    if (users is None) == (histories is None):
        raise ConfigError("give exactly one of users= or histories=")
    if users is not None:
        return model.known_query(users)
    return Query.from_history(histories)


def explain_query(model: Recommender, user: Any, history: Any) -> Query:
    """The one-row Query an explanation is for: a known user or one history."""
    if (user is None) == (history is None):
        raise ConfigError("explain needs exactly one of user= or history=")
    if user is not None and not np.isscalar(user):
        raise ConfigError(f"explain takes one user id, got {user!r}")
    if user is not None:
        return model.known_query(model.user_index_.to_index([user]))
    labels, hist = history_matrix(model, history, "error")
    if len(labels) != 1:
        raise ConfigError("explain takes the history of one user")
    return Query.from_history(hist)


def contributions_frame(model: Recommender, source: str, keys: Any, weights: Any,
                        n: int) -> pd.DataFrame:
    """(source, id, contribution) of the ``n`` largest contributions by magnitude, ids
    mapped through the model's vocabularies ("item" / "user" sources)."""
    weights = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-np.abs(weights), kind="stable")[:n]
    keys = np.asarray(keys)[order]
    vocab = {"item": model.item_index_, "user": model.user_index_}.get(source)
    return pd.DataFrame({"source": source,
                         "id": vocab.to_ids(keys) if vocab is not None else keys,
                         "contribution": weights[order]})


def scatter_rows(rows: sp.csr_matrix, positions: np.ndarray, n: int) -> sp.csr_matrix:
    """An (n, m) CSR whose row ``positions[j]`` is ``rows[j]``; other rows empty."""
    rows = sp.csr_matrix(rows)
    counts = np.zeros(n, dtype=np.int64)
    counts[positions] = np.diff(rows.indptr)
    order = np.argsort(positions, kind="stable")
    sorted_rows = rows[order]
    indptr = np.concatenate([[0], np.cumsum(counts)])
    return sp.csr_matrix((sorted_rows.data, sorted_rows.indices, indptr),
                         shape=(n, rows.shape[1]))


def result_frame(model: Recommender, labels: np.ndarray, idx: np.ndarray,
                 scores: np.ndarray) -> pd.DataFrame:
    """Long DataFrame (user, item, score, rank) from (n, k) index/score arrays; padding
    (-1) is dropped."""
    k = idx.shape[1] if idx.ndim == 2 else 0
    valid = (idx >= 0).ravel()
    flat_idx = idx.ravel()[valid]
    return pd.DataFrame({
        "user": np.repeat(labels, k)[valid],
        "item": model.item_index_.to_ids(flat_idx),
        "score": scores.ravel()[valid],
        "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(labels))[valid],
    })


def featured_index_query(model: Recommender, users: Any, histories: Any,
                         user_features: _features.UserFeatureInput | None) -> Query:
    """:func:`index_query` with every row's user features filled (given rows, else stored,
    else zeros)."""
    query = index_query(model, users, histories)
    if user_features is not None:
        return _features.complete(
            model, query, given=_features.given_rows(model, user_features, len(query)))
    return _features.complete(model, query)


def predict_pairs(model: Recommender, users: Any, items: Any, unknown: str,
                  times: Any) -> np.ndarray:
    """:meth:`Recommender.predict`: ids to indices, unknown pairs NaN (``unknown="nan"``)."""
    model._check_fitted()
    if not model.predicts_ratings:
        raise NotSupportedError(f"{type(model).__name__} does not predict ratings")
    if unknown not in ("error", "nan"):
        raise ConfigError(f"unknown must be 'error' or 'nan', not {unknown!r}")
    user_ids, item_ids = req.as_id_array(users), req.as_id_array(items)
    if len(user_ids) != len(item_ids):
        raise DataError(f"predict got {len(user_ids)} users but {len(item_ids)} items")
    when = None if times is None else req.as_times(times, len(user_ids))
    policy = req.id_policy("ignore" if unknown == "nan" else "error")
    u = model.user_index_.to_index(user_ids, unknown=policy)
    i = model.item_index_.to_index(item_ids, unknown=policy)
    out = np.full(len(user_ids), np.nan, dtype=np.float64)
    ok = (u >= 0) & (i >= 0)
    if ok.all():
        out[:] = model._predict_at(u, i, when)
    elif ok.any():
        out[ok] = model._predict_at(u[ok], i[ok], None if when is None else when[ok])
    return out


def similar_frame(model: Recommender, items: Any, k: int, by_title: bool,
                  titles: bool | None) -> pd.DataFrame:
    """:meth:`Recommender.similar_items`: the ``k`` most similar items of each item,
    itself excluded."""
    model._check_fitted()
    k = req.check_k(k)
    labels = model.items_by_title(items) if by_title else req.as_list(items)
    idx = model.item_index_.to_index(labels)
    scores = _scoring.check_finite(model, model._similar(idx))
    exclude = sp.csr_matrix((np.ones(len(idx), np.float32), (np.arange(len(idx)), idx)),
                            shape=scores.shape)
    top, top_scores = topk(scores, k, exclude)
    frame = result_frame(model, req.label_array(labels), top, top_scores)
    frame = frame.rename(columns={"user": "item", "item": "similar_item"})
    return model._titled(frame, by_title if titles is None else titles, *frame.columns[:2])
