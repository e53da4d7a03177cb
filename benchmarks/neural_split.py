"""Splits for the neural peers (RecBole, Keras), and the scoring of their lists.

Runs in the project's venv. The peers (``benchmarks/peers/recbole_runner.py`` in a RecBole
venv, ``benchmarks/peers/keras_mf.py`` in a TensorFlow venv) never import recoforge: they
read the TSV files written here and write plain TSV lists, which ``score`` measures with
recoforge's own evaluation, so that a peer and our models are measured the same way.

Subcommands::

    python benchmarks/neural_split.py write --dataset ml-100k --work /tmp/neural
    python benchmarks/neural_split.py write --dataset ml-1m --protocol ratings --work /tmp/neural
    python benchmarks/neural_split.py score --split /tmp/neural/ml-100k/test --lists lists.tsv
    python benchmarks/neural_split.py check --split /tmp/neural/ml-100k/test --lists /tmp/e.tsv

``write --protocol topn`` (default): all ratings as implicit events (value 1), the per-user
random 80/20 split ``holdout_per_user(data, 0.2, seed=42)`` (the split of
benchmarks/results/als_ease.md and bpr.md, whose LensKit EASE 0.4397 is issue 11's
reference) into ``WORK/DATASET/test/``, and a validation split carved from its training
part, ``holdout_per_user(train, 0.1, seed=1)``, into ``WORK/DATASET/valid/``: tune on
``valid``, refit on ``test``'s train, measure once on ``test``. ``--protocol ratings``: the
global random 80/20 split of the ratings ``holdout_global(data, 0.2, seed=42)`` (as
bench_rating_mf.py) into ``WORK/DATASET-ratings/test/`` and
``holdout_global(train, 0.1, seed=1)`` into ``.../valid/``. Each folder holds
``train.tsv`` and ``test.tsv`` (header ``user item rating``, external ids) and
``split.json`` (how to rebuild the split, and the training data's fingerprint).

``score``: reads a peer's lists (TSV ``user item rank``, rank 1 = best, at least ``max(k)``
items for every test user, none of them in the user's training part), rebuilds the split
from ``split.json`` (refusing it if the fingerprint differs) and runs
:func:`recoforge.evaluation.evaluate` (full protocol, binary relevance: every held-out
event relevant, training items excluded) on a :class:`PeerLists` model whose scores
reproduce the peer's ranking: exactly the code path that measures our models. As a
cross-check it also computes NDCG@k directly from the lists with
``recoforge.evaluation.metrics.ndcg_at_k`` / ``binary_ideal`` and refuses to report if the
two differ. Prints one JSON line (and ``--json FILE`` writes it).

``check``: fits our EASE on the split, measures it with ``evaluate`` directly and through
its written top-100 lists with ``score``, and fails unless both agree (to 1e-6): the
proof that a peer's lists are measured exactly as our models are.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recoforge.data import Dataset, Interactions
from recoforge.data.split import Split, holdout_global, holdout_per_user
from recoforge.errors import ConfigError, DataError, RecoforgeError
from recoforge.evaluation import evaluate
from recoforge.evaluation.metrics import binary_ideal, ndcg_at_k
from recoforge.models.base import Recommender
from recoforge.models.query import Query

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
TEST_SEED, VALID_SEED = 42, 1
VALID_FRACTION = {"topn": 0.1, "ratings": 0.1}
SCORE_METRICS = ("ndcg", "recall", "hit_rate")


# ----------------------------------------------------------------------------- data
def load(name: str, protocol: str) -> Dataset:
    """MovieLens through the project's loader; implicit events of value 1 for top-N."""
    from recoforge.data.movielens import load_movielens

    variants = {"ml-100k": "100k", "ml-1m": "1m"}
    if name not in variants:
        raise ConfigError(f"--dataset must be one of {sorted(variants)}, got {name!r}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ML-1M's reconstructed timestamps
        data = load_movielens(variants[name], DATASETS / name)
    if protocol == "ratings":
        return data
    inter = data.interactions
    events = Interactions(users=inter.users, items=inter.items,
                          values=np.ones(len(inter), np.float32), user_index=inter.user_index,
                          item_index=inter.item_index, kind="implicit")
    return Dataset(events, name=name)


def make_split(data: Dataset, protocol: str, part: str) -> Split:
    """The test split (``part="test"``) or the validation split carved from its train."""
    splitter = holdout_per_user if protocol == "topn" else holdout_global
    split = splitter(data, 0.2, seed=TEST_SEED)
    if part == "valid":
        split = splitter(split.train, VALID_FRACTION[protocol], seed=VALID_SEED)
    return split


def original_values(split: Split, protocol: str, raw: Dataset | None) -> tuple[Any, Any]:
    """(train ratings, test ratings) as in the raw data (top-N splits hold value 1)."""
    if protocol == "ratings" or raw is None:
        return split.train.interactions.values, split.test.values
    matrix = raw.matrix()

    def look_up(inter: Interactions) -> np.ndarray:
        users = raw.user_index.to_index(inter.user_index.ids[inter.users])
        items = raw.item_index.to_index(inter.item_index.ids[inter.items])
        return np.asarray(matrix[users, items]).ravel()

    return look_up(split.train.interactions), look_up(split.test)


def write_part(folder: Path, split: Split, meta: dict, raw: Dataset | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    train_values, test_values = original_values(split, meta["protocol"], raw)
    for name, inter, values in (("train", split.train.interactions, train_values),
                                ("test", split.test, test_values)):
        frame = inter.to_frame()[["user", "item"]]
        frame["rating"] = values
        frame.to_csv(folder / f"{name}.tsv", sep="\t", index=False)
    info = {**meta, "split": split.name, "train_pairs": len(split.train.interactions),
            "test_pairs": len(split.test), "train_users": split.train.n_users,
            "items": split.train.n_items,
            "test_users": int(len(np.unique(split.test.users))),
            "train_fingerprint": split.train.interactions.fingerprint()}
    (folder / "split.json").write_text(json.dumps(info, indent=1) + "\n")
    print(f"wrote {folder}: {split!r}", file=sys.stderr)


def write(dataset: str, protocol: str, work: Path) -> None:
    raw = load(dataset, "ratings")
    data = raw if protocol == "ratings" else load(dataset, "topn")
    base = work / (dataset if protocol == "topn" else f"{dataset}-ratings")
    for part in ("test", "valid"):
        meta = {"dataset": dataset, "protocol": protocol, "part": part}
        write_part(base / part, make_split(data, protocol, part), meta, raw)


def rebuild(folder: Path) -> tuple[Split, dict]:
    """The split described by ``folder/split.json``, checked against its fingerprint."""
    path = folder / "split.json"
    if not path.is_file():
        raise DataError(f"{path} not found: write the split first (neural_split.py write)")
    meta = json.loads(path.read_text())
    if meta.get("protocol") != "topn":
        raise ConfigError(f"{path}: only top-N splits are scored from lists (protocol is "
                          f"{meta.get('protocol')!r})")
    split = make_split(load(meta["dataset"], "topn"), "topn", meta["part"])
    found = split.train.interactions.fingerprint()
    if found != meta["train_fingerprint"]:
        raise DataError(f"{path}: the rebuilt split's training fingerprint {found} differs "
                        f"from the written {meta['train_fingerprint']} (data or code changed)")
    return split, meta


# ----------------------------------------------------------------------------- lists
def read_lists(path: Path, split: Split, width: int) -> np.ndarray:
    """(n_train_users, width) item indices of each user's peer list; -1 for non-test users."""
    if not path.is_file():
        raise DataError(f"lists file {path} not found")
    frame = pd.read_csv(path, sep="\t", dtype={"user": str, "item": str})
    missing = {"user", "item", "rank"} - set(frame.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)} (header: user item rank)")
    train = split.train
    users = train.user_index.to_index(frame["user"].to_numpy(), unknown="ignore")
    items = train.item_index.to_index(frame["item"].to_numpy(), unknown="ignore")
    ranks = pd.to_numeric(frame["rank"], errors="coerce").to_numpy(dtype=np.float64)
    for name, bad in (("user", users < 0), ("item", items < 0)):
        if bad.any():
            line = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path} line {line + 2}: {name} {frame[name].iloc[line]!r} is "
                            f"not in the split's vocabulary")
    bad_rank = ~np.isfinite(ranks) | (ranks < 1) | (ranks != np.round(ranks))
    if bad_rank.any():
        line = int(np.flatnonzero(bad_rank)[0])
        raise DataError(f"{path} line {line + 2}: rank must be an integer >= 1, "
                        f"got {ranks[line]!r}")
    ranks = ranks.astype(np.int64)
    for columns in (["user", "rank"], ["user", "item"]):
        twice = frame.duplicated(columns).to_numpy()
        if twice.any():
            line = int(np.flatnonzero(twice)[0])
            raise DataError(f"{path} line {line + 2}: ({', '.join(columns)}) "
                            f"{tuple(frame[columns].iloc[line])} appears twice")
    keep = ranks <= width
    lists = np.full((train.n_users, width), -1, dtype=np.int64)
    lists[users[keep], ranks[keep] - 1] = items[keep]
    seen = train.matrix()[users, items]
    if np.asarray(seen).ravel().any():
        line = int(np.flatnonzero(np.asarray(seen).ravel())[0])
        raise DataError(f"{path} line {line + 2}: item {frame['item'].iloc[line]} is in user "
                        f"{frame['user'].iloc[line]}'s training part (mask training items)")
    test_users = np.unique(train.user_index.to_index(
        split.test.user_index.ids[split.test.users]))
    short = test_users[(lists[test_users] < 0).any(axis=1)]
    if len(short):
        raise DataError(f"{path}: user {train.user_index.ids[short[0]]} (and {len(short) - 1} "
                        f"more) has fewer than {width} items ranked 1..{width}")
    return lists


