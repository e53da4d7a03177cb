"""EASE: closed form against numpy, scoring, explanations, the memory guard."""

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
import recoforge.models.factors.ease as ease_module
from recoforge.data import Dataset
from recoforge.errors import ConfigError
from tests.models.test_factors import rating_frame


@pytest.fixture(scope="module")
def data():
    frame, dense = rating_frame(seed=5, n_users=50, n_items=35, density=0.3)
    return Dataset.from_frame(frame, rating_col="rating"), dense


def steck_closed_form(x, lam):
    p = np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    b = np.eye(len(p)) - p / np.diag(p)[None, :]
    np.fill_diagonal(b, 0.0)
    return b


@pytest.mark.parametrize("precision, tol", [("float64", 1e-6), ("float32", 1e-4)])
@pytest.mark.parametrize("binary", [True, False])
def test_closed_form_matches_numpy(data, precision, tol, binary):
    dataset, dense = data
    model = rf.create("ease", regularization=7.0, binary=binary, precision=precision)
    model.fit(dataset)
    x = (dense > 0).astype(float) if binary else dense
    expected = steck_closed_form(x, 7.0)
    np.testing.assert_allclose(model.weights_, expected, atol=tol * np.abs(expected).max())
    assert model.weights_.dtype == np.float32 and not np.diag(model.weights_).any()
    scores = model.score(users=np.arange(4))
    np.testing.assert_allclose(scores, x[:4] @ expected, atol=10 * tol)


def test_dropout_is_edlae(data):
    dataset, dense = data
    model = rf.create("ease", regularization=3.0, dropout=0.25, precision="float64")
    x = (dense > 0).astype(float)
    gram = x.T @ x
    p = np.linalg.inv(gram + np.diag(3.0 + gram.diagonal() / 3.0))  # p/(1-p) = 1/3
    expected = -p / np.diag(p)[None, :]
    np.fill_diagonal(expected, 0.0)
    np.testing.assert_allclose(model.fit(dataset).weights_, expected, atol=1e-6)


def test_normalisation_matches_numpy(data):
    """Z = D_U^(-beta/2) X D_I^(-alpha); W = D_I^(-alpha) B D_I^(gamma) (module docs)."""
    dataset, dense = data
    beta, alpha, gamma = 0.5, 0.25, 0.1
    model = rf.create("ease", regularization=2.0, user_norm=beta, item_norm=alpha,
                      popularity_exponent=gamma, precision="float64").fit(dataset)
    x = (dense > 0).astype(float)
    n_u = np.maximum(x.sum(1), 1)
    pop = np.maximum(x.sum(0), 1)
    z = x / n_u[:, None] ** (beta / 2) / pop[None, :] ** alpha
    expected = steck_closed_form(z, 2.0) / pop[:, None] ** alpha * pop[None, :] ** gamma
    np.testing.assert_allclose(model.weights_, expected, atol=1e-6 * np.abs(expected).max())
    plain = rf.create("ease", regularization=2.0, precision="float64").fit(dataset)
    assert not np.allclose(plain.weights_, model.weights_)
    recs = model.recommend(history={"q": [int(i) for i in np.flatnonzero(dense[2])]}, k=3)
    assert recs["item"].tolist() == model.recommend([2], k=3)["item"].tolist()


def test_history_scoring_and_explanation(data):
    dataset, dense = data
    model = rf.create("ease", regularization=5.0).fit(dataset)
    history = {"q": [int(i) for i in np.flatnonzero(dense[2])]}
    recs = model.recommend(history=history, k=3)
    known = model.recommend([2], k=3)
    assert recs["item"].tolist() == known["item"].tolist()
    why = model.explain(recs["item"][0], history=history, n=100)
    assert why["contribution"].sum() == pytest.approx(float(recs["score"][0]), rel=1e-4)
    top = recs["item"][0]
    assert set(why["id"]) == set(history["q"])
    assert model.explain(top, user=2, n=2).shape[0] == 2


def test_similar_items_are_rows_of_b(data):
    model = rf.create("ease", regularization=5.0).fit(data[0])
    sims = model.similar_items([0], k=3)
    row = model.weights_[0].copy()
    row[0] = -np.inf
    assert sims["similar_item"].tolist() == np.argsort(-row, kind="stable")[:3].tolist()


def test_threads_do_not_change_weights(data):
    one = rf.create("ease", regularization=3.0, n_threads=1).fit(data[0])
    all_ = rf.create("ease", regularization=3.0).fit(data[0])
    np.testing.assert_allclose(one.weights_, all_.weights_, rtol=1e-5, atol=1e-6)


def test_memory_guard_with_budget(data):
    model = rf.create("ease", max_memory_gb=1e-6)
    with pytest.raises(ConfigError, match="item_knn"):
        model.fit(data[0])
    assert not model.is_fitted or not hasattr(model, "weights_")


def test_memory_guard_reads_meminfo(data, monkeypatch, tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000 kB\nMemAvailable:  1 kB\n")
    monkeypatch.setattr(ease_module, "MEMINFO", meminfo)
    assert ease_module.available_memory_bytes() == 1024
    with pytest.raises(ConfigError, match=r"35 items.*available"):
        rf.create("ease").fit(data[0])
    monkeypatch.setattr(ease_module, "MEMINFO", tmp_path / "absent")
    assert ease_module.available_memory_bytes() is None
    assert rf.create("ease").fit(data[0]).weights_.shape == (35, 35)  # no guard, no crash


def test_guard_runs_before_allocation(monkeypatch):
    """A catalogue whose matrix could never fit is refused without touching numpy."""
    frame = pd.DataFrame({"user": [0, 1], "item": [0, 1]})
    dataset = Dataset.from_frame(frame)
    monkeypatch.setattr(ease_module, "PEAK_MATRICES", 10**15)
    with pytest.raises(ConfigError, match="GiB"):
        rf.create("ease").fit(dataset)


@pytest.mark.parametrize("bad", [{"regularization": 0.0}, {"regularization": -5.0},
                                 {"precision": "float16"}, {"max_memory_gb": 0.0},
                                 {"n_threads": -2}, {"binary": "yes"}, {"dropout": 1.0},
                                 {"dropout": -0.1}, {"user_norm": -0.5}, {"user_norm": 3.0},
                                 {"item_norm": 1.5}, {"popularity_exponent": 2.0},
                                 {"item_norm": float("nan")}])
def test_bad_params(bad):
    with pytest.raises(ConfigError):
        rf.create("ease", **bad)
