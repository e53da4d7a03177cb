"""Nearest-neighbour retrieval over item vectors: exact (BLAS) and FAISS (HNSW, IVF).

A :class:`VectorIndex` holds the item vectors of a factorised model and answers "the ``k``
items with the largest ``q . v``" (metric ``"dot"``) or the largest cosine (``"cosine"``:
both sides are L2-normalised, then the inner product is taken) for a batch of queries.

Backends:

- ``"exact"``: blocked matrix products (BLAS) + :func:`recoforge.ranking.topk.topk`;
  always correct; O(n_items * dim) work per query.
- ``"hnsw"``: ``faiss.IndexHNSWFlat`` (graph search; Malkov & Yashunin, 2018), inner
  product. Parameters ``M`` (links per node), ``ef_construction``, ``ef_search`` and
  ``ip_transform``: True (default) gives items one extra coordinate so they have equal
  norms (see :mod:`recoforge.ranking._faiss`); False searches raw inner products. Which
  recalls more depends on the data (benchmarks/results/vector_index.md).
- ``"ivf"``: ``faiss.IndexIVFFlat`` (k-means cells, inverted lists) for large catalogues.
  Parameters ``nlist`` (cells), ``nprobe`` (cells visited per query), ``seed`` and
  ``train_size`` (the seeded sample k-means is trained on).
- ``"auto"``: exact below :data:`AUTO_EXACT_MAX_ITEMS` items, else HNSW when faiss is
  installed (extra ``ann``), else exact.

Seen-item exclusion and whitelists stay exact with the ANN backends: each row fetches
``k`` plus its exclusions (scaled up by the whitelist's share of the catalogue), drops the
ineligible items, and doubles the fetch until ``k`` eligible items are found; a row whose
fetch would reach 1/16 of its eligible items (where a graph walk that wide costs as much
as scoring them) is answered exactly over the eligible items.

FAISS is optional: it is imported through :func:`recoforge.errors.require` only when an
ANN backend is used. FAISS's OpenMP pool follows :func:`recoforge.threads.get_num_threads`
(set only when it differs from FAISS's current setting).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from recoforge.artifacts import register_part
from recoforge.errors import ArtifactError, ConfigError, DataError
from recoforge.ranking import _faiss
from recoforge.ranking.topk import topk
from recoforge.threads import numba_threads

METRICS = ("dot", "cosine")
BACKENDS = ("exact", "hnsw", "ivf")
#: below this many items ``backend="auto"`` scores exactly (BLAS is then as fast as HNSW)
AUTO_EXACT_MAX_ITEMS = 100_000
#: bound on the dense score block of the exact backend (rows x items x 4 bytes)
BLOCK_BYTES = 64 << 20
#: a row whose fetch reaches 1/EXACT_SWITCH of its eligible items is scored exactly
EXACT_SWITCH = 16
PART_VERSION = 1
_BLOB = "faiss_index"
def _as_vectors(vectors: object, name: str, dim: int | None = None) -> np.ndarray:
    """A C-contiguous float32 matrix with finite values, or a DataError naming ``name``."""
    try:
        array = np.asarray(vectors)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be a numeric 2-d array ({exc})") from None
    if array.dtype.kind not in "fiu" or array.ndim != 2:
        raise DataError(f"{name} must be a numeric 2-d array, got dtype {array.dtype} "
                        f"and shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise DataError(f"{name} have dimension {array.shape[1]}, the index has {dim}")
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.isfinite(array).all():
        row = int(np.flatnonzero(~np.isfinite(array).all(axis=1))[0])
        raise DataError(f"{name} contain a non-finite value (NaN or inf) in row {row}")
    return array


def _normalised(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero); a new array."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int,
                 exclude: sp.csr_matrix | None = None,
                 allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` inner products of ``queries`` against ``vectors``, blocked.

    Memory: one score block of at most :data:`BLOCK_BYTES` (at least one row) plus the
    (n, k) results. Cost: O(n * n_items * dim) multiply-adds (BLAS) and O(n * n_items)
    for the top-k scans (numba, on the thread setting).

    Returns ``(indices int32 (n, k), scores float32 (n, k))``, best first, padded with
    ``-1`` / ``-inf`` where a row has fewer than ``k`` eligible items.
    """
    n, n_items = len(queries), len(vectors)
    indices = np.full((n, k), -1, dtype=np.int32)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    if n == 0 or n_items == 0:
        return indices, scores
    rows = max(1, BLOCK_BYTES // (4 * n_items))
    with numba_threads():
        for start in range(0, n, rows):
            stop = min(n, start + rows)
            block = queries[start:stop] @ vectors.T
            ex = exclude[start:stop] if exclude is not None else None
            top_i, top_s = topk(block, k, ex, allowed)
            indices[start:stop, :top_i.shape[1]] = top_i
            scores[start:stop, :top_s.shape[1]] = top_s
    return indices, scores


class VectorIndex:
    """Top-k retrieval by inner product or cosine over a fixed set of item vectors.

    Parameters
    ----------
    metric : {"dot", "cosine"}
        ``"dot"``: score = q . v. ``"cosine"``: score = q . v / (|q| |v|) (zero vectors
        score 0); vectors are normalised once at build, queries at search.
    backend : {"exact", "hnsw", "ivf", "auto"}
        See the module docstring. ``"auto"`` takes no options.
    **options
        ``hnsw``: ``M`` (16), ``ef_construction`` (100), ``ef_search`` (64),
        ``ip_transform`` (True: for "dot", index items with the equal-norm coordinate;
        False: raw inner products; no effect for "cosine").
        ``ivf``: ``nlist`` (default ``min(sqrt(n), n / 39)``), ``nprobe`` (default
        ``min(16, nlist)``), ``seed`` (0), ``train_size`` (default ``min(n, 64 * nlist)``);
        the defaults are filled in by :meth:`fit` and shown in :attr:`options`.
        ``ef_search`` and ``nprobe`` are search-time settings
        (:meth:`set_search_params`); the others shape the built index.

    Notes
    -----
    Memory, n items of dimension d: exact n * d * 4 bytes; hnsw about
    n * (4 d + 8 M + 8) bytes; ivf n * (4 d + 16) bytes plus nlist * d * 4 for the centroids.
    """

    def __init__(self, metric: str = "dot", backend: str = "exact", **options: Any) -> None:
        if metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        if backend not in (*BACKENDS, "auto"):
            raise ConfigError(f"backend must be one of {', '.join((*BACKENDS, 'auto'))}, "
                              f"got {backend!r}")
        if backend == "auto" and options:
            raise ConfigError("backend='auto' takes no options; name the backend to set "
                              f"{', '.join(sorted(options))}")
        self.metric = metric
        self.backend = backend
        self.requested_backend = backend
        self._given_options = _faiss.check_options(backend, options) if backend != "auto" else {}
        self.options = dict(self._given_options)
        self._vectors: np.ndarray | None = None  # exact backend only
        self._faiss_index: Any = None
        self._n_items = 0
        self._dim = 0

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, vectors: object, metric: str = "dot", backend: str = "exact",
              **options: Any) -> VectorIndex:
        """Construct and :meth:`fit` in one call."""
        return cls(metric, backend, **options).fit(vectors)

    @classmethod
    def for_model(cls, model: Any, backend: str = "auto", **options: Any) -> VectorIndex:
        """An index over a factorised model's ``item_vectors()`` with its similarity."""
        if not getattr(model, "factorised", False):
            raise ConfigError(f"{getattr(model, 'name', model)!r} is not a factorised model")
        return cls.build(model.item_vectors(), metric=model.vector_similarity,
                         backend=backend, **options)

    def fit(self, vectors: object) -> VectorIndex:
        """Index ``vectors`` (n_items, dim); replaces anything indexed before.

        Cost: exact O(n d) (a float32 copy, normalised for cosine); hnsw about
        O(n log n * ef_construction * M) distance evaluations; ivf k-means on
        ``train_size`` rows (about 25 * train_size * nlist * d) plus O(n * nlist * d) to
        assign every vector. FAISS builds on :func:`recoforge.threads.get_num_threads`
        threads (HNSW graphs built on one thread are deterministic, several are not).
        """
        data = _as_vectors(vectors, "vectors")
        if data.shape[0] == 0 or data.shape[1] == 0:
            raise DataError(f"vectors must have at least one row and one column, got "
                            f"shape {data.shape}")
        if self.metric == "cosine":
            data = _normalised(data)
        if self.requested_backend == "auto":
            self.backend = self._auto_backend(len(data))
            self._given_options = _faiss.check_options(self.backend, {})
        self.options = dict(self._given_options)
        self._n_items, self._dim = data.shape
        self._vectors, self._faiss_index = None, None
        if self.backend == "exact":
            self._vectors = data
        elif self.backend == "hnsw":
            self._faiss_index = self._build_hnsw(data)
        else:
            self._faiss_index = self._build_ivf(data)
        return self

    @staticmethod
    def _auto_backend(n_items: int) -> str:
        if n_items < AUTO_EXACT_MAX_ITEMS:
            return "exact"
        try:
            _faiss.faiss_module()
        except ImportError:
            return "exact"
        return "hnsw"

    def _build_hnsw(self, data: np.ndarray) -> Any:
        opts = self.options
        return _faiss.build_hnsw(data, opts["M"], opts["ef_construction"], opts["ef_search"],
                                 norm_coordinate=self._norm_coordinate)

    @property
    def _norm_coordinate(self) -> bool:
        """Whether FAISS holds items with the extra norm coordinate (HNSW for "dot")."""
        return self.backend == "hnsw" and self.metric == "dot" and self.options["ip_transform"]

    def _build_ivf(self, data: np.ndarray) -> Any:
        opts = self.options = _faiss.resolve_ivf_options(self.options, len(data))
        return _faiss.build_ivf(data, opts["nlist"], opts["train_size"], opts["seed"],
                                spherical=self.metric == "cosine")

    def set_search_params(self, **params: Any) -> VectorIndex:
        """Change search-time settings (``ef_search`` for hnsw, ``nprobe`` for ivf).

        They are passed to FAISS per call (no shared state is mutated while searching).
        """
        allowed = _faiss.SEARCH_OPTIONS.get(self.backend, ())
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise ConfigError(f"{', '.join(unknown)} is not a search setting of backend "
                              f"{self.backend!r} (settings: {', '.join(allowed) or 'none'})")
        checked = {name: _faiss.positive_int(name, value) for name, value in params.items()}
        if "nprobe" in checked and self.options.get("nlist") is not None:
            _faiss.check_nprobe(checked["nprobe"], self.options["nlist"])
        self.options.update(checked)
        self._given_options.update(checked)
        return self

    # ------------------------------------------------------------------ properties
    @property
    def is_fitted(self) -> bool:
        """Whether vectors have been indexed."""
        return self._n_items > 0

    @property
    def n_items(self) -> int:
        """Number of indexed vectors."""
        return self._n_items

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return (f"VectorIndex(metric={self.metric!r}, backend={self.backend!r}"
                f"{', ' + opts if opts else ''}, n_items={self._n_items}, dim={self._dim})")

    # ------------------------------------------------------------------ searching
    def search(self, queries: object, k: int, *, exclude: object = None,
               allowed: object = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best items for each query row.

        Parameters
        ----------
        queries : array, shape (n, dim)
            Query vectors (finite).
        k : int
            Results per row, ``k >= 1``.
        exclude : sparse matrix, shape (n, n_items), optional
            Its nonzero structure marks items never returned for that row (seen items).
        allowed : ndarray of bool, shape (n_items,), optional
            Whitelist: only these items are returned.

        Returns
        -------
        indices : ndarray of int32, shape (n, k)
            Item indices, best first; ``-1`` where a row has fewer than ``k`` results.
        scores : ndarray of float32, shape (n, k)
            Their scores; ``-inf`` where padded.

        Notes
        -----
        Exact: memory one score block of at most :data:`BLOCK_BYTES`; cost
        O(n * n_items * dim). HNSW: about O(ef * M * dim * log n_items) per row and fetch
        round; IVF O(nlist * dim + nprobe * n_items / nlist * dim) per row and round.
        With exclusions or a whitelist a row fetches ``(k + its exclusions) * n_items /
        n_allowed`` results, doubling until ``k`` are eligible; memory O(n * fetch).
        """
        if not self.is_fitted:
            raise ConfigError("VectorIndex.search called before fit (or build)")
        k = _faiss.positive_int("k", k)
        data = _as_vectors(queries, "queries", self._dim)
        if self.metric == "cosine":
            data = _normalised(data)
        exclude_csr = self._check_exclude(exclude, len(data))
        allowed_mask = self._check_allowed(allowed)
        if self.backend == "exact":
            assert self._vectors is not None
            return exact_search(self._vectors, data, k, exclude_csr, allowed_mask)
        return self._ann_search(data, k, exclude_csr, allowed_mask)

    def _check_exclude(self, exclude: object, n: int) -> sp.csr_matrix | None:
        if exclude is None:
            return None
        if not sp.issparse(exclude):
            raise DataError("exclude must be a scipy sparse matrix (CSR) of items per row")
        if exclude.shape != (n, self._n_items):  # type: ignore[attr-defined]
            raise DataError(f"exclude has shape {exclude.shape}, expected "  # type: ignore[attr-defined]
                            f"({n}, {self._n_items}): one row per query, one column per item")
        csr = sp.csr_matrix(exclude)
        if not csr.has_canonical_format:
            csr = csr.copy()
            csr.sum_duplicates()  # sorted, unique column indices per row (keeps explicit 0s)
        return csr

    def _check_allowed(self, allowed: object) -> np.ndarray | None:
        if allowed is None:
            return None
        mask = np.asarray(allowed)
        if mask.dtype != np.bool_ or mask.shape != (self._n_items,):
            raise DataError(f"allowed must be a boolean mask of shape ({self._n_items},), "
                            f"got dtype {mask.dtype} and shape {mask.shape}")
        return mask

    def _ann_search(self, queries: np.ndarray, k: int, exclude: sp.csr_matrix | None,
                    allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        n, n_items = len(queries), self._n_items
        indices = np.full((n, k), -1, dtype=np.int32)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        excluded = np.zeros(n, np.int64) if exclude is None else np.diff(exclude.indptr)
        n_allowed = n_items if allowed is None else int(allowed.sum())
        eligible = n_allowed - self._excluded_allowed(exclude, allowed, excluded)
        wanted = np.minimum(k, eligible)
        need = np.ceil((k + excluded) * (n_items / max(n_allowed, 1)))
        fetch = (k * 2 ** np.ceil(np.log2(np.maximum(need / k, 1.0)))).astype(np.int64)
        pending = np.flatnonzero(wanted > 0)
        exact_rows = []
        while pending.size:
            too_wide = ((fetch[pending] * EXACT_SWITCH >= n_allowed)
                        | (fetch[pending] >= n_items))
            exact_rows.append(pending[too_wide])
            pending = pending[~too_wide]
            unfinished = []
            for size in np.unique(fetch[pending]):
                rows = pending[fetch[pending] == size]
                found = self._fetch_and_filter(queries, rows, int(size), k, exclude, allowed,
                                               indices, scores)
                short = rows[found < wanted[rows]]
                fetch[short] *= 2
                unfinished.append(short)
            pending = np.concatenate(unfinished) if unfinished else pending[:0]
        rows = np.concatenate(exact_rows) if exact_rows else np.empty(0, np.int64)
        if rows.size:
            self._exact_fallback(queries, np.sort(rows), k, exclude, allowed, indices, scores)
        return indices, scores

    @staticmethod
    def _excluded_allowed(exclude: sp.csr_matrix | None, allowed: np.ndarray | None,
                          excluded: np.ndarray) -> np.ndarray:
        """Per row: how many excluded items the whitelist would otherwise have allowed."""
        if exclude is None or allowed is None:
            return excluded
        row_of_entry = np.repeat(np.arange(exclude.shape[0]), excluded)
        weights = allowed[exclude.indices].astype(np.float64)
        return np.bincount(row_of_entry, weights, minlength=exclude.shape[0]).astype(np.int64)

    def _fetch_and_filter(self, queries: np.ndarray, rows: np.ndarray, size: int, k: int,
                          exclude: sp.csr_matrix | None, allowed: np.ndarray | None,
                          indices: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """FAISS top-``size`` for ``rows``; the first ``k`` eligible go to the outputs."""
        found_scores, labels = self._faiss_search(queries[rows], size)
        valid = labels >= 0
        if allowed is not None:
            valid &= allowed[np.maximum(labels, 0)]
        if exclude is not None:
            sub = exclude[rows]
            entry_rows = np.repeat(np.arange(len(rows), dtype=np.int64), np.diff(sub.indptr))
            banned = entry_rows * self._n_items + sub.indices
            keys = np.arange(len(rows), dtype=np.int64)[:, None] * self._n_items + labels
            valid &= ~np.isin(keys, banned)
        order = np.argsort(~valid, axis=1, kind="stable")[:, :k]
        keep = np.take_along_axis(valid, order, axis=1)
        width = order.shape[1]
        indices[rows, :width] = np.where(keep, np.take_along_axis(labels, order, axis=1), -1)
        scores[rows, :width] = np.where(keep, np.take_along_axis(found_scores, order, axis=1),
                                        -np.inf)
        return valid.sum(axis=1)

    def _faiss_search(self, queries: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        return _faiss.search(self._faiss_index, self.backend, queries, size, self.options)

    def _exact_fallback(self, queries: np.ndarray, rows: np.ndarray, k: int,
                        exclude: sp.csr_matrix | None, allowed: np.ndarray | None,
                        indices: np.ndarray, scores: np.ndarray) -> None:
        """Exact search for ``rows`` over the eligible items, read back from FAISS.

        Memory: the vectors of the whitelisted items (or of all items) as float32.
        """
        items = np.flatnonzero(allowed) if allowed is not None else None
        vectors = _faiss.stored_vectors(self._faiss_index, items, self._dim)
        sub_exclude = exclude[rows] if exclude is not None else None
        if sub_exclude is not None and items is not None:
            sub_exclude = sub_exclude[:, items]
        top_i, top_s = exact_search(vectors, queries[rows], k, sub_exclude)
        if items is not None:
            top_i = np.where(top_i >= 0, items[np.maximum(top_i, 0)], -1).astype(np.int32)
        indices[rows], scores[rows] = top_i, top_s

    # ------------------------------------------------------------------ persistence
    def to_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        """``(meta, arrays, blobs)`` for the artifacts part protocol.

        Exact: the (normalised, for cosine) vectors as one float32 array. FAISS backends:
        the index bytes from ``faiss.serialize_index`` (vectors included, not repeated).
        """
        if not self.is_fitted:
            raise ConfigError("cannot save a VectorIndex before fit (or build)")
        meta = {"version": PART_VERSION, "metric": self.metric, "backend": self.backend,
                "n_items": self._n_items, "dim": self._dim, "options": dict(self.options)}
        if self.backend == "exact":
            assert self._vectors is not None
            return meta, {"vectors": self._vectors}, {}
        return meta, {}, {_BLOB: _faiss.serialize(self._faiss_index)}

    @classmethod
    def from_parts(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray],
                   blobs: dict[str, bytes]) -> VectorIndex:
        """Rebuild an index saved by :meth:`to_parts`, validating every part.

        Raises :class:`~recoforge.errors.ArtifactError` for unknown metric or backend
        names, bad options, vectors of the wrong shape or with non-finite values, and a
        FAISS blob that does not deserialise or disagrees with the metadata.
        """
        index = cls._index_from_meta(meta)
        backend = index.backend
        expected_arrays = {"vectors"} if backend == "exact" else set()
        expected_blobs = set() if backend == "exact" else {_BLOB}
        if set(arrays) != expected_arrays or set(blobs) != expected_blobs:
            raise ArtifactError(f"vector index ({backend}): expected arrays "
                                f"{sorted(expected_arrays)} and blobs {sorted(expected_blobs)}, "
                                f"found {sorted(arrays)} and {sorted(blobs)}")
        if backend == "exact":
            index._vectors = index._checked_vectors(arrays["vectors"])
        else:
            faiss_dim = index._dim + int(index._norm_coordinate)
            index._faiss_index = _faiss.deserialize(blobs[_BLOB], backend, index._n_items,
                                                    faiss_dim, index.options)
        return index

    @classmethod
    def _index_from_meta(cls, meta: object) -> VectorIndex:
        keys = {"version", "metric", "backend", "n_items", "dim", "options"}
        if not isinstance(meta, dict) or set(meta) != keys:
            found = sorted(meta) if isinstance(meta, dict) else type(meta).__name__
            raise ArtifactError(f"vector index metadata must have keys {sorted(keys)}, "
                                f"found {found}")
        if meta["version"] != PART_VERSION:
            raise ArtifactError(f"vector index part version {meta['version']!r} is not "
                                f"supported (expected {PART_VERSION})")
        for name, known in (("metric", METRICS), ("backend", BACKENDS)):
            if meta[name] not in known:
                raise ArtifactError(f"vector index: unknown {name} {meta[name]!r} (known: "
                                    f"{', '.join(known)})")
        if not isinstance(meta["options"], dict):
            raise ArtifactError("vector index: options must be a mapping")
        try:
            index = cls(meta["metric"], meta["backend"], **meta["options"])
            index._n_items = _faiss.positive_int("n_items", meta["n_items"])
            index._dim = _faiss.positive_int("dim", meta["dim"])
            if index.backend == "ivf":
                resolved = _faiss.resolve_ivf_options(index.options, index._n_items)
                if resolved != index.options:
                    raise ConfigError(f"IVF options {index.options} are incomplete")
        except ConfigError as exc:
            raise ArtifactError(f"vector index: {exc}") from None
        return index

    def _checked_vectors(self, vectors: object) -> np.ndarray:
        if not isinstance(vectors, np.ndarray) or vectors.dtype != np.float32 \
                or vectors.shape != (self._n_items, self._dim):
            got = (vectors.dtype, vectors.shape) if isinstance(vectors, np.ndarray) else vectors
            raise ArtifactError(f"vector index: vectors must be float32 of shape "
                                f"({self._n_items}, {self._dim}), got {got}")
        if not np.isfinite(vectors).all():
            raise ArtifactError("vector index: vectors contain NaN or inf")
        if self.metric == "cosine":
            norms = np.linalg.norm(vectors, axis=1)
            if not np.all((np.abs(norms - 1) < 1e-3) | (norms == 0)):
                raise ArtifactError("vector index: cosine vectors are not unit-normalised")
        return np.ascontiguousarray(vectors)


register_part("vector_index", VectorIndex)
