"""EASE: the embarrassingly shallow autoencoder, a closed-form item-item linear model.

B = argmin |X - X B|^2 + lambda |B|^2 subject to diag(B) = 0, solved in closed form
(Steck 2019): P = (X^T X + lambda I)^-1, B = I - P diag(1 / diag(P)), i.e.
B_ij = -P_ij / P_jj off the diagonal. Scores of a history row x are x B. With
``dropout`` p > 0 the diagonal penalty becomes lambda + p / (1 - p) (X^T X)_jj: the
emphasised denoising variant EDLAE (Steck 2020), which regularises popular items more.

Normalisation (in the spirit of DAN, Park et al. 2025): with ``user_norm`` beta and
``item_norm`` alpha the regression runs on Z = D_U^(-beta/2) X D_I^(-alpha) (D_U, D_I: user
and item interaction counts), so heavy users weigh less in the Gram matrix and popular
items are damped, and scores are s_u = (x_u D_I^(-alpha)) B D_I^(gamma) with
``popularity_exponent`` gamma. All three default to 0 (plain EASE); the scalings are folded
into the stored weights, so scoring costs the same.

The Gram matrix X^T X is accumulated by a parallel numba kernel over the sparse matrix
(O(sum_u h_u^2) work, no dense copy of X); the inverse is a LAPACK Cholesky inversion in
place. Memory O(n_items^2) (one dense float matrix), checked against the available memory
before anything is allocated; time O(sum_u h_u^2 + n_items^3).

References
----------
Steck (2019), "Embarrassingly shallow autoencoders for sparse data", WWW.
Steck (2020), "Autoencoders that don't overfit towards the identity", NeurIPS.
Park, Yoon, Kim, Lee (2025), "Why is normalization necessary for linear recommenders?",
SIGIR.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import scipy.linalg.lapack as lapack
import scipy.sparse as sp
from numba import prange

from recoforge.data.dataset import Dataset
from recoforge.errors import DataError, ResourceError
from recoforge.models.base import Recommender
from recoforge.models.params import ModelConfig, param
from recoforge.models.query import Query
from recoforge.models.registry import register
from recoforge.resources import format_bytes, guard_fit, meminfo_available
from recoforge.threads import numba_threads

MEMINFO = Path("/proc/meminfo")
#: dense n_items x n_items matrices alive at the peak of a fit (Gram/inverse + one spare)
PEAK_MATRICES = 2


@numba.njit(cache=True, parallel=True)
def _gram_upper(by_item_ptr, by_item_users, by_item_values, by_user_ptr, by_user_items,
                by_user_values, gram):  # pragma: no cover - compiled
    """Upper triangle of X^T X: row i sums x_ui x_uj over the users u of item i, j >= i."""
    n_items = gram.shape[0]
    for i in prange(n_items):
        row = gram[i]
        for a in range(by_item_ptr[i], by_item_ptr[i + 1]):
            u = by_item_users[a]
            x_ui = by_item_values[a]
            for b in range(by_user_ptr[u], by_user_ptr[u + 1]):
                j = by_user_items[b]
                if j >= i:
                    row[j] += x_ui * by_user_values[b]


@numba.njit(cache=True, parallel=True)
def _weights_from_inverse(upper):  # pragma: no cover - compiled
    """In place: the upper-triangular inverse P becomes B = -P_ij / P_jj, diag 0."""
    n = upper.shape[0]
    diag = np.empty(n, upper.dtype)
    for i in range(n):
        diag[i] = upper[i, i]
    for i in prange(n):
        for j in range(i):
            upper[i, j] = upper[j, i]
    for i in prange(n):
        row = upper[i]
        for j in range(n):
            row[j] = -row[j] / diag[j]
        row[i] = 0.0


@numba.njit(cache=True, parallel=True)
def _sparse_dense(indptr, indices, values, dense, out):  # pragma: no cover - compiled
    """out = S @ dense for a CSR S, parallel over rows (scipy's product is serial)."""
    for r in prange(out.shape[0]):
        target = out[r]
        for a in range(indptr[r], indptr[r + 1]):
            source = dense[indices[a]]
            v = values[a]
            for j in range(out.shape[1]):
                target[j] += v * source[j]


def available_memory_bytes() -> int | None:
    """MemAvailable from ``MEMINFO`` (/proc/meminfo), or None where it cannot be read."""
    return meminfo_available(MEMINFO)


@register
class EASE(Recommender):
    """Embarrassingly shallow autoencoder (Steck 2019).

    Parameters
    ----------
    regularization : float
        lambda on the Gram diagonal (hundreds for MovieLens-sized data).
    dropout : float
        EDLAE's dropout probability p in [0, 1): adds p / (1 - p) diag(X^T X) to lambda
        (0 = plain EASE).
    binary : bool
        X = [R > 0] (implicit, the paper's setting) or the interaction values themselves.
    user_norm, item_norm, popularity_exponent : float
        beta, alpha and gamma of the normalised model (module docs); 0 = plain EASE. With
        user_norm > 0 the Gram matrix shrinks, so lambda shrinks too (single digits on
        MovieLens 1M with beta 0.5, alpha 0.25).
    precision : {"float32", "float64"}
        Floating type of the dense inverse (float32 halves memory and time).
    max_memory_gb : float, optional
        Memory the dense matrices may take; default the system's MemAvailable.
    n_threads : int
        Threads of the Gram and scoring kernels (0: the one setting, recoforge.threads).
    """

    name = "ease"
    #: learned state and its axes, checked on load (see recoforge.artifacts.state)
    state_spec = {"weights_": "items x items"}

    @dataclass(frozen=True)
    class Config(ModelConfig):
        regularization: float = param(500.0, gt=0.0, le=1e12,
                                      doc="lambda added to diag(X^T X)")
        dropout: float = param(0.0, ge=0.0, lt=1.0,
                               doc="EDLAE dropout p: adds p/(1-p) diag(X^T X) to lambda")
        binary: bool = param(True, doc="use [r > 0] instead of the interaction values")
        user_norm: float = param(0.0, ge=0.0, le=2.0,
                                 doc="beta: user rows weigh n_u^(-beta) in X^T X")
        item_norm: float = param(0.0, ge=0.0, le=1.0,
                                 doc="alpha: item columns scaled by popularity^(-alpha)")
        popularity_exponent: float = param(0.0, ge=-1.0, le=1.0,
                                           doc="gamma: scores multiplied by popularity^gamma")
        precision: str = param("float32", choices=("float32", "float64"),
                               doc="floating type of the dense item-item matrix")
        max_memory_gb: float | None = param(None, gt=0.0, le=1e6,
                                            doc="memory budget (default: MemAvailable)")
        n_threads: int = param(0, ge=0, le=1024,
                               doc="threads of the numba kernels (0: recoforge.threads)")

    @guard_fit
    def _fit(self, data: Dataset) -> None:
        cfg = self.config
        n_items = self.train_matrix_.shape[1]
        dtype = np.dtype(cfg.precision)
        self._check_memory(n_items, dtype)
        by_user = self._normalised_input().astype(dtype)
        by_item = by_user.T.tocsr()
        gram = np.zeros((n_items, n_items), dtype)
        with numba_threads(cfg.n_threads):
            _gram_upper(by_item.indptr, by_item.indices, by_item.data, by_user.indptr,
                        by_user.indices, by_user.data, gram)
        diagonal = np.diag_indices(n_items)
        gram[diagonal] *= 1.0 + cfg.dropout / (1.0 - cfg.dropout)
        gram[diagonal] += cfg.regularization
        inverse = self._invert_upper(gram)  # LAPACK, multi-threaded BLAS
        with numba_threads(cfg.n_threads):
            _weights_from_inverse(inverse)
        self.weights_ = inverse.astype(np.float32, copy=False)
        if cfg.item_norm or cfg.popularity_exponent:  # W = D_I^-alpha B D_I^gamma, in place
            popularity = np.maximum(self._popularity(), 1.0).astype(np.float32)
            np.multiply(self.weights_, (popularity ** -cfg.item_norm)[:, None],
                        out=self.weights_)
            np.multiply(self.weights_, (popularity ** cfg.popularity_exponent)[None, :],
                        out=self.weights_)

    def _popularity(self) -> np.ndarray:
        """Training users per item (D_I)."""
        return np.bincount(self.train_matrix_.indices, minlength=self.train_matrix_.shape[1])

    def _normalised_input(self) -> sp.csr_matrix:
        """Z = D_U^(-beta/2) X D_I^(-alpha), the matrix whose Gram the model inverts."""
        cfg = self.config
        z = self._input(self.train_matrix_)
        if cfg.user_norm:
            counts = np.maximum(np.diff(z.indptr), 1).astype(np.float64)
            z.data *= np.repeat(counts ** (-cfg.user_norm / 2.0), np.diff(z.indptr)
                                ).astype(np.float32)
        if cfg.item_norm:
            popularity = np.maximum(self._popularity(), 1).astype(np.float64)
            z.data *= (popularity ** -cfg.item_norm).astype(np.float32)[z.indices]
        return z

    def _check_memory(self, n_items: int, dtype: np.dtype) -> None:
        """Refuse before allocating when the dense matrices exceed the budget: the
        machine's available memory, lowered (never raised) by ``max_memory_gb``."""
        need = float(PEAK_MATRICES) * float(n_items) ** 2 * dtype.itemsize
        if dtype.itemsize != 4:
            need += float(n_items) ** 2 * 4  # the float32 copy of the weights
        available = available_memory_bytes()
        cap = self.config.max_memory_gb
        cap_bytes = None if cap is None else cap * 2**30
        budgets = [b for b in (available, cap_bytes) if b is not None]
        if not budgets or need <= min(budgets):
            return
        budget = min(budgets)
        source = ("is available" if cap_bytes is None or (available is not None
                                                          and available <= cap_bytes)
                  else f"is allowed by max_memory_gb={cap:g}")
        raise ResourceError(
            f"ease needs about {format_bytes(need)} for {n_items} items (dense "
            f"{n_items} x {n_items} {dtype.name} matrices) but {format_bytes(budget)} "
            f"{source}; {self._memory_advice(need, dtype, available, cap_bytes)}")

    @staticmethod
    def _memory_advice(need: float, dtype: np.dtype, available: int | None,
                       cap_bytes: float | None) -> str:
        """Only remedies that would help: never the setting already in use."""
        advice = ["use 'item_knn' (sparse neighbourhoods)",
                  "keep fewer items (e.g. drop rare ones)"]
        if dtype.itemsize > 4:
            advice.append("use precision='float32' (half the memory)")
        if cap_bytes is not None and (available is None or need <= available):
            advice.append("raise max_memory_gb" + ("" if available is None else
                          f" (the machine has {format_bytes(available)} available)"))
        return ", ".join(advice[:-1]) + " or " + advice[-1]

    @staticmethod
    def _invert_upper(gram: np.ndarray) -> np.ndarray:
        """Upper triangle of gram^-1 by Cholesky (potrf + potri), in place.

        The C-ordered upper triangle is the Fortran-ordered lower triangle of ``gram.T``,
        so LAPACK works on the same memory without a copy.
        """
        potrf, potri = lapack.get_lapack_funcs(("potrf", "potri"), (gram,))
        factor, info = potrf(gram.T, lower=True, overwrite_a=True, clean=False)
        if info != 0:
            raise DataError(f"X^T X + lambda I is not positive definite (LAPACK info {info}); "
                            f"increase regularization")
        inverse, info = potri(factor, lower=True, overwrite_c=True)
        if info != 0:
            raise DataError(f"inverting X^T X + lambda I failed (LAPACK info {info})")
        return np.ascontiguousarray(inverse.T)

    def _input(self, histories: sp.csr_matrix) -> sp.csr_matrix:
        """X as the model sees it: binary indicators or the values."""
        histories = sp.csr_matrix(histories, dtype=np.float32, copy=True)
        if self.config.binary:
            histories.data = (histories.data != 0).astype(np.float32)
        return histories

    def _score(self, query: Query) -> np.ndarray:
        histories = query.history
        x = self._input(histories)
        out = np.zeros((x.shape[0], self.weights_.shape[1]), np.float32)
        with numba_threads(self.config.n_threads):
            _sparse_dense(x.indptr, x.indices, x.data, self.weights_, out)
        return out

    def _similar(self, items: np.ndarray) -> np.ndarray:
        """Row j of B: how much a history holding item j raises each other item's score."""
        return np.asarray(self.weights_[items], dtype=np.float32)

    def _explain(self, query: Query, item: int, n: int) -> tuple[str, np.ndarray, np.ndarray]:
        """Contribution of history item j to s_i: x_j B_ji."""
        histories = query.history
        x = self._input(histories[:1])
        items = x.indices.astype(np.int64)
        return "item", items, x.data.astype(np.float64) * self.weights_[items, item]
