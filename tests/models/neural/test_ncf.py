"""gmf, mlp, neumf: learning, pair scoring = block path, fold-in, pretraining, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.data import Dataset, Interactions  # noqa: E402
from recoforge.errors import ConfigError  # noqa: E402
from recoforge.models.neural import ncf  # noqa: E402
from recoforge.models.query import Query  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

COMMON = {"epochs": 10, "batch_size": 128, "learning_rate": 0.01, "n_negatives": 4,
          "seed": 0, "device": "cpu", "fold_in_steps": 30}
SIZES = {"gmf": {"embedding_dim": 8},
         "mlp": {"embedding_dim": 8, "layers": "16,8"},
         "neumf": {"mf_embedding_dim": 8, "mlp_embedding_dim": 8, "mlp_layers": "16,8"}}


def _params(name: str, **extra) -> dict:
    return {**COMMON, **SIZES[name], **extra}


@pytest.fixture(scope="module")
def taste():
    return taste_data(seed=0, n_users=200)


@pytest.fixture(scope="module")
def fitted(taste):
    return {name: rf.create(name, **_params(name)).fit(taste[0]) for name in SIZES}


def _hit_rate(model, held_out: pd.DataFrame) -> float:
    recs = model.recommend(list(held_out["user"]), k=10)
    return recs.merge(held_out[["user", "item"]], on=["user", "item"])["user"].nunique() \
        / len(held_out)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_each_model_learns_the_tastes(fitted, taste, name):
    model = fitted[name]
    assert _hit_rate(model, taste[1]) > 0.2  # random ranking: about 0.08 (10 of ~125 items)
    assert model.loss_history_[-1] < 0.8 * model.loss_history_[0]
    assert len(model.loss_history_) == COMMON["epochs"]


def test_capabilities():
    assert rf.create("neumf").capabilities()["scores_full_catalogue"] is False
    assert rf.create("mlp").capabilities()["scores_full_catalogue"] is False
    assert rf.create("gmf").capabilities()["factorised"] is True
    for name in SIZES:
        assert rf.create(name).capabilities()["user_state"] == "fold_in"


@pytest.mark.parametrize("name", sorted(SIZES))
def test_candidate_scores_equal_full_scores_and_the_module(fitted, name, monkeypatch):
    model = fitted[name]
    rng = np.random.default_rng(3)
    candidates = rng.integers(0, len(model.item_index_), size=(7, 20))
    full = model.score(users=np.arange(7))
    got = model.score_candidates(candidates, users=np.arange(7))
    np.testing.assert_allclose(got, np.take_along_axis(full, candidates, 1), rtol=1e-5,
                               atol=1e-5)
    with torch.no_grad():  # the training forward pass gives the same logits
        direct = model.module.pair_logits(torch.arange(7), torch.as_tensor(candidates))
    np.testing.assert_allclose(got, direct.numpy(), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(ncf, "PAIR_BLOCK_FLOATS", 40)  # tiny tiles: rows and columns
    np.testing.assert_allclose(model.score(users=np.arange(7)), full, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.score_candidates(candidates, users=np.arange(7)), got,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_ranking_through_item_blocks_equals_dense_ranking(fitted, name):
    model = fitted[name]
    users = np.arange(12)
    idx, scores = model.top_items(users, k=5)
    dense = model.score(users=users)
    dense[model.train_matrix_[:12].toarray() != 0] = -np.inf
    best = -np.sort(-dense, axis=1)[:, :5]
    np.testing.assert_allclose(scores, best, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.take_along_axis(dense, idx.astype(np.int64), 1), scores,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_fold_in_recommends_from_history(fitted, name):
    model = fitted[name]
    history = model.train_matrix_[:10]
    folded = model.score(histories=history)
    trained = model.score(users=np.arange(10))
    # a user's own history folded in lands near their trained embedding
    corr = [np.corrcoef(folded[r], trained[r])[0, 1] for r in range(10)]
    assert np.mean(corr) > 0.5, corr
    items = list(model.item_index_.ids[:5])
    recs = model.recommend(history={"visitor": items}, k=10)
    assert len(recs) == 10 and not set(recs["item"]) & set(items)
    pd.testing.assert_frame_equal(recs, model.recommend(history={"visitor": items}, k=10))
    query = Query.from_history(history)
    first, _ = model._module_for(query)
    again, _ = model._module_for(Query.from_history(history.copy()))
    assert first is again  # one fold-in serves every column block of a query


def test_gmf_vectors_reproduce_its_scores(fitted):
    gmf = fitted["gmf"]
    query = gmf.known_query(np.arange(5))
    np.testing.assert_allclose(gmf.query_vectors(query) @ gmf.item_vectors().T,
                               gmf.score(users=np.arange(5)), rtol=1e-4, atol=1e-5)


def test_same_seed_same_parameters(fitted, taste):
    again = rf.create("neumf", **_params("neumf")).fit(taste[0])
    first, second = fitted["neumf"].module.state_dict(), again.module.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_explicit_ratings_are_all_positives(taste):
    """Ratings' values do not matter: every rating is a positive."""
    train = taste[0]
    frame = train.interactions.to_frame()
    ones = Dataset(Interactions.from_frame(frame.assign(value=1.0), rating_col="value",
                                           user_index=train.user_index,
                                           item_index=train.item_index))
    params = _params("mlp", epochs=2)
    first = rf.create("mlp", **params).fit(train).module.state_dict()
    second = rf.create("mlp", **params).fit(ones).module.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize("name", sorted(SIZES))
