"""Models: every family behind the contract in :mod:`recoforge.models.base`.

Families live in sub-packages (``baselines``, ``neighbours``, ``factors``; ``content`` is a
module) and register themselves by name: ``recoforge.create("ease")``. The module paths of
the first edition (``recoforge.models.als`` and so on) still import: they are aliases of
the modules' new homes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

from recoforge.models.base import Recommender
from recoforge.models.registry import available_models, create, load_model, register

__all__ = ["Recommender", "available_models", "create", "load_model", "register"]

#: first-edition module names -> their home in a family sub-package
MOVED = {
    "popularity": "baselines.popularity", "baseline": "baselines.baseline",
    "knn": "neighbours.knn", "similarity": "neighbours.similarity",
    "covisitation": "neighbours.covisitation", "graph": "neighbours.graph",
    "_factors": "factors.core", "_ranking_kernels": "factors._ranking_kernels",
    "als": "factors.als", "bpr": "factors.bpr", "ease": "factors.ease", "svd": "factors.svd",
    "sgd_mf": "factors.sgd_mf", "svdpp": "factors.svdpp", "timesvdpp": "factors.timesvdpp",
    "bpmf": "factors.bpmf",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``recoforge.models.<old>`` to the module at its new path (same object)."""

    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001, ANN201
        prefix, _, leaf = fullname.rpartition(".")
        if prefix != __name__ or leaf not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        leaf = spec.name.rpartition(".")[2]
        return importlib.import_module(f"{__name__}.{MOVED[leaf]}")

    def exec_module(self, module: ModuleType) -> None:
        return None


if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
    sys.meta_path.append(_Alias())
