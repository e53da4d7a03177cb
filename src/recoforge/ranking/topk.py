"""Batched top-k selection with exclusions: the one kernel every model ranks with.

For each row of a dense score matrix, the ``k`` best columns ordered by score descending
and, for equal scores, by column index ascending (so results are deterministic). Columns
can be excluded per row (a CSR matrix, e.g. items the user has seen) and globally (an
``allowed`` mask, e.g. a candidate whitelist). NaN scores are never selected.

Cost O(n * m * log k) time worst case, O(n * k) extra memory; rows run in parallel
(numba ``prange``), except in batches of a few rows (a service's single requests), which
run serially.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.errors import ConfigError


@numba.njit(cache=True, inline="always")
def _better(s1: float, j1: int, s2: float, j2: int) -> bool:
    return s1 > s2 or (s1 == s2 and j1 < j2)


@numba.njit(cache=True)
def _sift_down(heap_s, heap_j, size, pos):  # min-heap on "worst first"
    while True:
        left = 2 * pos + 1
        if left >= size:
            return
        child = left
        right = left + 1
        if right < size and _better(heap_s[child], heap_j[child], heap_s[right], heap_j[right]):
            child = right
        if _better(heap_s[pos], heap_j[pos], heap_s[child], heap_j[child]):
            heap_s[pos], heap_s[child] = heap_s[child], heap_s[pos]
            heap_j[pos], heap_j[child] = heap_j[child], heap_j[pos]
            pos = child
        else:
            return


@numba.njit(cache=True)
def _sift_up(heap_s, heap_j, pos):
    while pos > 0:
        parent = (pos - 1) // 2
        if _better(heap_s[parent], heap_j[parent], heap_s[pos], heap_j[pos]):
            heap_s[pos], heap_s[parent] = heap_s[parent], heap_s[pos]
            heap_j[pos], heap_j[parent] = heap_j[parent], heap_j[pos]
            pos = parent
        else:
            return


@numba.njit(cache=True, inline="always")
def heap_push(heap_s, heap_j, size, k, s, j):
    """Offer (s, j) to a bounded "worst on top" heap of capacity k; returns the new size."""
    if size < k:
        heap_s[size] = s
        heap_j[size] = j
        _sift_up(heap_s, heap_j, size)
        return size + 1
    if _better(s, j, heap_s[0], heap_j[0]):
        heap_s[0] = s
        heap_j[0] = j
        _sift_down(heap_s, heap_j, size, 0)
    return size


@numba.njit(cache=True, inline="always")
def heap_drain(heap_s, heap_j, size, out_s, out_j):
    """Empty the heap into out_s/out_j (first ``size`` places), best first."""
    for pos in range(size - 1, -1, -1):
        out_s[pos] = heap_s[0]
        out_j[pos] = heap_j[0]
        size -= 1
        if size > 0:
            heap_s[0] = heap_s[size]
            heap_j[0] = heap_j[size]
            _sift_down(heap_s, heap_j, size, 0)


@numba.njit(cache=True)
def _topk_row(scores, r, k, ex_indptr, ex_indices, allowed, out_j, out_s):
    m = scores.shape[1]
    use_ex = ex_indptr.shape[0] > 0
    use_allowed = allowed.shape[0] > 0
    heap_s = np.empty(k, dtype=np.float32)
    heap_j = np.empty(k, dtype=np.int32)
    size = 0
    ptr = ex_indptr[r] if use_ex else 0
    end = ex_indptr[r + 1] if use_ex else 0
    for j in range(m):
        if use_ex:
            while ptr < end and ex_indices[ptr] < j:
                ptr += 1
            if ptr < end and ex_indices[ptr] == j:
                continue
        if use_allowed and not allowed[j]:
            continue
        s = scores[r, j]
        if s != s:  # NaN
            continue
        size = heap_push(heap_s, heap_j, size, k, s, j)
    heap_drain(heap_s, heap_j, size, out_s[r], out_j[r])


@numba.njit(cache=True, parallel=True)
def _topk_kernel(scores, k, ex_indptr, ex_indices, allowed, out_j, out_s):
    for r in numba.prange(scores.shape[0]):
        _topk_row(scores, r, k, ex_indptr, ex_indices, allowed, out_j, out_s)


@numba.njit(cache=True)
def _topk_serial(scores, k, ex_indptr, ex_indices, allowed, out_j, out_s):
    for r in range(scores.shape[0]):
        _topk_row(scores, r, k, ex_indptr, ex_indices, allowed, out_j, out_s)


#: batches of at most this many rows run serially: starting the thread pool costs more
#: than one row's scan (one request of a service is one row)
SERIAL_ROWS = 4


def topk(
    scores: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` columns of each row.

    Parameters
    ----------
    scores : ndarray, shape (n, m)
        Scores (converted to float32).
    k : int
        Number of columns to keep per row, ``k >= 1``.
    exclude : csr_matrix, shape (n, m), optional
        Nonzero structure marks columns never returned for that row.
    allowed : ndarray of bool, shape (m,), optional
        Global whitelist of columns.

    Returns
    -------
    indices : ndarray of int32, shape (n, min(k, m))
        Column indices, best first; ``-1`` where a row has fewer eligible columns.
    values : ndarray of float32, same shape
        Their scores; ``-inf`` in padded places.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError("scores must be a 2-d array")
    n, m = scores.shape
    k = int(min(k, m)) if m else 1
    if exclude is not None:
        if exclude.shape != (n, m):
            raise ValueError(f"exclude has shape {exclude.shape}, scores {scores.shape}")
        exclude = sp.csr_matrix(exclude)
        if not exclude.has_sorted_indices:
            exclude = exclude.sorted_indices()
        ex_indptr = exclude.indptr.astype(np.int64)
        ex_indices = exclude.indices.astype(np.int32)
    else:
        ex_indptr = np.empty(0, np.int64)
        ex_indices = np.empty(0, np.int32)
    if allowed is not None:
        allowed = np.asarray(allowed, dtype=np.bool_)
        if allowed.shape != (m,):
            raise ValueError(f"allowed must have shape ({m},)")
    else:
        allowed = np.empty(0, np.bool_)
    out_j = np.full((n, k), -1, dtype=np.int32)
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    if n and m:
        kernel = _topk_serial if n <= SERIAL_ROWS else _topk_kernel
        kernel(scores, k, ex_indptr, ex_indices, allowed, out_j, out_s)
    return out_j, out_s
