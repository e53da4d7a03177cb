"""Conformance specs of the sampled ranking factor models (BPR, logistic MF, WARP).

Measured leave-one-out hit rates@10 on the conformance data with these parameters, seeds
0-2: BPR 0.28-0.29, BPR with hard negatives 0.28-0.31, logistic MF 0.32-0.34, WARP
0.30-0.33 (random ranking ~0.07, popularity ~0.15); floors sit below the lowest. The data
is tiny (about 1,600 interactions), so these models overfit quickly: few epochs. Users
have their own factors, so a known user's training history folded in as a new user gives
a vector fitted afresh (measured top-10 overlap with the trained user's list 0.74-0.94),
not the trained one. ``n_threads=1``: exactly reproducible under the seed (more threads
are Hogwild and vary in the last digits).
"""

from __future__ import annotations

from tests.conformance.specs import ModelSpec

_COMMON = {"n_factors": 16, "n_epochs": 20, "learning_rate": 0.05, "n_threads": 1, "seed": 0}

SPECS = [
    ModelSpec("bpr", _COMMON, hit_rate_floor=0.22, history_matches_known_user=False),
    ModelSpec("bpr", {**_COMMON, "negative_sampling": "hard", "learning_rate": 0.02},
              hit_rate_floor=0.22, history_matches_known_user=False),
    ModelSpec("logistic_mf", _COMMON, hit_rate_floor=0.25, history_matches_known_user=False),
    ModelSpec("warp", {**_COMMON, "n_epochs": 10, "learning_rate": 0.01}, hit_rate_floor=0.22,
              history_matches_known_user=False),
]
