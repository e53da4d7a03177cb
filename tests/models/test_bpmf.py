"""Bayesian probabilistic MF (bpmf): accuracy, determinism, sample averaging, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError
from recoforge.models.factors.bpmf import _kept_sweeps, sample_normal_wishart
from tests.models.test_sgd_mf import low_rank_ratings, rmse

PARAMS = {"n_factors": 4, "n_samples": 20, "burn_in": 5, "stored_samples": 5, "seed": 1}


@pytest.fixture(scope="module")
def synthetic():
    return low_rank_ratings(seed=2)


@pytest.fixture(scope="module")
def fitted(synthetic):
    return rf.create("bpmf", **PARAMS).fit(synthetic[0])


def test_beats_bias_baseline_and_learns_noise_level(fitted, synthetic):
    train, test = synthetic
    baseline = rf.create("bias").fit(train)
    assert rmse(fitted, test) < rmse(baseline, test) - 0.15
    # the sampled noise level approaches the true one (0.3)
    assert 0.2 < float(fitted.noise_precision_[-1]) ** -0.5 < 0.45


def test_stored_samples_average_the_prediction(fitted):
    s, d = 5, 4
    assert fitted.user_factors_.shape[1] == s * d == fitted.item_factors_.shape[1]
    assert fitted.user_prior_precision_.shape == (s, d, d)
    u, i = fitted.user_factors_[0] * np.sqrt(s), fitted.item_factors_[1] * np.sqrt(s)
    per_sample = [u[k * d:(k + 1) * d] @ i[k * d:(k + 1) * d] for k in range(s)]
    expected = (fitted.global_bias_ + fitted.user_bias_[0] + fitted.item_bias_[1]
                + np.mean(per_sample))
    assert fitted._predict(np.array([0]), np.array([1]))[0] == pytest.approx(expected, 1e-4)


def test_deterministic_under_seed(fitted, synthetic):
    again = rf.create("bpmf", **PARAMS).fit(synthetic[0])
    np.testing.assert_array_equal(again.user_factors_, fitted.user_factors_)
    other = rf.create("bpmf", **{**PARAMS, "seed": 2}).fit(synthetic[0])
    assert not np.allclose(other.item_factors_, fitted.item_factors_)


def test_fold_in_matches_known_users(fitted):
    hist = fitted.train_matrix_[:4]
    folded = fitted.score(histories=hist)
    known = fitted.score(users=np.arange(4))
    corr = [np.corrcoef(folded[k], known[k])[0, 1] for k in range(4)]
    assert min(corr) > 0.8
    expl = fitted.explain(fitted.item_index_.ids[0], user=fitted.user_index_.ids[0], n=3)
    assert len(expl) == 3


def test_without_biases_and_fixed_noise(synthetic):
    train, test = synthetic
    model = rf.create("bpmf", **{**PARAMS, "biases": False, "noise_precision": 4.0})
    model.fit(train)
    assert np.all(model.user_bias_ == 0) and np.all(model.noise_precision_ == 4.0)
    assert rmse(model, test) < 0.6


def test_normal_wishart_posterior_concentrates():
    rng = np.random.default_rng(0)
    data = rng.normal([1.0, -2.0], [0.5, 2.0], size=(4000, 2))
    mean, precision = sample_normal_wishart(data, 2.0, rng)
    np.testing.assert_allclose(mean, [1.0, -2.0], atol=0.1)
    np.testing.assert_allclose(np.linalg.inv(precision), np.diag([0.25, 4.0]), atol=0.3)


def test_kept_sweeps_are_evenly_spaced_and_include_the_last():
    assert _kept_sweeps(10, 3) == {0, 4, 9}
    assert len(_kept_sweeps(10, 3)) == 3 and _kept_sweeps(2, 5) == {0, 1}


@pytest.mark.parametrize("params", [{"n_factors": 0}, {"n_samples": 0}, {"burn_in": -1},
                                    {"noise_precision": 0.0}, {"beta0": 0.0},
                                    {"stored_samples": 0}])
def test_bad_params(params):
    with pytest.raises(ConfigError):
        rf.create("bpmf", **params)


def test_needs_explicit_ratings():
    implicit = Dataset.from_frame(pd.DataFrame({"user": [0, 1], "item": [0, 1]}))
    with pytest.raises(ConfigError, match="explicit"):
        rf.create("bpmf").fit(implicit)
