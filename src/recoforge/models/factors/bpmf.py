"""Bayesian probabilistic matrix factorisation by Gibbs sampling (Salakhutdinov, Mnih 2008).

    r_ui ~ N(mu + b_u + b_i + u_u . v_i, 1/alpha),   u_u ~ N(mu_U, Lambda_U^-1),
    (mu_U, Lambda_U) ~ Normal-Wishart(0, beta0, I, d)   (and the same for items),

with optional biases b ~ N(0, 1/lambda_b), lambda_b ~ Gamma(1, 1), and the noise precision
alpha fixed or ~ Gamma(1, 1). Each sweep samples the hyperparameters, then every user's
(u_u, b_u) from its Gaussian conditional (precision Lambda_U + alpha sum_i x_i x_i^T with
x_i = [v_i, 1]) and the same for items. Predictions average mu + b_u + b_i + u_u . v_i over
the samples after ``burn_in``: biases are averaged over all samples, and ``stored_samples``
evenly spaced factor samples are kept, concatenated and scaled by 1/sqrt(S), so that
``user_factors_ @ item_factors_.T`` is exactly the sample average of u . v.

A sweep costs O(nnz (d+1)^2 + (n_users + n_items) (d+1)^3); the standard normals are drawn
from the seeded generator beforehand, so rows are sampled in parallel (numba's thread count,
from ``PARALLEL_MIN_NNZ`` ratings up) and the result is still determined by the seed alone.
Memory O((n_users + n_items) d S).

New users get, per stored sample, the mean of their conditional given the history (the
Gibbs step without noise); the prediction averages those.

References
----------
Salakhutdinov, Mnih (2008), "Bayesian probabilistic matrix factorization using Markov chain
Monte Carlo", ICML; Rendle, Zhang, Koren (2019), "On the difficulty of evaluating baselines".
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp
from scipy.stats import wishart

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError
from recoforge.models.factors.core import FactorModel
from recoforge.models.params import ModelConfig, param, seed_param
from recoforge.models.query import Query
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit

#: below this many ratings rows are sampled in one thread (thread start-up would dominate)
PARALLEL_MIN_NNZ = 50_000


# ---------------------------------------------------------------------- kernels
@numba.njit(cache=True, inline="always")
def _conditional(items, targets, other_f, prior_prec, prior_shift, bias_prec, alpha,
                 use_bias):  # pragma: no cover - numba
    """(precision A, right-hand side b) of one row's Gaussian conditional; mean = A^-1 b."""
    d = other_f.shape[1]
    dim = d + 1 if use_bias else d
    design = np.ones((items.shape[0], dim))
    for k in range(items.shape[0]):
        design[k, :d] = other_f[items[k]]
    a = alpha * (design.T @ design)
    a[:d, :d] += prior_prec
    b = alpha * (design.T @ targets)
    b[:d] += prior_shift
    if use_bias:
        a[d, d] += bias_prec
    return a, b


@numba.njit(cache=True)
def _sample_row(r, indptr, indices, ratings, offsets, other_f, other_bias, prior_prec,
                prior_shift, bias_prec, alpha, noise, out_f, out_bias,
                use_bias):  # pragma: no cover - numba
    """Draw row r's (factors, bias) from its conditional: mean + L^-T z, with A = L L^T."""
    d = out_f.shape[1]
    start, stop = indptr[r], indptr[r + 1]
    items = indices[start:stop]
    targets = np.empty(stop - start)
    for k in range(stop - start):
        targets[k] = ratings[start + k] - offsets - other_bias[items[k]]
    a, b = _conditional(items, targets, other_f, prior_prec, prior_shift, bias_prec, alpha,
                        use_bias)
    chol = np.linalg.cholesky(a)
    draw = np.linalg.solve(a, b) + np.linalg.solve(chol.T, noise[r, :b.shape[0]])
    out_f[r] = draw[:d]
    if use_bias:
        out_bias[r] = draw[d]


@numba.njit(cache=True)
def _sample_rows(indptr, indices, ratings, offsets, other_f, other_bias, prior_prec,
                 prior_mean, bias_prec, alpha, noise, out_f, out_bias,
                 use_bias):  # pragma: no cover - numba
    """Draw every row in turn (small data: no thread start-up cost)."""
    prior_shift = prior_prec @ prior_mean
    for r in range(out_f.shape[0]):
        _sample_row(r, indptr, indices, ratings, offsets, other_f, other_bias, prior_prec,
                    prior_shift, bias_prec, alpha, noise, out_f, out_bias, use_bias)


