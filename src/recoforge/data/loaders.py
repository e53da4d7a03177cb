"""Reading interaction files (CSV, TSV, Parquet) and the registry of named datasets.

:func:`read_interactions` turns a user file into a :class:`~recoforge.data.dataset.Dataset`
with errors that name the file and line; :func:`load_dataset` dispatches a dataset name
("ml-1m", "kuairec", "category-demo", ...) or a path to the right loader, and
:func:`available_datasets` lists the names (the ``recoforge datasets`` command).
The public-dataset loaders live in :mod:`~recoforge.data.movielens`,
:mod:`~recoforge.data.kuairec` and :mod:`~recoforge.data.lastfm`; the generators in
:mod:`~recoforge.data.synthetic`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from recoforge.data.dataset import Dataset
from recoforge.data.interactions import DuplicatePolicy, Interactions, Kind
from recoforge.errors import DataError, require

TEXT_SEPARATORS = {".csv": ",", ".tsv": "\t", ".txt": "\t", ".dat": "\t"}
_PARSER_LINE = re.compile(r"line (\d+)")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: no such file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")


def _parser_error(path: Path, exc: Exception) -> DataError:
    """A DataError naming the file and line of a pandas tokenizer error."""
    text = str(exc).replace("Error tokenizing data. C error: ", "")
    match = _PARSER_LINE.search(text)
    where = f"{path.name}, line {match.group(1)}" if match else path.name
    detail = text.split(". Error could possibly")[0].strip()
    return DataError(f"{where}: malformed line ({detail})")


def _drop_trailing_blank_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Blank lines are kept while parsing (so line numbers stay true); drop those at the end."""
    if frame.empty:
        return frame
    blank = frame.isna().all(axis=1).to_numpy()
    if not blank[-1]:
        return frame
    last = len(blank) - 1
    while last >= 0 and blank[last]:
        last -= 1
    return frame.iloc[: last + 1]


def read_table(
    path: str | Path,
    *,
    sep: str | None = None,
    header: bool = True,
    names: Sequence[str] | None = None,
    encoding: str = "utf-8",
    usecols: Sequence[str | int] | None = None,
    dtype: Any = None,
) -> pd.DataFrame:
    """Read a CSV/TSV/Parquet file into a DataFrame, with readable errors.

    Parameters
    ----------
    path : str or Path
        ``.parquet`` files are read with pyarrow (the ``parquet`` extra); other files are
        delimited text whose separator comes from ``sep`` or the extension
        (``.csv`` -> ``,``; ``.tsv``, ``.txt``, ``.dat`` -> tab). A multi-character ``sep``
        such as ``"::"`` is supported.
    header : bool
        Whether the first line holds column names. ``names`` renames the columns
        (replacing the header line when there is one).
    usecols, dtype
        Passed to pandas.

    Raises
    ------
    DataError
        Missing or empty file, a line with the wrong number of fields (naming the file and
        line), an undecodable byte (suggesting ``encoding=``), or a file without rows.

    Notes
    -----
    Line numbers in later errors are file lines: row ``r`` of the result is on line
    ``r + 2`` with a header and ``r + 1`` without. Memory is O(file size).
    """
    path = Path(path)
    _check_file(path)
    if path.suffix.lower() == ".parquet":
        require("pyarrow", "parquet")
        try:
            frame = pd.read_parquet(path, columns=list(usecols) if usecols else None)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path.name}: cannot read parquet file ({exc})") from None
        if names is not None:
            frame.columns = list(names)
    else:
        sep = sep if sep is not None else TEXT_SEPARATORS.get(path.suffix.lower(), ",")
        options: dict[str, Any] = {
            "sep": sep, "header": 0 if header else None, "names": list(names) if names else None,
            "encoding": encoding, "usecols": usecols, "dtype": dtype, "skip_blank_lines": False,
        }
        if len(sep) > 1:
            options["engine"] = "python"
        try:
            frame = pd.read_csv(path, **options)
        except pd.errors.EmptyDataError:
            raise DataError(f"{path}: the file is empty") from None
        except pd.errors.ParserError as exc:
            raise _parser_error(path, exc) from None
        except UnicodeDecodeError as exc:
            raise DataError(f"{path.name}: cannot decode byte at position {exc.start} as "
                            f"{encoding}; pass encoding= (e.g. 'latin-1')") from None
        except ValueError as exc:  # usecols / dtype mismatches
            raise DataError(f"{path.name}: {exc}") from None
        frame = _drop_trailing_blank_rows(frame)
    if frame.empty:
        raise DataError(f"{path}: no data rows")
    return frame


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
        CSV, TSV (``.tsv``/``.txt``/``.dat``) or Parquet; see :func:`read_table`.
    user_col, item_col, rating_col, timestamp_col : str or int
        Column names (or positions for header-less files without ``names``).
        Without ``rating_col`` every row is an implicit event of weight 1.
    kind : {"explicit", "implicit"}, optional
        Default: explicit with a rating column, implicit otherwise.
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
    frame = read_table(path, sep=sep, header=header, names=names, encoding=encoding)
    is_text = path.suffix.lower() != ".parquet"
    interactions = Interactions.from_frame(
        frame, user_col=user_col, item_col=item_col, rating_col=rating_col,  # type: ignore[arg-type]
        timestamp_col=timestamp_col, kind=kind, duplicates=duplicates,  # type: ignore[arg-type]
        source=path.name, first_line=(2 if header else 1) if is_text else None)
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
    from recoforge.data import kuairec, lastfm, movielens, synthetic

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
    })
    return table


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
    if key in loaders:
        return loaders[key](**kwargs)
    if f"ml-{key}" in loaders:
        return loaders[f"ml-{key}"](**kwargs)
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
