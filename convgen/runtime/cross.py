"""Kernels built as programs for another architecture or compiler, run under an emulator.

Where convgen cannot load a library into Python (AArch64 under QEMU, a program built by tcc),
a kernel is linked with its generated harness (:func:`convgen.codegen.harness`: inputs raw
on stdin, outputs raw on stdout) into one program, built with the strict flags, and each call
runs it (under ``qemu-aarch64`` for AArch64).  :class:`ProgramKernel` is a
:class:`~convgen.runtime.call.KernelCall`, so :func:`convgen.verify.check_kernel` judges it
exactly as it judges the cffi build.  The kernel is also compiled alone with
``-fstack-usage`` so that its footprint (:class:`Footprint`: code and constants, stack) is
the one the cross toolchain measures, not an estimate.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codegen import GeneratedKernel, harness
from ..errors import BuildError, ConvgenError
from .call import KernelCall
from .cbuild import STRICT_FLAGS

__all__ = ["ARCHES", "Footprint", "ProgramKernel", "Toolchain", "footprint", "toolchain"]


@dataclass(frozen=True)
class Toolchain:
    """How to build and run a program: the compiler and its flags, the emulator that runs
    the program (none: the host runs it) and the Debian packages that provide both."""

    arch: str
    compiler: str
    flags: tuple
    runner: tuple = ()
    packages: tuple = ()
    size: str = "size"          # binutils' size of this architecture
    measures: bool = True       # GCC's -fstack-usage: the kernel's footprint is measured

    def missing(self) -> str | None:
        """What is not installed, with the packages that provide it, or None."""
        tools = (self.compiler, *self.runner[:1], *([self.size] if self.measures else []))
        absent = [tool for tool in tools if shutil.which(tool) is None]
        if not absent:
            return None
        install = (f"; install them with: apt-get install {' '.join(self.packages)}"
                   if self.packages else "")
        return f"--arch {self.arch} needs {', '.join(absent)}, not found on PATH{install}"


#: The architectures ``convgen verify --arch`` builds for, other than the host's own cffi
#: build (``native``).  AArch64: a static Linux program under QEMU's user mode (its -O3
#: vectorizes for NEON, the baseline of ARMv8-A).
ARCHES = {
    "aarch64": Toolchain("aarch64", "aarch64-linux-gnu-gcc", ("-O3", "-static"),
                         ("qemu-aarch64",), ("gcc-aarch64-linux-gnu", "qemu-user"),
                         "aarch64-linux-gnu-size"),
}


def toolchain(arch: str) -> Toolchain:
    """The toolchain of ``arch``, installed; a :class:`ConvgenError` names what is missing
    and the packages to install."""
    if arch not in ARCHES:
        raise ConvgenError(f"--arch {arch!r} must be one of native, "
                           f"{', '.join(ARCHES)}")
    found = ARCHES[arch]
    missing = found.missing()
    if missing:
        raise ConvgenError(missing)
    return found


@dataclass(frozen=True)
class Footprint:
    """What one kernel takes on its target, measured with the target's toolchain: code and
    constants (``text``, the flash of a microcontroller), writable data, and the stack of
    its function (``-fstack-usage``; ``dynamic`` when the compiler could not bound it)."""

    text: int
    data: int
    stack: int
    dynamic: bool = False

    def __str__(self) -> str:
        stack = f"{self.stack:,} B" + (" (dynamic)" if self.dynamic else "")
        return f"code+constants {self.text:,} B, data {self.data:,} B, stack {stack}"


def _run(command: list, what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"{what} failed:\n{result.stderr}", command, result.stderr)


def footprint(chain: Toolchain, folder: Path, kernel: GeneratedKernel) -> Footprint:
    """Compile the kernel alone in ``folder`` (its ``.c``/``.h`` there) and measure it."""
    source = folder / f"{kernel.name}.c"
    obj = folder / f"{kernel.name}.o"
    flags = [f for f in chain.flags if f != "-static"]
    _run([chain.compiler, *STRICT_FLAGS, *flags, "-fstack-usage", "-c", str(source), "-o",
          str(obj)], f"compiling {source.name} for {chain.arch}")
    sizes = subprocess.run([chain.size, "-A", str(obj)], capture_output=True, text=True,
                           check=True).stdout
    text = data = 0
    for line in sizes.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[1].isdigit():
            section = fields[0]
            if section.startswith((".text", ".rodata")):
                text += int(fields[1])
            elif section.startswith((".data", ".bss")):
                data += int(fields[1])
    stack, dynamic = 0, False
    usage = obj.with_suffix(".su")
    for line in usage.read_text().splitlines():  # file:line:col:function  bytes  qualifier
        found = re.search(r":(\w+)\s+(\d+)\s+(\S+)$", line)
        if found and found.group(1) == kernel.name:
            stack, dynamic = int(found.group(2)), "dynamic" in found.group(3)
    return Footprint(text, data, stack, dynamic)


class ProgramKernel(KernelCall):
    """A kernel linked with its harness into a program of ``chain``; each call runs it."""

    def __init__(self, generated: GeneratedKernel, chain: Toolchain,
                 timeout: float = 600) -> None:
        super().__init__(generated)
        self.target = f"c-{chain.arch}"
        self.chain, self.timeout = chain, timeout
        self.schedule = generated.schedule
        folder = Path(tempfile.mkdtemp(prefix=f"convgen-{chain.arch}-"))
        self._finalizer = weakref.finalize(self, shutil.rmtree, folder, True)
        (folder / f"{generated.name}.c").write_text(generated.source)
        (folder / f"{generated.name}.h").write_text(generated.header)
        (folder / "harness.c").write_text(harness(generated))
        self.program = folder / "kernel"
        _run([chain.compiler, *STRICT_FLAGS, *chain.flags, str(folder / "harness.c"),
              str(folder / f"{generated.name}.c"), "-o", str(self.program), "-lm"],
             f"building {generated.name} for {chain.arch}")
        self.footprint = footprint(chain, folder, generated) if chain.measures else None

    def _run(self, inputs, outputs, batch) -> None:
        data = b"".join(np.ascontiguousarray(a).tobytes() for a in inputs)
        command = [*self.chain.runner, str(self.program), str(batch)]
        try:
            done = subprocess.run(command, input=data, capture_output=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise ConvgenError(f"{self.name} on {self.chain.arch} did not finish in "
                               f"{self.timeout} s") from None
        if done.returncode != 0:
            raise ConvgenError(f"{self.name} on {self.chain.arch} exited with status "
                               f"{done.returncode}: "
                               f"{done.stderr.decode(errors='replace')[:500]}")
        offset = 0
        for array in outputs:
            size = array.nbytes
            chunk = done.stdout[offset:offset + size]
            if len(chunk) != size:
                raise ConvgenError(f"{self.name} on {self.chain.arch} wrote "
                                   f"{len(done.stdout)} bytes; expected "
                                   f"{sum(a.nbytes for a in outputs)}")
            array[...] = np.frombuffer(chunk, dtype=array.dtype).reshape(array.shape)
            offset += size
        if offset != len(done.stdout):
            raise ConvgenError(f"{self.name} on {self.chain.arch} wrote {len(done.stdout)} "
                               f"bytes; expected {offset}")
