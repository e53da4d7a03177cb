"""MovieLens loaders on files in the official layouts, the shared copies, and downloads."""

from __future__ import annotations

import hashlib
import warnings
import zipfile

import numpy as np
import pytest

from recoforge.data import download, movielens
from recoforge.data.movielens import load_movielens, normalize_variant
from recoforge.errors import DataError


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def flags(*on):
    return "|".join("1" if k in on else "0" for k in range(19))


def ml100k(folder):
    write(folder / "u.data", "1\t10\t4\t881250949\n1\t20\t2\t881250950\n2\t10\t5\t881250951\n")
    write(folder / "u.item",
          f"10|Richard III (1995)|22-Jan-1996||http://imdb/10|{flags(8, 17)}\n"
          f"20|Angels and Insects (1995)|01-Jan-1995||http://imdb/20|{flags(8, 14)}\n"
          f"30|Belle de jour (1967)|01-Jan-1967||http://imdb/30|{flags(8)}\n"
          f"40|unknown|||http://imdb/40|{flags(0)}\n", encoding="latin-1")
    write(folder / "u.genre", "".join(f"{g}|{k}\n" for k, g in enumerate(movielens.GENRES_100K)))
    write(folder / "u.user", "1|24|M|technician|85711\n2|53|F|other|T8H1N\n")
    return folder


def ml1m(folder, ratings_csv=False):
    if ratings_csv:
        write(folder / "ratings.csv", "user_id,movie_id,rating,timestamp\n1,1193,5,978300760\n"
              "1,661,3,\n2,1193,4,978300800\n")
    else:
        write(folder / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n"
              "2::1193::4::978300800\n")
    write(folder / "movies.dat", "661::James and the Giant Peach (1996)::Animation|Children's\n"
          "1193::One Flew Over the Cuckoo's Nest (1975)::Drama\n"
          "2000::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
          "2001::Amélie (2001)::Comedy|Romance\n", encoding="latin-1")
    write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    return folder


def ml_csv(folder):
    write(folder / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n"
          "1,3,4.5,964981247\n2,1,2.5,964982224\n")
    write(folder / "movies.csv", 'movieId,title,genres\n1,Toy Story (1995),Adventure|Animation\n'
          '3,"Grumpier Old Men, The (1995)",Comedy|Romance\n'
          "5,Babylon 5,(no genres listed)\n")
    write(folder / "links.csv", "movieId,imdbId,tmdbId\n1,0114709,862\n3,0113228,15602\n")
    return folder


# --------------------------------------------------------------------------- layouts
def test_ml100k_layout(tmp_path):
    data = load_movielens("100k", ml100k(tmp_path / "ml-100k"))
    inter = data.interactions
    assert (len(inter), inter.n_users, inter.n_items) == (3, 2, 4)  # unrated movies kept
    assert inter.kind == "explicit" and inter.timestamps is not None
    info = data.item_info
    assert info.loc[10, "title"] == "Richard III (1995)" and info.loc[10, "year"] == 1995
    assert info.loc[10, "genres"] == "Drama|War"
    assert info.loc[40, "genres"] == "unknown" and info["year"].isna()[40]
    assert "genres:drama" in data.item_features.names.tolist()
    assert data.user_info.loc[2, "zip_code"] == "T8H1N"
    assert {"gender=F", "occupation=technician", "num:age"} <= set(data.user_features.names)


def test_ml100k_found_in_parent_folder(tmp_path):
    ml100k(tmp_path / "ml-100k")
    assert load_movielens("ml-100k", tmp_path).n_items == 4


def test_ml1m_dat_layout(tmp_path):
    data = load_movielens("1m", ml1m(tmp_path))
    inter = data.interactions
    assert (len(inter), inter.n_users, inter.n_items) == (3, 2, 4)
    assert inter.timestamps is not None
    info = data.item_info
    assert info.loc[2000, "title"].startswith("Star Wars: Episode IV")
    assert info.loc[2001, "title"] == "Amélie (2001)" and info.loc[2001, "year"] == 2001
    assert data.user_info.loc[1, "age_group"] == "Under 18"
    assert data.user_info.loc[2, "occupation"] == "self-employed"
    assert "age_group=56+" in data.user_features.names.tolist()


