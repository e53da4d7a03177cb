"""Alternating least squares: explicit (weighted-lambda) and implicit (Hu et al.) factorisation.

Explicit (``"als"``, Zhou et al. 2008): minimise
sum_(u,i) observed (r_ui - mu - b_u - b_i - p_u.q_i)^2 + lambda (sum_u n_u |p_u, b_u|^2 +
sum_i n_i |q_i, b_i|^2), alternating exact ridge solves for users and items (biases ride
along as an extra column of the factors).

Implicit (``"implicit_als"``, Hu, Koren, Volinsky 2008): preference P = [R > 0], confidence
C = 1 + alpha v(R) with v the ``values`` transform (bm25 by default); minimise
sum_(u,i) c_ui (p_ui - x_u.y_i)^2 + lambda (|X|^2 + |Y|^2) over *all* pairs. Each row
solves (Y^T Y + Y^T (C_u - I) Y + lambda I) x_u = Y^T C_u p_u with Y^T Y computed once
per half-step (BLAS), by a few warm-started conjugate-gradient steps
(Takacs, Pilaszy, Tikk 2011; the implicit library's default) or exactly (Cholesky).

Per-row solves are numba kernels, parallel over rows (``n_threads``, default the one
setting of :mod:`recoforge.threads`). Factors are float32. Memory
O(nnz + (n_users + n_items) d); time per iteration O(nnz d s + (n_users + n_items) d^2 s)
with s CG steps, O(nnz d^2 + n d^3) exact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from numba import prange

from recoforge.data.dataset import Dataset
from recoforge.data.transforms import (
    DEFAULT_TRANSFORM,
    VALUE_TRANSFORMS,
    transform_matrix,
    transform_values,
)
from recoforge.errors import ConfigError
from recoforge.models.factors.core import FactorModel
from recoforge.models.params import ModelConfig, param, seed_param
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit
from recoforge.threads import numba_threads

BLOCKS_PER_THREAD = 8


# --------------------------------------------------------------------------- kernels
@numba.njit(cache=True, fastmath=True)
def _row_residual(start, stop, indices, weights, targets, design, base, has_base, ridge, x, r):
    """r = b - A x for one row, A = base + ridge I + sum w y y^T, b = sum t y."""
    d = x.shape[0]
    for a in range(d):
        acc = ridge * x[a]
        if has_base:
            for b in range(d):
                acc += base[a, b] * x[b]
        r[a] = -acc
    for idx in range(start, stop):
        y = design[indices[idx]]
        yx = np.float32(0.0)
        for a in range(d):
            yx += y[a] * x[a]
        coef = targets[idx] - weights[idx] * yx
        for a in range(d):
            r[a] += coef * y[a]


@numba.njit(cache=True, fastmath=True)
def _row_product(start, stop, indices, weights, design, base, has_base, ridge, p, ap):
    """ap = A p for one row, without forming A."""
    d = p.shape[0]
    for a in range(d):
        acc = ridge * p[a]
        if has_base:
            for b in range(d):
                acc += base[a, b] * p[b]
        ap[a] = acc
    for idx in range(start, stop):
        y = design[indices[idx]]
        yp = np.float32(0.0)
        for a in range(d):
            yp += y[a] * p[a]
        coef = weights[idx] * yp
        for a in range(d):
            ap[a] += coef * y[a]


@numba.njit(cache=True, parallel=True, fastmath=True)
def _solve_cg(indptr, indices, weights, targets, design, base, has_base, ridge, x_all,
              n_blocks, cg_steps):  # pragma: no cover - compiled
    """Warm-started CG on every row's normal equations; updates ``x_all`` in place.

    Rows are dealt round-robin to ``n_blocks`` parallel blocks (balances long histories).
    """
    n, d = x_all.shape
    for block in prange(n_blocks):
        r = np.empty(d, np.float32)
        p = np.empty(d, np.float32)
        ap = np.empty(d, np.float32)
        for u in range(block, n, n_blocks):
            start, stop = indptr[u], indptr[u + 1]
            x = x_all[u]
            if start == stop:
                x[:] = 0.0
                continue
            _row_residual(start, stop, indices, weights, targets, design, base, has_base,
                          ridge[u], x, r)
            p[:] = r
            rs_old = np.float32(0.0)
            for a in range(d):
                rs_old += r[a] * r[a]
            for _ in range(cg_steps):
                if rs_old < 1e-20:
                    break
                _row_product(start, stop, indices, weights, design, base, has_base, ridge[u],
                             p, ap)
                pap = np.float32(0.0)
                for a in range(d):
                    pap += p[a] * ap[a]
                if pap <= 0.0:
                    break
                step = rs_old / pap
                rs_new = np.float32(0.0)
                for a in range(d):
                    x[a] += step * p[a]
                    r[a] -= step * ap[a]
                    rs_new += r[a] * r[a]
                for a in range(d):
                    p[a] = r[a] + (rs_new / rs_old) * p[a]
                rs_old = rs_new


@numba.njit(cache=True, parallel=True, fastmath=True)
def _solve_cholesky(indptr, indices, weights, targets, design, base, has_base, ridge,
                    x_all, n_blocks):  # pragma: no cover - compiled
    """Exact solve of every row's normal equations (float64 Cholesky); writes ``x_all``."""
    n, d = x_all.shape
    for block in prange(n_blocks):
        a = np.empty((d, d), np.float64)
        b = np.empty(d, np.float64)
        for u in range(block, n, n_blocks):
            start, stop = indptr[u], indptr[u + 1]
            if start == stop:
                x_all[u, :] = 0.0
                continue
            for i in range(d):
                b[i] = 0.0
                for j in range(i + 1):
                    a[i, j] = base[i, j] if has_base else 0.0
                a[i, i] += ridge[u]
            for idx in range(start, stop):
                y = design[indices[idx]]
                w, t = weights[idx], targets[idx]
                for i in range(d):
                    wy = w * y[i]
                    b[i] += t * y[i]
                    for j in range(i + 1):
                        a[i, j] += wy * y[j]
            _cholesky_solve_inplace(a, b)
            for i in range(d):
                x_all[u, i] = b[i]


