"""BPR, logistic MF and WARP: learning, determinism, negative samplers, parameters."""

from __future__ import annotations

import numba
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset, Interactions
from recoforge.errors import ConfigError
from recoforge.models.factors._ranking_kernels import (
    HARD,
    POPULARITY,
    UNIFORM,
    negative_sampling_cdf,
    positive_bitset,
    sample_negatives,
)
from tests.conformance.specs import taste_data

FAST = {"n_factors": 8, "n_threads": 1, "seed": 3}


@pytest.fixture(scope="module")
def train() -> Dataset:
    return taste_data(seed=1)[0]


def training_auc(model, data: Dataset) -> float:
    """Mean over users of P(score of a training item > score of a non-training item)."""
    matrix = data.matrix()
    scores = model.score(users=np.arange(data.n_users))
    aucs = []
    for user in range(data.n_users):
        positive = np.zeros(data.n_items, bool)
        positive[matrix.indices[matrix.indptr[user]:matrix.indptr[user + 1]]] = True
        pos, neg = scores[user, positive], scores[user, ~positive]
        aucs.append((pos[:, None] > neg[None, :]).mean())
    return float(np.mean(aucs))


# ---------------------------------------------------------------- learning
@pytest.mark.parametrize("name, params", [
    ("bpr", {"learning_rate": 0.1}),
    ("bpr", {"learning_rate": 0.1, "negative_sampling": "popularity"}),
    ("bpr", {"learning_rate": 0.1, "negative_sampling": "hard"}),
    ("logistic_mf", {"learning_rate": 0.1}),
    ("warp", {"learning_rate": 0.02}),
])
def test_training_auc_and_objective_improve_over_epochs(train, name, params):
    short = rf.create(name, n_epochs=1, **FAST, **params).fit(train)
    long = rf.create(name, n_epochs=30, **FAST, **params).fit(train)
    auc_short, auc_long = training_auc(short, train), training_auc(long, train)
    assert auc_long > auc_short + 0.15, (auc_short, auc_long)
    assert auc_long > 0.9
    assert long.epoch_loss_.shape == long.epoch_accuracy_.shape == (30,)
    # sampled-pair accuracy (BPR: AUC estimate; WARP: share of positives without violator)
    assert long.epoch_accuracy_[-1] > long.epoch_accuracy_[0] + 0.05
    if name != "warp":  # WARP's loss per update counts only the (harder and harder) violators
        assert long.epoch_loss_[-1] < 0.8 * long.epoch_loss_[0]


def test_deterministic_with_one_thread_and_seed_matters(train):
    for name in ("bpr", "logistic_mf", "warp"):
        first = rf.create(name, n_epochs=3, **FAST).fit(train)
        again = rf.create(name, n_epochs=3, **FAST).fit(train)
        np.testing.assert_array_equal(first.item_factors_, again.item_factors_)
        np.testing.assert_array_equal(first.user_factors_, again.user_factors_)
        other = rf.create(name, n_epochs=3, **{**FAST, "seed": 4}).fit(train)
        assert not np.array_equal(first.item_factors_, other.item_factors_)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs two numba threads")
def test_hogwild_threads_learn_as_well_and_restore_the_thread_setting(train):
    before = numba.get_num_threads()
    parallel = rf.create("bpr", n_epochs=15, **{**FAST, "n_threads": 2}).fit(train)
    serial = rf.create("bpr", n_epochs=15, **FAST).fit(train)
    assert numba.get_num_threads() == before
    assert training_auc(parallel, train) > training_auc(serial, train) - 0.03


def test_values_are_ignored_every_interaction_is_a_positive(train):
    inter = train.interactions
    ones = Interactions(users=inter.users, items=inter.items,
                        values=np.ones(len(inter), np.float32), user_index=inter.user_index,
                        item_index=inter.item_index, kind="implicit")
    rated = rf.create("bpr", n_epochs=2, **FAST).fit(train)
    binary = rf.create("bpr", n_epochs=2, **FAST).fit(Dataset(ones))
    np.testing.assert_array_equal(rated.item_factors_, binary.item_factors_)