class PeerLists(Recommender):
    """A peer's ranked lists behind our evaluation (not registered).

    Scores ``width - rank`` for each listed item, ``-inf`` ("never") for the rest, so that
    top-k for any ``k <= width`` is exactly the peer's top-k. Memory: the scored batch.
    """

    name = "peer_lists"

    def __init__(self, lists: np.ndarray) -> None:
        super().__init__()
        self._given = lists

    def _fit(self, data: Dataset) -> None:
        self.lists_ = self._given

    def _score(self, query: Query) -> np.ndarray:
        if query.stored_users is None:
            raise DataError("peer lists exist only for the split's own test users")
        lists = self.lists_[query.stored_users]
        width = lists.shape[1]
        scores = np.full((len(query), query.n_items), -np.inf, dtype=np.float32)
        rows, cols = np.nonzero(lists >= 0)
        scores[rows, lists[rows, cols]] = (width - cols).astype(np.float32)
        return scores


def direct_ndcg(lists: np.ndarray, split: Split, k: int) -> float:
    """Mean NDCG@k of the lists straight from the metric functions (cross-check)."""
    test, train = split.test, split.train
    rows = train.user_index.to_index(test.user_index.ids[test.users])
    items = train.item_index.to_index(test.item_index.ids[test.items])
    relevant = set(zip(rows.tolist(), items.tolist()))
    users = np.unique(rows)
    hits = np.array([[(int(u), int(i)) in relevant for i in lists[u, :k]] for u in users],
                    dtype=np.float64)
    n_relevant = np.bincount(rows, minlength=lists.shape[0])[users]
    return float(np.mean(ndcg_at_k(hits, binary_ideal(n_relevant, k), k)))


