"""``recoforge fit``, ``recommend`` and ``predict``: a model directory and the files around it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import typer

from recoforge.cli._app import app, console, progress_bar
from recoforge.cli._data import DatasetPath, DataSource, DownloadOpt, NInteractions, load_data
from recoforge.cli._files import check_output, column_key, read_ids, write_atomic
from recoforge.cli._options import (
    DupOpt,
    EncodingOpt,
    HeaderOpt,
    ImplicitOpt,
    ItemCol,
    KOpt,
    RatingCol,
    SepOpt,
    TimeCol,
    UserCol,
    check_encoding,
    parse_params,
)
from recoforge.errors import ConfigError, DataError, UnknownIdError

ModelDirOpt = Annotated[Path, typer.Option("--model", help="Model directory from `fit`.")]


# ---------------------------------------------------------------------- fit
def check_model_target(out: Path, overwrite: bool) -> None:
    """Refuse, before fitting, a ``--out`` the model could not be saved to.

    The overwrite rule is the artifacts' own (only a recoforge model directory, or an
    empty one, is replaced, and only with ``--overwrite``; files, links and other folders
    never); a missing path must be creatable.
    """
    from recoforge.artifacts.storage import check_replaceable

    check_replaceable(out, overwrite)
    if os.path.lexists(out):
        return
    ancestor = out.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ConfigError(f"--out {out}: cannot be created, {ancestor} is a file")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {out}: cannot be created, {ancestor} is not writable")


def _with_item_features(dataset: Any, path: Path, id_col: str, encoding: str,
                        numeric_missing: str, title_col: str | None = None,
                        **spec: list[str]) -> Any:
    """The dataset with item features built from an attributes file.

    With ``title_col`` and no feature column the file gives only titles (no features,
    catalogue unchanged).
    """
    if not any(spec.values()) and title_col is None:
        raise ConfigError("--item-features needs at least one of --text-col, --sentence-col, "
                          "--label-col, --category-col, --numeric-col (or --title-col for "
                          "titles only)")
    info = _read_attributes(path, id_col, encoding, dataset.item_index, "item")
    if title_col is not None and title_col not in info.columns:
        raise DataError(f"{path.name}: no title column {title_col!r} (columns found: "
                        f"{[str(c) for c in info.columns]}); pass --title-col")
    if not any(spec.values()):
        return dataset.with_item_info(info, title_col=title_col)
    return dataset.with_item_features(info, title_col=title_col,
                                      numeric_missing=numeric_missing, **spec)


def _read_attributes(path: Path, id_col: str, encoding: str, index: Any, what: str
                     ) -> pd.DataFrame:
    """An attributes file as a table indexed by ``what`` ids typed like ``index``'s."""
    from recoforge.data.loaders import read_table

    info = read_table(path, encoding=encoding, id_columns=[id_col])
    if id_col not in info.columns:
        raise DataError(f"{path.name}: no {what} id column {id_col!r} (columns found: "
                        f"{[str(c) for c in info.columns]}); pass --{what}-id-col")
    missing = info[id_col].isna().to_numpy()
    if missing.any():
        raise DataError(f"{path.name}, line {int(np.argmax(missing)) + 2}: empty {what} id")
    ids = index.parse_external(info[id_col])
    info = info.drop(columns=id_col)
    info.index = pd.Index(ids, name=id_col)
    if not info.index.is_unique:
        raise DataError(f"{path.name}: {what} {info.index[info.index.duplicated()][0]!r} "
                        f"appears twice")
    return info


def _with_user_features(dataset: Any, path: Path, id_col: str, encoding: str,
                        numeric_missing: str, categorical: list[str], numeric: list[str]
                        ) -> Any:
    """The dataset with user features (one-hot / scaled numeric columns) from a file;
    users it lacks get all-zero rows, users it adds are ignored."""
    import dataclasses

    from recoforge.data.features import build_features

    if not categorical and not numeric:
        raise ConfigError("--user-features needs at least one of --user-category-col, "
                          "--user-numeric-col")
    info = _read_attributes(path, id_col, encoding, dataset.user_index, "user")
    features = build_features(info, dataset.user_index, categorical=categorical,
                              numeric=numeric, numeric_missing=numeric_missing)
    return dataclasses.replace(dataset, user_features=features, user_info=info)


