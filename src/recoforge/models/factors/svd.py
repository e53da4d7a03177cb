"""PureSVD: truncated SVD of the user-item matrix, scoring by projection on the item space.

R ~ U_k S_k V_k^T (k = ``n_factors``) by a sparse solver (ARPACK ``svds`` or a randomized
range finder), never a dense copy of R. A user's scores are their history row projected
on the item factors and back, s = r V V^T; a user's factors are r V (= U S on training
rows), so new users need no retraining. Optional centring subtracts the user's (or the
item's) mean rating from the *observed* entries only, keeping R sparse; the mean is added
back as a bias. Fit O(nnz k + (n_users + n_items) k^2) per solver iteration, memory
O(nnz + (n_users + n_items) k).

References
----------
Cremonesi, Koren, Turrin (2010), "Performance of recommender algorithms on top-N
recommendation tasks" (PureSVD).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError
from recoforge.models.factors.core import FactorModel
from recoforge.models.params import ModelConfig, param, seed_param
from recoforge.models.query import Query
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit


@register
class PureSVD(FactorModel):
    """Truncated SVD (PureSVD) with fold-in by projection.

    Parameters
    ----------
    n_factors : int
        Rank k of the truncation (< min(n_users, n_items)).
    centering : {"none", "user", "item"}
        Subtract the user's or item's mean from observed ratings before the SVD.
    solver : {"arpack", "randomized"}
        ``scipy.sparse.linalg.svds`` (ARPACK) or Halko et al.'s randomized SVD.
    n_oversamples, n_power_iterations : int
        Randomized solver only.
    seed : int, optional
        Seeds the solver's starting vectors.
    """

    name = "pure_svd"

    @dataclass(frozen=True)
    class Config(ModelConfig):
        n_factors: int = param(50, ge=1, le=10_000, doc="rank k of the truncated SVD")
        centering: str = param("none", choices=("none", "user", "item"),
                               doc="subtract user or item means from observed entries")
        solver: str = param("arpack", choices=("arpack", "randomized"),
                            doc="sparse SVD solver")
        n_oversamples: int = param(10, ge=0, le=10_000,
                                   doc="randomized solver: extra range vectors")
        n_power_iterations: int = param(4, ge=0, le=1000,
                                        doc="randomized solver: power iterations")
        seed: int | None = seed_param("seed of the solver's starting vectors")

    @guard_fit
    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        n_users, n_items = self.train_matrix_.shape
        if cfg.n_factors >= min(n_users, n_items):
            raise ConfigError(f"n_factors={cfg.n_factors} must be < min(n_users, n_items) = "
                              f"{min(n_users, n_items)} for a truncated SVD")
        width = 3 * cfg.n_factors + cfg.n_oversamples + 1  # solver bases + factors
        check_allocation(dense_bytes(n_users + n_items, width, itemsize=8),
                         f"pure_svd of rank {cfg.n_factors} ({n_users} users, {n_items} items)",
                         advice="lower n_factors")
        if cfg.centering != "none" and data.kind == "implicit":
            raise ConfigError(f"centering={cfg.centering!r} needs explicit ratings (implicit "
                              f"events all equal their mean); use centering='none'")
        matrix = sp.csr_matrix(self.train_matrix_, dtype=np.float64)
        self.item_bias_ = None  # type: ignore[assignment]  # no biases unless centring
        if cfg.centering == "item":
            sums = np.bincount(matrix.indices, weights=matrix.data, minlength=n_items)
            counts = np.bincount(matrix.indices, minlength=n_items)
            self.item_bias_ = (sums / np.maximum(counts, 1)).astype(np.float32)
        centred, _ = self._centre(matrix)
        vt = self._right_singular_vectors(centred)
        self.item_factors_ = np.ascontiguousarray(vt.T, dtype=np.float32)
        self.user_factors_, user_bias = self.fold_in(self.train_matrix_)
        if cfg.centering != "none":  # scores = mean + r V V^T (FactorModel adds biases)
            self.global_bias_ = 0.0
            self.user_bias_ = user_bias
            if self.item_bias_ is None:
                self.item_bias_ = np.zeros(n_items, np.float32)

    def _right_singular_vectors(self, matrix: sp.csr_matrix) -> np.ndarray:
        """V^T (k x n_items), rows by decreasing singular value."""
        cfg = self.config
        if matrix.nnz == 0 or not np.any(matrix.data):
            raise ConfigError("the (centred) rating matrix is all zeros; nothing to factorise")
        if cfg.solver == "arpack":
            rng = np.random.default_rng(cfg.seed)
            start = rng.uniform(-1.0, 1.0, min(matrix.shape))
            _, sigma, vt = svds(matrix, k=cfg.n_factors, v0=start)
            return vt[np.argsort(-sigma, kind="stable")]
        from sklearn.utils.extmath import randomized_svd

        _, _, vt = randomized_svd(matrix, cfg.n_factors, n_oversamples=cfg.n_oversamples,
                                  n_iter=cfg.n_power_iterations, random_state=cfg.seed)
        return vt

    def _centre(self, histories: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
        """(centred rows, row biases): observed entries minus the user or item mean."""
        histories = sp.csr_matrix(histories, dtype=np.float64, copy=True)
        counts = np.diff(histories.indptr)
        biases = np.zeros(histories.shape[0], np.float64)
        if self.config.centering == "user":
            rows = np.repeat(np.arange(len(counts)), counts)
            sums = np.bincount(rows, weights=histories.data, minlength=len(counts))
            biases = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
            histories.data -= np.repeat(biases, counts)
        elif self.config.centering == "item":
            histories.data -= self.item_bias_[histories.indices]
        return histories, biases

    # ------------------------------------------------------------------ contract
    def fold_in(self, histories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Factors r V of each (centred) history row, and the row's mean as its bias."""
        centred, biases = self._centre(histories)
        factors = centred @ self.item_factors_.astype(np.float64)
        return factors.astype(np.float32), biases.astype(np.float32)

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Contribution of history item j to s_i: r_j v_j . v_i (centred r_j)."""
        histories = query.history
        centred, _ = self._centre(sp.csr_matrix(histories)[:1])
        items = centred.indices.astype(np.int64)
        factors = self.item_factors_.astype(np.float64)
        return "item", items, centred.data * (factors[items] @ factors[item])
