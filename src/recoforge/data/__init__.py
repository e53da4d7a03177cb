"""Data layer: id vocabularies, interactions, features, datasets, loaders, splits."""

from recoforge.data.dataset import Dataset, Sessions
from recoforge.data.features import FeatureEncoder, FeatureMatrix, build_features
from recoforge.data.ids import IdIndex
from recoforge.data.interactions import Interactions

__all__ = ["Dataset", "FeatureEncoder", "FeatureMatrix", "IdIndex", "Interactions", "Sessions",
           "build_features"]
