"""mult_vae and recvae: learning, history scoring, determinism, KL annealing, alternating
updates, save/load and parameter validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import recoforge as rf  # noqa: E402
from recoforge.errors import ConfigError  # noqa: E402
from recoforge.models.neural import losses  # noqa: E402
from recoforge.models.neural.vae import (  # noqa: E402
    AlternatingBatches,
    HistoryBatches,
    MixedPrecisionLinear,
    MultVAEModule,
    RecVAEModule,
    SparseInput,
    bag_multinomial_nll,
    bags,
    dense_rows,
)
from tests.conformance.specs import taste_data  # noqa: E402

SMALL = {"hidden_dim": 64, "latent_dim": 16, "batch_size": 64, "learning_rate": 0.003,
         "seed": 0, "device": "cpu"}
PARAMS = {"mult_vae": {**SMALL, "epochs": 30, "total_anneal_steps": 200},
          "recvae": {**SMALL, "epochs": 10}}


@pytest.fixture(scope="module")
def taste():
    return taste_data(seed=0)


@pytest.fixture(scope="module", params=["mult_vae", "recvae"])
def fitted(request, taste):
    return rf.create(request.param, **PARAMS[request.param]).fit(taste[0])


def _hit_rate(model, held_out: pd.DataFrame) -> float:
    recs = model.recommend(list(held_out["user"]), k=10)
    return recs.merge(held_out[["user", "item"]], on=["user", "item"])["user"].nunique() \
        / len(held_out)


def test_learns_beyond_a_random_ranker(fitted, taste):
    # random ranking of ~128 unseen items hits the held-out item about 8% of the time
    assert _hit_rate(fitted, taste[1]) > 0.22
    assert fitted.loss_history_[-1] < fitted.loss_history_[0]
    assert len(fitted.loss_history_) == PARAMS[fitted.name]["epochs"]


def test_history_scores_equal_known_user_scores(fitted):
    stored = fitted.train_matrix_[[0, 5, 7]]
    np.testing.assert_array_equal(fitted.score(histories=stored),
                                  fitted.score(users=[0, 5, 7]))
    # a new event changes the scores; a new user needs nothing but the history
    user = fitted.user_index_.ids[0]
    seen = set(fitted.item_index_.ids[fitted.train_matrix_[0].indices])
    extra = next(i for i in fitted.item_index_.ids if i not in seen)
    before = fitted.recommend([user], k=10)
    after = fitted.recommend([user], k=10, history={user: [extra]})
    assert extra not in set(after["item"])
    assert not before["item"].equals(after["item"]) or \
        not np.allclose(before["score"], after["score"])
    anonymous = fitted.recommend(history={"newcomer": sorted(seen)}, k=10)
    assert list(anonymous["item"]) == list(before["item"])


def test_rating_values_are_read_as_binary_events(fitted):
    stored = fitted.train_matrix_[[1]]
    doubled = stored.copy()
    doubled.data = doubled.data * 2.0 + 1.0
    np.testing.assert_array_equal(fitted.score(histories=stored),
                                  fitted.score(histories=doubled))


def test_same_seed_same_parameters_other_seed_differs(fitted, taste):
    params = PARAMS[fitted.name]
    again = rf.create(fitted.name, **params).fit(taste[0])
    first, second = fitted.module.state_dict(), again.module.state_dict()
    assert set(first) == set(second)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = rf.create(fitted.name, **{**params, "seed": 1}).fit(taste[0])
    assert not np.allclose(other.score(users=[0]), fitted.score(users=[0]))


def _bags(dense: np.ndarray) -> dict[str, torch.Tensor]:
    return bags(sp.csr_matrix(dense.astype(np.float32)), torch.device("cpu"))


def test_kl_annealing_schedule():
    module = MultVAEModule(12, 8, 4, 0.5, anneal_cap=0.3, total_anneal_steps=10)
    rows = {"users": torch.arange(3), **_bags(np.random.default_rng(0).random((3, 12)) < 0.5)}
    betas = []
    for _ in range(6):
        betas.append(module.beta)
        module.calculate_loss(rows)
    np.testing.assert_allclose(betas, [0.0, 0.1, 0.2, 0.3, 0.3, 0.3])
    constant = MultVAEModule(12, 8, 4, 0.5, anneal_cap=0.3, total_anneal_steps=0)
    constant.calculate_loss(rows)
    assert constant.beta == 0.3


def test_kl_beta_reached_after_fit(taste):
    # 120 users in batches of 64: 2 steps per epoch, 5 epochs = 10 steps of 40
    model = rf.create("mult_vae", **{**SMALL, "epochs": 5, "total_anneal_steps": 40,
                                     "anneal_cap": 0.9}).fit(taste[0])
    assert model.kl_beta_ == pytest.approx(10 / 40)


def test_recvae_alternates_encoder_and_decoder_updates():
    torch.manual_seed(0)
    module = RecVAEModule(20, 8, 4, 0.5, gamma=0.005, beta=0.2,
                          prior_weights=(0.15, 0.75, 0.1))
    optimiser = torch.optim.Adam([p for p in module.parameters() if p.requires_grad],
                                 lr=0.01)
    rows = _bags(np.random.default_rng(0).random((6, 20)) < 0.4)

    def step(decoding: bool) -> dict[str, torch.Tensor]:
        before = {k: v.clone() for k, v in module.state_dict().items()}
        optimiser.zero_grad(set_to_none=True)
        module.calculate_loss({"users": torch.arange(6), **rows,
                               "decoder_phase": torch.tensor(decoding)}).backward()
        optimiser.step()
        return {k: not torch.equal(v, module.state_dict()[k]) for k, v in before.items()}

    changed = step(False)
    assert all(changed[k] for k in changed if k.startswith("encoder.layers"))
    assert not any(changed[k] for k in changed if k.startswith("decoder"))
    encoder_now = {k: v.clone() for k, v in module.encoder.state_dict().items()}
    changed = step(True)
    assert all(changed[k] for k in changed if k.startswith("decoder"))
    assert not any(changed[k] for k in changed if k.startswith("encoder"))
    # entering the decoder phase copied the encoder into the prior's old encoder
    old = module.old_encoder[0].state_dict()
    assert all(torch.equal(old[k], v) for k, v in encoder_now.items())
    assert not any(p.requires_grad for p in module.old_encoder[0].parameters())


def test_alternating_batches_tag_the_passes():
    matrix = (np.random.default_rng(0).random((10, 6)) < 0.5).astype(np.float32)
    users = HistoryBatches(sp.csr_matrix(matrix), 4, torch.Generator().manual_seed(0),
                        torch.device("cpu"))
    batches = list(AlternatingBatches(users, n_enc=3, n_dec=2))
    phases = [bool(b["decoder_phase"]) for b in batches]
    per_pass = len(users)
    assert len(batches) == 5 * per_pass == len(AlternatingBatches(users, 3, 2))
    assert phases == [False] * 3 * per_pass + [True] * 2 * per_pass


def test_save_load_round_trip(fitted, tmp_path: Path):
    fitted.save(tmp_path / "m", include_history=True)
    loaded = rf.load_model(tmp_path / "m")
    assert loaded.module_state_.module is None  # rebuilt lazily, on first use
    pd.testing.assert_frame_equal(loaded.recommend(k=5), fitted.recommend(k=5))
    history = {"v": list(fitted.item_index_.ids[[1, 2, 9]])}
    pd.testing.assert_frame_equal(loaded.recommend(history=history, k=5),
                                  fitted.recommend(history=history, k=5))
    state = fitted.module.state_dict()
    assert not any(k.startswith("old_encoder") for k in state)  # training-only copy
    for name, tensor in state.items():
        assert torch.equal(loaded.module.state_dict()[name], tensor)
    if fitted.name == "mult_vae":
        assert loaded.kl_beta_ == fitted.kl_beta_
    # saved without histories: still scores any history given with the request
    fitted.save(tmp_path / "bare")
    bare = rf.load_model(tmp_path / "bare")
    pd.testing.assert_frame_equal(bare.recommend(history=history, k=5),
                                  fitted.recommend(history=history, k=5))


@pytest.mark.parametrize("name,params", [
    ("mult_vae", {"hidden_dim": 0}), ("mult_vae", {"latent_dim": 0}),
    ("mult_vae", {"dropout": 1.0}), ("mult_vae", {"anneal_cap": -0.1}),
    ("mult_vae", {"total_anneal_steps": -1}), ("mult_vae", {"batch_size": 0}),
    ("recvae", {"gamma": -1.0}), ("recvae", {"n_enc_epochs": 0}),
    ("recvae", {"n_dec_epochs": 0}), ("recvae", {"prior_wide_weight": 0.5}),
    ("recvae", {"prior_standard_weight": 2.0}), ("recvae", {"dropout": -0.1}),
    ("recvae", {"noise_scale": -1.0}), ("mult_vae", {"noise_scale": float("nan")}),
    ("mult_vae", {"training_precision": "float16"}), ("recvae", {"training_precision": ""}),
])
def test_bad_parameters_are_config_errors(name, params):
    with pytest.raises(ConfigError):
        rf.create(name, **params)


def test_sparse_input_is_the_normalised_dense_layer():
    dense = (np.random.default_rng(1).random((5, 9)) < 0.4).astype(np.float32)
    dense[2] = 0.0  # an empty history
    layer = SparseInput(9, 4).eval()
    expected = torch.nn.functional.normalize(torch.as_tensor(dense), dim=-1) @ layer.weight
    got = layer(**_bags(dense))
    torch.testing.assert_close(got, expected + layer.bias)
    assert torch.equal(got[2], layer.bias.detach())


def test_history_batches_visit_each_active_user_once():
    matrix = (np.random.default_rng(2).random((11, 7)) < 0.3).astype(np.float32)
    matrix[4] = 0.0
    source = HistoryBatches(sp.csr_matrix(matrix), 3, torch.Generator().manual_seed(0),
                            torch.device("cpu"))
    for _ in range(2):
        batches = list(source)
        users = torch.cat([b["users"] for b in batches]).numpy()
        assert sorted(users) == [u for u in range(11) if matrix[u].any()]
        for batch in batches:
            rebuilt = np.zeros((len(batch["users"]), 7), np.float32)
            ends = list(batch["offsets"][1:].numpy()) + [len(batch["items"])]
            for row, (lo, hi) in enumerate(zip(batch["offsets"].numpy(), ends)):
                rebuilt[row, batch["items"][lo:hi].numpy()] = 1.0
            np.testing.assert_array_equal(rebuilt, matrix[batch["users"].numpy()] > 0)


def test_sparse_input_gradient_is_the_dense_layers():
    # d/dW of sum(G * (normalize(X) @ W + b)) = normalize(X)^T G, with and without the
    # batch's precomputed event rows and counts
    dense = (np.random.default_rng(3).random((6, 11)) < 0.35).astype(np.float32)
    dense[4] = 0.0
    layer = SparseInput(11, 5)
    upstream = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    batch = _bags(dense)
    for given in (batch, {"items": batch["items"], "offsets": batch["offsets"]}):
        layer.zero_grad(set_to_none=True)
        (layer(**given) * upstream).sum().backward()
        expected = torch.nn.functional.normalize(torch.as_tensor(dense), dim=-1).T @ upstream
        torch.testing.assert_close(layer.weight.grad, expected)
        torch.testing.assert_close(layer.bias.grad, upstream.sum(dim=0))


def test_bag_likelihood_equals_the_dense_multinomial_nll():
    rng = np.random.default_rng(4)
    dense = (rng.random((7, 30)) < 0.3).astype(np.float32)
    dense[0, :] = 0.0
    dense[0, 3] = 1.0  # a one-event row
    batch = _bags(dense)  # float32 counts against float64 logits
    logits = torch.as_tensor(rng.normal(size=(7, 30)) * 3.0, dtype=torch.float64)
    got_in = logits.clone().requires_grad_(True)
    want_in = logits.clone().requires_grad_(True)
    got = bag_multinomial_nll(got_in, batch)
    want = losses.multinomial_nll(want_in, dense_rows(batch, 30).double())
    torch.testing.assert_close(got, want)
    (2.5 * got).backward()
    (2.5 * want).backward()
    torch.testing.assert_close(got_in.grad, want_in.grad)
    assert torch.autograd.gradcheck(lambda x: bag_multinomial_nll(x, batch),
                                    (logits.clone().requires_grad_(True),))


def test_bfloat16_linear_trains_low_and_scores_in_float32():
    layer = MixedPrecisionLinear(16, 40, low_precision=True)
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    exact = x @ layer.weight.T + layer.bias
    rounded = x.bfloat16().float() @ layer.weight.bfloat16().float().T + layer.bias
    got = layer.train()(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, rounded, rtol=1e-2, atol=1e-2)
    assert not torch.equal(got, exact)
    torch.testing.assert_close(layer.eval()(x), exact)  # scoring is float32
    assert set(layer.state_dict()) == {"weight", "bias"}  # nn.Linear's layout


@pytest.mark.parametrize("name", ["mult_vae", "recvae"])
def test_bfloat16_training_is_reproducible_and_learns(name, taste):
    params = {**PARAMS[name], "training_precision": "bfloat16"}
    first = rf.create(name, **params).fit(taste[0])
    again = rf.create(name, **params).fit(taste[0])
    a, b = first.module.state_dict(), again.module.state_dict()
    assert all(a[k].dtype == torch.float32 and torch.equal(a[k], b[k]) for k in a)
    assert _hit_rate(first, taste[1]) > 0.22
    exact = rf.create(name, **PARAMS[name]).fit(taste[0])
    assert not np.array_equal(first.score(users=[0]), exact.score(users=[0]))
