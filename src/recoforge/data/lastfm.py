"""HetRec 2011 Last.fm (hetrec2011-lastfm-2k): artist play counts with artist tags.

Files (tab-separated, with a header line):

- ``user_artists.dat``: userID, artistID, weight (play count) -> implicit interactions.
- ``artists.dat``: id, name, url, pictureURL -> ``item_info``.
- ``tags.dat`` (tagID, tagValue) and ``user_taggedartists.dat`` (userID, artistID, tagID,
  day, month, year) -> multi-label artist tag features (``tags:<tag>``).

Reference: I. Cantador, P. Brusilovsky and T. Kuflik, "2nd Workshop on Information
Heterogeneity and Fusion in Recommender Systems (HetRec 2011)", RecSys 2011.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recoforge.data.dataset import Dataset
from recoforge.data.features import FeatureMatrix, build_features
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import Interactions
from recoforge.data.loaders import read_table
from recoforge.errors import DataError

FOLDER = "hetrec2011-lastfm-2k"


def _read_text_table(path: Path) -> pd.DataFrame:
    """Tab-separated with header; the HetRec files mix UTF-8 and Latin-1."""
    try:
        return read_table(path, sep="\t")
    except DataError as exc:
        if "cannot decode" not in str(exc):
            raise
        return read_table(path, sep="\t", encoding="latin-1")


def _require_columns(frame: pd.DataFrame, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; available: "
                        f"{list(frame.columns)}")


def _artist_info(folder: Path) -> pd.DataFrame | None:
    path = folder / "artists.dat"
    if not path.is_file():
        return None
    info = _read_text_table(path)
    _require_columns(info, ["id", "name"], path.name)
    info = info.set_index("id")
    info.index.name = "item"
    return info[~info.index.duplicated()]


def _tag_labels(folder: Path, min_count: int) -> pd.Series | None:
    """Per artist, its tags (used at least ``min_count`` times on it) joined by ``|``."""
    tags_path, tagged_path = folder / "tags.dat", folder / "user_taggedartists.dat"
    if not (tags_path.is_file() and tagged_path.is_file()):
        return None
    tags = _read_text_table(tags_path)
    tagged = _read_text_table(tagged_path)
    _require_columns(tags, ["tagID", "tagValue"], tags_path.name)
    _require_columns(tagged, ["artistID", "tagID"], tagged_path.name)
    names = pd.Series(tags["tagValue"].astype(str).str.replace("|", "/").str.strip().to_numpy(),
                      index=tags["tagID"].to_numpy())
    names = names[~names.index.duplicated()]
    uses = tagged.groupby(["artistID", "tagID"]).size().rename("uses").reset_index()
    uses = uses[uses["uses"] >= min_count]
    uses["tag"] = names.reindex(uses["tagID"].to_numpy()).to_numpy()
    uses = uses.dropna(subset=["tag"])
    return uses.groupby("artistID")["tag"].agg("|".join)


def load_lastfm(path: str | Path, *, min_tag_count: int = 1) -> Dataset:
    """Load HetRec 2011 Last.fm: play counts as implicit feedback, tags as item features.

    Parameters
    ----------
    path : str or Path
        The folder holding ``user_artists.dat`` (or its parent holding
        ``hetrec2011-lastfm-2k/``).
    min_tag_count : int
        Keep a tag on an artist only when at least this many users applied it.

    Returns
    -------
    Dataset
        Implicit interactions (value = play count), ``item_info`` (name, url,
        pictureURL, tags) and multi-label tag features where the tag files are present.
        The item vocabulary covers every artist of ``artists.dat`` and of the plays.
    """
    folder = Path(path)
    if not (folder / "user_artists.dat").is_file() and (folder / FOLDER).is_dir():
        folder = folder / FOLDER
    plays_path = folder / "user_artists.dat"
    if not plays_path.is_file():
        raise DataError(f"{path}: no user_artists.dat (HetRec Last.fm layout) found")
    plays = _read_text_table(plays_path)
    _require_columns(plays, ["userID", "artistID", "weight"], plays_path.name)
    info = _artist_info(folder)
    catalogue = plays["artistID"].to_numpy()
    if info is not None:
        catalogue = np.concatenate([info.index.to_numpy(), catalogue])
    nulls = plays["artistID"].isna().to_numpy()
    if nulls.any():
        raise DataError(f"{plays_path.name}, line {int(np.flatnonzero(nulls)[0]) + 2}: "
                        f"missing artistID")
    item_index = IdIndex.from_values(catalogue, name="item")
    interactions = Interactions.from_frame(
        plays, user_col="userID", item_col="artistID", rating_col="weight", kind="implicit",
        item_index=item_index, source=plays_path.name, first_line=2)
    labels = _tag_labels(folder, min_tag_count)
    features: FeatureMatrix | None = None
    if labels is not None:
        info = labels.rename("tags").to_frame() if info is None else info.join(
            labels.rename("tags"), how="left")
        info["tags"] = info["tags"].fillna("")
        info.index.name = "item"
        features = build_features(info, item_index, multilabel={"tags": r"\|"})
    return Dataset(interactions, item_features=features, item_info=info, name="lastfm")
