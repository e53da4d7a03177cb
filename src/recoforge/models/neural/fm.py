"""Factorisation machines over fields: ``fm`` (Rendle 2010) and ``ffm`` (Juan et al. 2016).

Over the fields of a (user, item) pair (user id, item id, user and item feature fields;
see :mod:`.fields`), with field embeddings e_f = sum_{j in f} x_j v_j:

- FM:  y = b + sum_f w_f + sum_{f < g} <e_f, e_g>, the pairwise term computed as
  1/2 (||sum_f e_f||^2 - sum_f ||e_f||^2) in O(k * n_fields) (Rendle 2010, lemma 3.1);
- FFM: y = b + sum_f w_f + sum_{f < g} <e_{f,g}, e_{g,f}>, where a feature has one
  vector per other field and e_{f,g} is field f's embedding towards field g.

Both are factorised in the catalogue: with U the user-side and I the item-side fields,
FM's logit is S_u . S_i + c_u + c_i (S: a side's summed embeddings, c: its first-order
and within-side pairwise terms), FFM's is [e_{f,g}]_{f in U, g in I} .
[e_{g,f}]_{f in U, g in I} + c_u + c_i. So ``query_vectors`` / ``item_vectors`` reproduce
the logits exactly, a full score block is one matmul, and similar items and vector
indexes work.

:class:`FieldRecommender`, the base of these and of :mod:`.deep_ctr`'s models (fields:
:mod:`.fields`), trains pointwise (``loss``): binary cross-entropy with ``n_negatives``
uniform negatives per observed pair (implicit data), the same without sampling when
``label_threshold`` is set (an observed pair is labelled 1 when its value >= threshold,
else 0: RecBole's click task), squared error on the values minus their mean (``mse``,
ratings), or BPR against one negative (``bpr``); ``predict`` gives the probability of a
click (sigma of the logit) or the rating. New users and known users with new events are
folded in: their user-id rows start at the mean trained row and take ``fold_in_steps``
Adam steps on the same loss against everything else frozen (:mod:`.engine`; the rows'
user features are part of that loss); a user with features and no history keeps the
mean row, so their features carry the score. New items (``add_items``) get a zero
id row: their features alone carry their scores. Known users' feature rows come from
the base class (``user_feature_matrix_``), the items' pooled rows are learned state
(``item_feature_matrix_``).

Fit O(epochs * rows * (nnz of a row's features) * k) (FFM: * n_fields); memory: the
tables plus one batch.

References
----------
Rendle (2010), "Factorization Machines", ICDM.
Juan, Zhuang, Chin, Lin (2016), "Field-aware Factorization Machines for CTR Prediction",
RecSys.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.errors import ArtifactError, ConfigError, DataError
from recoforge.models.neural._torch import Seeds, resolve_device, to_numpy
from recoforge.models.neural.batches import BatchSource
from recoforge.models.neural.engine import TorchRecommender, UserEmbeddingConfig
from recoforge.models.neural.fields import (
    FieldModule,
    PairBatches,
    SideRows,
    bag_tensors,
    field_layout,
    pool_rows,
)
from recoforge.models.neural.state import TorchState
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register

#: hidden activations computed at once when scoring (64 MiB of float32)
PAIR_BLOCK_FLOATS = 1 << 24
LOSSES = ("bce", "mse", "bpr")
_LOCK = threading.RLock()


@dataclass(frozen=True)
class FieldConfig(UserEmbeddingConfig):
    embedding_dim: int = param(10, ge=1, le=4096, doc="embedding size k of every field")
    batch_size: int = param(2048, ge=1, le=1 << 24, doc="observed pairs per mini-batch")
    loss: str = param("bce", choices=LOSSES, doc="bce (clicks / implicit), mse (ratings) "
                                                 "or bpr")
    label_threshold: float | None = param(None, allow_inf=False,
                                          doc="bce: label = value >= threshold on observed "
                                              "pairs, no sampled negatives")
    n_negatives: int = param(1, ge=1, le=1000, doc="uniform negatives per observed pair")
    user_id: bool = param(True, doc="the user id is a field")
    item_id: bool = param(True, doc="the item id is a field")
    init_scale: float = param(0.01, ge=0.0, le=10.0,
                              doc="std of the initial embeddings (0: Glorot per table)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.label_threshold is not None and self.loss != "bce":
            raise ConfigError(f"label_threshold needs loss='bce', got loss={self.loss!r}")


# --------------------------------------------------------------------------- the model
class FieldRecommender(TorchRecommender):
    """What the field models share: field state, batches, fold-in, pair scoring, new
    items from attributes. Subclasses implement ``_make_module(sizes)``."""

    Config = FieldConfig
    user_state = "fold_in"
    scores_full_catalogue = False
    predicts_ratings = True  # probabilities (bce, label_threshold) or ratings (mse)
    user_parameters: ClassVar[tuple[str, ...]] = ("user_embedding.weight",)
    uses_user_features = True  # the base class keeps user_encoder_ / user_feature_matrix_
    scores_new_items = True
    state_spec = {"item_feature_matrix_": "items x item_features",
                  "user_field_starts_": "user_fields: int",
                  "item_field_starts_": "item_fields: int",
                  "user_field_multi_": "user_fields: bool",
                  "item_field_multi_": "item_fields: bool",
                  "field_names_": "fields: text", "target_offset_": "float",
                  "item_encoder_": "any: optional"}
    width_per_field: ClassVar[bool] = False  # FFM: a feature has one vector per field
    user_feature_matrix_: sp.csr_matrix
    item_feature_matrix_: sp.csr_matrix
    _batch_users: sp.csr_matrix | None = None
    _fold_cache: tuple[tuple[bytes, str], Any, nn.Module] | None = None

    def _make_module(self, sizes: dict[str, Any]) -> FieldModule:  # pragma: no cover
        raise NotImplementedError

    # ------------------------------------------------------------------ fitting
    def _prepare_fit(self, data: Dataset) -> None:
        cfg = self.config
        _, u_starts, u_multi, u_names = field_layout(data.user_features, data.n_users, "user")
        items, i_starts, i_multi, i_names = field_layout(data.item_features, data.n_items,
                                                         "item")
        self.item_feature_matrix_ = items  # user rows: user_feature_matrix_ (base class)
        self.user_field_starts_, self.item_field_starts_ = u_starts, i_starts
        self.user_field_multi_, self.item_field_multi_ = u_multi, i_multi
        names = ["user_id"] * cfg.user_id + u_names + ["item_id"] * cfg.item_id + i_names
        for side, has_id, side_names in (("user", cfg.user_id, u_names),
                                         ("item", cfg.item_id, i_names)):
            if not has_id and not side_names:
                raise ConfigError(f"{self.name}: the {side} side has no fields (no "
                                  f"{side} features in the data): set {side}_id=True or "
                                  f"give {side} features")
        self.field_names_ = np.asarray(names, dtype=str)
        self.item_encoder_ = getattr(data.item_features, "encoder", None)
        values = data.matrix().data
        self.target_offset_ = float(values.mean()) if cfg.loss == "mse" else 0.0

    def _sizes(self, n_users: int, n_items: int) -> dict[str, Any]:
        cfg = self.config
        n_fields = len(self.field_names_)
        k = cfg.embedding_dim
        return {"n_users": n_users, "n_items": n_items,
                "n_features": self.user_feature_matrix_.shape[1]
                + self.item_feature_matrix_.shape[1],
                "n_user_fields": len(self.user_field_starts_),
                "n_item_fields": len(self.item_field_starts_),
                "width": k * n_fields if self.width_per_field else k,
                "ids": (bool(cfg.user_id), bool(cfg.item_id)), "loss": cfg.loss,
                "init_scale": cfg.init_scale}

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        return self._make_module(self._sizes(n_users, n_items))

    def _sides(self, user_rows: sp.csr_matrix) -> tuple[SideRows, SideRows]:
        return (SideRows(user_rows, self.user_field_starts_, 0),
                SideRows(self.item_feature_matrix_, self.item_field_starts_,
                         self.user_feature_matrix_.shape[1]))

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        cfg = self.config
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        matrix.sort_indices()
        rows = self._batch_users if self._batch_users is not None else pool_rows(
            self.user_feature_matrix_, self.user_field_starts_, self.user_field_multi_)
        if cfg.loss == "mse":
            labels, negatives = matrix.data - self.target_offset_, 0
        elif cfg.label_threshold is not None:
            labels, negatives = (matrix.data >= cfg.label_threshold).astype(np.float32), 0
        else:
            labels = np.ones(matrix.nnz, np.float32)
            negatives = 1 if cfg.loss == "bpr" else cfg.n_negatives
        return PairBatches(matrix, labels, *self._sides(rows), batch_size, seeds, device,
                           negatives)

    def _check_state(self) -> None:
        for side in ("user", "item"):
            starts = getattr(self, f"{side}_field_starts_")
            width = getattr(self, f"{side}_feature_matrix_").shape[1]
            if len(starts) and (starts[0] != 0 or np.any(np.diff(starts) <= 0)
                                or starts[-1] >= width):
                raise ArtifactError(f"{side}_field_starts_ are not increasing columns of the "
                                    f"{side} features")
            if len(getattr(self, f"{side}_field_multi_")) != len(starts):
                raise ArtifactError(f"{side}_field_multi_ does not match {side}_field_starts_")
        super()._check_state()

    # ------------------------------------------------------------------ queries
    def _query_user_rows(self, query: Query) -> sp.csr_matrix:
        """Pooled user feature rows of a query: given features, else stored rows of known
        users and empty rows for new ones."""
        stored = self.user_feature_matrix_
        if query.user_features is not None:
            rows = sp.csr_matrix(query.user_features, dtype=np.float32)
            if rows.shape[1] != stored.shape[1]:
                raise DataError(f"query user features have {rows.shape[1]} columns; "
                                f"{self.name} was trained on {stored.shape[1]}")
        else:
            rows = sp.csr_matrix(stored[np.maximum(query.users, 0)].multiply(
                (query.users >= 0)[:, None]), dtype=np.float32)
        return pool_rows(rows, self.user_field_starts_, self.user_field_multi_)

    def _module_for(self, query: Query) -> tuple[nn.Module, torch.Tensor]:
        """The trained module, or a folded-in one for the query's rows (cached for the
        next candidate block of the same request)."""
        if query.stored_users is not None or not self.config.user_id:
            module = self.module
            module.eval()
            return module, torch.as_tensor(np.maximum(query.users, 0))
        user_rows = self._query_user_rows(query)
        digest = hashlib.blake2b(digest_size=16)
        for matrix in (sp.csr_matrix(query.history), user_rows):
            for part in (np.asarray(matrix.shape), matrix.indptr, matrix.indices,
                         matrix.data):
                digest.update(np.ascontiguousarray(part).tobytes())
        key = (digest.digest(), str(resolve_device(self.config.device)))
        with _LOCK:
            cached = self._fold_cache
            if cached is not None and cached[0] == key and cached[1] is self.module_state_:
                return cached[2], torch.arange(len(query))
            self._batch_users = user_rows
            try:
                module, users = super()._module_for(query)
            finally:
                self._batch_users = None
            self._fold_cache = (key, self.module_state_, module)
        return module, users

    def _halves(self, query: Query) -> tuple[FieldModule, tuple[torch.Tensor, ...]]:
        found, users = self._module_for(query)
        module = cast(FieldModule, found)
        module.eval()
        device = module.bias.device
        side = SideRows(self._query_user_rows(query), self.user_field_starts_, 0)
        with torch.no_grad():
            bags = bag_tensors([(side, np.arange(len(query)))], len(query), device)
            [fields_] = module.fields(users.to(device), None, bags)
            return module, module.user_half(*fields_)

    def _item_fields(self, module: FieldModule, items: np.ndarray
                     ) -> tuple[torch.Tensor, ...]:
        device = module.bias.device
        side = self._sides(self.user_feature_matrix_)[1]
        bags = bag_tensors([(side, items)], len(items), device)
        [fields_] = module.fields(None, torch.as_tensor(items, device=device), bags)
        return fields_

    def _item_halves(self, module: FieldModule, items: np.ndarray
                     ) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            return module.item_half(*self._item_fields(module, items))

    def _score(self, query: Query) -> np.ndarray:
        """Scores of the whole catalogue (the pair path with every item as candidate)."""
        return self._pair_scores(query, None)

    def _score_candidates(self, query: Query, candidates: np.ndarray) -> np.ndarray:
        return self._pair_scores(query, candidates)

    def _pair_scores(self, query: Query, candidates: np.ndarray | None) -> np.ndarray:
        """Logits (n, c) of each row against its candidates (every item when None): user
        halves once per row, item halves once per distinct item, tiles of at most
        PAIR_BLOCK_FLOATS values."""
        module, user = self._halves(query)
        n = len(query)
        if candidates is None:
            items = np.arange(self.item_feature_matrix_.shape[0])
            c = len(items)
            grid = torch.arange(c, device=module.bias.device).expand(n, c)
        else:
            items, inverse = np.unique(np.maximum(candidates, 0), return_inverse=True)
            c = candidates.shape[1]
            grid = torch.as_tensor(inverse.reshape(n, c), device=module.bias.device)
        item = self._item_halves(module, items)
        width = sum(int(t[0].numel()) for t in item) + 1
        rows = max(1, PAIR_BLOCK_FLOATS // max(1, c * width))
        out = np.empty((n, c), dtype=np.float32)
        with torch.no_grad():
            for r0 in range(0, n, rows):
                pick = grid[r0:r0 + rows]
                block = module.combine(tuple(t[r0:r0 + rows] for t in user),
                                       tuple(t[pick] for t in item))
                out[r0:r0 + rows] = to_numpy(block).astype(np.float32)
        return out

    def _predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Probability of a click (bce, bpr: sigma of the logit) or rating (mse)."""
        order = np.argsort(users, kind="stable")
        uniq, first = np.unique(users[order], return_index=True)
        empty = sp.csr_matrix((len(uniq), len(self.item_index_)), dtype=np.float32)
        query = Query.for_known(uniq, empty)  # stored users: their trained parameters
        counts = np.diff(np.append(first, len(users)))
        width = int(counts.max())
        grid = np.zeros((len(uniq), width), np.int64)
        slot = np.arange(len(users)) - np.repeat(first, counts)
        grid[np.repeat(np.arange(len(uniq)), counts), slot] = items[order]
        scores = self._score_candidates(query, grid)
        out = np.empty(len(users), np.float64)
        out[order] = scores[np.repeat(np.arange(len(uniq)), counts), slot]
        if self.config.loss == "mse":
            return out + self.target_offset_
        return 1.0 / (1.0 + np.exp(-out))

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the items' summed field embeddings."""
        module = cast(FieldModule, self.module)
        module.eval()
        with torch.no_grad():
            emb = self._item_fields(module, np.arange(self.item_feature_matrix_.shape[0]))[0]
        vectors = to_numpy(emb.sum(1))
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return (unit[items] @ unit.T).astype(np.float32)

    # ------------------------------------------------------------------ new items
    def _add_items(self, features: sp.spmatrix) -> None:
        """Append items described by encoded ``features`` (m, n_item_features): their
        feature rows are stored and their id embeddings and biases are zero, so their
        features alone carry their scores. Extends ``module_state_``; the caller extends
        the item vocabulary."""
        self._check_fitted()
        features = sp.csr_matrix(features, dtype=np.float32)
        width = self.item_feature_matrix_.shape[1]
        if features.shape[1] != width:
            raise DataError(f"new items have {features.shape[1]} feature columns; {self.name} "
                            f"was trained on {width}")
        if features.nnz and not np.isfinite(features.data).all():
            raise DataError("new items' features hold NaN or infinite values")
        pooled = pool_rows(features, self.item_field_starts_, self.item_field_multi_)
        n_old, m = self.item_feature_matrix_.shape[0], features.shape[0]
        arrays = self.module_state_.arrays()
        old = arrays["item_embedding.weight"]
        arrays["item_embedding.weight"] = np.concatenate([old, np.zeros((m, old.shape[1]),
                                                                        old.dtype)])
        module = self._build_module(len(self.user_index_), n_old + m)
        TorchState(arrays=arrays).attach(module)
        module.to(resolve_device(self.config.device))
        self.item_feature_matrix_ = sp.csr_matrix(sp.vstack([self.item_feature_matrix_,
                                                             pooled]), dtype=np.float32)
        self.module_state_ = TorchState(module=module)
        self._fold_cache = None


