import copy
import io
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from recoforge.data import IdIndex, build_features
from recoforge.data.encoders import CategoricalField, MultiLabelField, NumericField, TextField
from recoforge.data.features import FeatureEncoder
from recoforge.data.hashing import HashedField, fnv1a_64, fnv1a_64_many
from recoforge.errors import ArtifactError, ConfigError, DataError, NotFittedError


@pytest.fixture()
def items():
    return pd.DataFrame({
        "description": ["an e-reader for books", "a laptop computer", "brown leather shoes",
                        "leather laptop bag"],
        "genres": ["Electronics, Tablet", "Electronics|Laptop", "Fashion; Shoes",
                   ["Fashion", "Bags"]],
        "brand": ["Amazon", "Apple", None, "Apple"],
        "price": [99.0, 1999.0, 120.0, 80.0],
        "seller": ["s1", "s2", "s3", "s1"],
    }, index=pd.Index(["k", "m", "s", "b"], name="item"))


def all_fields():
    return [TextField("description"), MultiLabelField("genres"), CategoricalField("brand"),
            NumericField("price"), HashedField("seller", n_buckets=32)]


def dense(matrix):
    return matrix.toarray()


# ----------------------------------------------------------------------------- structure
def test_fields_are_typed_slices(items):
    enc = FeatureEncoder(all_fields()).fit(items)
    slices = enc.field_slices()
    assert [s.kind for s in slices] == ["text", "multilabel", "categorical", "numeric",
                                        "hashed"]
    assert slices[0].start == 0 and slices[-1].stop == enc.n_features
    for before, after in zip(slices, slices[1:]):
        assert before.stop == after.start and before.width > 0
    assert enc.field("price").columns == ("price",) and enc.field("price").width == 1
    assert enc.field("seller").width == 32
    fields_of = enc.column_fields()
    assert fields_of.tolist() == [i for i, s in enumerate(slices) for _ in range(s.width)]
    names = enc.feature_names()
    assert len(names) == enc.n_features
    assert names[enc.field("price").start] == "num:price"
    assert names[enc.field("brand").slice].tolist() == ["brand=Amazon", "brand=Apple"]
    out = enc.transform(items)
    assert out.shape == (4, enc.n_features) and out.dtype == np.float32
    with pytest.raises(ConfigError, match="no feature field"):
        enc.field("colour")


def test_fit_transform_equals_fit_then_transform(items):
    a = FeatureEncoder(all_fields()).fit_transform(items)
    b = FeatureEncoder(all_fields()).fit(items).transform(items)
    assert (a != b).nnz == 0 and a.nnz > 0


def test_encoder_copies_its_fields(items):
    fields = all_fields()
    FeatureEncoder(fields).fit(items)
    assert not fields[0].fitted  # the caller's field objects are untouched


def test_bad_configuration():
    with pytest.raises(ConfigError, match="at least one field"):
        FeatureEncoder([])
    with pytest.raises(ConfigError, match="distinct"):
        FeatureEncoder([TextField("a"), CategoricalField("b", name="a")])
    with pytest.raises(ConfigError, match="field encoders"):
        FeatureEncoder(["title"])
    with pytest.raises(ConfigError, match="unknown"):
        CategoricalField("brand", unknown="guess")
    with pytest.raises(ConfigError, match="missing"):
        NumericField("price", missing="median")
    with pytest.raises(ConfigError, match="one column"):
        NumericField(["price", "cost"])
    with pytest.raises(ConfigError, match="n_buckets"):
        HashedField("seller", n_buckets=0)
    with pytest.raises(ConfigError, match="regex"):
        MultiLabelField("genres", separator="[")
    with pytest.raises(NotFittedError):
        FeatureEncoder([TextField("a")]).transform(pd.DataFrame({"a": ["x"]}))


def test_bad_frames(items):
    enc = FeatureEncoder(all_fields())
    with pytest.raises(DataError, match="'price'.*not in table"):
        enc.fit(items.drop(columns="price"))
    with pytest.raises(DataError, match="empty table"):
        enc.fit(items.iloc[:0])
    with pytest.raises(DataError, match="DataFrame"):
        enc.fit(items.to_numpy())
    with pytest.raises(DataError, match=r"\['price'\] appear more than once"):
        enc.fit(pd.concat([items, items[["price"]]], axis=1))
    enc.fit(items)
    assert enc.transform(items.iloc[:0]).shape == (0, enc.n_features)
    with pytest.raises(DataError, match="'seller'.*not in table"):
        enc.transform(items.drop(columns="seller"))


