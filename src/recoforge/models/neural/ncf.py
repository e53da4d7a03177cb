"""Neural collaborative filtering (He et al. 2017): ``gmf``, ``mlp`` and ``neumf``.

Three pair models on the neural engine, scoring a (user, item) pair by a logit

- GMF: s_ui = h^T (p_u * q_i) + b (a weighted dot product of embeddings p, q);
- MLP: s_ui = h^T a_L(... a_1(W_1 [p'_u; q'_i] + b_1) ...) + b (ReLU layers ``layers``);
- NeuMF: s_ui = h^T [p_u * q_i; a_L(...)] + b (both towers, own embeddings, one output).

Loss: binary cross-entropy of sigma(s) with label 1 on every training interaction and 0
on ``n_negatives`` items per positive drawn by ``negative_sampler`` (the engine's
samplers: uniform, popularity^beta, in-batch, hard), as in the paper. Explicit data are
treated as implicit: every rating, whatever its value, is a positive. ``dropout`` acts
on the MLP inputs and before every later layer; a row's user embedding keeps one dropout
mask for its positive and its negatives (W_1 [p; q] = W_u p + W_i q is computed once per
user and once per item, which is also how scoring stays cheap); masks come from 16-bit
random integers (:class:`Dropout16`, p rounded to a multiple of 1/65536).

NeuMF with ``pretrain=True`` first fits a GMF and an MLP of the same sizes through the same
engine (``pretrain_epochs``; or takes trained ones: ``fit(data, pretrained=(gmf, mlp))``),
copies their embeddings and layers, and sets the output layer to
[alpha h_GMF; (1 - alpha) h_MLP] with bias alpha b_GMF + (1 - alpha) b_MLP, so that the
initial NeuMF logit is exactly alpha s_GMF + (1 - alpha) s_MLP (alpha = ``pretrain_alpha``,
0.5 in the paper, which then continues with SGD: set ``optimizer="sgd"`` for that).

Scoring: pair models (``scores_full_catalogue = False``, except GMF, which is factorised:
q = [h * p_u, b], v = [q_i, 1]): ranking offers the catalogue in column blocks to
``_score_candidates``, which computes the user and item halves once and combines them in
tiles of at most ``PAIR_BLOCK_FLOATS`` hidden activations. New users and known users with
new events are folded in (their embeddings, by Adam steps on the same loss against the
frozen items and layers; see :mod:`.engine`); the last fold-in is cached for the next
block of the same query.

Fit O(epochs * nnz * (1 + n_negatives) * (d + sum of layer products)) time; memory
O((n_users + n_items) d + nnz) plus one batch. Scoring memory O(n c) plus one tile.

References
----------
He, Liao, Zhang, Nie, Hu, Chua (2017), "Neural Collaborative Filtering", WWW.
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
from recoforge.data.interactions import Interactions
from recoforge.errors import ConfigError
from recoforge.models.base import Recommender
from recoforge.models.neural import losses
from recoforge.models.neural._torch import (
    PRECISION_DOC,
    PRECISIONS,
    MixedPrecisionLinear,
    Seeds,
    product,
    resolve_device,
    set_training_precision,
    to_numpy,
)
from recoforge.models.neural.batches import BatchSource, InteractionBatches
from recoforge.models.neural.engine import TorchRecommender, UserEmbeddingConfig, Validation
from recoforge.models.neural.samplers import SAMPLERS, make_sampler
from recoforge.models.params import SEED_MAX, param
from recoforge.models.query import Query
from recoforge.models.registry import register

#: hidden activations computed at once when scoring (64 MiB of float32)
PAIR_BLOCK_FLOATS = 1 << 24
_CACHE_LOCK = threading.Lock()


def parse_layers(text: str, name: str = "layers") -> tuple[int, ...]:
    """Hidden layer sizes from "64,32,16" (each 1..65536), else a ConfigError naming ``name``."""
    try:
        sizes = tuple(int(part) for part in str(text).split(","))
    except ValueError:
        raise ConfigError(f"{name} must be comma-separated layer sizes such as '64,32,16', "
                          f"got {text!r}") from None
    if not sizes or not all(1 <= size <= 65536 for size in sizes) or len(sizes) > 16:
        raise ConfigError(f"{name} must be 1 to 16 sizes in 1..65536, got {text!r}")
    return sizes


@dataclass(frozen=True)
class NCFConfig(UserEmbeddingConfig):
    batch_size: int = param(256, ge=1, le=1 << 24, doc="positives per mini-batch")
    n_negatives: int = param(4, ge=1, le=1000, doc="sampled negatives per positive")
    negative_sampler: str = param("uniform", choices=SAMPLERS,
                                  doc="uniform, popularity, in_batch or hard")
    popularity_beta: float = param(0.75, ge=0.0, le=10.0, doc="exponent of popularity sampling")
    hard_candidates: int = param(10, ge=1, le=10_000, doc="uniform draws per hard negative")
    init_scale: float = param(0.01, gt=0.0, le=10.0, doc="std of the initial embeddings")
    training_precision: str = param("float32", choices=PRECISIONS, doc=PRECISION_DOC)


@dataclass(frozen=True)
class GMFConfig(NCFConfig):
    embedding_dim: int = param(32, ge=1, le=4096, doc="latent dimension of the embeddings")


@dataclass(frozen=True)
class MLPConfig(NCFConfig):
    embedding_dim: int = param(32, ge=1, le=4096, doc="user and item embedding dimension")
    layers: str = param("64,32,16", doc="hidden layer sizes, comma-separated (ReLU)")
    dropout: float = param(0.0, ge=0.0, lt=1.0, doc="dropout before every MLP layer")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_layers(self.layers, "layers")


@dataclass(frozen=True)
class NeuMFConfig(NCFConfig):
    mf_embedding_dim: int = param(32, ge=1, le=4096, doc="GMF embedding dimension")
    mlp_embedding_dim: int = param(32, ge=1, le=4096, doc="MLP embedding dimension")
    mlp_layers: str = param("64,32,16", doc="MLP hidden layer sizes, comma-separated")
    dropout: float = param(0.0, ge=0.0, lt=1.0, doc="dropout before every MLP layer")
    pretrain: bool = param(False, doc="initialise from a GMF and an MLP fitted first")
    pretrain_epochs: int = param(10, ge=1, le=100_000, doc="epochs of each pretrained model")
    pretrain_alpha: float = param(0.5, ge=0.0, le=1.0,
                                  doc="weight of GMF (1 - alpha: MLP) in the initial output")

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_layers(self.mlp_layers, "mlp_layers")


class Dropout16(nn.Module):
    """Inverted dropout with p rounded to a multiple of 1/65536, from 16-bit random
    integers (four per 64-bit draw of torch's generator): about 3x cheaper than
    ``nn.Dropout``'s Bernoulli draws on the CPU, and as reproducible under a seed."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.dropped = round(float(p) * 65536)  # of every 65536 draws
        self.scale = 65536 / (65536 - self.dropped) if self.dropped < 65536 else 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped == 0:
            return x
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64, device=x.device)
        draws = words.random_(-2**63, None).view(torch.int16)[:n].view(x.shape)
        keep = (draws >= self.dropped - 32768).to(x.dtype).mul_(self.scale)
        return x * keep


