"""Issue 9, data input: no shifted columns, no merged or changed ids, one-line errors.

Each test is a class of failure from the issue with its neighbours; every bad input must
give a DataError naming the file and line (or column), and every good input must keep
its ids and columns exactly.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from recoforge.data import Dataset, IdIndex, Interactions
from recoforge.data.loaders import read_id_list, read_interactions, read_table
from recoforge.errors import ConfigError, DataError


def write(path, text: str | bytes):
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def users_of(data: Dataset) -> list:
    return data.interactions.to_frame().sort_values(["user", "item"])["user"].tolist()


# --------------------------------------------------------------------- 5: shifted columns
@pytest.mark.parametrize("text, line, found, expected", [
    ("user,item,rating\n1,2,3,9\n4,5,6,9\n", 2, 4, 3),  # every row one field more
    ("user,item,rating\n1,2,3\n4,5,6,9\n", 3, 4, 3),  # one row
    ("user,item,rating\n1,2,3\n4,5,6,\n", 3, 4, 3),  # a trailing separator is a field
    ("user,item,rating,ts\n1,2,3,4\n4,5,6\n", 3, 3, 4),  # short row
    ("user,item,rating\n1,2,3\n4\n", 3, 1, 3),
])
def test_field_count_must_match_the_header(tmp_path, text, line, found, expected):
    path = write(tmp_path / "r.csv", text)
    plural = "s" if found != 1 else ""
    with pytest.raises(DataError, match=rf"r\.csv, line {line}: malformed line: {found} "
                                        rf"field{plural}, expected {expected}"):
        read_interactions(path, rating_col="rating")


def test_short_row_names_the_missing_field_not_a_nan_rating(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3\n")
    with pytest.raises(DataError, match="a field is missing") as info:
        read_interactions(path, rating_col="rating")
    assert "nan" not in str(info.value)


def test_extra_field_in_every_row_of_a_headerless_file_with_names(tmp_path):
    path = write(tmp_path / "u.data", "1\t10\t5\t99\n2\t10\t3\t99\n")
    with pytest.raises(DataError, match=r"u\.data, line 1: malformed line: 4 fields, "
                                        r"expected 3"):
        read_interactions(path, sep="\t", header=False, names=["user", "item", "rating"],
                          rating_col="rating")


@pytest.mark.parametrize("name, text", [
    ("r.tsv", "user\titem\n1\t2\t3\n"),
    ("r.dat", "1::2::3\n1::2::3::4\n"),
    ("r.csv.gz", None),
])
def test_field_counts_checked_for_every_separator_and_compression(tmp_path, name, text):
    path = tmp_path / name
    if text is None:
        with gzip.open(path, "wt") as handle:
            handle.write("user,item\n3,4,5\n")
    else:
        write(path, text)
    sep = "::" if name.endswith(".dat") else None
    with pytest.raises(DataError, match=rf"{name}, line 2: malformed line"):
        read_table(path, sep=sep, header=not name.endswith(".dat"))


def test_quoted_separators_and_line_breaks_are_one_field(tmp_path):
    path = write(tmp_path / "r.csv", 'user,item,rating\n"a,b",x,1\nc,"y\nz",2\n')
    frame = read_interactions(path, rating_col="rating").interactions.to_frame()
    assert sorted(frame["user"]) == ["a,b", "c"] and sorted(frame["item"]) == ["x", "y\nz"]
    bad = write(tmp_path / "q.csv", 'user,item\n"a,b",x\nc,y,z\n')
    with pytest.raises(DataError, match=r"q\.csv, line 3: malformed line: 3 fields"):
        read_table(bad)


def test_columns_are_never_shifted_into_an_index(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\nu1,i1,4\nu2,i2,5\n")
    frame = read_table(path)
    assert list(frame.columns) == ["user", "item", "rating"]
    assert isinstance(frame.index, pd.RangeIndex) and frame["user"].tolist() == ["u1", "u2"]


# --------------------------------------------------------------------- 6: ids
@pytest.mark.parametrize("ids, expected", [
    (["007", "7"], ["007", "7"]),
    (["1e3", "1000"], ["1000", "1e3"]),
    (["+5", "5"], ["+5", "5"]),
    ([" 7", "7"], [" 7", "7"]),
    (["1.0", "1"], ["1", "1.0"]),
    (["-0", "0"], ["-0", "0"]),
    (["99999999999999999999999", "1"], ["1", "99999999999999999999999"]),
    (["9223372036854775808", "5"], ["5", "9223372036854775808"]),
    (["NA", "None", "null"], ["NA", "None", "null"]),
])
def test_ids_from_a_file_are_never_merged_or_changed(tmp_path, ids, expected):
    rows = "".join(f"{u},item{k}\n" for k, u in enumerate(ids))
    data = read_interactions(write(tmp_path / "r.csv", "user,item\n" + rows))
    assert data.n_users == len(ids)
    assert sorted(data.user_index.ids.tolist()) == expected
    assert data.user_index.ids.dtype.kind == "U"


@pytest.mark.parametrize("ids, expected", [
    (["7", "0", "-5"], [-5, 0, 7]),
    (["9223372036854775807", "-9223372036854775808"],
     [-9223372036854775808, 9223372036854775807]),
])
def test_plain_integer_ids_become_int64(tmp_path, ids, expected):
    rows = "".join(f"{u},x{k}\n" for k, u in enumerate(ids))
    data = read_interactions(write(tmp_path / "r.csv", "user,item\n" + rows))
    assert data.user_index.ids.dtype == np.int64
    assert data.user_index.ids.tolist() == expected


def test_integer_and_string_one_are_not_merged_in_a_frame():
    frame = pd.DataFrame({"user": pd.Series([1, "1"], dtype=object), "item": ["a", "b"]})
    with pytest.raises(DataError, match="mix integers and strings"):
        Interactions.from_frame(frame)


def test_nul_character_in_an_id_is_rejected_not_dropped():
    frame = pd.DataFrame({"user": ["a\x00", "a"], "item": ["x", "y"]})
    with pytest.raises(DataError, match="NUL"):
        Interactions.from_frame(frame)


def test_nul_bytes_in_a_file_are_a_binary_file(tmp_path):
    path = write(tmp_path / "r.csv", b"user,item\na\x00,x\na,y\n")
    with pytest.raises(DataError, match=r"r\.csv: a binary file .*supported"):
        read_interactions(path)


@pytest.mark.parametrize("values, message", [
    (np.array([2.0**53, 1.0]), "cannot tell neighbouring integers apart"),
    (np.array([2.0**53 + 2, 2.0**53 + 4]), "cannot tell neighbouring integers apart"),
    (np.array([1.5, 2.0]), "non-integral"),
    (np.array([1.0, np.nan]), "missing"),
    (np.array([1.0, np.inf]), "not a finite number"),
    (np.array([16777216.0], dtype=np.float32), "float32"),
])
def test_float_id_columns_must_be_exact_integers(values, message):
    frame = pd.DataFrame({"user": values, "item": np.arange(len(values))})
    with pytest.raises(DataError, match=message):
        Interactions.from_frame(frame)


def test_exact_float_ids_are_integers():
    frame = pd.DataFrame({"user": [3.0, 1.0, 2.0**53 - 1], "item": [1, 2, 3]})
    assert Interactions.from_frame(frame).user_index.ids.tolist() == [1, 3, 2**53 - 1]


def test_uint64_ids_above_int64_are_strings_not_wrapped():
    frame = pd.DataFrame({"user": np.array([2**64 - 1, 1], dtype=np.uint64), "item": [1, 2]})
    ids = Interactions.from_frame(frame).user_index.ids
    assert sorted(ids.tolist()) == ["1", "18446744073709551615"] and ids.dtype.kind == "U"


def test_python_integers_beyond_int64_are_strings():
    frame = pd.DataFrame({"user": pd.Series([99999999999999999999999, 1], dtype=object),
                          "item": [1, 2]})
    ids = Interactions.from_frame(frame).user_index.ids
    assert sorted(ids.tolist()) == ["1", "99999999999999999999999"]


@pytest.mark.parametrize("value, what", [((1, 2), "tuple"), ([1], "list"),
                                         (b"u1", "bytes"), (True, "bool")])
def test_non_scalar_or_odd_ids_name_the_column(value, what):
    column = pd.Series([value, value], dtype=object)
    frame = pd.DataFrame({"user": ["a", "b"], "item": column})
    with pytest.raises(DataError, match=rf"item ids must be integers or strings, not {what}"):
        Interactions.from_frame(frame)


def test_parquet_list_and_float_id_columns(tmp_path):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"user": [[1, 2], [3]], "item": [1, 2]}).to_parquet(tmp_path / "l.parquet")
    with pytest.raises(DataError, match=r"l\.parquet, row 0: user ids must be integers or "
                                        r"strings, not ndarray"):
        read_interactions(tmp_path / "l.parquet")
    big = pd.DataFrame({"user": [2.0**60, 2.0**60 + 256], "item": [1, 2]})
    big.to_parquet(tmp_path / "f.parquet")
    with pytest.raises(DataError, match=r"f\.parquet, row 0: user id"):
        read_interactions(tmp_path / "f.parquet")
    pd.DataFrame({"user": ["007", "7"], "item": [1.0, 2.0]}).to_parquet(tmp_path / "s.parquet")
    data = read_interactions(tmp_path / "s.parquet")
    assert data.n_users == 2 and data.item_index.ids.tolist() == [1, 2]


# --------------------------------------------------------------------- 7: lookups by type
def test_users_file_is_read_with_the_vocabulary_type(tmp_path):
    integers = IdIndex([7, 8], name="user")
    path = write(tmp_path / "users.csv", "user\n007\n7\n")
    ids = read_id_list(path, "user", integers)
    assert ids.tolist() == ["007", 7]
    assert integers.to_index(ids, unknown="ignore").tolist() == [-1, 0]
    strings = IdIndex(["007", "7"], name="user")
    assert read_id_list(path, "user", strings).tolist() == ["007", "7"]
    assert strings.to_index(read_id_list(path, "user", strings)).tolist() == [0, 1]


def test_users_file_with_the_wrong_header_names_the_missing_column(tmp_path):
    index = IdIndex([7, 8], name="user")
    with pytest.raises(DataError, match=r"no 'user' column \(columns found: \['uid'\]\)"):
        read_id_list(write(tmp_path / "u.csv", "uid\n7\n"), "user", index)
    with pytest.raises(DataError, match=r"missing column\(s\) \['user'\]; columns found: "
                                        r"\['uid', 'n'\]"):
        read_id_list(write(tmp_path / "v.csv", "uid,n\n7,1\n"), "user", index)
    assert read_id_list(write(tmp_path / "w.csv", "7\n8\n"), "user", index).tolist() == [7, 8]


def test_pairs_file_keeps_id_text(tmp_path):
    path = write(tmp_path / "pairs.csv", "user,item\n007,1\n7,NA\n")
    frame = read_table(path, id_columns=["user", "item"], columns=["user", "item"])
    assert frame["user"].tolist() == ["007", "7"] and frame["item"].tolist() == ["1", "NA"]
    with pytest.raises(DataError, match=r"missing column\(s\) \['user'\]; columns found"):
        read_table(write(tmp_path / "p2.csv", "uid,item\n1,2\n"), columns=["user", "item"])


# --------------------------------------------------------------------- 11: timestamps
@pytest.mark.parametrize("value, message", [
    ("1e300", "does not fit in int64 seconds"), ("-1e300", "does not fit in int64 seconds"),
    ("inf", "is not a finite number"), ("9.3e18", "does not fit in int64 seconds"),
])
def test_out_of_range_timestamps_are_rejected(tmp_path, value, message):
    path = write(tmp_path / "r.csv", f"user,item,rating,ts\n1,2,3,10\n1,3,4,{value}\n")
    with pytest.raises(DataError, match=rf"r\.csv, line 3: timestamp .* in column 'ts' "
                                        rf"{message}"):
        read_interactions(path, rating_col="rating", timestamp_col="ts")


def test_unparseable_dates_name_the_row_and_column(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,ts\n1,2,2020-01-01\n1,3,10000-01-01\n")
    with pytest.raises(DataError, match=r"line 3: timestamp '10000-01-01' in column 'ts'"):
        read_interactions(path, timestamp_col="ts")


def test_large_integer_timestamps_are_exact():
    frame = pd.DataFrame({"user": [1], "item": [2], "ts": [2**62 + 1]})
    assert Interactions.from_frame(frame, timestamp_col="ts").timestamps.tolist() == [2**62 + 1]


# --------------------------------------------------------------------- 12: crashes
def test_unknown_encoding(tmp_path):
    path = write(tmp_path / "r.csv", "user,item\n1,2\n")
    with pytest.raises(DataError, match="unknown encoding 'nope'"):
        read_interactions(path, encoding="nope")


@pytest.mark.parametrize("value", [None, "ratings.csv", pd.DataFrame({"user": [1]}), 3])
def test_dataset_needs_interactions(value):
    with pytest.raises(DataError, match="a Dataset is built from Interactions"):
        Dataset(value)


def test_as_dataset_refuses_other_things():
    from recoforge.data.dataset import as_dataset

    with pytest.raises(DataError, match="Dataset.from_frame"):
        as_dataset(pd.DataFrame({"user": [1]}))


@pytest.mark.parametrize("content, message", [
    (b"", "the file is empty"),
    (b"user,item\n", "no data rows"),
    (b"user,item\n\n\n", "no data rows"),
    (b"\x00\x01\x02\x03", "binary file"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "binary file"),
    (b"PK\x03\x04rest", "ZIP archive"),
    (b"PAR1rest", "Parquet file"),
    (b"user,item\nJos\xe9,1\n", "cannot decode byte"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = write(tmp_path / "r.csv", content)
    with pytest.raises(DataError, match=message) as info:
        read_interactions(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, what", [("r.xlsx", "Excel"), ("r.zip", "ZIP"),
                                        ("r.pkl", "pickle"), ("r.parquet.gz", "compressed")])
def test_unsupported_formats_list_the_supported_ones(tmp_path, name, what):
    path = write(tmp_path / name, "user,item\n1,2\n")
    with pytest.raises(DataError, match=rf"{what}.*not a supported format; supported: CSV"):
        read_table(path)


@pytest.mark.parametrize("sep", ["", '"', "\n"])
def test_unusable_separator(tmp_path, sep):
    with pytest.raises(ConfigError, match="sep must be"):
        read_table(write(tmp_path / "r.csv", "user,item\n1,2\n"), sep=sep)


# --------------------------------------------------------------------- JSON lines
def test_json_lines_keep_json_types(tmp_path):
    path = write(tmp_path / "r.jsonl", '{"user": "007", "item": 1, "rating": 4}\n'
                                       '{"user": "7", "item": 2, "rating": 5}\n\n\n')
    data = read_interactions(path, rating_col="rating")
    assert sorted(data.user_index.ids.tolist()) == ["007", "7"]
    assert data.item_index.ids.tolist() == [1, 2]


def test_json_blank_line_in_the_middle_is_an_empty_row_on_its_line(tmp_path):
    path = write(tmp_path / "r.jsonl", '{"user": 1, "item": 1}\n\n{"user": 2, "item": 2}\n')
    with pytest.raises(DataError, match=r"r\.jsonl, line 2: missing 'user'"):
        read_interactions(path)


@pytest.mark.parametrize("text, message", [
    ('{"user": 1, "item": 1}\n{"user": 2}\n', r"line 2: fields differ .*missing \['item'\]"),
    ('{"user": 1, "item": 1}\n[1, 2]\n', "line 2: expected a JSON object"),
    ('{"user": 1, "item": 1}\n{"user": 2,\n', "line 2: not valid JSON"),
    ('{"user": 1, "item": 1}\n{"user": "1", "item": 2}\n', "mix integers and strings"),
])
def test_json_lines_errors(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_interactions(write(tmp_path / "r.jsonl", text))
