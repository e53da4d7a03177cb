import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data import Dataset, IdIndex, Interactions
from recoforge.errors import ConfigError


@pytest.fixture(scope="module")
def random_data():
    rng = np.random.default_rng(3)
    dense = (rng.random((30, 12)) < 0.3).astype(float)
    dense[0, :] = 0
    dense[0, [0, 1]] = 1
    users, items = np.nonzero(dense)
    frame = pd.DataFrame({"user": users, "item": items})
    inter = Interactions.from_frame(frame, item_index=IdIndex(np.arange(13), name="item"))
    return Dataset(inter), np.hstack([dense, np.zeros((30, 1))])  # item 12: no interactions


def rp3beta_by_hand(dense, alpha, beta):
    deg_u, deg_i = dense.sum(1, keepdims=True), dense.sum(0)
    p_ui = np.divide(dense, deg_u, out=np.zeros_like(dense), where=deg_u > 0) ** alpha
    p_iu = np.divide(dense.T, deg_i[:, None], out=np.zeros_like(dense.T),
                     where=deg_i[:, None] > 0) ** alpha
    w = p_iu @ p_ui
    w *= np.where(deg_i > 0, np.maximum(deg_i, 1.0) ** -beta, 0.0)
    np.fill_diagonal(w, 0)
    return w


@pytest.mark.parametrize("alpha,beta", [(1.0, 0.0), (0.7, 0.5), (1.3, 1.0)])
def test_rp3beta_matches_dense_formula(random_data, alpha, beta):
    data, dense = random_data
    model = rf.create("rp3beta", alpha=alpha, beta=beta, top_k=100).fit(data)
    np.testing.assert_allclose(model.similarity_.toarray(), rp3beta_by_hand(dense, alpha, beta),
                               rtol=1e-5, atol=1e-7)
    scores = model.score(users=np.array([0]))[0]
    expected = dense[0] @ rp3beta_by_hand(dense, alpha, beta)
    evidence = expected > 0
    np.testing.assert_allclose(scores[evidence], expected[evidence], rtol=1e-5)
    assert (scores[~evidence] < 0).all()  # no walk reaches them: ranked after, by popularity


def test_p3alpha_is_rp3beta_without_penalty(random_data):
    data, _ = random_data
    p3 = rf.create("p3alpha", alpha=0.8).fit(data)
    rp3 = rf.create("rp3beta", alpha=0.8, beta=0.0).fit(data)
    np.testing.assert_allclose(p3.similarity_.toarray(), rp3.similarity_.toarray())
    assert "beta" not in p3.get_params()


def test_top_k_and_row_normalisation(random_data):
    data, _ = random_data
    model = rf.create("rp3beta", top_k=3, normalize_rows=True).fit(data)
    per_row = np.diff(model.similarity_.indptr)
    assert per_row.max() == 3 and per_row[12] == 0
    sums = np.asarray(model.similarity_.sum(axis=1)).ravel()
    np.testing.assert_allclose(sums[per_row > 0], 1.0, rtol=1e-5)
    full = rf.create("rp3beta", top_k=100).fit(data).similarity_.toarray()
    kept = model.similarity_.toarray()
    for row in range(12):  # the kept neighbours are the largest ones
        top = set(np.argsort(-full[row], kind="stable")[:3])
        assert set(np.flatnonzero(kept[row])) <= top


def test_pagerank_matches_closed_form(random_data):
    data, dense = random_data
    restart = 0.3
    model = rf.create("pagerank", restart=restart, n_iter=200, tol=0.0).fit(data)
    deg_u, deg_i = dense.sum(1, keepdims=True), dense.sum(0)
    p_ui = dense / deg_u
    p_iu = np.divide(dense.T, deg_i[:, None], out=np.zeros_like(dense.T),
                     where=deg_i[:, None] > 0)
    q = dense[5] / dense[5].sum()
    # x = c q + (1 - c) x T  =>  x = c q (I - (1 - c) T)^-1
    x = restart * q @ np.linalg.inv(np.eye(13) - (1 - restart) * p_iu @ p_ui)
    np.testing.assert_allclose(model.walk(model.train_matrix_[[5]])[0], x, atol=1e-6)
    short = rf.create("pagerank", restart=restart, n_iter=1).fit(data)
    assert np.abs(short.walk(model.train_matrix_[[5]])[0] - x).sum() > 1e-3