# ----------------------------------------------------------------------------- text
def test_tfidf_matches_scikit_learn_and_uses_training_idf(items):
    from sklearn.feature_extraction.text import TfidfVectorizer

    enc = FeatureEncoder([TextField("description")]).fit(items)
    reference = TfidfVectorizer(stop_words="english")
    expected = reference.fit_transform(items["description"]).toarray()
    assert enc.feature_names().tolist() == [f"description:{t}" for t in
                                            reference.get_feature_names_out()]
    np.testing.assert_allclose(dense(enc.transform(items)), expected, rtol=1e-6)
    new = pd.DataFrame({"description": ["Leather SHOES and a spaceship", "spaceship", None]})
    got = dense(enc.transform(new))
    np.testing.assert_allclose(got, reference.transform(new["description"].fillna("")
                                                        ).toarray(), rtol=1e-6)
    assert got[0].nonzero()[0].size == 2  # "leather", "shoes"; the unseen word is ignored
    assert got[1].sum() == 0 and got[2].sum() == 0


def test_count_text_and_vocabulary_limits(items):
    enc = FeatureEncoder([TextField("description", method="count", min_df=2)]).fit(items)
    assert enc.feature_names().tolist() == ["description:laptop", "description:leather"]
    got = dense(enc.transform(pd.DataFrame({"description": ["leather leather laptop"]})))
    assert got.tolist() == [[1.0, 2.0]]


def test_text_must_be_strings(items):
    enc = FeatureEncoder([TextField("description")])
    with pytest.raises(DataError, match=r"column 'description' row 'm' holds 42"):
        enc.fit(items.assign(description=["books", 42, "shoes", "bag"]))
    with pytest.raises(DataError, match="text column"):
        enc.fit(items.assign(description=["the", "a", "an", None]))


# ----------------------------------------------------------------------------- categories
def test_unknown_category_policy(items):
    new = pd.DataFrame({"brand": ["Apple", "Nokia", None]}, index=["x", "y", "z"])
    ignore = FeatureEncoder([CategoricalField("brand")]).fit(items)
    assert dense(ignore.transform(new)).tolist() == [[0, 1], [0, 0], [0, 0]]
    strict = FeatureEncoder([CategoricalField("brand", unknown="error")]).fit(items)
    with pytest.raises(DataError, match=r"row 'y' has category 'Nokia' not seen"):
        strict.transform(new)
    assert dense(strict.transform(new.iloc[[0, 2]])).tolist() == [[0, 1], [0, 0]]


def test_integral_floats_match_integer_categories():
    train = pd.DataFrame({"year": [1995.0, np.nan, 2001.0]})  # float because of the gap
    enc = FeatureEncoder([CategoricalField("year", unknown="error")]).fit(train)
    assert enc.feature_names().tolist() == ["year=1995", "year=2001"]
    assert dense(enc.transform(pd.DataFrame({"year": [2001]}))).tolist() == [[0, 1]]


def test_multilabel_separators_lists_and_policy(items):
    enc = FeatureEncoder([MultiLabelField("genres")]).fit(items)
    names = [n.split(":", 1)[1] for n in enc.feature_names()]
    assert names == ["bags", "electronics", "fashion", "laptop", "shoes", "tablet"]
    new = pd.DataFrame({"genres": ["Laptop | Gaming", ["SHOES"], None]})
    got = dense(enc.transform(new))
    assert got[0].tolist() == [0, 0, 0, 1, 0, 0]
    assert got[1].tolist() == [0, 0, 0, 0, 1, 0] and got[2].sum() == 0
    strict = FeatureEncoder([MultiLabelField("genres", unknown="error")]).fit(items)
    with pytest.raises(DataError, match="label 'gaming' not seen"):
        strict.transform(new)
    with pytest.raises(DataError, match="string or a list"):
        enc.transform(pd.DataFrame({"genres": [3.5]}))


