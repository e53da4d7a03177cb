"""MovieLens loaders for the official GroupLens archive layouts.

Variants and files read (others in the archive are ignored):

- ``100k``: ``u.data`` (tab: user item rating timestamp), ``u.item`` (``|``, ISO-8859-1,
  19 genre flags named by ``u.genre``), ``u.user`` (id|age|gender|occupation|zip).
- ``1m``: ``ratings.dat``, ``movies.dat``, ``users.dat`` (``::``-separated, ISO-8859-1).
  When ``ratings.dat`` is absent a ``ratings.csv`` (``user_id,movie_id,rating,timestamp``)
  is read instead.
- ``10m`` (folder ``ml-10M100K``): ``ratings.dat``, ``movies.dat``.
- ``20m``, ``25m``, ``latest-small``: ``ratings.csv``, ``movies.csv``, ``links.csv``.

Every dataset carries explicit ratings, ``item_info`` (title, year, genres), genre item
features (multi-label ``genres:<name>``) and, for 100k and 1m, ``user_info`` and user
features. The item vocabulary is the catalogue: movies of the movies file and every rated
id, so unrated movies stay recommendable. Ratings with any empty timestamp are loaded
without timestamps, with a warning. Memory is O(number of ratings).

Reference: F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context",
ACM TiiS 5(4), 2015. Licence: research use, no redistribution.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recoforge.data import download as dl
from recoforge.data.dataset import Dataset
from recoforge.data.features import FeatureMatrix, build_features
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import Interactions
from recoforge.data.loaders import read_table
from recoforge.errors import DataError

VARIANTS = ("100k", "1m", "10m", "20m", "25m", "latest-small")
BASE_URL = "https://files.grouplens.org/datasets/movielens/"
LATIN1 = "latin-1"


@dataclass(frozen=True)
class Archive:
    """An official archive: zip name, folder it extracts to, pinned MD5 (None: fetch .md5)."""

    zip_name: str
    folder: str
    md5: str | None


# MD5 digests of the official zips, as GroupLens publishes them in `<zip>.md5`; the same
# values are pinned in public code, e.g. eli-osherovich/papers_with_code
# (datasets/movielens/dl_config.py), and cross-checked in several other projects.
# ml-latest-small is re-issued over time, so its digest is fetched from the .md5 file.
ARCHIVES: dict[str, Archive] = {
    "100k": Archive("ml-100k.zip", "ml-100k", "0e33842e24a9c977be4e0107933c0723"),
    "1m": Archive("ml-1m.zip", "ml-1m", "c4d9eecfca2ab87c1945afe126590906"),
    "10m": Archive("ml-10m.zip", "ml-10M100K", "ce571fd55effeba0271552578f2648bd"),
    "20m": Archive("ml-20m.zip", "ml-20m", "cd245b17a1ae2cc31bb14903e1204af3"),
    "25m": Archive("ml-25m.zip", "ml-25m", "6b51fb2759a8657d3bfcbfc42b592ada"),
    "latest-small": Archive("ml-latest-small.zip", "ml-latest-small", None),
}
_MARKERS = {"100k": ("u.data",), "1m": ("ratings.dat", "ratings.csv"), "10m": ("ratings.dat",),
            "20m": ("ratings.csv",), "25m": ("ratings.csv",), "latest-small": ("ratings.csv",)}

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")
AGE_GROUPS_1M = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49",
                 50: "50-55", 56: "56+"}
OCCUPATIONS_1M = ("other or not specified", "academic/educator", "artist", "clerical/admin",
                  "college/grad student", "customer service", "doctor/health care",
                  "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
                  "programmer", "retired", "sales/marketing", "scientist", "self-employed",
                  "technician/engineer", "tradesman/craftsman", "unemployed", "writer")
RATING_COLUMNS = ["user", "item", "rating", "timestamp"]
_YEAR = re.compile(r"\((\d{4})\)\s*$")


def normalize_variant(variant: str) -> str:
    """``"ml-1m"``, ``"1M"``, ``"ml-10M100K"``, ``"latest_small"`` -> a key of VARIANTS."""
    key = str(variant).strip().lower().replace("_", "-")
    key = re.sub(r"^(movielens-?|ml-)", "", key)
    key = {"10m100k": "10m", "small": "latest-small"}.get(key, key)
    if key not in VARIANTS:
        raise DataError(f"unknown MovieLens variant {variant!r}; choose one of "
                        f"{', '.join(VARIANTS)}")
    return key


def detect_variant(folder: Path) -> str | None:
    """The variant whose layout ``folder`` holds (by folder name, then by files)."""
    folder = Path(folder)
    for variant, archive in ARCHIVES.items():
        if folder.name.lower() == archive.folder.lower() and _has_layout(folder, variant):
            return variant
    if (folder / "u.data").is_file():
        return "100k"
    if (folder / "users.dat").is_file() and _has_layout(folder, "1m"):
        return "1m"
    if (folder / "ratings.dat").is_file():
        return "10m"
    if (folder / "ratings.csv").is_file() and (folder / "movies.csv").is_file():
        return "latest-small"
    return None


def _has_layout(folder: Path, variant: str) -> bool:
    return any((folder / name).is_file() for name in _MARKERS[variant])


def _download(variant: str, cache_dir: Path) -> Path:
    archive = ARCHIVES[variant]
    url = BASE_URL + archive.zip_name
    md5 = archive.md5 or dl.fetch_published_md5(url + ".md5")
    zip_path = dl.download_file(url, cache_dir / archive.zip_name, md5=md5)
    dl.extract_zip(zip_path, cache_dir)
    return cache_dir / archive.folder


def resolve_folder(variant: str, path: str | Path | None, *, download: bool = False,
                   cache_dir: str | Path | None = None) -> Path:
    """The folder holding ``variant``'s files: ``path`` (or its archive sub-folder), else
    the cache, downloading into it when ``download`` is true."""
    archive = ARCHIVES[variant]
    if path is not None:
        for folder in (Path(path), Path(path) / archive.folder):
            if _has_layout(folder, variant):
                return folder
        if not download:
            raise DataError(f"{path}: no MovieLens {variant} files (expected "
                            f"{' or '.join(_MARKERS[variant])} there or in "
                            f"{archive.folder}/)")
    cache = Path(cache_dir) if cache_dir is not None else (
        Path(path) if path is not None else dl.default_cache_dir())
    folder = cache / archive.folder
    if _has_layout(folder, variant):
        return folder
    if not download:
        raise DataError(f"MovieLens {variant} is not in {cache}; pass path= to its folder or "
                        f"download=True to fetch {BASE_URL}{archive.zip_name}")
    folder = _download(variant, cache)
    if not _has_layout(folder, variant):
        raise DataError(f"{archive.zip_name} did not contain {archive.folder}/"
                        f"{_MARKERS[variant][0]}")
    return folder


# --------------------------------------------------------------------------- readers
def read_double_colon(path: Path, names: list[str], encoding: str = LATIN1, *,
                      numeric: bool = False) -> pd.DataFrame:
    """Read a ``::``-separated file without a header.

    With ``numeric`` (ratings: no field contains ``:``) pandas' fast C parser splits on
    ``:`` and the empty fields between the colons are dropped; other files (titles may
    hold ``:``) and malformed files use the exact ``::`` parser, whose errors name the line.
    """
    if numeric:
        try:
            raw = read_table(path, sep=":", header=False, encoding=encoding)
        except DataError:
            raw = None
        if raw is not None and raw.shape[1] == 2 * len(names) - 1 \
                and raw.iloc[:, 1::2].isna().all().all():
            frame = raw.iloc[:, ::2]
            frame.columns = names
            return frame
    return read_table(path, sep="::", header=False, names=names, encoding=encoding)


def _read_movielens_text(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    """``::`` movies files: 1m is ISO-8859-1, 10m UTF-8; try UTF-8 first, then Latin-1."""
    names = ["item", "title", "genres"]
    try:
        return read_double_colon(path, names, encoding=encoding)
    except DataError as exc:
        if "cannot decode" not in str(exc):
            raise
        return read_double_colon(path, names, encoding=LATIN1)


def _movie_info(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Index by item id; add year from the title; blank the "(no genres listed)" marker."""
    if frame["item"].isna().any():
        row = int(np.flatnonzero(frame["item"].isna().to_numpy())[0])
        raise DataError(f"{source}: missing movie id in data row {row + 1}")
    info = frame.set_index("item")
    if not info.index.is_unique:
        dup = info.index[info.index.duplicated()][0]
        raise DataError(f"{source}: movie id {dup!r} appears twice")
    info.index.name = "item"
    info["title"] = info["title"].astype(str).str.strip()
    years = info["title"].str.extract(_YEAR, expand=False)
    info.insert(1, "year", pd.to_numeric(years, errors="coerce").astype("Int64"))
    genres = info["genres"].fillna("").astype(str)
    info["genres"] = genres.where(genres != "(no genres listed)", "")
    return info