@app.command()
def fit(
    data: DataSource,
    model: Annotated[str, typer.Option("--model", help="Registered model name.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write.")],
    param: Annotated[list[str] | None, typer.Option("--param", help="key=value (repeat).")
                     ] = None,
    user_col: UserCol = None, item_col: ItemCol = None, rating_col: RatingCol = None,
    timestamp_col: TimeCol = None, sep: SepOpt = None, header: HeaderOpt = None,
    encoding: EncodingOpt = None, implicit: ImplicitOpt = False, duplicates: DupOpt = None,
    fallback: Annotated[str | None, typer.Option(help="Model for unknown users.")] = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace an existing --out (only a recoforge model directory).")] = False,
    history: Annotated[bool, typer.Option(
        "--history/--no-history", help="Save the training history with the model (needed "
        "by `recommend --all` and known users' lists; --no-history saves a small model).")
                       ] = True,
    items_file: Annotated[Path | None, typer.Option(
        "--item-features", help="Item attributes file (id column + feature columns); "
        "its items join the catalogue.")] = None,
    item_id_col: Annotated[str, typer.Option(help="Id column of --item-features.")] = "item",
    text_col: Annotated[list[str] | None, typer.Option(help="TF-IDF text column (repeat).")
                        ] = None,
    sentence_col: Annotated[list[str] | None, typer.Option(
        help="Text column embedded by a pretrained sentence encoder (repeat; extra 'text').")
                            ] = None,
    label_col: Annotated[list[str] | None, typer.Option(
        help="Multi-label column such as 'Action|Comedy' (repeat).")] = None,
    category_col: Annotated[list[str] | None, typer.Option(help="One-hot column (repeat).")
                            ] = None,
    numeric_col: Annotated[list[str] | None, typer.Option(help="Scaled numeric column "
                                                          "(repeat).")] = None,
    numeric_missing: Annotated[Literal["error", "mean", "zero"], typer.Option(
        help="Missing numeric feature values: error, mean (the column mean) or zero.")
                               ] = "error",
    title_col: Annotated[str | None, typer.Option(
        help="Column of --item-features with item titles or names, shown by recommend, "
        "similar and explain (default: 'title' or 'name' when present).")] = None,
    users_file: Annotated[Path | None, typer.Option(
        "--user-features", help="User attributes file (id column + feature columns), for "
        "models that use user features.")] = None,
    user_id_col: Annotated[str, typer.Option(help="Id column of --user-features.")] = "user",
    user_category_col: Annotated[list[str] | None, typer.Option(
        help="One-hot column of --user-features (repeat).")] = None,
    user_numeric_col: Annotated[list[str] | None, typer.Option(
        help="Scaled numeric column of --user-features (repeat).")] = None,
    path: DatasetPath = None, download: DownloadOpt = False,
    n_interactions: NInteractions = None,
) -> None:
    """Fit a model on an interactions file, a dataset folder or a named dataset, and save
    it to a directory."""
    from recoforge.models.registry import create, model_class

    params = parse_params(param or [], model)
    if fallback is not None:
        model_class(fallback)  # an unknown name fails now, not after fitting
    check_model_target(out, overwrite)
    dataset = load_data(data, path=path, download=download, n_interactions=n_interactions,
                        user_col=user_col, item_col=item_col, rating_col=rating_col,
                        timestamp_col=timestamp_col, sep=sep, header=header,
                        encoding=encoding, implicit=implicit, duplicates=duplicates)
    if title_col is not None and items_file is None:
        raise ConfigError("--title-col names a column of --item-features FILE; pass both")
    if items_file is not None:
        dataset = _with_item_features(dataset, items_file, item_id_col,
                                      check_encoding(encoding), numeric_missing, title_col,
                                      text=text_col or [], sentence=sentence_col or [],
                                      multilabel=label_col or [],
                                      categorical=category_col or [],
                                      numeric=numeric_col or [])
    if users_file is not None:
        dataset = _with_user_features(dataset, users_file, user_id_col,
                                      check_encoding(encoding), numeric_missing,
                                      user_category_col or [], user_numeric_col or [])
    with progress_bar() as bar:
        task = bar.add_task(f"fitting {model}", total=None)

        def epoch_done(done: int, total: int, **info: float) -> None:
            loss = f" loss {info['loss']:.4g}" if "loss" in info else ""
            bar.update(task, completed=done, total=total,
                       description=f"fitting {model}{loss}")

        fitted = create(model, **params).fit(dataset, fallback=fallback, progress=epoch_done)
    fitted.save(str(out), overwrite=overwrite, include_history=history, include_titles=True)
    console.print(f"fitted {model} on {len(dataset.interactions):,} interactions "
                  f"({dataset.n_users:,} users, {dataset.n_items:,} items) in "
                  f"{fitted.fit_seconds_:.2f}s -> {out}")


# ---------------------------------------------------------------------- recommend
def _named_file(path: Path, exc: UnknownIdError) -> UnknownIdError:
    """The same unknown-id error, prefixed with the file the id came from."""
    return UnknownIdError(f"{path.name}: {exc}")


