"""Hybrid recommenders: several registered models fitted on the same data, combined.

Each component m scores a query; its scores are put on a per-user scale,
z_m(u, i) = (s_m(u, i) - mu_m(u)) / sigma_m(u), with mu and sigma (or min and max) taken
over a fixed reference sample of items, so the same item gets the same normalised score in
the full-catalogue and the candidate path. The modes:

- ``weighted``: s(u, i) = sum_m w_m z_m(u, i), weights from ``weights`` or tuned for the
  best NDCG@10 on a validation split the model carves from its training data (a share of
  sampled users' events), over a grid on the simplex;
- ``stacking``: the same blend with weights learned by L2-regularised logistic regression
  on pairs of one validation user's candidates (the union of every component's top
  items): P(held-out item i above other item j) = sigmoid(w . (z(u, i) - z(u, j))), a
  pairwise ranking blend (RankNet's loss on a linear scorer);
- ``switching``: the last component answers users with at most ``threshold`` events
  (``switch_on="history"``) or scores items with at most ``threshold`` training events
  (``switch_on="items"``), the first one the rest;
- ``augmented``: the first component's item vectors (L2-normalised, times
  ``augment_weight``) are appended to the item features the second component (a feature
  model such as ``content``) is fitted on; the second one scores.

With ``segmented`` the weighted and stacked blends learn separate weights for users with
at most ``threshold`` events and for the others; with ``cold_items`` one more weight
vector, for items without training events, tuned on validation items held out whole
(all their events), so that cold items are ranked by what ranks cold items best (e.g.
``content`` and ``feature_popularity``) while warm items keep the warm blend; per user,
the cold blend is mapped affinely onto the warm blend's mean and spread over a sample of
cold items, so cold items keep their cold order at the level the warm blend gives them
(unless calibrated so, a blend of other scales would flood or starve the list). Components
are refitted on all the training data after tuning (``refit``). Cost: the components' fits
(twice with tuning) and one scoring pass of the validation users; scoring holds one (n, c)
block per component.

References
----------
Burke (2002), "Hybrid recommender systems: survey and experiments", User Modeling and
User-Adapted Interaction 12(4).
Sill, Takacs, Mackey, Lin (2009), "Feature-weighted linear stacking", arXiv:0911.0460.
Burges et al. (2005), "Learning to rank using gradient descent", ICML.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.dataset import Dataset
from recoforge.data.features import FeatureMatrix
from recoforge.errors import ConfigError, NotSupportedError
from recoforge.models import _features
from recoforge.models import _hybrid_parts as hp
from recoforge.models import _hybrid_tuning as _tuning
from recoforge.models._hybrid_prior import FeaturePopularity
from recoforge.models.base import Recommender
from recoforge.models.params import ModelConfig, param, seed_param
from recoforge.models.query import Query
from recoforge.models.registry import create, register

__all__ = ["FeaturePopularity", "Hybrid"]
MODES = ("weighted", "stacking", "switching", "augmented")
N_REFERENCE = 256  # reference items per user for the score statistics


def _component_rules() -> dict[str, str]:
    return {f"component_{i}_": "model: optional" for i in range(hp.MAX_COMPONENTS)}


@register
class Hybrid(Recommender):
    """A weighted, stacked, switching or feature-augmented hybrid of registered models.

    ``components`` names them: ``"ease;item_knn(k=50);content"`` or a list of names and
    ``{"name": ..., "params": {...}}`` dicts. The capabilities are those of a model scoring
    from history: over components with per-user parameters (ALS, BPR, ...) a known user's
    scores use those parameters, as the components do. ``validation_scores_`` holds the
    validation NDCG@10 of each component alone and of the blend (tuned modes),
    ``cold_validation_scores_`` the same on validation cold items (``cold_items``).
    ``feature_popularity`` (:mod:`recoforge.models._hybrid_prior`, registered with this
    module) is the attribute-based prior such hybrids use for cold items.
    """

    name = "hybrid"
    uses_user_features = True
    scores_new_items = True
    state_spec: ClassVar[dict[str, str]] = {
        **_component_rules(),
        "n_components_": "int",
        "reference_items_": "r: int, index<items>",
        "n_trained_items_": "int",
        "weights_": "segments x components",
        "item_counts_": "items: int",
        "cold_weights_": "components: optional",
        "cold_reference_items_": "q: int, index<items>, optional",
        "validation_scores_": "*: optional",
        "cold_validation_scores_": "*: optional",
    }

    weights_: np.ndarray
    cold_weights_: np.ndarray
    validation_scores_: np.ndarray
    cold_validation_scores_: np.ndarray
    _steps: list[int]

    @dataclass(frozen=True)
    class Config(ModelConfig):
        components: str | list = param("ease;content", doc="component models: 'a;b(k=v)' "
                                                           "or a list of names / dicts")
        mode: str = param("weighted", choices=MODES, doc="how the components combine")
        weights: list | None = param(None, doc="fixed blend weights (weighted mode); "
                                               "None: tuned on a validation split")
        normalization: str = param("zscore", choices=("zscore", "minmax"),
                                   doc="per-user score scale of each component")
        switch_on: str = param("history", choices=("history", "items"),
                               doc="switching: by the user's events or the item's")
        threshold: int = param(5, ge=0, le=10**6, doc="switching / segments: at most this many "
                                            "events counts as cold")
        segmented: bool = param(False, doc="weighted/stacking: separate weights for "
                                           "users with <= threshold events")
        cold_items: bool = param(False, doc="weighted/stacking: separate weights for items "
                                            "without training events, tuned on validation "
                                            "items held out whole")
        cold_fraction: float = param(0.1, gt=0.0, lt=1.0, doc="share of the items held "
                                                              "out whole with cold_items")
        validation_fraction: float = param(0.2, gt=0.0, lt=1.0,
                                           doc="share of a validation user's events held out")
        validation_users: int = param(2000, ge=10, le=10**7, doc="users sampled for validation")
        n_candidates: int = param(100, ge=10, le=10**5, doc="top items per component a validation "
                                                  "user's candidates are drawn from")
        grid_steps: int = param(10, ge=1, le=50, doc="weighted tuning: 1/grid_steps grid")
        l2: float = param(1.0, ge=0.0, doc="stacking: L2 penalty of the logistic blend")
        augment_weight: float = param(1.0, gt=0.0, doc="augmented: scale of appended vectors")
        refit: bool = param(True, doc="refit components on all training data after tuning")
        seed: int | None = seed_param()

        def __post_init__(self) -> None:
            super().__post_init__()
            parsed = hp.parse_components(self.components)
            if self.mode in ("switching", "augmented") and len(parsed) != 2:
                raise ConfigError(f"mode={self.mode!r} takes exactly 2 components, got "
                                  f"{len(parsed)}")
            if self.weights is not None:
                w = np.asarray(self.weights, dtype=object)
                if len(w) != len(parsed) or not all(
                        isinstance(v, (int, float)) and not isinstance(v, bool)
                        and np.isfinite(v) for v in w):
                    raise ConfigError(f"weights must be {len(parsed)} finite numbers, one "
                                      f"per component, got {self.weights!r}")

    # ------------------------------------------------------------------ fitting
    def _fit(self, data: Dataset) -> None:
        specs = hp.parse_components(self.config.components)
        self.item_counts_ = np.bincount(data.interactions.items,
                                        minlength=data.n_items).astype(np.int64)
        rng = self._rng()
        size = min(N_REFERENCE, data.n_items)
        self.n_trained_items_ = data.n_items
        self.reference_items_ = np.sort(rng.choice(data.n_items, size=size,
                                                   replace=False)).astype(np.int64)
        mode = self.config.mode
        tuning = mode in ("weighted", "stacking") and self.config.weights is None
        self._steps = [0, len(specs) * (2 if tuning and self.config.refit else 1)]
        if mode == "augmented":
            self._set_components(self._fit_augmented(specs, data))
            self.weights_ = np.array([[0.0, 1.0]], dtype=np.float64)
            return
        if mode == "switching":
            self._set_components(self._fit_all(specs, data))
            self.weights_ = np.array([[0.0, 1.0], [1.0, 0.0]], dtype=np.float64)
            return
        if mode == "weighted" and self.config.weights is not None:
            self._set_components(self._fit_all(specs, data))
            self.weights_ = np.asarray([self.config.weights], dtype=np.float64)
            return
        inner = _tuning.tune(self, specs, data, rng)
        if getattr(self, "cold_weights_", None) is not None:
            cold = np.flatnonzero(self.item_counts_ == 0)
            self.cold_reference_items_ = np.sort(rng.choice(
                cold, size=min(N_REFERENCE, len(cold)), replace=False)).astype(np.int64)
        self._set_components(self._fit_all(specs, data) if self.config.refit else inner)

    def _fit_all(self, specs: list[hp.ComponentSpec], data: Dataset) -> list[Recommender]:
        return [self._fit_one(name, params, data) for name, params in specs]

    def _fit_one(self, name: str, params: dict[str, Any], data: Dataset) -> Recommender:
        """One component fitted; progress counts component fits."""
        model = create(name, **params).fit(data)
        self._steps[0] += 1
        self._epoch_done(*self._steps)
        return model

    def _set_components(self, models: list[Recommender]) -> None:
        for i, model in enumerate(models):
            vars(model).pop("item_titles_", None)  # the hybrid's titles serve
            setattr(self, f"component_{i}_", model)
        self.n_components_ = len(models)
        self._share_history()

    @property
    def components_(self) -> list[Recommender]:
        """The fitted component models, in the configured order."""
        self._check_fitted()
        return [getattr(self, f"component_{i}_") for i in range(self.n_components_)]

    def _share_history(self) -> None:
        """Components read known users' histories from the hybrid's source."""
        for model in self.components_:
            model._history = self._history

    def _fit_augmented(self, specs: list[hp.ComponentSpec], data: Dataset
                       ) -> list[Recommender]:
        (src_name, src_params), (dst_name, dst_params) = specs
        source = self._fit_one(src_name, src_params, data)
        vectors = source.item_vectors()
        if vectors is None:
            raise ConfigError(f"augmented hybrid: component {src_name!r} has no item vectors "
                              f"to append as features; use a factor or embedding model")
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0) * self.config.augment_weight
        names = np.array([f"{src_name}:{j}" for j in range(vectors.shape[1])])
        extra = FeatureMatrix(sp.csr_matrix(vectors), names)
        features = extra if data.item_features is None else data.item_features.hstack(extra)
        target = self._fit_one(dst_name, dst_params, replace(data, item_features=features))
        return [source, target]

    # ------------------------------------------------------------------ tuning
    def _segments(self, histories: sp.csr_matrix) -> np.ndarray:
        """Segment of each row: 0 = at most ``threshold`` events, 1 = more (or all 0
        without segments)."""
        lengths = np.diff(sp.csr_matrix(histories).indptr)
        if getattr(self, "weights_", None) is not None and len(self.weights_) == 1:
            return np.zeros(len(lengths), dtype=np.int64)
        if self.config.mode == "switching" and self.config.switch_on == "history" \
                or self.config.segmented:
            return (lengths > self.config.threshold).astype(np.int64)
        return np.zeros(len(lengths), dtype=np.int64)

    # ------------------------------------------------------------------ scoring
    def _blend(self, query: Query, items: np.ndarray | None) -> np.ndarray:
        self._share_history()
        models = self.components_
        n_items = len(self.item_index_)
        if self.config.mode == "augmented":
            target = models[1]
            if items is None:
                return np.asarray(target._score(query), dtype=np.float32)
            return np.asarray(target._score_candidates(query, np.maximum(items, 0)),
                              dtype=np.float32)
        counts = self._counts_at(items)
        calibrate = getattr(self, "cold_weights_", None) is not None
        refs = self._cold_reference() if calibrate else np.zeros(0, np.int64)
        wanted = items
        if calibrate and items is not None:  # score the cold reference items in the same call
            wanted = np.hstack([items, np.broadcast_to(refs, (len(query), len(refs)))])
        zs = hp.normalised_scores(models, query, wanted, self.reference_items_,
                                  self.config.normalization, n_items)
        if self.config.mode == "switching" and self.config.switch_on == "items":
            return np.where(counts <= self.config.threshold, zs[1], zs[0])
        weights = self.weights_[self._segments(query.history)].astype(np.float32)
        if not calibrate:
            return sum(weights[:, m:m + 1] * z for m, z in enumerate(zs)).astype(np.float32)
        width = n_items if items is None else items.shape[1]
        at_refs = [z[:, refs] if items is None else z[:, width:] for z in zs]
        zs = [z[:, :width] for z in zs]
        out = sum(weights[:, m:m + 1] * z for m, z in enumerate(zs)).astype(np.float32)
        offset, scale = self._cold_calibration(weights, at_refs)
        cold = sum(w * z for w, z in zip(self.cold_weights_.astype(np.float32), zs))
        return np.where(counts == 0, offset + scale * cold, out).astype(np.float32)

    def _cold_reference(self) -> np.ndarray:
        refs = getattr(self, "cold_reference_items_", None)
        return self.reference_items_ if refs is None or not len(refs) else refs

    def _cold_calibration(self, weights: np.ndarray, at_refs: list[np.ndarray]
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Per user (offset, scale) putting the cold blend on the warm blend's level:
        over the cold reference items, the cold blend's mean and spread become the warm
        blend's (a small spread at least), so cold items keep the cold blend's order and
        the place the warm blend gives them among warm items."""
        warm = np.asarray(sum(weights[:, m:m + 1] * z for m, z in enumerate(at_refs)))
        cold = np.asarray(sum(w * z for w, z in zip(self.cold_weights_.astype(np.float32),
                                                    at_refs)))
        spread = np.maximum(warm.std(axis=1, keepdims=True), 1e-3)
        scale = spread / np.maximum(cold.std(axis=1, keepdims=True), 1e-6)
        return (warm.mean(axis=1, keepdims=True) - scale * cold.mean(axis=1, keepdims=True),
                scale)

    def _counts_at(self, items: np.ndarray | None) -> np.ndarray:
        """Training events of each scored item (all items, or the (n, c) candidates);
        items added after training have none."""
        n_items = len(self.item_index_)
        counts = np.concatenate([self.item_counts_,
                                 np.zeros(n_items - len(self.item_counts_), np.int64)])
        return counts if items is None else counts[np.maximum(items, 0)]

    def _score(self, query: Query) -> np.ndarray:
        return self._blend(query, None)

    def _score_candidates(self, query: Query, candidates: np.ndarray) -> np.ndarray:
        return self._blend(query, np.asarray(candidates, dtype=np.int64))

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Each component's weighted normalised score: they add up to the blend."""
        mode = self.config.mode
        if mode in ("augmented",) or mode == "switching" and self.config.switch_on == "items":
            raise NotSupportedError(f"a {mode} hybrid explains through its components")
        models = self.components_
        self._share_history()
        one = query.take(slice(0, 1))
        cold = getattr(self, "cold_weights_", None) is not None \
            and self._counts_at(None)[item] == 0
        refs = self._cold_reference() if cold else np.zeros(0, np.int64)
        zs = hp.normalised_scores(models, one, np.concatenate([[item], refs])[None, :],
                                  self.reference_items_, self.config.normalization,
                                  len(self.item_index_))
        weights = self.weights_[self._segments(one.history)]
        names = [f"component:{i}:{m.name}" for i, m in enumerate(models)]
        if not cold:
            return "feature", np.array(names), np.array([w * z[0, 0]
                                                         for w, z in zip(weights[0], zs)])
        offset, scale = self._cold_calibration(weights, [z[:, 1:] for z in zs])
        parts = [float(scale[0, 0]) * w * z[0, 0] for w, z in zip(self.cold_weights_, zs)]
        return "feature", np.array(names + ["cold-item calibration"]), \
            np.array(parts + [float(offset[0, 0])])

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Mean over components of their per-item z-scored similarities (components
        without a notion of similarity are left out)."""
        parts = []
        for model in self.components_:
            try:
                sims = np.asarray(model._similar(items), dtype=np.float64)
            except NotSupportedError:
                continue
            if sims.shape[1] < len(self.item_index_):
                pad = np.full((len(items), len(self.item_index_) - sims.shape[1]), sims.min())
                sims = np.hstack([sims, pad])
            mean, std = sims.mean(axis=1, keepdims=True), sims.std(axis=1, keepdims=True)
            parts.append((sims - mean) / np.where(std > 1e-12, std, 1.0))
        if not parts:
            raise NotSupportedError("no component of this hybrid has a notion of item "
                                    "similarity")
        return (sum(parts) / len(parts)).astype(np.float32)

    # ------------------------------------------------------------------ new items
    def add_items(self, info: pd.DataFrame) -> Hybrid:
        """Add items from their attributes to every component that can take them; the
        others rank them last (their normalised floor), so e.g. ``content`` scores them
        in a weighted hybrid and in item switching."""
        self._check_fitted()
        able = [m for m in self.components_ if m.scores_new_items]
        if not able:
            raise NotSupportedError("no component of this hybrid adds items from their "
                                    "attributes (content, two_tower, feature_mf, ...)")
        if self.config.mode == "augmented" and not self.components_[1].scores_new_items:
            raise NotSupportedError("the scoring component of this augmented hybrid cannot "
                                    "add items")
        before = len(self.item_index_)
        able[0].add_items(info)  # validates the table and the ids
        for model in able[1:]:
            model.add_items(info)
        self.item_index_ = able[0].item_index_
        self.item_counts_ = np.concatenate(
            [self.item_counts_, np.zeros(len(self.item_index_) - before, np.int64)])
        _features._extend_catalogue(self, info, len(self.item_index_))
        self._share_history()
        return self

    def _check_state(self) -> None:
        """Every component shares the hybrid's vocabularies (up to added items)."""
        for i in range(self.n_components_):
            model = getattr(self, f"component_{i}_", None)
            if not isinstance(model, Recommender):
                raise ValueError(f"component_{i}_ is missing")
            if model.user_index_ != self.user_index_ or \
                    len(model.item_index_) > len(self.item_index_):
                raise ValueError(f"component_{i}_ ({model.name}) has other vocabularies")
        if self.weights_.shape[1] != self.n_components_:
            raise ValueError("weights_ do not match the components")
        refs, trained = self.reference_items_, self.n_trained_items_
        if not 0 < trained <= len(self.item_index_) or \
                len(refs) != min(N_REFERENCE, trained) or np.any(np.diff(refs) <= 0):
            raise ValueError(f"reference_items_ must be min({N_REFERENCE}, n_trained_items_ "
                             f"= {trained}) distinct sorted items, got {len(refs)}")

    def get_component_params(self) -> list[dict[str, Any]]:
        """``[{"name": ..., "params": {...}}, ...]`` of the configured components."""
        return [{"name": n, "params": p} for n, p in hp.parse_components(self.config.components)]
