"""Model directories on disk: atomic replacement, writer locks, confined reads.

Writing
    A new model is written to ``.NAME.recoforge-tmp-PID-TOKEN`` beside the target, then
    swapped in. On Linux the swap is one ``renameat2(RENAME_EXCHANGE)``: the target path
    always names a complete model, old or new. Elsewhere (or where the filesystem cannot
    exchange) the old model is renamed aside to ``.NAME.recoforge-old-PID-TOKEN``, the new
    one renamed into place, and the old one removed; a writer killed between the two
    renames leaves the old model aside, and the next writer renames it back. Writers to
    one target are serialised by ``fcntl.flock`` on ``.NAME.recoforge-lock`` (kept; deleting
    lock files races). Folders matching our temporary pattern whose writer process is dead
    or which are older than :data:`STALE_SECONDS` are removed by the next writer.

    A versioned directory with a symlink pointer would also be atomic, but it turns the
    target into a symlink (which copying, archiving and the overwrite rule below treat
    differently) and leaves versions to collect; the exchange keeps a plain directory.

Overwrite rule
    An existing target is replaced only if it is a directory holding a recoforge manifest
    and nothing but the files its manifests list (recursively), or an empty directory.
    Files, symlinks, other directories and model directories holding foreign files are
    refused before anything is written or deleted.

Reading
    :class:`DirReader` opens the directory once and every file relative to that handle,
    each path component with ``O_NOFOLLOW``: manifest paths are plain relative names (no
    ``..``, no absolute paths, no symlinks), so reads never leave the directory, and a
    reader holding the old directory while a writer swaps sees one consistent model.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from recoforge.errors import ArtifactError

FORMAT = "recoforge-model"
MANIFEST = "manifest.json"
STALE_SECONDS = 15 * 60
LOCK_TIMEOUT_SECONDS = 600.0
MAX_MANIFEST_BYTES = 16 << 20
_COMPONENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_MAX_DEPTH = 8


# ---------------------------------------------------------------------- paths
def check_relative_path(rel: object, where: str) -> list[str]:
    """Components of a manifest path: plain names only, no ``..``, not absolute."""
    if not isinstance(rel, str) or not rel or len(rel) > 1024:
        raise ArtifactError(f"{where}: manifest names a bad file path {rel!r}")
    parts = rel.split("/")
    if len(parts) > _MAX_DEPTH or not all(_COMPONENT.fullmatch(p) for p in parts):
        raise ArtifactError(f"{where}: manifest path {rel!r} leaves the model directory or "
                            f"is not a plain relative name")
    return parts


class DirReader:
    """Read-only access to one model directory through a directory handle.

    Use as a context manager; :meth:`open_file` and :meth:`subdir` refuse symlinks and
    anything outside the directory.
    """

    def __init__(self, fd: int, where: str) -> None:
        self.fd = fd
        self.where = where
        info = os.fstat(fd)
        self.identity = (info.st_dev, info.st_ino)

    @classmethod
    def open(cls, path: Path) -> DirReader:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        except FileNotFoundError:
            raise ArtifactError(f"{path} is not a model directory (it does not exist)") \
                from None
        except NotADirectoryError:
            raise ArtifactError(f"{path} is not a model directory (it is a file)") from None
        except OSError as exc:
            raise ArtifactError(f"{path}: cannot open ({exc.strerror})") from None
        return cls(fd, str(path))

    def __enter__(self) -> DirReader:
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)

    def _open_at(self, parts: list[str], rel: str, directory: bool) -> int:
        fd = self.fd
        opened: list[int] = []
        try:
            for position, part in enumerate(parts):
                last = position == len(parts) - 1
                flags = os.O_RDONLY | os.O_NOFOLLOW
                if directory or not last:
                    flags |= os.O_DIRECTORY
                fd = os.open(part, flags, dir_fd=fd)
                opened.append(fd)
        except FileNotFoundError:
            raise ArtifactError(f"{self.where}: missing file {rel}") from None
        except OSError as exc:
            reason = "is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
            raise ArtifactError(f"{self.where}: cannot open {rel} ({reason})") from None
        finally:
            for extra in opened[:-1]:
                os.close(extra)
        return fd

    def open_file(self, rel: str) -> BinaryIO:
        """A regular file inside the directory, opened for binary reading."""
        fd = self._open_at(check_relative_path(rel, self.where), rel, directory=False)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ArtifactError(f"{self.where}: {rel} is not a regular file")
        return os.fdopen(fd, "rb")

    def subdir(self, name: str) -> DirReader:
        """A nested model directory (one plain component)."""
        parts = check_relative_path(name, self.where)
        if len(parts) != 1:
            raise ArtifactError(f"{self.where}: nested model {name!r} is not a plain name")
        return DirReader(self._open_at(parts, name, directory=True), f"{self.where}/{name}")

    def was_replaced(self, path: Path) -> bool:
        """Whether ``path`` now names another directory than the one we opened."""
        try:
            info = os.stat(path)
        except OSError:
            return True
        return (info.st_dev, info.st_ino) != self.identity


def swap_in_progress(path: Path) -> bool:
    """A writer has renamed ``path`` aside and not yet put the new model in place."""
    return not os.path.lexists(path) and any(_our_temporaries(path, kinds=("old",)))


# ---------------------------------------------------------------------- writing
def replace_directory(path: str | os.PathLike, write: Callable[[Path], None],
                      overwrite: bool) -> None:
    """Create directory ``path`` with ``write(tmp_dir)``, replacing a model atomically.

    Raises :class:`ArtifactError` before writing anything when ``path`` exists and may
    not be replaced (see the module docstring).
    """
    target = Path(os.path.abspath(path))
    if not target.name:
        raise ArtifactError(f"{path}: not a valid model directory path")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot create {target.parent}: {exc.strerror}") from None
    with _writer_lock(target):
        _recover_and_clean(target)
        check_replaceable(target, overwrite)
        tmp = target.parent / f".{target.name}.recoforge-tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            tmp.mkdir()
            write(tmp)
            _fsync_dir(tmp)
            _swap_in(tmp, target)
        except OSError as exc:
            raise ArtifactError(f"cannot write model to {target}: {exc.strerror or exc}") \
                from None
        finally:
            if os.path.lexists(tmp) and not os.path.islink(tmp):
                shutil.rmtree(tmp, ignore_errors=True)


def check_replaceable(target: Path, overwrite: bool) -> None:
    """Raise unless ``target`` is absent, an empty directory, or (with overwrite) a model."""
    if not os.path.lexists(target):
        return
    if os.path.islink(target):
        raise ArtifactError(f"{target} is a symbolic link; refusing to replace it")
    if not target.is_dir():
        raise ArtifactError(f"{target} exists and is not a directory; refusing to replace it")
    if not any(target.iterdir()):
        return
    if not overwrite:
        raise ArtifactError(f"{target} exists; pass overwrite=True (CLI: --overwrite) to "
                            f"replace it")
    foreign = foreign_entries(target)
    if foreign:
        raise ArtifactError(f"{target} is not a recoforge model directory or holds other "
                            f"files ({', '.join(foreign[:3])}); refusing to delete it")


def foreign_entries(directory: Path, depth: int = 0) -> list[str]:
    """Entries of ``directory`` that no recoforge manifest in it accounts for."""
    try:
        raw = (directory / MANIFEST).read_bytes() \
            if not os.path.islink(directory / MANIFEST) else b""
        manifest = json.loads(raw)
        listed = manifest["files"] if manifest.get("format") == FORMAT else None
    except (OSError, ValueError, KeyError, AttributeError, TypeError, RecursionError):
        listed = None
    if not isinstance(listed, dict) or depth > _MAX_DEPTH:
        return [f"{directory.name}/ (no valid {MANIFEST})"]
    own = {MANIFEST} | {str(k) for k in listed if "/" not in str(k)}
    nested = {str(k).split("/", 1)[0] for k in listed if "/" in str(k)}
    foreign = []
    for entry in sorted(directory.iterdir()):
        if entry.is_symlink() or (entry.name not in own and entry.name not in nested):
            foreign.append(entry.name)
        elif entry.name in nested:
            if entry.is_dir():
                foreign += [f"{entry.name}/{f}" for f in foreign_entries(entry, depth + 1)]
            else:
                foreign.append(entry.name)
        elif not entry.is_file():
            foreign.append(entry.name)
    return foreign


def write_file(path: Path, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Write bytes (or call a writer on the open file) and fsync."""
    with open(path, "xb") as fh:
        if callable(data):
            data(fh)
        else:
            fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@contextlib.contextmanager
