"""SGD matrix factorisation with biases (FunkSVD), and the machinery SVD++ shares.

The model predicts r_ui = mu + b_u + b_i + p_u . q_i and minimises, by stochastic gradient
descent over the observed ratings in a shuffled order each epoch,

    sum_(u,i) (r_ui - r^_ui)^2 + reg_bias (b_u^2 + b_i^2) + reg_factors (|p_u|^2 + |q_i|^2),

with one step per rating: b_u += lr_bias (e - reg_bias b_u), p_u += lr_factors
(e q_i - reg_factors p_u), and symmetrically for b_i, q_i (Funk 2006; Koren, Bell,
Volinsky 2009). Fit O(epochs * nnz * d) time, O((n_users + n_items) d) memory.

Threads. ``n_threads=1`` (default) runs one compiled loop over the shuffled ratings: the
result depends only on the data and the seed (the next epoch's shuffle runs on a helper
thread meanwhile, see :class:`ShuffledOrders`). With ``n_threads = T > 1`` FunkSVD uses
stratified SGD (DSGD, Gemulla et al. 2011): users and items are dealt at random into T
blocks each, and an epoch is T sub-epochs in each of which the T strata (user block b,
item block b + shift mod T) share no user and no item, so T threads update disjoint
factor rows without locks and the result is still deterministic under the seed. Each
stratum is reshuffled every epoch. (SVD++ uses lock-free Hogwild! epochs instead, see
its module.)

New users are folded in against the fixed item factors (see :mod:`._factors`) with the
same per-rating regularisation; predictions are clipped to the training rating range.

References
----------
Funk (2006), "Netflix Update: Try This at Home"; Koren, Bell, Volinsky (2009), "Matrix
factorization techniques for recommender systems", IEEE Computer 42(8).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError
from recoforge.models.factors.core import FactorModel
from recoforge.models.params import ModelConfig, param, seed_param
from recoforge.models.registry import register
from recoforge.resources import check_allocation, dense_bytes, guard_fit
from recoforge.threads import numba_threads

EpochFn = Callable[[float], float]


# ---------------------------------------------------------------------- kernels
# float32 throughout and 1-D row views: the inner loops vectorise (about 2x faster than
# mixed float64 arithmetic); ratings are visited in a pre-gathered shuffled order.
@numba.njit(cache=True, fastmath=True, inline="always")
def _step(u, i, rating, mu, user_bias, item_bias, user_f, item_f, lr_b, lr_f, reg_b,
          reg_f):  # pragma: no cover - numba
    """One SGD step on rating (u, i); returns the squared error before the step."""
    p = user_f[u]
    q = item_f[i]
    dot = np.float32(0.0)
    for f in range(p.shape[0]):
        dot += p[f] * q[f]
    err = rating - (mu + user_bias[u] + item_bias[i] + dot)
    # x + lr (err g - reg x) written as keep x + step g: two FMAs per element (~20% faster)
    keep_b = np.float32(1.0) - lr_b * reg_b
    user_bias[u] = keep_b * user_bias[u] + lr_b * err
    item_bias[i] = keep_b * item_bias[i] + lr_b * err
    keep = np.float32(1.0) - lr_f * reg_f
    step = lr_f * err
    for f in range(p.shape[0]):
        pf = p[f]
        qf = q[f]
        p[f] = keep * pf + step * qf
        q[f] = keep * qf + step * pf
    return err * err


@numba.njit(cache=True, fastmath=True, nogil=True)
def _sgd_epoch(users, items, ratings, mu, user_bias, item_bias, user_f, item_f, lr_b, lr_f,
               reg_b, reg_f):  # pragma: no cover - numba
    """One pass over the (already shuffled) ratings; returns the sum of squared errors."""
    total = 0.0
    for r in range(ratings.shape[0]):
        total += _step(users[r], items[r], ratings[r], mu, user_bias, item_bias, user_f,
                       item_f, lr_b, lr_f, reg_b, reg_f)
    return total


@numba.njit(cache=True, fastmath=True, parallel=True)
def _sgd_epoch_strata(users, items, ratings, bounds, n_blocks, mu, user_bias, item_bias,
                      user_f, item_f, lr_b, lr_f, reg_b, reg_f):  # pragma: no cover - numba
    """One DSGD epoch: ratings grouped by stratum (user block * n_blocks + item block)."""
    total = 0.0
    for shift in range(n_blocks):
        partial = np.zeros(n_blocks)
        for block in numba.prange(n_blocks):  # disjoint users and items: no conflicts
            stratum = block * n_blocks + (block + shift) % n_blocks
            acc = 0.0
            for r in range(bounds[stratum], bounds[stratum + 1]):
                acc += _step(users[r], items[r], ratings[r], mu, user_bias, item_bias,
                             user_f, item_f, lr_b, lr_f, reg_b, reg_f)
            partial[block] = acc
        total += partial.sum()
    return total


@numba.njit(cache=True, parallel=True)
def _shuffle_strata(users, items, ratings, bounds, seed):  # pragma: no cover - numba
    """Shuffle each stratum's segment independently (seeded per segment)."""
    for s in numba.prange(bounds.shape[0] - 1):
        lo, hi = bounds[s], bounds[s + 1]
        shuffle_in_place(users[lo:hi], items[lo:hi], ratings[lo:hi], seed + s)


