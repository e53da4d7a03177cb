"""Feature-aware conformance: new items from attributes alone, new users from features alone.

Runs every model named in ``FEATURE_MODELS`` (with the parameters of its first spec in
``SPECS``) on the taste data, whose items carry a group one-hot and a noisy description
and whose users carry their taste group (``g0`` ... ``g3``, the item group they prefer)
and a noise number. Item groups and tastes share their labels, so a model that learned
anything from features ranks a new item of a user's taste group above one of another
group, and gives a new user of taste ``g`` mostly items of group ``g``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.errors import DataError, NotSupportedError
from tests.conformance.specs import SPECS, ModelSpec

#: feature models checked here (F1 / F3: append yours)
FEATURE_MODELS = ["content", "two_tower", "feature_tower", "feature_mf", "fm", "ffm", "nfm",
                  "deepfm", "wide_deep"]
N_GROUPS = 4


def _spec(name: str) -> ModelSpec:
    return next((s for s in SPECS if s.name == name), ModelSpec(name))


FEATURE_SPECS = [_spec(n) for n in FEATURE_MODELS if n in rf.available_models()]


@pytest.fixture(scope="module", params=FEATURE_SPECS, ids=[s.id for s in FEATURE_SPECS])
def feature_model(request, data):
    spec: ModelSpec = request.param
    return rf.create(spec.name, **spec.params).fit(data[0])


def new_items(groups: list[int], seed: int = 5) -> pd.DataFrame:
    """Attributes of new items: the group and a description in its words."""
    rng = np.random.default_rng(seed)
    texts = [" ".join([*(f"g{g}word{j}" for j in rng.choice(6, 3, replace=False)),
                       f"common{rng.integers(12)}"]) for g in groups]
    return pd.DataFrame({"group": [f"g{g}" for g in groups], "description": texts},
                        index=[f"new{j}_g{g}" for j, g in enumerate(groups)])


def group_of(item_ids) -> np.ndarray:
    return np.array([int(str(i).rsplit("_g", 1)[1]) if "_g" in str(i) else int(str(i)[1:])
                     % N_GROUPS for i in item_ids])


def users_by_taste(model) -> dict[int, list]:
    ids = model.user_index_.ids
    return {g: [u for u in ids if int(str(u)[1:]) % N_GROUPS == g] for g in range(N_GROUPS)}


def added(model):
    """A deep copy of ``model`` with one new item per group (the fixture stays as it was)."""
    info = new_items([0, 1, 2, 3])
    return copy.deepcopy(model).add_items(info), info


# ---------------------------------------------------------------------- new items
def test_new_items_are_scored_and_recommended_by_their_attributes(feature_model):
    n_old = len(feature_model.item_index_)
    model, info = added(feature_model)
    assert model.capabilities()["scores_new_items"]
    assert len(model.item_index_) == n_old + len(info)
    assert model.item_index_.ids[n_old:].tolist() == info.index.tolist()
    assert len(feature_model.item_index_) == n_old  # the original is untouched
    scores = model.score(users=np.arange(len(model.user_index_)))
    assert scores.shape == (len(model.user_index_), n_old + len(info))
    assert np.isfinite(scores[:, n_old:]).all()
    recs = model.recommend(model.user_index_.ids[:5], k=2, items=list(info.index))
    assert set(recs["item"]) <= set(info.index) and len(recs) == 10
    # a user's own-taste new item above the other new items, for most users
    wins = []
    for g, users in users_by_taste(model).items():
        rows = model.user_index_.to_index(users)
        own = scores[rows, n_old + g]
        others = np.delete(scores[rows, n_old:], g, axis=1).max(axis=1)
        wins.append(own > others)
    assert np.concatenate(wins).mean() >= 0.6  # random: 0.25


def test_new_items_have_similar_items_of_their_group(feature_model):
    model, info = added(feature_model)
    similar = model.similar_items(list(info.index), k=10)
    assert len(similar) == 10 * len(info)
    same = group_of(similar["similar_item"]) == group_of(similar["item"])
    assert same.mean() >= 0.6  # random: 0.25


def test_added_items_survive_save_and_load(feature_model, tmp_path: Path):
    model, info = added(feature_model)
    model.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    assert loaded.item_index_ == model.item_index_
    users = np.arange(10)
    np.testing.assert_allclose(loaded.score(users=users), model.score(users=users),
                               rtol=1e-5, atol=1e-6)
    recs = loaded.recommend(model.user_index_.ids[:3], k=1, items=[info.index[0]])
    assert recs["item"].tolist() == [info.index[0]] * 3


def test_add_items_rejects_known_ids_and_bad_tables(feature_model):
    model, info = added(feature_model)
    with pytest.raises(DataError, match="already in the catalogue"):
        model.add_items(info.iloc[:1])
    with pytest.raises(DataError, match="more than one row"):
        model.add_items(pd.concat([new_items([0], seed=9)] * 2))
    with pytest.raises(DataError, match="not in table columns"):
        model.add_items(new_items([1], seed=9).drop(columns="group").rename(index=str))


# ---------------------------------------------------------------------- new users
def taste_frame(groups: list[int], prefix: str = "newuser") -> pd.DataFrame:
    return pd.DataFrame({"taste": [f"g{g}" for g in groups], "noise": 0.0},
                        index=[f"{prefix}{j}" for j in range(len(groups))])


def test_new_users_are_recommended_from_their_features_alone(feature_model):
    if not feature_model.uses_user_features:
        pytest.skip(f"{feature_model.name} does not use user features")
    groups = [g for g in range(N_GROUPS) for _ in range(3)]
    frame = taste_frame(groups)
    recs = feature_model.recommend(list(frame.index), k=10, user_features=frame)
    assert recs.groupby("user").size().to_dict() == dict.fromkeys(frame.index, 10)
    lists = {u: tuple(g["item"]) for u, g in recs.groupby("user", sort=False)}
    assert len({lists[f"newuser{j}"] for j in (0, 3, 6, 9)}) == 4  # tastes differ
    own = [np.mean(group_of(lists[u]) == g) for u, g in zip(frame.index, groups)]
    assert np.mean(own) >= 0.5  # random: 0.25


def test_given_features_replace_a_known_users_stored_features(feature_model):
    if not feature_model.uses_user_features:
        pytest.skip(f"{feature_model.name} does not use user features")
    user = feature_model.user_index_.ids[0]  # taste g0
    stored = feature_model.recommend([user], k=10)
    other = pd.DataFrame({"taste": ["g2"], "noise": [0.0]}, index=[user])
    moved = feature_model.recommend([user], k=10, user_features=other)
    assert stored["item"].tolist() != moved["item"].tolist()
    scores = feature_model.score(users=np.array([0]), user_features=other)
    assert np.isfinite(scores).all()


def test_user_features_must_belong_to_requested_users(feature_model):
    frame = taste_frame([0, 1])
    if not feature_model.uses_user_features:
        with pytest.raises(NotSupportedError, match="does not use user features"):
            feature_model.recommend(["newuser0"], user_features=frame.iloc[:1])
        return
    with pytest.raises(DataError, match="not among the requested users"):
        feature_model.recommend(["newuser0"], user_features=frame)
    with pytest.raises(DataError, match="more than one row"):
        feature_model.recommend(["newuser0"], user_features=pd.concat([frame.iloc[:1]] * 2))


def test_models_without_new_item_support_say_so(data):
    model = rf.create("popularity").fit(data[0])
    assert not model.capabilities()["scores_new_items"]
    with pytest.raises(NotSupportedError, match="cannot add items"):
        model.add_items(new_items([0]))
