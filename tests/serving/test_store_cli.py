"""``recoforge load`` / ``retrain`` / ``versions`` / ``activate`` through the real entry
point: one-line errors with status 2, nothing half-loaded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("sqlalchemy")

from recoforge.serving.store import Store  # noqa: E402
from tests.cli.test_cli import run  # noqa: E402


def test_load_demo_then_retrain_and_roll_back(tmp_path: Path):
    db = tmp_path / "serving.db"
    done = run("load", "--db", db, "--data", "category-demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "loaded 8,121 events; 300 users and 200 items" in done.stdout
    with Store.open(str(db)) as store:
        assert store.count_events() == 8121
        item = store.get_item("i0001")
        assert item["attributes"]["title"] and item["categories"] == [
            item["categories"][0]]  # the demo's single category column
        assert "preferred_category" in store.get_user("u0001")["attributes"]
        assert store.events_frame()["type"].unique().tolist() == ["rating"]
    again = run("load", "--db", db, "--data", "category-demo", cwd=tmp_path)
    assert again.returncode == 0 and "loaded before" in again.stdout
    with Store.open(str(db)) as store:
        assert store.count_events() == 8121
    models = tmp_path / "models"
    first = run("retrain", "--db", db, "--model", "popularity", "--models-dir", models,
                cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("version 1 (popularity): holdout ndcg@10 ")
    assert len(first.stdout.strip().splitlines()) == 1
    second = run("retrain", "--db", db, "--model", "ease", "--param", "regularization=50",
                 "--models-dir", models, cwd=tmp_path)
    assert second.returncode == 0 and "; activated (not worse" in second.stdout
    listing = run("versions", "--db", db, cwd=tmp_path).stdout.splitlines()
    assert listing[0].startswith("  v1 popularity") and listing[1].startswith("* v2 ease")
    assert run("activate", "--db", db, "--version", "1", cwd=tmp_path).returncode == 0
    with Store.open(str(db)) as store:
        assert store.active_version()["id"] == 1


def test_load_movielens_style_file_with_item_attributes(tmp_path: Path):
    pd.DataFrame({"uid": [1, 1, 2, 3], "iid": [10, 20, 10, 30],
                  "stars": [4.0, 3.0, 5.0, 1.0], "ts": [100, 200, 300, 400]}
                 ).to_csv(tmp_path / "ratings.csv", index=False)
    pd.DataFrame({"item": [10, 20, 30], "title": ["A", "B", "C"],
                  "genres": ["x|y", "y", ""]}).to_csv(tmp_path / "items.csv", index=False)
    done = run("load", "--db", tmp_path / "s.db", "--data", tmp_path / "ratings.csv",
               "--user-col", "uid", "--item-col", "iid", "--rating-col", "stars",
               "--timestamp-col", "ts", "--item-features", tmp_path / "items.csv",
               cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with Store.open(str(tmp_path / "s.db")) as store:
        assert store.get_item("10") == {"id": "10", "attributes": {"title": "A"},
                                        "categories": ["x", "y"], "hidden": False,
                                        "time": None}
        assert store.get_item("30")["categories"] == []
        assert store.user_history("1")[0] == ["10", "20"]
        assert store.items_in_category("y") == {"10", "20"}


@pytest.mark.parametrize("bad, message", [
    ("user,item,rating\nu1,i1,4\nu2,i2,oops\n", "ratings.csv"),
    ("user,item,rating\nu1,i1,4\nu1,i1,5\n", "ratings.csv")])
def test_a_bad_file_is_one_line_status_2_and_loads_nothing(tmp_path: Path, bad, message):
    db = tmp_path / "s.db"
    assert run("load", "--db", db, "--data", "category-demo", cwd=tmp_path).returncode == 0
    (tmp_path / "ratings.csv").write_text(bad)
    done = run("load", "--db", db, "--data", tmp_path / "ratings.csv", "--rating-col",
               "rating", cwd=tmp_path)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    with Store.open(str(db)) as store:
        assert store.count_events() == 8121 and store.get_user("u2") is None


def test_a_bad_items_file_loads_nothing(tmp_path: Path):
    (tmp_path / "ratings.csv").write_text("user,item\nu1,i1\nu2,i2\n")
    (tmp_path / "items.csv").write_text("item,title\ni1,A\ni1,B\n")
    done = run("load", "--db", tmp_path / "s.db", "--data", tmp_path / "ratings.csv",
               "--item-features", tmp_path / "items.csv", cwd=tmp_path)
    assert done.returncode == 2 and "appears twice" in done.stderr
    assert not (tmp_path / "s.db").exists()


def test_store_commands_name_their_problems(tmp_path: Path):
    missing = run("retrain", "--db", tmp_path / "none.db", "--model", "ease",
                  "--models-dir", tmp_path / "m", cwd=tmp_path)
    assert missing.returncode == 2 and "no such database file" in missing.stderr
    assert not (tmp_path / "none.db").exists()
    run("load", "--db", tmp_path / "s.db", "--data", "category-demo", cwd=tmp_path)
    for args, text in ((("retrain", "--model", "ease", "--param", "lam=1"), "lam"),
                       (("retrain", "--model", "nope"), "unknown model 'nope'"),
                       (("activate", "--version", "9"), "model version 9")):
        done = run(*args[:1], "--db", tmp_path / "s.db", *args[1:],
                   *(("--models-dir", tmp_path / "m") if args[0] == "retrain" else ()),
                   cwd=tmp_path)
        assert done.returncode == 2 and text in done.stderr, done.stderr
    bad_url = run("versions", "--db", "mysql://x@h/db", cwd=tmp_path)
    assert bad_url.returncode == 2 and "unsupported database 'mysql'" in bad_url.stderr


@pytest.mark.datasets
def test_load_movielens_100k_and_retrain(shared_datasets, tmp_path: Path):
    db = tmp_path / "ml.db"
    done = run("load", "--db", db, "--data", "ml-100k", "--path",
               shared_datasets / "ml-100k", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with Store.open(str(db)) as store:
        assert store.count_events() == 100_000 and len(store.list_users(limit=1000)) == 943
        toy_story = store.get_item("1")
        assert toy_story["attributes"]["title"] == "Toy Story (1995)"
        assert toy_story["categories"] == ["Animation", "Children's", "Comedy"]
        assert store.get_user("1")["attributes"]["occupation"] == "technician"
    done = run("retrain", "--db", db, "--model", "ease", "--param", "regularization=500",
               "--models-dir", tmp_path / "models", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with Store.open(str(db)) as store:
        # EASE on ML-100K's latest 10% of ratings; a random list of 10 from 1,682 films
        # hits about 10/1,682 of a user's held-out films, far below this floor
        assert store.active_version()["metrics"]["ndcg@10"] > 0.1
