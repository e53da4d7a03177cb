import numpy as np
import pandas as pd
import pytest

from recoforge.data import IdIndex
from recoforge.errors import DataError, UnknownIdError


def test_round_trip_strings_and_ints():
    idx = IdIndex.from_values(["b", "a", "c", "a"], name="item")
    assert idx.ids.tolist() == ["a", "b", "c"]
    assert idx.to_index(["c", "a"]).tolist() == [2, 0]
    assert idx.to_ids([2, 0]).tolist() == ["c", "a"]
    ints = IdIndex.from_values(np.array([30, 10, 20, 10]), name="user")
    assert ints.to_index(pd.Series([20, 30])).tolist() == [1, 2]
    assert ints.ids.dtype == np.int64


def test_unknown_policy():
    idx = IdIndex(["x", "y"], name="user")
    with pytest.raises(UnknownIdError, match="unknown user id 'z' \\(and 1 more\\)"):
        idx.to_index(["x", "z", "w"])
    assert idx.to_index(["x", "z"], unknown="ignore").tolist() == [0, -1]
    with pytest.raises(IndexError):
        idx.to_ids([5])


def test_duplicates_missing_and_bad_types_rejected():
    with pytest.raises(DataError, match="duplicate"):
        IdIndex(["a", "a"])
    with pytest.raises(DataError, match="missing"):
        IdIndex.from_values(["a", None])
    with pytest.raises(DataError, match="non-integral"):
        IdIndex.from_values([1.5, 2.0])
    with pytest.raises(DataError, match="booleans"):
        IdIndex.from_values(np.array([True, False]))


def test_integral_floats_and_extend():
    idx = IdIndex.from_values(np.array([3.0, 1.0]))
    assert idx.ids.tolist() == [1, 3]
    bigger = idx.extend([3, 7, 7, 5])
    assert bigger.ids.tolist() == [1, 3, 7, 5]
    assert idx == IdIndex([1, 3]) and idx != bigger
    longer = IdIndex(["ab"]).extend(["abcdef"])
    assert longer.ids.tolist() == ["ab", "abcdef"]  # wider ids are not truncated


def test_ids_are_read_only():
    idx = IdIndex(["a", "b"])
    with pytest.raises(ValueError):
        idx.ids[0] = "z"
