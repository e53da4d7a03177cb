"""ALS: explicit weighted-lambda and implicit (Hu et al.) with CG and Cholesky solvers."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError
from recoforge.models.factors.als import _n_blocks, _solve_cg, _solve_cholesky
from tests.models.test_factors import rating_frame


@pytest.fixture(scope="module")
def data():
    frame, dense = rating_frame(seed=3, n_users=40, n_items=30, density=0.3)
    return Dataset.from_frame(frame, rating_col="rating"), dense


def hu_system(dense_row, items, alpha, reg):
    """Dense Hu et al. normal equations of one row."""
    conf = 1.0 + alpha * dense_row
    pref = (dense_row > 0).astype(float)
    return items.T @ (conf[:, None] * items) + reg * np.eye(items.shape[1]), \
        items.T @ (conf * pref)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_implicit_loss_decreases_every_iteration(data, solver):
    model = rf.create("implicit_als", n_factors=6, iterations=8, alpha=3.0,
                      regularization=0.2, solver=solver, track_loss=True, seed=1)
    model.fit(data[0])
    loss = model.loss_history_
    assert len(loss) == 8 and len(model.iteration_seconds_) == 8
    assert np.all(np.diff(loss) <= 1e-6 * loss[:-1]), loss


def test_explicit_loss_decreases_and_predicts(data):
    dataset, dense = data
    model = rf.create("als", n_factors=4, iterations=10, regularization=0.05,
                      track_loss=True, seed=0).fit(dataset)
    assert np.all(np.diff(model.loss_history_) <= 1e-6 * model.loss_history_[:-1])
    users, items = np.nonzero(dense)
    pred = model.predict(users, items)
    rmse = np.sqrt(np.mean((pred - dense[users, items]) ** 2))
    assert rmse < 0.7 * np.std(dense[users, items])  # fits its training ratings


def test_cg_matches_cholesky_and_dense_solve(data):
    dataset, dense = data
    rng = np.random.default_rng(0)
    d = 5
    matrix = sp.csr_matrix(dataset.matrix(), dtype=np.float32)
    items = rng.normal(size=(matrix.shape[1], d)).astype(np.float32)
    conf = 1.0 + 2.0 * matrix.data
    base = items.T @ items
    ridge = np.full(matrix.shape[0], 0.1, np.float32)
    args = (matrix.indptr, matrix.indices, (conf - 1).astype(np.float32),
            conf.astype(np.float32), items, base, True, ridge)
    exact = np.zeros((matrix.shape[0], d), np.float32)
    _solve_cholesky(*args, exact, _n_blocks(len(exact)))
    cg = np.zeros_like(exact)
    for _ in range(4):  # warm-started CG converges to the exact solution
        _solve_cg(*args, cg, _n_blocks(len(cg)), 3)
    np.testing.assert_allclose(cg, exact, rtol=2e-3, atol=2e-3)
    a, b = hu_system(dense[0], items.astype(np.float64), 2.0, 0.1)
    np.testing.assert_allclose(exact[0], np.linalg.solve(a, b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, params", [
    ("implicit_als", {"alpha": 2.0, "regularization": 0.1}),
    ("als", {"regularization": 0.2}),
    ("als", {"regularization": 0.2, "biases": False}),
])
def test_fold_in_of_training_history_recovers_user_factors(data, name, params):
    model = rf.create(name, n_factors=4, iterations=40, solver="cholesky", seed=0,
                      **params).fit(data[0])
    users = np.arange(10)
    factors, biases = model.fold_in(model.train_matrix_[users])
    np.testing.assert_allclose(factors, model.user_factors_[users], rtol=0.02, atol=0.02)
    if name == "als" and params.get("biases", True):
        np.testing.assert_allclose(biases, model.user_bias_[users], atol=0.02)


def test_fold_in_matches_dense_weighted_ridge(data):
    dataset, dense = data
    model = rf.create("als", n_factors=3, iterations=3, biases=False, regularization=0.2,
                      seed=0).fit(dataset)
    factors, _ = model.fold_in(model.train_matrix_[:1])
    v = model.item_factors_.astype(np.float64)
    seen = np.flatnonzero(dense[0])
    a = v[seen].T @ v[seen] + 0.2 * len(seen) * np.eye(3)
    np.testing.assert_allclose(factors[0], np.linalg.solve(a, v[seen].T @ dense[0, seen]),
                               rtol=1e-4, atol=1e-5)


def test_threads_do_not_change_the_result(data):
    one = rf.create("implicit_als", n_factors=5, iterations=3, n_threads=1, seed=2)
    many = rf.create("implicit_als", n_factors=5, iterations=3, n_threads=0, seed=2)
    np.testing.assert_array_equal(one.fit(data[0]).item_factors_,
                                  many.fit(data[0]).item_factors_)
    assert one.item_factors_.dtype == np.float32


def test_explain_sums_to_history_score(data):
    dataset, dense = data
    model = rf.create("implicit_als", n_factors=4, iterations=5, alpha=2.0,
                      seed=0).fit(dataset)
    history = {"q": {int(i): float(dense[0, i]) for i in np.flatnonzero(dense[0])}}
    recs = model.recommend(history=history, k=1)
    why = model.explain(recs["item"][0], history=history, n=100)
    assert why["contribution"].sum() == pytest.approx(float(recs["score"][0]), rel=1e-3)


def test_implicit_rejects_negative_values():
    frame = pd.DataFrame({"user": [0, 0, 1], "item": [0, 1, 1], "rating": [1.0, -1.0, 2.0]})
    with pytest.raises(ConfigError, match="non-negative"):
        rf.create("implicit_als", n_factors=2).fit(Dataset.from_frame(frame,
                                                                      rating_col="rating"))


@pytest.mark.parametrize("name", ["als", "implicit_als"])
@pytest.mark.parametrize("bad", [{"n_factors": 0}, {"regularization": 0.0},
                                 {"regularization": -1.0}, {"iterations": 0},
                                 {"solver": "lu"}, {"cg_steps": 0}, {"n_threads": -1},
                                 {"n_factors": 2.5}, {"seed": "x"}])
def test_bad_params(name, bad):
    with pytest.raises(ConfigError):
        rf.create(name, **bad)


def test_bad_alpha():
    with pytest.raises(ConfigError):
        rf.create("implicit_als", alpha=-1.0)
    with pytest.raises(ConfigError):
        rf.create("als", alpha=1.0)  # explicit ALS has no confidence
