"""Implicit ALS, EASE and PureSVD against the implicit library and LensKit, same split.

For each dataset: all ratings become implicit events (value 1); a per-user random 80/20
split (``holdout_per_user``, seed 42); every model ranks the whole catalogue for every
test user with training items excluded, and NDCG@10 (binary relevance, every held-out
rating relevant) comes from ONE function (``ndcg_of_lists``) for every library's lists.

Peers run in the same process on the same split:

- implicit's ``AlternatingLeastSquares(use_cg=True)``. implicit >= 0.5 uses confidence
  c = alpha * value (and weight c - 1), so it is given the matrix 1 + alpha * R with its
  ``alpha=1``: exactly the objective of our ``implicit_als`` (c = 1 + alpha R). Its BLAS is
  held to one thread (its own advice); both use all cores for the per-row solves.
- LensKit's ``EASEScorer`` (lenskit.knn.ease) with the same lambda, trained through
  ``topn_pipeline`` and ranked by ``lenskit.batch.recommend(n_jobs=1)``.

Tuning is on a validation split carved from the training part only
(``holdout_per_user(train, 0.2, seed=1)``), by NDCG@10, then the chosen parameters are
refitted on the whole training part; the peers get the same grids. ``--scale`` trains
implicit ALS on ``scalable_interactions(20_000_000, seed=0)``, each library in its own
subprocess (peak RSS per process), and reports time per iteration.

Run (opt-in; needs implicit and lenskit, e.g. in /tmp/lkvenv)::

    python benchmarks/bench_als_ease.py [--datasets ml-100k,ml-1m] [--no-tune] [--scale]

Writes benchmarks/results/als_ease.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import recoforge as rf
from recoforge.data import Dataset, Interactions
from recoforge.data.split import holdout_per_user
from recoforge.evaluation.metrics import binary_ideal, ndcg_at_k
from recoforge.models.factors.core import FactorModel
from recoforge.models.factors.ease import EASE

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "als_ease.md"
K = 10
ALS_FIXED = {"n_factors": 64, "iterations": 15}
EASE_GRID = [50.0, 100.0, 200.0, 350.0, 500.0, 800.0, 1200.0, 2000.0]
ALS_GRID = [{"regularization": r, "alpha": a} for r in (1.0, 10.0, 50.0, 150.0, 400.0)
            for a in (1.0, 3.0, 10.0, 30.0)]
FACTOR_GRID = (32, 64, 128, 192)
#: our EASE also tries its EDLAE option (dropout), which LensKit's EASE lacks
EDLAE_GRID = [{"regularization": lam, "dropout": p} for lam in (20.0, 100.0, 300.0)
              for p in (0.1, 0.25, 0.4)]
#: ... and its normalised form (user_norm, item_norm, popularity_exponent; DAN-style), on
#: whose smaller Gram matrix lambda is in single digits
NORM_GRID = [{"regularization": lam, "user_norm": 0.5, "item_norm": a, "popularity_exponent": g}
             for a in (0.15, 0.25) for lam in (2.0, 4.0, 6.0, 9.0, 13.0, 20.0)
             for g in (0.0, 0.1)]
SVD_GRID = (10, 20, 50, 100, 200)
SEEDS = (0, 1, 2)


# ----------------------------------------------------------------------------- data
def load(name: str) -> Dataset:
    from recoforge.data.movielens import load_movielens

    variant = {"ml-100k": "100k", "ml-1m": "1m"}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ML-1M's reconstructed timestamps
        data = load_movielens(variant, DATASETS / name)
    return binary(data, name)


def binary(data: Dataset, name: str) -> Dataset:
    """The same pairs as implicit events of value 1."""
    inter = data.interactions
    events = Interactions(users=inter.users, items=inter.items,
                          values=np.ones(len(inter), np.float32), user_index=inter.user_index,
                          item_index=inter.item_index, kind="implicit")
    return Dataset(events, name=name)


# ----------------------------------------------------------------------------- metric
def ndcg_of_lists(lists: np.ndarray, split) -> float:
    """Mean NDCG@10 of (n_users, K) item-index lists, rows = split.train users in order."""
    test = split.test
    model_users = split.train.user_index.to_index(test.user_index.to_ids(test.users))
    model_items = split.train.item_index.to_index(test.item_index.to_ids(test.items),
                                                  unknown="ignore")
    relevant = set(zip(model_users.tolist(), model_items.tolist()))
    users = np.unique(model_users)
    hits = np.array([[(int(u), int(i)) in relevant for i in lists[u]] for u in users],
                    dtype=np.float64)
    n_relevant = np.bincount(model_users, minlength=lists.shape[0])[users]
    return float(np.mean(ndcg_at_k(hits, binary_ideal(n_relevant, K), K)))


def our_lists(model, split) -> np.ndarray:
    idx, _ = model.top_items(users=np.arange(split.train.n_users), k=K)
    return idx


def ndcg(model, split) -> float:
    return ndcg_of_lists(our_lists(model, split), split)


class PeerFactors(FactorModel):
    """A peer's learned factors behind our scoring and top-k (not registered)."""

    name = "peer_factors"

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        super().__init__()
        self._given = (users, items)

    def _fit(self, data: Dataset) -> None:
        self.user_factors_, self.item_factors_ = self._given


