"""Readable output: item titles in frames and the CLI, items found by name (issue 10, item 8).

Titles come from the loaders (MovieLens title, Last.fm artist name) or from an
``--item-features`` file's title column; they are learned state (``item_titles_``), so a
saved model shows them too, and a tampered title array fails to load.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data.dataset import Dataset
from recoforge.data.lastfm import load_lastfm
from recoforge.data.movielens import load_movielens
from recoforge.errors import ArtifactError, DataError, NotSupportedError, UnknownIdError
from tests.artifacts.helpers import edit_arrays
from tests.cli.test_cli import run
from tests.data.test_movielens import ml1m, ml100k, ml_csv, write

SHARED_ML100K = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "ml-100k"


def catalogue() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ratings of 30 users over 8 films with titles; one film has no title row."""
    rng = np.random.default_rng(3)
    rows = sorted({(u, int(i)) for u in range(30) for i in rng.choice(8, 4, replace=False)})
    ratings = pd.DataFrame(rows, columns=["user", "item"]).assign(rating=1.0)
    info = pd.DataFrame({"item": range(7), "name": [
        "Star Wars (1977)", "Star Wars: Episode I (1999)", "Toy Story (1995)",
        "Toy Story 2 (1999)", "Fargo (1996)", "Heat (1995)", "Alien (1979)"]}).set_index("item")
    return ratings, info


@pytest.fixture(scope="module")
def films() -> Dataset:
    ratings, info = catalogue()
    return Dataset.from_frame(ratings, kind="implicit").with_item_info(info, "name")


@pytest.fixture(scope="module")
def knn(films) -> rf.Recommender:
    return rf.create("item_knn").fit(films)


# ------------------------------------------------------------------ where titles come from
def test_movielens_editions_give_titles_aligned_with_the_vocabulary(tmp_path):
    for variant, build in (("100k", ml100k), ("1m", ml1m), ("latest-small", ml_csv)):
        data = load_movielens(variant, build(tmp_path / variant))
        titles = data.item_titles()
        assert titles is not None and len(titles) == data.n_items and titles.dtype.kind == "U"
        ids = data.item_index.ids.tolist()
        expected = data.item_info["title"].reindex(ids).fillna("").tolist()
        assert titles.tolist() == expected and any(expected)


def test_lastfm_artist_names_are_titles(tmp_path):
    write(tmp_path / "user_artists.dat", "userID\tartistID\tweight\n2\t51\t13883\n"
          "2\t52\t11690\n3\t51\t20\n3\t99\t5\n")
    write(tmp_path / "artists.dat", "id\tname\turl\tpictureURL\n51\tDuran Duran\tu\tp\n"
          "52\tMorcheeba\tu\tp\n")
    data = load_lastfm(tmp_path)
    titles = dict(zip(data.item_index.ids.tolist(), data.item_titles().tolist()))
    assert titles == {51: "Duran Duran", 52: "Morcheeba", 99: ""}
    model = rf.create("popularity").fit(data)
    assert model.item_by_title("duran duran") == 51


def test_title_column_is_checked_and_data_without_titles_has_none(films):
    ratings, info = catalogue()
    plain = Dataset.from_frame(ratings, kind="implicit")
    assert plain.item_titles() is None
    assert not rf.create("popularity").fit(plain).has_titles
    with pytest.raises(DataError, match="title column 'label'"):
        plain.with_item_info(info, "label")
    assert films.item_titles().tolist()[-1] == ""  # item 7 has no title row


# ------------------------------------------------------------------ API frames
def test_recommend_frames_are_unchanged_unless_titles_are_asked_for(knn):
    plain = knn.recommend([0, 1], k=3)
    assert list(plain.columns) == ["user", "item", "score", "rank"]
    titled = knn.recommend([0, 1], k=3, titles=True)
    assert list(titled.columns) == ["user", "item", "title", "score", "rank"]
    assert titled.drop(columns="title").equals(plain)
    assert titled["title"].tolist() == knn.titles_of(titled["item"]).tolist()
    assert titled["title"].str.len().gt(0).any()


def test_titles_of_a_model_without_titles_is_a_clear_error(films):
    plain = rf.create("popularity").fit(Dataset(films.interactions))
    with pytest.raises(NotSupportedError, match="no item titles.*--title-col"):
        plain.recommend([0], k=2, titles=True)
    with pytest.raises(NotSupportedError, match="no item titles"):
        plain.find_items("star")


