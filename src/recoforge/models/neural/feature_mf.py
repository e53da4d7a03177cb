"""Feature-based matrix factorisation: item factors are a linear map of item features.

With item features x_i and user features y_u (when the data has them),

    q_i = W^T x_i + e_i,    p_u = P_u + U^T y_u,    s_ui = mu + b_u + b_i + p_u . q_i,
    b_i = w^T x_i + c_i

where e_i and c_i are free item offsets (``item_offset``; zero for items added after
training, whose features alone place them) and P_u, b_u free user parameters
(``user_vectors="learned"``, folded in for new users and new events) or absent
(``"features"``: p_u = U^T y_u, a user is their features). Losses: ``mse`` on ratings,
``bce`` with ``n_negatives`` sampled unobserved items (label 0), ``bpr`` on (event,
sampled item) pairs; ``auto``: mse on explicit data, bce on implicit data. L2
``regularization`` on the batch's vectors.

Factorised: [p_u, 1, mu + b_u] . [q_i, b_i, 1] = s_ui. Fit O(epochs * nnz * (1 +
n_negatives) * (nnz(x_i) + d)); memory O((n_features + n_users + n_items) d).

References
----------
Gantner, Drumond, Freudenthaler, Rendle, Schmidt-Thieme (2010), "Learning attribute-to-
feature mappings for cold-start recommendations", ICDM; Kula (2015), "Metadata
embeddings for user and item cold-start recommendations" (LightFM).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.models import _features
from recoforge.models.neural import losses
from recoforge.models.neural._torch import Seeds, to_numpy
from recoforge.models.neural.batches import Batch, BatchSource, InteractionBatches
from recoforge.models.neural.engine import TorchRecommender, UserEmbeddingConfig
from recoforge.models.neural.samplers import UniformSampler
from recoforge.models.neural.towers import (
    Bag,
    FeatureBatches,
    TowerConfig,
    csr_bag,
    feature_rows,
    grow_rows,
)
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register

#: the user feature rows of the fold-in running in this thread (scoring is concurrent)
_FOLDING = threading.local()


@dataclass(frozen=True)
class FeatureMFConfig(UserEmbeddingConfig, TowerConfig):
    embedding_dim: int = param(32, ge=1, le=4096, doc="latent dimension")
    user_vectors: str = param("learned", choices=("learned", "features"),
                              doc="free user vectors (folded in for new users) plus "
                                  "features, or user features alone")
    item_offset: bool = param(True, doc="free per-item offset added to W^T x_i")
    loss: str = param("auto", choices=("auto", "mse", "bce", "bpr"),
                      doc="mse (ratings), bce or bpr (sampled negatives); auto by data")
    n_negatives: int = param(4, ge=1, le=1000, doc="sampled items per event (bce, bpr)")
    regularization: float = param(0.01, ge=0.0, le=1000.0, doc="L2 on the batch's vectors")
    learning_rate: float = param(0.01, gt=0.0, le=10.0, doc="optimiser step size")


class FeatureMFModule(nn.Module):
    """Feature maps W, w, U, free tables P, b_u, e, c and mu."""

    def __init__(self, n_users: int, n_items: int, n_item_features: int,
                 n_user_features: int, dim: int, item_offset: bool, learned: bool,
                 objective: str, regularization: float, init_scale: float,
                 mean: float) -> None:
        super().__init__()
        self.item_map = nn.EmbeddingBag(max(n_item_features, 1), dim + 1, mode="sum")
        self.item_free = nn.Embedding(n_items if item_offset else 1, dim + 1)
        self.user_map = nn.EmbeddingBag(max(n_user_features, 1), dim, mode="sum")
        self.user_embedding = nn.Embedding(n_users if learned else 1, dim)
        self.user_bias = nn.Embedding(n_users if learned else 1, 1)
        self.global_bias = nn.Parameter(torch.full((), float(mean)))
        for table in (self.item_map, self.item_free, self.user_map, self.user_embedding):
            nn.init.normal_(table.weight, std=init_scale)
        nn.init.zeros_(self.user_bias.weight)
        self.item_offset, self.learned = item_offset, learned
        self.objective, self.regularization = objective, regularization

    def items(self, ids: torch.Tensor, bag: Bag | None) -> torch.Tensor:
        """[q_i, b_i] (b, d + 1) of items given by id and feature bag."""
        out = self.item_free(ids) if self.item_offset \
            else torch.zeros(len(ids), self.item_free.weight.shape[1], device=ids.device)
        if bag is not None:
            out = out + self.item_map(bag[0], bag[1], per_sample_weights=bag[2])
        return out

    def users(self, ids: torch.Tensor, bag: Bag | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(p_u (b, d), mu + b_u (b,)) of users given by row and feature bag."""
        if self.learned:
            p, b = self.user_embedding(ids), self.user_bias(ids)[:, 0]
        else:
            p = torch.zeros(len(ids), self.user_embedding.weight.shape[1], device=ids.device)
            b = torch.zeros(len(ids), device=ids.device)
        if bag is not None:
            p = p + self.user_map(bag[0], bag[1], per_sample_weights=bag[2])
        return p, b + self.global_bias

    def calculate_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        p, b = self.users(batch["users"], batch.get("user_bag"))
        qb = self.items(batch["items"], batch.get("item_bag"))
        score = (p * qb[:, :-1]).sum(-1) + qb[:, -1] + b
        penalty = losses.l2(p, qb)
        if self.objective == "mse":
            return losses.mse(score, batch["values"]) + self.regularization * penalty
        n = batch["negatives"].shape[1]
        nq = self.items(batch["negatives"].reshape(-1), batch.get("negative_bag"))
        nq = nq.reshape(len(p), n, -1)
        negative = (p.unsqueeze(1) * nq[..., :-1]).sum(-1) + nq[..., -1] + b.unsqueeze(1)
        penalty = penalty + losses.l2(nq.reshape(len(p), -1)) / n
        if self.objective == "bpr":
            fit = losses.bpr(score, negative)
        else:
            logits = torch.cat([score.unsqueeze(1), negative], dim=1)
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            fit = losses.bce_with_logits(logits, labels)
        return fit + self.regularization * penalty