def test_pagerank_tolerance_stops_early(random_data, monkeypatch):
    data, _ = random_data
    loose = rf.create("pagerank", n_iter=500, tol=1e-2).fit(data)
    tight = rf.create("pagerank", n_iter=500, tol=0.0).fit(data)
    a = loose.walk(loose.train_matrix_[:4])
    b = tight.walk(tight.train_matrix_[:4])
    assert 0 < np.abs(a - b).sum(axis=1).max() < 0.05


def test_pagerank_related_items_and_explain():
    frame = pd.DataFrame({"user": ["u1", "u1", "u2", "u2", "u3", "u3", "u4"],
                          "item": ["x", "y", "x", "y", "z", "w", "z"]})
    data = Dataset(Interactions.from_frame(frame))
    model = rf.create("pagerank").fit(data)
    assert model.similar_items(["x"], k=1)["similar_item"].tolist() == ["y"]
    why = model.explain("y", history=["x", "z"])
    assert why["id"].tolist()[0] == "x"
    recs = model.recommend(history=["x", "z"], k=4, exclude_seen=False)
    score_y = recs.loc[recs["item"] == "y", "score"].iloc[0]
    assert why["contribution"].sum() == pytest.approx(score_y, rel=1e-4)


def test_popularity_penalty_and_empty_history(random_data):
    data, dense = random_data
    plain = rf.create("pagerank", beta=0.0).fit(data)
    penalised = rf.create("pagerank", beta=1.0).fit(data)
    hist = plain.train_matrix_[[3]]
    ratio = plain.score(histories=hist)[0] / penalised.score(histories=hist)[0]
    deg = dense.sum(0)
    reached = plain.score(histories=hist)[0] > 0
    np.testing.assert_allclose(ratio[reached], deg[reached], rtol=1e-4)
    empty = plain.recommend(history={"nobody": []}, k=3)["item"].tolist()
    assert empty == np.argsort(-deg, kind="stable")[:3].tolist()


def test_graph_explain_for_rp3beta(random_data):
    data, dense = random_data
    model = rf.create("rp3beta").fit(data)
    why = model.explain(5, user=0, n=10)
    assert set(why["id"]) <= {0, 1}
    expected = rp3beta_by_hand(dense, 1.0, 0.5)[[0, 1], 5].sum()
    assert why["contribution"].sum() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name,params", [
    ("rp3beta", {"alpha": 0.0}), ("rp3beta", {"beta": -0.1}), ("p3alpha", {"top_k": 0}),
    ("p3alpha", {"beta": 0.5}), ("pagerank", {"restart": 1.0}), ("pagerank", {"n_iter": 0}),
    ("pagerank", {"tol": -1.0}),
])
def test_bad_parameters(name, params):
    with pytest.raises(ConfigError):
        rf.create(name, **params)


def test_pagerank_batches_match_one_block(random_data, monkeypatch):
    import recoforge.models.neighbours.graph as graph

    data, _ = random_data
    model = rf.create("pagerank", n_iter=30, tol=0.0).fit(data)
    whole = model.walk(model.train_matrix_)
    monkeypatch.setattr(graph, "DENSE_BLOCK_BYTES", 1)  # one query per block
    np.testing.assert_allclose(model.walk(model.train_matrix_), whole, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
@pytest.mark.datasets
def test_walks_beat_popularity_on_movielens_100k(ml100k_ndcg):
    ndcg = ml100k_ndcg
    popularity = ndcg("popularity")  # 0.224 when written
    assert ndcg("rp3beta", alpha=0.5, beta=0.5) > popularity + 0.1  # 0.384
    assert ndcg("p3alpha") > popularity + 0.07  # 0.342
