"""evaluate() and compare(): agreement with plain-loop metrics, protocols, edge cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset, Interactions
from recoforge.data.split import Split, cold_start, holdout_per_user, leave_one_out
from recoforge.data.synthetic import category_demo
from recoforge.errors import ConfigError, DataError, NotFittedError
from recoforge.evaluation import Comparison, compare, evaluate
from recoforge.evaluation.protocols import _sample_negatives
from recoforge.models.base import Recommender
from recoforge.models.query import Query


# ---------------------------------------------------------------------- test-only models
class Oracle(Recommender):
    """Scores 1 for the user's test items (``truth``, set after fitting), 0 elsewhere."""

    name = "test-oracle"

    def _fit(self, data: Dataset) -> None:
        pass

    def _score(self, query: Query) -> np.ndarray:
        scores = np.zeros(query.history.shape, dtype=np.float32)
        users = query.stored_users
        if users is not None:
            scores += self.truth[users].toarray()
        return scores


class Constant(Recommender):
    name = "test-constant"

    def _fit(self, data: Dataset) -> None:
        pass

    def _score(self, query: Query) -> np.ndarray:
        return np.zeros(query.history.shape, dtype=np.float32)


class RandomScores(Recommender):
    name = "test-random"

    def _fit(self, data: Dataset) -> None:
        self.calls_ = 0

    def _score(self, query: Query) -> np.ndarray:
        self.calls_ += 1
        return np.random.default_rng(self.calls_).random(query.history.shape).astype(np.float32)


def fitted_oracle(split: Split) -> Oracle:
    model = Oracle().fit(split.train)
    test = split.test
    users = model.user_index_.to_index(test.user_index.to_ids(test.users), unknown="ignore")
    keep = users >= 0
    model.truth = sp.csr_matrix((np.ones(keep.sum(), np.float32),
                                 (users[keep], test.items[keep])),
                                shape=(len(model.user_index_), len(model.item_index_)))
    return model


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def demo() -> Dataset:
    return category_demo(n_users=150, n_items=100, seed=0)


@pytest.fixture(scope="module")
def split(demo) -> Split:
    return holdout_per_user(demo, test_fraction=0.2, seed=1)


@pytest.fixture(scope="module")
def popularity(split):
    return rf.create("popularity").fit(split.train)


def truth_of(test: Interactions, threshold: float | None = None) -> dict:
    """user id -> {item id: value} of the relevant test interactions."""
    frame = test.to_frame()
    if threshold is not None:
        frame = frame[frame["value"] >= threshold]
    return {user: dict(zip(group["item"], group["value"], strict=True))
            for user, group in frame.groupby("user")}


def loop_metrics(lists: dict, truth: dict, k: int, graded: bool = False) -> pd.DataFrame:
    """Plain-Python reference metrics, one user at a time."""
    rows = {}
    for user, relevant in truth.items():
        recs = list(lists.get(user, []))[:k]
        gain = (lambda r: 2.0 ** r - 1) if graded else (lambda r: 1.0)
        dcg = sum(gain(relevant[item]) / math.log2(rank + 2)
                  for rank, item in enumerate(recs) if item in relevant)
        ideal = sorted((gain(v) for v in relevant.values()), reverse=True)[:k]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        hits = [item in relevant for item in recs]
        first = hits.index(True) + 1 if any(hits) else None
        ap = sum(sum(hits[:i + 1]) / (i + 1) for i in range(len(hits)) if hits[i])
        rows[user] = {"ndcg": dcg / idcg, "precision": sum(hits) / k,
                      "recall": sum(hits) / len(relevant), "mrr": 1 / first if first else 0.0,
                      "map": ap / min(k, len(relevant)), "hit_rate": float(any(hits))}
    return pd.DataFrame.from_dict(rows, orient="index")


def lists_of(frame: pd.DataFrame) -> dict:
    return {user: group.sort_values("rank")["item"].tolist()
            for user, group in frame.groupby("user")}


