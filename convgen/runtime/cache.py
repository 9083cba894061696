"""The content-addressed disk cache shared by the C builder and nvcc.

Keys are sha256 over NUL-terminated text parts (sources, flags, compiler version, generator
hash...); an entry lives at ``cache_dir() / *folders / key[:2] / key``.  ``CONVGEN_CACHE_DIR``
sets the location.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_dir", "content_key", "entry_path"]


def cache_dir() -> Path:
    """``$CONVGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/convgen``, else ``~/.cache/convgen``."""
    if os.environ.get("CONVGEN_CACHE_DIR"):
        return Path(os.environ["CONVGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convgen"


def content_key(*parts: str) -> str:
    """The sha256 hex digest of ``parts``, each followed by a NUL byte."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()


def entry_path(key: str, *folders: str) -> Path:
    """Where the entry of ``key`` lives: ``cache_dir() / *folders / key[:2] / key``."""
    return cache_dir().joinpath(*folders, key[:2], key)
