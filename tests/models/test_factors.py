"""FactorModel machinery: fold-in systems, scoring with biases, explanations, threads."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recoforge.data import Dataset
from recoforge.models._queries import history_matrix
from recoforge.models.factors.core import FactorModel
from recoforge.models.params import ModelConfig, param

D = 4


def rating_frame(seed=0, n_users=12, n_items=10, density=0.4):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), np.arange(n_users) % n_items] = True  # every user and item
    mask[np.arange(n_items) % n_users, np.arange(n_items)] = True
    dense = np.where(mask, rng.integers(1, 6, (n_users, n_items)), 0).astype(float)
    users, items = np.nonzero(dense)
    return pd.DataFrame({"user": users, "item": items, "rating": dense[users, items]}), dense


class Fixed(FactorModel):
    """A factor model whose 'training' draws random factors (not registered)."""

    name = "fixed_factors_for_tests"

    @dataclass(frozen=True)
    class Config(ModelConfig):
        regularization: float = param(0.3, gt=0.0)
        alpha: float = param(2.0, ge=0.0)
        biases: bool = param(False)
        implicit: bool = param(False)

    def _fit(self, data):
        rng = np.random.default_rng(0)
        n_users, n_items = self.train_matrix_.shape
        self.implicit_fold_in = self.config.implicit
        self.user_factors_ = rng.normal(size=(n_users, D)).astype(np.float32)
        self.item_factors_ = rng.normal(size=(n_items, D)).astype(np.float32)
        if self.config.biases:
            self.global_bias_ = 3.0
            self.user_bias_ = rng.normal(size=n_users).astype(np.float32)
            self.item_bias_ = rng.normal(size=n_items).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    frame, dense = rating_frame()
    return Dataset.from_frame(frame, rating_col="rating"), dense


def test_explicit_fold_in_is_weighted_ridge(data):
    dataset, dense = data
    model = Fixed().fit(dataset)
    factors, biases = model.fold_in(model.train_matrix_[:3])
    v = model.item_factors_.astype(np.float64)
    for row in range(3):
        seen = np.flatnonzero(dense[row])
        a = v[seen].T @ v[seen] + 0.3 * len(seen) * np.eye(D)
        expected = np.linalg.solve(a, v[seen].T @ dense[row, seen])
        np.testing.assert_allclose(factors[row], expected, rtol=1e-4, atol=1e-5)
    assert not biases.any()


def test_implicit_fold_in_is_hu_system(data):
    dataset, dense = data
    model = Fixed(implicit=True).fit(dataset)
    factors, _ = model.fold_in(model.train_matrix_[:2])
    v = model.item_factors_.astype(np.float64)
    for row in range(2):
        conf = 1.0 + 2.0 * dense[row]  # unobserved: c = 1, p = 0
        pref = (dense[row] > 0).astype(float)
        a = v.T @ (conf[:, None] * v) + 0.3 * np.eye(D)
        expected = np.linalg.solve(a, v.T @ (conf * pref))
        np.testing.assert_allclose(factors[row], expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("implicit", [False, True])
def test_explanations_sum_to_the_folded_in_score(data, implicit):
    dataset, dense = data
    model = Fixed(implicit=implicit).fit(dataset)
    history = {int(i): float(dense[0, i]) for i in np.flatnonzero(dense[0])}
    item = int(np.flatnonzero(dense[0] == 0)[0])
    why = model.explain(item, history={"q": history}, n=100)
    assert set(why["id"]) == set(history) and (why["source"] == "item").all()
    factors, _ = model.fold_in(history_matrix(model, {"q": history}, "error")[1])
    expected = float(factors[0] @ model.item_factors_[item])
    assert why["contribution"].sum() == pytest.approx(expected, rel=1e-4, abs=1e-5)
    assert np.all(np.diff(np.abs(why["contribution"].to_numpy())) <= 1e-12)  # by |weight|


def test_bias_scores_and_predictions(data):
    dataset, _ = data
    model = Fixed(biases=True).fit(dataset)
    scores = model.score(users=np.array([1, 2]))
    expected = (3.0 + model.user_bias_[[1, 2], None] + model.item_bias_[None, :]
                + model.user_factors_[[1, 2]] @ model.item_factors_.T)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert scores.dtype == np.float32
    pred = model._predict(np.array([1]), np.array([4]))
    assert pred[0] == pytest.approx(expected[0, 4], rel=1e-5)


def test_empty_history_folds_in_to_zero(data):
    dataset, _ = data
    model = Fixed(biases=True).fit(dataset)
    empty = sp.csr_matrix((2, dataset.n_items), dtype=np.float32)
    factors, biases = model.fold_in(empty)
    assert not factors.any() and not biases.any()


def test_vectors(data):
    model = Fixed().fit(data[0])
    assert model.item_vectors() is model.item_factors_
    assert model.user_vectors().shape == (data[0].n_users, D)
