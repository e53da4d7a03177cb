"""``neumf`` (and ``gmf`` / ``mlp``) against RecBole's NeuMF, same split (issue 11).

Target (issue 11): NDCG@10 at least RecBole NeuMF's with the same hyperparameters
(embedding sizes, MLP layers, epochs, learning rate, batch size, negatives), in at most half
of RecBole's training time on this machine's CPU.

Split: the per-user random 80/20 split ``holdout_per_user(data, 0.2, seed=42)`` of the
ratings as implicit events (as als_ease.md and bpr.md), rebuilt by
``neural_split.rebuild`` from the ``split.json`` that RecBole's files came with (the
training fingerprint is checked). Our lists are measured by
:func:`recoforge.evaluation.evaluate` on that split; RecBole's through
``neural_split.score`` (the same ``evaluate`` on its written top-100 lists).

Same hyperparameters, and how they map:

- embeddings ``--mf-dim`` (GMF) and ``--mlp-dim`` (MLP tower), MLP layers ``--layers``
  (ReLU after each, as RecBole's ``MLPLayers``), dropout ``--dropout`` before every MLP
  layer, embeddings initialised N(0, 0.01), linear layers with torch's default, Adam,
  learning rate, no weight decay, BCE with ``--negatives`` uniform negatives per positive,
  no pretraining (RecBole's default ``use_pretrain: False``), a fixed number of epochs;
- batch size: RecBole's ``train_batch_size`` counts rows *including* the sampled
  negatives (its loader takes ``batch_size // (1 + negatives)`` positives per step); our
  ``batch_size`` counts positives. ``--batch-size 2048`` with 1 negative is therefore
  RecBole 2048 and ours 1024: the same positives, negatives and optimiser steps per epoch;
- one difference: our dropout mask on the user embedding is shared by a positive and its
  negatives (the first MLP layer is split into a user half and an item half, computed
  once per row and once per item; see ``recoforge.models.neural.ncf``).

Training time: ``fit`` alone for ours (after one warm-up fit in this process: torch's lazy
imports and the compiled samplers); ``trainer.fit`` alone for RecBole (its data loading
and dataset building before it are excluded). Runs alternate ours, RecBole, ours, RecBole
(``--repeats`` pairs), one torch thread each, ``nice``; medians and the median of the
per-pair time ratios are reported.

Run::

    .venv/bin/python benchmarks/neural_split.py write --dataset ml-100k --work /tmp/neural
    RECOFORGE_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_neural_ncf.py \\
        --datasets ml-100k --repeats 2

Writes benchmarks/results/neural_ncf.md (``--no-write`` to print only).
"""

from __future__ import annotations

import argparse
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
from recoforge.evaluation import evaluate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "neural_ncf.md"
RUNNER = ROOT / "benchmarks" / "peers" / "recbole_runner.py"
KS = (10, 20)
METRICS = ("ndcg@10", "ndcg@20", "recall@10", "hit_rate@10")


# ---------------------------------------------------------------------- settings
def ours_params(args: argparse.Namespace) -> dict:
    """neumf's parameters equal to RecBole's flags (batch size in positives)."""
    return {"mf_embedding_dim": args.mf_dim, "mlp_embedding_dim": args.mlp_dim,
            "mlp_layers": args.layers, "dropout": args.dropout, "epochs": args.epochs,
            "learning_rate": args.lr, "batch_size": args.batch_size // (1 + args.negatives),
            "n_negatives": args.negatives, "negative_sampler": "uniform",
            "init_scale": 0.01, "optimizer": "adam", "weight_decay": 0.0,
            "training_precision": args.training_precision}


def recbole_args(args: argparse.Namespace) -> list[str]:
    return ["--model", "NeuMF", "--epochs", str(args.epochs), "--lr", str(args.lr),
            "--batch-size", str(args.batch_size), "--mf-embedding-size", str(args.mf_dim),
            "--mlp-embedding-size", str(args.mlp_dim), "--mlp-hidden-size", args.layers,
            "--dropout", str(args.dropout), "--neg-samples", str(args.negatives)]


# ---------------------------------------------------------------------- runs
def run_ours(name: str, params: dict, split: Split) -> dict:
    model = rf.create(name, device="cpu", seed=0, **params)
    start = time.perf_counter()
    model.fit(split.train)
    seconds = time.perf_counter() - start
    result = evaluate(model, split, k=list(KS), metrics=["ndcg", "recall", "hit_rate"])
    return {"fit_s": seconds, **{m: float(result.summary[m]) for m in METRICS},
            "loss": [round(float(v), 4) for v in model.loss_history_]}


