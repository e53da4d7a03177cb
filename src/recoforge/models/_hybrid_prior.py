"""Popularity predicted from item attributes: the cold-item prior of feature hybrids.

A ridge regression of each item's log interaction count on its feature row,

    y_i = log(1 + n_i),   w = argmin_w sum_{i: n_i > 0} (y_i - ybar - x_i . w)^2 + l2 |w|^2,
    p_i = ybar + x_i . w,   s(u, i) = (n_i y_i + k p_i) / (n_i + k)  for every user,

fitted on the items with training interactions only (an item without any says nothing
about what its attributes attract); an item's own count is shrunk towards the prediction
with ``k = shrinkage`` pseudo-counts, so an item without interactions (cold, or added
later from its attributes) gets p_i. It answers "which of these never-seen items will
people take to?" from genres, words and categories, which profile models such as
``content`` cannot: they rank by resemblance to a user's items, not by appeal. Used alone
it is a non-personalised baseline; in a hybrid it is the prior that cold items need.
Fit: LSQR on the sparse item features, O(iterations * nnz(X)); scoring O(n * n_items).

References
----------
Gantner, Drumond, Freudenthaler, Rendle, Schmidt-Thieme (2010), "Learning attribute-to-
feature mappings for cold-start recommendations", ICDM.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import lsqr

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError, DataError
from recoforge.models.base import Recommender
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register


@register
class FeaturePopularity(Recommender):
    """Each item's log interaction count as predicted from its attributes (ridge);
    ``feature_weights_`` (with ``feature_names_``) say what each attribute adds."""

    name = "feature_popularity"
    needs_item_features = True
    needs_history = False
    scores_new_items = True
    state_spec = {"item_prior_": "items", "feature_weights_": "features",
                  "feature_names_": "features: text", "intercept_": "float",
                  "item_encoder_": "any: optional"}

    @dataclass(frozen=True)
    class Config(ModelConfig):
        l2: float = param(10.0, ge=0.0, doc="ridge penalty on the feature weights")
        max_iterations: int = param(500, ge=1, le=10**5, doc="LSQR iterations")
        shrinkage: float = param(5.0, ge=0.0, allow_inf=True,
                                 doc="pseudo-counts of the prediction against an item's own "
                                     "count (inf: the prediction alone)")

    def _fit(self, data: Dataset) -> None:
        features = data.item_features
        if features is None:
            raise ConfigError(f"feature_popularity needs item features and dataset "
                              f"{data.name!r} has none (fit --item-features FILE, or "
                              f"Dataset.with_item_features)")
        matrix = sp.csr_matrix(features.matrix, dtype=np.float64)
        if not np.isfinite(matrix.data).all():
            raise DataError("item features hold non-finite values")
        counts = np.bincount(data.interactions.items, minlength=data.n_items)
        seen = np.flatnonzero(counts > 0)
        target = np.log1p(counts[seen].astype(np.float64))
        self.intercept_ = float(target.mean())
        solution = lsqr(matrix[seen], target - self.intercept_,
                        damp=float(np.sqrt(self.config.l2)), iter_lim=self.config.max_iterations)
        self.feature_weights_ = np.asarray(solution[0], dtype=np.float64)
        self.feature_names_ = np.asarray(features.names).astype(str)
        self.item_encoder_ = features.encoder
        prior = self._predict_rows(matrix)
        k = self.config.shrinkage
        if np.isinf(k):
            self.item_prior_ = prior
            return
        own = np.log1p(counts.astype(np.float64))
        total = counts + k
        self.item_prior_ = np.where(total > 0, (counts * own + k * prior)
                                    / np.where(total > 0, total, 1.0), prior)

    def _predict_rows(self, rows: sp.spmatrix) -> np.ndarray:
        return (self.intercept_ + sp.csr_matrix(rows) @ self.feature_weights_).astype(np.float64)

    def _add_items(self, features: sp.csr_matrix) -> None:
        self.item_prior_ = np.concatenate([self.item_prior_, self._predict_rows(features)])

    def _score(self, query: Query) -> np.ndarray:
        return np.broadcast_to(self.item_prior_.astype(np.float32),
                               (len(query), len(self.item_prior_))).copy()
