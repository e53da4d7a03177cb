"""Content-based, co-visitation and graph-walk models against popularity, same split.

For each dataset: a per-user random 80/20 split (``holdout_per_user``, seed 0); every model
is fitted on the 80% and ranks the whole catalogue for every test user (training items
excluded); NDCG@10 (binary relevance, 1/log2(rank + 1)), precision@10 and recall@10 from
``recoforge.evaluation.evaluate``; fit and recommend-all times in seconds.

Hyperparameters are chosen on a validation split carved from the training part only
(``holdout_per_user(train, 0.2, seed=1)``), by NDCG@10, then refitted on the whole
training part: RP3beta (alpha, beta), P3alpha (alpha), content (profile weighting and
the weight of the text block), co-visitation (normalisation, window). The chosen values
are listed in the table.

Datasets:

- ``demo``: ``recoforge.data.synthetic.category_demo(seed=0)`` (users prefer one category;
  item features = TF-IDF of descriptions + one-hot category; view sessions);
- ``ml-100k``, ``ml-1m`` from ../shared/datasets (or $RECOFORGE_DATASETS), item features
  = genres (multi-label) + TF-IDF of titles. ML-1M's ratings.csv lacks 20% of its
  timestamps, so it loads without any: co-visitation then counts every pair of a user's
  history (no order, no window).

Run (opt-in, not part of the test suite)::

    .venv/bin/python benchmarks/bench_content_graph.py [--datasets demo,ml-100k,ml-1m]

Writes benchmarks/results/content_graph.md.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import recoforge as rf
from recoforge.data import Dataset, build_features
from recoforge.data.split import holdout_per_user
from recoforge.evaluation import evaluate

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "content_graph.md"
K = 10
#: models skipped on datasets with more interactions than this (cost noted in the results)
SLOW = {"pagerank": 300_000}

#: grids searched on the validation split (name -> list of parameter dicts)
GRIDS: dict[str, list[dict]] = {
    "popularity": [{}],
    "content": [{"weighting": w, "block_weights": b}
                for w in ("raw", "centred", "binary")
                for b in (None, {"title": 0.0}, {"title": 0.5}, {"description": 0.5})],
    "covisitation": [{"normalization": n, "window": w}
                     for n in ("cosine", "conditional") for w in (10, None)],
    "p3alpha": [{"alpha": a} for a in (0.5, 0.75, 1.0)],
    "pagerank": [{"restart": r, "beta": b} for r in (0.3, 0.5) for b in (0.0, 0.25, 0.5)],
    "rp3beta": [{"alpha": a, "beta": b}
                for a, b in itertools.product((0.5, 0.75, 1.0), (0.0, 0.25, 0.5, 0.75))],
}


def load(name: str) -> Dataset:
    if name == "demo":
        from recoforge.data.synthetic import category_demo

        return category_demo(seed=0)
    from recoforge.data.movielens import load_movielens

    variant = {"ml-100k": "100k", "ml-1m": "1m"}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ML-1M's reconstructed timestamps
        data = load_movielens(variant, DATASETS / name)
    info = data.item_info
    features = build_features(info, data.item_index, text=["title"],
                              multilabel={"genres": r"\|"})
    return Dataset(data.interactions, item_features=features, item_info=info, name=name)


def valid_grid(name: str, data: Dataset) -> list[dict]:
    """The grid, without block weights naming blocks this dataset lacks."""
    blocks = {str(n).split(":")[0].split("=")[0] for n in data.item_features.names}
    return [p for p in GRIDS[name]
            if not p.get("block_weights") or set(p["block_weights"]) <= blocks]


def ndcg(model, split) -> float:
    result = evaluate(model, split, k=[K], metrics=["ndcg"])
    return float(result.summary[f"ndcg@{K}"])


def tune(name: str, split) -> tuple[dict, float]:
    """Best parameters by validation NDCG@10 (validation carved from split.train)."""
    grid = valid_grid(name, split.train)
    if len(grid) == 1:
        return grid[0], float("nan")
    inner = holdout_per_user(split.train, 0.2, seed=1)
    scored = [(ndcg(rf.create(name, **p).fit(inner.train), inner), i)
              for i, p in enumerate(grid)]
    best_score, best = max(scored, key=lambda t: (t[0], -t[1]))
    return grid[best], best_score


def run(name: str, params: dict, split) -> dict:
    model = rf.create(name, **params)
    start = time.perf_counter()
    model.fit(split.train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    result = evaluate(model, split, k=[K], metrics=["ndcg", "precision", "recall"])
    eval_s = time.perf_counter() - start
    s = result.summary
    return {"model": name, "params": params, f"NDCG@{K}": s[f"ndcg@{K}"],
            f"P@{K}": s[f"precision@{K}"], f"R@{K}": s[f"recall@{K}"], "fit s": fit_s,
            "recommend s": result.timings.get("ranking", eval_s), "eval s": eval_s}


def bench(dataset: str, models: list[str]) -> pd.DataFrame:
    data = load(dataset)
    split = holdout_per_user(data, 0.2, seed=0)
    # warm-up: numba compilation of top-k, co-visitation and metrics is not timed
    warm = holdout_per_user(load("demo"), 0.2, seed=0) if dataset != "demo" else split
    for name in ("popularity", "covisitation"):
        evaluate(rf.create(name).fit(warm.train), warm, k=[K], metrics=["ndcg"])
    rows = []
    for name in models:
        if len(data.interactions) > SLOW.get(name, np.inf):
            print(f"{dataset}: skipping {name} (more than {SLOW[name]} interactions)")
            continue
        start = time.perf_counter()
        params, val = tune(name, split)
        tune_s = time.perf_counter() - start
        row = run(name, params, split)
        row.update({"validation NDCG": val, "tuning s": tune_s})
        print(dataset, row, flush=True)
        rows.append(row)
    return pd.DataFrame(rows)


def fmt_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"


def to_markdown(frame: pd.DataFrame) -> str:
    head = ["model", "tuned parameters", f"NDCG@{K}", f"P@{K}", f"R@{K}", "fit s",
            "recommend s", "validation NDCG", "tuning s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in frame.to_dict("records"):
        cells = [row["model"], fmt_params(row["params"])]
        cells += [f"{row[c]:.4f}" for c in (f"NDCG@{K}", f"P@{K}", f"R@{K}")]
        cells += [f"{row['fit s']:.2f}", f"{row['recommend s']:.2f}",
                  "-" if np.isnan(row["validation NDCG"]) else f"{row['validation NDCG']:.4f}",
                  f"{row['tuning s']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="demo,ml-100k,ml-1m")
    parser.add_argument("--models",
                        default="popularity,content,covisitation,p3alpha,rp3beta,pagerank")
    args = parser.parse_args()
    models = args.models.split(",")
    sections = []
    for dataset in args.datasets.split(","):
        if dataset != "demo" and not (DATASETS / dataset).is_dir():
            print(f"skipping {dataset}: {DATASETS / dataset} not found")
            continue
        table = bench(dataset, models)
        data = load(dataset)
        sections.append(f"## {dataset}\n\n{data!r}\n\n{to_markdown(table)}\n")
    header = (
        "# Content, co-visitation and graph-walk models vs popularity\n\n"
        f"Date: {time.strftime('%Y-%m-%d')}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"recoforge {rf.__version__}.\n"
        f"Command: `.venv/bin/python benchmarks/bench_content_graph.py "
        f"--datasets {args.datasets} --models {args.models}`\n\n"
        "Per-user random 80/20 split (seed 0), full ranking over the catalogue with "
        "training items excluded, binary relevance (every held-out rating is relevant). "
        "Parameters tuned by NDCG@10 on a validation split carved from the training part "
        "(per-user 80/20, seed 1), never on the test split. `recommend s` = scoring and "
        "top-k for all test users inside `evaluate`; `tuning s` = the grid search.\n\n"
        "Notes: popularity is untuned (no parameters). Item features: demo = TF-IDF of "
        "descriptions + one-hot category; MovieLens = genres + TF-IDF of titles. ML-1M "
        "loads without timestamps (20% are missing in ratings.csv), so co-visitation counts "
        "every pair of a user's history there and its `window` has no effect. PageRank is "
        f"skipped above {SLOW['pagerank']:,} interactions: its power iteration costs "
        "O(n_iter * nnz) per query (minutes for all ML-1M users on 2 cores). Times are "
        "wall-clock on a machine shared with other jobs, so treat them as rough.\n"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(header + "\n" + "\n".join(sections))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
