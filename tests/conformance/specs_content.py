"""Conformance specs of the content, co-visitation and graph-walk models (issue 3).

Measured leave-one-out hit rates@10 on taste_data(seed=0) when the floors were set
(popularity 0.283, random about 0.07): content 0.200, content centred 0.158,
covisitation 0.342, covisitation forward/recent 0.267, rp3beta 0.367, p3alpha 0.333,
pagerank 0.292. Content ignores popularity, which is strong inside each taste group here.
"""

from tests.conformance.specs import ModelSpec

SPECS = [
    ModelSpec("content", {}, hit_rate_floor=0.15),
    ModelSpec("content", {"weighting": "centred", "block_weights": {"description": 0.5}},
              hit_rate_floor=0.12),
    ModelSpec("covisitation", {}, hit_rate_floor=0.25),
    ModelSpec("covisitation", {"source": "histories", "normalization": "conditional",
                               "direction": "forward", "n_recent": 5, "recent_decay": 0.8},
              hit_rate_floor=0.2, history_matches_known_user=False),
    ModelSpec("rp3beta", {}, hit_rate_floor=0.28),
    ModelSpec("p3alpha", {"top_k": 50, "normalize_rows": True}, hit_rate_floor=0.25),
    ModelSpec("pagerank", {}, hit_rate_floor=0.22),
]
