"""Turning what callers pass (ids, histories, options) into arrays, with clear errors.

Shared by :mod:`recoforge.models.base`: id lists, history inputs (a table, a mapping of
user -> items or -> {item: rating}, or one item list), prediction times, option checks,
and the ordering of result frames.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypeAlias

import numpy as np
import pandas as pd

from recoforge.data.interactions import to_epoch_seconds
from recoforge.errors import ConfigError, DataError

HistoryInput: TypeAlias = pd.DataFrame | Mapping[Any, Any] | Iterable[Any]
UNKNOWN_USERS = ("error", "skip", "fallback")


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for readable messages)."""
    return value.item() if isinstance(value, np.generic) else value


def as_list(values: Iterable[Any]) -> list[Any]:
    if isinstance(values, (str, bytes, int, np.integer)):
        return [values]
    if isinstance(values, (pd.Series, pd.Index, np.ndarray)):
        return list(values.tolist())
    return list(values)


def as_id_array(values: Iterable[Any]) -> np.ndarray | list[Any]:
    """Ids as given, without a Python list when they already are an integer array (the
    fast path of ``predict``); anything else as a list."""
    if isinstance(values, (pd.Series, pd.Index)):
        values = values.to_numpy()
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "iu":
        return values
    return as_list(values)


def as_times(times: Iterable[Any], n: int) -> np.ndarray:
    """Prediction times (numbers, datetimes or ISO strings) as int64 epoch seconds."""
    column = pd.Series(as_list(times))
    if len(column) != n:
        raise DataError(f"predict got {n} pairs but {len(column)} times")
    return to_epoch_seconds(column, "times", None)


def id_policy(unknown_items: str) -> Literal["error", "ignore"]:
    if unknown_items not in ("error", "ignore"):
        raise ConfigError(f"unknown_items must be 'error' or 'ignore', not {unknown_items!r}")
    return "error" if unknown_items == "error" else "ignore"


def check_unknown(unknown: str) -> None:
    if unknown not in UNKNOWN_USERS:
        raise ConfigError(f"unknown must be 'error', 'skip' or 'fallback', not {unknown!r}")


def check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    return int(k)


def check_batch_size(batch_size: Any) -> int | None:
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    return int(batch_size)


def _finite_values(values: Any, what: str) -> np.ndarray:
    try:
        out = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next((v for v in values if not _is_number(v)), values)
        raise DataError(f"{what} must be numbers, got {bad!r}") from None
    if not np.all(np.isfinite(out)):
        raise DataError(f"{what} must be finite numbers")
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


def history_triples(history: HistoryInput) -> tuple[list, np.ndarray, list, np.ndarray]:
    """Query labels, and (query row, item id, value) triples, from a history input."""
    if isinstance(history, pd.DataFrame):
        missing = {"user", "item"} - set(history.columns)
        if missing:
            raise DataError(f"history table needs columns user and item; missing "
                            f"{sorted(missing)} (columns: {list(history.columns)})")
        col = next((c for c in ("rating", "value") if c in history.columns), None)
        values = (_finite_values(history[col].to_numpy(), f"history column {col!r}") if col
                  else np.ones(len(history)))
        rows, uniques = pd.factorize(history["user"].astype(object), sort=False)
        labels, items = list(uniques), history["item"].tolist()
        return labels, rows.astype(np.int64), items, values
    if isinstance(history, Mapping):
        if not history:
            raise DataError("history is empty")
        labels, row_list, items, vals = list(history), [], [], []
        for row, entries in enumerate(history.values()):
            pairs = (entries.items() if isinstance(entries, Mapping)
                     else ((item, 1.0) for item in as_list(entries)))
            for item, value in pairs:
                row_list.append(row)
                items.append(item)
                vals.append(value)
        values = _finite_values(vals, "history ratings")
        return labels, np.asarray(row_list, dtype=np.int64), items, values
    items = as_list(history)
    return [None], np.zeros(len(items), np.int64), items, np.ones(len(items))


def label_array(labels: Iterable[Any]) -> np.ndarray:
    """Query labels as a typed array (int or str) when homogeneous, else object."""
    values = list(labels)
    if values and all(isinstance(v, str) for v in values):
        return np.asarray(values, dtype=str)
    if values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                      for v in values):
        try:
            return np.asarray(values, dtype=np.int64)
        except OverflowError:
            pass
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def order_like(frame: pd.DataFrame, labels: list[Any]) -> pd.DataFrame:
    """Rows grouped by user in the order the users were requested."""
    position = {label: i for i, label in enumerate(labels)}
    key = frame["user"].map(position)
    return frame.assign(_o=key).sort_values(["_o", "rank"], kind="stable") \
        .drop(columns="_o").reset_index(drop=True)