def test_ml1m_ratings_csv_without_all_timestamps_warns(tmp_path):
    with pytest.warns(UserWarning, match="1 of 3 timestamps are empty.*WITHOUT timestamps"):
        data = load_movielens("1m", ml1m(tmp_path, ratings_csv=True))
    assert len(data.interactions) == 3 and data.interactions.timestamps is None


def test_ml10m_layout(tmp_path):
    folder = tmp_path / "ml-10M100K"
    write(folder / "ratings.dat", "1::122::5::838985046\n1::185::4.5::838983525\n")
    write(folder / "movies.dat", "122::Boomerang (1992)::Comedy|Romance\n"
          "185::Net, The (1995)::Action|Crime|Thriller\n")
    data = load_movielens("10m", tmp_path)
    assert data.name == "ml-10m" and data.user_info is None and data.user_features is None
    assert sorted(data.interactions.values.tolist()) == [4.5, 5.0]


@pytest.mark.parametrize("variant", ["20m", "25m", "latest-small"])
def test_csv_layouts(tmp_path, variant):
    data = load_movielens(variant, ml_csv(tmp_path))
    info = data.item_info
    assert data.n_items == 3 and info.loc[3, "title"] == "Grumpier Old Men, The (1995)"
    assert info.loc[5, "genres"] == "" and info["year"].isna()[5]
    assert info.loc[1, "tmdb_id"] == 862
    assert data.item_features.matrix[data.item_index.to_index([5])[0]].nnz == 0


def test_malformed_ratings_line(tmp_path):
    ml1m(tmp_path)
    write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2"):
        load_movielens("1m", tmp_path)


