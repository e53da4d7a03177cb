"""Rating-prediction factor models (sgd_mf, svdpp, bpmf) against Surprise, same split.

For each dataset: a global random 80/20 split of the ratings (``holdout_global``, seed 42).
Every model is fitted on the 80% and predicts every test rating; RMSE and MAE over all test
pairs (a pair whose user or item has no training rating gets mu + b_i, or mu, as Surprise
does; their number is reported); fit time is the wall time of ``fit`` alone (Surprise:
``algo.fit(trainset)``, trainset built beforehand; recoforge: numba kernels compiled and
cached beforehand).

Parts:

1. Same settings: ``sgd_mf`` and Surprise ``SVD`` (100 factors, 20 epochs, lr 0.005, reg
   0.02, init std 0.1), ``svdpp`` and Surprise ``SVDpp`` (20 factors, 20 epochs, lr
   0.007, reg 0.02). Fit times are the median of ``--repeats`` runs (Surprise SVD++: one).
2. Tuned: hyperparameters chosen by RMSE on a validation split carved from the training
   part only (``holdout_global(train, 0.1, seed=1)``), then refitted on the whole training
   part and scored once on the test part. Surprise SVD is tuned over n_factors, lr, reg
   (and epochs); the best tuned peer is the better of it and Surprise SVD++ at defaults.

Run (opt-in; needs scikit-surprise, e.g. in a separate venv)::

    python3 -m venv /tmp/ratingpeers && /tmp/ratingpeers/bin/pip install scikit-surprise \\
        tabulate && /tmp/ratingpeers/bin/pip install -e .
    /tmp/ratingpeers/bin/python benchmarks/bench_rating_mf.py [--datasets ml-100k,ml-1m]

Writes benchmarks/results/rating_mf.md (``--no-write`` to print only).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

import recoforge as rf
from recoforge.data import Dataset
from recoforge.data.movielens import load_movielens
from recoforge.data.split import Split, holdout_global

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "rating_mf.md"

SAME_SETTINGS = [
    ("sgd_mf", {"n_factors": 100, "n_epochs": 20, "seed": 0}, "SVD",
     {"n_factors": 100, "n_epochs": 20}),
    ("sgd_mf", {"n_factors": 100, "n_epochs": 20, "n_threads": 2, "seed": 0}, None, None),
    ("svdpp", {"n_factors": 20, "n_epochs": 20, "seed": 0}, "SVDpp",
     {"n_factors": 20, "n_epochs": 20}),
    ("svdpp", {"n_factors": 20, "n_epochs": 20, "n_threads": 2, "seed": 0}, None, None),
]

#: validation grids (name -> parameter dicts); seed fixed
GRIDS: dict[str, list[dict]] = {
    "sgd_mf": [{"n_factors": f, "n_epochs": e, "lr_factors": lr, "lr_bias": lr,
                "reg_factors": reg, "seed": 0}
               for f, e, lr, reg in itertools.product((100, 200), (40, 80), (0.005,),
                                                      (0.04, 0.06))],
    "svdpp": [{"n_factors": f, "n_epochs": e, "lr_factors": lr, "lr_bias": lr,
               "lr_implicit": lr, "reg_factors": reg, "reg_implicit": reg, "seed": 0}
              for f, e, lr, reg in itertools.product((50, 100), (40,), (0.005,),
                                                     (0.04, 0.06))],
    "bpmf": [{"n_factors": f, "n_samples": s, "burn_in": 20, "seed": 0}
             for f, s in itertools.product((16, 32), (80,))],
    # svdpp's grid, times two strengths of the day terms (bench_time_mf.py, ML-100K)
    "timesvdpp": [{"n_factors": f, "n_epochs": e, "lr_factors": lr, "lr_bias": lr,
                   "lr_implicit": lr, "reg_factors": reg, "reg_implicit": reg,
                   "reg_day": reg_day, "seed": 0}
                  for f, e, lr, reg, reg_day in itertools.product((50, 100), (40,), (0.005,),
                                                                  (0.04, 0.06), (0.05, 0.2))],
}
PEER_GRID = [{"n_factors": f, "n_epochs": e, "lr_all": lr, "reg_all": reg}
             for f, e, lr, reg in itertools.product((50, 100, 200), (20, 40), (0.005, 0.01),
                                                    (0.05, 0.1))]


# ---------------------------------------------------------------------- data
def load(name: str) -> Dataset:
    variant = {"ml-100k": "100k", "ml-1m": "1m"}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ML-1M's reconstructed timestamps
        return load_movielens(variant, DATASETS / name)


def pairs(test) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, item ids, ratings) of held-out interactions."""
    return (test.user_index.ids[test.users], test.item_index.ids[test.items],
            np.asarray(test.values, dtype=np.float64))


