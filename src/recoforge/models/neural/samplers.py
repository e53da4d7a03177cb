"""Negative samplers: items a user has not interacted with, for the sampled losses.

A sampler is built over one users x items CSR (the training matrix, or the histories of
a fold-in) and answers ``draw(users, items, n) -> (b, n) int64 ndarray``: ``n`` negatives
for each (user, positive item) row of a batch.

- :class:`UniformSampler`: items uniform over the catalogue;
- :class:`PopularitySampler`: P(j) ~ count_j^beta (items never interacted with: never);
  both never return a positive of the user: they reuse the compiled rejection samplers of
  the BPR family (:mod:`recoforge.models.factors._ranking_kernels`: a bitset or a binary
  search of the sorted CSR row, at most 16 draws); a user who has seen nearly the whole
  catalogue gets, after 32 failed draws, a uniform item that may be a positive;
- :class:`InBatchSampler`: the positive items of other rows of the same batch (no
  sampling cost, popularity-weighted by construction; may hit a user's positives);
- :class:`HardSampler`: of ``n_candidates`` draws of a base sampler, the one the current
  model scores highest (a ``score(users, items (b, c)) -> (b, c)`` tensor callable, run
  under ``torch.no_grad``).

:func:`make_sampler` builds one by name. Memory: the bitset of the compiled samplers
(n_users x n_items / 8 bytes when the data are dense enough, see ``positive_bitset``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from recoforge.errors import ConfigError
from recoforge.models.factors._ranking_kernels import (
    POPULARITY,
    UNIFORM,
    negative_sampling_cdf,
    positive_bitset,
    sample_negatives,
)

SAMPLERS = ("uniform", "popularity", "in_batch", "hard")
PairScore = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NegativeSampler:
    """Base class: ``draw(users, items, n)`` gives (len(users), n) int64 item indices."""

    def draw(self, users: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
        raise NotImplementedError


class UniformSampler(NegativeSampler):
    """Uniform items that are not positives of the user (compiled rejection sampling).

    Parameters
    ----------
    matrix : csr_matrix (n_users, n_items)
        The positives.
    rng : numpy.random.Generator
        Seeds each call's compiled stream.
    """

    strategy = UNIFORM

    def __init__(self, matrix: sp.csr_matrix, rng: np.random.Generator,
                 beta: float = 1.0) -> None:
        matrix = sp.csr_matrix(matrix)
        matrix.sort_indices()
        n_users, self.n_items = matrix.shape
        indptr, indices = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32)
        self.positives = (indptr, indices, positive_bitset(indptr, indices, self.n_items))
        counts = np.bincount(indices, minlength=self.n_items)
        name = "popularity" if self.strategy == POPULARITY else "uniform"
        self.cdf = negative_sampling_cdf(counts, name, beta)
        if self.cdf[-1] <= 0:
            raise ConfigError("popularity sampling needs at least one interaction")
        self.rng = rng
        self._no_factors = (np.zeros((max(n_users, 1), 1), np.float32),
                            np.zeros((self.n_items, 1), np.float32))

    def draw(self, users: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
        wanted = np.repeat(np.asarray(users, dtype=np.int32), n)
        out = self._compiled(wanted)
        failed = np.flatnonzero(out < 0)
        if len(failed):  # a second stream, then uniform for users who saw (nearly) all
            out[failed] = self._compiled(wanted[failed])
            failed = np.flatnonzero(out < 0)
            out[failed] = self.rng.integers(0, self.n_items, size=len(failed))
        return out.reshape(len(users), n)

    def _compiled(self, users: np.ndarray) -> np.ndarray:
        seed = int(self.rng.integers(1, 2**62))
        return sample_negatives(users, self.positives, self.strategy, self.cdf, 1,
                                *self._no_factors, seed)


class PopularitySampler(UniformSampler):
    """Items drawn with probability ~ count^beta, never a positive of the user."""

    strategy = POPULARITY


class InBatchSampler(NegativeSampler):
    """The positives of the next ``n`` rows of the batch (cyclically) as negatives."""

    def draw(self, users: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
        items = np.asarray(items, dtype=np.int64)
        if len(items) <= n:
            raise ConfigError(f"in-batch sampling of {n} negatives needs batches of more "
                              f"than {n} rows")
        return np.stack([np.roll(items, -shift) for shift in range(1, n + 1)], axis=1)


class HardSampler(NegativeSampler):
    """The best-scoring of ``n_candidates`` draws of ``base`` (Zhang et al. 2013, DNS).

    ``score`` is set by the model before training (``sampler.score = ...``): a callable
    ``(users (b,), items (b, c)) -> (b, c)`` tensor of current scores.
    """

    def __init__(self, base: NegativeSampler, n_candidates: int,
                 score: PairScore | None = None, device: torch.device | None = None) -> None:
        if n_candidates < 1:
            raise ConfigError(f"n_candidates must be >= 1, got {n_candidates}")
        self.base, self.n_candidates, self.score = base, int(n_candidates), score
        self.device = device or torch.device("cpu")

    def draw(self, users: np.ndarray, items: np.ndarray, n: int) -> np.ndarray:
        if self.score is None:
            raise ConfigError("hard negative sampling needs the model's score function")
        b, c = len(users), self.n_candidates
        candidates = self.base.draw(users, items, n * c).reshape(b, n * c)
        with torch.no_grad():
            user_t = torch.as_tensor(np.asarray(users, np.int64), device=self.device)
            scores = self.score(user_t, torch.as_tensor(candidates, device=self.device))
        best = scores.reshape(b, n, c).argmax(dim=-1).cpu().numpy()
        return np.take_along_axis(candidates.reshape(b, n, c), best[..., None], -1)[..., 0]


def make_sampler(name: str, matrix: sp.csr_matrix, rng: np.random.Generator, *,
                 beta: float = 1.0, n_candidates: int = 10, score: PairScore | None = None,
                 device: torch.device | None = None) -> NegativeSampler:
    """A sampler by name ("uniform", "popularity", "in_batch", "hard") over ``matrix``."""
    if name == "uniform":
        return UniformSampler(matrix, rng)
    if name == "popularity":
        return PopularitySampler(matrix, rng, beta)
    if name == "in_batch":
        return InBatchSampler()
    if name == "hard":
        return HardSampler(UniformSampler(matrix, rng), n_candidates, score, device)
    raise ConfigError(f"negative sampler must be one of {list(SAMPLERS)}, got {name!r}")
