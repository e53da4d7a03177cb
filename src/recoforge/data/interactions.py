"""User-item interactions: explicit ratings or implicit events, with CSR views.

An :class:`Interactions` holds parallel arrays of user index, item index, value and
(optionally) timestamp, plus the two :class:`~recoforge.data.ids.IdIndex` vocabularies.
Each (user, item) pair occurs at most once: duplicates in the input are resolved by an
explicit policy when the object is built. Memory is O(nnz).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.ids import IdIndex, UnknownPolicy, describe_row, parse_id_column
from recoforge.errors import DataError

Kind = Literal["explicit", "implicit"]
DuplicatePolicy = Literal["error", "last", "first", "sum", "mean"]
DUPLICATE_POLICIES = ("error", "last", "first", "sum", "mean")


def _where(source: str, row: int, first_line: int | None) -> str:
    """'ratings.csv, line 12' for files, 'DataFrame, row 10' otherwise."""
    return describe_row(source, row, first_line)


_EPOCH_LIMIT = 2.0**63  # int64 seconds


def _bad_timestamp(col: pd.Series, source: str, first_line: int | None, bad: np.ndarray,
                   why: str) -> DataError:
    row = int(np.flatnonzero(bad)[0])
    raw = col.iloc[row]
    raw = raw.item() if isinstance(raw, np.generic) else raw
    return DataError(f"{_where(source, row, first_line)}: timestamp {raw!r} in column "
                     f"{str(col.name)!r} {why} ({int(bad.sum())} such rows)")


def to_epoch_seconds(col: pd.Series, source: str, first_line: int | None) -> np.ndarray:
    """Timestamps (numbers, datetimes or ISO strings) as int64 seconds since the epoch.

    Numbers are seconds (fractions are truncated); integer columns are converted
    exactly. Raises DataError naming the column and first bad row for missing values,
    non-finite numbers, numbers outside int64 seconds and text that is not a date.
    """
    missing = col.isna().to_numpy()
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise DataError(f"{_where(source, row, first_line)}: missing timestamp in column "
                        f"{str(col.name)!r} ({int(missing.sum())} rows); drop the timestamp "
                        f"column to ignore time")
    if pd.api.types.is_bool_dtype(col):
        raise DataError(f"{source}: timestamp column {str(col.name)!r} holds booleans")
    if pd.api.types.is_integer_dtype(col):
        ints = col.to_numpy()
        if ints.dtype == np.uint64 and len(ints) and ints.max() > np.iinfo(np.int64).max:
            raise _bad_timestamp(col, source, first_line, ints > np.iinfo(np.int64).max,
                                 "does not fit in int64 seconds")
        return ints.astype(np.int64)
    if pd.api.types.is_numeric_dtype(col):
        vals = col.to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            for bad, why in ((~np.isfinite(vals), "is not a finite number"),
                             ((vals >= _EPOCH_LIMIT) | (vals < -_EPOCH_LIMIT),
                              "does not fit in int64 seconds since the epoch")):
                if bad.any():
                    raise _bad_timestamp(col, source, first_line, bad, why)
        return vals.astype(np.int64)
    try:
        parsed = pd.to_datetime(col, utc=True, format="mixed", errors="coerce")
    except (ValueError, TypeError, OverflowError) as exc:
        raise DataError(f"{source}: timestamps in column {str(col.name)!r} are neither "
                        f"numbers nor dates ({exc})") from None
    not_a_time = parsed.isna().to_numpy()
    if not_a_time.any():
        raise _bad_timestamp(col, source, first_line, not_a_time,
                             "is neither a number nor a date in range")
    return (parsed.astype("datetime64[s, UTC]").astype("int64")).to_numpy()


def _values(col: pd.Series | None, n: int, kind: Kind, source: str,
            first_line: int | None) -> np.ndarray:
    if col is None:
        return np.ones(n, dtype=np.float32)
    vals = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raw = col.iloc[row]
        raw = raw.item() if isinstance(raw, np.generic) else raw
        raise DataError(f"{_where(source, row, first_line)}: rating/value {raw!r} "
                        f"is not a finite number ({int(bad.sum())} such rows)")
    if kind == "implicit" and (vals <= 0).any():
        row = int(np.flatnonzero(vals <= 0)[0])
        raise DataError(f"{_where(source, row, first_line)}: implicit values must be > 0, "
                        f"got {vals[row]!r}")
    return vals.astype(np.float32)


def _resolve_duplicates(frame: pd.DataFrame, policy: DuplicatePolicy, source: str,
                        first_line: int | None) -> pd.DataFrame:
    """Collapse repeated (user, item) pairs; frame has columns u, i, v[, t] and row order."""
    dup = frame.duplicated(["u", "i"], keep=False).to_numpy()
    if not dup.any():
        return frame
    if policy == "error":
        row = int(np.flatnonzero(frame.duplicated(["u", "i"]).to_numpy())[0])
        raise DataError(f"{_where(source, row, first_line)}: duplicate (user, item) pair; "
                        f"choose a duplicates policy: {', '.join(DUPLICATE_POLICIES[1:])}")
    order = ["u", "i", "t"] if "t" in frame else ["u", "i"]
    ordered = frame.sort_values(order, kind="stable")
    grouped = ordered.groupby(["u", "i"], sort=True)
    if policy in ("last", "first"):
        return grouped.tail(1) if policy == "last" else grouped.head(1)
    agg: dict[str, str] = {"v": "sum" if policy == "sum" else "mean"}
    if "t" in frame:
        agg["t"] = "max"
    return grouped.agg(agg).reset_index()


def _encode_ids(column: pd.Series, index: IdIndex | None, name: str,
                unknown: UnknownPolicy, source: str,
                first_line: int | None) -> tuple[np.ndarray, IdIndex]:
    """Indices of a column's ids and the vocabulary (built by the id rule when not given)."""
    if index is not None:
        return index.to_index(column, unknown=unknown), index
    ids = parse_id_column(column, str(column.name), source=source, first_line=first_line)
    index = IdIndex.from_values(ids, name=name)
    return index.to_index(ids), index


