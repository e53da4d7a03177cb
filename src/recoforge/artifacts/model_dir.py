"""One model directory: the manifest, the parts, and their validation on load."""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp

from recoforge._version import __version__
from recoforge.artifacts import parts as P
from recoforge.artifacts.state import (
    Rule,
    ShapeChecker,
    check_state_name,
    declared_state,
)
from recoforge.artifacts.storage import (
    FORMAT,
    MANIFEST,
    MAX_MANIFEST_BYTES,
    DirReader,
    check_relative_path,
    write_file,
)
from recoforge.data.features import FeatureMatrix
from recoforge.data.history import InMemoryHistory
from recoforge.data.ids import IdIndex
from recoforge.errors import ArtifactError, RecoforgeError

FORMAT_VERSION = 2
ARRAYS = "arrays.npz"
HISTORY = "history.npz"
MAX_NESTING = 4
_SCALARS = (bool, int, float, str, type(None))
_NPZ_ERRORS = (ValueError, KeyError, OSError, EOFError, zipfile.BadZipFile, TypeError)


def sha256_of(fh: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: fh.read(1 << 20), b""):
        digest.update(chunk)
    return digest.hexdigest()


def manifest_checksum(manifest: dict[str, Any]) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def _major(version: object, where: str) -> int:
    head = str(version).split(".", 1)[0]
    if not isinstance(version, str) or not head.isdigit():
        raise ArtifactError(f"{where}: unreadable library version {version!r}")
    return int(head)


# ---------------------------------------------------------------------- writing
def write_model(model: Any, directory: Path, history: sp.spmatrix | None,
                skip: frozenset[str] = frozenset()) -> None:
    """Write ``model`` (and ``history`` when given) into the existing empty ``directory``;
    optional state named in ``skip`` (catalogue data such as titles) is left out."""
    from recoforge.models.base import Recommender

    cls = type(model)
    rules = declared_state(cls)
    checker = ShapeChecker(len(model.user_index_), len(model.item_index_), str(directory))
    scalars: dict[str, Any] = {}
    part_entries: dict[str, dict[str, Any]] = {}
    arrays: dict[str, np.ndarray] = {}
    files: dict[str, str] = {}
    for name, value in sorted(vars(model).items()):
        if not name.endswith("_") or name.startswith("_") or name == "train_matrix_" \
                or name in skip:
            continue  # the history is saved (on request) as its own part, not as state
        rule = rules.get(name)
        if rule is None:
            raise ArtifactError(f"cannot save {cls.__name__}.{name}: it is not declared in "
                                f"{cls.__name__}.state_spec (see recoforge.artifacts.state)")
        value = value.item() if isinstance(value, np.generic) else value
        validate(name, value, rule, checker)
        if isinstance(value, _SCALARS):
            scalars[name] = value
        elif isinstance(value, Recommender):
            (directory / name).mkdir()
            write_model(value, directory / name, None)
            files[f"{name}/{MANIFEST}"] = _file_digest(directory / name / MANIFEST)
            part_entries[name] = {"kind": "model"}
        else:
            part_entries[name] = _write_part(name, value, directory, arrays, files)
    write_file(directory / ARRAYS, lambda fh: _savez(fh, arrays))
    files[ARRAYS] = _file_digest(directory / ARRAYS)
    manifest = _manifest(model, scalars, part_entries, files)
    if history is not None:
        write_file(directory / HISTORY, lambda fh: _savez(fh, P.csr_arrays(history)))
        files[HISTORY] = _file_digest(directory / HISTORY)
        manifest["history"] = {"shape": list(history.shape), "nnz": int(history.nnz)}
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    try:
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
    except ValueError:
        raise ArtifactError(f"cannot save {cls.__name__}: a scalar state value is not "
                            f"finite") from None
    write_file(directory / MANIFEST, text.encode())


def _write_part(name: str, value: Any, directory: Path, arrays: dict[str, np.ndarray],
                files: dict[str, str]) -> dict[str, Any]:
    kind = P.kind_of(value)
    if kind is None:
        raise ArtifactError(f"cannot save attribute {name} of type {type(value).__name__} "
                            f"(register it with recoforge.artifacts.register_part)")
    meta, part_arrays, blobs = P.encode(kind, value, name)
    for key, array in part_arrays.items():
        arrays[f"{name}.{P.check_key(key, name)}"] = P.check_array(array, f"{name}.{key}")
    blob_files = {}
    for key, blob in blobs.items():
        filename = f"{name}.{P.check_key(key, name)}"
        write_file(directory / filename, bytes(blob))
        files[filename] = _file_digest(directory / filename)
        blob_files[key] = filename
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ArtifactError(f"{name}: part metadata is not plain JSON ({exc})") from None
    return {"kind": kind, "meta": meta, "arrays": sorted(part_arrays), "blobs": blob_files}


