from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import recoforge as rf
from recoforge.data import Dataset, IdIndex, Interactions, Sessions
from recoforge.errors import ConfigError, DataError
from recoforge.models.neighbours.covisitation import fill_unscored

ITEMS = ["a", "b", "c", "d", "e"]


def dataset_with_sessions(sequences, *, timestamps=None, users=None):
    """Sessions given as item-id lists; interactions = one user per session."""
    rows = [(users[s] if users else f"s{s}", item, t)
            for s, seq in enumerate(sequences) for t, item in enumerate(seq)]
    frame = pd.DataFrame(rows, columns=["user", "item", "ts"]).drop_duplicates(["user", "item"])
    index = IdIndex(ITEMS, name="item")
    inter = Interactions.from_frame(frame, timestamp_col="ts", item_index=index)
    session_ids = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    items = index.to_index([i for seq in sequences for i in seq]).astype(np.int32)
    stamps = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
    return Dataset(inter, sessions=Sessions(session_ids, items, timestamps=stamps))


def brute_force_counts(sequences, window, forward, n_items):
    counts = defaultdict(float)
    for seq in sequences:
        for p, a in enumerate(seq):
            for q, b in enumerate(seq):
                near = window is None or abs(p - q) <= window
                if q == p or a == b or not near or (forward and q < p):
                    continue
                counts[a, b] += 1.0
    dense = np.zeros((n_items, n_items))
    for (a, b), c in counts.items():
        dense[a, b] = c
    return dense


def test_window_counts_by_hand():
    ds = dataset_with_sessions([["a", "b", "c"], ["a", "c"]])
    model = rf.create("covisitation", window=1, normalization="count").fit(ds)
    w = model.neighbours_.toarray()
    assert w[0, 1] == 1 and w[1, 0] == 1  # a-b adjacent once
    assert w[0, 2] == 1  # a-c adjacent only in the second session (distance 2 in the first)
    assert w[1, 2] == 1 and w[2, 1] == 1
    assert np.all(np.diag(w) == 0)
    wide = rf.create("covisitation", window=None, normalization="count").fit(ds)
    assert wide.neighbours_[0, 2] == 2


def test_forward_direction_and_distance_decay():
    ds = dataset_with_sessions([["a", "b", "c"]])
    fwd = rf.create("covisitation", direction="forward", normalization="count",
                    distance_decay=0.5).fit(ds)
    w = fwd.neighbours_.toarray()
    assert w[0, 1] == 1.0 and w[0, 2] == 0.5 and w[1, 2] == 1.0
    assert w[1, 0] == 0 and w[2, 0] == 0  # nothing counts backwards
    sims = fwd.similar_items(["a"], k=2)
    assert sims["similar_item"].tolist() == ["b", "c"]


@pytest.mark.parametrize("normalization", ["cosine", "conditional", "lift"])
def test_normalizations(normalization):
    sequences = [["a", "b"], ["a", "b"], ["a", "c"], ["b", "d"]]
    ds = dataset_with_sessions(sequences)
    model = rf.create("covisitation", normalization=normalization).fit(ds)
    f = np.array([3, 3, 1, 1, 0], dtype=float)  # events per item
    total = 8.0
    count_ab = 2.0
    expected = {"cosine": count_ab / np.sqrt(f[0] * f[1]),
                "conditional": count_ab / f[0],
                "lift": count_ab * total / (f[0] * f[1])}[normalization]
    assert model.neighbours_[0, 1] == pytest.approx(expected, rel=1e-6)
    if normalization == "conditional":  # P(b | a) = 2/3 but P(a | b) = 2/3 too; P(a|c) = 1
        assert model.neighbours_[2, 0] == pytest.approx(1.0)


def test_top_k_and_min_count():
    ds = dataset_with_sessions([["a", "b", "c", "d"], ["a", "b"]])
    model = rf.create("covisitation", top_k=1, normalization="count").fit(ds)
    assert np.diff(model.neighbours_.indptr).max() == 1
    assert model.neighbours_[0].indices.tolist() == [1]  # a-b twice beats a-c, a-d once
    pruned = rf.create("covisitation", min_count=2.0, normalization="count").fit(ds)
    assert pruned.neighbours_.nnz == 2  # only a-b and b-a survive


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=8), min_size=1, max_size=6),
       st.one_of(st.none(), st.integers(1, 4)), st.booleans())
def test_kernel_matches_brute_force(raw_sequences, window, forward):
    sequences = [[ITEMS[i] for i in seq] for seq in raw_sequences]
    ds = dataset_with_sessions(sequences)
    model = rf.create("covisitation", window=window, normalization="count", top_k=10,
                      direction="forward" if forward else "symmetric").fit(ds)
    expected = brute_force_counts(raw_sequences, window, forward, len(ITEMS))
    np.testing.assert_allclose(model.neighbours_.toarray(), expected)


