"""Click prediction on MovieLens: recoforge's fm, ffm, nfm, deepfm, wide_deep beside RecBole's
FM, FFM, NFM, DeepFM, WideDeep, in one run (issue 12).

Runs in the project's venv; RecBole runs in its own (``--recbole``, default
/tmp/recbole/bin/python; recipe in /work/shared/PEERS.md) through
``benchmarks/peers/recbole_ctr_runner.py``, which never imports recoforge::

    python benchmarks/ctr_split.py --dataset ml-1m --work /tmp/ctr --epochs 5 \\
        --json benchmarks/results/ctr_ml-1m.json

Protocol (RecBole's context-aware quick start): every rating is a labelled pair, a click
when rating >= 4; a uniformly random 80/10/10 split of the ratings (``--seed-split``,
default 42; the 10% validation part is written but not used: fixed epochs, no early
stopping on either side); fields: user id, gender, age (1M: the age group), occupation,
item id, genres (a multi-label field, mean-pooled on both sides). Both sides: embedding
size 10, Adam, learning rate 1e-3, batch 2048, the same epochs, and the same MLP sizes and
dropout (RecBole's defaults: NFM 64,64,64 / 0.0, DeepFM 128,128,128 / 0.2, WideDeep
32,16,8 / 0.1). Ours trains with ``label_threshold=4`` (observed pairs labelled, no
sampled negatives), as RecBole does. Every test pair is scored by both (probabilities),
and AUC and log loss are computed here by one function for both sides (RecBole's own
figures are printed beside them as a cross-check). Training time: our ``fit`` (feature
preparation included) against RecBole's ``trainer.fit`` (its dataset build excluded),
the two alternating per model, each with ``--threads`` torch threads.

Prints a markdown table and one JSON line per model; ``--json`` writes them all.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import rankdata

import recoforge as rf
from recoforge.data import Dataset, Interactions, build_features
from recoforge.data.movielens import load_movielens
from recoforge.threads import set_num_threads

HERE = Path(__file__).resolve().parent
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", HERE.parent.parent / "shared" /
                               "datasets"))
#: ours -> (RecBole's name, MLP sizes, dropout) with RecBole's defaults
MODELS: dict[str, tuple[str, str | None, float | None]] = {
    "fm": ("FM", None, None), "ffm": ("FFM", None, None),
    "nfm": ("NFM", "64,64,64", 0.0), "deepfm": ("DeepFM", "128,128,128", 0.2),
    "wide_deep": ("WideDeep", "32,16,8", 0.1)}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties averaged), the Mann-Whitney statistic."""
    ranks = rankdata(scores)
    pos = labels == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy, probabilities clipped to [1e-15, 1 - 1e-15] (as RecBole)."""
    p = np.clip(probs.astype(np.float64), 1e-15, 1 - 1e-15)
    return float(np.mean(-labels * np.log(p) - (1 - labels) * np.log(1 - p)))


# ----------------------------------------------------------------------------- the split
def write_split(dataset: str, folder: Path, seed: int) -> tuple[Dataset, pd.DataFrame]:
    """Write train/valid/test/users/items TSV files; return our training Dataset (full
    user and item vocabularies, features) and the test pairs with labels."""
    data = load_movielens(dataset.removeprefix("ml-"), DATASETS / dataset)
    frame = data.interactions.to_frame()
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = [int(round(0.8 * len(frame))), int(round(0.9 * len(frame)))]
    parts = {"train": frame.iloc[order[:cut[0]]], "valid": frame.iloc[order[cut[0]:cut[1]]],
             "test": frame.iloc[order[cut[1]:]]}
    folder.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        part.rename(columns={"value": "rating"})[["user", "item", "rating"]].to_csv(
            folder / f"{name}.tsv", sep="\t", index=False)
    users = data.user_info.copy()
    users["age"] = users["age_group"] if "age_group" in users else users["age"].astype(str)
    users = users.loc[data.user_index.ids, ["gender", "age", "occupation"]].astype(str)
    users.index.name = "user"
    users.to_csv(folder / "users.tsv", sep="\t")
    items = data.item_info.loc[data.item_index.ids, ["genres"]].fillna("")
    items.index.name = "item"
    items.to_csv(folder / "items.tsv", sep="\t")
    train = Interactions.from_frame(parts["train"], rating_col="value", kind="explicit",
                                    user_index=data.user_index, item_index=data.item_index)
    ours = Dataset(train, name=dataset,
                   user_features=build_features(users, data.user_index,
                                                categorical=["gender", "age", "occupation"]),
                   item_features=build_features(items, data.item_index,
                                                multilabel={"genres": r"\|"}))
    return ours, parts["test"].reset_index(drop=True)


# ----------------------------------------------------------------------------- the runs
def run_ours(name: str, train: Dataset, test: pd.DataFrame, args: argparse.Namespace,
             threshold: float) -> dict[str, Any]:
    _, layers, dropout = MODELS[name]
    params: dict[str, Any] = {"embedding_dim": 10, "epochs": args.epochs,
                              "batch_size": 2048, "learning_rate": 1e-3,
                              "label_threshold": threshold, "seed": 0, "device": args.device}
    if layers is not None:
        params.update(layers=layers, dropout=dropout)
    params.update(json.loads(args.ours_params))
    model = rf.create(name, **params)
    started = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - started
    probs = model.predict(test["user"], test["item"])
    labels = (test["value"].to_numpy() >= threshold).astype(np.float64)
    return {"model": name, "params": params, "train_seconds": round(seconds, 3),
            "auc": auc(labels, probs), "logloss": log_loss(labels, probs),
            "loss_per_epoch": [round(float(v), 5) for v in model.loss_history_]}


def run_recbole(name: str, folder: Path, args: argparse.Namespace,
                test: pd.DataFrame) -> dict[str, Any]:
    peer, layers, dropout = MODELS[name]
    out = folder / f"{peer}.tsv"
    cmd = [args.recbole, str(HERE / "peers" / "recbole_ctr_runner.py"), "--model", peer,
           "--data", str(folder), "--epochs", str(args.epochs), "--out", str(out),
           "--threads", str(args.threads), "--device", args.device]
    if layers is not None:
        cmd += ["--mlp-hidden-size", layers, "--dropout", str(dropout)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"RecBole {peer} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    preds = pd.read_csv(out, sep="\t", dtype={"user": str, "item": str})
    truth = test.assign(user=test["user"].astype(str), item=test["item"].astype(str))
    merged = truth.merge(preds, on=["user", "item"], how="inner")
    if len(merged) != len(test):
        raise SystemExit(f"RecBole {peer} scored {len(merged)} of {len(test)} test pairs")
    labels = merged["label"].to_numpy(np.float64)
    result.update(auc=auc(labels, merged["probability"].to_numpy()),
                  logloss=log_loss(labels, merged["probability"].to_numpy()))
    return result


def warm_up() -> None:
    """Pay torch's one-time lazy imports (the first optimiser pulls in torch._dynamo, some
    seconds) before any timed fit: RecBole builds its optimiser outside its timed fit."""
    import torch

    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


def table(rows: list[tuple[dict, dict]], dataset: str) -> str:
    lines = [f"| {dataset} | AUC ours | AUC RecBole | log loss ours | log loss RecBole "
             f"| train s ours | train s RecBole | time ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for ours, theirs in rows:
        lines.append(f"| {ours['model']} | {ours['auc']:.4f} | {theirs['auc']:.4f} | "
                     f"{ours['logloss']:.4f} | {theirs['logloss']:.4f} | "
                     f"{ours['train_seconds']:.1f} | {theirs['train_seconds']:.1f} | "
                     f"{ours['train_seconds'] / theirs['train_seconds']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", choices=("ml-100k", "ml-1m"), default="ml-1m")
    p.add_argument("--work", type=Path, default=Path("/tmp/ctr"))
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--seed-split", type=int, default=42)
    p.add_argument("--recbole", default="/tmp/recbole/bin/python")
    p.add_argument("--skip-peer", action="store_true", help="ours only")
    p.add_argument("--ours-params", default="{}", help="JSON overrides of our parameters")
    p.add_argument("--json", type=Path, help="write every record here")
    args = p.parse_args(argv)
    set_num_threads(args.threads)
    warm_up()
    folder = args.work / args.dataset
    train, test = write_split(args.dataset, folder, args.seed_split)
    print(f"{args.dataset}: {len(train.interactions)} train pairs, {len(test)} test pairs, "
          f"load {os.getloadavg()[0]:.1f}", file=sys.stderr)
    rows, records = [], []
    for name in args.models.split(","):
        ours = run_ours(name, train, test, args, 4.0)
        print(json.dumps(ours), flush=True)
        theirs = {"model": MODELS[name][0], "auc": float("nan"), "logloss": float("nan"),
                  "train_seconds": float("nan")}
        if not args.skip_peer:
            theirs = run_recbole(name, folder, args, test)
            print(json.dumps(theirs), flush=True)
        rows.append((ours, theirs))
        records.append({"ours": ours, "recbole": theirs})
    print(table(rows, args.dataset))
    if args.json:
        args.json.write_text(json.dumps({"dataset": args.dataset, "epochs": args.epochs,
                                         "threads": args.threads, "command": sys.argv,
                                         "runs": records}, indent=1))


if __name__ == "__main__":
    main()
