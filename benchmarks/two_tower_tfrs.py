"""``two_tower`` against TensorFlow Recommenders' two-tower retrieval on ML-100K (issue 12).

Target: factorized top-100 accuracy of two_tower at least TFRS's with the same epochs and
embedding size, in at most half its training time.

Split: the TFRS tutorials' protocol: the 100,000 ratings shuffled (seed 42), 80% train,
20% test, every rating an event; candidates are all 1,682 movies. Metric: the share of
test events whose movie ranks in the top k of all movies for the query (user, event
time), training movies not excluded (TFRS's ``FactorizedTopK``), computed for both sides
by the same NumPy code (``peers/tfrs_runner.topk_accuracy``) from exported vectors.

Both sides: ID and timestamp features (user id embedding, timestamp in 1,000 quantile
buckets), item id embedding, embedding size 32, 5 epochs, batch 2,048, Adagrad at 0.1,
in-batch softmax. TFRS: the "context features" tutorial's towers (concatenation then a
Dense layer of 32; see the runner). Ours: ``two_tower`` with linear towers (the sum of
32-wide embeddings, i.e. concatenation then a linear layer), log-q correction, and in a
second row the history input on (the mean of the user's training items: an ID feature
too). Training time: ``model.fit`` for TFRS (graph tracing included, as in every Keras
fit); ``fit`` for ours after one warm-up fit in the process (torch's lazy imports paid
once). One thread each, run one after the other in one session.

Run::

    /tmp/tf/bin/pip install tensorflow-cpu tensorflow-recommenders tf-keras
    RECOFORGE_NUM_THREADS=1 .venv/bin/python benchmarks/two_tower_tfrs.py \\
        --out benchmarks/results/two_tower.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "peers"))
from tfrs_runner import KS, topk_accuracy  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
TF_PYTHON = Path("/tmp/tf/bin/python")


def split(seed: int = 42) -> tuple[pd.DataFrame, pd.DataFrame]:
    from recoforge.data.movielens import load_movielens

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = load_movielens("100k", DATASETS / "ml-100k")
    frame = data.interactions.to_frame()[["user", "item", "timestamp"]]
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("int64") // 10**9 \
        if not np.issubdtype(frame["timestamp"].dtype, np.number) else frame["timestamp"]
    frame = frame.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(frame))
    cut = int(0.8 * len(frame))
    return (frame.iloc[order[:cut]].reset_index(drop=True),
            frame.iloc[order[cut:]].reset_index(drop=True))


def run_tfrs(folder: Path, args: argparse.Namespace) -> dict:
    cmd = [str(TF_PYTHON), str(ROOT / "benchmarks" / "peers" / "tfrs_runner.py"),
           "--data", str(folder), "--epochs", str(args.epochs), "--embedding-dim",
           str(args.dim), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--time-buckets", str(args.time_buckets)]
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", CUDA_VISIBLE_DEVICES="")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode:
        raise SystemExit(f"TFRS runner failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_ours(train: pd.DataFrame, test: pd.DataFrame, args: argparse.Namespace,
             history: bool) -> dict:
    import recoforge as rf
    from recoforge.data import Dataset, IdIndex, Interactions
    from recoforge.models.query import Query

    items = IdIndex(np.unique(np.concatenate([train["item"], test["item"]])), name="item")
    inter = Interactions.from_frame(train.assign(rating=1.0), rating_col="rating",
                                    timestamp_col="timestamp", item_index=items,
                                    kind="implicit")
    data = Dataset(inter, name="ml-100k")
    params = dict(embedding_dim=args.dim, epochs=args.epochs, batch_size=args.batch_size,
                  optimizer="adagrad", learning_rate=args.lr, user_id_embedding=True,
                  unknown_user_rate=0.0, history=history, time_buckets=args.time_buckets,
                  seed=0)
    rf.create("two_tower", **{**params, "epochs": 1}).fit(data)  # warm-up: lazy imports
    model = rf.create("two_tower", **params).fit(data)
    users = model.user_index_.to_index(test["user"].to_numpy(), unknown="ignore")
    hist = model.train_matrix_[np.maximum(users, 0)]
    hist = hist.multiply((users >= 0)[:, None]).tocsr()
    query = Query(users=users, history=hist, stored=False,
                  context={"time": test["timestamp"].to_numpy()})
    targets = model.item_index_.to_index(test["item"].to_numpy())
    acc = topk_accuracy(model.query_vectors(query).astype(np.float64),
                        model.item_vectors().astype(np.float64), targets)
    return {"fit_seconds": model.fit_seconds_, "loss": model.loss_history_.tolist(), **acc}


def table(rows: list[tuple[str, dict]], tf_info: dict, args: argparse.Namespace) -> str:
    peer = rows[0][1]
    head = "| model | " + " | ".join(f"top-{k}" for k in KS) + " | fit s | x TFRS time |"
    lines = [head, "|" + "---|" * (len(KS) + 3)]
    for name, res in rows:
        accs = " | ".join(f"{res[f'top_{k}']:.4f}" for k in KS)
        lines.append(f"| {name} | {accs} | {res['fit_seconds']:.2f} | "
                     f"{res['fit_seconds'] / peer['fit_seconds']:.2f} |")
    return "\n".join([
        "# two_tower vs TensorFlow Recommenders retrieval (ML-100K, IDs + timestamp)",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by "
        "`benchmarks/two_tower_tfrs.py` (protocol in its docstring): ratings shuffled "
        "(seed 42), 80/20, candidates all items; factorized top-k accuracy of the test "
        "events (no exclusion), same NumPy code for both; embedding 32, "
        f"{args.epochs} epochs, batch {args.batch_size}, Adagrad {args.lr}, "
        f"{args.time_buckets} time buckets, one thread each. TensorFlow {tf_info['tf']}, "
        f"TFRS 0.7.7 (TFRS's own FactorizedTopK top-100: {tf_info['tfrs_top_100']:.4f}).",
        "", *lines, "",
    ])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--dim", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--time-buckets", type=int, default=1000)
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    train, test = split()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train.to_csv(folder / "train.csv", index=False)
        test.to_csv(folder / "test.csv", index=False)
        peer = run_tfrs(folder, args)
    rows = [("TFRS two-tower (user id + time; item id)", peer),
            ("two_tower (user id + time; item id)", run_ours(train, test, args, False)),
            ("two_tower (+ history mean)", run_ours(train, test, args, True))]
    text = table(rows, peer, args)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
