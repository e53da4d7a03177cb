"""Value transforms for implicit data: what a play count is worth to a model.

Implicit data often carries counts (plays, clicks, minutes) whose distribution is heavy
tailed: most pairs have a count of 1-5, a few have thousands. Models that use the raw
count as a weight (cosine item-kNN, implicit ALS's confidence 1 + alpha r) are then
dominated by a handful of pairs and rank worse than popularity. One option, shared by the
models that weigh events (``values=`` of ``item_knn``, ``user_knn`` and ``implicit_als``;
``--param values=...`` on the command line), chooses the transform applied to each event
value r >= 0 before the model sees it:

``"none"``
    r as it is (the raw count).
``"binary"``
    1 for every event: only *whether* the user interacted counts.
``"log1p"``
    log(1 + r): counts matter, with diminishing returns; with implicit ALS this is the
    confidence of Hu, Koren & Volinsky (2008), c = 1 + alpha log(1 + r / eps), eps=1.
``"bm25"`` (the default)
    r (k1 + 1) / (r + k1), k1 = 1.2: BM25's term-frequency saturation (Robertson &
    Zaragoza 2009) without its length and idf factors (the knn ``weighting`` option
    adds those). It maps 1 to 1 and is bounded by k1 + 1 = 2.2, so data of plain
    events (every value 1) is modelled exactly as without a transform, while a count
    of 10,000 weighs 2.2 times a single play, not 10,000 times.

Why bm25 by default: on the play-count generator (benchmarks/results/counts.md) it
ranks as well as log1p for implicit ALS and better for item-kNN, both far above raw
counts, and unlike log1p (log 2 = 0.69 for a single event) it leaves binary data and the
meaning of ALS's ``alpha`` on it unchanged.

Every transform maps 0 to 0, keeps the order of counts (``binary`` ties them) and is
applied elementwise, so the same transform is applied to training data and to a
request's history without any fitted state. :func:`looks_like_counts` tells ratings from
counts for the warning of :func:`~recoforge.data.loaders.read_interactions`.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import scipy.sparse as sp

from recoforge.errors import ConfigError

VALUE_TRANSFORMS: Final = ("none", "binary", "log1p", "bm25")
#: the default of every model with a ``values`` option: does not collapse on counts
DEFAULT_TRANSFORM: Final = "bm25"
BM25_K1: Final = 1.2
#: counts at or above this maximum, with a heavy tail, are not a rating scale
COUNT_MAXIMUM: Final = 100
#: heavy tail: the 99th percentile at least this many times the median
COUNT_TAIL_RATIO: Final = 10.0


def transform_values(values: np.ndarray, transform: str) -> np.ndarray:
    """``values`` (event weights >= 0) under ``transform``, as float32.

    Memory: one float32 copy of ``values``.

    Raises
    ------
    ConfigError
        An unknown transform.
    """
    values = np.asarray(values, dtype=np.float32)
    if transform == "none":
        return values.copy()
    if transform == "binary":
        return (values != 0).astype(np.float32)
    if transform == "log1p":
        return np.log1p(np.maximum(values, 0.0)).astype(np.float32)
    if transform == "bm25":
        positive = np.maximum(values, 0.0)
        return (positive * np.float32(BM25_K1 + 1.0) / (positive + np.float32(BM25_K1))
                ).astype(np.float32)
    raise ConfigError(f"values must be one of {', '.join(VALUE_TRANSFORMS)}, not "
                      f"{transform!r}")


def transform_matrix(matrix: sp.spmatrix, transform: str) -> sp.csr_matrix:
    """A float32 CSR copy of ``matrix`` with its stored values transformed.

    The sparsity pattern is kept (a stored 0 stays 0 under every transform).
    """
    csr = sp.csr_matrix(matrix, dtype=np.float32)
    return sp.csr_matrix((transform_values(csr.data, transform), csr.indices.copy(),
                          csr.indptr.copy()), shape=csr.shape)


def looks_like_counts(values: np.ndarray) -> bool:
    """True when ``values`` look like counts rather than ratings.

    Counts: non-negative integers, unbounded (maximum >= 100) and heavy tailed (99th
    percentile >= 10 x the median). Rating scales (1-5, 0.5-5, 1-10, 0-100 scores)
    fail one of these.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        return False
    if values.min() < 0 or values.max() < COUNT_MAXIMUM:
        return False
    if not np.array_equal(values, np.round(values)):
        return False
    median = max(float(np.median(values)), 1.0)
    return float(np.percentile(values, 99)) >= COUNT_TAIL_RATIO * median


def count_warning(values: np.ndarray, column: object, source: str) -> str | None:
    """The warning for ratings that look like counts (None when they do not)."""
    if not looks_like_counts(values):
        return None
    values = np.asarray(values, dtype=np.float64)
    return (f"{source}: the values of {column!r} look like counts, not ratings "
            f"(non-negative integers up to {values.max():,.0f}, median "
            f"{np.median(values):g}); they are read as explicit ratings. For play or click "
            f"counts pass kind='implicit' (CLI: --implicit)")