@app.command()
def recommend(
    model: ModelDirOpt,
    out: Annotated[Path, typer.Option("--out", help="Output .csv, .tsv, .parquet or .json.")],
    users: Annotated[Path | None, typer.Option(help="File of user ids (column 'user' or "
                                               "one id per line).")] = None,
    all_users: Annotated[bool, typer.Option("--all", help="Every known user.")] = False,
    k: KOpt = 10,
    include_seen: Annotated[bool, typer.Option(help="Allow already-seen items.")] = False,
    items: Annotated[Path | None, typer.Option(help="Candidate whitelist file.")] = None,
    unknown: Annotated[Literal["error", "skip", "fallback"], typer.Option(
        help="Unknown users: error, skip, fallback.")] = "error",
    user_col: Annotated[str, typer.Option(help="User column of --users.")] = "user",
    item_col: Annotated[str, typer.Option(help="Item column of --items.")] = "item",
    header: Annotated[bool | None, typer.Option(
        "--header/--no-header", help="Whether --users/--items files start with a header "
        "(default: yes, unless a one-column file starts with a known id).")] = None,
    encoding: EncodingOpt = None,
    titles: Annotated[bool | None, typer.Option(
        "--titles/--no-titles", help="Add a 'title' column (default: when the model "
        "knows its items' titles).")] = None,
) -> None:
    """Write top-k recommendations for users to a file (batch precomputation)."""
    from recoforge.models.registry import load_model

    if (users is None) == (not all_users):
        raise ConfigError("give exactly one of --users FILE or --all")
    target = check_output(out)
    text_encoding = check_encoding(encoding)
    fitted = load_model(str(model))
    whitelist = None
    if items is not None:
        whitelist = read_ids(items, item_col, header=header, encoding=text_encoding,
                             vocabulary=fitted.item_index_)
        unknown_items = whitelist[fitted.item_index_.to_index(whitelist, unknown="ignore") < 0]
        if len(unknown_items):
            more = f" (and {len(unknown_items) - 1} more)" if len(unknown_items) > 1 else ""
            raise UnknownIdError(f"{items.name}: unknown item id {unknown_items[0]!r}{more}")
    user_ids = None if users is None else read_ids(
        users, user_col, header=header, encoding=text_encoding, vocabulary=fitted.user_index_)
    with progress_bar() as bar:
        task = bar.add_task("recommending", total=None)
        try:
            recs = fitted.recommend(
                user_ids, k=k, exclude_seen=not include_seen, items=whitelist,
                unknown=unknown, titles=fitted.has_titles if titles is None else titles,
                progress=lambda done, total: bar.update(task, completed=done, total=total))
        except UnknownIdError as exc:
            raise exc if users is None else _named_file(users, exc) from None
    write_atomic(recs, target)
    console.print(f"{len(recs):,} recommendations for {recs['user'].nunique():,} users -> {out}")


# ---------------------------------------------------------------------- predict
@app.command()
def predict(
    model: ModelDirOpt,
    pairs: Annotated[Path, typer.Option(help="File with user and item columns.")],
    out: Annotated[Path, typer.Option("--out", help="Output .csv, .tsv, .parquet or .json.")],
    user_col: UserCol = None, item_col: ItemCol = None,
    unknown: Annotated[Literal["error", "nan"], typer.Option(
        help="Unknown ids: error or nan.")] = "error",
    timestamp_col: Annotated[str | None, typer.Option(
        help="Column with the time of each pair (used by time-aware models).")] = None,
    header: HeaderOpt = None, sep: SepOpt = None, encoding: EncodingOpt = None,
) -> None:
    """Predict ratings for (user, item) pairs."""
    from recoforge.cli._options import check_sep
    from recoforge.data.loaders import read_table
    from recoforge.models.registry import load_model

    target = check_output(out)
    has_header = header is not False
    ucol = column_key(user_col or ("user" if has_header else "0"), has_header, "--user-col")
    icol = column_key(item_col or ("item" if has_header else "1"), has_header, "--item-col")
    tcol = column_key(timestamp_col, has_header, "--timestamp-col")
    text_encoding, separator = check_encoding(encoding), check_sep(sep)
    fitted = load_model(str(model))
    assert ucol is not None and icol is not None
    table = read_table(pairs, header=has_header, encoding=text_encoding, sep=separator,
                       id_columns=[ucol, icol],
                       columns=[c for c in (ucol, icol, tcol) if c is not None])
    for col, what in ((ucol, "user"), (icol, "item")):
        missing = table[col].isna().to_numpy()
        if missing.any():
            line = int(np.argmax(missing)) + (2 if has_header else 1)
            raise DataError(f"{pairs.name}, line {line}: empty {what} id")
    times = table[tcol].to_numpy() if tcol is not None else None
    try:
        scores = fitted.predict(fitted.user_index_.parse_external(table[ucol]),
                                fitted.item_index_.parse_external(table[icol]),
                                unknown=unknown, times=times)
    except UnknownIdError as exc:
        raise _named_file(pairs, exc) from None
    write_atomic(pd.DataFrame({"user": table[ucol], "item": table[icol],
                               "prediction": scores}), target)
    console.print(f"{len(table):,} predictions -> {out}")
