"""One thread setting for every compute back-end: numba, BLAS and torch.

The setting comes from, in order: :func:`set_num_threads` (the CLI's ``--threads`` calls
it), the ``RECOFORGE_NUM_THREADS`` environment variable, or every core numba may use.

How each back-end follows it, without toggling process-wide pools per call:

- numba: its thread count is *thread-local*, so kernels enter :func:`numba_threads`, which
  sets the calling thread's count (capped by a model's own ``n_threads`` when given) and
  restores it; no other thread is affected, which keeps it safe inside a server.
- BLAS/OpenMP pools (via ``threadpoolctl`` when installed) and torch's intra-op pool are
  process-wide: they are set once, when the setting is made, never per call; the thread
  that makes the setting also gets it as its own numba count.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator

from recoforge.errors import ConfigError

ENV_VAR = "RECOFORGE_NUM_THREADS"
_log = logging.getLogger(__name__)
_setting: list[int] = []  # the current setting, once made (a list: no global statement)


def max_threads() -> int:
    """The most threads numba may run (``NUMBA_NUM_THREADS``, default: the cores)."""
    import numba

    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


def _parse(value: object, source: str) -> int:
    message = f"{source} must be a whole number of threads, got {value!r}"
    if isinstance(value, str):
        value = value.strip()
        if not value.lstrip("-").isdigit():
            raise ConfigError(message)
        number = int(value)
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    else:
        raise ConfigError(message)
    if number < 0:
        raise ConfigError(f"{source} must be >= 0 (0: every core), got {number}")
    return number


def get_num_threads() -> int:
    """The thread count every back-end follows (>= 1)."""
    if not _setting:
        raw = os.environ.get(ENV_VAR, "").strip()
        set_num_threads(_parse(raw, ENV_VAR) if raw else 0)
    return _setting[0]


def set_num_threads(n: int | None = None) -> int:
    """Set the one thread count; ``None`` or 0 means every core. Returns the count used.

    BLAS pools (through ``threadpoolctl``) and torch (when imported) are set here, once.
    """
    requested = 0 if n is None else _parse(n, "threads")
    limit = max_threads()
    count = limit if requested == 0 else min(requested, limit)
    if requested > limit:
        _log.warning("threads=%d is above the %d numba may use; using %d",
                     requested, limit, limit)
    _setting[:] = [count]
    _apply_process_pools(count)
    return count


def _apply_process_pools(count: int) -> None:
    import numba

    # the calling thread's numba (OpenMP) count: torch's intra-op pool shares OpenMP here,
    # and a parallel kernel run outside numba_threads() would otherwise reset it
    numba.set_num_threads(count)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - depends on the environment
        pass
    else:
        threadpool_limits(limits=count)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(count)


def resolve(model_threads: int = 0) -> int:
    """Threads for one model call: its own ``n_threads`` cap when > 0, else the setting."""
    setting = get_num_threads()
    return setting if model_threads <= 0 else min(int(model_threads), max_threads())


@contextlib.contextmanager
def numba_threads(model_threads: int = 0) -> Iterator[int]:
    """Run numba-parallel kernels in this block on :func:`resolve` threads.

    numba's count is thread-local: only the calling thread changes, and it is restored.
    """
    import numba

    previous = numba.get_num_threads()
    count = resolve(model_threads)
    numba.set_num_threads(count)
    try:
        yield count
    finally:
        numba.set_num_threads(previous)