def test_find_items_puts_exact_then_prefix_then_substring_matches_first(knn):
    found = knn.find_items("star wars")
    assert found["item"].tolist() == [0, 1]
    assert found["title"].tolist() == ["Star Wars (1977)", "Star Wars: Episode I (1999)"]
    assert knn.find_items("STORY")["item"].tolist() == [2, 3]
    assert knn.find_items("ar", limit=1)["item"].tolist() == [0]
    assert knn.find_items("no such film").empty


def test_item_by_title_resolves_unique_names_and_refuses_others_with_candidates(knn):
    assert knn.item_by_title("Star Wars") == 0  # exact, ignoring the year
    assert knn.item_by_title("toy story") == 2
    assert knn.item_by_title("fargo (1996)") == 4
    assert knn.item_by_title("episode i") == 1  # the only title containing it
    with pytest.raises(UnknownIdError, match=r"matches 2 items: 2 \(Toy Story \(1995\)\)"):
        knn.item_by_title("toy")
    with pytest.raises(UnknownIdError, match="no item title contains 'Fargoo'.*'Fargo"):
        knn.item_by_title("Fargoo")
    with pytest.raises(UnknownIdError, match="non-empty text"):
        knn.item_by_title("  ")


def test_similar_items_by_title_shows_titles_of_both_sides(knn):
    by_id = knn.similar_items([5], k=3)
    by_name = knn.similar_items("heat", k=3, by_title=True)
    assert list(by_name.columns) == ["item", "title", "similar_item", "similar_title",
                                     "score", "rank"]
    assert by_name.drop(columns=["title", "similar_title"]).equals(by_id)
    assert set(by_name["title"]) == {"Heat (1995)"}
    assert by_name["similar_title"].tolist() == knn.titles_of(by_id["similar_item"]).tolist()
    assert list(knn.similar_items("heat", k=3, by_title=True, titles=False).columns) == \
        list(by_id.columns)


def test_explain_titles_item_contributions(knn):
    frame = knn.explain(0, user=0, titles=True)
    assert list(frame.columns) == ["source", "id", "title", "contribution"]
    assert (frame["source"] == "item").all() and len(frame)
    assert frame["title"].tolist() == knn.titles_of(frame["id"]).tolist()


