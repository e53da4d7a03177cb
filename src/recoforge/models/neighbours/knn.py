"""Neighbourhood models: item-kNN and user-kNN, for top-N lists and rating prediction.

Top-N (any data): item-kNN scores s_u = h_u @ S with S the item-item matrix keeping each
item's ``k`` nearest items (Deshpande & Karypis 2004); user-kNN scores s_u = sum_v
sim(u, v) r_v over the ``k`` users most similar to the history h_u, found on the fly, so
new users need no retraining (Herlocker et al. 1999).

Ratings (explicit data): r_ui = b_ui + sum_n sim(n) (r_n - b_n) / sum_n |sim(n)| over the
neighbours n (items the user rated among item i's neighbours, or users who rated i among
u's neighbours; at most ``predict_k`` of them, the most similar), where b is 0
(``"plain"``), the item or user mean (``"mean-centred"``) or the bias baseline
mu + b_u + b_i (``"baseline"``, Koren 2010, as Surprise's KNNBaseline). Without
neighbours the prediction is the baseline. Similarities: see :mod:`similarity`.

Memory: item-kNN O(n_items * k + nnz); user-kNN O(nnz) state plus O(batch * k).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.data.transforms import DEFAULT_TRANSFORM, VALUE_TRANSFORMS, transform_matrix
from recoforge.errors import ConfigError, NotSupportedError
from recoforge.models.base import Recommender
from recoforge.models.baselines.baseline import bias_estimates, user_bias_from_history
from recoforge.models.neighbours.similarity import (
    CENTRED,
    SIMILARITIES,
    WEIGHTINGS,
    check_options,
    column_idf,
    neighbour_scores,
    prepare_rows,
    row_means,
    similarity_matrix,
    topk_neighbours,
)
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit

VARIANTS = ("plain", "mean-centred", "baseline")


@dataclass(frozen=True)
class KNNConfig(ModelConfig):
    """Hyperparameters shared by item-kNN and user-kNN."""

    similarity: str = param("cosine", choices=SIMILARITIES, doc="similarity measure")
    k: int = param(50, ge=1, le=1_000_000,
                   doc="neighbours kept per item (item-kNN) or user (user-kNN)")
    min_similarity: float = param(0.0, doc="neighbours with a lower similarity are dropped")
    shrinkage: float = param(0.0, ge=0.0, doc="beta in sim * n / (n + beta), n = co-support")
    min_support: int = param(1, ge=1, le=10**9, doc="minimum co-support of a neighbour pair")
    weighting: str = param("none", choices=WEIGHTINGS, doc="BM25/TF-IDF input weighting")
    bm25_k1: float = param(1.2, ge=0.0, doc="BM25 term saturation k1")
    bm25_b: float = param(0.75, ge=0.0, le=1.0, doc="BM25 length normalisation b")
    binary: bool = param(False, doc="treat every interaction as 1 (similarity and scoring)")
    values: str = param(DEFAULT_TRANSFORM, choices=VALUE_TRANSFORMS,
                        doc="transform of implicit event values (counts): bm25 "
                            "saturation, log1p, binary, none (recoforge.data.transforms); "
                            "explicit ratings are used as they are")
    rating_variant: str = param("baseline", choices=VARIANTS, doc="rating prediction form")
    predict_k: int | None = param(None, ge=1, le=1_000_000,
                                  doc="neighbours used per rating (None: all)")
    reg_user: float = param(15.0, ge=0.0, doc="user-bias damping of the baseline")
    reg_item: float = param(10.0, ge=0.0, doc="item-bias damping of the baseline")
    baseline_epochs: int = param(10, ge=1, le=1000, doc="ALS passes of the baseline")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_options(self.similarity, self.weighting, self.k, self.shrinkage,
                      self.min_support)
        if self.binary and self.similarity in CENTRED:
            raise ConfigError(f"similarity={self.similarity!r} centres ratings; it cannot "
                              "be combined with binary=True")


@numba.njit(cache=True, parallel=True)
def _neighbour_sums(order, group_ptr, pair_nb, pair_key, nb_indptr, nb_indices, nb_sims,
                    l_indptr, l_indices, l_data, by_neighbour_row, offset, row_off, col_off,
                    n_cols, predict_k, n_chunks, out_num, out_den, out_count):
    """For each pair: sum sim * residual and sum |sim| over its rated neighbours.

    Pairs are grouped by key (``order``/``group_ptr``): the key's ratings row of the lookup
    CSR (item-kNN: the user's ratings; user-kNN: the item's raters) is scattered once into a
    dense per-thread array, then each pair walks its neighbour row ``pair_nb[p]`` with O(1)
    lookups. residual = r - (offset + row_off[row] + col_off[col]) with (row, col) =
    (neighbour user, item) for user-kNN and (user, neighbour item) for item-kNN.
    """
    n_groups = group_ptr.shape[0] - 1
    longest = max(1, np.diff(nb_indptr).max())
    for chunk in numba.prange(n_chunks):
        residual = np.zeros(n_cols, np.float64)
        rated = np.zeros(n_cols, np.bool_)
        sims = np.empty(longest, np.float64)
        res = np.empty(longest, np.float64)
        for g in range(chunk, n_groups, n_chunks):
            key = np.int64(pair_key[order[group_ptr[g]]])
            for s in range(l_indptr[key], l_indptr[key + 1]):
                x = np.int64(l_indices[s])
                row, col = (x, key) if by_neighbour_row else (key, x)
                residual[x] = l_data[s] - (offset + row_off[row] + col_off[col])
                rated[x] = True
            for t in range(group_ptr[g], group_ptr[g + 1]):
                p = order[t]
                m = 0
                for q in range(nb_indptr[pair_nb[p]], nb_indptr[pair_nb[p] + 1]):
                    x = nb_indices[q]
                    if rated[x]:
                        sims[m] = nb_sims[q]
                        res[m] = residual[x]
                        m += 1
                out_num[p], out_den[p], out_count[p] = _top_sums(sims, res, m, predict_k)
            for s in range(l_indptr[key], l_indptr[key + 1]):
                rated[l_indices[s]] = False


@numba.njit(cache=True, parallel=True)
def _neighbour_sums_by_list(order, group_ptr, pair_nb, pair_key, nb_indptr, nb_indices,
                            nb_sims, l_indptr, l_indices, l_data, by_neighbour_row, offset,
                            row_off, col_off, n_cols, predict_k, n_chunks, out_num, out_den,
                            out_count):
    """As :func:`_neighbour_sums`, for long neighbour lists: pairs are grouped by neighbour
    row, which is scattered once; each pair then walks its (shorter) ratings row."""
    n_groups = group_ptr.shape[0] - 1
    longest = max(1, np.diff(l_indptr).max())
    for chunk in numba.prange(n_chunks):
        weight = np.zeros(n_cols, np.float64)
        sims = np.empty(longest, np.float64)
        res = np.empty(longest, np.float64)
        for g in range(chunk, n_groups, n_chunks):
            a = pair_nb[order[group_ptr[g]]]
            for q in range(nb_indptr[a], nb_indptr[a + 1]):
                weight[nb_indices[q]] = nb_sims[q]
            for t in range(group_ptr[g], group_ptr[g + 1]):
                p = order[t]
                key = np.int64(pair_key[p])
                m = 0
                for s in range(l_indptr[key], l_indptr[key + 1]):
                    x = np.int64(l_indices[s])
                    if weight[x] != 0:
                        row, col = (x, key) if by_neighbour_row else (key, x)
                        sims[m] = weight[x]
                        res[m] = l_data[s] - (offset + row_off[row] + col_off[col])
                        m += 1
                out_num[p], out_den[p], out_count[p] = _top_sums(sims, res, m, predict_k)
            for q in range(nb_indptr[a], nb_indptr[a + 1]):
                weight[nb_indices[q]] = 0.0


@numba.njit(cache=True)
def _top_sums(sims, res, m, predict_k):
    """(sum sim * res, sum |sim|, count) over the predict_k largest of sims[:m]."""
    cut = -np.inf
    if m > predict_k:  # above the k-th largest, then ties in order
        cut = -np.partition(-sims[:m], predict_k - 1)[predict_k - 1]
    num, den, used = 0.0, 0.0, 0
    for c in range(m):
        if sims[c] > cut:
            num += sims[c] * res[c]
            den += abs(sims[c])
            used += 1
    for c in range(m):
        if used < predict_k and sims[c] == cut:
            num += sims[c] * res[c]
            den += abs(sims[c])
            used += 1
    return num, den, used


class _NeighbourModel(Recommender):
    """Shared fitting of baselines/means and the rating-prediction machinery."""

    Config = KNNConfig
    #: the training users' ratings that neighbours contribute (user_knn's learned state)
    neighbour_ratings_: sp.csr_matrix
    predicts_ratings = True

    def _fit_baselines(self, data: Dataset) -> None:
        cfg = self.config
        if data.kind != "explicit" and cfg.similarity in CENTRED:
            raise ConfigError(f"similarity={cfg.similarity!r} needs explicit ratings "
                              f"(data kind {data.kind!r}); use cosine, dot or jaccard")
        ratings = self.train_matrix_
        mu, b_u, b_i = bias_estimates(ratings, cfg.reg_user, cfg.reg_item,
                                      cfg.baseline_epochs)
        self.global_mean_, self.user_bias_, self.item_bias_ = mu, b_u, b_i
        self.user_means_ = row_means(ratings)
        self.item_means_ = row_means(ratings.T.tocsr())
        self.rating_min_ = float(ratings.data.min())
        self.rating_max_ = float(ratings.data.max())
        self._by_item: sp.csr_matrix | None = None

    def _item_major(self) -> sp.csr_matrix:
        """Training ratings as item x user CSR with sorted indices (cached)."""
        if getattr(self, "_by_item", None) is None:
            self._by_item = self.neighbour_ratings_.T.tocsr()
            self._by_item.sort_indices()
        return self._by_item

    def _values(self, matrix: sp.csr_matrix) -> sp.csr_matrix:
        """Interaction values as used for similarity and top-N: ones when ``binary``;
        on implicit data the ``values`` transform (bm25 saturation by default)."""
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        if self.config.binary:
            matrix = sp.csr_matrix((np.ones_like(matrix.data), matrix.indices, matrix.indptr),
                                   shape=matrix.shape)
        elif self.data_kind_ == "implicit" and self.config.values != "none":
            matrix = transform_matrix(matrix, self.config.values)
        return matrix

    def _offsets(self, centre_items: bool) -> tuple[float, np.ndarray, np.ndarray]:
        """(offset, per-user, per-item) of the chosen rating variant."""
        n_users, n_items = len(self.user_bias_), len(self.item_bias_)
        variant = self.config.rating_variant
        if variant == "baseline":
            return self.global_mean_, self.user_bias_, self.item_bias_
        if variant == "mean-centred":
            if centre_items:
                return 0.0, np.zeros(n_users), self.item_means_
            return 0.0, self.user_means_, np.zeros(n_items)
        return 0.0, np.zeros(n_users), np.zeros(n_items)

    def _predict_with(self, neighbours: sp.csr_matrix, pair_list: np.ndarray,
                      pair_key: np.ndarray, by_neighbour_row: bool, users: np.ndarray,
                      items: np.ndarray) -> np.ndarray:
        if self.data_kind_ != "explicit":
            raise NotSupportedError(f"{self.name} predicts ratings only from explicit data")
        if not len(users):
            return np.empty(0)
        offset, row_off, col_off = self._offsets(centre_items=not by_neighbour_row)
        ratings = self._item_major() if by_neighbour_row else self.train_matrix_
        n = len(users)
        num, den = np.zeros(n), np.zeros(n)
        count = np.zeros(n, np.int64)
        predict_k = self.config.predict_k or max(1, neighbours.shape[1])
        # group pairs by whichever side is longer, scatter it once, walk the other
        nb_len = np.diff(neighbours.indptr)[pair_list].mean() if n else 0.0
        key_len = np.diff(ratings.indptr)[pair_key].mean() if n else 0.0
        by_list = nb_len > key_len
        group = pair_list if by_list else pair_key
        order = np.argsort(group, kind="stable")
        starts = np.flatnonzero(np.diff(group[order])) + 1
        group_ptr = np.concatenate([[0], starts, [n]]).astype(np.int64)
        n_chunks = max(1, min(len(group_ptr) - 1, 8 * numba.get_num_threads()))
        kernel = _neighbour_sums_by_list if by_list else _neighbour_sums
        kernel(order.astype(np.int64), group_ptr, pair_list.astype(np.int64),
               pair_key.astype(np.int64), neighbours.indptr.astype(np.int64),
               neighbours.indices.astype(np.int32), neighbours.data.astype(np.float64),
               ratings.indptr.astype(np.int64), ratings.indices.astype(np.int32),
               ratings.data.astype(np.float64), by_neighbour_row, float(offset),
               np.asarray(row_off, np.float64), np.asarray(col_off, np.float64),
               neighbours.shape[1], int(predict_k), n_chunks, num, den, count)
        base = offset + row_off[users] + col_off[items]
        if self.config.rating_variant == "plain":
            base = np.zeros(n)
        fallback = self.global_mean_ + self.user_bias_[users] + self.item_bias_[items]
        has = den > 0
        pred = np.where(has, base + np.divide(num, den, out=np.zeros(n), where=has), fallback)
        return np.clip(pred, self.rating_min_, self.rating_max_)


@register
class ItemKNN(_NeighbourModel):
    """Item-based k-nearest neighbours (top-N and rating prediction).

    State: ``similarity_``, a CSR (n_items, n_items) whose row i holds item i's ``k``
    nearest items. Explanations list the history items behind a score.

    References
    ----------
    Sarwar, Karypis, Konstan, Riedl (2001), "Item-based collaborative filtering
    recommendation algorithms", WWW; Deshpande & Karypis (2004), "Item-based top-N
    recommendation algorithms", ACM TOIS 22(1).
    """

    name = "item_knn"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"similarity_": "items x items"}

    @guard_fit
    def _fit(self, data: Dataset) -> None:
        self._fit_baselines(data)
        cfg = self.config
        n_items = self.train_matrix_.shape[1]  # top-k lists + per-thread scratch rows
        check_allocation(dense_bytes(n_items, min(cfg.k, n_items), itemsize=24)
                         + dense_bytes(numba.get_num_threads(), n_items, itemsize=32),
                         f"item_knn with k={cfg.k} ({n_items} items)", advice="lower k")
        item_rows = self._values(self.train_matrix_).T.tocsr()
        baseline = (self.global_mean_, self.item_bias_, self.user_bias_)
        self.similarity_ = similarity_matrix(
            item_rows, cfg.k, cfg.similarity, shrinkage=cfg.shrinkage,
            min_similarity=cfg.min_similarity, min_support=cfg.min_support,
            weighting=cfg.weighting, bm25_k1=cfg.bm25_k1, bm25_b=cfg.bm25_b,
            baseline=baseline)

    def _score(self, query: Query) -> np.ndarray:
        histories = query.history
        return neighbour_scores(self._values(histories), self.similarity_)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._predict_with(self.similarity_, items, users, False, users, items)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self.similarity_[items].toarray().astype(np.float32, copy=False)

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        histories = query.history
        history = self._values(histories[:1])
        column = self.similarity_[:, [item]].toarray().ravel()
        contributions = history.data * column[history.indices]
        keep = contributions != 0
        return "item", history.indices[keep], contributions[keep]


@register
class UserKNN(_NeighbourModel):
    """User-based k-nearest neighbours, neighbours found on the fly from the history row.

    A known user is never their own neighbour; a history query may match a training user
    with the same items (so history queries can differ from known-user queries).

    References
    ----------
    Herlocker, Konstan, Borchers, Riedl (1999), "An algorithmic framework for performing
    collaborative filtering", SIGIR; Resnick et al. (1994), "GroupLens", CSCW.
    """

    name = "user_knn"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"idf_": "items", "average_length_": "float",
                  "neighbour_ratings_": "users x items"}

    def _fit(self, data: Dataset) -> None:
        self._fit_baselines(data)
        self.neighbour_ratings_ = sp.csr_matrix(self.train_matrix_, dtype=np.float32)
        values = self._values(self.neighbour_ratings_)
        self.idf_ = column_idf(values)
        lengths = np.asarray(values.sum(axis=1), np.float64).ravel()
        self.average_length_ = float(lengths.mean())
        self._targets: tuple[sp.csr_matrix, sp.csr_matrix] | None = None

    def _target_rows(self) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Training users transformed for the similarity, and its inverted index (cached)."""
        if getattr(self, "_targets", None) is None:
            rows = self._query_rows(self.neighbour_ratings_, self.user_bias_)
            self._targets = (rows, rows.T.tocsr())
        assert self._targets is not None
        return self._targets

    def _query_rows(self, histories: sp.csr_matrix,
                    user_bias: np.ndarray | None = None) -> sp.csr_matrix:
        cfg = self.config
        values = self._values(histories)
        baseline = None
        if cfg.similarity == "pearson_baseline":
            if user_bias is None:
                user_bias = user_bias_from_history(values, self.global_mean_, self.item_bias_,
                                                   cfg.reg_user)
            baseline = (self.global_mean_, user_bias, self.item_bias_)
        return prepare_rows(values, cfg.similarity, column_means=self.item_means_,
                            baseline=baseline, weighting=cfg.weighting, idf=self.idf_,
                            average_length=self.average_length_, bm25_k1=cfg.bm25_k1,
                            bm25_b=cfg.bm25_b)

    def _neighbours(self, histories: sp.csr_matrix, users: np.ndarray | None,
                    k: int, exclude: np.ndarray | None = None) -> sp.csr_matrix:
        """Each history row's top-``k`` training users; ``users`` (stored rows) supply
        their trained biases, ``exclude`` (default ``users``; -1: none) the user to skip."""
        cfg = self.config
        targets, inverted = self._target_rows()
        if exclude is None and users is not None:
            exclude = np.asarray(users, np.int64)
        bias = None if users is None else self.user_bias_[users]
        found = topk_neighbours(self._query_rows(histories, bias), targets, k,
                                measure=cfg.similarity, inverted=inverted, exclude=exclude,
                                shrinkage=cfg.shrinkage, min_similarity=cfg.min_similarity,
                                min_support=cfg.min_support)
        return found.to_csr(targets.shape[0])

    def _score(self, query: Query) -> np.ndarray:
        weights = self._neighbours(query.history, query.stored_users, self.config.k,
                                   exclude=query.users)
        scores = weights @ self._values(self.neighbour_ratings_)
        return scores.toarray().astype(np.float32, copy=False)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        unique, pair_list = np.unique(users, return_inverse=True)
        k = min(self.config.k, len(self.user_index_))
        batch = max(1, (1 << 24) // k)  # neighbour lists of one batch: <= 16M entries
        out = np.empty(len(users))
        for start in range(0, len(unique), batch):
            block = unique[start:start + batch]
            sel = (pair_list >= start) & (pair_list < start + len(block))
            neighbours = self._neighbours(self.neighbour_ratings_[block], block, k)
            out[sel] = self._predict_with(neighbours, pair_list[sel] - start, items[sel], True,
                                          users[sel], items[sel])
        return out

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        weights = self._neighbours(query.history[:1], query.stored_users, self.config.k,
                                   exclude=query.users[:1])
        column = self._values(self.neighbour_ratings_)[:, [item]].toarray().ravel()
        contributions = weights.data * column[weights.indices]
        keep = contributions != 0
        return "user", weights.indices[keep], contributions[keep]
