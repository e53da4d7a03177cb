"""Shared machinery of latent-factor models: scoring, fold-in, vectors, explanations.

A factor model learns item factors V (n_items x d), user factors U (n_users x d) and
optionally biases mu, b_u, b_i, and scores s_ui = mu + b_u + b_i + u_u . v_i.

New users (and anonymous sessions) are *folded in*: their factors are the regularised
least-squares fit of their history against the fixed item factors,

    u = (V_I^T W V_I + lambda I)^-1 V_I^T W y,

with y the history values minus the bias terms (explicit data) or the preference 1
weighted by confidence W = 1 + alpha r (implicit data, Hu et al. 2008). Because u is
linear in y, s_ui splits into per-history-item contributions
y_j w_j (v_i^T A^-1 v_j) — the explanation the implicit library gives for ALS.

Subclasses set ``user_factors_``, ``item_factors_`` (float32) and, for rating models,
``global_bias_``, ``user_bias_``, ``item_bias_``; they may override :meth:`_fold_in_weights`
and the fold-in regularisation via ``_fold_in_regularization``.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from recoforge.models._scoring import cosine_rows
from recoforge.models.base import Recommender
from recoforge.models.query import Query


@numba.njit(cache=True, parallel=True, fastmath=True)
def pair_dots(left, right, rows, cols):  # pragma: no cover - compiled
    """out[p] = left[rows[p]] . right[cols[p]] in float64, without gathering the rows:
    O(pairs x d) time, O(pairs) memory."""
    out = np.empty(rows.shape[0], dtype=np.float64)
    for p in numba.prange(rows.shape[0]):
        a, b = left[rows[p]], right[cols[p]]
        total = 0.0
        for j in range(a.shape[0]):
            total += a[j] * b[j]
        out[p] = total
    return out


class FactorModel(Recommender):
    """Base for matrix-factorisation models (not registered itself)."""

    factorised = True
    user_state = "fold_in"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"user_factors_": "users x d", "item_factors_": "items x d"}

    #: implicit models fold in confidence-weighted preferences instead of ratings
    implicit_fold_in: bool = False
    user_factors_: np.ndarray
    item_factors_: np.ndarray
    global_bias_: float
    user_bias_: np.ndarray
    item_bias_: np.ndarray

    # ----------------------------------------------------------------- hooks
    def _fold_in_regularization(self) -> float:
        return float(getattr(self.config, "regularization", 0.1))

    def _fold_in_alpha(self) -> float:
        return float(getattr(self.config, "alpha", 1.0))

    def _has_biases(self) -> bool:
        return hasattr(self, "item_bias_") and self.item_bias_ is not None

    # ----------------------------------------------------------------- fold-in
    def _gram(self) -> np.ndarray | None:
        """V^T V (float64), needed by implicit fold-in; computed per call, O(n_items d^2)."""
        if not self.implicit_fold_in:
            return None
        factors = self.item_factors_.astype(np.float64)
        return factors.T @ factors

    def _fold_in_system(self, history: sp.csr_matrix, row: int, gram: np.ndarray | None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(items, targets, weights, A) of one history row; A = V_I^T W V_I + lambda I.

        For implicit folding, with C = 1 + alpha r, the exact Hu et al. system is
        V^T V + V_I^T (C - I) V_I + lambda I with targets C (preference 1).
        """
        start, stop = history.indptr[row], history.indptr[row + 1]
        items = history.indices[start:stop]
        values = history.data[start:stop].astype(np.float64)
        sub = self.item_factors_[items].astype(np.float64)
        reg = self._fold_in_regularization()
        d = sub.shape[1]
        if gram is not None:
            conf = 1.0 + self._fold_in_alpha() * values
            a = gram + (sub.T * (conf - 1.0)) @ sub + reg * np.eye(d)
            return items, np.ones_like(values), conf, a
        targets = values.copy()
        if self._has_biases():
            targets -= self.global_bias_ + self.item_bias_[items]
            targets -= self._fold_in_user_bias(targets, reg)
        weights = np.ones_like(values)
        a = sub.T @ sub + reg * len(items) * np.eye(d) if len(items) else reg * np.eye(d)
        return items, targets, weights, a

    def _fold_in_user_bias(self, residuals: np.ndarray, reg: float) -> float:
        """Damped mean residual: the new user's bias before fitting factors."""
        return float(residuals.sum() / (len(residuals) + max(reg, 1e-12) * 10.0)) \
            if len(residuals) else 0.0

    def fold_in(self, histories: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Factors and biases of query rows from their histories, item factors fixed.

        Returns
        -------
        (factors, biases) : float32 (n, d) and (n,) (zeros without a bias model).
        Cost O(n (h d^2 + d^3)) for histories of length h.
        """
        n, d = histories.shape[0], self.item_factors_.shape[1]
        factors = np.zeros((n, d), dtype=np.float32)
        biases = np.zeros(n, dtype=np.float32)
        histories = sp.csr_matrix(histories)
        gram = self._gram()
        for row in range(n):
            if histories.indptr[row] == histories.indptr[row + 1]:
                continue
            items, targets, weights, a = self._fold_in_system(histories, row, gram)
            rhs = self.item_factors_[items].astype(np.float64).T @ (weights * targets)
            factors[row] = np.linalg.solve(a, rhs)
            if self._has_biases():
                raw = histories.data[histories.indptr[row]:histories.indptr[row + 1]]
                resid = raw - self.global_bias_ - self.item_bias_[items]
                biases[row] = self._fold_in_user_bias(resid, self._fold_in_regularization())
        return factors, biases

    # ----------------------------------------------------------------- contract
    def _user_terms(self, query: Query) -> tuple[np.ndarray, np.ndarray | None]:
        """(factors (n, d), biases (n,) or None) of the query rows: trained for stored
        known users, folded in from the history otherwise."""
        users = query.stored_users
        if users is not None:
            bias = self.user_bias_[users] if self._has_biases() else None
            return self.user_factors_[users], bias
        factors, folded_bias = self.fold_in(query.history)
        return factors, folded_bias if self._has_biases() else None

    def _score(self, query: Query) -> np.ndarray:
        user_factors, user_bias = self._user_terms(query)
        scores = user_factors @ self.item_factors_.T
        if user_bias is not None:
            scores += (self.global_bias_ + self.item_bias_)[None, :] + user_bias[:, None]
        return scores.astype(np.float32, copy=False)

    def _score_candidates(self, query: Query, candidates: np.ndarray) -> np.ndarray:
        """q . v over each row's candidates only: O(n c d), no n x n_items block."""
        if not self.factorised:
            return super()._score_candidates(query, candidates)
        vectors = self.query_vectors(query)
        items = self.item_vectors()[np.maximum(candidates, 0)]
        return np.einsum("nd,ncd->nc", vectors, items).astype(np.float32, copy=False)

    def query_vectors(self, query: Query) -> np.ndarray:
        """q with q . v = score: [u, 1, mu + b_u] for biased models, else u (float32)."""
        if not self.factorised:
            return super().query_vectors(query)
        factors, bias = self._user_terms(query)
        if bias is None:
            return np.ascontiguousarray(factors, dtype=np.float32)
        extra = np.column_stack([np.ones(len(bias)), self.global_bias_ + bias])
        return np.hstack([factors, extra]).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """v with q . v = score: [v_i, b_i, 1] for biased models, else v_i (float32)."""
        if not self._has_biases():
            return np.ascontiguousarray(self.item_factors_, dtype=np.float32)
        extra = np.column_stack([self.item_bias_, np.ones(len(self.item_bias_))])
        return np.hstack([self.item_factors_, extra]).astype(np.float32)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the latent item factors (biases left out)."""
        return cosine_rows(self.item_factors_, items)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        dots = pair_dots(self.user_factors_, self.item_factors_, np.asarray(users, np.int64),
                         np.asarray(items, np.int64))
        if self._has_biases():
            dots += self.global_bias_ + self.user_bias_[users] + self.item_bias_[items]
        return dots

    def user_vectors(self) -> np.ndarray:
        return self.user_factors_

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Contribution of each history item j: w_j y_j v_i^T A^-1 v_j (fold-in view)."""
        histories = query.history
        histories = sp.csr_matrix(histories)
        items, targets, weights, a = self._fold_in_system(histories, 0, self._gram())
        if len(items) == 0:
            return "item", np.zeros(0, np.int64), np.zeros(0)
        sub = self.item_factors_[items].astype(np.float64)
        solved = np.linalg.solve(a, self.item_factors_[item].astype(np.float64))
        return "item", items.astype(np.int64), weights * targets * (sub @ solved)
