"""Conformance specs of the factorisation-machine family (extra ``deep``; empty without
torch): fm, ffm, nfm, deepfm, wide_deep over the user id, item id and the taste data's
user (taste, noise) and item (group, description) feature fields.

Users have an id embedding, folded in for new histories, so a known user's training
history does not reproduce their list exactly (``history_matches_known_user=False``).
Measured on the 400-user conformance data (random ~0.08, its 1 - 1e-3 quantile ~0.12),
these parameters: fm 0.3575, ffm 0.2825, nfm 0.32, deepfm 0.34, wide_deep 0.3625 (without
its user id: the taste feature then carries the user side, which test_features.py checks).
"""

from __future__ import annotations

import importlib.util

from tests.conformance.specs import ModelSpec

SPECS: list[ModelSpec] = []

if importlib.util.find_spec("torch") is not None:
    _SMALL = {"embedding_dim": 8, "epochs": 10, "batch_size": 256, "learning_rate": 0.01,
              "n_negatives": 4, "seed": 0}
    SPECS += [
        ModelSpec("fm", _SMALL, hit_rate_floor=0.22, history_matches_known_user=False),
        ModelSpec("ffm", _SMALL, hit_rate_floor=0.2, history_matches_known_user=False),
        ModelSpec("nfm", {**_SMALL, "layers": "16"}, hit_rate_floor=0.22,
                  history_matches_known_user=False),
        ModelSpec("deepfm", {**_SMALL, "layers": "32,16"}, hit_rate_floor=0.22,
                  history_matches_known_user=False),
        ModelSpec("wide_deep", {**_SMALL, "layers": "32,16", "dropout": 0.0, "epochs": 20,
                                "user_id": False}, hit_rate_floor=0.22,
                  history_matches_known_user=False),
        ModelSpec("wide_deep", {**_SMALL, "layers": "32,16", "dropout": 0.0, "epochs": 20,
                                "crosses": "all"}, hit_rate_floor=0.22,
                  history_matches_known_user=False),
    ]
