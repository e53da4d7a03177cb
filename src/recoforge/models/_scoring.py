"""The scoring and top-k loop shared by every model, in bounded memory.

Three ways to rank a :class:`~recoforge.models.query.Query`, chosen by the caller:

- full catalogue: ``model._score(query)`` in row batches of about ``BATCH_BYTES`` of dense
  scores, then the batched top-k kernel with seen-item exclusion and a whitelist mask;
- candidates: ``model._score_candidates(query, candidates)`` on an (n, c) block of item
  indices (whitelists, re-ranking, sampled evaluation), never an n x n_items block;
- item blocks: for models that score only candidates (pair models), the catalogue is
  offered in column blocks and a running top-k is kept, so memory stays O(n * (k + block)).

Scores that come out NaN or +inf raise: an empty or silently truncated list is never
returned for a broken model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.errors import ConfigError, NotSupportedError, RecoforgeError
from recoforge.models.query import Query
from recoforge.ranking.topk import topk

if TYPE_CHECKING:
    from recoforge.models.base import Recommender

BATCH_BYTES = 1 << 27  # dense scores per batch: 128 MiB
Progress = Callable[[int, int], None]


class ScoringError(RecoforgeError, FloatingPointError):
    """A model produced NaN or +inf scores (diverged, or absurd parameters)."""


def check_finite(model: Recommender, scores: np.ndarray) -> np.ndarray:
    """Raise :class:`ScoringError` when scores hold NaN or +inf (-inf means 'never')."""
    if not np.isfinite(scores).all() and (np.isnan(scores).any() or np.isposinf(scores).any()):
        raise ScoringError(f"{model.name} produced non-finite scores (NaN or inf): the model "
                           f"diverged or its parameters are out of a sensible range; refit "
                           f"with other parameters")
    return scores


@numba.njit(cache=True, parallel=True)
def _members(indptr, indices, candidates):  # pragma: no cover - compiled
    """out[r, j] = candidates[r, j] is among the sorted indices of CSR row r."""
    n, c = candidates.shape
    out = np.zeros((n, c), np.bool_)
    for r in numba.prange(n):
        row = indices[indptr[r]:indptr[r + 1]]
        if row.shape[0] == 0:
            continue
        for j in range(c):
            pos = np.searchsorted(row, candidates[r, j])
            out[r, j] = pos < row.shape[0] and row[pos] == candidates[r, j]
    return out


def in_history(history: sp.csr_matrix, candidates: np.ndarray) -> np.ndarray:
    """Boolean (n, c): which candidates each row has already seen. O(n c log h)."""
    history = sp.csr_matrix(history)
    if not history.has_sorted_indices:
        history = history.sorted_indices()
    return _members(history.indptr, history.indices.astype(np.int64),
                    np.ascontiguousarray(candidates, dtype=np.int64))


def top_of_candidates(scores: np.ndarray, candidates: np.ndarray, k: int,
                      drop: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` of each row of a candidate block; ``drop`` (n, c) marks excluded ones.

    Candidate ``-1`` entries are padding and never chosen. Returns item indices (int32)
    and scores (float32), ``-1`` / ``-inf`` padded.
    """
    block = np.array(scores, dtype=np.float32, copy=True)
    block[candidates < 0] = np.nan
    if drop is not None:
        block[drop] = np.nan
    pos, top = topk(block, k)
    items = np.where(pos >= 0, np.take_along_axis(candidates, np.maximum(pos, 0), axis=1), -1)
    return items.astype(np.int32), top


def score_candidates(model: Recommender, query: Query, candidates: np.ndarray) -> np.ndarray:
    """The model's candidate scores, shape- and value-checked."""
    scores = np.asarray(model._score_candidates(query, candidates), dtype=np.float32)
    if scores.shape != candidates.shape:
        raise ScoringError(f"{model.name}._score_candidates returned shape {scores.shape} "
                           f"for candidates of shape {candidates.shape}")
    return check_finite(model, np.where(candidates >= 0, scores, -np.inf))


