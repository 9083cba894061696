"""CUDA source -> nvcc: strict compile checks, per-kernel resource usage, and cubins.

:func:`check` compiles a kernel's ``.cu`` for every architecture of :data:`ARCHS` with
``-Werror all-warnings`` and ptxas told to report (``-v``) and to treat spills and local
memory as errors (``-warn-spills -warn-lmem-usage -Werror``); it returns the registers,
shared memory, stack and spills of each entry point.  :func:`cubin` builds the binary the
GPU runtime loads, with ``extern "C"`` around the text as PyCUDA does.  Both need only the
compiler (no driver, no GPU) and cache their results by content (source, flags, nvcc's
version, generator hash) under :func:`convgen.runtime.cache.cache_dir`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from ..codegen import generator_hash
from ..cudagen import CudaKernel
from ..errors import BuildError
from .cache import checksum_ok, content_key, entry_path, keep_failed, prune_stale, record_checksum

__all__ = ["ARCHS", "CHECK_FLAGS", "Usage", "check", "cubin", "nvcc", "nvcc_version"]

#: Architectures every generated kernel is checked for: Ampere (A100) and Hopper (H100).
ARCHS = ("sm_80", "sm_90")
CHECK_FLAGS = ("-Werror", "all-warnings", "-Xptxas", "-v,-warn-spills,-warn-lmem-usage,-Werror")
_FALLBACK = "/usr/local/cuda/bin/nvcc"
_FIND = ("set NVCC to its path, put it on PATH or set CUDA_HOME, or generate C only "
         "(convgen generate --target c)")


def nvcc() -> str:
    """``$NVCC``, else ``$CUDA_HOME/bin/nvcc``, else ``nvcc`` on PATH, else
    ``/usr/local/cuda/bin/nvcc``."""
    candidates = [os.environ.get("NVCC"),
                  os.environ.get("CUDA_HOME") and str(Path(os.environ["CUDA_HOME"]) / "bin" /
                                                      "nvcc"),
                  shutil.which("nvcc"), _FALLBACK]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise BuildError(f"nvcc (the CUDA compiler) was not found: {_FIND}", ["nvcc"], "")


@cache
def nvcc_version(path: str) -> str:
    """``release 13.0, V13.0.88``: the last line of ``nvcc --version`` that names it."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise BuildError(f"nvcc {path!r} is not usable: {error}", [path, "--version"],
                         getattr(error, "stderr", "") or "") from None
    found = re.search(r"release [^\n]*", out)
    return found.group(0).strip() if found else out.strip().splitlines()[-1]


@dataclass(frozen=True)
class Usage:
    """What ptxas said about one entry point on one architecture."""

    entry: str
    arch: str
    registers: int
    shared_bytes: int
    stack_bytes: int
    spill_stores: int
    spill_loads: int
    barriers: int


def _cached(kind: str, key: str) -> Path:
    return entry_path(key, "cuda", kind)