def score(split_dir: Path, lists_path: Path, ks: tuple[int, ...]) -> dict:
    split, meta = rebuild(split_dir)
    lists = read_lists(lists_path, split, max(ks))
    model = PeerLists(lists).fit(split.train)
    result = evaluate(model, split, k=ks, metrics=list(SCORE_METRICS))
    out: dict[str, Any] = {"lists": str(lists_path), "split": f"{meta['dataset']}/{meta['part']}",
                           **{name: round(float(v), 6) for name, v in result.summary.items()},
                           "evaluated_users": result.counts["evaluated_users"]}
    for k in ks:
        check = direct_ndcg(lists, split, k)
        if abs(check - result.summary[f"ndcg@{k}"]) > 1e-9:
            raise DataError(f"NDCG@{k} cross-check failed: evaluate {result.summary[f'ndcg@{k}']}"
                            f" vs metric functions {check}")
    return out


def self_check(split_dir: Path, ks: tuple[int, ...], lists_path: Path) -> dict:
    """Our EASE measured twice: by evaluate() directly and through its written lists."""
    import recoforge as rf

    split, _ = rebuild(split_dir)
    model = rf.create("ease", regularization=500.0).fit(split.train)
    direct = evaluate(model, split, k=ks, metrics=list(SCORE_METRICS)).summary
    idx, _ = model.top_items(users=np.arange(split.train.n_users), k=100)
    users = np.repeat(split.train.user_index.ids, idx.shape[1])
    frame = pd.DataFrame({"user": users, "item": split.train.item_index.ids[idx.ravel()],
                          "rank": np.tile(np.arange(1, idx.shape[1] + 1), idx.shape[0])})
    frame.sample(frac=1.0, random_state=0).to_csv(lists_path, sep="\t", index=False)
    via_lists = score(split_dir, lists_path, ks)
    worst = max(abs(round(float(v), 6) - via_lists[name]) for name, v in direct.items())
    if worst > 1e-6:
        raise DataError(f"self-check failed: evaluate {direct.to_dict()} vs lists {via_lists}")
    return {"self_check": "ok", "model": "ease(regularization=500)", **via_lists}