def rank_full(model: Recommender, query: Query, k: int, exclude_seen: bool,
              allowed: np.ndarray | None, batch_size: int | None,
              progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` over the whole catalogue (or the ``allowed`` mask) for every row."""
    n, n_items = len(query), query.n_items
    if not model.scores_full_catalogue:
        return _rank_item_blocks(model, query, k, exclude_seen, allowed, batch_size, progress)
    batch = batch_size or max(1, BATCH_BYTES // (4 * max(n_items, 1)))
    width = min(k, n_items)
    out_idx = np.full((n, width), -1, np.int32)
    out_scores = np.full((n, width), -np.inf, np.float32)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        part = query.take(slice(start, stop))
        scores = check_finite(model, np.asarray(model._score(part)))
        exclude = part.history if exclude_seen else None
        out_idx[start:stop], out_scores[start:stop] = topk(scores, k, exclude, allowed)
        if progress is not None:
            progress(stop, n)
    return out_idx, out_scores


def rank_candidates(model: Recommender, query: Query, candidates: np.ndarray, k: int,
                    exclude_seen: bool, batch_size: int | None,
                    progress: Progress | None) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` among each row's candidates ((n, c) item indices, ``-1`` padding)."""
    n, c = candidates.shape
    batch = batch_size or max(1, BATCH_BYTES // (4 * max(c, 1)))
    width = min(k, c)
    out_idx = np.full((n, width), -1, np.int32)
    out_scores = np.full((n, width), -np.inf, np.float32)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        part, cand = query.take(slice(start, stop)), candidates[start:stop]
        scores = score_candidates(model, part, cand)
        drop = in_history(part.history, cand) if exclude_seen else None
        out_idx[start:stop], out_scores[start:stop] = top_of_candidates(scores, cand, k, drop)
        if progress is not None:
            progress(stop, n)
    return out_idx, out_scores


def _rank_item_blocks(model, query, k, exclude_seen, allowed, batch_size, progress):
    """Running top-k over column blocks, for models that only score candidates."""
    n, n_items = len(query), query.n_items
    items = np.arange(n_items, dtype=np.int64) if allowed is None else np.flatnonzero(allowed)
    block = max(256, min(len(items), (BATCH_BYTES // 4) // max(n, 1)))
    width = min(k, len(items))
    best_idx = np.full((n, width), -1, np.int64)
    best_scores = np.full((n, width), -np.inf, np.float32)
    for start in range(0, len(items), block):
        cols = np.broadcast_to(items[start:start + block], (n, min(block, len(items) - start)))
        cols = np.ascontiguousarray(cols)
        scores = score_candidates(model, query, cols)
        drop = in_history(query.history, cols) if exclude_seen else None
        merged = np.hstack([best_idx, cols])
        merged_scores = np.hstack([np.where(best_idx >= 0, best_scores, -np.inf),
                                   scores]).astype(np.float32)
        if drop is not None:
            drop = np.hstack([np.zeros_like(best_idx, dtype=bool), drop])
        found, best_scores = top_of_candidates(merged_scores, merged, width, drop)
        best_idx = found.astype(np.int64)
        if progress is not None:
            progress(min(start + block, len(items)), len(items))
    return best_idx.astype(np.int32), best_scores


def cosine_rows(vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Cosine (float32, (len(items), n)) of the given rows of ``vectors`` with every row; a
    zero vector has similarity 0 with everything."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1.0, norms)
    return (unit[items] @ unit.T).astype(np.float32)


def gather_full(model: Recommender, query: Query, candidates: np.ndarray) -> np.ndarray:
    """Default candidate scores: the full-catalogue scores gathered at the candidates."""
    full = np.asarray(model._score(query))
    safe = np.maximum(candidates, 0)
    return np.take_along_axis(full, safe, axis=1).astype(np.float32, copy=False)


def rank_with_index(model, index, query, k, exclude_seen, allowed):
    if index is True:
        index = getattr(model, "vector_index_", None)
        if index is None:
            raise ConfigError("index=True needs an index attached with attach_index()")
    check_index(model, index)
    vectors = model.query_vectors(query)
    return index.search(vectors, k, exclude=query.history if exclude_seen else None,
                        allowed=allowed)



def check_index(model, index: Any) -> None:
    if not model.factorised:
        raise NotSupportedError(f"{model.name} has no retrieval vectors for an index")
    vectors = model.item_vectors()
    if vectors is None:
        raise NotSupportedError(f"{model.name} has no item vectors")
    if (index.n_items, index.dim) != vectors.shape:
        raise ConfigError(f"the index holds {index.n_items} vectors of dimension "
                          f"{index.dim}; {model.name} has {vectors.shape[0]} of "
                          f"dimension {vectors.shape[1]}")
    if index.metric != model.vector_similarity:
        raise ConfigError(f"the index ranks by {index.metric}; {model.name} scores by "
                          f"{model.vector_similarity}")

