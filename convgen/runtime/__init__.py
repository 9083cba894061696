"""Compiled kernels as Python callables: build, cache, load and run.

One direction of imports, bottom to top (nothing here imports :mod:`convgen.verify` or any
other module above the generators):

- :mod:`~convgen.runtime.call`: :class:`KernelCall`, the callable every target implements;
- :mod:`~convgen.runtime.cache`: the content-addressed disk cache (``CONVGEN_CACHE_DIR``);
- :mod:`~convgen.runtime.cbuild`: C source -> cffi module (:class:`Kernel`);
- :mod:`~convgen.runtime.nvcc`: CUDA source -> nvcc checks and cubins;
- :mod:`~convgen.runtime.gpu`: CUDA kernels on a GPU through PyCUDA (:class:`GpuKernel`);
- :mod:`~convgen.runtime.pocl`: the CUDA text on a CPU through OpenCL (:class:`CpuKernel`);
- this package: :func:`compile`, which picks one of them by target.

The optional PyCUDA, PyOpenCL and cffi are imported only when a kernel needs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..cudagen import generate_cuda
from ..errors import SpecError
from ..spec import Sequential
from ..spec.network import Network
from .cache import cache_dir
from .call import KernelCall, distinct
from .cbuild import DEFAULT_FLAGS, STRICT_FLAGS, Kernel, build_modules, compile_kernels, compiler
from .gpu import GpuKernel, compile_gpu
from .network import NetworkCall, compile_network
from .pocl import CpuKernel, compile_cpu

__all__ = ["DEFAULT_FLAGS", "STRICT_FLAGS", "CpuKernel", "GpuKernel", "Kernel", "KernelCall",
           "build_modules", "cache_dir", "compile", "compile_cpu", "compile_gpu",
           "compile_kernels", "compile_network", "compiler", "distinct", "NetworkCall"]


def compile(layer, input_shape: Sequence | None = None, target: str = "c",
            dtype: str | None = None, name: str | None = None,
            flags: Sequence[str] = DEFAULT_FLAGS, openmp: bool = False,
            schedule: str | None = None, profile: str = "default", weights=None):
    """Generate, build (cached) and load the kernel of ``layer`` for ``input_shape``.

    A whole network (a :class:`~convgen.spec.network.Network`, from
    :func:`convgen.load_onnx`, or a :class:`~convgen.spec.Sequential` with ``input_shape``
    and optionally its ``weights``) compiles to one C file and returns a
    :class:`NetworkCall` (:func:`compile_network`; the C target, ``flags`` and ``openmp``).

    ``target="c"`` builds the C kernel through cffi.  ``flags`` replace the optimization flags
    (``-O3 -march=native``); the strict warning flags always apply and ``-ffast-math`` is
    refused.  ``openmp=True`` parallelizes over batch and channels.  ``schedule`` is
    ``"auto"`` (the default: :func:`convgen.schedules.choose`), ``"reference"``,
    ``"blocked"``, ``"packed"``, ``"winograd"`` or ``"scalar"``.  ``profile="portable"``
    generates strict ISO C99 without extensions, ``profile="mcu"`` the same with the scalar
    schedule's register blocks over weights packed in a scratch buffer, which the call
    allocates for each call (:mod:`convgen.profiles`; the C target only).

    ``target="cuda"`` compiles the CUDA kernel with nvcc and launches it through PyCUDA on
    the GPU; ``target="cuda-cpu"`` runs the same CUDA text on the CPU through OpenCL (PoCL).
    ``schedule`` picks a CUDA entry point, ``"tiled"`` (convolutions) or ``"direct"``; the
    default is the first the generator lists (tiled where a convolution has one).
    """
    if isinstance(layer, (Network, Sequential)):
        if target != "c" or dtype not in (None, "float32") or name or schedule or \
                profile != "default":
            raise SpecError("a network compiles for target='c', float32, its own name, the "
                            "default schedules and profile")
        return compile_network(layer, input_shape, flags, openmp, weights)
    if input_shape is None:
        raise SpecError("compile(layer) needs input_shape=(N, C, *spatial) or (C, *spatial)")
    if weights is not None:
        raise SpecError("weights= applies to a Sequential")
    if target == "c":
        return compile_kernels([(layer, input_shape, name)], dtype, flags, openmp,
                               schedule or "auto", profile)[0]
    if target not in ("cuda", "cuda-cpu"):
        raise SpecError(f"target={target!r} must be 'c', 'cuda' (GPU, PyCUDA) or 'cuda-cpu' "
                        "(the CUDA text on the CPU, PyOpenCL + PoCL)")
    if tuple(flags) != DEFAULT_FLAGS or openmp or profile != "default":
        raise SpecError(f"flags=, openmp= and profile= apply to target='c', not {target!r}")
    generated = generate_cuda(layer, input_shape, dtype=dtype, name=name)
    if target == "cuda":
        return GpuKernel(generated, schedule)
    return CpuKernel(generated, "pocl", schedule)
