import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset, FeatureMatrix, IdIndex, Interactions, build_features
from recoforge.errors import ConfigError, DataError
from recoforge.models.content import block_weight_vector, feature_block

ITEMS = ["dune", "foundation", "emma", "persuasion", "neuromancer", "fresh-scifi"]
INFO = pd.DataFrame({
    "genre": ["scifi", "scifi", "romance", "romance", "scifi", "scifi"],
    "description": ["desert planet spice empire", "galactic empire psychohistory",
                    "matchmaking village romance", "naval officer romance",
                    "cyberspace hacker matrix", "desert empire hacker"],
}, index=ITEMS)


def make_dataset(rows, with_features=True, info=INFO):
    frame = pd.DataFrame(rows, columns=["user", "item", "rating"])
    inter = Interactions.from_frame(frame, rating_col="rating",
                                    item_index=IdIndex(ITEMS, name="item"))
    features = (build_features(info, inter.item_index, text=["description"],
                               categorical=["genre"]) if with_features else None)
    return Dataset(inter, item_features=features)


@pytest.fixture()
def books():
    return make_dataset([("ann", "dune", 5.0), ("ann", "emma", 1.0),
                         ("bob", "emma", 5.0), ("bob", "persuasion", 4.0),
                         ("cat", "foundation", 4.0)])


def unit_rows(dense):
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    norms[norms == 0] = 1
    return dense / norms


def test_scores_are_cosine_of_weighted_profile(books):
    model = rf.create("content").fit(books)
    x = unit_rows(books.item_features.matrix.toarray())
    profile = (5 * x[0] + 1 * x[2]) / 6.0  # ann: dune 5, emma 1
    expected = x @ profile / np.linalg.norm(profile)
    np.testing.assert_allclose(model.score(users=np.array([0]))[0], expected, rtol=1e-5)


def test_centred_weights_push_away_from_disliked_items(books):
    raw = rf.create("content", weighting="raw").fit(books)
    centred = rf.create("content", weighting="centred").fit(books)
    persuasion = books.item_index.to_index(["persuasion"])[0]
    # ann liked dune and disliked emma: centring makes the romance features negative
    assert raw.score(users=np.array([0]))[0, persuasion] > 0
    assert centred.score(users=np.array([0]))[0, persuasion] < 0
    recs = centred.recommend(["ann"], k=2)["item"].tolist()
    assert "persuasion" not in recs and recs[0] == "fresh-scifi"


def test_centred_with_equal_ratings_falls_back_to_binary(books):
    centred = rf.create("content", weighting="centred").fit(books)
    binary = rf.create("content", weighting="binary").fit(books)
    history = {"new": {"dune": 3.0, "emma": 3.0}}
    a = centred.recommend(history=history, k=4)
    b = binary.recommend(history=history, k=4)
    assert a["item"].tolist() == b["item"].tolist()
    assert (a["score"] != 0).all()


def test_brand_new_item_with_features_is_recommended(books):
    model = rf.create("content", weighting="binary").fit(books)
    assert model.train_matrix_[:, ITEMS.index("fresh-scifi")].nnz == 0
    recs = model.recommend(history=["dune"], k=1)
    assert recs["item"].tolist() == ["fresh-scifi"]  # shares genre, "desert", "empire"


def test_similar_items_by_feature_cosine(books):
    model = rf.create("content").fit(books)
    sims = model.similar_items(["dune"], k=3)
    assert sims["similar_item"].tolist()[0] == "fresh-scifi"
    assert set(sims["similar_item"]) <= {"fresh-scifi", "foundation", "neuromancer"}
    assert np.all(np.diff(sims["score"].to_numpy()) <= 0)


def test_explain_names_features_that_sum_to_score(books):
    model = rf.create("content", weighting="binary").fit(books)
    why = model.explain("fresh-scifi", history=["dune", "neuromancer"], n=50)
    assert why["source"].eq("feature").all()
    assert why["id"].iloc[0] == "genre=scifi"
    assert {"description:desert", "description:hacker"} <= set(why["id"])
    score = model.recommend(history=["dune", "neuromancer"], k=6)
    fresh = score.loc[score["item"] == "fresh-scifi", "score"].iloc[0]
    assert why["contribution"].sum() == pytest.approx(fresh, rel=1e-5)


def test_block_weights_change_the_mix(books):
    only_genre = rf.create("content", block_weights={"description": 0.0}).fit(books)
    scores = only_genre.score(histories=only_genre.train_matrix_[[2]])  # cat: foundation
    scifi = [ITEMS.index(i) for i in ("dune", "neuromancer", "fresh-scifi")]
    np.testing.assert_allclose(scores[0, scifi], 1.0, rtol=1e-6)  # genre alone: all equal
    names = np.array(["genre=scifi", "genre=romance", "num:price", "num:year"])
    weights = block_weight_vector(names, {"num": 2.0, "num:year": 0.5, "genre": 3.0})
    assert weights.tolist() == [3.0, 3.0, 2.0, 0.5]
    assert feature_block("description:desert") == "description"
    with pytest.raises(ConfigError, match="matches no feature block"):
        rf.create("content", block_weights={"plot": 1.0}).fit(books)
    for bad in ({"genre": -1.0}, {"genre": float("nan")}, {"genre": "heavy"}, {3: 1.0}):
        with pytest.raises(ConfigError, match="block_weights"):
            rf.create("content", block_weights=bad)


def test_needs_item_features(books):
    bare = make_dataset([("ann", "dune", 5.0)], with_features=False)
    with pytest.raises(DataError, match="item features"):
        rf.create("content").fit(bare)
    with pytest.raises(ConfigError):
        rf.create("content", weighting="median")


def test_non_finite_features_are_rejected(books):
    matrix = books.item_features.matrix.copy()
    matrix.data[0] = np.nan
    bad = Dataset(books.interactions,
                  item_features=FeatureMatrix(matrix, books.item_features.names))
    with pytest.raises(DataError, match="dune"):
        rf.create("content").fit(bad)


def test_items_without_feature_rows_score_zero():
    info = INFO.drop(index="emma")
    ds = make_dataset([("ann", "dune", 5.0)], info=info)
    model = rf.create("content").fit(ds)
    assert model.items_without_features_ == 1
    assert model.score(users=np.array([0]))[0, ITEMS.index("emma")] == 0.0


def test_scoring_in_chunks_matches(books, monkeypatch):
    import recoforge.models.content as content

    model = rf.create("content").fit(books)
    whole = model.score(histories=sp.csr_matrix(model.train_matrix_))
    monkeypatch.setattr(content, "PROFILE_BLOCK_BYTES", 1)
    np.testing.assert_allclose(model.score(histories=model.train_matrix_), whole, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.datasets
def test_genres_and_titles_on_movielens_100k(ml100k):
    from recoforge.data.split import holdout_per_user
    from recoforge.evaluation import evaluate

    data = ml100k
    features = build_features(data.item_info, data.item_index, text=["title"],
                              multilabel={"genres": r"\|"})
    data = Dataset(data.interactions, item_features=features)
    split = holdout_per_user(data, 0.2, seed=0)
    model = rf.create("content").fit(split.train)
    result = evaluate(model, split, k=[10], metrics=["ndcg"]).summary["ndcg@10"]
    # pure content ignores popularity and is weak on MovieLens (0.044 when written,
    # popularity 0.224), but clearly better than a random ranking (about 0.01)
    assert result > 0.03
    sims = model.similar_items([1], k=5)  # Toy Story: animation / children's / comedy
    assert len(sims) == 5 and (sims["score"] > 0.5).all()
