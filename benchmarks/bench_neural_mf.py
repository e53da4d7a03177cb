"""``embedding_mf`` (MSE) against the seeds' Keras matrix factorisation, same split (issue 11).

Targets (issue 11): RMSE at most the Keras model's with the same settings, in at most a
third of its training time; and, tuned, within 0.005 of this project's tuned ``sgd_mf``
(benchmarks/results/rating_mf.md, ML-1M: 0.8472 on the same split).

Split: the global random 80/20 split of the ratings, ``holdout_global(data, 0.2, seed=42)``
(the split of bench_rating_mf.py), rebuilt here by ``neural_split.make_split`` and checked
against the fingerprint of the files the Keras peer reads (``neural_split.py write
--protocol ratings``). Validation (tuning only): ``holdout_global(train, 0.1, seed=1)``.

Parts:

1. ``same``: our ``embedding_mf`` and ``benchmarks/peers/keras_mf.py`` (a separate process
   in the TensorFlow venv) with the same settings -- embedding dimension, epochs, batch
   size, Adam and its learning rate, MSE, initial std, and the L2 term in its per-example
   form (Keras ``--reg-mode batch``: ``reg * mean over the batch of |p_u|^2 + |q_i|^2``,
   which is exactly embedding_mf's ``regularization`` term), alternating ours, Keras,
   ours, Keras (``--repeats`` pairs); medians of each side and the median of the
   per-pair time ratios. Training time: ``fit`` alone (ours, after one warm-up fit in
   this process, which pays torch's lazy imports once; Keras: ``model.fit``, its graph
   tracing in the first epoch included, as it is part of every Keras fit).
2. ``tune``: embedding_mf over a small grid (embedding dim, regularisation, learning
   rate, batch size) on the validation split, the epoch count chosen from the per-epoch
   validation RMSE (the engine's validation callback, ``patience`` 3); refitted with the
   chosen epochs on the whole training part and scored once on the test part.

RMSE/MAE over all test pairs; predictions clipped to the training rating range; a pair
whose user or item has no training rating gets mu + b_i (or mu), as the Keras runner and
bench_rating_mf.py do (their number is reported).

Run (1 thread each, ``nice``)::

    .venv/bin/python benchmarks/neural_split.py write --dataset ml-100k --protocol ratings \\
        --work /tmp/neural        # and --dataset ml-1m
    RECOFORGE_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_neural_mf.py \\
        --datasets ml-100k,ml-1m --repeats 2 --parts same,tune
    RECOFORGE_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_neural_mf.py \\
        --parts tune --grid fine --append

Writes benchmarks/results/neural_mf.md (``--no-write`` to print only; ``--append`` adds
the sections to it; its hand-written summary is not generated: keep it when rerunning).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("RECOFORGE_NUM_THREADS", "1")  # before torch is configured

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import neural_split  # noqa: E402

import recoforge as rf  # noqa: E402
from recoforge.data.split import Split  # noqa: E402
from recoforge.errors import DataError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "neural_mf.md"
KERAS = ROOT / "benchmarks" / "peers" / "keras_mf.py"
SGD_MF_TUNED = 0.8472  # rating_mf.md, ML-1M, tuned sgd_mf, same split

#: validation grid of embedding_mf (epochs chosen per run from the validation curve)
GRIDS = {
    "coarse": [{"embedding_dim": d, "regularization": reg, "learning_rate": 0.005,
                "batch_size": 4096} for d, reg in itertools.product((64, 128), (0.05, 0.1, 0.2))],
    # around the coarse grid's best (dim 64, reg 0.05; dim 128 did not help)
    "fine": [*({"embedding_dim": 64, "regularization": reg, "learning_rate": 0.005,
                "batch_size": 4096} for reg in (0.03, 0.04, 0.06)),
             {"embedding_dim": 64, "regularization": 0.05, "learning_rate": 0.002,
              "batch_size": 4096}],
}
TUNE_MAX_EPOCHS = 30
TUNE_PATIENCE = 3  # epochs without validation improvement before stopping


# ---------------------------------------------------------------------- data
def load_split(name: str, part: str, work: Path) -> Split:
    """The rating split ``part`` of ``name``, checked against the peer's files."""
    split = neural_split.make_split(neural_split.load(name, "ratings"), "ratings", part)
    meta_path = work / f"{name}-ratings" / part / "split.json"
    if not meta_path.is_file():
        raise DataError(f"{meta_path} not found: run neural_split.py write --dataset {name} "
                        f"--protocol ratings --work {work}")
    written = json.loads(meta_path.read_text())["train_fingerprint"]
    if split.train.interactions.fingerprint() != written:
        raise DataError(f"{meta_path}: the peer's split differs from the rebuilt one")
    return split


