"""C source -> loaded cffi module, through a content-addressed disk cache.

The kernel's ``.c`` is first compiled on its own with the strict flags (``-std=c99 -Wall
-Wextra -Werror -pedantic`` plus the optimization flags), which gives the exact compiler
command and stderr for :class:`~convgen.errors.BuildError`; the object is then linked into a
cffi API-mode extension.  Cache key: sha256 over the sources, the flags, the compiler's
version string, the machine (and CPU model with ``-march=native``) and the generator hash.
Entries are built in a temporary folder beside the cache and moved in with one atomic
``os.replace``, so concurrent builders of one kernel never see a half-written entry; an entry
that fails to load is rebuilt with a warning.  ``CONVGEN_CACHE_DIR`` sets the location.
"""

from __future__ import annotations

import abc
import hashlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from .codegen import GeneratedKernel, generator_hash
from .errors import BuildError, SpecError

__all__ = ["DEFAULT_FLAGS", "STRICT_FLAGS", "Kernel", "KernelCall", "build_modules",
           "cache_dir", "compile", "compile_kernels", "compiler"]

STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
DEFAULT_FLAGS = ("-O3", "-march=native")
_FORBIDDEN = ("-ffast-math", "-Ofast", "-funsafe-math-optimizations")


def cache_dir() -> Path:
    """``$CONVGEN_CACHE_DIR``, else ``$XDG_CACHE_HOME/convgen``, else ``~/.cache/convgen``."""
    if os.environ.get("CONVGEN_CACHE_DIR"):
        return Path(os.environ["CONVGEN_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "convgen"


def compiler() -> str:
    """The C compiler: ``$CC`` or the one Python was built with."""
    return os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]


@cache
def _compiler_version(cc: str) -> str:
    try:
        result = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise BuildError(f"C compiler {cc!r} is not usable: {error}", [cc, "--version"],
                         getattr(error, "stderr", "") or "") from None
    return result.stdout.splitlines()[0] if result.stdout else ""


@cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "cpu model", "Model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _check_flags(flags: Sequence[str]) -> tuple[str, ...]:
    flags = tuple(flags)
    bad = [f for f in flags if f in _FORBIDDEN]
    if bad:
        raise BuildError(f"flags {bad} break IEEE semantics; convgen never builds with them",
                         list(flags))
    return flags


def _key(kernels: Sequence[GeneratedKernel], flags: tuple[str, ...], cc: str) -> str:
    digest = hashlib.sha256()
    parts = [generator_hash(), cc, _compiler_version(cc), platform.machine(), sys.version,
             " ".join(STRICT_FLAGS), " ".join(flags)]
    if "-march=native" in flags:
        parts.append(_cpu_model())
    for part in parts:
        digest.update(part.encode() + b"\0")
    for kernel in kernels:
        for text in (kernel.name, kernel.source, kernel.header, kernel.cdef):
            digest.update(text.encode() + b"\0")
    return digest.hexdigest()


def _compile_object(cc: str, source: Path, flags: tuple[str, ...], openmp: bool) -> Path:
    obj = source.with_suffix(".o")
    command = [cc, *STRICT_FLAGS, *flags, *(["-fopenmp"] if openmp else []), "-fPIC",
               "-I", str(source.parent), "-c", str(source), "-o", str(obj)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        kept = Path(tempfile.mkdtemp(prefix="convgen-failed-")) / source.name
        shutil.copy(source, kept)
        shutil.copy(source.with_suffix(".h"), kept.with_suffix(".h"))
        raise BuildError(f"compiling {source.name} failed (source kept at {kept}):\n"
                         f"{result.stderr}", command, result.stderr, str(kept))
    return obj


def _build(kernels: Sequence[GeneratedKernel], folder: Path, module: str,
           flags: tuple[str, ...], cc: str, openmp: bool) -> None:
    import cffi

    objects = []
    for kernel in kernels:
        source = folder / f"{kernel.name}.c"
        source.write_text(kernel.source)
        source.with_suffix(".h").write_text(kernel.header)
        objects.append(str(_compile_object(cc, source, flags, openmp)))
    ffi = cffi.FFI()
    ffi.cdef("\n".join(k.cdef for k in kernels))
    includes = "\n".join(f'#include "{k.name}.h"' for k in kernels)
    link = ["-fopenmp"] if openmp else []
    ffi.set_source(module, includes, include_dirs=[str(folder)], extra_objects=objects,
                   extra_compile_args=["-O2"], extra_link_args=link, libraries=["m"])
    try:
        ffi.compile(tmpdir=str(folder), verbose=False)
    except Exception as error:  # cffi reports through setuptools' own error types
        raise BuildError(f"linking the cffi module {module} failed: {error}",
                         ["cffi", module], str(error), str(folder)) from None


def _load(folder: Path, module: str):
    matches = sorted(folder.glob(f"{module}*.so")) + sorted(folder.glob(f"{module}*.pyd"))
    if not matches:
        raise ImportError(f"no compiled module {module} in {folder}")
    spec = importlib.util.spec_from_file_location(module, matches[0])
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def build_modules(kernels: Sequence[GeneratedKernel], flags: Sequence[str] = DEFAULT_FLAGS,
                  openmp: bool = False):
    """Compile ``kernels`` into one cffi module (cached) and return it (``.lib``, ``.ffi``)."""
    flags, cc = _check_flags(flags), compiler()
    key = _key(kernels, flags + (("-fopenmp",) if openmp else ()), cc)
    module = f"_convgen_{key[:24]}"
    root = cache_dir()
    entry = root / key[:2] / key
    if entry.is_dir():
        try:
            return _load(entry, module)
        except Exception as error:  # a corrupt entry: rebuild it
            warnings.warn(f"convgen: cache entry {entry} is unusable ({error}); rebuilding",
                          RuntimeWarning, stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
    entry.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=entry.parent))
    try:
        _build(kernels, work, module, flags, cc, openmp)
        try:
            os.replace(work, entry)
        except OSError:  # another process finished the same entry first: use theirs
            pass
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return _load(entry, module)


# --------------------------------------------------------------------------- callables


class KernelCall(abc.ABC):
    """What every compiled kernel does as a Python callable on NumPy arrays.

    ``kernel(x, weight, bias=None) -> y`` for convolutions (PyTorch's weight layouts; ``bias``
    required exactly when the layer has one), ``kernel(x) -> y`` for pools, ``(y, indices)``
    with ``return_indices``.  ``x`` is ``(N, C, *spatial)`` with the spatial sizes the kernel
    was generated for.  Arrays must have the kernel's dtype and be C-contiguous: nothing is
    converted or copied behind your back.  Targets implement :meth:`_run`.
    """

    target = ""

    def __init__(self, generated):
        self.generated = generated
        self._expect = None
        self._indices = "indices" in generated.arguments  # (y, indices) is returned

    @property
    def name(self) -> str:
        return self.generated.name

    def __repr__(self) -> str:
        g = self.generated
        return (f"<convgen {self.target} kernel {g.name}: {g.layer.describe()} on "
                f"{g.input_shape}, {g.dtype}>")

    def _array(self, label: str, value, shape: tuple):
        g = self.generated
        if not isinstance(value, np.ndarray):
            raise SpecError(f"{g.name}: {label} must be a numpy.ndarray, got "
                            f"{type(value).__name__}")
        if value.dtype != np.dtype(g.dtype):
            raise SpecError(f"{g.name}: {label} has dtype {value.dtype}; the kernel was "
                            f"generated for {g.dtype}")
        if value.shape != shape:
            raise SpecError(f"{g.name}: {label} has shape {value.shape}; expected {shape}")
        if not value.flags.c_contiguous:
            raise SpecError(f"{g.name}: {label} is not C-contiguous; pass "
                            "numpy.ascontiguousarray(...) yourself (no silent copies)")
        return value

    def _expected(self) -> tuple:
        """(dtype, x's shape without the batch, weight's shape or None, bias's or None)."""
        g = self.generated
        return (np.dtype(g.dtype), tuple(g.input_shape),
                tuple(g.layer.weight_shape) if "w" in g.arguments else None,
                (g.layer.out_channels,) if "b" in g.arguments else None)

    def _accepted(self, x, weight, bias):
        """The input arrays when all of them are exactly what the kernel takes, else None
        (then :meth:`_inputs` finds the error): the cheap check every call makes."""
        if self._expect is None:
            self._expect = self._expected()
        dtype, x_shape, w_shape, b_shape = self._expect
        inputs = [x]
        for value, shape in ((weight, w_shape), (bias, b_shape)):
            if shape is None:
                if value is not None:
                    return None
            else:
                inputs.append(value)
        for value in inputs:
            if type(value) is not np.ndarray or value.dtype != dtype or \
                    not value.flags.c_contiguous:
                return None
        if x.shape[1:] != x_shape or len(x.shape) != len(x_shape) + 1:
            return None
        if (w_shape is not None and weight.shape != w_shape) or \
                (b_shape is not None and bias.shape != b_shape):
            return None
        return inputs

    def _inputs(self, x, weight, bias) -> list:
        """The checked input arrays in argument order: x, [weight], [bias]."""
        accepted = self._accepted(x, weight, bias)
        if accepted is not None:
            return accepted
        g = self.generated
        if not hasattr(x, "shape") or len(x.shape) != len(g.input_shape) + 1:
            raise SpecError(f"{g.name}: x must be a numpy.ndarray of shape (N, "
                            f"{', '.join(map(str, g.input_shape))})")
        inputs = [self._array("x", x, (x.shape[0], *g.input_shape))]
        if "w" in g.arguments:
            inputs.append(self._array("weight", weight, tuple(g.layer.weight_shape)))
        elif weight is not None:
            raise SpecError(f"{g.name}: {type(g.layer).__name__} takes no weight")
        if "b" in g.arguments:
            if bias is None:
                raise SpecError(f"{g.name}: the layer has a bias; pass bias of shape "
                                f"({g.layer.out_channels},)")
            inputs.append(self._array("bias", bias, (g.layer.out_channels,)))
        elif bias is not None:
            raise SpecError(f"{g.name}: the layer has no bias (bias=False); got a bias")
        return inputs

    def __call__(self, x, weight=None, bias=None):
        return self._call(x, weight, bias, np.empty, self._run)

    def _call(self, x, weight, bias, empty, run):
        """Check the inputs, allocate the outputs with ``empty(shape, dtype)``, then
        ``run(inputs, outputs, batch)`` unless the batch is empty."""
        g = self.generated
        inputs = self._inputs(x, weight, bias)
        batch = x.shape[0]
        shape = (batch, *g.output_shape)
        outputs = [empty(shape, g.dtype)]
        if self._indices:
            outputs.append(empty(shape, np.int64))
        if batch:
            run(inputs, outputs, batch)
        return tuple(outputs) if self._indices else outputs[0]

    @abc.abstractmethod
    def _run(self, inputs: list, outputs: list, batch: int) -> None:
        """Launch the kernel on checked ``inputs`` into allocated ``outputs``."""


class Kernel(KernelCall):
    """A C kernel compiled through cffi (see :class:`KernelCall` for the calling rules)."""

    target = "c"

    def __init__(self, generated: GeneratedKernel, module):
        super().__init__(generated)
        self._function = getattr(module.lib, generated.name)
        self._ffi = module.ffi
        # cffi array types by NumPy dtype, looked up once: per call only from_buffer remains
        self._types = {np.dtype(name): module.ffi.typeof(f"{ctype}[]") for name, ctype in
                       (("float32", "float"), ("float64", "double"), ("int8", "int8_t"),
                        ("uint8", "uint8_t"), ("int64", "int64_t"))}

    def __call__(self, x, weight=None, bias=None):
        """The common case inlined (every argument as the kernel takes it, one output):
        about 3 us from Python for a tiny kernel; anything else goes the checked way."""
        inputs = self._accepted(x, weight, bias)
        if inputs is None or self._indices:
            return super().__call__(x, weight, bias)
        dtype = self._expect[0]
        batch = x.shape[0]
        y = np.empty((batch, *self.generated.output_shape), dtype)
        if batch:
            pointer, kind = self._ffi.from_buffer, self._types[dtype]
            self._function(*[pointer(kind, a) for a in inputs],
                           pointer(kind, y, require_writable=True), batch)
        return y

    def _pointer(self, array, const: bool):
        return self._ffi.from_buffer(self._types[array.dtype], array, require_writable=not const)

    def _run(self, inputs, outputs, batch) -> None:
        pointer, types = self._ffi.from_buffer, self._types
        self._function(*[pointer(types[a.dtype], a) for a in inputs],
                       *[pointer(types[a.dtype], a, require_writable=True) for a in outputs],
                       batch)


_LOADED: dict = {}


def distinct(kernels) -> dict:
    """``{name: kernel}``, one per name; two different kernels under one name is an error
    (one would silently run as the other)."""
    unique: dict = {}
    for kernel in kernels:
        other = unique.setdefault(kernel.name, kernel)
        if other.source != kernel.source:
            raise SpecError(f"two different kernels are both named {kernel.name!r} "
                            f"({other.layer.describe()} on {other.input_shape} and "
                            f"{kernel.layer.describe()} on {kernel.input_shape}); "
                            "give each a distinct name")
    return unique


def compile_kernels(layers: Sequence[tuple], dtype: str = "float32",
                    flags: Sequence[str] = DEFAULT_FLAGS, openmp: bool = False,
                    schedule: str = "auto") -> list[Kernel]:
    """Generate and build several ``(layer, input_shape[, name])`` kernels in one module
    (``schedule``: see :func:`convgen.codegen.generate`)."""
    from .codegen import generate

    generated = [generate(item[0], item[1], dtype=dtype,
                          name=item[2] if len(item) > 2 else None, schedule=schedule)
                 for item in layers]
    unique = list(distinct(generated).values())  # one definition per name
    module = build_modules(unique, flags, openmp)
    return [Kernel(g, module) for g in generated]


def compile(layer, input_shape: Sequence, target: str = "c", dtype: str = "float32",
            name: str | None = None, flags: Sequence[str] = DEFAULT_FLAGS,
            openmp: bool = False, schedule: str | None = None) -> KernelCall:
    """Generate, build (cached) and load the kernel of ``layer`` for ``input_shape``.

    ``target="c"`` builds the C kernel through cffi.  ``flags`` replace the optimization flags
    (``-O3 -march=native``); the strict warning flags always apply and ``-ffast-math`` is
    refused.  ``openmp=True`` parallelizes over batch and channels.  ``schedule`` is
    ``"auto"`` (the default: :func:`convgen.codegen.choose_schedule`), ``"reference"``,
    ``"blocked"`` or ``"packed"``.

    ``target="cuda"`` compiles the CUDA kernel with nvcc and launches it through PyCUDA on
    the GPU; ``target="cuda-cpu"`` runs the same CUDA text on the CPU through OpenCL (PoCL).
    ``schedule`` picks a CUDA entry point, ``"tiled"`` (convolutions) or ``"direct"``; the
    default is the first the generator lists (tiled where a convolution has one).
    """
    if target == "c":
        return compile_kernels([(layer, input_shape, name)], dtype, flags, openmp,
                               schedule or "auto")[0]
    if target not in ("cuda", "cuda-cpu"):
        raise SpecError(f"target={target!r} must be 'c', 'cuda' (GPU, PyCUDA) or 'cuda-cpu' "
                        "(the CUDA text on the CPU, PyOpenCL + PoCL)")
    if tuple(flags) != DEFAULT_FLAGS or openmp:
        raise SpecError(f"flags= and openmp= apply to target='c', not {target!r}")
    from .cudagen import generate_cuda

    generated = generate_cuda(layer, input_shape, dtype=dtype, name=name)
    if target == "cuda":
        from .gpu import GpuKernel

        return GpuKernel(generated, schedule)
    from .opencl import CpuKernel

    return CpuKernel(generated, "pocl", schedule)
