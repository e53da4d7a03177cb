"""Embedding matrix factorisation: the seeds' Keras model, on the neural engine.

Score s_ui = mu + b_u + b_i + p_u . q_i with user/item embeddings p, q (dimension
``embedding_dim``) and biases b (embedding tables of width 1), trained by mini-batch Adam:

- ``loss="mse"`` (explicit ratings): mean (r_ui - s_ui)^2; mu starts at the mean rating;
- ``loss="bce"`` (implicit data): binary cross-entropy of sigma(s) with label 1 on each
  interaction and 0 on ``n_negatives`` sampled non-interacted items (``negative_sampler``:
  uniform, popularity^``popularity_beta``, in_batch or hard); a stored value is ignored;
- ``loss="auto"``: mse for explicit data, bce for implicit data;

plus ``regularization`` * (|p_u|^2 + |q_i|^2) per training row (L2 on the embeddings of
the batch, as Keras's embedding regulariser does per batch). Predictions: the rating
clipped to the training range (mse), the probability sigma(s) (bce).

Factorised: q = [p_u, 1, mu + b_u] and v = [q_i, b_i, 1] give q . v = s exactly (ANN
retrieval). New users and known users with new events are folded in: a ridge solve of
their factors and bias against the fixed item side (mse: the same objective per rating,
closed form), or Adam steps on the BCE loss (see :mod:`.engine`).

Fit O(epochs * nnz * (1 + n_negatives) * d) time, O((n_users + n_items) d + nnz) memory.

References
----------
Koren, Bell, Volinsky (2009), "Matrix factorization techniques for recommender systems";
the Keras embedding-dot-product recommender of the course material.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.models.neural import losses
from recoforge.models.neural._torch import Seeds, to_numpy
from recoforge.models.neural.batches import BatchSource, InteractionBatches
from recoforge.models.neural.engine import TorchRecommender, UserEmbeddingConfig
from recoforge.models.neural.samplers import SAMPLERS, make_sampler
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register


@dataclass(frozen=True)
class EmbeddingMFConfig(UserEmbeddingConfig):
    embedding_dim: int = param(32, ge=1, le=4096, doc="latent dimension of the embeddings")
    regularization: float = param(0.02, ge=0.0, le=1000.0,
                                  doc="L2 on the embeddings of each training row")
    loss: str = param("auto", choices=("auto", "mse", "bce"),
                      doc="mse (ratings), bce (clicks, sampled negatives) or auto by data")
    n_negatives: int = param(4, ge=1, le=1000, doc="sampled negatives per positive (bce)")
    negative_sampler: str = param("uniform", choices=SAMPLERS,
                                  doc="uniform, popularity, in_batch or hard (bce)")
    popularity_beta: float = param(0.75, ge=0.0, le=10.0,
                                   doc="exponent of popularity sampling")
    hard_candidates: int = param(10, ge=1, le=10_000,
                                 doc="uniform draws per hard negative")
    init_scale: float = param(0.05, gt=0.0, le=10.0, doc="std of the initial embeddings")


class EmbeddingMFModule(nn.Module):
    """Embeddings and biases; ``calculate_loss`` reads users, items, values (negatives)."""

    def __init__(self, n_users: int, n_items: int, dim: int, loss: str,
                 regularization: float, init_scale: float, global_mean: float) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.global_bias = nn.Parameter(torch.full((), float(global_mean)))
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=init_scale)
        for table in (self.user_bias, self.item_bias):
            nn.init.zeros_(table.weight)
        self.loss, self.regularization = loss, regularization

    def pair_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """s_ui of (b,) users against items (b,) or (b, c)."""
        p, b_u = self.user_embedding(users), self.user_bias(users)[..., 0]
        if items.dim() == 2:
            p, b_u = p.unsqueeze(1), b_u.unsqueeze(1)
        dots = (p * self.item_embedding(items)).sum(-1)
        return dots + b_u + self.item_bias(items)[..., 0] + self.global_bias

    def full_scores(self, users: torch.Tensor) -> torch.Tensor:
        """s_ui of (b,) users against every item: (b, n_items)."""
        scores = self.user_embedding(users) @ self.item_embedding.weight.T
        return scores + self.user_bias(users) + self.item_bias.weight.T + self.global_bias

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items = batch["users"], batch["items"]
        p, q = self.user_embedding(users), self.item_embedding(items)
        b_u = self.user_bias(users)[:, 0]
        positive = (p * q).sum(-1) + b_u + self.item_bias(items)[:, 0] + self.global_bias
        penalty = losses.l2(p, q)
        if self.loss == "mse":
            fit = losses.mse(positive, batch["values"])
        else:
            negatives = batch["negatives"]
            q_neg = self.item_embedding(negatives)
            negative = (p.unsqueeze(1) * q_neg).sum(-1) \
                + b_u.unsqueeze(1) + self.item_bias(negatives)[..., 0] + self.global_bias
            logits = torch.cat([positive.unsqueeze(1), negative], dim=1)
            labels = torch.zeros_like(logits)
            labels[:, 0] = 1.0
            fit = losses.bce_with_logits(logits, labels)
            penalty = penalty + losses.l2(q_neg) / negatives.shape[1]
        return fit + self.regularization * penalty


@register
class EmbeddingMF(TorchRecommender):
    """User/item embeddings + biases, dot product; MSE for ratings, BCE for clicks."""

    name = "embedding_mf"
    Config = EmbeddingMFConfig
    predicts_ratings = True
    factorised = True
    user_state = "fold_in"
    user_parameters: ClassVar[tuple[str, ...]] = ("user_embedding.weight", "user_bias.weight")
    state_spec = {"global_mean_": "float", "rating_min_": "float", "rating_max_": "float"}
    global_mean_: float
    rating_min_: float
    rating_max_: float

    @property
    def objective(self) -> str:
        """The loss in use: "mse" or "bce" ("auto" resolved by the data kind)."""
        if self.config.loss != "auto":
            return str(self.config.loss)
        return "bce" if getattr(self, "data_kind_", "explicit") == "implicit" else "mse"

    # ------------------------------------------------------------------ engine hooks
    def _prepare_fit(self, data: Dataset) -> None:
        values = np.asarray(data.interactions.values, dtype=np.float64)
        self.global_mean_ = float(values.mean())
        self.rating_min_, self.rating_max_ = float(values.min()), float(values.max())

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        cfg = self.config
        mean = getattr(self, "global_mean_", 0.0) if self.objective == "mse" else 0.0
        return EmbeddingMFModule(n_users, n_items, cfg.embedding_dim, self.objective,
                                 cfg.regularization, cfg.init_scale, mean)

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        cfg = self.config
        sampler = None
        if self.objective == "bce":
            sampler = make_sampler(cfg.negative_sampler, matrix, seeds.numpy,
                                   beta=cfg.popularity_beta, n_candidates=cfg.hard_candidates,
                                   score=cast(EmbeddingMFModule, module).pair_scores,
                                   device=device)
        return InteractionBatches(matrix, batch_size, seeds.torch, device, sampler,
                                  cfg.n_negatives)

    def _fold_in_closed_form(self, history: sp.csr_matrix, module: nn.Module
                             ) -> dict[str, torch.Tensor] | None:
        """Ridge solve per row (mse): min sum_j (r_j - mu - b_j - [q_j, 1] . [p, b])^2
        + reg * h * |p|^2 (the training objective of one user with h ratings)."""
        if self.objective != "mse":
            return None
        module = cast(EmbeddingMFModule, module)
        items = to_numpy(module.item_embedding.weight).astype(np.float64)
        item_bias = to_numpy(module.item_bias.weight)[:, 0].astype(np.float64)
        mu = float(module.global_bias.detach())
        n, d = history.shape[0], items.shape[1]
        solved = np.zeros((n, d + 1))
        penalty = np.full(d + 1, float(self.config.regularization))
        penalty[d] = 1e-8
        for row in range(n):
            cols = history.indices[history.indptr[row]:history.indptr[row + 1]]
            if not len(cols):
                continue
            target = history.data[history.indptr[row]:history.indptr[row + 1]] \
                - mu - item_bias[cols]
            design = np.hstack([items[cols], np.ones((len(cols), 1))])
            gram = design.T @ design + np.diag(penalty * len(cols))
            solved[row] = np.linalg.solve(gram, design.T @ target)
        device = module.item_embedding.weight.device
        tensor = torch.as_tensor(solved, dtype=torch.float32, device=device)
        return {"user_embedding.weight": tensor[:, :d],
                "user_bias.weight": tensor[:, d:]}

    # ------------------------------------------------------------------ contract
    def query_vectors(self, query: Query) -> np.ndarray:
        """[p_u, 1, mu + b_u] per row (trained or folded in): q . v = score."""
        found, users = self._module_for(query)
        module = cast(EmbeddingMFModule, found)
        with torch.no_grad():
            users = users.to(module.global_bias.device)
            p = module.user_embedding(users)
            b = module.user_bias(users) + module.global_bias
            ones = torch.ones_like(b)
            return to_numpy(torch.cat([p, ones, b], dim=1)).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """[q_i, b_i, 1] per item."""
        module = cast(EmbeddingMFModule, self.module)
        with torch.no_grad():
            q, b = module.item_embedding.weight, module.item_bias.weight
            return to_numpy(torch.cat([q, b, torch.ones_like(b)], dim=1)).astype(np.float32)

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        module = cast(EmbeddingMFModule, self.module)
        device = module.global_bias.device
        with torch.no_grad():
            scores = module.pair_scores(
                torch.as_tensor(np.asarray(users, np.int64), device=device),
                torch.as_tensor(np.asarray(items, np.int64), device=device))
            if self.objective == "bce":
                return to_numpy(torch.sigmoid(scores)).astype(np.float64)
        return np.clip(to_numpy(scores).astype(np.float64), self.rating_min_, self.rating_max_)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the item embeddings (biases left out)."""
        vectors = to_numpy(cast(EmbeddingMFModule, self.module).item_embedding.weight)
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return (unit[items] @ unit.T).astype(np.float32)
