"""Neighbourhood models and bias baselines next to implicit and Surprise, same split, same run.

Top-N (per-user random 80/20 split, binary relevance = every held-out rating, full
ranking over the catalogue with training items excluded): recoforge item_knn / user_knn /
rp3beta vs implicit's ItemItemRecommender, CosineRecommender and BM25Recommender. Each
model's parameters come from a small grid scored by NDCG@10 on a validation split carved
out of the training part (per-user 80/20 again, seed 1); the test split is only used for
the final figures. Timed: fit + recommend-all (top 10 for every user), after a warm-up so
numba's compilation is not counted (implicit is precompiled).

Ratings (global random 80/20 split; test pairs whose user and item are both in train):
recoforge item_knn / user_knn (baseline variant) and bias vs Surprise KNNBaseline
(item-based, pearson_baseline: shrinkage 100, min_support 2 in effect, k = 40, ALS
baselines reg_i 10, reg_u 15, 10 epochs) and BaselineOnly (the same ALS). Timed: fit +
predict of every test pair. Both clip predictions to [1, 5].

Memory (``--memory``): item_knn on a power-law catalogue of 200,000 items and 5 million
interactions, peak RSS of a fresh child process (resource.getrusage).

Run (needs ../shared/datasets and a venv with the peers)::

    python3 -m venv /tmp/peers && /tmp/peers/bin/pip install implicit scikit-surprise
    /tmp/peers/bin/pip install -e .
    /tmp/peers/bin/python benchmarks/bench_neighbours.py [--datasets ml-100k,ml-1m]
        [--skip-ratings] [--skip-topn] [--memory]

Writes benchmarks/results/neighbours.md and neighbours.csv.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset
from recoforge.data.split import holdout_global, holdout_per_user
from recoforge.evaluation.metrics import binary_ideal, ndcg_at_k, precision_at_k, recall_at_k

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results"
K = 10


def load(name: str) -> Dataset:
    if name == "ml-100k":
        frame = pd.read_csv(DATASETS / "ml-100k" / "u.data", sep="\t",
                            names=["user", "item", "rating", "timestamp"])
    else:
        frame = pd.read_csv(DATASETS / "ml-1m" / "ratings.csv").rename(
            columns={"user_id": "user", "movie_id": "item"})
    return Dataset.from_frame(frame[["user", "item", "rating"]], rating_col="rating",
                              name=name)


# ---------------------------------------------------------------------- top-N
def test_matrix(split) -> sp.csr_matrix:
    """Held-out interactions as a binary CSR over the training users and catalogue."""
    test = split.test
    users = split.train.user_index.to_index(test.user_index.to_ids(test.users),
                                            unknown="ignore")
    keep = users >= 0
    return sp.csr_matrix((np.ones(keep.sum(), np.float32), (users[keep], test.items[keep])),
                         shape=(split.train.n_users, split.train.n_items))


def ranking_metrics(recs: np.ndarray, truth: sp.csr_matrix) -> dict[str, float]:
    """Mean NDCG/P/R@10 over users with held-out items (recoforge.evaluation.metrics)."""
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    recs = recs[users]
    rows = np.repeat(users, recs.shape[1])
    cols = np.where(recs.ravel() >= 0, recs.ravel(), 0)
    hits = np.asarray(truth[rows, cols]).reshape(recs.shape) * (recs >= 0)
    n_rel = np.diff(truth.indptr)[users]
    return {"ndcg": float(np.mean(ndcg_at_k(hits, binary_ideal(n_rel, K), K, "linear"))),
            "precision": float(np.mean(precision_at_k(hits, K))),
            "recall": float(np.mean(recall_at_k(hits, n_rel, K)))}


def run_ours(name: str, params: dict, train: Dataset) -> tuple[np.ndarray, float, float]:
    start = time.perf_counter()
    model = rf.create(name, **params).fit(train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    recs, _ = model.top_items(users=np.arange(train.n_users), k=K)
    return recs, fit_s, time.perf_counter() - start


IMPLICIT = ("ItemItemRecommender", "CosineRecommender", "BM25Recommender")


def run_implicit(name: str, params: dict, train: Dataset) -> tuple[np.ndarray, float, float]:
    from implicit import nearest_neighbours as nn

    params = dict(params)
    user_items = train.matrix().astype(np.float64)
    if params.pop("binary"):
        user_items.data[:] = 1.0
    model = getattr(nn, name)(**params)
    start = time.perf_counter()
    model.fit(user_items, show_progress=False)
    fit_s = time.perf_counter() - start
    users = np.arange(train.n_users)
    start = time.perf_counter()
    ids, _ = model.recommend(users, user_items[users], N=K, filter_already_liked_items=True)
    return np.asarray(ids), fit_s, time.perf_counter() - start


def topn_grids() -> dict[str, list[dict]]:
    def grid(**axes):
        return [dict(zip(axes, values)) for values in itertools.product(*axes.values())]

    # implicit's K counts the item itself among its K neighbours (its similarity matrix
    # keeps the diagonal), recoforge's k counts other items only: the same neighbourhoods
    # are implicit K = recoforge k + 1 (checked: identical lists on ML-1M).
    peer_sizes = [20, 50, 100, 200, 400]
    sizes = [size - 1 for size in peer_sizes]
    ours = (grid(similarity=["cosine"], k=sizes, binary=[True, False])
            + grid(similarity=["dot", "cosine"], weighting=["bm25"], k=sizes[1:],
                   binary=[True], bm25_k1=[1.2], bm25_b=[0.75])
            + grid(similarity=["dot"], weighting=["bm25"], k=sizes[1:], binary=[True],
                   bm25_k1=[100.0], bm25_b=[0.8]))
    peers = grid(K=peer_sizes, binary=[True, False])
    out = {"item_knn": ours,
           "user_knn": grid(similarity=["cosine"], k=[50, 100, 200], binary=[True]),
           "ItemItemRecommender": peers, "CosineRecommender": peers,
           "BM25Recommender": [{**p, "K1": k1, "B": b} for p in peers if p["binary"]
                               for k1, b in ((1.2, 0.75), (100.0, 0.8))]}
    if "rp3beta" in rf.available_models():
        out["rp3beta"] = grid(alpha=[0.5, 1.0], beta=[0.3, 0.6], top_k=[100])
    return out


def run_model(name: str, params: dict, train: Dataset):
    if name in IMPLICIT:
        return run_implicit(name, params, train)
    return run_ours(name, params, train)


def tune(name: str, grid: list[dict], data: Dataset) -> tuple[dict, float]:
    """The grid point with the best validation NDCG@10 (validation carved out of train)."""
    inner = holdout_per_user(data, 0.2, seed=1)
    truth = test_matrix(inner)
    scored = []
    for params in grid:
        try:
            recs = run_model(name, params, inner.train)[0]
        except rf.errors.ConfigError as exc:  # e.g. a parameter the model lacks
            print(f"  skip {name} {params}: {exc}", file=sys.stderr)
            continue
        scored.append((ranking_metrics(recs, truth)["ndcg"], params))
    best = max(scored, key=lambda t: t[0])
    return best[1], best[0]


def bench_topn(data: Dataset, tuned: bool) -> list[dict]:
    split = holdout_per_user(data, 0.2, seed=0)
    truth = test_matrix(split)
    rows = []
    for name, grid in topn_grids().items():
        params, val = tune(name, grid, split.train) if tuned else (grid[0], float("nan"))
        run_model(name, params, split.train)  # warm-up (numba, caches)
        recs, fit_s, rec_s = run_model(name, params, split.train)
        lib = "implicit" if name in IMPLICIT else "recoforge"
        rows.append({"dataset": data.name, "task": "top-N", "library": lib, "model": name,
                     "params": _fmt(params), "val_ndcg": val, **ranking_metrics(recs, truth),
                     "fit_s": fit_s, "predict_s": rec_s, "total_s": fit_s + rec_s})
        print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------------- ratings
def rating_pairs(split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """External (user, item, rating) of test pairs whose user and item are in train."""
    test, train = split.test, split.train
    users = test.user_index.to_ids(test.users)
    items = test.item_index.to_ids(test.items)
    known_u = train.user_index.to_index(users, unknown="ignore") >= 0
    seen_items = np.bincount(train.interactions.items, minlength=train.n_items) > 0
    keep = known_u & seen_items[test.items]
    return users[keep], items[keep], test.values[keep].astype(np.float64)


def error(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {"rmse": float(np.sqrt(np.mean((pred - truth) ** 2))),
            "mae": float(np.mean(np.abs(pred - truth)))}


def run_surprise(name: str, params: dict, train: Dataset, users, items):
    import surprise

    frame = train.interactions.to_frame()
    reader = surprise.Reader(rating_scale=(1, 5))
    trainset = surprise.Dataset.load_from_df(frame[["user", "item", "value"]],
                                             reader).build_full_trainset()
    algo = getattr(surprise, name)(verbose=False, **params)
    start = time.perf_counter()
    algo.fit(trainset)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = np.array([algo.predict(u, i).est for u, i in zip(users.tolist(), items.tolist())])
    return pred, fit_s, time.perf_counter() - start


def run_ours_ratings(name: str, params: dict, train: Dataset, users, items):
    start = time.perf_counter()
    model = rf.create(name, **params).fit(train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    pred = model.predict(users, items)
    return pred, fit_s, time.perf_counter() - start


SURPRISE_KNN = {"k": 40, "sim_options": {"name": "pearson_baseline", "user_based": False}}
MATCHED = {"similarity": "pearson_baseline", "shrinkage": 100.0, "min_support": 2,
           "k": 100_000, "predict_k": 40, "rating_variant": "baseline"}


def tune_ratings(name: str, grid: list[dict], data: Dataset) -> tuple[dict, float]:
    inner = holdout_global(data, 0.2, seed=1)
    users, items, truth = rating_pairs(inner)
    scored = [(error(run_ours_ratings(name, p, inner.train, users, items)[0], truth)["rmse"],
               p) for p in grid]
    best = min(scored, key=lambda t: t[0])
    return best[1], best[0]


def bench_ratings(data: Dataset, tuned: bool) -> list[dict]:
    split = holdout_global(data, 0.2, seed=0)
    users, items, truth = rating_pairs(split)
    grid = [{**MATCHED, "k": k, "predict_k": pk}
            for k, pk in itertools.product([300, 100_000], [20, 40, 80])]
    runs = [("recoforge", "item_knn", MATCHED, float("nan")),
            ("recoforge", "item_knn", *tune_ratings("item_knn", grid, split.train))
            if tuned else None,
            ("recoforge", "user_knn", *tune_ratings("user_knn", grid, split.train))
            if tuned else ("recoforge", "user_knn", MATCHED, float("nan")),
            ("recoforge", "bias", {}, float("nan")),
            ("surprise", "KNNBaseline", SURPRISE_KNN, float("nan")),
            ("surprise", "BaselineOnly", {}, float("nan"))]
    rows = []
    for lib, name, params, val in filter(None, runs):
        runner = run_surprise if lib == "surprise" else run_ours_ratings
        if lib == "recoforge":
            runner(name, params, split.train, users[:100], items[:100])  # warm-up
        pred, fit_s, pred_s = runner(name, params, split.train, users, items)
        rows.append({"dataset": data.name, "task": "ratings", "library": lib, "model": name,
                     "params": _fmt(params), "val_rmse": val, **error(pred, truth),
                     "fit_s": fit_s, "predict_s": pred_s, "total_s": fit_s + pred_s,
                     "n_test": len(truth)})
        print(rows[-1], flush=True)
    return rows


# ---------------------------------------------------------------------- memory
def memory_child(n_interactions: int, n_items: int, k: int) -> None:
    from recoforge.data.synthetic import scalable_interactions

    start = time.perf_counter()
    data = scalable_interactions(n_interactions, n_items=n_items, seed=0)
    gen_s = time.perf_counter() - start
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    start = time.perf_counter()
    model = rf.create("item_knn", k=k, binary=True).fit(data)
    fit_s = time.perf_counter() - start
    recs, _ = model.top_items(users=np.arange(1000), k=K)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"RESULT pairs={len(data.interactions)} users={data.n_users} items={data.n_items} "
          f"k={k} gen_s={gen_s:.1f} fit_s={fit_s:.1f} rss_after_data_gib={rss_data:.2f} "
          f"peak_rss_gib={peak:.2f} sim_nnz={model.similarity_.nnz}")


def bench_memory() -> str:
    cmd = [sys.executable, __file__, "--memory-child"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT"))
    print(line)
    return line


# ---------------------------------------------------------------------- report
def _fmt(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _num(value, digits: int = 4) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) \
        else f"{value:.{digits}f}"


def write_report(rows: list[dict], memory: str | None, command: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    if len(frame):
        frame.to_csv(RESULTS / "neighbours.csv", index=False)
    lines = ["# Neighbourhood models and bias baselines vs implicit and Surprise", "",
             f"Date: {time.strftime('%Y-%m-%d')}. Machine: {platform.machine()}, "
             f"{os.cpu_count()} cores, Python {platform.python_version()}. "
             f"Command: `{command}`.", "",
             "All rows of a dataset come from the same run and the same split. See the "
             "module docstring of benchmarks/bench_neighbours.py for the protocol.", ""]
    for task, cols in (("top-N", ["ndcg", "precision", "recall", "val_ndcg"]),
                       ("ratings", ["rmse", "mae", "val_rmse"])):
        part = frame[frame["task"] == task] if len(frame) else frame
        if not len(part):
            continue
        head = ["dataset", "library", "model", "params", *cols, "fit s", "predict s",
                "total s"]
        lines += [f"## {task}", "", "| " + " | ".join(head) + " |",
                  "|" + "---|" * len(head)]
        for row in part.to_dict("records"):
            cells = [row["dataset"], row["library"], row["model"], row["params"],
                     *[_num(row[c]) for c in cols], _num(row["fit_s"], 2),
                     _num(row["predict_s"], 2), _num(row["total_s"], 2)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if memory:
        lines += ["## Memory", "", f"`{memory}`", ""]
    (RESULTS / "neighbours.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m")
    parser.add_argument("--skip-topn", action="store_true")
    parser.add_argument("--skip-ratings", action="store_true")
    parser.add_argument("--no-tune", action="store_true", help="first grid point only")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(5_000_000, 200_000, 50)
        return
    rows: list[dict] = []
    for name in filter(None, args.datasets.split(",")):
        data = load(name)
        if not args.skip_topn:
            rows += bench_topn(data, not args.no_tune)
        if not args.skip_ratings:
            rows += bench_ratings(data, not args.no_tune)
    memory = bench_memory() if args.memory else None
    write_report(rows, memory, "python benchmarks/bench_neighbours.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
