"""The ``recoforge`` command: demo, fit, recommend, predict, evaluate, datasets, models.

Errors caused by input (bad files, unknown ids, invalid parameters) print one line on
stderr and exit with status 2; output files are written to a temporary path and renamed,
so a failed command leaves nothing behind.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from recoforge.errors import ConfigError, DataError, RecoforgeError

app = typer.Typer(help="recoforge: from raw interactions to recommendations.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
console = Console()
err_console = Console(stderr=True)

DataOpt = Annotated[Path, typer.Option("--data", help="Interactions file (CSV/TSV/Parquet).")]
UserCol = Annotated[str, typer.Option(help="User id column.")]
ItemCol = Annotated[str, typer.Option(help="Item id column.")]
RatingCol = Annotated[str | None, typer.Option(help="Rating/value column (explicit data).")]
TimeCol = Annotated[str | None, typer.Option(help="Timestamp column.")]
SepOpt = Annotated[str | None, typer.Option(help="Field separator (default: by extension).")]
ImplicitOpt = Annotated[bool, typer.Option("--implicit", help="Treat values as implicit "
                                           "event weights.")]
DupOpt = Annotated[str | None, typer.Option(help="Duplicate (user, item) policy: error, "
                                            "last, first, sum, mean.")]


# ----------------------------------------------------------------------------- helpers
def _load(data: Path, user_col: str, item_col: str, rating_col: str | None,
          timestamp_col: str | None, sep: str | None, implicit: bool, duplicates: str | None):
    from recoforge.data.loaders import read_interactions

    return read_interactions(data, user_col=user_col, item_col=item_col,
                             rating_col=rating_col, timestamp_col=timestamp_col, sep=sep,
                             kind="implicit" if implicit else None,
                             duplicates=duplicates)  # type: ignore[arg-type]


def _with_item_features(dataset, path: Path, id_col: str, **spec: list[str]):
    """The dataset with item features built from an attributes file."""
    from recoforge.data.loaders import read_table

    info = read_table(path)
    if id_col not in info.columns:
        raise DataError(f"{path.name}: no item id column {id_col!r} "
                        f"(columns: {list(info.columns)}); pass --item-id-col")
    if not any(spec.values()):
        raise ConfigError("--item-features needs at least one of --text-col, --label-col, "
                          "--category-col, --numeric-col")
    info = info.set_index(id_col)
    if not info.index.is_unique:
        raise DataError(f"{path.name}: item {info.index[info.index.duplicated()][0]!r} "
                        f"appears twice")
    return dataset.with_item_features(info, **spec)


def _parse_params(pairs: list[str], model_name: str) -> dict[str, Any]:
    from recoforge.models.registry import model_class

    raw: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param expects key=value, got {pair!r}")
        raw[key.strip()] = value.strip()
    return model_class(model_name).Config.from_strings(raw)


def write_atomic(frame: pd.DataFrame, out: Path) -> None:
    """Write CSV (or Parquet by extension) to a temporary file, then rename into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        if out.suffix.lower() == ".parquet":
            frame.to_parquet(tmp, index=False)
        else:
            frame.to_csv(tmp, index=False, sep="\t" if out.suffix.lower() == ".tsv" else ",")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_ids(path: Path, column: str) -> list[Any]:
    """Ids from a one-column file (with or without header) or a table's ``column``."""
    from recoforge.data.loaders import read_table

    frame = read_table(path, header=True)
    if column in frame.columns:
        values = frame[column]
    elif frame.shape[1] == 1:  # a plain list: the first line is an id too
        frame = read_table(path, header=False)
        values = frame.iloc[:, 0]
    else:
        raise DataError(f"{path.name}: no {column!r} column (columns: {list(frame.columns)})")
    if values.isna().any():
        raise DataError(f"{path.name}: empty {column} id on data row "
                        f"{int(np.flatnonzero(values.isna().to_numpy())[0]) + 1}")
    return values.tolist()


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(),
                    TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                    console=err_console, transient=True, disable=not err_console.is_terminal)


def _table(frame: pd.DataFrame, title: str, floatfmt: str = "{:.4f}") -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "fiu" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*[floatfmt.format(v) if isinstance(v, float) else str(v) for v in row])
    return table


