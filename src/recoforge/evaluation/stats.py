"""Paired significance tests between two evaluation results, user by user."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import scipy.stats

from recoforge.errors import ConfigError, DataError

__all__ = ["PairedTestResult", "paired_test"]


@dataclass(frozen=True)
class PairedTestResult:
    """Outcome of :func:`paired_test` (differences are ``a - b``).

    Attributes
    ----------
    metric : str
    n_users : int
        Users present (with a finite value) in both results.
    n_only_a, n_only_b : int
        Users in only one of the results (left out of the test).
    mean_a, mean_b, mean_difference : float
    ci_low, ci_high : float
        Confidence interval of the mean difference (Student t, ``confidence`` level).
    t_statistic, t_pvalue : float
        Paired t-test (two-sided).
    wilcoxon_statistic, wilcoxon_pvalue : float
        Wilcoxon signed-rank test (two-sided; zero differences dropped, as "wilcox").
    confidence : float
    """

    metric: str
    n_users: int
    n_only_a: int
    n_only_b: int
    mean_a: float
    mean_b: float
    mean_difference: float
    ci_low: float
    ci_high: float
    t_statistic: float
    t_pvalue: float
    wilcoxon_statistic: float
    wilcoxon_pvalue: float
    confidence: float = 0.95

    def to_dict(self) -> dict:
        return asdict(self)


def _per_user(result, metric: str | None, label: str) -> tuple[pd.Series, str]:
    """A Series indexed by user id, and the metric name."""
    if isinstance(result, pd.Series):
        if not result.index.is_unique:
            raise DataError(f"{label}: the per-user Series has duplicate user ids")
        return result.astype(np.float64), metric or str(result.name)
    per_user = getattr(result, "per_user", None)
    if not isinstance(per_user, pd.DataFrame):
        raise ConfigError(f"{label} must be an EvaluationResult or a per-user Series, "
                          f"got {type(result).__name__}")
    metric = metric or result.primary_metric
    if metric not in per_user.columns:
        available = [c for c in per_user.columns if c not in ("user", "n_relevant")]
        raise ConfigError(f"{label} has no per-user metric {metric!r}; available: {available}")
    return pd.Series(per_user[metric].to_numpy(np.float64),
                     index=pd.Index(per_user["user"].to_numpy())), metric


def paired_test(a, b, metric: str | None = None, confidence: float = 0.95) -> PairedTestResult:
    """Compare two results on the users they share.

    Parameters
    ----------
    a, b : EvaluationResult or Series
        Results of two models on the same split (or per-user values indexed by user).
    metric : str, optional
        Per-user column such as ``"ndcg@10"``; default: ``a``'s first metric.
    confidence : float
        Level of the interval of the mean difference.

    Returns
    -------
    PairedTestResult
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    values_a, metric = _per_user(a, metric, "a")
    values_b, _ = _per_user(b, metric, "b")
    values_a, values_b = values_a[np.isfinite(values_a)], values_b[np.isfinite(values_b)]
    common = values_a.index.intersection(values_b.index)
    if len(common) == 0:
        raise DataError(f"the two results share no user with a finite {metric!r}: were they "
                        f"evaluated on the same split?")
    if len(common) < 2:
        raise DataError(f"a paired test needs at least 2 common users, got {len(common)}")
    x, y = values_a.loc[common].to_numpy(), values_b.loc[common].to_numpy()
    diff = x - y
    n = len(diff)
    mean = float(diff.mean())
    sem = float(diff.std(ddof=1) / np.sqrt(n))
    half = float(scipy.stats.t.ppf(0.5 + confidence / 2, n - 1) * sem)
    if sem == 0:  # all differences equal: no variability to test against
        t_stat, t_p = (0.0, 1.0) if mean == 0 else (float(np.sign(mean) * np.inf), 0.0)
    else:
        t_stat, t_p = (float(v) for v in scipy.stats.ttest_rel(x, y))
    if np.all(diff == 0):
        w_stat, w_p = 0.0, 1.0
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # small-sample normal approximation
            w = scipy.stats.wilcoxon(diff, zero_method="wilcox")
        w_stat, w_p = float(w.statistic), float(w.pvalue)
    return PairedTestResult(
        metric=metric, n_users=n, n_only_a=len(values_a.index.difference(common)),
        n_only_b=len(values_b.index.difference(common)), mean_a=float(x.mean()),
        mean_b=float(y.mean()), mean_difference=mean, ci_low=mean - half, ci_high=mean + half,
        t_statistic=t_stat, t_pvalue=t_p, wilcoxon_statistic=w_stat, wilcoxon_pvalue=w_p,
        confidence=confidence)