def run_recbole(args: argparse.Namespace, folder: Path, lists: Path) -> dict:
    threads = os.environ["RECOFORGE_NUM_THREADS"]
    command = ["nice", args.recbole_python, str(RUNNER), "--data", str(folder), "--threads",
               threads, "--seed", "0", *recbole_args(args), "--out", str(lists)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DataError(f"recbole_runner.py failed ({done.returncode}): "
                        f"{done.stderr.strip().splitlines()[-1:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    scored = neural_split.score(folder, lists, KS)
    return {"fit_s": float(out["train_seconds"]), **{m: float(scored[m]) for m in METRICS},
            "loss": out["loss_per_epoch"], "library": out["library"],
            "params": out["params"]}


# ---------------------------------------------------------------------- parts
def row(label: str, result: dict) -> str:
    return (f"| {label} | {result['fit_s']:.2f} | "
            f"{', '.join(map(str, result.get('fit_all', [round(result['fit_s'], 2)])))} | "
            + " | ".join(f"{result[m]:.4f}" for m in METRICS) + " |")


TABLE_HEAD = ("| model | fit s (median) | fit s (each run) | NDCG@10 | NDCG@20 | Recall@10 | "
              "HR@10 |\n|---|---:|---|---:|---:|---:|---:|")


def same_settings(name: str, args: argparse.Namespace, log: Callable[[str], None]) -> str:
    folder = args.work / name / "test"
    split, _ = neural_split.rebuild(folder)
    log(f"{name}: {split!r}")
    params = ours_params(args)
    lists = args.work / "out" / f"ncf_{name}_recbole.tsv"
    ours, theirs, ratios = neural_split.paired_runs(
        args.repeats, lambda _: run_ours("neumf", params, split),
        lambda _: run_recbole(args, folder, lists), log, peer="recbole", keys=METRICS)
    ratio = float(np.median(ratios))
    gap = ours["ndcg@10"] - theirs["ndcg@10"]
    lines = [TABLE_HEAD, row("recoforge neumf", ours), row("RecBole NeuMF", theirs)]
    extra = []
    if args.extras:
        extra_lines = [TABLE_HEAD]
        for label, model, model_params in extra_models(args, params):
            result = run_ours(model, model_params, split)
            log(f"  {label}: {result['fit_s']:.2f}s ndcg@10 {result['ndcg@10']:.4f}")
            extra_lines.append(row(label, result))
        extra = ["", "Ours only, same settings (one run each):", "", *extra_lines]
    return (f"## {name}: same hyperparameters\n\n" + "\n".join(lines) + "\n\n"
            f"- fit-time ratio ours / RecBole: median {ratio:.3f} "
            f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)}); target <= 0.5: "
            f"{'holds' if ratio <= 0.5 else f'misses ({ratio:.2f} > 0.5)'}\n"
            f"- NDCG@10 ours - RecBole: {gap:+.4f} (each run: ours {ours['ndcg_all']}, "
            f"RecBole {theirs['ndcg_all']}); target >= 0: "
            f"{'holds' if gap >= 0 else f'misses by {-gap:.4f}'}\n"
            f"- training loss per epoch (last pair): ours {ours['loss']}, RecBole "
            f"{theirs['loss']}\n"
            f"- RecBole's effective parameters: {json.dumps(theirs['params'])} "
            f"({theirs['library']})\n"
            f"- load average after: {os.getloadavg()[0]:.2f}\n" + "\n".join(extra) + "\n")


def extra_models(args: argparse.Namespace, params: dict) -> list[tuple[str, str, dict]]:
    shared = {k: params[k] for k in ("epochs", "learning_rate", "batch_size", "n_negatives",
                                     "init_scale", "optimizer", "weight_decay")}
    return [
        ("recoforge gmf", "gmf", {**shared, "embedding_dim": args.mf_dim}),
        ("recoforge mlp", "mlp", {**shared, "embedding_dim": args.mlp_dim,
                                  "layers": args.layers, "dropout": args.dropout}),
        (f"recoforge neumf, pretrain=True ({args.epochs} + {args.epochs} + {args.epochs} "
         f"epochs)", "neumf", {**params, "pretrain": True, "pretrain_epochs": args.epochs}),
    ]


# ---------------------------------------------------------------------- report
def header(args: argparse.Namespace) -> str:
    import torch

    command = " ".join(sys.argv[1:])
    params = ", ".join(f"{k}={v}" for k, v in ours_params(args).items())
    return (f"# neumf vs RecBole NeuMF (issue 11)\n\n"
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- machine: {platform.system()} {platform.release()}, {platform.machine()}, "
            f"{os.cpu_count()} cores (shared with other jobs), Python "
            f"{platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op thread(s) during the fits)\n"
            f"- load average before the run: {os.getloadavg()[0]:.2f}\n"
            f"- command: `RECOFORGE_NUM_THREADS={os.environ['RECOFORGE_NUM_THREADS']} nice "
            f".venv/bin/python benchmarks/bench_neural_ncf.py {command}`\n"
            f"- RecBole: `nice {args.recbole_python} benchmarks/peers/recbole_runner.py "
            f"--data {args.work}/DATASET/test --threads "
            f"{os.environ['RECOFORGE_NUM_THREADS']} --seed 0 {' '.join(recbole_args(args))}`\n"
            f"- ours: neumf {params}, device cpu, seed 0 (batch_size counts positives: "
            f"RecBole's {args.batch_size} rows = {ours_params(args)['batch_size']} "
            f"positives + their negatives)\n"
            f"- split: holdout_per_user(0.2, seed=42) of the ratings as implicit events; "
            f"full ranking, training items excluded; alternating runs, ours then RecBole, "
            f"{args.repeats} pairs\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k")
    parser.add_argument("--repeats", type=int, default=2, help="alternating pairs")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=2048,
                        help="RecBole's rows per batch (positives and negatives)")
    parser.add_argument("--mf-dim", type=int, default=64)
    parser.add_argument("--mlp-dim", type=int, default=64)
    parser.add_argument("--layers", default="128,64")
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--training-precision", default="float32",
                        choices=("float32", "bfloat16"),
                        help="our training_precision (RecBole: float32)")
    parser.add_argument("--negatives", type=int, default=1)
    parser.add_argument("--extras", action="store_true",
                        help="also gmf, mlp and pretrained neumf (ours only)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/neural"))
    parser.add_argument("--recbole-python", default="/tmp/recbole/bin/python")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    first = args.datasets.split(",")[0]
    warm, _ = neural_split.rebuild(args.work / first / "test")  # lazy imports, compiling
    run_ours("neumf", {**ours_params(args), "epochs": 1}, warm)
    sections = [header(args)]
    for name in args.datasets.split(","):
        sections.append(same_settings(name, args, log))
        log(sections[-1])
    report = "\n".join(sections)
    if not args.no_write:
        args.out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