def _writer_lock(target: Path) -> Iterator[None]:
    import fcntl

    lock_path = target.parent / f".{target.name}.recoforge-lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        raise ArtifactError(f"cannot create lock file {lock_path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_SECONDS
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ArtifactError(f"another process has been writing {target} for "
                                        f"{LOCK_TIMEOUT_SECONDS:.0f} s; giving up") from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)  # releases the lock


def _our_temporaries(target: Path, kinds: tuple[str, ...] = ("tmp", "old")
                     ) -> Iterator[tuple[Path, str, int]]:
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.recoforge-({'|'.join(kinds)})"
                         rf"-(\d+)-[0-9a-f]{{8}}$")
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            match = pattern.fullmatch(entry.name)
            if match and entry.is_dir() and not entry.is_symlink():
                yield entry, match.group(1), int(match.group(2))


def _is_stale(path: Path, pid: int) -> bool:
    if pid == os.getpid():
        return True  # we hold the writer lock: nothing of ours is in progress
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, another user's
    try:
        return time.time() - path.lstat().st_mtime > STALE_SECONDS
    except OSError:
        return False


def _recover_and_clean(target: Path) -> None:
    """Put back an old model stranded aside by a killed writer; remove stale temporaries."""
    leftovers = list(_our_temporaries(target))
    if not os.path.lexists(target):
        aside = sorted((p for p, kind, pid in leftovers if kind == "old" and _is_stale(p, pid)),
                       key=lambda p: p.lstat().st_mtime)
        if aside and not foreign_entries(aside[-1]):
            os.rename(aside[-1], target)
    for path, _, pid in leftovers:
        if os.path.lexists(path) and _is_stale(path, pid):
            shutil.rmtree(path, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _swap_in(tmp: Path, target: Path) -> None:
    if not os.path.lexists(target):
        os.rename(tmp, target)
    elif _exchange(tmp, target):
        shutil.rmtree(tmp)  # tmp now names the old model
    else:
        aside = target.parent / f".{target.name}.recoforge-old-{os.getpid()}-" \
                                f"{secrets.token_hex(4)}"
        os.rename(target, aside)
        try:
            os.rename(tmp, target)
        except OSError:
            os.rename(aside, target)
            raise
        shutil.rmtree(aside, ignore_errors=True)
    _fsync_dir(target.parent)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
