"""fm, ffm, nfm, deepfm, wide_deep: field bags, the FM/FFM identities against brute force,
labels and losses, predictions, new users (fold-in from the mean row), new items."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.data import Dataset, Interactions, build_features  # noqa: E402
from recoforge.errors import ConfigError, DataError  # noqa: E402
from recoforge.models.neural import fields  # noqa: E402
from recoforge.models.neural._torch import Seeds  # noqa: E402
from recoforge.models.query import Query  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

NAMES = ("fm", "ffm", "nfm", "deepfm", "wide_deep")
COMMON = {"embedding_dim": 8, "epochs": 8, "batch_size": 256, "learning_rate": 0.01,
          "n_negatives": 4, "seed": 0, "device": "cpu"}
LAYERS = {"nfm": {"layers": "16"}, "deepfm": {"layers": "16,8"},
          "wide_deep": {"layers": "16,8", "dropout": 0.0, "epochs": 15, "init_scale": 0.1}}


def _params(name: str, **extra) -> dict:
    return {**COMMON, **LAYERS.get(name, {}), **extra}


@pytest.fixture(scope="module")
def taste():
    return taste_data(seed=0, n_users=200)


@pytest.fixture(scope="module")
def fitted(taste):
    return {name: rf.create(name, **_params(name)).fit(taste[0]) for name in NAMES}


# --------------------------------------------------------------------------- bags
def test_pool_rows_means_multilabel_fields_only():
    matrix = sp.csr_matrix(np.array([[1, 1, 0, 2.0, 1], [0, 1, 0, -1.0, 0]], np.float32))
    starts, multi = np.array([0, 3, 4]), np.array([True, False, False])
    pooled = pool = fields.pool_rows(matrix, starts, multi).toarray()
    np.testing.assert_allclose(pool, [[0.5, 0.5, 0, 2, 1], [0, 1, 0, -1, 0]])
    assert matrix.toarray()[0, 0] == 1  # the input is not changed
    np.testing.assert_allclose(fields.pool_rows(sp.csr_matrix(pooled), starts, multi)
                               .toarray(), pooled)  # idempotent


def test_merge_bags_gives_one_bag_per_row_and_field_user_fields_first():
    users = fields.SideRows(sp.csr_matrix(np.array([[1, 0, 2, 3], [0, 0, 0, 0],
                                                    [0, 4, 0, 5]], np.float32)),
                            np.array([0, 2, 3]), 0)  # fields: columns 0-1, 2, 3
    items = fields.SideRows(sp.csr_matrix(np.array([[0, 7], [6, 0]], np.float32)),
                            np.array([0, 1]), 4)
    rows_u, rows_i = np.array([2, 1, 0]), np.array([1, 1, 0])
    parts = [users.entries(rows_u), items.entries(rows_i)]
    idx, weights, offsets = fields.merge_bags(parts, 3, [3, 2])
    bags = [idx[a:b].tolist() for a, b in zip(offsets, [*offsets[1:].tolist(), len(idx)])]
    assert bags == [[1], [], [3], [4], [],  # user row 2, item row 1
                    [], [], [], [4], [],  # user row 1 (empty), item row 1
                    [0], [2], [3], [], [5]]  # user row 0, item row 0
    np.testing.assert_allclose(weights, [4, 5, 6, 6, 1, 2, 3, 7])


def _brute_force(model, module, user: int, item: int, field_aware: bool) -> float:
    """y = b + sum of first-order terms + sum over field pairs, from the tables directly."""
    users = fields.pool_rows(model.user_feature_matrix_, model.user_field_starts_,
                             model.user_field_multi_)
    vectors, linear = [], float(module.bias.detach())
    n_uf = users.shape[1]
    table = module.feature_embedding.detach()
    emb, lin = table[:, :-1], table[:, -1:]  # embeddings, then the first-order weight
    sides = [(user, users, model.user_field_starts_, 0, module.user_embedding),
             (item, model.item_feature_matrix_, model.item_field_starts_, n_uf,
              module.item_embedding)]
    for row, matrix, starts, offset, id_table in sides:
        vectors.append(id_table.weight[row, :-1].detach())
        linear += float(id_table.weight[row, -1].detach())
        ends = [*starts[1:].tolist(), matrix.shape[1]]
        dense = matrix[row].toarray()[0]
        for a, b in zip(starts, ends):
            x = torch.as_tensor(dense[a:b])
            vectors.append(x @ emb[offset + a:offset + b])
            linear += float(x @ lin[offset + a:offset + b, 0])
    k = model.config.embedding_dim
    total = 0.0
    for f, g in itertools.combinations(range(len(vectors)), 2):
        if field_aware:
            total += float(vectors[f][g * k:(g + 1) * k] @ vectors[g][f * k:(f + 1) * k])
        else:
            total += float(vectors[f] @ vectors[g])
    return linear + total


@pytest.mark.parametrize("name", ["fm", "ffm"])
def test_fm_and_ffm_match_the_pairwise_sum_over_fields(fitted, name):
    model = fitted[name]
    module = model.module
    assert len(model.field_names_) == 6  # user id, taste, noise, item id, group, description
    scores = model.score(users=np.array([3, 17]))
    for row, user in enumerate([3, 17]):
        for item in (0, 5, 77):
            expected = _brute_force(model, module, user, item, name == "ffm")
            assert scores[row, item] == pytest.approx(expected, rel=1e-4, abs=1e-5)
    vectors = model.query_vectors(model.known_query(np.array([3, 17])))
    np.testing.assert_allclose(vectors @ model.item_vectors().T, scores, rtol=1e-4,
                               atol=1e-5)


# --------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", NAMES)
def test_models_learn_the_taste_groups(fitted, taste, name):
    """Held-out items of the user's preferred group outrank other groups' items."""
    model = fitted[name]
    train, held = taste
    users = model.user_index_.to_index(held["user"])
    scores = model.score(users=users)
    item_groups = np.array([int(str(i)[1:]) % 4 for i in model.item_index_.ids])
    tastes = [int(str(u)[1:]) % 4 for u in held["user"]]
    own = np.array([scores[r, item_groups == g].mean() for r, g in enumerate(tastes)])
    other = np.array([scores[r, item_groups != g].mean() for r, g in enumerate(tastes)])
    assert len(own) == train.n_users
    assert (own > other).mean() > 0.9
    assert model.loss_history_[-1] < model.loss_history_[0]


def test_label_threshold_labels_observed_pairs_without_negatives(taste):
    model = rf.create("fm", **_params("fm", label_threshold=4.0))
    model.fit(taste[0])
    matrix = taste[0].matrix()
    batches = model._batches(model.module, matrix, seeds=Seeds.from_seed(0),
                             device=torch.device("cpu"), batch_size=10**6)
    batch = next(iter(batches))
    assert len(batch["labels"]) == matrix.nnz  # no sampled negatives
    assert batch["labels"].sum() == (matrix.data >= 4).sum()
    probs = model.predict(["u0", "u1", "u2"], ["i0", "i1", "i2"])
    assert ((probs > 0) & (probs < 1)).all()


def test_mse_predicts_ratings_and_bpr_trains(taste):
    mse = rf.create("deepfm", **_params("deepfm", loss="mse", epochs=15)).fit(taste[0])
    frame = taste[0].interactions.to_frame().head(300)
    predicted = mse.predict(frame["user"], frame["item"])
    truth = frame["value"].to_numpy()
    assert np.sqrt(np.mean((predicted - truth) ** 2)) < np.std(truth)
    assert mse.target_offset_ == pytest.approx(taste[0].matrix().data.mean())
    bpr = rf.create("nfm", **_params("nfm", loss="bpr")).fit(taste[0])
    assert bpr.loss_history_[-1] < bpr.loss_history_[0]
    with pytest.raises(ConfigError, match="label_threshold"):
        rf.create("fm", loss="mse", label_threshold=4.0)


def test_a_model_needs_at_least_one_field():
    inter = Interactions.from_frame(pd.DataFrame({"user": [1, 2], "item": [1, 2]}))
    with pytest.raises(ConfigError, match="no fields"):
        rf.create("fm", user_id=False, item_id=False, epochs=1).fit(Dataset(inter))


def test_ids_alone_and_features_without_an_encoder_work(taste):
    train = taste[0]
    plain = Dataset(train.interactions)
    model = rf.create("ffm", **_params("ffm", epochs=2)).fit(plain)
    assert model.field_names_.tolist() == ["user_id", "item_id"]
    bare = Dataset(train.interactions, item_features=rf.data.FeatureMatrix(
        train.item_features.matrix, train.item_features.names))
    model = rf.create("fm", **_params("fm", epochs=2)).fit(bare)
    assert model.field_names_.tolist() == ["user_id", "item_id", "item:features"]
    assert np.isfinite(model.score(users=np.arange(3))).all()


# --------------------------------------------------------------------------- new users
@pytest.mark.parametrize("name", ["fm", "deepfm"])
def test_new_user_without_history_keeps_the_mean_user_row(fitted, name):
    """New users: the user-id rows are folded in from the mean trained row; with no
    history they stay there, so their features alone move their scores."""
    model = fitted[name]
    n_items = len(model.item_index_)
    encoded = model.user_feature_matrix_[[0, 1]]  # users of tastes g0 and g1
    query = Query.from_history(sp.csr_matrix((2, n_items), dtype=np.float32),
                               user_features=encoded)
    module, users = model._module_for(query)
    mean = model.module.user_embedding.weight.mean(0)  # embedding and first-order weight
    torch.testing.assert_close(module.user_embedding.weight, mean.expand(2, -1))
    scores = model._score(query)
    assert not np.allclose(scores[0], scores[1])
    history = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 4])), shape=(2, n_items),
                            dtype=np.float32)
    folded, _ = model._module_for(Query.from_history(history, user_features=encoded))
    assert not torch.allclose(folded.user_embedding.weight[0], mean)
    torch.testing.assert_close(folded.user_embedding.weight[1], mean)  # no events: mean


def test_query_user_features_must_have_the_training_columns(fitted):
    model = fitted["fm"]
    bad = Query.from_history(sp.csr_matrix((1, len(model.item_index_)), dtype=np.float32),
                             user_features=sp.csr_matrix((1, 3), dtype=np.float32))
    with pytest.raises(DataError, match="columns"):
        model._score(bad)


# --------------------------------------------------------------------------- new items
@pytest.mark.parametrize("name", ["ffm", "wide_deep"])
def test_added_items_have_zero_id_rows_and_score_by_features(fitted, taste, name):
    import copy

    model = copy.deepcopy(fitted[name])
    n_old = len(model.item_index_)
    copies = model.item_feature_matrix_[[2, 3]]
    model._add_items(copies)  # the features of items i2 and i3 again
    module = model.module
    assert module.item_embedding.weight.shape[0] == n_old + 2
    assert not module.item_embedding.weight[n_old:].any()
    grid = np.array([[n_old, n_old + 1]] * 3)
    query = model.known_query(np.arange(3))
    scores = model._score_candidates(query, grid)
    assert np.isfinite(scores).all()
    # the same features score the same, whatever the item id
    again = model._score_candidates(query, np.array([[n_old + 1, n_old]] * 3))
    np.testing.assert_allclose(scores[:, ::-1], again, rtol=1e-5)
    with pytest.raises(DataError, match="feature columns"):
        model._add_items(sp.csr_matrix((1, 2), dtype=np.float32))


def test_movielens_style_fields(tmp_path):
    """User and item encoders with categorical, numeric and multi-label fields."""
    rng = np.random.default_rng(0)
    users, items = [f"u{j}" for j in range(30)], [f"m{j}" for j in range(25)]
    pairs = pd.DataFrame({"user": rng.choice(users, 400), "item": rng.choice(items, 400),
                          "rating": rng.integers(1, 6, 400).astype(float)}
                         ).drop_duplicates(["user", "item"])
    inter = Interactions.from_frame(pairs, rating_col="rating")
    genres = ["a|b", "b", "c|a|b", "d"]
    item_info = pd.DataFrame({"genres": [genres[j % 4] for j in range(25)]}, index=items)
    user_info = pd.DataFrame({"gender": ["F", "M"] * 15, "age": rng.integers(18, 60, 30)},
                             index=users)
    data = Dataset(inter, item_features=build_features(
        item_info.loc[inter.item_index.ids], inter.item_index, multilabel={"genres": r"\|"}),
        user_features=build_features(user_info.loc[inter.user_index.ids], inter.user_index,
                                     categorical=["gender"], numeric=["age"]))
    model = rf.create("deepfm", **_params("deepfm", label_threshold=4.0, epochs=3))
    model.fit(data)
    assert model.field_names_.tolist() == ["user_id", "user:gender", "user:age", "item_id",
                                           "item:genres"]
    row = model.item_feature_matrix_[2].toarray()[0]  # "c|a|b": mean of three labels
    np.testing.assert_allclose(np.sort(row[row > 0]), [1 / 3] * 3, rtol=1e-6)
    model.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.score(users=np.arange(4)), model.score(
        users=np.arange(4)), rtol=1e-5)


def test_a_side_without_id_or_features_is_a_clear_error():
    from recoforge.data.synthetic import category_demo

    data = category_demo(seed=0)
    assert data.user_features is None
    with pytest.raises(ConfigError, match="user side has no fields.*user_id=True"):
        rf.create("wide_deep", user_id=False, epochs=1).fit(data)
