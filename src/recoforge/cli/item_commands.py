"""``recoforge similar``, ``explain`` and ``find``: a fitted model's items, readable by title.

A model fitted on data with item titles (MovieLens, Last.fm, ``fit --item-features FILE
--title-col NAME``) keeps them: these commands show them next to the ids, and accept an
item by ``--title`` (a case-insensitive part of it) instead of ``--item ID``. An unknown
or ambiguous title is a one-line error naming a few candidates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.table import Table

from recoforge.cli._app import app, console
from recoforge.cli._files import check_output, write_atomic
from recoforge.errors import ConfigError

ModelDirOpt = Annotated[Path, typer.Option("--model", help="Model directory from `fit`.")]
ItemOpt = Annotated[str | None, typer.Option("--item", help="Item id.")]
TitleOpt = Annotated[str | None, typer.Option(
    "--title", help="Item by title or name (case-insensitive; a unique part is enough).")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="Also write the table to .csv, .tsv, .parquet or .json.")]
TitlesOpt = Annotated[bool | None, typer.Option(
    "--titles/--no-titles", help="Show item titles (default: when the model has them).")]


def load(model: Path) -> Any:
    from recoforge.models.registry import load_model

    return load_model(str(model))


def pick_item(fitted: Any, item: str | None, title: str | None) -> Any:
    """The item id named by exactly one of ``--item`` and ``--title``."""
    if (item is None) == (title is None):
        raise ConfigError("give exactly one of --item ID or --title TEXT")
    if title is not None:
        return fitted.item_by_title(title)
    return fitted.item_index_.parse_external([item])[0]


def target_of(out: Path | None) -> Path | None:
    """The checked ``--out`` path (before any work), or None."""
    return None if out is None else check_output(out)


def show(frame: pd.DataFrame, caption: str, out: Path | None) -> None:
    """Print ``frame`` as a table (scores to 4 significant digits); write it to ``out``
    (a path checked by :func:`target_of`)."""
    if out is not None:
        write_atomic(frame, out)
    table = Table(title=caption, title_justify="left")
    for column in frame.columns:
        table.add_column(str(column), overflow="fold",
                         justify="right" if frame[column].dtype.kind in "fiu" else "left")
    for row in frame.itertuples(index=False):
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    console.print(table)
    if out is not None:
        console.print(f"{len(frame):,} rows -> {out}")


def _named(fitted: Any, item: Any) -> str:
    """``id`` or ``id (title)`` for captions."""
    if not fitted.has_titles:
        return repr(item)
    title = fitted.titles_of([item])[0]
    return f"{item!r} ({title})" if title else repr(item)


def _use_titles(fitted: Any, titles: bool | None) -> bool:
    return fitted.has_titles if titles is None else titles


@app.command()
def similar(
    model: ModelDirOpt,
    item: ItemOpt = None,
    title: TitleOpt = None,
    k: Annotated[int, typer.Option("--k", min=1, help="Similar items to show.")] = 10,
    titles: TitlesOpt = None,
    out: OutOpt = None,
) -> None:
    """The items most similar to one item, given by id or by title."""
    target = target_of(out)
    fitted = load(model)
    chosen = pick_item(fitted, item, title)
    frame = fitted.similar_items([chosen], k=k, titles=_use_titles(fitted, titles))
    frame = frame.drop(columns=[c for c in ("item", "title") if c in frame.columns])
    show(frame, f"items similar to {_named(fitted, chosen)}", target)


@app.command()
def explain(
    model: ModelDirOpt,
    user: Annotated[str, typer.Option("--user", help="Known user id.")],
    item: ItemOpt = None,
    title: TitleOpt = None,
    n: Annotated[int, typer.Option("--n", min=1, help="Contributions to show.")] = 5,
    titles: TitlesOpt = None,
    out: OutOpt = None,
) -> None:
    """Why a model scores an item (by id or title) as it does for a known user."""
    target = target_of(out)
    fitted = load(model)
    chosen = pick_item(fitted, item, title)
    user_id = fitted.user_index_.parse_external([user])[0]
    frame = fitted.explain(chosen, user=user_id, n=n, titles=_use_titles(fitted, titles))
    show(frame, f"{_named(fitted, chosen)} for user {user_id!r}", target)


@app.command()
def find(
    model: ModelDirOpt,
    text: Annotated[str, typer.Argument(help="Part of an item title or name.")],
    limit: Annotated[int, typer.Option(min=1, help="Most rows to show.")] = 10,
    out: OutOpt = None,
) -> None:
    """Items whose title contains TEXT (exact matches first), with their ids."""
    target = target_of(out)
    fitted = load(model)
    frame = fitted.find_items(text, limit=None)
    shown = frame.head(limit)
    more = f" (first {limit} of {len(frame)})" if len(frame) > limit else ""
    if frame.empty:
        console.print(f"no item title contains {text!r}")
        return
    show(shown, f"items titled like {text!r}{more}", target)
