"""The seeds' Keras matrix factorisation on a rating split; prints test RMSE and fit time.

Runs inside a TensorFlow venv, never the project's::

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu   # TF 2.21, Keras 3
    .venv/bin/python benchmarks/neural_split.py write --dataset ml-1m --protocol ratings \\
        --work /tmp/neural
    /tmp/tf/bin/python benchmarks/peers/keras_mf.py --data /tmp/neural/ml-1m-ratings/test \\
        --embedding-dim 64 --epochs 10 --batch-size 1024 --lr 0.001 --reg 1e-6

The model (the seeds' "matrix factorisation with TensorFlow"): user and item embeddings
plus user and item biases, prediction ``r_hat = mu + b_u + b_i + p_u . q_i`` (``mu``, the
training mean, is a constant: the biases start at zero around it), trained with Adam on
the mean squared error of the training ratings. Embeddings start ``N(0, init_std^2)``.
``--reg`` is L2 on the embeddings, in one of two forms (``--reg-mode``):

- ``table`` (default, as the seed): Keras ``embeddings_regularizer=l2(reg)``, i.e.
  ``reg * (sum of every squared entry of both embedding tables)`` added to each batch's
  mean squared error;
- ``batch``: ``reg * mean over the batch of (|p_u|^2 + |q_i|^2)``, the per-example form.

``DATA/train.tsv`` and ``DATA/test.tsv`` (``user item rating``, from neural_split.py
``write --protocol ratings``: ``holdout_global(data, 0.2, seed=42)`` of bench_rating_mf.py)
are read; the vocabulary is the training part's. A test pair whose user or item has no
training rating gets ``mu + b_i`` (unknown user) or ``mu`` (unknown item), as in
bench_rating_mf.py; predictions are clipped to the training rating range (RMSE unclipped
also reported). Training time is the wall time of ``model.fit`` alone (graph tracing in
the first epoch included; seconds of each epoch reported). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported


class RunnerError(Exception):
    """Bad arguments or input: one line on stderr, exit status 2."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder with train.tsv, test.tsv")
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=0.001)
    p.add_argument("--reg", type=float, default=1e-6)
    p.add_argument("--reg-mode", choices=("table", "batch"), default="table")
    p.add_argument("--init-std", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="TensorFlow intra-op threads (default: TF's)")
    args = p.parse_args(argv)
    for name in ("embedding_dim", "epochs", "batch_size"):
        if getattr(args, name) < 1:
            raise RunnerError(f"--{name.replace('_', '-')} must be >= 1")
    if args.lr <= 0 or args.reg < 0 or args.init_std < 0:
        raise RunnerError("--lr must be > 0, --reg and --init-std >= 0")
    return args


def read_ratings(path: Path) -> tuple[list[str], list[str], list[float]]:
    """(users, items, ratings) of a TSV with header ``user item rating``."""
    if not path.is_file():
        raise RunnerError(f"{path} not found (write the split with neural_split.py write "
                          f"--protocol ratings)")
    users, items, ratings = [], [], []
    with path.open() as handle:
        header = handle.readline().rstrip("\n").split("\t")
        if header[:3] != ["user", "item", "rating"]:
            raise RunnerError(f"{path} line 1: header must be user, item, rating; got {header}")
        for number, line in enumerate(handle, start=2):
            fields = line.rstrip("\n").split("\t")
            try:
                ratings.append(float(fields[2]))
            except (IndexError, ValueError):
                raise RunnerError(f"{path} line {number}: expected user<TAB>item<TAB>rating"
                                  ) from None
            users.append(fields[0])
            items.append(fields[1])
    return users, items, ratings


