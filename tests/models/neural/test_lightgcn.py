"""lightgcn: propagation against a dense reference, learning, fold-in, vectors, save/load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.errors import ArtifactError, ConfigError  # noqa: E402
from recoforge.models.neural.lightgcn import (  # noqa: E402
    LightGCNEmbeddings,
    LightGCNNetwork,
    NormalisedGraph,
    fold_in,
)
from recoforge.models.query import Query  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

SMALL = {"embedding_dim": 16, "n_layers": 2, "epochs": 25, "batch_size": 256,
         "learning_rate": 0.01, "regularization": 1e-4, "seed": 0, "device": "cpu"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def taste():
    return taste_data(seed=0)


@pytest.fixture(scope="module")
def fitted(taste):
    return rf.create("lightgcn", **SMALL).fit(taste[0])


def tiny_graph() -> sp.csr_matrix:
    """4 users x 5 items; item 4 has no event; values are not weights (ratings)."""
    rows = [0, 0, 1, 1, 1, 2, 3, 3]
    cols = [0, 1, 1, 2, 3, 0, 2, 3]
    return sp.csr_matrix((np.array([5, 1, 3, 4, 2, 1, 5, 3], np.float32), (rows, cols)),
                         shape=(4, 5))


def dense_reference(matrix: sp.csr_matrix, users0: np.ndarray, items0: np.ndarray,
                    n_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """LightGCN on the dense (n_users + n_items)^2 adjacency, float64."""
    n_users, n_items = matrix.shape
    binary = (matrix.toarray() != 0).astype(np.float64)
    adjacency = np.block([[np.zeros((n_users, n_users)), binary],
                          [binary.T, np.zeros((n_items, n_items))]])
    degree = adjacency.sum(1)
    scale = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-300)), 0.0)
    normalised = scale[:, None] * adjacency * scale[None, :]
    layer = np.vstack([users0, items0]).astype(np.float64)
    total = layer.copy()
    for _ in range(n_layers):
        layer = normalised @ layer
        total += layer
    final = total / (n_layers + 1)
    return final[:n_users], final[n_users:]


def network_on(matrix: sp.csr_matrix, dim: int, n_layers: int, seed: int = 0
               ) -> LightGCNNetwork:
    torch.manual_seed(seed)
    network = LightGCNNetwork(matrix.shape[0], matrix.shape[1], dim, n_layers, 0.0, 0.5)
    network.graph = NormalisedGraph(matrix, CPU)
    return network


@pytest.mark.parametrize("n_layers", [1, 3])
def test_propagation_and_its_gradient_equal_a_dense_reference(n_layers):
    matrix = tiny_graph()
    network = network_on(matrix, 3, n_layers)
    users0 = network.user_embedding.weight.detach().numpy()
    items0 = network.item_embedding.weight.detach().numpy()
    users, items = network.final()
    want_users, want_items = dense_reference(matrix, users0, items0, n_layers)
    np.testing.assert_allclose(users.detach().numpy(), want_users, atol=1e-6)
    np.testing.assert_allclose(items.detach().numpy(), want_items, atol=1e-6)
    # the custom backward (stored transpose) against autograd of a dense product
    weights = torch.randn(users.shape[0] + items.shape[0], 3, generator=torch.Generator()
                          .manual_seed(1))
    (torch.cat([users, items]) * weights).sum().backward()
    dense = torch.tensor(np.vstack([users0, items0]), requires_grad=True)
    r = torch.tensor(network.graph.user_items.to_dense().numpy())
    n_users = matrix.shape[0]
    layer, total = dense, dense
    for _ in range(n_layers):
        layer = torch.cat([r @ layer[n_users:], r.T @ layer[:n_users]])
        total = total + layer
    ((total / (n_layers + 1)) * weights).sum().backward()
    np.testing.assert_allclose(network.user_embedding.weight.grad.numpy(),
                               dense.grad[:n_users].numpy(), atol=1e-6)
    np.testing.assert_allclose(network.item_embedding.weight.grad.numpy(),
                               dense.grad[n_users:].numpy(), atol=1e-6)


def test_learns_taste_data_well_above_random(fitted, taste):
    _, held_out = taste
    recs = fitted.recommend(list(held_out["user"]), k=10)
    hits = recs.merge(held_out[["user", "item"]], on=["user", "item"])["user"].nunique()
    assert hits / len(held_out) > 0.25  # random ranking: about 0.08
    assert fitted.loss_history_[-1] < 0.6 * fitted.loss_history_[0]


def test_query_vectors_dot_item_vectors_are_the_scores(fitted):
    items = fitted.item_vectors()
    stored = fitted.known_query(np.arange(6))
    np.testing.assert_allclose(fitted.query_vectors(stored) @ items.T,
                               fitted.score(users=np.arange(6)), rtol=1e-5, atol=1e-6)
    history = fitted.train_matrix_[[0, 7]]
    folded = fitted.query_vectors(Query.from_history(history))
    np.testing.assert_allclose(folded @ items.T, fitted.score(histories=history),
                               rtol=1e-5, atol=1e-6)
    assert fitted.factorised and fitted.user_state == "fold_in"


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_fold_in_of_a_training_row_is_the_trained_vector_when_layer0_is_predictable(
        n_layers):
    """e^(1..K) of a training row are exact; with layer 0 an exact linear function of
    layer 1 (ridge 0) the whole folded vector equals the trained final embedding."""
    matrix = tiny_graph()
    network = network_on(matrix, 3, n_layers)
    with torch.no_grad():
        users, _ = network.layers()
        mixing = torch.tensor([[0.5, -1.0, 0.2], [0.3, 0.1, 2.0], [-0.7, 0.4, 0.9]])
        network.user_embedding.weight.copy_(users[1] @ mixing)
        state = network.scoring_state(fold_in_ridge=0.0)
        np.testing.assert_allclose(state.layer0_map.numpy(), mixing.numpy(), atol=1e-4)
        np.testing.assert_allclose(fold_in(state, matrix).numpy(),
                                   state.user_final.numpy(), atol=1e-5)


def test_fold_in_follows_the_formula_and_approximates_trained_users(fitted):
    state = fitted.module.scoring_state()
    history = sp.csr_matrix(fitted.train_matrix_[:40])
    folded = fold_in(state, history).numpy()
    # the formula by hand for row 0: e^(k) = sum_i e_i^(k-1) / sqrt(d_h d_i)
    items = history[0].indices
    weight = state.item_norm.numpy()[items] / np.sqrt(len(items))
    layers = [weight @ state.item_layers[k].numpy()[items] for k in range(2)]
    by_hand = (layers[0] @ state.layer0_map.numpy() + layers[0] + layers[1]) / 3
    np.testing.assert_allclose(folded[0], by_hand, rtol=1e-4, atol=1e-6)
    trained = state.user_final.numpy()[:40]
    cosine = (folded * trained).sum(1) / np.linalg.norm(folded, axis=1) \
        / np.linalg.norm(trained, axis=1)
    assert np.median(cosine) > 0.9, np.median(cosine)


def test_fold_in_ignores_values_and_items_without_training_events():
    matrix = tiny_graph()
    network = network_on(matrix, 3, 2)
    state = network.scoring_state(1.0)
    plain = sp.csr_matrix(np.array([[1, 0, 1, 0, 0]], np.float32))
    weighted = sp.csr_matrix(np.array([[5, 0, 2, 0, 7]], np.float32))  # item 4: no event
    np.testing.assert_allclose(fold_in(state, weighted).numpy(),
                               fold_in(state, plain).numpy(), atol=1e-7)


def test_a_known_user_with_new_events_is_scored_from_the_merged_history(fitted, taste):
    train = taste[0]
    user = train.user_index.ids[5]
    seen = set(train.item_index.ids[fitted.train_matrix_[5].indices])
    new = [i for i in train.item_index.ids if i not in seen][:2]
    with_events = fitted.recommend([user], k=10, history={user: new})
    merged = list(seen) + new
    as_new_user = fitted.recommend(history={"x": merged}, k=10)
    np.testing.assert_allclose(with_events["score"], as_new_user["score"], rtol=1e-5)
    assert not with_events["score"].equals(fitted.recommend([user], k=10)["score"])


def test_save_load_keeps_the_scoring_state_and_not_the_graph(fitted, tmp_path: Path):
    fitted.save(tmp_path / "m")
    with np.load(tmp_path / "m" / "arrays.npz") as saved:
        sizes = {name: saved[name].size for name in saved.files}
    n_users, n_items = len(fitted.user_index_), len(fitted.item_index_)
    d, k = SMALL["embedding_dim"], SMALL["n_layers"]
    expected = (n_users + (k + 1) * n_items) * d + n_items + d * d
    torch_floats = sum(size for name, size in sizes.items()
                       if name.startswith("module_state_."))
    assert torch_floats == expected  # no graph, no layer-0 user embeddings
    loaded = rf.load_model(tmp_path / "m", history=fitted.train_matrix_)
    assert isinstance(loaded.module, LightGCNEmbeddings)
    np.testing.assert_array_equal(loaded.item_vectors(), fitted.item_vectors())
    np.testing.assert_array_equal(loaded.score(users=np.arange(5)),
                                  fitted.score(users=np.arange(5)))
    history = fitted.train_matrix_[[3]]
    np.testing.assert_array_equal(loaded.score(histories=history),
                                  fitted.score(histories=history))
    manifest = tmp_path / "m" / "manifest.json"
    content = json.loads(manifest.read_text())
    content["params"]["n_layers"] = 3  # the saved item layers no longer fit
    manifest.write_text(json.dumps(content))
    with pytest.raises(ArtifactError):
        rf.load_model(tmp_path / "m")


def test_same_seed_same_model_and_validation_scores_during_training(taste):
    calls = []

    def validation(model) -> float:
        calls.append(model.score(users=np.arange(3)).copy())
        return float(len(calls))  # later epochs "better": the last one is kept

    params = {**SMALL, "epochs": 3}
    first = rf.create("lightgcn", **params).fit(taste[0], validation=validation)
    second = rf.create("lightgcn", **params).fit(taste[0])
    np.testing.assert_array_equal(first.item_vectors(), second.item_vectors())
    assert len(calls) == 3 and not np.allclose(calls[0], calls[-1])
    np.testing.assert_allclose(calls[-1], first.score(users=np.arange(3)), atol=1e-5)


@pytest.mark.parametrize("bad", [{"n_layers": 0}, {"embedding_dim": 0},
                                 {"regularization": -1.0}, {"learning_rate": 0.0},
                                 {"negative_sampler": "hard"}, {"n_negatives": 0},
                                 {"fold_in_ridge": -1.0}, {"init_scale": 0.0}])
def test_bad_parameters_raise_config_error(bad):
    with pytest.raises(ConfigError):
        rf.create("lightgcn", **bad)
