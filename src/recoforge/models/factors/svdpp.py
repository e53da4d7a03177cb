"""SVD++: biased matrix factorisation with an implicit-feedback term (Koren 2008).

    r_ui = mu + b_u + b_i + q_i . (p_u + |N(u)|^-1/2 sum_(j in N(u)) y_j),

N(u) = the items u rated. Trained by SGD user by user (users in a shuffled order each
epoch): the implicit sum z_u is computed once per user, the gradient of the y_j is
accumulated over the user's ratings and applied once at the end of the user's pass, with
the regularisation the per-rating updates would have applied, y_j <- (1 - lr_y reg_y)^|R(u)|
y_j + lr_y |N(u)|^-1/2 sum_i e_ui q_i. That makes an epoch O(nnz d) instead of the
O(sum_u |R(u)| |N(u)| d) of the naive per-rating update of every y_j (Surprise's SVDpp).
Memory O((n_users + 2 n_items) d).

After fitting, ``user_factors_`` holds the effective user vectors p_u + z_u, so scoring,
similar items and ANN retrieval work as for any factor model. A new user's z comes from
their history; their p is the ridge fold-in of the residual r - mu - b_i - b_u - q_i . z.

References
----------
Koren (2008), "Factorization meets the neighborhood: a multifaceted collaborative filtering
model", KDD, section 4.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.models.factors.sgd_mf import (
    EpochFn,
    SGDConfig,
    SGDRatingModel,
    _float32,
    _squared_errors,
)
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register


# ---------------------------------------------------------------------- kernels
@numba.njit(cache=True, fastmath=True, inline="always")
def user_implicit_sum(start, stop, indices, implicit_f, z):  # pragma: no cover - numba
    """z = |N(u)|^-1/2 sum_j y_j over the items indices[start:stop]; returns the norm."""
    norm = np.float32(1.0 / np.sqrt(stop - start))
    z[:] = 0.0
    for k in range(start, stop):
        y = implicit_f[indices[k]]
        for f in range(z.shape[0]):
            z[f] += y[f]
    for f in range(z.shape[0]):
        z[f] *= norm
    return norm


@numba.njit(cache=True, fastmath=True, inline="always")
def apply_implicit_gradient(start, stop, indices, implicit_f, grad, lr_y, reg_y,
                            norm):  # pragma: no cover - numba
    """The batched y_j update of a user pass (module docs), for the items of N(u)."""
    decay = np.float32((1.0 - lr_y * reg_y) ** (stop - start))
    step = lr_y * norm
    for k in range(start, stop):
        y = implicit_f[indices[k]]
        for f in range(grad.shape[0]):
            y[f] = decay * y[f] + step * grad[f]


@numba.njit(cache=True, fastmath=True, inline="always")
def _user_pass(u, indptr, indices, ratings, mu, user_bias, item_bias, user_f, item_f,
               implicit_f, z, grad, lr_b, lr_f, lr_y, reg_b, reg_f, reg_y
               ):  # pragma: no cover - numba
    """SGD over user u's ratings, then one update of the y_j of N(u); returns the SSE."""
    start, stop = indptr[u], indptr[u + 1]
    n = stop - start
    if n == 0:
        return 0.0
    d = z.shape[0]
    norm = user_implicit_sum(start, stop, indices, implicit_f, z)
    grad[:] = 0.0
    p = user_f[u]
    total = 0.0
    for k in range(start, stop):
        i = indices[k]
        q = item_f[i]
        dot = np.float32(0.0)
        for f in range(d):
            dot += q[f] * (p[f] + z[f])
        err = ratings[k] - (mu + user_bias[u] + item_bias[i] + dot)
        user_bias[u] += lr_b * (err - reg_b * user_bias[u])
        item_bias[i] += lr_b * (err - reg_b * item_bias[i])
        for f in range(d):
            pf = p[f]
            qf = q[f]
            p[f] = pf + lr_f * (err * qf - reg_f * pf)
            q[f] = qf + lr_f * (err * (pf + z[f]) - reg_f * qf)
            grad[f] += err * qf
        total += err * err
    apply_implicit_gradient(start, stop, indices, implicit_f, grad, lr_y, reg_y, norm)
    return total


