"""Content-based filtering: users as the average of the features of the items they consumed.

Items are rows of the dataset's item feature matrix X (TF-IDF of descriptions, genre
bag-of-words, one-hot categories, scaled numerics, or any mix, see
:func:`recoforge.data.features.build_features`), optionally re-weighted per block and
L2-normalised to x_i. A query's profile and scores are

    p_u = sum_i w_ui x_i / max(1, sum_i |w_ui|),     s_ui = cos(p_u, x_i) = p_u . x_i / |p_u|

with w_ui the rating (``"raw"``), the rating minus the user's mean (``"centred"``) or 1
(``"binary"``). Both are computed from the history row, so new users need no retraining,
and items with features but no interactions are scored like any other.
Fit O(nnz(X)); scoring O(n_queries * (nnz(R_q X) + nnz(X))) with the dense profile block
bounded to about 64 MiB.

References
----------
Pazzani, Billsus (2007), "Content-based recommendation systems", in The Adaptive Web.
Lops, de Gemmis, Semeraro (2011), "Content-based recommender systems: state of the art
and trends", Recommender Systems Handbook.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.data.features import FeatureEncoder
from recoforge.errors import ArtifactError, ConfigError, DataError, NotSupportedError
from recoforge.models.base import Recommender
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register

PROFILE_BLOCK_BYTES = 1 << 26  # dense profile rows per scoring chunk: 64 MiB


def feature_block(name: str) -> str:
    """The block a feature name belongs to: the part before the first ``:`` or ``=``.

    ``"description:leather"`` -> ``"description"``, ``"category=Books"`` -> ``"category"``,
    ``"num:price"`` -> ``"num"``.
    """
    cut = [p for p in (name.find(":"), name.find("=")) if p >= 0]
    return name[: min(cut)] if cut else name


def check_block_weights(weights: dict) -> None:
    """Keys must be strings and weights finite numbers >= 0 (ConfigError otherwise)."""
    for key, weight in weights.items():
        if not isinstance(key, str):
            raise ConfigError(f"block_weights keys must be block or feature names, got {key!r}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) \
                or not np.isfinite(weight) or weight < 0:
            raise ConfigError(f"block_weights[{key!r}] must be a finite number >= 0, "
                              f"got {weight!r}")


def block_weight_vector(names: np.ndarray, weights: dict[str, float]) -> np.ndarray:
    """Per-feature multipliers from ``{block or exact feature name: weight}``.

    An exact feature name (``"num:price"``) wins over its block (``"num"``); features of
    unnamed blocks keep weight 1. Keys matching no feature raise a ConfigError.
    """
    check_block_weights(weights)
    blocks = np.array([feature_block(str(n)) for n in names], dtype=object)
    out = np.ones(len(names), dtype=np.float32)
    exact = {str(n): j for j, n in enumerate(names)}
    for key, weight in weights.items():
        mask = blocks == key
        if not mask.any() and key not in exact:
            raise ConfigError(f"block_weights key {key!r} matches no feature block; blocks: "
                              f"{sorted(set(blocks))}")
        out[mask] = weight
    for key, weight in weights.items():  # exact names last, so they override blocks
        if key in exact:
            out[exact[key]] = weight
    return out


def field_weight_vector(names: np.ndarray, weights: dict[str, float],
                        encoder: FeatureEncoder | None) -> np.ndarray:
    """Per-feature multipliers; keys may also name an encoder field (e.g. ``"price"``).

    Field names set their whole column range; the other keys are blocks or feature names
    as in :func:`block_weight_vector`. A key that is both a block and a field gives the
    same columns either way.
    """
    check_block_weights(weights)
    fields = {fs.name: fs for fs in encoder.field_slices()} if encoder is not None else {}
    by_name = {k: w for k, w in weights.items() if k not in fields}
    out = block_weight_vector(names, by_name)
    for key, weight in weights.items():
        if key in fields:
            out[fields[key].slice] = weight
    return out


def _row_sums(matrix: sp.spmatrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=1), dtype=np.float64).ravel()


def normalize_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (all-zero rows stay zero)."""
    matrix = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    matrix.data /= np.repeat(norms, np.diff(matrix.indptr)).astype(np.float32)
    return matrix


