"""Query: a batch of recommendation requests, the one thing models score.

Each row of a :class:`Query` is one request: the user's index in the model's vocabulary
(``-1`` for an anonymous or new user), their history as a CSR row of event weights over
the model's items (the stored history of a known user merged with any events given in the
request), and optionally event times, encoded user features and request context.

``stored`` says that every row is a known user whose history is exactly the one the model
was trained on: models with per-user parameters (factor models, covisitation's recent
items) then use those parameters; otherwise they must work from the history row (fold-in).
That single flag is what lets every model serve new users, anonymous sessions and known
users with new events without retraining.

Memory: a Query holds its CSR rows (O(history events)) and never a dense block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp

from recoforge.errors import DataError


@dataclass(frozen=True, eq=False)
class Query:
    """A batch of ``n`` requests over a catalogue of ``n_items`` items.

    Attributes
    ----------
    users : ndarray of int64, shape (n,)
        Vocabulary index of each row's user, ``-1`` when the user is not in it.
    history : csr_matrix, shape (n, n_items), float32
        Each row's events (ratings or implicit weights), sorted indices, no duplicates.
    stored : bool
        True when every row is a known user with exactly their stored training history.
    times : csr_matrix (n, n_items) of float64 epoch seconds, optional
        Time of each history event (same sparsity as ``history``), for time-aware and
        sequential models.
    user_features : ndarray or csr_matrix (n, n_features), optional
        Encoded user features, for feature-aware models.
    context : mapping, optional
        Request context shared by the batch (e.g. ``{"time": epoch_seconds}``).
    """

    users: np.ndarray
    history: sp.csr_matrix
    stored: bool = False
    times: sp.csr_matrix | None = None
    user_features: np.ndarray | sp.csr_matrix | None = None
    context: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        users = np.asarray(self.users, dtype=np.int64).reshape(-1)
        history = self.history
        if not sp.issparse(history) or history.ndim != 2:
            raise DataError("Query.history must be a 2-d sparse matrix")
        if history.format != "csr" or history.dtype != np.float32:
            history = sp.csr_matrix(history, dtype=np.float32)
        if history.shape[0] != len(users):
            raise DataError(f"Query has {len(users)} users but {history.shape[0]} history rows")
        if not history.has_sorted_indices:
            history = history.sorted_indices()
        if self.stored and len(users) and users.min() < 0:
            raise DataError("a stored Query cannot hold unknown users (-1)")
        for name, extra in (("times", self.times), ("user_features", self.user_features)):
            if extra is not None and extra.shape[0] != len(users):
                raise DataError(f"Query.{name} has {extra.shape[0]} rows for {len(users)} users")
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "history", history)

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_items(self) -> int:
        return int(self.history.shape[1])

    @property
    def known(self) -> np.ndarray:
        """Boolean mask of rows whose user is in the vocabulary."""
        return self.users >= 0

    @property
    def stored_users(self) -> np.ndarray | None:
        """The user indices when every row is a known user with the stored history, else
        None: the model must then score from ``history`` (fold-in)."""
        return self.users if self.stored else None

    def take(self, rows: np.ndarray | slice) -> Query:
        """The sub-batch of the given rows (a slice keeps CSR views cheap)."""
        if isinstance(rows, slice):
            pick: Any = rows
        else:
            pick = np.asarray(rows, dtype=np.int64)
        return replace(
            self,
            users=self.users[pick],
            history=self.history[pick],
            times=None if self.times is None else self.times[pick],
            user_features=None if self.user_features is None else self.user_features[pick],
        )

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_history(cls, history: sp.spmatrix, users: np.ndarray | None = None,
                     **extra: Any) -> Query:
        """Rows scored from their history alone (new users, or known users + events)."""
        n = history.shape[0]
        idx = np.full(n, -1, np.int64) if users is None else np.asarray(users, np.int64)
        return cls(users=idx, history=history, stored=False, **extra)

    @classmethod
    def for_known(cls, users: np.ndarray, history: sp.spmatrix, **extra: Any) -> Query:
        """Known users with exactly their stored history rows."""
        return cls(users=np.asarray(users, np.int64), history=history, stored=True, **extra)


def merge_histories(stored: sp.csr_matrix, given: sp.csr_matrix) -> sp.csr_matrix:
    """Stored history rows with new events merged in; a given event replaces the stored
    value for the same item (the newest rating wins). Shapes must match. O(nnz log nnz)."""
    stored = sp.csr_matrix(stored, dtype=np.float32)
    given = sp.csr_matrix(given, dtype=np.float32)
    n, n_items = given.shape
    rows = np.concatenate([np.repeat(np.arange(n), np.diff(given.indptr)),
                           np.repeat(np.arange(n), np.diff(stored.indptr))])
    cols = np.concatenate([given.indices, stored.indices]).astype(np.int64)
    vals = np.concatenate([given.data, stored.data])
    keys = rows.astype(np.int64) * n_items + cols
    _, first = np.unique(keys, return_index=True)  # given entries come first: they win
    merged = sp.csr_matrix((vals[first], (rows[first], cols[first])), shape=(n, n_items),
                           dtype=np.float32)
    merged.sort_indices()
    return merged
