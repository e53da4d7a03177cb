"""Issue 9, command line and evaluation API: every user mistake is one line and exit 2.

Each block is a class of failure with its neighbours: options the CLI used to accept
silently or turn into tracebacks, output paths that are folders, files or links, ids
read with the wrong type, advice naming API keywords, evaluation on the wrong data.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data.split import holdout_per_user
from recoforge.errors import ConfigError
from recoforge.evaluation import compare, evaluate
from tests.cli.test_cli import Outcome, run

ROOT_USER = hasattr(os, "geteuid") and os.geteuid() == 0


def one_line_error(out: Outcome, *fragments: str) -> str:
    """The single ``error:`` line of a failed command, checked for ``fragments``."""
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert "Traceback" not in out.stderr
    lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), out.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture()
def ratings(tmp_path: Path) -> Path:
    """A small explicit ratings file with string ids in ``tmp_path``."""
    rng = np.random.default_rng(0)
    rows = sorted({(f"u{u}", f"i{i}") for u in range(30) for i in rng.choice(25, 8)})
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame["rating"] = rng.integers(1, 6, len(frame)).astype(float)
    frame.to_csv(tmp_path / "ratings.csv", index=False)
    return tmp_path


@pytest.fixture(scope="module")
def int_model(tmp_path_factory) -> Path:
    """A popularity model fitted from the CLI on integer user and item ids (users 0..29),
    explicit ratings (so that it predicts)."""
    path = tmp_path_factory.mktemp("ints")
    rng = np.random.default_rng(1)
    rows = sorted({(u, 100 + int(i)) for u in range(30) for i in rng.choice(20, 6)})
    frame = pd.DataFrame(rows, columns=["user", "item"])
    frame["rating"] = rng.integers(1, 6, len(frame))
    frame.to_csv(path / "events.csv", index=False)
    fit = run("fit", "--data", "events.csv", "--rating-col", "rating", "--model",
              "popularity", "--out", "model", cwd=path)
    assert fit.returncode == 0, fit.stderr
    return path


# ---------------------------------------------------------------------- options
@pytest.mark.parametrize("args,fragments", [
    (("--unknown", "bogus"), ("--unknown", "bogus")),
    (("--k", "0"), ("--k",)),
    (("--k", "ten"), ("--k",)),
    (("--bogus-option",), ("No such option", "--bogus-option", "recommend --help")),
    (("--out", "recs.txt"), ("unknown output format", ".txt")),
    (("--out", "recs"), ("unknown output format",)),
    (("--encoding", "nope"), ("--encoding", "unknown text encoding")),
])
def test_recommend_refuses_bad_options_before_loading_anything(tmp_path, args, fragments):
    base = {"--model": "no-such-model", "--out": "recs.csv"}
    extra = list(args)
    for flag, value in base.items():
        if flag not in extra:
            extra += [flag, value]
    out = run("recommend", "--all", *extra, cwd=tmp_path)
    one_line_error(out, *fragments)
    assert "not a model directory" not in out.stderr  # refused before loading the model
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,fragments", [
    (("--param", "damping=1", "--param", "damping=2"), ("damping", "twice")),
    (("--param", "damping=1", "--param", " damping =2"), ("damping", "twice")),
    (("--param", "damping"), ("key=value",)),
    (("--sep", ""), ("--sep", "empty")),
    (("--encoding", "no-such-codec"), ("--encoding",)),
    (("--duplicates", "bogus"), ("--duplicates",)),
    (("--fallback", "no-such-model"), ("no-such-model",)),
    (("--no-header", "--user-col", "user"), ("--user-col", "position")),
    (("--numeric-missing", "median"), ("--numeric-missing",)),
])
def test_fit_refuses_bad_options_with_one_line(ratings: Path, args, fragments):
    out = run("fit", "--data", "ratings.csv", "--rating-col", "rating", "--model",
              "popularity", *args, "--out", "model", cwd=ratings)
    one_line_error(out, *fragments)
    assert not (ratings / "model").exists()


@pytest.mark.parametrize("model,param", [("bpr", "seed=-1"), ("implicit_als", "seed=-1"),
                                         ("bpr", f"seed={2**64}")])
def test_negative_or_huge_model_seeds_are_one_line(ratings: Path, model, param):
    out = run("fit", "--data", "ratings.csv", "--model", model, "--param", param, "--out",
              "model", cwd=ratings)
    one_line_error(out, "seed")


@pytest.mark.parametrize("args,fragments", [
    (("--seed", "-1"), ("--seed",)),
    (("--seed", str(2**32)), ("--seed",)),
    (("--models", "popularity,popularity"), ("popularity", "twice")),
    (("--models", "popularity,,item_knn"), ("empty name",)),
    (("--models", "no-such-model"), ("no-such-model",)),
    (("--k", "0"), ("--k",)),
    (("--k", "1e3"), ("--k", "integers")),
    (("--split", "bogus"), ("--split",)),
    (("--protocol", "bogus"), ("--protocol",)),
    (("--test-fraction", "1.5"), ("--test-fraction",)),
    (("--test-fraction", "0"), ("--test-fraction",)),
    (("--out", "board.xlsx"), ("unknown output format",)),
    (("--path", "."), ("--path", "file")),
])
def test_evaluate_refuses_bad_options(ratings: Path, args, fragments):
    out = run("evaluate", "--data", "ratings.csv", "--rating-col", "rating", *args,
              cwd=ratings)
    one_line_error(out, *fragments)
    assert sorted(p.name for p in ratings.iterdir()) == ["ratings.csv"]


@pytest.mark.parametrize("args,fragments", [
    (("--data", "scalable"), ("scalable", "--n-interactions")),
    (("--data", "category-demo", "--rating-col", "value"), ("--rating-col",
                                                             "interaction files")),
    (("--data", "category-demo", "--user-col", "u"), ("--user-col",)),
    (("--data", "category-demo", "--implicit"), ("--implicit",)),
    (("--data", "category-demo", "--no-header"), ("header",)),
    (("--data", "category-demo", "--n-interactions", "5000"), ("--n-interactions",
                                                                "category-demo")),
    (("--data", "category-demo", "--download"), ("--download",)),
    (("--data", "no-such-dataset-or-file"), ("no-such-dataset-or-file",)),
    (("--data", "no-such-dataset-or-file", "--path", "."), ("--path",)),
])
def test_evaluate_dataset_names_and_their_options(tmp_path: Path, args, fragments):
    one_line_error(run("evaluate", *args, cwd=tmp_path), *fragments)


def test_missing_movielens_names_the_cli_flags_not_api_keywords(tmp_path, monkeypatch):
    monkeypatch.setenv("RECOFORGE_CACHE", str(tmp_path / "empty-cache"))
    line = one_line_error(run("evaluate", "--data", "ml-100k", cwd=tmp_path),
                          "--path", "--download")
    assert "path=" not in line and "download=True" not in line


@pytest.mark.parametrize("args,fragments", [
    (("--seed", "-1"), ("--seed",)),
    (("--k", "0"), ("--k",)),
    (("--k", "-3"), ("--k",)),
])
def test_demo_validates_before_fitting_anything(tmp_path: Path, args, fragments):
    started = time.perf_counter()
    out = run("demo", *args, cwd=tmp_path)
    one_line_error(out, *fragments)
    assert "fitting" not in out.stdout + out.stderr
    assert time.perf_counter() - started < 10  # no model was fitted


@pytest.mark.parametrize("kwargs,message", [({"k": 0}, "k must be"), ({"seed": -1}, "seed"),
                                            ({"k": True}, "k must be")])
def test_run_demo_api_validates_up_front(kwargs, message):
    from rich.console import Console

    from recoforge.demo import run_demo

    with pytest.raises(ConfigError, match=message):
        run_demo(Console(file=open(os.devnull, "w")), **kwargs)  # noqa: SIM115


def test_threads_option(tmp_path: Path):
    from recoforge import threads

    assert run("--threads", "1", "datasets", cwd=tmp_path).returncode == 0
    assert threads.get_num_threads() == 1
    one_line_error(run("--threads", "-1", "datasets", cwd=tmp_path), "--threads")
    one_line_error(run("--threads", "many", "datasets", cwd=tmp_path), "--threads")
    one_line_error(run("datasets", "--threads", "2", cwd=tmp_path), "before the command")
    threads.set_num_threads(0)


def test_long_work_shows_progress_on_a_terminal(ratings: Path, monkeypatch):
    import io

    from rich.console import Console

    import recoforge.cli._app as cli_app

    screen = io.StringIO()
    monkeypatch.setattr(cli_app, "err_console", Console(file=screen, force_terminal=True,
                                                        width=100))
    out = run("evaluate", "--data", "ratings.csv", "--rating-col", "rating", "--models",
              "popularity,item_knn", "--k", "2", cwd=ratings)
    assert out.returncode == 0, out.stderr
    shown = screen.getvalue()
    assert "fitting popularity" in shown and "2/2" in shown
    assert run("fit", "--data", "ratings.csv", "--model", "popularity", "--out", "m",
               cwd=ratings).returncode == 0
    screen.truncate(0)
    assert run("recommend", "--model", "m", "--all", "--k", "2", "--out", "r.csv",
               cwd=ratings).returncode == 0
    assert "recommending" in screen.getvalue() and "30/30" in screen.getvalue()


def test_no_arguments_prints_help_and_exits_2(tmp_path: Path):
    out = run(cwd=tmp_path)
    assert out.returncode == 2 and "Usage" in out.stdout and "Traceback" not in out.stderr
    assert run("--help", cwd=tmp_path).returncode == 0
    assert run("fit", "--help", cwd=tmp_path).returncode == 0


# ---------------------------------------------------------------------- files
def test_no_header_files_are_read_by_position(tmp_path: Path):
    rng = np.random.default_rng(2)
    rows = sorted({(u, i) for u in range(1, 40) for i in rng.choice(30, 8) + 1})
    frame = pd.DataFrame(rows)
    frame[2] = rng.integers(1, 6, len(frame))
    frame[3] = 880_000_000 + np.arange(len(frame))
    frame.to_csv(tmp_path / "u.data", sep="\t", header=False, index=False)
    out = run("evaluate", "--data", "u.data", "--no-header", "--sep", "\\t", "--rating-col",
              "2", "--timestamp-col", "3", "--out", "board.csv", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "ndcg@10" in pd.read_csv(tmp_path / "board.csv").columns
    # with a header line assumed, the first data row would be taken for column names
    wrong = run("evaluate", "--data", "u.data", "--sep", "\\t", cwd=tmp_path)
    one_line_error(wrong, "user")


def test_undecodable_file_advice_names_the_encoding_flag(ratings: Path):
    frame = pd.read_csv(ratings / "ratings.csv")
    frame["user"] = frame["user"].str.replace("u1", "Jos\xe9", regex=False)
    frame.to_csv(ratings / "latin.csv", index=False, encoding="latin-1")
    args = ("evaluate", "--data", "latin.csv", "--rating-col", "rating", "--k", "2")
    line = one_line_error(run(*args, cwd=ratings), "--encoding")
    assert "encoding=" not in line
    ok = run(*args, "--encoding", "latin-1", "--out", "board.csv", cwd=ratings)
    assert ok.returncode == 0, ok.stderr
    assert "ndcg@2" in pd.read_csv(ratings / "board.csv").columns


def test_missing_numeric_feature_advice_names_the_cli_flag(ratings: Path):
    info = pd.DataFrame({"item": [f"i{i}" for i in range(25)],
                         "price": [np.nan] + [float(i) for i in range(1, 25)]})
    info.to_csv(ratings / "items.csv", index=False)
    args = ("fit", "--data", "ratings.csv", "--rating-col", "rating", "--model", "content",
            "--item-features", "items.csv", "--numeric-col", "price", "--out", "model")
    line = one_line_error(run(*args, cwd=ratings), "--numeric-missing mean")
    assert "numeric_missing=" not in line and "build_features" not in line


def test_output_into_folders_links_and_unwritable_places(ratings: Path):
    (ratings / "a-folder").mkdir()
    args = ("evaluate", "--data", "ratings.csv", "--rating-col", "rating", "--k", "2")
    one_line_error(run(*args, "--out", "a-folder", cwd=ratings), "unknown output format")
    (ratings / "dir.csv").mkdir()
    one_line_error(run(*args, "--out", "dir.csv", cwd=ratings), "is a folder")
    (ratings / "plain-file").write_text("keep me")
    one_line_error(run(*args, "--out", "plain-file/board.csv", cwd=ratings), "is a file")
    assert (ratings / "plain-file").read_text() == "keep me"
    target = ratings / "real.csv"
    target.write_text("old")
    (ratings / "link.csv").symlink_to(target)
    assert run(*args, "--out", "link.csv", cwd=ratings).returncode == 0
    assert (ratings / "link.csv").is_symlink() and "ndcg@2" in target.read_text()


def test_unwritable_output_is_one_line(ratings: Path):
    args = ("evaluate", "--data", "ratings.csv", "--rating-col", "rating", "--k", "2")
    if Path("/sys/kernel").is_dir():  # not writable even for root
        one_line_error(run(*args, "--out", "/sys/kernel/board.csv", cwd=ratings),
                       "/sys/kernel/board.csv", "cannot write there")
    if ROOT_USER:
        return
    locked = ratings / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        out = run(*args, "--out", "locked/board.csv", cwd=ratings)
        one_line_error(out, "locked/board.csv", "ermission denied")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("mask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_output_files_follow_the_umask(ratings: Path, mask, mode):
    previous = os.umask(mask)
    try:
        out = run("evaluate", "--data", "ratings.csv", "--rating-col", "rating", "--k", "2",
                  "--out", "board.csv", cwd=ratings)
    finally:
        os.umask(previous)
    assert out.returncode == 0, out.stderr
    assert stat.S_IMODE((ratings / "board.csv").stat().st_mode) == mode


@pytest.mark.parametrize("suffix", [".json", ".tsv", ".parquet"])
def test_output_format_follows_the_extension(ratings: Path, suffix):
    out = run("evaluate", "--data", "ratings.csv", "--rating-col", "rating", "--k", "2",
              "--out", f"board{suffix}", cwd=ratings)
    assert out.returncode == 0, out.stderr
    path = ratings / f"board{suffix}"
    frame = {".json": pd.read_json, ".tsv": lambda p: pd.read_csv(p, sep="\t"),
             ".parquet": pd.read_parquet}[suffix](path)
    assert list(frame["model"]) == ["popularity"] and "ndcg@2" in frame.columns


def test_fit_never_replaces_what_is_not_a_model_directory(ratings: Path):
    project = ratings / "project"
    project.mkdir()
    (project / "notes.txt").write_text("precious")
    (ratings / "file-out").write_text("precious too")
    (ratings / "link-out").symlink_to(project, target_is_directory=True)
    base = ("fit", "--data", "ratings.csv", "--model", "popularity", "--overwrite", "--out")
    for target in ("project", "file-out", "link-out", "."):
        line = one_line_error(run(*base, target, cwd=ratings), "refusing")
        assert "overwrite=" not in line
    assert (project / "notes.txt").read_text() == "precious"
    assert (ratings / "file-out").read_text() == "precious too"
    assert (ratings / "ratings.csv").is_file()
    one_line_error(run(*base[:-2], "--out", "project", cwd=ratings), "--overwrite")
    one_line_error(run(*base, "file-out/model", cwd=ratings), "cannot be created", "file")


def test_memory_and_os_errors_in_a_command_are_one_line(ratings: Path, monkeypatch):
    import recoforge.data.loaders as loaders

    def out_of_memory(*args, **kwargs):
        raise MemoryError()

    monkeypatch.setattr(loaders, "read_interactions", out_of_memory)
    one_line_error(run("evaluate", "--data", "ratings.csv", cwd=ratings), "out of memory")

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device", "ratings.csv")

    monkeypatch.setattr(loaders, "read_interactions", no_space)
    one_line_error(run("evaluate", "--data", "ratings.csv", cwd=ratings),
                   "No space left on device", "ratings.csv")


def test_a_genuine_bug_keeps_its_traceback(ratings: Path, monkeypatch):
    import recoforge.data.loaders as loaders

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(loaders, "read_interactions", bug)
    with pytest.raises(ZeroDivisionError):
        run("evaluate", "--data", "ratings.csv", cwd=ratings)


# ---------------------------------------------------------------------- ids
def _users_file(path: Path, text: str) -> None:
    path.write_text(text)


def test_users_file_ids_keep_their_text(int_model: Path):
    _users_file(int_model / "users.csv", "user\n007\n")
    one_line_error(run("recommend", "--model", "model", "--users", "users.csv", "--out",
                       "r.csv", cwd=int_model), "unknown user id '007'")
    assert not (int_model / "r.csv").exists()
    skip = run("recommend", "--model", "model", "--users", "users.csv", "--unknown", "skip",
               "--out", "skip.csv", cwd=int_model)
    assert skip.returncode == 0, skip.stderr
    assert pd.read_csv(int_model / "skip.csv").empty
    _users_file(int_model / "users.csv", "user\n7\n+7\n7.0\n")
    mixed = run("recommend", "--model", "model", "--users", "users.csv", "--unknown", "skip",
                "--k", "2", "--out", "mixed.csv", cwd=int_model)
    assert mixed.returncode == 0, mixed.stderr
    recs = pd.read_csv(int_model / "mixed.csv", dtype={"user": str})
    assert set(recs["user"]) == {"7"} and len(recs) == 2


def test_users_file_header_is_never_looked_up_as_an_id(int_model: Path):
    _users_file(int_model / "users.csv", "uid\n7\n8\n")
    line = one_line_error(run("recommend", "--model", "model", "--users", "users.csv",
                              "--out", "r.csv", cwd=int_model),
                          "no 'user' column", "'uid'")
    assert "unknown user id" not in line
    ok = run("recommend", "--model", "model", "--users", "users.csv", "--user-col", "uid",
             "--k", "1", "--out", "r.csv", cwd=int_model)
    assert ok.returncode == 0, ok.stderr
    assert sorted(pd.read_csv(int_model / "r.csv")["user"]) == [7, 8]


def test_plain_id_lists_with_and_without_a_flag(int_model: Path):
    _users_file(int_model / "plain.txt", "7\n8\n")
    for extra in ((), ("--no-header",)):
        out = run("recommend", "--model", "model", "--users", "plain.txt", *extra, "--k", "1",
                  "--out", "p.csv", cwd=int_model)
        assert out.returncode == 0, out.stderr
        assert sorted(pd.read_csv(int_model / "p.csv")["user"]) == [7, 8]
    _users_file(int_model / "plain.txt", "7\n\n8\n")
    one_line_error(run("recommend", "--model", "model", "--users", "plain.txt",
                       "--no-header", "--out", "p.csv", cwd=int_model), "line 2", "empty")


def test_whitelist_and_pairs_ids_keep_their_text(int_model: Path):
    _users_file(int_model / "items.csv", "item\n0101\n")
    one_line_error(run("recommend", "--model", "model", "--all", "--items", "items.csv",
                       "--out", "w.csv", cwd=int_model), "unknown item id '0101'")
    pd.DataFrame({"user": ["7", "007"], "item": ["101", "101"]}).to_csv(
        int_model / "pairs.csv", index=False)
    one_line_error(run("predict", "--model", "model", "--pairs", "pairs.csv", "--out",
                       "p.csv", cwd=int_model), "unknown user id '007'")
    nan = run("predict", "--model", "model", "--pairs", "pairs.csv", "--unknown", "nan",
              "--out", "p.csv", cwd=int_model)
    assert nan.returncode == 0, nan.stderr
    result = pd.read_csv(int_model / "p.csv", dtype={"user": str})
    assert list(result["user"]) == ["7", "007"]
    assert np.isfinite(result["prediction"][0]) and np.isnan(result["prediction"][1])


def test_recommend_out_is_a_folder(int_model: Path):
    (int_model / "out.csv").mkdir(exist_ok=True)
    one_line_error(run("recommend", "--model", "model", "--all", "--out", "out.csv",
                       cwd=int_model), "is a folder")


def test_fit_saves_the_history_unless_told_not_to(ratings: Path):
    base = ("fit", "--data", "ratings.csv", "--rating-col", "rating", "--model", "popularity")
    assert run(*base, "--out", "full", cwd=ratings).returncode == 0
    small = run(*base, "--no-history", "--out", "small", cwd=ratings)
    assert small.returncode == 0, small.stderr

    def size(folder: str) -> int:
        return sum(p.stat().st_size for p in (ratings / folder).rglob("*") if p.is_file())

    assert size("small") < size("full")
    assert run("recommend", "--model", "full", "--all", "--out", "a.csv",
               cwd=ratings).returncode == 0
    line = one_line_error(run("recommend", "--model", "small", "--all", "--out", "b.csv",
                              cwd=ratings), "--no-history")
    assert "include_history" not in line and "load_model(" not in line
    assert not (ratings / "b.csv").exists()


# ---------------------------------------------------------------------- evaluation API
@pytest.fixture(scope="module")
def demo_split():
    from recoforge.data.synthetic import category_demo

    data = category_demo(n_users=60, n_items=100, seed=3)
    return data, holdout_per_user(data, test_fraction=0.2, seed=0)


def test_evaluate_refuses_a_dataset_instead_of_a_split(demo_split):
    data, split = demo_split
    model = rf.create("popularity").fit(split.train)
    for wrong in (data, split.train, split.test, (split.train, split.test), None):
        with pytest.raises(ConfigError, match="needs a Split"):
            evaluate(model, wrong)
    with pytest.raises(ConfigError, match="needs a Split"):
        compare({"popularity": rf.create("popularity")}, data)


def test_evaluate_refuses_a_model_fitted_on_other_data(demo_split):
    data, split = demo_split
    on_everything = rf.create("popularity").fit(data)  # saw the test interactions
    with pytest.raises(ConfigError, match="fitted on other data than split.train"):
        evaluate(on_everything, split)
    other = holdout_per_user(data, test_fraction=0.2, seed=1)
    with pytest.raises(ConfigError, match="check_data=False"):
        evaluate(rf.create("popularity").fit(other.train), split)
    anyway = evaluate(on_everything, split, k=5, check_data=False)
    honest = evaluate(rf.create("popularity").fit(split.train), split, k=5)
    assert anyway.summary["ndcg@5"] != honest.summary["ndcg@5"]


def test_huge_k_costs_no_more_than_the_catalogue(demo_split):
    _, split = demo_split
    model = rf.create("popularity").fit(split.train)
    n_items = len(model.item_index_)
    names = ["ndcg", "recall", "precision", "map", "mrr", "hit_rate", "coverage", "gini",
             "novelty"]
    started = time.perf_counter()
    huge = evaluate(model, split, k=[5, 10**12], metrics=names)
    assert time.perf_counter() - started < 30
    exact = evaluate(model, split, k=[5, n_items], metrics=names)
    assert huge.settings["k"] == (5, 10**12)
    assert list(huge.per_user.columns) == [c.replace(f"@{n_items}", f"@{10**12}")
                                           for c in exact.per_user.columns]
    for name in names:
        expected = exact.summary[f"{name}@{n_items}"]
        if name == "precision":  # a list of n_items entries holds the same hits, over k
            expected *= n_items / 10**12
        assert huge.summary[f"{name}@{10**12}"] == pytest.approx(expected), name
        assert huge.summary[f"{name}@5"] == exact.summary[f"{name}@5"]
    assert huge.summary[f"recall@{10**12}"] == pytest.approx(1.0)  # every item listed
    sampled = evaluate(model, split, k=[10**12], protocol="sampled", metrics=["hit_rate"],
                       n_negatives=5)
    assert sampled.summary[f"hit_rate@{10**12}"] == pytest.approx(1.0)


def test_evaluate_cli_with_a_huge_k_finishes(ratings: Path):
    out = run("evaluate", "--data", "ratings.csv", "--rating-col", "rating", "--k",
              str(10**12), "--out", "board.csv", cwd=ratings)
    assert out.returncode == 0, out.stderr
    assert f"ndcg@{10**12}" in pd.read_csv(ratings / "board.csv").columns


def test_compare_reports_progress_and_checks_models_first(demo_split, monkeypatch):
    _, split = demo_split
    calls: list[tuple[int, int]] = []
    compare({"a": rf.create("popularity"), "b": rf.create("item_knn")}, split, k=5,
            progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    model = rf.create("popularity")
    fitted: list[str] = []
    original_fit = type(model).fit

    def spy(self, *args, **kwargs):
        fitted.append(type(self).__name__)
        return original_fit(self, *args, **kwargs)

    monkeypatch.setattr(type(model), "fit", spy)
    with pytest.raises(ConfigError, match="not a Recommender"):
        compare({"a": model, "b": "popularity"}, split)
    assert fitted == []  # refused before the first model was fitted
    compare({"a": model}, split, k=5)
    assert fitted == ["Popularity"]  # the spy does see fits
