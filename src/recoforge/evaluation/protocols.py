"""Evaluation protocols: matching test users to a model, ranking, and per-user metrics.

Internal machinery of :func:`recoforge.evaluation.evaluate`; see its module for the
protocols' definitions. Everything is vectorised over users: lists come from
:meth:`Recommender.top_items` (full protocol) or from dense scores of bounded batches
(sampled protocol, full AUC), and hits are found by matching sorted
``row * n_items + item`` keys.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.data.ids import IdIndex
from recoforge.data.split import Split
from recoforge.errors import ConfigError
from recoforge.evaluation import metrics as M
from recoforge.models._scoring import score_candidates
from recoforge.models.base import BATCH_BYTES, Recommender
from recoforge.models.query import Query

RATING_METRICS = ("rmse", "mae")


@dataclass
class Queries:
    """Test users matched to the model: ``known`` by index first, then ``cold`` histories."""

    labels: np.ndarray  # external user ids, one per query row
    known_users: np.ndarray  # model user indices of the first len(known_users) rows
    cold_histories: sp.csr_matrix  # history rows (model items) of the remaining rows
    rows: np.ndarray  # query row of each relevant test pair, sorted
    items: np.ndarray  # model item index of each relevant pair (-1: unknown item)
    grades: np.ndarray  # relevance grade of each relevant pair
    other_rows: np.ndarray  # query row / model item of every test pair of queried users
    other_items: np.ndarray
    counts: dict[str, int]

    @property
    def n(self) -> int:
        return len(self.labels)


# ---------------------------------------------------------------------- test users
def _cold_histories(model: Recommender, split: Split, cold_ids: np.ndarray) -> sp.csr_matrix:
    """History rows (over the model's items) of the given external user ids."""
    n_items = len(model.item_index_)
    history = split.history
    if history is None or len(cold_ids) == 0:
        return sp.csr_matrix((len(cold_ids), n_items), dtype=np.float32)
    rows = IdIndex(cold_ids, name="user").to_index(
        history.user_index.ids[history.users], unknown="ignore")
    items = model.item_index_.to_index(history.item_index.ids, unknown="ignore")[history.items]
    keep = (rows >= 0) & (items >= 0)
    mat = sp.csr_matrix((history.values[keep], (rows[keep], items[keep])),
                        shape=(len(cold_ids), n_items), dtype=np.float32)
    mat.sum_duplicates()
    mat.sort_indices()
    return mat


def build_queries(model: Recommender, split: Split, relevance_threshold: float | None,
                  graded: bool) -> Queries:
    """Match test users to the model (by external id) and collect their relevant pairs."""
    test = split.test
    relevant = np.ones(len(test), dtype=bool)
    if relevance_threshold is not None:
        relevant = test.values >= relevance_threshold
    model_user = model.user_index_.to_index(test.user_index.ids, unknown="ignore")
    model_item = model.item_index_.to_index(test.item_index.ids, unknown="ignore")
    test_users = np.unique(test.users)
    with_relevant = np.unique(test.users[relevant])
    known = with_relevant[model_user[with_relevant] >= 0]
    unknown = with_relevant[model_user[with_relevant] < 0]
    cold = unknown if split.history is not None else unknown[:0]
    query_row = np.full(test.n_users, -1, dtype=np.int64)
    query_row[known] = np.arange(len(known))
    query_row[cold] = len(known) + np.arange(len(cold))
    pair_row = query_row[test.users]
    order = np.argsort(pair_row, kind="stable")  # pairs grouped by query row
    pair_row, pair_item = pair_row[order], model_item[test.items[order]]
    pick, others = relevant[order] & (pair_row >= 0), pair_row >= 0
    counts = {"test_users": len(test_users), "evaluated_users": len(known) + len(cold),
              "cold_users": len(cold), "unknown_users": len(unknown) - len(cold),
              "users_without_relevant": len(test_users) - len(with_relevant),
              "relevant_pairs": int(pick.sum()), "unknown_items": int((pair_item[pick] < 0).sum())}
    grades = test.values[order][pick].astype(np.float64) if graded else np.ones(int(pick.sum()))
    return Queries(
        labels=test.user_index.ids[np.concatenate([known, cold])],
        known_users=model_user[known],
        cold_histories=_cold_histories(model, split, test.user_index.ids[cold]),
        rows=pair_row[pick], items=pair_item[pick], grades=grades,
        other_rows=pair_row[others], other_items=pair_item[others], counts=counts)


def _score_batches(model: Recommender, queries: Queries, batch: int
                   ) -> Iterator[tuple[int, int, np.ndarray, sp.csr_matrix]]:
    """Yield (start, stop, dense scores, history rows) over the query rows."""
    n_known = len(queries.known_users)
    for start in range(0, queries.n, batch):
        stop = min(queries.n, start + batch)
        parts, hists = [], []
        if start < n_known:
            users = queries.known_users[start:min(stop, n_known)]
            parts.append(model.score(users=users))
            hists.append(model.train_matrix_[users])
        if stop > n_known:
            hist = queries.cold_histories[max(start - n_known, 0):stop - n_known]
            parts.append(model.score(histories=hist))
            hists.append(hist)
        scores = parts[0] if len(parts) == 1 else np.vstack(parts)
        yield start, stop, np.asarray(scores, dtype=np.float32), sp.vstack(hists, format="csr")


def _query_batches(model: Recommender, queries: Queries, batch: int
                   ) -> Iterator[tuple[int, int, Query]]:
    """Yield (start, stop, Query) over the query rows; known and cold rows never mix."""
    n_known = len(queries.known_users)
    bounds = sorted({*range(0, queries.n, batch), n_known, queries.n} - {queries.n})
    for start, stop in zip(bounds, [*bounds[1:], queries.n]):
        if start < n_known:
            yield start, stop, model.known_query(queries.known_users[start:stop])
        else:
            hist = queries.cold_histories[start - n_known:stop - n_known]
            yield start, stop, Query.from_history(hist)


def _case_candidates(local_rows: np.ndarray, local_start: np.ndarray, positives: np.ndarray,
                     negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One candidate row per query row holding each of its cases' positive + negatives.

    Returns (candidates (n_rows, width) with -1 padding, columns (n_cases, 1 + n_neg):
    where each case's positive and negatives sit in its row). Memory O(n_rows x width),
    width = most cases of a row x (1 + n_neg).
    """
    per_case = 1 + negatives.shape[1]
    case_in_row = np.arange(len(local_rows)) - local_start[local_rows]
    width = max(1, int(np.diff(local_start).max(initial=0)) * per_case)
    columns = case_in_row[:, None] * per_case + np.arange(per_case)[None, :]
    candidates = np.full((len(local_start) - 1, width), -1, dtype=np.int64)
    candidates[local_rows[:, None], columns] = np.column_stack([positives, negatives])
    return candidates, columns


def default_batch(model: Recommender, batch_size: int | None) -> int:
    """Query rows per dense score block: ``batch_size`` or a ~128 MiB float32 block."""
    if batch_size is None:
        return max(1, BATCH_BYTES // (4 * max(len(model.item_index_), 1)))
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


# ---------------------------------------------------------------------- full protocol
def _recommend_all(model: Recommender, queries: Queries, width: int, exclude_seen: bool,
                   batch: int) -> np.ndarray:
    """(n_queries, width) recommended model item indices, ``-1`` padded."""
    parts = []
    if len(queries.known_users):
        parts.append(model.top_items(users=queries.known_users, k=width,
                                     exclude_seen=exclude_seen, batch_size=batch)[0])
    if queries.cold_histories.shape[0]:
        parts.append(model.top_items(histories=queries.cold_histories, k=width,
                                     exclude_seen=exclude_seen, batch_size=batch)[0])
    recs = np.vstack(parts)
    if recs.shape[1] < width:  # catalogue smaller than k
        recs = np.hstack([recs, np.full((recs.shape[0], width - recs.shape[1]), -1, np.int32)])
    return recs


def _hit_matrix(queries: Queries, recs: np.ndarray, n_items: int) -> np.ndarray:
    """Grade of each recommended item for its user (0 when not relevant)."""
    ok = queries.items >= 0
    keys = queries.rows[ok] * n_items + queries.items[ok]
    order = np.argsort(keys, kind="stable")
    keys, grades = keys[order], queries.grades[ok][order]
    if len(keys) == 0:
        return np.zeros(recs.shape, dtype=np.float64)
    rec_keys = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    pos = np.minimum(np.searchsorted(keys, rec_keys), len(keys) - 1)
    match = (recs >= 0) & (keys[pos] == rec_keys)
    return np.where(match, grades[pos], 0.0)


def _ideal_grades(queries: Queries, width: int) -> np.ndarray:
    """Each user's relevant grades sorted descending, truncated to ``width`` columns."""
    order = np.lexsort((-queries.grades, queries.rows))
    rows, grades = queries.rows[order], queries.grades[order]
    position = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    keep = position < width
    ideal = np.zeros((queries.n, width), dtype=np.float64)
    ideal[rows[keep], position[keep]] = grades[keep]
    return ideal


def _full_auc(model: Recommender, queries: Queries, exclude_seen: bool, batch: int
              ) -> np.ndarray:
    """Per-user AUC over all rankable items, from a second (dense) scoring pass."""
    ok = queries.items >= 0
    rows, items = queries.rows[ok], queries.items[ok]
    auc = np.full(queries.n, np.nan)
    for start, stop, scores, hist in _score_batches(model, queries, batch):
        lo, hi = np.searchsorted(rows, [start, stop])
        positives = sp.csr_matrix((np.ones(hi - lo), (rows[lo:hi] - start, items[lo:hi])),
                                  shape=scores.shape)
        auc[start:stop] = M.auc_full(scores, positives, hist if exclude_seen else None)
    return auc


def full_protocol(model: Recommender, split: Split, queries: Queries, ks: tuple[int, ...],
                  metrics: list[str], gain: M.Gain, exclude_seen: bool, batch: int,
                  timings: dict[str, float]
                  ) -> tuple[dict[str, np.ndarray], dict[str, float], np.ndarray]:
    """Per-user ranking and list metrics, and catalogue metrics, from top-k lists."""
    n_items = len(model.item_index_)
    width = max(ks)
    started = time.perf_counter()
    recs = _recommend_all(model, queries, width, exclude_seen, batch)
    timings["ranking"] = time.perf_counter() - started
    started = time.perf_counter()
    hits = _hit_matrix(queries, recs, n_items)
    n_relevant = np.bincount(queries.rows, minlength=queries.n)
    ideal = _ideal_grades(queries, width)
    per_user: dict[str, np.ndarray] = {}
    catalogue: dict[str, float] = {}
    item_counts = model.train_matrix_.getnnz(axis=0)
    features = _model_item_features(model, split) if "diversity" in metrics else None
    for metric in metrics:
        for k in ks if metric != "auc" else ():
            top = recs[:, :k]
            name = f"{metric}@{k}"
            if metric == "ndcg":
                per_user[name] = M.ndcg_at_k(hits, ideal, k, gain=gain)
            elif metric == "recall":
                per_user[name] = M.recall_at_k(hits, n_relevant, k)
            elif metric == "precision":
                per_user[name] = M.precision_at_k(hits, k)
            elif metric == "map":
                per_user[name] = M.average_precision_at_k(hits, n_relevant, k)
            elif metric == "mrr":
                per_user[name] = M.mrr_at_k(hits, k)
            elif metric == "hit_rate":
                per_user[name] = M.hit_rate_at_k(hits, k)
            elif metric == "novelty":
                per_user[name] = M.novelty(top, item_counts, model.train_matrix_.shape[0])
            elif metric == "popularity":
                per_user[name] = M.average_popularity(top, item_counts)
            elif metric == "diversity":
                per_user[name] = M.intra_list_diversity(top, features)
            elif metric == "coverage":
                catalogue[name] = M.catalogue_coverage(top, n_items)
            elif metric == "gini":
                catalogue[name] = M.gini_index(top, n_items)
    if "auc" in metrics:
        per_user["auc"] = _full_auc(model, queries, exclude_seen, batch)
    timings["metrics"] = time.perf_counter() - started
    return per_user, catalogue, n_relevant


def _model_item_features(model: Recommender, split: Split) -> sp.csr_matrix:
    features = split.train.item_features
    if features is None:
        raise ConfigError("diversity needs item features (split.train.item_features is None)")
    if model.item_index_ == split.train.item_index:
        return features.matrix
    rows = split.train.item_index.to_index(model.item_index_.ids, unknown="ignore")
    return features.take_rows(rows).matrix


# ---------------------------------------------------------------------- sampled protocol
def _touched(model: Recommender, queries: Queries) -> sp.csr_matrix:
    """Structure (sorted, 1s) of every model item each queried user interacted with."""
    seen = sp.vstack([model.train_matrix_[queries.known_users], queries.cold_histories],
                     format="csr")
    ok = queries.other_items >= 0
    marks = sp.csr_matrix((np.ones(seen.nnz), seen.indices, seen.indptr), shape=seen.shape) \
        + sp.csr_matrix((np.ones(int(ok.sum())), (queries.other_rows[ok],
                                                  queries.other_items[ok])), shape=seen.shape)
    marks = sp.csr_matrix(marks)
    marks.sum_duplicates()
    marks.sort_indices()
    return marks


@numba.njit(cache=True, parallel=True)
def _floyd_kernel(case_start, touched_indptr, touched_indices, n_items, uniforms,
                  out):  # pragma: no cover - numba
    """Distinct untouched items per case by Floyd's algorithm, from given uniforms.

    Row ``r``'s cases are ``case_start[r]:case_start[r + 1]``; Floyd's algorithm picks
    ``n_negatives`` distinct ranks among the row's untouched items, in O(n_negatives).
    """
    n_negatives = uniforms.shape[1]
    for r in numba.prange(case_start.shape[0] - 1):
        t0, t1 = touched_indptr[r], touched_indptr[r + 1]
        available = n_items - (t1 - t0)
        untouched = np.empty(max(available, 0), dtype=np.int64)
        t, size = t0, 0
        for item in range(n_items):
            if t < t1 and touched_indices[t] == item:
                t += 1
            else:
                untouched[size] = item
                size += 1
        chosen = np.zeros(max(available, 0), dtype=np.bool_)
        ranks = np.empty(n_negatives, dtype=np.int64)
        for c in range(case_start[r], case_start[r + 1]):
            for t in range(n_negatives):
                top = available - n_negatives + t
                pick = min(int(uniforms[c, t] * (top + 1)), top)
                if chosen[pick]:
                    pick = top
                chosen[pick] = True
                ranks[t] = pick
            for t in range(n_negatives):
                chosen[ranks[t]] = False
                out[c, t] = untouched[ranks[t]]


def _sample_negatives(touched: sp.csr_matrix, case_start: np.ndarray, start: int, stop: int,
                      n_negatives: int, rng: np.random.Generator) -> np.ndarray:
    """Negatives of the cases of query rows ``start:stop`` (uniform, distinct, untouched).

    The uniforms are drawn case by case in row order, so the sample does not depend on
    how rows are batched.
    """
    lo, hi = case_start[start], case_start[stop]
    indptr = touched.indptr[start:stop + 1].astype(np.int64)
    out = np.empty((hi - lo, n_negatives), dtype=np.int64)  # O(cases x n_negatives)
    _floyd_kernel(case_start[start:stop + 1] - lo, indptr - indptr[0],
                  touched.indices[indptr[0]:indptr[-1]].astype(np.int64), touched.shape[1],
                  rng.random((hi - lo, n_negatives)), out)
    return out


def sampled_protocol(model: Recommender, queries: Queries, ks: tuple[int, ...],
                     metrics: list[str], n_negatives: int, rng: np.random.Generator,
                     batch: int, timings: dict[str, float]
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-user metrics of each relevant item ranked among sampled negatives."""
    started = time.perf_counter()
    rows, items = queries.rows, queries.items
    touched = _touched(model, queries)
    available = touched.shape[1] - np.diff(touched.indptr)
    if (available < n_negatives).any():
        raise ConfigError(f"n_negatives={n_negatives} exceeds the {int(available.min())} "
                          f"items some test user never interacted with; use fewer negatives")
    case_start = np.searchsorted(rows, np.arange(queries.n + 1))
    rank = np.empty(len(rows), dtype=np.int64)
    auc = np.empty(len(rows), dtype=np.float64)
    for start, stop, query in _query_batches(model, queries, batch):
        lo, hi = case_start[start], case_start[stop]
        negatives = _sample_negatives(touched, case_start, start, stop, n_negatives, rng)
        candidates, columns = _case_candidates(rows[lo:hi] - start, case_start[start:stop + 1]
                                               - lo, items[lo:hi], negatives)
        scores = score_candidates(model, query, candidates)  # positives: -inf when unknown
        per_case = np.take_along_axis(scores[rows[lo:hi] - start], columns, axis=1)
        positive, negative = per_case[:, 0], per_case[:, 1:]
        rank[lo:hi] = 1 + (negative >= positive[:, None]).sum(axis=1)  # ties rank above
        auc[lo:hi] = M.auc_sampled(positive, negative)
    timings["ranking"] = time.perf_counter() - started
    started = time.perf_counter()
    n_cases = np.diff(case_start)
    per_user: dict[str, np.ndarray] = {}

    def user_mean(values: np.ndarray) -> np.ndarray:
        return np.bincount(rows, weights=values, minlength=queries.n) / n_cases

    for metric in metrics:
        for k in ks if metric != "auc" else ():
            inside = rank <= k
            if metric == "hit_rate":
                per_user[f"hit_rate@{k}"] = user_mean(inside.astype(np.float64))
            elif metric == "ndcg":
                per_user[f"ndcg@{k}"] = user_mean(np.where(inside, 1 / np.log2(rank + 1), 0))
            elif metric == "mrr":
                per_user[f"mrr@{k}"] = user_mean(np.where(inside, 1.0 / rank, 0.0))
    if "auc" in metrics:
        per_user["auc"] = user_mean(auc)
    timings["metrics"] = time.perf_counter() - started
    return per_user, n_cases


# ---------------------------------------------------------------------- rating metrics
def rating_metrics(model: Recommender, split: Split, metrics: list[str],
                    counts: dict[str, int]) -> dict[str, float]:
    test = split.test
    predicted = model.predict(test.user_index.ids[test.users], test.item_index.ids[test.items],
                              unknown="nan", times=test.timestamps)
    ok = np.isfinite(predicted)
    counts["rated_pairs"] = int(ok.sum())
    counts["unpredictable_pairs"] = int((~ok).sum())
    out = {}
    for metric in (m for m in metrics if m in RATING_METRICS):
        fn = M.rmse if metric == "rmse" else M.mae
        out[metric] = fn(predicted[ok], test.values[ok]) if ok.any() else float("nan")
    return out


