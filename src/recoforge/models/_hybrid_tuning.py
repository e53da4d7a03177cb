"""How a hybrid learns its blend: a validation split carved from its own training data.

:func:`tune` holds out ``validation_fraction`` of the events of up to
``validation_users`` sampled users and, with ``cold_items``, every event of
``cold_fraction`` of the items (validation cold items); fits the components on the rest;
scores each validation user's candidates (the union of every component's top
``n_candidates`` items, validation cold items left out) and, for cold items, every
validation cold item for the users who had events on them; then learns per user segment
the weights of the warm blend, and one weight vector for items without training events
(grid search on NDCG@10, or logistic stacking). The test split is never seen.

Memory: one (n_val, c) float32 block per component and the inner fit of the components.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.errors import DataError
from recoforge.models import _features
from recoforge.models import _hybrid_parts as hp
from recoforge.models.query import Query

if TYPE_CHECKING:
    from recoforge.models.base import Recommender
    from recoforge.models.hybrid import Hybrid

MIN_SEGMENT_USERS = 20  # fewer validation users: the segment takes the global weights
MIN_COLD_ITEMS = 10  # cold-item weights need at least this many validation cold items


def _entries(matrix: sp.csr_matrix, mask: np.ndarray) -> sp.csr_matrix:
    coo = matrix.tocoo()
    return sp.csr_matrix((matrix.data[mask], (coo.row[mask], coo.col[mask])),
                         shape=matrix.shape)


def _event_mask(data: Dataset, keep: sp.csr_matrix) -> np.ndarray:
    """Mask over ``data.interactions`` of the events kept for the inner fit."""
    inter = data.interactions
    keys = inter.users.astype(np.int64) * data.n_items + inter.items
    coo = keep.tocoo()
    return np.isin(keys, coo.row.astype(np.int64) * data.n_items + coo.col)


def _cold_items(matrix: sp.csr_matrix, fraction: float, rng: np.random.Generator
                ) -> np.ndarray:
    """Mask of the validation cold items: a share of the items with events."""
    counts = np.bincount(matrix.indices, minlength=matrix.shape[1])
    eligible = np.flatnonzero(counts > 0)
    cold = np.zeros(matrix.shape[1], dtype=bool)
    n_cold = int(round(fraction * len(eligible)))
    if n_cold >= MIN_COLD_ITEMS and n_cold < len(eligible):
        cold[rng.choice(eligible, size=n_cold, replace=False)] = True
    return cold


def tune(model: Hybrid, specs: list[hp.ComponentSpec], data: Dataset,
         rng: np.random.Generator) -> list[Recommender]:
    """Set ``weights_`` (and ``cold_weights_``, ``validation_scores_``) on ``model`` from
    a validation split of ``data``; returns the components fitted on its inner part."""
    config = model.config
    matrix = data.matrix()
    cold = (_cold_items(matrix, config.cold_fraction, rng) if config.cold_items
            else np.zeros(data.n_items, dtype=bool))
    on_cold = cold[matrix.indices]
    warm_part = _entries(matrix, ~on_cold)
    held, users = hp.validation_split(warm_part, config.validation_fraction,
                                      config.validation_users, rng)
    if len(users) == 0:
        raise DataError("hybrid: no user has the 2 events a validation split needs; "
                        "give fixed weights= or use more data")
    keep = _entries(warm_part, ~held)
    inner = data.subset(_event_mask(data, keep), compact_users=False)
    models = model._fit_all(specs, inner)
    for fitted in models:
        vars(fitted).pop("item_titles_", None)
    truth = _entries(warm_part, held)[users]
    cands, labels = hp.candidate_block(models, users, config.n_candidates, truth,
                                       allowed=~cold)
    query = _features.complete(model, Query.for_known(users, keep[users]))
    zs = hp.normalised_scores(models, query, cands, model.reference_items_,
                              config.normalization, data.n_items)
    segments = model._segments(keep[users])
    n_relevant = np.diff(truth.indptr)
    model.weights_ = learn_weights(model, zs, cands >= 0, labels, n_relevant, segments)
    model.validation_scores_ = report(zs, cands >= 0, labels, n_relevant,
                                      model.weights_[segments])
    if cold.any():
        _tune_cold(model, models, _entries(matrix, on_cold), keep, cold, rng)
    return models


def _tune_cold(model: Hybrid, models: list[Recommender], cold_events: sp.csr_matrix,
               keep: sp.csr_matrix, cold: np.ndarray, rng: np.random.Generator) -> None:
    """``cold_weights_``: the blend ranking validation cold items for their users."""
    config = model.config
    users = np.flatnonzero(np.diff(cold_events.indptr) > 0)
    if len(users) > config.validation_users:
        users = np.sort(rng.choice(users, size=config.validation_users, replace=False))
    items = np.flatnonzero(cold)
    cands = np.ascontiguousarray(np.broadcast_to(items, (len(users), len(items))))
    truth = cold_events[users]
    labels = np.zeros(cands.shape, dtype=bool)
    for row in range(len(users)):
        labels[row] = np.isin(items, truth.indices[truth.indptr[row]:truth.indptr[row + 1]])
    query = _features.complete(model, Query.for_known(users, keep[users]))
    zs = hp.normalised_scores(models, query, cands, model.reference_items_,
                              config.normalization, len(cold))
    valid = np.ones(cands.shape, dtype=bool)
    n_relevant = np.diff(truth.indptr)
    weights = learn_weights(model, zs, valid, labels, n_relevant,
                            np.zeros(len(users), dtype=np.int64), segmented=False)[0]
    model.cold_weights_ = weights
    model.cold_validation_scores_ = report(zs, valid, labels, n_relevant,
                                           np.tile(weights, (len(users), 1)))


def learn_weights(model: Hybrid, zs: list[np.ndarray], valid: np.ndarray, labels: np.ndarray,
                  n_relevant: np.ndarray, segments: np.ndarray,
                  segmented: bool | None = None) -> np.ndarray:
    """(segments, components) blend weights: grid search, or logistic stacking on pairs
    of one user's candidates (held-out item vs another), i.e. a ranking blend."""
    config = model.config
    rng = np.random.default_rng(config.seed)

    def learn(rows: np.ndarray) -> np.ndarray:
        sub = [z[rows] for z in zs]
        if config.mode == "stacking":
            diffs = hp.pair_differences(sub, valid[rows], labels[rows], rng)
            if len(diffs) == 0:
                return np.full(len(zs), 1.0 / len(zs))
            x = np.concatenate([diffs, -diffs])
            y = np.concatenate([np.ones(len(diffs), bool), np.zeros(len(diffs), bool)])
            return hp.fit_logistic(x, y, config.l2)[:-1]
        return hp.tune_weights(sub, valid[rows], labels[rows], n_relevant[rows],
                               config.grid_steps)[0]

    overall = learn(np.arange(len(segments)))
    if not (config.segmented if segmented is None else segmented):
        return overall[None, :]
    out = np.tile(overall, (2, 1))
    for seg in (0, 1):
        rows = np.flatnonzero(segments == seg)
        if len(rows) >= MIN_SEGMENT_USERS and labels[rows].any():
            out[seg] = learn(rows)
    return out


def report(zs: list[np.ndarray], valid: np.ndarray, labels: np.ndarray,
           n_relevant: np.ndarray, row_weights: np.ndarray) -> np.ndarray:
    """Validation NDCG@10 of each component alone, then of the blend."""
    alone = [float(hp.ndcg_at(np.where(valid, z, -np.inf), labels, n_relevant).mean())
             for z in zs]
    blend = sum(row_weights[:, m:m + 1] * z for m, z in enumerate(zs))
    tuned = float(hp.ndcg_at(np.where(valid, blend, -np.inf), labels, n_relevant).mean())
    return np.asarray(alone + [tuned], dtype=np.float64)
