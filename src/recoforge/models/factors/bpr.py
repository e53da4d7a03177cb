"""Ranking matrix factorisation from implicit feedback: BPR, logistic MF and WARP.

All three score s_ui = p_u . q_i + b_i (logistic MF adds b_u) and learn by stochastic
gradient steps on sampled training pairs (u, i), drawn uniformly from the interactions;
an epoch is ``nnz`` samples. Every stored interaction is a positive (its value is
ignored: keep only liked items, e.g. ratings >= 4, before fitting if that is the intent).

- **BPR** (Rendle et al. 2009) maximises sum ln sigma(s_ui - s_uj) - reg |theta|^2 over
  triples (u, i, j) with j a sampled negative: uniform, popularity-proportional
  (P(j) ~ count_j^exponent) or "hard" (the best-scoring of ``n_candidates`` uniform draws).
- **Logistic MF** minimises the binary cross-entropy of sigma(p_u . q_i + b_u + b_i) on
  each positive and ``n_negatives`` sampled negatives (pointwise; Johnson 2014 in spirit).
- **WARP** (Weston, Bengio, Usunier 2011; as LightFM) draws uniform negatives until one
  violates the margin, s_uj > s_ui - 1, after n trials, and takes a hinge step weighted
  by log(floor((n_items - 1) / n)), which approximates the rank of i; at most
  ``max_sampled`` trials.

Negatives are never items of the user's training row: a users x items bitset answers in
one memory access where it is small (density >= 1/128, at most 256 MiB), else a binary
search of the sorted CSR row (the draws are the same either way). Implicit's BPR instead
draws negatives in proportion to popularity (a random interaction's item) and skips,
rather than redraws, a sample whose negative is a positive.

Storage: the bias is a factor column, as in the implicit library: users carry a constant
1 against the item bias (and logistic MF's items a 1 against the user bias), so
``item_vectors()`` / ``user_vectors()`` give s_ui as a plain inner product (ANN-ready).

New users are folded in under the model's own loss: their vector takes n_epochs * |h|
SGD steps on (history item, uniform negative) pairs with the item factors fixed, from a
generator seeded by the seed alone (the same history always gives the same vector); an
empty history ranks by item bias. ``explain`` uses the least-squares fold-in view of
:mod:`._factors` (contribution of each history item).

Threads and determinism. Each epoch is cut into a fixed number of streams (it depends
on ``nnz`` only), each with its own random generator derived from the seed; the streams
run in parallel without locks (Hogwild!, Recht et al. 2011), as the implicit library
does. With ``n_threads=1`` the streams run one after the other and a seed reproduces the
model exactly; with more threads concurrent updates interleave, so results differ in the
last digits from run to run. ``epoch_loss_`` (mean loss, estimated on every 16th sample)
and ``epoch_accuracy_`` (BPR: share of sampled pairs ranked right, an AUC estimate;
logistic: share classified right; WARP: share of positives without a violator) trace
training. Fit O(epochs * nnz * d) time (times the draws of hard sampling / WARP),
O((n_users + n_items) d + nnz) memory plus the bitset (n_users * n_items / 8 bytes).

References
----------
Rendle, Freudenthaler, Gantner, Schmidt-Thieme (2009), "BPR: Bayesian personalized ranking
from implicit feedback", UAI. Weston, Bengio, Usunier (2011), "WSABIE: Scaling up to large
vocabulary image annotation", IJCAI. Johnson (2014), "Logistic matrix factorization for
implicit feedback data". Recht, Re, Wright, Niu (2011), "Hogwild!".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError, NotSupportedError
from recoforge.models.factors._ranking_kernels import (
    MAX_STREAMS,
    N_STATS,
    SAMPLERS,
    bpr_epoch,
    fold_in_kernel,
    logistic_epoch,
    negative_sampling_cdf,
    positive_bitset,
    warp_epoch,
)
from recoforge.models.factors.core import FactorModel
from recoforge.models.params import ModelConfig, param, seed_param
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit
from recoforge.threads import numba_threads


@dataclass(frozen=True)
class RankingMFConfig(ModelConfig):
    """Hyperparameters shared by BPR, logistic MF and WARP."""

    n_factors: int = param(64, ge=1, le=4096, doc="latent dimensions d")
    n_epochs: int = param(50, ge=1, le=100_000, doc="epochs (nnz sampled pairs each)")
    learning_rate: float = param(0.05, gt=0.0, le=10.0, doc="SGD step size")
    regularization: float = param(0.01, ge=0.0, le=1000.0,
                                  doc="L2 penalty on factors and biases")
    init_scale: float = param(0.1, gt=0.0, le=1000.0,
                              doc="initial factors ~ N(0, init_scale^2 / d)")
    n_threads: int = param(0, ge=0, le=1024,
                           doc="threads (0: recoforge.threads); 1 is exactly reproducible")
    seed: int | None = seed_param("seed of the init and the samplers")


class RankingMF(FactorModel):
    """Shared fit loop of the sampled ranking models (not registered itself)."""

    implicit_fold_in = True
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"epoch_loss_": "epochs: nonfinite", "epoch_accuracy_": "epochs: nonfinite"}
    #: factor columns beyond n_factors (bias columns)
    _extra_columns = 1
    #: epoch accuracy over the updates made (else over all nnz samples)
    _accuracy_per_update = True
    #: loss of the fold-in kernel: 0 BPR, 1 logistic, 2 WARP
    _fold_in_loss = 0

    def fold_in(self, histories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Query rows' vectors under the model's own loss, the item factors fixed.

        n_epochs * |history| SGD steps per row with uniform negatives (see
        :func:`fold_in_kernel`); deterministic, a row's vector depends on its history only.
        Returns (factors, zero biases); O(n_epochs h d) time per row of length h.
        (Explanations keep the least-squares view of :mod:`._factors`.)
        """
        cfg = self.config
        hist = sp.csr_matrix(histories, copy=True)
        hist.sort_indices()
        factors = fold_in_kernel(
            hist.indptr.astype(np.int64), hist.indices.astype(np.int32), self.item_factors_,
            self._fold_in_loss, cfg.n_epochs, np.float32(cfg.learning_rate),
            np.float32(cfg.regularization), getattr(cfg, "n_negatives", 1),
            getattr(cfg, "max_sampled", 1), 0 if cfg.seed is None else cfg.seed)
        return factors, np.zeros(len(factors), np.float32)

    @guard_fit
    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        matrix = data.matrix()
        indptr = matrix.indptr.astype(np.int64)
        indices = matrix.indices.astype(np.int32)
        n_users, n_items = matrix.shape
        check_allocation(dense_bytes(n_users + n_items, cfg.n_factors + 2, itemsize=12),
                         f"{self.name} factors ({n_users + n_items} users and items x "
                         f"{cfg.n_factors})", advice="lower n_factors")
        if len(indices) >= 2**32:
            raise NotSupportedError(f"{self.name} samples with 32-bit draws: at most 2^32 - 1 "
                                    f"interactions, got {len(indices)}")
        # (user, item) of every interaction side by side: one cache line per random draw
        pairs = np.column_stack([np.repeat(np.arange(n_users, dtype=np.int32),
                                           np.diff(indptr)), indices])
        rng = self._rng()
        positives = (indptr, indices, positive_bitset(indptr, indices, n_items))
        counts = np.bincount(indices, minlength=n_items)
        users, items = self._init_factors(rng, np.diff(indptr), counts)
        n_streams = int(min(MAX_STREAMS, max(1, len(indices) // 1024)))
        states = rng.integers(1, 2**63 - 1, size=n_streams, dtype=np.int64).astype(np.uint64)
        cdf = negative_sampling_cdf(counts, getattr(cfg, "negative_sampling", "uniform"),
                                    getattr(cfg, "popularity_exponent", 0.0))
        lr, reg = np.float32(cfg.learning_rate), np.float32(cfg.regularization)
        history = np.zeros((cfg.n_epochs, N_STATS))
        with numba_threads(cfg.n_threads):
            for epoch in range(cfg.n_epochs):
                history[epoch] = self._epoch(positives, pairs, users, items,
                                             lr, reg, cdf, states)
                self._epoch_done(epoch + 1, cfg.n_epochs,
                                 loss=history[epoch, 0] / max(history[epoch, 1], 1.0))
        if not (np.isfinite(users).all() and np.isfinite(items).all()):
            raise ConfigError(divergence_message(self.name, cfg))
        self.user_factors_, self.item_factors_ = users, items
        self.epoch_loss_ = history[:, 0] / np.maximum(history[:, 1], 1.0)
        self.epoch_accuracy_ = history[:, 2] / (np.maximum(history[:, 3], 1.0)
                                                if self._accuracy_per_update else len(indices))

    def _init_factors(self, rng: np.random.Generator, user_counts: np.ndarray,
                      item_counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """N(0, init_scale^2 / d) factors, zero biases, zero rows for unseen items."""
        d, extra = self.config.n_factors, self._extra_columns
        scale = self.config.init_scale / math.sqrt(d)
        users = np.zeros((len(user_counts), d + extra), np.float32)
        items = np.zeros((len(item_counts), d + extra), np.float32)
        users[:, :d] = rng.normal(0.0, scale, (len(user_counts), d))
        items[:, :d] = rng.normal(0.0, scale, (len(item_counts), d))
        items[item_counts == 0, :d] = 0.0
        users[:, d] = 1.0  # against the item bias
        if extra == 2:
            items[:, d + 1] = 1.0  # against the user bias
        return users, items

    def _epoch(self, positives, pairs, users, items, lr, reg, cdf,
               states) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError


def divergence_message(name: str, cfg: RankingMFConfig) -> str:
    """Why SGD blew up, naming the parameters that can cause it with their values.

    Each step scales a factor by (1 - learning_rate * regularization) before adding the
    gradient: a product above 1 flips and grows the factors; otherwise the usual causes
    are a step size or an initial scale too large for the data.
    """
    shrink = cfg.learning_rate * cfg.regularization
    if shrink > 1.0:
        return (f"{name} diverged (non-finite factors): learning_rate x regularization = "
                f"{cfg.learning_rate:g} x {cfg.regularization:g} = {shrink:g} > 1 makes each "
                f"L2 step overshoot; lower regularization or learning_rate")
    return (f"{name} diverged (non-finite factors): lower learning_rate (now "
            f"{cfg.learning_rate:g}) or init_scale (now {cfg.init_scale:g})")


@dataclass(frozen=True)
class SampledNegativesConfig(RankingMFConfig):
    """Negative sampling of BPR and logistic MF."""

    negative_sampling: str = param("uniform", choices=tuple(SAMPLERS),
                                   doc="uniform, popularity (count^exponent) or hard")
    popularity_exponent: float = param(0.75, ge=0.0, le=10.0,
                                       doc="popularity sampling: P(j) ~ count_j^exponent")
    n_candidates: int = param(5, ge=1, le=10_000,
                              doc="hard sampling: uniform draws, the best-scoring is kept")


@register
class BPR(RankingMF):
    """Bayesian personalised ranking (Rendle et al. 2009) with item biases.

    Maximises sum_(u,i,j) ln sigma(x_ui - x_uj) - reg |theta|^2, x_ui = p_u . q_i + b_i,
    by SGD on sampled triples; see the module docstring for samplers and threads.
    """

    name = "bpr"
    Config = SampledNegativesConfig

    def _epoch(self, positives, pairs, users, items, lr, reg, cdf, states):
        cfg = self.config
        return bpr_epoch(positives, pairs, users, items, lr, reg,
                          SAMPLERS[cfg.negative_sampling], cdf, cfg.n_candidates, states)


@dataclass(frozen=True)
class LogisticMFConfig(SampledNegativesConfig):
    n_negatives: int = param(4, ge=1, le=1000, doc="sampled negatives per positive")


@register
class LogisticMF(RankingMF):
    """Logistic matrix factorisation with sampled negatives (pointwise).

    Minimises sum -[y ln sigma(x_uj) + (1 - y) ln(1 - sigma(x_uj))] + reg |theta|^2 with
    x_uj = p_u . q_j + b_u + b_j over each positive (y = 1) and ``n_negatives`` sampled
    negatives (y = 0); cf. Johnson (2014), "Logistic matrix factorization for implicit
    feedback data".
    """

    name = "logistic_mf"
    Config = LogisticMFConfig
    _extra_columns = 2
    _fold_in_loss = 1

    def _epoch(self, positives, pairs, users, items, lr, reg, cdf, states):
        cfg = self.config
        return logistic_epoch(positives, pairs, users, items, lr, reg,
                               SAMPLERS[cfg.negative_sampling], cdf, cfg.n_candidates,
                               cfg.n_negatives, states)


@dataclass(frozen=True)
class WARPConfig(RankingMFConfig):
    learning_rate: float = param(0.01, gt=0.0, le=10.0, doc="SGD step size")
    max_sampled: int = param(50, ge=1, le=100_000, doc="most negatives drawn per positive")


@register
class WARP(RankingMF):
    """Weighted approximate-rank pairwise loss (Weston et al. 2011), as LightFM's WARP.

    For a positive (u, i), negatives j are drawn until s_uj > s_ui - 1 (after n draws);
    the hinge 1 - s_ui + s_uj is then minimised with weight log(floor((n_items - 1) / n)).
    """

    name = "warp"
    Config = WARPConfig
    _accuracy_per_update = False
    _fold_in_loss = 2

    def _epoch(self, positives, pairs, users, items, lr, reg, cdf, states):
        return warp_epoch(positives, pairs, users, items, lr, reg,
                           self.config.max_sampled, cdf, states)
