"""Declared learned state: which attributes a model may hold, and their shapes.

A model class declares its learned state in ``state_spec``, a class variable mapping an
attribute name to a *rule*; the declarations of every class in the MRO are merged, over
:data:`CONVENTIONAL_STATE` (the names most families share). Loading refuses any state
name that no rule declares, and checks every part against its rule, so a tampered model
directory fails with :class:`ArtifactError` instead of indexing out of bounds later.

Rule grammar::

    rule   := "int" | "float" | "str" | "bool"            a scalar in the manifest
            | "ids"                                        an IdIndex
            | "model"                                      a nested model (or None)
            | "any"                                        a registered part (it validates)
            | shape [":" qualifier ("," qualifier)*]       ndarray, CSR, FeatureMatrix
    shape  := axis (" x " axis)*
    axis   := "users" | "items" | "users+1" | "items+1"   bound to the vocabularies
            | an integer                                   exactly that length
            | "*"                                          any length
            | a name such as "d"                           any length, equal wherever the
                                                           name recurs in the model
    qualifier := "int" | "bool" | "text"                   element kind (default: float)
            | "index<users>" | "index<items>"              integer values in 0 .. n-1
            | "nonfinite"                                  NaN / inf allowed in floats
            | "optional"                                   may be absent (or None)

Names declared by a model class itself are required unless marked ``optional``; the
conventional names are optional. ``None`` is accepted for optional state only.
Example: ``state_spec = {"neighbours_": "items x k: int, index<items>"}``.

A model may also define ``_check_state(self)`` for invariants across parts (e.g. an
indptr into another array); it runs after every rule passed and raises ``ValueError`` or
:class:`ArtifactError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from recoforge.errors import ArtifactError

#: state most model families share (optional wherever it appears)
CONVENTIONAL_STATE: dict[str, str] = {
    "user_index_": "ids",
    "item_index_": "ids",
    "fallback_": "model",
    "data_kind_": "str",
    "data_fingerprint_": "str",
    "fitted_at_": "str",
    "fit_seconds_": "float",
    "user_factors_": "users x d",
    "item_factors_": "items x d",
    "user_bias_": "users",
    "item_bias_": "items",
    "global_bias_": "float",
    "global_mean_": "float",
    "rating_min_": "float",
    "rating_max_": "float",
    "user_means_": "users",
    "item_means_": "items",
    "vector_index_": "any: optional",
    "item_titles_": "items: text",
}
SCALAR_RULES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
_QUALIFIERS = {"int", "bool", "text", "index<users>", "index<items>", "nonfinite", "optional"}
_NAME = re.compile(r"^[a-z][a-z0-9_]*_$")
_FLOATS = (np.float32, np.float64)
_INTS = (np.int32, np.int64)


@dataclass(frozen=True)
class Rule:
    """One parsed state declaration."""

    kind: str  # "scalar:<type>", "ids", "model", "any" or "array"
    axes: tuple[str, ...] = ()
    qualifiers: frozenset[str] = frozenset()
    required: bool = False

    @property
    def element(self) -> str:
        for kind in ("int", "bool", "text"):
            if kind in self.qualifiers:
                return kind
        return "int" if self.index_of else "float"

    @property
    def index_of(self) -> str | None:
        for axis in ("users", "items"):
            if f"index<{axis}>" in self.qualifiers:
                return axis
        return None


def parse_rule(text: str, required: bool) -> Rule:
    """Parse one rule string (see the module docstring); raises ValueError."""
    head, _, tail = text.partition(":")
    qualifiers = frozenset(q.strip() for q in tail.split(",") if q.strip())
    unknown = qualifiers - _QUALIFIERS
    if unknown:
        raise ValueError(f"unknown qualifier(s) {sorted(unknown)} in state rule {text!r}")
    required = required and "optional" not in qualifiers
    head = head.strip()
    if head in SCALAR_RULES:
        return Rule(f"scalar:{head}", required=required)
    if head in ("ids", "model", "any"):
        return Rule(head, required=required)
    axes = tuple(a.strip() for a in head.split(" x "))
    if not axes or not all(re.fullmatch(r"[A-Za-z_*][A-Za-z0-9_+<>]*|\d+", a) for a in axes):
        raise ValueError(f"bad shape in state rule {text!r}")
    return Rule("array", axes, qualifiers, required)


def declared_state(cls: type) -> dict[str, Rule]:
    """Rules for every state name of model class ``cls`` (MRO merged over conventions)."""
    rules = {name: parse_rule(text, required=False) for name, text in CONVENTIONAL_STATE.items()}
    for klass in reversed(cls.__mro__):
        own = vars(klass).get("state_spec")
        if isinstance(own, dict):
            rules.update({name: parse_rule(text, required=True) for name, text in own.items()})
    return rules


def check_state_name(cls: type, name: object) -> str:
    """``name`` if a model of class ``cls`` may hold it as learned state, else raise."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.startswith("__"):
        raise ArtifactError(f"{name!r} is not a learned-state name (lowercase, ending in '_')")
    if hasattr(cls, name):
        raise ArtifactError(f"{name!r} is an attribute of class {cls.__name__}, not state")
    return name