def test_save_load_round_trip(fitted, name, tmp_path: Path):
    model = fitted[name]
    model.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.recommend(k=5), model.recommend(k=5))
    for key, tensor in model.module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[key], tensor)
    history = {"v": list(model.item_index_.ids[1:4])}
    pd.testing.assert_frame_equal(loaded.recommend(history=history, k=5),
                                  model.recommend(history=history, k=5))


def test_neumf_pretrained_initialisation_is_exact(fitted, taste):
    gmf, mlp = fitted["gmf"], fitted["mlp"]
    neumf = rf.create("neumf", **_params("neumf", pretrain_alpha=0.3)).fit(taste[0])
    module = neumf._build_module(len(neumf.user_index_), len(neumf.item_index_))
    module.load_state_dict(ncf.pretrained_state(gmf, mlp, neumf, 0.3))
    module.eval()
    users = torch.arange(9)
    items = torch.as_tensor(np.random.default_rng(0).integers(0, 140, (9, 30)))
    with torch.no_grad():
        combined = module.pair_logits(users, items)
        expected = 0.3 * gmf.module.pair_logits(users, items) \
            + 0.7 * mlp.module.pair_logits(users, items)
    torch.testing.assert_close(combined, expected, rtol=1e-5, atol=1e-5)


def test_neumf_fit_from_given_models_starts_at_their_combination(fitted, taste):
    gmf, mlp = fitted["gmf"], fitted["mlp"]
    frozen = _params("neumf", epochs=1, optimizer="sgd", learning_rate=1e-9)
    neumf = rf.create("neumf", **frozen).fit(taste[0], pretrained=(gmf, mlp))
    expected = 0.5 * gmf.score(users=np.arange(9)) + 0.5 * mlp.score(users=np.arange(9))
    np.testing.assert_allclose(neumf.score(users=np.arange(9)), expected, atol=1e-5)
    scratch = rf.create("neumf", **frozen).fit(taste[0])
    assert np.abs(scratch.score(users=np.arange(9)) - expected).max() > 0.1


def test_neumf_pretrain_fits_gmf_and_mlp_first(taste):
    model = rf.create("neumf", **_params("neumf", pretrain=True, pretrain_epochs=5,
                                         epochs=3)).fit(taste[0])
    scratch = rf.create("neumf", **_params("neumf", epochs=3)).fit(taste[0])
    assert model.loss_history_[0] < scratch.loss_history_[0]  # starts from trained towers
    assert _hit_rate(model, taste[1]) > 0.2


def test_neumf_refuses_mismatched_pretrained_models(fitted, taste):
    gmf, mlp = fitted["gmf"], fitted["mlp"]
    wide = rf.create("neumf", **_params("neumf", mf_embedding_dim=16))
    with pytest.raises(ConfigError, match="sizes"):
        wide.fit(taste[0], pretrained=(gmf, mlp))
    with pytest.raises(ConfigError, match="pair"):
        rf.create("neumf", **_params("neumf")).fit(taste[0], pretrained=(mlp, gmf))
    other = taste_data(seed=1, n_users=50)[0]
    with pytest.raises(ConfigError, match="other users"):
        rf.create("neumf", **_params("neumf")).fit(other, pretrained=(gmf, mlp))


@pytest.mark.parametrize("name,params", [
    ("mlp", {"layers": "64,x"}), ("mlp", {"layers": ""}), ("mlp", {"layers": "0,8"}),
    ("mlp", {"dropout": 1.0}), ("gmf", {"embedding_dim": 0}), ("neumf", {"mlp_layers": "a"}),
    ("neumf", {"pretrain_alpha": 1.5}), ("neumf", {"n_negatives": 0}),
    ("gmf", {"negative_sampler": "zipf"}), ("neumf", {"pretrain": "yes"}),
    ("mlp", {"layers": 64}),
])
def test_bad_parameters_are_config_errors(name, params):
    with pytest.raises(ConfigError):
        rf.create(name, **params)
