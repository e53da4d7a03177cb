"""Id vocabularies: external user/item ids <-> dense integer indices.

The id rule (one place: :func:`parse_id_column`): a column of ids is int64 when every id
is a plain decimal integer that fits in int64 ("0", "7", "-5"; not "007", "+5", "1e3",
"1.0", " 7"), and strings otherwise. Conversion is never lossy: ids that would merge or
change ("007" and "7", "1e3" and "1000", the integer 1 and the string "1", integers in a
float column beyond its exact range, a NUL character) are kept apart or rejected.

Lookups (:meth:`IdIndex.to_index`) read each id with the vocabulary's type: in an integer
vocabulary "7" is 7 and "007" is an unknown id; in a string vocabulary 7 is "7". Integer
lookups use a dense table when the id range is small (O(range) memory, one gather) and a
hash index (``pandas.Index``) otherwise; other lookups convert each distinct query id once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.api.types import infer_dtype

from recoforge.errors import DataError, UnknownIdError

UnknownPolicy = Literal["error", "ignore"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
MAX_ID_LENGTH = 4096
"""Longest accepted string id (ids are stored as fixed-width unicode arrays)."""

_PLAIN_INT = r"0|-?[1-9][0-9]*"
_PLAIN_INT_RE = re.compile(_PLAIN_INT)
_DENSE_SPAN_PER_ID = 8  # dense lookup table when the id range is at most 8 x vocabulary
_DENSE_SPAN_MAX = 1 << 26


def describe_row(source: str | None, row: int, first_line: int | None = None) -> str:
    """'ratings.csv, line 12' for files, 'DataFrame, row 10' or 'row 10' otherwise."""
    if source is not None and first_line is not None:
        return f"{source}, line {first_line + row}"
    return f"{source}, row {row}" if source is not None else f"row {row}"


def _to_numpy(values: Any) -> np.ndarray:
    """A 1-D numpy array of ``values`` without type coercion (mixed values stay objects)."""
    if isinstance(values, (str, bytes, int, float, np.generic)):
        values = [values]
    if isinstance(values, (pd.Series, pd.Index)):
        if isinstance(values.dtype, np.dtype):
            return values.to_numpy()
        return values.to_numpy(dtype=object, na_value=None)  # str, Int64, categorical, ...
    if isinstance(values, np.ndarray):
        return values.reshape(-1) if values.ndim != 1 else values
    items = list(values)
    arr = np.fromiter(items, dtype=object, count=len(items))  # tuples stay scalars
    kind = infer_dtype(arr, skipna=False)
    if kind == "integer":
        try:
            return arr.astype(np.int64)
        except OverflowError:
            return arr
    return arr  # strings stay objects: a unicode array would drop trailing NULs


def _fail(column: str, message: str, row: int | None = None, source: str | None = None,
          first_line: int | None = None) -> DataError:
    where = describe_row(source, row, first_line) if row is not None else source
    return DataError(f"{where + ': ' if where else ''}{column} {message}")


def _check_missing(arr: np.ndarray, column: str, source: str | None,
                   first_line: int | None) -> None:
    if arr.dtype.kind not in "fOU" or not len(arr):
        return
    missing = pd.isna(arr) if arr.dtype.kind != "U" else np.zeros(len(arr), bool)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise _fail(column, f"id is missing ({int(missing.sum())} rows)", row, source,
                    first_line)


def _checked_strings(uniques: np.ndarray, column: str, source: str | None) -> pd.Series:
    """Distinct string ids as a Series, after rejecting NUL, empty and overlong ids."""
    text = pd.Series(uniques, dtype=object)
    lengths = text.str.len().to_numpy()
    for bad, why in ((text.str.contains("\x00", regex=False).to_numpy(dtype=bool),
                      "contains a NUL character"),
                     (lengths == 0, "is empty"),
                     (lengths > MAX_ID_LENGTH, f"is longer than {MAX_ID_LENGTH} characters")):
        if bad.any():
            value = text[int(np.flatnonzero(bad)[0])]
            raise _fail(column, f"id {value[:60]!r} {why}", source=source)
    return text


def _strings_as_ints(text: pd.Series) -> np.ndarray | None:
    """int64 values when every string is a plain decimal integer within int64, else None."""
    if not text.str.fullmatch(_PLAIN_INT).all():
        return None
    try:
        return text.to_numpy(dtype=str).astype(np.int64)
    except OverflowError:
        return None


def _from_strings(arr: np.ndarray, column: str, source: str | None) -> np.ndarray:
    codes, uniques = pd.factorize(arr)
    return _typed_from_distinct(codes, uniques, column, source)


def _typed_from_distinct(codes: np.ndarray, uniques: Any, column: str,
                         source: str | None) -> np.ndarray:
    """String ids given as (codes, distinct values), typed by the id rule."""
    text = _checked_strings(np.asarray(uniques, dtype=object), column, source)
    ints = _strings_as_ints(text)
    distinct = ints if ints is not None else text.to_numpy(dtype=str)
    return distinct[codes]


def _from_string_series(values: pd.Series, column: str, source: str | None,
                        first_line: int | None) -> np.ndarray:
    """Like :func:`_from_strings` for a pandas string column (hashed without copying)."""
    missing = values.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise _fail(column, f"id is missing ({int(missing.sum())} rows)", row, source,
                    first_line)
    codes, uniques = pd.factorize(values)
    return _typed_from_distinct(codes, uniques, column, source)


def _from_integers(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint64 and len(arr) and arr.max() > INT64_MAX:
        return arr.astype(str)  # exact decimals: ids beyond int64 are strings
    return arr.astype(np.int64, copy=False)


def _from_floats(arr: np.ndarray, column: str, source: str | None,
                 first_line: int | None, rows: np.ndarray | None = None) -> np.ndarray:
    """Integral floats as int64; ``rows`` maps positions to rows for error messages."""
    exact_limit = 2.0 ** (np.finfo(arr.dtype).nmant + 1)
    with np.errstate(invalid="ignore"):
        checks = ((~np.isfinite(arr), "is not a finite number"),
                  (np.mod(arr, 1) != 0, "is not an integer (non-integral float id)"),
                  (np.abs(arr) >= exact_limit,
                   f"is at or beyond {exact_limit:.0f}, where a {arr.dtype} column cannot "
                   f"tell neighbouring integers apart; store ids as integers or strings"))
    for bad, why in checks:
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            row = pos if rows is None else int(rows[pos])
            raise _fail(column, f"id {arr[pos].item()!r} {why}", row, source, first_line)
    return arr.astype(np.int64)


def _from_objects(arr: np.ndarray, column: str, source: str | None,
                  first_line: int | None) -> np.ndarray:
    kind = infer_dtype(arr, skipna=False)
    if kind == "empty":
        return np.array([], dtype=np.int64)
    if kind == "string":
        return _from_strings(arr, column, source)
    if kind == "integer":
        try:
            return arr.astype(np.int64)
        except OverflowError:  # beyond int64: every id of the column is a string
            return np.array([str(int(v)) for v in arr])
    if kind in ("floating", "mixed-integer-float"):
        is_float = np.fromiter((isinstance(v, (float, np.floating)) for v in arr), bool,
                               count=len(arr))
        rows = np.flatnonzero(is_float)
        values = arr.copy()
        values[rows] = _from_floats(arr[rows].astype(np.float64), column, source,
                                    first_line, rows).astype(object)
        return _from_objects(values, column, source, first_line)
    if kind == "mixed-integer" and all(isinstance(v, (str, int, np.integer)) and
                                       not isinstance(v, (bool, np.bool_)) for v in arr):
        first_int = next(v for v in arr if not isinstance(v, str))
        first_str = next(v for v in arr if isinstance(v, str))
        raise _fail(column, f"ids mix integers and strings (e.g. {first_int!r} and "
                            f"{first_str!r}), which could be confused; make them all strings "
                            f"or all integers", source=source)
    for row, value in enumerate(arr):
        if not isinstance(value, (str, int, np.integer)) or isinstance(value, (bool, np.bool_)):
            raise _fail(column, f"ids must be integers or strings, not "
                                f"{type(value).__name__} ({str(value)[:40]!r})", row, source,
                        first_line)
    raise _fail(column, f"ids must be integers or strings (got {kind})", source=source)


def parse_id_column(values: Any, column: str = "id", *, source: str | None = None,
                    first_line: int | None = None) -> np.ndarray:
    """Ids of one column as int64 (all plain integers) or fixed-width strings; never lossy.

    Parameters
    ----------
    values : array-like
        The column: strings as read from a file, integers, integral floats, or objects.
    column : str
        The column's name, used in error messages.
    source, first_line : str, int, optional
        The file name and the file line of row 0, used in error messages.

    Returns
    -------
    ndarray
        int64 when every id is an integer within int64 (from an integer or float column,
        or strings that are plain decimals: "0", "7", "-5"); otherwise unicode strings,
        unchanged ("007", "1e3", "+5", " 7", and integers beyond int64 as decimals).

    Raises
    ------
    DataError
        Missing, empty, NUL-containing or overlong ids; booleans, bytes, lists or tuples;
        non-integral floats or floats beyond the exact integer range of their dtype;
        a column that mixes integers and strings.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        return _from_string_series(values, column, source, first_line)
    arr = _to_numpy(values)
    _check_missing(arr, column, source, first_line)
    kind = arr.dtype.kind
    if kind in "iu":
        return _from_integers(arr)
    if kind == "f":
        return _from_floats(arr, column, source, first_line)
    if kind == "U":
        return _from_strings(arr, column, source)
    if kind == "O":
        return _from_objects(arr, column, source, first_line)
    if kind == "b":
        raise _fail(column, "ids must be integers or strings, not booleans", source=source)
    if kind == "S":
        raise _fail(column, "ids are bytes; decode them to strings first", source=source)
    raise _fail(column, f"ids must be integers or strings, not {arr.dtype}", source=source)


