"""training_precision of the MLP models (gmf, mlp, neumf, nfm, deepfm, wide_deep): bfloat16
products while training, float32 parameters, exact float32 scoring, same state layout."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.errors import ConfigError  # noqa: E402
from recoforge.models.neural._torch import MixedPrecisionLinear, product  # noqa: E402
from tests.conformance.specs import taste_data  # noqa: E402

MODELS = {"neumf": {"mf_embedding_dim": 8, "mlp_embedding_dim": 8, "mlp_layers": "32,16"},
          "mlp": {"embedding_dim": 8, "layers": "32,16"},
          "deepfm": {"embedding_dim": 8, "layers": "32,16", "n_negatives": 4},
          "nfm": {"embedding_dim": 8, "layers": "16", "n_negatives": 4},
          "wide_deep": {"embedding_dim": 8, "layers": "16,8", "dropout": 0.0,
                        "n_negatives": 4}}
COMMON = {"epochs": 6, "batch_size": 256, "learning_rate": 0.01, "seed": 0, "device": "cpu"}


@pytest.fixture(scope="module")
def train():
    return taste_data(seed=0, n_users=150)[0]


def test_product_rounds_only_when_asked():
    torch.manual_seed(0)
    x, w = torch.randn(64, 40), torch.randn(24, 40)
    exact = product(x, w, False)
    torch.testing.assert_close(exact, x @ w.T)
    low = product(x, w, True)
    assert low.dtype == torch.float32 and not torch.equal(low, exact)
    torch.testing.assert_close(low, exact, rtol=0.05, atol=0.1)  # bfloat16: ~3 digits
    layer = MixedPrecisionLinear(40, 24, low_precision=True)
    layer.train()
    trained_out = layer(x)
    layer.eval()
    torch.testing.assert_close(layer(x), x @ layer.weight.T + layer.bias, rtol=0, atol=0)
    assert not torch.equal(trained_out, layer(x))


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bfloat16_training_is_reproducible_and_keeps_the_state_layout(train, name):
    params = {**COMMON, **MODELS[name]}
    low = [rf.create(name, training_precision="bfloat16", **params).fit(train)
           for _ in range(2)]
    full = rf.create(name, **params).fit(train)
    states = [m.module.state_dict() for m in (*low, full)]
    assert list(states[0]) == list(states[2])  # same names, shapes and dtypes
    for key, value in states[0].items():
        assert value.dtype == states[2][key].dtype and value.shape == states[2][key].shape
        torch.testing.assert_close(value, states[1][key], rtol=0, atol=0)
    assert any(not torch.equal(states[0][k], states[2][k]) for k in states[0])
    scores = low[0].score(users=np.arange(5))
    assert np.isfinite(scores).all()
    assert low[0].loss_history_[-1] < low[0].loss_history_[0]
    # both precisions learn the same thing: per user, the same preferred item group
    groups = np.array([int(str(i)[1:]) % 4 for i in low[0].item_index_.ids])
    best = [[np.array([row[groups == g].mean() for g in range(4)]).argmax() for row in s]
            for s in (scores, full.score(users=np.arange(5)))]
    assert best[0] == best[1]


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="training_precision"):
        rf.create("neumf", training_precision="float16")
    with pytest.raises(ConfigError, match="training_precision"):
        rf.create("deepfm", training_precision="half")
