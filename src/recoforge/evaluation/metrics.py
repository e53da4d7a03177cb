"""Evaluation metrics, vectorised over users (no Python loop per user).

Ranking metrics take a *hit matrix* ``hits`` of shape (n_users, K): ``hits[u, i]`` is the
relevance grade of the item at rank ``i + 1`` of user ``u``'s list (0 when not relevant or
when the list is padded), 1 for binary relevance. Only the first ``k <= K`` columns are
used. Counts of relevant items (and, for graded NDCG, the ideal grades) come from the
user's *whole* test set, including items the model cannot rank, so that they count
against recall and NDCG. A user with no relevant item gets NaN (callers drop such users).

Conventions (as RecBole and the usual papers; LensKit differs where noted):

- precision@k = hits@k / k (a list shorter than k counts its missing places as misses;
  LensKit divides by the list length);
- recall@k = hits@k / n_relevant (LensKit divides by min(k, n_relevant));
- hit rate@k = 1 if any of the top k is relevant, else 0;
- MRR@k = 1 / rank of the first relevant item in the top k, 0 if none;
- MAP@k: AP@k = sum_{i<=k} precision@i * rel_i / min(k, n_relevant);
- NDCG@k = DCG@k / IDCG@k with DCG@k = sum_{i<=k} g(rel_i) / log2(i + 1), gain
  g(r) = 2^r - 1 ("exponential", Burges et al. 2005) or g(r) = r ("linear"); both are 1
  for binary relevance. IDCG@k is the DCG of the user's relevant grades sorted
  descending and truncated at k.

Binary metrics treat any grade > 0 as a hit. AUC (full or against sampled negatives) is
the probability that a positive outscores a negative, ties counting one half.
"""

from __future__ import annotations

from typing import Literal

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.errors import ConfigError, DataError

Gain = Literal["exponential", "linear"]

__all__ = [
    "auc_full", "auc_sampled", "average_popularity", "average_precision_at_k",
    "binary_ideal", "catalogue_coverage", "gini_index", "hit_rate_at_k",
    "intra_list_diversity", "mae", "mrr_at_k", "ndcg_at_k", "novelty", "precision_at_k",
    "recall_at_k", "rmse",
]