@register
class ContentBased(Recommender):
    """Cosine between a user's feature profile and each item's features.

    ``explain`` names the features (``"genre:comedy"``, ``"description:leather"``) whose
    profile-times-item products make up the score; ``similar_items`` ranks by feature
    cosine.
    """

    name = "content"
    scores_new_items = True
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"item_matrix_": "items x features", "feature_names_": "features: text",
                  "feature_weights_": "features: optional", "item_encoder_": "any: optional",
                  "items_without_features_": "int"}

    @dataclass(frozen=True)
    class Config(ModelConfig):
        weighting: str = param("raw", choices=("raw", "centred", "binary"),
                               doc="profile weights: rating, rating minus the user's mean, "
                                   "or 1 per consumed item")
        block_weights: dict | None = param(None, doc="multiplier per feature block or name, "
                                                     "e.g. {'genres': 2.0, 'title': 0.5}")

        def __post_init__(self) -> None:
            super().__post_init__()
            check_block_weights(self.block_weights or {})

    # ------------------------------------------------------------------ fitting
    def _fit(self, data: Dataset) -> None:
        features = data.item_features
        if features is None:
            raise DataError(f"the content model needs item features, and dataset "
                            f"{data.name!r} has none; attach them with "
                            f"recoforge.data.build_features(...)")
        matrix = sp.csr_matrix(features.matrix, dtype=np.float32)
        if not np.all(np.isfinite(matrix.data)):
            bad = int(np.flatnonzero(~np.isfinite(matrix.data))[0])
            row = int(np.searchsorted(matrix.indptr, bad, side="right") - 1)
            raise DataError(f"item features of item {data.item_index.ids[row]!r} "
                            f"(feature {features.names[matrix.indices[bad]]!r}) are not finite")
        names = np.asarray(features.names).astype(str)
        encoder = features.encoder
        weights = field_weight_vector(names, self.config.block_weights or {}, encoder)
        if self.config.block_weights:
            matrix = matrix @ sp.diags(weights)
        self.item_matrix_ = normalize_rows(matrix)
        self.feature_names_ = names
        self.feature_weights_ = weights
        self.item_encoder_ = encoder
        self.items_without_features_ = int((np.diff(self.item_matrix_.indptr) == 0).sum())

    def _check_state(self) -> None:
        """A loaded encoder must write exactly the saved feature columns."""
        encoder = self.item_encoder_
        if encoder is None:
            return
        if not isinstance(encoder, FeatureEncoder):
            raise ArtifactError(f"item_encoder_ is a {type(encoder).__name__}, not a "
                                f"FeatureEncoder")
        if encoder.feature_names().tolist() != self.feature_names_.tolist():
            raise ArtifactError("item_encoder_ writes other feature columns than the saved "
                                "item features")

    # ------------------------------------------------------------------ new items
    def encode_items(self, frame: pd.DataFrame) -> sp.csr_matrix:
        """Feature rows of items described by raw attributes, in this model's item space.

        ``frame`` has the attribute columns the training features were built from (one row
        per item, e.g. items added after training); rows are encoded with the training
        vocabularies and statistics, weighted by ``block_weights`` and L2-normalised, so a
        training item's attributes give exactly its ``item_matrix_`` row.

        Returns
        -------
        csr_matrix, float32, shape (len(frame), n_features)
        """
        self._check_fitted()
        if self.item_encoder_ is None:
            raise NotSupportedError("this content model's item features were not built by a "
                                    "FeatureEncoder (build_features / Dataset."
                                    "with_item_features), so it cannot encode new items")
        rows = self.item_encoder_.transform(frame)
        return normalize_rows(rows @ sp.diags(self.feature_weights_))

    def score_new_items(self, frame: pd.DataFrame, histories: sp.csr_matrix) -> np.ndarray:
        """Scores of new items (raw attributes) for users given by their history rows.

        s = cos(p_u, x_new), with the profile p_u of the history (CSR over the training
        catalogue, shape (n, n_items)) exactly as for catalogue items. Memory
        O(n * n_features) for the dense profiles.

        Returns
        -------
        ndarray, float32, shape (n, len(frame))
        """
        new_items = self.encode_items(frame)
        histories = sp.csr_matrix(histories, dtype=np.float32)
        if histories.shape[1] != self.item_matrix_.shape[0]:
            raise DataError(f"histories have {histories.shape[1]} item columns, the model's "
                            f"catalogue has {self.item_matrix_.shape[0]}")
        profiles = self._profiles(histories)
        return np.asarray((new_items @ profiles.T).T, dtype=np.float32)

    def _add_items(self, features: sp.csr_matrix) -> None:
        """New items' encoded rows, weighted and L2-normalised like the training rows."""
        rows = normalize_rows(sp.csr_matrix(features) @ sp.diags(self.feature_weights_))
        self.items_without_features_ += int((np.diff(rows.indptr) == 0).sum())
        self.item_matrix_ = sp.csr_matrix(sp.vstack([self.item_matrix_, rows]),
                                          dtype=np.float32)

    # ------------------------------------------------------------------ scoring
    def profile_weights(self, histories: sp.csr_matrix) -> sp.csr_matrix:
        """w_ui of each history entry, scaled by 1 / max(1, sum_i |w_ui|)."""
        weights = sp.csr_matrix(histories, dtype=np.float32, copy=True)
        counts = np.diff(weights.indptr)
        if self.config.weighting == "binary":
            weights.data[:] = 1.0
        elif self.config.weighting == "centred":
            means = _row_sums(weights) / np.maximum(counts, 1)
            weights.data -= np.repeat(means, counts).astype(np.float32)
            flat = (counts > 0) & (_row_sums(abs(weights)) < 1e-6)
            weights.data[np.repeat(flat, counts)] = 1.0  # equal ratings: all items count
        totals = _row_sums(abs(weights))
        return sp.diags((1.0 / np.maximum(1.0, totals)).astype(np.float32)) @ weights

    def _profiles(self, histories: sp.csr_matrix) -> np.ndarray:
        """Dense unit-norm profiles (n, n_features) of a chunk of histories."""
        profile = (self.profile_weights(histories) @ self.item_matrix_).toarray()
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        norms[norms == 0] = 1.0
        return (profile / norms).astype(np.float32)

    def _score(self, query: Query) -> np.ndarray:
        histories = query.history
        n, n_features = histories.shape[0], self.item_matrix_.shape[1]
        scores = np.empty((n, self.item_matrix_.shape[0]), dtype=np.float32)
        chunk = max(1, PROFILE_BLOCK_BYTES // (4 * max(n_features, 1)))
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            profile = self._profiles(histories[start:stop])
            scores[start:stop] = (self.item_matrix_ @ profile.T).T
        return scores

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Feature cosine of the given items with every item (sparse product)."""
        return (self.item_matrix_[items] @ self.item_matrix_.T).toarray().astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """The unit-norm item feature rows, dense: memory O(n_items * n_features)."""
        return self.item_matrix_.toarray()

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Features of ``item`` weighted by the profile: they sum to the cosine score."""
        histories = query.history
        profile = self._profiles(histories[:1])[0]
        row = self.item_matrix_[item]
        contributions = profile[row.indices] * row.data
        return "feature", self.feature_names_[row.indices], contributions
