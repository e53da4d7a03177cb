from dataclasses import dataclass

import pytest

from recoforge.errors import ConfigError
from recoforge.models.params import SEED_MAX, ModelConfig, param, seed_param


@dataclass(frozen=True)
class Cfg(ModelConfig):
    n_factors: int = param(8, ge=1, doc="dims")
    rate: float = param(0.1, gt=0.0, lt=1.0)
    mode: str = param("a", choices=("a", "b"))
    limit: float | None = param(None, ge=0)
    flag: bool = param(False)


def test_defaults_and_coercion():
    cfg = Cfg(rate=0.5, limit=3)
    assert cfg.limit == 3.0 and isinstance(cfg.limit, float)
    assert cfg.to_dict() == {"n_factors": 8, "rate": 0.5, "mode": "a", "limit": 3.0,
                             "flag": False}


@pytest.mark.parametrize("kwargs,message", [
    ({"n_factors": 0}, "n_factors must be >= 1"),
    ({"n_factors": 2.5}, "n_factors must be int"),
    ({"n_factors": True}, "n_factors must be int"),
    ({"rate": 1.0}, "rate must be < 1.0"),
    ({"rate": float("nan")}, "NaN"),
    ({"mode": "c"}, "mode must be one of"),
    ({"limit": -1}, "limit must be >= 0"),
    ({"flag": "yes"}, "flag must be bool"),
    ({"n_factors": None}, "may not be None"),
])
def test_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Cfg(**kwargs)


def test_from_strings():
    parsed = Cfg.from_strings({"n_factors": "16", "rate": "0.2", "limit": "none",
                               "flag": "true", "mode": "b"})
    assert parsed == {"n_factors": 16, "rate": 0.2, "limit": None, "flag": True, "mode": "b"}
    assert Cfg(**parsed).n_factors == 16
    with pytest.raises(ConfigError, match="unknown parameter 'nope'"):
        Cfg.from_strings({"nope": "1"})
    with pytest.raises(ConfigError, match="cannot parse n_factors='many'"):
        Cfg.from_strings({"n_factors": "many"})
    assert [name for name, _, _ in Cfg.describe()][:2] == ["n_factors", "rate"]


@dataclass(frozen=True)
class Bounded(ModelConfig):
    rate: float = param(0.1, ge=0.0)
    unbounded: float = param(0.0, allow_inf=True)
    size: int = param(8, ge=1, le=4096)
    seed: int | None = seed_param()


@pytest.mark.parametrize("kwargs,message", [
    ({"rate": float("inf")}, "rate must be a finite number, got inf"),
    ({"rate": -float("inf")}, "rate must be a finite number"),
    ({"rate": 10**400}, "rate must be a finite number"),  # int too large for a float
    ({"size": 10**400}, r"size must be <= 4096, got an integer of about 40[01] digits"),
    ({"size": 10**12}, "size must be <= 4096, got 1000000000000"),
    ({"seed": -1}, "seed must be >= 0, got -1"),
    ({"seed": SEED_MAX + 1}, f"seed must be <= {SEED_MAX}"),
    ({"seed": 1.5}, "seed must be int"),
])
def test_finite_and_bounded(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Bounded(**kwargs)


def test_allow_inf_and_seed_limits():
    assert Bounded(unbounded=float("inf")).unbounded == float("inf")
    assert Bounded(unbounded=-float("inf")).unbounded == -float("inf")
    with pytest.raises(ConfigError, match="NaN"):
        Bounded(unbounded=float("nan"))  # allow_inf never admits NaN
    assert Bounded(seed=0).seed == 0 and Bounded(seed=SEED_MAX).seed == SEED_MAX
    assert Bounded().seed is None


@pytest.mark.parametrize("text,message", [
    ("inf", "rate must be a finite number"),
    ("1e400", "rate must be a finite number"),
    ("-Infinity", "rate must be a finite number"),
])
def test_from_strings_then_validate_refuses_infinity(text, message):
    parsed = Bounded.from_strings({"rate": text})
    with pytest.raises(ConfigError, match=message):
        Bounded(**parsed)


def test_from_strings_refuses_unreadable_huge_integers():
    with pytest.raises(ConfigError, match="cannot parse"):
        Bounded.from_strings({"seed": "9" * 5000})  # beyond Python's int digit limit
    with pytest.raises(ConfigError, match=r"size must be <= 4096"):
        Bounded(**Bounded.from_strings({"size": "9" * 1000}))


def test_a_model_whose_extra_is_missing_names_the_extra(monkeypatch):
    from recoforge.errors import MissingDependencyError
    from recoforge.models import registry

    registry.available_models()
    monkeypatch.delitem(registry._REGISTRY, "embedding_mf", raising=False)
    with pytest.raises(MissingDependencyError, match=r"recoforge\[deep\]"):
        registry.create("embedding_mf")
    with pytest.raises(ConfigError, match="unknown model"):
        registry.create("no_such_model")