class NCFModule(nn.Module):
    """GMF tower (``mf_dim`` > 0), MLP tower (``mlp_dim`` > 0) or both, one output layer.

    State-dict names are shared by the three models (``user_gmf``, ``item_gmf``,
    ``user_mlp``, ``item_mlp``, ``mlp_layers.k``, ``predict``), so that NeuMF can be
    initialised from GMF and MLP by name.
    """

    def __init__(self, n_users: int, n_items: int, mf_dim: int, mlp_dim: int,
                 layers: tuple[int, ...], dropout: float, init_scale: float) -> None:
        super().__init__()
        self.mf_dim, self.mlp_dim, self.n_items = mf_dim, mlp_dim, n_items
        tables: list[nn.Embedding] = []
        width = 0
        if mf_dim:
            self.user_gmf, self.item_gmf = nn.Embedding(n_users, mf_dim), nn.Embedding(
                n_items, mf_dim)
            tables += [self.user_gmf, self.item_gmf]
            width += mf_dim
        if mlp_dim:
            self.user_mlp, self.item_mlp = nn.Embedding(n_users, mlp_dim), nn.Embedding(
                n_items, mlp_dim)
            tables += [self.user_mlp, self.item_mlp]
            sizes = (2 * mlp_dim, *layers)
            self.mlp_layers = nn.ModuleList(MixedPrecisionLinear(a, b)
                                            for a, b in zip(sizes, sizes[1:]))
            width += layers[-1]
        self.hidden_width = max(layers) if mlp_dim else 1
        self.low_precision = False  # bfloat16 MLP products while training
        self.dropout = Dropout16(dropout)
        self.predict = nn.Linear(width, 1)
        for table in tables:
            nn.init.normal_(table.weight, std=init_scale)

    # user and item halves: s = combine(user_side(u), item_side(i))
    def user_side(self, users: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """(h_GMF * p_u, W_u p'_u) of (b,) users; None for an absent tower."""
        gmf = mlp = None
        if self.mf_dim:
            gmf = self.user_gmf(users) * self.predict.weight[0, :self.mf_dim]
        if self.mlp_dim:
            first = cast(nn.Linear, self.mlp_layers[0])
            mlp = product(self.dropout(self.user_mlp(users)), first.weight[:, :self.mlp_dim],
                          self.training and self.low_precision)
        return gmf, mlp

    def item_side(self, items: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """(q_i, W_i q'_i + b_1) of items of any shape (last axis added)."""
        gmf = mlp = None
        if self.mf_dim:
            gmf = self.item_gmf(items)
        if self.mlp_dim:
            first = cast(nn.Linear, self.mlp_layers[0])
            mlp = product(self.dropout(self.item_mlp(items)), first.weight[:, self.mlp_dim:],
                          self.training and self.low_precision) + first.bias
        return gmf, mlp

    def combine(self, user: tuple[torch.Tensor | None, ...],
                item: tuple[torch.Tensor | None, ...]) -> torch.Tensor:
        """Logits (b, c) of b users' halves against items' halves, (b, c, .) per row or
        (c, .) shared by every row."""
        out: torch.Tensor = self.predict.bias
        if user[0] is not None and item[0] is not None:
            if item[0].dim() == 2:
                out = out + user[0] @ item[0].T
            elif item[0].shape[1] <= 8:  # training: a positive and a few negatives
                out = out + (user[0].unsqueeze(1) * item[0]).sum(-1)
            else:
                out = out + torch.bmm(item[0], user[0].unsqueeze(-1)).squeeze(-1)
        if user[1] is not None and item[1] is not None:
            hidden = torch.relu(user[1].unsqueeze(1) + item[1])
            for layer in self.mlp_layers[1:]:
                hidden = torch.relu(layer(self.dropout(hidden)))
            out = out + hidden @ self.predict.weight[0, self.mf_dim:]
        return out

    def pair_logits(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """s_ui of (b,) users against items (b,) or (b, c)."""
        flat = items.dim() == 1
        grid = items.unsqueeze(1) if flat else items
        out = self.combine(self.user_side(users), self.item_side(grid))
        return out[:, 0] if flat else out

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean BCE over each positive and its sampled negatives."""
        items = torch.cat([batch["items"].unsqueeze(1), batch["negatives"]], dim=1)
        logits = self.pair_logits(batch["users"], items)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return losses.bce_with_logits(logits, labels)


class _NCFBase(TorchRecommender):
    """What GMF, MLP and NeuMF share: batches, blocked pair scoring, cached fold-in."""

    user_state = "fold_in"
    scores_full_catalogue = False
    _fold_cache: tuple[tuple[bytes, str], Any, nn.Module] | None = None

    def _sizes(self) -> tuple[int, int, tuple[int, ...], float]:  # pragma: no cover
        """(mf_dim, mlp_dim, layers, dropout) of the module."""
        raise NotImplementedError

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        mf_dim, mlp_dim, layers, dropout = self._sizes()
        module = NCFModule(n_users, n_items, mf_dim, mlp_dim, layers, dropout,
                           self.config.init_scale)
        return set_training_precision(module, self.config.training_precision)

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        cfg = self.config
        sampler = make_sampler(cfg.negative_sampler, matrix, seeds.numpy,
                               beta=cfg.popularity_beta, n_candidates=cfg.hard_candidates,
                               score=cast(NCFModule, module).pair_logits, device=device)
        return InteractionBatches(matrix, batch_size, seeds.torch, device, sampler,
                                  cfg.n_negatives)

    # ------------------------------------------------------------------ scoring
    def _module_for(self, query: Query) -> tuple[nn.Module, torch.Tensor]:
        """The engine's module for ``query``; a fold-in is cached for the next block of
        the same histories (ranking calls once per column block)."""
        if query.stored_users is not None:
            return super()._module_for(query)
        history = sp.csr_matrix(query.history)
        digest = hashlib.blake2b(digest_size=16)
        for part in (np.asarray(history.shape), history.indptr, history.indices,
                     history.data):
            digest.update(np.ascontiguousarray(part).tobytes())
        key = (digest.digest(), str(resolve_device(self.config.device)))
        cached = self._fold_cache
        if cached is not None and cached[0] == key and cached[1] is self.module_state_:
            return cached[2], torch.arange(len(query))
        module, users = super()._module_for(query)
        with _CACHE_LOCK:
            self._fold_cache = (key, self.module_state_, module)
        return module, users

    def _score(self, query: Query) -> np.ndarray:
        module, users = self._module_for(query)
        return _pair_scores(cast(NCFModule, module), users, None)

    def _score_candidates(self, query: Query, candidates: np.ndarray) -> np.ndarray:
        module, users = self._module_for(query)
        return _pair_scores(cast(NCFModule, module), users, np.maximum(candidates, 0))

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the items' embeddings (GMF and MLP tables side by side)."""
        module = cast(NCFModule, self.module)
        tables = [t.weight for t in (getattr(module, "item_gmf", None),
                                     getattr(module, "item_mlp", None)) if t is not None]
        vectors = to_numpy(torch.cat(tables, dim=1))
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return (unit[items] @ unit.T).astype(np.float32)


def _pair_scores(module: NCFModule, users: torch.Tensor,
                 candidates: np.ndarray | None) -> np.ndarray:
    """Logits (n, c) of rows ``users`` against ``candidates`` (n, c), or against every
    item when None; tiles of at most PAIR_BLOCK_FLOATS hidden activations."""
    module.eval()
    device = module.predict.weight.device
    n = len(users)
    c = module.n_items if candidates is None else candidates.shape[1]
    out = np.empty((n, c), dtype=np.float32)
    width = module.hidden_width + module.mf_dim
    cols = max(1, min(c, PAIR_BLOCK_FLOATS // width))
    rows = max(1, PAIR_BLOCK_FLOATS // (cols * width))
    with torch.no_grad():
        everything = None
        if candidates is None:
            everything = module.item_side(torch.arange(c, device=device))
        for r0 in range(0, n, rows):
            user = module.user_side(users[r0:r0 + rows].to(device))
            for c0 in range(0, c, cols):
                if everything is not None:
                    item = tuple(None if t is None else t[c0:c0 + cols] for t in everything)
                else:
                    assert candidates is not None
                    block = torch.as_tensor(candidates[r0:r0 + rows, c0:c0 + cols],
                                            dtype=torch.int64, device=device)
                    item = module.item_side(block)
                scores = module.combine(user, item)
                out[r0:r0 + rows, c0:c0 + cols] = scores.float().cpu().numpy()
    return out


@register
class GMF(_NCFBase):
    """Generalised matrix factorisation: s = h . (p_u * q_i) + b, BCE with negatives."""

    name = "gmf"
    Config = GMFConfig
    user_parameters: ClassVar[tuple[str, ...]] = ("user_gmf.weight",)
    factorised = True
    scores_full_catalogue = True  # a weighted dot product: a full block is one matmul

    def _sizes(self) -> tuple[int, int, tuple[int, ...], float]:
        return self.config.embedding_dim, 0, (), 0.0

    def query_vectors(self, query: Query) -> np.ndarray:
        """[h * p_u, b] per row (trained or folded in): q . v = logit."""
        found, users = self._module_for(query)
        module = cast(NCFModule, found)
        with torch.no_grad():
            weighted, _ = module.user_side(users.to(module.predict.weight.device))
            assert weighted is not None
            bias = module.predict.bias.expand(len(users), 1)
            return to_numpy(torch.cat([weighted, bias], dim=1)).astype(np.float32)

    def item_vectors(self) -> np.ndarray:
        """[q_i, 1] per item."""
        table = cast(NCFModule, self.module).item_gmf.weight
        with torch.no_grad():
            ones = torch.ones(table.shape[0], 1, device=table.device)
            return to_numpy(torch.cat([table, ones], dim=1)).astype(np.float32)


@register
class MLP(_NCFBase):
    """Multi-layer perceptron over concatenated user and item embeddings (ReLU towers)."""

    name = "mlp"
    Config = MLPConfig
    user_parameters: ClassVar[tuple[str, ...]] = ("user_mlp.weight",)

    def _sizes(self) -> tuple[int, int, tuple[int, ...], float]:
        cfg = self.config
        return 0, cfg.embedding_dim, parse_layers(cfg.layers), cfg.dropout


@register
class NeuMF(_NCFBase):
    """GMF and MLP towers fused by one output layer; optionally pretrained (see module)."""

    name = "neumf"
    Config = NeuMFConfig
    user_parameters: ClassVar[tuple[str, ...]] = ("user_gmf.weight", "user_mlp.weight")
    _init_state: dict[str, torch.Tensor] | None = None
    _given: tuple[Recommender, Recommender] | None = None

    def _sizes(self) -> tuple[int, int, tuple[int, ...], float]:
        cfg = self.config
        return (cfg.mf_embedding_dim, cfg.mlp_embedding_dim, parse_layers(cfg.mlp_layers),
                cfg.dropout)

    def fit(self, data: Dataset | Interactions, fallback: str | Recommender | None = None,
            progress: Any = None, *, validation: Validation | None = None,
            pretrained: tuple[Recommender, Recommender] | None = None) -> NeuMF:
        """Train on ``data`` (see :meth:`TorchRecommender.fit`).

        Parameters
        ----------
        pretrained : (GMF, MLP), optional
            Trained models on the same data with this model's sizes: initialise from them
            instead of fitting them (implies pretraining, whatever ``pretrain`` says).
        """
        self._given = pretrained
        try:
            super().fit(data, fallback, progress, validation=validation)
        finally:
            self._given = None
        return self

    def _fit(self, data: Dataset) -> None:
        if self._given is not None or self.config.pretrain:
            gmf, mlp = self._given or self._pretrain(data)
            self._init_state = pretrained_state(gmf, mlp, self, self.config.pretrain_alpha)
        try:
            super()._fit(data)
        finally:
            self._init_state = None

    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        module = super()._build_module(n_users, n_items)
        if self._init_state is not None:
            module.load_state_dict(self._init_state)
        return module

    def _pretrain(self, data: Dataset) -> tuple[GMF, MLP]:
        """A GMF and an MLP with this model's sizes and training settings."""
        cfg = self.config
        shared = {name: getattr(cfg, name) for name in NCFConfig.field_names()}
        shared["epochs"] = cfg.pretrain_epochs
        shared["patience"] = 0
        seed = cfg.seed
        gmf = GMF(**{**shared, "embedding_dim": cfg.mf_embedding_dim})
        mlp = MLP(**{**shared, "embedding_dim": cfg.mlp_embedding_dim,
                     "layers": cfg.mlp_layers, "dropout": cfg.dropout,
                     "seed": None if seed is None else (seed + 1) % (SEED_MAX + 1)})
        gmf.fit(data)
        mlp.fit(data)
        return gmf, mlp


def pretrained_state(gmf: Recommender, mlp: Recommender, neumf: NeuMF,
                     alpha: float) -> dict[str, torch.Tensor]:
    """NeuMF's initial state dict from a trained GMF and MLP (He et al. 2017, sec. 3.4.1):
    their embeddings and layers, and the output [alpha h_GMF; (1 - alpha) h_MLP] with bias
    alpha b_GMF + (1 - alpha) b_MLP, so that s_NeuMF = alpha s_GMF + (1 - alpha) s_MLP."""
    if not isinstance(gmf, GMF) or not isinstance(mlp, MLP):
        raise ConfigError("pretrained must be a (gmf, mlp) pair of trained models")
    for model in (gmf, mlp):
        model._check_fitted()
        if model.user_index_ != neumf.user_index_ or model.item_index_ != neumf.item_index_:
            raise ConfigError(f"the pretrained {model.name} was trained on other users or "
                              f"items than this neumf's data")
    mf_dim, mlp_dim, layers, _ = neumf._sizes()
    if gmf._sizes()[0] != mf_dim or mlp._sizes()[1:3] != (mlp_dim, layers):
        raise ConfigError(f"the pretrained models' sizes differ from neumf's "
                          f"(mf_embedding_dim={mf_dim}, mlp_embedding_dim={mlp_dim}, "
                          f"mlp_layers={neumf.config.mlp_layers})")
    first = {k: v.detach().cpu() for k, v in gmf.module.state_dict().items()}
    second = {k: v.detach().cpu() for k, v in mlp.module.state_dict().items()}
    state = {k: v.clone() for k, v in {**first, **second}.items() if k.split(".")[0]
             != "predict"}
    state["predict.weight"] = torch.cat([alpha * first["predict.weight"],
                                         (1 - alpha) * second["predict.weight"]], dim=1)
    state["predict.bias"] = alpha * first["predict.bias"] + (1 - alpha) * second["predict.bias"]
    return state
