"""A/B experiments: stable variant assignment and per-variant statistics.

Assignment hashes ``"experiment:user"`` with SHA-256 (not Python's salted ``hash``), so a
user gets the same variant in every process and on every machine, and independent
experiments split users independently.

The report treats each impression as a Bernoulli trial (clicked or not). Impressions of
one user are correlated, so the intervals and p-values are optimistic when users see many
lists; the ``users`` column shows how many independent units stand behind each variant.
(:mod:`recoforge.evaluation.stats` holds the paired per-user tests of offline evaluation;
they do not apply to two independent groups of impressions, hence the tests below.)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.stats

from recoforge.errors import ConfigError, DataError

__all__ = ["assign_variant", "daily_ctr", "two_proportion_test", "variant_report",
           "variant_shares", "wilson_interval"]

_SCALE = float(2**64)


def variant_shares(variants: Mapping[str, object]) -> dict[str, float]:
    """The traffic share of each variant, validated, in the mapping's order.

    Parameters
    ----------
    variants : mapping
        ``{label: share}`` or ``{label: {"share": share, ...}}`` (the store's form); shares
        are non-negative and sum to 1.

    Returns
    -------
    dict
        ``{label: share}``.
    """
    if not isinstance(variants, Mapping) or not variants:
        raise ConfigError("variants must be a non-empty mapping {label: share}")
    shares: dict[str, float] = {}
    for label, spec in variants.items():
        share = spec.get("share") if isinstance(spec, Mapping) else spec
        if isinstance(share, bool) or not isinstance(share, (int, float, np.number)):
            raise ConfigError(f"variant {label!r}: share must be a number, got {share!r}")
        if not 0.0 <= float(share) <= 1.0:
            raise ConfigError(f"variant {label!r}: share must be in [0, 1], got {share!r}")
        shares[str(label)] = float(share)
    total = sum(shares.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(f"variant shares must sum to 1, got {total:g} ({shares})")
    return shares


def hash_unit(user_id: str, experiment_name: str) -> float:
    """A uniform number in [0, 1) from SHA-256 of ``"experiment:user"`` (first 8 bytes)."""
    digest = hashlib.sha256(f"{experiment_name}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign_variant(user_id: str, experiment_name: str, variants: Mapping[str, object]) -> str:
    """The variant label of a user in an experiment.

    The user's hash unit ``u`` in [0, 1) falls in one of the consecutive intervals of
    width ``share`` laid out in the order of ``variants``; the same inputs always give the
    same label.

    Parameters
    ----------
    user_id : str
    experiment_name : str
    variants : mapping
        ``{label: share}`` or ``{label: {"share": share, ...}}``.

    Returns
    -------
    str
    """
    shares = variant_shares(variants)
    unit = hash_unit(str(user_id), str(experiment_name))
    edge = 0.0
    for label, share in shares.items():
        edge += share
        if unit < edge:
            return label
    return next(label for label, share in reversed(shares.items()) if share > 0)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    r"""Wilson score interval of a binomial proportion.

    .. math:: \frac{\hat p + \frac{z^2}{2n} \pm z\sqrt{\frac{\hat p(1-\hat p)}{n}
              + \frac{z^2}{4n^2}}}{1 + z^2/n}

    Reference: Wilson, "Probable inference, the law of succession, and statistical
    inference", JASA 1927. Returns ``(nan, nan)`` when ``trials == 0``.
    """
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must be in (0, 1), got {confidence!r}")
    if trials < 0 or not 0 <= successes <= trials:
        raise DataError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return math.nan, math.nan
    z = float(scipy.stats.norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(x1: int, n1: int, x2: int, n2: int) -> dict[str, float]:
    r"""Two-sided tests that two proportions ``x1/n1`` and ``x2/n2`` are equal.

    The z-test uses the pooled proportion :math:`\bar p = (x_1+x_2)/(n_1+n_2)`:
    :math:`z = (\hat p_2 - \hat p_1) / \sqrt{\bar p(1-\bar p)(1/n_1 + 1/n_2)}`. The
    chi-square test is Pearson's on the 2 x 2 table with Yates' continuity correction
    (``scipy.stats.chi2_contingency``'s default), more conservative on small counts; the
    uncorrected statistic equals :math:`z^2`.

    Returns
    -------
    dict
        ``z``, ``p_value`` (z-test), ``chi2``, ``chi2_p_value``; NaN when a group is
        empty, ``z = 0, p = 1`` when every trial of both groups has the same outcome.
    """
    if min(n1, n2) <= 0:
        return {"z": math.nan, "p_value": math.nan, "chi2": math.nan, "chi2_p_value": math.nan}
    pooled = (x1 + x2) / (n1 + n2)
    if pooled in (0.0, 1.0):
        return {"z": 0.0, "p_value": 1.0, "chi2": 0.0, "chi2_p_value": 1.0}
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (x2 / n2 - x1 / n1) / se
    chi2 = scipy.stats.chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]])
    return {"z": z, "p_value": float(2 * scipy.stats.norm.sf(abs(z))),
            "chi2": float(chi2.statistic), "chi2_p_value": float(chi2.pvalue)}


def _check_outcomes(outcomes: pd.DataFrame, needed: Sequence[str]) -> None:
    if not isinstance(outcomes, pd.DataFrame):
        raise DataError(f"outcomes must be a DataFrame, got {type(outcomes).__name__}")
    missing = [c for c in needed if c not in outcomes.columns]
    if missing:
        raise DataError(f"outcomes frame lacks column(s) {missing}; has {list(outcomes.columns)}")


def _variant_order(outcomes: pd.DataFrame, variants: Sequence[str] | None) -> list[str]:
    present = sorted(outcomes["variant"].dropna().astype(str).unique())
    if variants is None:
        return present
    order = [str(v) for v in variants]
    unknown = sorted(set(present) - set(order))
    if unknown:
        raise DataError(f"outcomes have variant(s) {unknown} not in the experiment's {order}")
    return order


def variant_report(outcomes: pd.DataFrame, variants: Sequence[str] | None = None,
                   confidence: float = 0.95) -> pd.DataFrame:
    """Per-variant traffic, CTR and conversions, each variant tested against the control.

    Parameters
    ----------
    outcomes : DataFrame
        One row per impression with columns ``variant``, ``user``, ``clicked`` and
        ``converted`` (booleans), as ``Store.experiment_outcomes`` returns.
    variants : sequence of str, optional
        Variant labels in order, the first being the control (default: the labels present,
        sorted). Variants without impressions get a row of zeros.
    confidence : float
        Level of the Wilson intervals.

    Returns
    -------
    DataFrame
        One row per variant: ``variant, impressions, users, clicks, ctr, ctr_low, ctr_high,
        conversions, conversion_rate, conversion_low, conversion_high`` and, against the
        control, ``ctr_lift`` (relative), ``z``, ``p_value``, ``chi2``, ``chi2_p_value``,
        ``conversion_p_value`` (NaN on the control row).
    """
    _check_outcomes(outcomes, ("variant", "user", "clicked", "converted"))
    order = _variant_order(outcomes, variants)
    frame = outcomes.assign(variant=outcomes["variant"].astype(str),
                            clicked=outcomes["clicked"].astype(bool),
                            converted=outcomes["converted"].astype(bool))
    grouped = frame.groupby("variant").agg(
        impressions=("clicked", "size"), users=("user", "nunique"),
        clicks=("clicked", "sum"), conversions=("converted", "sum"))
    grouped = grouped.reindex(order, fill_value=0).astype(np.int64)
    rows = []
    control = grouped.iloc[0] if len(grouped) else None
    for label, row in grouped.iterrows():
        n, clicks, conversions = int(row.impressions), int(row.clicks), int(row.conversions)
        ctr_low, ctr_high = wilson_interval(clicks, n, confidence)
        conv_low, conv_high = wilson_interval(conversions, n, confidence)
        record = {"variant": label, "impressions": n, "users": int(row.users), "clicks": clicks,
                  "ctr": clicks / n if n else math.nan, "ctr_low": ctr_low, "ctr_high": ctr_high,
                  "conversions": conversions,
                  "conversion_rate": conversions / n if n else math.nan,
                  "conversion_low": conv_low, "conversion_high": conv_high}
        tests = {"ctr_lift": math.nan, "z": math.nan, "p_value": math.nan, "chi2": math.nan,
                 "chi2_p_value": math.nan, "conversion_p_value": math.nan}
        if control is not None and label != order[0]:
            c_n, c_clicks = int(control.impressions), int(control.clicks)
            tests.update(two_proportion_test(c_clicks, c_n, clicks, n))
            tests["conversion_p_value"] = two_proportion_test(
                int(control.conversions), c_n, conversions, n)["p_value"]
            if c_n and n and c_clicks:
                tests["ctr_lift"] = (clicks / n) / (c_clicks / c_n) - 1
        rows.append(record | tests)
    columns = ["variant", "impressions", "users", "clicks", "ctr", "ctr_low", "ctr_high",
               "conversions", "conversion_rate", "conversion_low", "conversion_high",
               "ctr_lift", "z", "p_value", "chi2", "chi2_p_value", "conversion_p_value"]
    return pd.DataFrame(rows, columns=columns)


def daily_ctr(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Impressions, clicks and CTR per day and variant (the dashboard's chart).

    Parameters
    ----------
    outcomes : DataFrame
        Columns ``variant``, ``day`` (a date or ``YYYY-MM-DD`` string) and ``clicked``.

    Returns
    -------
    DataFrame
        Columns ``day`` (``YYYY-MM-DD`` string), ``variant``, ``impressions``, ``clicks``,
        ``ctr``; sorted by day then variant.
    """
    _check_outcomes(outcomes, ("variant", "day", "clicked"))
    columns = ["day", "variant", "impressions", "clicks", "ctr"]
    if outcomes.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("day", "variant") else float)
                             for c in columns})
    days = pd.to_datetime(outcomes["day"], errors="coerce", format="ISO8601")
    if days.isna().any():
        bad = outcomes["day"][days.isna()].iloc[0]
        raise DataError(f"outcomes column 'day' has a value that is not a date: {bad!r}")
    frame = pd.DataFrame({"day": days.dt.strftime("%Y-%m-%d"),
                          "variant": outcomes["variant"].astype(str),
                          "clicked": outcomes["clicked"].astype(bool)})
    daily = (frame.groupby(["day", "variant"])["clicked"]
             .agg(impressions="size", clicks="sum").reset_index())
    daily["ctr"] = daily["clicks"] / daily["impressions"]
    return daily.sort_values(["day", "variant"], ignore_index=True)[columns]
