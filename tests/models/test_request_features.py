"""The contract's feature plumbing: user features in requests, items added from attributes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import DataError, NotSupportedError
from tests.conformance.specs import taste_data

pytest.importorskip("torch")
FAST = {"embedding_dim": 8, "epochs": 2, "batch_size": 256, "seed": 0}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return taste_data(seed=0)[0]


def test_a_model_fitted_without_user_features_sees_zero_columns(data, tmp_path: Path):
    bare = Dataset(data.interactions, item_features=data.item_features, name="bare")
    model = rf.create("two_tower", **FAST).fit(bare)
    assert model.user_encoder_ is None and model.user_feature_matrix_.shape == (120, 0)
    assert model.known_query(np.arange(3)).user_features.shape == (3, 0)
    frame = pd.DataFrame({"taste": ["g0"], "noise": [0.0]}, index=["u0"])
    with pytest.raises(NotSupportedError, match="without a user FeatureEncoder"):
        model.recommend(["u0"], user_features=frame)
    model.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(users=np.arange(3)),
                               model.score(users=np.arange(3)), rtol=1e-5, atol=1e-6)


def test_index_level_user_features_are_checked(data):
    model = rf.create("feature_mf", user_vectors="features", **FAST).fit(data)
    width = model.user_feature_matrix_.shape[1]
    encoded = model.user_feature_matrix_[[0, 1]]
    np.testing.assert_allclose(model.score(users=np.array([0, 1]), user_features=encoded),
                               model.score(users=np.array([0, 1])), rtol=1e-6)
    with pytest.raises(DataError, match=f"the model's user features have {width}"):
        model.score(users=np.array([0]), user_features=sp.csr_matrix((1, width + 1)))
    with pytest.raises(DataError, match="2 rows for 1 queries"):
        model.score(users=np.array([0]), user_features=encoded)
    with pytest.raises(DataError, match="indexed by user id"):
        model.recommend(["u0"], user_features=encoded)
    frame = pd.DataFrame({"taste": ["g1", "g1"], "noise": [0.0, 0.0]})
    raw = model.score(users=np.array([0, 1]), user_features=frame)
    np.testing.assert_allclose(raw[0], raw[1], rtol=1e-6)  # same features, same scores


def test_add_items_extends_titles_and_drops_a_stale_index(data, caplog):
    from recoforge.ranking.index import VectorIndex

    info = pd.DataFrame({"title": [f"Item {i}" for i in data.item_index.ids]},
                        index=data.item_index.ids)
    titled = data.with_item_info(info, title_col="title")
    model = rf.create("feature_mf", **FAST).fit(titled)
    model.attach_index(VectorIndex.for_model(model, backend="exact"))
    new = pd.DataFrame({"group": ["g0"], "description": ["g0word1"], "title": ["Brand New"]},
                       index=["fresh"])
    with caplog.at_level(logging.WARNING):
        model.add_items(new)
    assert "dropped" in caplog.text and getattr(model, "vector_index_", None) is None
    assert model.titles_of(["fresh"]).tolist() == ["Brand New"]
    assert model.train_matrix_.shape == (120, 141)
    sims = model.similar_items(["fresh"], k=3, titles=True)
    assert len(sims) == 3 and "title" in "".join(sims.columns)
