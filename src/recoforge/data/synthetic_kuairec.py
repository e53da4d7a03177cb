"""Synthetic data shaped like KuaiRec, written as KuaiRec's own files.

:func:`write_kuairec_like` writes ``big_matrix.csv``, ``small_matrix.csv``,
``user_features.csv``, ``item_daily_features.csv`` and ``item_categories.csv`` with the
columns of the official archive (see :mod:`recoforge.data.kuairec`), so that
:func:`~recoforge.data.kuairec.load_kuairec` reads them like the real data and the
KuaiRec notebook's protocol (train on the sparse big matrix, test on the fully observed
small matrix) can run in tests without the 400 MB download.

The generative story: each user has a taste (one of ``n_tastes``, written as the
one-hot code ``onehot_feat0``) and an activity level; each video has one to three
categories (``item_categories.csv``), a type and daily counters whose play/show ratio
reflects a latent quality. A watch ratio is

    w_ui = exp(0.8 [taste_u in categories_i] + 0.35 quality_i + 0.15 activity_u
               - 0.45 + 0.35 eps),   eps ~ N(0, 1)

so relevance (w >= 1) depends on both user and item features. The small matrix is every
pair of the first ``n_small_users`` users and ``n_small_items`` videos; the big matrix
is a ``big_density`` sample of the other pairs, covering every user and video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recoforge.errors import ConfigError

DAY_SECONDS = 86_400
START = 1_593_561_600  # 2020-07-01, KuaiRec's first day


def _check(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def write_kuairec_like(folder: str | Path, n_users: int = 300, n_items: int = 1_100,
                       n_small_users: int = 40, n_small_items: int = 1_000,
                       n_tastes: int = 6, n_days: int = 3, big_density: float = 0.06,
                       seed: int = 0) -> Path:
    """Write the five KuaiRec files into ``folder`` (created); returns it.

    Memory O(n_small_users * n_small_items + big pairs + n_items * n_days).
    """
    _check(n_users=n_users, n_items=n_items, n_small_users=n_small_users,
           n_small_items=n_small_items, n_tastes=n_tastes, n_days=n_days)
    if n_small_users > n_users or n_small_items > n_items:
        raise ConfigError("the small matrix must fit in the big one's users and videos")
    if not 0 < big_density <= 1:
        raise ConfigError(f"big_density must be in (0, 1], got {big_density!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    taste = rng.integers(0, n_tastes, n_users)
    activity = rng.normal(size=n_users)
    categories = [rng.choice(n_tastes * 2, size=rng.integers(1, 4), replace=False)
                  for _ in range(n_items)]
    quality = rng.normal(size=n_items)
    _users_file(folder, rng, taste, activity)
    _items_files(folder, rng, categories, quality, n_days)
    small_u, small_i = np.meshgrid(np.arange(n_small_users), np.arange(n_small_items),
                                   indexing="ij")
    small = np.zeros((n_users, n_items), dtype=bool)
    small[:n_small_users, :n_small_items] = True
    big = (rng.random((n_users, n_items)) < big_density) & ~small
    big[np.arange(n_users), rng.integers(n_small_items, n_items, n_users)
        if n_items > n_small_items else rng.integers(0, n_items, n_users)] = True
    big[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    big &= ~small
    ratio = _watch_ratios(rng, taste, activity, categories, quality, n_tastes)
    _matrix_file(folder / "small_matrix.csv", rng, small_u.ravel(), small_i.ravel(), ratio,
                 n_days)
    bu, bi = np.nonzero(big)
    _matrix_file(folder / "big_matrix.csv", rng, bu, bi, ratio, n_days)
    return folder


def _watch_ratios(rng: np.random.Generator, taste: np.ndarray, activity: np.ndarray,
                  categories: list[np.ndarray], quality: np.ndarray, n_tastes: int
                  ) -> np.ndarray:
    """(n_users, n_items) watch ratios of the generative story."""
    member = np.zeros((len(categories), n_tastes * 2), dtype=bool)
    for item, cats in enumerate(categories):
        member[item, cats] = True
    match = member[:, taste].T.astype(np.float64)  # (users, items)
    noise = rng.normal(size=match.shape)
    return np.exp(0.8 * match + 0.35 * quality[None, :] + 0.15 * activity[:, None]
                  - 0.45 + 0.35 * noise)


def _users_file(folder: Path, rng: np.random.Generator, taste: np.ndarray,
                activity: np.ndarray) -> None:
    n = len(taste)
    degree = np.where(activity > 0.5, "high_active",
                      np.where(activity > -0.5, "full_active", "middle_active"))
    counts = {name: rng.poisson(scale, n) for name, scale in
              (("follow_user_num", 40), ("fans_user_num", 15), ("friend_user_num", 3),
               ("register_days", 300))}
    frame = pd.DataFrame({"user_id": np.arange(n), "user_active_degree": degree,
                          "is_lowactive_period": (activity < -1.5).astype(int),
                          "is_live_streamer": rng.integers(0, 2, n),
                          "is_video_author": rng.integers(0, 2, n)})
    for name, values in counts.items():
        frame[name] = values
        frame[f"{name}_range"] = pd.cut(values, [-1, 0, 10, 50, 100, 500, 10**9]).astype(str)
    frame["onehot_feat0"] = taste
    for k in range(1, 18):
        frame[f"onehot_feat{k}"] = rng.integers(0, 3, n)
    frame.to_csv(folder / "user_features.csv", index=False)


def _items_files(folder: Path, rng: np.random.Generator, categories: list[np.ndarray],
                 quality: np.ndarray, n_days: int) -> None:
    n = len(categories)
    pd.DataFrame({"video_id": np.arange(n),
                  "feat": ["[" + ", ".join(str(c) for c in cats) + "]" for cats in categories]}
                 ).to_csv(folder / "item_categories.csv", index=False)
    days = np.repeat(np.arange(n_days), n)
    items = np.tile(np.arange(n), n_days)
    shows = rng.poisson(1000, len(items)) + 1
    plays = rng.binomial(shows, 1.0 / (1.0 + np.exp(-(quality[items] - 0.5))))
    dates = pd.to_datetime(START + days * DAY_SECONDS, unit="s").strftime("%Y%m%d")
    pd.DataFrame({"video_id": items, "date": dates.astype(int),
                  "author_id": items % 97, "video_type": np.where(items % 10 == 0, "AD",
                                                                  "NORMAL"),
                  "upload_type": np.where(items % 3 == 0, "ShortImport", "LongImport"),
                  "visible_status": "public", "video_duration": 5_000 + items % 50 * 1_000,
                  "show_cnt": shows, "play_cnt": plays,
                  "like_cnt": rng.binomial(plays, 0.05),
                  "video_tag_name": [f"tag{categories[i][0]}" for i in items]}
                 ).to_csv(folder / "item_daily_features.csv", index=False)


def _matrix_file(path: Path, rng: np.random.Generator, users: np.ndarray, items: np.ndarray,
                 ratio: np.ndarray, n_days: int) -> None:
    when = START + rng.integers(0, n_days * DAY_SECONDS, len(users))
    duration = (5_000 + items % 50 * 1_000).astype(np.int64)
    watch = ratio[users, items]
    stamp = pd.to_datetime(when, unit="s")
    pd.DataFrame({"user_id": users, "video_id": items,
                  "play_duration": (watch * duration).astype(np.int64),
                  "video_duration": duration, "time": stamp.strftime("%Y-%m-%d %H:%M:%S"),
                  "date": stamp.strftime("%Y%m%d").astype(int),
                  "timestamp": when.astype(np.float64), "watch_ratio": watch}
                 ).to_csv(path, index=False)
