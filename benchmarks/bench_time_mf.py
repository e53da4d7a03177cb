"""timeSVD++ (timesvdpp) against SVD++ (ours and Surprise's) on MovieLens 100K.

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

ML-100K only: the local ML-1M ``ratings.csv`` has 199,435 empty timestamps (see
../shared/datasets/README.md), so it cannot train a time-aware model.

Run (opt-in; needs scikit-surprise, see bench_rating_mf.py)::

    /tmp/ratingpeers/bin/python benchmarks/bench_time_mf.py

Writes benchmarks/results/time_mf.md (``--no-write`` to print only).
"""

from __future__ import annotations

import argparse
import os
import time

from bench_rating_mf import (
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

from recoforge.data.split import holdout_global

RESULTS = ROOT / "benchmarks" / "results" / "time_mf.md"
SAME = {"n_factors": 20, "n_epochs": 20, "seed": 0}
PEER_SAME = {"n_factors": 20, "n_epochs": 20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-tune", action="store_true", help="skip part 2")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", default=str(RESULTS), help="markdown file written")
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, flush=True)

    split = holdout_global(load("ml-100k"), 0.2, seed=42)
    log(f"ml-100k: {split}")
    for name in ("timesvdpp", "svdpp"):  # compile and cache the kernels outside the timings
        run_ours(name, {**SAME, "n_epochs": 1}, split.train, split.test)
    load_before = os.getloadavg()[0]
    rows = []
    for name in ("timesvdpp", "svdpp"):
        result = median_of(args.repeats, run_ours, name, SAME, split.train, split.test)
        rows.append({"model": f"recoforge {name}", "params": SAME, **result})
        log(f"{name}: {result}")
    peer = run_peer("SVDpp", PEER_SAME, surprise_trainset(split.train), split.test)
    rows.append({"model": "Surprise SVDpp", "params": PEER_SAME, **peer})
    fallback = max(r.get("fallback_pairs", 0) for r in rows)
    same = table(rows)
    log(same)
    sections = [f"# timeSVD++ vs SVD++ (MovieLens 100K)\n\n"
                f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
                f"- machine: {machine()}\n"
                f"- load average before the run: {load_before:.2f}\n"
                f"- command: `python benchmarks/bench_time_mf.py --repeats {args.repeats}`\n"
                f"- split: holdout_global(test_fraction=0.2, seed=42) of ML-100K; RMSE/MAE "
                f"over all test pairs, timesvdpp predicting each at its rating time; fit "
                f"time = median of {args.repeats} fits (Surprise SVDpp: 1)\n"
                f"- ML-1M: not run. Its local ratings.csv has 199,435 empty timestamps "
                f"(../shared/datasets/README.md), so a time-aware model cannot train on it.\n",
                f"## ml-100k: same settings (20 factors, 20 epochs, lr 0.007, reg 0.02)\n\n"
                f"{same}\n\nTest pairs whose user or item has no training rating: {fallback}; "
                f"load average after: {os.getloadavg()[0]:.2f}\n"]
    if not args.no_tune:
        tuned = table(tune(split, ["timesvdpp", "svdpp"], log), tuned=True)
        log(tuned)
        sections.append(f"## ml-100k: tuned on a validation split of train "
                        f"(holdout_global(train, 0.1, seed=1))\n\n{tuned}\n\n"
                        f"Grids: bench_rating_mf.py's GRIDS (timesvdpp: svdpp's grid x "
                        f"reg_day in (0.05, 0.2)) and PEER_GRID (Surprise SVD). "
                        f"Load average after: {os.getloadavg()[0]:.2f}\n")
    write_report(sections, args)


if __name__ == "__main__":
    main()