@numba.njit(cache=True, fastmath=True)
def _cholesky_solve_inplace(a, b):
    """Solve a x = b (a symmetric positive definite, lower triangle used); x into b."""
    d = b.shape[0]
    for j in range(d):
        s = a[j, j]
        for k in range(j):
            s -= a[j, k] * a[j, k]
        diag = np.sqrt(max(s, 1e-12))
        a[j, j] = diag
        for i in range(j + 1, d):
            s = a[i, j]
            for k in range(j):
                s -= a[i, k] * a[j, k]
            a[i, j] = s / diag
    for i in range(d):  # forward: L z = b
        s = b[i]
        for k in range(i):
            s -= a[i, k] * b[k]
        b[i] = s / a[i, i]
    for i in range(d - 1, -1, -1):  # backward: L^T x = z
        s = b[i]
        for k in range(i + 1, d):
            s -= a[k, i] * b[k]
        b[i] = s / a[i, i]


@numba.njit(cache=True, parallel=True, fastmath=True)
def _observed_loss(indptr, indices, values, x_all, design, offsets, alpha,
                   implicit):  # pragma: no cover - compiled
    """Data term over observed pairs: implicit sum c (1-s)^2 - s^2, explicit sum (r-s)^2."""
    n, d = x_all.shape
    total = 0.0
    for u in prange(n):
        x = x_all[u]
        for idx in range(indptr[u], indptr[u + 1]):
            y = design[indices[idx]]
            s = 0.0
            for a in range(d):
                s += x[a] * y[a]
            if implicit:
                total += (1.0 + alpha * values[idx]) * (1.0 - s) ** 2 - s * s
            else:
                total += (values[idx] - offsets[idx] - s) ** 2
    return total


# --------------------------------------------------------------------------- models
def _n_blocks(n_rows: int) -> int:
    return max(1, min(n_rows, BLOCKS_PER_THREAD * numba.get_num_threads()))


def _base_args(base: np.ndarray | None) -> tuple[np.ndarray, bool]:
    """(base matrix, has_base) as the kernels take them (a dummy when absent)."""
    if base is None:
        return np.zeros((1, 1), np.float32), False
    return np.ascontiguousarray(base, dtype=np.float32), True


