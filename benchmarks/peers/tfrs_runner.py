"""TensorFlow Recommenders two-tower retrieval (IDs + timestamp) on a split; prints JSON.

Runs inside the TensorFlow venv, never the project's (see /work/shared/PEERS.md)::

    python3 -m venv /tmp/tf && /tmp/tf/bin/pip install tensorflow-cpu
    /tmp/tf/bin/pip install tensorflow-recommenders tf-keras
    TF_USE_LEGACY_KERAS=1 /tmp/tf/bin/python benchmarks/peers/tfrs_runner.py --data DIR

``DIR/train.csv`` and ``DIR/test.csv`` (header ``user,item,timestamp``, integer ids, as
written by ``benchmarks/two_tower_tfrs.py``) are read; the candidates are every item of
both files (the TFRS tutorials retrieve from all movies). The model is the one of the TFRS
"context features" tutorial with ID and timestamp features: the query tower concatenates
a user id embedding, an embedding of the timestamp discretised into ``--time-buckets``
quantile buckets and the normalised timestamp, then a Dense layer of ``--embedding-dim``;
the candidate tower is an item id embedding then a Dense layer of the same size.
``tfrs.tasks.Retrieval`` (in-batch softmax) with ``FactorizedTopK`` over all items,
Adagrad. Training time is the wall time of ``model.fit`` (graph tracing included).

The reported top-k accuracies are computed here from the exported tower outputs in
NumPy (share of test events whose item ranks in the top k of all items for the query
(user, event time); no exclusion of training items), the same code path the project's
side uses; TFRS's own ``evaluate`` figure is reported beside it as a check.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # TFRS 0.7 needs Keras 2

import numpy as np  # noqa: E402

KS = (1, 5, 10, 50, 100)


def read(path: Path) -> dict[str, np.ndarray]:
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.int64, ndmin=2)
    return {"user": table[:, 0], "item": table[:, 1], "timestamp": table[:, 2]}


def topk_accuracy(queries: np.ndarray, items: np.ndarray, targets: np.ndarray
                  ) -> dict[str, float]:
    """Share of rows whose target item ranks in the top k of q . v over all items."""
    hits = {k: 0 for k in KS}
    for start in range(0, len(queries), 4096):
        scores = queries[start:start + 4096] @ items.T
        own = scores[np.arange(len(scores)), targets[start:start + 4096]]
        rank = (scores > own[:, None]).sum(axis=1)  # ties count in the item's favour
        for k in KS:
            hits[k] += int((rank < k).sum())
    return {f"top_{k}": hits[k] / len(queries) for k in KS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--embedding-dim", type=int, default=32)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--time-buckets", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import tensorflow as tf
    import tensorflow_recommenders as tfrs

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.keras.utils.set_random_seed(args.seed)
    train, test = read(args.data / "train.csv"), read(args.data / "test.csv")
    users = np.unique(train["user"])
    all_items = np.unique(np.concatenate([train["item"], test["item"]]))
    stamps = train["timestamp"].astype(np.float64)
    edges = np.unique(np.quantile(stamps, np.linspace(0, 1, args.time_buckets + 1)[1:-1]))
    dim = args.embedding_dim

    class Query(tf.keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.user = tf.keras.Sequential([
                tf.keras.layers.IntegerLookup(vocabulary=users, mask_token=None),
                tf.keras.layers.Embedding(len(users) + 1, dim)])
            self.time = tf.keras.Sequential([
                tf.keras.layers.Discretization(edges.tolist()),
                tf.keras.layers.Embedding(len(edges) + 2, dim)])
            self.norm = tf.keras.layers.Normalization(axis=None)
            self.norm.adapt(stamps)
            self.dense = tf.keras.layers.Dense(dim)

        def call(self, x):
            ts = tf.cast(x["timestamp"], tf.float64)
            return self.dense(tf.concat([self.user(x["user"]), self.time(ts),
                                         tf.reshape(tf.cast(self.norm(ts), tf.float32),
                                                    (-1, 1))], axis=1))

    item_model = tf.keras.Sequential([
        tf.keras.layers.IntegerLookup(vocabulary=all_items, mask_token=None),
        tf.keras.layers.Embedding(len(all_items) + 1, dim), tf.keras.layers.Dense(dim)])
    candidates = tf.data.Dataset.from_tensor_slices(all_items).batch(1024)

    class Model(tfrs.models.Model):
        def __init__(self) -> None:
            super().__init__()
            self.query, self.items = Query(), item_model
            self.task = tfrs.tasks.Retrieval(metrics=tfrs.metrics.FactorizedTopK(
                candidates=candidates.map(self.items)))

        def compute_loss(self, x, training=False):
            return self.task(self.query(x), self.items(x["item"]),
                             compute_metrics=not training)

    model = Model()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(args.lr))
    data = tf.data.Dataset.from_tensor_slices(train).shuffle(
        len(train["user"]), seed=args.seed, reshuffle_each_iteration=True)
    start = time.perf_counter()
    history = model.fit(data.batch(args.batch_size).cache(), epochs=args.epochs, verbose=0)
    fit_seconds = time.perf_counter() - start
    own = model.evaluate(tf.data.Dataset.from_tensor_slices(test).batch(4096),
                         return_dict=True, verbose=0)
    queries = model.query.predict({k: v for k, v in test.items()}, batch_size=4096,
                                  verbose=0)
    vectors = item_model.predict(all_items, batch_size=4096, verbose=0)
    position = {item: j for j, item in enumerate(all_items.tolist())}
    targets = np.array([position[i] for i in test["item"].tolist()])
    print(json.dumps({"fit_seconds": fit_seconds, "epochs": args.epochs,
                      "loss": [float(v) for v in history.history["loss"]],
                      "tfrs_top_100": float(own["factorized_top_k/top_100_categorical_accuracy"]),
                      **topk_accuracy(np.asarray(queries, np.float64),
                                      np.asarray(vectors, np.float64), targets),
                      "n_items": len(all_items), "tf": tf.__version__}))


if __name__ == "__main__":
    main()
