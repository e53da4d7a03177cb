"""KuaiRec (Kuaishou short videos): watch ratios as implicit feedback, with side features.

Files (folder ``KuaiRec 2.0/data`` of the official archive, or the folder holding it):

- ``small_matrix.csv`` / ``big_matrix.csv``: user_id, video_id, play_duration,
  video_duration, time, date, timestamp, watch_ratio (one row per watch).
- ``user_features.csv``: user_id, user_active_degree, is_lowactive_period,
  is_live_streamer, is_video_author, follow/fans/friend_user_num (+ ``_range``),
  register_days (+ ``_range``), onehot_feat0..17.
- ``item_daily_features.csv``: one row per video and day (video_type, upload_type,
  visible_status, video_duration, ..., show_cnt, play_cnt, like_cnt, ...).
- ``item_categories.csv``: video_id, feat (a list such as ``"[8, 27]"``).

Reference: C. Gao et al., "KuaiRec: A Fully-observed Dataset and Insights for Evaluating
Recommender Systems", CIKM 2022. Licence CC BY-SA 4.0.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from recoforge.data.dataset import Dataset
from recoforge.data.features import FeatureMatrix, build_features
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import DuplicatePolicy, Interactions
from recoforge.data.loaders import read_table
from recoforge.errors import DataError

MATRIX_COLUMNS = ["user_id", "video_id", "timestamp", "watch_ratio"]
USER_CATEGORICAL = ["user_active_degree", "is_lowactive_period", "is_live_streamer",
                    "is_video_author", "follow_user_num_range", "fans_user_num_range",
                    "friend_user_num_range", "register_days_range",
                    *[f"onehot_feat{k}" for k in range(18)]]
USER_COUNTS = ["follow_user_num", "fans_user_num", "friend_user_num", "register_days"]
ITEM_CATEGORICAL = ["video_type", "upload_type", "visible_status", "video_tag_name"]
_ITEM_ID_COLUMNS = {"video_id", "date", "author_id", "music_id", "video_tag_id", "upload_dt"}


def find_data_dir(path: str | Path) -> Path | None:
    """The folder holding the matrix files: ``path``, ``path/data`` or
    ``path/KuaiRec 2.0/data``."""
    path = Path(path)
    for folder in (path, path / "data", path / "KuaiRec 2.0" / "data", path / "KuaiRec" / "data"):
        if (folder / "small_matrix.csv").is_file() or (folder / "big_matrix.csv").is_file():
            return folder
    return None


def _filter_feedback(frame: pd.DataFrame, threshold: float | None, source: str
                     ) -> pd.DataFrame:
    """Drop rows without positive feedback (watch_ratio NaN, <= 0 or below threshold)."""
    ratio = pd.to_numeric(frame["watch_ratio"], errors="coerce").to_numpy(dtype=np.float64)
    keep = np.isfinite(ratio) & (ratio > 0)
    if threshold is not None:
        keep &= ratio >= threshold
    dropped = int((~keep).sum())
    if dropped:
        rule = "watch_ratio <= 0 or missing" + (f" or < {threshold}" if threshold else "")
        warnings.warn(f"{source}: dropped {dropped:,} of {len(frame):,} rows ({rule}); "
                      f"they carry no positive implicit feedback", UserWarning, stacklevel=3)
    return frame.loc[keep]


def _timestamps(frame: pd.DataFrame, policy: str, source: str) -> tuple[pd.DataFrame, bool]:
    """Resolve missing timestamps: drop the column or the rows, with a warning."""
    missing = frame["timestamp"].isna().to_numpy()
    if not missing.any():
        return frame, True
    if policy == "drop_rows":
        warnings.warn(f"{source}: dropped {int(missing.sum()):,} rows without a timestamp",
                      UserWarning, stacklevel=3)
        return frame.loc[~missing], True
    warnings.warn(f"{source}: {int(missing.sum()):,} of {len(frame):,} timestamps are "
                  f"missing; loading WITHOUT timestamps (pass missing_timestamps='drop_rows' "
                  f"to keep time and lose those rows)", UserWarning, stacklevel=3)
    return frame.drop(columns="timestamp"), False


def _user_side(folder: Path, index: IdIndex) -> tuple[pd.DataFrame | None,
                                                      FeatureMatrix | None]:
    path = folder / "user_features.csv"
    if not path.is_file():
        return None, None
    info = read_table(path).set_index("user_id")
    info.index.name = "user"
    info = info[~info.index.duplicated()]
    categorical = [c for c in USER_CATEGORICAL if c in info.columns]
    counts = [c for c in USER_COUNTS if c in info.columns]
    table = info[categorical].astype("string")  # codes such as 0/1 are categories, not numbers
    for col in counts:  # heavy-tailed counts: log1p before standardising
        table[col] = np.log1p(pd.to_numeric(info[col], errors="coerce").clip(lower=0))
    if not categorical and not counts:
        return info, None
    features = build_features(table, index, categorical=categorical, numeric=counts,
                              numeric_missing="mean")
    return info, features


def _aggregate_daily(path: Path) -> pd.DataFrame:
    """One row per video: numeric columns averaged, others the last non-null value by date."""
    daily = read_table(path)
    if "video_id" not in daily.columns:
        raise DataError(f"{path.name}: missing column 'video_id'; available: "
                        f"{list(daily.columns)}")
    if "date" in daily.columns:
        daily = daily.sort_values(["video_id", "date"], kind="stable")
    grouped = daily.groupby("video_id", sort=True)
    numeric = [c for c in daily.columns if c not in _ITEM_ID_COLUMNS
               and pd.api.types.is_numeric_dtype(daily[c])]
    other = [c for c in daily.columns if c != "video_id" and c not in numeric]
    parts = [grouped[numeric].mean()] if numeric else []
    if other:
        parts.append(grouped[other].last())  # GroupBy.last skips nulls
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=grouped.size().index)


def _read_categories(path: Path) -> pd.Series:
    """``feat`` lists like ``"[8, 27]"`` as ``"8|27"``, indexed by video id."""
    table = read_table(path)
    missing = [c for c in ("video_id", "feat") if c not in table.columns]
    if missing:
        raise DataError(f"{path.name}: missing column(s) {missing}; available: "
                        f"{list(table.columns)}")
    labels = table["feat"].astype("string").str.replace(r"[\[\]\s]", "", regex=True)
    return pd.Series(labels.str.replace(",", "|").fillna("").to_numpy(),
                     index=pd.Index(table["video_id"].to_numpy(), name="item"))


def _item_side(folder: Path, index: IdIndex) -> tuple[pd.DataFrame | None,
                                                      FeatureMatrix | None]:
    daily, categories = folder / "item_daily_features.csv", folder / "item_categories.csv"
    info = _aggregate_daily(daily) if daily.is_file() else None
    if categories.is_file():
        labels = _read_categories(categories)
        labels = labels[~labels.index.duplicated()]
        info = (labels.to_frame("categories") if info is None
                else info.join(labels.rename("categories"), how="outer"))
    if info is None:
        return None, None
    info.index.name = "item"
    multilabel = {"categories": r"\|"} if "categories" in info.columns else {}
    categorical = [c for c in ITEM_CATEGORICAL if c in info.columns]
    numeric = [c for c in info.columns if c not in categorical and c != "categories"
               and pd.api.types.is_numeric_dtype(info[c])]
    table = info[categorical].astype("string") if categorical else pd.DataFrame(index=info.index)
    for col in multilabel:
        table[col] = info[col]
    for col in numeric:  # counts and durations are heavy-tailed: log1p
        table[col] = np.log1p(info[col].clip(lower=0))
    if not (multilabel or categorical or numeric):
        return info, None
    features = build_features(table, index, multilabel=multilabel, categorical=categorical,
                              numeric=numeric, numeric_missing="mean")
    return info, features


def load_kuairec(path: str | Path, matrix: Literal["small", "big"] = "small",
                 threshold: float | None = None,
                 missing_timestamps: Literal["drop_column", "drop_rows"] = "drop_column",
                 duplicates: DuplicatePolicy = "sum") -> Dataset:
    """Load KuaiRec with watch ratios as implicit feedback.

    Parameters
    ----------
    path : str or Path
        The ``data`` folder, or a folder holding ``data/`` or ``KuaiRec 2.0/data/``.
    matrix : {"small", "big"}
        ``small_matrix.csv`` (fully observed, 1,411 users x 3,327 videos) or
        ``big_matrix.csv`` (sparse, the usual training set).
    threshold : float, optional
        Keep only watches with ``watch_ratio >= threshold`` (e.g. 2.0 for "liked").
        Rows with ``watch_ratio <= 0`` or missing are always dropped; every drop is
        counted in a warning.
    missing_timestamps : {"drop_column", "drop_rows"}
        Rows without a timestamp either remove time from the dataset, or are dropped.
        Both warn with the count.
    duplicates : {"sum", "mean", "last", "first", "error"}
        Repeated (user, video) watches: by default the watch ratios add up.

    Returns
    -------
    Dataset
        Implicit interactions (value = watch ratio), user features (one-hot activity and
        range codes, log-scaled counts) and ``user_info``, item features (multi-label
        categories, one-hot video type/status/tag, log-scaled daily statistics averaged
        per video) and ``item_info``. The item vocabulary is the videos of the matrix.
    """
    if matrix not in ("small", "big"):
        raise DataError(f"matrix must be 'small' or 'big', got {matrix!r}")
    if missing_timestamps not in ("drop_column", "drop_rows"):
        raise DataError(f"missing_timestamps must be 'drop_column' or 'drop_rows', got "
                        f"{missing_timestamps!r}")
    folder = find_data_dir(path)
    if folder is None:
        raise DataError(f"{path}: no KuaiRec small_matrix.csv / big_matrix.csv found (looked "
                        f"in it, data/ and 'KuaiRec 2.0/data/')")
    file = folder / f"{matrix}_matrix.csv"
    frame = read_table(file, usecols=lambda c: c in MATRIX_COLUMNS)  # type: ignore[arg-type]
    missing = [c for c in MATRIX_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{file.name}: missing column(s) {missing}")
    for col in ("user_id", "video_id"):
        nulls = frame[col].isna().to_numpy()
        if nulls.any():
            raise DataError(f"{file.name}, line {int(np.flatnonzero(nulls)[0]) + 2}: "
                            f"missing {col}")
    frame = _filter_feedback(frame, threshold, file.name)
    frame, timed = _timestamps(frame, missing_timestamps, file.name)
    if frame.empty:
        raise DataError(f"{file.name}: no rows left after dropping non-positive watch ratios")
    interactions = Interactions.from_frame(
        frame, user_col="user_id", item_col="video_id", rating_col="watch_ratio",
        timestamp_col="timestamp" if timed else None, kind="implicit", duplicates=duplicates,
        source=file.name)
    user_info, user_features = _user_side(folder, interactions.user_index)
    item_info, item_features = _item_side(folder, interactions.item_index)
    return Dataset(interactions, item_features=item_features, user_features=user_features,
                   item_info=item_info, user_info=user_info, name=f"kuairec-{matrix}")
