"""Metrics against small examples worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recoforge.errors import ConfigError, DataError
from recoforge.evaluation import metrics as M

# Three users, lists of 4. User 0 has 3 relevant items, found at ranks 1 and 3; user 1 has
# 2 relevant items, none found; user 2 has 1 relevant item, found at rank 2.
HITS = np.array([[1, 0, 1, 0], [0, 0, 0, 0], [0, 1, 0, 0]], dtype=float)
N_RELEVANT = np.array([3, 2, 1])


def test_precision_divides_by_k():
    # @2: user 0 has 1 hit in 2, user 2 has 1 in 2; @4: 2/4, 0, 1/4
    np.testing.assert_allclose(M.precision_at_k(HITS, 2), [0.5, 0.0, 0.5])
    np.testing.assert_allclose(M.precision_at_k(HITS, 4), [0.5, 0.0, 0.25])


def test_recall_divides_by_the_number_of_relevant_items():
    # @4: 2/3, 0/2, 1/1; @1: 1/3, 0, 0
    np.testing.assert_allclose(M.recall_at_k(HITS, N_RELEVANT, 4), [2 / 3, 0.0, 1.0])
    np.testing.assert_allclose(M.recall_at_k(HITS, N_RELEVANT, 1), [1 / 3, 0.0, 0.0])


def test_hit_rate_and_mrr():
    np.testing.assert_allclose(M.hit_rate_at_k(HITS, 1), [1, 0, 0])
    np.testing.assert_allclose(M.hit_rate_at_k(HITS, 2), [1, 0, 1])
    # first hit at rank 1, none, rank 2
    np.testing.assert_allclose(M.mrr_at_k(HITS, 4), [1.0, 0.0, 0.5])
    np.testing.assert_allclose(M.mrr_at_k(HITS, 1), [1.0, 0.0, 0.0])


def test_average_precision_normalises_by_min_k_and_relevant():
    # user 0 @4: (P@1 * 1 + P@3 * 1) / min(4, 3) = (1 + 2/3) / 3 = 5/9
    # user 2 @4: P@2 / min(4, 1) = 1/2;  user 0 @2: P@1 / min(2, 3) = 1/2
    np.testing.assert_allclose(M.average_precision_at_k(HITS, N_RELEVANT, 4),
                               [5 / 9, 0.0, 0.5])
    np.testing.assert_allclose(M.average_precision_at_k(HITS, N_RELEVANT, 2), [0.5, 0.0, 0.5])


def test_binary_ndcg():
    ideal = M.binary_ideal(N_RELEVANT, 4)
    np.testing.assert_array_equal(ideal, [[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]])
    # user 0: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG = 1 + 1/log2(3) + 1/log2(4) = 2.13093
    # user 2: DCG = 1/log2(3) = 0.63093; IDCG = 1
    expected = [1.5 / (1 + 1 / math.log2(3) + 0.5), 0.0, 1 / math.log2(3)]
    np.testing.assert_allclose(M.ndcg_at_k(HITS, ideal, 4), expected)
    # @1: user 0 hit at rank 1 -> 1; user 2 -> 0
    np.testing.assert_allclose(M.ndcg_at_k(HITS, ideal, 1), [1.0, 0.0, 0.0])


def test_graded_ndcg_exponential_and_linear_gain():
    # list grades 3, 0, 1; the user's grades sorted: 3, 2, 1
    hits, ideal = np.array([[3.0, 0.0, 1.0]]), np.array([[3.0, 2.0, 1.0]])
    # exponential: DCG = 7 + 0 + 1/2 = 7.5; IDCG = 7 + 3/log2(3) + 1/2 = 9.39279
    assert M.ndcg_at_k(hits, ideal, 3)[0] == pytest.approx(7.5 / (7 + 3 / math.log2(3) + 0.5))
    assert M.ndcg_at_k(hits, ideal, 3)[0] == pytest.approx(0.798485, abs=1e-6)
    # linear: DCG = 3 + 1/2 = 3.5; IDCG = 3 + 2/log2(3) + 1/2 = 4.76186
    assert M.ndcg_at_k(hits, ideal, 3, gain="linear")[0] == pytest.approx(0.735007, abs=1e-6)
    with pytest.raises(ConfigError, match="gain"):
        M.ndcg_at_k(hits, ideal, 3, gain="log")


def test_users_without_relevant_items_get_nan():
    hits, n_rel = np.zeros((1, 3)), np.array([0])
    assert np.isnan(M.recall_at_k(hits, n_rel, 3)[0])
    assert np.isnan(M.average_precision_at_k(hits, n_rel, 3)[0])
    assert np.isnan(M.ndcg_at_k(hits, M.binary_ideal(n_rel, 3), 3)[0])


@pytest.mark.parametrize("k", [0, 5, -1, 2.0, True])
def test_bad_cutoffs(k):
    with pytest.raises(ConfigError, match="k"):
        M.precision_at_k(HITS, k)


def test_bad_shapes():
    with pytest.raises(DataError, match="2-d"):
        M.precision_at_k(np.ones(4), 2)
    with pytest.raises(DataError, match="ideal"):
        M.ndcg_at_k(HITS, np.ones((2, 4)), 2)


def test_sampled_auc_counts_ties_as_half():
    # positive 0.5 vs negatives 0.1, 0.5, 0.9, 0.2: 2 below, 1 tie -> 2.5 / 4
    np.testing.assert_allclose(M.auc_sampled(np.array([0.5]),
                                             np.array([[0.1, 0.5, 0.9, 0.2]])), [0.625])
    # a NaN negative counts as the lowest score, a NaN positive as the lowest too
    np.testing.assert_allclose(M.auc_sampled(np.array([0.5, np.nan]),
                                             np.array([[np.nan, 0.9], [0.1, 0.2]])), [0.5, 0.0])


def test_full_auc_by_hand():
    scores = np.array([[0.9, 0.1, 0.5, 0.3, 0.7],
                       [0.2, 0.2, 0.2, 0.2, 0.2],
                       [0.1, 0.2, 0.3, 0.4, 0.5]], dtype=np.float32)
    positives = sp.csr_matrix(([1.0, 1.0, 1.0], ([0, 0, 1], [0, 3, 1])), shape=(3, 5))
    exclude = sp.csr_matrix(([1.0], ([0], [4])), shape=(3, 5))
    # row 0: negatives are items 1 (0.1) and 2 (0.5), item 4 is excluded;
    #   positive 0.9 beats both (2), positive 0.3 beats one (1): AUC = 3 / (2 * 2) = 0.75
    # row 1: all scores tie -> 0.5; row 2: no positive -> NaN
    auc = M.auc_full(scores, positives, exclude)
    np.testing.assert_allclose(auc[:2], [0.75, 0.5])
    assert np.isnan(auc[2])


def test_full_auc_agrees_with_scikit_learn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, size=(20, 30)).astype(np.float64)  # many ties
    truth = rng.random((20, 30)) < 0.2
    truth[:, 0], truth[:, 1] = True, False  # every row has both classes
    ours = M.auc_full(scores, sp.csr_matrix(truth))
    expected = [roc_auc_score(truth[r], scores[r]) for r in range(20)]
    np.testing.assert_allclose(ours, expected)


def test_rmse_and_mae():
    # errors 0, 0, 2: RMSE = sqrt(4/3), MAE = 2/3
    assert M.rmse([1, 2, 3], [1, 2, 5]) == pytest.approx(math.sqrt(4 / 3))
    assert M.mae([1, 2, 3], [1, 2, 5]) == pytest.approx(2 / 3)
    with pytest.raises(DataError):
        M.rmse([1, 2], [1])
    with pytest.raises(DataError, match="no ratings"):
        M.mae([], [])


def test_catalogue_coverage_ignores_padding():
    # items 0, 1, 2 of 5 appear
    assert M.catalogue_coverage(np.array([[0, 1], [1, 2], [-1, 1]]), 5) == pytest.approx(0.6)


def test_gini_index():
    # exposure counts of 4 items: 3, 2, 1, 0 -> sorted 0, 1, 2, 3, total 6:
    # sum (2i - 5) c_i = -3*0 - 1*1 + 1*2 + 3*3 = 10; G = 10 / (4 * 6)
    recs = np.array([[0, 1], [0, 1], [0, 2]])
    assert M.gini_index(recs, 4) == pytest.approx(10 / 24)
    assert M.gini_index(np.array([[0, 1], [2, 3]]), 4) == pytest.approx(0.0)
    assert M.gini_index(np.array([[3], [3]]), 4) == pytest.approx(0.75)  # 1 - 1/n


def test_novelty_and_average_popularity():
    # 20 users; counts 10, 5, 1, 0 -> shares 0.5, 0.25, 0.05, 0.05 (0 counts as 1)
    # self-information 1, 2, 4.32193, 4.32193
    counts = np.array([10, 5, 1, 0])
    recs = np.array([[0, 1], [2, -1]])
    np.testing.assert_allclose(M.novelty(recs, counts, 20), [1.5, -math.log2(0.05)])
    np.testing.assert_allclose(M.average_popularity(recs, counts), [7.5, 1.0])


def test_intra_list_diversity():
    # features: item 0 = (1, 0), item 1 = (0, 1), item 2 = (1, 1), item 3 = none
    features = sp.csr_matrix(np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float))
    recs = np.array([[0, 1, -1], [0, 2, -1], [0, 1, 2], [0, 3, -1], [2, -1, -1]])
    c = 1 / math.sqrt(2)
    # [0,1]: cos 0 -> 1; [0,2]: 1 - 0.70711; [0,1,2]: mean cos (0 + c + c)/3 -> 1 - 2c/3;
    # [0,3]: a featureless item is at distance 1; a single item: NaN
    ild = M.intra_list_diversity(recs, features)
    np.testing.assert_allclose(ild[:4], [1.0, 1 - c, 1 - 2 * c / 3, 1.0])
    assert np.isnan(ild[4])


def test_beyond_accuracy_shapes_are_checked():
    with pytest.raises(DataError, match="2-d"):
        M.catalogue_coverage(np.array([1, 2]), 3)
