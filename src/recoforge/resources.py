"""Memory estimates checked before allocating, and MemoryError reported in one line.

A model states what its big arrays will take and calls :func:`check_allocation` before
creating them; a step that would need more than the machine's available memory is
refused with a :class:`~recoforge.errors.ResourceError` naming what was being allocated
and how to shrink it, instead of swapping the machine to a halt, being killed by the
kernel, or failing deep inside numpy or numba. :func:`memory_guard` (a context manager
and decorator) and :func:`guard_fit` (for ``_fit`` methods) turn a MemoryError that
still happens into the same one-line error.

Available memory is ``MemAvailable`` from ``/proc/meminfo`` (Linux), else the free
physical pages from ``os.sysconf``; ``None`` where neither exists, and then nothing is
refused in advance. Reading it costs one small file read.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from recoforge.errors import ResourceError

MEMINFO = Path("/proc/meminfo")
GIB = 2**30

F = TypeVar("F", bound=Callable[..., Any])


def meminfo_available(meminfo: Path = MEMINFO) -> int | None:
    """``MemAvailable`` of a meminfo file in bytes, or None where it cannot be read."""
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def sysconf_available() -> int | None:
    """Free physical memory from ``os.sysconf`` in bytes, or None where unsupported."""
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES")
        page_size = os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    if pages <= 0 or page_size <= 0:
        return None
    return int(pages) * int(page_size)


def available_memory_bytes(meminfo: Path = MEMINFO) -> int | None:
    """Memory a new allocation can take without swapping, in bytes; None when unknown."""
    found = meminfo_available(meminfo)
    return found if found is not None else sysconf_available()


def format_bytes(n_bytes: float) -> str:
    """``n_bytes`` in GiB (MiB below one GiB), for messages."""
    if n_bytes >= GIB:
        return f"{n_bytes / GIB:.1f} GiB"
    return f"{n_bytes / 2**20:.1f} MiB"


def check_allocation(n_bytes: float, what: str, *, advice: str = "",
                     available: int | None = None) -> None:
    """Raise ResourceError if ``n_bytes`` exceeds the available memory.

    Parameters
    ----------
    n_bytes : float
        Estimated peak size of the allocation (a float, so estimates cannot overflow).
    what : str
        What is being allocated, e.g. ``"als factor matrices (9000 x 64 float32)"``.
    advice : str
        What the user can change to need less, appended after ``"; "``.
    available : int, optional
        The budget in bytes; default :func:`available_memory_bytes`. Nothing is refused
        when it is unknown.
    """
    budget = available_memory_bytes() if available is None else available
    if budget is None or n_bytes <= budget:
        return
    message = (f"{what} needs about {format_bytes(n_bytes)} but only "
               f"{format_bytes(budget)} is available")
    raise ResourceError(f"{message}; {advice}" if advice else message)


def _memory_error_in(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, a MemoryError (numba wraps them in a
    SystemError when a compiled function fails to allocate)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, MemoryError):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


@contextlib.contextmanager
def memory_guard(what: str) -> Iterator[None]:
    """Turn a MemoryError raised inside the block into a one-line ResourceError.

    A ResourceError passes unchanged; a SystemError caused by a MemoryError (numba) is
    converted too; every other exception passes unchanged. Usable as a decorator as well
    (``@memory_guard("...")``)::

        with memory_guard("fitting ease"):
            gram = np.zeros((n, n))
    """
    try:
        yield
    except ResourceError:
        raise
    except (MemoryError, SystemError) as exc:
        if not _memory_error_in(exc):
            raise
        raise ResourceError(f"{what} ran out of memory; use smaller parameters (fewer "
                            f"factors, neighbours or items) or a machine with more "
                            f"memory") from None


def guard_fit(method: F) -> F:
    """Decorator for a model's ``_fit``: MemoryError becomes a one-line ResourceError
    naming the model (``self.name``)."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with memory_guard(f"fitting {getattr(self, 'name', type(self).__name__)}"):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def dense_bytes(*shape: int, itemsize: int = 4) -> float:
    """Bytes of a dense array of ``shape`` (a float: no integer overflow)."""
    total = float(itemsize)
    for side in shape:
        total *= float(side)
    return total