@numba.njit(cache=True, fastmath=True, parallel=True)
def _svdpp_epoch(order, n_chunks, indptr, indices, ratings, mu, user_bias, item_bias, user_f,
                 item_f, implicit_f, lr_b, lr_f, lr_y, reg_b, reg_f, reg_y
                 ):  # pragma: no cover - numba
    """One epoch over users in ``order``; ``n_chunks`` > 1 runs chunks lock-free at once."""
    n = order.shape[0]
    d = user_f.shape[1]
    partial = np.zeros(n_chunks)
    for c in numba.prange(n_chunks):
        z = np.zeros(d, dtype=np.float32)
        grad = np.zeros(d, dtype=np.float32)
        total = 0.0
        for k in range(c * n // n_chunks, (c + 1) * n // n_chunks):
            total += _user_pass(order[k], indptr, indices, ratings, mu, user_bias, item_bias,
                                user_f, item_f, implicit_f, z, grad, lr_b, lr_f, lr_y, reg_b,
                                reg_f, reg_y)
        partial[c] = total
    return partial.sum()


def implicit_sums(histories: sp.csr_matrix, implicit_factors: np.ndarray) -> np.ndarray:
    """z = |N(u)|^-1/2 sum_(j in N(u)) y_j for each row's item set (float32, (n, d))."""
    histories = sp.csr_matrix(histories)
    counts = np.diff(histories.indptr)
    scale = np.zeros(len(counts), dtype=np.float32)
    scale[counts > 0] = 1.0 / np.sqrt(counts[counts > 0])
    pattern = sp.csr_matrix((np.repeat(scale, counts), histories.indices, histories.indptr),
                            shape=histories.shape)
    return np.asarray(pattern @ implicit_factors, dtype=np.float32)


# ---------------------------------------------------------------------- model
@register
class SVDpp(SGDRatingModel):
    """SVD++: biased MF plus the implicit term |N(u)|^-1/2 sum y_j (Koren 2008).

    Parameters are those of ``sgd_mf`` (defaults as Surprise's SVDpp: 20 factors, 20
    epochs, learning rates 0.007, regularisation 0.02) plus ``lr_implicit`` and
    ``reg_implicit`` for the y_j. ``n_threads > 1`` processes users in lock-free parallel
    chunks (not bit-reproducible; see :mod:`.sgd_mf`).

    Attributes
    ----------
    implicit_factors_ : ndarray (n_items, d)
        The y_j.
    user_factors_ : ndarray (n_users, d)
        Effective user vectors p_u + z_u.

    References
    ----------
    Koren (2008), "Factorization meets the neighborhood", KDD.
    """

    name = "svdpp"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"implicit_factors_": "items x d"}

    @dataclass(frozen=True)
    class Config(SGDConfig):
        n_factors: int = param(20, ge=1, le=10_000, doc="latent dimensions d")
        lr_bias: float = param(0.007, gt=0.0, le=1.0, doc="learning rate of the biases")
        lr_factors: float = param(0.007, gt=0.0, le=1.0, doc="learning rate of p_u, q_i")
        lr_implicit: float = param(0.007, gt=0.0, le=1.0, doc="learning rate of the y_j")
        reg_implicit: float = param(0.02, ge=0.0, le=100.0, doc="L2 regularisation of y_j")

    def _init_state(self, data, users, items, ratings, rng) -> None:
        self._init_biases_and_factors(data.n_users, data.n_items, ratings, rng)
        cfg = self.config
        self._implicit_f = (rng.standard_normal((data.n_items, cfg.n_factors))
                            * cfg.init_std).astype(np.float32)
        self._rated = sp.csr_matrix((ratings, (users, items)),
                                    shape=(data.n_users, data.n_items), dtype=np.float32)
        self._rated.sort_indices()
        _shuffle_rows(self._rated, rng)

    def _state_names(self) -> tuple[str, ...]:
        return (*super()._state_names(), "_implicit_f")

    def _zero_untrained(self, users: np.ndarray, items: np.ndarray) -> None:
        """Also the y_j of items without a training rating (no noise in new users' z)."""
        super()._zero_untrained(users, items)
        self._implicit_f[np.bincount(items, minlength=len(self._implicit_f)) == 0] = 0.0

    def _epoch_fn(self, users, items, ratings, rng) -> EpochFn:
        cfg = self.config
        rated = self._rated

        def epoch(scale: float) -> float:
            order = rng.permutation(rated.shape[0]).astype(np.int64)
            rates = _float32(cfg.lr_bias * scale, cfg.lr_factors * scale,
                             cfg.lr_implicit * scale, cfg.reg_bias, cfg.reg_factors,
                             cfg.reg_implicit)
            return _svdpp_epoch(order, cfg.n_threads, rated.indptr, rated.indices, rated.data,
                                np.float32(self._mu), self._user_bias, self._item_bias,
                                self._user_f, self._item_f, self._implicit_f, *rates)

        return epoch

    def _sse(self, users, items, ratings) -> float:
        effective = self._user_f + implicit_sums(self._rated, self._implicit_f)
        return _squared_errors(users, items, ratings, self._mu, self._user_bias,
                               self._item_bias, effective, self._item_f)

    def _finish(self) -> None:
        self.implicit_factors_ = self._implicit_f
        self.user_factors_ = self._user_f + implicit_sums(self._rated, self._implicit_f)
        self.item_factors_ = self._item_f
        self._finish_biases()
        del self._implicit_f, self._rated

    # ----------------------------------------------------------------- fold-in
    def _fold_in_system(self, history: sp.csr_matrix, row: int, gram: np.ndarray | None):
        """The ridge system for p, with targets net of the implicit term q_i . z."""
        items, targets, weights, a = super()._fold_in_system(history, row, gram)
        z = implicit_sums(history[row], self.implicit_factors_)[0].astype(np.float64)
        targets = targets - self.item_factors_[items].astype(np.float64) @ z
        return items, targets, weights, a

    def fold_in(self, histories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """New users' effective factors p + z and biases from their histories."""
        factors, biases = super().fold_in(histories)
        return factors + implicit_sums(histories, self.implicit_factors_), biases

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Ridge contributions (fold-in view) plus each history item's q_i . y_j / sqrt|N|."""
        source, items, weights = super()._explain(query, item, n)
        if len(items) == 0:
            return source, items, weights
        implicit = self.implicit_factors_[items] @ self.item_factors_[item]
        return source, items, weights + implicit / np.sqrt(len(items))


def _shuffle_rows(matrix: sp.csr_matrix, rng: np.random.Generator) -> None:
    """Shuffle the entries within each CSR row in place (the within-user rating order)."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    order = np.lexsort((rng.random(len(rows)), rows))
    matrix.indices[:] = matrix.indices[order]
    matrix.data[:] = matrix.data[order]
    matrix.has_sorted_indices = False