def _store(path: Path, data: bytes) -> None:
    """Write an entry and its checksum, each atomically (the checksum first: an entry seen
    without its checksum is stale, never trusted)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    prune_stale(path.parent, ".tmp-")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(handle, "wb") as stream:
        stream.write(data)
    record_checksum(Path(temporary))
    os.replace(f"{temporary}.sha256", f"{path}.sha256")
    os.replace(temporary, path)


def _fetch(path: Path) -> bytes | None:
    """An entry's bytes when its checksum holds; else None (it is removed, with a warning
    when it existed)."""
    if not os.path.lexists(path):
        return None
    problem = checksum_ok(path)
    if not problem:
        return path.read_bytes()
    warnings.warn(f"convgen: nvcc cache entry {path} is unusable ({problem}); rebuilding",
                  RuntimeWarning, stacklevel=3)
    for stale in (path, Path(f"{path}.sha256")):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return None


def _run(command: list[str], source: Path, what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        kept = keep_failed(source) / source.name
        raise BuildError(f"nvcc rejected {what}; source kept at {kept}:\n{done.stderr}",
                         command, done.stderr, str(kept))
    return done.stdout + done.stderr


def _parse(text: str, kernel: CudaKernel) -> list[Usage]:
    usages, current = [], None
    for line in text.splitlines():
        compiling = re.search(r"Compiling entry function '(\w+)' for '(\w+)'", line)
        if compiling:
            mangled, arch = compiling.groups()
            entry = next((x.entry for x in kernel.launches
                          if f"{len(x.entry)}{x.entry}" in mangled or x.entry == mangled),
                         mangled)
            current = dict(entry=entry, arch=arch, registers=0, shared_bytes=0, stack_bytes=0,
                           spill_stores=0, spill_loads=0, barriers=0)
            continue
        if current is None:
            continue
        frame = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                          r"(\d+) bytes spill loads", line)
        if frame:
            current.update(stack_bytes=int(frame[1]), spill_stores=int(frame[2]),
                           spill_loads=int(frame[3]))
        used = re.search(r"Used (\d+) registers", line)
        if used:
            current["registers"] = int(used[1])
            barriers = re.search(r"used (\d+) barriers", line)
            shared = re.search(r"(\d+) bytes smem", line)
            current["barriers"] = int(barriers[1]) if barriers else 0
            current["shared_bytes"] = int(shared[1]) if shared else 0
            usages.append(Usage(**current))
            current = None
    return sorted(usages, key=lambda u: (u.entry, u.arch))


def check(kernel: CudaKernel, archs: Sequence[str] = ARCHS) -> list[Usage]:
    """Compile ``kernel`` for ``archs`` under the strict flags; the usage of each entry point.

    Raises :class:`~convgen.errors.BuildError` (with the command, nvcc's output and the kept
    source) on any warning, spill or use of local memory.
    """
    path = nvcc()
    gencode = [f"-gencode=arch=compute_{a[3:]},code={a}" for a in archs]
    key = content_key("check", kernel.source, *gencode, *CHECK_FLAGS, nvcc_version(path),
               generator_hash())
    entry = _cached("check", key)
    data = _fetch(entry)
    if data is not None:
        try:
            return [Usage(**u) for u in json.loads(data.decode())]
        except (ValueError, TypeError):
            entry.unlink(missing_ok=True)  # a corrupt entry: check again
    with tempfile.TemporaryDirectory(prefix="convgen-nvcc-") as work:
        source = Path(work) / f"{kernel.name}.cu"
        source.write_text(kernel.source, encoding="utf-8")
        command = [path, "-fatbin", *gencode, *CHECK_FLAGS, str(source), "-o",
                   str(Path(work) / f"{kernel.name}.fatbin")]
        usages = _parse(_run(command, source, f"{kernel.name}.cu"), kernel)
    expected = len(kernel.launches) * len(archs)
    if len(usages) != expected:
        raise BuildError(f"ptxas reported {len(usages)} entry points for {kernel.name}.cu; "
                         f"expected {expected}", command, "")
    _store(entry, json.dumps([asdict(u) for u in usages]).encode())
    return usages


def cubin(kernel: CudaKernel, arch: str) -> bytes:
    """The cubin of ``kernel`` for ``arch`` (``sm_90``...), with ``extern "C"`` names."""
    path = nvcc()
    if not re.fullmatch(r"sm_\d+[a-z]?", arch):
        raise BuildError(f"arch={arch!r} must look like 'sm_90'", [path], "")
    text = f'extern "C" {{\n{kernel.source}}}\n'
    flags = ["-cubin", f"-arch={arch}", "-O3", *CHECK_FLAGS[:2]]
    key = content_key("cubin", text, *flags, nvcc_version(path), generator_hash())
    entry = _cached("cubin", key)
    data = _fetch(entry)
    if data is not None:
        return data
    with tempfile.TemporaryDirectory(prefix="convgen-nvcc-") as work:
        source, binary = Path(work) / f"{kernel.name}.cu", Path(work) / f"{kernel.name}.cubin"
        source.write_text(text, encoding="utf-8")
        _run([path, *flags, str(source), "-o", str(binary)], source, f"{kernel.name}.cu")
        data = binary.read_bytes()
    _store(entry, data)
    return data
