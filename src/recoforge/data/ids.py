"""Id vocabularies: external user/item ids <-> dense integer indices.

External ids are either all integers or all strings. Lookups are vectorised through a
hash index (``pandas.Index``), O(n) memory in the vocabulary size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import numpy as np
import pandas as pd

from recoforge.errors import DataError, UnknownIdError

UnknownPolicy = Literal["error", "ignore"]


def _as_id_array(ids: Iterable | np.ndarray | pd.Series, what: str) -> np.ndarray:
    """Normalise external ids to an int64 or unicode numpy array."""
    if isinstance(ids, (str, bytes, int, np.integer)):
        ids = [ids]
    if isinstance(ids, (pd.Series, pd.Index)):
        arr = ids.to_numpy()
    elif isinstance(ids, np.ndarray):
        arr = ids
    else:
        arr = np.asarray(list(ids))
    if arr.ndim != 1:
        arr = arr.reshape(-1)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "b":
        raise DataError(f"{what} ids must be integers or strings, not booleans")
    if arr.dtype.kind == "f":
        if len(arr) and (np.isnan(arr).any() or not np.all(np.mod(arr, 1) == 0)):
            raise DataError(f"{what} ids must be integers or strings; got non-integral floats")
        return arr.astype(np.int64)
    if arr.dtype.kind == "U":
        return arr
    if arr.dtype.kind == "O":
        if len(arr) == 0:
            return np.array([], dtype=np.int64)
        if any(v is None or (isinstance(v, float) and np.isnan(v)) for v in arr):
            raise DataError(f"{what} ids contain missing values")
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in arr):
            return arr.astype(np.int64)
        return arr.astype(str)
    raise DataError(f"{what} ids must be integers or strings, not {arr.dtype}")


class IdIndex:
    """A vocabulary of external ids mapped to ``0 .. n-1``.

    Parameters
    ----------
    ids : array-like
        Distinct external ids (ints or strings), in index order.
    name : str
        What the ids are ("user", "item"): used in error messages.

    Examples
    --------
    >>> index = IdIndex.from_values(["b", "a", "b"], name="item")
    >>> index.ids.tolist(), index.to_index(["b"]).tolist()
    (['a', 'b'], [1])
    """

    def __init__(self, ids: Iterable, name: str = "id") -> None:
        arr = _as_id_array(ids, name)
        self.name = name
        self._ids = arr
        self._lookup = pd.Index(arr)
        if not self._lookup.is_unique:
            dup = self._lookup[self._lookup.duplicated()][0]
            raise DataError(f"{name} vocabulary has duplicate id {dup!r}")

    @classmethod
    def from_values(cls, values: Iterable, name: str = "id") -> IdIndex:
        """Build a sorted vocabulary from (possibly repeated) ids."""
        arr = _as_id_array(values, name)
        return cls(np.unique(arr), name=name)

    @property
    def ids(self) -> np.ndarray:
        """External ids in index order (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        return external_id in self._lookup

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, IdIndex) and self._ids.dtype.kind == other._ids.dtype.kind
                and np.array_equal(self._ids, other._ids))

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return id(self)

    def __repr__(self) -> str:
        return f"IdIndex(name={self.name!r}, n={len(self)})"

    def to_index(self, ids: Iterable, unknown: UnknownPolicy = "error") -> np.ndarray:
        """Map external ids to indices.

        Parameters
        ----------
        ids : array-like
            External ids.
        unknown : {"error", "ignore"}
            ``"error"`` raises :class:`UnknownIdError` naming the first unknown id;
            ``"ignore"`` returns ``-1`` for unknown ids.
        """
        arr = _as_id_array(ids, self.name)
        if len(arr) and len(self._ids) and arr.dtype.kind != self._ids.dtype.kind:
            # ints looked up in a string vocabulary (or the reverse): compare as strings
            arr = arr.astype(str) if self._ids.dtype.kind == "U" else arr
        idx = self._lookup.get_indexer(arr).astype(np.int64)
        if unknown == "error" and (idx < 0).any():
            first = arr[np.flatnonzero(idx < 0)[0]].item()
            n_bad = int((idx < 0).sum())
            more = f" (and {n_bad - 1} more)" if n_bad > 1 else ""
            raise UnknownIdError(f"unknown {self.name} id {first!r}{more}")
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', not {unknown!r}")
        return idx

    def to_ids(self, index: Iterable[int] | np.ndarray) -> np.ndarray:
        """Map indices back to external ids."""
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._ids)):
            raise IndexError(f"{self.name} index out of range 0..{len(self._ids) - 1}")
        return self._ids[idx]

    def extend(self, new_ids: Iterable) -> IdIndex:
        """A vocabulary with ``new_ids`` not yet present appended at the end."""
        arr = _as_id_array(new_ids, self.name)
        if len(arr) and len(self._ids) and arr.dtype.kind != self._ids.dtype.kind:
            kinds = {"i": "integers", "U": "strings"}
            raise DataError(f"{self.name} ids are {kinds[self._ids.dtype.kind]} but the new ids "
                            f"are {kinds[arr.dtype.kind]} (e.g. {arr[0].item()!r})")
        fresh = pd.unique(arr[self._lookup.get_indexer(arr) < 0])
        # concatenate promotes unicode widths ("<U5" + "<U8" -> "<U8"): never truncate ids
        return IdIndex(np.concatenate([self._ids, np.asarray(fresh)]) if len(self._ids)
                       else np.asarray(fresh), name=self.name)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """State for saving (no pickle: int64 or fixed-width unicode)."""
        return {"ids": self._ids}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str) -> IdIndex:
        return cls(arrays["ids"], name=name)
