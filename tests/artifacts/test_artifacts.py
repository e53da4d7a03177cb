"""Artifacts v2: learned state only, optional history, typed parts, versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge._version import __version__
from recoforge.artifacts import load_model, register_part, save_model
from recoforge.artifacts import parts as parts_module
from recoforge.artifacts.state import declared_state, parse_rule
from recoforge.data.history import InMemoryHistory
from recoforge.errors import ArtifactError, DataError
from tests.artifacts.helpers import read_manifest, resign
from tests.conformance.specs import taste_data

K = 5


@pytest.fixture(scope="module")
def train():
    return taste_data(seed=1)[0]


@pytest.fixture(scope="module")
def ease(train):
    return rf.create("ease").fit(train, fallback="popularity")


def test_learned_state_only_by_default(ease, tmp_path: Path):
    save_model(ease, tmp_path / "m")
    assert not (tmp_path / "m" / "history.npz").exists()
    loaded = load_model(tmp_path / "m")
    assert loaded._history is None and loaded.fallback_._history is None
    np.testing.assert_array_equal(loaded.weights_, ease.weights_)
    np.testing.assert_array_equal(loaded.fallback_.scores_, ease.fallback_.scores_)
    assert loaded.fallback_.item_index_ == ease.item_index_


def test_history_saved_on_request_or_given_at_load(ease, tmp_path: Path):
    matrix = ease._history.matrix
    save_model(ease, tmp_path / "full", include_history=True)
    assert not (tmp_path / "full" / "fallback_" / "history.npz").exists()
    full = load_model(tmp_path / "full")
    assert isinstance(full._history, InMemoryHistory)
    assert (full._history.matrix != matrix).nnz == 0
    assert full.fallback_._history is full._history  # same data: the source is shared
    pd.testing.assert_frame_equal(full.recommend(k=K), ease.recommend(k=K))
    save_model(ease, tmp_path / "small")
    given = load_model(tmp_path / "small", history=matrix)
    pd.testing.assert_frame_equal(given.recommend(k=K), ease.recommend(k=K))
    with pytest.raises(ArtifactError, match=r"shape \(3, 3\)"):
        load_model(tmp_path / "small", history=sp.csr_matrix((3, 3)))
    with pytest.raises(ArtifactError, match="shape"):
        load_model(tmp_path / "small", history=matrix.toarray())


def test_history_from_legacy_train_matrix_attribute(train, tmp_path: Path):
    model = rf.create("popularity").fit(train)
    matrix = model._history.matrix
    model._history = None
    with pytest.raises(ArtifactError, match="no history source"):
        save_model(model, tmp_path / "none", include_history=True)
    vars(model)["train_matrix_"] = matrix  # how models held it before artifacts v2
    save_model(model, tmp_path / "m", include_history=True)
    assert "train_matrix_" not in read_manifest(tmp_path / "m")["parts"]
    assert load_model(tmp_path / "m")._history.matrix.nnz == matrix.nnz


def test_manifest_records_versions_and_capabilities(ease, tmp_path: Path):
    save_model(ease, tmp_path / "m")
    manifest = read_manifest(tmp_path / "m")
    assert manifest["library_version"] == __version__
    assert manifest["format_version"] == 2
    assert manifest["capabilities"] == ease.capabilities()
    assert manifest["n_items"] == len(ease.item_index_)
    assert set(manifest["files"]) == {"arrays.npz", "fallback_/manifest.json"}


def test_future_major_version_is_refused_naming_both(ease, tmp_path: Path):
    save_model(ease, tmp_path / "m")
    major = int(__version__.split(".")[0])
    resign(tmp_path / "m", lambda m: m.update(library_version=f"{major + 1}.0.0"))
    with pytest.raises(ArtifactError, match="version") as err:
        load_model(tmp_path / "m")
    assert f"{major + 1}.0.0" in str(err.value) and __version__ in str(err.value)
    assert "checksum" not in str(err.value)
    resign(tmp_path / "m", lambda m: m.update(library_version=f"{major}.0.0-older"))
    assert load_model(tmp_path / "m").name == "ease"  # same major loads


class _Toy:
    """A registered part with metadata, arrays and a blob."""

    def __init__(self, label: str, values: np.ndarray, payload: bytes) -> None:
        self.label, self.values, self.payload = label, values, payload

    def to_parts(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
        return {"label": self.label}, {"values": self.values}, {"payload": self.payload}

    @classmethod
    def from_parts(cls, meta, arrays, blobs) -> _Toy:
        if not isinstance(meta.get("label"), str) or arrays["values"].ndim != 1:
            raise ValueError("bad toy")
        return cls(meta["label"], arrays["values"], blobs["payload"])


class _ToyModel(type(rf.create("popularity"))):  # type: ignore[misc]
    state_spec = {"toy_": "any"}


@pytest.fixture()
def toy_model(train):
    register_part("toy", _Toy)
    model = rf.create("popularity").fit(train)
    model.toy_ = _Toy("hello", np.arange(3.0), b"\x00binary\xff")
    model.__class__ = _ToyModel
    yield model
    parts_module._REGISTRY.pop("toy", None)


def test_registered_part_round_trip_with_checksummed_blob(toy_model, tmp_path: Path,
                                                          monkeypatch):
    from recoforge.models import registry

    monkeypatch.setitem(registry._REGISTRY, "popularity", _ToyModel)
    save_model(toy_model, tmp_path / "m")
    blob = tmp_path / "m" / "toy_.payload"
    assert blob.read_bytes() == b"\x00binary\xff"
    assert "toy_.payload" in read_manifest(tmp_path / "m")["files"]
    loaded = load_model(tmp_path / "m")
    assert loaded.toy_.label == "hello" and loaded.toy_.payload == b"\x00binary\xff"
    np.testing.assert_array_equal(loaded.toy_.values, np.arange(3.0))
    blob.write_bytes(b"\x01binary\xff")
    with pytest.raises(ArtifactError, match="toy_.payload: checksum"):
        load_model(tmp_path / "m")
    resign(tmp_path / "m", lambda m: m["parts"]["toy_"]["meta"].update(label=7))
    with pytest.raises(ArtifactError, match="bad toy"):
        load_model(tmp_path / "m")
    resign(tmp_path / "m", lambda m: m["parts"]["toy_"].update(kind="no_such_kind"))
    with pytest.raises(ArtifactError, match="unknown part kind 'no_such_kind'"):
        load_model(tmp_path / "m")


def test_register_part_refuses_bad_registrations():
    with pytest.raises(ArtifactError, match="built in"):
        register_part("csr", _Toy)
    with pytest.raises(ArtifactError, match="to_parts"):
        register_part("plain", object)
    register_part("toy2", _Toy)
    try:
        with pytest.raises(ArtifactError, match="already registered"):
            register_part("toy2", type("Other", (_Toy,), {}))
    finally:
        parts_module._REGISTRY.pop("toy2", None)


def test_undeclared_or_unsavable_state_is_refused_at_save(train, tmp_path: Path):
    model = rf.create("popularity").fit(train)
    model.surprise_ = np.zeros(3)
    with pytest.raises(ArtifactError, match="surprise_.*state_spec"):
        save_model(model, tmp_path / "a")
    del model.surprise_
    model.scores_ = model.scores_[:-1]
    with pytest.raises(ArtifactError, match="scores_ has 139 rows"):
        save_model(model, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    assert [p.name for p in tmp_path.iterdir() if "recoforge-tmp" in p.name] == []


def test_state_rules_parse_and_merge_along_the_mro():
    rules = declared_state(type(rf.create("timesvdpp")))
    assert rules["implicit_factors_"].axes == ("items", "d")  # from svdpp
    assert rules["user_days_"].element == "int" and rules["user_days_"].required
    assert not rules["user_bias_"].required  # conventional names are optional
    assert parse_rule("items x k: index<items>", True).index_of == "items"
    with pytest.raises(ValueError, match="qualifier"):
        parse_rule("items: sorted", True)
    with pytest.raises(ValueError, match="shape"):
        parse_rule("items x ../x", True)


def test_in_memory_history():
    history = InMemoryHistory(sp.coo_matrix(([2.0, 1.0, 3.0], ([0, 0, 1], [2, 0, 1])),
                                            shape=(2, 3)))
    assert history.matrix.dtype == np.float32 and history.matrix.has_sorted_indices
    assert (history.n_users, history.n_items) == (2, 3)
    assert history.rows([1, 0]).toarray().tolist() == [[0, 3, 0], [1, 0, 2]]
    with pytest.raises(DataError, match="user index 2"):
        history.rows([2])
    with pytest.raises(DataError, match="user index -1"):
        history.rows([-1])
    with pytest.raises(DataError, match="finite"):
        InMemoryHistory(sp.csr_matrix(np.array([[np.nan, 1.0]])))
    with pytest.raises(DataError, match="sparse"):
        InMemoryHistory(np.ones((2, 2)))
