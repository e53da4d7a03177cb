"""Two-tower retrieval: a query tower and an item tower trained with in-batch softmax.

The query tower reads the user's history (the mean of learned item vectors over the
history: a new user needs no fold-in), the user's features, optionally a user id
embedding (with a learned row for unknown users) and the bucketised request time; the
item tower reads an item id embedding (optional) and the item's features. Each tower is
a first layer summing its sparse inputs, ReLU layers, and an output of ``embedding_dim``
(L2-normalised with ``similarity="cosine"``). With query vectors q_u and item vectors
v_i, the score is s_ui = q_u . v_i.

Training (Yi et al. 2019): for a batch of B (user, item) events, the logits
l_uj = q_u . v_j / T - log Q_j over the batch's distinct items, with Q_j = B * count_j /
nnz the chance item j is in the batch (log-q correction of the popularity of in-batch
negatives), and the loss is the cross-entropy of each row's own item (an item repeated
in the batch is one candidate, never its own row's negative). Optional extra negatives:
``n_extra_negatives`` uniform items shared by the batch (log Q = log(m / n_items)), all
of them ("uniform") or only the ``hard_negatives`` that score highest per row
("hard"). The history fed to the query tower leaves the event's item out (the target
never predicts itself); with ``history_sample = m`` it is at most m of the user's other
items drawn at random (a short history, as new users show; O(B m) instead of the
batch's history nnz).

Factorised: ``query_vectors`` / ``item_vectors`` give the scores exactly (ANN retrieval,
``similar_items`` by item vector cosine). Items without training events, and items added
after training from their attributes (:meth:`add_items`), have a zero item id (and
history) embedding: their features place them.

Fit O(epochs * (nnz(history rows of the batch) + B^2 d + B d h)) time, O((n_items +
n_features) h) memory. Scoring O(n (history nnz) h + n_items d) per batch.

References
----------
Yi, Yang, Hong, Cheng, Heldt, Kumthekar, Zhao, Wei, Chi (2019), "Sampling-bias-corrected
neural modeling for large corpus item recommendations", RecSys.
Covington, Adams, Sargin (2016), "Deep neural networks for YouTube recommendations".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.errors import ArtifactError, ConfigError
from recoforge.models import _features
from recoforge.models.neural._torch import Seeds, to_numpy
from recoforge.models.neural.batches import Batch, BatchSource, InteractionBatches
from recoforge.models.neural.engine import TorchRecommender
from recoforge.models.neural.ncf import parse_layers
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
    log_counts,
    mean_rows,
    sampled_history,
    softmax_cross_entropy,
)
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register

#: item vectors computed at once when scoring
ITEM_BLOCK = 1 << 14


@dataclass(frozen=True)
class TwoTowerConfig(TowerConfig):
    embedding_dim: int = param(64, ge=1, le=4096, doc="size of the query and item vectors")
    layers: str = param("", doc="hidden sizes of both towers before the output, "
                                "comma-separated (ReLU); empty: linear towers")
    similarity: str = param("dot", choices=("dot", "cosine"),
                            doc="dot product, or cosine (L2-normalised tower outputs)")
    temperature: float = param(1.0, gt=0.0, le=100.0, doc="softmax temperature of the logits")
    item_id_embedding: bool = param(True, doc="item tower reads an item id embedding")
    user_id_embedding: bool = param(False, doc="query tower reads a user id embedding")
    history: bool = param(True, doc="query tower reads the mean vector of the history")
    history_sample: int = param(0, ge=0, le=100_000,
                                doc="training rows read at most this many of the user's "
                                    "other history items, drawn at random (0: all)")
    unknown_user_rate: float = param(0.1, ge=0.0, le=1.0,
                                     doc="share of training rows whose user id is replaced "
                                         "by the unknown-user row (user_id_embedding)")
    extra_negatives: str = param("none", choices=("none", "uniform", "hard"),
                                 doc="extra negatives besides the batch's items")
    n_extra_negatives: int = param(64, ge=1, le=100_000,
                                   doc="uniform items shared by a batch (extra_negatives)")
    hard_negatives: int = param(8, ge=1, le=100_000,
                                doc="highest-scoring extra negatives kept per row (hard)")
    time_buckets: int = param(0, ge=0, le=100_000,
                              doc="quantile buckets of the event time read by the query "
                                  "tower (0: no time feature)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.layers:
            parse_layers(self.layers, "layers")


class TwoTowerModule(nn.Module):
    """Query and item towers; ``calculate_loss`` reads the bags of a batch."""

    def __init__(self, sizes: dict[str, int], layers: tuple[int, ...], normalise: bool,
                 temperature: float, extra: str, hard: int, init_scale: float) -> None:
        super().__init__()
        self.query = Tower([sizes["history"], sizes["user_features"], sizes["users"],
                            sizes["times"]], layers, normalise, init_scale=init_scale)
        self.item = Tower([sizes["item_ids"], sizes["item_features"]], layers, normalise,
                          init_scale=init_scale)
        self.temperature, self.extra, self.hard = temperature, extra, hard

    def calculate_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """In-batch softmax over the batch's distinct items (``item`` bags, ``log_q`` of
        each; row r's own item is column ``target[r]``) with log-q correction, plus extra
        negatives (``negatives``, ``negative_item`` bags, ``extra_log_q``)."""
        q = self.query(batch["query"])
        v = self.item(batch["item"])
        items = batch["items"]
        logits = torch.addmm(-batch["log_q"].unsqueeze(0), q, v.T, alpha=1 / self.temperature)
        if "negatives" in batch:
            neg = batch["negatives"]
            extra = q @ self.item(batch["negative_item"]).T / self.temperature \
                - batch["extra_log_q"]
            extra = extra.masked_fill(items.unsqueeze(1) == neg.unsqueeze(0), float("-inf"))
            if self.extra == "hard" and self.hard < extra.shape[1]:
                keep = extra.detach().topk(self.hard, dim=1).indices
                extra = extra.gather(1, keep)
            logits = torch.cat([logits, extra], dim=1)
        return softmax_cross_entropy(logits, batch["target"])


@register
class TwoTower(TorchRecommender):
    """Query tower (history, user features, id, time) . item tower (id, features)."""

    name = "two_tower"
    Config = TwoTowerConfig
    factorised = True
    uses_user_features = True
    scores_new_items = True
    user_state = "history"
    user_parameters: ClassVar[tuple[str, ...]] = ()
    scoring_params = frozenset({"device"})
    state_spec = {"item_feature_matrix_": "items x item_features",
                  "item_encoder_": "any: optional", "item_log_q_": "items",
                  "time_edges_": "time_edges: int", "time_default_": "int"}
    item_feature_matrix_: sp.csr_matrix
    item_log_q_: np.ndarray
    time_edges_: np.ndarray
    time_default_: int
    _train_history: sp.csr_matrix | None = None
    _train_times: sp.csr_matrix | None = None

    # ------------------------------------------------------------------ sizes
    def _sizes(self, n_users: int, n_items: int) -> dict[str, int]:
        cfg = self.config
        return {"items": n_items, "history": n_items if cfg.history else 0,
                "user_features": _features.n_user_features(self),
                "users": n_users + 1 if cfg.user_id_embedding else 0,
                "times": len(self.time_edges_) + 1 if cfg.time_buckets else 0,
                "item_ids": n_items if cfg.item_id_embedding else 0,
                "item_features": int(self.item_feature_matrix_.shape[1])}

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        cfg = self.config
        layers = (*(parse_layers(cfg.layers, "layers") if cfg.layers else ()),
                  cfg.embedding_dim)
        return TwoTowerModule(self._sizes(n_users, n_items), layers,
                              cfg.similarity == "cosine", cfg.temperature,
                              cfg.extra_negatives, cfg.hard_negatives, cfg.init_scale)

    # ------------------------------------------------------------------ fitting
    def _prepare_fit(self, data: Dataset) -> None:
        cfg = self.config
        self.item_feature_matrix_ = feature_rows(data.item_features, data.n_items, "item")
        self.item_encoder_ = None if data.item_features is None else data.item_features.encoder
        if not cfg.item_id_embedding and self.item_feature_matrix_.shape[1] == 0:
            raise ConfigError("two_tower with item_id_embedding=False needs item features "
                              "(--item-features)")
        if not (cfg.history or cfg.user_id_embedding or _features.n_user_features(self)):
            raise ConfigError("two_tower's query tower has no input: enable history or "
                              "user_id_embedding, or give user features")
        matrix = data.matrix()
        self.item_log_q_ = log_counts(np.diff(sp.csc_matrix(matrix).indptr))
        self._train_history = sp.csr_matrix(
            (np.ones(matrix.nnz, np.float32), matrix.indices, matrix.indptr), matrix.shape)
        self._train_times = None
        inter = data.interactions
        self.time_edges_ = np.zeros(0, dtype=np.int64)
        self.time_default_ = 0
        if cfg.time_buckets:
            if inter.timestamps is None:
                raise ConfigError("two_tower with time_buckets needs timestamps")
            stamps = np.asarray(inter.timestamps, dtype=np.int64)
            qs = np.linspace(0, 1, cfg.time_buckets + 1)[1:-1]
            self.time_edges_ = np.unique(np.quantile(stamps, qs).astype(np.int64))
            self.time_default_ = int(stamps.max())
            order = np.argsort(stamps, kind="stable")  # the latest event wins a duplicate
            users, items = np.asarray(inter.users)[order], np.asarray(inter.items)[order]
            keys = users.astype(np.int64) * data.n_items + items
            _, last = np.unique(keys[::-1], return_index=True)
            pick = len(keys) - 1 - last
            self._train_times = sp.csr_matrix(
                (self._bucket(stamps[order][pick]) + 1.0, (users[pick], items[pick])),
                shape=matrix.shape, dtype=np.float32)

    def _fit(self, data: Dataset) -> None:
        try:
            super()._fit(data)
        finally:
            self._train_history = self._train_times = None
        self._zero_untrained(np.diff(sp.csc_matrix(data.matrix()).indptr) == 0)

    def _zero_untrained(self, untrained: np.ndarray) -> None:
        """Items without training events get zero id rows, as items added after training
        do: their features alone place them (no positive ever moved those rows from their
        random start; extra negatives only pushed them away)."""
        if not untrained.any():
            return
        module = cast(TwoTowerModule, self.module)
        rows = torch.as_tensor(np.flatnonzero(untrained), device=_device(module))
        with torch.no_grad():
            if self.config.item_id_embedding:
                cast(nn.EmbeddingBag, module.item.bags[0]).weight[rows] = 0.0
            if self.config.history:
                cast(nn.EmbeddingBag, module.query.bags[0]).weight[rows] = 0.0

    def _check_state(self) -> None:
        super()._check_state()
        edges, buckets = self.time_edges_, self.config.time_buckets
        if len(edges) > max(buckets - 1, 0) or np.any(np.diff(edges) <= 0):
            raise ArtifactError(f"time_edges_ must be at most time_buckets - 1 = "
                                f"{max(buckets - 1, 0)} increasing times, got {len(edges)}")

    def _bucket(self, stamps: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.time_edges_, np.asarray(stamps, np.int64), side="right")

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        log_q = torch.as_tensor((self.item_log_q_ + np.log(batch_size)).astype(np.float32),
                                device=device)
        extra_log_q = float(np.log(self.config.n_extra_negatives / len(self.item_index_)))
        binary = self._train_history
        assert binary is not None
        counts = np.diff(binary.indptr)
        identity = sp.identity(binary.shape[1], dtype=np.float32, format="csr")
        source = matrix if self._train_times is None else self._train_times
        base = InteractionBatches(source, batch_size, seeds.torch, device)
        rng = seeds.numpy
        n_users = len(self.user_index_)

        def enrich(batch: Batch) -> Batch:
            users = batch["users"].cpu().numpy()
            items = batch["items"].cpu().numpy()
            ids = users.copy()
            if self.config.unknown_user_rate:
                ids[rng.random(len(ids)) < self.config.unknown_user_rate] = n_users
            times = (batch["values"].cpu().numpy() - 1).astype(np.int64) \
                if self._train_times is not None else None
            out: dict[str, Any] = dict(batch)
            distinct, target = np.unique(items, return_inverse=True)
            out["target"] = torch.as_tensor(target.reshape(-1), device=device)
            out["log_q"] = log_q[torch.as_tensor(distinct, device=device)]
            history: Input = None
            if self.config.history and self.config.history_sample:
                history = sampled_history(binary, users, items, self.config.history_sample,
                                          rng, device)
            elif self.config.history:
                history = leave_one_out(binary, counts, identity, users, items, device)
            out["query"] = self._query_bags(history, users, ids, times, device)
            out["item"] = self._item_bags(distinct, device)
            if self.config.extra_negatives != "none":
                neg = rng.integers(0, len(self.item_index_), self.config.n_extra_negatives)
                out["negatives"] = torch.as_tensor(neg, device=device)
                out["negative_item"] = self._item_bags(neg, device)
                out["extra_log_q"] = extra_log_q
            return out

        return FeatureBatches(base, enrich)

    # ------------------------------------------------------------------ bags
    def _query_bags(self, history: Input, users: np.ndarray, ids: np.ndarray,
                    times: np.ndarray | None, device: torch.device,
                    user_rows: sp.csr_matrix | None = None) -> list[Input]:
        cfg = self.config
        n = len(users)
        ones = np.arange(n)
        rows = _features.stored_rows(self, users) if user_rows is None else user_rows
        unit = torch.ones(n, device=device)
        offsets = torch.as_tensor(ones, device=device)
        return [history,
                csr_bag(rows, None, device) if rows.shape[1] else None,
                (torch.as_tensor(ids, device=device), offsets, unit)
                if cfg.user_id_embedding else None,
                (torch.as_tensor(times, device=device), offsets, unit)
                if cfg.time_buckets and times is not None else None]

    def _item_bags(self, items: np.ndarray, device: torch.device) -> list[Bag | None]:
        n = len(items)
        ids = (torch.as_tensor(np.asarray(items, np.int64), device=device),
               torch.arange(n, device=device), torch.ones(n, device=device))
        return [ids if self.config.item_id_embedding else None,
                csr_bag(self.item_feature_matrix_, items, device)
                if self.item_feature_matrix_.shape[1] else None]

    # ------------------------------------------------------------------ contract
    def query_vectors(self, query: Query) -> np.ndarray:
        """q per row from its history, features, id (unknown row for -1) and time."""
        module = cast(TwoTowerModule, self.module)
        module.eval()
        device = _device(module)
        ids = np.where(query.users >= 0, query.users, len(self.user_index_))
        times = self._query_times(query) if self.config.time_buckets else None
        history = csr_bag(mean_rows(query.history), None, device) \
            if self.config.history else None
        bags = self._query_bags(history, query.users, ids, times, device,
                                _features.query_rows(self, query))
        with torch.no_grad():
            return to_numpy(module.query(bags)).astype(np.float32)

    def _query_times(self, query: Query) -> np.ndarray:
        """Time bucket per row: context "time" (scalar or per row), else the row's latest
        event time, else the latest training time."""
        when = query.context.get("time") if query.context else None
        if when is not None:
            stamps = np.broadcast_to(np.asarray(when, dtype=np.int64), (len(query),))
        else:
            stamps = np.full(len(query), self.time_default_, dtype=np.int64)
            if query.times is not None and query.times.nnz:
                latest = query.times.max(axis=1).toarray().ravel()
                stamps = np.where(latest > 0, latest, stamps).astype(np.int64)
        return self._bucket(stamps)

    def item_vectors(self) -> np.ndarray:
        module = cast(TwoTowerModule, self.module)
        module.eval()
        device = _device(module)
        n = len(self.item_index_)
        out = np.empty((n, self.config.embedding_dim), dtype=np.float32)
        with torch.no_grad():
            for start in range(0, n, ITEM_BLOCK):
                items = np.arange(start, min(n, start + ITEM_BLOCK))
                out[items] = to_numpy(module.item(self._item_bags(items, device)))
        return out

    def _score(self, query: Query) -> np.ndarray:
        return (self.query_vectors(query) @ self.item_vectors().T).astype(np.float32)

    def _add_items(self, features: sp.csr_matrix) -> None:
        """Zero rows for the new items in the history and item id tables."""
        module = cast(TwoTowerModule, self.module)
        m = features.shape[0]
        with torch.no_grad():
            if self.config.history:
                grow_rows(module, "query.bags.0.weight", m)
            if self.config.item_id_embedding:
                grow_rows(module, "item.bags.0.weight", m)
        self.item_log_q_ = np.concatenate(
            [self.item_log_q_, np.full(m, self.item_log_q_.min(), np.float32)])
        self.item_feature_matrix_ = sp.csr_matrix(
            sp.vstack([self.item_feature_matrix_, features]), dtype=np.float32)

    def _similar(self, items: np.ndarray) -> np.ndarray:
        vectors = self.item_vectors()
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return (unit[items] @ unit.T).astype(np.float32)



def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
