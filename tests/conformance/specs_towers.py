"""Conformance specs of the feature-aware neural models: two_tower, feature_tower, feature_mf.

They read the taste data's user features (taste group, noise), so a known user's stored
features differ from the all-zero features of the same history sent anonymously
(``history_matches_known_user=False``). Measured leave-one-out hit rates@10 on the
400-user conformance data (random ~0.08, its 1 - 1e-3 quantile ~0.12):
two_tower (history + item ids + features, in-batch softmax) 0.3475; two_tower (time
buckets, hard extra negatives, a hidden layer, 5-item history samples) 0.365;
feature_tower classifying rating >= 4 with sampled negatives 0.3375; feature_mf bpr
0.31, bce from user features alone 0.3625. The regression variants rank by predicted
rating (accuracy="rating").
"""

from __future__ import annotations

import importlib.util

from tests.conformance.specs import ModelSpec

SPECS: list[ModelSpec] = []

if importlib.util.find_spec("torch") is not None:
    _fast = {"epochs": 20, "batch_size": 256, "seed": 0}
    _towers = {"user_layers": "64,32", "item_layers": "64,32", "epochs": 10,
               "batch_size": 256, "learning_rate": 0.003, "seed": 0}
    SPECS += [
        ModelSpec("two_tower", {"embedding_dim": 32, "learning_rate": 0.003, **_fast},
                  hit_rate_floor=0.26, history_matches_known_user=False),
        ModelSpec("two_tower", {"embedding_dim": 32, "learning_rate": 0.003,
                                "extra_negatives": "hard", "history_sample": 5,
                                "n_extra_negatives": 32, "time_buckets": 4, "layers": "64",
                                **_fast},
                  hit_rate_floor=0.26, history_matches_known_user=False),
        ModelSpec("feature_tower", _towers, accuracy="rating",
                  history_matches_known_user=False),
        ModelSpec("feature_tower", {**_towers, "task": "classification",
                                    "label_threshold": 4.0, "n_negatives": 2},
                  hit_rate_floor=0.26, history_matches_known_user=False),
        ModelSpec("feature_mf", {"loss": "bpr", **_fast}, hit_rate_floor=0.24,
                  history_matches_known_user=False),
        ModelSpec("feature_mf", {"loss": "bce", "user_vectors": "features", **_fast},
                  hit_rate_floor=0.28, history_matches_known_user=False),
        ModelSpec("feature_mf", _fast, accuracy="rating", history_matches_known_user=False),
    ]