def errors(predicted: np.ndarray, actual: np.ndarray) -> tuple[float, float]:
    err = predicted - actual
    return float(np.sqrt(np.mean(err ** 2))), float(np.mean(np.abs(err)))


def predict_split(model, split: Split) -> tuple[np.ndarray, int]:
    """Test predictions; pairs without a training rating of the user or item: mu + b_i."""
    test, train = split.test, split.train
    users = train.user_index.to_index(test.user_index.ids[test.users], unknown="ignore")
    items = train.item_index.to_index(test.item_index.ids[test.items], unknown="ignore")
    matrix = train.matrix()
    user_rated = np.diff(matrix.indptr) > 0
    item_rated = np.bincount(matrix.indices, minlength=matrix.shape[1]) > 0
    known_user = (users >= 0) & user_rated[np.maximum(users, 0)]
    known_item = (items >= 0) & item_rated[np.maximum(items, 0)]
    known = known_user & known_item
    pred = np.empty(len(users), dtype=np.float64)
    pred[known] = model.predict(train.user_index.ids[users[known]],
                                train.item_index.ids[items[known]])
    module = model.module
    fill = np.full(int((~known).sum()), float(module.global_bias.detach()))
    bias = module.item_bias.weight.detach().numpy()[:, 0]
    cold_user = (~known_user & known_item)[~known]
    fill[cold_user] += bias[items[~known][cold_user]]
    pred[~known] = np.clip(fill, model.rating_min_, model.rating_max_)
    return pred, int((~known).sum())


# ---------------------------------------------------------------------- runs
def run_ours(params: dict, split: Split) -> dict:
    model = rf.create("embedding_mf", loss="mse", device="cpu", seed=0, **params)
    start = time.perf_counter()
    model.fit(split.train)
    seconds = time.perf_counter() - start
    pred, fallback = predict_split(model, split)
    rmse, mae = errors(pred, np.asarray(split.test.values, dtype=np.float64))
    return {"fit_s": seconds, "rmse": rmse, "mae": mae, "fallback_pairs": fallback}


def keras_args(params: dict) -> list[str]:
    return ["--embedding-dim", str(params["embedding_dim"]), "--epochs", str(params["epochs"]),
            "--batch-size", str(params["batch_size"]), "--lr", str(params["learning_rate"]),
            "--reg", str(params["regularization"]), "--reg-mode", "batch",
            "--init-std", str(params["init_scale"]), "--seed", "0"]


