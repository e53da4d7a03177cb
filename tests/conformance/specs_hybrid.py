"""Conformance specs of the hybrid model (issue 12): each mode over history components.

Leave-one-out hit rates@10 on taste_data(seed=0, n_users=400) when the floors were set:
tuned weighted ease+content 0.358 (ease alone 0.298, content 0.235), stacking 0.355,
switching item_knn/content 0.353; feature_popularity 0.253 (popularity 0.25); random
ranking about 0.08.
"""

from tests.conformance.specs import ModelSpec

SPECS = [
    ModelSpec("hybrid", {"components": "ease;content", "seed": 0}, hit_rate_floor=0.25),
    ModelSpec("hybrid", {"components": "item_knn(k=20);content", "mode": "stacking",
                         "segmented": True, "normalization": "minmax", "seed": 0},
              hit_rate_floor=0.2),
    ModelSpec("hybrid", {"components": "item_knn(k=20);content", "mode": "switching",
                         "switch_on": "items", "threshold": 2, "seed": 0},
              hit_rate_floor=0.2),
    ModelSpec("hybrid", {"components": "pure_svd(n_factors=8);content", "mode": "augmented",
                         "seed": 0}, hit_rate_floor=0.15),
    ModelSpec("hybrid", {"components": "bpr(seed=0);popularity", "weights": [0.7, 0.3],
                         "seed": 0}, hit_rate_floor=0.15, history_matches_known_user=False),
    ModelSpec("hybrid", {"components": "ease;content;feature_popularity", "mode": "stacking",
                         "cold_items": True, "cold_fraction": 0.2, "seed": 0},
              hit_rate_floor=0.25),
    ModelSpec("feature_popularity", {}, hit_rate_floor=0.2),
]
