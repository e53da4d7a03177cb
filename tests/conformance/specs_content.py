"""Conformance specs of the content, co-visitation and graph-walk models (issue 3).

Measured leave-one-out hit rates@10 on taste_data(seed=0, n_users=400) when the floors
were set (popularity 0.25, random about 0.08, its 1 - 1e-3 quantile about 0.12): content
0.235, content centred 0.200, covisitation 0.300, covisitation forward/recent 0.293,
rp3beta 0.320, p3alpha 0.293, pagerank 0.275. Content ignores popularity, which is strong
inside each taste group here.
"""

from tests.conformance.specs import ModelSpec

SPECS = [
    ModelSpec("content", {}, hit_rate_floor=0.15),
    ModelSpec("content", {"weighting": "centred", "block_weights": {"description": 0.5}},
              hit_rate_floor=0.15),
    ModelSpec("covisitation", {}, hit_rate_floor=0.25),
    ModelSpec("covisitation", {"source": "histories", "normalization": "conditional",
                               "direction": "forward", "n_recent": 5, "recent_decay": 0.8},
              hit_rate_floor=0.2, history_matches_known_user=False),
    ModelSpec("rp3beta", {}, hit_rate_floor=0.28),
    ModelSpec("p3alpha", {"top_k": 50, "normalize_rows": True}, hit_rate_floor=0.25),
    ModelSpec("pagerank", {}, hit_rate_floor=0.22),
]
