"""PureSVD: subspace of the sparse solvers, projection scoring, centring, no dense copy."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError
from tests.models.test_factors import rating_frame


@pytest.fixture(scope="module")
def data():
    frame, dense = rating_frame(seed=7, n_users=60, n_items=40, density=0.3)
    return Dataset.from_frame(frame, rating_col="rating"), dense


def top_projection(matrix, k):
    _, _, vt = np.linalg.svd(matrix, full_matrices=False)
    return vt[:k].T @ vt[:k]


@pytest.mark.parametrize("solver, tol", [("arpack", 1e-4), ("randomized", 2e-2)])
def test_item_subspace_matches_dense_svd(data, solver, tol):
    dataset, dense = data
    model = rf.create("pure_svd", n_factors=5, solver=solver, n_power_iterations=10,
                      seed=0).fit(dataset)
    v = model.item_factors_.astype(np.float64)
    np.testing.assert_allclose(v.T @ v, np.eye(5), atol=1e-4)
    np.testing.assert_allclose(v @ v.T, top_projection(dense, 5), atol=tol)


def test_scores_are_projections_and_history_equals_known_user(data):
    dataset, dense = data
    model = rf.create("pure_svd", n_factors=6, seed=0).fit(dataset)
    v = model.item_factors_.astype(np.float64)
    np.testing.assert_allclose(model.score(users=np.arange(3)), dense[:3] @ v @ v.T,
                               rtol=1e-4, atol=1e-4)
    history = {"q": {int(i): float(dense[4, i]) for i in np.flatnonzero(dense[4])}}
    from_history = model.recommend(history=history, k=5)
    known = model.recommend([4], k=5)
    assert from_history["item"].tolist() == known["item"].tolist()
    why = model.explain(known["item"][0], user=4, n=100)
    assert why["contribution"].sum() == pytest.approx(float(known["score"][0]), rel=1e-4)


@pytest.mark.parametrize("centering", ["user", "item"])
def test_centring_adds_the_mean_back(data, centering):
    dataset, dense = data
    model = rf.create("pure_svd", n_factors=4, centering=centering, seed=0).fit(dataset)
    mask = dense > 0
    if centering == "user":
        mean = (dense.sum(1) / mask.sum(1))[:, None] * np.ones_like(dense)
    else:
        mean = np.ones_like(dense) * (dense.sum(0) / mask.sum(0))[None, :]
    centred = np.where(mask, dense - mean, 0.0)
    v = model.item_factors_.astype(np.float64)
    np.testing.assert_allclose(v @ v.T, top_projection(centred, 4), atol=1e-4)
    expected = mean[:2] + centred[:2] @ v @ v.T
    np.testing.assert_allclose(model.score(users=np.arange(2)), expected, rtol=1e-4, atol=1e-4)


def test_no_dense_copy_of_the_matrix(data, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("dense copy of a sparse matrix")

    for cls in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix):
        monkeypatch.setattr(cls, "toarray", refuse)
        monkeypatch.setattr(cls, "todense", refuse)
    for solver in ("arpack", "randomized"):
        rf.create("pure_svd", n_factors=3, solver=solver, seed=0).fit(data[0])


def test_deterministic_and_float32(data):
    a = rf.create("pure_svd", n_factors=5, solver="randomized", seed=3).fit(data[0])
    b = rf.create("pure_svd", n_factors=5, solver="randomized", seed=3).fit(data[0])
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
    assert a.item_factors_.dtype == np.float32 and a.user_factors_.dtype == np.float32


def test_too_many_factors(data):
    with pytest.raises(ConfigError, match="n_factors=40"):
        rf.create("pure_svd", n_factors=40).fit(data[0])


def test_centring_rejects_implicit_and_constant_data():
    implicit = Dataset.from_frame(pd.DataFrame({"user": [0, 0, 1, 2], "item": [0, 1, 1, 2]}))
    with pytest.raises(ConfigError, match="explicit"):
        rf.create("pure_svd", n_factors=1, centering="user").fit(implicit)
    constant = Dataset.from_frame(pd.DataFrame({"user": [0, 0, 1, 2], "item": [0, 1, 1, 2],
                                                "rating": [3.0] * 4}), rating_col="rating")
    with pytest.raises(ConfigError, match="all zeros"):
        rf.create("pure_svd", n_factors=1, centering="user").fit(constant)


@pytest.mark.parametrize("bad", [{"n_factors": 0}, {"centering": "global"},
                                 {"solver": "lanczos"}, {"n_oversamples": -1},
                                 {"n_power_iterations": -1}])
def test_bad_params(bad):
    with pytest.raises(ConfigError):
        rf.create("pure_svd", **bad)
