"""The hashing trick for high-cardinality ids: stable FNV-1a buckets, no learned vocabulary.

A value's bucket is the 64-bit FNV-1a hash (Fowler, Noll, Vo) of the UTF-8 bytes of its
:func:`~recoforge.data.encoders.category_key`, modulo the number of buckets. Unlike
Python's salted built-in ``hash``, it is the same in every process, on every machine and
in every Python version, so a saved model encodes new rows exactly as in training.
Hashing is vectorised over keys (uint64 arithmetic wraps modulo 2**64 as FNV needs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recoforge.data.encoders import FieldEncoder, factorize_keys, one_hot
from recoforge.errors import ConfigError

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3
MAX_HASH_BUCKETS = 1 << 22  # columns (and readable names) of one hashed field
_HASH_CHUNK = 1 << 16  # keys hashed together (padded bytes <= 16 MiB per chunk)
_HASH_MAX_VECTOR_LEN = 256  # longer keys are hashed one by one


def fnv1a_64(data: bytes) -> int:
    """64-bit FNV-1a of ``data`` (Fowler, Noll, Vo): stable across processes and machines."""
    h = FNV64_OFFSET
    for byte in data:
        h = ((h ^ byte) * FNV64_PRIME) & 0xFFFFFFFFFFFFFFFF
    return h


def fnv1a_64_many(keys: Sequence[str]) -> np.ndarray:
    """FNV-1a 64 of the UTF-8 bytes of each key, vectorised over keys (uint64)."""
    encoded = [k.encode("utf-8") for k in keys]
    lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    out = np.full(len(encoded), FNV64_OFFSET, dtype=np.uint64)
    prime = np.uint64(FNV64_PRIME)
    short = np.flatnonzero(lengths <= _HASH_MAX_VECTOR_LEN)
    for start in range(0, len(short), _HASH_CHUNK):
        rows = short[start:start + _HASH_CHUNK]
        lens = lengths[rows]
        width = int(lens.max()) if len(rows) else 0
        padded = np.zeros((len(rows), width), dtype=np.uint8)
        flat = np.frombuffer(b"".join(encoded[r] for r in rows), dtype=np.uint8)
        offsets = np.repeat(np.cumsum(lens) - lens, lens)
        padded[np.repeat(np.arange(len(rows)), lens), np.arange(len(flat)) - offsets] = flat
        h = out[rows]
        for pos in range(width):
            active = lens > pos
            h[active] = (h[active] ^ padded[active, pos]) * prime
        out[rows] = h
    for r in np.flatnonzero(lengths > _HASH_MAX_VECTOR_LEN):
        out[r] = fnv1a_64(encoded[r])
    return out


class HashedField(FieldEncoder):
    """High-cardinality ids hashed into ``n_buckets`` columns (the hashing trick).

    A value's bucket is FNV-1a 64 of the UTF-8 bytes of its :func:`category_key` modulo
    ``n_buckets``; with several source columns the key is ``"column=value"``, so equal
    values of different columns land apart. Stable across processes, machines and Python
    versions (unlike the salted built-in ``hash``); nothing is learned, so unseen values
    are encoded like any other and colliding values share a column (weights add up).
    Missing values give no entry.
    """

    kind = "hashed"
    multi_column = True

    def __init__(self, columns: str | Sequence[str], name: str | None = None, *,
                 n_buckets: int = 1 << 16) -> None:
        super().__init__(columns, name)
        if isinstance(n_buckets, bool) or not isinstance(n_buckets, int) \
                or not 1 <= n_buckets <= MAX_HASH_BUCKETS:
            raise ConfigError(f"n_buckets must be an integer in [1, 2**22], got {n_buckets!r}")
        self.n_buckets = n_buckets
        self.fitted = True  # nothing to learn

    def options(self) -> dict[str, Any]:
        return {"n_buckets": self.n_buckets}

    @property
    def width(self) -> int:
        return self.n_buckets

    def buckets(self, keys: Sequence[str]) -> np.ndarray:
        """Bucket of each key string (int64)."""
        return (fnv1a_64_many(keys) % np.uint64(self.n_buckets)).astype(np.int64)

    def fit(self, frame: pd.DataFrame) -> None:
        self.transform(frame)  # validates the values; nothing is learned

    def transform(self, frame: pd.DataFrame) -> sp.csr_matrix:
        rows, cols = [], []
        for column in self.columns:
            codes, keys = factorize_keys(frame[column], f"hashed field {self.name!r}")
            known = [k is not None for k in keys]
            texts = [k if len(self.columns) == 1 else f"{column}={k}"
                     for k in keys if k is not None]
            bucket_of = np.full(len(keys), -1, dtype=np.int64)
            bucket_of[np.flatnonzero(known)] = self.buckets(texts)
            per_row = bucket_of[codes] if len(codes) else np.empty(0, dtype=np.int64)
            present = np.flatnonzero(per_row >= 0)
            rows.append(present)
            cols.append(per_row[present])
        return one_hot(np.concatenate(rows), np.concatenate(cols), len(frame), self.width)

    def column_names(self) -> list[str]:
        return [f"{self.name}#{b}" for b in range(self.n_buckets)]
