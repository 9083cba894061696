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

import dataclasses
import platform
import re
import shutil
import subprocess
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codegen import GeneratedKernel, harness
from ..errors import BuildError, ConvgenError, RunError
from ..resources import templates_dir
from ..spec import DTYPE_SIZES
from .call import KernelCall
from .cbuild import STRICT_FLAGS

__all__ = ["ARCHES", "Footprint", "ProgramKernel", "Toolchain", "footprint", "measure",
           "measurer", "toolchain"]


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
    board: str | None = None    # bare metal: the folder under templates/ of the start-up
    #                             code (startup.c) and memory map (link.ld) of the board
    libraries: tuple = ()       # libraries the program links, checked with -print-file-name

    def missing(self, what: str | None = None) -> str | None:
        """What is not installed, with the packages that provide it, or None; ``what``
        needs it (default ``--arch ARCH``)."""
        tools = (self.compiler, *self.runner[:1], *([self.size] if self.measures else []))
        absent = [tool for tool in tools if shutil.which(tool) is None]
        if not absent:
            absent = [library for library in self.libraries if not Path(subprocess.run(
                [self.compiler, f"-print-file-name={library}"], capture_output=True,
                text=True).stdout.strip()).is_absolute()]
        if not absent:
            return None
        install = (f"; install them with: apt-get install {' '.join(self.packages)}"
                   if self.packages else "")
        return (f"{what or '--arch ' + self.arch} needs {', '.join(absent)}, not found on "
                f"PATH{install}")


#: The architectures ``convgen verify --arch`` builds for, other than the host's own cffi
#: build (``native``).  AArch64: a static Linux program under QEMU's user mode (its -O3
#: vectorizes for NEON, the baseline of ARMv8-A).  Cortex-M4F: a bare-metal program for
#: QEMU's MPS2 AN386 board, at -O2 with the single-precision FPU and the hard-float ABI;
#: newlib's stdio reaches the host through semihosting.
ARCHES = {
    "aarch64": Toolchain("aarch64", "aarch64-linux-gnu-gcc", ("-O3", "-static"),
                         ("qemu-aarch64",), ("gcc-aarch64-linux-gnu", "qemu-user"),
                         "aarch64-linux-gnu-size"),
    "cortex-m4": Toolchain(
        "cortex-m4", "arm-none-eabi-gcc",
        ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16", "-O2"),
        ("qemu-system-arm", "-M", "mps2-an386", "-display", "none", "-monitor", "none",
         "-serial", "none", "-semihosting-config", "enable=on,target=native", "-kernel"),
        ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm"),
        "arm-none-eabi-size", board="boards/mps2-an386",
        libraries=("librdimon_nano.a", "libc_nano.a")),
}


def measurer(arch: str | None = None) -> Toolchain:
    """The toolchain that measures a report's footprint, installed: ``arch``'s compiler and
    ``size`` (no emulator: nothing runs), or for ``None`` the host's gcc at ``-O3`` for its
    architecture's baseline (no ``-march=native``: the figure does not depend on which CPU
    of the architecture generated it).  A :class:`ConvgenError` names what is missing and
    the packages to install."""
    if arch is None:
        found = Toolchain(platform.machine() or "host", "gcc", ("-O3",),
                          packages=("gcc", "binutils"))
    else:
        chain = ARCHES[arch]
        found = dataclasses.replace(chain, runner=(), board=None, packages=tuple(
            p for p in chain.packages if not p.startswith("qemu")),
            libraries=chain.libraries[-1:])  # newlib's C library: its headers
    missing = found.missing(f"measuring a kernel's footprint on {found.arch}")
    if missing:
        raise ConvgenError(missing)
    return found


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
    constants (``text``, the flash of a microcontroller), writable data, the stack of its
    function (``-fstack-usage``; ``dynamic`` when the compiler could not bound it), and the
    caller's scratch buffer it takes (the header's ``NAME_SCRATCH_SIZE``, in bytes)."""

    text: int
    data: int
    stack: int
    dynamic: bool = False
    scratch: int = 0

    def __str__(self) -> str:
        stack = f"{self.stack:,} B" + (" (dynamic)" if self.dynamic else "")
        scratch = f", scratch {self.scratch:,} B" if self.scratch else ""
        return f"code+constants {self.text:,} B, data {self.data:,} B, stack {stack}{scratch}"


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
    scratch = kernel.problem.scratch * DTYPE_SIZES[kernel.dtype] \
        if "scratch" in kernel.arguments else 0
    return Footprint(text, data, stack, dynamic, scratch)


def measure(kernel: GeneratedKernel, chain: Toolchain) -> tuple[Footprint, str]:
    """``kernel``'s :class:`Footprint` on ``chain``'s architecture, compiled alone in a
    temporary folder, and the compiler that measured it (its name and version)."""
    with tempfile.TemporaryDirectory(prefix=f"convgen-{chain.arch}-") as name:
        folder = Path(name)
        (folder / f"{kernel.name}.c").write_text(kernel.source)
        (folder / f"{kernel.name}.h").write_text(kernel.header)
        found = footprint(chain, folder, kernel)
    version = subprocess.run([chain.compiler, "-dumpfullversion"], capture_output=True,
                             text=True).stdout.strip()
    return found, f"{chain.compiler} {version}".strip()


def _board(chain: Toolchain, folder: Path) -> list[str]:
    """A bare-metal program's start-up object (compiled into ``folder``: GNU C, it places
    the vector table) and link flags: the board's memory map, newlib-nano with
    semihosting."""
    if chain.board is None:
        return []
    board = templates_dir() / chain.board
    startup = folder / "startup.o"
    _run([chain.compiler, "-std=gnu99", "-Wall", "-Wextra", "-Werror", *chain.flags, "-c",
          str(board / "startup.c"), "-o", str(startup)], f"compiling {chain.arch} start-up")
    return [str(startup), "--specs=nano.specs", "--specs=rdimon.specs", "-nostartfiles",
            "-T", str(board / "link.ld")]


_BLOCK = re.compile(r"0x([0-9a-f]+):")
_EXECUTED = re.compile(r"^Trace \d+: 0x[0-9a-f]+ \[[0-9a-f]+/([0-9a-f]+)/", re.M)


def _kernel_instructions(log: str, name: str) -> int:
    """Instructions executed in blocks that start in function ``name`` (or a part of it),
    from QEMU's ``in_asm`` and ``exec`` log."""
    blocks: dict[int, tuple[str, int]] = {}  # start address -> (symbol, instructions)
    for listing in log.split("IN:")[1:]:
        head, _, body = listing.partition("\n")
        addresses = [int(m.group(1), 16) for m in map(_BLOCK.match, body.splitlines()) if m]
        if addresses:
            blocks[addresses[0]] = (head.strip(), len(addresses))
    ours = {start: count for start, (symbol, count) in blocks.items()
            if symbol == name or symbol.startswith(name + ".")}
    return sum(ours.get(int(m.group(1), 16), 0) for m in _EXECUTED.finditer(log))