def run_keras(params: dict, folder: Path, python: str, threads: int) -> dict:
    command = [python, str(KERAS), "--data", str(folder), "--threads", str(threads),
               *keras_args(params)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DataError(f"keras_mf.py failed ({done.returncode}): "
                        f"{done.stderr.strip().splitlines()[-1:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return {"fit_s": out["train_seconds"], "rmse": out["rmse"], "mae": out["mae"],
            "fallback_pairs": out["fallback_pairs"], "first_epoch_s": out["epoch_seconds"][0],
            "library": out["library"]}


# ---------------------------------------------------------------------- parts
def same_settings(name: str, params: dict, args: argparse.Namespace,
                  log: Callable[[str], None]) -> str:
    split = load_split(name, "test", args.work)
    folder = args.work / f"{name}-ratings" / "test"
    threads = int(os.environ["RECOFORGE_NUM_THREADS"])
    log(f"{name}: {split!r}")
    ours, theirs, ratios = neural_split.paired_runs(
        args.repeats, lambda _: run_ours(params, split),
        lambda _: run_keras(params, folder, args.keras_python, threads), log, peer="keras",
        metric="rmse", keys=("mae", "first_epoch_s"))
    ratio = float(np.median(ratios))
    lines = ["| model | fit s (median) | fit s (each run) | RMSE | MAE |",
             "|---|---:|---|---:|---:|"]
    for label, row in (("recoforge embedding_mf", ours), ("Keras MF (seed)", theirs)):
        lines.append(f"| {label} | {row['fit_s']:.2f} | {', '.join(map(str, row['fit_all']))}"
                     f" | {row['rmse']:.4f} | {row['mae']:.4f} |")
    verdict_rmse = "holds" if ours["rmse"] <= theirs["rmse"] else (
        f"misses by {ours['rmse'] - theirs['rmse']:.4f}")
    verdict_time = "holds" if ratio <= 1 / 3 else f"misses ({ratio:.2f} > 0.33)"
    return (f"## {name}: same settings\n\n" + "\n".join(lines) + "\n\n"
            f"- fit-time ratio ours / Keras: median {ratio:.3f} "
            f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)}); target <= 0.333: "
            f"{verdict_time}\n"
            f"- RMSE ours - Keras: {ours['rmse'] - theirs['rmse']:+.4f}; target <= 0: "
            f"{verdict_rmse}\n"
            f"- Keras first epoch (graph tracing included): {theirs['first_epoch_s']:.2f} s "
            f"(median); {theirs['library']}\n"
            f"- test pairs without a training rating of the user or item (mu + b_i): ours "
            f"{ours['fallback_pairs']}, Keras {theirs['fallback_pairs']}; load average "
            f"after: {os.getloadavg()[0]:.2f}\n")


def validation_curve(params: dict, split: Split) -> tuple[list[float], float]:
    """Validation RMSE after each epoch (fit with the engine's validation callback)."""
    actual = np.asarray(split.test.values, dtype=np.float64)

    def negative_rmse(model) -> float:
        return -errors(predict_split(model, split)[0], actual)[0]

    model = rf.create("embedding_mf", loss="mse", device="cpu", seed=0,
                      epochs=TUNE_MAX_EPOCHS, patience=TUNE_PATIENCE, **params)
    start = time.perf_counter()
    model.fit(split.train, validation=negative_rmse)
    return [-float(v) for v in model.validation_history_], time.perf_counter() - start


def tune(name: str, args: argparse.Namespace, log: Callable[[str], None]) -> str:
    valid = load_split(name, "valid", args.work)
    lines = ["| params | best epoch | validation RMSE | s (with validation) |",
             "|---|---:|---:|---:|"]
    best: tuple[float, dict] | None = None
    for params in GRIDS[args.grid]:
        params = {**params, "init_scale": args.init_scale}
        curve, seconds = validation_curve(params, valid)
        epoch = int(np.argmin(curve)) + 1
        log(f"  validation {params}: best epoch {epoch} rmse {min(curve):.4f} ({seconds:.0f}s)"
            f" curve {[round(v, 4) for v in curve]}")
        lines.append(f"| {fmt(params)} | {epoch} | {min(curve):.4f} | {seconds:.0f} |")
        if best is None or min(curve) < best[0]:
            best = (min(curve), {**params, "epochs": epoch})
    assert best is not None
    chosen = best[1]
    result = run_ours(chosen, load_split(name, "test", args.work))
    gap = result["rmse"] - SGD_MF_TUNED
    verdict = "holds" if gap <= 0.005 else f"misses by {gap - 0.005:.4f}"
    return (f"## {name}: embedding_mf tuned on holdout_global(train, 0.1, seed=1), "
            f"grid {args.grid!r}\n\n"
            f"- command: `RECOFORGE_NUM_THREADS={os.environ['RECOFORGE_NUM_THREADS']} nice "
            f".venv/bin/python benchmarks/bench_neural_mf.py {' '.join(sys.argv[1:])}`\n\n"
            f"Epochs up to {TUNE_MAX_EPOCHS} (stopped after {TUNE_PATIENCE} epochs without "
            f"improvement), chosen from the validation curve; refitted on the whole "
            f"training part with the chosen epochs.\n\n"
            + "\n".join(lines) + "\n\n"
            f"| model | params | fit s | test RMSE | MAE | validation RMSE |\n"
            f"|---|---|---:|---:|---:|---:|\n"
            f"| recoforge embedding_mf (tuned) | {fmt(chosen)} | {result['fit_s']:.2f} | "
            f"{result['rmse']:.4f} | {result['mae']:.4f} | {best[0]:.4f} |\n"
            f"| recoforge sgd_mf (tuned, rating_mf.md) | n_factors=200, n_epochs=80, "
            f"lr 0.005, reg_factors=0.06 | | {SGD_MF_TUNED:.4f} | 0.6663 | 0.8554 |\n\n"
            f"- embedding_mf - sgd_mf: {gap:+.4f}; target <= +0.005: {verdict}\n"
            f"- load average after: {os.getloadavg()[0]:.2f}\n")