# ----------------------------------------------------------------------------- commands
@app.command()
def fit(
    data: DataOpt,
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="key=value (repeat).")
                     ] = None,
    user_col: UserCol = "user", item_col: ItemCol = "item", rating_col: RatingCol = None,
    timestamp_col: TimeCol = None, sep: SepOpt = None, implicit: ImplicitOpt = False,
    duplicates: DupOpt = None,
    fallback: Annotated[str | None, typer.Option(help="Model for unknown users.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    items_file: Annotated[Path | None, typer.Option(
        "--item-features", help="Item attributes file (id column + feature columns); "
        "its items join the catalogue.")] = None,
    item_id_col: Annotated[str, typer.Option(help="Id column of --item-features.")] = "item",
    text_col: Annotated[list[str] | None, typer.Option(help="TF-IDF text column (repeat).")
                        ] = None,
    label_col: Annotated[list[str] | None, typer.Option(
        help="Multi-label column such as 'Action|Comedy' (repeat).")] = None,
    category_col: Annotated[list[str] | None, typer.Option(help="One-hot column (repeat).")
                            ] = None,
    numeric_col: Annotated[list[str] | None, typer.Option(help="Scaled numeric column "
                                                          "(repeat).")] = None,
) -> None:
    """Fit a model on an interactions file and save it to a directory."""
    from recoforge.models.registry import create

    params = _parse_params(param or [], model)
    if out.exists() and not overwrite:
        raise ConfigError(f"{out} exists; pass --overwrite to replace it")
    dataset = _load(data, user_col, item_col, rating_col, timestamp_col, sep, implicit,
                    duplicates)
    if items_file is not None:
        dataset = _with_item_features(dataset, items_file, item_id_col, text=text_col or [],
                                      multilabel=label_col or [],
                                      categorical=category_col or [],
                                      numeric=numeric_col or [])
    fitted = create(model, **params).fit(dataset, fallback=fallback)
    fitted.save(str(out), overwrite=overwrite)
    console.print(f"fitted {model} on {len(dataset.interactions):,} interactions "
                  f"({dataset.n_users:,} users, {dataset.n_items:,} items) in "
                  f"{fitted.fit_seconds_:.2f}s -> {out}")


@app.command()
def recommend(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `fit`.")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV/TSV/Parquet.")],
    users: Annotated[Path | None, typer.Option(help="File of user ids (column 'user' or "
                                               "one id per line).")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every known user.")] = False,
    k: Annotated[int, typer.Option("--k", help="Items per user.")] = 10,
    include_seen: Annotated[bool, typer.Option(help="Allow already-seen items.")] = False,
    items: Annotated[Path | None, typer.Option(help="Candidate whitelist file.")] = None,
    unknown: Annotated[str, typer.Option(help="Unknown users: error, skip, fallback.")
                       ] = "error",
    user_col: Annotated[str, typer.Option(help="User column of --users.")] = "user",
    item_col: Annotated[str, typer.Option(help="Item column of --items.")] = "item",
) -> None:
    """Write top-k recommendations for users to a file (batch precomputation)."""
    from recoforge.models.registry import load_model

    if (users is None) == (not all_users):
        raise ConfigError("give exactly one of --users FILE or --all")
    fitted = load_model(str(model))
    user_ids = None if all_users else _read_ids(users, user_col)  # type: ignore[arg-type]
    whitelist = _read_ids(items, item_col) if items is not None else None
    with _progress() as bar:
        task = bar.add_task("recommending", total=None)
        recs = fitted.recommend(user_ids, k=k, exclude_seen=not include_seen, items=whitelist,
                                unknown=unknown,  # type: ignore[arg-type]
                                progress=lambda done, total: bar.update(task, completed=done,
                                                                        total=total))
    write_atomic(recs, out)
    console.print(f"{len(recs):,} recommendations for {recs['user'].nunique():,} users -> {out}")


@app.command()
def predict(
    model: Annotated[Path, typer.Option("--model", help="Model directory from `fit`.")],
    pairs: Annotated[Path, typer.Option(help="File with user and item columns.")],
    out: Annotated[Path, typer.Option("--out", help="Output file.")],
    user_col: UserCol = "user", item_col: ItemCol = "item",
    unknown: Annotated[str, typer.Option(help="Unknown ids: error or nan.")] = "error",
    timestamp_col: Annotated[str | None, typer.Option(
        help="Column with the time of each pair (used by time-aware models).")] = None,
) -> None:
    """Predict ratings for (user, item) pairs."""
    from recoforge.data.loaders import read_table
    from recoforge.models.registry import load_model

    fitted = load_model(str(model))
    table = read_table(pairs)
    missing = [c for c in (user_col, item_col, timestamp_col) if c and c not in table.columns]
    if missing:
        raise DataError(f"{pairs.name}: missing column(s) {missing}; "
                        f"available: {list(table.columns)}")
    times = table[timestamp_col] if timestamp_col else None
    scores = fitted.predict(table[user_col], table[item_col], unknown=unknown,  # type: ignore[arg-type]
                            times=times)
    write_atomic(pd.DataFrame({"user": table[user_col], "item": table[item_col],
                               "prediction": scores}), out)
    console.print(f"{len(table):,} predictions -> {out}")


