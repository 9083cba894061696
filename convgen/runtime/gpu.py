"""Generated CUDA kernels on an NVIDIA GPU, through PyCUDA.

PyCUDA is the optional ``[cuda]`` extra and is imported here only, when a GPU kernel is
built; nothing else in convgen needs it.  The ``.cu`` text is compiled by
:func:`convgen.runtime.nvcc.cubin` for the device's own architecture (cached by content) and loaded
with ``module_from_buffer``; each call launches the entry point with the geometry the
generator derived.  Inputs may be NumPy arrays (copied to and from the device) or PyCUDA
``GPUArray``s (nothing leaves the device; the outputs are ``GPUArray``s).
"""

from __future__ import annotations

import atexit
import os
from functools import cache

from ..cudagen import CudaKernel, generate_cuda
from ..errors import ConvgenError, SpecError
from .call import KernelCall
from .nvcc import cubin

__all__ = ["EventClock", "GpuKernel", "available", "compile_gpu", "describe_device", "to_device"]

INSTALL = ("PyCUDA builds from source against the CUDA toolkit and driver: on a machine with "
           "both, run  pip install \"convgen[cuda]\"  (see the README, 'CUDA on a GPU')")


def _driver():
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        raise ConvgenError(f"target='cuda' needs PyCUDA, which is not importable ({error}). "
                           f"{INSTALL}") from None
    try:
        cuda.init()
        count = cuda.Device.count()
    except cuda.Error as error:
        raise ConvgenError(f"target='cuda': the CUDA driver is not usable ({error})") \
            from None
    if count == 0:
        raise ConvgenError("target='cuda': no CUDA GPU is visible to the driver")
    return cuda


@cache
def _primary():
    """The primary context of ``$CONVGEN_CUDA_DEVICE`` (default 0), made current once."""
    cuda = _driver()
    ordinal = int(os.environ.get("CONVGEN_CUDA_DEVICE", "0"))
    if not 0 <= ordinal < cuda.Device.count():
        raise ConvgenError(f"CONVGEN_CUDA_DEVICE={ordinal} must be below the number of GPUs, "
                           f"{cuda.Device.count()}")
    context = cuda.Device(ordinal).retain_primary_context()
    context.push()
    atexit.register(context.pop)
    return context


def _context():
    """The context kernels are loaded into: the caller's current one (say ``pycuda.autoinit``'s,
    so its arrays work), else the device's primary context."""
    cuda = _driver()
    return cuda.Context.get_current() or _primary()


def available() -> str | None:
    """``None`` when a GPU kernel can run here, else the reason it cannot."""
    try:
        _context()
    except ConvgenError as error:
        return str(error)
    return None


def arch(context=None) -> str:
    """The architecture of ``context``'s device (default: the current one) as nvcc names it
    (``sm_90`` on an H100)."""
    context = context or _context()
    major, minor = context.get_device().compute_capability()
    return f"sm_{major}{minor}"


