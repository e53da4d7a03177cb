"""Save and load models as a directory: ``manifest.json`` + ``arrays.npz``, never pickle.

The learned state of a model is every public attribute ending in ``_``. Arrays, sparse
matrices, id vocabularies and feature matrices go to ``arrays.npz`` (read back with
``allow_pickle=False``); scalars go to the manifest; a nested model (``fallback_``) goes
to a sub-directory. The manifest records the model name, hyperparameters, library version,
data fingerprint, vocabulary sizes, the SHA-256 of every file and a checksum of itself.
Loading refuses anything that does not verify, and resolves the class only through the
model registry (never an import path read from the file).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recoforge._version import __version__
from recoforge.data.features import FeatureMatrix
from recoforge.data.ids import IdIndex
from recoforge.errors import ArtifactError

FORMAT = "recoforge-model"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"
_SCALARS = (bool, int, float, str, type(None))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _split_state(model: Any, directory: Path) -> tuple[dict, dict, dict]:
    """(scalars, arrays, kinds) of the model's learned attributes; saves nested models."""
    from recoforge.models.base import Recommender

    scalars: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for name, value in vars(model).items():
        if not name.endswith("_") or name.startswith("_"):
            continue
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, _SCALARS):
            scalars[name] = value
        elif isinstance(value, np.ndarray):
            if value.dtype.kind == "O":
                raise ArtifactError(f"cannot save object array {name} without pickle")
            arrays[name], kinds[name] = value, "array"
        elif sp.issparse(value):
            csr = sp.csr_matrix(value)
            arrays.update({f"{name}.data": csr.data, f"{name}.indices": csr.indices,
                           f"{name}.indptr": csr.indptr, f"{name}.shape": np.array(csr.shape)})
            kinds[name] = "csr"
        elif isinstance(value, IdIndex):
            arrays[f"{name}.ids"], kinds[name] = value.ids, f"ids:{value.name}"
        elif isinstance(value, FeatureMatrix):
            m = value.matrix
            arrays.update({f"{name}.data": m.data, f"{name}.indices": m.indices,
                           f"{name}.indptr": m.indptr, f"{name}.shape": np.array(m.shape),
                           f"{name}.names": value.names.astype(str)})
            kinds[name] = "features"
        elif isinstance(value, Recommender):
            _write(value, directory / name)
            kinds[name] = "model"
        else:
            raise ArtifactError(f"cannot save attribute {name} of type {type(value).__name__}")
    return scalars, arrays, kinds


def _write(model: Any, directory: Path) -> None:
    directory.mkdir(parents=True)
    scalars, arrays, kinds = _split_state(model, directory)
    np.savez(directory / ARRAYS, **arrays)
    files = {ARRAYS: _sha256(directory / ARRAYS)}
    for sub in (n for n, k in kinds.items() if k == "model"):
        files[f"{sub}/{MANIFEST}"] = _sha256(directory / sub / MANIFEST)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "model": model.name,
        "params": model.get_params(),
        "fitted_at": scalars.get("fitted_at_"),
        "data_fingerprint": scalars.get("data_fingerprint_"),
        "n_users": len(model.user_index_),
        "n_items": len(model.item_index_),
        "state": scalars,
        "kinds": kinds,
        "files": files,
    }
    manifest["manifest_sha256"] = _manifest_checksum(manifest)
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))


def save_model(model: Any, path: str | os.PathLike, overwrite: bool = False) -> None:
    """Write ``model`` to directory ``path`` atomically (temporary directory + rename)."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise ArtifactError(f"{target} exists; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write(model, tmp / "model")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp / "model", target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory} is not a model directory (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{path}: not a recoforge model manifest")
    if manifest.get("manifest_sha256") != _manifest_checksum(manifest):
        raise ArtifactError(f"{path}: manifest checksum mismatch (file was modified)")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format version {manifest.get('format_version')} is not "
                            f"supported by recoforge {__version__}")
    for name, digest in manifest["files"].items():
        file = directory / name
        if not file.is_file():
            raise ArtifactError(f"{directory}: missing file {name}")
        if _sha256(file) != digest:
            raise ArtifactError(f"{file}: checksum mismatch (file was modified or corrupted)")
    return manifest


def _restore(kind: str, name: str, arrays: Any, directory: Path) -> Any:
    if kind == "array":
        return arrays[name]
    if kind == "csr" or kind == "features":
        shape = tuple(int(v) for v in arrays[f"{name}.shape"])
        mat = sp.csr_matrix((arrays[f"{name}.data"], arrays[f"{name}.indices"],
                             arrays[f"{name}.indptr"]), shape=shape)
        return mat if kind == "csr" else FeatureMatrix(mat, arrays[f"{name}.names"])
    if kind.startswith("ids:"):
        return IdIndex(arrays[f"{name}.ids"], name=kind[4:])
    if kind == "model":
        return _load_dir(directory / name)
    raise ArtifactError(f"unknown state kind {kind!r} for {name}")


def _load_dir(directory: Path) -> Any:
    from recoforge.models.registry import model_class

    manifest = _read_manifest(directory)
    model = model_class(manifest["model"])(**manifest["params"])
    try:
        with np.load(directory / ARRAYS, allow_pickle=False) as arrays:
            for name, kind in manifest["kinds"].items():
                setattr(model, name, _restore(kind, name, arrays, directory))
    except (ValueError, KeyError, OSError) as exc:
        raise ArtifactError(f"{directory / ARRAYS}: unreadable ({exc})") from None
    for name, value in manifest["state"].items():
        setattr(model, name, value)
    return model


def load_model(path: str | os.PathLike) -> Any:
    """Load a model saved by :func:`save_model`, verifying every checksum."""
    return _load_dir(Path(path))
