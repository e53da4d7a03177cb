import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError, NotSupportedError


@pytest.fixture()
def ratings():
    return pd.DataFrame({
        "user": ["a", "b", "c", "a", "b", "d"],
        "item": ["x", "x", "x", "y", "z", "z"],
        "rating": [3.0, 3.0, 3.0, 5.0, 4.0, 5.0],
        "ts": [0, 0, 86_400 * 10, 86_400 * 10, 86_400 * 10, 86_400 * 10],
    })


def test_count_ranks_by_interactions(ratings):
    ds = Dataset.from_frame(ratings, rating_col="rating")
    model = rf.create("popularity").fit(ds)
    assert model.scores_.tolist() == [3.0, 1.0, 2.0]
    recs = model.recommend(history=[], k=3)
    assert recs["item"].tolist() == ["x", "z", "y"]


def test_bayesian_average_by_hand(ratings):
    ds = Dataset.from_frame(ratings, rating_col="rating")
    model = rf.create("popularity", measure="rating", damping=2.0).fit(ds)
    mu = 23.0 / 6
    # y: one 5-star rating damped by two pseudo-ratings at mu
    assert model.item_means_[1] == pytest.approx((5 + 2 * mu) / 3, rel=1e-6)
    assert model.predict(["a"], ["z"])[0] == pytest.approx((9 + 2 * mu) / 4, rel=1e-6)
    order = model.recommend(history=[], k=3)["item"].tolist()
    assert order == ["y", "z", "x"]  # 4.22 > 4.17 > 3.17: one 5 is damped harder
    no_damping = rf.create("popularity", measure="rating", damping=0.0).fit(ds)
    assert no_damping.item_means_.tolist() == [3.0, 5.0, 4.5]


def test_time_decay(ratings):
    ds = Dataset.from_frame(ratings, rating_col="rating", timestamp_col="ts")
    model = rf.create("popularity", half_life_days=10.0).fit(ds)
    # x: two events 10 days old (weight 1/2 each) + one fresh
    np.testing.assert_allclose(model.scores_, [2.0, 1.0, 2.0])
    with pytest.raises(ConfigError, match="timestamps"):
        rf.create("popularity", half_life_days=1.0).fit(Dataset.from_frame(ratings))


def test_implicit_data_rules(ratings):
    ds = Dataset.from_frame(ratings[["user", "item"]])
    with pytest.raises(ConfigError, match="explicit"):
        rf.create("popularity", measure="rating").fit(ds)
    with pytest.raises(NotSupportedError):
        rf.create("popularity").fit(ds).predict(["a"], ["x"])
    with pytest.raises(ConfigError):
        rf.create("popularity", measure="median")