def build_model(n_users: int, n_items: int, mean: float, args: argparse.Namespace):
    import keras
    from keras import layers, ops

    init = keras.initializers.RandomNormal(stddev=args.init_std, seed=args.seed)
    table_reg = keras.regularizers.l2(args.reg) if args.reg_mode == "table" and args.reg else None

    class MatrixFactorisation(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.user_embedding = layers.Embedding(n_users, args.embedding_dim,
                                                   embeddings_initializer=init,
                                                   embeddings_regularizer=table_reg)
            self.item_embedding = layers.Embedding(n_items, args.embedding_dim,
                                                   embeddings_initializer=init,
                                                   embeddings_regularizer=table_reg)
            self.user_bias = layers.Embedding(n_users, 1, embeddings_initializer="zeros")
            self.item_bias = layers.Embedding(n_items, 1, embeddings_initializer="zeros")

        def call(self, pairs):
            p = self.user_embedding(pairs[:, 0])
            q = self.item_embedding(pairs[:, 1])
            if args.reg_mode == "batch" and args.reg:
                self.add_loss(args.reg * ops.mean(ops.sum(p * p + q * q, axis=1)))
            bias = self.user_bias(pairs[:, 0])[:, 0] + self.item_bias(pairs[:, 1])[:, 0]
            return mean + bias + ops.sum(p * q, axis=1)

    model = MatrixFactorisation()
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=args.lr), loss="mse")
    return model


def run(args: argparse.Namespace) -> dict:
    import numpy as np

    train_users, train_items, train_ratings = read_ratings(args.data / "train.tsv")
    test_users, test_items, test_ratings = read_ratings(args.data / "test.tsv")
    user_vocab = {u: k for k, u in enumerate(dict.fromkeys(train_users))}
    item_vocab = {i: k for k, i in enumerate(dict.fromkeys(train_items))}
    x_train = np.array([[user_vocab[u], item_vocab[i]]
                        for u, i in zip(train_users, train_items)], dtype=np.int32)
    y_train = np.asarray(train_ratings, dtype=np.float32)
    mean = float(y_train.mean())

    import keras
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    keras.utils.set_random_seed(args.seed)
    model = build_model(len(user_vocab), len(item_vocab), mean, args)
    epoch_seconds: list[float] = []

    class EpochTimer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            epoch_seconds.append(round(time.perf_counter() - self.started, 3))

    started = time.perf_counter()
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        shuffle=True, verbose=0, callbacks=[EpochTimer()])
    train_seconds = time.perf_counter() - started

    users = np.array([user_vocab.get(u, -1) for u in test_users], dtype=np.int64)
    items = np.array([item_vocab.get(i, -1) for i in test_items], dtype=np.int64)
    known = (users >= 0) & (items >= 0)
    predicted = np.full(len(users), mean, dtype=np.float64)
    pairs = np.stack([users[known], items[known]], axis=1).astype(np.int32)
    predicted[known] = model.predict(pairs, batch_size=65536, verbose=0)
    item_bias = model.item_bias.embeddings.numpy()[:, 0]
    cold_user = (users < 0) & (items >= 0)
    predicted[cold_user] += item_bias[items[cold_user]]
    actual = np.asarray(test_ratings, dtype=np.float64)
    clipped = np.clip(predicted, y_train.min(), y_train.max())
    return {"library": f"tensorflow {tf.__version__}, keras {keras.__version__}",
            "model": "keras_mf", "data": str(args.data),
            "params": {"embedding_dim": args.embedding_dim, "epochs": args.epochs,
                       "batch_size": args.batch_size, "lr": args.lr, "reg": args.reg,
                       "reg_mode": args.reg_mode, "init_std": args.init_std,
                       "seed": args.seed, "optimizer": "adam", "loss": "mse"},
            "rmse": round(float(np.sqrt(np.mean((clipped - actual) ** 2))), 6),
            "mae": round(float(np.mean(np.abs(clipped - actual))), 6),
            "rmse_unclipped": round(float(np.sqrt(np.mean((predicted - actual) ** 2))), 6),
            "train_seconds": round(train_seconds, 3), "epoch_seconds": epoch_seconds,
            "loss_per_epoch": [round(float(v), 5) for v in history.history["loss"]],
            "train_pairs": len(y_train), "test_pairs": len(actual),
            "fallback_pairs": int((~known).sum()),
            "threads": args.threads or "tf default"}


def main(argv: list[str] | None = None) -> None:
    try:
        result = run(parse_args(argv))
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