class PeerEASE(EASE):
    """A peer's EASE weights (reordered to our item index) behind our scoring."""

    name = "peer_ease"

    def __init__(self, weights: np.ndarray) -> None:
        super().__init__()
        self._given = weights

    def _fit(self, data: Dataset) -> None:
        self.weights_ = self._given


# ----------------------------------------------------------------------------- peers
def implicit_als(train: Dataset, params: dict, seed: int = 0) -> tuple[object, float, list]:
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    matrix = train.matrix().astype(np.float32)
    matrix.data = 1.0 + params["alpha"] * matrix.data  # c = 1 + alpha r, as ours
    seconds: list[float] = []
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=params["n_factors"],
                                        regularization=params["regularization"], alpha=1.0,
                                        iterations=params["iterations"], use_cg=True,
                                        calculate_training_loss=False, random_state=seed)
        start = time.perf_counter()
        model.fit(matrix, show_progress=False,
                  callback=lambda it, elapsed, loss: seconds.append(elapsed))
        fit = time.perf_counter() - start
    return model, fit, seconds


def implicit_ndcg(model, split) -> float:
    peer = PeerFactors(np.asarray(model.user_factors), np.asarray(model.item_factors))
    return ndcg(peer.fit(split.train), split)


def lenskit_ease(train: Dataset, lam: float):
    from lenskit.data import from_interactions_df
    from lenskit.knn.ease import EASEScorer
    from lenskit.pipeline import topn_pipeline

    frame = train.interactions.to_frame()[["user", "item"]]
    lk_data = from_interactions_df(frame, user_col="user", item_col="item")
    pipe = topn_pipeline(EASEScorer(regularization=lam), n=K)
    start = time.perf_counter()
    pipe.train(lk_data)
    fit = time.perf_counter() - start
    return pipe, fit


def lenskit_weights_in_our_order(pipe, train: Dataset) -> np.ndarray:
    scorer = pipe.node("scorer").component
    position = train.item_index.to_index(list(scorer.items.ids()))
    full = np.zeros((train.n_items, train.n_items), np.float32)  # LensKit knows only items
    full[np.ix_(position, position)] = scorer.weights  # seen in training
    return full


def lenskit_lists(pipe, split) -> tuple[np.ndarray, float]:
    from lenskit.batch import recommend

    users = list(split.train.user_index.ids)
    start = time.perf_counter()
    recs = recommend(pipe, users, K, n_jobs=1)
    seconds = time.perf_counter() - start
    frame = recs.to_df()
    lists = np.full((len(users), K), -1, np.int64)
    rows = split.train.user_index.to_index(frame["user_id"].tolist())
    items = split.train.item_index.to_index(frame["item_id"].tolist())
    ranks = frame["rank"].to_numpy() - 1
    lists[rows, ranks] = items
    return lists, seconds


# ----------------------------------------------------------------------------- tuning
def best_of(candidates: list[dict], score_fn) -> tuple[dict, float]:
    scored = [(score_fn(params), params) for params in candidates]
    value, params = max(scored, key=lambda pair: pair[0])
    return params, value