class GpuKernel(KernelCall):
    """One entry point of a CUDA kernel on the GPU (see :class:`~convgen.runtime.call.KernelCall`;
    ``GPUArray`` inputs give ``GPUArray`` outputs)."""

    target = "cuda"

    def __init__(self, generated: CudaKernel, schedule: str | None = None):
        super().__init__(generated)
        cuda = _driver()
        self.launch = generated.launch(schedule)
        self.schedule = self.launch.schedule
        self._context = _context()  # every call runs in the context the module lives in
        self.arch = arch(self._context)
        binary = cubin(generated, self.arch)
        self._context.push()
        try:
            self._module = cuda.module_from_buffer(binary)
            self._function = self._module.get_function(self.launch.entry)
        finally:
            cuda.Context.pop()

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", {self.schedule} on {self.arch}>"

    def __call__(self, x, weight=None, bias=None, out=None):
        import numpy as np
        from pycuda import gpuarray

        kind = np.ndarray if isinstance(x, np.ndarray) else gpuarray.GPUArray
        if not isinstance(x, kind):
            raise SpecError(f"{self.name}: x must be a numpy.ndarray or a "
                            f"pycuda.gpuarray.GPUArray, got {type(x).__name__}")
        given = [("out", out)] if not isinstance(out, (tuple, list)) else \
            [(f"out[{i}]", value) for i, value in enumerate(out)]
        for label, value in (("weight", weight), ("bias", bias), *given):
            if value is not None and not isinstance(value, kind):
                what = "numpy.ndarray" if kind is np.ndarray else "GPUArray"
                raise SpecError(f"{self.name}: x is a {what}, so {label} must be one "
                                f"too (got {type(value).__name__}); pass every array on the "
                                "device or every array as a numpy array")
        if kind is np.ndarray:
            return super().__call__(x, weight, bias, out)
        return self._call(x, weight, bias, out, gpuarray.empty, lambda inputs, outputs, batch:
                          self._launch([a.gpudata for a in inputs],
                                       [a.gpudata for a in outputs], batch))

    def _array(self, label, value, shape, dtype=None):
        import numpy as np

        if isinstance(value, np.ndarray):
            return super()._array(label, value, shape, dtype)
        g = self.generated
        if not hasattr(value, "gpudata"):
            raise SpecError(f"{g.name}: {label} must be a numpy.ndarray or a GPUArray, got "
                            f"{type(value).__name__}")
        dtype = dtype or np.dtype(g.dtype)
        if value.dtype != dtype or tuple(value.shape) != shape or not value.flags.c_contiguous:
            raise SpecError(f"{g.name}: {label} must be a C-contiguous {dtype} GPUArray of "
                            f"shape {shape}; got {value.dtype}, {tuple(value.shape)}")
        return value

    @staticmethod
    def _overlaps(a, b) -> bool:
        """NumPy arrays as on the host; two GPUArrays by their device address ranges."""
        if not hasattr(a, "gpudata") or not hasattr(b, "gpudata"):
            return KernelCall._overlaps(a, b)
        try:
            start_a, start_b = int(a.gpudata), int(b.gpudata)
        except TypeError:  # an allocation without an address: only itself overlaps it
            return a.gpudata is b.gpudata
        return start_a < start_b + b.nbytes and start_b < start_a + a.nbytes

    def bind_async(self, x, weight=None, bias=None, out=None):
        """:meth:`bind` for ``GPUArray`` arguments, whose bound call only enqueues the launch
        on the default stream and returns (no synchronize): for timing back-to-back launches
        with CUDA events (:class:`EventClock`).  Read the output after a synchronize (a
        ``get()`` on the default stream waits for the launch)."""
        from pycuda import gpuarray

        if not isinstance(x, gpuarray.GPUArray):
            raise SpecError(f"{self.name}: bind_async takes GPUArrays; x is a "
                            f"{type(x).__name__}")
        out = self(x, weight, bias, out=out)  # every check, and one synchronized launch
        inputs, outputs, batch, _ = self._prepare(x, weight, bias, out, gpuarray.empty)
        pointers = [a.gpudata for a in inputs], [a.gpudata for a in outputs]

        def bound():
            if batch:
                self._launch(*pointers, batch, synchronize=False)
            return out

        return bound

    def _run(self, inputs, outputs, batch) -> None:
        cuda = _driver()
        self._launch([cuda.In(a) for a in inputs], [cuda.Out(a) for a in outputs], batch)

    def _launch(self, inputs, outputs, batch, synchronize: bool = True) -> None:
        import numpy as np

        cuda = _driver()
        launch = self.launch
        self._context.push()
        try:
            self._function(*inputs, *outputs, np.int64(batch), block=(launch.block, 1, 1),
                           grid=launch.grid(batch))
            if synchronize:
                cuda.Context.synchronize()
        finally:
            cuda.Context.pop()


def compile_gpu(items, dtype: str | None = None, schedules=None) -> list[GpuKernel]:
    """:func:`convgen.runtime.pocl.compile_cpu`'s counterpart on the GPU."""
    generated = [item if isinstance(item, CudaKernel) else
                 generate_cuda(item[0], item[1], dtype=dtype,
                               name=item[2] if len(item) > 2 else None) for item in items]
    return [GpuKernel(g, launch.schedule) for g in generated for launch in g.launches
            if schedules is None or launch.schedule in schedules]


def to_device(array):
    """A ``GPUArray`` copy of the NumPy ``array``, in the context kernels are loaded into."""
    from pycuda import gpuarray

    _context()
    return gpuarray.to_gpu(array)


def describe_device() -> dict:
    """The current device: ``{"name": ..., "capability": "9.0"}``."""
    device = _context().get_device()
    major, minor = device.compute_capability()
    return {"name": device.name(), "capability": f"{major}.{minor}"}


class EventClock:
    """Times work on the GPU's default stream with CUDA events: ``start = clock.mark()``,
    enqueue the work, ``clock.elapsed_ms(start, clock.mark())`` (waits for the second
    event)."""

    def __init__(self):
        self._cuda = _driver()
        _context()  # events belong to the context the kernels run in

    def mark(self):
        event = self._cuda.Event()
        event.record()
        return event

    @staticmethod
    def elapsed_ms(start, end) -> float:
        end.synchronize()
        return start.time_till(end)
