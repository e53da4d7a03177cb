"""The predictor: histories from the store, freshness, cold users, hidden items, lists."""

from __future__ import annotations

import time

import numpy as np
import pytest

from recoforge.errors import NotSupportedError, UnknownIdError
from recoforge.serving.predictor import Predictor, precompute
from recoforge.serving.store import Event
from tests.serving.app_helpers import make_shop


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    made = make_shop(tmp_path_factory.mktemp("predictor"),
                     models=(("item_knn", {"k": 20}), ("implicit_als", {
                         "n_factors": 8, "iterations": 4, "seed": 0})))
    yield made
    made.store.close()


def _predictor(shop, version):
    return Predictor(shop.models[version], shop.store, version=version)


def _unseen_item(shop, user, other_category=True):
    """An item the user never rated, from a category the user does not prefer."""
    seen = set(shop.store.user_history(user)[0])
    preferred = shop.data.user_info.loc[user, "preferred_category"]
    info = shop.data.item_info
    for item, row in info.iterrows():
        if str(item) not in seen and (row["category"] != preferred or not other_category):
            return str(item)
    raise AssertionError("no unseen item")


def test_known_user_matches_the_model(shop):
    """A user whose store history is the training history gets the model's own list."""
    knn, als = (_predictor(shop, v) for v in sorted(shop.models))
    for predictor in (knn, als):
        served = predictor.recommend("u0003", 5, use_lists=False)
        expected = predictor.model.recommend(["u0003"], k=5)
        assert served.source == "live"
        assert served.items == [str(i) for i in expected["item"]]
        np.testing.assert_allclose(served.scores, expected["score"], rtol=1e-5)


def test_a_new_event_changes_the_next_list(tmp_path):
    """Freshness without refit: the event is merged into the history of the next request,
    and the list equals the model's in-memory answer for that history."""
    shop = make_shop(tmp_path, models=(("item_knn", {"k": 20}), ("implicit_als", {
        "n_factors": 8, "iterations": 4, "seed": 0})))
    try:
        for version, user in zip(sorted(shop.models), ("u0005", "u0006"), strict=True):
            predictor = _predictor(shop, version)
            before = predictor.recommend(user, 8, use_lists=False).items
            item = _unseen_item(shop, user)
            shop.store.insert_events([Event(user, item, "purchase", 5.0)])
            after = predictor.recommend(user, 8, use_lists=False)
            expected = predictor.model.recommend([user], k=8, history={user: {item: 5.0}})
            assert after.items == [str(i) for i in expected["item"]]
            assert after.items != before
            assert item not in after.items  # now seen
    finally:
        shop.store.close()


def test_event_pulls_in_the_new_items_neighbours(tmp_path):
    shop = make_shop(tmp_path)
    try:
        predictor = _predictor(shop, min(shop.models))
        user = "u0007"
        before = predictor.recommend(user, 10, use_lists=False).items
        item = _unseen_item(shop, user)
        neighbours = {i for i, _ in predictor.similar_items(item, 10)}
        shop.store.insert_events([Event(user, item, "purchase", 50.0)])
        after = predictor.recommend(user, 10, use_lists=False).items
        assert (set(after) - set(before)) & neighbours
    finally:
        shop.store.close()


def test_cold_users_get_popular_items_and_sessions_score_from_events(shop):
    predictor = _predictor(shop, min(shop.models))
    cold = predictor.recommend("nobody-yet", 5)
    assert cold.source == "popular"
    assert cold.items == [i for i, _ in shop.store.popular_items(5)]
    history = shop.store.user_history("u0002")[0]
    session = predictor.recommend_session(history[:3], 5)
    expected = predictor.model.recommend(history={"s": history[:3]}, k=5)
    assert session.source == "session"
    assert session.items == [str(i) for i in expected["item"]]


def test_hidden_excluded_and_allowed_items(shop):
    predictor = _predictor(shop, min(shop.models))
    full = predictor.recommend("u0010", 6, use_lists=False).items
    shop.store.set_hidden(full[0], True)
    try:
        assert full[0] not in predictor.recommend("u0010", 6, use_lists=False).items
        assert full[0] not in predictor.recommend("nobody", 60).items
        assert full[0] not in [i for i, _ in predictor.similar_items(full[1], 50)]
    finally:
        shop.store.set_hidden(full[0], False)
    rest = predictor.recommend("u0010", 6, exclude=[full[1]], use_lists=False).items
    assert full[1] not in rest and rest[0] == full[0]
    allowed = set(full[2:4])
    assert set(predictor.recommend("u0010", 6, allowed=allowed, use_lists=False).items) \
        <= allowed
    paged = predictor.recommend("u0010", 3, offset=3, use_lists=False).items
    assert paged == full[3:6]


def test_precomputed_lists_are_served_while_fresh(tmp_path):
    shop = make_shop(tmp_path)
    try:
        version = min(shop.models)
        predictor = _predictor(shop, version)
        written = precompute(shop.store, predictor, n=20)
        assert written == len(shop.store.list_users(limit=10_000))
        live = predictor.recommend("u0004", 5, use_lists=False)
        cached = predictor.recommend("u0004", 5)
        assert cached.source == "precomputed" and cached.items == live.items
        time.sleep(0.01)
        shop.store.insert_events([Event("u0004", _unseen_item(shop, "u0004"), "click")])
        assert predictor.recommend("u0004", 5).source == "live"
        with pytest.raises(NotSupportedError, match="registered model version"):
            precompute(shop.store, Predictor(shop.models[version], shop.store))
    finally:
        shop.store.close()


