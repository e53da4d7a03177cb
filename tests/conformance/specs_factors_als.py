"""Conformance specs of PureSVD, EASE and ALS (explicit and implicit).

Measured leave-one-out hit rates@10 on the 400-user conformance data (random ranking
~0.08, its 1 - 1e-3 quantile ~0.12): EASE 0.26-0.29, PureSVD 0.27-0.29, implicit ALS 0.28
(CG) / 0.17 (Cholesky, alpha=40), explicit ALS 0.18-0.23 (a rating model: it ranks by
predicted rating, which favours well-rated niche items). Floors sit below these. ALS
models learn per-user factors, so a history query (folded in against the fixed item
factors) need not equal the known-user query; PureSVD's user factors are exactly the
projection r V, and EASE has no user state.
"""

from __future__ import annotations

from tests.conformance.specs import ModelSpec

SPECS = [
    ModelSpec("pure_svd", {"n_factors": 10, "seed": 0}, hit_rate_floor=0.15),
    ModelSpec("pure_svd", {"n_factors": 8, "centering": "user", "solver": "randomized",
                           "seed": 0}, hit_rate_floor=0.2),
    ModelSpec("ease", {"regularization": 10.0}, hit_rate_floor=0.25),
    ModelSpec("ease", {"regularization": 50.0, "binary": False, "precision": "float64"},
              hit_rate_floor=0.2),
    ModelSpec("implicit_als", {"n_factors": 8, "iterations": 8, "alpha": 5.0,
                               "regularization": 0.5, "seed": 0},
              hit_rate_floor=0.15, history_matches_known_user=False),
    ModelSpec("implicit_als", {"n_factors": 8, "iterations": 5, "solver": "cholesky",
                               "seed": 0},
              hit_rate_floor=0.13, history_matches_known_user=False),
    ModelSpec("als", {"n_factors": 8, "iterations": 8, "seed": 0}, hit_rate_floor=0.14,
              history_matches_known_user=False),
    ModelSpec("als", {"n_factors": 8, "iterations": 8, "biases": False, "solver": "cg",
                      "seed": 0}, hit_rate_floor=0.18, history_matches_known_user=False),
]