def stratify(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, n_users: int,
             n_items: int, n_blocks: int, rng: np.random.Generator):
    """Ratings grouped into n_blocks^2 strata by random user and item blocks.

    Returns (users, items, ratings, bounds) with stratum s in rows bounds[s]:bounds[s+1].
    """
    user_block = rng.permutation(n_users) % n_blocks
    item_block = rng.permutation(n_items) % n_blocks
    stratum = user_block[users] * n_blocks + item_block[items]
    order = np.argsort(stratum, kind="stable")
    counts = np.bincount(stratum, minlength=n_blocks * n_blocks)
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return users[order].copy(), items[order].copy(), ratings[order].copy(), bounds


@numba.njit(cache=True, nogil=True)
def shuffle_in_place(users, items, ratings, seed):  # pragma: no cover - numba
    """Fisher-Yates shuffle of three aligned arrays, driven by splitmix64 from ``seed``.

    About 10x faster than ``rng.permutation`` plus three gathers; deterministic in ``seed``.
    """
    state = np.uint64(seed)
    for k in range(ratings.shape[0] - 1, 0, -1):
        state += np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(k + 1))
        users[k], users[j] = users[j], users[k]
        items[k], items[j] = items[j], items[k]
        ratings[k], ratings[j] = ratings[j], ratings[k]


class ShuffledOrders:
    """Each epoch's shuffled copy of (users, items, ratings); the next one made meanwhile.

    Two copies alternate: while an epoch trains on one, a helper thread (the shuffle kernel
    releases the GIL) reshuffles the other under the next seed, so the O(nnz) shuffle
    overlaps the O(nnz d) epoch instead of adding to it (about 12% of an epoch at d = 100).
    Deterministic: the seeds are drawn in order and each copy is reshuffled from its own
    previous order. With one CPU (``overlap=False``) a single copy is shuffled in line.
    """

    def __init__(self, arrays: tuple[np.ndarray, ...], rng: np.random.Generator,
                 overlap: bool) -> None:
        self._copies = [tuple(a.copy() for a in arrays) for _ in range(2 if overlap else 1)]
        self._rng = rng
        self._turn = -1
        self._worker: threading.Thread | None = None

    def _seed(self) -> int:
        return int(self._rng.integers(0, 2**62))

    def take(self) -> tuple[np.ndarray, ...]:
        """This epoch's order; starts shuffling the other copy for the next epoch."""
        self.wait()
        overlap = len(self._copies) > 1
        if self._turn < 0 or not overlap:  # first epoch, or no helper thread
            users, items, ratings = self._copies[0]
            shuffle_in_place(users, items, ratings, self._seed())
        self._turn = (self._turn + 1) % len(self._copies)
        if overlap:
            other = self._copies[1 - self._turn]
            self._worker = threading.Thread(target=shuffle_in_place,
                                            args=(*other, self._seed()), daemon=True)
            self._worker.start()
        return self._copies[self._turn]

    def wait(self) -> None:
        """Join the background shuffle, if one is running."""
        if self._worker is not None:
            self._worker.join()
            self._worker = None


