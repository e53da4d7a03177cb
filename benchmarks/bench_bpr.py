"""BPR, logistic MF and WARP against the implicit library's BPR, same process, same split.

For each dataset: every rating is a positive (implicit feedback, value 1; the same for
train and test); a per-user random 80/20 split (``holdout_per_user``, seed 42); every model
ranks the whole catalogue for every user, training items excluded; NDCG@10 with binary
relevance (DCG 1/log2(rank + 1), ideal DCG over min(|test|, 10) items), computed by one
function for every model from its top-10 lists; fit wall time.

Rows:

1. *Same settings*: recoforge's ``bpr`` and ``implicit.cpu.bpr.BayesianPersonalizedRanking``
   with the same factors, learning rate, regularisation and iterations (epochs of nnz
   samples in both), both on all cores: implicit's defaults (100 factors, lr 0.01, reg 0.01,
   100 iterations) and the settings tuned for implicit's BPR.
2. *Tuned*: each model's own best grid point by NDCG@10 on a validation split carved from
   the training part (``holdout_per_user(train, 0.2, seed=1)``), refitted on the whole
   training part; BPR's popularity and hard negative sampling at BPR's tuned settings;
   BPR recommending for every user as a *new* user from their training history (fold-in).

Timed fits exclude numba's one-off loading of the compiled kernels (a warm-up fit on a
tiny data set first); fit times are the median of ``--repeats`` fits.

Run (opt-in, not part of the test suite; needs ``pip install implicit``)::

    python benchmarks/bench_bpr.py [--datasets ml-100k,ml-1m] [--repeats 3] [--no-tune]

Writes benchmarks/results/bpr.md (or ``--output``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset, Interactions
from recoforge.data.split import Split, holdout_per_user

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "bpr.md"
K = 10
SEED = 42
FACTORS = 64

#: grids searched on the validation split (all with n_factors=64)
GRIDS: dict[str, list[dict[str, Any]]] = {
    "bpr": [{"learning_rate": lr, "regularization": reg, "n_epochs": ep}
            for lr, reg, ep in itertools.product((0.01, 0.05), (0.001, 0.01), (50, 100, 200))],
    "logistic_mf": [{"learning_rate": lr, "regularization": reg, "n_epochs": ep,
                     "n_negatives": 4}
                    for lr, reg, ep in itertools.product((0.01, 0.02), (0.001, 0.01), (20, 40))],
    "warp": [{"learning_rate": lr, "regularization": reg, "n_epochs": ep}
             for lr, reg, ep in itertools.product((0.001, 0.002), (0.1, 0.2), (15, 25, 40))],
}
GRIDS["implicit-bpr"] = GRIDS["bpr"]
IMPLICIT_DEFAULTS = {"n_factors": 100, "learning_rate": 0.01, "regularization": 0.01,
                     "n_epochs": 100}


# ---------------------------------------------------------------- data
def load(name: str) -> Dataset:
    """MovieLens with every rating as a positive of value 1 (implicit feedback)."""
    from recoforge.data.movielens import load_movielens

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ML-1M's missing timestamps
        data = load_movielens(name.removeprefix("ml-"), DATASETS / name)
    inter = data.interactions
    ones = Interactions(users=inter.users, items=inter.items,
                        values=np.ones(len(inter), np.float32), user_index=inter.user_index,
                        item_index=inter.item_index, kind="implicit")
    return Dataset(ones, name=name)


def test_matrix(split: Split) -> sp.csr_matrix:
    """Held-out items as a CSR over the training users (external ids matched)."""
    users = split.train.user_index.to_index(split.test.user_index.to_ids(split.test.users))
    shape = (split.train.n_users, split.train.n_items)
    return sp.csr_matrix((np.ones(len(users)), (users, split.test.items)), shape=shape)


def ndcg_at_k(top: np.ndarray, test: sp.csr_matrix) -> float:
    """Mean binary NDCG@K over users with held-out items; ``top`` is (n_users, K)."""
    discount = 1.0 / np.log2(np.arange(2, K + 2))
    ideal = np.cumsum(discount)
    values = []
    for user in range(test.shape[0]):
        relevant = test.indices[test.indptr[user]:test.indptr[user + 1]]
        if len(relevant):
            gains = np.isin(top[user, :K], relevant) * discount[:top.shape[1]]
            values.append(gains.sum() / ideal[min(len(relevant), K) - 1])
    return float(np.mean(values))


# ---------------------------------------------------------------- models
def fit_ours(name: str, params: dict, train: Dataset) -> tuple[Any, float]:
    model = rf.create(name, **{"n_factors": FACTORS, "seed": SEED, **params})
    start = time.perf_counter()
    model.fit(train)
    return model, time.perf_counter() - start


def top_ours(model, histories: sp.csr_matrix | None = None) -> np.ndarray:
    if histories is not None:
        return model.top_items(histories=histories, k=K)[0]
    return model.top_items(np.arange(len(model.user_index_)), k=K)[0]


def fit_implicit(params: dict, train: Dataset) -> tuple[Any, float]:
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(
        factors=params.get("n_factors", FACTORS), learning_rate=params["learning_rate"],
        regularization=params["regularization"], iterations=params["n_epochs"],
        random_state=SEED)
    matrix = train.matrix().astype(np.float32)
    start = time.perf_counter()
    model.fit(matrix, show_progress=False)
    model.train_matrix_ = matrix
    return model, time.perf_counter() - start


def top_implicit(model) -> np.ndarray:
    users = np.arange(model.train_matrix_.shape[0])
    ids, _ = model.recommend(users, model.train_matrix_[users], N=K,
                             filter_already_liked_items=True)
    return ids


def fit_any(name: str, params: dict, train: Dataset) -> tuple[Any, float]:
    return fit_implicit(params, train) if name == "implicit-bpr" else \
        fit_ours(name, params, train)


def top_any(name: str, model) -> np.ndarray:
    return top_implicit(model) if name == "implicit-bpr" else top_ours(model)


def tune(name: str, split: Split) -> tuple[dict, float]:
    """Best grid point by validation NDCG@10 (validation carved from split.train)."""
    inner = holdout_per_user(split.train, 0.2, seed=1)
    test = test_matrix(inner)
    scored = []
    for params in GRIDS[name]:
        model, _ = fit_any(name, params, inner.train)
        scored.append(ndcg_at_k(top_any(name, model), test))
        print(f"  tune {name} {params}: {scored[-1]:.4f}", flush=True)
    best = int(np.argmax(scored))
    return GRIDS[name][best], scored[best]


def measure(name: str, params: dict, split: Split, repeats: int) -> dict:
    times, model = [], None
    for _ in range(repeats):
        model, seconds = fit_any(name, params, split.train)
        times.append(seconds)
    score = ndcg_at_k(top_any(name, model), test_matrix(split))
    row = {"model": name, "params": params, "ndcg": score,
           "fit_s": statistics.median(times), "fit_all": times}
    print(f"{name} {params}: NDCG@{K} {score:.4f}, fit {times}", flush=True)
    return row


def warm_up() -> None:
    """Load the compiled numba kernels once (not timed)."""
    rng = np.random.default_rng(0)
    frame = {"user": rng.integers(0, 50, 2000), "item": rng.integers(0, 80, 2000)}
    import pandas as pd

    tiny = Dataset.from_frame(pd.DataFrame(frame).drop_duplicates())
    for name in ("bpr", "logistic_mf", "warp"):
        for sampling in (("uniform", "popularity", "hard") if name != "warp" else ("",)):
            extra = {"negative_sampling": sampling} if sampling else {}
            model = rf.create(name, n_epochs=1, **extra).fit(tiny)
            model.top_items(np.arange(3), k=K)
            model.top_items(histories=tiny.matrix()[:3], k=K)


# ---------------------------------------------------------------- report
def bench(dataset: str, repeats: int, tuned: bool) -> list[dict]:
    data = load(dataset)
    split = holdout_per_user(data, 0.2, seed=SEED)
    rows = []
    for name in ("implicit-bpr", "bpr"):
        rows.append({**measure(name, IMPLICIT_DEFAULTS, split, repeats),
                     "section": "same settings: implicit defaults"})
    if not tuned:
        return rows
    best: dict[str, tuple[dict, float]] = {name: tune(name, split) for name in GRIDS}
    peer_params = best["implicit-bpr"][0]
    for name in ("implicit-bpr", "bpr"):
        rows.append({**measure(name, peer_params, split, repeats), "validation": np.nan,
                     "section": "same settings: tuned for implicit's BPR"})
    for name in ("bpr", "logistic_mf", "warp"):
        params, val = best[name]
        rows.append({**measure(name, params, split, repeats), "validation": val,
                     "section": "tuned (own grid)"})
    for sampling in ({"negative_sampling": "popularity", "popularity_exponent": 0.75},
                     {"negative_sampling": "hard", "n_candidates": 5}):
        rows.append({**measure("bpr", {**best["bpr"][0], **sampling}, split, repeats),
                     "section": "BPR variants at BPR's tuned settings"})
    model, _ = fit_ours("bpr", best["bpr"][0], split.train)
    start = time.perf_counter()
    top = top_ours(model, histories=split.train.matrix())
    rows.append({"model": "bpr (every user folded in as new)", "params": best["bpr"][0],
                 "ndcg": ndcg_at_k(top, test_matrix(split)),
                 "fit_s": time.perf_counter() - start, "fit_all": [],
                 "section": "BPR variants at BPR's tuned settings"})
    return rows


def to_markdown(rows: list[dict]) -> str:
    head = ["section", "model", "params", f"NDCG@{K}", "fit s (median)", "fit s (all)",
            "validation NDCG@10"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        val = row.get("validation", np.nan)
        lines.append("| " + " | ".join([
            row["section"], row["model"], params, f"{row['ndcg']:.4f}", f"{row['fit_s']:.2f}",
            " / ".join(f"{t:.2f}" for t in row["fit_all"]) or "(fold-in + ranking time)",
            "-" if np.isnan(val) else f"{val:.4f}"]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-tune", action="store_true",
                        help="only the same-settings rows at implicit's defaults")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    import implicit
    import numba

    warm_up()
    sections = []
    for dataset in args.datasets.split(","):
        if not (DATASETS / dataset).is_dir():
            print(f"skipping {dataset}: {DATASETS / dataset} not found")
            continue
        load_before = os.getloadavg()[0]
        rows = bench(dataset, args.repeats, not args.no_tune)
        data = load(dataset)
        sections.append(f"## {dataset}\n\n{data!r}; load average at start "
                        f"{load_before:.2f}, at end {os.getloadavg()[0]:.2f}\n\n"
                        f"{to_markdown(rows)}\n")
    header = (
        "# BPR, logistic MF and WARP vs the implicit library's BPR\n\n"
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}. Machine: {platform.machine()}, "
        f"{os.cpu_count()} cores (shared with other jobs), Python "
        f"{platform.python_version()}, recoforge {rf.__version__}, implicit "
        f"{implicit.__version__}, numba {numba.__version__} ({numba.get_num_threads()} "
        f"threads).\nCommand: `python benchmarks/bench_bpr.py --datasets {args.datasets} "
        f"--repeats {args.repeats}{' --no-tune' if args.no_tune else ''}`\n\n"
        "Every rating is a positive (implicit feedback); per-user random 80/20 split "
        f"(seed {SEED}); full ranking, training items excluded; binary NDCG@{K} from each "
        "model's top-10 lists by one function. Both libraries on all cores (Hogwild "
        "SGD), seed 42, 64 factors unless stated; an iteration / epoch is nnz sampled "
        "pairs in both. Tuning on a validation split carved from the training part "
        "(per-user 80/20, seed 1), never on the test split.\n"
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(header + "\n" + "\n".join(sections))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
