"""Evaluate fitted models on a :class:`~recoforge.data.split.Split`, and compare several.

Protocols
---------
``"full"``
    Every test user's list is the model's top ``max(k)`` over the whole catalogue
    (training items excluded), from :meth:`Recommender.top_items` in bounded batches.
    Known users are queried by index; in cold-start user splits, users absent from the
    model are queried with their ``split.history`` row (fold-in). The hit matrix is built
    by matching sorted ``row * n_items + item`` keys (``searchsorted``), no loop per user.
``"sampled"``
    The NCF protocol (He et al. 2017): each relevant test item is ranked among
    ``n_negatives`` items sampled uniformly (seeded, distinct) from those the user never
    interacted with (train, history or test). A negative scored equal to the positive
    ranks above it (pessimistic ties, so constant scores earn nothing); AUC counts ties
    as one half. A user's value is the mean over their relevant items.

Full-catalogue AUC (metric ``"auc"`` under ``"full"``) needs the scores of every item and
costs a second, dense scoring pass, so it is opt-in. Beyond-accuracy metrics (coverage,
Gini, novelty, diversity, popularity) describe the top-k lists of the evaluated users.

The model must have been fitted on ``split.train``: a model fitted on other data (its
``data_fingerprint_`` differs from ``split.train``'s) is refused, because its metrics
would silently describe something else (test interactions it trained on, or a
vocabulary the split does not share); pass ``check_data=False`` to evaluate it anyway.
Cut-offs above the catalogue size cost no more than the catalogue: a list cannot hold
more items than there are, so metrics@k are computed from lists of at most
``max(n_items, most relevant items of a user)`` entries and reported under the ``k``
asked for, with the same values (precision@k still divides by ``k``). ``k=10**12`` is
as cheap as ``k=n_items``.

Test users unknown to the model (and without history) are dropped and counted in
``result.counts["unknown_users"]``; relevant test items outside the model's vocabulary
stay in the denominators (recall, NDCG) and count as misses. Memory is bounded by the
score batch (``batch_size x n_items`` float32) plus O(test pairs + users x max(k)).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from recoforge.data.split import Split
from recoforge.errors import ConfigError, DataError, NotFittedError, RecoforgeError
from recoforge.evaluation.protocols import (
    RATING_METRICS,
    build_queries,
    default_batch,
    full_protocol,
    rating_metrics,
    sampled_protocol,
)
from recoforge.models.base import Recommender

Protocol = Literal["full", "sampled"]
RANKING_METRICS = ("ndcg", "recall", "precision", "map", "mrr", "hit_rate", "auc")
SAMPLED_METRICS = ("hit_rate", "ndcg", "mrr", "auc")
LIST_METRICS = ("novelty", "diversity", "popularity")  # per user, from the lists
CATALOGUE_METRICS = ("coverage", "gini")  # one value over all lists
ALL_METRICS = RANKING_METRICS + LIST_METRICS + CATALOGUE_METRICS + RATING_METRICS


@dataclass
class EvaluationResult:
    """What :func:`evaluate` measured.

    Attributes
    ----------
    summary : Series
        ``"metric@k"`` (or ``"auc"``, ``"rmse"``, ``"mae"``) -> mean over evaluated users.
    per_user : DataFrame
        One row per evaluated user: ``user`` (external id), ``n_relevant`` and each
        per-user metric.
    timings : dict
        Seconds spent in ``setup``, ``ranking`` (recommending or scoring), ``metrics``,
        ``rating`` and ``total``.
    counts : dict
        ``test_users``, ``evaluated_users``, ``cold_users`` (queried from history),
        ``unknown_users`` (dropped), ``users_without_relevant``, ``relevant_pairs``,
        ``unknown_items`` (relevant pairs whose item the model lacks), and with rating
        metrics ``rated_pairs`` / ``unpredictable_pairs``.
    settings : dict
        The arguments of the run.
    """

    summary: pd.Series
    per_user: pd.DataFrame
    timings: dict[str, float]
    counts: dict[str, int]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def primary_metric(self) -> str:
        """The first per-user metric column (what significance tests use by default)."""
        columns = [c for c in self.per_user.columns if c not in ("user", "n_relevant")]
        if not columns:
            raise DataError("this result has no per-user metric")
        return columns[0]

    def __repr__(self) -> str:
        lines = [f"EvaluationResult({self.settings.get('model', '?')} on "
                 f"{self.settings.get('split', '?')}, protocol={self.settings.get('protocol')})"]
        lines += [f"  {name:<16} {value:.5f}" for name, value in self.summary.items()]
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in self.counts.items()))
        return "\n".join(lines)


# ---------------------------------------------------------------------- validation
def _check_ks(k: int | Iterable[int]) -> tuple[int, ...]:
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        ks: tuple = (k,)
    elif isinstance(k, Iterable) and not isinstance(k, str):
        ks = tuple(k)
    else:
        raise ConfigError(f"k must be a positive integer or a sequence of them, got {k!r}")
    if not ks or any(isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 1
                     for x in ks):
        raise ConfigError(f"k must be a positive integer or a sequence of them, got {k!r}")
    return tuple(sorted({int(x) for x in ks}))


def _widen(values: dict[str, Any], requested: tuple[int, ...], limit: int
           ) -> dict[str, Any]:
    """Metrics computed @``limit`` reported for every requested cut-off above it.

    Lists never exceed ``limit`` entries, so every metric@k (k > limit) equals its value
    @limit except precision, whose denominator is k: ``precision@k = precision@limit *
    limit / k``. Keys keep the protocol's order.
    """
    above = [k for k in requested if k > limit]
    out: dict[str, Any] = {}
    for key, value in values.items():
        metric, _, cut = key.partition("@")
        if cut != str(limit) or not above:
            out[key] = value
            continue
        if limit in requested:
            out[key] = value
        for k in above:
            out[f"{metric}@{k}"] = value * (limit / k) if metric == "precision" else value
    return out


def _check_split(split: Any, caller: str) -> None:
    if not isinstance(split, Split):
        raise ConfigError(f"{caller} needs a Split (train and test interactions) as its "
                          f"second argument, got {type(split).__name__}; make one with "
                          f"recoforge.data.split.holdout_per_user(data) or another splitter")


def _check_same_data(model: Recommender, split: Split) -> None:
    """Refuse a model fitted on other data than ``split.train`` (fingerprints differ)."""
    fitted_on = getattr(model, "data_fingerprint_", None)
    if fitted_on is None:  # a model without a recorded fingerprint cannot be checked
        return
    train = split.train.interactions.fingerprint()
    if fitted_on != train:
        raise ConfigError(f"{type(model).__name__} was fitted on other data than split.train "
                          f"(data fingerprint {fitted_on} vs {train}); fit it on split.train "
                          f"(compare() does), or pass check_data=False to evaluate it anyway")


def _rates_ratings(model: Recommender, split: Split) -> bool:
    return (model.predicts_ratings and split.test.kind == "explicit"
            and getattr(model, "data_kind_", None) == "explicit")


def _resolve_metrics(metrics: Iterable[str] | None, protocol: str, model: Recommender,
                     split: Split) -> list[str]:
    has_features = split.train.item_features is not None
    if metrics is None:
        chosen = (["ndcg", "recall", "precision", "map", "mrr", "hit_rate", "coverage",
                   "gini", "novelty", "popularity"] + (["diversity"] if has_features else [])
                  if protocol == "full" else list(SAMPLED_METRICS))
        return chosen + (list(RATING_METRICS) if _rates_ratings(model, split) else [])
    chosen = [metrics] if isinstance(metrics, str) else list(dict.fromkeys(metrics))
    unknown = [m for m in chosen if m not in ALL_METRICS]
    if unknown or not chosen:
        raise ConfigError(f"unknown metric(s) {unknown or chosen}; available: "
                          f"{', '.join(ALL_METRICS)}")
    if protocol == "sampled":
        bad = [m for m in chosen if m not in SAMPLED_METRICS + RATING_METRICS]
        if bad:
            raise ConfigError(f"metric(s) {bad} are not defined for the sampled protocol; "
                              f"use {', '.join(SAMPLED_METRICS)}")
    if "diversity" in chosen and not has_features:
        raise ConfigError("diversity needs item features (split.train.item_features is None)")
    if any(m in RATING_METRICS for m in chosen) and not _rates_ratings(model, split):
        raise ConfigError(f"rmse/mae need a rating model ({type(model).__name__}."
                          f"predicts_ratings) fitted on and tested with explicit ratings")
    return chosen


# ---------------------------------------------------------------------- entry points
def evaluate(
    model: Recommender,
    split: Split,
    k: int | Iterable[int] = (10,),
    metrics: Iterable[str] | None = None,
    protocol: Protocol = "full",
    n_negatives: int = 99,
    relevance_threshold: float | None = None,
    graded: bool = False,
    exclude_seen: bool = True,
    seed: Any = 0,
    batch_size: int | None = None,
    check_data: bool = True,
) -> EvaluationResult:
    """Evaluate a model fitted on ``split.train`` against ``split.test``.

    Parameters
    ----------
    model : Recommender
        Fitted (normally on ``split.train``).
    split : Split
    k : int or sequence of int
        List lengths (cut-offs) of the ranking metrics.
    metrics : sequence of str, optional
        From ``ndcg, recall, precision, map, mrr, hit_rate, auc`` (ranking),
        ``novelty, diversity, popularity`` (per list), ``coverage, gini`` (catalogue) and
        ``rmse, mae``. Default (full): all ranking metrics but ``auc`` (a second scoring
        pass), the beyond-accuracy ones (``diversity`` when the data has item features),
        and ``rmse``/``mae`` when the model predicts ratings on explicit data. Default
        (sampled): ``hit_rate, ndcg, mrr, auc``.
    protocol : {"full", "sampled"}
    n_negatives : int
        Sampled protocol: negatives per relevant test item.
    relevance_threshold : float, optional
        Test interactions with ``value >= threshold`` are relevant; default all.
    graded : bool
        Use test values as relevance grades for NDCG (gain ``2^r - 1``); binary otherwise.
    exclude_seen : bool
        Full protocol: never recommend training (or history) items.
    seed : int
        Seeds negative sampling.
    batch_size : int, optional
        Users scored at once (default: a ~128 MiB float32 score block).
    check_data : bool
        Refuse a model whose data fingerprint differs from ``split.train``'s (default).

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ConfigError
        ``split`` is not a :class:`Split`; the model was fitted on other data than
        ``split.train`` (unless ``check_data=False``); an invalid option.
    NotFittedError
        The model is not fitted.
    """
    started = time.perf_counter()
    if not isinstance(model, Recommender):
        raise ConfigError(f"evaluate needs a Recommender, got {type(model).__name__}")
    _check_split(split, "evaluate")
    if not model.is_fitted:
        raise NotFittedError(f"{type(model).__name__} is not fitted; fit it on split.train "
                             f"(or use compare(), which fits)")
    if protocol not in ("full", "sampled"):
        raise ConfigError(f"protocol must be 'full' or 'sampled', not {protocol!r}")
    if isinstance(n_negatives, bool) or not isinstance(n_negatives, (int, np.integer)) \
            or n_negatives < 1:
        raise ConfigError(f"n_negatives must be a positive integer, got {n_negatives!r}")
    ks = _check_ks(k)
    chosen = _resolve_metrics(metrics, protocol, model, split)
    if check_data:
        _check_same_data(model, split)
    batch = default_batch(model, batch_size)
    ranking = [m for m in chosen if m not in RATING_METRICS]
    timings: dict[str, float] = {}
    queries = build_queries(model, split, relevance_threshold, graded)
    counts = dict(queries.counts)
    timings["setup"] = time.perf_counter() - started
    per_user: dict[str, np.ndarray] = {}
    catalogue: dict[str, float] = {}
    n_relevant = np.bincount(queries.rows, minlength=queries.n)
    if ranking and queries.n == 0:
        raise DataError(f"no test user can be evaluated: {counts['unknown_users']} unknown to "
                        f"the model, {counts['users_without_relevant']} without relevant items")
    if ranking and protocol == "full":
        limit = max(len(model.item_index_), int(n_relevant.max(initial=0)))
        computed = tuple(sorted({min(cut, limit) for cut in ks}))
        per_user, catalogue, n_relevant = full_protocol(
            model, split, queries, computed, ranking, "exponential", exclude_seen, batch,
            timings)
        per_user, catalogue = _widen(per_user, ks, limit), _widen(catalogue, ks, limit)
    elif ranking:
        per_user, _ = sampled_protocol(model, queries, ks, ranking, n_negatives,
                                        np.random.default_rng(seed), batch, timings)
    rating: dict[str, float] = {}
    if any(m in RATING_METRICS for m in chosen):
        rating_start = time.perf_counter()
        rating = rating_metrics(model, split, chosen, counts)
        timings["rating"] = time.perf_counter() - rating_start
    table = pd.DataFrame({"user": queries.labels, "n_relevant": n_relevant, **per_user})
    means = {name: float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
             for name, values in per_user.items()}
    summary = pd.Series({**means, **catalogue, **rating}, dtype=np.float64, name="value")
    timings["total"] = time.perf_counter() - started
    settings = {"model": type(model).__name__, "split": split.name, "k": ks,
                "metrics": chosen, "protocol": protocol, "n_negatives": n_negatives,
                "relevance_threshold": relevance_threshold, "graded": graded,
                "exclude_seen": exclude_seen, "seed": seed}
    return EvaluationResult(summary=summary, per_user=table, timings=timings, counts=counts,
                            settings=settings)


@dataclass
class Comparison:
    """Result of :func:`compare`.

    Attributes
    ----------
    leaderboard : DataFrame
        One row per model (index: its name): summary metrics, ``fit_seconds`` and
        ``eval_seconds``, best first.
    results : dict of str -> EvaluationResult
        Full results, per-user tables included (for :meth:`paired_test`).
    models : dict of str -> Recommender
        The fitted clones.
    failures : dict of str -> str
        With ``errors="report"``: each model that could not be fitted or evaluated, and
        the one-line reason (its row in the leaderboard holds no metrics).
    """

    leaderboard: pd.DataFrame
    results: dict[str, EvaluationResult]
    models: dict[str, Recommender]
    failures: dict[str, str] = field(default_factory=dict)

    def paired_test(self, a: str, b: str, metric: str | None = None):  # noqa: ANN201
        """Paired significance test between two models (see :func:`stats.paired_test`)."""
        from recoforge.evaluation.stats import paired_test

        for name in (a, b):
            if name not in self.results:
                raise ConfigError(f"no model named {name!r}; have {list(self.results)}")
        return paired_test(self.results[a], self.results[b], metric=metric)

    def __repr__(self) -> str:
        return f"Comparison\n{self.leaderboard.to_string(float_format=lambda v: f'{v:.4f}')}"

    def _repr_html_(self) -> str:  # pragma: no cover - notebooks
        return self.leaderboard.to_html(float_format=lambda v: f"{v:.4f}")


def compare(models: Mapping[str, Recommender], split: Split,
            progress: Callable[[int, int], None] | None = None,
            errors: Literal["raise", "report"] = "raise", **evaluate_kwargs: Any
            ) -> Comparison:
    """Fit a clone of each model on ``split.train``, evaluate all alike, rank them.

    The leaderboard is sorted by the first ranking metric (descending), or by RMSE
    (ascending) when only rating metrics are measured. ``progress(done, total)`` is
    called after each model is fitted and evaluated. ``errors="report"``: a model whose
    fit or evaluation raises a :class:`~recoforge.errors.RecoforgeError` (it needs item
    features, explicit ratings, an extra, more memory, ...) gets a row without metrics
    and its reason in ``Comparison.failures``, while the others finish; ``"raise"`` (the
    default) lets the error through. Other keyword arguments go to :func:`evaluate`.
    """
    if not isinstance(models, Mapping) or not models:
        raise ConfigError("compare needs a non-empty mapping of name -> model")
    if errors not in ("raise", "report"):
        raise ConfigError(f"errors must be 'raise' or 'report', not {errors!r}")
    _check_split(split, "compare")
    results: dict[str, EvaluationResult] = {}
    fitted: dict[str, Recommender] = {}
    rows: dict[str, dict[str, float]] = {}
    for name, model in models.items():  # all checked before any is fitted
        if not isinstance(model, Recommender):
            raise ConfigError(f"compare: {name!r} is a {type(model).__name__}, "
                              f"not a Recommender")
    failures: dict[str, str] = {}
    for name, model in models.items():
        clone = model.clone()
        started = time.perf_counter()
        try:
            clone.fit(split.train)
            fit_seconds = time.perf_counter() - started
            result = evaluate(clone, split, **evaluate_kwargs)
        except RecoforgeError as exc:
            if errors == "raise":
                raise
            failures[name] = " ".join(str(exc).split()) or type(exc).__name__
            rows[name] = {}
        else:
            results[name], fitted[name] = result, clone
            rows[name] = {**result.summary.to_dict(), "fit_seconds": fit_seconds,
                          "eval_seconds": result.timings["total"]}
        if progress is not None:
            progress(len(rows), len(models))
    board = pd.DataFrame.from_dict(rows, orient="index")
    board.index.name = "model"
    metric_cols = [c for c in board.columns if c.split("@")[0] in RANKING_METRICS]
    if metric_cols:
        board = board.sort_values(metric_cols[0], ascending=False, kind="stable",
                                  na_position="last")
    elif "rmse" in board.columns:
        board = board.sort_values("rmse", ascending=True, kind="stable", na_position="last")
    return Comparison(leaderboard=board, results=results, models=fitted, failures=failures)