# ----------------------------------------------------------------------------- main

def paired_runs(repeats: int, ours: Callable[[int], dict], theirs: Callable[[int], dict],
                log: Callable[[str], None], *, peer: str, metric: str = "ndcg@10",
                keys: tuple[str, ...] = ()) -> tuple[dict, dict, list[float]]:
    """Alternating runs ``ours(r)``, ``theirs(r)`` for r = 0..repeats-1 (r may seed both).

    Returns, per side, the last run's result with ``fit_s``, ``metric`` and ``keys`` (those
    present) replaced by their medians, plus ``fit_all`` / ``<metric>_all`` (every run) and
    ``<metric>_mean``; and each pair's time ratio ours / theirs.
    """
    label = metric.split("@")[0]
    pairs = []
    for rep in range(repeats):
        pairs.append((ours(rep), theirs(rep)))
        mine, peers = pairs[-1]
        log(f"  pair {rep + 1}: ours {mine['fit_s']:.2f}s {metric} {mine[metric]:.4f} | "
            f"{peer} {peers['fit_s']:.2f}s {metric} {peers[metric]:.4f} "
            f"(load {os.getloadavg()[0]:.1f})")
    medians = []
    for side in (0, 1):
        out = dict(pairs[-1][side])
        for key in ("fit_s", metric, *keys):
            if key in out:
                out[key] = float(np.median([pair[side][key] for pair in pairs]))
        out[f"{label}_mean"] = float(np.mean([pair[side][metric] for pair in pairs]))
        out["fit_all"] = [round(pair[side]["fit_s"], 2) for pair in pairs]
        out[f"{label}_all"] = [round(pair[side][metric], 4) for pair in pairs]
        medians.append(out)
    return medians[0], medians[1], [o["fit_s"] / t["fit_s"] for o, t in pairs]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    w = sub.add_parser("write", help="write train/test TSV files of a split")
    w.add_argument("--dataset", required=True, choices=("ml-100k", "ml-1m"))
    w.add_argument("--protocol", default="topn", choices=("topn", "ratings"))
    w.add_argument("--work", type=Path, required=True, help="folder to write into")
    s = sub.add_parser("score", help="score a peer's top-N lists with recoforge's metrics")
    s.add_argument("--split", type=Path, required=True, help="a folder written by `write`")
    s.add_argument("--lists", type=Path, required=True, help="TSV: user item rank")
    s.add_argument("--k", default="10", help="cut-offs, comma-separated (default 10)")
    s.add_argument("--json", type=Path, help="also write the result here")
    c = sub.add_parser("check", help="score our EASE both ways (evaluate and its lists)")
    c.add_argument("--split", type=Path, required=True, help="a folder written by `write`")
    c.add_argument("--lists", type=Path, required=True, help="where to write EASE's lists")
    args = parser.parse_args(argv)
    try:
        if args.command == "write":
            write(args.dataset, args.protocol, args.work)
            return
        if args.command == "check":
            print(json.dumps(self_check(args.split, (10, 20), args.lists)))
            return
        try:
            ks = tuple(sorted({int(k) for k in args.k.split(",")}))
        except ValueError:
            raise ConfigError(f"--k must be comma-separated integers, got {args.k!r}") from None
        if not ks or ks[0] < 1:
            raise ConfigError(f"--k must be positive integers, got {args.k!r}")
        result = score(args.split, args.lists, ks)
        line = json.dumps(result)
        print(line)
        if args.json:
            args.json.write_text(line + "\n")
    except RecoforgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
