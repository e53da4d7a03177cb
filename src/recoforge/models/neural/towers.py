"""Shared parts of the feature-aware neural models (two_tower, feature_tower, feature_mf).

- :class:`SparseRows`: a CSR matrix (item or user features, histories) fed to torch as
  ``nn.EmbeddingBag`` inputs, so that a first layer ``x @ W`` costs O(nnz of the batch)
  and never a dense (batch x n_features) block;
- :class:`Tower`: a first layer summing any number of sparse inputs (one
  ``EmbeddingBag(mode="sum")`` each: concatenation followed by a linear layer), then ReLU
  layers, then an optional L2 normalisation of the output; an input is a bag per row, or
  a bag per distinct row gathered to the rows (:data:`Gathered`: a user's history summed
  once however many of the batch's events are theirs);
- :func:`leave_one_out`, :func:`sampled_history`: the history input of a training row
  without the row's own item (all of the history, or a random sample of it);
- :class:`FeatureBatches`: interaction batches (see :mod:`.batches`) with extra tensors
  added per batch by the model (feature bags of the batch's users and items);
- :func:`grow_rows`: new rows appended to an item table (items added after training);
- :func:`feature_rows`: the learned-state copy of a dataset's feature matrix.

The modules hold only parameters (rebuilt from the config and learned sizes on load);
the feature matrices are learned state of the model, never inside the module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recoforge.data.features import FeatureMatrix
from recoforge.errors import DataError
from recoforge.models.neural.batches import Batch, BatchSource, InteractionBatches
from recoforge.models.neural.engine import NeuralConfig
from recoforge.models.params import param

#: (indices, offsets, per-sample weights) of an EmbeddingBag call
Bag = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
#: a bag computed once per distinct row, then read by each output row: (bag, rows)
Gathered = tuple[Bag, torch.Tensor]
#: one tower input: a bag, bags through the same table (summed), or nothing
Input = Bag | Gathered | list[Bag | Gathered] | None


@dataclass(frozen=True)
class TowerConfig(NeuralConfig):
    """Hyperparameters the tower models share."""

    init_scale: float = param(0.05, gt=0.0, le=10.0, doc="std of the initial first layers")


def csr_bag(matrix: sp.csr_matrix, rows: np.ndarray | None, device: torch.device,
            row_scale: np.ndarray | None = None) -> Bag:
    """EmbeddingBag inputs of ``matrix[rows]`` (all rows when ``rows`` is None), each
    row's weights times ``row_scale`` when given. Indices are taken in sorted order, so
    that a bag sums in the same order however its matrix was built (e.g. reloaded)."""
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    indptr = matrix.indptr
    if rows is None:
        starts, lengths = indptr[:-1], np.diff(indptr)
    else:
        rows = np.asarray(rows, dtype=np.int64)
        starts = indptr[rows]
        lengths = indptr[rows + 1] - starts
    total = int(lengths.sum())
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    take = np.repeat(starts - offsets, lengths) + np.arange(total, dtype=np.int64)
    weights = matrix.data[take].astype(np.float32)
    if row_scale is not None:
        weights *= np.repeat(np.asarray(row_scale, dtype=np.float32), lengths)
    return (torch.as_tensor(matrix.indices[take].astype(np.int64), device=device),
            torch.as_tensor(offsets, device=device), torch.as_tensor(weights, device=device))


def feature_rows(features: FeatureMatrix | None, n_rows: int, what: str) -> sp.csr_matrix:
    """A dataset's feature matrix as float32 CSR with finite values ((n, 0) when None)."""
    if features is None:
        return sp.csr_matrix((n_rows, 0), dtype=np.float32)
    matrix = sp.csr_matrix(features.matrix, dtype=np.float32)
    matrix.sort_indices()
    if not np.isfinite(matrix.data).all():
        raise DataError(f"{what} features hold non-finite values")
    return matrix


