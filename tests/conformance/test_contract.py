"""Conformance checks of the second-edition contract, run on every registered model.

Candidates equal gathered full scores; known users with new events; save/load without the
training history and with a history source; the vector index's exact backend equals
``recommend``; declared capabilities match behaviour; set_params never mixes state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.errors import NotFittedError, NotSupportedError, UnknownIdError
from recoforge.models.query import Query
from recoforge.ranking.index import VectorIndex

K = 10


def _close_lists(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Same users, same scores per rank; items equal wherever scores are not tied."""
    assert a["user"].tolist() == b["user"].tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-4, atol=1e-5)
    for (_, x), (_, y) in zip(a.groupby("user", sort=False), b.groupby("user", sort=False)):
        scores = x["score"].to_numpy()
        distinct = np.r_[True, np.abs(np.diff(scores)) > 1e-5] & \
            np.r_[np.abs(np.diff(scores)) > 1e-5, True]
        assert (x["item"].to_numpy()[distinct] == y["item"].to_numpy()[distinct]).all()


def test_candidates_equal_gathered_full_scores(fitted, data):
    _, model = fitted
    train = data[0]
    rng = np.random.default_rng(1)
    users = np.arange(6)
    candidates = rng.integers(0, train.n_items, size=(6, 15))
    candidates[0, -3:] = -1  # padding
    full = model.score(users=users)
    got = model.score_candidates(candidates, users=users)
    expected = np.take_along_axis(full, np.maximum(candidates, 0), axis=1)
    ok = candidates >= 0
    np.testing.assert_allclose(got[ok], expected[ok], rtol=1e-4, atol=1e-5)
    assert np.all(got[~ok] == -np.inf)
    hist = model.train_matrix_[[7, 9]]
    cand = candidates[1:3]
    np.testing.assert_allclose(
        model.score_candidates(cand, histories=hist),
        np.take_along_axis(model.score(histories=hist), cand, axis=1), rtol=1e-4, atol=1e-5)


def test_short_whitelist_goes_through_candidates_and_matches_full_ranking(fitted, data):
    _, model = fitted
    train = data[0]
    whitelist = train.item_index.ids[3:140:14]  # 10 of 140 items: the candidate path
    users = list(train.user_index.ids[:8])
    recs = model.recommend(users, k=4, items=whitelist)
    scores = model.score(users=np.arange(8))
    allowed = np.zeros(train.n_items, bool)
    allowed[train.item_index.to_index(list(whitelist))] = True
    scores[:, ~allowed] = -np.inf
    scores[model.train_matrix_[:8].toarray() != 0] = -np.inf
    for row, (_, group) in enumerate(recs.groupby("user", sort=False)):
        best = np.sort(scores[row][np.isfinite(scores[row])])[::-1][:4]
        np.testing.assert_allclose(group["score"], best, rtol=1e-4, atol=1e-5)
        assert set(group["item"]) <= set(whitelist)


def test_known_user_with_new_events(fitted, data):
    spec, model = fitted
    train = data[0]
    user = train.user_index.ids[5]
    seen = set(train.item_index.ids[model.train_matrix_[5].indices])
    new_items = [i for i in train.item_index.ids if i not in seen][:3]
    recs = model.recommend([user], k=K, history={user: new_items})
    assert recs["user"].tolist() == [user] * K
    assert not set(recs["item"]) & (seen | set(new_items))
    stored = model.train_matrix_[5]
    merged = {train.item_index.ids[j]: float(v) for j, v in zip(stored.indices, stored.data)}
    merged.update({item: 1.0 for item in new_items})
    # a feature-aware model also needs the user's features to treat "x" as the user
    features = ({"user_features": train.user_info.loc[[user]].set_axis(["x"])}
                if model.uses_user_features and train.user_info is not None else {})
    if spec.name != "user_knn":  # user_knn also keeps a known user out of their neighbours
        _close_lists(recs.assign(user="x"),
                     model.recommend(history={"x": merged}, k=K, **features))
    plain = model.recommend([user, train.user_index.ids[6]], k=K, history={user: []})
    _close_lists(plain, model.recommend([user, train.user_index.ids[6]], k=K))


def test_save_without_history_then_with_a_history_source(fitted, data, tmp_path: Path):
    spec, model = fitted
    model.save(tmp_path / "small")
    loaded = rf.load_model(tmp_path / "small")
    assert loaded.history_source is None
    with pytest.raises(NotSupportedError, match="history"):
        loaded.recommend(k=K)
    visitor = {"v": list(data[0].item_index.ids[:5])}
    pd.testing.assert_frame_equal(loaded.recommend(history=visitor, k=K),
                                  model.recommend(history=visitor, k=K))
    attached = rf.load_model(tmp_path / "small", history=model.train_matrix_)
    pd.testing.assert_frame_equal(attached.recommend(k=K), model.recommend(k=K))
    model.save(tmp_path / "full", include_history=True)
    pd.testing.assert_frame_equal(rf.load_model(tmp_path / "full").recommend(k=K),
                                  model.recommend(k=K))


