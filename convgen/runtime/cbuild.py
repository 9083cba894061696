"""C source -> loaded cffi module, through a content-addressed disk cache.

The kernel's ``.c`` is first compiled on its own with the strict flags (``-std=c99 -Wall
-Wextra -Werror -pedantic`` plus the optimization flags), which gives the exact compiler
command and stderr for :class:`~convgen.errors.BuildError`; the object is then linked into a
cffi API-mode extension.  Cache key: sha256 over the sources, the flags, the compiler's
version string, the machine (and CPU model with ``-march=native``) and the generator hash.
Entries are built in a temporary folder beside the cache and moved in with one atomic
``os.replace``, so concurrent builders of one kernel never see a half-written entry; an entry
that fails to load is rebuilt with a warning.  ``CONVGEN_CACHE_DIR`` sets the location
(:mod:`convgen.runtime.cache`).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import threading
import warnings
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np

from ..codegen import GeneratedKernel, generate, generator_hash
from ..errors import BuildError
from ..isa import ladder
from .cache import checksum_ok, content_key, entry_path, keep_failed, prune_stale, record_checksum
from .call import KernelCall, distinct

__all__ = ["DEFAULT_FLAGS", "STRICT_FLAGS", "Kernel", "build_modules", "compile_kernels",
           "compiler", "cpu_model", "isa_rung"]

STRICT_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")
DEFAULT_FLAGS = ("-O3", "-march=native")
_FORBIDDEN = ("-ffast-math", "-Ofast", "-funsafe-math-optimizations")


def compiler() -> str:
    """The C compiler: ``$CC`` or the one Python was built with."""
    return os.environ.get("CC") or (sysconfig.get_config_var("CC") or "cc").split()[0]


def isa_rung(flags: Sequence[str] = DEFAULT_FLAGS, cc: str | None = None) -> str:
    """The rung of the ISA ladder (:data:`convgen.isa.ISAS`) that kernels built by ``cc``
    with ``flags`` take: the compiler's own preprocessor answers."""
    cc = cc or compiler()
    command = [cc, *flags, "-E", "-P", "-x", "c", "-"]
    done = subprocess.run(command, input=ladder(), capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{cc} cannot preprocess with {' '.join(flags)}:\n{done.stderr}",
                         command, done.stderr)
    return done.stdout.split("convgen_rung", 1)[1].split()[0]


@cache
def _compiler_version(cc: str) -> str:
    try:
        result = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise BuildError(f"C compiler {cc!r} is not usable: {error}", [cc, "--version"],
                         getattr(error, "stderr", "") or "") from None
    return result.stdout.splitlines()[0] if result.stdout else ""


@cache
def cpu_model() -> str:
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
    parts = [generator_hash(), cc, _compiler_version(cc), platform.machine(), sys.version,
             " ".join(STRICT_FLAGS), " ".join(flags)]
    if "-march=native" in flags:
        parts.append(cpu_model())
    for kernel in kernels:
        parts += [kernel.name, kernel.source, kernel.header, kernel.cdef]
    return content_key(*parts)


