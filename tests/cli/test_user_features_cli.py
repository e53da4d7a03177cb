"""``recoforge fit --user-features``: user attributes reach feature-aware models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cli.test_cli import run

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("users")
    rng = np.random.default_rng(0)
    rows = {(f"user{u}", f"item{i}") for u in range(30) for i in rng.choice(20, 6)}
    frame = pd.DataFrame(sorted(rows), columns=["user", "item"])
    frame["rating"] = rng.integers(1, 6, len(frame)).astype(float)
    frame.to_csv(path / "ratings.csv", index=False)
    items = pd.DataFrame({"item": [f"item{i}" for i in range(20)],
                          "kind": [f"k{i % 3}" for i in range(20)]})
    items.to_csv(path / "items.csv", index=False)
    users = pd.DataFrame({"uid": [f"user{u}" for u in range(30)] + ["stranger"],
                          "age": rng.integers(18, 70, 31), "city": ["a", "b", "c"] * 10 + ["a"]})
    users.to_csv(path / "users.csv", index=False)
    return path


def test_fit_with_user_features_keeps_the_user_encoder(files: Path):
    import recoforge as rf

    fit = run("fit", "--data", "ratings.csv", "--rating-col", "rating", "--model",
              "feature_mf", "--param", "epochs=2", "--item-features", "items.csv",
              "--category-col", "kind", "--user-features", "users.csv", "--user-id-col",
              "uid", "--user-category-col", "city", "--user-numeric-col", "age", "--out",
              "fm", cwd=files)
    assert fit.returncode == 0, fit.stderr
    model = rf.load_model(files / "fm")
    assert model.user_encoder_.columns == ["city", "age"]
    assert model.user_feature_matrix_.shape == (30, 4)  # city one-hot (3) + age
    newcomer = pd.DataFrame({"city": ["b"], "age": [30]}, index=["newbie"])
    recs = model.recommend(["newbie"], k=3, user_features=newcomer)
    assert recs["user"].tolist() == ["newbie"] * 3


def test_user_features_errors(files: Path):
    no_cols = run("fit", "--data", "ratings.csv", "--model", "popularity", "--user-features",
                  "users.csv", "--user-id-col", "uid", "--out", "x", cwd=files)
    assert no_cols.returncode == 2 and "--user-category-col" in no_cols.stderr
    bad_id = run("fit", "--data", "ratings.csv", "--model", "popularity", "--user-features",
                 "users.csv", "--user-category-col", "city", "--out", "x", cwd=files)
    assert bad_id.returncode == 2 and "no user id column 'user'" in bad_id.stderr
    assert not (files / "x").exists()
