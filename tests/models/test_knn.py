import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError, NotSupportedError


def random_frame(seed: int = 0, n_users: int = 30, n_items: int = 25, density: float = 0.35):
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    dense = np.where(mask, rng.integers(1, 6, (n_users, n_items)), 0).astype(float)
    users, items = np.nonzero(dense)
    frame = pd.DataFrame({"user": users, "item": items, "rating": dense[users, items]})
    return frame, dense


def reference_predict(dense, sims, offsets, fallback, pairs, predict_k, user_based):
    """KNNBaseline-style prediction written as loops over a dense similarity."""
    mask = dense != 0
    out = []
    for u, i in pairs:
        if user_based:
            cands = [(sims[u, v], dense[v, i] - offsets[v, i]) for v in range(len(dense))
                     if mask[v, i] and sims[u, v] > 0 and v != u]
        else:
            cands = [(sims[i, j], dense[u, j] - offsets[u, j]) for j in range(dense.shape[1])
                     if mask[u, j] and sims[i, j] > 0 and j != i]
        cands = sorted(cands, key=lambda t: -t[0])[:predict_k]
        den = sum(abs(s) for s, _ in cands)
        num = sum(s * r for s, r in cands)
        out.append(offsets[u, i] + num / den if den > 0 else fallback[u, i])
    return np.clip(out, 1, 5)


@pytest.mark.parametrize("k", [100, 3])  # long lists / short lists: both kernels
@pytest.mark.parametrize("variant", ["baseline", "mean-centred", "plain"])
@pytest.mark.parametrize("name", ["item_knn", "user_knn"])
def test_rating_prediction_matches_reference(name, variant, k):
    frame, dense = random_frame(1)
    ds = Dataset.from_frame(frame, rating_col="rating")
    model = rf.create(name, similarity="pearson_baseline", k=k, shrinkage=5.0,
                      predict_k=4, rating_variant=variant).fit(ds)
    mu, b_u, b_i = model.global_mean_, model.user_bias_, model.item_bias_
    baseline = mu + b_u[:, None] + b_i[None, :]
    if name == "item_knn":
        sims = model.similarity_.toarray()
    else:  # sims of every training user, self excluded, all neighbours kept
        sims = model._neighbours(model.train_matrix_, np.arange(len(b_u)), k).toarray()
    if variant == "baseline":
        offsets = baseline
    elif variant == "mean-centred":
        means = model.item_means_ if name == "item_knn" else model.user_means_
        offsets = np.broadcast_to(means[None, :] if name == "item_knn" else means[:, None],
                                  dense.shape)
    else:
        offsets = np.zeros_like(dense)
    rng = np.random.default_rng(2)
    pairs = list(zip(rng.integers(0, 30, 60), rng.integers(0, 25, 60)))
    uid = ds.user_index.to_ids(np.array([p[0] for p in pairs]))
    iid = ds.item_index.to_ids(np.array([p[1] for p in pairs]))
    got = model.predict(uid, iid)
    expected = reference_predict(dense, sims, offsets, baseline, pairs, 4, name == "user_knn")
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_item_knn_scores_are_history_times_similarity():
    frame, dense = random_frame(3)
    ds = Dataset.from_frame(frame, rating_col="rating")
    model = rf.create("item_knn", k=5, binary=True).fit(ds)
    sims = model.similarity_.toarray()
    assert (np.count_nonzero(sims, axis=1) <= 5).all()
    scores = model.score(users=np.arange(4))
    np.testing.assert_allclose(scores, (dense[:4] != 0) @ sims, rtol=1e-5)
    new = model.recommend(history={"n": [1, 2, 3]}, k=3)
    expected = np.argsort(-(sims[1] + sims[2] + sims[3]), kind="stable")
    expected = [i for i in expected if i not in (1, 2, 3)][:3]
    assert new["item"].tolist() == expected


def test_item_knn_explain_and_similar_items():
    frame, _ = random_frame(4)
    model = rf.create("item_knn", k=8).fit(Dataset.from_frame(frame, rating_col="rating"))
    recs = model.recommend([0], k=1)
    top = recs["item"].iloc[0]
    why = model.explain(top, user=0, n=100)
    assert (why["source"] == "item").all()
    assert why["contribution"].sum() == pytest.approx(recs["score"].iloc[0], rel=1e-5)
    assert set(why["id"]) <= set(frame.loc[frame["user"] == 0, "item"])
    sims = model.similar_items([top], k=3)
    row = model.similarity_[top].toarray().ravel()
    assert sims["score"].tolist() == pytest.approx(np.sort(row)[::-1][:3].tolist(), rel=1e-6)


def test_user_knn_new_user_and_explain():
    frame, dense = random_frame(5)
    model = rf.create("user_knn", k=5, similarity="cosine").fit(
        Dataset.from_frame(frame, rating_col="rating"))
    history = {int(i): float(dense[0, i]) for i in np.nonzero(dense[0])[0]}
    recs = model.recommend(history={"new": history}, k=5)
    assert len(recs) == 5 and not set(recs["item"]) & set(history)
    # the known user 0 is not its own neighbour; the new user with 0's history is
    neighbours = model._neighbours(model.train_matrix_[[0]], np.array([0]), 5)
    assert 0 not in neighbours.indices and neighbours.nnz == 5
    why = model.explain(recs["item"].iloc[0], history={"new": history}, n=10)
    assert (why["source"] == "user").all() and len(why) >= 1
    assert why["contribution"].sum() == pytest.approx(recs["score"].iloc[0], rel=1e-5)


def test_implicit_data_rules():
    frame, _ = random_frame(6)
    implicit = Dataset.from_frame(frame[["user", "item"]])
    for name in ("item_knn", "user_knn"):
        model = rf.create(name, similarity="jaccard").fit(implicit)
        assert len(model.recommend([0], k=3)) == 3
        with pytest.raises(NotSupportedError, match="explicit"):
            model.predict([0], [1])
        with pytest.raises(ConfigError, match="explicit"):
            rf.create(name, similarity="pearson").fit(implicit)


@pytest.mark.parametrize("bad", [
    {"similarity": "manhattan"}, {"k": 0}, {"shrinkage": -1.0}, {"min_support": 0},
    {"weighting": "bm25", "similarity": "pearson"}, {"binary": True, "similarity": "pearson"},
    {"rating_variant": "centred"}, {"predict_k": 0}, {"bm25_b": 2.0}, {"k": "ten"},
])
def test_bad_parameters(bad):
    for name in ("item_knn", "user_knn"):
        with pytest.raises(ConfigError):
            rf.create(name, **bad)


def test_knn_bm25_weighting_and_threshold():
    frame, _ = random_frame(7)
    ds = Dataset.from_frame(frame, rating_col="rating")
    loose = rf.create("item_knn", weighting="bm25", k=50).fit(ds).similarity_
    strict = rf.create("item_knn", weighting="bm25", k=50, min_similarity=0.3).fit(ds)
    assert strict.similarity_.nnz < loose.nnz
    assert strict.similarity_.data.min() >= 0.3
