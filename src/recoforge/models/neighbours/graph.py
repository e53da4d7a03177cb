"""Random walks on the user-item bipartite graph: P3alpha, RP3beta, personalized PageRank.

With R the binary user-item matrix, P_ui = R / deg(u) and P_iu = R^T / deg(i) the
one-step transition probabilities:

- **P3alpha**: W = P_iu^alpha P_ui^alpha (elementwise powers), the three-step walk
  item -> user -> item; **RP3beta** further divides column j by deg(j)^beta to demote
  popular items. Each item keeps its ``top_k`` best neighbours (rows optionally rescaled
  to sum to 1); a query scores s = h W with h its binary history. Fit with the sparse
  top-k kernel of :mod:`recoforge.models.neighbours.similarity`: time O(sum_u deg(u)^2), memory
  O(nnz + n_items * top_k), never a dense n_items x n_items matrix.
- **PageRank** (random walk with restart): x = c q + (1 - c) x P_iu P_ui iterated from
  x = q, the restart distribution q being the query's history (or one item, for related
  items); scores x_j / deg(j)^beta. Power iteration on sparse matrices, batched over
  queries: O(n_iter * nnz(R)) per query, dense blocks of at most 64 MiB.

Items without walk evidence rank after all others, by popularity.

References
----------
Christoffel, Paudel, Newell, Bernstein (2015), "Blockbusters and wallflowers: accurate,
diverse, and scalable recommendations with random walks", RecSys.
Paudel, Christoffel, Newell, Bernstein (2017), "Updatable, accurate, diverse, and scalable
recommendations for interactive applications", ACM TiiS (RP3beta).
Haveliwala (2002), "Topic-sensitive PageRank", WWW (personalized PageRank).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.models.base import Recommender
from recoforge.models.neighbours.covisitation import fill_unscored
from recoforge.models.neighbours.similarity import neighbour_scores, topk_neighbours
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit

DENSE_BLOCK_BYTES = 1 << 26  # 64 MiB


def binary_csr(matrix: sp.spmatrix) -> sp.csr_matrix:
    """The nonzero pattern of ``matrix`` as a float32 CSR of ones."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    out.data[:] = 1.0
    return out


def row_normalize(matrix: sp.csr_matrix, power: float = 1.0) -> sp.csr_matrix:
    """Rows divided by their sums (zero rows stay zero), then raised to ``power``."""
    sums = np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()
    sums[sums == 0] = 1.0
    out = (sp.diags((1.0 / sums).astype(np.float32)) @ matrix).tocsr()
    if power != 1.0:
        out.data **= np.float32(power)
    return out


class _ItemWalk(Recommender):
    """Shared fit and scoring of P3alpha / RP3beta (not registered)."""
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"similarity_": "items x items", "item_degree_": "items"}

    def _beta(self) -> float:
        return 0.0

    @guard_fit
    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        n_items = data.n_items  # top-k lists (+ CSR copy) and per-thread scratch rows
        check_allocation(dense_bytes(n_items, min(cfg.top_k, n_items), itemsize=24)
                         + dense_bytes(os.cpu_count() or 1, n_items, itemsize=32),
                         f"{self.name} with top_k={cfg.top_k} ({n_items} items)",
                         advice="lower top_k")
        user_item = binary_csr(data.matrix())
        degree = np.asarray(user_item.sum(axis=0), dtype=np.float64).ravel()
        p_ui = row_normalize(user_item, cfg.alpha)
        p_iu = row_normalize(user_item.T.tocsr(), cfg.alpha)
        beta = self._beta()
        penalty = np.where(degree > 0, np.maximum(degree, 1.0) ** -beta, 0.0) \
            .astype(np.float32)

        # W_ij = sum_u P_iu[i, u] P_ui[u, j] deg(j)^-beta: a dot product of item rows
        inverted = (p_ui @ sp.diags(penalty)).tocsr()  # (n_users, n_items): targets^T
        similarity = topk_neighbours(p_iu, inverted.T.tocsr(), cfg.top_k, measure="dot",
                                     inverted=inverted,
                                     exclude=np.arange(data.n_items)).to_csr(data.n_items)
        if cfg.normalize_rows:
            similarity = row_normalize(similarity)
        self.similarity_ = similarity
        self.item_degree_ = degree.astype(np.float32)

    def _score(self, query: Query) -> np.ndarray:
        histories = query.history
        scores = neighbour_scores(binary_csr(histories), self.similarity_)
        return fill_unscored(scores, self.item_degree_)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        return self.similarity_[items].toarray().astype(np.float32)

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """History items a with W[a, item] (binary history: they sum to the score)."""
        histories = query.history
        history = binary_csr(histories[:1])
        contributions = self.similarity_[history.indices, item].toarray().ravel()
        keep = contributions != 0
        return "item", history.indices[keep], contributions[keep]