@dataclass(frozen=True)
class _ALSConfig(ModelConfig):
    n_factors: int = param(64, ge=1, le=4096, doc="latent dimensions d")
    regularization: float = param(0.1, gt=0.0, le=1e9, doc="ridge weight lambda")
    iterations: int = param(15, ge=1, le=10_000, doc="alternating sweeps (users then items)")
    solver: str = param("cg", choices=("cg", "cholesky"),
                        doc="per-row solver: warm-started conjugate gradient or exact Cholesky")
    cg_steps: int = param(3, ge=1, le=1000,
                          doc="conjugate-gradient steps per row and half-iteration")
    n_threads: int = param(0, ge=0, le=1024,
                           doc="threads of the parallel solves (0: recoforge.threads)")
    track_loss: bool = param(False, doc="record the training objective per iteration")
    seed: int | None = seed_param("seed of the factor initialisation")


class _ALSBase(FactorModel):
    """Shared alternating loop; subclasses define the per-side systems."""
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"iteration_seconds_": "*", "loss_history_": "*: nonfinite"}

    # hooks each ALS variant defines
    def _check_data(self, data: Dataset) -> None:
        raise NotImplementedError

    def _init_factors(self, shape: tuple[int, int], rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _system(self, matrix: sp.csr_matrix, fixed: np.ndarray, user_side: bool) -> tuple:
        raise NotImplementedError

    def _loss(self, by_user: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> float:
        raise NotImplementedError

    def _fixed_items(self) -> np.ndarray:
        raise NotImplementedError

    def _store(self, users: np.ndarray, items: np.ndarray) -> None:
        raise NotImplementedError

    def _split_solution(self, solved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @guard_fit
    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        self._check_data(data)
        by_user = sp.csr_matrix(self.train_matrix_, dtype=np.float32)
        by_item = by_user.T.tocsr()
        rows, d = sum(by_user.shape), cfg.n_factors + 1  # factors + float64 init + d x d
        check_allocation(dense_bytes(rows, d, itemsize=12)
                         + dense_bytes(numba.get_num_threads() + 1, d, d, itemsize=8),
                         f"{self.name} with n_factors={cfg.n_factors} ({rows} users and items)",
                         advice="lower n_factors")
        rng = self._rng()
        users, items = self._init_factors(by_user.shape, rng)
        losses, seconds = [], []
        with numba_threads(cfg.n_threads):
            for iteration in range(cfg.iterations):
                start = time.perf_counter()
                self._half_step(by_user, users, items, user_side=True)
                self._half_step(by_item, items, users, user_side=False)
                seconds.append(time.perf_counter() - start)
                if cfg.track_loss:
                    losses.append(self._loss(by_user, users, items))
                self._epoch_done(iteration + 1, cfg.iterations,
                                 **({"loss": losses[-1]} if cfg.track_loss else {}))
        self._store(users, items)
        self.iteration_seconds_ = np.asarray(seconds)
        self.loss_history_ = np.asarray(losses, dtype=np.float64)

    def _half_step(self, matrix: sp.csr_matrix, solved: np.ndarray, fixed: np.ndarray,
                   user_side: bool) -> None:
        """Solve every row of ``matrix`` (users or items) against the ``fixed`` side."""
        weights, targets, ridge, design, base = self._system(matrix, fixed, user_side)
        args = (matrix.indptr, matrix.indices, weights, targets, design, *_base_args(base),
                ridge, solved, _n_blocks(len(solved)))
        if self.config.solver == "cg":
            _solve_cg(*args, self.config.cg_steps)
        else:
            _solve_cholesky(*args)

    def fold_in(self, histories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Exact solve of each history row against the fixed item side (the training
        user step); returns float32 (factors, biases). O(n (h d^2 + d^3))."""
        histories = sp.csr_matrix(histories, dtype=np.float32)
        fixed = self._fixed_items()
        weights, targets, ridge, design, base = self._system(histories, fixed, True)
        solved = np.zeros((histories.shape[0], design.shape[1]), np.float32)
        with numba_threads(self.config.n_threads):
            _solve_cholesky(histories.indptr, histories.indices, weights, targets, design,
                            *_base_args(base), ridge, solved, _n_blocks(len(solved)))
        return self._split_solution(solved)


@register
class ImplicitALS(_ALSBase):
    """Implicit-feedback ALS with confidence weights (Hu, Koren, Volinsky 2008).

    Parameters
    ----------
    n_factors, regularization, iterations, solver, cg_steps, n_threads, track_loss, seed
        See the fields of ``Config``.
    alpha : float
        Confidence slope: c_ui = 1 + alpha v(r_ui). (The implicit library >= 0.5 uses
        c = alpha r: its ``alpha=a`` on binary data equals ``alpha=a - 1`` here, with
        ``values="none"``.)
    values : {"bm25", "log1p", "none", "binary"}
        The transform v of event values (:mod:`recoforge.data.transforms`). The default
        bm25 saturation r 2.2 / (r + 1.2) keeps v(1) = 1 and does not let a few huge
        play counts dominate; ``"log1p"`` is Hu et al.'s c = 1 + alpha log(1 + r);
        ``"none"`` the linear c = 1 + alpha r.

    References
    ----------
    Hu, Koren, Volinsky (2008), "Collaborative filtering for implicit feedback datasets".
    Takacs, Pilaszy, Tikk (2011), "Applications of the conjugate gradient method for
    implicit feedback collaborative filtering".
    """

    name = "implicit_als"
    implicit_fold_in = True

    @dataclass(frozen=True)
    class Config(_ALSConfig):
        alpha: float = param(40.0, ge=0.0, le=1e6,
                             doc="confidence slope: c = 1 + alpha * values(r)")
        values: str = param(DEFAULT_TRANSFORM, choices=VALUE_TRANSFORMS,
                            doc="transform of event values before the confidence: bm25 "
                                "(r 2.2 / (r + 1.2)), log1p (Hu et al.'s c = 1 + alpha "
                                "log(1 + r)), binary, none (c = 1 + alpha r)")

    def _check_data(self, data: Dataset) -> None:
        if (data.interactions.values < 0).any():
            raise ConfigError("implicit_als needs non-negative interaction values "
                              "(confidence 1 + alpha r); use 'als' for signed ratings")

    def _init_factors(self, shape: tuple[int, int], rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
        d = self.config.n_factors
        users = rng.random((shape[0], d), dtype=np.float32) * np.float32(0.01)
        items = rng.random((shape[1], d), dtype=np.float32) * np.float32(0.01)
        return users, items

    def _system(self, matrix: sp.csr_matrix, fixed: np.ndarray, user_side: bool) -> tuple:
        cfg = self.config
        conf = np.float32(1.0) + np.float32(cfg.alpha) * transform_values(matrix.data,
                                                                          cfg.values)
        base = (fixed.T @ fixed).astype(np.float32)  # BLAS: Y^T Y, O(n d^2)
        ridge = np.full(matrix.shape[0], cfg.regularization, np.float32)
        return conf - np.float32(1.0), conf, ridge, fixed, base

    def _loss(self, by_user: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> float:
        cfg = self.config
        u64, i64 = users.astype(np.float64), items.astype(np.float64)
        all_pairs = float(np.sum((u64.T @ u64) * (i64.T @ i64)))  # sum over every (u, i) s^2
        observed = _observed_loss(by_user.indptr, by_user.indices,
                                  transform_values(by_user.data, cfg.values), users, items,
                                  np.zeros(1, np.float32), cfg.alpha, True)
        return all_pairs + observed + cfg.regularization * float((u64**2).sum() + (i64**2).sum())

    def _fixed_items(self) -> np.ndarray:
        return self.item_factors_

    def _fold_in_system(self, history: sp.csr_matrix, row: int, gram: np.ndarray | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The shared fold-in system (explanations) on the ``values``-transformed row."""
        one = transform_matrix(sp.csr_matrix(history)[row], self.config.values)
        return super()._fold_in_system(one, 0, gram)

    def _store(self, users: np.ndarray, items: np.ndarray) -> None:
        self.user_factors_, self.item_factors_ = users, items

    def _split_solution(self, solved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return solved, np.zeros(len(solved), np.float32)


@register
class ALS(_ALSBase):
    """Explicit-rating ALS with weighted-lambda regularisation (Zhou et al. 2008).

    ``biases=True`` adds mu + b_u + b_i, solved jointly with the factors as an extra
    column; the ridge weight of each row is lambda times its number of ratings.

    References
    ----------
    Zhou, Wilkinson, Schreiber, Pan (2008), "Large-scale parallel collaborative filtering
    for the Netflix Prize".

    Parameters
    ----------
    n_factors, regularization, iterations, solver, cg_steps, n_threads, track_loss, seed
        See the fields of ``Config``; ``solver`` defaults to exact Cholesky here.
    biases : bool
        Learn mu + b_u + b_i beside the factors.
    """

    name = "als"
    predicts_ratings = True

    @dataclass(frozen=True)
    class Config(_ALSConfig):
        regularization: float = param(0.05, gt=0.0, le=1e9,
                                      doc="lambda, scaled by each row's count")
        solver: str = param("cholesky", choices=("cg", "cholesky"),
                            doc="per-row solver: exact Cholesky or warm-started CG")
        biases: bool = param(True, doc="learn mu + b_u + b_i beside the factors")

    def _check_data(self, data: Dataset) -> None:
        return None

    def _init_factors(self, shape: tuple[int, int], rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
        d, extra = self.config.n_factors, int(self.config.biases)
        values = self.train_matrix_.data
        self.global_bias_ = float(values.mean()) if self.config.biases else 0.0
        users = np.zeros((shape[0], d + extra), np.float32)
        items = np.zeros((shape[1], d + extra), np.float32)
        users[:, :d] = rng.normal(0.0, 0.1, (shape[0], d))
        items[:, :d] = rng.normal(0.0, 0.1, (shape[1], d))
        return users, items

    def _system(self, matrix: sp.csr_matrix, fixed: np.ndarray, user_side: bool) -> tuple:
        cfg = self.config
        counts = np.diff(matrix.indptr).astype(np.float32)
        targets = matrix.data.astype(np.float32) - np.float32(self.global_bias_)
        design = fixed
        if cfg.biases:
            targets = targets - fixed[matrix.indices, -1]
            design = fixed.copy()
            design[:, -1] = 1.0
        weights = np.ones(len(targets), np.float32)
        return weights, targets, np.float32(cfg.regularization) * counts, design, None

    def _loss(self, by_user: sp.csr_matrix, users: np.ndarray, items: np.ndarray) -> float:
        cfg = self.config
        d = cfg.n_factors
        offsets = np.float32(self.global_bias_) + np.zeros(by_user.nnz, np.float32)
        design = items
        if cfg.biases:
            rows = np.repeat(np.arange(by_user.shape[0]), np.diff(by_user.indptr))
            offsets = offsets + users[rows, d] + items[by_user.indices, d]
            design = items.copy()
            design[:, d] = 0.0
        data = _observed_loss(by_user.indptr, by_user.indices, by_user.data, users, design,
                              offsets, 0.0, False)
        u_counts = np.diff(by_user.indptr)
        i_counts = np.bincount(by_user.indices, minlength=items.shape[0])
        penalty = (u_counts * (users.astype(np.float64) ** 2).sum(1)).sum() \
            + (i_counts * (items.astype(np.float64) ** 2).sum(1)).sum()
        return float(data + cfg.regularization * penalty)

    def _fixed_items(self) -> np.ndarray:
        if not self.config.biases:
            return self.item_factors_
        return np.hstack([self.item_factors_, self.item_bias_[:, None]])

    def _store(self, users: np.ndarray, items: np.ndarray) -> None:
        d = self.config.n_factors
        self.user_factors_ = np.ascontiguousarray(users[:, :d])
        self.item_factors_ = np.ascontiguousarray(items[:, :d])
        if self.config.biases:
            self.user_bias_ = np.ascontiguousarray(users[:, d])
            self.item_bias_ = np.ascontiguousarray(items[:, d])

    def _split_solution(self, solved: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = self.config.n_factors
        if not self.config.biases:
            return solved, np.zeros(len(solved), np.float32)
        return np.ascontiguousarray(solved[:, :d]), np.ascontiguousarray(solved[:, d])
