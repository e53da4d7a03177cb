"""Bias baseline mu + b_u + b_i, and the mean-centring utilities other models reuse.

The baseline predicts r_ui = mu + b_u + b_i with regularised (damped) biases:

- ``method="damped"``: b_i = sum_u (r_ui - mu) / (lambda_i + n_i), then
  b_u = sum_i (r_ui - mu - b_i) / (lambda_u + n_u) (one pass);
- ``method="als"``: the same two updates alternated ``n_epochs`` times (items first), as
  Surprise's ``BaselineOnly`` with ALS.

A new user's b_u is computed from the given history row with the same formula, so
recommending from a history equals recommending for the known user. Fit O(epochs * nnz),
memory O(n_users + n_items); scoring O(n * n_items) per batch.

References
----------
Koren (2010), "Factor in the neighbors: scalable and accurate collaborative filtering",
ACM TKDD 4(1), section 2.1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError
from recoforge.models.base import Recommender
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register

CentreBy = Literal["user", "item", "both"]


class Centring(NamedTuple):
    """A centred CSR and the offsets removed: expected r_ui = offset + row[u] + col[i].

    ``matrix`` keeps the structure of the input (entries equal to their expectation stay
    as explicit zeros: they are still ratings).
    """

    matrix: sp.csr_matrix
    offset: float
    row_offsets: np.ndarray
    col_offsets: np.ndarray


def row_ids(matrix: sp.csr_matrix) -> np.ndarray:
    """The row index of every stored entry of a CSR matrix."""
    return np.repeat(np.arange(matrix.shape[0], dtype=np.int64), np.diff(matrix.indptr))


def subtract_offsets(matrix: sp.csr_matrix, offset: float = 0.0,
                     row_offsets: np.ndarray | None = None,
                     col_offsets: np.ndarray | None = None) -> sp.csr_matrix:
    """r_ui - (offset + row[u] + col[i]) on the stored entries; structure kept (float32)."""
    matrix = sp.csr_matrix(matrix)
    data = matrix.data.astype(np.float64) - offset
    if row_offsets is not None:
        data -= np.asarray(row_offsets, np.float64)[row_ids(matrix)]
    if col_offsets is not None:
        data -= np.asarray(col_offsets, np.float64)[matrix.indices]
    return sp.csr_matrix((data.astype(np.float32), matrix.indices.copy(), matrix.indptr.copy()),
                         shape=matrix.shape)


def _damped_means(sums: np.ndarray, counts: np.ndarray, damping: float) -> np.ndarray:
    """sums / (counts + damping), 0 where both are 0."""
    denom = counts + damping
    out = np.zeros_like(sums, dtype=np.float64)
    np.divide(sums, denom, out=out, where=denom > 0)
    return out


def centre(matrix: sp.csr_matrix, by: CentreBy = "user", damping: float = 0.0) -> Centring:
    """Mean-centre the stored entries of a user x item CSR.

    Parameters
    ----------
    matrix : csr_matrix (n_users, n_items)
    by : {"user", "item", "both"}
        ``"user"``: r - mean_u; ``"item"``: r - mean_i; ``"both"``: r - mu - b_u - b_i with
        b_i = sum(r - mu) / (n_i + damping), b_u = sum(r - mu - b_i) / (n_u + damping).
    damping : float
        For "user"/"item", means are shrunk to the global mean mu by ``damping``
        pseudo-ratings: (sum r + damping * mu) / (n + damping).

    Returns
    -------
    Centring
    """
    if by not in ("user", "item", "both"):
        raise ConfigError(f"centre by must be 'user', 'item' or 'both', not {by!r}")
    if damping < 0:
        raise ConfigError(f"damping must be >= 0, got {damping}")
    matrix = sp.csr_matrix(matrix)
    n_rows, n_cols = matrix.shape
    values = matrix.data.astype(np.float64)
    mu = float(values.mean()) if values.size else 0.0
    if by == "both":
        mu, b_u, b_i = bias_estimates(matrix, damping, damping, n_epochs=1)
        return Centring(subtract_offsets(matrix, mu, b_u, b_i), mu, b_u, b_i)
    by_user = by == "user"
    ids = row_ids(matrix) if by_user else matrix.indices
    size = n_rows if by_user else n_cols
    sums = np.bincount(ids, weights=values, minlength=size) + damping * mu
    means = _damped_means(sums, np.bincount(ids, minlength=size).astype(np.float64), damping)
    rows, cols = (means, np.zeros(n_cols)) if by_user else (np.zeros(n_rows), means)
    return Centring(subtract_offsets(matrix, 0.0, rows, cols), 0.0, rows, cols)


def bias_estimates(matrix: sp.csr_matrix, reg_user: float, reg_item: float,
                   n_epochs: int = 1) -> tuple[float, np.ndarray, np.ndarray]:
    """(mu, b_u, b_i) by alternating damped least squares, items updated first.

    Each epoch: b_i = sum_u (r - mu - b_u) / (reg_item + n_i), then
    b_u = sum_i (r - mu - b_i) / (reg_user + n_u). One epoch is the damped estimate.
    """
    matrix = sp.csr_matrix(matrix)
    n_rows, n_cols = matrix.shape
    values = matrix.data.astype(np.float64)
    mu = float(values.mean()) if values.size else 0.0
    rows, cols = row_ids(matrix), matrix.indices
    n_u = np.bincount(rows, minlength=n_rows).astype(np.float64)
    n_i = np.bincount(cols, minlength=n_cols).astype(np.float64)
    b_u, b_i = np.zeros(n_rows), np.zeros(n_cols)
    for _ in range(n_epochs):
        b_i = _damped_means(np.bincount(cols, values - mu - b_u[rows], n_cols), n_i, reg_item)
        b_u = _damped_means(np.bincount(rows, values - mu - b_i[cols], n_rows), n_u, reg_user)
    return mu, b_u, b_i


def user_bias_from_history(histories: sp.csr_matrix, mu: float, item_bias: np.ndarray,
                           reg_user: float) -> np.ndarray:
    """b_u = sum_i (r_ui - mu - b_i) / (reg_user + n_u) for each history row (new users)."""
    histories = sp.csr_matrix(histories)
    residual = histories.data.astype(np.float64) - mu - item_bias[histories.indices]
    rows = row_ids(histories)
    sums = np.bincount(rows, residual, minlength=histories.shape[0])
    counts = np.diff(histories.indptr).astype(np.float64)
    return _damped_means(sums, counts, reg_user)


@register
class BiasBaseline(Recommender):
    """Global mean plus user and item biases, r_ui = mu + b_u + b_i.

    Top-N lists rank by the predicted rating (for one user: by b_i). Explanations split a
    score into the global mean, the user bias and the item bias.

    References
    ----------
    Koren (2010), "Factor in the neighbors", ACM TKDD 4(1); Hug (2020), Surprise
    ``BaselineOnly``.
    """

    name = "bias"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"user_bias_": "users", "item_bias_": "items"}
    needs_history = False
    predicts_ratings = True

    @dataclass(frozen=True)
    class Config(ModelConfig):
        method: str = param("als", choices=("als", "damped"),
                            doc="alternating estimates (als) or one damped pass")
        reg_user: float = param(15.0, ge=0.0, doc="user-bias damping lambda_u")
        reg_item: float = param(10.0, ge=0.0, doc="item-bias damping lambda_i")
        n_epochs: int = param(10, ge=1, le=1000, doc="alternations for method='als'")

    def _fit(self, data: Dataset) -> None:
        if data.kind != "explicit":
            raise ConfigError("the bias baseline needs explicit ratings (data kind "
                              f"{data.kind!r}); use popularity for implicit data")
        cfg = self.config
        epochs = cfg.n_epochs if cfg.method == "als" else 1
        mu, b_u, b_i = bias_estimates(self.train_matrix_, cfg.reg_user, cfg.reg_item, epochs)
        self.global_mean_ = mu
        self.user_bias_ = b_u
        self.item_bias_ = b_i
        self.rating_min_ = float(self.train_matrix_.data.min())
        self.rating_max_ = float(self.train_matrix_.data.max())

    def _query_bias(self, histories: sp.csr_matrix) -> np.ndarray:
        return user_bias_from_history(histories, self.global_mean_, self.item_bias_,
                                      self.config.reg_user)

    def _score(self, query: Query) -> np.ndarray:
        histories = query.history
        b_u = self._query_bias(histories)
        scores = self.global_mean_ + b_u[:, None] + self.item_bias_[None, :]
        return scores.astype(np.float32)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        pred = self.global_mean_ + self.user_bias_[users] + self.item_bias_[items]
        return np.clip(pred, self.rating_min_, self.rating_max_)

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        histories = query.history
        b_u = float(self._query_bias(histories)[0])
        keys = np.array(["global_mean", "user_bias", "item_bias"])
        return "feature", keys, np.array([self.global_mean_, b_u, self.item_bias_[item]])
