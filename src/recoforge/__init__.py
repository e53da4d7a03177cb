"""recoforge: a recommender-system toolkit.

From raw interactions to served recommendations behind one model interface::

    import recoforge as rf
    data = rf.data.synthetic.category_demo(seed=0)
    model = rf.create("popularity").fit(data)
    model.recommend(["u1", "u2"], k=10)
"""

# first: sets numba's cache location before any kernel module is imported
from recoforge import _numba_cache  # noqa: F401
from recoforge._version import __version__
from recoforge.errors import (
    ArtifactError,
    ConfigError,
    DataError,
    NotFittedError,
    NotSupportedError,
    RecoforgeError,
    UnknownIdError,
)
from recoforge.models.registry import available_models, create, load_model

__all__ = [
    "__version__",
    "ArtifactError",
    "ConfigError",
    "DataError",
    "NotFittedError",
    "NotSupportedError",
    "RecoforgeError",
    "UnknownIdError",
    "available_models",
    "create",
    "load_model",
]
