"""Splits: determinism, disjointness, fractions, cold-start and bad parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recoforge.data import Dataset, Interactions
from recoforge.data.split import (
    Split,
    cold_start,
    holdout_global,
    holdout_per_user,
    kfold,
    leave_one_out,
    temporal,
)
from recoforge.data.synthetic import category_demo
from recoforge.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def demo() -> Dataset:
    return category_demo(n_users=120, n_items=80, seed=0)


def pairs(inter: Interactions) -> set[tuple]:
    """(user id, item id) pairs by external id."""
    return set(zip(inter.user_index.to_ids(inter.users).tolist(),
                   inter.item_index.to_ids(inter.items).tolist(), strict=True))


def assert_partition(data: Dataset, split: Split) -> None:
    parts = [pairs(split.train.interactions), pairs(split.test)]
    if split.history is not None:
        parts.append(pairs(split.history))
    total = sum(len(p) for p in parts)
    assert total == len(data.interactions)
    assert set().union(*parts) == pairs(data.interactions)


def same(a: Split, b: Split) -> bool:
    return (np.array_equal(a.test.users, b.test.users)
            and np.array_equal(a.test.items, b.test.items))


# ---------------------------------------------------------------------- holdout per user
def test_holdout_per_user_partitions_and_keeps_test_users_in_train(demo):
    split = holdout_per_user(demo, test_fraction=0.2, seed=3)
    assert_partition(demo, split)
    test_users = set(split.test.user_index.to_ids(np.unique(split.test.users)).tolist())
    assert test_users <= set(split.train.user_index.ids.tolist())
    assert len(split.test) / len(demo.interactions) == pytest.approx(0.2, abs=0.02)
    # the catalogue is kept whole; test keeps the full vocabularies
    assert split.train.item_index == demo.item_index
    assert split.test.user_index == demo.user_index


def test_holdout_per_user_rounds_each_user_and_respects_min_train():
    # user a: 5 interactions -> 1 test; b: 2 -> round(0.4) = 0 test; c: 10 -> 2 test
    frame = pd.DataFrame({"user": ["a"] * 5 + ["b"] * 2 + ["c"] * 10,
                          "item": list(range(5)) + [0, 1] + list(range(10))})
    split = holdout_per_user(Dataset.from_frame(frame), test_fraction=0.2, seed=0)
    counts = pd.Series(split.test.user_index.to_ids(split.test.users)).value_counts()
    assert counts.to_dict() == {"c": 2, "a": 1}
    heavy = holdout_per_user(Dataset.from_frame(frame), test_fraction=0.9, seed=0,
                             min_train=3)
    train_counts = np.bincount(heavy.train.interactions.users)
    assert train_counts.min() >= 2  # b has 2 interactions: all stay in train
    assert (pd.Series(heavy.test.user_index.to_ids(heavy.test.users)).value_counts()
            .to_dict() == {"c": 7, "a": 2})


def test_holdout_per_user_is_deterministic_under_seed(demo):
    assert same(holdout_per_user(demo, seed=1), holdout_per_user(demo, seed=1))
    assert not same(holdout_per_user(demo, seed=1), holdout_per_user(demo, seed=2))


# ---------------------------------------------------------------------- leave one out
def test_leave_one_out_random_holds_one_per_user(demo):
    split = leave_one_out(demo, seed=0)
    assert_partition(demo, split)
    assert np.bincount(split.test.users).max() == 1
    assert len(np.unique(split.test.users)) == demo.n_users
    assert same(split, leave_one_out(demo, seed=0))
    assert not same(split, leave_one_out(demo, seed=1))


def test_leave_one_out_keeps_small_users_in_train():
    frame = pd.DataFrame({"user": ["a", "a", "a", "b", "b", "c"], "item": [1, 2, 3, 1, 2, 3]})
    split = leave_one_out(Dataset.from_frame(frame), min_interactions=3)
    assert set(split.test.user_index.to_ids(split.test.users).tolist()) == {"a"}
    assert len(split.train.interactions) == 5
    assert set(split.train.user_index.ids.tolist()) == {"a", "b", "c"}


def test_leave_one_out_latest_takes_most_recent_and_breaks_ties_deterministically():
    frame = pd.DataFrame({"user": ["a", "a", "a", "b", "b", "b"],
                          "item": [1, 2, 3, 1, 2, 3],
                          "t": [10, 30, 20, 5, 9, 9]})  # b: items 2 and 3 tie at t=9
    data = Dataset.from_frame(frame, timestamp_col="t")
    split = leave_one_out(data, strategy="latest", seed=0)
    held = dict(zip(split.test.user_index.to_ids(split.test.users).tolist(),
                    split.test.item_index.to_ids(split.test.items).tolist(), strict=True))
    assert held["a"] == 2
    assert held["b"] in (2, 3)
    for seed in range(5):  # the same seed always breaks the tie the same way
        again = leave_one_out(data, strategy="latest", seed=seed)
        assert same(again, leave_one_out(data, strategy="latest", seed=seed))
        assert set(again.test.timestamps.tolist()) == {30, 9}


def test_leave_one_out_latest_without_timestamps_is_a_clear_error():
    data = Dataset.from_frame(pd.DataFrame({"user": [1, 1], "item": [1, 2]}))
    with pytest.raises(DataError, match="needs timestamps"):
        leave_one_out(data, strategy="latest")


# ---------------------------------------------------------------------- global holdout
def test_holdout_global_takes_the_exact_rounded_share(demo):
    split = holdout_global(demo, test_fraction=0.25, seed=0)
    assert_partition(demo, split)
    assert len(split.test) == int(np.floor(0.25 * len(demo.interactions) + 0.5))
    assert same(split, holdout_global(demo, test_fraction=0.25, seed=0))
    assert not same(split, holdout_global(demo, test_fraction=0.25, seed=5))


# ---------------------------------------------------------------------- temporal
def test_temporal_quantile_cuts_in_time(demo):
    split = temporal(demo, quantile=0.8)
    assert_partition(demo, split)
    assert split.train.interactions.timestamps.max() < split.test.timestamps.min()
    assert len(split.train.interactions) / len(demo.interactions) == pytest.approx(0.8,
                                                                                  abs=0.02)


def test_temporal_cutoff_as_seconds_or_date():
    frame = pd.DataFrame({"user": [1, 1, 2, 2], "item": [1, 2, 1, 2],
                          "t": ["2024-01-01", "2024-02-01", "2024-03-01", "2024-04-01"]})
    data = Dataset.from_frame(frame, timestamp_col="t")
    by_date = temporal(data, cutoff="2024-02-15")
    assert len(by_date.test) == 2
    seconds = int(pd.Timestamp("2024-02-01", tz="UTC").timestamp())
    assert len(temporal(data, cutoff=seconds).test) == 3  # the cut itself is test
    with pytest.raises(DataError, match="one side empty"):
        temporal(data, cutoff="2030-01-01")
    with pytest.raises(ConfigError, match="cutoff"):
        temporal(data, cutoff="not a date")
    with pytest.raises(DataError, match="timestamps"):
        temporal(Dataset.from_frame(frame.drop(columns="t")))


# ---------------------------------------------------------------------- cold start
def test_cold_start_users_are_absent_from_train_and_have_history(demo):
    split = cold_start(demo, on="users", fraction=0.1, history_fraction=0.5, seed=0)
    assert_partition(demo, split)
    held = set(split.test.user_index.to_ids(np.unique(split.test.users)).tolist())
    assert len(held) == 12  # 10% of 120
    assert not held & set(split.train.user_index.ids.tolist())
    hist_users = split.history.user_index.to_ids(split.history.users)
    assert set(hist_users.tolist()) == held
    test_users = split.test.user_index.to_ids(split.test.users)
    for user in held:  # about half of each one's interactions is history
        n_hist, n_test = (hist_users == user).sum(), (test_users == user).sum()
        assert n_hist >= 1 and n_test >= 1
        assert abs(n_hist - n_test) <= 1
    assert same(split, cold_start(demo, fraction=0.1, seed=0))


def test_cold_start_users_without_history():
    data = category_demo(n_users=40, n_items=30, seed=1)
    split = cold_start(data, on="users", fraction=0.25, history_fraction=0.0, seed=0)
    assert len(split.history) == 0
    assert len(np.unique(split.test.users)) == 10
    assert_partition(data, split)


def test_cold_start_items_keep_the_catalogue(demo):
    split = cold_start(demo, on="items", fraction=0.1, seed=0)
    assert_partition(demo, split)
    assert split.history is None
    held = np.unique(split.test.items)
    assert len(held) == 8
    assert split.train.item_index == demo.item_index  # still recommendable
    assert not np.isin(split.train.interactions.items, held).any()
    assert len(split.test) == np.isin(demo.interactions.items, held).sum()


# ---------------------------------------------------------------------- k-fold
def test_kfold_by_interactions_tests_each_interaction_once(demo):
    folds = kfold(demo, n_folds=4, seed=0)
    assert len(folds) == 4
    tested = [pairs(f.test) for f in folds]
    assert sum(len(t) for t in tested) == len(demo.interactions)
    assert set().union(*tested) == pairs(demo.interactions)
    for fold in folds:
        assert_partition(demo, fold)
        assert len(fold.test) == pytest.approx(len(demo.interactions) / 4, abs=1)


def test_kfold_by_users_tests_each_user_in_one_fold(demo):
    folds = kfold(demo, n_folds=3, seed=0, by="users", test_fraction=0.2)
    seen: list[str] = []
    for fold in folds:
        assert_partition(demo, fold)
        users = fold.test.user_index.to_ids(np.unique(fold.test.users)).tolist()
        assert set(users) <= set(fold.train.user_index.ids.tolist())
        seen += users
    assert sorted(seen) == sorted(demo.user_index.ids.tolist())
    assert [len(np.unique(f.test.users)) for f in folds] == [40, 40, 40]


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.2", True, None, float("nan")])
def test_fractions_outside_the_open_interval_are_rejected(demo, fraction):
    with pytest.raises(ConfigError, match="test_fraction"):
        holdout_per_user(demo, test_fraction=fraction)
    with pytest.raises(ConfigError, match="test_fraction"):
        holdout_global(demo, test_fraction=fraction)
    with pytest.raises(ConfigError, match="fraction"):
        cold_start(demo, fraction=fraction)


@pytest.mark.parametrize("call, match", [
    (lambda d: kfold(d, n_folds=1), "n_folds"),
    (lambda d: kfold(d, n_folds=2.5), "n_folds"),
    (lambda d: kfold(d, n_folds=10_000), "exceeds"),
    (lambda d: kfold(d, by="items"), "by must be"),
    (lambda d: leave_one_out(d, min_interactions=1), "min_interactions"),
    (lambda d: leave_one_out(d, strategy="oldest"), "strategy"),
    (lambda d: holdout_per_user(d, min_train=0), "min_train"),
    (lambda d: cold_start(d, on="sessions"), "on must be"),
    (lambda d: cold_start(d, history_fraction=1.0), "history_fraction"),
    (lambda d: temporal(d, quantile=1.0), "quantile"),
])
def test_bad_parameters_raise_config_errors(demo, call, match):
    with pytest.raises(ConfigError, match=match):
        call(demo)


def test_empty_or_wrong_data_is_rejected():
    empty = Dataset.from_frame(pd.DataFrame({"user": pd.Series([], dtype=int),
                                             "item": pd.Series([], dtype=int)}))
    with pytest.raises(DataError, match="empty"):
        holdout_per_user(empty)
    with pytest.raises(DataError, match="Dataset or Interactions"):
        holdout_global(pd.DataFrame({"user": [1], "item": [1]}))


def test_too_little_data_for_a_test_set_is_a_clear_error():
    data = Dataset.from_frame(pd.DataFrame({"user": [1, 2, 3], "item": [1, 2, 3]}))
    with pytest.raises(DataError, match="no test interactions"):
        holdout_per_user(data, test_fraction=0.2)  # every user has a single interaction
    with pytest.raises(DataError, match="no test interactions"):
        holdout_global(data, test_fraction=0.1)


def test_interactions_are_accepted_and_repr_names_the_split(demo):
    split = holdout_global(demo.interactions, seed=0)
    assert isinstance(split.train, Dataset)
    assert "holdout_global" in repr(split)


def test_sessions_do_not_leak_across_splits():
    from recoforge.data import Dataset, Sessions
    from recoforge.data.split import cold_start, temporal

    frame = pd.DataFrame({"user": ["a", "a", "b", "b", "c", "c"],
                          "item": ["x", "y", "x", "z", "y", "z"],
                          "rating": [5.0, 4, 3, 2, 1, 5], "t": [1, 2, 3, 4, 5, 6]})
    base = Dataset.from_frame(frame, rating_col="rating", timestamp_col="t")
    items = base.item_index.to_index(["x", "y", "z", "x"]).astype(np.int32)
    users = base.user_index.to_index(["a", "b", "c", "c"]).astype(np.int32)
    sessions = Sessions(np.array(["s1", "s2", "s3", "s3"]), items, users,
                        np.array([1, 3, 5, 6]))
    data = Dataset(base.interactions, sessions=sessions)
    split = temporal(data, cutoff=5)
    assert split.train.sessions.timestamps.tolist() == [1, 3]
    assert split.train.sessions.users.tolist() == [0, 1]  # re-indexed to train users
    held = cold_start(data, on="users", fraction=0.34, history_fraction=0.5, seed=0)
    kept = set(held.train.user_index.to_ids(held.train.sessions.users))
    assert kept == set(held.train.user_index.ids)