@register
class P3Alpha(_ItemWalk):
    """Three-step random walk item -> user -> item with transition probabilities ^ alpha."""

    name = "p3alpha"

    @dataclass(frozen=True)
    class Config(ModelConfig):
        alpha: float = param(1.0, gt=0.0, le=5.0, doc="exponent of transition probabilities")
        top_k: int = param(100, ge=1, le=1_000_000, doc="neighbours kept per item")
        normalize_rows: bool = param(False, doc="rescale each item's neighbours to sum 1")


@register
class RP3Beta(_ItemWalk):
    """P3alpha with the target item's walk probability divided by its degree^beta."""

    name = "rp3beta"

    @dataclass(frozen=True)
    class Config(P3Alpha.Config):
        beta: float = param(0.5, ge=0.0, le=2.0, doc="popularity penalty exponent")

    def _beta(self) -> float:
        return self.config.beta


@register
class PersonalizedPageRank(Recommender):
    """Random walk with restart to the query's history items on the user-item graph."""

    name = "pagerank"
    #: an empty history restarts the walk from the degree distribution: still meaningful
    needs_history = False
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"to_users_": "users x items", "to_items_": "items x users",
                  "item_degree_": "items", "penalty_": "items"}

    @dataclass(frozen=True)
    class Config(ModelConfig):
        restart: float = param(0.3, gt=0.0, lt=1.0,
                               doc="probability c of jumping back to the query items per "
                                   "two-step (item -> user -> item) move")
        n_iter: int = param(20, ge=1, le=1000, doc="maximum power iterations")
        tol: float = param(1e-6, ge=0.0, doc="stop when the L1 change of every query is "
                                             "below this (0: always run n_iter)")
        beta: float = param(0.0, ge=0.0, le=2.0,
                            doc="divide item scores by degree^beta (popularity penalty)")

    def _fit(self, data: Dataset) -> None:
        user_item = binary_csr(data.matrix())
        degree = np.asarray(user_item.sum(axis=0), dtype=np.float64).ravel()
        # transposed transition matrices: the walk runs on columns X^T (n_items, n_queries)
        self.to_users_ = row_normalize(user_item.T.tocsr()).T.tocsr()  # (n_users, n_items)
        self.to_items_ = row_normalize(user_item).T.tocsr()  # (n_items, n_users)
        self.item_degree_ = degree.astype(np.float32)
        penalty = np.where(degree > 0, np.maximum(degree, 1.0) ** -self.config.beta, 0.0)
        self.penalty_ = penalty.astype(np.float32)

    def walk(self, restart_rows: sp.csr_matrix) -> np.ndarray:
        """Personalized PageRank (n, n_items) of L1-normalised restart rows, batched."""
        cfg = self.config
        n, n_items = restart_rows.shape
        n_users = self.to_users_.shape[0]
        chunk = max(1, DENSE_BLOCK_BYTES // (4 * 3 * (n_users + n_items)))
        out = np.empty((n, n_items), dtype=np.float32)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            restart = row_normalize(sp.csr_matrix(restart_rows[start:stop])).T.toarray()
            restart = restart.astype(np.float32)
            state = restart.copy()
            for _ in range(cfg.n_iter):
                moved = self.to_items_ @ (self.to_users_ @ state)
                new = cfg.restart * restart + (1.0 - cfg.restart) * moved
                change = np.abs(new - state).sum(axis=0).max() if new.size else 0.0
                state = new.astype(np.float32, copy=False)
                if change < cfg.tol:
                    break
            out[start:stop] = state.T
        return out

    def _score(self, query: Query) -> np.ndarray:
        histories = query.history
        scores = self.walk(binary_csr(histories)) * self.penalty_
        return fill_unscored(scores, self.item_degree_)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        rows = sp.csr_matrix((np.ones(len(items), np.float32),
                              (np.arange(len(items)), items)),
                             shape=(len(items), len(self.item_index_)))
        return self.walk(rows) * self.penalty_

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """PageRank is linear in the restart vector: x = sum_a q_a PPR(a), exactly split."""
        histories = query.history
        history = binary_csr(histories[:1])
        keys = history.indices
        if len(keys) == 0:
            return "item", keys, np.zeros(0)
        one_hot = sp.csr_matrix((np.ones(len(keys), np.float32), (np.arange(len(keys)), keys)),
                                shape=(len(keys), len(self.item_index_)))
        per_item = self.walk(one_hot)[:, item] * self.penalty_[item] / len(keys)
        return "item", keys, per_item
