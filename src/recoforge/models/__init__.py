"""Models: every family behind the contract in :mod:`recoforge.models.base`."""

from recoforge.models.base import Recommender
from recoforge.models.registry import available_models, create, load_model, register

__all__ = ["Recommender", "available_models", "create", "load_model", "register"]
