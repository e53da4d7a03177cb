"""The KuaiRec notebook's protocol on synthetic KuaiRec-shaped files.

Train the feature two-tower on the sparse big matrix (regression of the watch ratio from
user and video features), test on the fully observed small matrix: RMSE / MAE of the
predicted watch ratios, and precision / recall / NDCG at 1, 10, 100 and 1000 of each
small-matrix user's ranking of the small-matrix videos, relevance = watch_ratio >= 1.
The files go through the real loader (:func:`recoforge.data.kuairec.load_kuairec`).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import recoforge as rf
from recoforge.data.kuairec import load_kuairec
from recoforge.data.synthetic_kuairec import write_kuairec_like
from recoforge.errors import ConfigError
from recoforge.evaluation.metrics import (
    binary_ideal,
    mae,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    rmse,
)

pytest.importorskip("torch")
KS = (1, 10, 100, 1000)
RELEVANT = 1.0


@pytest.fixture(scope="module")
def kuairec(tmp_path_factory):
    folder = write_kuairec_like(tmp_path_factory.mktemp("kuairec"), seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the loader counts dropped rows
        return load_kuairec(folder, "big"), load_kuairec(folder, "small")


@pytest.fixture(scope="module")
def model(kuairec):
    big, _ = kuairec
    return rf.create("feature_tower", task="regression", target_transform="standard",
                     user_layers="64,32", item_layers="64,32", epochs=4, batch_size=512,
                     learning_rate=0.003, seed=0).fit(big)


def ranking_metrics(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The notebook's P/R/NDCG@k of score rows against watch-ratio rows (same items)."""
    order = np.argsort(-scores, axis=1, kind="stable")
    relevant = truth >= RELEVANT
    hits = np.take_along_axis(relevant, order, axis=1).astype(np.float64)
    n_relevant = relevant.sum(axis=1)
    ideal = binary_ideal(n_relevant, hits.shape[1])
    out = {}
    for k in KS:
        out[f"precision@{k}"] = float(np.nanmean(precision_at_k(hits, k)))
        out[f"recall@{k}"] = float(np.nanmean(recall_at_k(hits, n_relevant, k)))
        out[f"ndcg@{k}"] = float(np.nanmean(ndcg_at_k(hits, ideal, k, gain="linear")))
    return out


def small_matrix(small) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, item ids, users x items watch ratios) of the fully observed matrix."""
    dense = small.matrix().toarray()
    return small.user_index.ids, small.item_index.ids, dense


def test_synthetic_files_have_the_kuairec_shape(kuairec):
    big, small = kuairec
    assert big.interactions.kind == "implicit" and big.user_features is not None
    assert big.item_features is not None and "categories" in big.item_info.columns
    users, items, ratios = small_matrix(small)
    assert ratios.shape == (40, 1000) and (ratios > 0).all()  # fully observed
    assert set(users) <= set(big.user_index.ids) and set(items) <= set(big.item_index.ids)
    assert 0.2 < (ratios >= RELEVANT).mean() < 0.6
    with pytest.raises(ConfigError, match="small matrix must fit"):
        write_kuairec_like("unused", n_users=10, n_small_users=20)


def test_watch_ratio_regression_beats_the_mean(model, kuairec):
    big, small = kuairec
    frame = small.interactions.to_frame()
    predicted = model.predict(frame["user"], frame["item"])
    actual = frame["value"].to_numpy()
    train_mean = float(np.mean(big.interactions.values))
    baseline = np.full(len(actual), train_mean)
    assert rmse(predicted, actual) < 0.92 * rmse(baseline, actual)
    assert mae(predicted, actual) < mae(baseline, actual)


def test_ranking_metrics_at_1_10_100_1000(model, kuairec):
    _, small = kuairec
    users, items, ratios = small_matrix(small)
    recs = model.recommend(users, k=len(items), items=items, exclude_seen=False)
    position = {item: j for j, item in enumerate(items.tolist())}
    scores = np.full(ratios.shape, -np.inf)
    row = {user: j for j, user in enumerate(users.tolist())}
    scores[recs["user"].map(row).to_numpy(), recs["item"].map(position).to_numpy()] = \
        recs["score"].to_numpy()
    assert np.isfinite(scores).all()
    ours = ranking_metrics(scores, ratios)
    rng = np.random.default_rng(0)
    shuffled = [ranking_metrics(rng.random(ratios.shape), ratios) for _ in range(20)]
    for k in (1, 10, 100):  # above every one of 20 random rankings
        for metric in ("precision", "ndcg"):
            best_random = max(r[f"{metric}@{k}"] for r in shuffled)
            assert ours[f"{metric}@{k}"] > best_random, (metric, k, ours, best_random)
    assert ours["recall@1000"] == pytest.approx(1.0)  # every small video is ranked
    assert ours["recall@100"] > max(r["recall@100"] for r in shuffled)
