"""timeSVD++: SVD++ with time-dependent biases and user factors (Koren 2009).

With t the day of the rating (days since the epoch) and t_u the mean rating day of u,

    r_ui(t) = mu + (b_i + b_i,Bin(t)) (c_u + c_u,t) + b_u + alpha_u dev_u(t) + b_u,t
              + q_i . (p_u + alpha_pu dev_u(t) + |N(u)|^-1/2 sum_(j in N(u)) y_j),
    dev_u(t) = sign(t - t_u) |t - t_u|^beta.

Bin(t) is one of ``n_bins`` equal-width bins over the training days (days outside are
clamped to the first or last bin); b_u,t and c_u,t are day-specific terms, one per distinct
(user, day) of the training ratings, held per user as sorted days plus values (a CSR layout,
O(distinct user-days) memory, never users x days); a (user, day) not seen in training
contributes 0. c_u starts at 1 and is regularised towards 1, everything else towards 0.

Training is SVD++'s per-user SGD (:mod:`.svdpp`): users in a shuffled order each epoch, the
implicit sum z_u computed once per user and the y_j gradient applied once per user pass;
``n_threads > 1`` runs lock-free chunks of users as svdpp does (not bit-reproducible).
An epoch is O(nnz d); memory O((2 n_users + 2 n_items) d + n_items n_bins + user-days).

``predict(..., times=None)`` and ranking score as of each user's latest training day:
``user_factors_`` and ``user_bias_`` hold that day's values and ranking scales each user's
item biases b_i + b_i,Bin(t_last) by c_u(t_last) (see :class:`TimeSVDpp`); similar items and
vector retrieval work as for any factor model. A new user given only a history is folded in
as by SVD++ with the time terms at their neutral values (c = 1, no drift, no day terms)
and the items' latest-bin biases ``item_bias_``.

References
----------
Koren (2009), "Collaborative filtering with temporal dynamics", KDD (timeSVD++);
Koren (2010), Communications of the ACM 53(4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError
from recoforge.models.factors.sgd_mf import EpochFn
from recoforge.models.factors.svdpp import (
    SVDpp,
    apply_implicit_gradient,
    implicit_sums,
    user_implicit_sum,
)
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register

SECONDS_PER_DAY = 86_400
# positions in the learning-rate and regularisation arrays handed to the kernels
BIAS, FACTORS, IMPLICIT, BIN, DAY, DRIFT, SCALE, DRIFT_FACTORS = range(8)


# ---------------------------------------------------------------------- kernels
@numba.njit(cache=True, fastmath=True, inline="always")
def _time_user_pass(u, indptr, items, ratings, devs, bins, slots, mu, user_bias, drift,
                    scale, user_f, drift_f, item_bias, bin_bias, item_f, implicit_f,
                    day_bias, day_scale, lr, reg, z, grad):  # pragma: no cover - numba
    """SGD over user u's ratings, then one update of the y_j of N(u); returns the SSE."""
    start, stop = indptr[u], indptr[u + 1]
    n = stop - start
    if n == 0:
        return 0.0
    d = z.shape[0]
    has_drift = drift_f.shape[0] > 0
    norm = user_implicit_sum(start, stop, items, implicit_f, z)
    grad[:] = 0.0
    p = user_f[u]
    total = 0.0
    for k in range(start, stop):
        i, s, dev = items[k], slots[k], devs[k]
        q = item_f[i]
        c = scale[u] + day_scale[s]
        ib = item_bias[i] + bin_bias[i, bins[k]]
        dot = np.float32(0.0)
        if has_drift:
            a = drift_f[u]
            for f in range(d):
                dot += q[f] * (p[f] + dev * a[f] + z[f])
        else:
            for f in range(d):
                dot += q[f] * (p[f] + z[f])
        err = ratings[k] - (mu + ib * c + user_bias[u] + drift[u] * dev + day_bias[s] + dot)
        user_bias[u] += lr[BIAS] * (err - reg[BIAS] * user_bias[u])
        item_bias[i] += lr[BIAS] * (err * c - reg[BIAS] * item_bias[i])
        bin_bias[i, bins[k]] += lr[BIN] * (err * c - reg[BIN] * bin_bias[i, bins[k]])
        day_bias[s] += lr[DAY] * (err - reg[DAY] * day_bias[s])
        drift[u] += lr[DRIFT] * (err * dev - reg[DRIFT] * drift[u])
        scale[u] += lr[SCALE] * (err * ib - reg[SCALE] * (scale[u] - 1.0))
        day_scale[s] += lr[SCALE] * (err * ib - reg[SCALE] * day_scale[s])
        if has_drift:
            a = drift_f[u]
            for f in range(d):
                pf, qf, af = p[f], q[f], a[f]
                p[f] = pf + lr[FACTORS] * (err * qf - reg[FACTORS] * pf)
                q[f] = qf + lr[FACTORS] * (err * (pf + dev * af + z[f]) - reg[FACTORS] * qf)
                a[f] = af + lr[DRIFT_FACTORS] * (err * dev * qf - reg[DRIFT_FACTORS] * af)
                grad[f] += err * qf
        else:
            for f in range(d):
                pf, qf = p[f], q[f]
                p[f] = pf + lr[FACTORS] * (err * qf - reg[FACTORS] * pf)
                q[f] = qf + lr[FACTORS] * (err * (pf + z[f]) - reg[FACTORS] * qf)
                grad[f] += err * qf
        total += err * err
    apply_implicit_gradient(start, stop, items, implicit_f, grad, lr[IMPLICIT], reg[IMPLICIT],
                            norm)
    return total


