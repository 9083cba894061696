"""Helpers the test modules share: the repository root, strict compiles with the flags the
build itself uses, and the CUDA targets this machine can run (or the reason it cannot, for
visible skips)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from convgen.runtime import gpu, pocl
from convgen.runtime.cbuild import STRICT_FLAGS

ROOT = Path(__file__).resolve().parent.parent

#: A two-layer model (a padded 3x3 convolution, then a max pool with indices) for the tests
#: of whole layer files.
NET_TOML = """
[[model]]
name = "net"
input_shape = [3, 12, 12]
[[model.layers]]
type = "Conv2d"
in_channels = 3
out_channels = 16
kernel_size = 3
padding = 1
[[model.layers]]
type = "MaxPool2d"
kernel_size = 2
return_indices = true
"""
#: One standalone layer, ``one``.
ONE_TOML = """
[[layer]]
name = "one"
type = "Conv2d"
input_shape = [3, 8, 8]
in_channels = 3
out_channels = 16
kernel_size = 3
"""


def needs_compiler(compiler: str) -> None:
    """Skip, saying why, where ``compiler`` is not installed."""
    if shutil.which(compiler) is None:
        pytest.skip(f"{compiler} is not installed")


def compile_strict(compiler, kernel, folder, extras, optimize="-O3"):
    """Compile ``kernel`` alone with the build's strict flags (``STRICT_FLAGS``) and
    ``optimize``, once per entry of ``extras`` (a list of extra flag lists); fail with the
    compiler's message on any warning."""
    (folder / f"{kernel.name}.c").write_text(kernel.source)
    (folder / f"{kernel.name}.h").write_text(kernel.header)
    for extra in extras:
        command = [compiler, *STRICT_FLAGS, optimize, *extra, "-c",
                   str(folder / f"{kernel.name}.c"), "-o", str(folder / "k.o")]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 0, (kernel.layer, kernel.dtype, extra, done.stderr)


def cuda_kernels(target: str, items, dtype: str):
    """Every entry point of ``items`` on ``target`` (``cuda-cpu`` or ``cuda``), or a skip
    that says why the target is unavailable here."""
    if target == "cuda":
        reason = gpu.available()
        if reason:
            pytest.skip(f"no GPU run: {reason}")
        return gpu.compile_gpu(items, dtype)
    reason = pocl.available("pocl")
    if reason:
        pytest.skip(f"no CUDA-on-CPU run: {reason}")
    return pocl.compile_cpu(items, dtype)
