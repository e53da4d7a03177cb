"""Model versions: directories under a root, rows in the store, one active."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sqlalchemy")

import recoforge as rf  # noqa: E402
from recoforge.data.synthetic import category_demo  # noqa: E402
from recoforge.errors import ArtifactError, ConfigError, UnknownIdError  # noqa: E402
from recoforge.serving.registry import ModelRegistry  # noqa: E402


@pytest.fixture(scope="module")
def fitted():
    return rf.create("ease", regularization=20.0).fit(category_demo(n_users=60, n_items=40,
                                                                    seed=1))


def test_register_saves_a_loadable_version(store, tmp_path, fitted):
    registry = ModelRegistry(tmp_path / "models", store)
    version = registry.register(fitted, {"ndcg@10": np.float64(0.25)}, note="first")
    assert registry.path(version) == tmp_path / "models" / f"v{version}"
    row = store.model_version(version)
    assert row["metrics"] == {"ndcg@10": 0.25} and row["note"] == "first"
    assert not row["active"] and registry.active() is None
    loaded = registry.load(version)
    users = fitted.user_index_.ids[:3]
    np.testing.assert_allclose(loaded.recommend(users, k=5)["score"],
                               fitted.recommend(users, k=5)["score"], rtol=1e-6)
    assert loaded.history_source is not None  # saved with its training history
    # only the version folders remain: no staging folder, no lock file
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [f"v{version}"]


def test_register_a_model_directory_and_activate(store, tmp_path, fitted):
    fitted.save(str(tmp_path / "fitted"), include_history=True)
    registry = ModelRegistry(tmp_path / "models", store)
    first = registry.register(tmp_path / "fitted")
    second = registry.register(fitted)
    registry.activate(first)
    registry.activate(second)
    assert registry.active()["id"] == second
    assert [row["active"] for row in registry.versions()] == [False, True]
    assert registry.load(first).name == "ease"


def test_missing_or_unknown_versions_are_errors(store, tmp_path, fitted):
    registry = ModelRegistry(tmp_path / "models", store)
    with pytest.raises(UnknownIdError, match="model version 5"):
        registry.path(5)
    version = registry.register(fitted)
    (registry.path(version) / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        registry.activate(version)
    with pytest.raises(ConfigError, match="fitted Recommender"):
        registry.register(42)
    with pytest.raises(ConfigError, match="finite"):
        registry.register(fitted, {"ndcg@10": float("nan")})


def test_a_failed_registration_leaves_no_row_and_no_folder(store, tmp_path, fitted):
    registry = ModelRegistry(tmp_path / "models", store)
    (tmp_path / "models" / "v1").mkdir(parents=True)  # squatting the next version's path
    with pytest.raises(ArtifactError, match="v1 exists"):
        registry.register(fitted)
    assert store.model_versions() == []
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["v1"]
