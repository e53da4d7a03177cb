"""Issue 11's top-N target on ML-1M: the project's best model or blend vs the best tuned peer.

Split: all ratings as implicit events, per-user random 80/20 (``holdout_per_user(data,
0.2, seed=42)``), full ranking with training items excluded, NDCG@10 through
``recoforge.evaluation.evaluate``: the protocol of ``bench_als_ease.py``, whose tuned
LensKit EASE (0.4397, taken from benchmarks/results/als_ease.md, not rerun here) is the
best tuned peer. The target is 1.03x that, 0.4529.

Every choice is made on a validation split carved from the training part
(``holdout_per_user(train, 0.2, seed=1)``, as bench_als_ease.py tunes), never the test:

1. EASE: the normalised EASE bench_als_ease.py selected, and around it its EDLAE form
   (``dropout`` p: lambda + p / (1 - p) G_jj on the Gram diagonal, Steck 2020) on top of
   the normalisation, on a small grid; the best validation row is kept.
2. Second models: Mult-VAE trained until the validation NDCG@10 stops improving (the
   epoch count is the best validation epoch; the model keeps that epoch's weights), and
   implicit ALS with bench_als_ease.py's tuned parameters.
3. Blends ``sum_m w_m z_m`` of per-user standardised scores (z over the whole catalogue),
   the weights on a grid of the simplex, chosen on validation.

The candidate with the best validation NDCG@10 (a single model or a blend) is then
refitted on the whole training part (Mult-VAE with the chosen epoch count) and scored once
on the test part; the other rows of the test table are shown for reference only.

Run::

    RECOFORGE_NUM_THREADS=2 python benchmarks/bench_blend.py

Writes benchmarks/results/blend.md (``--no-write`` to print only; ``--max-epochs`` caps
Mult-VAE's validation run).
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections.abc import Callable

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
COMMAND = "RECOFORGE_NUM_THREADS=2 python benchmarks/bench_blend.py"
#: normalised EASE as bench_als_ease.py tuned it, then EDLAE's dropout on top of it
EASE_BASE = {"regularization": 9.0, "user_norm": 0.5, "item_norm": 0.25,
             "popularity_exponent": 0.1}
EASE_GRID = [EASE_BASE] + [
    {**EASE_BASE, "regularization": lam, "dropout": p}
    for lam, p in itertools.product((5.0, 9.0), (0.1, 0.25, 0.5))] + [
    {"regularization": lam, "dropout": p} for lam, p in ((100.0, 0.25), (300.0, 0.25))]
MULT_VAE = {"learning_rate": 0.001, "batch_size": 500, "hidden_dim": 600, "latent_dim": 200,
            "dropout": 0.5, "anneal_cap": 0.2, "total_anneal_steps": 2000,
            "noise_scale": 0.01, "seed": 0}
ALS = {"n_factors": 64, "iterations": 15, "regularization": 50.0, "alpha": 3.0, "seed": 0}
MAX_EPOCHS, PATIENCE = 60, 10
#: what the exploration before this script found (same validation split, scratch code)
VERDICT = [
    "Verdict: normalised EASE is the ceiling of what was tried. On validation, EDLAE's "
    "dropout on top of the normalisation (table 1), a relaxed diagonal (RDLAE, Moon et al. "
    "2023: diag(B) <= xi), wider normalisation grids (user_norm 0.25-1, item_norm "
    "0.15-0.5), and higher-order EASE (Steck & Liang 2021, 3,000 most frequent item "
    "pairs) all stayed at or below 0.2636; as blend partners, Mult-VAE, implicit ALS "
    "(tables 2-3), rp3beta, item/user kNN, pure_svd, plain EASE and a user-side EASE add "
    "at most 0.0004. The blend's test gain over EASE alone (0.0011) is of that size, and "
    "1.03x is not reached."]
GRID_STEP = 0.1


class Frozen(Recommender):
    """A fitted model whose scores for its stored users are computed once (benchmark only:
    the blend grid re-reads them instead of re-scoring)."""

    name = "bench-frozen"

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model
        n_users = model.train_matrix_.shape[0]
        self.scores_ = np.vstack([model.score(users=np.arange(a, min(a + 1000, n_users)))
                                  for a in range(0, n_users, 1000)])

    def _fit(self, data) -> None:  # already fitted
        pass

    def _score(self, query: Query) -> np.ndarray:
        if query.stored and (query.users >= 0).all():
            return self.scores_[query.users]
        return np.asarray(self.model._score(query))


class Blend(Recommender):
    """Benchmark-only blend of fitted models' per-user standardised scores (not registered;
    the registered ``hybrid`` standardises over a sample of reference items instead)."""

    name = "bench-blend"

    def __init__(self, parts: list[Recommender], weights: list[float]) -> None:
        super().__init__()
        self.parts, self.weights = parts, weights

    def _fit(self, data) -> None:  # the parts are fitted by the caller
        pass

    def _score(self, query: Query) -> np.ndarray:
        total = np.zeros(query.history.shape, dtype=np.float64)
        for model, weight in zip(self.parts, self.weights):
            if weight == 0:
                continue
            scores = np.asarray(model._score(query), dtype=np.float64)
            mean = scores.mean(axis=1, keepdims=True)
            sd = scores.std(axis=1, keepdims=True)
            total += weight * (scores - mean) / np.maximum(sd, 1e-12)
        return total.astype(np.float32)


def ndcg(model: Recommender, split) -> float:
    return float(evaluate(model, split, k=[10], metrics=["ndcg"], check_data=False)
                 .summary["ndcg@10"])


def timed(make: Callable[[], Recommender]) -> tuple[Recommender, float]:
    start = time.perf_counter()
    model = make()
    return model, time.perf_counter() - start


def label(params: dict) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in params.items() if k != "seed")


def tune_ease(valid) -> tuple[dict, list[tuple[str, float]]]:
    rows = []
    for params in EASE_GRID:
        value = ndcg(rf.create("ease", **params).fit(valid.train), valid)
        rows.append((params, value))
        print(f"validation ease {label(params)}: {value:.4f}", flush=True)
    best = max(rows, key=lambda r: r[1])[0]
    return best, [(label(p), v) for p, v in rows]


def tune_vae(valid, max_epochs: int) -> tuple[Recommender, int, np.ndarray]:
    """Mult-VAE on the validation split's training part, stopped by validation NDCG@10;
    it keeps its best epoch's weights."""
    model = rf.create("mult_vae", epochs=max_epochs, patience=PATIENCE, **MULT_VAE)
    start = time.perf_counter()

    def check(fitted: Recommender) -> float:
        value = ndcg(fitted, valid)
        print(f"  mult_vae epoch {len(seen) + 1}: {value:.4f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
        seen.append(value)
        return value

    seen: list[float] = []
    model.fit(valid.train, validation=check)
    return model, int(model.best_epoch_) + 1, np.asarray(model.validation_history_)


def simplex(n: int) -> list[tuple[float, ...]]:
    """Weights on the simplex with step GRID_STEP, the first (EASE) weight >= 0.3."""
    steps = round(1 / GRID_STEP)
    grid = []
    for combo in itertools.product(range(steps + 1), repeat=n - 1):
        rest = steps - sum(combo)
        if rest >= 0.3 * steps:
            grid.append((rest * GRID_STEP, *(c * GRID_STEP for c in combo)))
    return grid


def tune_blends(parts: dict[str, Recommender], valid) -> list[tuple[str, tuple, float]]:
    frozen = {name: Frozen(model) for name, model in parts.items()}
    rows = []
    others = [n for n in parts if n != "ease"]
    for size in range(1, len(others) + 1):
        for chosen in itertools.combinations(others, size):
            names = ("ease", *chosen)
            for weights in simplex(len(names)):
                if min(weights) == 0:
                    continue
                blend = Blend([frozen[n] for n in names], list(weights)).fit(valid.train)
                rows.append((" + ".join(names), tuple(round(w, 2) for w in weights),
                             ndcg(blend, valid)))
                print(f"validation {rows[-1][0]} {rows[-1][1]}: {rows[-1][2]:.4f}", flush=True)
    return rows


def fit_final(train, ease_params: dict, vae_epochs: int) -> tuple[dict, dict]:
    parts, seconds = {}, {}
    parts["ease"], seconds["ease"] = timed(lambda: rf.create("ease", **ease_params).fit(train))
    parts["mult_vae"], seconds["mult_vae"] = timed(
        lambda: rf.create("mult_vae", epochs=vae_epochs, **MULT_VAE).fit(train))
    parts["implicit_als"], seconds["implicit_als"] = timed(
        lambda: rf.create("implicit_als", **ALS).fit(train))
    return parts, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--max-epochs", type=int, default=MAX_EPOCHS)
    args = parser.parse_args()
    began = time.perf_counter()
    data = load("ml-1m")
    split = holdout_per_user(data, 0.2, seed=42)
    valid = holdout_per_user(split.train, 0.2, seed=1)

    ease_params, ease_rows = tune_ease(valid)
    vae, vae_epochs, vae_history = tune_vae(valid, args.max_epochs)
    parts = {"ease": rf.create("ease", **ease_params).fit(valid.train), "mult_vae": vae,
             "implicit_als": rf.create("implicit_als", **ALS).fit(valid.train)}
    singles = {name: ndcg(model, valid) for name, model in parts.items()}
    blends = tune_blends(parts, valid)
    candidates = [(name, (1.0,), value) for name, value in singles.items()] + blends
    chosen = max(candidates, key=lambda r: r[2])

    final, seconds = fit_final(split.train, ease_params, vae_epochs)
    test = {name: ndcg(model, split) for name, model in final.items()}
    names = chosen[0].split(" + ")
    if len(names) > 1:
        blend = Blend([final[n] for n in names], list(chosen[1])).fit(split.train)
        test[f"{chosen[0]} {chosen[1]}"] = ndcg(blend, split)
    result = test[chosen[0] if len(names) == 1 else f"{chosen[0]} {chosen[1]}"]
    report(args, ease_rows, ease_params, vae_epochs, vae_history, singles, blends, chosen,
           test, result, seconds, time.perf_counter() - began)


def report(args, ease_rows, ease_params, vae_epochs, vae_history, singles, blends, chosen,
           test, result, seconds, total_s) -> None:
    top_blends = sorted(blends, key=lambda r: -r[2])[:12]
    history = ", ".join(f"{i + 1}: {v:.4f}" for i, v in enumerate(vae_history)
                        if (i + 1) % 10 == 0 or i + 1 == vae_epochs)
    target = 1.03 * PEER
    lines = [
        "# Best top-N model or blend vs the best tuned peer (ML-1M, issue 11)", "",
        f"Machine: {machine()} (shared with other jobs). Command: `{COMMAND}` "
        f"({total_s / 60:.0f} min in all). Protocol: bench_als_ease.py's (all ratings as "
        "implicit events, seed-42 per-user 80/20, full ranking with training items "
        "excluded, NDCG@10 by `recoforge.evaluation.evaluate`). Every choice below is made "
        "on the validation split `holdout_per_user(train, 0.2, seed=1)`; the chosen "
        "candidate is refitted on the whole training part and scored once on the test "
        "part. The peer figure, LensKit EASE tuned the same way (0.4397), is from "
        "benchmarks/results/als_ease.md (not rerun here). Validation NDCG is lower than "
        "test NDCG: a validation user's test items are neither in the training part nor "
        "relevant, yet the models (rightly) rank them high.", "",
        "## 1. EASE / EDLAE (validation)", "",
        "| params | NDCG@10 (validation) |", "| --- | --- |",
        *[f"| {p} | {v:.4f} |" for p, v in ease_rows], "",
        f"Chosen: {label(ease_params)}.", "",
        "## 2. Second models (validation)", "",
        f"Mult-VAE ({label(MULT_VAE)}), validation NDCG@10 by epoch (every 10th, and the "
        f"best): {history}. Best epoch {vae_epochs} (patience {PATIENCE}, at most "
        f"{args.max_epochs}). implicit_als: {label(ALS)}.", "",
        "| model | NDCG@10 (validation) |", "| --- | --- |",
        *[f"| {n} | {v:.4f} |" for n, v in singles.items()], "",
        "## 3. Blends (validation; best 12 of "
        f"{len(blends)}, weights in the order of the names)", "",
        "| blend | weights | NDCG@10 (validation) |", "| --- | --- | --- |",
        *[f"| {n} | {w} | {v:.4f} |" for n, w, v in top_blends], "",
        f"Chosen on validation: {chosen[0]}"
        f"{f' {chosen[1]}' if '+' in chosen[0] else ''} ({chosen[2]:.4f}).", "",
        "## Test (scored once; only the chosen row is the result)", "",
        "| model | NDCG@10 | ratio to LensKit EASE 0.4397 |", "| --- | --- | --- |",
        *[f"| {n} | {v:.4f} | {v / PEER:.3f}x |" for n, v in test.items()], "",
        "Fit seconds on the training part (shared machine): "
        + ", ".join(f"{n} {s:.1f}" for n, s in seconds.items()) + ".", "",
        f"Target 1.03x ({target:.4f}): {'holds' if result >= target else 'not met'} "
        f"(chosen candidate {result:.4f}, {result / PEER:.3f}x).", "", *VERDICT]
    write_report(lines, args)


if __name__ == "__main__":
    main()
