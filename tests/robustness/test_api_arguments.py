"""Issue 9, items 8, 9 and 12: API arguments are never silently ignored or emptied."""

from __future__ import annotations

import numpy as np
import pytest

import recoforge as rf
from recoforge.data.split import holdout_per_user
from recoforge.data.synthetic import category_demo
from recoforge.errors import ConfigError, DataError, UnknownIdError
from recoforge.models._scoring import ScoringError


@pytest.fixture(scope="module")
def fitted():
    data = category_demo(seed=0)
    return data, rf.create("item_knn", k=20).fit(data)


def test_users_with_history_are_honoured_not_ignored(fitted):
    data, model = fitted
    user = data.user_index.ids[0]
    seen = set(data.item_index.ids[model.train_matrix_[0].indices])
    new = [i for i in data.item_index.ids if i not in seen][:3]
    merged = model.recommend([user], k=5, history={user: new})
    assert merged["user"].tolist() == [user] * 5
    assert not set(merged["item"]) & set(new)  # the given events count as seen
    row = model.train_matrix_[0]
    events = {data.item_index.ids[j]: float(v) for j, v in zip(row.indices, row.data)}
    anonymous = model.recommend(history={"x": {**events, **dict.fromkeys(new, 1.0)}}, k=5)
    assert merged["item"].tolist() == anonymous["item"].tolist()
    np.testing.assert_allclose(merged["score"], anonymous["score"], rtol=1e-5)
    with pytest.raises(DataError, match="not among the requested users"):
        model.recommend([user], k=5, history={"someone-else": new})


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5, True])
def test_bad_batch_sizes_are_refused(fitted, batch_size):
    with pytest.raises(ConfigError, match="batch_size"):
        fitted[1].recommend(k=5, batch_size=batch_size)


def test_explain_takes_one_user(fitted):
    data, model = fitted
    user = data.user_index.ids[0]
    item = model.recommend([user], k=1)["item"][0]
    with pytest.raises(ConfigError, match="one user"):
        model.explain(item, user=[user, user])
    assert len(model.explain(item, user=user)) > 0


def test_empty_history_follows_the_unknown_policy(fitted):
    _, model = fitted
    with pytest.raises(UnknownIdError, match="no known history"):
        model.recommend(history={"v": []}, k=5)
    assert model.recommend(history={"v": []}, k=5, unknown="skip").empty
    with_fallback = rf.create("item_knn").fit(fitted[0], fallback="popularity")
    out = with_fallback.recommend(history={"v": []}, k=5, unknown="fallback")
    assert len(out) == 5 and (out["score"] > 0).all()


def test_non_numeric_history_values_are_refused(fitted):
    data, model = fitted
    with pytest.raises(DataError, match="numbers"):
        model.recommend(history={"v": {data.item_index.ids[0]: "x"}}, k=5)


def test_non_finite_scores_raise_instead_of_empty_lists(fitted, monkeypatch):
    data, model = fitted
    monkeypatch.setattr(type(model), "_score",
                        lambda self, query: np.full(query.history.shape, np.nan, np.float32))
    with pytest.raises(ScoringError, match="non-finite"):
        model.recommend([data.user_index.ids[0]], k=5)


def test_evaluate_refuses_a_dataset_and_other_data(fitted):
    from recoforge.evaluation import evaluate

    data, model = fitted
    with pytest.raises(rf.RecoforgeError, match="[Ss]plit"):
        evaluate(model, data)
    split = holdout_per_user(data, 0.2, seed=0)
    with pytest.raises(rf.RecoforgeError, match="other data"):
        evaluate(model, split)