def _ratings_with_time(frame: pd.DataFrame, source: str) -> tuple[pd.DataFrame, bool]:
    """Keep timestamps only when every row has one; otherwise warn and drop them."""
    missing = int(frame["timestamp"].isna().sum())
    if missing == 0:
        return frame, True
    warnings.warn(f"{source}: {missing:,} of {len(frame):,} timestamps are empty; the ratings "
                  f"are loaded WITHOUT timestamps (time-based splits are unavailable)",
                  UserWarning, stacklevel=3)
    return frame.drop(columns="timestamp"), False


def _complete_rows(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Official ``u.data``/``ratings.dat`` have four fields on every line: a gap is an error."""
    gaps = frame.isna().any(axis=1).to_numpy()
    if gaps.any():
        line = int(np.flatnonzero(gaps)[0]) + 1
        raise DataError(f"{source}, line {line}: malformed line (expected 4 fields: user, "
                        f"item, rating, timestamp)")
    return frame


def _read_csv_edition(path: Path, names: list[str]) -> pd.DataFrame:
    """A MovieLens CSV with its columns renamed to ``names``.

    Some editions as published (ml-latest-small of 2016) end every line with empty
    fields under empty headers (pandas' ``Unnamed: 4`` ...): those columns are dropped
    when every value in them is empty; any other extra column is an error.
    """
    frame = read_table(path)
    empty_tail = [col for col in frame.columns[len(names):]
                  if str(col).startswith("Unnamed: ")
                  and (frame[col].isna() | (frame[col].astype(str).str.strip() == "")).all()]
    frame = frame.drop(columns=empty_tail)
    if len(frame.columns) != len(names):
        raise DataError(f"{path.name}: expected {len(names)} columns ({', '.join(names)}), "
                        f"found {[str(c) for c in frame.columns]}")
    frame.columns = names
    return frame


def _read_ratings(folder: Path, variant: str) -> tuple[pd.DataFrame, str, int]:
    """Ratings as columns user, item, rating, timestamp; plus the source name and first line."""
    if variant == "100k":
        path = folder / "u.data"
        frame = read_table(path, sep="\t", header=False, names=RATING_COLUMNS)
        return _complete_rows(frame, path.name), path.name, 1
    if variant in ("1m", "10m") and (folder / "ratings.dat").is_file():
        path = folder / "ratings.dat"
        frame = read_double_colon(path, RATING_COLUMNS, numeric=True)
        return _complete_rows(frame, path.name), path.name, 1
    path = folder / "ratings.csv"
    return _read_csv_edition(path, list(RATING_COLUMNS)), path.name, 2


def _read_movies(folder: Path, variant: str) -> pd.DataFrame | None:
    if variant == "100k":
        return _read_items_100k(folder)
    dat, csv = folder / "movies.dat", folder / "movies.csv"
    if dat.is_file():
        return _movie_info(_read_movielens_text(dat), dat.name)
    if csv.is_file():
        info = _movie_info(_read_csv_edition(csv, ["item", "title", "genres"]), csv.name)
        links = folder / "links.csv"
        if links.is_file():
            extra = _read_csv_edition(links, ["item", "imdb_id", "tmdb_id"]).set_index("item")
            info = info.join(extra[~extra.index.duplicated()], how="left")
        return info
    return None


def _read_items_100k(folder: Path) -> pd.DataFrame | None:
    path = folder / "u.item"
    if not path.is_file():
        return None
    genre_names = list(GENRES_100K)
    if (folder / "u.genre").is_file():
        genre_table = read_table(folder / "u.genre", sep="|", header=False,
                                 names=["name", "flag"], encoding=LATIN1)
        genre_names = genre_table["name"].astype(str).tolist()
    names = ["item", "title", "release_date", "video_release_date", "imdb_url", *genre_names]
    raw = read_table(path, sep="|", header=False, names=names, encoding=LATIN1)
    flags = raw[genre_names].fillna(0).to_numpy(dtype=np.int8) > 0
    labels = np.array(genre_names, dtype=object)
    raw["genres"] = ["|".join(labels[row]) for row in flags]
    info = _movie_info(raw[["item", "title", "genres"]], path.name)
    release = pd.to_datetime(raw["release_date"], format="%d-%b-%Y", errors="coerce")
    release_year = pd.Series(release.dt.year.to_numpy(), index=info.index).astype("Int64")
    info["year"] = info["year"].fillna(release_year)
    info["release_date"] = release.to_numpy()
    info["imdb_url"] = raw["imdb_url"].to_numpy()
    return info


def _read_users(folder: Path, variant: str) -> tuple[pd.DataFrame, list, list] | None:
    """user_info plus the categorical and numeric columns used as user features."""
    if variant == "100k" and (folder / "u.user").is_file():
        info = read_table(folder / "u.user", sep="|", header=False, encoding=LATIN1,
                          names=["user", "age", "gender", "occupation", "zip_code"],
                          dtype={"zip_code": str})
        return info.set_index("user"), ["gender", "occupation"], ["age"]
    if variant == "1m" and (folder / "users.dat").is_file():
        info = read_table(folder / "users.dat", sep="::", header=False, encoding=LATIN1,
                          names=["user", "gender", "age", "occupation", "zip_code"],
                          dtype={"zip_code": str})
        info["age_group"] = info["age"].map(AGE_GROUPS_1M)
        codes = pd.to_numeric(info["occupation"], errors="coerce")
        info["occupation"] = codes.map(dict(enumerate(OCCUPATIONS_1M)))
        return info.set_index("user"), ["gender", "age_group", "occupation"], []
    return None


# --------------------------------------------------------------------------- loader
def _check_ids(frame: pd.DataFrame, source: str, first_line: int) -> None:
    for col in ("user", "item"):
        nulls = frame[col].isna().to_numpy()
        if nulls.any():
            row = int(np.flatnonzero(nulls)[0])
            raise DataError(f"{source}, line {first_line + row}: missing {col} id")


def _item_features(info: pd.DataFrame | None, index: IdIndex) -> FeatureMatrix | None:
    if info is None:
        return None
    return build_features(info, index, multilabel={"genres": r"\|"})


def load_movielens(variant: str, path: str | Path | None = None, *, download: bool = False,
                   cache_dir: str | Path | None = None) -> Dataset:
    """Load a MovieLens dataset from its official archive layout.

    Parameters
    ----------
    variant : {"100k", "1m", "10m", "20m", "25m", "latest-small"}
        ``"ml-1m"`` style names are accepted too.
    path : str or Path, optional
        The extracted folder (e.g. ``.../ml-1m``) or its parent. Without it the cache is
        used.
    download : bool
        Fetch the official zip from GroupLens into ``cache_dir`` when the files are not
        there, verify its MD5 and extract it.
    cache_dir : str or Path, optional
        Default ``$RECOFORGE_CACHE`` or ``~/.cache/recoforge``.

    Returns
    -------
    Dataset
        Explicit ratings (with timestamps when all are present), ``item_info`` (title,
        year, genres, ...), genre item features, and for 100k/1m ``user_info`` and user
        features (one-hot gender, occupation, age group; standardised age for 100k).

    Warns
    -----
    UserWarning
        When some timestamps are empty (the reconstructed ML-1M ``ratings.csv``): the
        ratings are then loaded without timestamps.
    """
    variant = normalize_variant(variant)
    folder = resolve_folder(variant, path, download=download, cache_dir=cache_dir)
    ratings, source, first_line = _read_ratings(folder, variant)
    _check_ids(ratings, source, first_line)
    ratings, timed = _ratings_with_time(ratings, source)
    movies = _read_movies(folder, variant)
    catalogue = ratings["item"].to_numpy()
    if movies is not None:
        catalogue = np.concatenate([movies.index.to_numpy(), catalogue])
    item_index = IdIndex.from_values(catalogue, name="item")
    interactions = Interactions.from_frame(
        ratings, rating_col="rating", timestamp_col="timestamp" if timed else None,
        kind="explicit", item_index=item_index, source=source, first_line=first_line)
    users = _read_users(folder, variant)
    user_info, user_features = None, None
    if users is not None:
        user_info, categorical, numeric = users
        user_features = build_features(user_info, interactions.user_index,
                                       categorical=categorical, numeric=numeric)
    return Dataset(interactions, item_features=_item_features(movies, item_index),
                   user_features=user_features, item_info=movies, user_info=user_info,
                   name=f"ml-{variant}")