def _compile_object(cc: str, source: Path, flags: tuple[str, ...], openmp: bool) -> Path:
    """The kernel alone, strict.  No ``-I``: the kernel's own header is found beside it by
    its quoted include, and no file of the build folder can stand in for a system header."""
    obj = source.with_suffix(".o")
    command = [cc, *STRICT_FLAGS, *flags, *(["-fopenmp"] if openmp else []), "-fPIC",
               "-c", str(source), "-o", str(obj)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        kept = keep_failed(source, source.with_suffix(".h")) / source.name
        raise BuildError(f"compiling {source.name} failed (source kept at {kept}):\n"
                         f"{result.stderr}", command, result.stderr, str(kept))
    return obj


def _link_flags() -> list[str]:
    """Shared-object flags: calls inside the module bind to the module's own kernels
    (``-Bsymbolic``), so no library loaded before it can interpose on a kernel's name."""
    if sys.platform == "darwin":
        return ["-bundle", "-undefined", "dynamic_lookup"]
    return ["-shared", "-Wl,-Bsymbolic"]


def _build(kernels: Sequence[GeneratedKernel], folder: Path, module: str,
           flags: tuple[str, ...], cc: str, openmp: bool) -> Path:
    """Compile and link the module in ``folder`` with absolute paths only (no ``chdir``:
    builds from several threads of one process are safe); returns the shared object."""
    import cffi
    from cffi.recompiler import make_c_source

    objects = []
    for kernel in kernels:
        source = folder / f"{kernel.name}.c"
        source.write_text(kernel.source)
        source.with_suffix(".h").write_text(kernel.header)
        objects.append(str(_compile_object(cc, source, flags, openmp)))
    ffi = cffi.FFI()
    ffi.cdef("\n".join(_aliased(k) for k in kernels))
    wrapper = folder / f"{module}.c"
    # The wrapper never sees a kernel's name as a C identifier and includes no file of the
    # folder: it calls each kernel under a private alias bound to the kernel's symbol by an
    # asm label, so no declaration from Python.h's headers (index, select, y0...) clashes.
    label = "_" if sys.platform == "darwin" else ""
    preamble = "#include <stdint.h>\n" + "\n".join(
        f'{_aliased(k)[:-1]} __asm__("{label}{k.name}");' for k in kernels)
    make_c_source(ffi, module, preamble, str(wrapper))
    target = folder / f"{module}{sysconfig.get_config_var('EXT_SUFFIX') or '.so'}"
    command = [cc, "-O2", "-fPIC", f"-I{sysconfig.get_paths()['include']}",
               *_link_flags(), str(wrapper), *objects, "-o", str(target), "-lm",
               *(["-fopenmp"] if openmp else [])]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise BuildError(f"linking the cffi module {module} failed:\n{result.stderr}",
                         command, result.stderr, str(folder))
    record_checksum(target)
    return target


def alias(name: str) -> str:
    """The private name the cffi module calls kernel ``name`` by (``_convgen_`` is a
    reserved prefix: no kernel name can collide with an alias)."""
    return f"_convgen_{name}"


def _aliased(kernel: GeneratedKernel) -> str:
    """The kernel's prototype (``cdef``) under its alias."""
    head = f"void {kernel.name}("
    if not kernel.cdef.startswith(head):
        raise BuildError(f"{kernel.name}: unexpected prototype {kernel.cdef!r}", [], "")
    return f"void {alias(kernel.name)}(" + kernel.cdef[len(head):]


def _load(folder: Path, module: str):
    """Import the entry's module after checking it is the file that was built."""
    matches = sorted(folder.glob(f"{module}*.so")) + sorted(folder.glob(f"{module}*.pyd"))
    if not matches:
        raise ImportError(f"no compiled module {module} in {folder}")
    problem = checksum_ok(matches[0])
    if problem:
        raise ImportError(problem)
    spec = importlib.util.spec_from_file_location(module, matches[0])
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


_LOADED: dict = {}
_LOCK = threading.Lock()


def build_modules(kernels: Sequence[GeneratedKernel], flags: Sequence[str] = DEFAULT_FLAGS,
                  openmp: bool = False):
    """Compile ``kernels`` into one cffi module (cached) and return it (``.lib``, ``.ffi``).

    Thread-safe: an entry is built in a private folder and moved into place atomically;
    a module is loaded once a process (a loaded extension cannot be reloaded)."""
    flags, cc = _check_flags(flags), compiler()
    key = _key(kernels, flags + (("-fopenmp",) if openmp else ()), cc)
    module = f"_convgen_{key[:24]}"
    with _LOCK:
        if module in _LOADED:
            return _LOADED[module]
    entry = entry_path(key)
    if entry.is_dir():
        try:
            return _remember(module, _load(entry, module))
        except Exception as error:  # a corrupt entry: never load it; rebuild it
            warnings.warn(f"convgen: cache entry {entry} is unusable ({error}); rebuilding",
                          RuntimeWarning, stacklevel=2)
            shutil.rmtree(entry, ignore_errors=True)
    entry.parent.mkdir(parents=True, exist_ok=True)
    prune_stale(entry.parent)
    work = Path(tempfile.mkdtemp(prefix=f".build-{key[:12]}-", dir=entry.parent))
    try:
        _build(kernels, work, module, flags, cc, openmp)
        try:
            os.replace(work, entry)
        except OSError:  # another builder finished the same entry first: use theirs
            pass
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return _remember(module, _load(entry, module))


def _remember(module: str, loaded):
    with _LOCK:
        return _LOADED.setdefault(module, loaded)


# --------------------------------------------------------------------------- the callable


class Kernel(KernelCall):
    """A C kernel compiled through cffi (see :class:`KernelCall` for the calling rules)."""

    target = "c"

    def __init__(self, generated: GeneratedKernel, module):
        super().__init__(generated)
        self._function = getattr(module.lib, alias(generated.name))
        self._ffi = module.ffi
        # the caller's scratch a kernel of the mcu profile takes: one buffer a call (calls
        # from several threads never share one), a bound call's own
        self._scratch = generated.problem.scratch if "scratch" in generated.arguments else 0
        # cffi array types by NumPy dtype, looked up once: per call only from_buffer remains
        self._types = {np.dtype(name): module.ffi.typeof(f"{ctype}[]") for name, ctype in
                       (("float32", "float"), ("float64", "double"), ("int8", "int8_t"),
                        ("uint8", "uint8_t"), ("int32", "int32_t"), ("int64", "int64_t"))}

    def __call__(self, x, weight=None, bias=None, out=None):
        """The common case inlined (a non-empty batch, every argument as the kernel takes
        it, one output, ``out`` absent or exactly right): about 3 us from Python for a tiny
        kernel; anything else goes the checked way, which names the error."""
        inputs = self._accepted(x, weight, bias)
        if inputs is None or self._indices or not x.shape[0]:
            if inputs is None and out is None and not self._indices and \
                    type(x) is np.ndarray and x.shape == self._expect[1]:
                return self(x[np.newaxis], weight, bias)[0]  # a single sample
            return super().__call__(x, weight, bias, out)
        batch, dtype, y_dtype = x.shape[0], self._expect[0], self._expect[5]
        pointer, types = self._ffi.from_buffer, self._types
        pointers = [pointer(types[a.dtype], a) for a in inputs]
        scratch = [pointer(types[dtype], a, require_writable=True)
                   for a in self._scratch_arrays(dtype)]
        kind = types[y_dtype]
        if out is None:
            y = np.empty((batch, *self._output_shape), y_dtype)
            self._function(*pointers, pointer(kind, y, require_writable=True), *scratch, batch)
            return y
        if self._fits(out, batch):
            target = pointer(kind, out, require_writable=True)
            if _apart(target, pointers):
                self._function(*pointers, target, *scratch, batch)
                return out
        return super().__call__(x, weight, bias, out)

    def _scratch_arrays(self, dtype) -> list:
        """A fresh scratch buffer for one call ([] for a kernel that takes none)."""
        return [np.empty(self._scratch, dtype)] if self._scratch else []

    def _fits(self, out, batch: int) -> bool:
        """Whether ``out`` is exactly the output array of ``batch`` (its overlap aside)."""
        return (type(out) is np.ndarray and out.dtype == self._expect[5]
                and out.flags.c_contiguous and out.flags.writeable
                and out.shape[1:] == self._output_shape and out.shape[0] == batch)

    def bind(self, x, weight=None, bias=None, out=None):
        """See :meth:`KernelCall.bind`: here the bound call is the C function on cffi
        pointers made once (no checks, no allocation), then ``return out``."""
        inputs, outputs, batch, result = self._prepare(x, weight, bias, out, np.empty)
        if not batch:
            return lambda: result
        function = self._function
        scratch = self._scratch_arrays(inputs[0].dtype)
        arguments = (*[self._pointer(a, True) for a in inputs],
                     *[self._pointer(a, False) for a in [*outputs, *scratch]], batch)

        def bound():
            function(*arguments)
            return result

        bound.arrays = (*inputs, *outputs, *scratch)  # alive as long as the call and pointers
        return bound

    def _pointer(self, array, const: bool):
        return self._ffi.from_buffer(self._types[array.dtype], array, require_writable=not const)

    def _run(self, inputs, outputs, batch) -> None:
        pointer, types = self._ffi.from_buffer, self._types
        scratch = self._scratch_arrays(inputs[0].dtype)
        self._function(*[pointer(types[a.dtype], a) for a in inputs],
                       *[pointer(types[a.dtype], a, require_writable=True)
                         for a in [*outputs, *scratch]], batch)


def _apart(target, pointers) -> bool:
    """Whether the cffi array ``target`` shares no element with any of ``pointers``
    (contiguous buffers: comparing address ranges is exact, and cheaper than NumPy's)."""
    end = target + len(target)
    for other in pointers:
        if other < end and target < other + len(other):
            return False
    return True


def compile_kernels(layers: Sequence[tuple], dtype: str | None = None,
                    flags: Sequence[str] = DEFAULT_FLAGS, openmp: bool = False,
                    schedule: str = "auto", profile: str = "default") -> list[Kernel]:
    """Generate and build several ``(layer, input_shape[, name[, schedule]])`` kernels in one
    module (``schedule`` and ``profile``: see :func:`convgen.codegen.generate`; an item's
    own schedule overrides ``schedule``)."""
    generated = [generate(item[0], item[1], dtype=dtype,
                          name=item[2] if len(item) > 2 else None,
                          schedule=item[3] if len(item) > 3 else schedule, profile=profile)
                 for item in layers]
    unique = list(distinct(generated).values())  # one definition per name
    module = build_modules(unique, flags, openmp)
    return [Kernel(g, module) for g in generated]

