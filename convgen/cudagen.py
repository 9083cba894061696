"""Spec -> specialized CUDA source text: lower, build the CUDA schedules, render.  Renders no
C and never compiles.

Every layer gets a *direct* kernel (:mod:`convgen.schedules.cuda_direct`: one thread per
output element of a sample, grid-stride over the batch) whose per-output work is the
reference schedule's body, with the same index expressions as the C kernel.  Convolutions
whose tile fits also get a *tiled* kernel (:mod:`convgen.schedules.cuda_tiled`), listed
first: :func:`convgen.schedules.choose` makes it the default.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from . import isa
from .errors import SpecError
from .lower import Problem, lower
from .schedules import choose, find
from .schedules.reference import CONTEXTS
from .spec import Layer
from .targets import cuda as cuda_target
from .targets import kernel_name

__all__ = ["CUDA_TYPES", "CudaKernel", "Launch", "MAX_GRID_Z", "SHARED_LIMIT",
           "generate_cuda"]

CUDA_TYPES = cuda_target.CUDA_TYPES
#: CUDA's static shared-memory limit per block, which every tiled kernel stays within.
SHARED_LIMIT = isa.CUDA_SHARED_LIMIT
#: gridDim.z's limit: larger batches are covered by each block looping over the batch.
MAX_GRID_Z = isa.CUDA_MAX_GRID_Z


@dataclass(frozen=True)
class Launch:
    """How to launch one entry point: ``block`` threads, and a grid whose z axis covers the
    batch (``min(batch, MAX_GRID_Z)`` blocks; each loops over the rest)."""

    entry: str
    schedule: str           # "direct" or "tiled"
    block: int
    grid_x: int
    grid_y: int
    shared_bytes: int
    note: str
    #: the entry point's array accesses, for its own check that they cover the operator
    accesses: tuple = field(default=(), repr=False)

    def grid(self, batch: int) -> tuple[int, int, int]:
        return (self.grid_x, self.grid_y, max(1, min(int(batch), MAX_GRID_Z)))


@dataclass(frozen=True)
class CudaKernel:
    """The ``.cu`` text of one layer and how to launch each of its entry points."""

    name: str
    layer: Layer
    input_shape: tuple
    output_shape: tuple
    dtype: str
    source: str
    arguments: tuple        # x, [w], [b], y, [indices]; then the batch size
    family: str
    launches: tuple         # Launch per entry point; the first is the default
    accesses: tuple = ()    # every array access and thread-position claim, for the proof

    problem: Problem | None = None

    def dtype_of(self, argument: str) -> str:
        """The dtype of the array ``argument`` (see :meth:`convgen.lower.Problem.dtype_of`)."""
        return self.problem.dtype_of(argument)

    def launch(self, schedule: str | None = None) -> Launch:
        """The entry point of ``schedule`` (``direct`` or ``tiled``), default the first."""
        if schedule is None:
            return self.launches[0]
        for launch in self.launches:
            if launch.schedule == schedule:
                return launch
        raise SpecError(f"{self.name}: schedule={schedule!r} must be one of "
                        f"{', '.join(repr(x.schedule) for x in self.launches)}")


def generate_cuda(layer: Layer, input_shape: Sequence, dtype: str | None = None,
                  name: str | None = None) -> CudaKernel:
    """Render the CUDA kernels of ``layer`` for inputs ``(N, C, *spatial)``."""
    problem = lower(layer, input_shape, dtype)
    name = kernel_name(problem, name)
    direct_schedule = find(problem, "cuda", "direct")  # raises when the grid is too small
    body, direct = CONTEXTS[problem.family](problem), direct_schedule.build(problem)
    d = direct.context
    accesses = [*direct.accesses, *body.accesses]
    launches = [Launch(f"{name}_direct", "direct", d.block, d.grid_x, 1, 0, d.note,
                       tuple(accesses))]
    tiled = None
    if choose(problem, "cuda")[0] == "tiled":
        tiled = find(problem, "cuda", "tiled").build(problem)
        t = tiled.context
        launches.insert(0, Launch(f"{name}_tiled", "tiled", t.threads, t.tiles, t.oc_blocks,
                                  t.shared_bytes, t.note, tiled.accesses))
        accesses += tiled.accesses
    launch_lines = [f"  {launch.entry}: block ({launch.block}, 1, 1), grid ({launch.grid_x}, "
                    f"{launch.grid_y}, min(batch, {MAX_GRID_Z})), {launch.shared_bytes} bytes "
                    f"of static shared memory; {launch.note}." for launch in launches]
    source = cuda_target.render(problem, name, body, direct, tiled, launch_lines)
    return CudaKernel(name, layer, problem.sample, problem.out, problem.dtype, source,
                      problem.arguments, problem.family, tuple(launches), tuple(accesses),
                      problem)