def _vocabulary_array(ids: Any, name: str) -> np.ndarray:
    """Ids given in index order: strings stay strings (validated), the rest by the rule."""
    arr = _to_numpy(ids)
    if arr.dtype.kind == "U" or (arr.dtype.kind == "O" and len(arr)
                                 and infer_dtype(arr, skipna=False) == "string"):
        return _checked_strings(arr, name, None).to_numpy(dtype=str)
    return parse_id_column(arr, name)


def _lookup_key(value: Any, integer_vocabulary: bool, name: str) -> Any:
    """One query id read with the vocabulary's type (None: not an integer id)."""
    if isinstance(value, (bool, np.bool_)):
        raise DataError(f"{name} ids must be integers or strings, not booleans")
    if isinstance(value, (float, np.floating)):
        value = parse_id_column(np.array([value]), name)[0].item()
    if isinstance(value, str):
        if not integer_vocabulary:
            return value
        plain = _PLAIN_INT_RE.fullmatch(value) and INT64_MIN <= int(value) <= INT64_MAX
        return int(value) if plain else None
    if isinstance(value, (int, np.integer)):
        if not integer_vocabulary:
            return str(value)
        return int(value) if INT64_MIN <= int(value) <= INT64_MAX else None
    raise DataError(f"{name} ids must be integers or strings, not "
                    f"{type(value).__name__} ({str(value)[:40]!r})")