#: The harness's exit statuses (``templates/c/harness.c.j2``) and the start-up code's.
_STATUS = {2: "bad batch line", 3: "out of memory for the test tensors", 4: "short input",
           5: "short output", 70: "a fault on the microcontroller"}


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
              str(folder / f"{generated.name}.c"), *_board(chain, folder), "-o",
              str(self.program), "-lm"], f"building {generated.name} for {chain.arch}")
        self.footprint = footprint(chain, folder, generated) if chain.measures else None

    def instructions(self, x, weight=None, bias=None) -> int:
        """The instructions the kernel's function executes on one call with these inputs,
        counted by the emulator: QEMU logs every translated block (``in_asm``: its
        instructions, under the symbol it starts in) and every block it runs (``exec``,
        unchained so that each run is logged); blocks in the kernel's function (its name,
        or a part GCC split off it: ``NAME.part.0``) count.  The harness's reading and
        writing do not."""
        if not self.chain.runner:
            raise ConvgenError(f"counting instructions needs an emulator; {self.chain.arch} "
                               "runs on the host")
        with tempfile.TemporaryDirectory(prefix="convgen-count-") as folder:
            log = Path(folder) / "qemu.log"
            self._logged = ["-d", "in_asm,exec,nochain", "-D", str(log)]
            try:
                self(x, weight, bias)
            finally:
                self._logged = []
            return _kernel_instructions(log.read_text(errors="replace"), self.name)

    _logged: list = []

    def _run(self, inputs, outputs, batch) -> None:
        data = f"{batch}\n".encode() + b"".join(np.ascontiguousarray(a).tobytes()
                                                 for a in inputs)
        runner = self.chain.runner
        command = [*runner[:1], *self._logged, *runner[1:], str(self.program)]
        try:
            done = subprocess.run(command, input=data, capture_output=True,
                                  timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise RunError(f"{self.name} on {self.chain.arch} did not finish in "
                               f"{self.timeout} s") from None
        if done.returncode != 0:
            said = done.stderr.decode(errors="replace").strip()[:500]
            raise RunError(f"{self.name} on {self.chain.arch} exited with status "
                           f"{done.returncode} ({_STATUS.get(done.returncode, 'see stderr')})"
                           + (f": {said}" if said else ""))
        offset = 0
        for array in outputs:
            size = array.nbytes
            chunk = done.stdout[offset:offset + size]
            if len(chunk) != size:
                raise RunError(f"{self.name} on {self.chain.arch} wrote "
                                   f"{len(done.stdout)} bytes; expected "
                                   f"{sum(a.nbytes for a in outputs)}")
            array[...] = np.frombuffer(chunk, dtype=array.dtype).reshape(array.shape)
            offset += size
        if offset != len(done.stdout):
            raise RunError(f"{self.name} on {self.chain.arch} wrote {len(done.stdout)} "
                               f"bytes; expected {offset}")
