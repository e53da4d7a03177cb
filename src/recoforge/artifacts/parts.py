"""Typed parts of a model directory: built-in kinds and the registry of extra kinds.

Built-in kinds: ``array`` (one ndarray), ``csr`` (data/indices/indptr/shape), ``ids``
(:class:`~recoforge.data.ids.IdIndex`), ``features``
(:class:`~recoforge.data.features.FeatureMatrix`) and ``model`` (a nested directory,
handled by :mod:`recoforge.artifacts.model_dir`); scalars live in the manifest.

Any other class can be saved once registered with :func:`register_part`; it implements

- ``to_parts(self) -> (meta, arrays, blobs)``: a JSON-able dict, a dict of ndarrays
  (numeric or fixed-width text; stored in ``arrays.npz``) and a dict of bytes (each
  written to its own checksummed file);
- ``@classmethod from_parts(cls, meta, arrays, blobs)``: rebuilds the object and must
  validate its input (raise ``ValueError`` or :class:`ArtifactError`): everything it
  receives comes from an untrusted directory.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from recoforge.data.ids import IdIndex
from recoforge.errors import ArtifactError, MissingDependencyError, RecoforgeError

PartPayload = tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]
BUILTIN_KINDS = frozenset({"scalar", "array", "csr", "ids", "features", "model"})
#: library modules that register part kinds, imported when a kind is not yet known
PART_PROVIDERS = ("recoforge.ranking.index", "recoforge.data.features",
                  "recoforge.data.encoders", "recoforge.models.neural.state")
KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
_ARRAY_KINDS = "biufU"
_REGISTRY: dict[str, type] = {}


def _feature_matrix() -> type:
    # imported late: recoforge.data.features registers its encoder through this module
    from recoforge.data.features import FeatureMatrix

    return FeatureMatrix


def register_part(kind: str, cls: type) -> type:
    """Let instances of ``cls`` be saved as parts of kind ``kind`` (returns ``cls``)."""
    if not isinstance(kind, str) or not re.fullmatch(r"[a-z][a-z0-9_]{0,63}", kind):
        raise ArtifactError(f"part kind {kind!r} must be a lowercase name")
    if kind in BUILTIN_KINDS:
        raise ArtifactError(f"part kind {kind!r} is built in")
    for method in ("to_parts", "from_parts"):
        if not callable(getattr(cls, method, None)):
            raise ArtifactError(f"{cls.__name__} cannot be a part: it has no {method}()")
    if _REGISTRY.get(kind, cls) is not cls:
        raise ArtifactError(f"part kind {kind!r} is already registered for "
                            f"{_REGISTRY[kind].__name__}")
    _REGISTRY[kind] = cls
    return cls


def registered_class(kind: str) -> type | None:
    """The class registered for ``kind``, importing the library's providers once."""
    if kind not in _REGISTRY:
        for module in PART_PROVIDERS:
            try:
                importlib.import_module(module)
            except (ImportError, MissingDependencyError):
                continue
    return _REGISTRY.get(kind)


def kind_of(value: Any) -> str | None:
    """The part kind that saves ``value`` (None when no kind does)."""
    if isinstance(value, np.ndarray):
        return "array"
    if sp.issparse(value):
        return "csr"
    if isinstance(value, IdIndex):
        return "ids"
    if isinstance(value, _feature_matrix()):
        return "features"
    for kind, cls in _REGISTRY.items():
        if type(value) is cls:
            return kind
    for kind, cls in _REGISTRY.items():
        if isinstance(value, cls):
            return kind
    return None


# ---------------------------------------------------------------------- encoding
def csr_arrays(matrix: Any) -> dict[str, np.ndarray]:
    csr = sp.csr_matrix(matrix)
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()
    return {"data": csr.data, "indices": csr.indices, "indptr": csr.indptr,
            "shape": np.asarray(csr.shape, dtype=np.int64)}


def encode(kind: str, value: Any, name: str) -> PartPayload:
    """(meta, arrays, blobs) of one part."""
    if kind == "array":
        return {}, {"values": value}, {}
    if kind == "csr":
        return {}, csr_arrays(value), {}
    if kind == "ids":
        return {"name": value.name}, {"ids": np.asarray(value.ids)}, {}
    if kind == "features":
        return {}, {**csr_arrays(value.matrix), "names": value.names.astype(str)}, {}
    payload = value.to_parts()
    if not (isinstance(payload, tuple) and len(payload) == 3
            and all(isinstance(p, Mapping) for p in payload)):
        raise ArtifactError(f"{type(value).__name__}.to_parts() for {name} must return "
                            f"(meta dict, arrays dict, blobs dict)")
    meta, arrays, blobs = (dict(p) for p in payload)
    for key, blob in blobs.items():
        if not isinstance(blob, bytes | bytearray | memoryview):
            raise ArtifactError(f"{name}: blob {key!r} is {type(blob).__name__}, not bytes")
    return meta, arrays, blobs


def check_key(key: object, name: str) -> str:
    if not isinstance(key, str) or not KEY.fullmatch(key):
        raise ArtifactError(f"part {name}: bad array or blob key {key!r}")
    return key


