"""Mini-batches straight from CSR arrays, shuffled under the seed.

A *batch* is a ``dict[str, torch.Tensor]`` on the training device; a *batch source* is
an iterable whose every iteration is one epoch of batches (freshly shuffled by its
``torch.Generator``) and whose ``len()`` is the number of batches per epoch. The
:class:`~.trainer.Trainer` only iterates; what a batch holds is agreed between the
model's ``_batches`` and its module's ``calculate_loss``.

- :class:`InteractionBatches`: the stored (user, item, value) triples of a users x items
  CSR, every one exactly once per epoch: keys ``users``, ``items`` (int64), ``values``
  (float32) and, with a sampler, ``negatives`` (int64, (b, n_negatives)).
- :class:`UserBatches`: users (those with at least one event) with their dense history
  rows, for autoencoders: keys ``users`` (int64) and ``rows`` (float32, (b, n_items)).

No per-row Python: triples are index tensors gathered by a permutation; dense rows come
from one sparse row-slice per batch. Memory: the triples as tensors, O(nnz), plus one
batch (``UserBatches``: batch_size x n_items floats).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import scipy.sparse as sp
import torch

from recoforge.errors import ConfigError
from recoforge.models.neural.samplers import NegativeSampler

Batch = dict[str, torch.Tensor]


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


class BatchSource:
    """Base class: iterate for one epoch of batches; ``len()`` batches per epoch."""

    batch_size: int
    n_rows: int

    def __len__(self) -> int:
        return -(-self.n_rows // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:  # pragma: no cover - abstract
        raise NotImplementedError


class InteractionBatches(BatchSource):
    """Shuffled (user, item, value) triples of a CSR, each once per epoch.

    Parameters
    ----------
    matrix : csr_matrix (n_users, n_items)
        The interactions; stored entries are the triples.
    batch_size : int
        Triples per batch (the last batch of an epoch may be smaller).
    generator : torch.Generator
        Shuffles each epoch (CPU generator: the order is the same on every device).
    device : torch.device
    sampler : NegativeSampler, optional
        Adds ``negatives`` (b, n_negatives) to each batch.
    n_negatives : int
        Negatives per triple when a sampler is given.
    shuffle : bool
        False keeps the CSR order (user-major), for evaluation or tests.
    """

    def __init__(self, matrix: sp.csr_matrix, batch_size: int, generator: torch.Generator,
                 device: torch.device, sampler: NegativeSampler | None = None,
                 n_negatives: int = 1, shuffle: bool = True) -> None:
        matrix = sp.csr_matrix(matrix)
        self.batch_size = _check_batch_size(batch_size)
        if sampler is not None and n_negatives < 1:
            raise ConfigError(f"n_negatives must be >= 1 with a sampler, got {n_negatives}")
        self.users_np = np.repeat(np.arange(matrix.shape[0], dtype=np.int64),
                                  np.diff(matrix.indptr))
        self.items_np = matrix.indices.astype(np.int64)
        self.n_rows = len(self.items_np)
        self.users = torch.as_tensor(self.users_np, device=device)
        self.items = torch.as_tensor(self.items_np, device=device)
        self.values = torch.as_tensor(matrix.data.astype(np.float32), device=device)
        self.generator, self.device = generator, device
        self.sampler, self.n_negatives, self.shuffle = sampler, int(n_negatives), shuffle

    def __iter__(self) -> Iterator[Batch]:
        if self.shuffle:
            order = torch.randperm(self.n_rows, generator=self.generator)
        else:
            order = torch.arange(self.n_rows)
        order_np = order.numpy()
        order = order.to(self.device)
        # one gather per epoch; each batch is then a slice (a view, no copy)
        users, items, values = self.users[order], self.items[order], self.values[order]
        for start in range(0, self.n_rows, self.batch_size):
            stop = start + self.batch_size
            batch = {"users": users[start:stop], "items": items[start:stop],
                     "values": values[start:stop]}
            if self.sampler is not None:
                picked = order_np[start:start + self.batch_size]
                negatives = self.sampler.draw(self.users_np[picked], self.items_np[picked],
                                              self.n_negatives)
                batch["negatives"] = torch.as_tensor(negatives, device=self.device)
            yield batch


class UserBatches(BatchSource):
    """Shuffled users with at least one event, with their dense history rows.

    Parameters
    ----------
    matrix : csr_matrix (n_users, n_items)
    batch_size : int
        Users per batch.
    generator : torch.Generator
    device : torch.device
    shuffle : bool
    """

    def __init__(self, matrix: sp.csr_matrix, batch_size: int, generator: torch.Generator,
                 device: torch.device, shuffle: bool = True) -> None:
        self.matrix = sp.csr_matrix(matrix, dtype=np.float32)
        self.batch_size = _check_batch_size(batch_size)
        self.active = np.flatnonzero(np.diff(self.matrix.indptr) > 0).astype(np.int64)
        self.n_rows = len(self.active)
        self.generator, self.device, self.shuffle = generator, device, shuffle

    def __iter__(self) -> Iterator[Batch]:
        if self.shuffle:
            order = torch.randperm(self.n_rows, generator=self.generator).numpy()
        else:
            order = np.arange(self.n_rows)
        for start in range(0, self.n_rows, self.batch_size):
            users = self.active[order[start:start + self.batch_size]]
            rows = self.matrix[users].toarray()
            yield {"users": torch.as_tensor(users, device=self.device),
                   "rows": torch.as_tensor(rows, device=self.device)}
