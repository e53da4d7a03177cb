"""Tampered model directories fail to load with ArtifactError (issue 9, items 3-4).

Every mutation re-signs the manifest (file checksums and its own), so what is tested is
the validation of parts against the vocabularies and rules, not the checksums.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import recoforge as rf
from recoforge.artifacts import load_model
from recoforge.artifacts.state import declared_state
from recoforge.errors import ArtifactError
from recoforge.models.registry import model_class
from tests.artifacts.helpers import edit_arrays, read_manifest, resign
from tests.conformance.specs import SPECS, taste_data

FIRST_SPEC = {spec.name: spec for spec in reversed(SPECS)}
#: integer state with no upper bound (counts): only its shape is checked
UNBOUNDED_INTS = {"counts_", "item_counts_"}  # event counts: any size is legitimate
Mutation = Callable[[dict[str, np.ndarray]], None]


@pytest.fixture(scope="module")
def train():
    return taste_data(seed=0)[0]


@pytest.fixture(scope="module", params=rf.available_models())
def saved(request, train, tmp_path_factory) -> tuple[str, Path]:
    spec = FIRST_SPEC[request.param]
    model = rf.create(spec.name, **spec.params).fit(train)
    path = tmp_path_factory.mktemp(spec.name) / "m"
    model.save(str(path), include_history=True)
    return spec.name, path


def _set(key: str, value: np.ndarray) -> Mutation:
    return lambda arrays: arrays.__setitem__(key, value)


def _int_mutations(name: str, key: str, arr: np.ndarray) -> list[tuple[str, Mutation]]:
    out = [(f"{name} truncated", _set(key, arr[:-1]))] if arr.size else []  # else a no-op
    if name not in UNBOUNDED_INTS and arr.size:
        big = arr.copy()
        big.flat[int(np.argmax(big))] = 10**6
        out.append((f"{name} value 10**6", _set(key, big)))
    return out


def _csr_mutations(name: str, arrays: dict[str, np.ndarray]) -> list[tuple[str, Mutation]]:
    data, indices, indptr, shape = (arrays[f"{name}.{k}"] for k in
                                    ("data", "indices", "indptr", "shape"))
    out = [(f"{name} indices past the columns", _set(f"{name}.indices", indices + shape[1])),
           (f"{name} one row more", lambda a: a.update({
               f"{name}.shape": shape + np.array([1, 0]),
               f"{name}.indptr": np.append(indptr, indptr[-1])})),
           (f"{name} indptr past nnz", _set(f"{name}.indptr", indptr + (indptr > 0) * 10**6))]
    if len(indices):
        negative = indices.copy()
        negative[0] = -1
        out.append((f"{name} negative index", _set(f"{name}.indices", negative)))
        out.append((f"{name} data NaN", _set(f"{name}.data", np.where(
            np.arange(len(data)) == 0, np.nan, data).astype(data.dtype))))
    rows = np.flatnonzero(np.diff(indptr) >= 2)
    if len(rows):
        start = indptr[rows[0]]
        unsorted = indices.copy()
        unsorted[start], unsorted[start + 1] = indices[start + 1], indices[start]
        out.append((f"{name} unsorted row", _set(f"{name}.indices", unsorted)))
    return out


def _mutations(model_name: str, path: Path) -> list[tuple[str, Mutation]]:
    """Every integer array, CSR index part, vocabulary and (checked) float array."""
    rules = declared_state(model_class(model_name))
    with np.load(path / "arrays.npz", allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    out: list[tuple[str, Mutation]] = []
    for name, entry in read_manifest(path)["parts"].items():
        kind = entry["kind"]
        if kind == "array":
            key = f"{name}.values"
            arr = arrays[key]
            if arr.dtype.kind in "iu":
                out += _int_mutations(name, key, arr)
            elif arr.dtype.kind == "f" and arr.size and "nonfinite" not in rules[name].qualifiers:
                bad = arr.copy()
                bad.flat[0] = np.nan
                out.append((f"{name} NaN", _set(key, bad)))
                if arr.ndim and rules[name].axes[0] in ("users", "items"):
                    out.append((f"{name} one row short", _set(key, arr[:-1])))
        elif kind in ("csr", "features"):
            out += _csr_mutations(name, arrays)
        elif kind == "ids":
            ids = arrays[f"{name}.ids"]
            duplicated = ids.copy()
            duplicated[1] = ids[0]
            out += [(f"{name} shortened", _set(f"{name}.ids", ids[:-1])),
                    (f"{name} duplicate id", _set(f"{name}.ids", duplicated))]
    return out


def _refused(path: Path, work: Path, label: str, edit: Callable[[Path], None]) -> str | None:
    """None if the edited copy fails to load with ArtifactError, else what happened."""
    copy = work / label.replace(" ", "_").replace("*", "x")
    shutil.copytree(path, copy)
    edit(copy)
    try:
        load_model(copy)
    except ArtifactError:
        return None
    except Exception as exc:  # noqa: BLE001 - the point is to report it
        return f"{label}: {type(exc).__name__}: {exc}"
    return f"{label}: loaded"


def test_every_array_and_index_part_is_validated(saved, tmp_path: Path):
    model_name, path = saved
    mutations = _mutations(model_name, path)
    labels = [label for label, _ in mutations]
    assert "user_index_ shortened" in labels and "item_index_ shortened" in labels
    problems = [_refused(path, tmp_path, label, lambda d, m=mutate: edit_arrays(d, m))
                for label, mutate in mutations]
    history = _csr_mutations("h", {f"h.{k}": v for k, v in np.load(
        path / "history.npz", allow_pickle=False).items()})
    for label, mutate in history:
        def edit(d: Path, m: Mutation = mutate) -> None:
            edit_arrays(d, lambda a: (a.update({f"h.{k}": a.pop(k) for k in list(a)}), m(a),
                                      a.update({k[2:]: a.pop(k) for k in list(a)})),
                        filename="history.npz")
        problems.append(_refused(path, tmp_path, f"history {label}", edit))
    assert [p for p in problems if p] == []


def test_relabelled_as_another_model(saved, tmp_path: Path):
    model_name, path = saved
    for other in ("ease", "item_knn", "popularity"):
        if other == model_name:
            continue
        def edit(d: Path, o: str = other) -> None:
            resign(d, lambda m: m.update(model=o, params=dict(FIRST_SPEC[o].params)))
        assert _refused(path, tmp_path, f"as {other}", edit) is None


@pytest.fixture(scope="module")
def knn_dir(train, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("knn") / "m"
    rf.create("item_knn").fit(train, fallback="popularity").save(str(path),
                                                                 include_history=True)
    return path


def _manifest_edit(change: Callable[[dict], None]) -> Callable[[Path], None]:
    return lambda d: resign(d, change)


MANIFEST_ATTACKS: dict[str, Callable[[Path], None]] = {
    "files ../../x": _manifest_edit(lambda m: m["files"].update({"../../x": "0" * 64})),
    "files /etc/passwd": _manifest_edit(lambda m: m["files"].update({"/etc/passwd": "0" * 64})),
    "nested model path": _manifest_edit(lambda m: m["files"].update(
        {"fallback_/../../manifest.json": m["files"].pop("fallback_/manifest.json")})),
    "part named ../evil_": _manifest_edit(lambda m: m["parts"].update(
        {"../evil_": m["parts"].pop("fallback_")})),
    "state __class__": _manifest_edit(lambda m: m["state"].update(__class__="x")),
    "state __dict__": _manifest_edit(lambda m: m["state"].update(__dict__=1)),
    "state without underscore": _manifest_edit(lambda m: m["state"].update(foo=1)),
    "state is a method": _manifest_edit(lambda m: m["state"].update(recommend=1)),
    "state is a property": _manifest_edit(lambda m: m["state"].update(is_fitted=1)),
    "state is the history property": _manifest_edit(lambda m: m["state"].update(
        train_matrix_=1)),
    "state undeclared": _manifest_edit(lambda m: m["state"].update(surprise_=1)),
    "state wrong type": _manifest_edit(lambda m: m["state"].update(rating_min_="low")),
    "state list": _manifest_edit(lambda m: m["state"].update(rating_min_=[1, 2])),
    "scalar in place of a part": _manifest_edit(lambda m: (
        m["parts"].pop("similarity_"), m["state"].update(similarity_=1.0))),
    "required part missing": _manifest_edit(lambda m: m["parts"].pop("similarity_")),
    "part kind changed": _manifest_edit(lambda m: m["parts"]["similarity_"].update(
        kind="array")),
    "no files key": _manifest_edit(lambda m: m.pop("files")),
    "no parts key": _manifest_edit(lambda m: m.pop("parts")),
    "unknown model": _manifest_edit(lambda m: m.update(model="no_such_model")),
    "unknown parameter": _manifest_edit(lambda m: m["params"].update(bogus=1)),
    "n_items mismatch": _manifest_edit(lambda m: m.update(n_items=m["n_items"] - 1)),
    "old format version": _manifest_edit(lambda m: m.update(format_version=1)),
    "unreadable version": _manifest_edit(lambda m: m.update(library_version="x.y")),
    "truncated arrays.npz": lambda d: (os.truncate(d / "arrays.npz", 100), resign(d)),
    "empty arrays.npz": lambda d: ((d / "arrays.npz").write_bytes(b""), resign(d)),
    "arrays.npz symlink": lambda d: (shutil.move(d / "arrays.npz", d.parent / "outside.npz"),
                                     (d / "arrays.npz").symlink_to(d.parent / "outside.npz")),
    "arrays.npz is a directory": lambda d: ((d / "arrays.npz").unlink(),
                                            (d / "arrays.npz").mkdir()),
    "nested manifest swapped": lambda d: shutil.copy(d / "manifest.json",
                                                     d / "fallback_" / "manifest.json"),
    "manifest not JSON": lambda d: (d / "manifest.json").write_text("{nope"),
    "manifest a list": lambda d: (d / "manifest.json").write_text("[1, 2]"),
    "manifest deeply nested": lambda d: (d / "manifest.json").write_text(
        "[" * 100_000 + "]" * 100_000),
    "manifest missing": lambda d: (d / "manifest.json").unlink(),
    "object array": lambda d: edit_arrays(d, lambda a: a.update(
        {"similarity_.data": a["similarity_.data"].astype(object)})),
    "structured array": lambda d: edit_arrays(d, lambda a: a.update(
        {"item_means_.values": np.zeros(len(a["item_means_.values"]),
                                        dtype=[("x", "f8")])})),
    "text in place of floats": lambda d: edit_arrays(d, lambda a: a.update(
        {"item_means_.values": a["item_means_.values"].astype(str)})),
}


@pytest.mark.parametrize("attack", sorted(MANIFEST_ATTACKS))
def test_untrusted_manifest_is_refused(knn_dir: Path, tmp_path: Path, attack: str):
    assert load_model(knn_dir).name == "item_knn"  # the untouched copy loads
    assert _refused(knn_dir, tmp_path, attack, MANIFEST_ATTACKS[attack]) is None


def test_refusals_name_the_problem(knn_dir: Path, tmp_path: Path):
    copy = tmp_path / "m"
    shutil.copytree(knn_dir, copy)
    resign(copy, lambda m: m["files"].update({"../../x": "0" * 64}))
    with pytest.raises(ArtifactError, match="leaves the model directory"):
        load_model(copy)
    shutil.rmtree(copy)
    shutil.copytree(knn_dir, copy)
    edit_arrays(copy, lambda a: a.update({"similarity_.indices": a["similarity_.indices"]
                                          + 10**6}))
    with pytest.raises(ArtifactError, match="similarity_: CSR column index"):
        load_model(copy)
    resign(copy, lambda m: m["state"].update(__class__="x"))
    with pytest.raises(ArtifactError, match="__class__"):
        load_model(copy)
    assert json.loads((knn_dir / "manifest.json").read_text())["model"] == "item_knn"