# ---------------------------------------------------------------------- full protocol
def test_full_protocol_agrees_with_a_plain_loop(split, popularity):
    result = evaluate(popularity, split, k=(5, 10))
    users = result.per_user["user"].to_numpy()
    reference = loop_metrics(lists_of(popularity.recommend(users, k=10)), truth_of(split.test),
                             10)
    ours = result.per_user.set_index("user")
    assert len(ours) == len(reference) == 150
    for metric in ("ndcg", "precision", "recall", "mrr", "map", "hit_rate"):
        np.testing.assert_allclose(ours.loc[reference.index, f"{metric}@10"],
                                   reference[metric], atol=1e-12, err_msg=metric)
        assert result.summary[f"{metric}@10"] == pytest.approx(reference[metric].mean())
    assert result.counts["unknown_users"] == 0
    assert result.counts["evaluated_users"] == 150
    assert set(result.timings) >= {"ranking", "metrics", "total"}


def test_graded_ndcg_with_threshold_agrees_with_a_plain_loop(split, popularity):
    result = evaluate(popularity, split, k=10, metrics=["ndcg"], relevance_threshold=3.5,
                      graded=True)
    truth = truth_of(split.test, threshold=3.5)
    users = result.per_user["user"].to_numpy()
    reference = loop_metrics(lists_of(popularity.recommend(users, k=10)), truth, 10,
                             graded=True)
    ours = result.per_user.set_index("user")
    assert set(ours.index) == set(truth)
    np.testing.assert_allclose(ours.loc[reference.index, "ndcg@10"], reference["ndcg"])
    np.testing.assert_array_equal(ours.loc[reference.index, "n_relevant"],
                                  [len(truth[u]) for u in reference.index])
    n_without = len(np.unique(split.test.users)) - len(truth)
    assert result.counts["users_without_relevant"] == n_without


def test_an_oracle_is_perfect(split):
    result = evaluate(fitted_oracle(split), split, k=10, metrics=["ndcg", "recall",
                                                                   "precision"])
    per_user = result.per_user
    np.testing.assert_allclose(per_user["ndcg@10"], 1.0)
    n_rel = per_user["n_relevant"].to_numpy()
    np.testing.assert_allclose(per_user["recall@10"], np.minimum(n_rel, 10) / n_rel)
    np.testing.assert_allclose(per_user["precision@10"], np.minimum(n_rel, 10) / 10)


def test_default_metrics_include_beyond_accuracy_and_ratings(split, popularity):
    result = evaluate(popularity, split, k=10)
    for name in ("coverage@10", "gini@10", "novelty@10", "popularity@10", "diversity@10",
                 "rmse", "mae"):
        assert name in result.summary.index
    assert 0 < result.summary["coverage@10"] <= 1
    # popularity recommends (nearly) the same items to everyone
    assert result.summary["gini@10"] > 0.8
    test = split.test
    predicted = popularity.predict(test.user_index.to_ids(test.users),
                                   test.item_index.to_ids(test.items))
    assert result.summary["rmse"] == pytest.approx(np.sqrt(np.mean((predicted
                                                                    - test.values) ** 2)))
    assert result.counts["unpredictable_pairs"] == 0
    assert "EvaluationResult" in repr(result)


def test_cold_start_users_are_evaluated_from_their_history(demo):
    split = cold_start(demo, on="users", fraction=0.2, history_fraction=0.5, seed=0)
    model = rf.create("popularity").fit(split.train)
    result = evaluate(model, split, k=10, metrics=["ndcg", "recall"])
    assert result.counts["cold_users"] == 30
    assert result.counts["unknown_users"] == 0
    history = {user: group["item"].tolist()
               for user, group in split.history.to_frame().groupby("user")}
    lists = lists_of(model.recommend(k=10, history=history))
    reference = loop_metrics(lists, truth_of(split.test), 10)
    ours = result.per_user.set_index("user")
    np.testing.assert_allclose(ours.loc[reference.index, "ndcg@10"], reference["ndcg"])
    np.testing.assert_allclose(ours.loc[reference.index, "recall@10"], reference["recall"])


