"""Generic interaction reader, dataset registry, KuaiRec and HetRec Last.fm loaders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recoforge.data.kuairec import load_kuairec
from recoforge.data.lastfm import load_lastfm
from recoforge.data.loaders import (
    available_datasets,
    load_dataset,
    read_interactions,
    read_table,
)
from recoforge.errors import DataError


def write(path, text, encoding="utf-8"):
    path.write_text(text, encoding=encoding)
    return path


# --------------------------------------------------------------------------- generic reader
def test_csv_with_ratings_and_timestamps(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating,ts\nu1,a,4,10\nu1,b,3.5,20\nu2,a,5,30\n")
    data = read_interactions(path, rating_col="rating", timestamp_col="ts")
    inter = data.interactions
    assert (len(inter), inter.n_users, inter.n_items, inter.kind) == (3, 2, 2, "explicit")
    assert data.name == "r"
    frame = inter.to_frame().sort_values(["user", "item"])
    assert frame["value"].tolist() == [4.0, 3.5, 5.0]
    assert frame["timestamp"].tolist() == [10, 20, 30]


@pytest.mark.parametrize("suffix", [".tsv", ".txt", ".dat"])
def test_tab_separator_from_extension(tmp_path, suffix):
    path = write(tmp_path / f"r{suffix}", "1\t10\t5\n2\t10\t3\n2\t11\t1\n")
    data = read_interactions(path, header=False, names=["user", "item", "rating"],
                             rating_col="rating")
    assert data.interactions.shape == (2, 2)
    assert sorted(data.interactions.values.tolist()) == [1.0, 3.0, 5.0]


def test_explicit_separator_and_positional_columns(tmp_path):
    path = write(tmp_path / "events.log", "7;x\n8;y\n7;y\n")
    data = read_interactions(path, sep=";", header=False, user_col=0, item_col=1)
    assert data.interactions.kind == "implicit"
    assert data.interactions.user_index.ids.tolist() == [7, 8]
    assert np.all(data.interactions.values == 1.0)


def test_parquet_round_trip(tmp_path):
    pytest.importorskip("pyarrow")
    frame = pd.DataFrame({"user": [1, 1, 2], "item": [5, 6, 5], "rating": [1.0, 2.0, 3.0]})
    frame.to_parquet(tmp_path / "r.parquet")
    data = read_interactions(tmp_path / "r.parquet", rating_col="rating")
    assert len(data.interactions) == 3
    assert data.interactions.to_csr().sum() == pytest.approx(6.0)


def test_parquet_errors_name_rows_not_lines(tmp_path):
    pytest.importorskip("pyarrow")
    pd.DataFrame({"user": [1, 2], "item": [5, 6], "rating": [1.0, np.nan]}).to_parquet(
        tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"r\.parquet, row 1"):
        read_interactions(tmp_path / "r.parquet", rating_col="rating")


def test_malformed_line_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.csv", "user,item,rating\n1,2,3\n1,3,4\n2,5,1,99\n3,3,3\n")
    with pytest.raises(DataError, match=r"bad\.csv, line 4: malformed line: 4 fields, expected 3"):
        read_interactions(path, rating_col="rating")


def test_malformed_line_with_multichar_separator(tmp_path):
    path = write(tmp_path / "bad.dat", "1::2::3\n1::3::4::5\n")
    with pytest.raises(DataError, match=r"bad\.dat, line 2"):
        read_table(path, sep="::", header=False)


def test_missing_column_lists_available(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating\n1,2,3\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['user', 'item'\].*userId"):
        read_interactions(path, rating_col="rating")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_interactions(tmp_path / "nope.csv")


def test_empty_file(tmp_path):
    with pytest.raises(DataError, match="empty"):
        read_interactions(write(tmp_path / "e.csv", ""))


def test_header_only_file_has_no_rows(tmp_path):
    with pytest.raises(DataError, match="no data rows"):
        read_interactions(write(tmp_path / "h.csv", "user,item\n"))


def test_nan_rating_names_line(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,\n")
    with pytest.raises(DataError, match=r"r\.csv, line 3: rating"):
        read_interactions(path, rating_col="rating")


def test_non_numeric_rating_names_line(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,4\n2,3,good\n")
    with pytest.raises(DataError, match=r"r\.csv, line 4: rating/value 'good'"):
        read_interactions(path, rating_col="rating")


def test_missing_user_names_line(tmp_path):
    path = write(tmp_path / "r.csv", "user,item\n1,2\n,3\n")
    with pytest.raises(DataError, match=r"r\.csv, line 3: missing 'user'"):
        read_interactions(path)


def test_blank_line_in_middle_keeps_true_line_numbers(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n\n2,2,x\n\n\n")
    with pytest.raises(DataError, match=r"line 3: missing 'user'"):
        read_interactions(path, rating_col="rating")


def test_trailing_blank_lines_are_ignored(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n2,2,4\n\n\n")
    assert len(read_interactions(path, rating_col="rating").interactions) == 2


def test_duplicates_error_by_default_for_ratings(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,4\n1,2,5\n")
    with pytest.raises(DataError, match=r"r\.csv, line 4: duplicate"):
        read_interactions(path, rating_col="rating")


@pytest.mark.parametrize(("policy", "expected"), [("last", 5.0), ("first", 3.0),
                                                  ("mean", 4.0), ("sum", 8.0)])
def test_duplicate_policies(tmp_path, policy, expected):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n1,3,4\n1,2,5\n")
    data = read_interactions(path, rating_col="rating", duplicates=policy)
    assert data.interactions.to_csr()[0, 0] == pytest.approx(expected)


def test_implicit_duplicates_sum_by_default(tmp_path):
    path = write(tmp_path / "e.csv", "user,item\n1,2\n1,2\n1,3\n")
    assert read_interactions(path).interactions.to_csr()[0, 0] == 2.0


def test_unknown_duplicate_policy(tmp_path):
    path = write(tmp_path / "e.csv", "user,item\n1,2\n")
    with pytest.raises(DataError, match="duplicates must be one of"):
        read_interactions(path, duplicates="max")


def test_wrong_encoding_suggests_encoding(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes("user,item\nJos\xe9,1\n".encode("latin-1"))
    with pytest.raises(DataError, match="encoding="):
        read_interactions(path)
    data = read_interactions(path, encoding="latin-1")
    assert data.interactions.user_index.ids.tolist() == ["José"]


def test_folder_instead_of_file(tmp_path):
    with pytest.raises(DataError, match="is a folder"):
        read_table(tmp_path)


# --------------------------------------------------------------------------- registry
def test_available_datasets_lists_names_with_fields():
    entries = available_datasets()
    names = {e["name"] for e in entries}
    assert {"ml-100k", "ml-1m", "ml-10m", "ml-20m", "ml-25m", "ml-latest-small", "kuairec",
            "lastfm", "category-demo", "toy-catalogue", "film-catalogue", "scalable"} <= names
    for entry in entries:
        assert set(entry) == {"name", "description", "size", "url", "license"}
        assert entry["description"] and entry["license"]
    entries[0]["name"] = "changed"
    assert available_datasets()[0]["name"] != "changed"


def test_load_dataset_by_generator_name():
    data = load_dataset("toy-catalogue")
    assert data.name == "toy-catalogue" and data.n_items == 5
    demo = load_dataset("category-demo", n_users=20, n_items=30, seed=1)
    assert demo.n_users == 20 and demo.n_items == 30


def test_load_dataset_from_file(tmp_path):
    path = write(tmp_path / "r.csv", "user,item,rating\n1,2,3\n")
    assert len(load_dataset(path, rating_col="rating").interactions) == 1


def test_load_dataset_movielens_alias(tmp_path):
    write(tmp_path / "u.data", "1\t10\t4\t100\n2\t10\t3\t200\n")
    data = load_dataset("movielens-100k", path=tmp_path)
    assert data.name == "ml-100k" and len(data.interactions) == 2
    assert load_dataset("100k", path=tmp_path).name == "ml-100k"


def test_load_dataset_detects_folder_layout(tmp_path):
    write(tmp_path / "u.data", "1\t10\t4\t100\n")
    assert load_dataset(tmp_path).name == "ml-100k"


def test_load_dataset_unknown_name():
    with pytest.raises(DataError, match="unknown dataset 'netflix'.*ml-1m"):
        load_dataset("netflix")


def test_load_dataset_unrecognised_folder(tmp_path):
    with pytest.raises(DataError, match="no known dataset layout"):
        load_dataset(tmp_path)


# --------------------------------------------------------------------------- KuaiRec
MATRIX = ("user_id,video_id,play_duration,video_duration,time,date,timestamp,watch_ratio\n"
          "14,148,4381,6067,2020-07-05 05:27:48.378,20200705,1593898068.378,0.722\n"
          "14,183,11635,6100,2020-07-05 05:28:00.057,20200705,1593898080.057,1.907\n"
          "14,3649,22422,10867,2020-07-05 05:29:09.479,20200705,1593898149.479,2.063\n"
          "19,148,0,6067,,,,0.0\n"
          "19,183,3000,6100,2020-07-06 10:00:00.000,20200706,1594029600.0,0.49\n"
          "21,3649,5000,10867,,,,0.46\n")


def kuairec_folder(tmp_path):
    data = tmp_path / "KuaiRec 2.0" / "data"
    data.mkdir(parents=True)
    write(data / "small_matrix.csv", MATRIX)
    write(data / "user_features.csv",
          "user_id,user_active_degree,is_lowactive_period,is_live_streamer,is_video_author,"
          "follow_user_num,follow_user_num_range,fans_user_num,fans_user_num_range,"
          "friend_user_num,friend_user_num_range,register_days,register_days_range,"
          "onehot_feat0,onehot_feat1\n"
          "14,high_active,0,0,0,5,(0:10],2,[1;10),0,0,120,61-90,0,3\n"
          "19,full_active,0,0,1,40,(10:50],0,0,1,[1;5),300,181-365,1,\n"
          "21,middle_active,1,0,0,0,0,0,0,0,0,10,8-14,0,5\n")
    write(data / "item_daily_features.csv",
          "video_id,date,author_id,video_type,upload_dt,upload_type,visible_status,"
          "video_duration,show_cnt,play_cnt\n"
          "148,20200705,3309,NORMAL,2020-03-30,ShortImport,public,6067.0,100,50\n"
          "148,20200706,3309,NORMAL,2020-03-30,ShortImport,private,6067.0,300,150\n"
          "183,20200705,2270,AD,2020-06-01,Web,public,,80,20\n"
          "3649,20200705,11,NORMAL,2020-06-20,ShortImport,public,10867.0,10,9\n")
    write(data / "item_categories.csv", 'video_id,feat\n148,[8]\n183,"[27, 9]"\n3649,[9]\n')
    return tmp_path


def test_kuairec_small_matrix(tmp_path):
    folder = kuairec_folder(tmp_path)
    with pytest.warns(UserWarning) as record:
        data = load_kuairec(folder)
    messages = " ".join(str(w.message) for w in record)
    assert "dropped 1 of 6 rows" in messages and "timestamps are missing" in messages
    inter = data.interactions
    assert inter.kind == "implicit" and len(inter) == 5 and inter.timestamps is None
    assert np.sort(inter.values) == pytest.approx([0.46, 0.49, 0.722, 1.907, 2.063])
    assert data.user_features is not None and data.user_features.n_rows == inter.n_users
    names = data.user_features.names.tolist()
    assert "user_active_degree=high_active" in names and "num:fans_user_num" in names
    assert data.item_info.loc[148, "visible_status"] == "private"  # last by date
    assert data.item_info.loc[148, "show_cnt"] == pytest.approx(200.0)  # averaged
    item_names = data.item_features.names.tolist()
    assert {"categories:27", "categories:9", "video_type=AD"} <= set(item_names)
    row = data.item_index.to_index([183])[0]
    dense = data.item_features.matrix.toarray()[row]
    assert dense[item_names.index("categories:27")] == 1.0


def test_kuairec_threshold_and_drop_rows(tmp_path):
    folder = kuairec_folder(tmp_path)
    with pytest.warns(UserWarning, match="dropped"):
        data = load_kuairec(folder, threshold=0.7, missing_timestamps="drop_rows")
    inter = data.interactions
    assert len(inter) == 3 and inter.timestamps is not None
    assert inter.timestamps.min() == 1593898068


def test_kuairec_missing_folder_and_bad_matrix(tmp_path):
    with pytest.raises(DataError, match="no KuaiRec"):
        load_kuairec(tmp_path)
    with pytest.raises(DataError, match="matrix must be"):
        load_kuairec(kuairec_folder(tmp_path), matrix="medium")


def test_kuairec_missing_column(tmp_path):
    write(tmp_path / "small_matrix.csv", "user_id,video_id,timestamp\n1,2,3.0\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['watch_ratio'\]"):
        load_kuairec(tmp_path)


# --------------------------------------------------------------------------- Last.fm
def lastfm_folder(tmp_path):
    folder = tmp_path / "hetrec2011-lastfm-2k"
    folder.mkdir()
    write(folder / "user_artists.dat", "userID\tartistID\tweight\n2\t51\t13883\n"
          "2\t52\t11690\n3\t51\t20\n")
    write(folder / "artists.dat", "id\tname\turl\tpictureURL\n51\tDuran Duran\thttp://x/51\t"
          "http://p/51\n52\tMorcheeba\thttp://x/52\thttp://p/52\n53\tAir\thttp://x/53\t\n")
    write(folder / "tags.dat", "tagID\ttagValue\n1\tmetal\n2\tnew wave\n3\tchillout\n",
          encoding="latin-1")
    write(folder / "user_taggedartists.dat", "userID\tartistID\ttagID\tday\tmonth\tyear\n"
          "2\t51\t2\t1\t4\t2009\n3\t51\t2\t1\t4\t2009\n2\t52\t3\t1\t4\t2009\n"
          "2\t53\t1\t1\t4\t2009\n")
    return tmp_path


def test_lastfm(tmp_path):
    data = load_lastfm(lastfm_folder(tmp_path))
    inter = data.interactions
    assert inter.kind == "implicit" and len(inter) == 3
    assert inter.n_items == 3  # Air has no plays but is in the catalogue
    assert inter.to_csr().sum() == pytest.approx(13883 + 11690 + 20)
    assert data.item_info.loc[51, "name"] == "Duran Duran"
    assert data.item_info.loc[51, "tags"] == "new wave"
    names = data.item_features.names.tolist()
    assert names == ["tags:chillout", "tags:metal", "tags:new wave"]
    only_popular = load_lastfm(tmp_path, min_tag_count=2)
    assert only_popular.item_features.names.tolist() == ["tags:new wave"]


def test_lastfm_errors(tmp_path):
    with pytest.raises(DataError, match="no user_artists.dat"):
        load_lastfm(tmp_path)
    write(tmp_path / "user_artists.dat", "userID\tartistID\tplays\n1\t2\t3\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['weight'\]"):
        load_lastfm(tmp_path)
    write(tmp_path / "user_artists.dat", "userID\tartistID\tweight\n1\t2\t0\n")
    with pytest.raises(DataError, match=r"user_artists\.dat, line 2: implicit values"):
        load_lastfm(tmp_path)


# --------------------------------------------------------------------------- formats
def test_compressed_csv_and_json_array(tmp_path):
    import gzip

    with gzip.open(tmp_path / "r.csv.gz", "wt") as handle:
        handle.write("user,item,rating\n1,2,3\n2,2,4\n")
    assert len(read_interactions(tmp_path / "r.csv.gz", rating_col="rating").interactions) == 2
    path = write(tmp_path / "r.json", '[{"user": "a", "item": 1}, {"user": "b", "item": 1}]')
    assert read_interactions(path).interactions.user_index.ids.tolist() == ["a", "b"]


def test_crlf_lines_and_unknown_suffix_read_as_csv(tmp_path):
    path = write(tmp_path / "events", "user,item\r\n1,2\r\n3,4\r\n")
    assert read_interactions(path).interactions.shape == (2, 2)


def test_read_table_id_columns_by_position_without_header(tmp_path):
    path = write(tmp_path / "r.tsv", "007\tNA\n7\tx\n")
    frame = read_table(path, header=False, id_columns=[0, 1])
    assert frame[0].tolist() == ["007", "7"] and frame[1].tolist() == ["NA", "x"]
    assert read_table(path, header=False)[0].tolist() == [7, 7]  # without: inferred


def test_read_id_list_plain_and_header(tmp_path):
    from recoforge.data.loaders import read_id_list

    assert read_id_list(write(tmp_path / "a.csv", "user\n3\n4\n"), "user").tolist() == [3, 4]
    assert read_id_list(write(tmp_path / "b.csv", "3\nx\n"), "user").tolist() == ["3", "x"]
    with pytest.raises(DataError, match=r"c\.csv, line 3: empty user id"):
        read_id_list(write(tmp_path / "c.csv", "user,n\n1,2\n,3\n"), "user")