def scores(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    err = predicted - actual
    return float(np.sqrt(np.mean(err ** 2))), float(np.mean(np.abs(err)))


# ---------------------------------------------------------------------- recoforge
def predict_all(model, users, items, times=None) -> tuple[np.ndarray, int]:
    """Predictions for every pair; unknown users/items get mu + b_i (or mu), as Surprise.

    ``times`` (epoch seconds of the pairs) reach time-aware models (timesvdpp) only.
    """
    pred = model.predict(users, items, unknown="nan", times=times)
    missing = ~np.isfinite(pred)
    if missing.any():
        item_idx = model.item_index_.to_index(list(items[missing]), unknown="ignore")
        fill = np.full(missing.sum(), model.global_bias_, dtype=np.float64)
        known = item_idx >= 0
        fill[known] += model.item_bias_[item_idx[known]]
        pred[missing] = np.clip(fill, model.rating_min_, model.rating_max_)
    return pred, int(missing.sum())


def run_ours(name: str, params: dict, train: Dataset, test) -> dict:
    model = rf.create(name, **params)
    start = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - start
    times = test.timestamps if model.uses_time else None
    pred, n_missing = predict_all(model, *pairs(test)[:2], times)
    rmse, mae = scores(pred, pairs(test)[2])
    return {"fit_s": seconds, "rmse": rmse, "mae": mae, "fallback_pairs": n_missing}


# ---------------------------------------------------------------------- Surprise
def surprise_trainset(train: Dataset):
    from surprise import Dataset as SurpriseDataset
    from surprise import Reader

    frame = train.interactions.to_frame()[["user", "item", "value"]]
    frame = frame.astype({"user": str, "item": str})
    return SurpriseDataset.load_from_df(frame, Reader(rating_scale=(1, 5))).build_full_trainset()


def run_peer(algo_name: str, params: dict, trainset, test, seed: int = 0) -> dict:
    import surprise

    algo = getattr(surprise, algo_name)(random_state=seed, **params)
    start = time.perf_counter()
    algo.fit(trainset)
    seconds = time.perf_counter() - start
    users, items, actual = pairs(test)
    pred = np.array([algo.predict(str(u), str(i)).est for u, i in zip(users, items)])
    rmse, mae = scores(pred, actual)
    return {"fit_s": seconds, "rmse": rmse, "mae": mae}


# ---------------------------------------------------------------------- parts
def median_of(repeats: int, fn: Callable[..., dict], *args) -> dict:
    runs = [fn(*args) for _ in range(repeats)]
    out = dict(runs[-1])
    out["fit_s"] = float(np.median([r["fit_s"] for r in runs]))
    return out


def paired_runs(repeats: int, ours: Callable[[], dict], theirs: Callable[[], dict]
                ) -> tuple[dict, dict, float]:
    """Alternate our fit and the peer's ``repeats`` times (machine drift hits both alike);
    medians of each, and the median of the per-pair fit-time ratios."""
    pairs_ = [(ours(), theirs()) for _ in range(repeats)]
    ratio = float(np.median([o["fit_s"] / t["fit_s"] for o, t in pairs_]))
    medians = []
    for side in (0, 1):
        out = dict(pairs_[-1][side])
        out["fit_s"] = float(np.median([pair[side]["fit_s"] for pair in pairs_]))
        medians.append(out)
    return medians[0], medians[1], ratio


def same_settings(split: Split, trainset, repeats: int, skip_svdpp_peer: bool) -> list[dict]:
    rows = []
    for name, params, peer, peer_params in SAME_SETTINGS:
        if peer is None or (peer == "SVDpp" and skip_svdpp_peer):
            ours = median_of(repeats, run_ours, name, params, split.train, split.test)
            rows.append({"model": f"recoforge {name}", "params": params, **ours})
            continue
        reps = 1 if peer == "SVDpp" else repeats
        ours, theirs, ratio = paired_runs(
            reps, functools.partial(run_ours, name, params, split.train, split.test),
            functools.partial(run_peer, peer, peer_params, trainset, split.test))
        rows.append({"model": f"recoforge {name}", "params": params, **ours,
                     "note": f"fit-time ratio to Surprise {peer}: {ratio:.3f}"})
        rows.append({"model": f"Surprise {peer}", "params": peer_params, **theirs})
    return rows


def seed_spread(split: Split, trainset, seeds: int) -> str:
    """SVD++ RMSE over ``seeds`` seeds for both libraries (a single seed is a lottery:
    Surprise SVDpp's test RMSE on ML-100K moves by about 0.002 between seeds)."""
    lines = ["| model | seeds | RMSE mean | RMSE sd | min | max |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, run in (
            ("recoforge svdpp", lambda s: run_ours("svdpp", {"n_factors": 20, "n_epochs": 20,
                                                             "seed": s}, split.train, split.test)),
            ("Surprise SVDpp", lambda s: run_peer("SVDpp", {"n_factors": 20, "n_epochs": 20},
                                                  trainset, split.test, seed=s))):
        rmse = np.array([run(s)["rmse"] for s in range(seeds)])
        lines.append(f"| {label} | {seeds} | {rmse.mean():.4f} | {rmse.std(ddof=1):.4f} | "
                     f"{rmse.min():.4f} | {rmse.max():.4f} |")
    return "\n".join(lines)


def tune(split: Split, models: list[str], log: Callable[[str], None]) -> list[dict]:
    """Pick each model's params on a validation split of train; refit; score on test."""
    inner = holdout_global(split.train, 0.1, seed=1)
    inner_trainset = surprise_trainset(inner.train)
    rows = []
    candidates = [(m, GRIDS[m], run_ours) for m in models if m in rf.available_models()]
    candidates.append(("Surprise SVD", PEER_GRID, None))
    for label, grid, _ in candidates:
        best = None
        for params in grid:
            if label.startswith("Surprise"):
                res = run_peer("SVD", params, inner_trainset, inner.test)
            else:
                res = run_ours(label, params, inner.train, inner.test)
            log(f"  validation {label} {params}: rmse {res['rmse']:.4f} ({res['fit_s']:.1f}s)")
            if best is None or res["rmse"] < best[1]:
                best = (params, res["rmse"])
        params = best[0]
        if label.startswith("Surprise"):
            res = run_peer("SVD", params, surprise_trainset(split.train), split.test)
            model_label = "Surprise SVD (tuned)"
        else:
            res = run_ours(label, params, split.train, split.test)
            model_label = f"recoforge {label} (tuned)"
        rows.append({"model": model_label, "params": params, "validation_rmse": best[1], **res})
        log(f"{model_label}: {params} test rmse {res['rmse']:.4f}")
    return rows


# ---------------------------------------------------------------------- report
def table(rows: list[dict], tuned: bool = False) -> str:
    head = "| model | params | fit s | RMSE | MAE |"
    sep = "|---|---|---:|---:|---:|"
    if tuned:
        head, sep = head + " validation RMSE |", sep + "---:|"
    lines = [head, sep]
    notes = [f"- {r['model']} ({', '.join(f'{k}={v}' for k, v in r['params'].items())}): "
             f"{r['note']} (median of paired runs)" for r in rows if "note" in r]
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "seed")
        line = f"| {r['model']} | {params} | {r['fit_s']:.2f} | {r['rmse']:.4f} | {r['mae']:.4f} |"
        if tuned:
            line += f" {r['validation_rmse']:.4f} |"
        lines.append(line)
    return "\n".join(lines + ([""] + notes if notes else []))


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    return (f"{platform.system()} {platform.release()}, {cpu}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}")