@numba.njit(cache=True, fastmath=True)
def _squared_errors(users, items, ratings, mu, user_bias, item_bias, user_f,
                    item_f):  # pragma: no cover - numba
    """Sum of squared errors of the biased dot-product model on the given ratings."""
    total = 0.0
    for r in range(users.shape[0]):
        u, i = users[r], items[r]
        pred = mu + user_bias[u] + item_bias[i]
        for f in range(user_f.shape[1]):
            pred += user_f[u, f] * item_f[i, f]
        total += (ratings[r] - pred) ** 2
    return total


# ---------------------------------------------------------------------- shared base
@dataclass(frozen=True)
class SGDConfig(ModelConfig):
    """Hyperparameters shared by the SGD rating models (FunkSVD, SVD++)."""

    n_factors: int = param(100, ge=1, le=10_000, doc="latent dimensions d")
    n_epochs: int = param(20, ge=1, le=100_000, doc="passes over the ratings")
    lr_bias: float = param(0.005, gt=0.0, le=1.0, doc="learning rate of the biases")
    lr_factors: float = param(0.005, gt=0.0, le=1.0, doc="learning rate of the factors")
    reg_bias: float = param(0.02, ge=0.0, le=100.0, doc="L2 regularisation of the biases")
    reg_factors: float = param(0.02, ge=0.0, le=100.0, doc="L2 regularisation of factors")
    init_std: float = param(0.1, ge=0.0, le=10.0, doc="std of the normal factor init")
    lr_decay: float = param(1.0, gt=0.0, le=1.0, doc="learning rates x this after each epoch")
    validation_fraction: float = param(0.0, ge=0.0, lt=1.0,
                                       doc="share of ratings held out for early stopping "
                                           "(0: off; held-out ratings are not trained on)")
    patience: int = param(2, ge=1, le=1000, doc="epochs without validation gain before stop")
    n_threads: int = param(1, ge=1, le=1024,
                           doc="1: deterministic; > 1: lock-free parallel epochs")
    seed: int | None = seed_param("seed of the init and the shuffles")


