"""Train one RecBole context-aware model (FM, FFM, NFM, DeepFM, WideDeep) on a click split
written by ``benchmarks/ctr_split.py``; write its test-pair probabilities.

Runs inside a RecBole venv, never the project's (see /work/shared/PEERS.md and
``recbole_runner.py``)::

    /tmp/recbole/bin/python benchmarks/peers/recbole_ctr_runner.py --model FM \\
        --data /tmp/ctr/ml-1m --epochs 5 --out /tmp/ctr/ml-1m/FM.tsv

What it does: ``DATA/train.tsv``, ``valid.tsv``, ``test.tsv`` (``user item rating``)
become RecBole's ``split.{train,valid,test}.inter`` (``benchmark_filename``),
``DATA/users.tsv`` (``user gender age occupation``) the ``.user`` file (token fields) and
``DATA/items.tsv`` (``item genres``, ``|``-separated) the ``.item`` file (``genre`` a
token_seq field); ``threshold: {rating: 4}`` turns ratings into RecBole's click label,
the context-aware quick-start settings (``eval_args`` mode ``labeled``, no training
negatives) apply, and ``eval_step: 0`` trains exactly ``--epochs`` epochs with no
validation and no checkpoint. Training time is the wall time of ``trainer.fit`` alone.
Every test pair is then scored with ``model.predict`` (a probability) and written as TSV
``user item label probability`` (external ids); RecBole's own AUC and LogLoss on the test
loader are reported beside it as a cross-check. The last stdout line is a JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # before torch is imported

MODELS = ("FM", "FFM", "NFM", "DeepFM", "WideDeep")
WITH_MLP = ("NFM", "DeepFM", "WideDeep")
REPORTED = ("epochs", "learning_rate", "train_batch_size", "learner", "weight_decay", "seed",
            "embedding_size", "mlp_hidden_size", "dropout_prob", "train_neg_sample_args",
            "threshold", "eval_args")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--data", type=Path, required=True, help="folder written by ctr_split.py")
    p.add_argument("--out", type=Path, required=True, help="TSV user item label probability")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--embedding-size", type=int, default=10)
    p.add_argument("--mlp-hidden-size", help="comma-separated (NFM, DeepFM, WideDeep)")
    p.add_argument("--dropout", type=float, help="dropout_prob (NFM, DeepFM, WideDeep)")
    p.add_argument("--threshold", type=float, default=4.0, help="click: rating >= this")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return p.parse_args(argv)


def config_dict(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "data_path": str(work), "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id", "rating"],
                     "user": ["user_id", "gender", "age", "occupation"],
                     "item": ["item_id", "genre"]},
        "threshold": {"rating": args.threshold},
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": None,
                      "mode": "labeled"},
        "train_neg_sample_args": None, "metrics": ["AUC", "LogLoss"], "valid_metric": "AUC",
        "epochs": args.epochs, "eval_step": 0, "learning_rate": args.lr,
        "train_batch_size": args.batch_size, "embedding_size": args.embedding_size,
        "seed": args.seed, "reproducibility": True, "show_progress": False,
        "checkpoint_dir": str(work / "saved"), "use_gpu": args.device == "cuda",
        "state": "WARNING", "log_wandb": False,
    }
    if args.mlp_hidden_size or args.dropout is not None:
        if args.model not in WITH_MLP:
            raise SystemExit(f"error: --mlp-hidden-size/--dropout do not apply to {args.model}")
        if args.mlp_hidden_size:
            cfg["mlp_hidden_size"] = [int(v) for v in args.mlp_hidden_size.split(",")]
        if args.dropout is not None:
            cfg["dropout_prob"] = args.dropout
    return cfg


def write_atomic(data: Path, work: Path) -> None:
    """RecBole atomic files from the split's TSV files."""
    folder = work / "split"
    folder.mkdir()
    for part in ("train", "valid", "test"):
        lines = (data / f"{part}.tsv").read_text().splitlines()[1:]
        with (folder / f"split.{part}.inter").open("w") as out:
            out.write("user_id:token\titem_id:token\trating:float\n")
            out.writelines(line + "\n" for line in lines)
    lines = (data / "users.tsv").read_text().splitlines()[1:]
    with (folder / "split.user").open("w") as out:
        out.write("user_id:token\tgender:token\tage:token\toccupation:token\n")
        out.writelines(line + "\n" for line in lines)
    with (folder / "split.item").open("w") as out:
        out.write("item_id:token\tgenre:token_seq\n")
        for line in (data / "items.tsv").read_text().splitlines()[1:]:
            item, _, genres = line.partition("\t")
            out.write(f"{item}\t{genres.replace(' ', '_').replace('|', ' ')}\n")


def train_and_predict(args: argparse.Namespace, cfg: dict) -> dict[str, Any]:
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.threads:
        torch.set_num_threads(args.threads)
    argv, sys.argv = sys.argv, sys.argv[:1]  # Config also reads --key=value from argv
    try:
        config = Config(model=args.model, dataset="split", config_dict=cfg)
    finally:
        sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    started = time.perf_counter()
    trainer.fit(train_data, None, verbose=False, saved=False, show_progress=False)
    train_seconds = time.perf_counter() - started
    own = trainer.evaluate(test_data, load_best_model=False)
    uid, iid, label = dataset.uid_field, dataset.iid_field, config["LABEL_FIELD"]
    rows = []
    model.eval()
    with torch.no_grad():
        for batched in test_data:
            inter = batched[0].to(config["device"])
            probs = model.predict(inter).float().cpu().numpy()
            users = dataset.id2token(uid, inter[uid].cpu().numpy())
            items = dataset.id2token(iid, inter[iid].cpu().numpy())
            labels = inter[label].cpu().numpy()
            rows += [f"{u}\t{i}\t{int(y)}\t{p:.8g}\n" for u, i, y, p in
                     zip(users, items, labels, probs)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as handle:
        handle.write("user\titem\tlabel\tprobability\n")
        handle.writelines(rows)
    params = {key: config[key] for key in REPORTED if config[key] is not None}
    losses = [round(float(v), 5) for v in trainer.train_loss_dict.values()]
    return {"library": f"recbole {recbole.__version__}", "model": args.model,
            "params": params, "epochs": args.epochs,
            "train_seconds": round(train_seconds, 3),
            "recbole_auc": float(own["auc"]), "recbole_logloss": float(own["logloss"]),
            "loss_per_epoch": losses, "test_pairs": len(rows),
            "train_pairs": len(train_data._dataset), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(config["device"]),
            "out": str(args.out)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.data, args.out = args.data.resolve(), args.out.resolve()
    with tempfile.TemporaryDirectory(prefix="recbole-ctr-") as tmp:
        work = Path(tmp)
        write_atomic(args.data, work)
        cfg = config_dict(args, work)
        here = os.getcwd()
        os.chdir(work)  # RecBole writes log_tensorboard/ into the working directory
        try:
            result = train_and_predict(args, cfg)
        finally:
            os.chdir(here)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