def write_report(sections: list[str], args: argparse.Namespace) -> None:
    """Join the sections, write them to ``--out`` (unless ``--no-write``) and print them."""
    report = "\n".join(sections)
    if not args.no_write:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report)
    print(report)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tune", default="sgd_mf,svdpp,bpmf",
                        help="models tuned on ML-1M's validation split ('' to skip)")
    parser.add_argument("--skip-svdpp-peer", action="store_true",
                        help="skip Surprise SVDpp (about 3 minutes on ML-1M)")
    parser.add_argument("--seeds", type=int, default=5,
                        help="seeds of the ML-100K SVD++ spread table (1 to skip)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", default=str(RESULTS), help="markdown file written")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, flush=True)

    # compile and cache the numba kernels outside the timings
    warm = holdout_global(load("ml-100k"), 0.2, seed=42)
    for name, params, *_ in SAME_SETTINGS:
        run_ours(name, {**params, "n_epochs": 1}, warm.train, warm.test)

    sections = [f"# Rating-prediction factor models vs Surprise\n\n"
                f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
                f"- machine: {machine()}\n"
                f"- load average before the run: {os.getloadavg()[0]:.2f}\n"
                f"- command: `python benchmarks/bench_rating_mf.py "
                f"--datasets {args.datasets} --repeats {args.repeats}`\n"
                f"- split: holdout_global(test_fraction=0.2, seed=42); RMSE/MAE over all "
                f"test pairs; fit time = median of {args.repeats} fits, ours and the peer's "
                f"alternating (Surprise SVDpp: 1)\n"]
    for name in args.datasets.split(","):
        data = load(name)
        split = holdout_global(data, 0.2, seed=42)
        log(f"{name}: {split}")
        trainset = surprise_trainset(split.train)
        rows = same_settings(split, trainset, args.repeats, args.skip_svdpp_peer)
        fallback = max(r.get("fallback_pairs", 0) for r in rows)
        text = table(rows)
        log(text)
        sections.append(f"## {name}: same settings\n\n{text}\n\nTest pairs whose user or "
                        f"item has no training rating (predicted mu + b_i): {fallback}; "
                        f"load average after: {os.getloadavg()[0]:.2f}\n")
        if name == "ml-100k" and args.seeds > 1:
            text = seed_spread(split, trainset, args.seeds)
            log(text)
            sections.append(f"## {name}: SVD++ over seeds 0..{args.seeds - 1} (same settings)"
                            f"\n\n{text}\n")
        if name == "ml-1m" and args.tune:
            rows = tune(split, [m for m in args.tune.split(",") if m], log)
            text = table(rows, tuned=True)
            log(text)
            sections.append(f"## {name}: tuned on a validation split of train "
                            f"(holdout_global(train, 0.1, seed=1))\n\n{text}\n\n"
                            f"load average after: {os.getloadavg()[0]:.2f}\n")
    write_report(sections, args)


if __name__ == "__main__":
    main()
