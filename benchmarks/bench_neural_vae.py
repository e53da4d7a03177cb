"""mult_vae and recvae against RecBole 1.2.1's MultiVAE and RecVAE, same split, same settings.

The split is the per-user random 80/20 holdout of ``benchmarks/neural_split.py`` (all
ratings as implicit events, ``holdout_per_user(data, 0.2, seed=42)``), written for RecBole
by ``neural_split.py write``. In ONE run, alternating (RecBole first, then ours, per
setting and repeat), RecBole trains through ``benchmarks/peers/recbole_runner.py`` in its
own venv (its lists scored by ``neural_split.py score``: recoforge's evaluate on the same
split) and our model trains in this process and is scored by
``recoforge.evaluation.evaluate`` (full ranking, training items excluded). Both run on one
torch thread, niced. Training seconds: RecBole's ``trainer.fit``, our ``fit``.

Conversion of settings (RecBole -> ours):

- RecBole 1.2.1 trains its VAEs with a ``UserDataLoader``: an epoch walks the users in
  batches of ``train_batch_size`` users (plus its padding user, whose empty row adds
  nothing to the likelihood), exactly as ours; so ``epochs``, ``batch_size`` and
  ``total_anneal_steps`` (optimiser steps) carry over unchanged. (The runner's docstring
  says an epoch walks the interactions; its loss per epoch, one batch on ML-100K at batch
  size 2048, shows it does not.) A RecVAE epoch is ``n_enc_epochs`` encoder passes then
  ``n_dec_epochs`` decoder passes in both.
- MultiVAE's ``latent_dimension`` is the width of the encoder's output, mu and logvar
  together: ``latent_dim = latent_dimension / 2``. ``mlp_hidden_size [600]`` is
  ``hidden_dim=600``. RecVAE's ``hidden_dimension`` and ``latent_dimension`` are ours.
- RecBole samples z with noise of standard deviation 0.01 (``epsilon ~ N(0, 0.01^2)``),
  ours with the papers' N(0, 1) unless ``--noise-scale 0.01`` (our ``noise_scale``).
  Left as it is: RecBole's first-epoch old encoder is an independent random encoder,
  ours the initial encoder.

Run (needs RecBole in /tmp/recbole and the split in /tmp/neural)::

    python benchmarks/neural_split.py write --dataset ml-100k --work /tmp/neural
    python benchmarks/bench_neural_vae.py --datasets ml-100k [--settings short,long]
        [--models mult_vae,recvae] [--noise-scale 0.01] [--repeats 2]
        [--training-precision float32,bfloat16]

``--training-precision bfloat16`` runs our decoder output layer's products in bfloat16
while training (our ``training_precision``; RecBole stays float32); the default float32 is
the same arithmetic as RecBole's.

Writes benchmarks/results/neural_vae.md (``--out`` to change).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RECOFORGE_NUM_THREADS", "1")
os.nice(5)

import recoforge as rf  # noqa: E402
from recoforge.evaluation import evaluate  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "neural_vae.md"
PEER_PYTHON = Path(os.environ.get("RECBOLE_PYTHON", "/tmp/recbole/bin/python"))
_spec = importlib.util.spec_from_file_location("neural_split", ROOT / "benchmarks" /
                                               "neural_split.py")
assert _spec is not None and _spec.loader is not None
neural_split = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(neural_split)

#: (label, RecBole model, RecBole flags, our model, our params): "short" are the peer
#: commands of the brief (10 and 20 optimiser steps on ML-100K: barely trained), "long"
#: (ML-100K) and "b500" (ML-1M) train longer with smaller batches
SETTINGS: list[tuple[str, str, dict[str, Any], str, dict[str, Any]]] = [
    ("short", "MultiVAE",
     {"epochs": 10, "lr": 0.001, "batch-size": 2048, "mlp-hidden-size": 600,
      "latent-dim": 128, "dropout": 0.5, "anneal-cap": 0.2, "total-anneal-steps": 200000},
     "mult_vae",
     {"epochs": 10, "learning_rate": 0.001, "batch_size": 2048, "hidden_dim": 600,
      "latent_dim": 64, "dropout": 0.5, "anneal_cap": 0.2, "total_anneal_steps": 200000}),
    ("short", "RecVAE",
     {"epochs": 5, "lr": 0.001, "batch-size": 2048, "hidden-dim": 600, "latent-dim": 200,
      "dropout": 0.5, "beta": 0.2, "gamma": 0.005},
     "recvae",
     {"epochs": 5, "learning_rate": 0.001, "batch_size": 2048, "hidden_dim": 600,
      "latent_dim": 200, "dropout": 0.5, "beta": 0.2, "gamma": 0.005}),
    ("long", "MultiVAE",
     {"epochs": 50, "lr": 0.001, "batch-size": 128, "mlp-hidden-size": 600,
      "latent-dim": 128, "dropout": 0.5, "anneal-cap": 0.2, "total-anneal-steps": 200},
     "mult_vae",
     {"epochs": 50, "learning_rate": 0.001, "batch_size": 128, "hidden_dim": 600,
      "latent_dim": 64, "dropout": 0.5, "anneal_cap": 0.2, "total_anneal_steps": 200}),
    ("long", "RecVAE",
     {"epochs": 10, "lr": 0.001, "batch-size": 128, "hidden-dim": 600, "latent-dim": 200,
      "dropout": 0.5, "beta": 0.2, "gamma": 0.005},
     "recvae",
     {"epochs": 10, "learning_rate": 0.001, "batch_size": 128, "hidden_dim": 600,
      "latent_dim": 200, "dropout": 0.5, "beta": 0.2, "gamma": 0.005}),
    ("b500", "MultiVAE",
     {"epochs": 30, "lr": 0.001, "batch-size": 500, "mlp-hidden-size": 600,
      "latent-dim": 128, "dropout": 0.5, "anneal-cap": 0.2, "total-anneal-steps": 400},
     "mult_vae",
     {"epochs": 30, "learning_rate": 0.001, "batch_size": 500, "hidden_dim": 600,
      "latent_dim": 64, "dropout": 0.5, "anneal_cap": 0.2, "total_anneal_steps": 400}),
    ("b500", "RecVAE",
     {"epochs": 8, "lr": 0.001, "batch-size": 500, "hidden-dim": 600, "latent-dim": 200,
      "dropout": 0.5, "beta": 0.2, "gamma": 0.005},
     "recvae",
     {"epochs": 8, "learning_rate": 0.001, "batch_size": 500, "hidden_dim": 600,
      "latent_dim": 200, "dropout": 0.5, "beta": 0.2, "gamma": 0.005}),
]


def run_recbole(split_dir: Path, model: str, flags: dict[str, Any], out: Path) -> dict:
    """Train RecBole's model in its venv; its JSON record plus the scored lists."""
    command = [str(PEER_PYTHON), str(ROOT / "benchmarks" / "peers" / "recbole_runner.py"),
               "--model", model, "--data", str(split_dir), "--threads", "1", "--seed", "0",
               "--out", str(out)]
    for key, value in flags.items():
        command += [f"--{key}", str(value)]
    done = subprocess.run(["nice", *command], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"RecBole {model} failed: {done.stderr.strip().splitlines()[-1:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    scored = neural_split.score(split_dir, out, (10,))
    return {"seconds": record["train_seconds"], "ndcg@10": scored["ndcg@10"]}


def run_ours(split: Any, name: str, params: dict[str, Any]) -> dict:
    model = rf.create(name, seed=0, device="cpu", **params)
    start = time.perf_counter()
    model.fit(split.train)
    seconds = time.perf_counter() - start
    result = evaluate(model, split, k=[10], metrics=["ndcg"])
    return {"seconds": seconds, "ndcg@10": float(result.summary["ndcg@10"])}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default="ml-100k")
    parser.add_argument("--settings", default="short,long")
    parser.add_argument("--models", default="mult_vae,recvae")
    parser.add_argument("--noise-scale", type=float, default=1.0,
                        help="our noise_scale (RecBole's reparameterisation noise: 0.01)")
    parser.add_argument("--training-precision", default="float32",
                        help="our training_precision, comma-separated (float32, bfloat16): "
                             "one row each against the same RecBole run (RecBole: float32)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", type=Path, default=Path("/tmp/neural"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for dataset in args.datasets.split(","):
        split_dir = args.work / dataset / "test"
        split, _ = neural_split.rebuild(split_dir)
        for label, peer, flags, ours, params in SETTINGS:
            if label not in args.settings.split(",") or ours not in args.models.split(","):
                continue
            for repeat in range(args.repeats):
                lists = args.work / "out" / f"bench_vae_{dataset}_{peer}_{label}.tsv"
                theirs = run_recbole(split_dir, peer, flags, lists)
                for precision in args.training_precision.split(","):
                    mine_params = {**params, "noise_scale": args.noise_scale,
                                   "training_precision": precision}
                    mine = run_ours(split, ours, mine_params)
                    row = {"dataset": dataset, "setting": label, "model": ours,
                           "precision": precision, "peer": peer, "repeat": repeat,
                           "flags": flags, "params": mine_params, "ours": mine,
                           "recbole": theirs}
                    print(json.dumps(row), flush=True)
                    rows.append(row)
    write_table(rows, args.out, argv if argv is not None else sys.argv[1:])


def write_table(rows: list[dict], out: Path, argv: list[str]) -> None:
    lines = ["| dataset | setting | model | our training precision | NDCG@10 ours | "
             "NDCG@10 RecBole | train s ours | train s RecBole | time ratio |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        ours, theirs = row["ours"], row["recbole"]
        lines.append(f"| {row['dataset']} | {row['setting']} | {row['model']} | "
                     f"{row['precision']} | "
                     f"{ours['ndcg@10']:.4f} | {theirs['ndcg@10']:.4f} | "
                     f"{ours['seconds']:.1f} | {theirs['seconds']:.1f} | "
                     f"{ours['seconds'] / theirs['seconds']:.2f} |")
    settings = sorted({(r["setting"], r["model"], json.dumps(r["params"])) for r in rows})
    text = ["# mult_vae and recvae vs RecBole 1.2.1 (MultiVAE, RecVAE)", "",
            f"Command: `python benchmarks/bench_neural_vae.py {' '.join(argv)}`  ",
            f"Machine: {platform.platform()}, {os.cpu_count()} cores shared with other jobs; "
            f"one torch thread each, niced, alternating runs in one process.", "",
            *lines, "", "Our settings (RecBole's: the same, converted as in the script's "
            "docstring):", ""]
    text += [f"- {label} {model}: `{params}`" for label, model, params in settings]
    out.write_text("\n".join(text) + "\n")


if __name__ == "__main__":
    main()
