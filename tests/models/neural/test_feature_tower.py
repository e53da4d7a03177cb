"""feature_tower: the KuaiRec notebook's model (normalised feature towers, scaled target)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.data import Dataset, Interactions  # noqa: E402
from recoforge.errors import ConfigError  # noqa: E402
from recoforge.models.query import Query  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

FAST = {"user_layers": "32,16", "item_layers": "32,16", "epochs": 6, "batch_size": 256,
        "learning_rate": 0.003, "seed": 0}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return taste_data(seed=0)[0]


@pytest.fixture(scope="module")
def model(data):
    return rf.create("feature_tower", target_transform="log1p", **FAST).fit(data)


def test_regression_learns_and_keeps_its_target_transform(model, data, tmp_path: Path):
    assert not model.classify_ and model.loss_history_[-1] < model.loss_history_[0]
    frame = data.interactions.to_frame()
    predicted = model.predict(frame["user"], frame["item"])
    actual = frame["value"].to_numpy()
    assert predicted.min() >= 1 and predicted.max() <= 5
    rmse = np.sqrt(np.mean((predicted - actual) ** 2))
    assert rmse < 0.9 * np.std(actual)  # better than the mean rating
    logs = np.log1p(actual)
    assert model.target_center_ == pytest.approx(logs.mean(), rel=1e-6)
    assert model.target_scale_ == pytest.approx(logs.std(), rel=1e-6)
    model.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.predict(frame["user"][:50], frame["item"][:50]),
                               predicted[:50], rtol=1e-5)


def test_scores_are_the_factorised_transformed_prediction(model):
    users = np.arange(6)
    query = model.known_query(users)
    scores = model.score(users=users)
    np.testing.assert_allclose(scores, model.query_vectors(query) @ model.item_vectors().T,
                               rtol=1e-4, atol=1e-5)
    items = np.arange(6)
    back = np.expm1(scores[users, items] * model.target_scale_ + model.target_center_)
    ids = model.user_index_.to_ids(users), model.item_index_.to_ids(items)
    np.testing.assert_allclose(model.predict(*ids), np.clip(back, 1, 5), rtol=1e-4)
    outputs = model.item_vectors()[:, :-1]
    np.testing.assert_allclose(np.linalg.norm(outputs, axis=1), 1.0, rtol=1e-5)


def test_users_and_items_never_seen_are_scored_from_features(model):
    n = len(model.item_index_)
    empty = Query.from_history(
        model.train_matrix_[:2].multiply(0).tocsr(),
        user_features=model.user_feature_matrix_[[0, 1]])  # tastes g0 and g1
    scores = model.score(histories=empty.history, user_features=empty.user_features)
    assert scores.shape == (2, n) and not np.allclose(scores[0], scores[1])


def test_classification_with_sampled_negatives(data):
    model = rf.create("feature_tower", task="classification", label_threshold=4.0,
                      n_negatives=2, **FAST).fit(data)
    frame = data.interactions.to_frame()[:100]
    probs = model.predict(frame["user"], frame["item"])
    assert model.classify_ and ((probs > 0) & (probs < 1)).all()
    implicit = Dataset(Interactions.from_frame(
        frame.assign(value=1.0), rating_col="value", kind="implicit"), name="clicks")
    with pytest.raises(ConfigError, match="needs item features"):
        rf.create("feature_tower", **FAST).fit(implicit)


def test_configuration_errors(data):
    with pytest.raises(ConfigError, match="same output size"):
        rf.create("feature_tower", user_layers="8,4", item_layers="8,2")
    no_users = Dataset(data.interactions, item_features=data.item_features, name="x")
    with pytest.raises(ConfigError, match="no input"):
        rf.create("feature_tower", history_features=False, **FAST).fit(no_users)
    frame = data.interactions.to_frame()
    implicit = Dataset(Interactions.from_frame(frame.assign(value=1.0), rating_col="value",
                                               kind="implicit"),
                       item_features=None, name="clicks")
    with pytest.raises(ConfigError, match="n_negatives >= 1"):
        rf.create("feature_tower", item_id_embedding=True, **FAST).fit(implicit)