def tune_all(split, log) -> dict[str, tuple[dict, float]]:
    """Validation-tuned parameters of every model, ours and peers' (train part only)."""
    valid = holdout_per_user(split.train, 0.2, seed=1)
    started = time.perf_counter()
    out: dict[str, tuple[dict, float]] = {}
    out["ease"] = best_of([{"regularization": lam} for lam in EASE_GRID] + EDLAE_GRID
                          + NORM_GRID,
                          lambda p: ndcg(rf.create("ease", **p).fit(valid.train), valid))
    out["lenskit_ease"] = best_of(
        [{"regularization": lam} for lam in EASE_GRID],
        lambda p: ndcg(PeerEASE(lenskit_weights_in_our_order(
            lenskit_ease(valid.train, p["regularization"])[0], valid.train)).fit(valid.train),
            valid))
    log(f"  EASE tuned ({time.perf_counter() - started:.0f} s)")

    def ours(p):
        return ndcg(rf.create("implicit_als", seed=0, **{**ALS_FIXED, **p}).fit(valid.train),
                    valid)

    def theirs(p):
        return implicit_ndcg(implicit_als(valid.train, {**ALS_FIXED, **p})[0], valid)

    for key, fn in (("implicit_als", ours), ("implicit", theirs)):
        first, _ = best_of(ALS_GRID, fn)  # alpha x lambda at 64 factors, then factors
        out[key] = best_of([{**first, "n_factors": f} for f in FACTOR_GRID], fn)
        log(f"  {key} tuned ({time.perf_counter() - started:.0f} s)")
    out["pure_svd"] = best_of(
        [{"n_factors": f} for f in SVD_GRID],
        lambda p: ndcg(rf.create("pure_svd", seed=0, **p).fit(valid.train), valid))
    out["_seconds"] = ({}, time.perf_counter() - started)
    return out


# ----------------------------------------------------------------------------- runs
def fmt(params: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in params.items()) or "-"


def run_dataset(name: str, tune: bool, log) -> list[str]:
    data = load(name)
    split = holdout_per_user(data, 0.2, seed=42)
    lines = [f"## {name}", "", f"{data!r}; {split!r}", ""]
    tuned = tune_all(split, log) if tune else {}
    lam = tuned.get("lenskit_ease", ({"regularization": 500.0}, 0))[0]["regularization"]
    als = {**ALS_FIXED, "regularization": 1.0, "alpha": 10.0}
    if tune:
        als.update(tuned["implicit_als"][0])
    lines += same_settings(split, lam, als, log)
    if tune:
        lines += tuned_table(split, tuned, log)
    return lines