@register
class FeatureMF(TorchRecommender):
    """MF whose item factors come from item features (+ offsets); users learned or from
    their features."""

    name = "feature_mf"
    Config = FeatureMFConfig
    predicts_ratings = True
    factorised = True
    needs_item_features = True
    uses_user_features = True
    scores_new_items = True
    user_state = "fold_in"
    state_spec = {"item_feature_matrix_": "items x item_features",
                  "item_encoder_": "any: optional", "global_mean_": "float",
                  "rating_min_": "float", "rating_max_": "float"}
    item_feature_matrix_: sp.csr_matrix
    global_mean_: float
    rating_min_: float
    rating_max_: float

    @property
    def user_parameters(self) -> tuple[str, ...]:  # type: ignore[override]
        """Folded in only with free user vectors."""
        if self.config.user_vectors == "learned":
            return ("user_embedding.weight", "user_bias.weight")
        return ()

    @property
    def objective(self) -> str:
        if self.config.loss != "auto":
            return str(self.config.loss)
        return "bce" if getattr(self, "data_kind_", "explicit") == "implicit" else "mse"

    # ------------------------------------------------------------------ engine hooks
    def _prepare_fit(self, data: Dataset) -> None:
        self.item_feature_matrix_ = feature_rows(data.item_features, data.n_items, "item")
        self.item_encoder_ = None if data.item_features is None else data.item_features.encoder
        values = np.asarray(data.interactions.values, dtype=np.float64)
        self.global_mean_ = float(values.mean())
        self.rating_min_, self.rating_max_ = float(values.min()), float(values.max())

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        cfg = self.config
        mean = self.global_mean_ if self.objective == "mse" else 0.0
        return FeatureMFModule(n_users, n_items, int(self.item_feature_matrix_.shape[1]),
                               _features.n_user_features(self), cfg.embedding_dim,
                               cfg.item_offset, cfg.user_vectors == "learned",
                               self.objective, cfg.regularization, cfg.init_scale, mean)

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        objective = self.objective
        sampler = UniformSampler(matrix, seeds.numpy) if objective != "mse" else None
        n_neg = self.config.n_negatives
        base = InteractionBatches(matrix, batch_size, seeds.torch, device, sampler, n_neg)
        rows = getattr(_FOLDING, "rows", None)  # a fold-in's user features, else stored

        def enrich(batch: Batch) -> Batch:
            out: dict[str, Any] = dict(batch)
            users = batch["users"].cpu().numpy()
            features = _features.stored_rows(self, users) if rows is None else rows[users]
            out["user_bag"] = csr_bag(features, None, device) if features.shape[1] else None
            out["item_bag"] = self._item_bag(batch["items"].cpu().numpy(), device)
            if "negatives" in batch:
                out["negative_bag"] = self._item_bag(
                    batch["negatives"].cpu().numpy().ravel(), device)
            return out

        return FeatureBatches(base, enrich)

    def _item_bag(self, items: np.ndarray, device: torch.device) -> Bag | None:
        if not self.item_feature_matrix_.shape[1]:
            return None
        return csr_bag(self.item_feature_matrix_, items, device)

    def _module_for(self, query: Query) -> tuple[nn.Module, torch.Tensor]:
        """The engine's (trained or folded-in) module; a fold-in sees the rows' features."""
        _FOLDING.rows = _features.query_rows(self, query)
        try:
            return super()._module_for(query)
        finally:
            _FOLDING.rows = None

    # ------------------------------------------------------------------ contract
    def query_vectors(self, query: Query) -> np.ndarray:
        """[p_u, 1, mu + b_u] per row (trained or folded in, plus the user features);
        the feature maps are applied in float64 NumPy (the same result on every load)."""
        return self._query_vectors(query).astype(np.float32)

    def _query_vectors(self, query: Query) -> np.ndarray:
        found, users = self._module_for(query)
        module = cast(FeatureMFModule, found)
        with torch.no_grad():
            free, bias = module.users(users.to(module.global_bias.device), None)
        p = to_numpy(free).astype(np.float64)
        rows = _features.query_rows(self, query)
        if rows.shape[1]:
            p = p + rows @ to_numpy(module.user_map.weight).astype(np.float64)
        b = to_numpy(bias).astype(np.float64)[:, None]
        return np.hstack([p, np.ones_like(b), b])

    def item_vectors(self) -> np.ndarray:
        """[q_i, b_i, 1] per item."""
        return self._item_vectors().astype(np.float32)

    def _item_vectors(self) -> np.ndarray:
        module = cast(FeatureMFModule, self.module)
        n = len(self.item_index_)
        qb = np.zeros((n, module.item_free.weight.shape[1]))
        if self.config.item_offset:
            qb += to_numpy(module.item_free.weight).astype(np.float64)
        if self.item_feature_matrix_.shape[1]:
            qb += self.item_feature_matrix_ @ to_numpy(module.item_map.weight).astype(np.float64)
        return np.hstack([qb, np.ones((n, 1))])

    def _score(self, query: Query) -> np.ndarray:
        return (self._query_vectors(query) @ self._item_vectors().T).astype(np.float32)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        q = self.query_vectors(self.known_query(np.asarray(users, np.int64)))
        scores = (q * self.item_vectors()[np.asarray(items, np.int64)]).sum(1)
        if self.objective != "mse":
            return 1.0 / (1.0 + np.exp(-scores.astype(np.float64)))
        return np.clip(scores.astype(np.float64), self.rating_min_, self.rating_max_)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the item factors q_i (biases left out)."""
        q = self.item_vectors()[:, :-2]
        unit = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        return (unit[items] @ unit.T).astype(np.float32)

    def _add_items(self, features: sp.csr_matrix) -> None:
        if self.config.item_offset:
            with torch.no_grad():
                grow_rows(cast(nn.Module, self.module), "item_free.weight", features.shape[0])
        self.item_feature_matrix_ = sp.csr_matrix(
            sp.vstack([self.item_feature_matrix_, features]), dtype=np.float32)