def mean_rows(history: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to sum 1 (empty rows stay empty): the mean over a history's items."""
    history = sp.csr_matrix(history, dtype=np.float32, copy=True)
    history.eliminate_zeros()
    counts = np.diff(history.indptr)
    history.data[:] = np.repeat(1.0 / np.maximum(counts, 1), counts).astype(np.float32)
    return history


def leave_one_out(sums: sp.csr_matrix, counts: np.ndarray, own: sp.csr_matrix,
                  users: np.ndarray, items: np.ndarray,
                  device: torch.device) -> list[Bag | Gathered]:
    """Bags of the mean of z_j over a user's history without the row's target item i,
    (S_u - z_i) / max(n_u - 1, 1): no event predicts itself from its own presence.

    ``sums`` holds S_u = sum over the history of z_j (users x width: the binary history
    itself for item ids, history @ X for item features), ``counts`` the n_u, ``own`` the
    z_i rows (items x width). Two bags through one table; S_u is summed once per distinct
    user of the batch (:data:`Gathered`), so O(nnz of the distinct users' rows) per batch.
    """
    distinct, inverse = np.unique(np.asarray(users, dtype=np.int64), return_inverse=True)
    shared = csr_bag(sums, distinct, device, 1.0 / np.maximum(counts[distinct] - 1, 1))
    scale = 1.0 / np.maximum(counts[users] - 1, 1)
    return [(shared, torch.as_tensor(inverse.reshape(-1), device=device)),
            csr_bag(own, items, device, -scale)]


def sampled_history(history: sp.csr_matrix, users: np.ndarray, items: np.ndarray,
                    size: int, rng: np.random.Generator, device: torch.device) -> Bag:
    """Bag of the mean item over at most ``size`` of a user's other history items.

    Row r (user u, target item i) reads every item of u's history but i when the history
    holds at most ``size + 1`` items (as :func:`leave_one_out`), else ``size`` items drawn
    uniformly with replacement from it, draws of i dropped: the mean of a random short
    history, as a new or short-history user shows at scoring time, and O(batch * size)
    per batch instead of O(nnz of the batch's histories). ``history``: users x items
    binary CSR.
    """
    users = np.asarray(users, dtype=np.int64)
    starts = history.indptr[users].astype(np.int64)
    n = history.indptr[users + 1].astype(np.int64) - starts
    whole = n <= size + 1
    lengths = np.where(whole, n, size)
    offsets = np.zeros(len(users), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    row = np.repeat(np.arange(len(users)), lengths)
    within = np.arange(int(lengths.sum()), dtype=np.int64) - offsets[row]
    drawn = (rng.random(len(row)) * n[row]).astype(np.int64)
    taken = history.indices[starts[row] + np.where(whole[row], within, drawn)]
    keep = (taken != np.asarray(items)[row]).astype(np.float32)
    kept = np.bincount(row, weights=keep, minlength=len(users))
    weights = keep / np.maximum(kept[row], 1.0).astype(np.float32)
    return (torch.as_tensor(taken.astype(np.int64), device=device),
            torch.as_tensor(offsets, device=device),
            torch.as_tensor(weights.astype(np.float32), device=device))


class Tower(nn.Module):
    """Sparse inputs -> summed first layer -> ReLU layers -> (normalised) output.

    Parameters
    ----------
    inputs : sequence of int
        Width of each sparse input (0: the input is left out).
    layers : sequence of int
        Hidden sizes after the first layer, then the output size (at least one size).
    normalise : bool
        L2-normalise the output rows.
    dropout : float
        Dropout after each hidden ReLU (training only).
    init_scale : float
        Std of the first layer's tables.
    """

    def __init__(self, inputs: Sequence[int], layers: Sequence[int], normalise: bool,
                 dropout: float = 0.0, init_scale: float = 0.05) -> None:
        super().__init__()
        first = layers[0]
        self.bags = nn.ModuleList(nn.EmbeddingBag(max(n, 1), first, mode="sum")
                                  for n in inputs)
        for bag in self.bags:
            nn.init.normal_(cast(nn.EmbeddingBag, bag).weight, std=init_scale)
        self.bias = nn.Parameter(torch.zeros(first))
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(layers, layers[1:]))
        self.normalise, self.dropout = normalise, dropout

    def forward(self, bags: Sequence[Input]) -> torch.Tensor:
        out: torch.Tensor = self.bias
        for given, table in zip(bags, self.bags, strict=True):
            for bag in ([] if given is None else given if isinstance(given, list) else [given]):
                if len(bag) == 2:  # Gathered: one row per distinct input row, then spread
                    inner, rows = cast(Gathered, bag)
                    out = out + table(inner[0], inner[1], per_sample_weights=inner[2])[rows]
                else:
                    flat = cast(Bag, bag)
                    out = out + table(flat[0], flat[1], per_sample_weights=flat[2])
        if out.dim() == 1:
            raise DataError("a tower got no input rows")
        for layer in self.layers:
            out = F.relu(out)
            if self.dropout and self.training:
                out = F.dropout(out, self.dropout)
            out = layer(out)
        return F.normalize(out, dim=-1) if self.normalise else out


class FeatureBatches(BatchSource):
    """Interaction batches with tensors added by ``enrich(batch) -> batch``."""

    def __init__(self, base: InteractionBatches, enrich: Callable[[Batch], Batch]) -> None:
        self.base, self.enrich = base, enrich
        self.batch_size, self.n_rows = base.batch_size, base.n_rows

    def __iter__(self) -> Iterator[Batch]:
        for batch in self.base:
            yield self.enrich(batch)


def grow_rows(module: nn.Module, name: str, n_new: int, fill: str = "zeros") -> None:
    """Append ``n_new`` rows to the parameter ``name`` (an embedding table): zeros or the
    mean row. The owner's ``num_embeddings`` follows."""
    owner_name, _, leaf = name.rpartition(".")
    owner = module.get_submodule(owner_name)
    old = getattr(owner, leaf).detach()
    if fill == "mean" and old.shape[0]:
        rows = old.mean(dim=0, keepdim=True).expand(n_new, *old.shape[1:])
    else:
        rows = old.new_zeros((n_new, *old.shape[1:]))
    setattr(owner, leaf, nn.Parameter(torch.cat([old, rows])))
    if hasattr(owner, "num_embeddings"):
        owner.num_embeddings = old.shape[0] + n_new


class _SoftmaxCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of each row's target column; the backward reuses the softmax
    computed forward (one (n, c) buffer, modified in place: backward runs once)."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        top = logits.max(dim=1, keepdim=True).values
        prob = (logits - top).exp_()
        total = prob.sum(dim=1, keepdim=True)
        own = logits.gather(1, target.unsqueeze(1))
        loss = (total.log() + top - own).mean()
        ctx.save_for_backward(prob.div_(total), target)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        prob, target = ctx.saved_tensors
        prob.scatter_add_(1, target.unsqueeze(1),
                          torch.full((len(target), 1), -1.0, dtype=prob.dtype,
                                     device=prob.device))
        return prob.mul_(grad / len(target)), None


def softmax_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``F.cross_entropy(logits, target)`` with a cheaper backward (see the class)."""
    return _SoftmaxCrossEntropy.apply(logits, target)


def log_counts(counts: np.ndarray) -> np.ndarray:
    """log q_j of an item's chance to be a batch's positive (counts / total; unseen items
    get half a count)."""
    counts = np.asarray(counts, dtype=np.float64)
    return np.log(np.maximum(counts, 0.5) / max(counts.sum(), 1.0)).astype(np.float32)