def _split(dataset, name: str, test_fraction: float, seed: int):
    from recoforge.data import split as splits

    makers = {
        "holdout": lambda: splits.holdout_per_user(dataset, test_fraction=test_fraction,
                                                   seed=seed),
        "global": lambda: splits.holdout_global(dataset, test_fraction=test_fraction,
                                                seed=seed),
        "loo": lambda: splits.leave_one_out(dataset, seed=seed),
        "loo-latest": lambda: splits.leave_one_out(dataset, strategy="latest", seed=seed),
        "temporal": lambda: splits.temporal(dataset, quantile=1 - test_fraction),
    }
    if name not in makers:
        raise ConfigError(f"unknown split {name!r}; choose from {', '.join(makers)}")
    return makers[name]()


@app.command()
def evaluate(
    data: Annotated[str, typer.Option("--data", help="Interactions file or dataset name.")],
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = "popularity",
    split: Annotated[str, typer.Option(help="holdout (per user), global, loo, loo-latest, "
                                       "temporal.")] = "holdout",
    test_fraction: Annotated[float, typer.Option(help="Test share.")] = 0.2,
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "10",
    protocol: Annotated[str, typer.Option(help="full or sampled.")] = "full",
    seed: Annotated[int, typer.Option(help="Split seed.")] = 0,
    user_col: UserCol = "user", item_col: ItemCol = "item", rating_col: RatingCol = None,
    timestamp_col: TimeCol = None, sep: SepOpt = None, implicit: ImplicitOpt = False,
    duplicates: DupOpt = None,
    out: Annotated[Path | None, typer.Option(help="Also write the leaderboard here.")] = None,
) -> None:
    """Evaluate models on a split and print a leaderboard."""
    from recoforge.data.loaders import load_dataset
    from recoforge.evaluation import compare
    from recoforge.models.registry import create

    if Path(data).exists():
        dataset = _load(Path(data), user_col, item_col, rating_col, timestamp_col, sep,
                        implicit, duplicates)
    else:
        dataset = load_dataset(data)
    cutoffs = _int_list(k)
    the_split = _split(dataset, split, test_fraction, seed)
    candidates = {name.strip(): create(name.strip()) for name in models.split(",") if name}
    board = compare(candidates, the_split, k=cutoffs, protocol=protocol).leaderboard
    console.print(_table(board.reset_index(), f"{dataset.name}: {the_split.name}"))
    if out is not None:
        write_atomic(board.reset_index(), out)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"--k expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"--k values must be positive integers, got {text!r}")
    return values


@app.command()
def datasets() -> None:
    """List the datasets recoforge can load or generate."""
    from recoforge.data.loaders import available_datasets

    frame = pd.DataFrame(available_datasets())[["name", "description", "size"]]
    console.print(_table(frame, "datasets"))


@app.command()
def models() -> None:
    """List the registered models and their hyperparameters."""
    from recoforge.models.registry import available_models, model_class

    table = Table(title="models")
    table.add_column("name")
    table.add_column("parameters (default)")
    for name in available_models():
        params = ", ".join(f"{p}={d!r}" for p, d, _ in model_class(name).Config.describe())
        table.add_row(name, params)
    console.print(table)


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed for data and models.")] = 0,
    k: Annotated[int, typer.Option("--k", help="List length.")] = 10,
    user: Annotated[str | None, typer.Option(help="User to show.")] = None,
) -> None:
    """Generate the demo shop, fit every model, print a leaderboard and one user's lists."""
    from recoforge.demo import run_demo

    run_demo(console, seed=seed, k=k, user=user)


def main() -> None:
    """Entry point: user-caused errors become one line on stderr and exit status 2.

    Usage errors (unknown options, bad option values) are typer's own: a usage line and
    the message, status 2. Anything else is a bug and keeps its traceback.
    """
    try:
        app()
    except (RecoforgeError, FileNotFoundError) as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
