"""Sparse top-k similarities between rows of a CSR matrix, in O(n * k) memory.

For each query row q the kernel walks q's nonzero columns c and, through an inverted index
(column -> rows), every target row t sharing c, accumulating in a per-thread scratch of
size n_targets: the dot product sum_c q_c t_c, the co-support n_qt = |supp q & supp t| and,
for the co-rated measures, sum_c q_c^2 and sum_c t_c^2 over the shared columns. Rows are
processed in strided blocks, one per thread (numba ``prange``), and only the ``k`` best
targets of each row are kept, so memory is O(n * k + threads * n_targets) and never a
dense n x n matrix. Time is O(sum over columns of (column nnz)^2).

Measures (``similarity=``):

- ``dot``: sum q_c t_c;  ``cosine``: dot / (||q|| ||t||);
- ``adjusted_cosine``: cosine after centring each entry by its *column* mean (for item rows:
  the user's mean rating, Sarwar et al. 2001);
- ``pearson``: entries centred by their *row* mean, dot / sqrt(sum_co q^2 * sum_co t^2) with
  both sums over the co-rated columns (Herlocker et al. 1999);
- ``pearson_baseline``: as pearson on residuals r - (mu + b_u + b_i) of a bias baseline
  (Koren 2010), given by the caller;
- ``jaccard``: n_qt / (|q| + |t| - n_qt) on the binary structure.

Shrinkage multiplies by n_qt / (n_qt + beta); pairs with co-support below ``min_support``,
similarity 0, or similarity below ``min_similarity`` are dropped. Optional BM25 / TF-IDF
weighting of the input (rows are documents, columns terms) as in Robertson et al. 2009.
"""

from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.errors import ConfigError
from recoforge.models.baselines.baseline import row_ids, subtract_offsets
from recoforge.ranking.topk import heap_drain, heap_push

SIMILARITIES = ("cosine", "dot", "adjusted_cosine", "pearson", "pearson_baseline", "jaccard")
CENTRED = ("adjusted_cosine", "pearson", "pearson_baseline")
WEIGHTINGS = ("none", "bm25", "tfidf")
# kernel measure codes
DOT, COSINE, CORATED, JACCARD = 0, 1, 2, 3
_MEASURE = {"dot": DOT, "cosine": COSINE, "adjusted_cosine": COSINE, "pearson": CORATED,
            "pearson_baseline": CORATED, "jaccard": JACCARD}


class Neighbours(NamedTuple):
    """Top-k neighbours of each query row, best first; ``-1`` / 0 padding."""

    indices: np.ndarray  # int32 (n_queries, k)
    similarities: np.ndarray  # float32 (n_queries, k)
    counts: np.ndarray  # int32 (n_queries,)

    def to_csr(self, n_targets: int) -> sp.csr_matrix:
        """As a CSR (n_queries, n_targets) with sorted column indices."""
        n, k = self.indices.shape
        valid = np.arange(k)[None, :] < self.counts[:, None]
        indptr = np.zeros(n + 1, np.int64)
        np.cumsum(self.counts, out=indptr[1:])
        mat = sp.csr_matrix((self.similarities[valid], self.indices[valid], indptr),
                            shape=(n, n_targets))
        mat.sort_indices()
        return mat


@numba.njit(cache=True)
def _similarity(measure, dot, support, q_sq, t_sq, q_sq_co, t_sq_co, q_count, t_count):
    if measure == DOT:
        return dot
    if measure == COSINE:
        denom = q_sq * t_sq
        return dot / np.sqrt(denom) if denom > 0 else 0.0
    if measure == CORATED:
        denom = q_sq_co * t_sq_co
        return dot / np.sqrt(denom) if denom > 0 else 0.0
    union = q_count + t_count - support
    return support / union if union > 0 else 0.0


