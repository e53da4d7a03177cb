"""Tuned hybrids against their best single component, overall and on short histories.

The split and data of benchmarks/features_coldstart.py (MovieLens, ratings >= 4 as
positives, seed 0): 20% of the users with at least 20 positives keep 5 for training
(users with <= 5 training interactions), every other user gives 20% of their positives to
test; 10% of the items are cold (held out whole; they are not ranked here). Every model
ranks the warm items for the test users (training items excluded); NDCG@10 by the same
function for every model, over all test users and over the short-history users alone.

The 5-component hybrids blend ease, item_knn, content on the genres, content on the title
words and feature_popularity (item features: genres, title words and the bucketised
release year, see features_coldstart.py; the year block stays in both content
variants). The hybrids tune their blend on a validation split they carve from the
training part (``validation_fraction`` of 2,000 sampled users' events),
never on the test split, then refit their components on the whole training part.

Run (opt-in, not part of the test suite)::

    RECOFORGE_NUM_THREADS=1 .venv/bin/python benchmarks/hybrid.py [--dataset ml-1m]

Writes benchmarks/results/hybrid.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd

import recoforge as rf
from recoforge.threads import get_num_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from features_coldstart import K, load, make_split, ndcg  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "hybrid.md"
COMPONENTS = {
    "ease": ("ease", {}),
    "item_knn": ("item_knn", {"k": 100}),
    "content": ("content", {}),
    "content (genres)": ("content", {"block_weights": {"title": 0.0}}),
    "content (title)": ("content", {"block_weights": {"genres": 0.0}}),
    "feature_popularity": ("feature_popularity", {}),
}
PARTS = ('ease;item_knn(k=100);content(block_weights={"title": 0.0});'
         'content(block_weights={"genres": 0.0});feature_popularity')
HYBRIDS = {
    "weighted ease+content": {"components": "ease;content", "seed": 0},
    "weighted ease+content, segmented": {"components": "ease;content", "segmented": True,
                                         "seed": 0},
    "weighted 5 components, segmented": {"components": PARTS, "segmented": True, "seed": 0},
    "stacking 5 components, segmented": {"components": PARTS, "mode": "stacking",
                                         "segmented": True, "seed": 0},
}


def run(label: str, name: str, params: dict, split, groups: dict) -> dict:
    model = rf.create(name, **params)
    start = time.perf_counter()
    model.fit(split.train)
    row = {"model": label, "fit_s": time.perf_counter() - start}
    ids = model.item_index_.ids
    lists = {}
    for group in ("warm", "short"):
        spec = groups[group]
        users = model.user_index_.to_index(spec["users"])
        top, _ = model.top_items(users=users, k=K, allowed=spec["allowed"])
        lists[group] = {u: ids[t[t >= 0]].tolist() for u, t in zip(spec["users"], top)}
    truth = pd.concat([groups["warm"]["truth"], groups["short"]["truth"]])
    row["all"] = ndcg({**lists["warm"], **lists["short"]}, truth)
    row["short"] = ndcg(lists["short"], groups["short"]["truth"])
    if name == "hybrid":
        row["weights"] = "; ".join("/".join(f"{w:.2f}" for w in seg) for seg in model.weights_)
        row["valid"] = " ".join(f"{v:.3f}" for v in model.validation_scores_)
    return row


def to_markdown(frame: pd.DataFrame, dataset: str, split, command: str) -> str:
    single = frame[frame["kind"] == "component"]
    best_all, best_short = single["all"].max(), single["short"].max()
    lines = [f"# Hybrids vs their best single component ({dataset})", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
             f"{platform.machine()} ({os.cpu_count()} cores, shared); command: `{command}`.",
             f"Split {split!r} (see benchmarks/features_coldstart.py).", "",
             "| model | fit s | NDCG@10 all | x best single | NDCG@10 users <= 5 | "
             "x best single | weights (short; others) | validation NDCG (each, blend) |",
             "|---|---:|---:|---:|---:|---:|---|---|"]
    for _, r in frame.iterrows():
        lines.append(f"| {r['model']} | {r['fit_s']:.1f} | {r['all']:.4f} | "
                     f"{r['all'] / best_all:.3f} | {r['short']:.4f} | "
                     f"{r['short'] / best_short:.3f} | {_text(r.get('weights'))} | "
                     f"{_text(r.get('valid'))} |")
    hybrids = frame[frame["kind"] == "hybrid"]
    if not hybrids.empty:
        top_all, top_short = hybrids["all"].max(), hybrids["short"].max()
        lines += ["", f"Targets: best hybrid / best single component, all users "
                      f"{top_all / best_all:.3f}x (goal >= 1: "
                      f"{'met' if top_all >= best_all else 'missed'}); users <= 5 "
                      f"{top_short / best_short:.3f}x (goal >= 1.1: "
                      f"{'met' if top_short >= 1.1 * best_short else 'missed'})."]
    return "\n".join(lines) + "\n"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-1m", choices=("ml-100k", "ml-1m"))
    parser.add_argument("--skip", default="", help="comma-separated labels to leave out")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    split, groups = make_split(load(args.dataset))
    print(split, flush=True)
    rows = []
    for kind, table in (("component", COMPONENTS),
                        ("hybrid", {n: ("hybrid", p) for n, p in HYBRIDS.items()})):
        for label, (name, params) in table.items():
            if label in skip or name not in rf.available_models():
                continue
            rows.append({"kind": kind, **run(label, name, params, split, groups)})
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    command = (f"RECOFORGE_NUM_THREADS={get_num_threads()} python benchmarks/hybrid.py "
               f"--dataset {args.dataset}")
    if skip:
        command += " --skip '" + ",".join(sorted(skip)) + "'"
    RESULTS.write_text(to_markdown(frame, args.dataset, split, command))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