class ShapeChecker:
    """Checks parts against rules, binding named axes ("d") across one model's parts.

    Parameters
    ----------
    n_users, n_items : int
        Sizes of the model's vocabularies.
    where : str
        The model directory, for messages.
    """

    def __init__(self, n_users: int, n_items: int, where: str) -> None:
        self.sizes = {"users": n_users, "items": n_items,
                      "users+1": n_users + 1, "items+1": n_items + 1}
        self.bound: dict[str, tuple[int, str]] = {}
        self.where = where

    def fail(self, name: str, problem: str) -> ArtifactError:
        return ArtifactError(f"{self.where}: state {name} {problem}")

    def check_shape(self, name: str, shape: tuple[int, ...], rule: Rule) -> None:
        if len(shape) != len(rule.axes):
            raise self.fail(name, f"has shape {shape}, expected {' x '.join(rule.axes)}")
        for position, (axis, size) in enumerate(zip(rule.axes, shape)):
            expected = self.sizes.get(axis, int(axis) if axis.isdigit() else None)
            if expected is not None and size != expected:
                raise self.fail(name, f"has {size} rows on axis {position}, expected "
                                      f"{expected} ({axis})")
            if expected is None and axis != "*":
                seen = self.bound.setdefault(axis, (size, name))
                if seen[0] != size:
                    raise self.fail(name, f"has {size} on axis {axis!r} but {seen[1]} has "
                                          f"{seen[0]}")

    def check_values(self, name: str, values: np.ndarray, rule: Rule) -> None:
        """Element kind, finiteness and index bounds of a dense array (or CSR data)."""
        element = rule.element
        if element == "float" and values.dtype not in _FLOATS:
            raise self.fail(name, f"has dtype {values.dtype}, expected float32 or float64")
        if element == "int" and values.dtype not in _INTS:
            raise self.fail(name, f"has dtype {values.dtype}, expected int32 or int64")
        if element == "bool" and values.dtype != np.bool_:
            raise self.fail(name, f"has dtype {values.dtype}, expected bool")
        if element == "text" and values.dtype.kind != "U":
            raise self.fail(name, f"has dtype {values.dtype}, expected text")
        if element == "float" and "nonfinite" not in rule.qualifiers \
                and not np.isfinite(values).all():
            raise self.fail(name, "holds NaN or infinite values")
        target = rule.index_of
        if target is not None and values.size:
            low, high = int(values.min()), int(values.max())
            if low < 0 or high >= self.sizes[target]:
                raise self.fail(name, f"holds {target[:-1]} index {high if high >= 0 else low}"
                                      f" outside 0..{self.sizes[target] - 1}")

    def check_scalar(self, name: str, value: Any, rule: Rule) -> None:
        kind = rule.kind.split(":", 1)[1] if rule.kind.startswith("scalar:") else None
        if kind is None:
            raise self.fail(name, f"must be a saved part ({rule.kind}), not the scalar "
                                  f"{value!r}")
        if isinstance(value, bool) and kind != "bool" or not isinstance(value, SCALAR_RULES[kind]):
            raise self.fail(name, f"must be {kind}, not {type(value).__name__}")
        if isinstance(value, float) and not np.isfinite(value):
            raise self.fail(name, f"must be finite, not {value}")
