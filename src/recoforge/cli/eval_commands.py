"""``recoforge evaluate``, ``demo``, ``datasets`` and ``models``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from recoforge.cli._app import app, console, progress_bar
from recoforge.cli._data import DatasetPath, DataSource, DownloadOpt, NInteractions, load_data
from recoforge.cli._files import check_output, write_atomic
from recoforge.cli._leaderboard import failure_lines, leaderboard_table, terminal_width
from recoforge.cli._options import (
    CategoryCols,
    DupOpt,
    EncodingOpt,
    HeaderOpt,
    ImplicitOpt,
    ItemCol,
    ItemFeaturesOpt,
    ItemIdCol,
    KOpt,
    LabelCols,
    NumericCols,
    NumericMissing,
    ParamOpt,
    RatingCol,
    SeedOpt,
    SepOpt,
    TextCols,
    TimeCol,
    UserCol,
    check_encoding,
    model_params,
)
from recoforge.cli.model_commands import _with_item_features
from recoforge.errors import ConfigError
from recoforge.models.params import SEED_MAX

SplitName = Literal["holdout", "global", "loo", "loo-latest", "temporal"]


def _table(frame: pd.DataFrame, title: str, floatfmt: str = "{:.4f}") -> Table:
    table = Table(title=title)
    for col in frame.columns:
        table.add_column(str(col), justify="right" if frame[col].dtype.kind in "fiu" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*[floatfmt.format(v) if isinstance(v, float) else str(v) for v in row])
    return table


def _int_list(text: str, option: str = "--k") -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{option} values must be positive integers, got {text!r}")
    return values


def _model_names(text: str) -> list[str]:
    """The names of ``--models``: registered, each once."""
    from recoforge.models.registry import model_class

    names = [name.strip() for name in text.split(",")]
    if any(not name for name in names):
        raise ConfigError(f"--models {text!r} has an empty name; separate names by single "
                          f"commas")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ConfigError(f"--models lists {name!r} twice; give each model once")
        seen.add(name)
        model_class(name)  # an unknown name fails before any data is read
    return names


def _split(dataset: Any, name: str, test_fraction: float, seed: int) -> Any:
    from recoforge.data import split as splits

    if not 0 < test_fraction < 1:
        raise ConfigError(f"--test-fraction must be between 0 and 1 (exclusive), got "
                          f"{test_fraction}")
    makers = {
        "holdout": lambda: splits.holdout_per_user(dataset, test_fraction=test_fraction,
                                                   seed=seed),
        "global": lambda: splits.holdout_global(dataset, test_fraction=test_fraction,
                                                seed=seed),
        "loo": lambda: splits.leave_one_out(dataset, seed=seed),
        "loo-latest": lambda: splits.leave_one_out(dataset, strategy="latest", seed=seed),
        "temporal": lambda: splits.temporal(dataset, quantile=1 - test_fraction),
    }
    return makers[name]()


@app.command()
def evaluate(
    data: DataSource,
    models: Annotated[str, typer.Option(help="Comma-separated model names.")] = "popularity",
    param: ParamOpt = None,
    split: Annotated[SplitName, typer.Option(help="holdout (per user), global, loo, "
                                             "loo-latest, temporal.")] = "holdout",
    test_fraction: Annotated[float, typer.Option(help="Test share, in (0, 1).")] = 0.2,
    k: Annotated[str, typer.Option("--k", help="Cut-offs, comma-separated.")] = "10",
    protocol: Annotated[Literal["full", "sampled"], typer.Option(help="full or sampled.")
                        ] = "full",
    seed: Annotated[int, typer.Option(min=0, max=SEED_MAX, help="Seed of the split and of "
                                      "every model with a seed parameter (unless --param "
                                      "sets it): one seed, one result.")] = 0,
    user_col: UserCol = None, item_col: ItemCol = None, rating_col: RatingCol = None,
    timestamp_col: TimeCol = None, sep: SepOpt = None, header: HeaderOpt = None,
    encoding: EncodingOpt = None, implicit: ImplicitOpt = False, duplicates: DupOpt = None,
    path: DatasetPath = None, download: DownloadOpt = False,
    n_interactions: NInteractions = None,
    items_file: ItemFeaturesOpt = None, item_id_col: ItemIdCol = "item",
    text_col: TextCols = None, label_col: LabelCols = None, category_col: CategoryCols = None,
    numeric_col: NumericCols = None, numeric_missing: NumericMissing = "error",
    out: Annotated[Path | None, typer.Option(help="Also write the full leaderboard here "
                                             "(.csv, .tsv, .parquet or .json).")] = None,
) -> None:
    """Evaluate models on a split and print a leaderboard (as wide as the terminal)."""
    from recoforge.evaluation import compare
    from recoforge.models.registry import create

    names = _model_names(models)
    params = model_params(param or [], names, seed)
    cutoffs = _int_list(k)
    target = check_output(out) if out is not None else None
    dataset = load_data(data, path=path, download=download, n_interactions=n_interactions,
                        user_col=user_col, item_col=item_col, rating_col=rating_col,
                        timestamp_col=timestamp_col, sep=sep, header=header,
                        encoding=encoding, implicit=implicit, duplicates=duplicates)
    if items_file is not None:
        dataset = _with_item_features(dataset, items_file, item_id_col,
                                      check_encoding(encoding), numeric_missing,
                                      text=text_col or [], multilabel=label_col or [],
                                      categorical=category_col or [],
                                      numeric=numeric_col or [])
    the_split = _split(dataset, split, test_fraction, seed)
    with progress_bar() as bar:
        task = bar.add_task(f"fitting {names[0]}", total=len(names))

        def advance(done: int, total: int) -> None:
            label = f"fitting {names[done]}" if done < total else "done"
            bar.update(task, completed=done, total=total, description=label)

        result = compare({name: create(name, **params[name]) for name in names}, the_split,
                         k=cutoffs, protocol=protocol, progress=advance, errors="report")
    _show_leaderboard(result, f"{dataset.name}: {the_split.name}", seed, target)


def _show_leaderboard(result: Any, title: str, seed: int, target: Path | None) -> None:
    """Print the leaderboard at the terminal's width; write all of it to ``target``."""
    board = result.leaderboard
    width = terminal_width()
    table, left_out = leaderboard_table(board, title, width, result.failures)
    # a Console of this width: a long-lived Console caps print(width=) at the width it
    # read when it was created (rich reads $COLUMNS once), which may be narrower
    out = Console(width=width, highlight=False)
    out.print(table)
    note = [*failure_lines(result.failures), f"seed {seed} (split and models)"]
    if target is not None:
        note[-1] += f"; every column written to {target}"
    elif left_out:
        note[-1] += (f"; {len(left_out)} more columns ({', '.join(left_out[:3])}"
                     f"{', ...' if len(left_out) > 3 else ''}): --out FILE writes every "
                     f"column")
    for line in note:  # wrapped at the table's width
        out.print(line, markup=False)
    if target is not None:
        frame = board.reset_index()
        if result.failures:
            frame["error"] = frame["model"].map(result.failures).fillna("")
        write_atomic(frame, target)


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
    table.add_column("capabilities")
    table.add_column("parameters (default)")
    for name in available_models():
        cls = model_class(name)
        params = ", ".join(f"{p}={d!r}" for p, d, _ in cls.Config.describe())
        table.add_row(name, describe_capabilities(cls.capabilities()), params)
    console.print(table)


def describe_capabilities(caps: dict) -> str:
    """Capabilities in a few words: what the model does, and how it treats users."""
    words = []
    if caps["predicts_ratings"]:
        words.append("ratings")
    if caps["uses_time"]:
        words.append("time-aware")
    if caps["factorised"]:
        words.append("factorised (ANN)")
    if not caps["scores_full_catalogue"]:
        words.append("candidates only")
    for feature in ("item", "user"):
        if caps[f"needs_{feature}_features"]:
            words.append(f"needs {feature} features")
    if caps.get("uses_user_features") and not caps["needs_user_features"]:
        words.append("reads user features")
    if caps.get("scores_new_items"):
        words.append("new items from attributes")
    words.append({"history": "scores from history", "fold_in": "new users folded in",
                  "trained_only": "trained users only"}[caps["user_state"]])
    return ", ".join(words)


@app.command()
def demo(
    seed: SeedOpt = 0,
    k: KOpt = 10,
    user: Annotated[str | None, typer.Option(help="User to show.")] = None,
) -> None:
    """Generate the demo shop, fit every model, print a leaderboard and one user's lists."""
    from recoforge.demo import run_demo

    run_demo(console, seed=seed, k=k, user=user)
