"""Reading interaction files (CSV, TSV, Parquet, JSON lines) and the registry of named datasets.

:func:`read_interactions` turns a user file into a :class:`~recoforge.data.dataset.Dataset`
with errors that name the file and line; :func:`load_dataset` dispatches a dataset name
("ml-1m", "kuairec", "category-demo", ...) or a path to the right loader, and
:func:`available_datasets` lists the names (the ``recoforge datasets`` command).
The public-dataset loaders live in :mod:`~recoforge.data.movielens`,
:mod:`~recoforge.data.kuairec` and :mod:`~recoforge.data.lastfm`; the generators in
:mod:`~recoforge.data.synthetic`.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from recoforge.data.dataset import Dataset
from recoforge.data.ids import IdIndex, parse_id_column
from recoforge.data.interactions import DuplicatePolicy, Interactions, Kind
from recoforge.data.tables import (
    SUPPORTED_FORMATS,
    TEXT_SEPARATORS,
    check_encoding,
    check_field_counts,
    check_file,
    check_separator,
    check_text,
    decode_error,
    drop_trailing_blank_rows,
    file_format,
    header_fields,
    na_values_for,
    parser_error,
    read_json_lines,
    read_parquet,
)
from recoforge.data.transforms import count_warning
from recoforge.errors import DataError

__all__ = ["SUPPORTED_FORMATS", "TEXT_SEPARATORS", "CountsAsRatingsWarning",
           "available_datasets", "load_dataset", "read_id_list", "read_interactions",
           "read_table"]

Column = str | int


class CountsAsRatingsWarning(UserWarning):
    """A rating column that looks like counts was read as explicit ratings."""


def read_table(
    path: str | Path,
    *,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    usecols: Sequence[str | int] | None = None,
    dtype: Any = None,
    columns: Sequence[Column] | None = None,
    id_columns: Sequence[Column] = (),
) -> pd.DataFrame:
    """Read a CSV/TSV, Parquet or JSON-lines file into a DataFrame, with readable errors.

    Parameters
    ----------
    path : str or Path
        ``.parquet`` files are read with pyarrow (the ``parquet`` extra); ``.jsonl`` /
        ``.json`` files hold one JSON object per line; other files are delimited text
        whose separator comes from ``sep`` or the extension (``.csv`` -> ``,``; ``.tsv``,
        ``.txt``, ``.dat`` -> tab), optionally compressed (``.gz``, ``.bz2``, ``.xz``).
        A multi-character ``sep`` such as ``"::"`` is a regular expression, as in pandas.
    header : bool
        Whether the first line holds column names. ``names`` renames the columns
        (replacing the header line when there is one).
    usecols, dtype
        Passed to pandas.
    columns : sequence, optional
        Columns that must be present: a DataError names those missing and those found.
    id_columns : sequence
        Columns holding ids: read as text (``"007"`` stays ``"007"``, ``"NA"`` is an id,
        only an empty field is missing), to be converted by
        :func:`~recoforge.data.ids.parse_id_column` or :meth:`IdIndex.parse_external`.

    Raises
    ------
    DataError
        Missing, empty, binary or unsupported file; unknown encoding or undecodable byte;
        a line whose field count differs from the header's (naming the file and line);
        a file without data rows; missing ``columns``.

    Notes
    -----
    Line numbers in later errors are file lines: row ``r`` of the result is on line
    ``r + 2`` with a header and ``r + 1`` without (blank lines are kept as empty rows,
    except at the end). Memory is O(file size).
    """
    path = Path(path)
    check_file(path)
    ascii_like = check_encoding(encoding)
    fmt, suffix, opener = file_format(path)
    if fmt == "parquet":
        frame = read_parquet(path, usecols)
    else:
        check_text(path, opener, ascii_like)
        if fmt == "json":
            frame = read_json_lines(path, opener, encoding, id_columns)
            frame = frame[list(usecols)] if usecols is not None else frame
        else:
            sep = sep if sep is not None else TEXT_SEPARATORS.get(suffix, ",")
            frame = _read_delimited(path, opener, sep, header, names, encoding, ascii_like,
                                    usecols, dtype, id_columns)
    if names is not None and fmt != "text":
        if len(names) != frame.shape[1]:
            raise DataError(f"{path.name}: {len(names)} names given for {frame.shape[1]} "
                            f"columns {list(map(str, frame.columns))}")
        frame.columns = list(names)
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    _require_columns(path, frame, columns)
    return frame


def _require_columns(path: Path, frame: pd.DataFrame, columns: Sequence[Column] | None) -> None:
    missing = [c for c in columns or () if c not in frame.columns]
    if missing:
        raise DataError(f"{path.name}: missing column(s) {missing}; columns found: "
                        f"{list(map(str, frame.columns))}")


def _read_delimited(path: Path, opener: Callable[..., IO[bytes]], sep: str, header: bool,
                    names: Sequence[str] | None, encoding: str, ascii_like: bool,
                    usecols: Any, dtype: Any, id_columns: Sequence[Column]) -> pd.DataFrame:
    """Delimited text after checking that every line has the header's number of fields."""
    check_separator(sep)
    try:
        expected = check_field_counts(path, opener, sep, encoding, ascii_like,
                                      len(names) if names and not header else None, header)
        labels: list[Any] = (header_fields(path, opener, sep, encoding) if header
                             else list(range(expected)))
    except UnicodeDecodeError as exc:
        raise decode_error(path, encoding, exc) from None
    if names:
        if len(names) != expected:
            raise DataError(f"{path.name}: {len(names)} column names given for {expected} "
                            f"fields per line")
        labels = list(names)
    ids = [labels[c] if isinstance(c, int) and c not in labels and 0 <= c < len(labels)
           else c for c in id_columns]
    types = dict(dtype) if isinstance(dtype, dict) else ({} if dtype is None else None)
    options: dict[str, Any] = {
        "sep": sep, "header": 0 if header else None, "names": list(names) if names else None,
        "encoding": encoding, "usecols": usecols, "skip_blank_lines": False,
        "index_col": False, "keep_default_na": False, "na_values": na_values_for(labels, ids),
        "dtype": dtype if types is None else {**types, **{c: str for c in ids}} or None,
    }
    if len(sep) > 1:
        options["engine"] = "python"
    try:
        frame = pd.read_csv(path, **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None
    except pd.errors.ParserError as exc:
        raise parser_error(path, exc) from None
    except UnicodeDecodeError as exc:
        raise decode_error(path, encoding, exc) from None
    except ValueError as exc:  # usecols / dtype mismatches
        raise DataError(f"{path.name}: {exc}") from None
    return drop_trailing_blank_rows(frame)


def read_id_list(path: str | Path, column: str, index: IdIndex | None = None, *,
                 encoding: str = "utf-8") -> np.ndarray:
    """Ids from a file: a table with a ``column`` column, or one bare id per line.

    Parameters
    ----------
    path : str or Path
        Any format :func:`read_table` reads.
    column : str
        The id column ("user", "item").
    index : IdIndex, optional
        The vocabulary the ids are meant for: ids are read with its type
        (:meth:`IdIndex.parse_external`: "007" stays "007"); without it, by the id rule.

    Raises
    ------
    DataError
        A table without ``column`` (naming the columns found), an empty id (naming the
        line), and a one-column file whose first line is neither ``column`` nor a known
        id (so a header such as ``uid`` is reported as the missing column, not as an id).
    """
    path = Path(path)
    fmt, _, _ = file_format(path)
    frame = read_table(path, header=fmt != "text", id_columns=[0, column], encoding=encoding)
    first_line = 1
    if fmt == "text" and frame.shape[1] == 1 and frame.iloc[0, 0] == column:
        frame, first_line = frame.iloc[1:].set_axis([column], axis=1), 2
    elif fmt == "text" and frame.shape[1] == 1:
        head = frame.iloc[0, 0]
        if index is not None and head not in index:
            raise DataError(f"{path.name}: no {column!r} column (columns found: [{head!r}]); "
                            f"if {head!r} is a {index.name} id, it is unknown")
        frame = frame.set_axis([column], axis=1)
    elif fmt == "text":
        frame = read_table(path, id_columns=[column], encoding=encoding)
        first_line = 2
    _require_columns(path, frame, [column])
    values = frame[column]
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataError(f"{path.name}, line {first_line + int(np.flatnonzero(missing)[0])}: "
                        f"empty {column} id")
    if index is not None:
        return index.parse_external(values)
    return parse_id_column(values, column, source=path.name, first_line=first_line)


def read_interactions(
    path: str | Path,
    *,
    user_col: str | int = "user",
    item_col: str | int = "item",
    rating_col: str | int | None = None,
    timestamp_col: str | int | None = None,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    kind: Kind | None = None,
    duplicates: DuplicatePolicy | None = None,
    encoding: str = "utf-8",
) -> Dataset:
    """Read an interaction file into a :class:`Dataset`.

    Parameters
    ----------
    path : str or Path
        CSV, TSV (``.tsv``/``.txt``/``.dat``), Parquet or JSON lines; see
        :func:`read_table`. Id columns are read as text and typed by the id rule
        (:func:`~recoforge.data.ids.parse_id_column`).
    user_col, item_col, rating_col, timestamp_col : str or int
        Column names (or positions for header-less files without ``names``).
        Without ``rating_col`` every row is an implicit event of weight 1.
    kind : {"explicit", "implicit"}, optional
        Default: explicit with a rating column, implicit otherwise. When the default
        makes a column of counts (non-negative integers, heavy tailed, up to 100 or
        more) explicit ratings, a :class:`CountsAsRatingsWarning` says to pass
        ``kind="implicit"`` (CLI ``--implicit``).
    duplicates : {"error", "last", "first", "sum", "mean"}, optional
        Policy for repeated (user, item) pairs; default "error" (explicit) / "sum"
        (implicit). See :meth:`Interactions.from_frame`.

    Raises
    ------
    DataError
        Everything :func:`read_table` raises, plus missing columns (listing those
        available), missing ids, non-numeric or NaN ratings and duplicates under the
        "error" policy, each naming the file and line.

    Examples
    --------
    >>> data = read_interactions("ratings.csv", rating_col="rating")  # doctest: +SKIP
    """
    path = Path(path)
    wanted = [c for c in (user_col, item_col, rating_col, timestamp_col) if c is not None]
    frame = read_table(path, sep=sep, header=header, names=names, encoding=encoding,
                       columns=wanted, id_columns=[user_col, item_col])
    fmt, _, _ = file_format(path)
    is_text = fmt == "text"
    interactions = Interactions.from_frame(
        frame, user_col=user_col, item_col=item_col, rating_col=rating_col,  # type: ignore[arg-type]
        timestamp_col=timestamp_col, kind=kind, duplicates=duplicates,  # type: ignore[arg-type]
        source=path.name,
        first_line=(2 if header else 1) if is_text else (1 if fmt == "json" else None))
    if kind is None and rating_col is not None and interactions.kind == "explicit":
        message = count_warning(interactions.values, rating_col, path.name)
        if message is not None:
            warnings.warn(message, CountsAsRatingsWarning, stacklevel=2)
    return Dataset(interactions, name=path.stem)


# --------------------------------------------------------------------------- registry
_MOVIELENS = "https://files.grouplens.org/datasets/movielens/"
_ML_LICENCE = ("GroupLens research licence: research use only, no redistribution; "
               "cite Harper & Konstan, ACM TiiS 2015")
_REGISTRY: list[dict[str, str]] = [
    {"name": "ml-100k", "description": "MovieLens 100K ratings with genres and demographics",
     "size": "100,000 ratings; 943 users; 1,682 movies", "url": _MOVIELENS + "ml-100k.zip",
     "license": _ML_LICENCE},
    {"name": "ml-1m", "description": "MovieLens 1M ratings with genres and demographics",
     "size": "1,000,209 ratings; 6,040 users; 3,883 movies", "url": _MOVIELENS + "ml-1m.zip",
     "license": _ML_LICENCE},
    {"name": "ml-10m", "description": "MovieLens 10M ratings with genres and tags",
     "size": "10,000,054 ratings; 69,878 users; 10,681 movies",
     "url": _MOVIELENS + "ml-10m.zip", "license": _ML_LICENCE},
    {"name": "ml-20m", "description": "MovieLens 20M ratings with genres",
     "size": "20,000,263 ratings; 138,493 users; 27,278 movies",
     "url": _MOVIELENS + "ml-20m.zip", "license": _ML_LICENCE},
    {"name": "ml-25m", "description": "MovieLens 25M ratings with genres",
     "size": "25,000,095 ratings; 162,541 users; 62,423 movies",
     "url": _MOVIELENS + "ml-25m.zip", "license": _ML_LICENCE},
    {"name": "ml-latest-small", "description": "MovieLens latest, small (changes over time)",
     "size": "~100,000 ratings; ~610 users; ~9,700 movies",
     "url": _MOVIELENS + "ml-latest-small.zip", "license": _ML_LICENCE},
    {"name": "kuairec", "description": "KuaiRec short-video watch ratios (fully observed "
     "small matrix, sparse big matrix) with user and video features",
     "size": "small: 4.7M events, 1,411 users, 3,327 videos; big: 12.5M events",
     "url": "https://kuairec.com/", "license": "CC BY-SA 4.0; cite Gao et al., CIKM 2022"},
    {"name": "lastfm", "description": "HetRec 2011 Last.fm: artist play counts and tags",
     "size": "92,834 user-artist pairs; 1,892 users; 17,632 artists",
     "url": "https://grouplens.org/datasets/hetrec-2011/",
     "license": "HetRec 2011 terms: research use; cite Cantador et al., RecSys 2011"},
    {"name": "category-demo", "description": "synthetic shop: users prefer one category; "
     "ratings, timestamps, view sessions, text descriptions",
     "size": "default 300 users, 200 items, ~8,000 ratings", "url": "",
     "license": "generated (no restrictions)"},
    {"name": "toy-catalogue", "description": "five products with genres, descriptions and "
     "ten purchases (content-based teaching example)", "size": "10 purchases; 5 items",
     "url": "", "license": "generated (no restrictions)"},
    {"name": "film-catalogue", "description": "synthetic films with nine genres and a few "
     "ratings per user", "size": "default 10,000 users, 1,000 films, ~40,000 ratings",
     "url": "", "license": "generated (no restrictions)"},
    {"name": "scalable", "description": "synthetic power-law implicit interactions with "
     "taste clusters, 10^4 to 5x10^7 events (pass n_interactions=)",
     "size": "as requested", "url": "", "license": "generated (no restrictions)"},
    {"name": "playcounts", "description": "synthetic Last.fm-like play counts: heavy-tailed "
     "counts on taste-clustered pairs (pass n_interactions=)",
     "size": "default 60,000 events; 1,200 users; 2,449 items", "url": "",
     "license": "generated (no restrictions)"},
]


def available_datasets() -> list[dict[str, str]]:
    """The named datasets :func:`load_dataset` knows.

    Returns
    -------
    list of dict
        One dict per dataset with keys ``name``, ``description``, ``size``, ``url`` and
        ``license`` (empty ``url`` for generated data).
    """
    return [dict(entry) for entry in _REGISTRY]


def _loaders() -> dict[str, Callable[..., Dataset]]:
    from recoforge.data import kuairec, lastfm, movielens, playcounts, synthetic

    table: dict[str, Callable[..., Dataset]] = {
        f"ml-{variant}": partial(movielens.load_movielens, variant)
        for variant in movielens.VARIANTS
    }
    table.update({
        "kuairec": kuairec.load_kuairec,
        "lastfm": lastfm.load_lastfm,
        "category-demo": synthetic.category_demo,
        "toy-catalogue": synthetic.toy_catalogue,
        "film-catalogue": synthetic.film_catalogue,
        "scalable": synthetic.scalable_interactions,
        "playcounts": playcounts.playcount_interactions,
    })
    return table


def where_to_get(name: str) -> str:
    """One line saying where a named dataset's files come from and how to pass them."""
    entry = next((e for e in _REGISTRY if e["name"] == name), None)
    source = f"download it from {entry['url']}, extract it, and " if entry and entry[
        "url"] else ""
    return (f"dataset {name!r} is read from its files: {source}pass path= (CLI: --path) "
            f"with its folder")


def _check_required(name: str, loader: Callable[..., Dataset], kwargs: dict[str, Any]
                    ) -> None:
    """DataError naming where to get the files when a loader's ``path`` is missing."""
    try:
        parameters = inspect.signature(loader).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return
    needed = [p.name for p in parameters.values() if p.default is inspect.Parameter.empty
              and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in kwargs]
    if "path" in needed:
        raise DataError(where_to_get(name))
    if needed:
        raise DataError(f"dataset {name!r} needs {', '.join(f'{n}=' for n in needed)}")


def _detect_folder(path: Path) -> Callable[..., Dataset] | None:
    """The loader for a folder in a known public layout, if any."""
    from recoforge.data import kuairec, lastfm, movielens

    variant = movielens.detect_variant(path)
    if variant is not None:
        return lambda **kw: movielens.load_movielens(variant, path, **kw)
    if kuairec.find_data_dir(path) is not None:
        return lambda **kw: kuairec.load_kuairec(path, **kw)
    if (path / "user_artists.dat").is_file():
        return lambda **kw: lastfm.load_lastfm(path, **kw)
    return None


def load_dataset(name_or_path: str | Path, **kwargs: Any) -> Dataset:
    """Load a dataset by registry name, from a dataset folder, or from a file.

    Parameters
    ----------
    name_or_path : str or Path
        A name from :func:`available_datasets` (``"ml-1m"``, ``"kuairec"``,
        ``"category-demo"``, ...; ``"movielens-1m"`` and ``"1m"`` style aliases work for
        MovieLens), a folder in one of the public layouts (detected by its files), or an
        interaction file (read with :func:`read_interactions`).
    **kwargs
        Passed to the loader or generator (e.g. ``path=``, ``download=True``, ``seed=``,
        ``rating_col=``).

    Raises
    ------
    DataError
        For a name that is neither registered nor an existing path.
    """
    loaders = _loaders()
    key = str(name_or_path).strip().lower()
    key = re.sub(r"^movielens-?", "ml-", key)
    key = key if key in loaders else f"ml-{key}"
    if key in loaders:
        _check_required(key, loaders[key], kwargs)
        return loaders[key](**kwargs)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        loader = _detect_folder(path)
        if loader is None:
            raise DataError(f"{path}: folder is in no known dataset layout (MovieLens, "
                            f"KuaiRec, HetRec Last.fm); pass an interaction file instead")
        return loader(**kwargs)
    if path.is_file():
        return read_interactions(path, **kwargs)
    raise DataError(f"unknown dataset {str(name_or_path)!r}: not a file or folder, and not "
                    f"one of {', '.join(sorted(loaders))}")