class SGDRatingModel(FactorModel):
    """Shared fit loop (epochs, early stopping, threads) of the SGD rating models.

    Subclasses implement :meth:`_init_state`, :meth:`_epoch_fn`, :meth:`_sse` and
    :meth:`_finish` (derive ``user_factors_`` etc. from the trained state).
    """

    predicts_ratings = True
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"training_rmse_": "*: nonfinite", "validation_rmse_": "*: nonfinite",
                  "n_epochs_run_": "int"}
    Config = SGDConfig

    # ----------------------------------------------------------------- fitting
    @guard_fit
    def _fit(self, data: Dataset) -> None:
        if data.kind != "explicit":
            raise ConfigError(f"{self.name} needs explicit ratings (data kind {data.kind!r}); "
                              "use als or bpr for implicit feedback")
        cfg = self.config
        rows = data.n_users + data.n_items  # (x2: SVD++ y_j, drifts, early-stop snapshot)
        check_allocation(dense_bytes(2 * rows, cfg.n_factors, itemsize=12),
                         f"{self.name} factors ({rows} users and items x {cfg.n_factors})",
                         advice="lower n_factors")
        inter = data.interactions
        users = np.asarray(inter.users, dtype=np.int32)
        items = np.asarray(inter.items, dtype=np.int32)
        ratings = np.asarray(inter.values, dtype=np.float32)
        if not np.all(np.isfinite(ratings)):
            raise ConfigError("ratings must be finite numbers")
        extra = self._row_arrays(data)
        rng = self._rng()
        train, valid = _split_validation(len(ratings), cfg.validation_fraction, rng)
        self.rating_min_ = float(ratings.min())
        self.rating_max_ = float(ratings.max())
        self._init_state(data, users[train], items[train], ratings[train], rng,
                         *(a[train] for a in extra))
        epoch = self._epoch_fn(users[train], items[train], ratings[train], rng,
                               *(a[train] for a in extra))
        self._run_epochs(epoch, len(train), (users[valid], items[valid], ratings[valid],
                                             *(a[valid] for a in extra)))
        self._zero_untrained(users[train], items[train])
        self._finish()

    def _zero_untrained(self, users: np.ndarray, items: np.ndarray) -> None:
        """Users/items without a training rating keep zero factors, not their random init."""
        self._user_f[np.bincount(users, minlength=len(self._user_f)) == 0] = 0.0
        self._item_f[np.bincount(items, minlength=len(self._item_f)) == 0] = 0.0

    def _run_epochs(self, epoch: EpochFn, n_train: int, valid: tuple[np.ndarray, ...]) -> None:
        """Run epochs with decaying learning rates; early-stop on the validation RMSE."""
        cfg = self.config
        scale = 1.0
        losses, val_rmse = [], []
        best, best_state, stale = np.inf, None, 0
        with numba_threads(cfg.n_threads):
            for _ in range(cfg.n_epochs):
                losses.append(np.sqrt(epoch(scale) / max(n_train, 1)))
                self._epoch_done(len(losses), cfg.n_epochs, loss=losses[-1])
                scale *= cfg.lr_decay
                if len(valid[0]) == 0:
                    continue
                val_rmse.append(np.sqrt(self._sse(*valid) / len(valid[0])))
                if val_rmse[-1] < best - 1e-6:
                    best, best_state, stale = val_rmse[-1], self._snapshot(), 0
                else:
                    stale += 1
                    if stale >= cfg.patience:
                        break
        if best_state is not None:
            self._restore(best_state)
        self.training_rmse_ = np.asarray(losses)
        self.validation_rmse_ = np.asarray(val_rmse)
        self.n_epochs_run_ = len(losses)

    def _state_names(self) -> tuple[str, ...]:
        return ("_user_bias", "_item_bias", "_user_f", "_item_f")

    def _snapshot(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name).copy() for name in self._state_names()}

    def _restore(self, state: dict[str, np.ndarray]) -> None:
        for name, value in state.items():
            getattr(self, name)[...] = value

    def _init_biases_and_factors(self, n_users: int, n_items: int, ratings: np.ndarray,
                                 rng: np.random.Generator) -> None:
        cfg = self.config
        self._mu = float(ratings.mean()) if len(ratings) else 0.0
        self._user_bias = np.zeros(n_users, dtype=np.float32)
        self._item_bias = np.zeros(n_items, dtype=np.float32)
        d = cfg.n_factors
        self._user_f = (rng.standard_normal((n_users, d)) * cfg.init_std).astype(np.float32)
        self._item_f = (rng.standard_normal((n_items, d)) * cfg.init_std).astype(np.float32)

    def _finish_biases(self) -> None:
        self.global_bias_ = self._mu
        self.user_bias_ = self._user_bias
        self.item_bias_ = self._item_bias
        for name in ("_user_bias", "_item_bias", "_user_f", "_item_f"):
            delattr(self, name)

    # ----------------------------------------------------------------- hooks
    def _row_arrays(self, data: Dataset) -> tuple[np.ndarray, ...]:
        """Extra per-rating arrays (e.g. timestamps), none by default.

        Each is split like the ratings and its training / validation part is appended to
        the arguments of :meth:`_init_state` and :meth:`_epoch_fn` (after ``rng``) and of
        :meth:`_sse` (after ``ratings``).
        """
        return ()

    def _init_state(self, data, users, items, ratings, rng) -> None:  # pragma: no cover
        raise NotImplementedError

    def _epoch_fn(self, users, items, ratings, rng) -> EpochFn:  # pragma: no cover
        raise NotImplementedError

    def _sse(self, users, items, ratings) -> float:  # pragma: no cover
        raise NotImplementedError

    def _finish(self) -> None:  # pragma: no cover
        raise NotImplementedError

    # ----------------------------------------------------------------- contract
    def _fold_in_regularization(self) -> float:
        return max(float(self.config.reg_factors), 1e-6)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.clip(super()._predict(users, items), self.rating_min_, self.rating_max_)


