"""Helpers for artifact tests: re-sign a model directory after editing it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recoforge.artifacts.model_dir import manifest_checksum


def read_manifest(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "manifest.json").read_text())


def resign(directory: Path, edit: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Recompute every listed file's SHA-256 and the manifest checksum (after ``edit``)."""
    manifest = read_manifest(directory)
    if edit is not None:
        edit(manifest)
    for rel in list(manifest.get("files", {})):
        path = directory / rel
        if path.is_file() and ".." not in rel and not rel.startswith("/"):
            manifest["files"][rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def edit_arrays(directory: Path, edit: Callable[[dict[str, np.ndarray]], None],
                filename: str = "arrays.npz") -> None:
    """Rewrite an npz of the directory through ``edit`` and re-sign the manifests."""
    with np.load(directory / filename, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)
    (directory / filename).unlink()
    np.savez(directory / filename, **arrays)
    resign(directory)