# ------------------------------------------------------------------ saved models
def test_titles_survive_save_and_load_and_a_tampered_array_is_refused(knn, tmp_path):
    knn.save(str(tmp_path / "m"), include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    assert loaded.item_titles_.tolist() == knn.item_titles_.tolist()
    assert loaded.recommend([0], k=3, titles=True).equals(knn.recommend([0], k=3, titles=True))
    edit_arrays(tmp_path / "m", lambda a: a.__setitem__(
        "item_titles_.values", a["item_titles_.values"][:-1]))
    with pytest.raises(ArtifactError, match="item_titles_"):
        rf.load_model(tmp_path / "m")


def test_non_text_titles_are_refused(knn, tmp_path):
    knn.save(str(tmp_path / "m"), include_titles=True)
    edit_arrays(tmp_path / "m", lambda a: a.__setitem__(
        "item_titles_.values", np.arange(len(a["item_titles_.values"]), dtype=np.float64)))
    with pytest.raises(ArtifactError, match="expected text"):
        rf.load_model(tmp_path / "m")


# ------------------------------------------------------------------ command line
@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("titles")
    ratings, info = catalogue()
    ratings.to_csv(path / "ratings.csv", index=False)
    info.reset_index().rename(columns={"item": "sku"}).assign(genre="g").to_csv(
        path / "films.csv", index=False)
    pd.DataFrame({"user": [0, 1]}).to_csv(path / "users.csv", index=False)
    fit = run("fit", "--data", "ratings.csv", "--implicit", "--model", "item_knn",
              "--item-features", "films.csv", "--item-id-col", "sku", "--title-col", "name",
              "--out", "knn", cwd=path)
    assert fit.returncode == 0, fit.stderr
    return path


def test_cli_recommend_writes_titles_when_the_model_has_them(shop):
    done = run("recommend", "--model", "knn", "--users", "users.csv", "--k", "2", "--out",
               "recs.csv", cwd=shop)
    assert done.returncode == 0, done.stderr
    recs = pd.read_csv(shop / "recs.csv")
    assert list(recs.columns) == ["user", "item", "title", "score", "rank"]
    model = rf.load_model(shop / "knn")
    assert recs["title"].fillna("").tolist() == model.titles_of(recs["item"]).tolist()
    off = run("recommend", "--model", "knn", "--users", "users.csv", "--no-titles", "--out",
              "plain.csv", cwd=shop)
    assert off.returncode == 0 and "title" not in pd.read_csv(shop / "plain.csv").columns


def test_cli_similar_explain_and_find_by_title(shop):
    similar = run("similar", "--model", "knn", "--title", "heat", "--k", "3", "--out",
                  "sim.csv", cwd=shop)
    assert similar.returncode == 0, similar.stderr
    assert "Heat (1995)" in similar.stdout
    sims = pd.read_csv(shop / "sim.csv")
    assert list(sims.columns) == ["similar_item", "similar_title", "score", "rank"]
    assert len(sims) == 3 and sims["similar_title"].iloc[0] in similar.stdout
    found = run("find", "--model", "knn", "star wars", cwd=shop)
    assert found.returncode == 0 and "Star Wars: Episode I (1999)" in found.stdout
    explained = run("explain", "--model", "knn", "--user", "0", "--item", "0", cwd=shop)
    assert explained.returncode == 0, explained.stderr
    assert "contribution" in explained.stdout and "Star Wars (1977)" in explained.stdout


@pytest.mark.parametrize("args, message", [
    (("similar", "--model", "knn", "--title", "toy"), "matches 2 items"),
    (("similar", "--model", "knn", "--title", "zzz"), "no item title contains 'zzz'"),
    (("similar", "--model", "knn"), "exactly one of --item ID or --title"),
    (("similar", "--model", "knn", "--item", "424242"), "424242"),
])
def test_cli_unknown_or_ambiguous_titles_are_one_line_errors(shop, args, message):
    done = run(*args, cwd=shop)
    assert done.returncode == 2 and message in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_cli_title_column_errors(shop):
    missing = run("fit", "--data", "ratings.csv", "--implicit", "--model", "popularity",
                  "--item-features", "films.csv", "--item-id-col", "sku", "--title-col",
                  "label", "--out", "x", cwd=shop)
    assert missing.returncode == 2 and "no title column 'label'" in missing.stderr
    alone = run("fit", "--data", "ratings.csv", "--implicit", "--model", "popularity",
                "--title-col", "name", "--out", "x", cwd=shop)
    assert alone.returncode == 2 and "--item-features" in alone.stderr
    assert not (shop / "x").exists()


@pytest.mark.skipif(not (SHARED_ML100K / "u.item").is_file(), reason="no shared ml-100k")
def test_real_movielens_100k_similar_by_title(tmp_path):
    model = rf.create("item_knn").fit(load_movielens("100k", SHARED_ML100K))
    assert model.item_by_title("star wars") == 50
    sims = model.similar_items("star wars", k=5, by_title=True)
    assert "Return of the Jedi (1983)" in sims["similar_title"].tolist()


def test_titles_are_catalogue_data_saved_on_request(knn, tmp_path):
    knn.save(str(tmp_path / "small"))
    assert not rf.load_model(tmp_path / "small").has_titles
    assert knn.has_titles  # saving without them leaves the fitted model as it was
    knn.save(str(tmp_path / "titled"), include_titles=True)
    assert rf.load_model(tmp_path / "titled").has_titles


def test_fit_takes_a_dataset_folder_or_a_name_with_path(tmp_path):
    """Issue 10 item 2: folders and names with --path wherever --data is accepted."""
    folder = tmp_path / "data" / "ml-100k"  # not beside the cwd: "ml-100k" is then a name
    folder.mkdir(parents=True)
    ml100k(folder)
    by_folder = run("fit", "--data", str(folder), "--model", "popularity", "--out", "a",
                    cwd=tmp_path)
    assert by_folder.returncode == 0, by_folder.stderr
    by_name = run("fit", "--data", "ml-100k", "--path", str(folder), "--model", "popularity",
                  "--out", "b", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert rf.load_model(tmp_path / "a").has_titles
    mixed = run("fit", "--data", str(folder), "--rating-col", "r", "--model", "popularity",
                "--out", "c", cwd=tmp_path)
    assert mixed.returncode == 2 and "applies to interaction files" in mixed.stderr