def _float32(*values: float) -> tuple[np.float32, ...]:
    return tuple(np.float32(v) for v in values)


def _split_validation(n: int, fraction: float, rng: np.random.Generator
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, validation rows): a random ``fraction`` held out (none at 0)."""
    if fraction <= 0:
        return np.arange(n), np.arange(0)
    n_valid = int(round(fraction * n))
    if n_valid < 1 or n_valid >= n:
        raise ConfigError(f"validation_fraction={fraction} leaves no validation or no "
                          f"training ratings out of {n}")
    perm = rng.permutation(n)
    return np.sort(perm[n_valid:]), np.sort(perm[:n_valid])


# ---------------------------------------------------------------------- FunkSVD
@register
class SGDMatrixFactorization(SGDRatingModel):
    """Biased matrix factorisation trained by SGD (FunkSVD), r_ui = mu + b_u + b_i + p_u.q_i.

    Parameters
    ----------
    n_factors, n_epochs : int
        Latent dimensions and passes over the ratings (defaults as Surprise's SVD).
    lr_bias, lr_factors, reg_bias, reg_factors : float
        Per-term learning rates and L2 regularisation.
    init_std : float
        Factors start as N(0, init_std^2); biases start at 0.
    lr_decay : float
        Learning rates are multiplied by this after every epoch.
    validation_fraction, patience : float, int
        Early stopping: hold out this share of the ratings, stop after ``patience`` epochs
        without a lower validation RMSE and keep the best epoch's parameters.
    n_threads : int
        1 (default): one sequential loop. More: stratified parallel epochs (DSGD, see the
        module docs); deterministic under the seed either way.
    seed : int, optional

    Attributes
    ----------
    training_rmse_, validation_rmse_ : ndarray
        RMSE per epoch on the ratings trained on (during the epoch) and on the held-out
        validation ratings (empty without early stopping).

    References
    ----------
    Funk (2006); Koren, Bell, Volinsky (2009), IEEE Computer 42(8).
    """

    name = "sgd_mf"

    def _init_state(self, data, users, items, ratings, rng) -> None:
        self._init_biases_and_factors(data.n_users, data.n_items, ratings, rng)

    def _epoch_fn(self, users, items, ratings, rng) -> EpochFn:
        cfg = self.config
        blocks = cfg.n_threads
        bounds = np.zeros(1, np.int64)
        if blocks > 1:
            u, i, r, bounds = stratify(users, items, ratings, len(self._user_f),
                                       len(self._item_f), blocks, rng)
            grouped = (u, i, r)
        else:
            orders = ShuffledOrders((users, items, ratings), rng,
                                    overlap=(os.cpu_count() or 1) > 1)

        def epoch(scale: float) -> float:
            common = (np.float32(self._mu), self._user_bias, self._item_bias, self._user_f,
                      self._item_f, *_float32(cfg.lr_bias * scale, cfg.lr_factors * scale,
                                              cfg.reg_bias, cfg.reg_factors))
            if blocks == 1:
                try:
                    return _sgd_epoch(*orders.take(), *common)
                finally:
                    orders.wait()
            seed = rng.integers(0, 2**62)
            _shuffle_strata(*grouped, bounds, seed)
            return _sgd_epoch_strata(*grouped, bounds, blocks, *common)

        return epoch

    def _sse(self, users, items, ratings) -> float:
        return _squared_errors(users, items, ratings, self._mu, self._user_bias,
                               self._item_bias, self._user_f, self._item_f)

    def _finish(self) -> None:
        self.user_factors_ = self._user_f
        self.item_factors_ = self._item_f
        self._finish_biases()