def test_unknown_users_are_dropped_and_counted():
    frame = pd.DataFrame({"user": ["a"] * 4 + ["b"] * 4 + ["c"],
                          "item": [1, 2, 3, 4, 1, 2, 3, 5, 1]})
    data = Dataset.from_frame(frame)
    table = data.interactions.to_frame()
    test_mask = ((table["item"] == 3) | (table["user"] == "c")).to_numpy()  # c only in test
    split = Split(train=data.subset(~test_mask), test=data.interactions.select(test_mask))
    result = evaluate(rf.create("popularity").fit(split.train), split, k=2)
    assert result.counts["unknown_users"] == 1
    assert result.counts["evaluated_users"] == 2
    assert sorted(result.per_user["user"]) == ["a", "b"]
    assert "unknown_users=1" in repr(result)


def test_items_unknown_to_the_model_still_count_as_relevant():
    train = Dataset.from_frame(pd.DataFrame({"user": ["a", "a", "b", "b"],
                                             "item": ["x", "y", "x", "w"]}))
    full = pd.DataFrame({"user": ["a", "a", "b"], "item": ["w", "z", "y"]})
    test = Interactions.from_frame(full)
    model = rf.create("popularity").fit(train)
    result = evaluate(model, Split(train=train, test=test), k=3, metrics=["recall", "ndcg"])
    per_user = result.per_user.set_index("user")
    assert result.counts["unknown_items"] == 1
    # user a: relevant w (known, recommended: the only unseen known item) and z (unknown)
    assert per_user.loc["a", "n_relevant"] == 2
    assert per_user.loc["a", "recall@3"] == pytest.approx(0.5)
    # DCG = 1 (w at rank 1); IDCG = 1 + 1/log2(3)
    assert per_user.loc["a", "ndcg@3"] == pytest.approx(1 / (1 + 1 / math.log2(3)))
    assert per_user.loc["b", "recall@3"] == pytest.approx(1.0)


def test_results_do_not_depend_on_the_batch_size(split, popularity):
    default = evaluate(popularity, split, k=(3, 10))
    small = evaluate(popularity, split, k=(3, 10), batch_size=7)
    pd.testing.assert_frame_equal(default.per_user, small.per_user)
    sampled = evaluate(popularity, split, k=10, protocol="sampled", seed=3, n_negatives=50)
    sampled_small = evaluate(popularity, split, k=10, protocol="sampled", seed=3,
                             n_negatives=50, batch_size=11)
    pd.testing.assert_frame_equal(sampled.per_user, sampled_small.per_user)


def test_k_larger_than_the_catalogue_pads_the_lists():
    data = Dataset.from_frame(pd.DataFrame({"user": [1, 1, 1, 2, 2], "item": [1, 2, 3, 1, 3]}))
    split = Split(train=data.subset(np.array([True, True, False, True, False])),
                  test=data.interactions.select(np.array([False, False, True, False, True])))
    result = evaluate(rf.create("popularity").fit(split.train), split, k=50,
                      metrics=["precision", "recall", "coverage"])
    # user 1 can only get item 3, user 2 items 2 and 3: item 3 (relevant) is in both
    # lists, the other 48 / 47 places are padding; items 2 and 3 of 3 are covered
    np.testing.assert_allclose(result.per_user["recall@50"], 1.0)
    np.testing.assert_allclose(result.per_user["precision@50"], 1 / 50)
    assert result.summary["coverage@50"] == pytest.approx(2 / 3)


