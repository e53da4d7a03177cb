"""The command line: fit/recommend/predict/evaluate on CSV files, and clean failures."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recoforge.cli import main
from recoforge.models.registry import available_models


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str, cwd: Path) -> Outcome:
    """Run ``recoforge ARGS`` in-process through the real entry point (``main``)."""
    out, err = io.StringIO(), io.StringIO()
    old = (sys.argv, sys.stdout, sys.stderr, os.getcwd())
    sys.argv, sys.stdout, sys.stderr = ["recoforge", *map(str, args)], out, err
    os.chdir(cwd)
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv, sys.stdout, sys.stderr = old[:3]
        os.chdir(old[3])
    return Outcome(code, out.getvalue(), err.getvalue())


def test_module_entry_point(tmp_path: Path):
    done = subprocess.run([sys.executable, "-m", "recoforge", "recommend", "--model", "nope",
                           "--all", "--out", "x.csv"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and done.stderr.strip().startswith("error:")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    rows = {(f"user{u}", f"item{i}") for u in range(40) for i in rng.choice(30, 8)}
    frame = pd.DataFrame(sorted(rows), columns=["uid", "iid"])
    frame["stars"] = rng.integers(1, 6, len(frame)).astype(float)
    frame.to_csv(path / "ratings.csv", index=False)
    pd.DataFrame({"uid": ["user1", "user2"]}).to_csv(path / "users.csv", index=False)
    pd.DataFrame({"uid": ["user1", "user3"], "iid": ["item1", "item2"]}).to_csv(
        path / "pairs.csv", index=False)
    return path


COLUMNS = ("--user-col", "uid", "--item-col", "iid", "--rating-col", "stars")


def test_fit_recommend_predict_round_trip(workdir: Path):
    fit = run("fit", "--data", "ratings.csv", *COLUMNS, "--model", "popularity",
              "--param", "measure=rating", "--param", "damping=2", "--out", "model",
              cwd=workdir)
    assert fit.returncode == 0, fit.stderr
    assert (workdir / "model" / "manifest.json").is_file()
    rec = run("recommend", "--model", "model", "--users", "users.csv", "--user-col", "uid",
              "--k", "5", "--out", "recs.csv", cwd=workdir)
    assert rec.returncode == 0, rec.stderr
    recs = pd.read_csv(workdir / "recs.csv")
    assert list(recs.columns) == ["user", "item", "score", "rank"]
    assert recs.groupby("user").size().to_dict() == {"user1": 5, "user2": 5}
    seen = pd.read_csv(workdir / "ratings.csv")
    seen = set(zip(seen["uid"], seen["iid"]))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"]))
    everyone = run("recommend", "--model", "model", "--all", "--k", "3", "--out",
                   "all.parquet", cwd=workdir)
    assert everyone.returncode == 0, everyone.stderr
    assert pd.read_parquet(workdir / "all.parquet")["user"].nunique() == 40
    pred = run("predict", "--model", "model", "--pairs", "pairs.csv", "--user-col", "uid",
               "--item-col", "iid", "--out", "pred.csv", cwd=workdir)
    assert pred.returncode == 0, pred.stderr
    assert np.isfinite(pd.read_csv(workdir / "pred.csv")["prediction"]).all()


def test_predict_at_times_with_a_time_aware_model(tmp_path: Path):
    rng = np.random.default_rng(3)
    rows = {(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(25, 10)}
    frame = pd.DataFrame(sorted(rows), columns=["user", "item"])
    frame["rating"] = rng.integers(1, 6, len(frame)).astype(float)
    frame["when"] = 1_600_000_000 + rng.integers(0, 400, len(frame)) * 86_400
    frame.to_csv(tmp_path / "ratings.csv", index=False)
    fit = run("fit", "--data", "ratings.csv", "--rating-col", "rating", "--timestamp-col",
              "when", "--model", "timesvdpp", "--param", "seed=0", "--out", "model",
              cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    first = frame.iloc[:6]
    pairs = pd.concat([first.assign(when=frame["when"].min()),
                       first.assign(when=frame["when"].max())])
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    pred = run("predict", "--model", "model", "--pairs", "pairs.csv", "--timestamp-col",
               "when", "--out", "pred.csv", cwd=tmp_path)
    assert pred.returncode == 0, pred.stderr
    values = pd.read_csv(tmp_path / "pred.csv")["prediction"].to_numpy()
    assert np.isfinite(values).all() and not np.allclose(values[:6], values[6:])
    missing = run("predict", "--model", "model", "--pairs", "pairs.csv", "--timestamp-col",
                  "nope", "--out", "bad.csv", cwd=tmp_path)
    assert missing.returncode == 2 and "nope" in missing.stderr
    assert not (tmp_path / "bad.csv").exists()


@pytest.mark.parametrize("content,args,message", [
    ("uid,iid,stars\nu1,i1,4\nu2,i2\n", (), "ratings.csv"),
    ("uid,iid,stars\nu1,i1,4\nu2,i2,five\n", (), "line 3"),
    ("uid,iid,stars\nu1,i1,4\nu1,i1,5\n", (), "duplicate"),
    ("uid,iid,stars\nu1,i1,4\nu2,i2,\n", (), "line 3"),
    ("", (), "empty"),
    ("user,item,stars\nu1,i1,4\n", (), "missing column"),
    ("uid,iid,stars\nu1,i1,4\n", ("--param", "damping=-1"), "damping must be >= 0"),
    ("uid,iid,stars\nu1,i1,4\n", ("--param", "bogus=1"), "unknown parameter"),
])
def test_bad_input_exits_with_one_line_and_no_output(tmp_path: Path, content, args, message):
    (tmp_path / "ratings.csv").write_text(content)
    out = run("fit", "--data", "ratings.csv", *COLUMNS, "--model", "popularity", *args,
              "--out", "model", cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "model").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ratings.csv"]


def test_recommend_errors_leave_no_partial_output(workdir: Path):
    fit = run("fit", "--data", "ratings.csv", *COLUMNS, "--model", "popularity",
              "--out", "model-for-errors", cwd=workdir)  # independent of the other tests
    assert fit.returncode == 0, fit.stderr
    pd.DataFrame({"uid": ["user1", "nobody"]}).to_csv(workdir / "strangers.csv", index=False)
    out = run("recommend", "--model", "model-for-errors", "--users", "strangers.csv",
              "--user-col", "uid", "--out", "partial.csv", cwd=workdir)
    assert out.returncode == 2 and "unknown user id 'nobody'" in out.stderr
    assert not (workdir / "partial.csv").exists()
    assert not list(workdir.glob(".partial.csv*"))
    bad_k = run("recommend", "--model", "model-for-errors", "--all", "--k", "0", "--out",
                "k.csv", cwd=workdir)
    assert bad_k.returncode == 2 and "'--k'" in bad_k.stderr
    assert bad_k.stderr.count("\n") == 1 and "greater than or equal to 1" in bad_k.stderr
    missing = run("recommend", "--model", "no-such-dir", "--all", "--out", "x.csv",
                  cwd=workdir)
    assert missing.returncode == 2 and "not a model directory" in missing.stderr


def test_evaluate_and_listings(workdir: Path):
    out = run("evaluate", "--data", "ratings.csv", *COLUMNS, "--models", "popularity",
              "--k", "5,10", "--out", "board.csv", cwd=workdir)
    assert out.returncode == 0, out.stderr
    board = pd.read_csv(workdir / "board.csv")
    assert "ndcg@10" in board.columns and "ndcg@5" in board.columns
    listing = run("datasets", cwd=workdir)
    assert listing.returncode == 0 and "ml-1m" in listing.stdout
    models = run("models", cwd=workdir)
    assert models.returncode == 0 and "popularity" in models.stdout


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """The demo shop as files: ratings.csv and items.csv (with items nobody rated)."""
    from recoforge.data.synthetic import category_demo

    path = tmp_path_factory.mktemp("shop")
    data = category_demo(n_users=60, n_items=50, seed=1)
    ratings = data.interactions.to_frame()
    ratings.to_csv(path / "ratings.csv", index=False)
    info = data.item_info.rename_axis("item").reset_index()
    extra = pd.DataFrame({"item": ["new-item"], "title": ["Brand New"],
                          "category": [info["category"].iloc[0]],
                          "description": [info["description"].iloc[0]]})
    pd.concat([info, extra], ignore_index=True).to_csv(path / "items.csv", index=False)
    return path


def _cli_params(name: str) -> list[str]:
    from tests.conformance.specs import SPECS

    spec = next(s for s in SPECS if s.name == name)
    out = []
    params = dict(spec.params)
    if params.get("user_id") is False:  # the CLI's shop has no user features
        params["user_id"] = True
    for key, value in params.items():
        text = json.dumps(value) if isinstance(value, dict) else str(value)
        out += ["--param", f"{key}={text}"]
    return out


@pytest.mark.parametrize("name", available_models())
def test_every_model_fits_and_recommends_from_the_cli(shop: Path, name: str):
    features = ["--item-features", "items.csv", "--text-col", "description",
                "--category-col", "category"]
    fit = run("fit", "--data", "ratings.csv", "--rating-col", "value", "--timestamp-col",
              "timestamp", "--model", name, *_cli_params(name), *features, "--out", name,
              cwd=shop)
    assert fit.returncode == 0, fit.stderr
    rec = run("recommend", "--model", name, "--all", "--k", "3", "--out", f"{name}.csv",
              cwd=shop)
    assert rec.returncode == 0, rec.stderr
    recs = pd.read_csv(shop / f"{name}.csv")
    assert recs["user"].nunique() == 60 and (recs.groupby("user").size() == 3).all()


def test_item_features_extend_the_catalogue_and_bad_feature_files(shop: Path):
    import recoforge as rf

    fit = run("fit", "--data", "ratings.csv", "--rating-col", "value", "--model", "content",
              "--item-features", "items.csv", "--text-col", "description", "--label-col",
              "category", "--out", "content-cat", cwd=shop)
    assert fit.returncode == 0, fit.stderr
    model = rf.load_model(shop / "content-cat")
    assert "new-item" in model.item_index_
    sims = model.similar_items(["new-item"], k=3)
    assert len(sims) == 3 and sims["score"].iloc[0] > 0
    no_cols = run("fit", "--data", "ratings.csv", "--rating-col", "value", "--model", "content",
                  "--item-features", "items.csv", "--out", "x", cwd=shop)
    assert no_cols.returncode == 2 and "--text-col" in no_cols.stderr
    bad_id = run("fit", "--data", "ratings.csv", "--rating-col", "value", "--model", "content",
                 "--item-features", "items.csv", "--item-id-col", "sku", "--text-col",
                 "description", "--out", "x", cwd=shop)
    assert bad_id.returncode == 2 and "no item id column 'sku'" in bad_id.stderr
    assert not (shop / "x").exists()


def test_models_listing_describes_declared_capabilities():
    import recoforge as rf
    from recoforge.cli.eval_commands import describe_capabilities
    from recoforge.models.registry import model_class

    als = describe_capabilities(model_class("als").capabilities())
    assert "ratings" in als and "factorised" in als and "folded in" in als
    ease = describe_capabilities(model_class("ease").capabilities())
    assert "ratings" not in ease and "scores from history" in ease
    assert "new items from attributes" not in ease and "user features" not in ease
    content = describe_capabilities(model_class("content").capabilities())
    assert "new items from attributes" in content
    assert all(describe_capabilities(model_class(n).capabilities())
               for n in rf.available_models())
