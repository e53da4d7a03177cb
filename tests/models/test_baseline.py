import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError
from recoforge.models.baselines.baseline import (
    bias_estimates,
    centre,
    subtract_offsets,
    user_bias_from_history,
)


@pytest.fixture()
def ratings():
    return pd.DataFrame({"user": ["a", "a", "b", "b", "c", "c", "d"],
                         "item": ["x", "y", "x", "z", "y", "z", "z"],
                         "rating": [5.0, 3.0, 4.0, 2.0, 1.0, 4.0, 5.0]})


def als_reference(triples, n_users, n_items, reg_u, reg_i, epochs):
    """Surprise's baseline_als written as plain loops."""
    mu = np.mean([r for _, _, r in triples])
    b_u, b_i = np.zeros(n_users), np.zeros(n_items)
    for _ in range(epochs):
        for i in range(n_items):
            rated = [(u, r) for u, j, r in triples if j == i]
            b_i[i] = sum(r - mu - b_u[u] for u, r in rated) / (reg_i + len(rated))
        for u in range(n_users):
            rated = [(i, r) for v, i, r in triples if v == u]
            b_u[u] = sum(r - mu - b_i[i] for i, r in rated) / (reg_u + len(rated))
    return mu, b_u, b_i


def test_als_matches_reference_loops():
    rng = np.random.default_rng(0)
    dense = np.where(rng.random((15, 12)) < 0.4, rng.integers(1, 6, (15, 12)), 0)
    mat = sp.csr_matrix(dense.astype(np.float32))
    triples = [(u, i, float(dense[u, i])) for u, i in zip(*np.nonzero(dense))]
    for epochs in (1, 4):
        mu, b_u, b_i = bias_estimates(mat, 3.0, 2.0, epochs)
        ref = als_reference(triples, 15, 12, 3.0, 2.0, epochs)
        assert mu == pytest.approx(ref[0])
        np.testing.assert_allclose(b_u, ref[1], atol=1e-9)
        np.testing.assert_allclose(b_i, ref[2], atol=1e-9)


def test_damped_bias_by_hand(ratings):
    model = rf.create("bias", method="damped", reg_item=1.0, reg_user=0.0).fit(
        Dataset.from_frame(ratings, rating_col="rating"))
    mu = 24 / 7
    assert model.global_mean_ == pytest.approx(mu)
    b_x = ((5 - mu) + (4 - mu)) / (2 + 1)
    assert model.item_bias_[0] == pytest.approx(b_x)
    b_y = ((3 - mu) + (1 - mu)) / 3
    b_a = ((5 - mu - b_x) + (3 - mu - b_y)) / 2
    assert model.user_bias_[0] == pytest.approx(b_a)
    assert model.predict(["a"], ["x"])[0] == pytest.approx(min(5.0, mu + b_a + b_x))


def test_new_user_bias_equals_known_user_and_predictions_clip(ratings):
    ds = Dataset.from_frame(ratings, rating_col="rating")
    model = rf.create("bias", reg_user=0.5, reg_item=0.5).fit(ds)
    known = model.recommend(["b"], k=3, exclude_seen=False)
    fresh = model.recommend(history={"n": {"x": 4.0, "z": 2.0}}, k=3, exclude_seen=False)
    np.testing.assert_allclose(known["score"], fresh["score"], rtol=1e-6)
    pred = model.predict(["a", "b", "c", "d"], ["x", "y", "z", "x"])
    assert pred.min() >= 1.0 and pred.max() <= 5.0
    empty_user = model.recommend(history={"n": []}, k=1)
    assert empty_user["score"].iloc[0] == pytest.approx(
        model.global_mean_ + model.item_bias_.max(), rel=1e-6)


def test_explain_splits_the_prediction(ratings):
    model = rf.create("bias").fit(Dataset.from_frame(ratings, rating_col="rating"))
    parts = model.explain("y", user="b")
    assert set(parts["id"]) == {"global_mean", "user_bias", "item_bias"}
    score = model.recommend(["b"], k=3, exclude_seen=False).set_index("item")["score"]
    assert parts["contribution"].sum() == pytest.approx(score["y"], rel=1e-5)


def test_bias_rejects_implicit_data_and_bad_params(ratings):
    with pytest.raises(ConfigError, match="explicit"):
        rf.create("bias").fit(Dataset.from_frame(ratings[["user", "item"]]))
    for bad in ({"method": "sgd"}, {"reg_user": -1.0}, {"n_epochs": 0}, {"reg_item": "x"}):
        with pytest.raises(ConfigError):
            rf.create("bias", **bad)


def test_centring_utilities_keep_structure():
    mat = sp.csr_matrix(np.array([[4, 2, 0], [3, 0, 3], [0, 0, 5]], dtype=np.float32))
    by_user = centre(mat, "user")
    np.testing.assert_allclose(by_user.row_offsets, [3, 3, 5])
    assert by_user.matrix.nnz == mat.nnz  # the 3-3 and 5-5 zeros are kept
    np.testing.assert_allclose(by_user.matrix.data, [1, -1, 0, 0, 0])
    by_item = centre(mat, "item")
    np.testing.assert_allclose(by_item.col_offsets, [3.5, 2, 4])
    both = centre(mat, "both", damping=1.0)
    rebuilt = subtract_offsets(mat, both.offset, both.row_offsets, both.col_offsets)
    np.testing.assert_allclose(rebuilt.data, both.matrix.data)
    damped = centre(mat, "user", damping=2.0)
    mu = mat.data.mean()
    assert damped.row_offsets[2] == pytest.approx((5 + 2 * mu) / 3)
    with pytest.raises(ConfigError):
        centre(mat, "rows")
    with pytest.raises(ConfigError):
        centre(mat, "user", damping=-1.0)


def test_user_bias_from_history_empty_rows():
    hist = sp.csr_matrix((2, 3), dtype=np.float32)
    assert user_bias_from_history(hist, 3.0, np.zeros(3), 5.0).tolist() == [0.0, 0.0]
