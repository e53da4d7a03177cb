"""Download public dataset archives into a local cache, verified by checksum.

Archives are streamed to a temporary file beside their final place, hashed on the way,
and renamed into place only when the MD5 digest matches; a mismatch deletes the file and
raises :class:`~recoforge.errors.DataError`. Extraction refuses members that would land
outside the target folder. Memory is O(1) in the archive size.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from recoforge.errors import DataError

CACHE_ENV_VAR = "RECOFORGE_CACHE"
_CHUNK_BYTES = 1 << 20
_MD5_PATTERN = re.compile(r"\b([0-9a-fA-F]{32})\b")


def default_cache_dir() -> Path:
    """``$RECOFORGE_CACHE`` when set, else ``~/.cache/recoforge``."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recoforge"


def file_md5(path: Path) -> str:
    """Hex MD5 digest of a file, read in 1 MiB blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_published_md5(url: str) -> str:
    """Read a published checksum file (``MD5 (x.zip) = <hex>`` or ``<hex>  x.zip``)."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed scheme
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"cannot fetch checksum file {url}: {exc}") from None
    match = _MD5_PATTERN.search(text)
    if match is None:
        raise DataError(f"checksum file {url} holds no MD5 digest")
    return match.group(1).lower()


def download_file(url: str, target: Path, *, md5: str) -> Path:
    """Download ``url`` to ``target`` unless a file with the right MD5 is already there.

    The bytes go to a temporary file in ``target``'s folder, which is renamed to
    ``target`` only after its digest equals ``md5``.

    Raises
    ------
    DataError
        When the download fails or the digest differs (the partial file is deleted).
    """
    target = Path(target)
    if target.is_file() and file_md5(target) == md5.lower():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                            suffix=".part")
    tmp_path = Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(descriptor, "wb") as handle, \
                urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310
            for block in iter(lambda: response.read(_CHUNK_BYTES), b""):
                digest.update(block)
                handle.write(block)
    except (urllib.error.URLError, OSError) as exc:
        tmp_path.unlink(missing_ok=True)
        raise DataError(f"download of {url} failed: {exc}") from None
    if digest.hexdigest() != md5.lower():
        tmp_path.unlink(missing_ok=True)
        raise DataError(f"checksum mismatch for {url}: expected MD5 {md5.lower()}, got "
                        f"{digest.hexdigest()}; the file was deleted")
    os.replace(tmp_path, target)
    return target


def extract_zip(archive: Path, dest_dir: Path) -> None:
    """Extract ``archive`` into ``dest_dir`` through a temporary folder.

    Top-level entries are moved into place only after the whole archive has been
    extracted, so an interrupted extraction leaves no half-written dataset folder.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".extract-"))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                root = staging.resolve()
                for member in zf.namelist():
                    if not (staging / member).resolve().is_relative_to(root):
                        raise DataError(f"{archive.name}: member {member!r} would be "
                                        f"extracted outside {dest_dir}")
                zf.extractall(staging)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{archive}: not a valid zip archive ({exc})") from None
        for entry in staging.iterdir():
            final = dest_dir / entry.name
            if final.is_dir():
                shutil.rmtree(final)
            elif final.exists():
                final.unlink()
            os.replace(entry, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
