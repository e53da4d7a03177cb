"""Issue 10, the newcomer path: play counts, value transforms, one seed, a readable board.

Each test is a failure a first-time user met (see the issue): counts read as ratings
without a word, defaults that collapse on counts, runs that differ under one seed, a
leaderboard unreadable at 80-120 columns, one model aborting a comparison, ``evaluate``
without ``--param`` or ``--item-features``.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data.loaders import CountsAsRatingsWarning, load_dataset, read_interactions
from recoforge.data.playcounts import playcount_interactions
from recoforge.data.split import holdout_per_user
from recoforge.data.transforms import (
    VALUE_TRANSFORMS,
    looks_like_counts,
    transform_matrix,
    transform_values,
)
from recoforge.errors import ConfigError, DataError
from recoforge.evaluation import compare
from tests.cli.test_cli import run


# ---------------------------------------------------------------------- transforms
def test_transforms_map_counts_as_documented():
    counts = np.array([0.0, 1.0, 3.0, 1000.0], np.float32)
    assert transform_values(counts, "none").tolist() == counts.tolist()
    assert transform_values(counts, "binary").tolist() == [0.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(transform_values(counts, "log1p"), np.log1p(counts), rtol=1e-6)
    bm25 = transform_values(counts, "bm25")
    assert bm25[0] == 0 and np.all(np.diff(bm25) > 0) and bm25[-1] < 2.2  # saturates
    for name in VALUE_TRANSFORMS:
        assert transform_values(counts, name).dtype == np.float32
    with pytest.raises(ConfigError, match="values must be one of"):
        transform_values(counts, "sqrt")


def test_transform_matrix_keeps_the_pattern():
    import scipy.sparse as sp

    matrix = sp.csr_matrix(np.array([[0, 5, 0], [200, 0, 1]], np.float32))
    out = transform_matrix(matrix, "log1p")
    assert (out.indices == matrix.indices).all() and (out.indptr == matrix.indptr).all()
    np.testing.assert_allclose(out.toarray(), np.log1p(matrix.toarray()), rtol=1e-6)


@pytest.mark.parametrize(("values", "counts"), [
    (np.tile([1.0, 2, 3, 4, 5], 100), False),  # stars
    (np.tile([0.5, 1.5, 3, 4.5, 5], 100), False),  # half stars
    (np.arange(101.0).repeat(5), False),  # a 0-100 score: bounded, not heavy tailed
    (np.ceil(np.random.default_rng(0).pareto(1.0, 2000) * 5), True),  # play counts
])
def test_counts_are_told_from_ratings(values, counts):
    assert looks_like_counts(values) is counts


# ---------------------------------------------------------------------- counts warning
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("newcomer")
    rng = np.random.default_rng(0)
    pairs = sorted({(u, int(i)) for u in range(60) for i in rng.choice(40, 8, replace=False)})
    frame = pd.DataFrame(pairs, columns=["user", "item"])
    frame["rating"] = rng.integers(1, 6, len(frame)).astype(float)
    frame["weight"] = np.ceil(rng.pareto(1.0, len(frame)) * 20).astype(int) + 1
    frame.to_csv(path / "plays.csv", index=False)
    pd.DataFrame({"item": range(40), "title": [f"Song {i}" for i in range(40)],
                  "genre": [("rock", "pop", "jazz")[i % 3] for i in range(40)]}
                 ).to_csv(path / "items.csv", index=False)
    return path


def test_counts_read_as_ratings_warn_and_name_the_flag(files):
    with pytest.warns(CountsAsRatingsWarning, match=r"look like counts.*kind='implicit'"):
        data = read_interactions(files / "plays.csv", rating_col="weight")
    assert data.kind == "explicit"  # warned, never silently changed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_interactions(files / "plays.csv", rating_col="weight", kind="implicit")
        read_interactions(files / "plays.csv", rating_col="rating")


def test_cli_warns_with_the_cli_flag(files):
    out = run("evaluate", "--data", "plays.csv", "--rating-col", "weight", "--models",
              "popularity", cwd=files)
    assert out.returncode == 0
    lines = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert lines and "pass --implicit" in lines[0] and "kind=" not in lines[0]


# ---------------------------------------------------------------------- defaults on counts
@pytest.fixture(scope="module")
def counts_split():
    data = playcount_interactions(20_000, seed=0)
    assert looks_like_counts(data.interactions.values)  # the generator makes counts
    return holdout_per_user(data, test_fraction=0.2, seed=0)


def test_default_models_beat_popularity_on_counts(counts_split):
    models = {"popularity": rf.create("popularity"), "item_knn": rf.create("item_knn"),
              "implicit_als": rf.create("implicit_als", seed=0),
              "item_knn_raw": rf.create("item_knn", values="none")}
    board = compare(models, counts_split, k=10, metrics=["ndcg"]).leaderboard["ndcg@10"]
    popularity = board["popularity"]
    assert popularity > 0.02  # popularity itself is not broken
    assert board["item_knn"] >= 2 * popularity, board.to_dict()
    assert board["implicit_als"] >= 2 * popularity, board.to_dict()
    assert board["item_knn"] > 1.5 * board["item_knn_raw"], board.to_dict()  # the transform


def test_values_leave_explicit_ratings_alone(files):
    data = read_interactions(files / "plays.csv", rating_col="rating")
    plain = rf.create("item_knn", values="none").fit(data).similarity_.toarray()
    logged = rf.create("item_knn", values="log1p").fit(data).similarity_.toarray()
    np.testing.assert_array_equal(plain, logged)


def test_playcounts_is_a_named_dataset():
    data = load_dataset("playcounts", n_interactions=5_000, seed=1)
    assert data.kind == "implicit" and data.interactions.values.min() >= 1
    assert data.interactions.values.max() > 100


# ---------------------------------------------------------------------- one seed
def test_one_seed_makes_a_run_reproducible(files, tmp_path):
    figures = []
    for name in ("a.csv", "b.csv"):
        out = run("evaluate", "--data", str(files / "plays.csv"), "--rating-col", "weight",
                  "--implicit", "--models", "bpr,implicit_als", "--seed", "7", "--param",
                  "bpr.n_epochs=3", "--param", "implicit_als.iterations=3", "--out", name,
                  cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert "seed 7" in out.stdout
        figures.append(pd.read_csv(tmp_path / name).drop(
            columns=["fit_seconds", "eval_seconds"]))
    pd.testing.assert_frame_equal(figures[0], figures[1])


def test_a_seed_given_with_param_wins():
    from recoforge.cli._options import model_params

    params = model_params(["bpr.seed=3"], ["bpr", "popularity", "implicit_als"], seed=9)
    assert params["bpr"]["seed"] == 3 and params["implicit_als"]["seed"] == 9
    assert "seed" not in params["popularity"]  # no seed parameter, none invented


# ---------------------------------------------------------------------- --param, features
def test_param_names_its_model(files):
    from recoforge.cli._options import model_params

    assert model_params(["regularization=200"], ["ease"], 0)["ease"]["regularization"] == 200
    with pytest.raises(ConfigError, match="--param of ease: unknown parameter 'epochs'"):
        model_params(["ease.epochs=3"], ["ease", "popularity"], 0)
    out = run("evaluate", "--data", "plays.csv", "--models", "ease,popularity", "--param",
              "regularization=200", cwd=files)
    assert out.returncode == 2 and "--param ease.regularization=" in out.stderr
    out = run("evaluate", "--data", "plays.csv", "--models", "popularity", "--param",
              "ease.regularization=200", cwd=files)
    assert out.returncode == 2 and "not in --models" in out.stderr


def test_param_reaches_the_model(files, tmp_path):
    boards = []
    for value in ("1", "100000"):
        out = run("evaluate", "--data", str(files / "plays.csv"), "--models", "ease",
                  "--param", f"ease.regularization={value}", "--out", "b.csv", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        boards.append(pd.read_csv(tmp_path / "b.csv")["ndcg@10"].iloc[0])
    assert boards[0] != boards[1]


def test_a_model_that_cannot_run_is_a_row(files, tmp_path):
    out = run("evaluate", "--data", str(files / "plays.csv"), "--models",
              "content,popularity", "--out", "b.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "content: could not run:" in out.stdout and "--item-features" in out.stdout
    board = pd.read_csv(tmp_path / "b.csv").set_index("model")
    assert board.loc["popularity", "ndcg@10"] > 0
    assert np.isnan(board.loc["content", "ndcg@10"]) and "item features" in board.loc[
        "content", "error"]


def test_evaluate_takes_item_features(files, tmp_path):
    out = run("evaluate", "--data", str(files / "plays.csv"), "--models",
              "content,popularity", "--item-features", str(files / "items.csv"),
              "--category-col", "genre", "--out", "b.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    board = pd.read_csv(tmp_path / "b.csv").set_index("model")
    assert board.loc["content", "ndcg@10"] > 0 and "error" not in board.columns


# ---------------------------------------------------------------------- readable board
@pytest.mark.parametrize("columns", [80, 100, 120])
def test_leaderboard_fits_the_terminal(files, tmp_path, monkeypatch, columns):
    monkeypatch.setenv("COLUMNS", str(columns))
    names = "popularity,item_knn,user_knn"
    out = run("evaluate", "--data", str(files / "plays.csv"), "--implicit", "--models",
              names, "--k", "10,20", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= columns
    for name in names.split(","):  # whole, never "m..."
        assert any(f" {name} " in line for line in lines), out.stdout
    text = " ".join(out.stdout.split())  # the note wraps at the terminal's width
    assert "ndcg@10" in text and "--out FILE writes every column" in text
    out = run("evaluate", "--data", str(files / "plays.csv"), "--implicit", "--models",
              names, "--k", "10,20", "--out", "full.csv", cwd=tmp_path)
    full = pd.read_csv(tmp_path / "full.csv")
    assert {"precision@20", "gini@20", "fit_seconds"} <= set(full.columns)


# ---------------------------------------------------------------------- published editions
def test_movielens_csv_edition_with_trailing_empty_columns(tmp_path):
    """ml-latest-small (2016) ends every line with empty fields under empty headers."""
    folder = tmp_path / "ml-latest-small"
    folder.mkdir()
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp,,,,\n"
                                        "1,1,4.0,964982703,,,,\n1,3,4.5,964981247,,,,\n"
                                        "2,1,3.0,964982224,,,,\n")
    (folder / "movies.csv").write_text("movieId,title,genres,,\n1,Toy Story (1995),"
                                       "Animation|Comedy,,\n3,Heat (1995),Action,,\n")
    data = load_dataset(folder)
    assert len(data.interactions) == 3 and data.kind == "explicit"
    assert sorted(data.interactions.values.tolist()) == [3.0, 4.0, 4.5]
    assert "Heat (1995)" in set(data.item_info["title"])
    (folder / "ratings.csv").write_text("userId,movieId,rating,timestamp,\n1,1,4.0,9,x\n")
    with pytest.raises(DataError, match="expected 4 columns"):
        load_dataset(folder)


@pytest.mark.parametrize("name", ["lastfm", "kuairec"])
def test_a_named_dataset_without_files_says_where_to_get_them(name, tmp_path):
    with pytest.raises(DataError, match=r"download it from https://.*pass path="):
        load_dataset(name)
    out = run("evaluate", "--data", name, "--models", "popularity", cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    assert "pass --path with its folder" in out.stderr and "path=" not in out.stderr