def warm_up() -> None:
    """Compile (or load cached) numba kernels and import the peers outside every timing."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user": rng.integers(0, 50, 600), "item": rng.integers(0, 40, 600)})
    tiny = Dataset.from_frame(frame.drop_duplicates(), name="warm-up")
    split = holdout_per_user(tiny, 0.2, seed=0)
    for name, params in (("implicit_als", {"n_factors": 4, "iterations": 2}),
                         ("implicit_als", {"n_factors": 4, "iterations": 2,
                                           "solver": "cholesky"}),
                         ("ease", {}), ("pure_svd", {"n_factors": 3})):
        ndcg(rf.create(name, **params).fit(split.train), split)
    implicit_ndcg(implicit_als(split.train, {"n_factors": 4, "iterations": 2,
                                             "regularization": 1.0, "alpha": 1.0})[0], split)
    lenskit_ease(split.train, 10.0)


def same_settings(split, lam: float, als: dict, log) -> list[str]:
    rows = []
    ours_runs, peer_runs = [], []
    for seed in SEEDS:  # init noise: mean over seeds, identical seeds for both libraries
        ours = rf.create("implicit_als", seed=seed, **als).fit(split.train)
        peer, peer_fit, peer_iters = implicit_als(split.train, als, seed=seed)
        ours_runs.append((ndcg(ours, split), ours.fit_seconds_,
                          float(np.mean(ours.iteration_seconds_))))
        peer_runs.append((implicit_ndcg(peer, split), peer_fit, float(np.mean(peer_iters))))
    for label, runs in (("implicit_als (recoforge)", ours_runs),
                        ("AlternatingLeastSquares (implicit)", peer_runs)):
        values = np.asarray(runs)
        rows.append((label, fmt(als), float(values[:, 0].mean()), float(values[:, 1].mean()),
                     float(values[:, 2].mean()), float(values[:, 0].std())))
    log("  ALS done")
    ease = rf.create("ease", regularization=lam).fit(split.train)
    pipe, lk_fit = lenskit_ease(split.train, lam)
    lk_lists, lk_rec = lenskit_lists(pipe, split)
    started = time.perf_counter()
    ease_lists = our_lists(ease, split)
    ease_rec = time.perf_counter() - started
    lk_via_ours = ndcg(PeerEASE(lenskit_weights_in_our_order(pipe, split.train))
                       .fit(split.train), split)
    rows.append(("ease (recoforge)", f"regularization={lam:g}", ndcg_of_lists(ease_lists, split),
                 ease.fit_seconds_, None, None))
    rows.append(("EASEScorer (LensKit)", f"regularization={lam:g}",
                 ndcg_of_lists(lk_lists, split), lk_fit, None, None))
    log("  EASE done")
    out = ["### Same settings", "",
           f"ALS rows: mean over seeds {SEEDS} (the same seeds for both libraries; sd of "
           f"NDCG in brackets). EASE is deterministic.", "",
           "| model | params | NDCG@10 | fit s | s / iteration |", "|---|---|---|---|---|"]
    for label, params, value, fit, per_iter, sd in rows:
        it = "-" if per_iter is None else f"{per_iter:.3f}"
        spread = "" if sd is None else f" (sd {sd:.4f})"
        out.append(f"| {label} | {params} | {value:.4f}{spread} | {fit:.2f} | {it} |")
    a, b = rows[0], rows[1]
    e, lk = rows[2], rows[3]
    out += ["", f"- implicit ALS: NDCG ratio {a[2] / b[2]:.4f} (target >= 0.99), fit-time ratio "
            f"{a[3] / b[3]:.2f} (target <= 1.2).",
            f"- EASE: NDCG ratio {e[2] / lk[2]:.4f} (target >= 1), fit-time ratio "
            f"{e[3] / lk[3]:.2f} (target <= 1). LensKit's weights ranked by our scorer give "
            f"NDCG@10 {lk_via_ours:.4f} (same lists, cross-check). Recommending for all users: "
            f"recoforge {ease_rec:.1f} s, LensKit batch.recommend(n_jobs=1) {lk_rec:.1f} s.", ""]
    return out


def tuned_table(split, tuned: dict, log) -> list[str]:
    out = ["### Tuned (validation split from train; refitted on all of train)", "",
           "| model | tuned params | validation NDCG@10 | test NDCG@10 | fit s |",
           "|---|---|---|---|---|"]
    results = {}
    for key, label in (("ease", "ease (recoforge)"), ("implicit_als", "implicit_als (recoforge)"),
                       ("pure_svd", "pure_svd (recoforge)")):
        params, valid = tuned[key]
        extra = ALS_FIXED if key == "implicit_als" else {}
        model = rf.create(key, **({"seed": 0} if key != "ease" else {}), **{**extra, **params})
        model.fit(split.train)
        results[label] = ndcg(model, split)
        out.append(f"| {label} | {fmt({**extra, **params})} | {valid:.4f} | {results[label]:.4f}"
                   f" | {model.fit_seconds_:.2f} |")
    params, valid = tuned["implicit"]
    peer, fit, _ = implicit_als(split.train, {**ALS_FIXED, **params})
    results["implicit"] = implicit_ndcg(peer, split)
    out.append(f"| AlternatingLeastSquares (implicit) | {fmt({**ALS_FIXED, **params})} | "
               f"{valid:.4f} | {results['implicit']:.4f} | {fit:.2f} |")
    params, valid = tuned["lenskit_ease"]
    pipe, fit = lenskit_ease(split.train, params["regularization"])
    weights = lenskit_weights_in_our_order(pipe, split.train)  # its lists = ours from its B
    results["lenskit"] = ndcg(PeerEASE(weights).fit(split.train), split)
    out.append(f"| EASEScorer (LensKit) | {fmt(params)} | {valid:.4f} | "
               f"{results['lenskit']:.4f} | {fit:.2f} |")
    ours = max(v for k, v in results.items() if "recoforge" in k)
    peers = max(results["implicit"], results["lenskit"])
    out += ["", f"Best of ours / best tuned peer: {ours:.4f} / {peers:.4f} = "
            f"{ours / peers:.4f} (target >= 1.03). Tuning took "
            f"{tuned['_seconds'][1]:.0f} s.", ""]
    log("  tuned table done")
    return out


# ----------------------------------------------------------------------------- scale
SCALE_PARAMS = {"n_factors": 64, "iterations": 3, "regularization": 1.0, "alpha": 10.0}


def scale_worker(library: str, n_interactions: int) -> dict:
    """Fit one library on the synthetic data; peak RSS of this process (own subprocess)."""
    from recoforge.data.synthetic import scalable_interactions

    started = time.perf_counter()
    data = scalable_interactions(n_interactions, seed=0)
    generated = time.perf_counter() - started
    data.matrix()  # the CSR view every library starts from
    before_fit = _reset_peak_rss()
    if library == "recoforge":
        model = rf.create("implicit_als", seed=0, **SCALE_PARAMS).fit(data)
        fit, per_iter = model.fit_seconds_, list(model.iteration_seconds_)
    else:
        _, fit, per_iter = implicit_als(data, SCALE_PARAMS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"library": library, "pairs": len(data.interactions), "users": data.n_users,
            "items": data.n_items, "generate_s": generated, "fit_s": fit,
            "iteration_s": per_iter, "max_rss_gib": peak / 2**30,
            "rss_before_fit_gib": before_fit / 2**30, "fit_peak_rss_gib": _peak_rss() / 2**30}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> int:
    """Reset the kernel's RSS high-water mark (Linux clear_refs 5); returns current RSS."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def _peak_rss() -> int:
    return _status_kib("VmHWM")


