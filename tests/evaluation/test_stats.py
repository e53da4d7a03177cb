"""paired_test: alignment by user, hand-checked statistics, degenerate cases, bad input."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import recoforge as rf
from recoforge.data.split import holdout_per_user
from recoforge.data.synthetic import category_demo
from recoforge.errors import ConfigError, DataError
from recoforge.evaluation import evaluate, paired_test


def test_statistics_on_a_small_example():
    a = pd.Series([1.0, 2.0, 3.0, 4.0, 5.0], index=["u1", "u2", "u3", "u4", "u5"], name="m")
    b = pd.Series([0.5, 2.5, 2.0, 3.0, 4.5], index=["u1", "u2", "u3", "u4", "u5"])
    result = paired_test(a, b)
    # differences 0.5, -0.5, 1, 1, 0.5: mean 0.5, sd sqrt(0.375), se sqrt(0.375 / 5)
    assert result.metric == "m"
    assert result.n_users == 5
    assert result.mean_difference == pytest.approx(0.5)
    assert (result.mean_a, result.mean_b) == (pytest.approx(3.0), pytest.approx(2.5))
    half = scipy.stats.t.ppf(0.975, 4) * math.sqrt(0.375 / 5)
    assert (result.ci_low, result.ci_high) == (pytest.approx(0.5 - half),
                                               pytest.approx(0.5 + half))
    # t = 0.5 / sqrt(0.075) = 1.8257
    assert result.t_statistic == pytest.approx(0.5 / math.sqrt(0.075))
    assert result.t_pvalue == pytest.approx(scipy.stats.ttest_rel(a, b).pvalue)
    assert result.wilcoxon_pvalue == pytest.approx(scipy.stats.wilcoxon(a - b).pvalue)
    assert result.to_dict()["n_users"] == 5


def test_users_are_aligned_by_id_not_position():
    a = pd.Series([1.0, 2.0, 3.0, 9.0], index=[1, 2, 3, 4])
    b = pd.Series([3.0, 1.0, 2.0, 7.0], index=[3, 1, 2, 5])  # same values, shuffled; 5 only in b
    result = paired_test(a, b, metric="x")
    assert result.n_users == 3
    assert (result.n_only_a, result.n_only_b) == (1, 1)
    assert result.mean_difference == 0.0
    assert result.t_pvalue == 1.0 and result.wilcoxon_pvalue == 1.0


def test_constant_nonzero_difference_is_certain():
    a = pd.Series([2.0, 3.0, 4.0], index=["x", "y", "z"])
    result = paired_test(a, a - 1.0, metric="m")
    assert result.mean_difference == pytest.approx(1.0)
    assert result.t_pvalue == 0.0
    assert result.ci_low == result.ci_high == pytest.approx(1.0)


def test_nan_values_are_left_out():
    a = pd.Series([1.0, np.nan, 3.0, 4.0], index=list("abcd"))
    b = pd.Series([0.0, 1.0, 2.0, 3.5], index=list("abcd"))
    assert paired_test(a, b, metric="m").n_users == 3


def test_on_evaluation_results():
    data = category_demo(n_users=80, n_items=60, seed=0)
    split = holdout_per_user(data, seed=0)
    count = evaluate(rf.create("popularity").fit(split.train), split, k=10,
                     metrics=["ndcg", "recall"])
    rating = evaluate(rf.create("popularity", measure="rating").fit(split.train), split, k=10,
                      metrics=["ndcg", "recall"])
    result = paired_test(count, rating)
    assert result.metric == "ndcg@10"  # the first metric by default
    assert result.n_users == 80
    assert result.mean_difference == pytest.approx(count.summary["ndcg@10"]
                                                   - rating.summary["ndcg@10"])
    assert result.ci_low <= result.mean_difference <= result.ci_high
    assert paired_test(count, rating, metric="recall@10").metric == "recall@10"
    with pytest.raises(ConfigError, match="no per-user metric"):
        paired_test(count, rating, metric="auc")


def test_disjoint_users_and_bad_input():
    a = pd.Series([1.0, 2.0], index=["a", "b"])
    with pytest.raises(DataError, match="share no user"):
        paired_test(a, pd.Series([1.0, 2.0], index=["c", "d"]), metric="m")
    with pytest.raises(DataError, match="at least 2"):
        paired_test(a, pd.Series([1.0, 2.0], index=["a", "d"]), metric="m")
    with pytest.raises(DataError, match="duplicate"):
        paired_test(pd.Series([1.0, 2.0], index=["a", "a"]), a, metric="m")
    with pytest.raises(ConfigError, match="EvaluationResult"):
        paired_test([1, 2], a)
    with pytest.raises(ConfigError, match="confidence"):
        paired_test(a, a, confidence=1.5)