@dataclass(frozen=True, eq=False)
class Interactions:
    """Interactions between users and items, one entry per (user, item) pair.

    Attributes
    ----------
    users, items : ndarray of int32
        Dense indices into ``user_index`` / ``item_index``.
    values : ndarray of float32
        Ratings (explicit) or event weights (implicit, 1 for plain events).
    timestamps : ndarray of int64 or None
        Seconds since the epoch.
    kind : {"explicit", "implicit"}
    """

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    user_index: IdIndex
    item_index: IdIndex
    timestamps: np.ndarray | None = None
    kind: Kind = "explicit"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.users)
        if not (len(self.items) == len(self.values) == n):
            raise DataError("users, items and values must have the same length")
        if self.timestamps is not None and len(self.timestamps) != n:
            raise DataError("timestamps must have one entry per interaction")
        if n and (self.users.max() >= len(self.user_index) or self.users.min() < 0
                  or self.items.max() >= len(self.item_index) or self.items.min() < 0):
            raise DataError("interaction indices fall outside the id vocabularies")
        if self.kind not in ("explicit", "implicit"):
            raise DataError(f"kind must be 'explicit' or 'implicit', not {self.kind!r}")

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        user_col: str = "user",
        item_col: str = "item",
        rating_col: str | None = None,
        timestamp_col: str | None = None,
        kind: Kind | None = None,
        duplicates: DuplicatePolicy | None = None,
        user_index: IdIndex | None = None,
        item_index: IdIndex | None = None,
        unknown: UnknownPolicy = "error",
        source: str = "DataFrame",
        first_line: int | None = None,
    ) -> Interactions:
        """Build interactions from a table with named columns.

        Parameters
        ----------
        frame : DataFrame
            One row per event or rating.
        user_col, item_col, rating_col, timestamp_col : str
            Column names; ``rating_col=None`` means implicit events of weight 1.
        kind : {"explicit", "implicit"}, optional
            Defaults to explicit when a rating column is given, implicit otherwise.
        duplicates : {"error", "last", "first", "sum", "mean"}, optional
            What to do with repeated (user, item) pairs. "last"/"first" go by timestamp
            when there is one, else by row order. Default: "error" for explicit data,
            "sum" for implicit events (repeat views add up).
        user_index, item_index : IdIndex, optional
            Fixed vocabularies (e.g. a model's); built from the data when omitted.
        unknown : {"error", "ignore"}
            With fixed vocabularies: raise on ids they lack, or drop those rows.
        source, first_line : str, int
            Used in error messages: the file name and the line number of row 0.
        """
        kind = kind or ("explicit" if rating_col else "implicit")
        duplicates = duplicates or ("error" if kind == "explicit" else "sum")
        if duplicates not in DUPLICATE_POLICIES:
            raise DataError(f"duplicates must be one of {DUPLICATE_POLICIES}, not {duplicates!r}")
        wanted = [c for c in (user_col, item_col, rating_col, timestamp_col) if c]
        missing = [c for c in wanted if c not in frame.columns]
        if missing:
            raise DataError(f"{source}: missing column(s) {missing}; "
                            f"available: {list(map(str, frame.columns))}")
        frame = frame.reset_index(drop=True)
        for col in (user_col, item_col):
            nulls = frame[col].isna().to_numpy()
            if nulls.any():
                row = int(np.flatnonzero(nulls)[0])
                raise DataError(f"{_where(source, row, first_line)}: missing {col!r}")
        values = _values(frame[rating_col] if rating_col else None, len(frame), kind, source,
                         first_line)
        u, user_index = _encode_ids(frame[user_col], user_index, "user", unknown, source,
                                    first_line)
        i, item_index = _encode_ids(frame[item_col], item_index, "item", unknown, source,
                                    first_line)
        table = pd.DataFrame({"u": u, "i": i, "v": values})
        if timestamp_col:
            table["t"] = to_epoch_seconds(frame[timestamp_col], source, first_line)
        table = table[(table["u"] >= 0) & (table["i"] >= 0)]
        table = _resolve_duplicates(table, duplicates, source, first_line)
        table = table.sort_values(["u", "i"], kind="stable")
        return cls(
            users=table["u"].to_numpy(np.int32),
            items=table["i"].to_numpy(np.int32),
            values=table["v"].to_numpy(np.float32),
            timestamps=table["t"].to_numpy(np.int64) if timestamp_col else None,
            user_index=user_index,
            item_index=item_index,
            kind=kind,
        )

    # ----------------------------------------------------------------- views
    def __len__(self) -> int:
        return len(self.users)

    @property
    def n_users(self) -> int:
        return len(self.user_index)

    @property
    def n_items(self) -> int:
        return len(self.item_index)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_items)

    def to_csr(self) -> sp.csr_matrix:
        """User x item matrix of values (float32, sorted indices), cached."""
        if "csr" not in self._cache:
            mat = sp.csr_matrix((self.values, (self.users, self.items)), shape=self.shape,
                                dtype=np.float32)
            mat.sort_indices()
            self._cache["csr"] = mat
        return self._cache["csr"]

    def to_csc(self) -> sp.csc_matrix:
        """Item-major view of :meth:`to_csr`, cached."""
        if "csc" not in self._cache:
            self._cache["csc"] = self.to_csr().tocsc()
        return self._cache["csc"]

    def to_frame(self) -> pd.DataFrame:
        """Table with external ids: user, item, value[, timestamp]."""
        out = pd.DataFrame({"user": self.user_index.to_ids(self.users),
                            "item": self.item_index.to_ids(self.items),
                            "value": self.values})
        if self.timestamps is not None:
            out["timestamp"] = self.timestamps
        return out

    def select(self, mask: np.ndarray, user_index: IdIndex | None = None) -> Interactions:
        """The interactions where ``mask`` is true, optionally re-indexed to new users."""
        users = self.users[mask]
        if user_index is not None:
            users = user_index.to_index(self.user_index.to_ids(users)).astype(np.int32)
        return Interactions(
            users=users, items=self.items[mask], values=self.values[mask],
            timestamps=None if self.timestamps is None else self.timestamps[mask],
            user_index=user_index or self.user_index, item_index=self.item_index,
            kind=self.kind)

    def fingerprint(self) -> str:
        """A short content hash (ids, indices, values), stored in model manifests."""
        h = hashlib.sha256()
        for arr in (self.users, self.items, self.values, self.user_index.ids,
                    self.item_index.ids):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (f"Interactions(kind={self.kind!r}, n={len(self)}, users={self.n_users}, "
                f"items={self.n_items}, timestamps={self.timestamps is not None})")
