"""Conformance specs of the neighbourhood models and the bias baseline.

Floors sit a little under the measured hit rates (item-kNN 0.31-0.35, user-kNN 0.36 on
the conformance data; random ranking ~0.07). user-kNN never counts a known user as their
own neighbour, so a history query (which may match that user's row) can differ from the
known-user query. The bias baseline ranks by mu + b_u + b_i, i.e. by item bias alone: it
is a rating predictor, not personalised for top-N, and measures 0.04-0.06 here (below
random, as it favours well-rated niche items): its accuracy is checked on held-out
ratings instead (``accuracy="rating"``).
"""

from __future__ import annotations

from tests.conformance.specs import ModelSpec

SPECS = [
    ModelSpec("item_knn", {"k": 20}, hit_rate_floor=0.25),
    ModelSpec("item_knn", {"similarity": "pearson_baseline", "k": 30, "shrinkage": 10.0,
                           "predict_k": 10}, hit_rate_floor=0.25),
    ModelSpec("item_knn", {"similarity": "cosine", "weighting": "bm25", "binary": True},
              hit_rate_floor=0.28),
    ModelSpec("user_knn", {"k": 20}, hit_rate_floor=0.28, history_matches_known_user=False),
    ModelSpec("user_knn", {"similarity": "jaccard", "k": 30, "rating_variant": "plain"},
              hit_rate_floor=0.28, history_matches_known_user=False),
    ModelSpec("bias", {}, accuracy="rating"),
    ModelSpec("bias", {"method": "damped", "reg_item": 5.0}, accuracy="rating"),
]
