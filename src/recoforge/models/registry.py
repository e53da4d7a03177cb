"""Model registry: ``create("popularity", **params)`` for every model by name.

Model modules register their classes with :func:`register`; they are imported lazily the
first time the registry is consulted, so ``import recoforge`` stays fast.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING, Any

from recoforge.errors import ConfigError, MissingDependencyError

if TYPE_CHECKING:
    from recoforge.models.base import Recommender

#: modules of recoforge.models that hold no model
_NOT_MODELS = {"base", "params", "query", "registry"}

#: models of families with an optional dependency: name -> extra (named when missing)
OPTIONAL_MODELS = {name: "deep" for name in (
    "embedding_mf", "gmf", "mlp", "neumf", "mult_vae", "recvae", "lightgcn")}

_REGISTRY: dict[str, type[Recommender]] = {}
_LOADED: list[bool] = []


def register(cls: type[Recommender]) -> type[Recommender]:
    """Class decorator adding a model under its ``name``."""
    existing = _REGISTRY.get(cls.name)
    if existing is not None and existing is not cls:
        raise ConfigError(f"model name {cls.name!r} registered twice")
    _REGISTRY[cls.name] = cls
    return cls


def _load_all() -> None:
    """Import every model module of recoforge.models and its family sub-packages once
    (they register themselves). A family whose optional dependency is missing (e.g.
    ``neural`` without torch) is skipped."""
    if _LOADED:
        return
    import recoforge.models as package

    for info in pkgutil.walk_packages(package.__path__, prefix="recoforge.models."):
        leaf = info.name.rsplit(".", 1)[-1]
        if leaf in _NOT_MODELS or leaf.startswith("_") or info.ispkg:
            continue
        try:
            importlib.import_module(info.name)
        except MissingDependencyError:
            continue
    _LOADED.append(True)


def available_models() -> list[str]:
    """Registered model names, sorted."""
    _load_all()
    return sorted(_REGISTRY)


def model_class(name: str) -> type[Recommender]:
    _load_all()
    try:
        return _REGISTRY[name]
    except KeyError:
        if name in OPTIONAL_MODELS:
            raise MissingDependencyError(
                f"model {name!r} needs an optional dependency: pip install "
                f"'recoforge[{OPTIONAL_MODELS[name]}]'") from None
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}") \
            from None


def create(name: str, **params: Any) -> Recommender:
    """A new, unfitted model by registered name."""
    return model_class(name)(**params)


def load_model(path: str, history: Any = None) -> Recommender:
    """Load a model directory written by ``Recommender.save`` (verifies checksums).

    ``history`` (a users x items sparse matrix, or a history source) gives known users'
    histories to a model saved without them.
    """
    from recoforge.artifacts import load_model as _load

    return _load(path, history=history)
