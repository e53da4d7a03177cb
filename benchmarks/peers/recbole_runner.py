"""Train one RecBole model on a split written by ``benchmarks/neural_split.py``; write its lists.

Runs inside a RecBole venv, never the project's (see /work/shared/PEERS.md)::

    python3 -m venv /tmp/recbole && /tmp/recbole/bin/pip install torch==2.13.0
    /tmp/recbole/bin/pip install recbole "numpy<2" "pandas<2.3" "scipy<1.12"
    /tmp/recbole/bin/pip uninstall -y ray

    /tmp/recbole/bin/python benchmarks/peers/recbole_runner.py --model MultiVAE \\
        --data /tmp/neural/ml-100k/test --epochs 10 --lr 0.001 --batch-size 2048 \\
        --out /tmp/neural/multivae.tsv
    .venv/bin/python benchmarks/neural_split.py score --split /tmp/neural/ml-100k/test \\
        --lists /tmp/neural/multivae.tsv

What it does: ``DATA/train.tsv`` becomes RecBole's train atomic file and ``DATA/test.tsv``
both its valid and test files (``benchmark_filename``; RecBole only builds its vocabulary
and evaluation loaders from them); ``eval_step: 0`` and no validation loader, so RecBole
trains exactly ``--epochs`` epochs with no early stopping and no checkpoint. The model is
trained through ``Config`` / ``create_dataset`` / ``data_preparation`` / ``get_model`` /
``get_trainer`` (``recbole.quick_start`` imports ray), from a temporary working folder
(RecBole writes ``log_tensorboard/`` and ``saved/`` into the working directory). Training
time is the wall time of ``trainer.fit`` alone. Every test user is then scored over the
whole catalogue (``full_sort_predict``; pair models such as NeuMF: ``model.predict`` over
all pairs in bounded blocks), training items and the padding column masked, and the
top ``--topk`` written as TSV ``user item rank`` (external ids). The last stdout line is a
JSON record: model, effective hyperparameters (read back from RecBole's config),
epochs, train seconds, loss per epoch.

Hyperparameters are explicit flags; one left out keeps RecBole's default (the JSON line
shows the value used). ``--embedding-size`` is LightGCN's ``embedding_size``, NeuMF's
``mf_embedding_size`` and ``mlp_embedding_size``, and the VAEs' ``latent_dimension``.
``--set KEY=VALUE`` passes any other RecBole option (VALUE read as JSON when it parses).

RecBole quirks worth knowing when matching its settings:

- An "epoch" of RecBole's MultiVAE and RecVAE walks the *interactions*, not the users:
  each batch of ``--batch-size`` interactions trains on the rating rows of their users, so
  a user with d training events is seen d times per epoch, and ``total_anneal_steps`` counts
  these batches. A RecVAE epoch is ``n_enc_epochs`` encoder passes plus ``n_dec_epochs``
  decoder passes over the interactions.
- The VAEs are PAIRWISE models whose loss never reads the negatives; this runner turns
  RecBole's negative sampler off for them (``train_neg_sample_args: None``), so that
  their training time is not inflated by discarded work. LightGCN (BPR) and NeuMF (BCE)
  sample ``--neg-samples`` uniform negatives per positive (RecBole's default 1).
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

MODELS = ("MultiVAE", "RecVAE", "LightGCN", "NeuMF")
VAES = ("MultiVAE", "RecVAE")
#: flag -> (RecBole config key, models it applies to)
MODEL_FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "mlp_hidden_size": ("mlp_hidden_size", ("MultiVAE", "NeuMF")),
    "latent_dim": ("latent_dimension", VAES),
    "hidden_dim": ("hidden_dimension", ("RecVAE",)),
    "dropout": ("dropout_prob", ("MultiVAE", "RecVAE", "NeuMF")),
    "anneal_cap": ("anneal_cap", ("MultiVAE",)),
    "total_anneal_steps": ("total_anneal_steps", ("MultiVAE",)),
    "beta": ("beta", ("RecVAE",)),
    "gamma": ("gamma", ("RecVAE",)),
    "mixture_weights": ("mixture_weights", ("RecVAE",)),
    "n_enc_epochs": ("n_enc_epochs", ("RecVAE",)),
    "n_dec_epochs": ("n_dec_epochs", ("RecVAE",)),
    "n_layers": ("n_layers", ("LightGCN",)),
    "reg_weight": ("reg_weight", ("LightGCN",)),
    "mf_embedding_size": ("mf_embedding_size", ("NeuMF",)),
    "mlp_embedding_size": ("mlp_embedding_size", ("NeuMF",)),
}
EMBEDDING_KEYS = {"LightGCN": ("embedding_size",), "NeuMF": ("mf_embedding_size",
                                                              "mlp_embedding_size"),
                  "MultiVAE": ("latent_dimension",), "RecVAE": ("latent_dimension",)}
#: RecBole keys reported in the JSON line (those that exist for the model)
REPORTED = ("epochs", "learning_rate", "train_batch_size", "learner", "weight_decay", "seed",
            "embedding_size", "n_layers", "reg_weight", "mf_embedding_size",
            "mlp_embedding_size", "mlp_hidden_size", "latent_dimension", "hidden_dimension",
            "dropout_prob", "anneal_cap", "total_anneal_steps", "beta", "gamma",
            "mixture_weights", "n_enc_epochs", "n_dec_epochs", "train_neg_sample_args")
PAIR_BLOCK = 200_000  # (user, item) pairs per model.predict call for pair models


class RunnerError(Exception):
    """Bad arguments or input: one line on stderr, exit status 2."""


# ----------------------------------------------------------------------------- arguments
def int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}") from None


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, choices=MODELS)
    p.add_argument("--data", type=Path, required=True, help="folder with train.tsv, test.tsv")
    p.add_argument("--out", type=Path, required=True, help="lists TSV (user item rank)")
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--lr", type=float, help="learning_rate (RecBole default 0.001)")
    p.add_argument("--batch-size", type=int, help="train_batch_size (default 2048)")
    p.add_argument("--embedding-size", type=int, help="see the module docstring")
    p.add_argument("--weight-decay", type=float, help="optimiser weight decay (default 0)")
    p.add_argument("--learner", help="optimiser: adam, sgd, adagrad, ... (default adam)")
    p.add_argument("--neg-samples", type=int, help="negatives per positive (LightGCN, NeuMF)")
    g = p.add_argument_group("model-specific (RecBole defaults when left out)")
    g.add_argument("--mlp-hidden-size", type=int_list, help="MultiVAE encoder / NeuMF MLP, "
                   "comma-separated")
    g.add_argument("--latent-dim", type=int, help="MultiVAE, RecVAE latent_dimension")
    g.add_argument("--hidden-dim", type=int, help="RecVAE hidden_dimension")
    g.add_argument("--dropout", type=float, help="dropout_prob (MultiVAE, RecVAE, NeuMF)")
    g.add_argument("--anneal-cap", type=float, help="MultiVAE")
    g.add_argument("--total-anneal-steps", type=int, help="MultiVAE (counts batches)")
    g.add_argument("--beta", type=float, help="RecVAE KL weight")
    g.add_argument("--gamma", type=float, help="RecVAE")
    g.add_argument("--mixture-weights", type=float_list, help="RecVAE prior, 3 numbers")
    g.add_argument("--n-enc-epochs", type=int, help="RecVAE")
    g.add_argument("--n-dec-epochs", type=int, help="RecVAE")
    g.add_argument("--n-layers", type=int, help="LightGCN")
    g.add_argument("--reg-weight", type=float, help="LightGCN")
    g.add_argument("--mf-embedding-size", type=int, help="NeuMF")
    g.add_argument("--mlp-embedding-size", type=int, help="NeuMF")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any other RecBole option (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--topk", type=int, default=100)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    return p.parse_args(argv)


def config_dict(args: argparse.Namespace, data_path: Path) -> dict[str, Any]:
    """RecBole options from the arguments; errors name a flag that does not apply."""
    if args.epochs < 1 or args.topk < 1:
        raise RunnerError("--epochs and --topk must be >= 1")
    cfg: dict[str, Any] = {
        "data_path": str(data_path), "benchmark_filename": ["train", "valid", "test"],
        "load_col": {"inter": ["user_id", "item_id"]}, "epochs": args.epochs,
        "eval_step": 0, "seed": args.seed, "reproducibility": True, "show_progress": False,
        "checkpoint_dir": str(data_path / "saved"), "use_gpu": args.device == "cuda",
        "state": "WARNING", "log_wandb": False,
    }
    for flag, key in (("lr", "learning_rate"), ("batch_size", "train_batch_size"),
                      ("weight_decay", "weight_decay"), ("learner", "learner")):
        if getattr(args, flag) is not None:
            cfg[key] = getattr(args, flag)
    for flag, (key, models) in MODEL_FLAGS.items():
        value = getattr(args, flag)
        if value is None:
            continue
        if args.model not in models:
            raise RunnerError(f"--{flag.replace('_', '-')} does not apply to {args.model} "
                              f"(only {', '.join(models)})")
        cfg[key] = value
    if args.embedding_size is not None:
        for key in EMBEDDING_KEYS[args.model]:
            if key in cfg and cfg[key] != args.embedding_size:
                raise RunnerError(f"--embedding-size {args.embedding_size} contradicts the "
                                  f"{key} given ({cfg[key]})")
            cfg[key] = args.embedding_size
    if args.model in VAES:
        if args.neg_samples is not None:
            raise RunnerError(f"--neg-samples does not apply to {args.model} (no negatives)")
        cfg["train_neg_sample_args"] = None
    elif args.neg_samples is not None:
        cfg["train_neg_sample_args"] = {"distribution": "uniform",
                                        "sample_num": args.neg_samples}
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RunnerError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            cfg[key] = json.loads(raw)
        except json.JSONDecodeError:
            cfg[key] = raw
    return cfg


# ----------------------------------------------------------------------------- data
def read_pairs(path: Path) -> list[tuple[str, str]]:
    """(user, item) external ids from a TSV with a ``user item ...`` header."""
    if not path.is_file():
        raise RunnerError(f"{path} not found (write the split with neural_split.py write)")
    with path.open() as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header[:2] != ["user", "item"]:
            raise RunnerError(f"{path} line 1: header must start with user, item; got {header}")
        pairs = []
        for number, line in enumerate(handle, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[0] or not fields[1]:
                raise RunnerError(f"{path} line {number}: expected user<TAB>item")
            pairs.append((fields[0], fields[1]))
    return pairs


def write_atomic(folder: Path, name: str, pairs: list[tuple[str, str]]) -> None:
    with (folder / f"split.{name}.inter").open("w") as handle:
        handle.write("user_id:token\titem_id:token\n")
        handle.writelines(f"{u}\t{i}\n" for u, i in pairs)


# ----------------------------------------------------------------------------- scoring
def score_block(model, users, n_items: int, interaction_cls, uid: str, iid: str):
    """(len(users), n_items) scores: full_sort_predict, or predict over all pairs."""
    import torch

    try:
        return model.full_sort_predict(interaction_cls({uid: users})).view(len(users), -1)
    except NotImplementedError:  # pair models (NeuMF)
        items = torch.arange(n_items, device=users.device)
        out = torch.empty((len(users), n_items), device=users.device)
        per_call = max(1, PAIR_BLOCK // n_items)
        for start in range(0, len(users), per_call):
            block = users[start:start + per_call]
            pairs = interaction_cls({uid: block.repeat_interleave(n_items),
                                     iid: items.repeat(len(block))})
            out[start:start + len(block)] = model.predict(pairs).view(len(block), n_items)
        return out


def top_lists(model, dataset, train_matrix, test_users: list[str], topk: int, device: str,
              batch: int = 256) -> list[tuple[str, str, int]]:
    """Top-``topk`` (user token, item token, rank) of each test user, training items masked."""
    import numpy as np
    import torch
    from recbole.data.interaction import Interaction

    uid, iid = dataset.uid_field, dataset.iid_field
    user_ids = dataset.token2id(uid, test_users)
    n_items = dataset.item_num
    rows: list[tuple[str, str, int]] = []
    model.eval()
    with torch.no_grad():
        for start in range(0, len(user_ids), batch):
            ids = np.asarray(user_ids[start:start + batch])
            users = torch.as_tensor(ids, dtype=torch.long, device=device)
            scores = score_block(model, users, n_items, Interaction, uid, iid).float()
            scores[:, 0] = -torch.inf  # padding item
            seen = train_matrix[ids].tocoo()
            scores[torch.as_tensor(seen.row, dtype=torch.long),
                   torch.as_tensor(seen.col, dtype=torch.long)] = -torch.inf
            best = torch.topk(scores, min(topk, n_items - 1), dim=1).indices.cpu().numpy()
            tokens = dataset.id2token(iid, best)
            for row in range(len(ids)):
                user = test_users[start + row]
                rows += [(user, str(tok), rank + 1) for rank, tok in enumerate(tokens[row])]
    return rows


# ----------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    args.data, args.out = args.data.resolve(), args.out.resolve()  # before chdir
    train_pairs = read_pairs(args.data / "train.tsv")
    test_pairs = read_pairs(args.data / "test.tsv")
    test_users = list(dict.fromkeys(u for u, _ in test_pairs))
    with tempfile.TemporaryDirectory(prefix="recbole-") as tmp:
        work = Path(tmp)
        (work / "split").mkdir()
        write_atomic(work / "split", "train", train_pairs)
        for name in ("valid", "test"):
            write_atomic(work / "split", name, test_pairs)
        cfg = config_dict(args, work)
        here = os.getcwd()
        os.chdir(work)  # RecBole writes log_tensorboard/ into the working directory
        try:
            return train_and_rank(args, cfg, test_users)
        finally:
            os.chdir(here)


def train_and_rank(args: argparse.Namespace, cfg: dict, test_users: list[str]) -> dict:
    import recbole
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    warnings.filterwarnings("ignore", category=FutureWarning)  # pandas / torch.amp notices
    if args.threads:
        torch.set_num_threads(args.threads)
    argv, sys.argv = sys.argv, sys.argv[:1]  # Config also reads --key=value from argv
    try:
        config = Config(model=args.model, dataset="split", config_dict=cfg)
    finally:
        sys.argv = argv
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    started = time.perf_counter()
    trainer.fit(train_data, None, verbose=False, saved=False, show_progress=False)
    train_seconds = time.perf_counter() - started
    started = time.perf_counter()
    train_matrix = train_data._dataset.inter_matrix(form="csr")
    rows = top_lists(model, dataset, train_matrix, test_users, args.topk, config["device"])
    rank_seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as handle:
        handle.write("user\titem\trank\n")
        handle.writelines(f"{u}\t{i}\t{r}\n" for u, i, r in rows)
    params = {key: config[key] for key in REPORTED if config[key] is not None}
    losses = [round(float(v), 4) for v in trainer.train_loss_dict.values()]
    return {"library": f"recbole {recbole.__version__}", "model": args.model,
            "data": str(args.data), "params": params, "epochs": args.epochs,
            "train_seconds": round(train_seconds, 3),
            "seconds_per_epoch": round(train_seconds / args.epochs, 3),
            "rank_seconds": round(rank_seconds, 3), "loss_per_epoch": losses,
            "users": len(test_users), "items": dataset.item_num - 1,
            "train_pairs": len(train_data._dataset), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "device": str(config["device"]),
            "out": str(args.out)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        result = run(args)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
