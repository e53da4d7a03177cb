import json
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from recoforge.errors import ConfigError, DataError
from recoforge.serving.experiments import (
    assign_variant,
    daily_ctr,
    two_proportion_test,
    variant_report,
    variant_shares,
    wilson_interval,
)

SPLIT = {"A": {"version": 1, "share": 0.5}, "B": {"version": 2, "share": 0.3},
         "C": {"version": 3, "share": 0.2}}


def test_assignment_is_stable_across_processes():
    users = [f"user{i}" for i in range(300)]
    here = [assign_variant(u, "exp1", SPLIT) for u in users]
    code = ("import json, sys; from recoforge.serving.experiments import assign_variant; "
            "split = json.loads(sys.argv[1]); "
            "print(json.dumps([assign_variant(f'user{i}', 'exp1', split) for i in range(300)]))")
    for seed in ("0", "12345"):  # Python's own hash() would differ between these
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code, json.dumps(SPLIT)], env=env,
                             capture_output=True, text=True, check=True).stdout
        assert json.loads(out) == here


def test_assignment_matches_shares_on_20k_users():
    n = 20_000
    labels = [assign_variant(str(i), "homepage-test", SPLIT) for i in range(n)]
    counts = pd.Series(labels).value_counts()
    for label, spec in SPLIT.items():
        share = spec["share"]
        bound = 4 * math.sqrt(n * share * (1 - share))  # 4 binomial standard deviations
        assert abs(counts[label] - n * share) <= bound, (label, counts[label])


def test_experiments_split_users_independently():
    even = {"A": 0.5, "B": 0.5}
    first = np.array([assign_variant(str(i), "exp-one", even) == "A" for i in range(20_000)])
    second = np.array([assign_variant(str(i), "exp-two", even) == "A" for i in range(20_000)])
    table = pd.crosstab(first, second).to_numpy()
    assert scipy.stats.chi2_contingency(table).pvalue > 1e-4  # no association


def test_plain_share_mapping_and_zero_share():
    assert {assign_variant(str(i), "e", {"A": 1.0, "B": 0.0}) for i in range(500)} == {"A"}
    assert {assign_variant(str(i), "e", {"A": 0.0, "B": 1.0}) for i in range(500)} == {"B"}
    assert variant_shares(SPLIT) == {"A": 0.5, "B": 0.3, "C": 0.2}


@pytest.mark.parametrize("variants, message", [
    ({}, "non-empty"),
    ({"A": 0.5, "B": 0.4}, "sum to 1"),
    ({"A": 1.5, "B": -0.5}, "'A': share must be in"),
    ({"A": "half", "B": 0.5}, "'A': share must be a number"),
    ({"A": {"version": 1}}, "'A': share must be a number"),
])
def test_bad_shares(variants, message):
    with pytest.raises(ConfigError, match=message):
        assign_variant("u", "e", variants)