# ----------------------------------------------------------------------------- numbers
def test_scaling_uses_training_statistics(items):
    prices = items["price"].to_numpy()
    std = FeatureEncoder([NumericField("price")]).fit(items)
    new = pd.DataFrame({"price": [1000.0, 99.0]})
    expected = (new["price"].to_numpy() - prices.mean()) / prices.std()
    np.testing.assert_allclose(dense(std.transform(new))[:, 0], expected, rtol=1e-6)
    minmax = FeatureEncoder([NumericField("price", scaling="minmax")]).fit(items)
    got = dense(minmax.transform(pd.DataFrame({"price": [80.0, 3918.0]})))[:, 0]
    np.testing.assert_allclose(got, [0.0, 2.0], rtol=1e-6)  # new rows may leave [0, 1]
    constant = FeatureEncoder([NumericField("c")]).fit(pd.DataFrame({"c": [5.0, 5.0]}))
    assert dense(constant.transform(pd.DataFrame({"c": [7.0]}))).tolist() == [[2.0]]


def test_missing_numbers_policy(items):
    gap = items.assign(price=[1.0, np.nan, 3.0, None])
    with pytest.raises(DataError, match="row 'm' is missing.*numeric_missing"):
        FeatureEncoder([NumericField("price")]).fit(gap)
    mean = FeatureEncoder([NumericField("price", scaling="none", missing="mean")]).fit(gap)
    assert dense(mean.transform(gap))[:, 0].tolist() == [1.0, 2.0, 3.0, 2.0]
    later = mean.transform(pd.DataFrame({"price": [np.nan]}))  # the training mean, not 0
    assert dense(later).tolist() == [[2.0]]
    zero = FeatureEncoder([NumericField("price", scaling="none", missing="zero")]).fit(gap)
    assert dense(zero.transform(gap))[:, 0].tolist() == [1.0, 0.0, 3.0, 0.0]


def test_non_finite_and_non_numeric_values_are_rejected(items):
    enc = FeatureEncoder([NumericField("price", missing="mean")])
    with pytest.raises(DataError, match=r"column 'price' row 's' holds inf"):
        enc.fit(items.assign(price=[1.0, 2.0, np.inf, 3.0]))
    with pytest.raises(DataError, match=r"row 'k' holds 'cheap'"):
        enc.fit(items.assign(price=["cheap", 2.0, 1.0, 3.0]))
    enc.fit(items)
    with pytest.raises(DataError, match="row 1 holds -inf"):
        enc.transform(pd.DataFrame({"price": [1.0, -np.inf]}))
    with pytest.raises(DataError, match="no values"):
        FeatureEncoder([NumericField("p", missing="mean")]).fit(pd.DataFrame({"p": [None]}))


# ----------------------------------------------------------------------------- hashing
def test_fnv1a_reference_vectors():
    # published FNV-1a 64 test vectors (Fowler-Noll-Vo reference / Go hash/fnv tests)
    assert fnv1a_64(b"") == 0xCBF29CE484222325
    assert fnv1a_64(b"a") == 0xAF63DC4C8601EC8C
    assert fnv1a_64(b"foobar") == 0x85944171F73967E8
    assert fnv1a_64_many(["a", "foobar", "", "hello"]).tolist() == [
        0xAF63DC4C8601EC8C, 0x85944171F73967E8, 0xCBF29CE484222325, 0xA430D84680AABD0B]


def test_vectorised_hash_equals_scalar_hash():
    rng = np.random.default_rng(0)
    keys = ["", "é", "ü-ß-日本", "x" * 300, "y" * 256, "z" * 257]
    keys += ["".join(rng.choice(list("abc012_-é"), size=rng.integers(1, 40)))
             for _ in range(200)]
    got = fnv1a_64_many(keys)
    assert got.tolist() == [fnv1a_64(k.encode("utf-8")) for k in keys]


