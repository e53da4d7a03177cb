"""LightFM (WARP) on a split written by benchmarks/features_coldstart.py; runs in its own venv.

Never imports recoforge. Reads ``--input`` (npz: ``train_*`` CSR of positive events, users x
items; ``item_*`` / ``user_*`` CSR feature matrices aligned with those rows; ``queries``
(user indices), ``allowed_*`` per-query masks given as item-index lists per evaluation
group) and writes ``--output`` (npz: per group the top-``k`` item indices of each query,
training items excluded, and ``fit_seconds``).

Features follow LightFM's own convention (``lightfm.data.Dataset``): with ``--identity``
each user and item also has an indicator feature of its own, and feature rows are
normalised to sum to 1.

Set-up (see /work/shared/PEERS.md)::

    python3 -m venv /tmp/lightfm && /tmp/lightfm/bin/pip install numpy scipy setuptools \\
        wheel cython && /tmp/lightfm/bin/pip install --no-build-isolation lightfm
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp


def csr(data: dict, prefix: str) -> sp.csr_matrix:
    return sp.csr_matrix((data[f"{prefix}_data"], data[f"{prefix}_indices"],
                          data[f"{prefix}_indptr"]), shape=tuple(data[f"{prefix}_shape"]))


def with_identity(features: sp.csr_matrix, identity: bool) -> sp.csr_matrix:
    """Indicator columns first (when asked), then rows normalised to sum 1."""
    if identity:
        features = sp.hstack([sp.identity(features.shape[0], format="csr"), features],
                             format="csr")
    sums = np.asarray(features.sum(axis=1)).ravel()
    sums[sums == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / sums) @ features, dtype=np.float32)


def top_k(model, users, items_by_group, train, user_features, item_features, k, threads):
    """Per group the top-k allowed items of each query user, training items excluded."""
    out = {}
    for group, (rows, allowed) in items_by_group.items():
        found = np.full((len(rows), k), -1, np.int64)
        for pos, user in enumerate(users[rows]):
            scores = model.predict(int(user), allowed, user_features=user_features,
                                   item_features=item_features, num_threads=threads)
            seen = np.isin(allowed, train.indices[train.indptr[user]:train.indptr[user + 1]])
            scores[seen] = -np.inf
            best = np.argsort(-scores, kind="stable")[:k]
            found[pos, :len(best)] = allowed[best]
        out[group] = found
    return out


def main() -> None:
    from lightfm import LightFM

    parser = argparse.ArgumentParser()
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--components", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--alpha", type=float, default=1e-6)
    parser.add_argument("--identity", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = dict(np.load(args.input, allow_pickle=False))
    train = csr(data, "train")
    users_f = with_identity(csr(data, "user"), args.identity)
    items_f = with_identity(csr(data, "item"), args.identity)
    model = LightFM(no_components=args.components, loss="warp",
                    learning_rate=args.learning_rate, item_alpha=args.alpha,
                    user_alpha=args.alpha, random_state=args.seed)
    start = time.perf_counter()
    model.fit(train.tocoo(), user_features=users_f, item_features=items_f,
              epochs=args.epochs, num_threads=args.threads)
    fit_seconds = time.perf_counter() - start
    groups = [str(g) for g in data["groups"]]
    items_by_group = {g: (data[f"rows_{g}"], data[f"allowed_{g}"].astype(np.int32))
                      for g in groups}
    start = time.perf_counter()
    lists = top_k(model, data["queries"], items_by_group, train, users_f, items_f,
                  int(data["k"]), args.threads)
    np.savez(args.output, fit_seconds=fit_seconds,
             score_seconds=time.perf_counter() - start,
             **{f"top_{g}": v for g, v in lists.items()})


if __name__ == "__main__":
    main()
