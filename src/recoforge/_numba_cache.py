"""Where numba caches recoforge's compiled kernels: somewhere writable, or nowhere.

recoforge's kernels are ``numba.njit(cache=True)``. numba looks for a cache directory when
a module defines them (at import), in this order: ``NUMBA_CACHE_DIR``, the ``__pycache__``
beside the source file, then ``~/.cache/numba`` (``XDG_CACHE_HOME``); when none is
writable, for example a read-only installation imported by another user whose HOME is
not writable, the import fails with ``cannot cache function ...: no locator available``.

:func:`configure` runs when this module is imported, which ``recoforge/__init__.py`` does
first, before any kernel module. When numba's own choice would fail it points
``NUMBA_CACHE_DIR`` at the first writable of ``$XDG_CACHE_HOME/recoforge/numba``,
``~/.cache/recoforge/numba`` and ``<tempdir>/recoforge-numba-<uid>``; when none is
writable it lets recoforge's kernels compile without a cache (slower imports, same
results). A ``NUMBA_CACHE_DIR`` the user set
and that works is never changed, and nothing is changed when numba's default works.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
#: folders holding modules with cached kernels (numba caches in their __pycache__); a
#: read-only installation makes them all read-only, so they stand for any new ones too
KERNEL_DIRS = ("models", "models/factors", "models/neighbours", "models/baselines",
               "ranking", "evaluation")
ENV = "NUMBA_CACHE_DIR"


def is_writable_dir(path: Path) -> bool:
    """Whether a file can be created in ``path`` (created if missing), as numba checks."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


def numba_user_cache_dir() -> Path:
    """numba's user-wide cache directory on this platform (``~/.cache/numba`` on Linux)."""
    try:
        from numba.misc.appdirs import AppDirs

        return Path(AppDirs(appname="numba", appauthor=False).user_cache_dir)
    except Exception:  # pragma: no cover - numba internals moved; use the XDG default
        return _xdg_cache_home() / "numba"


def _xdg_cache_home() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser())


def fallback_dirs() -> list[Path]:
    """Candidate cache directories of our own, in order of preference."""
    candidates = [_xdg_cache_home() / "recoforge" / "numba"]
    with_home = Path("~/.cache/recoforge/numba").expanduser()
    if with_home not in candidates:
        candidates.append(with_home)
    try:
        uid = os.getuid() if hasattr(os, "getuid") else "user"
        candidates.append(Path(tempfile.gettempdir()) / f"recoforge-numba-{uid}")
    except (OSError, FileNotFoundError):  # pragma: no cover - no usable temp dir at all
        pass
    return candidates


def choose_cache_dir(configured: str | None, package_dirs: Iterable[Path],
                     user_dir: Callable[[], Path], candidates: Callable[[], Iterable[Path]],
                     ) -> tuple[str, Path | None]:
    """Decide where numba should cache.

    Returns ``("keep", None)`` when numba's own choice works (a writable configured
    directory, or writable source folders, or a writable user cache), ``("set", path)``
    with a writable directory to use instead, or ``("none", None)`` when nothing is
    writable and kernels must compile uncached. ``user_dir`` and ``candidates`` are
    called only when needed (finding numba's user directory imports numba).
    """
    if configured and is_writable_dir(Path(configured)):
        return "keep", None
    # numba's next locators: the source folders' __pycache__, then its user-wide cache
    if all(is_writable_dir(d / "__pycache__") for d in package_dirs) \
            or is_writable_dir(user_dir()):
        return "keep", None
    for candidate in candidates():
        if is_writable_dir(candidate):
            return "set", candidate
    return "none", None


def configure() -> str:
    """Make recoforge's ``cache=True`` kernels importable wherever it is installed.

    Returns the decision taken (``"keep"``, ``"set"`` or ``"none"``), for tests.
    """
    decision, path = choose_cache_dir(os.environ.get(ENV),
                                      [PACKAGE_DIR / sub for sub in KERNEL_DIRS],
                                      numba_user_cache_dir, fallback_dirs)
    if decision == "set":
        os.environ[ENV] = str(path)
        if "numba" in sys.modules:  # numba read its config already: update it too
            import numba

            numba.config.CACHE_DIR = str(path)  # type: ignore[attr-defined]
    elif decision == "none":
        _compile_uncached()
    return decision


def _compile_uncached() -> None:
    """Let recoforge's kernels fall back to no cache when numba finds no cache location.

    Wraps numba's ``Dispatcher.enable_caching`` so that, for functions defined in
    recoforge only, "no locator available" leaves the function uncached instead of
    failing the import. Other packages' functions behave as before.
    """
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover - numba internals moved
        return
    original = Dispatcher.enable_caching
    if getattr(original, "_recoforge_uncached", False):
        return

    def enable_caching(self: Any) -> None:
        try:
            original(self)
        except RuntimeError as exc:
            module = getattr(self.py_func, "__module__", "") or ""
            if "no locator available" not in str(exc) or not module.startswith("recoforge"):
                raise

    enable_caching._recoforge_uncached = True  # type: ignore[attr-defined]
    Dispatcher.enable_caching = enable_caching  # type: ignore[method-assign]


#: the decision taken at import ("keep", "set" or "none")
DECISION = configure()
