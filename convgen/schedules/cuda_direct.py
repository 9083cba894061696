"""CUDA schedule ``direct`` for every family: one thread per output element of a sample,
grid-stride over the batch, running the reference schedule's per-output body
(``templates/shared/body.j2``) with the same index expressions as the C kernel."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import isa
from .. import symbolic as sym
from ..lower import Problem
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, axes, loop, register

__all__ = ["DirectParams", "applies", "block", "build"]

_T = sympy.Symbol("t", integer=True, nonnegative=True)  # thread (output element) number


def block(problem: Problem) -> tuple[int, int]:
    """(threads a block, blocks on the grid's x axis)."""
    y_sample = sym.prod(problem.out)
    threads = min(tuning.CUDA_DIRECT_BLOCK, 32 * sym.cdiv(y_sample, 32))
    return threads, sym.cdiv(y_sample, threads)


def applies(problem: Problem) -> str | None:
    threads, grid_x = block(problem)
    if grid_x > isa.CUDA_MAX_GRID_X:
        return (f"{sym.prod(problem.out)} outputs per sample need more than "
                f"{isa.CUDA_MAX_GRID_X} blocks of {threads} threads")
    return None


@dataclass(frozen=True)
class Position:
    name: str
    axis: str
    value: str


@dataclass(frozen=True)
class DirectParams:
    block: int
    grid_x: int
    y_sample: int
    channel: str
    position: tuple
    note: str


def build(problem: Problem) -> Built:
    """The thread's output position; the per-output body's context and accesses come from
    the reference schedule (:data:`convgen.schedules.reference.CONTEXTS`)."""
    out = problem.out
    threads, grid_x = block(problem)
    channel = "c" if problem.family.endswith("pool") else "oc"
    axis_names = ["channel", *axes(problem.ndim)]
    coordinates = sym.unflatten(_T, list(out))
    names = [channel] + [f"o{i}" for i in range(len(out) - 1)]
    accesses = tuple(Access(f"thread position {n}", e, size,
                            f"direct: {n} from the thread number", (*loop(_T, sym.prod(out)),))
                     for n, e, size in zip(names, coordinates, out))
    params = DirectParams(
        block=threads, grid_x=grid_x, y_sample=sym.prod(out), channel=channel,
        position=tuple(Position(n, a, ccode(e))
                       for n, a, e in zip(names, axis_names, coordinates)),
        note="one thread per output element of a sample; grid z strides the batch")
    return Built(params, accesses)


SCHEDULE = register(Schedule(
    name="direct", target="cuda",
    families=("conv", "conv_transpose", "pool", "adaptive_pool", "qconv"),
    template="cuda/kernel.cu.j2", applies=applies, build=build,
    doc="one thread per output element; the reference schedule's body"))
