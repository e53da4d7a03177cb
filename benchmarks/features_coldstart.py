"""Feature models against LightFM (WARP) on cold items, warm items and short histories.

One split, one fit per model, three questions (seed 0, MovieLens with ratings >= 4 as the
positive events):

- **cold items**: 10% of the items with positives leave training with all their events
  (``recoforge.data.split.cold_start(on="items")``'s rule, drawn here); every user with a
  held-out event on them ranks *only the cold items*;
- **short users**: 20% of the users with at least 20 positives keep 5 random positives
  for training (users with <= 5 training interactions), the rest of theirs is test;
- **warm**: every other user gives 20% of their positives (warm items) to test.

Short and warm users rank the warm items (training items excluded). NDCG@10 (binary
relevance, ideal DCG over min(|relevant|, 10)) is computed by one function for every
model on index-level top-10 lists. Fit seconds are wall time of ``fit`` on this machine
(2 cores shared with other work, so read them as ratios within one run).

The hybrids blend ``ease``, ``content`` on the genres, ``content`` on the title words and
``feature_popularity`` (segmented by history length, with separate weights for items
without training events), all tuned on a validation split carved from the training part;
one stacked variant adds ``item_knn`` and ``two_tower``. ``two_tower`` runs twice: trained
on whole histories (best for cold and warm items on validation), and on random
20-item samples of them (``history_sample``: best for short users on validation).
Everyone gets the same features: items = genres (multi-label) + TF-IDF of the title
words + the release year bucketised (five-year bins from 1970, decades before, "<1940";
the year is also a title word, but a bin groups neighbouring years), users = gender, age
group, occupation (one-hot). LightFM runs in its own venv
(``benchmarks/peers/lightfm_runner.py``, WARP, 64 components, lr 0.05, 30 epochs) on one
thread by default (its Hogwild updates are not deterministic with more), twice: with an
indicator feature per user and item (LightFM's hybrid default) and on the attribute
features alone (its cold-start set-up); the table shows both. Run with
``RECOFORGE_NUM_THREADS=1`` so that our models get one thread too.

Hyperparameters were chosen with ``--validation``: the same kind of split carved from the
training part (seed 1), the test part never read.

Run (opt-in, not part of the test suite)::

    RECOFORGE_NUM_THREADS=1 .venv/bin/python benchmarks/features_coldstart.py \\
        [--dataset ml-1m] [--lightfm /tmp/lightfm/bin/python] [--models LABELS] \\
        [--validation] [--lightfm-cache DIR] [--lightfm-threads N] [--no-year]

Writes benchmarks/results/features.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset, IdIndex, Interactions, build_features
from recoforge.data.split import Split
from recoforge.threads import get_num_threads

ROOT = Path(__file__).resolve().parents[1]
DATASETS = Path(os.environ.get("RECOFORGE_DATASETS", ROOT.parent / "shared" / "datasets"))
RESULTS = ROOT / "benchmarks" / "results" / "features.md"
K = 10
GROUPS = ("cold_items", "warm", "short")
#: our models in the run: (label, name, params)
HYBRID_PARTS = ('ease;content(block_weights={"title": 0.0});'
                'content(block_weights={"genres": 0.0});feature_popularity')
#: chosen on the validation split (``--validation``, ML-1M): lr 0.003 over 0.001 and 20
#: epochs (cold and warm items), a hidden ReLU layer of 128 over linear towers (all
#: three questions), cosine similarity (worse everywhere)
TWO_TOWER = "two_tower(epochs=10,embedding_dim=64,learning_rate=0.003,layers=128,seed=0)"
MODELS = [
    ("content", "content", {}),
    ("feature_popularity", "feature_popularity", {}),
    ("hybrid weighted", "hybrid",
     {"components": HYBRID_PARTS, "segmented": True, "cold_items": True, "seed": 0}),
    ("hybrid stacking", "hybrid",
     {"components": HYBRID_PARTS, "mode": "stacking", "segmented": True, "cold_items": True,
      "seed": 0}),
    ("hybrid stacking + item_knn + two_tower", "hybrid",
     {"components": HYBRID_PARTS + ";item_knn(k=100);" + TWO_TOWER,
      "mode": "stacking", "segmented": True, "cold_items": True, "seed": 0}),
    ("feature_mf", "feature_mf", {"epochs": 10, "embedding_dim": 64, "seed": 0}),
    ("two_tower", "two_tower",
     {"epochs": 10, "embedding_dim": 64, "learning_rate": 0.003, "layers": "128", "seed": 0}),
    ("two_tower (history_sample=20)", "two_tower",
     {"epochs": 10, "embedding_dim": 64, "history_sample": 20, "seed": 0}),
    ("ease (reference: no features)", "ease", {}),
]
LIGHTFM = {"epochs": 30, "components": 64, "learning_rate": 0.05}


# ---------------------------------------------------------------------- data and split
def load(name: str, year_buckets: bool = True) -> Dataset:
    """Positive events (rating >= 4) with item and user features."""
    from recoforge.data.movielens import load_movielens

    variant = {"ml-100k": "100k", "ml-1m": "1m"}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ML-1M's reconstructed timestamps
        data = load_movielens(variant, DATASETS / name)
    frame = data.interactions.to_frame()
    frame = frame[frame["value"] >= 4][["user", "item"]]
    # item indices in a random order: MovieLens ids follow popularity, and ties (e.g. the
    # all-zero scores of a CF model on cold items) would otherwise be broken by it
    shuffled = np.random.default_rng(1).permutation(data.item_index.ids)
    inter = Interactions.from_frame(frame, item_index=IdIndex(shuffled, name="item"))
    assert data.item_info is not None and data.user_info is not None
    info = data.item_info
    categorical = []
    if year_buckets:  # a bucketised release year: one more attribute, for LightFM too
        info = info.assign(period=_period(info["year"]))
        categorical = ["period"]
    items = build_features(info, inter.item_index, text=["title"],
                           multilabel={"genres": r"\|"}, categorical=categorical)
    users = build_features(data.user_info, inter.user_index,
                           categorical=[c for c in ("gender", "age_group", "occupation")
                                        if c in data.user_info.columns])
    return Dataset(inter, item_features=items, user_features=users, item_info=data.item_info,
                   user_info=data.user_info, name=name)


def _period(years: pd.Series) -> pd.Series:
    """Release year as a category: five-year bins from 1970, decades before, "<1940"."""
    out = []
    for year in years:
        if pd.isna(year):
            out.append(None)
        elif year < 1940:
            out.append("<1940")
        else:
            width = 5 if year >= 1970 else 10
            out.append(str(int(year) // width * width))
    return pd.Series(out, index=years.index, dtype=object)


def make_split(data: Dataset, seed: int = 0, cold_fraction: float = 0.1,
               short_fraction: float = 0.2, short_keep: int = 5) -> tuple[Split, dict]:
    """The split above and, per group, (query user ids, allowed item mask)."""
    rng = np.random.default_rng(seed)
    inter = data.interactions
    counts = np.bincount(inter.items, minlength=data.n_items)
    eligible = np.flatnonzero(counts > 0)
    cold = np.zeros(data.n_items, bool)
    cold[rng.choice(eligible, size=int(round(cold_fraction * len(eligible))),
                    replace=False)] = True
    warm_event = ~cold[inter.items]
    per_user = np.bincount(inter.users[warm_event], minlength=data.n_users)
    short = np.zeros(data.n_users, bool)
    pool = np.flatnonzero(per_user >= 20)
    short[rng.choice(pool, size=int(round(short_fraction * len(pool))), replace=False)] = True
    order = rng.random(len(inter))
    test = ~warm_event.copy()
    for user_rows in _rows_by_user(inter.users):
        rows = user_rows[warm_event[user_rows]]
        if len(rows) < 2:
            continue
        rows = rows[np.argsort(order[rows])]
        user = inter.users[rows[0]]
        n_test = len(rows) - short_keep if short[user] else max(1, int(round(0.2 * len(rows))))
        test[rows[:n_test]] = True
    split = Split(train=data.subset(~test), test=inter.select(test), name=f"coldstart(seed={seed})")
    return split, _groups(data, split, cold, short)


def _rows_by_user(users: np.ndarray) -> list[np.ndarray]:
    order = np.argsort(users, kind="stable")
    cuts = np.flatnonzero(np.diff(users[order])) + 1
    return np.split(order, cuts)


def _groups(data: Dataset, split: Split, cold: np.ndarray, short: np.ndarray) -> dict:
    test = split.test
    on_cold = cold[test.items]
    user_ids = data.user_index.ids
    known = set(split.train.user_index.ids.tolist())
    groups = {}
    for name, events, users_mask, allowed in (
            ("cold_items", on_cold, np.ones(data.n_users, bool), cold),
            ("warm", ~on_cold, ~short, ~cold),
            ("short", ~on_cold, short, ~cold)):
        rows = events & users_mask[test.users]
        users = np.unique(test.users[rows])
        ids = [u for u in user_ids[users].tolist() if u in known]
        truth = pd.DataFrame({"user": user_ids[test.users[rows]],
                              "item": data.item_index.ids[test.items[rows]]})
        groups[name] = {"users": ids, "allowed": allowed, "truth": truth}
    return groups


# ---------------------------------------------------------------------- metric
def ndcg(lists: dict, truth: pd.DataFrame, k: int = K) -> float:
    """Mean NDCG@k over the users of ``lists`` ({user: [item ids]}), binary relevance."""
    relevant = truth.groupby("user")["item"].apply(set).to_dict()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for user, items in lists.items():
        rel = relevant.get(user, set())
        gains = np.array([item in rel for item in items[:k]], dtype=float)
        ideal = discounts[:min(len(rel), k)].sum()
        scores.append(float(gains @ discounts[:len(gains)]) / ideal if ideal else 0.0)
    return float(np.mean(scores))


def ours(label: str, name: str, params: dict, split: Split, groups: dict) -> dict:
    if name not in rf.available_models():
        return {"model": label, "note": "not registered"}
    model = rf.create(name, **params)
    start = time.perf_counter()
    model.fit(split.train)
    row = {"model": label, "fit_s": time.perf_counter() - start}
    for group, spec in groups.items():
        users = model.user_index_.to_index(spec["users"])
        top, _ = model.top_items(users=users, k=K, allowed=spec["allowed"])
        ids = model.item_index_.ids
        row[group] = ndcg({u: ids[t[t >= 0]].tolist() for u, t in zip(spec["users"], top)},
                          spec["truth"])
    return row


# ---------------------------------------------------------------------- LightFM
def _csr_arrays(prefix: str, matrix: sp.spmatrix) -> dict:
    m = sp.csr_matrix(matrix, dtype=np.float32)
    return {f"{prefix}_data": m.data, f"{prefix}_indices": m.indices,
            f"{prefix}_indptr": m.indptr, f"{prefix}_shape": np.array(m.shape)}


def lightfm(python: str, split: Split, groups: dict, identity: bool, work: Path,
            threads: int = 1, cache: Path | None = None) -> dict:
    """LightFM's row; with ``cache``, top lists of an identical earlier run (same
    payload and settings) are reused (a dev-loop shortcut, never for the committed table)."""
    train = split.train
    binary = train.matrix().copy()
    binary.data[:] = 1.0
    payload = {**_csr_arrays("train", binary), **_csr_arrays("item", train.item_features.matrix),
               **_csr_arrays("user", train.user_features.matrix), "k": K,
               "groups": np.array(GROUPS)}
    queries, offset = [], 0
    for group in GROUPS:
        users = train.user_index.to_index(groups[group]["users"])
        queries.append(users)
        payload[f"rows_{group}"] = np.arange(offset, offset + len(users))
        payload[f"allowed_{group}"] = np.flatnonzero(groups[group]["allowed"])
        offset += len(users)
    payload["queries"] = np.concatenate(queries)
    source, result = work / "lightfm_in.npz", work / "lightfm_out.npz"
    np.savez(source, **payload)
    settings = ["--epochs", str(LIGHTFM["epochs"]), "--components", str(LIGHTFM["components"]),
                "--learning-rate", str(LIGHTFM["learning_rate"]), "--threads", str(threads)]
    if identity:
        settings.append("--identity")
    digest = hashlib.sha256(source.read_bytes() + " ".join(settings).encode()).hexdigest()[:16]
    cached = None if cache is None else cache / f"lightfm_{digest}.npz"
    if cached is not None and cached.exists():
        result = cached
    else:
        subprocess.run([python, str(ROOT / "benchmarks" / "peers" / "lightfm_runner.py"),
                        "--input", str(source), "--output", str(result), *settings],
                       check=True)
        if cached is not None:
            cache.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result, cached)
    out = np.load(result)
    label = "LightFM WARP, " + ("indicators + features" if identity else "features only")
    row = {"model": label, "fit_s": float(out["fit_seconds"])}
    ids = train.item_index.ids
    for group in GROUPS:
        top = out[f"top_{group}"]
        row[group] = ndcg({u: ids[t[t >= 0]].tolist() for u, t in
                           zip(groups[group]["users"], top)}, groups[group]["truth"])
    return row


# ---------------------------------------------------------------------- report
def to_markdown(frame: pd.DataFrame, dataset: str, split: Split, groups: dict,
                command: str) -> str:
    lines = [f"# Feature models vs LightFM on cold-start questions ({dataset})", "",
             f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on "
             f"{platform.machine()} ({os.cpu_count()} cores, shared); command: `{command}`.",
             f"Split {split!r}; query users: "
             + ", ".join(f"{g} {len(groups[g]['users'])}" for g in GROUPS) + ".", "",
             "| model | fit s | NDCG@10 cold items | NDCG@10 warm | NDCG@10 users <= 5 |",
             "|---|---:|---:|---:|---:|"]
    for _, r in frame.iterrows():
        if isinstance(r.get("note"), str):
            lines.append(f"| {r['model']} | {r['note']} | | | |")
            continue
        lines.append(f"| {r['model']} | {r['fit_s']:.1f} | {r['cold_items']:.4f} | "
                     f"{r['warm']:.4f} | {r['short']:.4f} |")
    return "\n".join(lines + ["", *targets(frame)]) + "\n"


def targets(frame: pd.DataFrame) -> list[str]:
    """Best feature model of ours against the better LightFM variant, per question."""
    done = frame[frame["fit_s"].notna()] if "fit_s" in frame else frame
    peer = done[done["model"].str.startswith("LightFM")]
    ours = done[~done["model"].str.startswith("LightFM") & ~done["model"].str.startswith("ease")]
    if peer.empty or ours.empty:
        return []
    out = ["Targets (best of ours / best LightFM variant; goals: cold items >= 1.1, warm >= 1, "
           "users <= 5 >= 1.1, fit time <= LightFM's):", ""]
    for column, goal in (("cold_items", 1.1), ("warm", 1.0), ("short", 1.1)):
        best = ours.loc[ours[column].idxmax()]
        rival = peer.loc[peer[column].idxmax()]
        ratio = best[column] / rival[column]
        out.append(f"- {column}: {best['model']} {best[column]:.4f} vs {rival['model']} "
                   f"{rival[column]:.4f} = {ratio:.2f}x ({'met' if ratio >= goal else 'missed'}"
                   f"); fit {best['fit_s']:.1f} s vs {rival['fit_s']:.1f} s")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-1m", choices=("ml-100k", "ml-1m"))
    parser.add_argument("--lightfm", default="/tmp/lightfm/bin/python")
    parser.add_argument("--models", default=",".join(m[0] for m in MODELS),
                        help="comma-separated labels of our models to run")
    parser.add_argument("--no-lightfm", action="store_true")
    parser.add_argument("--lightfm-threads", type=int, default=1,
                        help="LightFM threads (1: deterministic; more: Hogwild)")
    parser.add_argument("--lightfm-cache", type=Path, default=None,
                        help="folder reusing LightFM runs of the same payload (dev loop)")
    parser.add_argument("--validation", action="store_true",
                        help="tune: run on the same kind of split carved from the training "
                             "part (seed 1), print only; the test part is never read")
    parser.add_argument("--no-year", action="store_true",
                        help="leave the bucketised release year out of the item features")
    args = parser.parse_args()
    wanted = set(args.models.split(","))
    unknown = wanted - {m[0] for m in MODELS}
    if unknown:  # a label with a comma would be split and silently dropped
        parser.error(f"--models: unknown labels {sorted(unknown)}")
    data = load(args.dataset, year_buckets=not args.no_year)
    split, groups = make_split(data)
    if args.validation:
        split, groups = make_split(split.train, seed=1)
    print(split, {g: len(v["users"]) for g, v in groups.items()}, flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for identity in () if args.no_lightfm else (True, False):
            rows.append(lightfm(args.lightfm, split, groups, identity, Path(tmp),
                                args.lightfm_threads, args.lightfm_cache))
            print(rows[-1], flush=True)
    for label, name, params in MODELS:
        if label in wanted:
            rows.append(ours(label, name, params, split, groups))
            print(rows[-1], flush=True)
    frame = pd.DataFrame(rows)
    if args.validation:
        print(frame.to_string(), "\n", "\n".join(targets(frame)))
        return
    command = (f"RECOFORGE_NUM_THREADS={get_num_threads()} python "
               f"benchmarks/features_coldstart.py --dataset {args.dataset}")
    for flag in ("no_year", "no_lightfm"):
        command += f" --{flag.replace('_', '-')}" if getattr(args, flag) else ""
    command += f" --lightfm-threads {args.lightfm_threads}"
    if args.lightfm_cache is not None:
        command += " --lightfm-cache (LightFM rows reused from an identical earlier run)"
    if args.models != parser.get_default("models"):
        command += f" --models '{args.models}'"
    write_section(args.dataset, to_markdown(frame, args.dataset, split, groups, command))
    print(RESULTS.read_text())


def write_section(dataset: str, text: str) -> None:
    """Replace (or add) this dataset's section of the results file, keeping the others."""
    marker = "<!-- dataset: {} -->"
    old = RESULTS.read_text() if RESULTS.exists() else ""
    sections = {}
    for chunk in old.split("<!-- dataset: ")[1:]:
        name, _, body = chunk.partition(" -->\n")
        sections[name] = body
    sections[dataset] = text
    RESULTS.write_text("\n".join(marker.format(name) + "\n" + body
                                 for name, body in sorted(sections.items(), reverse=True)))


if __name__ == "__main__":
    main()
