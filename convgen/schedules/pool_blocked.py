"""C schedule ``blocked`` for 2-D float average and max pools: interior outputs of a row as
whole vectors, border ones as in the reference (``pool_blocked.c.j2``); bit for bit the
reference."""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from .. import symbolic as sym
from ..lower import BATCH, C, N, Problem, symbols
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, loop, register, variables
from .conv_blocked import column_vectors
from .reference import PoolContext, pool_context

__all__ = ["PoolBlockedParams", "applies", "build", "vector_span"]


def vector_span(problem: Problem) -> tuple | None:
    """(rows, columns): the half-open interior ranges (every tap inside the input) the
    schedule runs as whole vectors, or None where it does not apply."""
    layer = problem.layer
    if problem.family != "pool" or problem.ndim != 2 or \
            problem.dtype not in tuning.VECTOR_DTYPES:
        return None
    if problem.reduction == "lp" or problem.indices or layer.stride[1] != 1 or layer.quantized:
        return None
    spans = [sym.interior_range(n, m, k, s, d, lo) for n, m, k, s, d, (lo, _) in
             zip(problem.spatial, problem.out_spatial, layer.kernel_size, layer.stride,
                 layer.dilation, problem.padding)]
    if spans[1][1] - spans[1][0] < tuning.lanes(problem.dtype):
        return None
    return spans


def applies(problem: Problem) -> str | None:
    if vector_span(problem) is None:
        return ("the blocked pool schedule covers 2-D float average and max pools (no "
                "indices, not quantized) with column stride 1 and at least one vector of "
                "interior outputs a row")
    return None


@dataclass(frozen=True)
class PoolBlockedParams:
    owb: int
    size: int
    cols: tuple
    border: tuple       # the outputs of a row left to the reference's scalar loops
    cv: int
    start: str
    row: str
    row_inside: str
    x_row: str
    y_row: str
    count: str | None   # the divisor: "padded", "inside" or None (max, or an override)
    divisor: object


@dataclass(frozen=True)
class PoolBlockedContext(PoolContext):
    blocked: PoolBlockedParams


def build(problem: Problem) -> Built:
    """The reference pool context plus the interior vectors."""
    layer = problem.layer
    built = pool_context(problem)
    base = built.context
    (_, cols), owb = vector_span(problem), tuning.lanes(problem.dtype)
    channels, spatial, out = problem.channels, problem.spatial, problem.out
    pads = problem.padding
    (s0, _), (d0, d1) = layer.stride, layer.dilation
    o, k = symbols("o", 2), symbols("k", 2)
    p0, i = sympy.Symbol("p0", integer=True), sympy.Symbol("i", integer=True, nonnegative=True)
    row = sym.tap_index(o[0], k[0], s0, d0, pads[0][0])
    x_row = sym.flat_index([N, C, p0, sym.tap_index(o[1], k[1], 1, d1, pads[1][0])],
                           [None, channels, *spatial])
    y_row = sym.flat_index([N, C, o[0], o[1]], [None, *out])
    vectors = column_vectors(1, cols[1] - cols[0], owb)
    ob, cv = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("ob", "cv"))
    # vector cv of the block at ob; past the interior, the row's last whole vector again
    start = sym.block_start(ob + cv * owb, owb, cols[1])
    vector = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(C, channels),
              *loop(o[0], out[1]), sympy.Ge(ob, cols[0]), sympy.Lt(ob, cols[1]),
              sympy.Eq(sympy.Mod(ob - cols[0], vectors * owb), 0), *loop(cv, vectors),
              sympy.Eq(o[1], start), *loop(i, owb)]
    taps = [*vector, *loop(k[0], layer.kernel_size[0]), *loop(k[1], layer.kernel_size[1]),
            sympy.Eq(p0, row), sym.inside(p0, spatial[0])]
    x_size, y_size = BATCH * sym.prod(problem.sample), BATCH * sym.prod(out)
    # the reference pool's accesses, where the scalar loops run: the border columns, the
    # same ranges the template's loops take (an empty one is not emitted)
    border = ((0, cols[0]), (cols[1], out[2]))
    scalar_columns = sympy.Or(*[sympy.And(sympy.Ge(o[1], first), sympy.Lt(o[1], stop))
                                for first, stop in border])
    scalar = tuple(replace(access, domain=(*access.domain, scalar_columns))
                   for access in built.accesses)
    accesses = scalar + (
        Access("x", x_row + i, x_size, "blocked: x, every lane of a vector", tuple(taps)),
        Access("y", y_row + i, y_size, "blocked: y, every lane of a vector", tuple(vector)))
    override = getattr(layer, "divisor_override", None)
    count = (None if override is not None or base.op != "avg" else
             "padded" if base.count_include_pad else "inside")
    params = PoolBlockedParams(
        owb=owb, size=problem.size, cols=cols, border=border, cv=vectors, start=ccode(start),
        row=ccode(row), row_inside=ccode(sym.inside(p0, spatial[0])),
        x_row=ccode(x_row), y_row=ccode(y_row), count=count,
        divisor=override if override is not None else "count")
    return Built(PoolBlockedContext(**variables(base), blocked=params), accesses)


SCHEDULE = register(Schedule(
    name="blocked", target="c", families=("pool",), template="c/pool_blocked.c.j2",
    applies=applies, build=build,
    doc="interior outputs of a row as whole vectors, border ones as in the reference"))
