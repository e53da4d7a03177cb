import numpy as np
import pandas as pd
import pytest

from recoforge.data import FeatureMatrix, IdIndex, build_features
from recoforge.errors import DataError


@pytest.fixture()
def info():
    return pd.DataFrame({
        "title": ["Kindle", "Macbook", "Shoes"],
        "description": ["an e-reader for books", "a laptop computer", "brown leather shoes"],
        "genres": ["Electronics, Tablet", "Electronics|Laptop", "Fashion; Shoes"],
        "brand": ["Amazon", "Apple", None],
        "price": [99.0, 1999.0, 120.0],
    }, index=pd.Index(["k", "m", "s"], name="item"))


def test_blocks_and_names(info):
    index = IdIndex(["k", "m", "s", "new"], name="item")
    feats = build_features(info, index, text=["description"], multilabel=["genres"],
                           categorical=["brand"], numeric=["price"])
    names = feats.names.tolist()
    assert "description:books" in names and "description:an" not in names  # stop word
    assert {"genres:electronics", "genres:tablet", "genres:laptop", "genres:fashion",
            "genres:shoes"} <= set(names)
    assert {"brand=Amazon", "brand=Apple", "num:price"} <= set(names)
    dense = feats.matrix.toarray()
    col = {n: j for j, n in enumerate(names)}
    assert dense[0, col["genres:electronics"]] == 1 and dense[2, col["genres:electronics"]] == 0
    assert dense[3].sum() == 0  # id without a feature row is all zeros
    price = dense[:3, col["num:price"]]
    assert price.mean() == pytest.approx(0.0, abs=1e-6) and price.std() == pytest.approx(1, 1e-5)
    assert dense[2, col["brand=Amazon"]] == 0 and dense[2, col["brand=Apple"]] == 0


def test_count_text_and_minmax(info):
    feats = build_features(info, IdIndex(["k", "m", "s"]), text=["title"], numeric=["price"],
                           text_method="count", numeric_scaling="minmax")
    dense = feats.matrix.toarray()
    assert set(np.unique(dense[:, :-1])) <= {0.0, 1.0}
    assert dense[:, -1].min() == 0 and dense[:, -1].max() == pytest.approx(1.0)


def test_bad_input(info):
    index = IdIndex(["k", "m", "s"])
    with pytest.raises(DataError, match="not in table"):
        build_features(info, index, text=["nope"])
    with pytest.raises(DataError, match="at least one"):
        build_features(info, index)
    bad = info.assign(price=[1.0, np.nan, 2.0])
    with pytest.raises(DataError, match="numeric_missing"):
        build_features(bad, index, numeric=["price"])
    imputed = build_features(bad, index, numeric=["price"], numeric_scaling="none",
                             numeric_missing="mean")
    assert imputed.matrix.toarray()[1, 0] == pytest.approx(1.5)
    with pytest.raises(DataError, match="duplicate ids"):
        build_features(pd.concat([info, info]), index, text=["title"])
    with pytest.raises(DataError, match="text column"):
        build_features(info.assign(title=["the", "a", "an"]), index, text=["title"])


def test_feature_matrix_carries_its_encoder(info):
    index = IdIndex(["k", "m", "s"])
    feats = build_features(info, index, categorical=["brand"], numeric=["price"])
    assert feats.encoder is not None
    assert feats.take_rows(np.array([2, -1])).encoder is feats.encoder
    assert feats.hstack(feats).encoder is None  # two encoders side by side are not one
    with pytest.raises(DataError, match="encoder writes 3 features"):
        FeatureMatrix(feats.matrix[:, :2], feats.names[:2], feats.encoder)


def test_new_numeric_and_category_options(info):
    index = IdIndex(["k", "m", "s"])
    gap = info.assign(price=[1.0, np.nan, 2.0])
    zero = build_features(gap, index, numeric=["price"], numeric_scaling="none",
                          numeric_missing="zero")
    assert zero.matrix.toarray()[:, 0].tolist() == [1.0, 0.0, 2.0]
    strict = build_features(info, index, categorical=["brand"], unknown="error").encoder
    with pytest.raises(DataError, match="'Nokia' not seen"):
        strict.transform(pd.DataFrame({"brand": ["Nokia"]}))
    hashed = build_features(info, index, hashed=["brand"], hash_buckets=16)
    assert hashed.n_features == 16 and hashed.matrix[2].nnz == 0  # None: no bucket