# ---------------------------------------------------------------------- ranking
def _top(hits: np.ndarray, k: int) -> np.ndarray:
    hits = np.asarray(hits, dtype=np.float64)
    if hits.ndim != 2:
        raise DataError(f"hits must be a 2-d (users x ranks) array, got shape {hits.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if k > hits.shape[1]:
        raise ConfigError(f"k={k} exceeds the {hits.shape[1]} ranks in the hit matrix")
    return hits[:, :k]


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den, NaN where den == 0."""
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Share of the top ``k`` that is relevant: ``hits@k / k``."""
    return (_top(hits, k) > 0).sum(axis=1) / k


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Share of the relevant items found in the top ``k``: ``hits@k / n_relevant``."""
    return _safe_divide((_top(hits, k) > 0).sum(axis=1), n_relevant)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 when at least one of the top ``k`` is relevant, else 0."""
    return np.asarray((_top(hits, k) > 0).any(axis=1), dtype=np.float64)


def mrr_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Reciprocal rank of the first relevant item in the top ``k`` (0 when none)."""
    rel = _top(hits, k) > 0
    first = rel.argmax(axis=1)
    return np.where(rel.any(axis=1), 1.0 / (first + 1.0), 0.0)


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k = sum_{i<=k} precision@i * rel_i / min(k, n_relevant); its mean is MAP@k."""
    rel = (_top(hits, k) > 0).astype(np.float64)
    precision_at_i = np.cumsum(rel, axis=1) / np.arange(1, k + 1)
    return _safe_divide((precision_at_i * rel).sum(axis=1),
                        np.minimum(np.asarray(n_relevant), k))


def _gain(grades: np.ndarray, gain: Gain) -> np.ndarray:
    if gain == "exponential":
        return np.exp2(grades) - 1.0
    if gain == "linear":
        return grades
    raise ConfigError(f"gain must be 'exponential' or 'linear', not {gain!r}")


def binary_ideal(n_relevant: np.ndarray, width: int) -> np.ndarray:
    """Ideal grades for binary relevance: ones in the first ``min(n_relevant, width)`` places."""
    n_relevant = np.asarray(n_relevant)
    return (np.arange(width)[None, :] < n_relevant[:, None]).astype(np.float64)


def ndcg_at_k(hits: np.ndarray, ideal: np.ndarray, k: int, gain: Gain = "exponential"
              ) -> np.ndarray:
    """Normalised discounted cumulative gain at ``k``.

    Parameters
    ----------
    hits : ndarray (n, K)
        Relevance grades of the recommended items, by rank.
    ideal : ndarray (n, >= k)
        Each user's relevance grades sorted descending (0-padded), e.g.
        :func:`binary_ideal` for binary relevance.
    gain : {"exponential", "linear"}
        ``2^r - 1`` or ``r``.
    """
    top = _top(hits, k)
    ideal = np.asarray(ideal, dtype=np.float64)
    if ideal.shape[0] != top.shape[0] or ideal.shape[1] < k:
        raise DataError(f"ideal grades need shape ({top.shape[0]}, >= {k}), got {ideal.shape}")
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = _gain(top, gain) @ discount
    idcg = _gain(ideal[:, :k], gain) @ discount
    return _safe_divide(dcg, idcg)


def auc_sampled(positive_scores: np.ndarray, negative_scores: np.ndarray) -> np.ndarray:
    """AUC of each positive against its sampled negatives.

    ``(#negatives scored below + 0.5 * #ties) / n_negatives`` for every row of
    ``negative_scores`` (n_cases, n_negatives). NaN scores count as the lowest possible.
    """
    pos, neg = np.asarray(positive_scores)[:, None], np.asarray(negative_scores)
    if np.isnan(pos).any() or np.isnan(neg).any():
        pos, neg = np.nan_to_num(pos, nan=-np.inf), np.nan_to_num(neg, nan=-np.inf)
    below = (neg < pos).sum(axis=1)
    ties = (neg == pos).sum(axis=1)
    return (below + 0.5 * ties) / neg.shape[1]


@numba.njit(cache=True, inline="always")
def _count_below(sorted_values, value, strict):  # pragma: no cover - numba
    """Entries of ``sorted_values`` < value (strict) or <= value (not strict)."""
    lo, hi = 0, sorted_values.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] < value or (not strict and sorted_values[mid] == value):
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, parallel=True)
def _auc_kernel(scores, pos_indptr, pos_indices, ex_indptr, ex_indices, out):  # pragma: no cover
    """U statistic per row: for each negative v, sum over positives p of [v < p] + [v = p] / 2.

    Sorting the P positive scores once makes this O(m log P) per row.
    """
    n, m = scores.shape
    for r in numba.prange(n):
        p0, p1 = pos_indptr[r], pos_indptr[r + 1]
        n_pos = p1 - p0
        negative = np.ones(m, dtype=np.bool_)
        for t in range(ex_indptr[r], ex_indptr[r + 1]):
            negative[ex_indices[t]] = False
        positive = np.empty(n_pos, dtype=np.float64)
        for t in range(p0, p1):
            negative[pos_indices[t]] = False
            value = scores[r, pos_indices[t]]
            positive[t - p0] = -np.inf if value != value else value
        positive.sort()
        total = 0.0
        n_neg = 0
        for j in range(m):
            if negative[j]:
                v = scores[r, j]
                if v != v:
                    v = -np.inf
                n_neg += 1
                below = _count_below(positive, v, True)
                at_most = below
                if below < n_pos and positive[below] == v:
                    at_most = _count_below(positive, v, False)
                total += n_pos - 0.5 * (below + at_most)
        out[r] = total / (n_pos * n_neg) if n_pos > 0 and n_neg > 0 else np.nan


def auc_full(scores: np.ndarray, positives: sp.spmatrix, exclude: sp.spmatrix | None = None
             ) -> np.ndarray:
    """Per-user AUC over the whole catalogue (Mann-Whitney U, ties count one half).

    ``AUC_u = sum_{p in P_u} (#{n in N_u: s_n < s_p} + 0.5 #{n: s_n = s_p}) / (|P_u| |N_u|)``
    where ``P_u`` are the positives (nonzero structure of row ``u`` of ``positives``) and
    ``N_u`` every other item not excluded (e.g. not seen in training). NaN scores count as
    the lowest possible; NaN for a user without positives or negatives. Per row
    O(m log |P_u|) time (numba, rows in parallel).
    """
    scores = np.asarray(scores)
    if scores.dtype not in (np.float32, np.float64):
        scores = scores.astype(np.float64)
    if scores.ndim != 2:
        raise DataError(f"scores must be a 2-d array, got shape {scores.shape}")
    n = scores.shape[0]
    positives = sp.csr_matrix(positives)
    exclude = sp.csr_matrix(scores.shape) if exclude is None else sp.csr_matrix(exclude)
    if positives.shape != scores.shape or exclude.shape != scores.shape:
        raise DataError(f"positives {positives.shape} and exclude {exclude.shape} must have "
                        f"the shape of scores {scores.shape}")
    out = np.empty(n, dtype=np.float64)
    if n:
        _auc_kernel(scores, positives.indptr.astype(np.int64),
                    positives.indices.astype(np.int64), exclude.indptr.astype(np.int64),
                    exclude.indices.astype(np.int64), out)
    return out