def test_vector_index_exact_backend_equals_recommend(fitted, data):
    _, model = fitted
    users = list(data[0].user_index.ids[:12])
    if not model.factorised:
        with pytest.raises(NotSupportedError):
            model.query_vectors(model.known_query(np.arange(2)))
        return
    index = VectorIndex.build(model.item_vectors(), metric=model.vector_similarity)
    _close_lists(model.recommend(users, k=K, index=index), model.recommend(users, k=K))
    whitelist = list(data[0].item_index.ids[::3])
    _close_lists(model.recommend(users, k=5, items=whitelist, index=index),
                 model.recommend(users, k=5, items=whitelist))


def test_attached_index_is_saved_with_the_model(fitted, data, tmp_path: Path):
    spec, model = fitted
    if not model.factorised:
        return
    copy = rf.create(spec.name, **spec.params).fit(data[0])
    copy.attach_index(VectorIndex.for_model(copy, backend="exact"))
    copy.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    users = list(data[0].user_index.ids[:6])
    _close_lists(loaded.recommend(users, k=K, index=True), copy.recommend(users, k=K))
    wrong = VectorIndex.build(np.ones((3, copy.item_vectors().shape[1]), np.float32))
    with pytest.raises(rf.ConfigError, match="vectors"):
        copy.attach_index(wrong)


def test_capabilities_match_behaviour(fitted, data):
    spec, model = fitted
    caps = model.capabilities()
    assert set(caps) >= {"predicts_ratings", "uses_time", "scores_full_catalogue",
                         "factorised", "user_state", "needs_history"}
    if caps["factorised"]:
        query = model.known_query(np.arange(5))
        scores = model.query_vectors(query) @ model.item_vectors().T
        np.testing.assert_allclose(scores, model.score(users=np.arange(5)), rtol=1e-4,
                                   atol=1e-4)
        folded = Query.from_history(model.train_matrix_[[3, 4]])
        np.testing.assert_allclose(model.query_vectors(folded) @ model.item_vectors().T,
                                   model.score(histories=model.train_matrix_[[3, 4]]),
                                   rtol=1e-4, atol=1e-4)
    empty = {"nobody": []}
    if caps["needs_history"]:
        with pytest.raises(UnknownIdError):
            model.recommend(history=empty, k=K)
    else:
        assert len(model.recommend(history=empty, k=K)) == K
    if caps["user_state"] == "history" and spec.history_matches_known_user:
        hist = model.train_matrix_[[2]]
        np.testing.assert_allclose(model.score(histories=hist), model.score(users=[2]),
                                   rtol=1e-4, atol=1e-5)


def test_set_params_resets_learned_state(fitted, data):
    spec, model = fitted
    copy = rf.create(spec.name, **spec.params).fit(data[0])
    field = next((f for f in copy.get_params() if f not in copy.scoring_params
                  and isinstance(copy.get_params()[f], (int, float))
                  and not isinstance(copy.get_params()[f], bool)), None)
    if field is None:
        return
    value = copy.get_params()[field]
    try:
        copy.set_params(**{field: value + 1 if isinstance(value, int) else value * 1.5})
    except rf.ConfigError:
        return  # at a bound: nothing changed
    assert not copy.is_fitted
    with pytest.raises(NotFittedError):
        copy.recommend(k=K)


def test_query_validates_its_parts():
    hist = sp.csr_matrix(np.eye(3, dtype=np.float32))
    with pytest.raises(rf.DataError):
        Query(users=np.arange(2), history=hist)
    with pytest.raises(rf.DataError):
        Query(users=np.array([0, -1, 2]), history=hist, stored=True)
    query = Query.from_history(hist)
    assert query.stored_users is None and len(query.take(slice(0, 2))) == 2


def test_fit_reports_progress_of_iterative_models(fitted, data):
    spec, _ = fitted
    calls = []
    rf.create(spec.name, **spec.params).fit(data[0], progress=lambda done, total, **info:
                                            calls.append((done, total, info)))
    if calls:  # iterative models: one call per epoch, counting up to the total
        done = [c[0] for c in calls]
        assert done == list(range(1, len(calls) + 1)) and calls[-1][0] == calls[-1][1]
        assert all(np.isfinite(c[2].get("loss", 0.0)) for c in calls)
    elif spec.name in {"als", "implicit_als", "bpr", "warp", "logistic_mf", "sgd_mf", "svdpp",
                       "timesvdpp", "bpmf"}:
        pytest.fail(f"{spec.name} is iterative but reported no progress")
