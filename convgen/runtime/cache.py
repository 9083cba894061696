"""The content-addressed disk cache shared by the C builder and nvcc.

Keys are sha256 over NUL-terminated text parts (sources, flags, compiler version, generator
hash...); an entry lives at ``cache_dir() / *folders / key[:2] / key``.  ``CONVGEN_CACHE_DIR``
sets the location.

Integrity: every file an entry is loaded from has its sha256 recorded beside it
(``<file>.sha256``) when the entry is written, and checked before it is read or loaded; a
missing or wrong checksum, or anything but a regular file (a FIFO, a link, a folder), makes the
entry stale: it is removed and rebuilt with a warning, never loaded.  A cache location that
cannot be created or written falls back to a private temporary folder, with a warning.

Leftovers: builds run in ``.build-*`` folders beside their entry; one older than
:data:`STALE_SECONDS` (an interrupted build) is removed by the next build in that folder.
Sources of failed builds are kept for the error message in ``cache_dir()/failed``, the newest
:data:`KEEP_FAILED` only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tempfile
import time
import warnings
from pathlib import Path

__all__ = ["KEEP_FAILED", "STALE_SECONDS", "cache_dir", "checksum_ok", "content_key",
           "entry_path", "keep_failed", "prune_stale", "record_checksum"]

#: A ``.build-*`` folder this old (seconds) belongs to a build that was interrupted.
STALE_SECONDS = 3600
#: Failed builds whose sources are kept (the newest ones).
KEEP_FAILED = 8

_FALLBACK: list[Path] = []
_CHECKED: dict[Path, str] = {}


def _configured() -> Path:
    if os.environ.get("CONVGEN_CACHE_DIR"):
        return Path(os.environ["CONVGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convgen"


def _writable(folder: Path) -> str:
    """"" when ``folder`` can hold cache entries, else why not."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-", delete=True)
        probe.close()
    except OSError as error:
        return f"{error.strerror or error}"
    return ""


def cache_dir() -> Path:
    """``$CONVGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/convgen``, else ``~/.cache/convgen``;
    a private temporary folder (with a warning) where that one cannot be written."""
    wanted = _configured()
    if wanted not in _CHECKED:  # probed once a process and location
        _CHECKED[wanted] = _writable(wanted)
    problem = _CHECKED[wanted]
    if not problem:
        return wanted
    if not _FALLBACK:  # warned once a process
        _FALLBACK.append(Path(tempfile.mkdtemp(prefix="convgen-cache-")))
        warnings.warn(f"convgen: the kernel cache {wanted} is not usable ({problem}); using "
                      f"{_FALLBACK[0]} for this process (set CONVGEN_CACHE_DIR to a writable "
                      "folder)", RuntimeWarning, stacklevel=2)
    return _FALLBACK[0]


def content_key(*parts: str) -> str:
    """The sha256 hex digest of ``parts``, each followed by a NUL byte."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def entry_path(key: str, *folders: str) -> Path:
    """Where the entry of ``key`` lives: ``cache_dir() / *folders / key[:2] / key``."""
    return cache_dir().joinpath(*folders, key[:2], key)


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def record_checksum(path: Path) -> None:
    """Write ``<path>.sha256`` (call before the entry is moved into place)."""
    Path(f"{path}.sha256").write_text(_digest(path) + "\n")


def checksum_ok(path: Path) -> str:
    """"" when ``path`` is a regular file whose sha256 matches its record, else why not (a
    FIFO or a link is never opened)."""
    try:
        mode = os.lstat(path).st_mode
        if not stat.S_ISREG(mode):
            return f"{path.name} is not a regular file"
        recorded = Path(f"{path}.sha256")
        if not stat.S_ISREG(os.lstat(recorded).st_mode):
            return f"{recorded.name} is not a regular file"
        expected = recorded.read_text().strip()
    except OSError as error:
        return f"{path.name}: {error.strerror or error}"
    if _digest(path) != expected:
        return f"{path.name} does not match its recorded sha256 (changed or truncated)"
    return ""


def prune_stale(folder: Path, prefix: str = ".build-") -> None:
    """Remove ``prefix*`` folders in ``folder`` older than :data:`STALE_SECONDS`."""
    now = time.time()
    try:
        candidates = list(folder.glob(f"{prefix}*"))
    except OSError:
        return
    for path in candidates:
        try:
            if now - os.lstat(path).st_mtime > STALE_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            continue


def keep_failed(*files: Path) -> Path:
    """Copy the sources of a failed build into a new folder of ``cache_dir()/failed`` (the
    newest :data:`KEEP_FAILED` are kept); returns the folder."""
    root = cache_dir() / "failed"
    root.mkdir(parents=True, exist_ok=True)
    kept = Path(tempfile.mkdtemp(prefix=f"{time.strftime('%Y%m%d-%H%M%S')}-", dir=root))
    for file in files:
        if file.is_file():
            shutil.copy(file, kept / file.name)
    folders = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for old in folders[:-KEEP_FAILED]:
        shutil.rmtree(old, ignore_errors=True)
    return kept
