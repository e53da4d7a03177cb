"""The hybrid model: component specs, tuning on its own validation split, the four modes,
nested saving, and new items through components that take them."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data import Dataset
from recoforge.errors import ConfigError, DataError, NotSupportedError
from recoforge.models import _hybrid_parts as hp
from tests.conformance.specs import taste_data


@pytest.fixture(scope="module")
def taste():
    return taste_data(seed=0, n_users=200)


@pytest.fixture(scope="module")
def tuned(taste):
    return rf.create("hybrid", components="ease;content", seed=0).fit(taste[0])


def hit_rate(model, held: pd.DataFrame) -> float:
    recs = model.recommend(list(held["user"]), k=10)
    return recs.merge(held[["user", "item"]], on=["user", "item"])["user"].nunique() / len(held)


# ---------------------------------------------------------------------- component specs
def test_component_specs_parse_from_strings_and_lists():
    parsed = hp.parse_components("ease; item_knn(k=50, shrinkage=2.5) ;content(block_weights="
                                 "{\"genre\": 2.0})")
    assert parsed == [("ease", {}), ("item_knn", {"k": 50, "shrinkage": 2.5}),
                      ("content", {"block_weights": {"genre": 2.0}})]
    assert hp.parse_components(["ease", {"name": "item_knn", "params": {"k": 5}}]) == \
        [("ease", {}), ("item_knn", {"k": 5})]


@pytest.mark.parametrize("spec, message", [
    ("ease;no_such_model", "unknown model"),
    ("item_knn(k=0)", "k must be"),
    ("item_knn(k)", "key=value"),
    ("ease;hybrid", "cannot itself be a hybrid"),
    ([{"name": "ease", "extra": 1}], "a hybrid component is"),
    (";".join(["ease"] * 9), "1 to 8 components"),
])
def test_bad_component_specs_are_refused(spec, message):
    with pytest.raises(ConfigError, match=message):
        rf.create("hybrid", components=spec)


def test_mode_and_weight_checks():
    with pytest.raises(ConfigError, match="exactly 2 components"):
        rf.create("hybrid", components="ease;content;popularity", mode="switching")
    with pytest.raises(ConfigError, match="one per component"):
        rf.create("hybrid", components="ease;content", weights=[1.0])
    assert rf.create("hybrid", components="ease;content").get_component_params() == \
        [{"name": "ease", "params": {}}, {"name": "content", "params": {}}]


# ---------------------------------------------------------------------- tuning
def test_tuned_blend_is_at_least_its_best_component_on_validation(tuned):
    alone, blend = tuned.validation_scores_[:-1], tuned.validation_scores_[-1]
    assert len(alone) == 2 and blend >= alone.max() - 1e-12
    assert tuned.weights_.shape == (1, 2) and tuned.weights_.sum() == pytest.approx(1.0)
    assert (tuned.weights_ > 0).all()  # both components help on this data


def test_tuned_hybrid_beats_each_component_on_held_out_events(taste, tuned):
    train, held = taste
    best_single = max(hit_rate(rf.create(n).fit(train), held) for n in ("ease", "content"))
    assert hit_rate(tuned, held) > best_single


def test_validation_split_holds_out_part_of_sampled_users():
    matrix = taste_data(seed=1)[0].matrix()
    held, users = hp.validation_split(matrix, 0.25, 30, np.random.default_rng(0))
    assert len(users) == 30 and held.sum() > 30
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    per_user = np.bincount(rows[held], minlength=matrix.shape[0])
    assert set(np.flatnonzero(per_user)) == set(users)
    assert (per_user[users] < np.diff(matrix.indptr)[users]).all()  # never all events


def test_tuning_needs_users_with_two_events():
    frame = pd.DataFrame({"user": ["a", "b"], "item": ["x", "y"]})
    with pytest.raises(DataError, match="validation split"):
        rf.create("hybrid", components="popularity;item_knn", seed=0).fit(
            Dataset.from_frame(frame))


def test_stacking_and_segmented_weights(taste):
    train, held = taste
    stacked = rf.create("hybrid", components="ease;content", mode="stacking", seed=0,
                        segmented=True, threshold=10).fit(train)
    assert stacked.weights_.shape == (2, 2) and np.isfinite(stacked.weights_).all()
    assert hit_rate(stacked, held) > hit_rate(rf.create("content").fit(train), held)
    short = stacked.score(users=np.array([0]))  # a user with <= 10 events uses row 0
    assert np.isfinite(short).all()


def test_logistic_blend_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20_000, 2))
    p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 0.5 * x[:, 1] - 1.0)))
    w = hp.fit_logistic(x, rng.random(len(p)) < p, l2=0.0)
    np.testing.assert_allclose(w, [1.5, -0.5, -1.0], atol=0.08)


def test_ndcg_counts_relevant_items_outside_the_candidates():
    scores = np.array([[3.0, 2.0, 1.0]])
    labels = np.array([[False, True, False]])
    one = hp.ndcg_at(scores, labels, np.array([1]))
    two = hp.ndcg_at(scores, labels, np.array([2]))
    assert one[0] == pytest.approx(1 / np.log2(3)) and two[0] < one[0]


# ---------------------------------------------------------------------- other modes
def test_switching_by_history_length_answers_short_users_with_the_last_component(taste):
    train = taste[0]
    model = rf.create("hybrid", components="ease;content", mode="switching",
                      threshold=12).fit(train)
    ease, content = rf.create("ease").fit(train), rf.create("content").fit(train)
    lengths = np.diff(train.matrix().indptr)
    for user in (int(np.flatnonzero(lengths <= 12)[0]), int(np.flatnonzero(lengths > 12)[0])):
        uid = train.user_index.ids[user]
        expected = content if lengths[user] <= 12 else ease
        assert model.recommend([uid], k=10)["item"].tolist() == \
            expected.recommend([uid], k=10)["item"].tolist()


def test_switching_by_item_coldness_scores_cold_items_with_the_last_component(taste):
    train = taste[0]
    model = rf.create("hybrid", components="ease;content", mode="switching",
                      switch_on="items", threshold=3).fit(train)
    scores = model.score(users=np.arange(5))
    cold = model.item_counts_ <= 3
    assert cold.any() and (~cold).any()
    zs = hp.normalised_scores(model.components_, model.known_query(np.arange(5)), None,
                              model.reference_items_, "zscore", train.n_items)
    np.testing.assert_allclose(scores[:, cold], zs[1][:, cold], rtol=1e-5)
    np.testing.assert_allclose(scores[:, ~cold], zs[0][:, ~cold], rtol=1e-5)


def test_augmented_mode_appends_item_vectors_to_the_feature_model(taste):
    model = rf.create("hybrid", components="pure_svd(n_factors=6);content",
                      mode="augmented").fit(taste[0])
    names = model.components_[1].feature_names_
    assert [n for n in names if n.startswith("pure_svd:")] == [f"pure_svd:{j}"
                                                               for j in range(6)]
    np.testing.assert_allclose(model.score(users=np.arange(3)),
                               model.components_[1].score(users=np.arange(3)), rtol=1e-6)
    with pytest.raises(ConfigError, match="no item vectors"):
        rf.create("hybrid", components="ease;content", mode="augmented").fit(taste[0])


def test_fixed_weights_skip_tuning_and_explanations_add_up(taste):
    model = rf.create("hybrid", components="ease;content", weights=[0.3, 0.7]).fit(taste[0])
    assert not hasattr(model, "validation_scores_")
    user = taste[0].user_index.ids[2]
    item = model.recommend([user], k=1)["item"].iloc[0]
    why = model.explain(item, user=user)
    score = model.recommend([user], k=1)["score"].iloc[0]
    assert why["contribution"].sum() == pytest.approx(score, rel=1e-4)
    assert set(why["id"]) == {"component:0:ease", "component:1:content"}


def test_without_refit_the_validation_fits_serve(taste):
    model = rf.create("hybrid", components="ease;content", refit=False, seed=0).fit(taste[0])
    assert model.components_[0].train_matrix_.nnz == taste[0].matrix().nnz  # shared history
    assert len(model.recommend(k=5)) == 5 * taste[0].n_users


# ---------------------------------------------------------------------- persistence, items
def test_components_are_saved_as_nested_models(tuned, tmp_path):
    tuned.save(tmp_path / "h")
    manifest = json.loads((tmp_path / "h" / "manifest.json").read_text())
    assert manifest["parts"]["component_0_"] == {"kind": "model"}
    nested = json.loads((tmp_path / "h" / "component_1_" / "manifest.json").read_text())
    assert nested["model"] == "content" and "history" not in nested
    loaded = rf.load_model(tmp_path / "h", history=tuned.train_matrix_)
    np.testing.assert_allclose(loaded.score(users=np.arange(4)), tuned.score(users=np.arange(4)),
                               rtol=1e-5, atol=1e-5)


def _new_items() -> pd.DataFrame:
    groups = [0, 1, 2, 3]
    return pd.DataFrame({"group": [f"g{g}" for g in groups],
                         "description": [f"g{g}word0 g{g}word1 g{g}word2" for g in groups]},
                        index=[f"new_g{g}" for g in groups])


def test_new_items_are_scored_by_components_that_take_them(tuned, tmp_path):
    model = copy.deepcopy(tuned).add_items(_new_items())
    n_old = len(tuned.item_index_)
    assert len(model.item_index_) == n_old + 4 and len(model.components_[0].item_index_) == n_old
    scores = model.score(users=np.arange(len(model.user_index_)))
    assert np.isfinite(scores).all()
    groups = np.array([int(str(u)[1:]) % 4 for u in model.user_index_.ids])
    own = scores[np.arange(len(groups)), n_old + groups]
    assert (own >= scores[:, n_old:].max(axis=1)).mean() >= 0.6  # random: 0.25
    recs = model.recommend(model.user_index_.ids[:3], k=1, items=["new_g0", "new_g1"])
    assert set(recs["item"]) <= {"new_g0", "new_g1"}
    model.save(tmp_path / "added", include_history=True)
    loaded = rf.load_model(tmp_path / "added")
    np.testing.assert_allclose(loaded.score(users=np.arange(5)), scores[:5], rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(DataError, match="already in the catalogue"):
        model.add_items(_new_items().iloc[:1])


def test_add_items_needs_a_component_that_takes_them(taste):
    model = rf.create("hybrid", components="ease;item_knn", weights=[0.5, 0.5]).fit(taste[0])
    with pytest.raises(NotSupportedError, match="no component"):
        model.add_items(_new_items())


# ---------------------------------------------------------------------- cold items
def _shop(n_users: int = 60, seed: int = 0) -> Dataset:
    """Items tagged 'hit' attract most events; items 'c*' have no events at all."""
    from recoforge.data import IdIndex, Interactions, build_features

    rng = np.random.default_rng(seed)
    ids = [f"w{j}" for j in range(30)] + [f"c{j}" for j in range(10)]
    tags = ["hit" if j % 2 == 0 else "flop" for j in range(40)]
    info = pd.DataFrame({"tag": tags, "description": [f"{t} word{j % 5}" for j, t in
                                                      enumerate(tags)]}, index=ids)
    weight = np.array([6.0 if t == "hit" else 1.0 for t in tags[:30]])
    rows = [(f"u{u}", f"w{i}") for u in range(n_users)
            for i in rng.choice(30, size=8, replace=False, p=weight / weight.sum())]
    inter = Interactions.from_frame(pd.DataFrame(rows, columns=["user", "item"]),
                                    item_index=IdIndex(ids, name="item"))
    features = build_features(info, inter.item_index, categorical=["tag"],
                              text=["description"])
    return Dataset(inter, item_features=features)


def test_feature_popularity_predicts_appeal_of_items_without_events():
    shop = _shop()
    model = rf.create("feature_popularity").fit(shop)
    prior = model.score(users=np.arange(1))[0]
    cold = np.arange(30, 40)
    hits = cold[::2]  # c0, c2, ... are tagged "hit"
    assert prior[hits].min() > prior[np.setdiff1d(cold, hits)].max()
    counts = np.bincount(shop.interactions.items, minlength=40)
    exact = rf.create("feature_popularity", shrinkage=0.0).fit(shop).score(
        users=np.arange(1))[0]
    np.testing.assert_allclose(exact[:30], np.log1p(counts[:30]), rtol=1e-6)
    np.testing.assert_allclose(exact[30:], prior[30:], rtol=1e-6)  # no events: the prior
    new = pd.DataFrame({"tag": ["hit"], "description": ["hit word1"]}, index=["n0"])
    added = copy.deepcopy(model).add_items(new)
    assert added.score(users=np.arange(1))[0, -1] > prior[np.setdiff1d(cold, hits)].max()
    with pytest.raises(ConfigError, match="item features"):
        rf.create("feature_popularity").fit(Dataset(shop.interactions))


def test_cold_item_weights_rank_items_without_events(taste):
    train = _shop(n_users=120)
    model = rf.create("hybrid", components="ease;content;feature_popularity",
                      cold_items=True, cold_fraction=0.4, seed=0).fit(train)
    report = model.cold_validation_scores_
    assert report[-1] >= report[:-1].max() - 1e-12
    scores = model.score(users=np.arange(4))
    cold = np.flatnonzero(model.item_counts_ == 0)
    zs = hp.normalised_scores(model.components_, model.known_query(np.arange(4)), None,
                              model.reference_items_, "zscore", train.n_items)
    blend = sum(w * z for w, z in zip(model.cold_weights_, zs))[:, cold]
    # cold items keep the cold blend's order, on the warm blend's level (positive scale)
    np.testing.assert_array_equal(np.argsort(scores[:, cold], axis=1, kind="stable"),
                                  np.argsort(blend, axis=1, kind="stable"))
    warm = np.flatnonzero(model.item_counts_ > 0)
    np.testing.assert_allclose(scores[:, warm], sum(
        w * z for w, z in zip(model.weights_[0], zs))[:, warm], rtol=1e-5, atol=1e-6)
    user = train.user_index.ids[0]
    why = model.explain(train.item_index.ids[cold[0]], user=user)
    assert why["contribution"].sum() == pytest.approx(scores[0, cold[0]], rel=1e-4, abs=1e-5)
    hits, flops = cold[::2], cold[1::2]
    assert (scores[:, hits].mean(axis=1) > scores[:, flops].mean(axis=1)).all()