@numba.njit(cache=True, parallel=True)
def _neighbours_kernel(q_indptr, q_indices, q_data, inv_indptr, inv_indices, inv_data,
                       t_sq, t_count, exclude, measure, k, shrinkage, min_similarity,
                       min_support, n_blocks, out_idx, out_sim, out_count):
    n_queries = q_indptr.shape[0] - 1
    n_targets = t_sq.shape[0]
    corated = measure == CORATED
    for block in numba.prange(n_blocks):
        dot = np.zeros(n_targets, np.float64)
        support = np.zeros(n_targets, np.int32)
        q_co = np.zeros(n_targets if corated else 1, np.float64)
        t_co = np.zeros(n_targets if corated else 1, np.float64)
        touched = np.empty(n_targets, np.int32)
        heap_s = np.empty(k, np.float32)
        heap_j = np.empty(k, np.int32)
        for r in range(block, n_queries, n_blocks):
            m = 0
            q_sq = 0.0
            for p in range(q_indptr[r], q_indptr[r + 1]):
                col = q_indices[p]
                v = np.float64(q_data[p])
                q_sq += v * v
                for s in range(inv_indptr[col], inv_indptr[col + 1]):
                    t = inv_indices[s]
                    w = np.float64(inv_data[s])
                    if support[t] == 0:
                        touched[m] = t
                        m += 1
                    support[t] += 1
                    dot[t] += v * w
                    if corated:
                        q_co[t] += v * v
                        t_co[t] += w * w
            q_count = q_indptr[r + 1] - q_indptr[r]
            size = 0
            for a in range(m):
                t = touched[a]
                n = support[t]
                if t != exclude[r] and n >= min_support:
                    sim = _similarity(measure, dot[t], n, q_sq, t_sq[t],
                                      q_co[t] if corated else 0.0,
                                      t_co[t] if corated else 0.0, q_count, t_count[t])
                    if shrinkage > 0:
                        sim *= n / (n + shrinkage)
                    s32 = np.float32(sim)
                    if s32 != 0 and s32 >= min_similarity:
                        size = heap_push(heap_s, heap_j, size, k, s32, t)
                dot[t] = 0.0
                support[t] = 0
                if corated:
                    q_co[t] = 0.0
                    t_co[t] = 0.0
            out_count[r] = size
            heap_drain(heap_s, heap_j, size, out_sim[r], out_idx[r])


