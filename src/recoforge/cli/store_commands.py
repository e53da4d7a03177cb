"""``recoforge load``, ``retrain``, ``versions`` and ``activate``: the serving database.

``load`` reads the same files and datasets as ``fit`` (same options) and imports users
(with the dataset's user attributes), items (with their attributes and categories) and
events (type ``rating`` for explicit data, ``click`` for implicit) in ONE transaction:
a bad file changes nothing. Loading the same events twice inserts them once.
``retrain`` fits a model from the database's events and registers it (see
:mod:`recoforge.serving.retrain`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from recoforge.cli._app import app, console
from recoforge.cli._data import DatasetPath, DataSource, DownloadOpt, NInteractions, load_data
from recoforge.cli._options import (
    DupOpt,
    EncodingOpt,
    HeaderOpt,
    ImplicitOpt,
    ItemCol,
    RatingCol,
    SepOpt,
    TimeCol,
    UserCol,
    check_encoding,
    parse_params,
)
from recoforge.errors import DataError

DbOpt = Annotated[str, typer.Option(
    "--db", help="Database: a SQLite file path or a SQLAlchemy URL "
    "(postgresql+psycopg://user:pass@host/db).")]
#: item attribute columns read as categories when --categories-col is not given
CATEGORY_COLUMNS = ("categories", "genres", "category")


def json_value(value: Any) -> Any:
    """A table cell as a JSON value (None for missing; dates as ISO text)."""
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if value is None or (not isinstance(value, str) and _is_missing(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool)) else str(value)


def _is_missing(value: Any) -> bool:
    import pandas as pd

    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _categories(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    value = json_value(value)
    if value is None:
        return []
    return [part.strip() for part in str(value).split("|") if part.strip()]


def table_rows(info: Any, categories_col: str | None) -> list[dict[str, Any]]:
    """Rows ``{"id", "attributes"[, "categories"]}`` of an attributes table indexed by id."""
    rows = []
    columns = [str(c) for c in info.columns]
    for item_id, values in zip(info.index, info.itertuples(index=False, name=None),
                               strict=True):
        record = dict(zip(columns, values, strict=True))
        row: dict[str, Any] = {"id": str(item_id), "attributes": {
            name: json_value(v) for name, v in record.items()
            if name != categories_col and json_value(v) is not None}}
        if categories_col is not None:
            row["categories"] = _categories(record[categories_col])
        rows.append(row)
    return rows


def _category_column(info: Any, given: str | None, where: str) -> str | None:
    columns = [str(c) for c in info.columns]
    if given is not None:
        if given not in columns:
            raise DataError(f"{where}: no categories column {given!r} (columns found: "
                            f"{columns}); pass --categories-col")
        return given
    return next((name for name in CATEGORY_COLUMNS if name in columns), None)


def _items_file(dataset: Any, path: Path, id_col: str, encoding: str) -> Any:
    """The attributes table of ``--item-features FILE``, indexed by item id."""
    import numpy as np
    import pandas as pd

    from recoforge.data.loaders import read_table

    info = read_table(path, encoding=encoding, id_columns=[id_col])
    if id_col not in info.columns:
        raise DataError(f"{path.name}: no item id column {id_col!r} (columns found: "
                        f"{[str(c) for c in info.columns]}); pass --item-id-col")
    missing = info[id_col].isna().to_numpy()
    if missing.any():
        raise DataError(f"{path.name}, line {int(np.argmax(missing)) + 2}: empty item id")
    ids = dataset.item_index.parse_external(info[id_col])
    info = info.drop(columns=id_col)
    info.index = pd.Index(ids, name=id_col)
    if not info.index.is_unique:
        raise DataError(f"{path.name}: item {info.index[info.index.duplicated()][0]!r} "
                        f"appears twice")
    return info


def import_plan(dataset: Any, items_info: Any, categories_col: str | None,
                event_type: str | None) -> tuple[list[dict], list[dict], list[Any], str]:
    """Users, items and events of a dataset, ready for ``Store.import_rows``, and the
    idempotency key of its events (the data fingerprint)."""
    from recoforge.serving.store import Event

    users = [] if dataset.user_info is None else table_rows(dataset.user_info, None)
    items: list[dict] = []
    for info, where in ((dataset.item_info, "item attributes"),
                        (items_info, "--item-features")):
        if info is not None:
            items.extend(table_rows(info, _category_column(info, categories_col, where)))
    frame = dataset.interactions.to_frame()
    kind = event_type or ("rating" if dataset.interactions.kind == "explicit" else "click")
    times = (frame["timestamp"].to_numpy(float) if "timestamp" in frame
             else [None] * len(frame))
    events = [Event(str(user), str(item), kind, float(value), None if t is None else float(t))
              for user, item, value, t in zip(frame["user"], frame["item"],
                                               frame["value"], times, strict=True)]
    return users, items, events, f"load:{dataset.interactions.fingerprint()}:{kind}"


@app.command()
def load(
    db: DbOpt,
    data: DataSource,
    user_col: UserCol = None, item_col: ItemCol = None, rating_col: RatingCol = None,
    timestamp_col: TimeCol = None, sep: SepOpt = None, header: HeaderOpt = None,
    encoding: EncodingOpt = None, implicit: ImplicitOpt = False, duplicates: DupOpt = None,
    items_file: Annotated[Path | None, typer.Option(
        "--item-features", help="Item attributes file (id column + attribute columns).")
                          ] = None,
    item_id_col: Annotated[str, typer.Option(help="Id column of --item-features.")] = "item",
    categories_col: Annotated[str | None, typer.Option(
        help="Item attribute column of categories such as 'Action|Comedy' (default: "
        "categories, genres or category when present).")] = None,
    event_type: Annotated[str | None, typer.Option(
        help="Type of the imported events (default: rating for explicit data, click "
        "for implicit).")] = None,
    path: DatasetPath = None, download: DownloadOpt = False,
    n_interactions: NInteractions = None,
) -> None:
    """Import users, items and events into the serving database (one transaction)."""
    from recoforge.serving.store import Store

    dataset = load_data(data, path=path, download=download, n_interactions=n_interactions,
                        user_col=user_col, item_col=item_col, rating_col=rating_col,
                        timestamp_col=timestamp_col, sep=sep, header=header,
                        encoding=encoding, implicit=implicit, duplicates=duplicates)
    items_info = None if items_file is None else _items_file(
        dataset, items_file, item_id_col, check_encoding(encoding))
    users, items, events, key = import_plan(dataset, items_info, categories_col, event_type)
    with Store.open(db) as store:
        done = store.import_rows(users, items, events, idempotency_key=key)
        where = store.engine.url.render_as_string(hide_password=True)
    what = (f"{done['events']:,} events were loaded before (same data): none inserted"
            if done["replayed"] else f"{done['events']:,} events")
    console.print(f"loaded {what}; {done['users']:,} users and {done['items']:,} items "
                  f"with attributes -> {where}", highlight=False, soft_wrap=True)


@app.command()
def retrain(
    db: DbOpt,
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    models_dir: Annotated[Path, typer.Option(
        "--models-dir", help="Folder of the model versions (v1/, v2/, ...).")],
    param: Annotated[list[str] | None, typer.Option("--param", help="key=value (repeat).")
                     ] = None,
    force: Annotated[bool, typer.Option(
        help="Activate even when worse than the active version.")] = False,
    holdout: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of the latest events held out to evaluate.")] = 0.1,
    k: Annotated[int, typer.Option("--k", min=1, help="NDCG cut-off.")] = 10,
    kind: Annotated[Literal["auto", "explicit", "implicit"], typer.Option(
        help="Events as ratings or implicit feedback (auto: ratings when every event is "
        "of type rating).")] = "auto",
    note: Annotated[str, typer.Option(help="Note recorded with the version.")] = "",
    item_features: Annotated[bool | None, typer.Option(
        "--item-features/--no-item-features", help="Item features from the stored "
        "items' categories (default: when the model needs item features).")] = None,
) -> None:
    """Fit a model on the database's events, evaluate it on the latest events, register
    it, and activate it unless it is worse than the active version."""
    from recoforge.serving.registry import ModelRegistry
    from recoforge.serving.retrain import retrain as run_retrain
    from recoforge.serving.store import Store

    params = parse_params(param or [], model)
    with Store.open(db, create=False) as store:
        result = run_retrain(store, ModelRegistry(models_dir, store), model, params,
                             force=force, holdout=holdout, k=k, note=note, kind=kind,
                             item_features=item_features)
    console.print(result.summary(), highlight=False, soft_wrap=True)


@app.command()
def versions(db: DbOpt) -> None:
    """List the model versions of the database (the active one marked *)."""
    from recoforge.serving.store import Store

    with Store.open(db, create=False) as store:
        rows = store.model_versions()
    if not rows:
        console.print("no model versions (run `recoforge retrain`)")
    for row in rows:
        metrics: Mapping[str, Any] = row["metrics"] or {}
        scores = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()
                           if name.startswith("ndcg@") and isinstance(value, float))
        console.print(f"{'*' if row['active'] else ' '} v{row['id']} {row['name']} "
                      f"{scores} {row['path']} {row['note']}".rstrip(), highlight=False,
                      soft_wrap=True)


@app.command()
def activate(
    db: DbOpt,
    version: Annotated[int, typer.Option("--version", help="Version id to activate.")],
) -> None:
    """Make a registered model version the active one (roll forward or back)."""
    from recoforge.serving.registry import ModelRegistry
    from recoforge.serving.store import Store

    with Store.open(db, create=False) as store:
        row = store.model_version(version)
        ModelRegistry(Path(row["path"]).parent if row else ".", store).activate(version)
    console.print(f"activated version {version}", highlight=False)
