"""The feature two-tower of the KuaiRec notebook: predict an interaction value from features.

A user tower reads the user's features (and, with ``history_features``, the mean item
features of the user's history) and an item tower reads the item's features (and, with
``item_id_embedding``, an item id embedding); each is a first layer summing its sparse
inputs, then ReLU layers (default 256-128-96-48) and an L2-normalised output:

    u = f(x_u) / |f(x_u)|,   v = g(x_i) / |g(x_i)|,   y_hat = a (u . v) + b

with learned scalars a, b. ``task="regression"`` fits a transformed target
t(y) = (phi(y) - c) / s by MSE (``target_transform``: ``standard`` z-scores, ``minmax``
maps the training range to [0, 1], ``log1p`` z-scores log(1 + y), ``none``; phi, c and s
are saved with the model) and predicts t^-1(y_hat) clipped to the training range;
``task="classification"`` fits BCE on the label y >= ``label_threshold`` (with
``n_negatives`` sampled unobserved items per event as label 0) and predicts sigma(y_hat).
``auto``: regression on explicit data, classification on implicit data. Items are ranked
by y_hat (monotone in the prediction), so users and items never seen in training are
scored from their features alone; added items (:meth:`add_items`) need no retraining.

Factorised: q = [a u, b], v = [v, 1]. Fit O(epochs * nnz * (1 + n_negatives) * h),
scoring O(n h + n_items h) per batch (h: the widest layer).

References
----------
Gao, Li, Chen, He, Chua, Jiang (2022), "KuaiRec: A fully-observed dataset and insights
for evaluating recommender systems", CIKM (and its two-tower notebook); Huang, He, Gao,
Deng, Acero, Heck (2013), "Learning deep structured semantic models for web search using
clickthrough data" (DSSM).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.errors import ConfigError
from recoforge.models import _features
from recoforge.models.neural import losses
from recoforge.models.neural._torch import Seeds, to_numpy
from recoforge.models.neural.batches import Batch, BatchSource, InteractionBatches
from recoforge.models.neural.engine import TorchRecommender
from recoforge.models.neural.ncf import parse_layers
from recoforge.models.neural.samplers import UniformSampler
from recoforge.models.neural.towers import (
    Bag,
    FeatureBatches,
    Input,
    Tower,
    TowerConfig,
    csr_bag,
    feature_rows,
    grow_rows,
    leave_one_out,
    mean_rows,
)
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register

ITEM_BLOCK = 1 << 14
TRANSFORMS = ("standard", "minmax", "log1p", "none")


@dataclass(frozen=True)
class FeatureTowerConfig(TowerConfig):
    user_layers: str = param("256,128,96,48", doc="user tower sizes, the last is the output")
    item_layers: str = param("256,128,96,48", doc="item tower sizes (same output size)")
    task: str = param("auto", choices=("auto", "regression", "classification"),
                      doc="regression (MSE) or classification (BCE) of the value; auto "
                          "by data kind")
    target_transform: str = param("standard", choices=TRANSFORMS,
                                  doc="regression target scaling, saved with the model")
    label_threshold: float = param(1.0, doc="classification: value >= this is positive")
    n_negatives: int = param(0, ge=0, le=1000,
                             doc="sampled unobserved items per event, label 0 "
                                 "(classification; implicit data needs >= 1)")
    history_features: bool = param(True, doc="user tower also reads the mean item "
                                             "features of the history")
    item_id_embedding: bool = param(False, doc="item tower also reads an item id embedding")
    dropout: float = param(0.0, ge=0.0, lt=1.0, doc="dropout after hidden layers")
    learning_rate: float = param(0.001, gt=0.0, le=10.0, doc="optimiser step size")

    def __post_init__(self) -> None:
        super().__post_init__()
        user, item = (parse_layers(self.user_layers, "user_layers"),
                      parse_layers(self.item_layers, "item_layers"))
        if user[-1] != item[-1]:
            raise ConfigError(f"user_layers and item_layers must end in the same output "
                              f"size, got {user[-1]} and {item[-1]}")


class FeatureTowerModule(nn.Module):
    """Two normalised towers and the affine output y_hat = a (u . v) + b."""

    def __init__(self, sizes: dict[str, int], user_layers: tuple[int, ...],
                 item_layers: tuple[int, ...], dropout: float, init_scale: float,
                 classify: bool) -> None:
        super().__init__()
        self.user = Tower([sizes["user_features"], sizes["history_features"]], user_layers,
                          True, dropout, init_scale)
        self.item = Tower([sizes["item_ids"], sizes["item_features"]], item_layers, True,
                          dropout, init_scale)
        self.scale = nn.Parameter(torch.ones(()))
        self.shift = nn.Parameter(torch.zeros(()))
        self.classify = classify

    def predict(self, user_bags: list[Input], item_bags: list[Input]) -> torch.Tensor:
        u, v = self.user(user_bags), self.item(item_bags)
        return self.scale * (u * v).sum(-1) + self.shift

    def calculate_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        out = self.predict(batch["user"], batch["item"])
        if not self.classify:
            return losses.mse(out, batch["target"])
        if "negative_item" in batch:
            negative = self.predict(batch["negative_user"], batch["negative_item"])
            out = torch.cat([out, negative])
        return losses.bce_with_logits(out, batch["target"])


@register
class FeatureTower(TorchRecommender):
    """User-feature tower . item-feature tower, normalised, regressing a value (KuaiRec)."""

    name = "feature_tower"
    Config = FeatureTowerConfig
    predicts_ratings = True
    factorised = True
    needs_item_features = True
    uses_user_features = True
    scores_new_items = True
    user_state = "history"
    state_spec = {"item_feature_matrix_": "items x item_features",
                  "item_encoder_": "any: optional", "target_center_": "float",
                  "target_scale_": "float", "classify_": "bool",
                  "rating_min_": "float", "rating_max_": "float"}
    item_feature_matrix_: sp.csr_matrix
    target_center_: float
    target_scale_: float
    classify_: bool
    rating_min_: float
    rating_max_: float
    _sums: sp.csr_matrix | None = None  # training only: history sums of item features
    _counts: np.ndarray | None = None

    # ------------------------------------------------------------------ module
    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        cfg = self.config
        n_features = int(self.item_feature_matrix_.shape[1])
        sizes = {"user_features": _features.n_user_features(self),
                 "history_features": n_features if cfg.history_features else 0,
                 "item_ids": n_items if cfg.item_id_embedding else 0,
                 "item_features": n_features}
        return FeatureTowerModule(sizes, parse_layers(cfg.user_layers, "user_layers"),
                                  parse_layers(cfg.item_layers, "item_layers"),
                                  cfg.dropout, cfg.init_scale, self.classify_)

    # ------------------------------------------------------------------ fitting
    def _prepare_fit(self, data: Dataset) -> None:
        cfg = self.config
        if data.item_features is None and not cfg.item_id_embedding:
            raise ConfigError("feature_tower needs item features (--item-features), or "
                              "item_id_embedding=True")
        self.item_feature_matrix_ = feature_rows(data.item_features, data.n_items, "item")
        self.item_encoder_ = None if data.item_features is None else data.item_features.encoder
        if not (_features.n_user_features(self) or cfg.history_features):
            raise ConfigError("feature_tower's user tower has no input: give user features "
                              "(--user-features) or set history_features=True")
        self.classify_ = cfg.task == "classification" or (
            cfg.task == "auto" and data.kind == "implicit")
        if self.classify_ and data.kind == "implicit" and cfg.n_negatives < 1:
            raise ConfigError("feature_tower classification of implicit data needs "
                              "n_negatives >= 1 (every event is a positive)")
        values = np.asarray(data.interactions.values, dtype=np.float64)
        self.rating_min_, self.rating_max_ = float(values.min()), float(values.max())
        center, scale = 0.0, 1.0
        if not self.classify_ and cfg.target_transform != "none":
            phi = np.log1p(np.maximum(values, 0)) if cfg.target_transform == "log1p" \
                else values
            if cfg.target_transform == "minmax":
                center, scale = float(phi.min()), float(phi.max() - phi.min())
            else:
                center, scale = float(phi.mean()), float(phi.std())
        self.target_center_, self.target_scale_ = center, scale if scale > 0 else 1.0
        matrix = data.matrix()
        binary = sp.csr_matrix(
            (np.ones(matrix.nnz, np.float32), matrix.indices, matrix.indptr), matrix.shape)
        self._sums = sp.csr_matrix(binary @ self.item_feature_matrix_, dtype=np.float32)
        self._counts = np.diff(binary.indptr)

    def _fit(self, data: Dataset) -> None:
        try:
            super()._fit(data)
        finally:
            self._sums = self._counts = None

    def _target(self, values: np.ndarray) -> np.ndarray:
        if self.classify_:
            return (values >= self.config.label_threshold).astype(np.float32)
        if self.config.target_transform == "log1p":
            values = np.log1p(np.maximum(values, 0))
        return ((values - self.target_center_) / self.target_scale_).astype(np.float32)

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        base = InteractionBatches(matrix, batch_size, seeds.torch, device)
        n_neg = self.config.n_negatives if self.classify_ else 0
        sampler = UniformSampler(matrix, seeds.numpy) if n_neg else None
        sums, counts, features = self._sums, self._counts, self.item_feature_matrix_

        def history(users: np.ndarray, items: np.ndarray) -> Input:
            if not self.config.history_features or sums is None or counts is None:
                return None
            return leave_one_out(sums, counts, features, users, items, device)

        def enrich(batch: Batch) -> Batch:
            users = batch["users"].cpu().numpy()
            items = batch["items"].cpu().numpy()
            target = self._target(batch["values"].cpu().numpy())
            out: dict[str, Any] = dict(batch)
            out["user"] = self._user_bags(users, history(users, items), None, device)
            out["item"] = self._item_bags(items, device)
            if sampler is not None:
                neg = sampler.draw(users, items, n_neg).ravel()
                rep = np.repeat(np.arange(len(users)), n_neg)
                out["negative_user"] = self._user_bags(
                    users[rep], history(users[rep], items[rep]), None, device)
                out["negative_item"] = self._item_bags(neg, device)
                target = np.concatenate([target, np.zeros(len(neg), np.float32)])
            out["target"] = torch.as_tensor(target, device=device)
            return out

        return FeatureBatches(base, enrich)

    # ------------------------------------------------------------------ bags
    def _user_bags(self, users: np.ndarray, history: Input, rows: sp.csr_matrix | None,
                   device: torch.device) -> list[Input]:
        """[user feature rows, history item features (a bag input, or None)]."""
        rows = _features.stored_rows(self, users) if rows is None else rows
        return [csr_bag(rows, None, device) if rows.shape[1] else None, history]

    def _item_bags(self, items: np.ndarray, device: torch.device) -> list[Bag | None]:
        n = len(items)
        ids = (torch.as_tensor(np.asarray(items, np.int64), device=device),
               torch.arange(n, device=device), torch.ones(n, device=device))
        return [ids if self.config.item_id_embedding else None,
                csr_bag(self.item_feature_matrix_, items, device)]

    def _tower_module(self) -> FeatureTowerModule:
        module = cast(FeatureTowerModule, self.module)
        module.eval()
        return module

    # ------------------------------------------------------------------ contract
    def _user_vectors(self, query: Query) -> np.ndarray:
        module = self._tower_module()
        device = next(module.parameters()).device
        history = csr_bag(sp.csr_matrix(mean_rows(query.history) @ self.item_feature_matrix_),
                          None, device) if self.config.history_features else None
        bags = self._user_bags(query.users, history, _features.query_rows(self, query),
                               device)
        with torch.no_grad():
            return to_numpy(module.user(bags)).astype(np.float32)

    def _item_outputs(self) -> np.ndarray:
        module = self._tower_module()
        device = next(module.parameters()).device
        n = len(self.item_index_)
        width = parse_layers(self.config.item_layers, "item_layers")[-1]
        out = np.empty((n, width), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, ITEM_BLOCK):
                items = np.arange(start, min(n, start + ITEM_BLOCK))
                out[items] = to_numpy(module.item(self._item_bags(items, device)))
        return out

    def query_vectors(self, query: Query) -> np.ndarray:
        """[a u, b]: with item vectors [v, 1], q . v is the model's output y_hat."""
        module = self._tower_module()
        u = self._user_vectors(query) * float(module.scale.detach())
        return np.hstack([u, np.full((len(u), 1), float(module.shift.detach()),
                                     np.float32)])

    def item_vectors(self) -> np.ndarray:
        v = self._item_outputs()
        return np.hstack([v, np.ones((len(v), 1), np.float32)])

    def _score(self, query: Query) -> np.ndarray:
        return (self.query_vectors(query) @ self.item_vectors().T).astype(np.float32)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        module = self._tower_module()
        u = self._user_vectors(self.known_query(np.asarray(users, np.int64)))
        with torch.no_grad():
            v = to_numpy(module.item(self._item_bags(np.asarray(items, np.int64),
                                                     next(module.parameters()).device)))
        out = float(module.scale.detach()) * (u * v).sum(axis=1).astype(np.float64) \
            + float(module.shift.detach())
        if self.classify_:
            return 1.0 / (1.0 + np.exp(-out))
        out = out * self.target_scale_ + self.target_center_
        if self.config.target_transform == "log1p":
            out = np.expm1(out)
        return np.clip(out, self.rating_min_, self.rating_max_)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the item tower outputs (unit vectors)."""
        v = self._item_outputs()
        return (v[items] @ v.T).astype(np.float32)

    def _add_items(self, features: sp.csr_matrix) -> None:
        if self.config.item_id_embedding:
            with torch.no_grad():
                grow_rows(cast(nn.Module, self.module), "item.bags.0.weight",
                          features.shape[0])
        self.item_feature_matrix_ = sp.csr_matrix(
            sp.vstack([self.item_feature_matrix_, features]), dtype=np.float32)
