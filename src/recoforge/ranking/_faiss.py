"""FAISS side of :class:`recoforge.ranking.index.VectorIndex`: options, build, search, checks.

FAISS is optional (extra ``ann``); it is imported through
:func:`recoforge.errors.require` when one of these functions runs, never at import time.
Every index here uses the inner-product metric (cosine vectors arrive normalised).

HNSW for ``"dot"`` with ``ip_transform=True`` (the default) indexes each item v as
(v, sqrt(R^2 - |v|^2)), R the largest item norm, and each query q as (q, 0): inner products
are unchanged, and every item then has norm R, so the largest inner product is also the
nearest neighbour and the graph is built in a metric space (Bachrach et al., "Speeding up
the Xbox recommender system using a Euclidean transformation for inner-product spaces",
RecSys 2014); ``ip_transform=False`` indexes the raw vectors. Neither wins everywhere: on
the 1,000,000-vector benchmarks raw inner products recalled more at every ``ef_search``
tried (far more where norms vary, as the extra coordinate then dominates most items); on
smaller clustered sets and deeper lists the transform did
(benchmarks/results/vector_index.md).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from recoforge.errors import ArtifactError, ConfigError, require
from recoforge.threads import get_num_threads

#: options of each backend and their defaults (None: filled in at build)
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "exact": {},
    "hnsw": {"M": 16, "ef_construction": 100, "ef_search": 64, "ip_transform": True},
    "ivf": {"nlist": None, "nprobe": None, "seed": 0, "train_size": None},
}
#: the options that are search-time settings
SEARCH_OPTIONS = {"hnsw": ("ef_search",), "ivf": ("nprobe",), "exact": ()}


def positive_int(name: str, value: object, error: type[Exception] = ConfigError) -> int:
    """``value`` as an int, or ``error`` naming ``name`` unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise error(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_options(backend: str, options: dict[str, Any]) -> dict[str, Any]:
    """Defaults merged with ``options``; unknown names and bad values raise ConfigError."""
    unknown = sorted(set(options) - set(OPTION_DEFAULTS[backend]))
    if unknown:
        known = ", ".join(OPTION_DEFAULTS[backend]) or "none"
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for backend "
                          f"{backend!r} (known: {known})")
    merged = {**OPTION_DEFAULTS[backend], **options}
    for name, value in merged.items():
        if value is None and name in ("nlist", "nprobe", "train_size"):
            continue
        if name == "ip_transform":
            if not isinstance(value, (bool, np.bool_)):
                raise ConfigError(f"ip_transform must be True or False, got {value!r}")
            merged[name] = bool(value)
        elif name == "seed":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ConfigError(f"seed must be a non-negative integer, got {value!r}")
            merged[name] = int(value)
        else:
            merged[name] = positive_int(name, value)
    return merged


def faiss_module() -> Any:
    """The ``faiss`` module, or MissingDependencyError naming the ``ann`` extra."""
    return require("faiss", "ann")


def use_thread_setting(faiss: Any) -> None:
    """Make FAISS's OpenMP pool follow the one thread setting; set only when it differs."""
    wanted = get_num_threads()
    if faiss.omp_get_max_threads() != wanted:
        faiss.omp_set_num_threads(wanted)


def check_nprobe(nprobe: int, nlist: int) -> None:
    """ConfigError when more cells would be probed than exist."""
    if nprobe > nlist:
        raise ConfigError(f"nprobe={nprobe} exceeds nlist={nlist}")


