"""The second-edition contract's targets (issue 8), measured side by side in one run.

1. Candidate path: 100 candidates for each of 1,000 users on a 100,000-item synthetic
   catalogue with ``implicit_als`` (64 factors): ``top_items(candidates=...)`` against
   full-catalogue ``top_items`` for the same users (same model, same process, alternating
   repeats, median). Target: at least 20x faster.
2. ``predict`` of 200,000 known (user, item) pairs on MovieLens 1M with ``sgd_mf``, given as
   the integer id arrays a caller holds. Target: at most 50 ms (median of repeats).
3. Size of the ML-1M ``implicit_als`` (64 factors) model directory with its popularity
   fallback, saved without the training history (the default) and with it. Target: at
   most 3 MB without.

Run::

    .venv/bin/python benchmarks/bench_contract.py [--repeats 5] [--no-write]

Writes benchmarks/results/contract.md. MovieLens parts are skipped when
../shared/datasets is absent.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_rating_mf import DATASETS, ROOT, load, machine, write_report

import recoforge as rf
from recoforge.data.powerlaw import scalable_interactions

RESULTS = ROOT / "benchmarks" / "results" / "contract.md"


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def candidate_path(repeats: int) -> list[str]:
    data = scalable_interactions(2_000_000, n_users=20_000, n_items=100_000, seed=0)
    model = rf.create("implicit_als", n_factors=64, iterations=3, seed=0).fit(data)
    users = np.arange(1_000)
    rng = np.random.default_rng(0)
    candidates = np.stack([rng.choice(data.n_items, 100, replace=False) for _ in users])
    model.top_items(users[:10], k=10)  # compile and warm caches
    model.top_items(users[:10], k=10, candidates=candidates[:10])
    full, cand = [], []
    for _ in range(repeats):  # alternate, so load changes hit both alike
        full.append(_median_seconds(lambda: model.top_items(users, k=10), 1))
        cand.append(_median_seconds(
            lambda: model.top_items(users, k=10, candidates=candidates), 1))
    f, c = float(np.median(full)), float(np.median(cand))
    return ["## 1. Candidate path (implicit_als, 64 factors, 100,000 items, 1,000 users)", "",
            f"Data: scalable_interactions(2,000,000, 20,000 users, 100,000 items, seed 0): "
            f"{len(data.interactions):,} pairs.", "",
            f"| path | seconds (median of {repeats}) | ratio |", "| --- | --- | --- |",
            f"| full catalogue, top 10 | {f:.4f} | 1.0x |",
            f"| 100 candidates per user, top 10 | {c:.4f} | {f / c:.1f}x faster |", ""]


def predict_pairs(repeats: int) -> list[str]:
    data = load("ml-1m")
    model = rf.create("sgd_mf", n_factors=64, n_epochs=5, seed=0).fit(data)
    inter = data.interactions
    rng = np.random.default_rng(0)
    pick = rng.choice(len(inter), 200_000, replace=False)
    users = data.user_index.ids[np.asarray(inter.users)[pick]]
    items = data.item_index.ids[np.asarray(inter.items)[pick]]
    model.predict(users[:10], items[:10])
    seconds = _median_seconds(lambda: model.predict(users, items), repeats)
    as_lists = _median_seconds(lambda: model.predict(users.tolist(), items.tolist()), repeats)
    return ["## 2. predict of 200,000 known pairs (ML-1M, sgd_mf 64 factors)", "",
            f"| input | ms (median of {repeats}) |", "| --- | --- |",
            f"| int64 id arrays ({users.dtype}) | {1000 * seconds:.1f} |",
            f"| Python lists | {1000 * as_lists:.1f} |", ""]


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def model_size() -> list[str]:
    data = load("ml-1m")
    model = rf.create("implicit_als", n_factors=64, seed=0).fit(data, fallback="popularity")
    with tempfile.TemporaryDirectory() as tmp:
        model.save(Path(tmp) / "small")
        model.save(Path(tmp) / "full", include_history=True)
        small, full = _size(Path(tmp) / "small"), _size(Path(tmp) / "full")
        parts = sorted((f.relative_to(Path(tmp) / "small").as_posix(), f.stat().st_size)
                       for f in (Path(tmp) / "small").rglob("*") if f.is_file())
    rows = [f"| {name} | {size / 1e6:.3f} |" for name, size in parts]
    return ["## 3. ML-1M implicit_als (64 factors) + popularity fallback: model directory",
            "", "| saved | MB |", "| --- | --- |",
            f"| default (learned state only) | {small / 1e6:.2f} |",
            f"| include_history=True | {full / 1e6:.2f} |", "",
            "Files of the default directory:", "", "| file | MB |", "| --- | --- |",
            *rows, ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    sections = ["# Contract v2 targets (issue 8)", "",
                f"Machine: {machine()}. Command: `.venv/bin/python "
                f"benchmarks/bench_contract.py --repeats {args.repeats}`.", ""]
    sections += candidate_path(args.repeats)
    if (DATASETS / "ml-1m").is_dir():
        sections += predict_pairs(args.repeats * 4)
        sections += model_size()
    write_report(sections, args)


if __name__ == "__main__":
    main()
