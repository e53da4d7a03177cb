"""wide_deep's cross-product features: the layout from the spec, the bilinear term against
a brute-force sum, what the crosses learn, errors, save/load, new users and new items."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.errors import ConfigError  # noqa: E402
from recoforge.models.neural import fields  # noqa: E402
from recoforge.models.query import Query  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

PARAMS = {"embedding_dim": 8, "epochs": 15, "batch_size": 256, "learning_rate": 0.01,
          "n_negatives": 4, "seed": 0, "device": "cpu", "layers": "16,8", "dropout": 0.0,
          "init_scale": 0.1}


@pytest.fixture(scope="module")
def train():
    return taste_data(seed=0, n_users=200)[0]


@pytest.fixture(scope="module")
def crossed(train):
    return rf.create("wide_deep", crosses="taste*group", **PARAMS).fit(train)


def test_layout_masks_exactly_the_crossed_field_pairs():
    names = ["user_id", "user:a", "user:b", "item_id", "item:x", "item:y"]
    user_starts, item_starts = np.array([0, 2]), np.array([0, 3])  # a: 0-1, b: 2-4; x: 0-2, y: 3-6
    layout = fields.cross_layout("b*y, user:a*item:x", names, user_starts, 5, item_starts, 7)
    assert layout is not None
    np.testing.assert_array_equal(layout.item_columns, np.arange(7))
    expected = np.zeros((5, 7))
    expected[2:5, 3:7] = 1
    expected[0:2, 0:3] = 1
    np.testing.assert_array_equal(layout.mask, expected)
    only = fields.cross_layout("a*y", names, user_starts, 5, item_starts, 7)
    np.testing.assert_array_equal(only.item_columns, [3, 4, 5, 6])  # only y's columns
    assert only.mask[:2].all() and not only.mask[2:].any()
    every = fields.cross_layout("all", names, user_starts, 5, item_starts, 7)
    assert every.mask.all()
    assert fields.cross_layout("", names, user_starts, 5, item_starts, 7) is None


@pytest.mark.parametrize("spec, message", [
    ("taste", "user_field\\*item_field"), ("taste*group*x", "user_field\\*item_field")])
def test_malformed_spec_is_a_config_error(spec, message):
    with pytest.raises(ConfigError, match=message):
        rf.create("wide_deep", crosses=spec)


@pytest.mark.parametrize("spec, message", [
    ("mood*group", "'mood' is not a user feature field; user fields: \\['noise', 'taste'\\]"),
    ("taste*colour", "'colour' is not a item feature field"),
    ("group*taste", "'group' is not a user feature field")])
def test_unknown_fields_name_the_known_ones(train, spec, message):
    with pytest.raises(ConfigError, match=message):
        rf.create("wide_deep", crosses=spec, **{**PARAMS, "epochs": 1}).fit(train)


def test_cross_term_is_the_bilinear_form_of_the_feature_rows(crossed):
    """score(with W) - score(W = 0) = x_u^T (W * M) x_i, x from the pooled feature rows."""
    users, items = np.array([0, 5, 11]), np.array([0, 1, 2, 3, 50, 77])
    grid = np.tile(items, (len(users), 1))
    query = crossed.known_query(users)
    with_cross = crossed._score_candidates(query, grid)
    plain = copy.deepcopy(crossed)
    weight = plain.module.cross_weight.detach().numpy().copy()
    with torch.no_grad():
        plain.module.cross_weight.zero_()
    without = plain._score_candidates(plain.known_query(users), grid)
    x_u = fields.pool_rows(crossed.user_feature_matrix_, crossed.user_field_starts_,
                           crossed.user_field_multi_)[users].toarray()
    x_i = crossed.item_feature_matrix_[items].toarray()
    mask = crossed.module.cross_mask.numpy()
    columns = np.arange(36, 40)  # the item field "group"
    expected = x_u @ (weight * mask) @ x_i[:, columns].T
    assert np.abs(expected).max() > 0.1  # the crosses carry weight
    np.testing.assert_allclose(with_cross - without, expected, rtol=1e-4, atol=1e-5)


def test_crosses_learn_each_taste_s_own_group(crossed):
    """taste g_t x group g_t is the largest weight of its row: the memorised affinity."""
    weight = crossed.module.cross_weight.detach().numpy()
    assert weight.shape == (5, 4)  # user features (taste 4 + noise 1) x group's 4 columns
    np.testing.assert_array_equal(weight[:4].argmax(1), np.arange(4))
    assert not weight[4].any()  # noise is not crossed: masked, never moves


def test_save_load_new_users_and_new_items_keep_the_crosses(crossed, tmp_path):
    crossed.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    assert loaded.get_params()["crosses"] == "taste*group"
    np.testing.assert_array_equal(loaded.score(users=np.arange(5)),
                                  crossed.score(users=np.arange(5)))
    n_items = len(crossed.item_index_)
    features = crossed.user_feature_matrix_[[0, 1]]  # tastes g0 and g1, no history
    query = Query.from_history(sp.csr_matrix((2, n_items), dtype=np.float32),
                               user_features=features)
    scores = crossed._score(query)
    groups = np.array([int(str(i)[1:]) % 4 for i in crossed.item_index_.ids])
    tastes = [int(str(u)[1:]) % 4 for u in crossed.user_index_.ids[:2]]
    assert tastes[0] != tastes[1]
    for row, (own, other) in enumerate([tastes, tastes[::-1]]):
        assert scores[row, groups == own].mean() > scores[row, groups == other].mean()
    # new items from attributes alone: one of user 0's taste group, one of another group
    picked = [int(np.flatnonzero(groups == tastes[0])[0]),
              int(np.flatnonzero(groups == tastes[1])[0])]
    grown = copy.deepcopy(crossed)
    grown._add_items(crossed.item_feature_matrix_[picked])
    new = grown._score_candidates(grown.known_query(np.array([0])),
                                  np.array([[n_items, n_items + 1]]))
    old = crossed._score_candidates(crossed.known_query(np.array([0])), np.array([picked]))
    assert np.isfinite(new).all() and new[0, 0] > new[0, 1]  # the taste's own group first
    assert not np.allclose(new, old)  # new items have no id rows: features alone
