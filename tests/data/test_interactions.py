import numpy as np
import pandas as pd
import pytest

from recoforge.data import Dataset, IdIndex, Interactions
from recoforge.errors import DataError, UnknownIdError


def frame(**cols):
    base = {"user": ["a", "a", "b", "c"], "item": [1, 2, 1, 3], "rating": [4.0, 3.0, 5.0, 1.0]}
    base.update(cols)
    return pd.DataFrame(base)


def test_explicit_build_and_csr():
    inter = Interactions.from_frame(frame(), rating_col="rating")
    assert inter.kind == "explicit" and len(inter) == 4 and inter.shape == (3, 3)
    csr = inter.to_csr()
    assert csr[0].toarray().tolist() == [[4.0, 3.0, 0.0]]
    assert inter.to_frame()["user"].tolist() == ["a", "a", "b", "c"]
    assert inter.to_csc().shape == (3, 3)


def test_implicit_default_and_sum_duplicates():
    df = pd.DataFrame({"user": [1, 1, 1, 2], "item": ["x", "x", "y", "x"]})
    inter = Interactions.from_frame(df)
    assert inter.kind == "implicit"
    assert inter.to_csr().toarray().tolist() == [[2.0, 1.0], [1.0, 0.0]]


@pytest.mark.parametrize("policy,expected", [("last", 2.0), ("first", 5.0), ("sum", 7.0),
                                             ("mean", 3.5)])
def test_duplicate_policies(policy, expected):
    df = pd.DataFrame({"user": ["a", "a"], "item": ["x", "x"], "rating": [5.0, 2.0],
                       "ts": [10, 20]})
    inter = Interactions.from_frame(df, rating_col="rating", timestamp_col="ts",
                                    duplicates=policy)
    assert len(inter) == 1 and inter.values[0] == pytest.approx(expected)


def test_last_goes_by_timestamp_not_row_order():
    df = pd.DataFrame({"user": ["a", "a"], "item": ["x", "x"], "rating": [5.0, 2.0],
                       "ts": [20, 10]})
    inter = Interactions.from_frame(df, rating_col="rating", timestamp_col="ts",
                                    duplicates="last")
    assert inter.values[0] == 5.0


def test_duplicates_error_by_default_for_ratings_names_row():
    df = pd.DataFrame({"user": ["a", "b", "a"], "item": ["x", "y", "x"], "rating": [5, 2, 1]})
    with pytest.raises(DataError, match="ratings.csv, line 4: duplicate"):
        Interactions.from_frame(df, rating_col="rating", source="ratings.csv", first_line=2)


def test_nan_and_text_ratings_rejected_with_row():
    with pytest.raises(DataError, match="row 2: rating/value nan"):
        Interactions.from_frame(frame(rating=[1.0, 2.0, np.nan, 3.0]), rating_col="rating")
    with pytest.raises(DataError, match="row 1: rating/value 'five'"):
        Interactions.from_frame(frame(rating=["1", "five", "2", "3"]), rating_col="rating")
    with pytest.raises(DataError, match="must be > 0"):
        Interactions.from_frame(frame(rating=[1, 0, 2, 3]), rating_col="rating", kind="implicit")


def test_missing_columns_and_ids():
    with pytest.raises(DataError, match=r"missing column\(s\) \['score'\]"):
        Interactions.from_frame(frame(), rating_col="score")
    with pytest.raises(DataError, match="row 1: missing 'user'"):
        Interactions.from_frame(frame(user=["a", None, "b", "c"]))


def test_timestamps_numbers_dates_and_missing():
    inter = Interactions.from_frame(frame(ts=["2020-01-01", "2020-01-02", "2020-01-01",
                                              "2021-01-01T00:00:00"]),
                                    rating_col="rating", timestamp_col="ts")
    assert inter.timestamps[0] == 1577836800
    with pytest.raises(DataError, match="missing timestamp"):
        Interactions.from_frame(frame(ts=[1, None, 3, 4]), rating_col="rating",
                                timestamp_col="ts")


def test_fixed_vocabulary_unknown_policy():
    items = IdIndex([1, 2], name="item")
    with pytest.raises(UnknownIdError, match="unknown item id 3"):
        Interactions.from_frame(frame(), rating_col="rating", item_index=items)
    inter = Interactions.from_frame(frame(), rating_col="rating", item_index=items,
                                    unknown="ignore")
    assert len(inter) == 3 and inter.n_items == 2


def test_dataset_subset_keeps_catalogue_and_compacts_users():
    ds = Dataset.from_frame(frame(), rating_col="rating")
    sub = ds.subset(ds.interactions.users != 2)
    assert sub.n_items == 3 and sub.user_index.ids.tolist() == ["a", "b"]
    assert sub.matrix().shape == (2, 3)
    assert ds.interactions.fingerprint() != sub.interactions.fingerprint()


def test_sessions_groups_in_order():
    from recoforge.data import Sessions

    s = Sessions(np.array(["s2", "s1", "s2", "s1"]), np.array([5, 1, 6, 2], np.int32))
    assert [g.tolist() for g in s.groups()] == [[5, 6], [1, 2]]


def test_with_item_features_appends_catalogue_items():
    ds = Dataset.from_frame(frame(), rating_col="rating")
    info = pd.DataFrame({"genres": ["a|b", "b", "c", "a"]}, index=pd.Index([1, 2, 3, 9]))
    out = ds.with_item_features(info, multilabel=["genres"])
    assert out.item_index.ids.tolist() == [1, 2, 3, 9]  # 9 appended, indices kept
    assert out.matrix().shape == (3, 4) and out.matrix()[:, 3].nnz == 0
    assert out.item_features.matrix.shape == (4, 3)
    with pytest.raises(DataError, match="integers but the new ids are strings"):
        ds.with_item_features(info.set_axis(["x", "y", "z", "w"]), multilabel=["genres"])


def test_id_columns_are_parsed_once_by_the_id_rule():
    df = pd.DataFrame({"user": ["007", "7", "007"], "item": ["1", "2", "2"]})
    inter = Interactions.from_frame(df)
    assert inter.user_index.ids.tolist() == ["007", "7"]
    assert inter.item_index.ids.tolist() == [1, 2]
    assert inter.to_csr().toarray().tolist() == [[1.0, 1.0], [0.0, 1.0]]


def test_fixed_vocabulary_reads_text_ids_with_its_type():
    users = IdIndex([7], name="user")
    df = pd.DataFrame({"user": ["7", "007"], "item": ["a", "b"]})
    inter = Interactions.from_frame(df, user_index=users, unknown="ignore")
    assert len(inter) == 1 and inter.item_index.to_ids(inter.items).tolist() == ["a"]
    with pytest.raises(UnknownIdError, match="unknown user id '007'"):
        Interactions.from_frame(df, user_index=users)


@pytest.mark.parametrize("ts, message", [
    ([1.0, 1e300, 2.0, 3.0], "row 1: timestamp 1e\\+300 in column 'ts' does not fit"),
    ([1.0, 2.0, -np.inf, 3.0], "row 2: timestamp -inf in column 'ts' is not a finite"),
    (["2020-01-01", "x", "2020-01-01", "2020-01-01"], "row 1: timestamp 'x' in column 'ts'"),
])
def test_bad_timestamps_name_column_and_row(ts, message):
    with pytest.raises(DataError, match=message):
        Interactions.from_frame(frame(ts=ts), rating_col="rating", timestamp_col="ts")
