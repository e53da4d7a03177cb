"""Hyperparameters declared once: frozen dataclasses with declarative validation.

Each model declares a ``Config`` dataclass deriving from :class:`ModelConfig`, whose fields
use :func:`param` to state their default, bounds, allowed choices and meaning. Validation,
``get_params``/``set_params``/``clone``, CLI parsing (``key=value`` strings) and
serialisation to the model manifest all derive from that one declaration.

Example
-------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Config(ModelConfig):
...     n_factors: int = param(64, ge=1, doc="latent dimensions")
>>> Config(n_factors=0)
Traceback (most recent call last):
...
recoforge.errors.ConfigError: n_factors must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Sequence
from typing import Any

from recoforge.errors import ConfigError


def param(default: Any, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None,
          choices: Sequence[Any] | None = None, doc: str = "") -> Any:
    """A dataclass field with validation metadata."""
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices, "doc": doc}
    return dataclasses.field(default=default, metadata=meta)


def _type_options(annotation: Any) -> tuple[set[type], bool]:
    """The concrete types a field admits and whether it admits None."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation) if origin in (typing.Union, types.UnionType) else ()
    members = args or (annotation,)
    optional = type(None) in members
    concrete = {typing.get_origin(m) or m for m in members if m is not type(None)}
    return {c for c in concrete if isinstance(c, type)}, optional


def _check_type(name: str, value: Any, allowed: set[type], optional: bool) -> Any:
    if value is None:
        if optional:
            return None
        raise ConfigError(f"{name} may not be None")
    if float in allowed and isinstance(value, int) and not isinstance(value, bool):
        return float(value) if int not in allowed else value
    for typ in allowed:
        if typ is int and isinstance(value, bool):
            continue
        if isinstance(value, typ):
            return value
    names = " or ".join(sorted(t.__name__ for t in allowed))
    raise ConfigError(f"{name} must be {names}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Base of every model's hyperparameter dataclass: validates on construction."""

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            allowed, optional = _type_options(hints[f.name])
            value = _check_type(f.name, getattr(self, f.name), allowed, optional)
            object.__setattr__(self, f.name, value)
            meta = f.metadata
            if value is None or not meta:
                continue
            if meta.get("choices") is not None and value not in meta["choices"]:
                raise ConfigError(f"{f.name} must be one of {list(meta['choices'])}, "
                                  f"got {value!r}")
            if isinstance(value, (int, float)):
                if value != value:
                    raise ConfigError(f"{f.name} must be a number, got NaN")
                for key, op, text in (("ge", float.__ge__, ">="), ("gt", float.__gt__, ">"),
                                      ("le", float.__le__, "<="), ("lt", float.__lt__, "<")):
                    bound = meta.get(key)
                    if bound is not None and not op(float(value), float(bound)):
                        raise ConfigError(f"{f.name} must be {text} {bound}, got {value!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_strings(cls, pairs: dict[str, str]) -> dict[str, Any]:
        """Parse ``key=value`` strings (CLI) into typed values for this config."""
        hints = typing.get_type_hints(cls)
        known = set(cls.field_names())
        out: dict[str, Any] = {}
        for key, text in pairs.items():
            if key not in known:
                raise ConfigError(f"unknown parameter {key!r}; valid: {sorted(known)}")
            allowed, optional = _type_options(hints[key])
            out[key] = _parse_value(key, text, allowed, optional)
        return out

    @classmethod
    def describe(cls) -> list[tuple[str, Any, str]]:
        """(name, default, doc) of each field, for help texts."""
        return [(f.name, f.default, f.metadata.get("doc", "")) for f in dataclasses.fields(cls)]


def _parse_value(key: str, text: str, allowed: set[type], optional: bool) -> Any:
    if optional and text.strip().lower() in ("none", "null", ""):
        return None
    if bool in allowed and text.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return text.strip().lower() in ("true", "1", "yes")
    for typ in (int, float):
        if typ in allowed:
            try:
                return typ(text)
            except ValueError:
                continue
    if str in allowed:
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ConfigError(f"cannot parse {key}={text!r}") from None
