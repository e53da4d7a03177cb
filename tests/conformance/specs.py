"""The models the conformance suite runs, and the data it runs them on.

Every registered model must appear in ``SPECS`` (a test checks this). A new model family
adds one ``ModelSpec`` line: its name, small fast parameters, and its accuracy floor.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recoforge.data import (
    Dataset,
    FeatureMatrix,
    IdIndex,
    Interactions,
    Sessions,
    build_features,
)


@dataclass(frozen=True)
class ModelSpec:
    """How the conformance suite exercises one model.

    Attributes
    ----------
    name : registered model name.
    params : small, fast hyperparameters (include ``seed`` for stochastic models).
    hit_rate_floor : minimum leave-one-out hit rate@10 on the 400-user conformance data
        (random ranking scores about 0.08 there); the suite also requires that a random
        ranker reaches the model's hit count with probability below 1e-3.
    accuracy : "top_n" (the hit-rate check) or "rating" (models that rank by predicted
        rating, which is not a top-N signal: held-out RMSE must beat every one of 1,000
        random predictors).
    history_matches_known_user : recommending from a known user's training history must
        equal recommending for that user (true for models without per-user parameters).
    """

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    hit_rate_floor: float = 0.15
    accuracy: str = "top_n"
    history_matches_known_user: bool = True

    @property
    def id(self) -> str:
        extra = ",".join(f"{k}={v}" for k, v in self.params.items() if k != "seed")
        return f"{self.name}({extra})" if extra else self.name


SPECS: list[ModelSpec] = [
    ModelSpec("popularity", {}, hit_rate_floor=0.2),
    ModelSpec("popularity", {"measure": "rating", "damping": 3.0}, accuracy="rating"),
]


def _collect_family_specs() -> None:
    """Append ``SPECS`` from every ``specs_<family>.py`` beside this file."""
    for path in sorted(Path(__file__).parent.glob("specs_*.py")):
        module = importlib.import_module(f"tests.conformance.{path.stem}")
        SPECS.extend(module.SPECS)


_collect_family_specs()


def taste_data(seed: int = 0, n_users: int = 120, n_items: int = 140,
               n_groups: int = 4) -> tuple[Dataset, pd.DataFrame]:
    """Users who prefer one item group; returns (train Dataset, one held-out item per user).

    Item popularity is skewed inside each group, ratings are higher in the preferred
    group, so both popularity and personalised models beat random ranking.
    """
    rng = np.random.default_rng(seed)
    item_group = np.arange(n_items) % n_groups
    appeal = rng.pareto(1.5, n_items) + 1.0
    rows = []
    for user in range(n_users):
        group = user % n_groups
        weight = appeal * np.where(item_group == group, 6.0, 1.0)
        n = int(rng.integers(8, 20))
        items = rng.choice(n_items, size=n, replace=False, p=weight / weight.sum())
        ratings = np.where(item_group[items] == group, rng.normal(4.3, 0.5, n),
                           rng.normal(2.6, 0.5, n))
        for pos, item in enumerate(items):
            rows.append((f"u{user}", f"i{item}", float(np.clip(round(ratings[pos]), 1, 5)),
                         1_600_000_000 + pos * 3600 + user))
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    last = frame.groupby("user").tail(1)
    train = frame.drop(index=last.index)
    # keep the full catalogue: items only in the held-out rows stay recommendable
    all_items = sorted(frame["item"].unique())
    inter = Interactions.from_frame(train, rating_col="rating", timestamp_col="timestamp",
                                    item_index=IdIndex(all_items, name="item"))
    features = _taste_item_features(inter.item_index, item_group, seed)
    user_info = _taste_user_info(inter.user_index, n_groups, seed)
    users = build_features(user_info, inter.user_index, categorical=["taste"],
                           numeric=["noise"])
    return (Dataset(inter, item_features=features, user_features=users,
                    user_info=user_info, sessions=_taste_sessions(inter), name="taste"),
            last.reset_index(drop=True))


def _taste_user_info(index: IdIndex, n_groups: int, seed: int) -> pd.DataFrame:
    """Each user's taste group (``"g0"`` ...) and a noise number, from their own generator
    so the interactions stay as they were."""
    rng = np.random.default_rng(seed + 20_011)
    return pd.DataFrame({"taste": [f"g{int(str(u)[1:]) % n_groups}" for u in index.ids],
                         "noise": rng.normal(size=len(index))}, index=index.ids)


def _taste_item_features(index: IdIndex, item_group: np.ndarray, seed: int) -> FeatureMatrix:
    """One-hot item group plus a short noisy description (2 of 3 words from the group's
    vocabulary, 2 shared words), from its own generator so the interactions stay as they were.
    """
    rng = np.random.default_rng(seed + 10_007)
    shared = [f"common{j}" for j in range(12)]
    texts = []
    for item_id in index.ids:
        group = item_group[int(str(item_id)[1:])]
        words = rng.choice([f"g{group}word{j}" for j in range(6)], 2, replace=False).tolist()
        words.append(str(rng.choice([f"g{o}word{j}" for o in range(len(set(item_group)))
                                     for j in range(6)])))
        words += rng.choice(shared, 2, replace=False).tolist()
        texts.append(" ".join(words))
    info = pd.DataFrame({"group": [f"g{item_group[int(str(i)[1:])]}" for i in index.ids],
                         "description": texts}, index=index.ids)
    return build_features(info, index, text=["description"], categorical=["group"])


def _taste_sessions(inter: Interactions) -> Sessions:
    """Each user's training rows as one session of views in timestamp order."""
    order = np.lexsort((inter.timestamps, inter.users))
    return Sessions(session_ids=np.asarray(inter.users)[order].astype(np.int64),
                    items=np.asarray(inter.items)[order].astype(np.int32),
                    users=np.asarray(inter.users)[order].astype(np.int32),
                    timestamps=np.asarray(inter.timestamps)[order])