def test_histories_ordered_by_timestamp_when_no_sessions():
    frame = pd.DataFrame({"user": ["u", "u", "u", "v", "v"],
                          "item": ["c", "a", "b", "a", "b"],
                          "ts": [3, 1, 2, 5, 6]})
    ds = Dataset(Interactions.from_frame(frame, timestamp_col="ts"))
    model = rf.create("covisitation", window=1, direction="forward",
                      normalization="count").fit(ds)
    assert model.counted_from_ == "histories"
    w = model.neighbours_.toarray()  # u viewed a, b, c in time order
    assert w[0, 1] == 2 and w[1, 2] == 1 and w[0, 2] == 0 and w[2, 1] == 0
    unordered = Dataset(Interactions.from_frame(frame.drop(columns="ts")))
    with pytest.raises(ConfigError, match="ordered"):
        rf.create("covisitation", direction="forward").fit(unordered)
    with pytest.raises(ConfigError, match="timestamps"):
        rf.create("covisitation", half_life_days=7.0).fit(unordered)
    every_pair = rf.create("covisitation", window=1, normalization="count").fit(unordered)
    assert every_pair.neighbours_[0, 2] == 1  # no order known: the whole history counts


def test_time_decay_weights_old_sessions_less():
    ds = dataset_with_sessions([["a", "b"], ["a", "c"]], timestamps=[0, 0, 864_000, 864_000])
    model = rf.create("covisitation", half_life_days=10.0, normalization="count").fit(ds)
    assert model.neighbours_[0, 1] == pytest.approx(0.5)
    assert model.neighbours_[0, 2] == pytest.approx(1.0)


def test_recent_items_of_known_users_drive_scores():
    frame = pd.DataFrame({"user": ["u", "u", "v", "v", "w", "w"],
                          "item": ["a", "c", "a", "b", "c", "d"],
                          "ts": [1, 2, 1, 2, 1, 2]})
    ds = Dataset(Interactions.from_frame(frame, timestamp_col="ts"))
    model = rf.create("covisitation", n_recent=1, normalization="count").fit(ds)
    assert model.recent_items_[0].indices.tolist() == [2]  # u's latest view: c
    assert model.recommend(["u"], k=1)["item"].tolist() == ["d"]  # from c, not from a
    everything = model.recommend(history={"new": ["a", "c"]}, k=2)["item"].tolist()
    assert set(everything) == {"b", "d"}  # new users: all given items count
    decayed = rf.create("covisitation", recent_decay=0.5).fit(ds)
    assert sorted(decayed.recent_items_[0].data.tolist()) == [0.5, 1.0]


def test_explain_lists_contributing_history_items():
    ds = dataset_with_sessions([["a", "b"], ["c", "b"], ["c", "b"], ["d", "e"]])
    model = rf.create("covisitation", normalization="count").fit(ds)
    why = model.explain("b", history=["a", "c", "d"])
    assert why["source"].eq("item").all()
    assert why["id"].tolist() == ["c", "a"]  # d never co-occurs with b
    assert why["contribution"].tolist() == [2.0, 1.0]


def test_unscored_items_rank_by_popularity():
    scores = np.array([[0.0, 2.0, 0.0, 0.0]], dtype=np.float32)
    out = fill_unscored(scores.copy(), np.array([5.0, 1.0, 9.0, 0.0]))
    assert np.argsort(-out[0]).tolist() == [1, 2, 0, 3]
    assert out[0, 1] == 2.0 and (out[0, [0, 2, 3]] < 0).all()


def test_bad_sessions_and_options():
    ds = dataset_with_sessions([["a", "b"]])
    broken = Dataset(ds.interactions, sessions=Sessions(np.array([0, 0]), np.array([0, 9])))
    with pytest.raises(DataError, match="outside the item vocabulary"):
        rf.create("covisitation").fit(broken)
    no_sessions = Dataset(ds.interactions)
    with pytest.raises(ConfigError, match="no sessions"):
        rf.create("covisitation", source="sessions").fit(no_sessions)
    for bad in ({"window": 0}, {"top_k": 0}, {"normalization": "jaccard"},
                {"distance_decay": 0.0}, {"distance_decay": 1.5}, {"min_count": -1.0}):
        with pytest.raises(ConfigError):
            rf.create("covisitation", **bad)


def test_empty_sessions_fall_back_to_histories():
    ds = dataset_with_sessions([["a", "b", "c"]])
    empty = Sessions(np.array([], dtype=np.int64), np.array([], dtype=np.int32))
    model = rf.create("covisitation").fit(Dataset(ds.interactions, sessions=empty))
    assert model.counted_from_ == "histories" and model.neighbours_.nnz > 0


@pytest.mark.slow
@pytest.mark.datasets
def test_beats_popularity_on_movielens_100k(ml100k_ndcg):
    ndcg = ml100k_ndcg
    popularity = ndcg("popularity")  # 0.224 when written
    assert ndcg("covisitation", normalization="conditional") > popularity + 0.1  # 0.394
