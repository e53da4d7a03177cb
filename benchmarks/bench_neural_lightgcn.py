"""``lightgcn`` against RecBole's LightGCN, same split, same hyperparameters (issue 11).

Target (issue 11): NDCG@10 at least RecBole LightGCN's with the same hyperparameters
(embedding size, layers, L2 weight, epochs, learning rate, batch size, one negative), in at
most half of RecBole's training time on this machine's CPU.

Split: the per-user random 80/20 split ``holdout_per_user(data, 0.2, seed=42)`` of the
ratings as implicit events (as als_ease.md and bpr.md), rebuilt by
``neural_split.rebuild`` from the ``split.json`` that RecBole's files came with (the
training fingerprint is checked). Our lists are measured by
:func:`recoforge.evaluation.evaluate` on that split; RecBole's through
``neural_split.score`` (the same ``evaluate`` on its written top-100 lists).

Same hyperparameters, and how they map: ``embedding_dim`` = ``embedding_size``,
``n_layers`` = ``n_layers``, ``regularization`` = ``reg_weight``, ``epochs``,
``learning_rate``, ``batch_size`` = ``train_batch_size`` (RecBole's LightGCN is PAIRWISE:
one row = a positive with its negative, so both count positives), one uniform negative per
positive, Adam, no weight decay, a fixed number of epochs. Two differences, both inside
the models' own definitions: the L2 term is the squared norm of the batch's layer-0
embeddings over the batch size (the paper's lambda |E^(0)|^2; RecBole's default
``require_pow: False`` adds the plain norms), and the layer-0 embeddings start N(0, 0.1^2)
(the paper's code; RecBole: Xavier uniform). With ``reg_weight`` 1e-5 the L2 term is
negligible in both.

Seeds: pair r runs both sides with seed r (RecBole ``--seed r``), so the NDCG columns show
seed-to-seed spread as well as the two libraries. Training time: ``fit`` alone for ours
(after one warm-up fit in this process: torch's lazy imports and the compiled samplers);
``trainer.fit`` alone for RecBole. Runs alternate ours, RecBole, ours, RecBole
(``--repeats`` pairs), one torch thread each, ``nice``; medians and the median of the
per-pair time ratios are reported.

Run::

    .venv/bin/python benchmarks/neural_split.py write --dataset ml-100k --work /tmp/neural
    RECOFORGE_NUM_THREADS=1 nice .venv/bin/python benchmarks/bench_neural_lightgcn.py \\
        --datasets ml-100k --repeats 3

Writes benchmarks/results/neural_lightgcn.md (``--no-write`` to print only).
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
RESULTS = ROOT / "benchmarks" / "results" / "neural_lightgcn.md"
RUNNER = ROOT / "benchmarks" / "peers" / "recbole_runner.py"
KS = (10, 20)
METRICS = ("ndcg@10", "ndcg@20", "recall@10", "hit_rate@10")


# ---------------------------------------------------------------------- settings
def ours_params(args: argparse.Namespace) -> dict:
    """lightgcn's parameters equal to RecBole's flags."""
    return {"embedding_dim": args.dim, "n_layers": args.layers,
            "regularization": args.reg, "epochs": args.epochs, "learning_rate": args.lr,
            "batch_size": args.batch_size, "n_negatives": 1, "negative_sampler": "uniform",
            "optimizer": "adam", "weight_decay": 0.0}


def recbole_args(args: argparse.Namespace) -> list[str]:
    return ["--model", "LightGCN", "--epochs", str(args.epochs), "--lr", str(args.lr),
            "--batch-size", str(args.batch_size), "--embedding-size", str(args.dim),
            "--n-layers", str(args.layers), "--reg-weight", str(args.reg),
            "--neg-samples", "1"]


# ---------------------------------------------------------------------- runs
def run_ours(params: dict, split: Split, seed: int) -> dict:
    model = rf.create("lightgcn", device="cpu", seed=seed, **params)
    start = time.perf_counter()
    model.fit(split.train)
    seconds = time.perf_counter() - start
    result = evaluate(model, split, k=list(KS), metrics=["ndcg", "recall", "hit_rate"])
    return {"fit_s": seconds, **{m: float(result.summary[m]) for m in METRICS},
            "loss": [round(float(v), 4) for v in model.loss_history_]}


def run_recbole(args: argparse.Namespace, folder: Path, lists: Path, seed: int) -> dict:
    threads = os.environ["RECOFORGE_NUM_THREADS"]
    command = ["nice", args.recbole_python, str(RUNNER), "--data", str(folder), "--threads",
               threads, "--seed", str(seed), *recbole_args(args), "--out", str(lists)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise DataError(f"recbole_runner.py failed ({done.returncode}): "
                        f"{done.stderr.strip().splitlines()[-1:]}")
    out = json.loads(done.stdout.strip().splitlines()[-1])
    scored = neural_split.score(folder, lists, KS)
    batches = -(-int(out["train_pairs"]) // args.batch_size)
    return {"fit_s": float(out["train_seconds"]), **{m: float(scored[m]) for m in METRICS},
            # RecBole reports the sum of the batch means; as a mean per batch like ours
            "loss": [round(v / batches, 4) for v in out["loss_per_epoch"]],
            "library": out["library"], "params": out["params"]}


# ---------------------------------------------------------------------- report
def row(label: str, result: dict) -> str:
    return (f"| {label} | {result['fit_s']:.2f} | {', '.join(map(str, result['fit_all']))} | "
            + " | ".join(f"{result[m]:.4f}" for m in METRICS)
            + f" | {', '.join(map(str, result['ndcg_all']))} |")


TABLE_HEAD = ("| model | fit s (median) | fit s (each run) | NDCG@10 | NDCG@20 | Recall@10 | "
              "HR@10 | NDCG@10 (seeds 0..) |\n|---|---:|---|---:|---:|---:|---:|---|")


def same_settings(name: str, args: argparse.Namespace, log: Callable[[str], None]) -> str:
    folder = args.work / name / "test"
    split, _ = neural_split.rebuild(folder)
    log(f"{name}: {split!r}")
    params = ours_params(args)
    lists = args.work / "out" / f"lightgcn_{name}_recbole.tsv"
    lists.parent.mkdir(parents=True, exist_ok=True)
    ours, theirs, ratios = neural_split.paired_runs(
        args.repeats, lambda seed: run_ours(params, split, seed),
        lambda seed: run_recbole(args, folder, lists, seed), log, peer="recbole",
        keys=METRICS)
    ratio = float(np.median(ratios))
    gap = ours["ndcg@10"] - theirs["ndcg@10"]
    lines = [TABLE_HEAD, row("recoforge lightgcn", ours), row("RecBole LightGCN", theirs)]
    return (f"## {name}: same hyperparameters\n\n" + "\n".join(lines) + "\n\n"
            f"- fit-time ratio ours / RecBole: median {ratio:.3f} "
            f"(pairs: {', '.join(f'{r:.3f}' for r in ratios)}); target <= 0.5: "
            f"{'holds' if ratio <= 0.5 else f'misses ({ratio:.2f} > 0.5)'}\n"
            f"- NDCG@10 ours - RecBole (medians over seeds): {gap:+.4f}; means "
            f"{ours['ndcg_mean']:.4f} vs {theirs['ndcg_mean']:.4f}; target >= 0: "
            f"{'holds' if gap >= 0 else f'misses by {-gap:.4f}'}\n"
            f"- training loss per epoch, mean BPR + L2 per positive (last pair): ours "
            f"{ours['loss']}, RecBole {theirs['loss']}\n"
            f"- RecBole's effective parameters: {json.dumps(theirs['params'])} "
            f"({theirs['library']})\n"
            f"- load average after: {os.getloadavg()[0]:.2f}\n")


def header(args: argparse.Namespace) -> str:
    import torch

    command = " ".join(sys.argv[1:])
    params = ", ".join(f"{k}={v}" for k, v in ours_params(args).items())
    threads = os.environ["RECOFORGE_NUM_THREADS"]
    return (f"# lightgcn vs RecBole LightGCN (issue 11)\n\n"
            f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
            f"- machine: {platform.system()} {platform.release()}, {platform.machine()}, "
            f"{os.cpu_count()} cores (shared with other jobs), Python "
            f"{platform.python_version()}, torch {torch.__version__} "
            f"({torch.get_num_threads()} intra-op thread(s) during the fits)\n"
            f"- load average before the run: {os.getloadavg()[0]:.2f}\n"
            f"- command: `RECOFORGE_NUM_THREADS={threads} nice .venv/bin/python "
            f"benchmarks/bench_neural_lightgcn.py {command}`\n"
            f"- RecBole: `nice {args.recbole_python} benchmarks/peers/recbole_runner.py "
            f"--data {args.work}/DATASET/test --threads {threads} --seed R "
            f"{' '.join(recbole_args(args))}`\n"
            f"- ours: lightgcn {params}, init_scale=0.1, device cpu, seed R\n"
            f"- split: holdout_per_user(0.2, seed=42) of the ratings as implicit events; "
            f"full ranking, training items excluded; alternating runs, ours then RecBole, "
            f"{args.repeats} pairs with seeds 0..{args.repeats - 1}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k")
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.001)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--reg", type=float, default=1e-5)
    parser.add_argument("--work", type=Path, default=Path("/tmp/neural"))
    parser.add_argument("--recbole-python", default="/tmp/recbole/bin/python")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    first = args.datasets.split(",")[0]
    warm, _ = neural_split.rebuild(args.work / first / "test")  # lazy imports, compiling
    run_ours({**ours_params(args), "epochs": 1}, warm, 0)
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
