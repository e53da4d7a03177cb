"""History sources: where known users' interaction histories come from at scoring time.

A trained model holds learned state, not its training data. When it scores a known user
it asks a history source for that user's row: :class:`InMemoryHistory` (the training
matrix kept after ``fit``, or loaded with a model directory) here; a database-backed
source in the service. A source exposes ``n_users``, ``n_items`` and
``rows(user_indices) -> csr_matrix``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recoforge.errors import DataError


class InMemoryHistory:
    """Histories held as one CSR matrix (users x items, float32 event weights).

    Parameters
    ----------
    matrix : sparse matrix, shape (n_users, n_items)
        Converted to CSR float32 with sorted, summed indices (a copy only when needed).
        Values must be finite.

    Memory is O(nnz): 8 bytes per stored event plus 4 or 8 bytes per user.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> history = InMemoryHistory(sp.csr_matrix([[0, 1.0], [2.0, 0]]))
    >>> history.rows([1]).toarray().tolist()
    [[2.0, 0.0]]
    """

    def __init__(self, matrix: Any) -> None:
        if not sp.issparse(matrix) or matrix.ndim != 2:
            raise DataError(f"a history must be a 2-D sparse matrix, not "
                            f"{type(matrix).__name__}")
        csr = sp.csr_matrix(matrix, dtype=np.float32)
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()
        if not np.isfinite(csr.data).all():
            raise DataError("history values must be finite numbers")
        self.matrix: sp.csr_matrix = csr

    @property
    def n_users(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.matrix.shape[1])

    def rows(self, user_indices: Any) -> sp.csr_matrix:
        """Histories of the given users (CSR, one row each, in the given order).

        Raises
        ------
        DataError
            If an index is outside ``0 .. n_users - 1``.
        """
        idx = np.asarray(user_indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_users):
            bad = int(idx.min() if idx.min() < 0 else idx.max())
            raise DataError(f"user index {bad} outside the history's 0..{self.n_users - 1}")
        return self.matrix[idx]

    def __repr__(self) -> str:
        return (f"InMemoryHistory(n_users={self.n_users}, n_items={self.n_items}, "
                f"nnz={self.matrix.nnz})")
