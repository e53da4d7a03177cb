"""Conformance on real data: every model family on MovieLens 100K, floors from measurements.

The split is the per-user random 80/20 holdout (seed 0) the MovieLens tests share. Top-N
models must reach an NDCG@10 floor set a little under their measured value; rating models
(which rank by predicted rating, a poor top-N signal on MovieLens) must keep their RMSE
under a ceiling a little over theirs and beat the global mean. Every NDCG floor is checked
to sit above what a random ranker reaches with probability 1e-3 on the same split.
Skipped when ../shared/datasets is absent (the licence forbids shipping MovieLens).
"""

from __future__ import annotations

import numpy as np
import pytest

import recoforge as rf
from recoforge.evaluation import evaluate
from recoforge.models.base import Recommender
from recoforge.models.query import Query

pytestmark = [pytest.mark.datasets, pytest.mark.slow]

_MF = {"n_factors": 8, "n_epochs": 50, "lr_factors": 0.02, "seed": 0}
_FM = {"embedding_dim": 16, "epochs": 5, "batch_size": 1024, "learning_rate": 0.005,
       "n_negatives": 4}
# name: (params, metric, bound); measured values on this split are in the comments
CASES = {
    "popularity": ({}, "ndcg@10", 0.20),  # 0.2236
    "content": ({}, "ndcg@10", 0.035),  # 0.0413 (genres only)
    "covisitation": ({}, "ndcg@10", 0.35),  # 0.3937
    "rp3beta": ({}, "ndcg@10", 0.35),  # 0.3898
    "p3alpha": ({"top_k": 50, "normalize_rows": True}, "ndcg@10", 0.31),  # 0.3507
    "pagerank": ({}, "ndcg@10", 0.25),  # 0.2829
    "pure_svd": ({"n_factors": 10, "seed": 0}, "ndcg@10", 0.37),  # 0.4165
    "ease": ({"regularization": 10.0}, "ndcg@10", 0.31),  # 0.3446
    "implicit_als": ({"n_factors": 8, "iterations": 8, "alpha": 5.0, "regularization": 0.5,
                      "seed": 0}, "ndcg@10", 0.30),  # 0.3424
    "bpr": ({"n_factors": 16, "n_epochs": 20, "learning_rate": 0.05, "n_threads": 1,
             "seed": 0}, "ndcg@10", 0.30),  # 0.3448
    "logistic_mf": ({"n_factors": 16, "n_epochs": 20, "learning_rate": 0.05, "n_threads": 1,
                     "seed": 0}, "ndcg@10", 0.35),  # 0.3968
    "warp": ({"n_factors": 16, "n_epochs": 10, "learning_rate": 0.01, "n_threads": 1,
              "seed": 0}, "ndcg@10", 0.29),  # 0.3281
    "item_knn": ({"k": 20}, "ndcg@10", 0.34),  # 0.3782
    "user_knn": ({"k": 20}, "ndcg@10", 0.34),  # 0.3802
    "als": ({"n_factors": 8, "iterations": 8, "seed": 0}, "rmse", 0.975),  # 0.9583
    "sgd_mf": ({**_MF, "reg_bias": 1.0}, "rmse", 0.99),  # 0.9717
    "svdpp": ({**_MF, "lr_implicit": 0.02}, "rmse", 0.99),  # 0.9718
    "timesvdpp": ({**_MF, "lr_implicit": 0.02}, "rmse", 0.99),  # 0.9702
    "bpmf": ({"n_factors": 8, "n_samples": 20, "burn_in": 5, "stored_samples": 5, "seed": 0},
             "rmse", 0.95),  # 0.9334
    "bias": ({}, "rmse", 0.96),  # 0.9449
    "embedding_mf": ({"embedding_dim": 16, "epochs": 10, "learning_rate": 0.01,
                      "regularization": 0.1, "seed": 0}, "rmse", 0.93),  # 0.9132
    "mult_vae": ({"hidden_dim": 200, "latent_dim": 50, "epochs": 8, "batch_size": 128,
                  "learning_rate": 0.003, "total_anneal_steps": 50, "seed": 0},
                 "ndcg@10", 0.33),  # 0.3645
    "recvae": ({"hidden_dim": 200, "latent_dim": 50, "epochs": 3, "batch_size": 128,
                "learning_rate": 0.002, "seed": 0}, "ndcg@10", 0.28),  # 0.3153
    "gmf": ({"embedding_dim": 16, "epochs": 5, "batch_size": 1024, "learning_rate": 0.005,
             "seed": 0}, "ndcg@10", 0.28),  # 0.3134
    "mlp": ({"embedding_dim": 16, "layers": "32,16", "epochs": 5, "batch_size": 1024,
             "learning_rate": 0.01, "seed": 0}, "ndcg@10", 0.27),  # 0.2989
    "neumf": ({"mf_embedding_dim": 16, "mlp_embedding_dim": 16, "mlp_layers": "32,16",
               "epochs": 5, "batch_size": 1024, "learning_rate": 0.005, "seed": 0},
              "ndcg@10", 0.33),  # 0.3693
    "lightgcn": ({"embedding_dim": 32, "n_layers": 2, "epochs": 5, "batch_size": 4096,
                  "learning_rate": 0.01, "seed": 0}, "ndcg@10", 0.29),  # 0.3186
    "two_tower": ({"embedding_dim": 32, "epochs": 5, "batch_size": 1024,
                   "learning_rate": 0.01, "seed": 0}, "ndcg@10", 0.37),  # 0.4011
    "feature_mf": ({"loss": "bpr", "embedding_dim": 32, "epochs": 5, "batch_size": 1024,
                    "seed": 0}, "ndcg@10", 0.34),  # 0.3699
    "feature_popularity": ({}, "ndcg@10", 0.20),  # 0.2227
    "hybrid": ({"components": "ease(regularization=10.0);content;feature_popularity",
                "mode": "stacking", "seed": 0}, "ndcg@10", 0.31),  # 0.3467
    "feature_tower": ({"user_layers": "64,32", "item_layers": "64,32",
                       "item_id_embedding": True, "epochs": 5, "batch_size": 1024,
                       "learning_rate": 0.003, "seed": 0}, "rmse", 0.99),  # 0.9686
    # fm family: BCE with 4 uniform negatives per event, user/item ids + item genres
    "fm": ({**_FM, "seed": 0}, "ndcg@10", 0.27),  # 0.3052
    "ffm": ({**_FM, "seed": 0}, "ndcg@10", 0.35),  # 0.3884
    "nfm": ({**_FM, "layers": "32", "seed": 0}, "ndcg@10", 0.33),  # 0.3714
    "deepfm": ({**_FM, "layers": "32,16", "seed": 0}, "ndcg@10", 0.26),  # 0.2936
    "wide_deep": ({**_FM, "layers": "32,16", "seed": 0}, "ndcg@10", 0.22),  # 0.2538
}