@numba.njit(cache=True, fastmath=True, parallel=True)
def _time_epoch(order, n_chunks, indptr, items, ratings, devs, bins, slots, mu, user_bias,
                drift, scale, user_f, drift_f, item_bias, bin_bias, item_f, implicit_f,
                day_bias, day_scale, lr, reg):  # pragma: no cover - numba
    """One epoch over users in ``order``; ``n_chunks`` > 1 runs chunks lock-free at once."""
    n = order.shape[0]
    d = user_f.shape[1]
    partial = np.zeros(n_chunks)
    for c in numba.prange(n_chunks):
        z = np.zeros(d, dtype=np.float32)
        grad = np.zeros(d, dtype=np.float32)
        total = 0.0
        for k in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            total += _time_user_pass(order[k], indptr, items, ratings, devs, bins, slots, mu,
                                     user_bias, drift, scale, user_f, drift_f, item_bias,
                                     bin_bias, item_f, implicit_f, day_bias, day_scale, lr,
                                     reg, z, grad)
        partial[c] = total
    return partial.sum()


@numba.njit(cache=True, fastmath=True)
def _predict_pairs(users, items, devs, bins, slots, mu, user_bias, drift, scale, user_f,
                   drift_f, item_bias, bin_bias, item_f, day_bias,
                   day_scale):  # pragma: no cover - numba
    """r_ui(t) for each pair (float64); ``user_f`` = p_u + z_u, slot -1 = unseen user-day."""
    out = np.empty(users.shape[0])
    has_drift = drift_f.shape[0] > 0
    for r in range(users.shape[0]):
        u, i, s, dev = users[r], items[r], slots[r], devs[r]
        c = scale[u]
        pred = mu + user_bias[u] + drift[u] * dev
        if s >= 0:
            c += day_scale[s]
            pred += day_bias[s]
        pred += (item_bias[i] + bin_bias[i, bins[r]]) * c
        for f in range(item_f.shape[1]):
            pred += item_f[i, f] * user_f[u, f]
        if has_drift:
            for f in range(item_f.shape[1]):
                pred += dev * item_f[i, f] * drift_f[u, f]
        out[r] = pred
    return out


def to_days(times: np.ndarray) -> np.ndarray:
    """Epoch seconds as whole days since the epoch (int64, floor)."""
    return np.floor_divide(np.asarray(times, dtype=np.int64), SECONDS_PER_DAY)


