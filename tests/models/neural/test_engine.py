"""The neural training engine: batches, samplers, losses, trainer, seeds, devices, errors."""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

from recoforge.errors import ConfigError, MissingDependencyError  # noqa: E402
from recoforge.models.neural import losses  # noqa: E402
from recoforge.models.neural._torch import Seeds, resolve_device  # noqa: E402
from recoforge.models.neural.batches import InteractionBatches, UserBatches  # noqa: E402
from recoforge.models.neural.samplers import (  # noqa: E402
    HardSampler,
    InBatchSampler,
    PopularitySampler,
    UniformSampler,
    make_sampler,
)
from recoforge.models.neural.trainer import Trainer, make_optimizer, make_schedule  # noqa: E402

CPU = torch.device("cpu")


def random_csr(n_users=30, n_items=40, density=0.2, seed=0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    dense = (rng.random((n_users, n_items)) < density) * rng.integers(1, 6, (n_users, n_items))
    dense[0, :] = 0
    dense[0, :3] = 5  # every user has a few events
    return sp.csr_matrix(dense.astype(np.float32))


# ---------------------------------------------------------------------- batches
def test_interaction_batches_cover_every_interaction_once_per_epoch():
    matrix = random_csr()
    source = InteractionBatches(matrix, 7, Seeds.from_seed(1).torch, CPU)
    assert len(source) == math.ceil(matrix.nnz / 7)
    orders = []
    for _ in range(2):
        batches = list(source)
        assert len(batches) == len(source)
        users = torch.cat([b["users"] for b in batches]).numpy()
        items = torch.cat([b["items"] for b in batches]).numpy()
        values = torch.cat([b["values"] for b in batches]).numpy()
        rebuilt = sp.csr_matrix((values, (users, items)), shape=matrix.shape)
        assert rebuilt.nnz == matrix.nnz and (rebuilt != matrix).nnz == 0
        assert len(set(zip(users, items))) == matrix.nnz
        orders.append(items)
    assert not np.array_equal(orders[0], orders[1])  # reshuffled each epoch


def test_batches_shuffle_identically_under_one_seed():
    matrix = random_csr()
    first = [b["items"] for b in InteractionBatches(matrix, 16, Seeds.from_seed(3).torch, CPU)]
    again = [b["items"] for b in InteractionBatches(matrix, 16, Seeds.from_seed(3).torch, CPU)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_user_batches_hold_dense_rows_of_active_users():
    dense = random_csr().toarray()
    dense[5] = 0
    matrix = sp.csr_matrix(dense)
    batches = list(UserBatches(matrix, 8, Seeds.from_seed(0).torch, CPU))
    users = torch.cat([b["users"] for b in batches]).numpy()
    assert sorted(users.tolist()) == [u for u in range(30) if u != 5]
    for batch in batches:
        np.testing.assert_array_equal(batch["rows"].numpy(),
                                      matrix[batch["users"].numpy()].toarray())


def test_bad_batch_size_is_a_config_error():
    with pytest.raises(ConfigError, match="batch_size"):
        InteractionBatches(random_csr(), 0, Seeds.from_seed(0).torch, CPU)


# ---------------------------------------------------------------------- samplers
@pytest.mark.parametrize("cls", [UniformSampler, PopularitySampler])
def test_samplers_never_return_positives(cls):
    matrix = random_csr(density=0.5)
    sampler = cls(matrix, np.random.default_rng(0))
    users = np.repeat(np.arange(matrix.shape[0]), 20)
    negatives = sampler.draw(users, np.zeros_like(users), 3)
    assert negatives.shape == (len(users), 3)
    dense = matrix.toarray()
    assert (dense[users[:, None], negatives] == 0).all()
    assert len(np.unique(negatives)) > 10


def test_popularity_sampler_prefers_popular_items():
    dense = random_csr(n_users=200, density=0.05, seed=2).toarray()
    dense[:, 7] = 1.0  # item 7 is everyone's; item counts otherwise ~10
    dense[:150, 11] = 1.0
    matrix = sp.csr_matrix(dense)
    draws = PopularitySampler(matrix, np.random.default_rng(0), beta=1.0).draw(
        np.arange(150, 200).repeat(200), np.zeros(10_000, np.int64), 1)
    counts = np.bincount(draws.ravel(), minlength=matrix.shape[1])
    assert counts[11] > 3 * np.median(counts)


def test_in_batch_and_hard_samplers():
    items = np.array([4, 5, 6, 7])
    negs = InBatchSampler().draw(np.arange(4), items, 2)
    np.testing.assert_array_equal(negs, [[5, 6], [6, 7], [7, 4], [4, 5]])
    matrix = random_csr()
    preferred = torch.arange(matrix.shape[1], dtype=torch.float32)  # higher index scores more

    def score(users, candidates):
        return preferred[candidates]

    hard = HardSampler(UniformSampler(matrix, np.random.default_rng(0)), 8, score)
    plain = UniformSampler(matrix, np.random.default_rng(0))
    users = np.arange(1, 30).repeat(10)
    assert hard.draw(users, users, 1).mean() > plain.draw(users, users, 1).mean() + 5
    with pytest.raises(ConfigError):
        make_sampler("nope", matrix, np.random.default_rng(0))


# ---------------------------------------------------------------------- losses
def test_losses_against_hand_computed_values():
    t = torch.tensor
    assert losses.mse(t([1.0, 3.0]), t([2.0, 1.0])).item() == pytest.approx(2.5)
    bce = losses.bce_with_logits(t([0.0, 2.0]), t([1.0, 0.0])).item()
    assert bce == pytest.approx((math.log(2) + math.log(1 + math.e**2)) / 2, rel=1e-6)
    bpr = losses.bpr(t([2.0]), t([[1.0, 3.0]])).item()
    assert bpr == pytest.approx((math.log(1 + math.e**-1) + math.log(1 + math.e)) / 2, rel=1e-6)
    softmax = losses.sampled_softmax(t([1.0]), t([[0.0, 2.0]])).item()
    assert softmax == pytest.approx(-math.log(math.e / (math.e + 1 + math.e**2)), rel=1e-6)
    nll = losses.multinomial_nll(t([[0.0, math.log(3.0)]]), t([[1.0, 2.0]])).item()
    assert nll == pytest.approx(-(math.log(0.25) + 2 * math.log(0.75)), rel=1e-6)
    kl = losses.kl_normal(t([[1.0, 0.0]]), t([[0.0, math.log(2.0)]])).item()
    assert kl == pytest.approx(0.5 * (1.0 + (2 - 1 - math.log(2))), rel=1e-6)
    assert losses.l2(t([[1.0, 2.0], [0.0, 1.0]]), t([[3.0]])).item() == pytest.approx(7.5)
    anneal = losses.KLAnnealing(total_steps=4, cap=0.5)
    assert [anneal.step() for _ in range(6)] == [0.0, 0.25, 0.5, 0.5, 0.5, 0.5]


# ---------------------------------------------------------------------- trainer
class Regression(torch.nn.Module):
    """y = w . x, squared loss: a module with calculate_loss for trainer tests."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(3))

    def calculate_loss(self, batch):
        return losses.mse(batch["x"] @ self.weight, batch["y"])


class ToyBatches:
    def __init__(self, n=64, seed=0):
        gen = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])

    def __len__(self):
        return 4

    def __iter__(self):
        for rows in torch.arange(64).split(16):
            yield {"x": self.x[rows], "y": self.y[rows]}


def test_trainer_learns_and_records_loss_and_progress():
    module, calls = Regression(), []
    result = Trainer(epochs=30, learning_rate=0.1).train(
        module, ToyBatches(), progress=lambda *a: calls.append(a))
    assert len(result.loss_history) == 30 and result.loss_history[-1] < 0.01 * \
        result.loss_history[0]
    np.testing.assert_allclose(module.weight.detach().numpy(), [1.0, -2.0, 0.5], atol=0.05)
    assert [c[0] for c in calls] == list(range(1, 31)) and calls[0][1] == 30
    assert calls[-1][3] is None and np.isnan(result.metric_history).all()
    assert result.best_epoch == 29 and not result.stopped_early


def test_early_stopping_restores_the_best_epoch():
    module, snapshots = Regression(), []
    metrics = iter([0.1, 0.5, 0.3, 0.2, 0.1, 0.9, 0.9])

    def validate():
        snapshots.append(module.weight.detach().clone())
        return next(metrics)

    result = Trainer(epochs=7, learning_rate=0.05, patience=2).train(
        module, ToyBatches(), validate)
    assert result.stopped_early and len(result.loss_history) == 4
    assert result.best_epoch == 1
    assert torch.equal(module.weight.detach(), snapshots[1])
    assert not torch.equal(snapshots[1], snapshots[3])


@pytest.mark.parametrize("name,expected", [
    ("none", [1.0, 1.0, 1.0, 1.0]), ("step", [1.0, 1.0, 0.5, 0.5]),
    ("exponential", [1.0, 0.5, 0.25, 0.125]),
    ("cosine", [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2]),
])
def test_learning_rate_schedules(name, expected):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = make_schedule(name, opt, epochs=4, lr_step=2, lr_gamma=0.5)
    rates = []
    for _ in range(4):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if schedule is not None:
            schedule.step()
    np.testing.assert_allclose(rates, expected, atol=1e-12)


@pytest.mark.parametrize("name", ["adam", "adamw", "adagrad", "sgd"])
def test_every_optimizer_trains(name):
    module = Regression()
    result = Trainer(epochs=20, learning_rate=0.1, optimizer=name).train(module, ToyBatches())
    assert result.loss_history[-1] < result.loss_history[0]


@pytest.mark.parametrize("name", ["adam", "adamw", "adagrad", "sgd"])
def test_fused_optimizers_follow_the_reference_update_rule(name):
    """make_optimizer picks torch's fused kernel on CPU; it must take the same steps as the
    per-parameter reference implementation (up to float rounding)."""
    torch.manual_seed(0)
    start = [torch.randn(5, 3), torch.randn(3)]
    fused = [torch.nn.Parameter(t.clone()) for t in start]
    plain = [torch.nn.Parameter(t.clone()) for t in start]
    opt = make_optimizer(name, fused, 0.05, weight_decay=0.01)
    reference = type(opt)(plain, lr=0.05, weight_decay=0.01, foreach=False)
    assert opt.defaults.get("fused") is True
    for step in range(5):
        for params, optimizer in ((fused, opt), (plain, reference)):
            optimizer.zero_grad()
            loss = sum(((p - step) ** 2).sum() for p in params)
            loss.backward()
            optimizer.step()
    for a, b, initial in zip(fused, plain, start, strict=True):
        assert not torch.allclose(a.detach(), initial)  # the steps moved the parameters
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mixed_devices_or_integer_parameters_are_not_fused():
    params = [torch.nn.Parameter(torch.randn(2)), torch.nn.Parameter(torch.randn(2))]
    assert make_optimizer("adam", params, 0.1).defaults.get("fused") is True
    meta = [torch.nn.Parameter(torch.randn(2)), torch.nn.Parameter(torch.randn(2, device="meta"))]
    assert not make_optimizer("sgd", meta, 0.1).defaults.get("fused")


@pytest.mark.parametrize("kwargs", [
    {"optimizer": "rmsprop"}, {"lr_schedule": "linear"}, {"epochs": 0},
    {"learning_rate": -1.0}, {"patience": -1}, {"lr_gamma": 2.0},
])
def test_bad_trainer_parameters(kwargs):
    with pytest.raises(ConfigError):
        Trainer(**{"epochs": 2, "learning_rate": 0.1, **kwargs})


def test_diverging_loss_and_bad_validation_are_config_errors():
    with pytest.raises(ConfigError, match="diverged"):
        Trainer(epochs=5, learning_rate=1e6, optimizer="sgd").train(Regression(), ToyBatches())
    with pytest.raises(ConfigError, match="validation"):
        Trainer(epochs=2, learning_rate=0.1).train(Regression(), ToyBatches(),
                                                   lambda: float("nan"))


# ---------------------------------------------------------------------- devices, seeds
def test_devices():
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="cuda"):
            resolve_device("cuda")


def test_torch_threads_follow_the_one_setting():
    from recoforge.threads import get_num_threads, set_num_threads

    previous = get_num_threads()
    try:
        assert set_num_threads(1) == 1 and torch.get_num_threads() == 1
    finally:
        set_num_threads(previous)
    assert torch.get_num_threads() == previous


def test_missing_torch_names_the_deep_extra(monkeypatch):
    for name in [m for m in sys.modules if m.startswith("recoforge.models.neural")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError, match=r"recoforge\[deep\]"):
        importlib.import_module("recoforge.models.neural.embedding_mf")