@pytest.mark.parametrize("successes, trials", [(0, 10), (3, 10), (10, 10), (47, 1000),
                                               (1, 3), (500, 1000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_wilson_matches_scipy(successes, trials, confidence):
    expected = scipy.stats.binomtest(successes, trials).proportion_ci(confidence, "wilson")
    low, high = wilson_interval(successes, trials, confidence)
    assert low == pytest.approx(expected.low, abs=1e-12)
    assert high == pytest.approx(expected.high, abs=1e-12)


def test_wilson_edge_cases():
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(DataError, match="successes <= trials"):
        wilson_interval(5, 3)
    with pytest.raises(ConfigError, match="confidence"):
        wilson_interval(1, 3, confidence=1.0)


@pytest.mark.parametrize("x1, n1, x2, n2", [(200, 1000, 250, 1000), (12, 400, 30, 380),
                                            (5, 20, 1, 25), (90, 100, 80, 100)])
def test_two_proportion_test_matches_scipy(x1, n1, x2, n2):
    table = [[x1, n1 - x1], [x2, n2 - x2]]
    result = two_proportion_test(x1, n1, x2, n2)
    plain = scipy.stats.chi2_contingency(table, correction=False)
    yates = scipy.stats.chi2_contingency(table)
    assert result["z"] ** 2 == pytest.approx(plain.statistic, rel=1e-10)
    assert result["p_value"] == pytest.approx(plain.pvalue, rel=1e-9)
    assert math.copysign(1, result["z"]) == math.copysign(1, x2 / n2 - x1 / n1)
    assert result["chi2"] == pytest.approx(yates.statistic, rel=1e-12)
    assert result["chi2_p_value"] == pytest.approx(yates.pvalue, rel=1e-12)


def test_two_proportion_known_value():
    # 20% vs 25% on 1000 each: z = 0.05 / sqrt(0.225 * 0.775 * 0.002) = 2.6774
    result = two_proportion_test(200, 1000, 250, 1000)
    assert result["z"] == pytest.approx(2.67740, abs=1e-4)
    assert result["p_value"] == pytest.approx(0.0074196, abs=1e-6)


def test_two_proportion_degenerate():
    assert two_proportion_test(0, 10, 0, 20) == {"z": 0.0, "p_value": 1.0, "chi2": 0.0,
                                                 "chi2_p_value": 1.0}
    assert math.isnan(two_proportion_test(0, 0, 3, 10)["p_value"])


def outcomes_frame(counts, days=("2026-01-01", "2026-01-02")):
    """Impressions per variant: {variant: (n, clicks, conversions)}, spread over days/users."""
    rows = []
    for variant, (n, clicks, conversions) in counts.items():
        for i in range(n):
            rows.append({"variant": variant, "day": days[i % len(days)], "user": f"u{i % 7}",
                         "item": f"i{i}", "clicked": i < clicks, "converted": i < conversions})
    return pd.DataFrame(rows)


def test_variant_report():
    outcomes = outcomes_frame({"B": (380, 30, 4), "A": (400, 12, 2)})
    report = variant_report(outcomes, variants=["A", "B", "C"])
    assert report["variant"].tolist() == ["A", "B", "C"]
    a, b, c = (report.iloc[i] for i in range(3))
    assert (a.impressions, a.users, a.clicks, a.conversions) == (400, 7, 12, 2)
    assert (b.impressions, b.clicks, b.conversions) == (380, 30, 4)
    assert a.ctr == pytest.approx(0.03) and b.ctr == pytest.approx(30 / 380)
    low, high = scipy.stats.binomtest(30, 380).proportion_ci(0.95, "wilson")
    assert (b.ctr_low, b.ctr_high) == (pytest.approx(low), pytest.approx(high))
    assert math.isnan(a.p_value) and math.isnan(a.ctr_lift)  # the control
    plain = scipy.stats.chi2_contingency([[12, 388], [30, 350]], correction=False)
    assert b.p_value == pytest.approx(plain.pvalue)
    assert b.ctr_lift == pytest.approx((30 / 380) / 0.03 - 1)
    assert b.conversion_p_value == pytest.approx(two_proportion_test(2, 400, 4, 380)["p_value"])
    assert (c.impressions, c.clicks) == (0, 0) and math.isnan(c.ctr) and math.isnan(c.p_value)
    # default order: sorted labels, the first is the control
    assert variant_report(outcomes)["variant"].tolist() == ["A", "B"]


def test_variant_report_errors():
    outcomes = outcomes_frame({"A": (10, 1, 0), "B": (10, 2, 0)})
    with pytest.raises(DataError, match=r"variant\(s\) \['B'\] not in"):
        variant_report(outcomes, variants=["A"])
    with pytest.raises(DataError, match=r"lacks column\(s\) \['clicked'\]"):
        variant_report(outcomes.drop(columns="clicked"))
    empty = variant_report(outcomes.iloc[:0], variants=["A", "B"])
    assert empty["impressions"].tolist() == [0, 0]


def test_daily_ctr():
    outcomes = outcomes_frame({"A": (10, 4, 0), "B": (6, 6, 0)})
    daily = daily_ctr(outcomes)
    assert daily.columns.tolist() == ["day", "variant", "impressions", "clicks", "ctr"]
    assert daily[["day", "variant"]].values.tolist() == [
        ["2026-01-01", "A"], ["2026-01-01", "B"], ["2026-01-02", "A"], ["2026-01-02", "B"]]
    assert daily["impressions"].tolist() == [5, 3, 5, 3]
    assert daily["clicks"].tolist() == [2, 3, 2, 3]  # clicked: i < 4 -> i = 0, 2 and 1, 3
    np.testing.assert_allclose(daily["ctr"], [0.4, 1.0, 0.4, 1.0])
    assert daily_ctr(outcomes.iloc[:0]).empty
    with pytest.raises(DataError, match="not a date"):
        daily_ctr(outcomes.assign(day="yesterday"))
