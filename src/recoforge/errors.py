"""Exception types. Every error a user can cause derives from :class:`RecoforgeError`.

The CLI prints these as one line on stderr; anything else is a bug and keeps its traceback.
"""


class RecoforgeError(Exception):
    """Base class for errors caused by input, configuration or files."""


class DataError(RecoforgeError, ValueError):
    """Malformed or invalid input data (names the file, row or column)."""


class UnknownIdError(RecoforgeError, KeyError):
    """A user or item id that the vocabulary does not contain."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ConfigError(RecoforgeError, ValueError):
    """An invalid hyperparameter or option."""


class ResourceError(ConfigError, MemoryError):
    """A step that would need more memory than the machine has (refused before allocating,
    or a MemoryError reported in one line). A ConfigError too: smaller parameters or data
    are the remedy, and callers that catch ConfigError keep working."""


class NotFittedError(RecoforgeError, RuntimeError):
    """A model was used before ``fit``."""


class NotSupportedError(RecoforgeError, NotImplementedError):
    """The model does not offer this operation (e.g. rating prediction)."""


class ArtifactError(RecoforgeError):
    """A saved model directory that is missing, tampered with or incompatible."""


class MissingDependencyError(RecoforgeError, ImportError):
    """An optional dependency (an extra) is not installed."""


def require(module: str, extra: str):  # noqa: ANN201 - returns a module
    """Import an optional dependency or raise an ImportError naming the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError(
            f"{module} is required for this feature: pip install 'recoforge[{extra}]'"
        ) from exc