# ---------------------------------------------------------------------- rating
def _paired(predicted: np.ndarray, actual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if predicted.shape != actual.shape:
        raise DataError(f"{predicted.shape[0]} predictions for {actual.shape[0]} ratings")
    if len(actual) == 0:
        raise DataError("no ratings to compare")
    return predicted, actual


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Root mean squared error ``sqrt(mean((p - r)^2))``."""
    predicted, actual = _paired(predicted, actual)
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


def mae(predicted: np.ndarray, actual: np.ndarray) -> float:
    """Mean absolute error ``mean(|p - r|)``."""
    predicted, actual = _paired(predicted, actual)
    return float(np.mean(np.abs(predicted - actual)))


# ---------------------------------------------------------------------- beyond accuracy
def _valid(recs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    recs = np.asarray(recs)
    if recs.ndim != 2:
        raise DataError(f"recommendations must be a 2-d (users x ranks) array, got {recs.shape}")
    return recs, recs >= 0


def _exposure(recs: np.ndarray, n_items: int) -> np.ndarray:
    recs, valid = _valid(recs)
    return np.bincount(recs[valid], minlength=n_items)


def catalogue_coverage(recs: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one list (``-1`` = padding)."""
    return float((_exposure(recs, n_items) > 0).sum() / n_items) if n_items else float("nan")


def gini_index(recs: np.ndarray, n_items: int) -> float:
    """Gini index of item exposure over the whole catalogue.

    With the recommendation counts ``c`` of all ``n`` catalogue items sorted ascending,
    ``G = sum_i (2 i - n - 1) c_i / (n sum_i c_i)`` (i from 1): 0 when every item is
    recommended equally often, ``1 - 1/n`` when one item takes all exposure.
    """
    counts = np.sort(_exposure(recs, n_items)).astype(np.float64)
    total = counts.sum()
    if total == 0 or n_items == 0:
        return float("nan")
    ranks = np.arange(1, n_items + 1)
    return float(((2 * ranks - n_items - 1) * counts).sum() / (n_items * total))


def _list_mean(recs: np.ndarray, per_item: np.ndarray) -> np.ndarray:
    """Mean of ``per_item`` over each list's valid entries (NaN for empty lists)."""
    recs, valid = _valid(recs)
    values = np.where(valid, per_item[np.where(valid, recs, 0)], 0.0)
    return _safe_divide(values.sum(axis=1), valid.sum(axis=1))


def novelty(recs: np.ndarray, item_counts: np.ndarray, n_users: int) -> np.ndarray:
    """Mean self-information ``-log2(pop_i)`` of each list's items (Zhou et al. 2010).

    ``pop_i = count_i / n_users``: the share of training users who interacted with item
    ``i``. Items nobody interacted with are given a count of 1, so the value stays finite.
    """
    share = np.maximum(np.asarray(item_counts, dtype=np.float64), 1.0) / max(n_users, 1)
    return _list_mean(recs, -np.log2(share))


def average_popularity(recs: np.ndarray, item_counts: np.ndarray) -> np.ndarray:
    """Average recommended popularity (ARP): the mean training count of each list's items."""
    return _list_mean(recs, np.asarray(item_counts, dtype=np.float64))


def intra_list_diversity(recs: np.ndarray, item_features: sp.spmatrix | np.ndarray
                         ) -> np.ndarray:
    """Mean pairwise cosine distance ``1 - cos(x_i, x_j)`` within each list.

    Computed without pairs: with unit feature rows ``v`` and their list sum ``S``,
    ``sum_{i != j} cos = |S|^2 - sum_i |v_i|^2``, averaged over the ``L (L - 1)`` ordered
    pairs. An item without features (zero row) has cosine 0 to every other item
    (distance 1). NaN for lists of fewer than two items. O(n * L * nnz per row).
    """
    recs, valid = _valid(recs)
    features = sp.csr_matrix(item_features, dtype=np.float64)
    norms = np.sqrt(np.asarray(features.multiply(features).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ features
    rows = np.nonzero(valid)[0]
    membership = sp.csr_matrix((np.ones(len(rows)), (rows, recs[valid])),
                               shape=(recs.shape[0], features.shape[0]))
    sums = membership @ unit
    sq_norm_sum = np.asarray(sums.multiply(sums).sum(axis=1)).ravel()
    self_terms = membership @ (norms > 0).astype(np.float64)
    length = valid.sum(axis=1).astype(np.float64)
    mean_cos = _safe_divide(sq_norm_sum - self_terms, length * (length - 1))
    return 1.0 - mean_cos