# ---------------------------------------------------------------- vectors and new users
def test_vectors_carry_the_bias_and_give_the_scores(train):
    model = rf.create("logistic_mf", n_epochs=2, **FAST).fit(train)
    users, items = model.user_vectors(), model.item_vectors()
    assert users.shape == (train.n_users, 10) and items.shape == (train.n_items, 10)
    np.testing.assert_array_equal(users[:, 8], 1.0)  # against the item bias
    np.testing.assert_array_equal(items[:, 9], 1.0)  # against the user bias
    np.testing.assert_allclose(model.score(users=np.arange(3)), users[:3] @ items.T,
                               rtol=1e-5, atol=1e-6)
    bpr = rf.create("bpr", n_epochs=2, **FAST).fit(train)
    assert bpr.item_vectors().shape == (train.n_items, 9)
    assert bpr.item_vectors()[:, 8].std() > 0  # learned item biases


def test_items_without_interactions_start_at_zero_and_only_sink():
    frame = pd.DataFrame({"user": ["a", "a", "b", "c"], "item": ["x", "y", "x", "y"]})
    inter = Interactions.from_frame(frame, item_index=rf.data.IdIndex(["x", "y", "z"]))
    once = rf.create("bpr", n_epochs=1, **{**FAST, "n_factors": 64}).fit(Dataset(inter))
    others = np.abs(once.item_factors_[:2, :64]).mean()
    assert np.abs(once.item_factors_[2, :64]).mean() < 0.1 * others  # zero start
    model = rf.create("bpr", n_epochs=20, **FAST).fit(Dataset(inter))
    assert model.item_factors_[2, 8] < model.item_factors_[:2, 8].min()  # only a negative


@pytest.mark.parametrize("name, params", [
    ("bpr", {"learning_rate": 0.05}),
    ("logistic_mf", {"learning_rate": 0.05}),
    ("warp", {"learning_rate": 0.01, "n_epochs": 10}),
])
def test_fold_in_of_a_known_history_recovers_the_users_recommendations(name, params):
    train, held_out = taste_data(seed=0)
    model = rf.create(name, **{"n_factors": 16, "n_epochs": 20, "n_threads": 1, "seed": 0,
                               **params}).fit(train)
    frame = train.interactions.to_frame()
    users = list(held_out["user"])
    known = model.recommend(users, k=10)
    folded = model.recommend(history={u: frame.loc[frame["user"] == u, "item"].tolist()
                                      for u in users}, k=10)
    overlap = np.mean([len(set(known.loc[known["user"] == u, "item"])
                           & set(folded.loc[folded["user"] == u, "item"])) / 10 for u in users])
    assert overlap >= 0.6  # measured 0.74-0.94

    def hit_rate(recs):
        return recs.merge(held_out, on=["user", "item"])["user"].nunique() / len(held_out)
    assert hit_rate(folded) >= hit_rate(known) - 0.07  # measured -0.04 to +0.03


def test_fold_in_depends_on_the_history_only(train):
    model = rf.create("bpr", n_epochs=5, **FAST).fit(train)
    history = train.matrix()[:6]
    alone, _ = model.fold_in(history[4:5])
    batch, biases = model.fold_in(history)
    np.testing.assert_array_equal(alone[0], batch[4])
    np.testing.assert_array_equal(batch[:, 8], 1.0)  # the constant against the item bias
    np.testing.assert_array_equal(biases, 0.0)
    empty, _ = model.fold_in(sp.csr_matrix((1, train.n_items), dtype=np.float32))
    np.testing.assert_array_equal(empty[0, :8], 0.0)  # no history: rank by item bias
    scores = model.score(histories=sp.csr_matrix((1, train.n_items), dtype=np.float32))
    np.testing.assert_allclose(scores[0], model.item_factors_[:, 8], rtol=1e-6)
    why = model.explain(train.item_index.ids[0], history=list(train.item_index.ids[5:9]), n=3)
    assert len(why) == 3 and set(why["id"]) <= set(train.item_index.ids[5:9])