def resolve_ivf_options(options: dict[str, Any], n: int) -> dict[str, Any]:
    """IVF options with their defaults filled in for ``n`` vectors; ConfigError if invalid.

    Defaults: ``nlist = min(round(sqrt(n)), n // 39)`` (at least 1: FAISS wants 39
    training points per cell), ``nprobe = min(16, nlist)``, ``train_size =
    min(n, 64 * nlist)``.
    """
    opts = dict(options)
    if opts["nlist"] is None:
        opts["nlist"] = max(1, min(round(math.sqrt(n)), n // 39))
    if opts["nlist"] > n:
        raise ConfigError(f"nlist={opts['nlist']} exceeds the {n} vectors to index")
    if opts["nprobe"] is None:
        opts["nprobe"] = min(16, opts["nlist"])
    check_nprobe(opts["nprobe"], opts["nlist"])
    if opts["train_size"] is None:
        opts["train_size"] = min(n, 64 * opts["nlist"])
    if not opts["nlist"] <= opts["train_size"] <= n:
        raise ConfigError(f"train_size must be between nlist={opts['nlist']} and the "
                          f"{n} vectors, got {opts['train_size']}")
    return opts


def with_norm_coordinate(data: np.ndarray) -> np.ndarray:
    """Items (v, sqrt(R^2 - |v|^2)) with R the largest norm: all of norm R. A new array."""
    squared = np.einsum("ij,ij->i", data, data, dtype=np.float64)
    extra = np.sqrt(np.maximum(squared.max() - squared, 0.0))
    return np.hstack([data, extra[:, None].astype(np.float32)])


def build_hnsw(data: np.ndarray, links: int, ef_construction: int, ef_search: int,
               norm_coordinate: bool) -> Any:
    """``IndexHNSWFlat`` over ``data`` (with :func:`with_norm_coordinate` if asked).

    Memory: about n * (4 d + 8 links + 8) bytes, plus a transient copy when augmenting.
    """
    faiss = faiss_module()
    use_thread_setting(faiss)
    if norm_coordinate:
        data = with_norm_coordinate(data)
    index = faiss.IndexHNSWFlat(data.shape[1], links, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = ef_construction
    index.hnsw.efSearch = ef_search
    index.add(data)
    return index


def build_ivf(data: np.ndarray, nlist: int, train_size: int, seed: int,
              spherical: bool) -> Any:
    """``IndexIVFFlat`` trained on ``train_size`` rows drawn under ``seed``.

    Memory: n * (4 d + 8) bytes for the lists, 8 n for the direct map (used to read
    vectors back for the exact fallback), nlist * d * 4 for the centroids.
    """
    faiss = faiss_module()
    use_thread_setting(faiss)
    n, dim = data.shape
    sample = np.sort(np.random.default_rng(seed).choice(n, size=train_size, replace=False))
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.spherical = spherical
    index.train(np.ascontiguousarray(data[sample]))
    index.add(data)
    index.make_direct_map()
    return index


def search(index: Any, backend: str, queries: np.ndarray, size: int,
           options: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(scores float32, labels int64)``, both (n, size); search settings passed per call.

    Queries get a zero coordinate when the index has the extra norm coordinate.
    """
    faiss = faiss_module()
    use_thread_setting(faiss)
    if index.d == queries.shape[1] + 1:
        queries = np.hstack([queries, np.zeros((len(queries), 1), dtype=np.float32)])
    if backend == "hnsw":
        params = faiss.SearchParametersHNSW(efSearch=options["ef_search"])
    else:
        params = faiss.SearchParametersIVF(nprobe=options["nprobe"])
    return index.search(queries, size, params=params)


def stored_vectors(index: Any, items: np.ndarray | None, dim: int) -> np.ndarray:
    """The indexed vectors (all, or rows ``items``; first ``dim`` columns), float32 copy."""
    if items is None:
        vectors = index.reconstruct_n(0, index.ntotal)
    else:
        vectors = index.reconstruct_batch(items.astype(np.int64))
    return np.ascontiguousarray(vectors[:, :dim], dtype=np.float32)


def serialize(index: Any) -> bytes:
    """The index as bytes (``faiss.serialize_index``)."""
    return faiss_module().serialize_index(index).tobytes()


def deserialize(blob: object, backend: str, n_items: int, dim: int,
                options: dict[str, Any]) -> Any:
    """Deserialise a FAISS index and check it against the saved metadata.

    ``dim`` is the dimension FAISS holds (one more than the vectors' for HNSW with the
    norm coordinate). Checks: the index type, inner-product metric, ``ntotal`` and ``d``;
    finite vectors and in-range graph links (hnsw); ``nlist``, finite centroids, list ids
    in range and list sizes adding up to ``ntotal`` (ivf). Cost O(size of the index).
    Raises :class:`~recoforge.errors.ArtifactError` on any mismatch.
    """
    faiss = faiss_module()
    where = f"vector index ({backend})"
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise ArtifactError(f"{where}: the FAISS blob must be bytes, got {type(blob).__name__}")
    try:
        loaded = faiss.deserialize_index(np.frombuffer(blob, dtype=np.uint8))
    except (RuntimeError, ValueError) as exc:
        lines = str(exc).strip().splitlines()
        raise ArtifactError(f"{where}: the FAISS blob does not deserialise "
                            f"({lines[0][:200] if lines else type(exc).__name__})") from None
    kind = faiss.IndexHNSWFlat if backend == "hnsw" else faiss.IndexIVFFlat
    if not isinstance(loaded, kind) or loaded.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise ArtifactError(f"{where}: the FAISS blob holds a {type(loaded).__name__} "
                            f"(metric {loaded.metric_type}), expected an inner-product "
                            f"{kind.__name__}")
    if (loaded.ntotal, loaded.d) != (n_items, dim):
        raise ArtifactError(f"{where}: the FAISS index holds {loaded.ntotal} vectors of "
                            f"dimension {loaded.d}, the metadata says {n_items} of "
                            f"dimension {dim}")
    problem = _hnsw_problem(faiss, loaded) if backend == "hnsw" \
        else _ivf_problem(faiss, loaded, options["nlist"])
    if problem:
        raise ArtifactError(f"{where}: {problem}")
    return loaded


def _hnsw_problem(faiss: Any, loaded: Any) -> str | None:
    n = loaded.ntotal
    storage = faiss.downcast_index(loaded.storage)
    if not isinstance(storage, faiss.IndexFlat) or storage.ntotal != n:
        return "the HNSW vector storage is missing or of the wrong size"
    if not np.isfinite(faiss.rev_swig_ptr(storage.get_xb(), n * loaded.d)).all():
        return "the FAISS vectors contain NaN or inf"
    links = faiss.vector_to_array(loaded.hnsw.neighbors)
    if links.size and (links.min() < -1 or links.max() >= n):
        return f"the HNSW graph links point outside the {n} vectors"
    return None


def _ivf_problem(faiss: Any, loaded: Any, nlist: int) -> str | None:
    if loaded.nlist != nlist:
        return f"the FAISS index has nlist={loaded.nlist}, the metadata says {nlist}"
    centroids = faiss.downcast_index(loaded.quantizer)
    if not isinstance(centroids, faiss.IndexFlat) or centroids.ntotal != nlist \
            or not np.isfinite(faiss.rev_swig_ptr(centroids.get_xb(), nlist * loaded.d)).all():
        return "the IVF centroids are missing or not finite"
    total = 0
    for cell in range(nlist):
        size = loaded.invlists.list_size(cell)
        total += size
        if size == 0:
            continue
        ids = faiss.rev_swig_ptr(loaded.invlists.get_ids(cell), size)
        if ids.min() < 0 or ids.max() >= loaded.ntotal:
            return f"IVF list {cell} holds ids outside the {loaded.ntotal} vectors"
    if total != loaded.ntotal:
        return f"the IVF lists hold {total} ids, the index says {loaded.ntotal}"
    if loaded.direct_map.type != faiss.DirectMap.Array:
        loaded.make_direct_map()
    return None
