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
import math
import operator
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from recoforge.errors import ConfigError

#: Largest seed: what numpy's legacy seeding, scikit-learn and the numba kernels accept.
SEED_MAX = 2**32 - 1
#: integers longer than this are shown by their size in messages, not in full
MAX_READABLE_BITS = 128


def param(default: Any, *, ge: float | None = None, gt: float | None = None,
          le: float | None = None, lt: float | None = None,
          choices: Sequence[Any] | None = None, allow_inf: bool = False,
          doc: str = "") -> Any:
    """A dataclass field with validation metadata.

    Parameters
    ----------
    default
        The default value (validated like any other).
    ge, gt, le, lt : float, optional
        Bounds of a number (inclusive ``ge``/``le``, exclusive ``gt``/``lt``).
    choices : sequence, optional
        The only values allowed.
    allow_inf : bool
        Accept +-inf for a float parameter (default: floats must be finite).
    doc : str
        One line for help texts and ``recoforge models``.
    """
    meta = {"ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices,
            "allow_inf": allow_inf, "doc": doc}
    return dataclasses.field(default=default, metadata=meta)


def seed_param(doc: str = "random seed (None: fresh entropy)") -> Any:
    """An optional seed: None or an integer in [0, SEED_MAX]."""
    return param(None, ge=0, le=SEED_MAX, doc=doc)


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
        if int in allowed:
            return value
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{name} must be a finite number, got {_short(value)}") from None
    for typ in allowed:
        if typ is int and isinstance(value, bool):
            continue
        if isinstance(value, typ):
            return value
    names = " or ".join(sorted(t.__name__ for t in allowed))
    raise ConfigError(f"{name} must be {names}, got {_short(value)}")


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
                _check_number(f.name, value, meta)

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


_BOUNDS = (("ge", operator.ge, ">="), ("gt", operator.gt, ">"),
           ("le", operator.le, "<="), ("lt", operator.lt, "<"))


def _check_number(name: str, value: float, meta: Mapping[str, Any]) -> None:
    """NaN, infinities (unless ``allow_inf``) and the declared bounds, named.

    Compares exactly (no float conversion), so a huge integer such as 10**400 is refused
    by its bound instead of overflowing.
    """
    if value != value:
        raise ConfigError(f"{name} must be a number, got NaN")
    if isinstance(value, float) and math.isinf(value) and not meta.get("allow_inf"):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    for key, op, text in _BOUNDS:
        bound = meta.get(key)
        if bound is not None and not op(value, bound):
            raise ConfigError(f"{name} must be {text} {bound}, got {_short(value)}")


def _short(value: Any) -> str:
    """repr of a value, abbreviated for integers too long to read."""
    if isinstance(value, int) and not isinstance(value, bool) \
            and value.bit_length() > MAX_READABLE_BITS:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


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
    except ValueError:  # JSONDecodeError, or an integer beyond Python's digit limit
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ConfigError(f"cannot parse {key}={shown!r}") from None
