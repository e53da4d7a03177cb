"""LightGCN: embeddings propagated over the normalised user-item graph, BPR loss.

With R the binary users x items interaction matrix, d_u and d_i the user and item degrees
and R^ = D_u^-1/2 R D_i^-1/2 (the user-item block of the symmetrically normalised
bipartite adjacency), the layer-0 embeddings E_U^(0), E_I^(0) (``embedding_dim``) are
propagated ``n_layers`` = K times without weights or non-linearity,

    E_U^(k) = R^ E_I^(k-1),    E_I^(k) = R^T E_U^(k-1),    k = 1..K,

and averaged, alpha_k = 1 / (K + 1): e_u = mean_k e_u^(k), e_i = mean_k e_i^(k). The score
is s_ui = e_u . e_i. Training: mini-batch Adam on BPR, -ln sigma(s_ui - s_uj) for each
stored (u, i) and ``n_negatives`` sampled items j (:mod:`.samplers`), plus
``regularization`` * (|e_u^(0)|^2 + |e_i^(0)|^2 + |e_j^(0)|^2 / n_negatives) summed over
the batch and divided by its size (L2 on the layer-0 embeddings of the batch). Every batch
propagates the whole graph (a sparse matmul per layer and side); the backward pass
multiplies by the stored transpose instead of transposing a COO tensor each step.

The graph is training data, so it is never saved: it is built once per fit (stored entries
of the training matrix are the edges, whatever their value) and dropped afterwards. What
a trained model keeps (``module_state_``, :class:`LightGCNEmbeddings`) is what scoring
needs: the final user and item embeddings, the item embeddings of layers 0..K-1 and the
items' 1/sqrt(d_i) (for fold-in), and a d x d map (below).

New users, anonymous histories and known users with new events are folded in by one
propagation step from the history row h (stored entries are edges; items without a
training event have no embedding and are left out; d_h = their number):

    e^(k) = sum_{i in h} e_i^(k-1) / sqrt(d_h d_i),   k = 1..K,
    e^(0) = W^T e^(1),    q = (e^(0) + e^(1) + ... + e^(K)) / (K + 1),

with the trained items' layer k-1 embeddings held fixed, i.e. exactly the propagation a
user with this history gets in the trained graph (item degrees left as trained). A known
user's e^(k) for k >= 1 are thus reproduced exactly from their training row; only the free
layer-0 embedding is not a function of the history, so it is predicted by the ridge
regression W of the trained users' e^(0) on their e^(1) (fitted once after training;
``fold_in_ridge``). A known user's trained vector and their folded-in training row differ
by the residual of that regression / (K + 1). Fold-in uses the history alone, so a known
user with new events equals a new user with the merged history. Fold-in time is
O(K * nnz(h) * d) per row: no optimisation, no graph.

Factorised: ``query_vectors`` = e_u (trained or folded in), ``item_vectors`` = e_i, and
the score is their dot product exactly (ANN retrieval).

Memory. Graph: R^ and R^T as CSR, 2 * nnz * (4 + 8) bytes plus the row pointers (ML-1M:
~19 MB; 20M interactions: ~480 MB). One propagation: the K + 1 layers of both sides held for
the backward pass, (K + 1)(n_users + n_items) d floats, plus their gradients and the
averaged embeddings (ML-1M, d=64, K=3: ~10 MB). Parameters and Adam moments: 3 (n_users +
n_items) d floats. Fit time O(epochs * nnz / batch_size * K * nnz * d): every batch runs
the full propagation, as in the paper. Saved state: (n_users + (K + 1) n_items) d + n_items
+ d^2 floats (no graph, no layer-0 user embeddings).

References
----------
He, Deng, Wang, Li, Zhang, Wang (2020), "LightGCN: Simplifying and Powering Graph
Convolution Network for Recommendation", SIGIR.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from recoforge.data.dataset import Dataset
from recoforge.errors import NotSupportedError
from recoforge.models.neural import losses
from recoforge.models.neural._torch import Seeds, resolve_device, to_numpy
from recoforge.models.neural.batches import BatchSource, InteractionBatches
from recoforge.models.neural.engine import SCORE_BLOCK_FLOATS, NeuralConfig, TorchRecommender
from recoforge.models.neural.samplers import make_sampler
from recoforge.models.neural.state import TorchState
from recoforge.models.params import param
from recoforge.models.query import Query
from recoforge.models.registry import register

LIGHTGCN_SAMPLERS = ("uniform", "popularity", "in_batch")


@dataclass(frozen=True)
class LightGCNConfig(NeuralConfig):
    embedding_dim: int = param(64, ge=1, le=4096, doc="dimension of the embeddings")
    n_layers: int = param(3, ge=1, le=16, doc="propagation layers K (layers 0..K averaged)")
    regularization: float = param(1e-4, ge=0.0, le=1000.0,
                                  doc="L2 on the batch's layer-0 embeddings (per row)")
    n_negatives: int = param(1, ge=1, le=1000, doc="sampled negatives per positive (BPR)")
    negative_sampler: str = param("uniform", choices=LIGHTGCN_SAMPLERS,
                                  doc="uniform, popularity or in_batch")
    popularity_beta: float = param(0.75, ge=0.0, le=10.0,
                                   doc="exponent of popularity sampling")
    init_scale: float = param(0.1, gt=0.0, le=10.0, doc="std of the layer-0 embeddings")
    fold_in_ridge: float = param(1.0, ge=0.0, le=1e6,
                                 doc="ridge of the layer-0 regression used by fold-in")
    epochs: int = param(30, ge=1, le=100_000, doc="passes over the training data")
    batch_size: int = param(2048, ge=1, le=1 << 24, doc="interactions per mini-batch")
    learning_rate: float = param(0.005, gt=0.0, le=10.0, doc="optimiser step size")


# ---------------------------------------------------------------------------- the graph
class _SparseProduct(torch.autograd.Function):
    """y = A x with the gradient A^T g taken from a stored A^T (no transpose per step)."""

    @staticmethod
    def forward(ctx: Any, dense: torch.Tensor, matrix: torch.Tensor,
                transposed: torch.Tensor) -> torch.Tensor:
        ctx.transposed = transposed
        return matrix @ dense

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        return ctx.transposed @ grad, None, None


def _inverse_sqrt(degrees: np.ndarray) -> np.ndarray:
    """1 / sqrt(degree), 0 where the degree is 0."""
    out = np.zeros(len(degrees), np.float64)
    positive = degrees > 0
    out[positive] = 1.0 / np.sqrt(degrees[positive])
    return out


def _torch_csr(matrix: sp.csr_matrix, device: torch.device) -> torch.Tensor:
    matrix = sp.csr_matrix(matrix, dtype=np.float32)
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(torch.as_tensor(matrix.indptr.astype(np.int64)),
                                       torch.as_tensor(matrix.indices.astype(np.int64)),
                                       torch.as_tensor(matrix.data), size=matrix.shape,
                                       device=device, check_invariants=False)


class NormalisedGraph:
    """R^ = D_u^-1/2 R D_i^-1/2 and R^T as torch CSR tensors (built once per fit).

    Parameters
    ----------
    matrix : csr_matrix (n_users, n_items)
        Stored entries are the edges (values ignored).
    device : torch.device
    """

    def __init__(self, matrix: sp.csr_matrix, device: torch.device) -> None:
        matrix = sp.csr_matrix(matrix)
        matrix.sum_duplicates()
        edges = sp.csr_matrix((np.ones(matrix.nnz), matrix.indices, matrix.indptr),
                              shape=matrix.shape)
        self.item_norm = _inverse_sqrt(np.bincount(edges.indices, minlength=edges.shape[1]))
        user_norm = _inverse_sqrt(np.diff(edges.indptr))
        normalised = sp.diags(user_norm) @ edges @ sp.diags(self.item_norm)
        self.user_items = _torch_csr(normalised, device)
        self.item_users = _torch_csr(normalised.T.tocsr(), device)

    def users_from_items(self, items: torch.Tensor) -> torch.Tensor:
        """R^ E_I: (n_users, d)."""
        return _SparseProduct.apply(items, self.user_items, self.item_users)

    def items_from_users(self, users: torch.Tensor) -> torch.Tensor:
        """R^T E_U: (n_items, d)."""
        return _SparseProduct.apply(users, self.item_users, self.user_items)


# ---------------------------------------------------------------------------- modules
class ScoringState(NamedTuple):
    """What scoring and fold-in read: e_u (n_users, d), e_i (n_items, d), item layers
    0..K-1 (K, n_items, d), 1/sqrt(d_i) (n_items,) and the layer-0 map W (d, d)."""

    user_final: torch.Tensor
    item_final: torch.Tensor
    item_layers: torch.Tensor
    item_norm: torch.Tensor
    layer0_map: torch.Tensor


class LightGCNNetwork(nn.Module):
    """Layer-0 embeddings (the trained parameters); ``graph`` is attached for training."""

    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int,
                 regularization: float, init_scale: float) -> None:
        super().__init__()
        self.user_embedding = nn.Embedding(n_users, dim)
        self.item_embedding = nn.Embedding(n_items, dim)
        for table in (self.user_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=init_scale)
        self.n_layers, self.regularization = n_layers, regularization
        self.graph: NormalisedGraph | None = None

    def layers(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The user and item embeddings of layers 0..K."""
        if self.graph is None:
            raise NotSupportedError("LightGCN's training graph is gone after fit; score "
                                    "through the trained embeddings")
        users, items = [self.user_embedding.weight], [self.item_embedding.weight]
        for _ in range(self.n_layers):
            users, items = (users + [self.graph.users_from_items(items[-1])],
                            items + [self.graph.items_from_users(users[-1])])
        return users, items

    def final(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(e_u for every user, e_i for every item): the layer means."""
        users, items = self.layers()
        return _mean(users), _mean(items)

    def calculate_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        users, items, negatives = batch["users"], batch["items"], batch["negatives"]
        user_final, item_final = self.final()
        user_vectors = user_final[users]
        positive = (user_vectors * item_final[items]).sum(-1)
        negative = (user_vectors.unsqueeze(1) * item_final[negatives]).sum(-1)
        penalty = losses.l2(self.user_embedding(users), self.item_embedding(items)) \
            + losses.l2(self.item_embedding(negatives)) / negatives.shape[1]
        return losses.bpr(positive, negative) + self.regularization * penalty

    def scoring_state(self, fold_in_ridge: float) -> ScoringState:
        """The scoring state of the current parameters (no gradient)."""
        assert self.graph is not None
        with torch.no_grad():
            users, items = self.layers()
            layer0_map = _ridge(users[1], users[0], fold_in_ridge)
            norm = torch.as_tensor(self.graph.item_norm, dtype=torch.float32,
                                   device=users[0].device)
            return ScoringState(_mean(users), _mean(items), torch.stack(items[:-1]), norm,
                                layer0_map)


class LightGCNEmbeddings(nn.Module):
    """The saved state of a trained LightGCN (see :class:`ScoringState`); no graph."""

    def __init__(self, n_users: int, n_items: int, dim: int, n_layers: int) -> None:
        super().__init__()
        frozen = {"requires_grad": False}
        self.user_final = nn.Parameter(torch.zeros(n_users, dim), **frozen)
        self.item_final = nn.Parameter(torch.zeros(n_items, dim), **frozen)
        self.item_layers = nn.Parameter(torch.zeros(n_layers, n_items, dim), **frozen)
        self.item_norm = nn.Parameter(torch.zeros(n_items), **frozen)
        self.layer0_map = nn.Parameter(torch.zeros(dim, dim), **frozen)

    @classmethod
    def from_state(cls, state: ScoringState) -> LightGCNEmbeddings:
        n_layers, n_items, dim = state.item_layers.shape
        with torch.device(state.user_final.device):
            module = cls(state.user_final.shape[0], n_items, dim, n_layers)
        with torch.no_grad():
            for name, value in state._asdict().items():
                getattr(module, name).copy_(value)
        return module

    def scoring_state(self, fold_in_ridge: float = 0.0) -> ScoringState:
        return ScoringState(self.user_final, self.item_final, self.item_layers,
                            self.item_norm, self.layer0_map)


def _mean(layers: list[torch.Tensor]) -> torch.Tensor:
    """The layer mean as a chain of additions (cheaper backward than stack + mean)."""
    total = layers[0]
    for layer in layers[1:]:
        total = total + layer
    return total / len(layers)


def _ridge(inputs: torch.Tensor, targets: torch.Tensor, ridge: float) -> torch.Tensor:
    """W minimising |inputs W - targets|^2 + ridge |W|^2 (float64 solve): (d, d)."""
    x, y = inputs.double(), targets.double()
    gram = x.T @ x + ridge * torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
    return torch.linalg.solve(gram, x.T @ y).float()


def fold_in(state: ScoringState, history: sp.csr_matrix) -> torch.Tensor:
    """Query vectors (n, d) of history rows by one propagation step (module docstring)."""
    item_norm = to_numpy(state.item_norm).astype(np.float64)
    history = sp.csr_matrix(history)
    edges = sp.csr_matrix((np.ones(history.nnz), history.indices, history.indptr),
                          shape=history.shape)
    edges = edges @ sp.diags((item_norm > 0).astype(np.float64))  # trained items only
    edges.eliminate_zeros()
    row_norm = _inverse_sqrt(np.diff(edges.indptr))
    normalised = sp.diags(row_norm) @ edges @ sp.diags(item_norm)
    matrix = _torch_csr(normalised, state.item_final.device)
    layers = [matrix @ state.item_layers[k] for k in range(state.item_layers.shape[0])]
    return _mean([layers[0] @ state.layer0_map, *layers])


# ---------------------------------------------------------------------------- the model
@register
class LightGCN(TorchRecommender):
    """Graph-propagated embeddings (He et al. 2020), BPR; new users by one propagation."""

    name = "lightgcn"
    Config = LightGCNConfig
    factorised = True
    user_state = "fold_in"
    _graph: NormalisedGraph | None = None

    # ------------------------------------------------------------------ engine hooks
    def _build_module(self, n_users: int, n_items: int) -> nn.Module:
        cfg = self.config
        if self._graph is not None:  # inside fit: the trainable network
            network = LightGCNNetwork(n_users, n_items, cfg.embedding_dim, cfg.n_layers,
                                      cfg.regularization, cfg.init_scale)
            network.graph = self._graph
            return network
        return LightGCNEmbeddings(n_users, n_items, cfg.embedding_dim, cfg.n_layers)

    def _prepare_fit(self, data: Dataset) -> None:
        self._graph = NormalisedGraph(data.matrix(), resolve_device(self.config.device))

    def _batches(self, module: nn.Module, matrix: sp.csr_matrix, *, seeds: Seeds,
                 device: torch.device, batch_size: int) -> BatchSource:
        cfg = self.config
        sampler = make_sampler(cfg.negative_sampler, matrix, seeds.numpy,
                               beta=cfg.popularity_beta)
        return InteractionBatches(matrix, batch_size, seeds.torch, device, sampler,
                                  cfg.n_negatives)

    def _fit(self, data: Dataset) -> None:
        """Train the network, then keep only the scoring state (the graph is dropped)."""
        try:
            super()._fit(data)
            network = cast(LightGCNNetwork, self.module_state_.module)
            state = network.scoring_state(self.config.fold_in_ridge)
            self.module_state_ = TorchState(module=LightGCNEmbeddings.from_state(state))
        finally:
            self._graph = None

    # ------------------------------------------------------------------ scoring
    def _scoring_state(self) -> ScoringState:
        module = self.module  # the network while validating during fit
        if isinstance(module, LightGCNNetwork):
            return module.scoring_state(self.config.fold_in_ridge)
        return cast(LightGCNEmbeddings, module).scoring_state()

    def _query_tensor(self, query: Query, state: ScoringState) -> torch.Tensor:
        if query.stored_users is not None:
            users = torch.as_tensor(query.stored_users, device=state.user_final.device)
            return state.user_final[users]
        return fold_in(state, query.history)

    def query_vectors(self, query: Query) -> np.ndarray:
        """e_u per row: trained for stored users, folded in otherwise (q . v = score)."""
        self._check_fitted()
        with torch.no_grad():
            return to_numpy(self._query_tensor(query, self._scoring_state()))

    def item_vectors(self) -> np.ndarray:
        """e_i per item."""
        self._check_fitted()
        with torch.no_grad():
            return to_numpy(self._scoring_state().item_final)

    def _score(self, query: Query) -> np.ndarray:
        """Blocks of at most ``SCORE_BLOCK_FLOATS`` scores of q . e_i on the device."""
        state = self._scoring_state()
        n_items = state.item_final.shape[0]
        out = np.empty((len(query), n_items), dtype=np.float32)
        step = max(1, SCORE_BLOCK_FLOATS // max(n_items, 1))
        with torch.no_grad():
            vectors = self._query_tensor(query, state)
            for start in range(0, len(query), step):
                block = vectors[start:start + step] @ state.item_final.T
                out[start:start + step] = block.cpu().numpy()
        return out

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Cosine of the final item embeddings."""
        vectors = self.item_vectors()
        unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        return (unit[items] @ unit.T).astype(np.float32)


__all__ = ["LightGCN", "LightGCNConfig", "LightGCNEmbeddings", "LightGCNNetwork",
           "NormalisedGraph", "fold_in"]
