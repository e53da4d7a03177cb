"""The content model with a fitted FeatureEncoder: new items scored from raw attributes."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import recoforge as rf
from recoforge.data import Dataset, FeatureMatrix, IdIndex, Interactions, build_features
from recoforge.data.encoders import NumericField
from recoforge.errors import ConfigError, NotSupportedError

ITEMS = ["dune", "foundation", "emma", "persuasion", "neuromancer"]
INFO = pd.DataFrame({
    "genre": ["scifi", "scifi", "romance", "romance", "scifi"],
    "description": ["desert planet spice empire", "galactic empire psychohistory",
                    "matchmaking village romance", "naval officer romance",
                    "cyberspace hacker matrix"],
    "pages": [600.0, 250.0, 480.0, 260.0, 270.0],
}, index=ITEMS)
RATINGS = [("ann", "dune", 5.0), ("ann", "emma", 1.0), ("bob", "emma", 5.0),
           ("bob", "persuasion", 4.0), ("cat", "foundation", 4.0)]


@pytest.fixture()
def books():
    frame = pd.DataFrame(RATINGS, columns=["user", "item", "rating"])
    inter = Interactions.from_frame(frame, rating_col="rating",
                                    item_index=IdIndex(ITEMS, name="item"))
    features = build_features(INFO, inter.item_index, text=["description"],
                              categorical=["genre"], numeric=["pages"])
    return Dataset(inter, item_features=features)


def test_model_keeps_the_encoder_and_training_rows_reencode_exactly(books):
    model = rf.create("content", block_weights={"genre": 2.0, "pages": 0.5}).fit(books)
    assert model.item_encoder_ is books.item_features.encoder
    encoded = model.encode_items(INFO)
    np.testing.assert_array_equal(encoded.toarray(), model.item_matrix_.toarray())
    pages = model.item_encoder_.field("pages").start
    assert model.feature_weights_[pages] == 0.5  # a field name (not a "num" block) works


def test_new_item_scores_like_a_catalogue_item(books):
    model = rf.create("content", weighting="binary").fit(books)
    ann = sp.csr_matrix(([1.0, 1.0], ([0, 0], [0, 4])), shape=(1, len(ITEMS)))  # dune, neuro
    new = pd.DataFrame({"genre": ["scifi", "western"], "pages": [300.0, 200.0],
                        "description": ["desert hacker empire", "cowboys and horses"]})
    scores = model.score_new_items(new, ann)
    assert scores.shape == (1, 2)
    # the same attributes as a catalogue item give that item's score
    same = model.score_new_items(INFO.loc[["foundation"]], ann)[0, 0]
    catalogue = model.score(histories=ann)[0, ITEMS.index("foundation")]
    assert same == pytest.approx(catalogue, rel=1e-5)
    assert scores[0, 0] > 0.5 > scores[0, 1]  # unseen genre and words: only "pages" left


def test_new_items_need_an_encoder(books):
    bare = FeatureMatrix(books.item_features.matrix, books.item_features.names)
    model = rf.create("content").fit(Dataset(books.interactions, item_features=bare))
    assert model.item_encoder_ is None
    with pytest.raises(NotSupportedError, match="FeatureEncoder"):
        model.encode_items(INFO)
    with pytest.raises(ConfigError, match="matches no feature block"):
        rf.create("content", block_weights={"pages": 1.0}).fit(
            Dataset(books.interactions, item_features=bare))


def test_encoder_parts_of_a_fitted_model_round_trip(books):
    from recoforge.data.features import FeatureEncoder

    model = rf.create("content").fit(books)
    parts = model.item_encoder_.to_parts()
    again = FeatureEncoder.from_parts(*parts)
    np.testing.assert_array_equal(again.transform(INFO).toarray(),
                                  books.item_features.matrix.toarray())
    assert isinstance(again.fields[2], NumericField)


def test_save_and_load_keep_the_encoder(books, tmp_path):
    model = rf.create("content", block_weights={"pages": 0.5}).fit(books)
    model.save(tmp_path / "content")
    loaded = rf.load_model(tmp_path / "content")
    new = pd.DataFrame({"genre": ["scifi"], "pages": [300.0], "description": ["desert"]})
    assert (loaded.encode_items(new) != model.encode_items(new)).nnz == 0
    assert (loaded.encode_items(INFO) != model.item_matrix_).nnz == 0
    assert loaded.item_encoder_.field_slices() == model.item_encoder_.field_slices()


def test_tampered_encoder_in_a_model_directory_is_refused(books, tmp_path):
    import json

    from recoforge.artifacts.model_dir import manifest_checksum
    from recoforge.errors import ArtifactError

    rf.create("content").fit(books).save(tmp_path / "content")
    path = tmp_path / "content" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["parts"]["item_encoder_"]["meta"]["fields"][2]["state"]["scale"] = -1.0
    manifest["manifest_sha256"] = manifest_checksum(manifest)  # a consistent forgery
    path.write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="scale"):
        rf.load_model(tmp_path / "content")