def test_malformed_csv_ratings_line(tmp_path):
    ml_csv(tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n1,3,4,5,6\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: malformed"):
        load_movielens("latest-small", tmp_path)


def test_nan_rating_and_duplicate_rating(tmp_path):
    ml_csv(tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n1,3,,2\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: rating"):
        load_movielens("latest-small", tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n1,1,3,2\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: duplicate"):
        load_movielens("latest-small", tmp_path)


def test_missing_item_id_names_line(tmp_path):
    ml100k(tmp_path)
    write(tmp_path / "u.data", "1\t10\t4\t1\n1\t\t4\t1\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: malformed"):
        load_movielens("100k", tmp_path)


def test_missing_csv_item_id_names_line(tmp_path):
    ml_csv(tmp_path)
    write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4,1\n1,,4,2\n")
    with pytest.raises(DataError, match=r"ratings\.csv, line 3: missing item id"):
        load_movielens("latest-small", tmp_path)


def test_unknown_variant():
    with pytest.raises(DataError, match="unknown MovieLens variant '5m'"):
        load_movielens("5m", ".")


def test_variant_aliases():
    assert normalize_variant("ML-1M") == "1m"
    assert normalize_variant("ml-10M100K") == "10m"
    assert normalize_variant("latest_small") == "latest-small"


def test_missing_files_message(tmp_path):
    with pytest.raises(DataError, match="no MovieLens 1m files"):
        load_movielens("1m", tmp_path)
    with pytest.raises(DataError, match="download=True"):
        load_movielens("1m", cache_dir=tmp_path)


# --------------------------------------------------------------------------- downloads
def build_zip(tmp_path):
    source = ml100k(tmp_path / "src" / "ml-100k")
    archive = tmp_path / "mirror" / "ml-100k.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for file in source.iterdir():
            zf.write(file, f"ml-100k/{file.name}")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def use_mirror(monkeypatch, archive, md5):
    monkeypatch.setattr(movielens, "BASE_URL", archive.parent.as_uri() + "/")
    monkeypatch.setitem(movielens.ARCHIVES, "100k",
                        movielens.Archive("ml-100k.zip", "ml-100k", md5))


def test_download_verifies_and_extracts(tmp_path, monkeypatch):
    archive, md5 = build_zip(tmp_path)
    use_mirror(monkeypatch, archive, md5)
    cache = tmp_path / "cache"
    data = load_movielens("100k", download=True, cache_dir=cache)
    assert len(data.interactions) == 3
    assert (cache / "ml-100k.zip").is_file() and (cache / "ml-100k" / "u.data").is_file()
    assert not list(cache.glob(".*"))  # no temporary files left
    archive.unlink()  # a second load reads the cache without fetching
    assert load_movielens("100k", cache_dir=cache).n_items == 4


def test_download_uses_cache_env_var(tmp_path, monkeypatch):
    archive, md5 = build_zip(tmp_path)
    use_mirror(monkeypatch, archive, md5)
    monkeypatch.setenv("RECOFORGE_CACHE", str(tmp_path / "envcache"))
    load_movielens("100k", download=True)
    assert (tmp_path / "envcache" / "ml-100k" / "u.data").is_file()


def test_download_checksum_mismatch_deletes_file(tmp_path, monkeypatch):
    archive, _ = build_zip(tmp_path)
    use_mirror(monkeypatch, archive, "0" * 32)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="checksum mismatch.*deleted"):
        load_movielens("100k", download=True, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_download_with_published_md5_file(tmp_path, monkeypatch):
    archive, md5 = build_zip(tmp_path)
    small = archive.with_name("ml-latest-small.zip")
    with zipfile.ZipFile(small, "w") as zf:
        for name, text in (("ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0,9\n"),
                           ("movies.csv", "movieId,title,genres\n1,Toy Story (1995),Comedy\n")):
            zf.writestr(f"ml-latest-small/{name}", text)
    digest = hashlib.md5(small.read_bytes()).hexdigest()
    write(small.with_name("ml-latest-small.zip.md5"), f"MD5 (ml-latest-small.zip) = {digest}\n")
    monkeypatch.setattr(movielens, "BASE_URL", archive.parent.as_uri() + "/")
    data = load_movielens("latest-small", download=True, cache_dir=tmp_path / "c")
    assert len(data.interactions) == 1


def test_download_failure_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setattr(movielens, "BASE_URL", (tmp_path / "nowhere").as_uri() + "/")
    with pytest.raises(DataError, match="download of .* failed"):
        load_movielens("100k", download=True, cache_dir=tmp_path / "c")


def test_zip_slip_is_refused(tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(DataError, match="outside"):
        download.extract_zip(archive, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_pinned_checksums_are_md5_hex():
    for variant, archive in movielens.ARCHIVES.items():
        assert archive.md5 is None or len(archive.md5) == 32, variant
    assert movielens.ARCHIVES["100k"].md5 == "0e33842e24a9c977be4e0107933c0723"


# --------------------------------------------------------------------------- shared copies
@pytest.mark.datasets
def test_shared_ml100k(shared_datasets):
    folder = shared_datasets / "ml-100k"
    if not folder.is_dir():
        pytest.skip("ml-100k absent")
    data = load_movielens("100k", folder)
    inter = data.interactions
    assert (len(inter), inter.n_users, inter.n_items) == (100_000, 943, 1_682)
    assert inter.timestamps is not None and set(np.unique(inter.values)) == {1, 2, 3, 4, 5}
    assert data.item_info.loc[1, "title"] == "Toy Story (1995)"
    assert data.item_features.n_features == 19 and data.user_features.n_rows == 943


@pytest.mark.datasets
def test_shared_ml1m_ratings_csv(shared_datasets):
    folder = shared_datasets / "ml-1m"
    if not folder.is_dir():
        pytest.skip("ml-1m absent")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_movielens("1m", folder)
    assert any("199,435 of 1,000,209 timestamps are empty" in str(w.message) for w in caught)
    inter = data.interactions
    assert (len(inter), inter.n_users) == (1_000_209, 6_040)
    assert len(np.unique(inter.items)) == 3_706 and inter.n_items == 3_883
    assert inter.timestamps is None
    assert data.user_info.shape[0] == 6_040 and data.item_features.n_features == 18