def run_scale(n_interactions: int, log) -> list[str]:
    out = ["## Scale: implicit ALS on scalable_interactions"
           f"({n_interactions:_}, seed=0)", "",
           f"Params: {fmt(SCALE_PARAMS)}. Each library in its own subprocess. The kernel's "
           f"RSS high-water mark is reset (clear_refs) after the data and its CSR are built "
           f"(`RSS before fit`); `peak RSS` is the high-water mark of the whole process from "
           f"then on, i.e. during fit. Target: recoforge within 8 GiB.", "",
           "| library | pairs | users x items | fit s | s / iteration | RSS before fit GiB | "
           "peak RSS GiB |", "|---|---|---|---|---|---|---|"]
    for library in ("recoforge", "implicit"):
        proc = subprocess.run([sys.executable, __file__, "--scale-worker", library,
                               "--scale-n", str(n_interactions)], capture_output=True,
                              text=True, check=True)
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        per_iter = ", ".join(f"{s:.1f}" for s in res["iteration_s"])
        out.append(f"| {library} | {res['pairs']:,} | {res['users']:,} x {res['items']:,} | "
                   f"{res['fit_s']:.1f} | {per_iter} | {res['rss_before_fit_gib']:.2f} | "
                   f"{res['fit_peak_rss_gib']:.2f} |")
        log(f"  scale {library}: {res}")
    return out + [""]


# ----------------------------------------------------------------------------- main
def header(command: str) -> list[str]:
    load_avg = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    import implicit
    import lenskit

    return ["# Implicit ALS, EASE and PureSVD vs implicit and LensKit", "",
            f"Date: {time.strftime('%Y-%m-%d %H:%M')}. Machine: {platform.machine()}, "
            f"{os.cpu_count()} cores (shared with other jobs; load average at the start "
            f"{load_avg}), Python {platform.python_version()}, recoforge {rf.__version__}, "
            f"implicit {implicit.__version__}, lenskit {lenskit.__version__}, numpy "
            f"{np.__version__}.", f"Command: `{command}`", "",
            "Ratings as implicit events (value 1); per-user random 80/20 split (seed 42); full "
            "ranking over the catalogue with training items excluded; NDCG@10 with binary "
            "relevance computed by one function for every library's lists. Fit times are "
            "wall-clock seconds in this process.", ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m")
    parser.add_argument("--no-tune", action="store_true", help="skip the validation tuning")
    parser.add_argument("--scale", action="store_true", help="also the 20M-interaction run")
    parser.add_argument("--scale-n", type=int, default=20_000_000)
    parser.add_argument("--scale-worker", choices=("recoforge", "implicit"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.scale_worker:
        print(json.dumps(scale_worker(args.scale_worker, args.scale_n)))
        return

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    command = "python benchmarks/bench_als_ease.py " + " ".join(sys.argv[1:])
    lines = header(command.strip())
    warm_up()
    for name in [n for n in args.datasets.split(",") if n]:
        log(name)
        lines += run_dataset(name, not args.no_tune, log)
    if args.scale:
        lines += run_scale(args.scale_n, log)
    lines.append(f"Load average at the end: {', '.join(f'{v:.2f}' for v in os.getloadavg())}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