# ---------------------------------------------------------------------- report
def fmt(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def header(args: argparse.Namespace, same: dict) -> str:
    import torch

    command = " ".join(sys.argv[1:])
    return (f"# embedding_mf vs the seeds' Keras MF (issue 11)\n\n"
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- machine: {platform.system()} {platform.release()}, {platform.machine()}, "
            f"{os.cpu_count()} cores (shared with other jobs), Python "
            f"{platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op thread(s) during the fits)\n"
            f"- load average before the run: {os.getloadavg()[0]:.2f}\n"
            f"- command: `RECOFORGE_NUM_THREADS={os.environ['RECOFORGE_NUM_THREADS']} nice "
            f".venv/bin/python benchmarks/bench_neural_mf.py {command}`\n"
            f"- Keras peer: `{args.keras_python} benchmarks/peers/keras_mf.py --data "
            f"{args.work}/DATASET-ratings/test --threads "
            f"{os.environ['RECOFORGE_NUM_THREADS']} {' '.join(keras_args(same))}`\n"
            f"- same settings: {fmt(same)}, Adam, MSE; L2 per example (Keras "
            f"`--reg-mode batch` = embedding_mf's `regularization`); seed 0\n"
            f"- split: holdout_global(0.2, seed=42) of the ratings (as rating_mf.md); "
            f"alternating runs, ours then Keras, {args.repeats} pairs\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-1m")
    parser.add_argument("--repeats", type=int, default=2, help="alternating pairs")
    parser.add_argument("--parts", default="same,tune", help="same, tune (comma-separated)")
    parser.add_argument("--tune-dataset", default="ml-1m")
    parser.add_argument("--grid", default="coarse", choices=sorted(GRIDS))
    parser.add_argument("--append", action="store_true",
                        help="append the sections (no header) to --out instead of rewriting")
    parser.add_argument("--embedding-dim", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--reg", type=float, default=0.02)
    parser.add_argument("--init-scale", type=float, default=0.05)
    parser.add_argument("--work", type=Path, default=Path("/tmp/neural"))
    parser.add_argument("--keras-python", default="/tmp/tf/bin/python")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    same = {"embedding_dim": args.embedding_dim, "epochs": args.epochs,
            "batch_size": args.batch_size, "learning_rate": args.lr,
            "regularization": args.reg, "init_scale": args.init_scale}
    parts = {p for p in args.parts.split(",") if p}

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    warm = load_split("ml-100k", "test", args.work)  # torch's lazy imports, once
    run_ours({**same, "epochs": 1}, warm)
    sections = [header(args, same)]
    if "same" in parts:
        for name in args.datasets.split(","):
            sections.append(same_settings(name, same, args, log))
            log(sections[-1])
    if "tune" in parts:
        sections.append(tune(args.tune_dataset, args, log))
        log(sections[-1])
    report = "\n".join(sections)
    if args.append:
        report = "\n".join(sections[1:])
        if not args.no_write:
            args.out.write_text(args.out.read_text() + "\n" + report)
    elif not args.no_write:
        args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