def test_hashed_buckets_are_fnv_modulo_buckets():
    enc = FeatureEncoder([HashedField("seller", n_buckets=1000)])
    out = dense(enc.fit_transform(pd.DataFrame({"seller": ["a", "foobar", None, "a"]})))
    assert out[0].nonzero()[0].tolist() == [0xAF63DC4C8601EC8C % 1000]  # = 260
    assert out[1].nonzero()[0].tolist() == [0x85944171F73967E8 % 1000]
    assert out[2].sum() == 0 and (out[3] == out[0]).all()
    assert enc.feature_names()[260] == "seller#260"
    # unseen values are encoded too (nothing is learned)
    assert dense(enc.transform(pd.DataFrame({"seller": ["hello"]})))[0].nonzero()[0].tolist() \
        == [0xA430D84680AABD0B % 1000]


def test_hashed_several_columns_key_by_column():
    enc = FeatureEncoder([HashedField(["buyer", "seller"], name="parties", n_buckets=1 << 20)])
    out = enc.fit_transform(pd.DataFrame({"buyer": ["a"], "seller": [7]}))
    expected = sorted([fnv1a_64(b"buyer=a") % (1 << 20), fnv1a_64(b"seller=7") % (1 << 20)])
    assert out.indices.tolist() == expected and out.data.tolist() == [1.0, 1.0]


def test_hashing_is_stable_across_processes():
    code = ("import pandas as pd; from recoforge.data.hashing import HashedField;"
            "f = HashedField('s', n_buckets=997);"
            "print(f.transform(pd.DataFrame({'s': ['item-1', 'é', 'foobar']})).indices.tolist())")
    outputs = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env=env, check=True)
        outputs.add(run.stdout.strip())
    assert len(outputs) == 1
    assert outputs.pop() == str([fnv1a_64(k.encode()) % 997 for k in ("item-1", "é", "foobar")])


