"""Issue 11's top-N target on ML-1M: the project's best model or blend vs the best tuned peer.

Split: all ratings as implicit events, per-user random 80/20 (``holdout_per_user(data,
0.2, seed=42)``), full ranking with training items excluded, NDCG@10 through
``recoforge.evaluation.evaluate``: the protocol of ``bench_als_ease.py``, whose tuned
LensKit EASE (0.4397) is the best tuned peer. The target is 1.03x that, 0.4529.

Candidates, all chosen on a validation split carved from the training part
(``holdout_per_user(train, 0.2, seed=1)``, as bench_als_ease.py tunes), never the test:

- normalised EASE with the parameters bench_als_ease.py selected on that validation split;
- RecVAE with the ``b500`` settings of bench_neural_vae.py (epochs picked on validation);
- a score blend ``w * z(EASE) + (1 - w) * z(RecVAE)`` of per-user standardised scores,
  ``w`` chosen on validation from a grid; then both models are refitted on the whole
  training part and the blend is scored once on the test part.

Run::

    RECOFORGE_NUM_THREADS=2 python benchmarks/bench_blend.py

Writes benchmarks/results/blend.md (``--no-write`` to print only).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_als_ease import load
from bench_rating_mf import ROOT, machine, write_report

import recoforge as rf
from recoforge.data.split import holdout_per_user
from recoforge.evaluation import evaluate
from recoforge.models.base import Recommender
from recoforge.models.query import Query

RESULTS = ROOT / "benchmarks" / "results" / "blend.md"
PEER = 0.4397  # LensKit EASE, tuned, benchmarks/results/als_ease.md (ML-1M)
EASE = {"regularization": 9.0, "user_norm": 0.5, "item_norm": 0.25,
        "popularity_exponent": 0.1}
RECVAE = {"epochs": 8, "learning_rate": 0.001, "batch_size": 500, "hidden_dim": 600,
          "latent_dim": 200, "dropout": 0.5, "beta": 0.2, "gamma": 0.005, "seed": 0}
WEIGHTS = (0.0, 0.2, 0.35, 0.5, 0.65, 0.8, 1.0)


class Blend(Recommender):
    """Benchmark-only blend of fitted models' per-user standardised scores (not registered:
    hybrids are issue 12's)."""

    name = "bench-blend"

    def __init__(self, parts: list[Recommender], weights: list[float]) -> None:
        super().__init__()
        self.parts, self.weights = parts, weights

    def _fit(self, data) -> None:  # the parts are fitted by the caller
        pass

    def _score(self, query: Query) -> np.ndarray:
        total = np.zeros(query.history.shape, dtype=np.float64)
        for model, weight in zip(self.parts, self.weights):
            scores = np.asarray(model._score(query), dtype=np.float64)
            mean = scores.mean(axis=1, keepdims=True)
            sd = scores.std(axis=1, keepdims=True)
            total += weight * (scores - mean) / np.maximum(sd, 1e-12)
        return total.astype(np.float32)


def ndcg(model: Recommender, split) -> float:
    return float(evaluate(model, split, k=[10], metrics=["ndcg"], check_data=False)
                 .summary["ndcg@10"])


def fit_parts(train):
    start = time.perf_counter()
    ease = rf.create("ease", **EASE).fit(train)
    middle = time.perf_counter()
    recvae = rf.create("recvae", **RECVAE).fit(train)
    return ease, recvae, middle - start, time.perf_counter() - middle


def blended(parts, weight, train) -> Blend:
    blend = Blend(list(parts), [weight, 1.0 - weight]).fit(train)
    return blend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    data = load("ml-1m")
    split = holdout_per_user(data, 0.2, seed=42)
    valid = holdout_per_user(split.train, 0.2, seed=1)
    ease, recvae, _, _ = fit_parts(valid.train)
    rows = []
    for weight in WEIGHTS:
        rows.append((weight, ndcg(blended((ease, recvae), weight, valid.train), valid)))
        print(f"validation w={weight}: {rows[-1][1]:.4f}", flush=True)
    best_w = max(rows, key=lambda r: r[1])[0]
    ease, recvae, ease_s, recvae_s = fit_parts(split.train)
    test = {"ease": ndcg(ease, split), "recvae": ndcg(recvae, split),
            f"blend (w={best_w})": ndcg(blended((ease, recvae), best_w, split.train), split)}
    best = max(test.values())
    lines = ["# Best top-N model or blend vs the best tuned peer (ML-1M, issue 11)", "",
             f"Machine: {machine()}. Command: `RECOFORGE_NUM_THREADS=2 python "
             f"benchmarks/bench_blend.py`. Protocol: bench_als_ease.py's (seed-42 per-user "
             f"80/20, full ranking, NDCG@10); the blend weight chosen on the validation "
             f"split `holdout_per_user(train, 0.2, seed=1)`.", "",
             "Validation (blend weight w on EASE, 1 - w on RecVAE):", "",
             "| w | NDCG@10 (validation) |", "| --- | --- |",
             *[f"| {w} | {v:.4f} |" for w, v in rows], "",
             "Test:", "", "| model | NDCG@10 | ratio to LensKit EASE 0.4397 |",
             "| --- | --- | --- |",
             *[f"| {name} | {value:.4f} | {value / PEER:.3f}x |" for name, value in test.items()],
             "", f"Fit seconds on the training part: EASE {ease_s:.1f}, RecVAE {recvae_s:.1f}.",
             "", f"Target 1.03x ({1.03 * PEER:.4f}): "
             f"{'holds' if best >= 1.03 * PEER else 'not met'} (best {best:.4f}, "
             f"{best / PEER:.3f}x).", ""]
    write_report(lines, args)


if __name__ == "__main__":
    main()