def check_options(similarity: str, weighting: str = "none", k: int = 1,
                  shrinkage: float = 0.0, min_support: int = 1) -> None:
    """Raise ConfigError for an unknown measure/weighting or absurd numbers."""
    if similarity not in SIMILARITIES:
        raise ConfigError(f"similarity must be one of {list(SIMILARITIES)}, not {similarity!r}")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"weighting must be one of {list(WEIGHTINGS)}, not {weighting!r}")
    if weighting != "none" and similarity in CENTRED + ("jaccard",):
        raise ConfigError(f"weighting={weighting!r} applies to cosine or dot similarity, "
                          f"not {similarity!r}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if shrinkage < 0 or min_support < 1:
        raise ConfigError("shrinkage must be >= 0 and min_support >= 1")


def topk_neighbours(queries: sp.csr_matrix, targets: sp.csr_matrix, k: int, *,
                    measure: str = "cosine", inverted: sp.csr_matrix | None = None,
                    exclude: np.ndarray | None = None, shrinkage: float = 0.0,
                    min_similarity: float = 0.0, min_support: int = 1) -> Neighbours:
    """The ``k`` most similar target rows of each query row (already transformed rows).

    Parameters
    ----------
    queries : csr_matrix (n_queries, n_cols)
    targets : csr_matrix (n_targets, n_cols)
    k : int
    measure : {"dot", "cosine", "pearson", "jaccard"} or any name of ``SIMILARITIES``
        (the kernel part only: centring is the caller's, see :func:`prepare_rows`).
    inverted : csr_matrix (n_cols, n_targets), optional
        ``targets.T`` as CSR, when the caller keeps it across calls.
    exclude : ndarray of int (n_queries,), optional
        One target per query that is never its neighbour (itself); -1 for none.

    Returns
    -------
    Neighbours
    """
    queries, targets = sp.csr_matrix(queries), sp.csr_matrix(targets)
    if queries.shape[1] != targets.shape[1]:
        raise ValueError(f"queries have {queries.shape[1]} columns, targets "
                         f"{targets.shape[1]}")
    n_queries, n_targets = queries.shape[0], targets.shape[0]
    if inverted is None:
        inverted = targets.T.tocsr()
    k = int(max(1, min(k, n_targets)))
    t_sq = np.asarray(targets.multiply(targets).sum(axis=1), np.float64).ravel()
    t_count = np.diff(targets.indptr).astype(np.int64)
    if exclude is None:
        exclude = np.full(n_queries, -1, np.int64)
    out_idx = np.full((n_queries, k), -1, np.int32)
    out_sim = np.zeros((n_queries, k), np.float32)
    out_count = np.zeros(n_queries, np.int32)
    if n_queries and n_targets:
        n_blocks = max(1, min(n_queries, 8 * numba.get_num_threads()))
        _neighbours_kernel(queries.indptr.astype(np.int64), queries.indices.astype(np.int32),
                           queries.data.astype(np.float32), inverted.indptr.astype(np.int64),
                           inverted.indices.astype(np.int32), inverted.data.astype(np.float32),
                           t_sq, t_count, np.asarray(exclude, np.int64), _MEASURE[measure], k,
                           float(shrinkage), float(min_similarity), int(min_support), n_blocks,
                           out_idx, out_sim, out_count)
    return Neighbours(out_idx, out_sim, out_count)


# ---------------------------------------------------------------------- input transforms
def column_idf(rows: sp.csr_matrix) -> np.ndarray:
    """idf_c = log(n_rows) - log(1 + df_c), df_c = rows with column c (as implicit)."""
    rows = sp.csr_matrix(rows)
    df = np.bincount(rows.indices, minlength=rows.shape[1]).astype(np.float64)
    return np.log(max(rows.shape[0], 1)) - np.log1p(df)


def weight_rows(rows: sp.csr_matrix, weighting: str, idf: np.ndarray,
                average_length: float, k1: float = 1.2, b: float = 0.75) -> sp.csr_matrix:
    """BM25 or TF-IDF weights of a CSR whose rows are documents and columns terms.

    BM25: x (k1 + 1) / (k1 * ((1 - b) + b * len / avg_len) + x) * idf_c, len = row sum;
    TF-IDF: sqrt(x) * idf_c. ``idf``/``average_length`` come from the training rows, so
    query rows are weighted as training rows were.
    """
    rows = sp.csr_matrix(rows, dtype=np.float32)
    if weighting == "none":
        return rows
    data = rows.data.astype(np.float64)
    if weighting == "tfidf":
        data = np.sqrt(np.abs(data)) * idf[rows.indices]
    else:
        length = np.asarray(rows.sum(axis=1), np.float64).ravel()
        norm = (1.0 - b) + b * length / max(average_length, 1e-12)
        data = data * (k1 + 1.0) / (k1 * norm[row_ids(rows)] + data) * idf[rows.indices]
    return sp.csr_matrix((data.astype(np.float32), rows.indices, rows.indptr), shape=rows.shape)


def row_means(rows: sp.csr_matrix) -> np.ndarray:
    """Mean of the stored entries of each row (0 for empty rows)."""
    counts = np.diff(rows.indptr)
    sums = np.asarray(rows.sum(axis=1), np.float64).ravel()
    return np.divide(sums, counts, out=np.zeros(len(counts)), where=counts > 0)


def prepare_rows(rows: sp.csr_matrix, similarity: str, *, column_means: np.ndarray | None
                 = None, baseline: tuple[float, np.ndarray, np.ndarray] | None = None,
                 weighting: str = "none", idf: np.ndarray | None = None,
                 average_length: float = 1.0, bm25_k1: float = 1.2,
                 bm25_b: float = 0.75) -> sp.csr_matrix:
    """Rows transformed for ``similarity``: centred, weighted or binarised (float32).

    ``column_means`` (adjusted_cosine) and ``baseline`` = (mu, row biases, column biases)
    (pearson_baseline) are the caller's, fitted on training rows.
    """
    rows = sp.csr_matrix(rows, dtype=np.float32)
    if similarity == "jaccard":
        return sp.csr_matrix((np.ones_like(rows.data), rows.indices, rows.indptr),
                             shape=rows.shape)
    if similarity == "pearson":
        return subtract_offsets(rows, 0.0, row_means(rows), None)
    if similarity == "adjusted_cosine":
        if column_means is None:
            raise ConfigError("adjusted_cosine needs column means")
        return subtract_offsets(rows, 0.0, None, column_means)
    if similarity == "pearson_baseline":
        if baseline is None:
            raise ConfigError("pearson_baseline needs a fitted bias baseline")
        mu, row_bias, col_bias = baseline
        return subtract_offsets(rows, mu, row_bias, col_bias)
    if weighting != "none":
        if idf is None:
            idf = column_idf(rows)
        return weight_rows(rows, weighting, idf, average_length, bm25_k1, bm25_b)
    return rows


def similarity_matrix(rows: sp.csr_matrix, k: int, similarity: str = "cosine", *,
                      shrinkage: float = 0.0, min_similarity: float = 0.0,
                      min_support: int = 1, weighting: str = "none", bm25_k1: float = 1.2,
                      bm25_b: float = 0.75,
                      baseline: tuple[float, np.ndarray, np.ndarray] | None = None,
                      ) -> sp.csr_matrix:
    """Top-``k`` row-row similarity as a CSR (n_rows, n_rows), self excluded.

    Row i of the result holds row i's ``k`` nearest rows. For item-item similarity pass
    the item x user matrix (then ``adjusted_cosine`` centres by user means and a
    ``baseline`` is (mu, item biases, user biases)). Memory O(n_rows * k + nnz).
    """
    check_options(similarity, weighting, k, shrinkage, min_support)
    rows = sp.csr_matrix(rows, dtype=np.float32)
    col_means = row_means(rows.T.tocsr()) if similarity == "adjusted_cosine" else None
    length = np.asarray(rows.sum(axis=1), np.float64).ravel()
    prepared = prepare_rows(rows, similarity, column_means=col_means, baseline=baseline,
                            weighting=weighting, average_length=float(length.mean())
                            if length.size else 1.0, bm25_k1=bm25_k1, bm25_b=bm25_b)
    exclude = np.arange(rows.shape[0], dtype=np.int64)
    found = topk_neighbours(prepared, prepared, k, measure=similarity, exclude=exclude,
                            shrinkage=shrinkage, min_similarity=min_similarity,
                            min_support=min_support)
    return found.to_csr(rows.shape[0])


@numba.njit(cache=True, parallel=True)
def _accumulate(h_indptr, h_indices, h_data, s_indptr, s_indices, s_data, out):
    for r in numba.prange(out.shape[0]):
        for p in range(h_indptr[r], h_indptr[r + 1]):
            j = h_indices[p]
            weight = h_data[p]
            for q in range(s_indptr[j], s_indptr[j + 1]):
                out[r, s_indices[q]] += weight * s_data[q]


def neighbour_scores(histories: sp.csr_matrix, neighbours: sp.csr_matrix) -> np.ndarray:
    """Dense ``histories @ neighbours`` (float32) without a sparse intermediate.

    The scoring step of every item-to-item model: s_ui = sum_j h_uj W_ji. Rows run in
    parallel (numba); O(nnz(h) * k) time for k neighbours per item, O(n * n_items) output.
    """
    histories = sp.csr_matrix(histories)
    neighbours = sp.csr_matrix(neighbours)
    if histories.shape[1] != neighbours.shape[0]:
        raise ValueError(f"shapes {histories.shape} and {neighbours.shape} do not chain")
    out = np.zeros((histories.shape[0], neighbours.shape[1]), dtype=np.float32)
    _accumulate(histories.indptr, histories.indices, histories.data.astype(np.float32),
                neighbours.indptr, neighbours.indices, neighbours.data.astype(np.float32), out)
    return out
