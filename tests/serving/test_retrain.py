"""Retrain from the store: temporal holdout, register, activate only if not worse."""

from __future__ import annotations

import pytest

pytest.importorskip("sqlalchemy")

from recoforge.data.synthetic import category_demo  # noqa: E402
from recoforge.errors import ConfigError, DataError  # noqa: E402
from recoforge.serving.registry import ModelRegistry  # noqa: E402
from recoforge.serving.retrain import dataset_from_store, retrain  # noqa: E402
from recoforge.serving.store import Event, Store  # noqa: E402


@pytest.fixture(scope="module")
def demo_events():
    data = category_demo(n_users=120, n_items=80, seed=3)
    frame = data.interactions.to_frame()
    return [Event(str(u), str(i), "rating", float(v), float(t))
            for u, i, v, t in zip(frame["user"], frame["item"], frame["value"],
                                  frame["timestamp"], strict=True)]


@pytest.fixture
def loaded(sqlite_url, demo_events, tmp_path):
    with Store.open(sqlite_url) as store:
        store.insert_events(demo_events)
        yield store, ModelRegistry(tmp_path / "models", store)


def test_dataset_from_store_keeps_kind_ids_and_times(loaded, demo_events):
    store, _ = loaded
    data = dataset_from_store(store)
    assert data.interactions.kind == "explicit" and len(data.interactions) == len(demo_events)
    assert data.interactions.timestamps.max() == int(max(e.time for e in demo_events))
    store.insert_events([Event(demo_events[0].user, "new-item", "click")])
    assert dataset_from_store(store).interactions.kind == "implicit"


def test_better_model_activates_worse_does_not_unless_forced(loaded):
    store, registry = loaded
    first = retrain(store, registry, "popularity")
    assert first.activated and first.baseline is None and first.reason == "no active version"
    assert first.metrics["split"] == "temporal(quantile=0.9)"
    assert first.metrics["n_train"] + first.metrics["n_test"] == first.metrics["n_events"]
    better = retrain(store, registry, "ease", {"regularization": 50.0})
    assert better.metrics["ndcg@10"] > first.metrics["ndcg@10"]
    assert better.baseline == pytest.approx(first.metrics["ndcg@10"])
    assert better.activated and store.active_version()["id"] == better.version
    worse = retrain(store, registry, "popularity")
    assert not worse.activated and "worse than active" in worse.reason
    assert store.active_version()["id"] == better.version
    assert store.model_version(worse.version)["metrics"]["baseline_ndcg@10"] == \
        pytest.approx(better.metrics["ndcg@10"])
    forced = retrain(store, registry, "popularity", force=True)
    assert forced.activated and store.active_version()["id"] == forced.version
    assert "forced" in forced.summary() and f"version {forced.version}" in forced.summary()
    assert registry.load(forced.version).name == "popularity"


def test_retrain_refuses_bad_input_before_fitting(sqlite_url, tmp_path):
    with Store.open(sqlite_url) as store:
        registry = ModelRegistry(tmp_path / "models", store)
        with pytest.raises(DataError, match="no events"):
            retrain(store, registry, "popularity")
        with pytest.raises(ConfigError, match="unknown model"):
            retrain(store, registry, "no_such_model")
        store.insert_events([Event("u", "i", time=5.0), Event("v", "i", time=5.0)])
        with pytest.raises(DataError, match="the same time"):
            retrain(store, registry, "popularity")
        with pytest.raises(DataError, match="holdout"):
            retrain(store, registry, "popularity", holdout=1.5)
        assert store.model_versions() == []


def test_item_features_from_categories_and_a_featured_baseline(loaded):
    store, registry = loaded
    info = category_demo(n_users=120, n_items=80, seed=3).item_info
    store.upsert_items([{"id": str(item), "attributes": {"title": row["title"]},
                         "categories": [row["category"]]} for item, row in info.iterrows()])
    data = dataset_from_store(store, item_features=True)
    assert data.item_features is not None and data.n_items == len(info)
    content = retrain(store, registry, "content", item_features=True)
    assert content.activated and content.metrics["item_features"] is True
    assert list(registry.load(content.version).item_titles_[:1]) == [info["title"].iloc[0]]
    # the active version needed features: its refit for the baseline gets them too
    ease = retrain(store, registry, "ease", {"regularization": 50.0})
    assert ease.baseline == pytest.approx(content.metrics["ndcg@10"])
    assert ease.metrics["item_features"] is False