def test_full_auc_matches_scikit_learn_per_user(split, popularity):
    from sklearn.metrics import roc_auc_score

    result = evaluate(popularity, split, k=10, metrics=["auc"])
    scores = popularity.scores_
    truth = truth_of(split.test)
    index = popularity.item_index_
    seen = popularity.train_matrix_
    for user in result.per_user["user"].to_numpy()[:20]:
        row = popularity.user_index_.to_index([user])[0]
        candidates = np.setdiff1d(np.arange(len(index)), seen[row].indices)
        labels = np.isin(index.ids[candidates], list(truth[user]))
        expected = roc_auc_score(labels, scores[candidates])
        got = result.per_user.set_index("user").loc[user, "auc"]
        assert got == pytest.approx(expected)


# ---------------------------------------------------------------------- sampled protocol
def test_sampled_protocol_oracle_constant_and_random(demo):
    split = leave_one_out(demo, seed=0)
    oracle = evaluate(fitted_oracle(split), split, k=(1, 10), protocol="sampled",
                      n_negatives=50)
    assert oracle.summary["hit_rate@1"] == 1.0
    assert oracle.summary["ndcg@10"] == 1.0
    assert oracle.summary["auc"] == 1.0
    constant = evaluate(Constant().fit(split.train), split, k=10, protocol="sampled",
                        n_negatives=50)
    assert constant.summary["hit_rate@10"] == 0.0  # ties rank above the positive
    assert constant.summary["auc"] == 0.5
    hold = holdout_per_user(demo, test_fraction=0.3, seed=0)
    random = evaluate(RandomScores().fit(hold.train), hold, k=10, protocol="sampled",
                      n_negatives=49)
    n_cases = random.counts["relevant_pairs"]
    assert n_cases > 1000
    # each positive is uniform among 50 candidates: HR@10 = 0.2 (sd 0.011), AUC = 0.5
    assert 0.16 < random.summary["hit_rate@10"] < 0.24
    assert 0.47 < random.summary["auc"] < 0.53
    assert random.summary["mrr@10"] < random.summary["hit_rate@10"]


def test_sampled_protocol_is_deterministic_under_seed(split, popularity):
    a = evaluate(popularity, split, k=10, protocol="sampled", seed=5, n_negatives=50)
    b = evaluate(popularity, split, k=10, protocol="sampled", seed=5, n_negatives=50)
    c = evaluate(popularity, split, k=10, protocol="sampled", seed=6, n_negatives=50)
    pd.testing.assert_series_equal(a.summary, b.summary)
    assert not a.per_user["auc"].equals(c.per_user["auc"])


def test_negatives_are_distinct_untouched_and_uniform():
    n_items = 10
    # row 0 touched 1, 3, 5 (3 cases); row 1 touched 0..7: only 8 and 9 are left (1 case)
    touched = sp.csr_matrix((np.ones(11), [1, 3, 5, 0, 1, 2, 3, 4, 5, 6, 7], [0, 3, 11]),
                            shape=(2, n_items))
    case_start = np.array([0, 3, 4])
    negatives = _sample_negatives(touched, case_start, 0, 2, 2, np.random.default_rng(0))
    assert negatives.shape == (4, 2)
    assert sorted(negatives[3].tolist()) == [8, 9]
    for case in negatives[:3]:
        assert len(set(case.tolist())) == 2
        assert not set(case.tolist()) & {1, 3, 5}
    # uniformity over the 7 untouched items of row 0
    many = np.array([0, 3000, 3000])
    draws = _sample_negatives(touched[:1].tocsr(), many[:2], 0, 1, 3,
                              np.random.default_rng(1))
    freq = np.bincount(draws.ravel(), minlength=n_items) / draws.size
    np.testing.assert_array_equal(freq[[1, 3, 5]], 0)
    np.testing.assert_allclose(freq[[0, 2, 4, 6, 7, 8, 9]], 1 / 7, atol=0.02)