def test_similar_users_and_explanations(shop):
    knn, als = (_predictor(shop, v) for v in sorted(shop.models))
    for predictor in (knn, als):
        neighbours = predictor.similar_users("u0001", 5)
        assert len(neighbours) == 5 and "u0001" not in [u for u, _ in neighbours]
        assert [s for _, s in neighbours] == sorted((s for _, s in neighbours), reverse=True)
    histories = knn.model.train_matrix_.toarray().astype(float)
    unit = histories / np.linalg.norm(histories, axis=1, keepdims=True)
    me = knn.user_index("u0001")
    cosine = unit @ unit[me]
    cosine[me] = -np.inf
    expected = [str(knn.model.user_index_.ids[i]) for i in np.argsort(-cosine, kind="stable")[:5]]
    assert [u for u, _ in knn.similar_users("u0001", 5)] == expected
    item = knn.recommend("u0001", 1, use_lists=False).items[0]
    found = knn.explain("u0001", item, n=3)
    assert 1 <= len(found["contributions"]) <= 3
    assert found["score"] == pytest.approx(
        knn.recommend("u0001", 1, use_lists=False).scores[0], rel=1e-5)
    with pytest.raises(UnknownIdError, match="no-such-item"):
        knn.explain("u0001", "no-such-item")
    with pytest.raises(UnknownIdError, match="no events"):
        knn.similar_users("nobody", 3)


def test_forgotten_user_is_cold(tmp_path):
    shop = make_shop(tmp_path)
    try:
        predictor = _predictor(shop, min(shop.models))
        assert predictor.recommend("u0009", 5).source == "live"
        shop.store.delete_user("u0009")
        assert predictor.recommend("u0009", 5).source == "popular"
    finally:
        shop.store.close()


def test_integer_ids_are_read_as_text(tmp_path):
    """A model with integer ids serves the store's text ids; "007" is not item 7."""
    import pandas as pd

    import recoforge as rf
    from recoforge.data.dataset import Dataset
    from recoforge.serving.store import Store

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(1, 40, 600), "item": rng.integers(1, 30, 600)})
    frame = frame.drop_duplicates(ignore_index=True)
    model = rf.create("item_knn", k=10).fit(Dataset.from_frame(frame))
    assert model.item_index_.is_integer
    store = Store.open(f"sqlite:///{tmp_path / 'ints.db'}")
    try:
        store.insert_events([Event(str(u), str(i), "click") for u, i in frame.itertuples(
            index=False)])
        predictor = Predictor(model, store, version=None)
        served = predictor.recommend("3", 5)
        expected = model.recommend([3], k=5)
        assert served.source == "live" and served.items == [str(i) for i in expected["item"]]
        session = predictor.recommend_session(["007", "7"], 5)
        assert session.items == [str(i) for i in model.recommend(history={"s": [7]}, k=5)[
            "item"]]
    finally:
        store.close()


def test_models_saved_without_history_serve_from_the_store(shop, tmp_path):
    """Registered versions may be saved without their training history: every user is
    then scored from the store's events (fold-in for factor models), and similar users
    come from the store too."""
    for version in sorted(shop.models):
        with_history = _predictor(shop, version)
        model = shop.models[version]
        path = tmp_path / f"bare-{version}"
        model.save(str(path))
        bare = Predictor.from_dir(path, shop.store, version=version)
        assert bare.model.history_source is None
        items, weights, _ = shop.store.user_history("u0020")
        from_history = model.recommend(history={"u0020": dict(zip(items, weights.tolist(),
                                                                  strict=True))}, k=5)
        assert bare.recommend("u0020", 5, use_lists=False).items == \
            [str(i) for i in from_history["item"]]
        neighbours = [u for u, _ in bare.similar_users("u0020", 4)]
        assert len(neighbours) == 4 and "u0020" not in neighbours
        if model.user_state == "history":  # same histories, same cosine
            assert neighbours == [u for u, _ in with_history.similar_users("u0020", 4)]


def test_store_attributes_feed_feature_aware_models(tmp_path):
    """A model fitted with user features encodes a user's store attributes: a new user
    described only by attributes gets the model's feature-based list."""
    import pandas as pd

    import recoforge as rf
    from recoforge.data.dataset import Dataset
    from recoforge.data.features import build_features
    from recoforge.serving.store import Store
    from tests.serving.app_helpers import demo_data, fill

    data = demo_data()
    described = Dataset(data.interactions, item_features=data.item_features,
                        user_features=build_features(data.user_info, data.user_index,
                                                     categorical=["preferred_category"]),
                        item_info=data.item_info, user_info=data.user_info)
    model = rf.create("two_tower", seed=0).fit(described)
    store = Store.open(f"sqlite:///{tmp_path / 'features.db'}")
    try:
        fill(store, data)
        store.upsert_users([{"id": "newbie", "attributes": {"preferred_category": "books"}},
                            {"id": "odd", "attributes": {"shoe_size": 43}}])
        predictor = Predictor(model, store)
        served = predictor.recommend("newbie", 5)
        expected = model.recommend(["newbie"], k=5, user_features=pd.DataFrame(
            {"preferred_category": ["books"]}, index=["newbie"]))
        assert served.source == "features"
        assert served.items == [str(i) for i in expected["item"]]
        assert predictor.recommend("odd", 5).source == "popular"  # unreadable attributes
        assert predictor.recommend("nobody", 5).source == "popular"
    finally:
        store.close()