def check_array(array: Any, label: str) -> np.ndarray:
    """An ndarray of plain numeric or text dtype (no objects, no structured records)."""
    if not isinstance(array, np.ndarray):
        raise ArtifactError(f"{label} is {type(array).__name__}, not an ndarray")
    if array.dtype.kind not in _ARRAY_KINDS or array.dtype.fields is not None \
            or array.dtype.hasobject:
        raise ArtifactError(f"{label} has dtype {array.dtype}; only numeric and text "
                            f"arrays can be saved (never pickle)")
    return array


# ---------------------------------------------------------------------- decoding
def decode(kind: str, meta: dict[str, Any], arrays: dict[str, np.ndarray],
           blobs: dict[str, bytes], label: str) -> Any:
    """Rebuild one part, validating its structure; raises :class:`ArtifactError`."""
    try:
        if kind == "array":
            return arrays["values"]
        if kind == "csr":
            return build_csr(arrays, label)
        if kind == "ids":
            return build_ids(meta, arrays, label)
        if kind == "features":
            names = arrays["names"]
            if names.dtype.kind != "U" or names.ndim != 1:
                raise ArtifactError(f"{label}: feature names must be a text vector")
            return _feature_matrix()(build_csr(arrays, label), names)
        cls = registered_class(kind)
        if cls is None:
            raise ArtifactError(f"{label}: unknown part kind {kind!r} (the module that "
                                f"registers it is not installed or not imported)")
        return cls.from_parts(meta, arrays, blobs)  # type: ignore[attr-defined]
    except KeyError as exc:
        raise ArtifactError(f"{label}: missing array {exc}") from None
    except ArtifactError:
        raise
    except (RecoforgeError, ValueError, TypeError, IndexError, OverflowError) as exc:
        raise ArtifactError(f"{label}: invalid {kind} part ({exc})") from None


def build_ids(meta: dict[str, Any], arrays: dict[str, np.ndarray], label: str) -> IdIndex:
    ids = arrays["ids"]
    vocab_name = meta.get("name")
    if not isinstance(vocab_name, str) or len(vocab_name) > 64:
        raise ArtifactError(f"{label}: vocabulary name must be a short string")
    if ids.ndim != 1 or not (ids.dtype == np.int64 or ids.dtype.kind == "U"):
        raise ArtifactError(f"{label}: ids must be a vector of int64 or text, "
                            f"not {ids.dtype} {ids.shape}")
    return IdIndex(ids, name=vocab_name)


def build_csr(arrays: dict[str, np.ndarray], label: str) -> sp.csr_matrix:
    """A CSR matrix from its arrays after checking every structural invariant.

    Checks: integer index arrays, shape of two non-negative ints, ``indptr`` of length
    rows + 1 starting at 0, non-decreasing, ending at nnz; column indices in range and
    strictly increasing within each row (sorted, no duplicates); float data of length nnz.
    """
    data, indices, indptr, shape = (arrays[k] for k in ("data", "indices", "indptr", "shape"))
    if shape.shape != (2,) or shape.dtype.kind not in "iu" or (shape < 0).any() \
            or (shape > np.iinfo(np.int64).max // 2).any():
        raise ArtifactError(f"{label}: bad CSR shape {shape.tolist()}")
    n_rows, n_cols = (int(v) for v in shape)
    for key, arr in (("indices", indices), ("indptr", indptr)):
        if arr.ndim != 1 or arr.dtype not in (np.int32, np.int64):
            raise ArtifactError(f"{label}: CSR {key} must be an int32/int64 vector")
    if data.ndim != 1 or data.dtype.kind != "f":
        raise ArtifactError(f"{label}: CSR data must be a float vector, not {data.dtype}")
    nnz = len(indices)
    if len(data) != nnz or len(indptr) != n_rows + 1:
        raise ArtifactError(f"{label}: CSR lengths disagree (data {len(data)}, indices "
                            f"{nnz}, indptr {len(indptr)} for {n_rows} rows)")
    if indptr[0] != 0 or indptr[-1] != nnz or (np.diff(indptr) < 0).any():
        raise ArtifactError(f"{label}: CSR indptr is not a monotone 0..{nnz} sequence")
    if nnz and (indices.min() < 0 or indices.max() >= n_cols):
        raise ArtifactError(f"{label}: CSR column index {int(indices.max())} outside "
                            f"0..{n_cols - 1}")
    steps = np.diff(indices.astype(np.int64))
    row_starts = indptr[1:-1].astype(np.int64)
    within = np.ones(len(steps), dtype=bool)
    within[row_starts[(row_starts > 0) & (row_starts < nnz)] - 1] = False
    if (steps[within] <= 0).any():
        raise ArtifactError(f"{label}: CSR column indices are not sorted (or repeat) "
                            f"within a row")
    matrix = sp.csr_matrix((data, indices, indptr), shape=(n_rows, n_cols), copy=False)
    matrix.check_format(full_check=True)
    matrix.has_sorted_indices = True
    return matrix
