"""Conformance specs of the rating-prediction factor models (SGD MF, SVD++, BPMF).

Per-user factors are learned by SGD/Gibbs sampling while a new user's are folded in, so a
known user's training history does not reproduce their list exactly
(``history_matches_known_user=False``). They rank by predicted rating, which favours
well-rated niche items: with Surprise-like defaults they score near random here (0.06);
the specs below learn the group structure (measured on the 400-user data: 0.1725 for
sgd_mf and bpmf, 0.19 for svdpp, 0.1775 for timesvdpp; random ~0.08, its 1 - 1e-3 quantile
~0.12) and the floors sit under that.
"""

from __future__ import annotations

from tests.conformance.specs import ModelSpec

SPECS = [
    ModelSpec("sgd_mf", {"n_factors": 8, "n_epochs": 50, "lr_factors": 0.02, "reg_bias": 1.0,
                         "seed": 0},
              hit_rate_floor=0.13, history_matches_known_user=False),
    ModelSpec("svdpp", {"n_factors": 8, "n_epochs": 50, "lr_factors": 0.02,
                        "lr_implicit": 0.02, "seed": 0},
              hit_rate_floor=0.14, history_matches_known_user=False),
    ModelSpec("timesvdpp", {"n_factors": 8, "n_epochs": 50, "lr_factors": 0.02,
                            "lr_implicit": 0.02, "seed": 0},
              hit_rate_floor=0.14, history_matches_known_user=False),
    ModelSpec("bpmf", {"n_factors": 8, "n_samples": 20, "burn_in": 5, "stored_samples": 5,
                       "seed": 0},
              hit_rate_floor=0.13, history_matches_known_user=False),
]
