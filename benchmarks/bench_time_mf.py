"""timeSVD++ (timesvdpp) against SVD++ (ours and Surprise's) on MovieLens 100K and 1M.

The protocol and helpers are bench_rating_mf.py's: a global random 80/20 split of the
ratings (``holdout_global``, seed 42); every model predicts every test rating, timesvdpp at
the rating's own time; RMSE and MAE over all test pairs; fit time = wall time of ``fit``
(numba kernels compiled beforehand; Surprise's trainset built beforehand).

Parts:

1. Same settings: timesvdpp, svdpp and Surprise ``SVDpp`` with 20 factors, 20 epochs and
   Surprise's SVD++ rates (lr 0.007, reg 0.02); timesvdpp's time terms at their defaults.
   Fit times are the median of ``--repeats`` runs (Surprise SVDpp: one).
2. Tuned: timesvdpp and svdpp over the same grid (timesvdpp also over two strengths of its
   day terms), and Surprise SVD over bench_rating_mf.py's grid, chosen by RMSE on a
   validation split carved from the training part (``holdout_global(train, 0.1, seed=1)``),
   refitted on the whole training part and scored once on the test part.

ML-1M: the local ``ratings.csv`` has 199,435 empty timestamps, all of users 3000-6040 (see
../shared/datasets/README.md), so the time models run on ``ml-1m-early``: the users with
ids below 3000 (the earlier sign-ups, every timestamp present; about 0.49M ratings). The
subset is chosen by user id, not by which timestamps survived, so it is not biased towards
any kind of rating.

Run (opt-in; needs scikit-surprise, see bench_rating_mf.py)::

    /tmp/ratingpeers/bin/python benchmarks/bench_time_mf.py [--datasets ml-100k,ml-1m-early]

Writes benchmarks/results/time_mf.md (``--no-write`` to print only).
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
from bench_rating_mf import (
    DATASETS,
    ROOT,
    load,
    machine,
    median_of,
    run_ours,
    run_peer,
    surprise_trainset,
    table,
    tune,
    write_report,
)

from recoforge.data import Dataset
from recoforge.data.split import holdout_global

RESULTS = ROOT / "benchmarks" / "results" / "time_mf.md"
#: ML-1M users below this id have every timestamp in the local ratings.csv
EARLY_USERS = 3000
SAME = {"n_factors": 20, "n_epochs": 20, "seed": 0}
PEER_SAME = {"n_factors": 20, "n_epochs": 20}


def load_time_dataset(name: str) -> Dataset:
    """ML-100K as shipped, or ``ml-1m-early``: ML-1M's users with ids below 3000."""
    if name == "ml-100k":
        return load(name)
    if name != "ml-1m-early":
        raise SystemExit(f"unknown dataset {name!r}; use ml-100k or ml-1m-early")
    frame = pd.read_csv(DATASETS / "ml-1m" / "ratings.csv")
    frame = frame[frame["user_id"] < EARLY_USERS]
    return Dataset.from_frame(frame, name=name, user_col="user_id", item_col="movie_id",
                              rating_col="rating", timestamp_col="timestamp")


def run_dataset(name: str, args: argparse.Namespace, log) -> list[str]:
    split = holdout_global(load_time_dataset(name), 0.2, seed=42)
    log(f"{name}: {split}")
    rows = []
    for model in ("timesvdpp", "svdpp"):
        result = median_of(args.repeats, run_ours, model, SAME, split.train, split.test)
        rows.append({"model": f"recoforge {model}", "params": SAME, **result})
        log(f"{model}: {result}")
    peer = run_peer("SVDpp", PEER_SAME, surprise_trainset(split.train), split.test)
    rows.append({"model": "Surprise SVDpp", "params": PEER_SAME, **peer})
    fallback = max(r.get("fallback_pairs", 0) for r in rows)
    same = table(rows)
    log(same)
    sections = [f"## {name}: same settings (20 factors, 20 epochs, lr 0.007, reg 0.02)\n\n"
                f"{split}\n\n{same}\n\nTest pairs whose user or item has no training "
                f"rating: {fallback}; load average after: {os.getloadavg()[0]:.2f}\n"]
    if not args.no_tune:
        tuned = table(tune(split, ["timesvdpp", "svdpp"], log), tuned=True)
        log(tuned)
        sections.append(f"## {name}: tuned on a validation split of train "
                        f"(holdout_global(train, 0.1, seed=1))\n\n{tuned}\n\n"
                        f"Grids: bench_rating_mf.py's GRIDS (timesvdpp: svdpp's grid x "
                        f"reg_day in (0.05, 0.2)) and PEER_GRID (Surprise SVD). "
                        f"Load average after: {os.getloadavg()[0]:.2f}\n")
    return sections


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m-early")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-tune", action="store_true", help="skip part 2")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", default=str(RESULTS), help="markdown file written")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, flush=True)

    warm = holdout_global(load("ml-100k"), 0.2, seed=42)
    for name in ("timesvdpp", "svdpp"):  # compile and cache the kernels outside the timings
        run_ours(name, {**SAME, "n_epochs": 1}, warm.train, warm.test)
    sections = [f"# timeSVD++ vs SVD++ (MovieLens)\n\n"
                f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
                f"- machine: {machine()}\n"
                f"- load average before the run: {os.getloadavg()[0]:.2f}\n"
                f"- command: `python benchmarks/bench_time_mf.py --datasets {args.datasets} "
                f"--repeats {args.repeats}`\n"
                f"- split: holdout_global(test_fraction=0.2, seed=42); RMSE/MAE over all "
                f"test pairs, timesvdpp predicting each at its rating time; fit time = median "
                f"of {args.repeats} fits (Surprise SVDpp: 1)\n"
                f"- ml-1m-early: ML-1M's users with ids below {EARLY_USERS} (every timestamp "
                f"present); the full local ML-1M file lacks 199,435 timestamps "
                f"(../shared/datasets/README.md)\n"]
    for name in args.datasets.split(","):
        sections += run_dataset(name, args, log)
    write_report(sections, args)


if __name__ == "__main__":
    main()
