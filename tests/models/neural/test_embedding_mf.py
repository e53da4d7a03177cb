"""embedding_mf: learning, determinism, fold-in, validation, save/load and tampering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.data import Dataset, Interactions  # noqa: E402
from recoforge.errors import ArtifactError, ConfigError  # noqa: E402
from recoforge.models.query import Query  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

SMALL = {"embedding_dim": 8, "epochs": 30, "batch_size": 256, "learning_rate": 0.02,
         "regularization": 0.01, "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def low_rank():
    """Ratings 3 + U V^T + noise (rank 3) on 30% of a 200 x 150 grid; 80/20 split."""
    rng = np.random.default_rng(0)
    users, items = rng.normal(size=(200, 3)), rng.normal(size=(150, 3))
    ratings = 3.0 + 0.8 * users @ items.T + rng.normal(scale=0.3, size=(200, 150))
    u, i = np.nonzero(rng.random((200, 150)) < 0.3)
    frame = pd.DataFrame({"user": u, "item": i, "rating": ratings[u, i]})
    test = rng.random(len(frame)) < 0.2
    train = Dataset(Interactions.from_frame(frame[~test], rating_col="rating"))
    return train, frame[test]


@pytest.fixture(scope="module")
def fitted(low_rank):
    return rf.create("embedding_mf", **SMALL).fit(low_rank[0])


def test_learns_low_rank_ratings(fitted, low_rank):
    train, test = low_rank
    known = test[test["user"].isin(train.user_index.ids) & test["item"].isin(train.item_index.ids)]
    predicted = fitted.predict(known["user"], known["item"])
    rmse = np.sqrt(np.mean((predicted - known["rating"]) ** 2))
    baseline = np.sqrt(np.mean((train.interactions.values.mean() - known["rating"]) ** 2))
    assert rmse < 0.6 * baseline, (rmse, baseline)
    assert fitted.loss_history_[-1] < 0.5 * fitted.loss_history_[0]
    assert fitted.objective == "mse" and len(fitted.loss_history_) == SMALL["epochs"]


def test_top_n_beats_a_random_ranker():
    train, held_out = taste_data(seed=0)
    model = rf.create("embedding_mf", **{**SMALL, "loss": "bce", "epochs": 20}).fit(train)
    assert model.objective == "bce"
    recs = model.recommend(list(held_out["user"]), k=10)
    hits = recs.merge(held_out[["user", "item"]], on=["user", "item"])["user"].nunique()
    assert hits / len(held_out) > 0.25  # random ranking: about 0.08


def test_same_seed_same_parameters_other_seed_differs(fitted, low_rank):
    again = rf.create("embedding_mf", **SMALL).fit(low_rank[0])
    first, second = fitted.module.state_dict(), again.module.state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = rf.create("embedding_mf", **{**SMALL, "seed": 1}).fit(low_rank[0])
    assert not torch.equal(first["item_embedding.weight"],
                           other.module.state_dict()["item_embedding.weight"])


def test_factorised_vectors_reproduce_scores_and_fold_in(fitted):
    query = fitted.known_query(np.arange(6))
    np.testing.assert_allclose(fitted.query_vectors(query) @ fitted.item_vectors().T,
                               fitted.score(users=np.arange(6)), rtol=1e-4, atol=1e-4)
    # the closed-form fold-in of a known user's own history lands near their trained row
    folded = fitted.query_vectors(Query.from_history(fitted.train_matrix_[:6]))
    trained = fitted.query_vectors(query)
    assert np.corrcoef(folded[:, :-2].ravel(), trained[:, :-2].ravel())[0, 1] > 0.8


@pytest.mark.parametrize("sampler", ["uniform", "popularity", "in_batch", "hard"])
def test_bce_with_every_sampler_and_iterative_fold_in(sampler):
    train, _ = taste_data(seed=0)
    model = rf.create("embedding_mf", **{**SMALL, "epochs": 3, "loss": "bce",
                                         "negative_sampler": sampler,
                                         "fold_in_steps": 5}).fit(train)
    assert np.isfinite(model.loss_history_).all()
    history = {"v": list(train.item_index.ids[:6])}
    first = model.recommend(history=history, k=5)
    pd.testing.assert_frame_equal(first, model.recommend(history=history, k=5))
    assert ((model.predict(["u0"], ["i1"]) > 0) & (model.predict(["u0"], ["i1"]) < 1)).all()


def test_validation_callback_early_stopping_and_progress(low_rank):
    metrics = iter([0.1, 0.4, 0.2, 0.3, 0.1, 0.0])
    seen, progress = [], []

    def validation(model):
        seen.append(model.score(users=np.arange(2)).copy())
        return next(metrics)

    model = rf.create("embedding_mf", **{**SMALL, "epochs": 6, "patience": 2}).fit(
        low_rank[0], validation=validation, progress=lambda *a, **kw: progress.append((*a, kw)))
    assert model.best_epoch_ == 1 and len(model.loss_history_) == 4
    np.testing.assert_allclose(model.validation_history_, [0.1, 0.4, 0.2, 0.3])
    np.testing.assert_allclose(model.score(users=np.arange(2)), seen[1], rtol=1e-6)
    assert [p[:2] for p in progress] == [(1, 6), (2, 6), (3, 6), (4, 6)]
    assert progress[1][2]["metric"] == 0.4 and progress[1][2]["loss"] > 0


@pytest.mark.parametrize("params", [{"embedding_dim": 0}, {"optimizer": "lbfgs"},
                                    {"lr_schedule": "warmup"}, {"device": "tpu"},
                                    {"loss": "hinge"}, {"learning_rate": 0.0},
                                    {"batch_size": 0}, {"negative_sampler": "zipf"}])
def test_bad_parameters_are_config_errors(params):
    with pytest.raises(ConfigError):
        rf.create("embedding_mf", **params)


def test_save_load_round_trip(fitted, tmp_path: Path):
    fitted.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    assert loaded.module_state_.module is None  # rebuilt lazily, on first use
    pd.testing.assert_frame_equal(loaded.recommend(k=5), fitted.recommend(k=5))
    np.testing.assert_array_equal(loaded.loss_history_, fitted.loss_history_)
    for name, tensor in fitted.module.state_dict().items():
        assert torch.equal(loaded.module.state_dict()[name], tensor)
    history = {"v": {fitted.item_index_.ids[1]: 4.0, fitted.item_index_.ids[2]: 2.0}}
    pd.testing.assert_frame_equal(loaded.recommend(history=history, k=5),
                                  fitted.recommend(history=history, k=5))


def _tamper(directory: Path, change) -> None:
    """Apply ``change(names, arrays)`` to the torch state and re-seal the checksums."""
    import hashlib

    from recoforge.artifacts.model_dir import manifest_checksum

    manifest = json.loads((directory / "manifest.json").read_text())
    with np.load(directory / "arrays.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    part = manifest["parts"]["module_state_"]
    names = part["meta"]["names"]
    state = {n: arrays.pop(f"module_state_.t{i}") for i, n in enumerate(names)}
    change(state)
    part["meta"]["names"] = list(state)
    part["arrays"] = sorted(f"t{i}" for i in range(len(state)))
    arrays.update({f"module_state_.t{i}": a for i, a in enumerate(state.values())})
    np.savez(directory / "arrays.npz", **arrays)
    digest = hashlib.sha256((directory / "arrays.npz").read_bytes()).hexdigest()
    manifest["files"]["arrays.npz"] = digest
    manifest["manifest_sha256"] = manifest_checksum(manifest)
    (directory / "manifest.json").write_text(json.dumps(manifest))


def _nan(state):
    state["item_bias.weight"] = state["item_bias.weight"].copy()
    state["item_bias.weight"][3, 0] = np.nan


@pytest.mark.parametrize("change,message", [
    (lambda s: s.update({"item_embedding.weight": s["item_embedding.weight"][:, :4]}),
     "shape"),
    (_nan, "NaN"),
    (lambda s: s.pop("user_bias.weight"), "lacks"),
    (lambda s: s.update({"extra.weight": np.zeros(3, np.float32)}), "extra"),
    (lambda s: s.update({"global_bias": np.zeros((), np.float64)}), "dtype"),
])
def test_tampered_torch_state_is_an_artifact_error(fitted, tmp_path: Path, change, message):
    fitted.save(tmp_path / "m")
    rf.load_model(tmp_path / "m")  # intact: loads
    _tamper(tmp_path / "m", change)
    with pytest.raises(ArtifactError, match=message):
        rf.load_model(tmp_path / "m")