def _savez(fh: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    np.savez(fh, allow_pickle=False, **arrays)


def _file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return sha256_of(fh)


def _manifest(model: Any, scalars: dict[str, Any], part_entries: dict[str, Any],
              files: dict[str, str]) -> dict[str, Any]:
    capabilities = getattr(model, "capabilities", None)
    try:
        caps = capabilities() if callable(capabilities) else None
        json.dumps(caps, allow_nan=False)
    except (TypeError, ValueError):
        caps = None
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_version": __version__,
        "model": model.name,
        "params": model.get_params(),
        "capabilities": caps,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "fitted_at": scalars.get("fitted_at_"),
        "data_fingerprint": scalars.get("data_fingerprint_"),
        "n_users": len(model.user_index_),
        "n_items": len(model.item_index_),
        "state": scalars,
        "parts": part_entries,
        "files": files,
    }


# ---------------------------------------------------------------------- validation
def validate(name: str, value: Any, rule: Rule, checker: ShapeChecker) -> None:
    """Check one state value against its declared rule; raises :class:`ArtifactError`."""
    from recoforge.models.base import Recommender

    if value is None:
        if rule.required:
            raise checker.fail(name, "is required but missing (None)")
        return
    if isinstance(value, _SCALARS):
        checker.check_scalar(name, value, rule)
        return
    expected = {"ids": IdIndex, "model": Recommender}.get(rule.kind)
    if expected is not None and not isinstance(value, expected):
        raise checker.fail(name, f"must be {rule.kind}, not {type(value).__name__}")
    if rule.kind == "array":
        if isinstance(value, FeatureMatrix):
            value = value.matrix
        if isinstance(value, np.ndarray):
            checker.check_shape(name, value.shape, rule)
            checker.check_values(name, value, rule)
        elif sp.issparse(value):
            checker.check_shape(name, value.shape, rule)
            checker.check_values(name, sp.csr_matrix(value).data, rule)
        else:
            raise checker.fail(name, f"must be an array, not {type(value).__name__}")
    elif rule.kind.startswith("scalar:"):
        raise checker.fail(name, f"must be a scalar, not {type(value).__name__}")


# ---------------------------------------------------------------------- reading
def read_manifest(reader: DirReader, expected_digest: str | None = None) -> dict[str, Any]:
    """The verified manifest of the directory (types, format, checksums, version)."""
    where = f"{reader.where}/{MANIFEST}"
    with reader.open_file(MANIFEST) as fh:
        raw = fh.read(MAX_MANIFEST_BYTES + 1)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise ArtifactError(f"{where}: too large for a manifest")
    if expected_digest is not None and hashlib.sha256(raw).hexdigest() != expected_digest:
        raise ArtifactError(f"{where}: checksum mismatch (file was modified or corrupted)")
    try:
        manifest = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ArtifactError(f"{where}: not a recoforge model manifest")
    if manifest.get("manifest_sha256") != manifest_checksum(manifest):
        raise ArtifactError(f"{where}: manifest checksum mismatch (file was modified)")
    saved = manifest.get("library_version")
    if _major(saved, where) > _major(__version__, where):
        raise ArtifactError(f"{where}: saved by recoforge {saved}, a newer major version "
                            f"than this recoforge {__version__}; upgrade recoforge to load it")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{where}: model format version {manifest.get('format_version')!r}"
                            f" is not supported by recoforge {__version__} (reads version "
                            f"{FORMAT_VERSION}); re-save the model with this version")
    for key, kind in (("model", str), ("params", dict), ("state", dict), ("parts", dict),
                      ("files", dict), ("n_users", int), ("n_items", int)):
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise ArtifactError(f"{where}: field {key!r} is missing or not a {kind.__name__}")
    for rel, digest in manifest["files"].items():
        check_relative_path(rel, where)
        if not isinstance(digest, str) or len(digest) != 64:
            raise ArtifactError(f"{where}: bad checksum entry for {rel!r}")
    return manifest


class _Files:
    """Opens files listed in a manifest, verifying each checksum on the same handle."""

    def __init__(self, reader: DirReader, listed: dict[str, str]) -> None:
        self.reader, self.listed = reader, listed
        self.used: set[str] = set()

    def open(self, rel: str) -> BinaryIO:
        if rel not in self.listed:
            raise ArtifactError(f"{self.reader.where}: {rel} is not listed in the manifest")
        fh = self.reader.open_file(rel)
        if sha256_of(fh) != self.listed[rel]:
            fh.close()
            raise ArtifactError(f"{self.reader.where}/{rel}: checksum mismatch (file was "
                                f"modified or corrupted)")
        fh.seek(0)
        self.used.add(rel)
        return fh

    def npz(self, rel: str) -> dict[str, np.ndarray]:
        with self.open(rel) as fh:
            try:
                with np.load(fh, allow_pickle=False) as npz:
                    return {key: P.check_array(npz[key], f"{rel}:{key}") for key in npz.files}
            except _NPZ_ERRORS as exc:
                raise ArtifactError(f"{self.reader.where}/{rel}: unreadable "
                                    f"({type(exc).__name__}: {exc})") from None

    def blob(self, rel: str) -> bytes:
        with self.open(rel) as fh:
            return fh.read()


