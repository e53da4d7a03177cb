from dataclasses import dataclass

import pytest

from recoforge.errors import ConfigError
from recoforge.models.params import ModelConfig, param


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
