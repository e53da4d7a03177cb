"""SGD matrix factorisation (sgd_mf) and SVD++ (svdpp): learning, determinism, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError
from recoforge.models.factors.sgd_mf import shuffle_in_place
from recoforge.models.factors.svdpp import implicit_sums


def low_rank_ratings(seed: int = 0, n_users: int = 150, n_items: int = 100, rank: int = 3,
                     density: float = 0.3, noise: float = 0.3) -> tuple[Dataset, pd.DataFrame]:
    """Ratings mu + b_u + b_i + P Q^T + noise, 20% of them held out: (train, test)."""
    rng = np.random.default_rng(seed)
    p = rng.normal(0, 0.8, (n_users, rank))
    q = rng.normal(0, 0.8, (n_items, rank))
    full = 3.5 + rng.normal(0, 0.3, (n_users, 1)) + rng.normal(0, 0.3, (1, n_items)) + p @ q.T
    users, items = np.nonzero(rng.random((n_users, n_items)) < density)
    ratings = full[users, items] + rng.normal(0, noise, len(users))
    frame = pd.DataFrame({"user": users, "item": items, "rating": ratings})
    test = rng.random(len(frame)) < 0.2
    return Dataset.from_frame(frame[~test], rating_col="rating"), frame[test]


@pytest.fixture(scope="module")
def synthetic():
    return low_rank_ratings()


def rmse(model, test: pd.DataFrame) -> float:
    pred = model.predict(test["user"], test["item"], unknown="nan")
    ok = np.isfinite(pred)
    return float(np.sqrt(np.mean((pred[ok] - test["rating"].to_numpy()[ok]) ** 2)))


FAST = {"sgd_mf": {"n_factors": 6, "n_epochs": 40, "lr_factors": 0.02, "lr_bias": 0.02,
                   "reg_factors": 0.05, "init_std": 0.1, "seed": 3},
        "svdpp": {"n_factors": 6, "n_epochs": 40, "lr_factors": 0.02, "lr_bias": 0.02,
                  "lr_implicit": 0.01, "reg_factors": 0.05, "seed": 3}}


@pytest.mark.parametrize("name", ["sgd_mf", "svdpp"])
def test_beats_bias_baseline_and_loss_decreases(name, synthetic):
    train, test = synthetic
    model = rf.create(name, **FAST[name]).fit(train)
    baseline = rf.create("bias").fit(train)
    assert rmse(model, test) < rmse(baseline, test) - 0.1
    losses = model.training_rmse_
    assert len(losses) == 40 and losses[-1] < losses[0] * 0.8
    assert np.all(np.diff(losses[5:]) < 1e-3)  # no divergence once under way


@pytest.mark.parametrize("name", ["sgd_mf", "svdpp"])
def test_deterministic_under_seed_and_seed_matters(name, synthetic):
    train, _ = synthetic
    a = rf.create(name, **FAST[name]).fit(train)
    b = rf.create(name, **FAST[name]).fit(train)
    c = rf.create(name, **{**FAST[name], "seed": 4}).fit(train)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)
    np.testing.assert_array_equal(a.item_bias_, b.item_bias_)
    assert not np.allclose(a.item_factors_, c.item_factors_)


@pytest.mark.parametrize("name", ["sgd_mf", "svdpp"])
def test_parallel_epochs_learn_as_well(name, synthetic):
    train, test = synthetic
    serial = rf.create(name, **FAST[name]).fit(train)
    parallel = rf.create(name, **{**FAST[name], "n_threads": 2}).fit(train)
    assert abs(rmse(parallel, test) - rmse(serial, test)) < 0.05


def test_early_stopping_keeps_best_epoch(synthetic):
    train, test = synthetic
    params = {**FAST["sgd_mf"], "n_factors": 30, "reg_factors": 0.0, "lr_factors": 0.05,
              "n_epochs": 200, "validation_fraction": 0.2, "patience": 3}
    model = rf.create("sgd_mf", **params).fit(train)
    val = model.validation_rmse_
    assert model.n_epochs_run_ < 200 and len(val) == model.n_epochs_run_
    assert np.argmin(val) == len(val) - 1 - 3  # stopped `patience` epochs after the best
    assert np.isfinite(rmse(model, test))


def test_svdpp_implicit_term_and_fold_in(synthetic):
    train, _ = synthetic
    model = rf.create("svdpp", **FAST["svdpp"]).fit(train)
    hist = model.train_matrix_[:3]
    z = implicit_sums(hist, model.implicit_factors_)
    row = hist[0]
    manual = model.implicit_factors_[row.indices].sum(axis=0) / np.sqrt(row.nnz)
    np.testing.assert_allclose(z[0], manual, rtol=1e-5)
    # a new user's scores from their history track the known user's closely
    folded = model.score(histories=hist)
    known = model.score(users=np.arange(3))
    corr = [np.corrcoef(folded[k], known[k])[0, 1] for k in range(3)]
    assert min(corr) > 0.8
    expl = model.explain(train.item_index.ids[0], user=train.user_index.ids[0], n=3)
    assert len(expl) == 3 and set(expl["source"]) == {"item"}


def test_items_without_training_ratings_get_zero_factors():
    frame = pd.DataFrame({"user": [0, 0, 1, 1, 2], "item": [0, 1, 0, 1, 0],
                          "rating": [5.0, 3.0, 4.0, 2.0, 5.0]})
    data = Dataset.from_frame(frame, rating_col="rating")
    data = data.subset(np.asarray(data.interactions.items) == 0, compact_users=True)
    model = rf.create("sgd_mf", n_factors=4, n_epochs=3, seed=0).fit(data)
    assert np.all(model.item_factors_[1] == 0)
    pred = model.predict([0, 1], [0, 1])
    assert np.all((pred >= 4.0) & (pred <= 5.0))  # clipped to the training range
    svdpp = rf.create("svdpp", n_factors=4, n_epochs=3, seed=0).fit(data)
    assert np.all(svdpp.implicit_factors_[1] == 0) and np.any(svdpp.implicit_factors_[0])


def test_shuffle_in_place_is_a_seeded_permutation():
    users = np.arange(1000, dtype=np.int32)
    items, ratings = users.copy(), users.astype(np.float32)
    shuffle_in_place(users, items, ratings, 7)
    assert sorted(users.tolist()) == list(range(1000)) and not np.all(np.diff(users) > 0)
    np.testing.assert_array_equal(users, items)
    again = np.arange(1000, dtype=np.int32)
    shuffle_in_place(again, again.copy(), again.astype(np.float32), 7)
    np.testing.assert_array_equal(users, again)


@pytest.mark.parametrize("params", [{"n_factors": 0}, {"lr_factors": 0.0},
                                    {"reg_bias": -1.0}, {"n_epochs": 1.5},
                                    {"validation_fraction": 1.0}, {"n_threads": 0},
                                    {"lr_decay": 1.5}, {"no_such": 1}])
@pytest.mark.parametrize("name", ["sgd_mf", "svdpp"])
def test_bad_params(name, params):
    with pytest.raises(ConfigError):
        rf.create(name, **params)


def test_needs_explicit_ratings_and_enough_for_validation():
    implicit = Dataset.from_frame(pd.DataFrame({"user": [0, 1], "item": [0, 1]}))
    for name in ("sgd_mf", "svdpp"):
        with pytest.raises(ConfigError, match="explicit"):
            rf.create(name).fit(implicit)
    tiny = Dataset.from_frame(pd.DataFrame({"user": [0, 1], "item": [0, 1],
                                            "rating": [1.0, 2.0]}), rating_col="rating")
    with pytest.raises(ConfigError, match="validation_fraction"):
        rf.create("sgd_mf", validation_fraction=0.1).fit(tiny)


def test_implicit_sums_of_empty_rows_are_zero():
    hist = sp.csr_matrix((2, 4), dtype=np.float32)
    assert np.all(implicit_sums(hist, np.ones((4, 3), np.float32)) == 0)


def test_stratified_parallel_epochs_are_deterministic_and_cover_every_rating(synthetic):
    from recoforge.models.factors.sgd_mf import stratify

    train, _ = synthetic
    inter = train.interactions
    rng = np.random.default_rng(0)
    users, items, ratings, bounds = stratify(inter.users, inter.items, inter.values,
                                             train.n_users, train.n_items, 3, rng)
    assert bounds[0] == 0 and bounds[-1] == len(inter) and len(bounds) == 10
    assert sorted(zip(users, items)) == sorted(zip(inter.users, inter.items))
    for s in range(9):  # each stratum holds one user block x one item block
        seg = slice(bounds[s], bounds[s + 1])
        if bounds[s + 1] > bounds[s]:
            other_users = np.setdiff1d(np.arange(len(users)), np.arange(len(users))[seg])
            assert not set(users[seg]) & set(users[other_users][
                (np.searchsorted(bounds, other_users, side="right") - 1) // 3 != s // 3])
    params = {**FAST["sgd_mf"], "n_threads": 2, "seed": 5}
    a = rf.create("sgd_mf", **params).fit(train)
    b = rf.create("sgd_mf", **params).fit(train)
    np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