# ---------------------------------------------------------------- samplers
@pytest.fixture(scope="module")
def sampler_data():
    """40 items, item j seen by users 2..j+2; user 1 holds items 0-9 (user 0 nothing)."""
    rows, cols = [1] * 10, list(range(10))
    for item in range(40):
        for user in range(2, item + 3):
            rows.append(user)
            cols.append(item)
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(42, 40))
    matrix.data[:] = 1.0
    matrix.sort_indices()
    counts = np.bincount(matrix.indices, minlength=40)
    return matrix, counts


def draw(matrix, strategy, cdf, n=40_000, user=1, n_candidates=5, item_factors=None,
         bitset=True):
    d = 4
    user_factors = np.ones((matrix.shape[0], d), np.float32)
    if item_factors is None:
        item_factors = np.zeros((matrix.shape[1], d), np.float32)
    users = np.full(n, user, np.int32)
    indptr, indices = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32)
    bits = positive_bitset(indptr, indices, matrix.shape[1]) if bitset else \
        np.zeros((0, 1), np.uint64)
    return sample_negatives(users, (indptr, indices, bits), strategy, cdf, n_candidates,
                            user_factors, item_factors, 7)


@pytest.mark.parametrize("strategy", [UNIFORM, POPULARITY, HARD])
def test_bitset_and_binary_search_draw_the_same_negatives(sampler_data, strategy):
    matrix, counts = sampler_data
    cdf = negative_sampling_cdf(counts, "popularity" if strategy == POPULARITY else "uniform",
                                0.75)
    factors = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    for user in range(5):
        with_bits = draw(matrix, strategy, cdf, n=3000, user=user, item_factors=factors)
        searched = draw(matrix, strategy, cdf, n=3000, user=user, item_factors=factors,
                        bitset=False)
        np.testing.assert_array_equal(with_bits, searched)