# ---------------------------------------------------------------------- model
@register
class TimeSVDpp(SVDpp):
    """timeSVD++: SVD++ with drifting biases, item-bias bins, day terms and factor drift.

    Parameters
    ----------
    n_factors, n_epochs, lr_*, reg_*, init_std, lr_decay, validation_fraction, patience,
    n_threads, seed
        As ``svdpp`` (``lr_bias``/``reg_bias`` for b_u and b_i).
    n_bins : int
        Item-bias time bins b_i,Bin(t) over the training days.
    beta : float
        Exponent of dev_u(t) = sign(t - t_u) |t - t_u|^beta (days).
    lr_bin, reg_bin / lr_day, reg_day / lr_drift, reg_drift / lr_scale, reg_scale /
    lr_drift_factors, reg_drift_factors : float
        Learning rates and L2 regularisation of b_i,Bin(t); b_u,t; alpha_u; c_u and c_u,t
        (c_u towards 1); alpha_pu. A learning rate of 0 freezes that term at its start.
    scale_item_bias : bool
        Learn the user scaling c_u(t) of the item bias (off: c_u(t) = 1).
    drift_factors : bool
        Learn the drift alpha_pu of the user factors (an n_users x d array).

    Defaults: alpha_u's learning rate 1e-5 and regularisation 50 are Koren's (2009); the
    rest are svdpp's, and the other time terms' were chosen one by one on a validation
    split of MovieLens 100K's training part (20 factors, 20 epochs; validation RMSE of
    svdpp 0.9280): b_u,t (0.9229 alone) and c_u(t) (0.9246) give most of the gain, 0.9198
    together with alpha_u; b_i,Bin(t) helps only at a small rate (0.001: 0.9190; at 0.005
    it overfits the 7-month span, 0.9313 alone); alpha_pu changes nothing measurable there
    (half the users rate on a single day), so its rate is small. Predicting a rating at a
    time other than its own day loses the day terms: on ML-100K's random test split,
    predicting at the latest training day scores RMSE 0.933, at the ratings' times 0.913
    (svdpp 0.921); see benchmarks/results/time_mf.md.

    Attributes
    ----------
    user_factors_, user_bias_ : ndarray
        Effective values at each user's latest training day (t_last):
        p_u + alpha_pu dev_u(t_last) + z_u and b_u + alpha_u dev_u(t_last) + b_u,t_last.
    user_bias_scale_ : ndarray (n_users,)
        c_u + c_u,t_last, the scale of the item biases when ranking for known users.
    item_bias_ : ndarray (n_items,)
        b_i + b_i,Bin(last training day): the items' current biases (used for new users).
    user_static_factors_, user_drift_factors_ : ndarray
        p_u + z_u and alpha_pu ((0, d) when ``drift_factors`` is off).
    user_static_bias_, user_drift_, user_scale_, item_static_bias_, item_bin_bias_ : ndarray
        b_u, alpha_u, c_u, b_i and b_i,bin (n_items, n_bins).
    user_day_indptr_, user_days_, day_bias_, day_scale_ : ndarray
        The day terms: user u's distinct training days are
        ``user_days_[user_day_indptr_[u]:user_day_indptr_[u + 1]]`` (sorted), with b_u,t and
        c_u,t at the same positions of ``day_bias_`` and ``day_scale_``.
    user_mean_day_, user_last_day_ : ndarray
        t_u (float) and each user's latest training day.
    first_day_, last_day_ : int
        The training time range in days since the epoch (the bins span it).

    References
    ----------
    Koren (2009), "Collaborative filtering with temporal dynamics", KDD.
    """

    name = "timesvdpp"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {
        "first_day_": "int", "last_day_": "int", "user_mean_day_": "users",
        "user_days_": "slots: int", "user_day_indptr_": "users+1: int",
        "user_last_day_": "users: int", "user_static_factors_": "users x d",
        "user_static_bias_": "users", "item_static_bias_": "items",
        "user_drift_factors_": "* x d", "user_drift_": "users", "user_scale_": "users",
        "item_bin_bias_": "items x bins", "day_bias_": "slots", "day_scale_": "slots",
        "user_bias_scale_": "users"}
    uses_time = True
    #: known users are scored with per-user, per-time-bin item biases: not a plain q . v
    factorised = False

    @dataclass(frozen=True)
    class Config(SVDpp.Config):
        n_bins: int = param(30, ge=1, le=10_000, doc="item-bias time bins b_i,Bin(t)")
        beta: float = param(0.4, ge=0.0, le=2.0, doc="exponent of dev_u(t)")
        lr_bin: float = param(0.001, ge=0.0, le=1.0, doc="learning rate of b_i,Bin(t)")
        reg_bin: float = param(0.1, ge=0.0, le=1000.0, doc="L2 regularisation of b_i,Bin(t)")
        lr_day: float = param(0.005, ge=0.0, le=1.0, doc="learning rate of b_u,t")
        reg_day: float = param(0.05, ge=0.0, le=1000.0, doc="L2 regularisation of b_u,t")
        lr_drift: float = param(1e-5, ge=0.0, le=1.0, doc="learning rate of alpha_u")
        reg_drift: float = param(50.0, ge=0.0, le=1000.0, doc="L2 regularisation of alpha_u")
        lr_scale: float = param(0.005, ge=0.0, le=1.0, doc="learning rate of c_u, c_u,t")
        reg_scale: float = param(0.1, ge=0.0, le=1000.0,
                                 doc="L2 regularisation of c_u (towards 1) and c_u,t")
        lr_drift_factors: float = param(1e-5, ge=0.0, le=1.0,
                                        doc="learning rate of alpha_pu")
        reg_drift_factors: float = param(1.0, ge=0.0, le=1000.0,
                                         doc="L2 regularisation of alpha_pu")
        scale_item_bias: bool = param(True, doc="learn the item-bias scale c_u(t)")
        drift_factors: bool = param(True, doc="learn the user-factor drift alpha_pu")

    # ----------------------------------------------------------------- fitting
    def _row_arrays(self, data: Dataset) -> tuple[np.ndarray, ...]:
        """The ratings' epoch seconds: the ``times`` of the hooks below (always passed;
        their default only keeps the hook signatures compatible)."""
        times = data.interactions.timestamps
        if times is None:
            raise ConfigError("timesvdpp needs rating timestamps; use svdpp for ratings "
                              "without times, or load the data with a timestamp column")
        return (np.asarray(times, dtype=np.int64),)

    def _init_state(self, data, users, items, ratings, rng, times=None) -> None:
        super()._init_state(data, users, items, ratings, rng)
        cfg = self.config
        days = to_days(times)
        self._init_days(data.n_users, users, days)
        rated = self._rated  # per-user rows in a shuffled order: align the days with it
        rows = np.repeat(np.arange(data.n_users), np.diff(rated.indptr))
        key = users.astype(np.int64) * data.n_items + items
        sorter = np.argsort(key, kind="stable")
        found = np.searchsorted(key, rows * data.n_items + rated.indices, sorter=sorter)
        self._devs, self._bins, self._slots = self._time_features(
            rows, days[sorter[found]], cfg.n_bins)
        n_slots, d = len(self.user_days_), cfg.n_factors
        self._day_bias = np.zeros(n_slots, dtype=np.float32)
        self._day_scale = np.zeros(n_slots, dtype=np.float32)
        self._drift = np.zeros(data.n_users, dtype=np.float32)
        self._scale = np.ones(data.n_users, dtype=np.float32)
        self._bin_bias = np.zeros((data.n_items, cfg.n_bins), dtype=np.float32)
        n_drift = data.n_users if cfg.drift_factors else 0
        self._drift_f = np.zeros((n_drift, d), dtype=np.float32)

    def _init_days(self, n_users: int, users: np.ndarray, days: np.ndarray) -> None:
        """Time range, t_u, last days and the per-user sorted distinct days (CSR)."""
        first, last = int(days.min()), int(days.max())
        span = last - first + 1
        counts = np.bincount(users, minlength=n_users)
        offsets = np.bincount(users, weights=(days - first).astype(np.float64),
                              minlength=n_users)
        has = counts > 0
        self.first_day_, self.last_day_ = first, last
        self.user_mean_day_ = np.full(n_users, float(last))
        self.user_mean_day_[has] = first + offsets[has] / counts[has]
        keys = np.unique(users.astype(np.int64) * span + (days - first))
        self.user_days_ = keys % span + first
        per_user = np.bincount(keys // span, minlength=n_users)
        self.user_day_indptr_ = np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64)
        self.user_last_day_ = np.full(n_users, last, dtype=np.int64)
        self.user_last_day_[has] = self.user_days_[self.user_day_indptr_[1:][has] - 1]

    def _state_names(self) -> tuple[str, ...]:
        return (*super()._state_names(), "_day_bias", "_day_scale", "_drift", "_scale",
                "_bin_bias", "_drift_f")

    def _epoch_fn(self, users, items, ratings, rng, times=None) -> EpochFn:
        cfg = self.config
        rated = self._rated
        lr = np.array([cfg.lr_bias, cfg.lr_factors, cfg.lr_implicit, cfg.lr_bin, cfg.lr_day,
                       cfg.lr_drift, cfg.lr_scale if cfg.scale_item_bias else 0.0,
                       cfg.lr_drift_factors], dtype=np.float32)
        reg = np.array([cfg.reg_bias, cfg.reg_factors, cfg.reg_implicit, cfg.reg_bin,
                        cfg.reg_day, cfg.reg_drift, cfg.reg_scale, cfg.reg_drift_factors],
                       dtype=np.float32)

        def epoch(scale: float) -> float:
            order = rng.permutation(rated.shape[0]).astype(np.int64)
            return _time_epoch(order, cfg.n_threads, rated.indptr, rated.indices, rated.data,
                               self._devs, self._bins, self._slots, np.float32(self._mu),
                               self._user_bias, self._drift, self._scale, self._user_f,
                               self._drift_f, self._item_bias, self._bin_bias, self._item_f,
                               self._implicit_f, self._day_bias, self._day_scale,
                               (lr * scale).astype(np.float32), reg)

        return epoch

    def _sse(self, users, items, ratings, times=None) -> float:
        devs, bins, slots = self._time_features(users, to_days(times), self.config.n_bins)
        effective = self._user_f + implicit_sums(self._rated, self._implicit_f)
        pred = _predict_pairs(users.astype(np.int64), items.astype(np.int64), devs, bins,
                              slots, self._mu, self._user_bias, self._drift, self._scale,
                              effective, self._drift_f, self._item_bias, self._bin_bias,
                              self._item_f, self._day_bias, self._day_scale)
        return float(np.sum((ratings - pred) ** 2))

    def _finish(self) -> None:
        super()._finish()  # implicit_factors_, user_factors_ = p + z, biases
        self.user_static_factors_ = self.user_factors_
        self.user_static_bias_ = self.user_bias_
        self.item_static_bias_ = self.item_bias_
        self.user_drift_factors_ = self._drift_f
        self.user_drift_ = self._drift
        self.user_scale_ = self._scale
        self.item_bin_bias_ = self._bin_bias
        self.day_bias_ = self._day_bias
        self.day_scale_ = self._day_scale
        for name in ("_drift_f", "_drift", "_scale", "_bin_bias", "_day_bias", "_day_scale",
                     "_devs", "_bins", "_slots"):
            delattr(self, name)
        self._set_latest_day_state()

    def _set_latest_day_state(self) -> None:
        """user_factors_, user_bias_, user_bias_scale_, item_bias_ as of t_last."""
        users = np.arange(len(self.user_last_day_))
        devs, _, slots = self._time_features(users, self.user_last_day_, self._n_bins())
        seen = slots >= 0
        day_bias = np.where(seen, self.day_bias_[np.maximum(slots, 0)], 0.0)
        day_scale = np.where(seen, self.day_scale_[np.maximum(slots, 0)], 0.0)
        self.user_bias_ = (self.user_static_bias_ + self.user_drift_ * devs
                           + day_bias).astype(np.float32)
        self.user_bias_scale_ = (self.user_scale_ + day_scale).astype(np.float32)
        factors = self.user_static_factors_
        if len(self.user_drift_factors_):
            factors = factors + devs[:, None] * self.user_drift_factors_
        self.user_factors_ = np.ascontiguousarray(factors, dtype=np.float32)
        self.item_bias_ = (self.item_static_bias_
                           + self.item_bin_bias_[:, -1]).astype(np.float32)

    def _check_state(self) -> None:
        """Invariants of the day layout a loaded model must hold (indices stay in bounds)."""
        first, last = self.first_day_, self.last_day_
        indptr, days = self.user_day_indptr_, self.user_days_
        if not first <= last:
            raise ValueError(f"first_day_ {first} is after last_day_ {last}")
        if indptr[0] != 0 or indptr[-1] != len(days) or (np.diff(indptr) < 0).any():
            raise ValueError("user_day_indptr_ is not a monotone 0..len(user_days_) sequence")
        for label, values in (("user_days_", days), ("user_last_day_", self.user_last_day_)):
            if len(values) and (values.min() < first or values.max() > last):
                raise ValueError(f"{label} holds a day outside {first}..{last}")
        if self.item_bin_bias_.shape[1] < 1:
            raise ValueError("item_bin_bias_ has no time bins")
        if self.user_drift_factors_.shape[0] not in (0, len(self.user_index_)):
            raise ValueError("user_drift_factors_ has neither 0 nor n_users rows")

    # ----------------------------------------------------------------- time layout
    def _n_bins(self) -> int:
        return int(self.item_bin_bias_.shape[1])

    def _time_features(self, users: np.ndarray, days: np.ndarray, n_bins: int
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(dev_u(t) float32, Bin(t) int32, user-day slot int64 or -1) of each pair."""
        offset = days - self.user_mean_day_[users]
        devs = (np.sign(offset) * np.abs(offset) ** self.config.beta).astype(np.float32)
        return devs, self._bins_of(days, n_bins), self._slots_of(users, days)

    def _bins_of(self, days: np.ndarray, n_bins: int) -> np.ndarray:
        """Bin(t): equal-width bins over the training days, outside days clamped."""
        first, last = self.first_day_, self.last_day_
        clamped = np.clip(days, first, last)
        bins = np.minimum((clamped - first) * n_bins // (last - first + 1), n_bins - 1)
        return bins.astype(np.int32)

    def _slots_of(self, users: np.ndarray, days: np.ndarray) -> np.ndarray:
        """Position of each (user, day) in ``user_days_``, -1 where not a training day."""
        first, last = self.first_day_, self.last_day_
        span = last - first + 1
        counts = np.diff(self.user_day_indptr_)
        keys = np.repeat(np.arange(len(counts), dtype=np.int64), counts) * span \
            + (self.user_days_ - first)
        query = np.asarray(users, dtype=np.int64) * span + (np.clip(days, first, last) - first)
        if len(keys) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        pos = np.searchsorted(keys, query)
        found = (days >= first) & (days <= last) & (pos < len(keys))
        found &= keys[np.minimum(pos, len(keys) - 1)] == query
        return np.where(found, pos, -1).astype(np.int64)

    # ----------------------------------------------------------------- contract
    def _predict_at(self, users: np.ndarray, items: np.ndarray,
                    times: np.ndarray | None) -> np.ndarray:
        """r_ui(t) at ``times`` (epoch seconds), or at each user's latest training day."""
        days = self.user_last_day_[users] if times is None else to_days(times)
        devs, bins, slots = self._time_features(users, days, self._n_bins())
        pred = _predict_pairs(np.asarray(users, np.int64), np.asarray(items, np.int64), devs,
                              bins, slots, self.global_bias_, self.user_static_bias_,
                              self.user_drift_, self.user_scale_, self.user_static_factors_,
                              self.user_drift_factors_, self.item_static_bias_,
                              self.item_bin_bias_, self.item_factors_, self.day_bias_,
                              self.day_scale_)
        return np.clip(pred, self.rating_min_, self.rating_max_)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self._predict_at(users, items, None)

    def _score(self, query: Query) -> np.ndarray:
        """Known users: scores at their latest training day; histories: SVD++ fold-in."""
        users = query.stored_users
        if users is None:
            return super()._score(query)
        bins = self._bins_of(self.user_last_day_[users], self._n_bins())
        item_bias = self.item_static_bias_[None, :] + self.item_bin_bias_[:, bins].T
        scores = self.user_factors_[users] @ self.item_factors_.T
        scores += self.global_bias_ + self.user_bias_[users][:, None]
        scores += self.user_bias_scale_[users][:, None] * item_bias
        return scores.astype(np.float32, copy=False)