@numba.njit(cache=True, parallel=True)
def _sample_rows_parallel(indptr, indices, ratings, offsets, other_f, other_bias, prior_prec,
                          prior_mean, bias_prec, alpha, noise, out_f, out_bias,
                          use_bias):  # pragma: no cover - numba
    """Draw every row, rows in parallel (the noise is given, so the result is the same)."""
    prior_shift = prior_prec @ prior_mean
    for r in numba.prange(out_f.shape[0]):
        _sample_row(r, indptr, indices, ratings, offsets, other_f, other_bias, prior_prec,
                    prior_shift, bias_prec, alpha, noise, out_f, out_bias, use_bias)


@numba.njit(cache=True)
def _squared_error(indptr, indices, ratings, mu, user_f, item_f, user_bias,
                   item_bias):  # pragma: no cover - numba
    total = 0.0
    for u in range(user_f.shape[0]):
        for k in range(indptr[u], indptr[u + 1]):
            i = indices[k]
            pred = mu + user_bias[u] + item_bias[i]
            for f in range(user_f.shape[1]):
                pred += user_f[u, f] * item_f[i, f]
            total += (ratings[k] - pred) ** 2
    return total


# ---------------------------------------------------------------------- hyperpriors
def sample_normal_wishart(factors: np.ndarray, beta0: float, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(mu, Lambda) from the Normal-Wishart posterior given the rows of ``factors``.

    Prior mu0 = 0, W0 = I, nu0 = d (Salakhutdinov and Mnih 2008, eq. 14).
    """
    n, d = factors.shape
    mean = factors.mean(axis=0)
    centred = factors - mean
    scatter = centred.T @ centred
    beta_n = beta0 + n
    w_inv = np.eye(d) + scatter + (beta0 * n / beta_n) * np.outer(mean, mean)
    w_n = np.linalg.inv(w_inv)
    precision = wishart.rvs(df=d + n, scale=(w_n + w_n.T) / 2, random_state=rng)
    precision = np.atleast_2d(precision)
    chol = np.linalg.cholesky(beta_n * precision)
    mu = n * mean / beta_n + np.linalg.solve(chol.T, rng.standard_normal(d))
    return mu, precision


def _sample_gamma_precision(sum_squares: float, count: int, rng: np.random.Generator) -> float:
    """Precision ~ Gamma(1 + count/2, rate 1 + sum_squares/2)."""
    return float(rng.gamma(1.0 + count / 2.0, 1.0 / (1.0 + sum_squares / 2.0)))


# ---------------------------------------------------------------------- model
@register
class BayesianMF(FactorModel):
    """Bayesian probabilistic matrix factorisation (Gibbs sampling), optional biases.

    Parameters
    ----------
    n_factors : int
        Latent dimensions d.
    n_samples, burn_in : int
        Sweeps averaged, and sweeps discarded first.
    stored_samples : int
        Factor samples kept for prediction (evenly spaced among the averaged ones).
    noise_precision : float or None
        alpha; None samples it (Gamma(1, 1) prior).
    biases : bool
        Sample user and item biases.
    beta0 : float
        Prior strength of the hyper-means.
    init_std : float
        Standard deviation of the initial factors.
    seed : int, optional

    References
    ----------
    Salakhutdinov, Mnih (2008), ICML.
    """

    name = "bpmf"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"item_bias_samples_": "samples x items", "user_prior_mean_": "samples x k",
                  "user_prior_precision_": "samples x k x k",
                  "user_bias_precision_": "samples", "noise_precision_": "samples"}
    predicts_ratings = True

    @dataclass(frozen=True)
    class Config(ModelConfig):
        n_factors: int = param(16, ge=1, le=1000, doc="latent dimensions d")
        n_samples: int = param(50, ge=1, le=100_000, doc="Gibbs sweeps averaged")
        burn_in: int = param(10, ge=0, le=100_000, doc="Gibbs sweeps discarded first")
        stored_samples: int = param(25, ge=1, le=10_000,
                                    doc="factor samples kept for prediction")
        noise_precision: float | None = param(None, gt=0.0, le=1e12,
                                              doc="alpha = 1/noise variance (None: sampled)")
        biases: bool = param(True, doc="sample user and item biases")
        beta0: float = param(2.0, gt=0.0, le=1e12, doc="prior strength of the hyper-means")
        init_std: float = param(0.1, ge=0.0, le=10.0, doc="std of the initial factors")
        seed: int | None = seed_param("seed of the sampler")

    # ----------------------------------------------------------------- fitting
    @guard_fit
    def _fit(self, data: Dataset) -> None:
        if data.kind != "explicit":
            raise ConfigError(f"bpmf needs explicit ratings (data kind {data.kind!r})")
        cfg = self.config
        rows, kept = sum(self.train_matrix_.shape), min(cfg.stored_samples, cfg.n_samples)
        check_allocation(dense_bytes(rows, cfg.n_factors + 1, itemsize=8) * (3 + 2.5 * kept),
                         f"bpmf with n_factors={cfg.n_factors} and {kept} stored samples "
                         f"({rows} users and items)", advice="lower stored_samples or n_factors")
        rng = self._rng()
        by_user = self.train_matrix_.astype(np.float64)
        by_item = sp.csr_matrix(by_user.T)
        self.global_bias_ = float(by_user.data.mean())
        self.rating_min_ = float(by_user.data.min())
        self.rating_max_ = float(by_user.data.max())
        state = _GibbsState.start(by_user.shape, cfg, rng)
        keep = _kept_sweeps(cfg.n_samples, cfg.stored_samples)
        acc = _Accumulator(by_user.shape, cfg.n_factors, len(keep))
        for sweep in range(cfg.burn_in + cfg.n_samples):
            state.sweep(by_user, by_item, self.global_bias_, cfg, rng)
            if sweep >= cfg.burn_in:
                acc.add(state, sweep - cfg.burn_in in keep)
            self._epoch_done(sweep + 1, cfg.burn_in + cfg.n_samples)
        self._store(acc)

    def _store(self, acc: _Accumulator) -> None:
        s = acc.n_stored
        scale = 1.0 / np.sqrt(s)
        self.user_factors_ = (np.concatenate(acc.user_f, axis=1) * scale).astype(np.float32)
        self.item_factors_ = (np.concatenate(acc.item_f, axis=1) * scale).astype(np.float32)
        self.user_bias_ = (acc.user_bias / acc.count).astype(np.float32)
        self.item_bias_ = (acc.item_bias / acc.count).astype(np.float32)
        self.item_bias_samples_ = np.asarray(acc.item_bias_samples, dtype=np.float32)
        self.user_prior_mean_ = np.asarray(acc.prior_mean)
        self.user_prior_precision_ = np.asarray(acc.prior_prec)
        self.user_bias_precision_ = np.asarray(acc.bias_prec)
        self.noise_precision_ = np.asarray(acc.alpha)

    # ----------------------------------------------------------------- fold-in
    def _sample_systems(self, items: np.ndarray, values: np.ndarray):
        """Per stored sample s: (A_s, b_s, design_s) of the new user's conditional."""
        s, d = len(self.noise_precision_), self.config.n_factors
        use_bias = self.config.biases
        factors = self.item_factors_.astype(np.float64) * np.sqrt(s)
        for k in range(s):
            other = np.ascontiguousarray(factors[items, k * d:(k + 1) * d])
            targets = values - self.global_bias_ - self.item_bias_samples_[k, items]
            prec = self.user_prior_precision_[k]
            a, b = _conditional(np.arange(len(items)), targets, other, prec,
                                prec @ self.user_prior_mean_[k],
                                float(self.user_bias_precision_[k]),
                                float(self.noise_precision_[k]), use_bias)
            yield k, a, b, targets

    def fold_in(self, histories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample conditional means of new users' (factors, bias), averaged as in fit."""
        histories = sp.csr_matrix(histories)
        s, d = len(self.noise_precision_), self.config.n_factors
        factors = np.zeros((histories.shape[0], s * d), dtype=np.float32)
        biases = np.zeros(histories.shape[0], dtype=np.float32)
        for row in range(histories.shape[0]):
            start, stop = histories.indptr[row], histories.indptr[row + 1]
            items = histories.indices[start:stop]
            values = histories.data[start:stop].astype(np.float64)
            for k, a, b, _ in self._sample_systems(items, values):
                mean = np.linalg.solve(a, b)
                factors[row, k * d:(k + 1) * d] = mean[:d] / np.sqrt(s)
                if self.config.biases:
                    biases[row] += mean[d] / s
        return factors, biases

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.clip(super()._predict(users, items), self.rating_min_, self.rating_max_)

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """History item j's share: mean_s alpha_s t_j x_i^T A_s^-1 x_j (fold-in view)."""
        histories = query.history
        histories = sp.csr_matrix(histories)
        items = histories.indices[histories.indptr[0]:histories.indptr[1]]
        values = histories.data[histories.indptr[0]:histories.indptr[1]].astype(np.float64)
        if len(items) == 0:
            return "item", np.zeros(0, np.int64), np.zeros(0)
        s, d = len(self.noise_precision_), self.config.n_factors
        factors = self.item_factors_.astype(np.float64) * np.sqrt(s)
        total = np.zeros(len(items))
        for k, a, _, targets in self._sample_systems(items, values):
            block = factors[:, k * d:(k + 1) * d]
            x_i, x_j = block[item], block[items]
            if self.config.biases:
                x_i = np.append(x_i, 0.0)  # the bias column does not meet item i's factors
                x_j = np.hstack([x_j, np.ones((len(items), 1))])
            total += self.noise_precision_[k] * targets * (x_j @ np.linalg.solve(a, x_i))
        return "item", items.astype(np.int64), total / s


def _kept_sweeps(n_samples: int, stored: int) -> set[int]:
    """Indices (among the averaged sweeps) of the evenly spaced stored samples."""
    count = min(n_samples, stored)
    return set(np.unique(np.linspace(n_samples - 1, 0, count).round().astype(int)).tolist())


class _GibbsState:
    """Current sample of every parameter, and one Gibbs sweep over them."""

    def __init__(self, user_f, item_f, user_bias, item_bias, alpha) -> None:
        self.user_f, self.item_f = user_f, item_f
        self.user_bias, self.item_bias = user_bias, item_bias
        self.alpha = alpha
        self.prior_mean = np.zeros(user_f.shape[1])
        self.prior_prec = np.eye(user_f.shape[1])
        self.bias_prec = 1.0

    @classmethod
    def start(cls, shape: tuple[int, int], cfg, rng: np.random.Generator) -> _GibbsState:
        n_users, n_items = shape
        d = cfg.n_factors
        return cls(rng.standard_normal((n_users, d)) * cfg.init_std,
                   rng.standard_normal((n_items, d)) * cfg.init_std,
                   np.zeros(n_users), np.zeros(n_items),
                   cfg.noise_precision if cfg.noise_precision is not None else 2.0)

    def sweep(self, by_user: sp.csr_matrix, by_item: sp.csr_matrix, mu: float, cfg,
              rng: np.random.Generator) -> None:
        use_bias = bool(cfg.biases)
        dim = cfg.n_factors + 1
        for rows, rows_f, rows_b, other_f, other_b in (
                (by_user, self.user_f, self.user_bias, self.item_f, self.item_bias),
                (by_item, self.item_f, self.item_bias, self.user_f, self.user_bias)):
            mean, prec = sample_normal_wishart(rows_f, cfg.beta0, rng)
            bias_prec = _sample_gamma_precision(float(rows_b @ rows_b), len(rows_b), rng) \
                if use_bias else 1.0
            if rows_f is self.user_f:
                self.prior_mean, self.prior_prec, self.bias_prec = mean, prec, bias_prec
            noise = rng.standard_normal((rows.shape[0], dim))
            sample = _sample_rows_parallel if rows.nnz >= PARALLEL_MIN_NNZ else _sample_rows
            sample(rows.indptr, rows.indices, rows.data, mu, other_f, other_b, prec,
                         mean, bias_prec, self.alpha, noise, rows_f, rows_b, use_bias)
        if cfg.noise_precision is None:
            sse = _squared_error(by_user.indptr, by_user.indices, by_user.data, mu,
                                 self.user_f, self.item_f, self.user_bias, self.item_bias)
            self.alpha = _sample_gamma_precision(sse, by_user.nnz, rng)


class _Accumulator:
    """Running sums of the biases and the stored factor samples with their priors."""

    def __init__(self, shape: tuple[int, int], d: int, n_stored: int) -> None:
        self.user_bias, self.item_bias = np.zeros(shape[0]), np.zeros(shape[1])
        self.count, self.n_stored = 0, n_stored
        self.user_f: list[np.ndarray] = []
        self.item_f: list[np.ndarray] = []
        self.item_bias_samples: list[np.ndarray] = []
        self.prior_mean: list[np.ndarray] = []
        self.prior_prec: list[np.ndarray] = []
        self.bias_prec: list[float] = []
        self.alpha: list[float] = []

    def add(self, state: _GibbsState, store: bool) -> None:
        self.count += 1
        self.user_bias += state.user_bias
        self.item_bias += state.item_bias
        if not store:
            return
        self.user_f.append(state.user_f.copy())
        self.item_f.append(state.item_f.copy())
        self.item_bias_samples.append(state.item_bias.copy())
        self.prior_mean.append(state.prior_mean)
        self.prior_prec.append(state.prior_prec)
        self.bias_prec.append(state.bias_prec)
        self.alpha.append(state.alpha)