class _RandomScores(Recommender):
    """Uniform random scores: the baseline every NDCG floor must clear."""

    name = "test-random-ml100k"

    def _fit(self, data) -> None:
        pass

    def _score(self, query: Query) -> np.ndarray:
        rng = np.random.default_rng(int(query.users[0]) if len(query) else 0)
        return rng.random(query.history.shape).astype(np.float32)


@pytest.fixture(scope="module")
def random_ndcg_threshold(ml100k_split) -> float:
    """NDCG@10 a random ranker exceeds with probability ~1e-3 (mean + 3.1 sd of the mean
    over users, by the central limit theorem)."""
    result = evaluate(_RandomScores().fit(ml100k_split.train), ml100k_split, k=[10],
                      metrics=["ndcg"])
    per_user = np.asarray(result.per_user["ndcg@10"], dtype=np.float64)
    return float(per_user.mean() + 3.1 * per_user.std(ddof=1) / np.sqrt(len(per_user)))


def test_every_registered_model_is_checked_on_movielens():
    assert set(rf.available_models()) <= set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_on_movielens_100k(name, ml100k_split, random_ndcg_threshold):
    params, metric, bound = CASES[name]
    model = rf.create(name, **params).fit(ml100k_split.train)
    metrics = ["ndcg"] if metric.startswith("ndcg") else ["rmse"]
    value = float(evaluate(model, ml100k_split, k=[10], metrics=metrics).summary[metric])
    if metric == "rmse":
        test = ml100k_split.test
        mean_rmse = float(np.sqrt(np.mean((ml100k_split.train.interactions.values.mean()
                                           - test.values) ** 2)))
        assert value <= bound < mean_rmse, f"{name}: RMSE {value:.4f} (ceiling {bound}, " \
                                           f"global mean {mean_rmse:.4f})"
    else:
        assert bound > random_ndcg_threshold, f"floor {bound} is within random's reach"
        assert value >= bound, f"{name}: NDCG@10 {value:.4f} under its floor {bound}"