# --------------------------------------------------------------------------- FM, FFM
class FMModule(FieldModule):
    """FM halves: user (S_u, c_u + b), item (S_i, c_i); logit S_u . S_i + c_u + c_i."""

    def _half(self, emb: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        total = emb.sum(1)
        own = 0.5 * (total.pow(2) - emb.pow(2).sum(1)).sum(-1)
        return total, lin + own

    def user_half(self, emb: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        vector, const = self._half(emb, lin)
        return vector, const + self.bias

    def item_half(self, emb: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self._half(emb, lin)

    def combine(self, user: tuple[torch.Tensor, ...], item: tuple[torch.Tensor, ...]
                ) -> torch.Tensor:
        (q, c_u), (v, c_i) = user, item
        if v.shape[1] <= 8:
            dots = (q.unsqueeze(1) * v).sum(-1)
        else:
            dots = torch.bmm(v, q.unsqueeze(-1)).squeeze(-1)
        return dots + c_u.unsqueeze(1) + c_i


class FFMModule(FMModule):
    """FFM halves: the cross-side field pairs as one vector per side (see module)."""

    @property
    def user_side_fields(self) -> int:
        return self.n_user_fields + int(self.ids[0])

    def _grid(self, emb: torch.Tensor) -> torch.Tensor:
        """(n, side fields, all fields, k) view of field-aware embeddings."""
        return emb.view(emb.shape[0], emb.shape[1], self.n_fields, -1)

    @staticmethod
    def _within(grid: torch.Tensor) -> torch.Tensor:
        """sum_{f < g} <e_{f,g}, e_{g,f}> over one side's fields; grid (n, a, a, k)."""
        pairs = (grid * grid.transpose(1, 2)).sum(-1)
        return 0.5 * (pairs.sum((1, 2)) - torch.diagonal(pairs, dim1=1, dim2=2).sum(-1))

    def user_half(self, emb: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        grid, a = self._grid(emb), self.user_side_fields
        cross = grid[:, :, a:, :].reshape(len(emb), -1)
        return cross, lin + self._within(grid[:, :, :a, :]) + self.bias

    def item_half(self, emb: torch.Tensor, lin: torch.Tensor) -> tuple[torch.Tensor, ...]:
        grid, a = self._grid(emb), self.user_side_fields
        cross = grid[:, :, :a, :].transpose(1, 2).reshape(len(emb), -1)
        return cross, lin + self._within(grid[:, :, a:, :])


class _Factorised(FieldRecommender):
    """FM and FFM: logit = query vector . item vector."""

    factorised = True
    scores_full_catalogue = True
    module_class: ClassVar[type[FMModule]] = FMModule

    def _make_module(self, sizes: dict[str, Any]) -> FieldModule:
        return self.module_class(**sizes)

    def query_vectors(self, query: Query) -> np.ndarray:
        """[cross vector, c_u, 1] per row (trained, or folded in)."""
        _, (vector, const) = self._halves(query)
        ones = torch.ones_like(const)
        return to_numpy(torch.cat([vector, const[:, None], ones[:, None]], 1)).astype(
            np.float32)

    def item_vectors(self) -> np.ndarray:
        """[cross vector, 1, c_i] per item."""
        module = cast(FMModule, self.module)
        module.eval()
        vector, const = self._item_halves(module,
                                          np.arange(self.item_feature_matrix_.shape[0]))
        ones = torch.ones_like(const)
        return to_numpy(torch.cat([vector, ones[:, None], const[:, None]], 1)).astype(
            np.float32)

    def _score(self, query: Query) -> np.ndarray:
        return (self.query_vectors(query) @ self.item_vectors().T).astype(np.float32)


@dataclass(frozen=True)
class FMConfig(FieldConfig):
    init_scale: float = param(0.0, ge=0.0, le=10.0,
                              doc="std of the initial embeddings (0: Glorot per table)")


@register
class FM(_Factorised):
    """Factorisation machine over user, item and feature fields (see module).

    Its tables start Glorot-normal by default (std sqrt(2 / (rows + k)) per table): a
    pairwise term that starts near zero grows slowly (see benchmarks/results/ctr.md).
    """

    name = "fm"
    Config = FMConfig
    module_class = FMModule


@register
class FFM(_Factorised):
    """Field-aware factorisation machine: one latent vector per feature and field."""

    name = "ffm"
    module_class = FFMModule
    width_per_field = True