def test_bitset_marks_exactly_the_training_pairs(sampler_data):
    matrix, _ = sampler_data
    bits = positive_bitset(matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32), 40)
    unpacked = (bits[:, :, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    np.testing.assert_array_equal(unpacked.reshape(len(bits), -1)[:, :40],
                                  matrix.toarray() > 0)
    sparse = sp.random(500, 3000, density=0.001, format="csr", random_state=0)
    assert positive_bitset(sparse.indptr, sparse.indices, 3000).shape[0] == 0  # too sparse


def test_uniform_sampler_is_uniform_over_non_positives(sampler_data):
    matrix, counts = sampler_data
    out = draw(matrix, UNIFORM, negative_sampling_cdf(counts, "uniform", 0.0))
    positives = set(matrix.indices[matrix.indptr[1]:matrix.indptr[2]].tolist())
    assert positives == set(range(10))
    assert not positives & set(out.tolist())
    freq = np.bincount(out, minlength=40)[[j for j in range(40) if j not in positives]]
    expected = len(out) / len(freq)
    assert np.abs(freq - expected).max() < 0.12 * expected


def test_popularity_sampler_follows_count_to_the_exponent(sampler_data):
    matrix, counts = sampler_data
    positives = set(matrix.indices[matrix.indptr[1]:matrix.indptr[2]].tolist())
    free = np.array([j for j in range(40) if j not in positives])
    for exponent in (1.0, 0.5):
        out = draw(matrix, POPULARITY, negative_sampling_cdf(counts, "popularity", exponent))
        assert not positives & set(out.tolist())
        freq = np.bincount(out, minlength=40)[free] / len(out)
        expected = counts[free] ** exponent / (counts[free] ** exponent).sum()
        np.testing.assert_allclose(freq, expected, atol=0.01)
    uniform = draw(matrix, UNIFORM, negative_sampling_cdf(counts, "uniform", 0.0))
    popular = draw(matrix, POPULARITY, negative_sampling_cdf(counts, "popularity", 1.0))
    assert counts[popular].mean() > counts[uniform].mean() + 2  # 28.5 vs 25.5 expected


def test_popularity_sampler_never_draws_unseen_items():
    cdf = negative_sampling_cdf(np.array([3, 0, 5, 0]), "popularity", 0.0)
    matrix = sp.csr_matrix(np.array([[0, 0, 0, 0], [1, 0, 1, 0]], np.float32))
    out = draw(matrix, POPULARITY, cdf, n=2000, user=0)
    assert set(out.tolist()) == {0, 2}


def test_hard_sampler_prefers_high_scoring_negatives(sampler_data):
    matrix, counts = sampler_data
    cdf = negative_sampling_cdf(counts, "uniform", 0.0)
    item_factors = np.linspace(-1, 1, 40, dtype=np.float32)[:, None] * np.ones(4, np.float32)
    uniform = draw(matrix, UNIFORM, cdf, item_factors=item_factors)
    hard = draw(matrix, HARD, cdf, item_factors=item_factors, n_candidates=5)
    positives = set(matrix.indices[matrix.indptr[1]:matrix.indptr[2]].tolist())
    assert not positives & set(hard.tolist())
    assert item_factors[hard, 0].mean() > item_factors[uniform, 0].mean() + 0.3
    # the best non-positive item wins whenever it is among the 5 candidates
    best = max(j for j in range(40) if j not in positives)
    n_free = 40 - len(positives)
    expected = 1 - (1 - 1 / n_free) ** 5
    assert abs((hard == best).mean() - expected) < 0.02
    one = draw(matrix, HARD, cdf, item_factors=item_factors, n_candidates=1)
    assert abs(item_factors[one, 0].mean() - item_factors[uniform, 0].mean()) < 0.05


def test_user_with_every_item_gets_no_negative():
    matrix = sp.csr_matrix(np.ones((1, 5), np.float32))
    out = draw(matrix, UNIFORM, negative_sampling_cdf(np.ones(5), "uniform", 0.0), n=10,
               user=0)
    np.testing.assert_array_equal(out, -1)


def test_user_with_every_item_is_skipped_in_training():
    frame = pd.DataFrame({"user": ["a", "a", "b"], "item": ["x", "y", "x"]})
    model = rf.create("bpr", n_epochs=3, **FAST).fit(Dataset.from_frame(frame))
    assert np.isfinite(model.item_factors_).all()


# ---------------------------------------------------------------- parameters
@pytest.mark.parametrize("name, params", [
    ("bpr", {"n_factors": 0}),
    ("bpr", {"n_epochs": 0}),
    ("bpr", {"learning_rate": 0.0}),
    ("bpr", {"learning_rate": float("nan")}),
    ("bpr", {"regularization": -0.1}),
    ("bpr", {"negative_sampling": "adversarial"}),
    ("bpr", {"n_candidates": 0}),
    ("bpr", {"popularity_exponent": -1.0}),
    ("bpr", {"n_threads": -1}),
    ("bpr", {"n_factors": 2.5}),
    ("bpr", {"n_negatives": 3}),
    ("bpr", {"max_sampled": 3}),
    ("logistic_mf", {"n_negatives": 0}),
    ("warp", {"max_sampled": 0}),
    ("warp", {"negative_sampling": "hard"}),
])
def test_bad_parameters_raise_config_error(name, params):
    with pytest.raises(ConfigError):
        rf.create(name, **params)


def test_divergence_is_reported_not_silent(train):
    model = rf.create("warp", n_epochs=30, learning_rate=10.0, init_scale=10.0, **{
        k: v for k, v in FAST.items()})
    with pytest.raises(ConfigError, match="learning_rate"):
        model.fit(train)
