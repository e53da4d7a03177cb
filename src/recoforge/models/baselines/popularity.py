"""Popularity: the non-personalised baseline every recommender must beat.

Scores are the same for every user:

- ``measure="count"``: s_i = sum_u w_ui, the (time-decayed) number of interactions;
- ``measure="rating"``: the Bayesian average s_i = (sum_u w_ui r_ui + m * mu) /
  (sum_u w_ui + m), which damps items with few ratings toward the global mean mu
  (``damping`` m, as rating sites rank items);

with w_ui = 2^(-(t_max - t_ui) / half_life) under time decay, else 1. Ties are broken by
the interaction count. ``predict`` returns the damped item mean (explicit data).
Fit O(nnz), memory O(n_items).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError, NotSupportedError
from recoforge.models.base import Recommender
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register

SECONDS_PER_DAY = 86_400.0


@register
class Popularity(Recommender):
    """Most-popular items, by count or by damped mean rating.

    References
    ----------
    Cremonesi, Koren, Turrin (2010), "Performance of recommender algorithms on top-N
    recommendation tasks" (the TopPop baseline).
    """

    name = "popularity"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"counts_": "items: int", "item_means_": "items", "scores_": "items"}
    needs_history = False
    predicts_ratings = True

    @dataclass(frozen=True)
    class Config(ModelConfig):
        measure: str = param("count", choices=("count", "rating"),
                             doc="rank by interaction count or by damped mean rating")
        damping: float = param(5.0, ge=0.0, le=1e12, doc="pseudo-ratings at the global mean (m)")
        half_life_days: float | None = param(None, gt=0.0,
                                             doc="time-decay half-life in days (None: off)")

    def _fit(self, data: Dataset) -> None:
        inter = data.interactions
        cfg = self.config
        weights = np.ones(len(inter), dtype=np.float64)
        if cfg.half_life_days is not None:
            if inter.timestamps is None:
                raise ConfigError("half_life_days needs interactions with timestamps")
            age_days = (inter.timestamps.max() - inter.timestamps) / SECONDS_PER_DAY
            weights = np.exp2(-age_days / cfg.half_life_days)
        n_items = inter.n_items
        weight_sum = np.bincount(inter.items, weights=weights, minlength=n_items)
        self.counts_ = np.bincount(inter.items, minlength=n_items).astype(np.int64)
        self.global_mean_ = float(np.average(inter.values, weights=weights))
        rating_sum = np.bincount(inter.items, weights=weights * inter.values, minlength=n_items)
        self.item_means_ = ((rating_sum + cfg.damping * self.global_mean_)
                            / np.maximum(weight_sum + cfg.damping, 1e-12)).astype(np.float32)
        if cfg.measure == "rating":
            if data.kind != "explicit":
                raise ConfigError("measure='rating' needs explicit ratings; use 'count'")
            # tie-break equal means by count, without changing the order otherwise
            tie = self.counts_ / (self.counts_.max() + 1.0) * 1e-4
            self.scores_ = (self.item_means_ + tie).astype(np.float32)
        else:
            self.scores_ = weight_sum.astype(np.float32)

    def _score(self, query: Query) -> np.ndarray:
        histories = query.history
        return np.broadcast_to(self.scores_, (histories.shape[0], len(self.scores_))).copy()

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        if self.data_kind_ != "explicit":
            raise NotSupportedError("popularity predicts ratings only from explicit data")
        return self.item_means_[items].astype(np.float64)