# ----------------------------------------------------------------------------- persistence
def through_npz(arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as loaded:
        return {k: loaded[k] for k in loaded.files}


def test_parts_round_trip(items):
    enc = FeatureEncoder(all_fields() + [
        TextField("description", name="words", method="count"),
        NumericField("price", name="price01", scaling="minmax", missing="zero"),
        CategoricalField("brand", name="brand_strict", unknown="error")]).fit(items)
    meta, arrays, blobs = enc.to_parts()
    assert blobs == {}
    meta = json.loads(json.dumps(meta))  # JSON-able
    back = FeatureEncoder.from_parts(meta, through_npz(arrays), blobs)
    assert back.field_slices() == enc.field_slices()
    assert back.feature_names().tolist() == enc.feature_names().tolist()
    new = pd.DataFrame({"description": ["leather bag"], "genres": ["Bags"], "brand": ["Apple"],
                        "price": [np.nan], "seller": ["s9"]})
    with pytest.raises(DataError, match="missing"):
        back.transform(new)  # "price" keeps missing="error"
    new["price"] = 150.0
    assert (back.transform(new) != enc.transform(new)).nnz == 0
    assert (back.transform(items) != enc.transform(items)).nnz == 0
    assert back.fields[-1].unknown == "error"


def tampered(enc, change):
    meta, arrays, blobs = enc.to_parts()
    meta, arrays = copy.deepcopy(meta), dict(arrays)
    change(meta, arrays, blobs)
    return meta, arrays, blobs


@pytest.mark.parametrize(("change", "message"), [
    (lambda m, a, b: m.update(format="pickle"), "not a saved feature encoder"),
    (lambda m, a, b: m.update(version=99), "version 99"),
    (lambda m, a, b: m["fields"][1].update(kind="embedding"), "unknown kind 'embedding'"),
    (lambda m, a, b: m["fields"][1].update(start=1), "does not match"),
    (lambda m, a, b: m["fields"][3].update(stop=m["fields"][3]["stop"] + 1), "does not match"),
    (lambda m, a, b: m.update(n_features=m["n_features"] + 5), "n_features says"),
    (lambda m, a, b: a.update({"field0_terms": a["field0_terms"][:-1]}), "idf"),
    (lambda m, a, b: a.update({"field0_idf": a["field0_idf"] * np.nan}), "idf"),
    (lambda m, a, b: a.update({"field0_terms": a["field0_terms"][:-1],
                               "field0_idf": a["field0_idf"][:-1]}), "does not match"),
    (lambda m, a, b: a.update({"field2_categories": np.array(["Apple", "Apple"])}),
     "repeated"),
    (lambda m, a, b: a.update({"field2_categories": np.array([1, 2])}), "string array"),
    (lambda m, a, b: a.pop("field1_labels"), "labels"),
    (lambda m, a, b: a.update(extra=np.zeros(2)), "do not match its fields"),
    (lambda m, a, b: m["fields"][3]["state"].update(scale=float("nan")), "scale"),
    (lambda m, a, b: m["fields"][3]["state"].update(scale=0.0), "positive"),
    (lambda m, a, b: m["fields"][3]["state"].update(center="1"), "centre"),
    (lambda m, a, b: m["fields"][3]["options"].update(scaling="log"), "scaling"),
    (lambda m, a, b: m["fields"][4]["options"].update(n_buckets=-3), "n_buckets"),
    (lambda m, a, b: m["fields"][4]["options"].update(salt=1), "salt"),
    (lambda m, a, b: m["fields"][2].update(columns=["brand", "maker"]), "one column"),
    (lambda m, a, b: m["fields"][2].update(name=m["fields"][1]["name"]), "distinct"),
    (lambda m, a, b: m["fields"][0].pop("state"), "exactly"),
    (lambda m, a, b: b.update(index=b"\x00"), "blobs"),
])
def test_tampered_parts_are_refused(items, change, message):
    enc = FeatureEncoder(all_fields()).fit(items)
    with pytest.raises(ArtifactError, match=message):
        FeatureEncoder.from_parts(*tampered(enc, change))


# ----------------------------------------------------------------------------- build_features
def test_build_features_keeps_its_encoder(items):
    index = IdIndex(["s", "k", "ghost", "m", "b"], name="item")
    feats = build_features(items, index, text=["description"], multilabel=["genres"],
                           categorical=["brand"], numeric=["price"], hashed=["seller"],
                           hash_buckets=64)
    enc = feats.encoder
    assert enc is not None and feats.names.tolist() == enc.feature_names().tolist()
    assert [s.kind for s in enc.field_slices()] == ["text", "multilabel", "categorical",
                                                    "numeric", "hashed"]
    # a training row re-encoded from its raw attributes equals its training feature row
    rows = enc.transform(items.loc[["s", "k", "m", "b"]])
    expected = feats.matrix[[0, 1, 3, 4]]
    np.testing.assert_array_equal(rows.toarray(), expected.toarray())
    assert feats.matrix[2].nnz == 0  # "ghost" has no attributes: zeros, not fitted on
    price = feats.matrix[[0, 1, 3, 4]].toarray()[:, enc.field("price").start]
    assert price.mean() == pytest.approx(0.0, abs=1e-6)


def test_build_features_with_explicit_fields(items):
    index = IdIndex(["k", "m", "s", "b"])
    feats = build_features(items, index, fields=[HashedField("seller", n_buckets=8),
                                                 NumericField("price", scaling="none")])
    assert feats.n_features == 9 and feats.encoder.field("price").start == 8
    assert feats.matrix[:, 8].toarray().ravel().tolist() == [99.0, 1999.0, 120.0, 80.0]
    with pytest.raises(ConfigError, match="not both"):
        build_features(items, index, fields=[NumericField("price")], numeric=["price"])
    with pytest.raises(ConfigError, match="build_features"):
        build_features(items, index, colours=["brand"])
    with pytest.raises(DataError, match="no row for any"):
        build_features(items, IdIndex(["x", "y"]), numeric=["price"])


def test_registered_as_an_artifact_part(items):
    from recoforge.artifacts import parts

    enc = FeatureEncoder(all_fields()).fit(items)
    assert parts.kind_of(enc) == "feature_encoder"
    meta, arrays, blobs = parts.encode("feature_encoder", enc, "item_encoder_")
    for key, array in arrays.items():  # keys and arrays the model directory accepts
        parts.check_key(key, "item_encoder_")
        parts.check_array(array, key)
    back = parts.decode("feature_encoder", json.loads(json.dumps(meta)), through_npz(arrays),
                        blobs, "item_encoder_")
    assert (back.transform(items) != enc.transform(items)).nnz == 0
    meta["fields"][0]["kind"] = "pickle"
    with pytest.raises(ArtifactError, match="unknown kind 'pickle'"):
        parts.decode("feature_encoder", meta, arrays, blobs, "item_encoder_")