def test_too_many_negatives_is_a_clear_error(split, popularity):
    with pytest.raises(ConfigError, match="n_negatives"):
        evaluate(popularity, split, protocol="sampled", n_negatives=99_999)


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("kwargs, match", [
    ({"k": 0}, "k must"),
    ({"k": (10, "a")}, "k must"),
    ({"metrics": ["ndgc"]}, "unknown metric"),
    ({"metrics": []}, "unknown metric"),
    ({"protocol": "sampled", "metrics": ["precision"]}, "sampled protocol"),
    ({"protocol": "both"}, "protocol"),
    ({"n_negatives": 0, "protocol": "sampled"}, "n_negatives"),
    ({"batch_size": 0}, "batch_size"),
])
def test_bad_arguments(split, popularity, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        evaluate(popularity, split, **kwargs)


def test_unfitted_models_and_unsupported_metrics(split):
    with pytest.raises(NotFittedError, match="fit"):
        evaluate(rf.create("popularity"), split)
    with pytest.raises(ConfigError, match="Recommender"):
        evaluate("popularity", split)
    implicit = Dataset.from_frame(split.train.interactions.to_frame()[["user", "item"]])
    model = rf.create("popularity").fit(implicit)
    with pytest.raises(ConfigError, match="rmse"):
        evaluate(model, split, metrics=["rmse"])
    plain = Split(train=Dataset(split.train.interactions), test=split.test)
    with pytest.raises(ConfigError, match="item features"):
        evaluate(rf.create("popularity").fit(plain.train), plain, metrics=["diversity"])


def test_no_evaluable_user_is_a_clear_error(split, popularity):
    with pytest.raises(DataError, match="no test user"):
        evaluate(popularity, split, relevance_threshold=100.0)


# ---------------------------------------------------------------------- compare
def test_compare_builds_a_sorted_leaderboard_and_keeps_results(split):
    models = {"constant": Constant(), "popularity": rf.create("popularity"),
              "by-rating": rf.create("popularity", measure="rating")}
    comparison = compare(models, split, k=(5, 10), metrics=["ndcg", "recall"])
    assert isinstance(comparison, Comparison)
    board = comparison.leaderboard
    assert list(board.columns) == ["ndcg@5", "ndcg@10", "recall@5", "recall@10",
                                   "fit_seconds", "eval_seconds"]
    assert board["ndcg@5"].is_monotonic_decreasing
    assert board.loc["popularity", "ndcg@10"] > board.loc["constant", "ndcg@10"]
    assert not models["popularity"].is_fitted  # clones were fitted
    assert comparison.models["popularity"].is_fitted
    assert set(comparison.results) == set(models)
    test = comparison.paired_test("popularity", "constant", metric="ndcg@10")
    assert test.n_users == 150
    assert test.mean_difference > 0
    with pytest.raises(ConfigError, match="no model named"):
        comparison.paired_test("popularity", "svd")
    assert "ndcg@5" in repr(comparison)


def test_compare_rejects_bad_models(split):
    with pytest.raises(ConfigError, match="non-empty"):
        compare({}, split)
    with pytest.raises(ConfigError, match="not a Recommender"):
        compare({"x": "popularity"}, split)


# ---------------------------------------------------------------------- MovieLens 100K
@pytest.mark.datasets
def test_ml100k_popularity_ndcg_matches_an_independent_implementation(ml100k_split):
    """Issue 2, criterion 2: per-user random 80/20, full ranking, NDCG@10 of popularity.

    (Throughput is measured in benchmarks/bench_evaluation.py, not here.)
    """
    split = ml100k_split
    model = rf.create("popularity").fit(split.train)
    result = evaluate(model, split, k=10, metrics=["ndcg"])
    assert result.counts["evaluated_users"] == 943
    users = result.per_user["user"].to_numpy()
    reference = loop_metrics(lists_of(model.recommend(users, k=10)), truth_of(split.test), 10)
    assert result.summary["ndcg@10"] == pytest.approx(reference["ndcg"].mean(), abs=1e-12)
    assert 0.15 < result.summary["ndcg@10"] < 0.3
