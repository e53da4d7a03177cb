"""two_tower: factorised scores, log-q in-batch softmax, ids, time, new items; towers helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

pytest.importorskip("torch")

import torch  # noqa: E402

import recoforge as rf  # noqa: E402
from recoforge.data import Dataset  # noqa: E402
from recoforge.errors import ConfigError  # noqa: E402
from recoforge.models.neural.towers import (  # noqa: E402
    csr_bag,
    leave_one_out,
    mean_rows,
    sampled_history,
)
from recoforge.models.query import Query  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

FAST = {"embedding_dim": 16, "epochs": 8, "batch_size": 256, "learning_rate": 0.003,
        "seed": 0}


@pytest.fixture(scope="module")
def data() -> Dataset:
    return taste_data(seed=0)[0]


@pytest.fixture(scope="module")
def model(data):
    return rf.create("two_tower", user_id_embedding=True, time_buckets=4, layers="32",
                     extra_negatives="uniform", n_extra_negatives=16, **FAST).fit(data)


def test_csr_bag_is_the_sparse_product():
    rng = np.random.default_rng(0)
    matrix = sp.random(20, 7, density=0.3, random_state=1, format="csr", dtype=np.float32)
    table = torch.nn.EmbeddingBag(7, 3, mode="sum")
    rows = rng.integers(0, 20, 9)
    idx, offsets, weights = csr_bag(matrix, rows, torch.device("cpu"))
    out = table(idx, offsets, per_sample_weights=weights).detach().numpy()
    np.testing.assert_allclose(out, matrix[rows] @ table.weight.detach().numpy(), rtol=1e-5,
                               atol=1e-6)


def test_leave_one_out_drops_the_target_and_averages_the_rest():
    binary = sp.csr_matrix(np.array([[1, 1, 1, 0], [0, 1, 0, 0]], dtype=np.float32))
    table = torch.nn.EmbeddingBag(4, 4, mode="sum")
    torch.nn.init.eye_(table.weight)
    bags = leave_one_out(binary, np.diff(binary.indptr), sp.identity(4, format="csr"),
                         np.array([1, 0, 0]), np.array([1, 2, 0]), torch.device("cpu"))
    shared, rows = bags[0]
    own = bags[1]
    out = table(*shared[:2], per_sample_weights=shared[2])[rows] \
        + table(*own[:2], per_sample_weights=own[2])
    assert len(shared[1]) == 2  # user 0's history summed once for its two rows
    np.testing.assert_allclose(out.detach().numpy(), [[0, 0, 0, 0], [0.5, 0.5, 0, 0],
                                                      [0, 0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_allclose(mean_rows(binary).toarray().sum(axis=1), [1, 1])


def test_sampled_history_is_leave_one_out_when_short_and_a_sample_of_the_rest():
    binary = sp.csr_matrix(np.array([[1, 1, 1, 0, 0, 0], [0, 1, 0, 0, 0, 0],
                                     [1, 1, 1, 1, 1, 1]], dtype=np.float32))
    table = torch.nn.EmbeddingBag(6, 6, mode="sum")
    torch.nn.init.eye_(table.weight)
    rng = np.random.default_rng(0)
    idx, offsets, weights = sampled_history(binary, np.array([0, 1, 2]), np.array([2, 1, 0]),
                                            2, rng, torch.device("cpu"))
    out = table(idx, offsets, per_sample_weights=weights).detach().numpy()
    np.testing.assert_allclose(out[:2], [[0.5, 0.5, 0, 0, 0, 0], [0] * 6], atol=1e-7)
    assert np.diff(offsets.numpy()).tolist() == [3, 1]  # whole histories of rows 0 and 1
    assert len(idx) - int(offsets[2]) == 2  # row 2: two draws from six items
    assert out[2, 0] == 0.0 and out[2].sum() == pytest.approx(1.0)  # target never read


def test_history_sample_trains_and_untrained_items_get_zero_id_rows(data):
    frame = data.interactions.to_frame()
    item = data.item_index.ids[0]
    lean = data.subset((frame["item"] != item).to_numpy())
    model = rf.create("two_tower", history_sample=3, **FAST).fit(lean)
    assert model.loss_history_[-1] < model.loss_history_[0]
    weights = [model.module.item.bags[0].weight, model.module.query.bags[0].weight]
    assert all(float(w[0].detach().abs().sum()) == 0.0 for w in weights)
    assert all(float(w[1:].detach().abs().sum(dim=1).min()) > 0.0 for w in weights)


def test_loss_falls_and_scores_are_query_dot_item_vectors(model, data):
    assert model.loss_history_[-1] < model.loss_history_[0]
    users = np.arange(10)
    query = model.known_query(users)
    expected = model.query_vectors(query) @ model.item_vectors().T
    np.testing.assert_allclose(model.score(users=users), expected, rtol=1e-5, atol=1e-5)
    assert model.item_log_q_.shape == (data.n_items,)
    assert np.all(model.item_log_q_ < 0)


def test_unknown_users_get_the_unknown_row_and_time_moves_the_query(model):
    hist = model.train_matrix_[[3]]
    known = model.query_vectors(Query.from_history(hist, np.array([3])))
    anonymous = model.query_vectors(Query.from_history(hist))
    assert not np.allclose(known, anonymous)
    edges = model.time_edges_
    assert len(edges) == 3
    early = model.query_vectors(Query.for_known(np.array([3]), hist,
                                                context={"time": int(edges[0]) - 1}))
    late = model.query_vectors(Query.for_known(np.array([3]), hist,
                                               context={"time": int(edges[-1]) + 1}))
    assert not np.allclose(early, late)


def test_new_items_get_a_zero_id_row_and_their_feature_vector(model, data, tmp_path: Path):
    import copy

    grown = copy.deepcopy(model)
    info = pd.DataFrame({"group": ["g1"], "description": ["g1word0 g1word2 common1"]},
                        index=["fresh"])
    grown.add_items(info)
    assert grown.item_vectors().shape[0] == data.n_items + 1
    assert float(grown.module.item.bags[0].weight[-1].detach().abs().sum()) == 0.0
    assert grown.item_log_q_.shape == (data.n_items + 1,)
    np.testing.assert_allclose(grown.item_vectors()[:-1], model.item_vectors(), atol=1e-6)
    grown.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(users=np.arange(5)),
                               grown.score(users=np.arange(5)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("extra", ["none", "hard"])
def test_negative_options_and_cosine_train(data, extra):
    model = rf.create("two_tower", similarity="cosine", temperature=0.1,
                      extra_negatives=extra, n_extra_negatives=16, hard_negatives=4,
                      **FAST).fit(data)
    vectors = model.item_vectors()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(model.score(users=np.arange(5))).all()


def test_configuration_errors(data):
    bare = Dataset(data.interactions, name="bare")
    with pytest.raises(ConfigError, match="needs item features"):
        rf.create("two_tower", item_id_embedding=False, **FAST).fit(bare)
    with pytest.raises(ConfigError, match="no input"):
        rf.create("two_tower", history=False, **FAST).fit(bare)
    with pytest.raises(ConfigError, match="layers"):
        rf.create("two_tower", layers="a,b")
