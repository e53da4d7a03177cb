"""Synthetic generators: determinism, shapes and the stated distributions."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from recoforge.data.synthetic import (
    CATEGORY_VOCABULARY,
    category_demo,
    film_catalogue,
    iter_scalable_chunks,
    scalable_interactions,
    toy_catalogue,
)
from recoforge.errors import ConfigError


def same_interactions(a, b) -> bool:
    x, y = a.interactions, b.interactions
    return (np.array_equal(x.users, y.users) and np.array_equal(x.items, y.items)
            and np.array_equal(x.values, y.values)
            and (x.timestamps is None) == (y.timestamps is None)
            and (x.timestamps is None or np.array_equal(x.timestamps, y.timestamps)))


def assert_sorted_unique_pairs(inter) -> None:
    key = inter.users.astype(np.int64) * inter.n_items + inter.items
    assert np.all(np.diff(key) > 0)


# --------------------------------------------------------------------------- category demo
@pytest.fixture(scope="module")
def demo():
    return category_demo()


def test_demo_shapes_and_ids(demo):
    inter = demo.interactions
    assert inter.shape == (300, 200) and inter.kind == "explicit"
    assert inter.user_index.ids[0] == "u0001" and inter.item_index.ids[-1] == "i0200"
    per_user = np.bincount(inter.users, minlength=300)
    assert per_user.min() >= 15 and per_user.max() <= 40
    assert inter.timestamps is not None and inter.timestamps.min() >= 1_704_067_200
    assert_sorted_unique_pairs(inter)
    assert list(demo.item_info.columns) == ["title", "category", "description"]
    assert demo.item_info["category"].nunique() == 5
    assert demo.user_info["preferred_category"].isin(list(CATEGORY_VOCABULARY)[:5]).all()


def test_demo_preferred_share_and_rating_means(demo):
    inter = demo.interactions
    preferred = demo.user_info["preferred_category"].to_numpy()[inter.users]
    category = demo.item_info["category"].to_numpy()[inter.items]
    in_pref = preferred == category
    assert 0.65 < in_pref.mean() < 0.75
    assert inter.values[in_pref].mean() == pytest.approx(4.2, abs=0.1)
    assert inter.values[~in_pref].mean() == pytest.approx(2.8, abs=0.1)
    assert inter.values.min() >= 1.0 and inter.values.max() <= 5.0
    assert np.allclose(inter.values * 10, np.round(inter.values * 10), atol=1e-4)


def test_demo_text_is_readable_and_category_specific(demo):
    info = demo.item_info
    for category, (nouns, *_rest) in CATEGORY_VOCABULARY.items():
        rows = info[info["category"] == category]
        if len(rows):
            described = rows["description"].str.lower()
            assert described.apply(lambda text, n=nouns: any(w in text for w in n)).all()
    assert info["description"].str.endswith(".").all()
    names = demo.item_features.names.tolist()
    assert "category=books" in names and "description:novel" in names
    assert demo.item_features.n_rows == 200


def test_demo_sessions_follow_preferred_category(demo):
    sessions = demo.sessions
    groups = sessions.groups()
    assert len(groups) == 600 and all(3 <= len(g) <= 8 for g in groups)
    category = demo.item_info["category"].to_numpy()[sessions.items]
    preferred = demo.user_info["preferred_category"].to_numpy()[sessions.users]
    assert np.all(category == preferred)
    assert sessions.timestamps is not None


def test_demo_category_signal_beats_popularity(demo):
    """Recommending top-rated unseen items of the preferred category hits held-out
    likes more often than global popularity does (the demo's purpose)."""
    inter = demo.interactions
    frame = inter.to_frame()
    rng = np.random.default_rng(0)
    test_mask = rng.random(len(frame)) < 0.2
    train, test = frame[~test_mask], frame[test_mask & (frame["value"] >= 4)]
    popularity = train.groupby("item").size().sort_values(ascending=False)
    category = demo.item_info["category"]
    preferred = demo.user_info["preferred_category"]
    seen_by_user = train.groupby("user")["item"].agg(set)
    hits = {"popularity": 0, "category": 0}
    for user, liked in test.groupby("user")["item"]:
        seen = seen_by_user.get(user, set())
        ranked = [i for i in popularity.index if i not in seen]
        hits["popularity"] += len(set(ranked[:10]) & set(liked))
        in_cat = [i for i in ranked if category[i] == preferred[user]]
        hits["category"] += len(set(in_cat[:10]) & set(liked))
    assert hits["category"] > 1.5 * hits["popularity"]


def test_demo_is_deterministic_under_seed():
    a, b, c = category_demo(seed=3), category_demo(seed=3), category_demo(seed=4)
    assert same_interactions(a, b) and not same_interactions(a, c)
    assert a.item_info.equals(b.item_info)
    assert np.array_equal(a.sessions.items, b.sessions.items)


def test_demo_small_and_absurd_parameters():
    tiny = category_demo(n_users=3, n_items=5, n_categories=5, ratings_per_user=(1, 50),
                         sessions_per_user=0)
    assert tiny.n_items == 5 and len(tiny.sessions) == 0
    with pytest.raises(ConfigError, match="n_categories must be at most 8"):
        category_demo(n_categories=9)
    with pytest.raises(ConfigError, match="at least n_categories"):
        category_demo(n_items=3)
    with pytest.raises(ConfigError, match="ratings_per_user"):
        category_demo(ratings_per_user=(10, 5))
    with pytest.raises(ConfigError, match="n_users must be a positive"):
        category_demo(n_users=0)


# --------------------------------------------------------------------------- toy catalogue
def test_toy_catalogue():
    data = toy_catalogue()
    assert data.item_info["title"].tolist() == [
        "Kindle", "Macbook", "Brown Leather Shoes", "Samsung 75-Inch QLED TV",
        "LG 60-Inch QLED TV"]
    inter = data.interactions
    assert len(inter) == 10 and inter.kind == "implicit" and inter.n_users == 5
    names = data.item_features.names.tolist()
    assert {"genres:electronics", "genres:tv", "genres:fashion"} <= set(names)
    tv = [names.index("genres:tv")]
    column = data.item_features.matrix[:, tv].toarray().ravel()
    assert column.tolist() == [0, 0, 0, 1, 1]
    assert same_interactions(data, toy_catalogue())


# --------------------------------------------------------------------------- film catalogue
def test_film_catalogue_shapes_and_genres():
    data = film_catalogue(n_users=2_000, n_items=300, seed=1)
    inter = data.interactions
    per_user = np.bincount(inter.users, minlength=2_000)
    assert per_user.min() >= 3 and per_user.max() <= 5
    assert set(np.unique(inter.values)) <= {1, 2, 3, 4, 5}
    assert_sorted_unique_pairs(inter)
    n_genres = data.item_info["genres"].str.count(r"\|") + 1
    assert n_genres.between(1, 2).all() and (n_genres == 2).any()
    assert data.item_features.n_features == 9
    assert np.array_equal(np.asarray(data.item_features.matrix.sum(axis=1)).ravel(), n_genres)
    assert same_interactions(data, film_catalogue(n_users=2_000, n_items=300, seed=1))
    with pytest.raises(ConfigError):
        film_catalogue(n_items=4)


def test_film_catalogue_defaults():
    data = film_catalogue()
    assert data.interactions.shape == (10_000, 1_000)
    assert 30_000 <= len(data.interactions) <= 50_000


# --------------------------------------------------------------------------- scalable
def test_scalable_shapes_dtypes_and_sorting():
    data = scalable_interactions(50_000, n_users=1_000, n_items=2_000, seed=2)
    inter = data.interactions
    assert inter.shape == (1_000, 2_000) and inter.kind == "implicit"
    assert inter.users.dtype == np.int32 and inter.items.dtype == np.int32
    assert inter.values.dtype == np.float32
    assert inter.values.sum() == pytest.approx(50_000)  # duplicates summed, none lost
    assert np.all(np.bincount(inter.users, minlength=1_000) >= 1)
    assert_sorted_unique_pairs(inter)


def test_scalable_popularity_is_power_law():
    data = scalable_interactions(100_000, n_items=5_000, cluster_weight=0.0, seed=0)
    counts = np.sort(np.bincount(data.interactions.items, weights=data.interactions.values,
                                 minlength=5_000))[::-1]
    top_share = counts[:50].sum() / counts.sum()  # top 1% of items
    assert top_share > 0.3
    slope = np.polyfit(np.log(np.arange(10, 1_000)), np.log(counts[9:999]), 1)[0]
    assert -1.3 < slope < -0.7


def test_scalable_users_follow_their_cluster():
    data = scalable_interactions(50_000, n_users=500, n_items=1_000, n_clusters=10,
                                 cluster_weight=1.0, with_features=True, seed=5)
    inter = data.interactions
    user_cluster = data.user_features.matrix.indices  # one-hot: one column per row
    item_cluster = data.item_features.matrix.indices
    assert np.all(user_cluster[inter.users] == item_cluster[inter.items])


def test_scalable_deterministic_and_chunks_concatenate():
    kwargs = dict(n_interactions=30_000, with_timestamps=True, chunk_size=7_000, seed=9)
    a, b = scalable_interactions(**kwargs), scalable_interactions(**kwargs)
    assert same_interactions(a, b)
    assert not same_interactions(a, scalable_interactions(**{**kwargs, "seed": 10}))
    chunks = list(iter_scalable_chunks(**kwargs))
    assert len(chunks) >= 4
    assert np.array_equal(np.concatenate([c.users for c in chunks]), a.interactions.users)
    assert np.array_equal(np.concatenate([c.timestamps for c in chunks]),
                          a.interactions.timestamps)
    assert list(chunks[0].to_frame().columns) == ["user", "item", "value", "timestamp"]


def test_scalable_drop_duplicates():
    data = scalable_interactions(20_000, duplicates="drop", seed=1)
    assert np.all(data.interactions.values == 1.0)
    assert len(data.interactions) < 20_000


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"n_interactions": 0}, "n_interactions"),
    ({"n_interactions": 100, "n_users": 200}, "exceeds"),
    ({"n_interactions": 100, "n_items": 5, "n_clusters": 10}, "n_clusters"),
    ({"n_interactions": 100, "popularity_exponent": -1.0}, "popularity_exponent"),
    ({"n_interactions": 100, "cluster_weight": 1.5}, "cluster_weight"),
    ({"n_interactions": 100, "duplicates": "max"}, "duplicates"),
    ({"n_interactions": 100, "chunk_size": 0}, "chunk_size"),
])
def test_scalable_rejects_absurd_parameters(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        scalable_interactions(**kwargs)


@pytest.mark.slow
def test_scalable_ten_million_memory():
    tracemalloc.start()
    try:
        data = scalable_interactions(10_000_000, seed=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data.interactions) > 5_000_000
    assert peak < 400 * 2**20  # output is ~12 bytes x 10^7 pairs = 120 MB at most
