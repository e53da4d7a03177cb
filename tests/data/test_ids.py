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


# --------------------------------------------------------------------------- the id rule
from recoforge.data.ids import parse_id_column  # noqa: E402


@pytest.mark.parametrize("values, expected, kind", [
    (["7", "0", "-5"], [7, 0, -5], "i"),
    (["007", "7"], ["007", "7"], "U"),
    (["+5", "5"], ["+5", "5"], "U"),
    (["1e3"], ["1e3"], "U"),
    (["1.0"], ["1.0"], "U"),
    ([" 7"], [" 7"], "U"),
    (["-0"], ["-0"], "U"),
    (["9223372036854775807"], [2**63 - 1], "i"),
    (["9223372036854775808"], ["9223372036854775808"], "U"),
    ([2**70, 1], [str(2**70), "1"], "U"),
    (np.array([2**63], dtype=np.uint64), ["9223372036854775808"], "U"),
    (np.array([4.0, -2.0]), [4, -2], "i"),
    (pd.Series(["a", "b"], dtype="category"), ["a", "b"], "U"),
    (pd.Series([3, 4], dtype="Int64"), [3, 4], "i"),
])
def test_parse_id_column_rule(values, expected, kind):
    out = parse_id_column(values, "user")
    assert out.tolist() == expected and out.dtype.kind == kind


@pytest.mark.parametrize("values, message", [
    ([1, "1"], "mix integers and strings"),
    (["a", None], "row 1: user id is missing"),
    (["a\x00b"], "NUL"),
    ([""], "is empty"),
    (["x" * 5000], "longer than"),
    ([b"a"], "not bytes"),
    (np.array([b"a"]), "bytes"),
    ([(1, 2)], "not tuple"),
    (np.array([2.0**53]), "cannot tell neighbouring integers apart"),
])
def test_parse_id_column_rejects(values, message):
    with pytest.raises(DataError, match=message):
        parse_id_column(values, "user")


def test_parse_id_column_names_file_and_line():
    with pytest.raises(DataError, match=r"r\.csv, line 4: item id is missing"):
        parse_id_column(pd.Series(["a", "b", None]), "item", source="r.csv", first_line=2)


def test_parse_external_reads_with_the_vocabulary_type():
    integers = IdIndex([7, 8], name="user")
    assert integers.parse_external(["7", "8"]).dtype == np.int64
    mixed = integers.parse_external(["007", "7", "+8"])
    assert mixed.tolist() == ["007", 7, "+8"]
    assert integers.to_index(mixed, unknown="ignore").tolist() == [-1, 0, -1]
    with pytest.raises(UnknownIdError, match="unknown user id '007'"):
        integers.to_index(["007"])
    strings = IdIndex(["007", "7"], name="user")
    assert strings.parse_external(["7", 7]).tolist() == ["7", "7"]
    assert strings.to_index(["7", 7, "007"]).tolist() == [1, 1, 0]
    assert "7" in integers and "007" not in integers and 7 in strings


def test_vocabulary_keeps_strings_that_look_like_integers():
    # a subset of a string vocabulary stays a string vocabulary
    index = IdIndex(["7", "8"], name="user")
    assert index.ids.dtype.kind == "U" and index.to_index([8]).tolist() == [1]
    assert IdIndex.from_values(["7", "8"]).ids.dtype == np.int64


def test_extend_reads_new_ids_with_the_vocabulary_type():
    assert IdIndex([1, 3]).extend(["5", "3"]).ids.tolist() == [1, 3, 5]
    with pytest.raises(DataError, match="integers but the new ids are strings .*'007'"):
        IdIndex([1, 3]).extend(["007"])
    with pytest.raises(DataError, match="strings but the new ids are integers"):
        IdIndex(["a"]).extend([7])


# --------------------------------------------------------------------------- fast lookups
@pytest.mark.parametrize("vocabulary", [
    np.arange(1, 6041),  # dense table
    np.array([5, -3, 2**62, -(2**63), 2**63 - 1]),  # hash lookup, extreme values
    np.random.default_rng(0).choice(10**12, 3706, replace=False),  # sparse
])
def test_integer_lookup_matches_a_hash_lookup(vocabulary):
    index = IdIndex(vocabulary, name="item")
    rng = np.random.default_rng(1)
    queries = np.concatenate([rng.choice(vocabulary, 500), [2**63 - 1, -(2**63), 0, 6041, -1],
                              rng.integers(-(2**62), 2**62, 50)])
    expected = pd.Index(vocabulary).get_indexer(queries)
    assert np.array_equal(index.to_index(queries, unknown="ignore"), expected)
    assert (expected >= 0).sum() >= 500 and (expected < 0).any()
    first_unknown = queries[np.flatnonzero(expected < 0)[0]]
    with pytest.raises(UnknownIdError, match=f"unknown item id {first_unknown}"):
        index.to_index(queries)


def test_integer_lookup_of_200k_ids_takes_milliseconds():
    import timeit

    index = IdIndex(np.arange(1, 6041), name="user")
    queries = np.random.default_rng(0).integers(1, 6041, 200_000)
    index.to_index(queries)
    seconds = min(timeit.repeat(lambda: index.to_index(queries), number=5, repeat=3)) / 5
    assert seconds < 0.02  # about 0.5 ms on a laptop; hundreds of ms is the regression
