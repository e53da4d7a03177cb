"""feature_mf: item factors W^T x_i (+ offsets), users learned (folded in) or from features."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.data import Dataset  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

FAST = {"embedding_dim": 8, "epochs": 10, "batch_size": 256, "seed": 0}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return taste_data(seed=0)[0]


@pytest.fixture(scope="module")
def model(data):
    return rf.create("feature_mf", loss="bpr", **FAST).fit(data)


def test_scores_are_factorised_and_folded_in_for_new_users(model):
    users = np.arange(5)
    np.testing.assert_allclose(
        model.score(users=users),
        model.query_vectors(model.known_query(users)) @ model.item_vectors().T,
        rtol=1e-5, atol=1e-5)
    assert model.user_parameters == ("user_embedding.weight", "user_bias.weight")
    history = model.train_matrix_[[0]]
    folded = model.score(histories=history)
    assert folded.shape == (1, len(model.item_index_)) and np.isfinite(folded).all()
    assert not np.allclose(folded, model.score(users=np.array([0])))


def test_item_factors_are_a_map_of_features_plus_offsets(model, data):
    module = model.module
    x = data.item_features.matrix
    q = x @ module.item_map.weight.detach().numpy() + module.item_free.weight.detach().numpy()
    np.testing.assert_allclose(model.item_vectors()[:, :-1], q, rtol=1e-4, atol=1e-5)


def test_added_items_are_placed_by_features_alone(model, data):
    grown = copy.deepcopy(model)
    info = pd.DataFrame({"group": ["g2"], "description": ["g2word1 g2word4 common3"]},
                        index=["fresh"])
    grown.add_items(info)
    module = grown.module
    x = grown.item_encoder_.transform(info)
    np.testing.assert_allclose(grown.item_vectors()[-1, :-1],
                               (x @ module.item_map.weight.detach().numpy())[0], rtol=1e-4,
                               atol=1e-6)
    recs = grown.recommend(["u2", "u6"], k=1, items=["fresh", "i0"])
    assert len(recs) == 2


def test_user_vectors_from_features_alone(data):
    model = rf.create("feature_mf", loss="bce", user_vectors="features", **FAST).fit(data)
    assert model.user_parameters == ()
    frame = pd.DataFrame({"taste": ["g0", "g3"], "noise": [0.0, 0.0]}, index=["a", "b"])
    recs = model.recommend(["a", "b"], k=5, user_features=frame)
    assert recs.groupby("user").size().tolist() == [5, 5]
    probs = model.predict(["u0", "u1"], ["i0", "i1"])
    assert ((probs > 0) & (probs < 1)).all()


def test_mse_predicts_ratings_in_range(data):
    model = rf.create("feature_mf", **FAST).fit(data)
    assert model.objective == "mse"
    frame = data.interactions.to_frame()
    predicted = model.predict(frame["user"], frame["item"])
    assert predicted.min() >= 1 and predicted.max() <= 5
    assert np.sqrt(np.mean((predicted - frame["value"]) ** 2)) < np.std(frame["value"])
