"""The conformance suite: every registered model honours the contract of models/base.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    NotSupportedError,
    UnknownIdError,
)
from tests.conformance.specs import SPECS, taste_data

K = 10


def test_every_registered_model_has_a_spec():
    assert set(rf.available_models()) <= {s.name for s in SPECS}


def test_fit_returns_self_and_refits_cleanly(fitted, data):
    spec, _ = fitted
    train, _ = data
    model = rf.create(spec.name, **spec.params)
    assert model.fit(train) is model
    first = model.recommend(k=K)
    small = train.subset(np.asarray(train.interactions.users) % 2 == 0)
    model.fit(small)
    assert len(model.user_index_) == small.n_users < train.n_users
    assert set(model.recommend(k=K)["user"]) == set(small.user_index.ids)
    model.fit(train)
    pd.testing.assert_frame_equal(model.recommend(k=K), first)


def test_deterministic_under_seed(fitted, data):
    spec, model = fitted
    again = rf.create(spec.name, **spec.params).fit(data[0])
    pd.testing.assert_frame_equal(model.recommend(k=K), again.recommend(k=K))


def test_seen_items_excluded_k_respected_and_sorted(fitted, data):
    _, model = fitted
    train = data[0]
    recs = model.recommend(k=K)
    seen = set(zip(*[train.interactions.to_frame()[c] for c in ("user", "item")]))
    assert not any((u, i) in seen for u, i in zip(recs["user"], recs["item"]))
    for _, group in recs.groupby("user"):
        assert len(group) == K
        assert group["rank"].tolist() == list(range(1, K + 1))
        assert np.all(np.diff(group["score"].to_numpy()) <= 0)
        assert group["item"].is_unique
    assert set(recs["user"]) == set(train.user_index.ids)


def test_exclude_seen_false_and_whitelist(fitted, data):
    _, model = fitted
    users = list(data[0].user_index.ids[:5])
    whitelist = list(data[0].item_index.ids[::7])
    recs = model.recommend(users, k=3, items=whitelist, exclude_seen=False)
    assert set(recs["item"]) <= set(whitelist)
    assert (recs.groupby("user").size() == 3).all()


def test_bad_arguments(fitted):
    _, model = fitted
    for k in (0, -1, 2.5, True):
        with pytest.raises(ConfigError):
            model.recommend(k=k)
    with pytest.raises(UnknownIdError):
        model.recommend(["u0"], items=["no-such-item"])
    with pytest.raises(NotFittedError):
        model.clone().recommend(k=3)
    with pytest.raises(DataError):
        model.clone().fit(Dataset.from_frame(pd.DataFrame({"user": [], "item": []})))


def test_unknown_user_policy(fitted, data):
    spec, model = fitted
    known = str(data[0].user_index.ids[0])
    with pytest.raises(UnknownIdError, match="stranger"):
        model.recommend([known, "stranger"], k=K)
    skipped = model.recommend([known, "stranger"], k=K, unknown="skip")
    assert set(skipped["user"]) == {known}
    with pytest.raises(ConfigError):
        model.recommend(["stranger"], k=K, unknown="fallback")
    with_fallback = rf.create(spec.name, **spec.params).fit(data[0], fallback="popularity")
    out = with_fallback.recommend([known, "stranger"], k=K, unknown="fallback")
    assert out["user"].tolist() == [known] * K + ["stranger"] * K
    expected = with_fallback.fallback_.recommend(history={"stranger": []}, k=K)
    assert out["item"].tolist()[K:] == expected["item"].tolist()


def test_new_user_from_history(fitted, data):
    spec, model = fitted
    train = data[0]
    frame = train.interactions.to_frame()
    user = train.user_index.ids[3]
    history = frame[frame["user"] == user]
    recs = model.recommend(history={"new": dict(zip(history["item"], history["value"]))}, k=K)
    assert len(recs) == K and set(recs["user"]) == {"new"}
    assert not set(recs["item"]) & set(history["item"])
    if spec.history_matches_known_user:
        known = model.recommend([user], k=K)
        assert recs["item"].tolist() == known["item"].tolist()
        np.testing.assert_allclose(recs["score"], known["score"], rtol=1e-5)
    single = model.recommend(history=list(history["item"][:3]), k=K)
    assert len(single) == K


def test_save_load_round_trip_and_tamper(fitted, data, tmp_path: Path):
    _, model = fitted
    model.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    pd.testing.assert_frame_equal(loaded.recommend(k=K), model.recommend(k=K))
    assert loaded.get_params() == model.get_params()
    with pytest.raises(ArtifactError):
        model.save(tmp_path / "m")
    arrays = tmp_path / "m" / "arrays.npz"
    blob = bytearray(arrays.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    arrays.write_bytes(bytes(blob))
    with pytest.raises(ArtifactError, match="checksum"):
        rf.load_model(tmp_path / "m")
    model.save(tmp_path / "m2")
    manifest = tmp_path / "m2" / "manifest.json"
    content = json.loads(manifest.read_text())
    content["params"] = {**content["params"]}
    content["library_version"] = "99.0"
    manifest.write_text(json.dumps(content))
    with pytest.raises(ArtifactError, match="manifest"):
        rf.load_model(tmp_path / "m2")


def test_clone_and_params(fitted):
    spec, model = fitted
    clone = model.clone()
    assert clone.get_params() == model.get_params() and not clone.is_fitted
    with pytest.raises(ConfigError):
        clone.set_params(no_such_parameter=1)


def test_predict_and_similar_items(fitted, data):
    _, model = fitted
    users = list(data[0].user_index.ids[:4])
    items = list(data[0].item_index.ids[:4])
    if model.predicts_ratings:
        pred = model.predict(users, items)
        assert pred.shape == (4,) and np.all(np.isfinite(pred))
        assert np.isnan(model.predict(["stranger"], items[:1], unknown="nan")[0])
        stamps = np.full(4, 1_700_000_000)
        timed = model.predict(users, items, times=stamps)
        assert timed.shape == (4,) and np.all(np.isfinite(timed))
        if not model.uses_time:  # time-agnostic models ignore the times
            np.testing.assert_array_equal(timed, pred)
        with pytest.raises(DataError, match="times"):
            model.predict(users, items, times=stamps[:3])
        with pytest.raises(DataError, match="timestamp"):
            model.predict(users, items, times=[1.0, np.nan, 2.0, 3.0])
    else:
        with pytest.raises(NotSupportedError):
            model.predict(users, items)
    try:
        sims = model.similar_items(items[:2], k=5)
    except NotSupportedError:
        return
    assert (sims.groupby("item").size() == 5).all()
    assert not (sims["item"] == sims["similar_item"]).any()


@pytest.fixture(scope="module")
def accuracy_data():
    """More users than the contract checks use, so a random ranker is told apart."""
    return taste_data(seed=0, n_users=400)


def random_hits_tail(hit_probability: np.ndarray, hits: int) -> float:
    """P(a random ranker gets >= ``hits`` hits): the Poisson-binomial tail over users."""
    dist = np.zeros(len(hit_probability) + 1)
    dist[0] = 1.0
    for p in hit_probability:
        dist[1:] = dist[1:] * (1 - p) + dist[:-1] * p
        dist[0] *= 1 - p
    return float(dist[hits:].sum())


def test_random_hits_tail_is_the_binomial_tail():
    from math import comb

    p, n = 0.1, 30
    expected = sum(comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(7, n + 1))
    assert random_hits_tail(np.full(n, p), 7) == pytest.approx(expected, rel=1e-12)


def test_accuracy_beats_a_random_ranker(fitted, accuracy_data):
    spec, _ = fitted
    train, held_out = accuracy_data
    model = rf.create(spec.name, **spec.params).fit(train)
    if spec.accuracy == "rating":
        _check_rating_accuracy(spec, model, train, held_out)
        return
    recs = model.recommend(list(held_out["user"]), k=K)
    hits = recs.merge(held_out[["user", "item"]], on=["user", "item"])["user"].nunique()
    candidates = train.n_items - model.train_matrix_.getnnz(axis=1)
    p_value = random_hits_tail(np.minimum(1.0, K / candidates), hits)
    assert p_value < 1e-3, f"{spec.id}: {hits} hits; a random ranker does as well " \
                           f"with probability {p_value:.2g}"
    hit_rate = hits / len(held_out)
    assert hit_rate >= spec.hit_rate_floor, f"{spec.id}: hit rate {hit_rate:.3f}"


def _check_rating_accuracy(spec, model, train, held_out) -> None:
    """Held-out RMSE below every one of 1,000 random predictors (uniform over the rating
    range): a random predictor does as well with probability below 1e-3. (On this data
    ratings depend on the user-item group match alone, which no bias model captures, so
    the global mean is as good a predictor as a bias model here.)"""
    truth = held_out["rating"].to_numpy(np.float64)
    predicted = model.predict(held_out["user"], held_out["item"], unknown="nan")
    ok = np.isfinite(predicted)
    assert ok.mean() > 0.9
    rmse = float(np.sqrt(np.mean((predicted[ok] - truth[ok]) ** 2)))
    values = train.interactions.values
    rng = np.random.default_rng(0)
    guesses = rng.uniform(values.min(), values.max(), size=(1000, int(ok.sum())))
    random_rmse = np.sqrt(((guesses - truth[ok]) ** 2).mean(axis=1))
    assert rmse < random_rmse.min(), \
        f"{spec.id}: RMSE {rmse:.3f}, best of 1,000 random predictors {random_rmse.min():.3f}"


def test_explanations_name_real_sources(fitted, data):
    _, model = fitted
    train = data[0]
    user = train.user_index.ids[0]
    item = model.recommend([user], k=1)["item"].iloc[0]
    try:
        why = model.explain(item, user=user, n=3)
    except NotSupportedError:
        return
    assert list(why.columns) == ["source", "id", "contribution"] and len(why) <= 3
    assert set(why["source"]) <= {"item", "user", "feature"}
    assert np.all(np.isfinite(why["contribution"]))
    if (why["source"] == "item").all():
        assert set(why["id"]) <= set(train.item_index.ids)
    new = model.explain(item, history={"visitor": list(train.item_index.ids[:4])}, n=2)
    assert len(new) <= 2