def _lookup_keys(uniques: np.ndarray, integer_vocabulary: bool, name: str) -> np.ndarray:
    """Distinct query ids read with the vocabulary's type, as an object array.

    For an integer vocabulary, ids that are not integers (``"007"``, ``"a"``, integers
    beyond int64) become ``None``: they cannot be in it.
    """
    kind = infer_dtype(uniques, skipna=False)
    if kind == "string" and not integer_vocabulary:
        return uniques
    if kind == "string":
        text = pd.Series(uniques, dtype=object)
        short = (text.str.len() <= 18).to_numpy() & text.str.fullmatch(_PLAIN_INT).to_numpy()
        keys = np.full(len(uniques), None, dtype=object)
        keys[short] = text[short].to_numpy(dtype=str).astype(np.int64).astype(object)
        rest = np.flatnonzero(~short)
        keys[rest] = [_lookup_key(v, True, name) for v in uniques[rest]]
        return keys
    if kind == "integer" and not integer_vocabulary:
        return np.asarray(uniques.astype(str), dtype=object)
    return np.fromiter((_lookup_key(v, integer_vocabulary, name) for v in uniques),
                       dtype=object, count=len(uniques))


class IdIndex:
    """A vocabulary of external ids mapped to ``0 .. n-1``.

    Parameters
    ----------
    ids : array-like
        Distinct external ids (ints or strings), in index order. Strings stay strings
        here; :meth:`from_values` applies the id rule of :func:`parse_id_column`.
    name : str
        What the ids are ("user", "item"): used in error messages.

    Examples
    --------
    >>> index = IdIndex.from_values(["b", "a", "b"], name="item")
    >>> index.ids.tolist(), index.to_index(["b"]).tolist()
    (['a', 'b'], [1])
    """

    def __init__(self, ids: Iterable, name: str = "id") -> None:
        arr = _vocabulary_array(ids, name)
        self.name = name
        self._ids = arr
        self._lookup = pd.Index(arr)
        self._dense: tuple[int, np.ndarray] | None = None
        if not self._lookup.is_unique:
            dup = self._lookup[self._lookup.duplicated()][0]
            raise DataError(f"{name} vocabulary has duplicate id {dup!r}")

    @classmethod
    def from_values(cls, values: Iterable, name: str = "id") -> IdIndex:
        """Build a sorted vocabulary from (possibly repeated) ids, by the id rule."""
        return cls(np.unique(parse_id_column(values, name)), name=name)

    @property
    def ids(self) -> np.ndarray:
        """External ids in index order (read-only view)."""
        view = self._ids.view()
        view.flags.writeable = False
        return view

    @property
    def is_integer(self) -> bool:
        """Whether the ids are integers (else strings)."""
        return self._ids.dtype.kind == "i"

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, external_id: object) -> bool:
        try:
            return bool(self.to_index([external_id], unknown="ignore")[0] >= 0)
        except DataError:
            return False

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, IdIndex) and self._ids.dtype.kind == other._ids.dtype.kind
                and np.array_equal(self._ids, other._ids))

    def __hash__(self) -> int:  # pragma: no cover - vocabularies are not dict keys
        return id(self)

    def __repr__(self) -> str:
        return f"IdIndex(name={self.name!r}, n={len(self)})"

    def parse_external(self, values: Iterable) -> np.ndarray:
        """Ids given as text (a file, a request) read with this vocabulary's id type.

        In an integer vocabulary plain decimals become integers and anything else stays
        a string (so ``"007"`` is the unknown id ``'007'``, never 7); in a string
        vocabulary every id is a string (``7`` -> ``"7"``). Returns int64 when every id is
        an integer of an integer vocabulary, unicode strings when the vocabulary holds
        strings, and an object array of ints and strings otherwise.
        """
        arr = _to_numpy(values)
        _check_missing(arr, self.name, None, None)
        codes, uniques = pd.factorize(arr)
        keys = _lookup_keys(np.asarray(uniques, dtype=object), self.is_integer, self.name)
        if not self.is_integer:
            return keys.astype(str)[codes] if len(arr) else np.array([], dtype=str)
        is_int = np.array([k is not None for k in keys], dtype=bool)
        if is_int.all():
            return keys.astype(np.int64)[codes] if len(arr) else np.array([], np.int64)
        out = np.asarray(uniques, dtype=object)
        out[is_int] = keys[is_int]
        return out[codes]

    def to_index(self, ids: Iterable, unknown: UnknownPolicy = "error") -> np.ndarray:
        """Map external ids to indices.

        Parameters
        ----------
        ids : array-like
            External ids, read with the vocabulary's type (see :meth:`parse_external`).
        unknown : {"error", "ignore"}
            ``"error"`` raises :class:`UnknownIdError` naming the first unknown id;
            ``"ignore"`` returns ``-1`` for unknown ids.
        """
        if unknown not in ("error", "ignore"):
            raise ValueError(f"unknown must be 'error' or 'ignore', not {unknown!r}")
        arr = _to_numpy(ids)
        _check_missing(arr, self.name, None, None)
        if arr.dtype.kind == "b":
            raise DataError(f"{self.name} ids must be integers or strings, not booleans")
        if self.is_integer and arr.dtype.kind in "iu" and arr.dtype != np.uint64:
            idx = self._int_positions(arr.astype(np.int64, copy=False))
        elif not len(arr):
            idx = np.array([], dtype=np.int64)
        else:
            idx = self._positions_of_values(arr)
        if unknown == "error" and (idx < 0).any():
            bad = np.flatnonzero(idx < 0)
            first = arr[bad[0]]
            first = first.item() if isinstance(first, np.generic) else first
            more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
            raise UnknownIdError(f"unknown {self.name} id {first!r}{more}")
        return idx

    def _positions_of_values(self, arr: np.ndarray) -> np.ndarray:
        """Indices of arbitrary ids: each distinct id is converted and looked up once."""
        if arr.dtype.kind == "f":
            arr = parse_id_column(arr, self.name)
        codes, uniques = pd.factorize(arr)
        keys = _lookup_keys(np.asarray(uniques, dtype=object), self.is_integer, self.name)
        if self.is_integer:
            found = np.array([k is not None for k in keys], dtype=bool)
            positions = np.full(len(keys), -1, dtype=np.int64)
            positions[found] = self._int_positions(keys[found].astype(np.int64))
        else:
            positions = self._lookup.get_indexer(keys).astype(np.int64)
        return positions[codes]

    def _int_positions(self, keys: np.ndarray) -> np.ndarray:
        """Indices of int64 ids in an integer vocabulary (-1 where absent).

        A dense table over ``min..max`` when the id range is small (8 bytes per id in the
        range, at most 8 x the vocabulary): one gather, exact for every int64 key. Other
        vocabularies use the hash index (a binary search is ten times slower on random
        keys).
        """
        if not len(self._ids) or not len(keys):
            return np.full(len(keys), -1, dtype=np.int64)
        if self._dense is None:
            self._dense = self._build_dense_table()
        low, table = self._dense
        if not len(table):
            return self._lookup.get_indexer(keys).astype(np.int64, copy=False)
        if keys.min() >= low and keys.max() < low + len(table):
            return table[keys - low]
        out = np.full(len(keys), -1, dtype=np.int64)
        inside = (keys >= low) & (keys < low + len(table))
        out[inside] = table[keys[inside] - low]
        return out

    def _build_dense_table(self) -> tuple[int, np.ndarray]:
        """(lowest id, index by id - lowest) or an empty table when the range is wide."""
        low, high = int(self._ids.min()), int(self._ids.max())
        if high - low + 1 > min(_DENSE_SPAN_PER_ID * len(self._ids) + 1024, _DENSE_SPAN_MAX):
            return low, np.array([], dtype=np.int64)
        table = np.full(high - low + 1, -1, dtype=np.int64)
        table[self._ids - low] = np.arange(len(self._ids))
        return low, table

    def to_ids(self, index: Iterable[int] | np.ndarray) -> np.ndarray:
        """Map indices back to external ids."""
        idx = np.asarray(index, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._ids)):
            raise IndexError(f"{self.name} index out of range 0..{len(self._ids) - 1}")
        return self._ids[idx]

    def extend(self, new_ids: Iterable) -> IdIndex:
        """A vocabulary with ``new_ids`` not yet present appended at the end.

        New ids are read with this vocabulary's type (:meth:`parse_external`); an
        integer vocabulary cannot take string ids.
        """
        if not len(self._ids):
            return IdIndex(pd.unique(parse_id_column(new_ids, self.name)), name=self.name)
        arr = self.parse_external(new_ids)
        if self.is_integer and arr.dtype.kind != "i" and len(arr):
            first = next(v for v in arr if isinstance(v, str))
            raise DataError(f"{self.name} ids are integers but the new ids are strings "
                            f"(e.g. {first!r})")
        raw = _to_numpy(new_ids)
        if not self.is_integer and raw.dtype.kind != "U" and len(raw):
            first_int = next((v for v in raw if not isinstance(v, str)), None)
            if first_int is not None:
                raise DataError(f"{self.name} ids are strings but the new ids are integers "
                                f"(e.g. {first_int!r})")
        fresh = pd.unique(arr[self.to_index(arr, unknown="ignore") < 0])
        # concatenate promotes unicode widths ("<U5" + "<U8" -> "<U8"): never truncate ids
        return IdIndex(np.concatenate([self._ids, np.asarray(fresh)]), name=self.name)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """State for saving (no pickle: int64 or fixed-width unicode)."""
        return {"ids": self._ids}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], name: str) -> IdIndex:
        return cls(arrays["ids"], name=name)