def read_model(reader: DirReader, depth: int = 0, expected_digest: str | None = None
               ) -> tuple[Any, sp.csr_matrix | None]:
    """(model, saved history or None) from a directory; validates every part."""
    from recoforge.models.registry import model_class

    manifest = read_manifest(reader, expected_digest)
    where = reader.where
    try:
        cls = model_class(manifest["model"])
        model = cls(**manifest["params"])
    except (RecoforgeError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: model {manifest['model']!r} with the saved "
                            f"parameters cannot be built ({exc})") from None
    files = _Files(reader, manifest["files"])
    arrays = files.npz(ARRAYS)
    parts = manifest["parts"]
    rules = declared_state(cls)
    vocabularies = [_part_value(n, parts, arrays, files, reader, depth) for n in
                    ("user_index_", "item_index_")]
    sizes = [len(v) if isinstance(v, IdIndex) else -1 for v in vocabularies]
    if sizes != [manifest["n_users"], manifest["n_items"]]:
        raise ArtifactError(f"{where}: vocabularies hold {sizes[0]} users and {sizes[1]} "
                            f"items but the manifest says {manifest['n_users']} and "
                            f"{manifest['n_items']}")
    checker = ShapeChecker(sizes[0], sizes[1], where)
    names = sorted(set(parts) | set(manifest["state"]))
    for name in names:
        check_state_name(cls, name)
        if name in parts and name in manifest["state"]:
            raise ArtifactError(f"{where}: {name} is both a scalar and a part")
        rule = rules.get(name)
        if rule is None:
            raise ArtifactError(f"{where}: {name} is not state of model {cls.name!r}")
        value = (_part_value(name, parts, arrays, files, reader, depth) if name in parts
                 else manifest["state"][name])
        validate(name, value, rule, checker)
        setattr(model, name, value)
    missing = sorted(n for n, r in rules.items() if r.required and n not in names)
    if missing:
        raise ArtifactError(f"{where}: state {', '.join(missing)} of model {cls.name!r} is "
                            f"missing")
    _run_model_check(model, where)
    history = _read_history(manifest, files, sizes) if "history" in manifest else None
    unused = sorted(set(manifest["files"]) - files.used)
    if unused:
        raise ArtifactError(f"{where}: manifest lists files no part uses: {unused[:3]}")
    return model, history


def _part_value(name: str, parts: dict[str, Any], arrays: dict[str, np.ndarray],
                files: _Files, reader: DirReader, depth: int) -> Any:
    entry = parts.get(name)
    if not isinstance(entry, dict) or not isinstance(entry.get("kind"), str):
        raise ArtifactError(f"{reader.where}: part {name} is missing or malformed")
    kind = entry["kind"]
    if kind == "model":
        if depth >= MAX_NESTING:
            raise ArtifactError(f"{reader.where}: models nested too deeply")
        digest = files.listed.get(f"{name}/{MANIFEST}")
        if digest is None:
            raise ArtifactError(f"{reader.where}: nested model {name} has no checksum")
        files.used.add(f"{name}/{MANIFEST}")
        with reader.subdir(name) as sub:
            return read_model(sub, depth + 1, digest)[0]
    meta, keys, blobs = entry.get("meta", {}), entry.get("arrays", []), entry.get("blobs", {})
    if not isinstance(meta, dict) or not isinstance(keys, list) or not isinstance(blobs, dict):
        raise ArtifactError(f"{reader.where}: part {name} is malformed")
    part_arrays = {}
    for key in keys:
        stored = f"{name}.{P.check_key(key, name)}"
        if stored not in arrays:
            raise ArtifactError(f"{reader.where}: part {name} lacks array {key!r}")
        part_arrays[key] = arrays[stored]
    blob_bytes = {P.check_key(key, name): files.blob(rel) for key, rel in blobs.items()}
    return P.decode(kind, meta, part_arrays, blob_bytes, f"{reader.where}: {name}")


def _run_model_check(model: Any, where: str) -> None:
    check = getattr(model, "_check_state", None)
    if not callable(check):
        return
    try:
        check()
    except ArtifactError as exc:
        raise ArtifactError(f"{where}: {exc}") from None
    except (ValueError, IndexError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{where}: invalid state for {model.name} ({exc})") from None


def _read_history(manifest: dict[str, Any], files: _Files, sizes: list[int]) -> sp.csr_matrix:
    where = f"{files.reader.where}/{HISTORY}"
    matrix = P.build_csr(files.npz(HISTORY), where)
    check_history_shape(matrix, sizes, where)
    return matrix


def check_history_shape(matrix: Any, sizes: list[int], where: str) -> InMemoryHistory:
    """An :class:`InMemoryHistory` of ``matrix`` if it is (n_users, n_items) and finite."""
    if not sp.issparse(matrix) or tuple(matrix.shape) != tuple(sizes):
        shape = getattr(matrix, "shape", type(matrix).__name__)
        raise ArtifactError(f"{where}: history has shape {shape}, the model needs "
                            f"{tuple(sizes)} (users x items)")
    try:
        return InMemoryHistory(matrix)
    except RecoforgeError as exc:
        raise ArtifactError(f"{where}: {exc}") from None

