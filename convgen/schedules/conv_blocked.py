"""C schedule ``blocked`` for 2-D convolutions with zero padding: register blocks of output
channels x vectors of output columns (``templates/c/conv_blocked.c.j2``).  Every output sums
the same products in the same order as the reference schedule: bit for bit the same."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import symbolic as sym
from ..lower import BATCH, IC, G, N, Problem, symbols
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, loop, register, variables
from .reference import ConvContext, conv_context

__all__ = ["BlockedParams", "applies", "build", "channel_block", "column_vectors",
           "coverage", "pointwise", "view"]


def applies(problem: Problem) -> str | None:
    """``None`` for 2-D float convolutions with zero padding, else why not."""
    if problem.family != "conv" or problem.ndim != 2 or \
            problem.dtype not in tuning.VECTOR_DTYPES:
        return "the fast schedules cover 2-D float convolutions and pools only"
    if problem.layer.padding_mode != "zeros":
        return f"{problem.layer.padding_mode} padding remaps taps; blocks assume zeros"
    return None


def channel_block(cg_out: int) -> int:
    """The largest divisor of the group's output channels up to
    :data:`~convgen.schedules.tuning.BLOCKED_CHANNELS`: blocks never straddle groups and
    need no remainder loop."""
    return max(d for d in range(1, tuning.BLOCKED_CHANNELS + 1) if cg_out % d == 0)


def column_vectors(ocb: int, width: int, owb: int) -> int:
    """Vectors of output columns a register block holds: about
    :data:`~convgen.schedules.tuning.BLOCKED_ACCUMULATORS` accumulators (channels x
    vectors), the row's vectors split into equal blocks (so up to 16 when one channel's
    block spans a whole row)."""
    vectors = -(-width // owb)
    blocks = -(-vectors // max(1, tuning.BLOCKED_ACCUMULATORS // ocb))
    return -(-vectors // blocks)


def pointwise(problem: Problem) -> bool:
    """A 1x1 convolution with stride 1 and no padding: a GEMM over the flattened plane."""
    layer = problem.layer
    return (problem.family == "conv" and problem.ndim == 2 and layer.kernel_size == (1, 1)
            and layer.stride == (1, 1) and problem.padding == ((0, 0), (0, 0)))


def view(problem: Problem) -> tuple[tuple, tuple]:
    """The (input, output) shapes the blocked and packed loops run over: a pointwise
    convolution's H x W plane is one row of H*W columns (the same memory)."""
    sample, out = problem.sample, problem.out
    if pointwise(problem):
        return (sample[0], 1, sample[1] * sample[2]), (out[0], 1, out[1] * out[2])
    return sample, out


def coverage(problem: Problem) -> tuple[int, int]:
    """(output positions whole register blocks cover, all output positions): ``choose``
    prefers ``blocked`` over ``reference`` when the share is at least
    :data:`~convgen.schedules.tuning.BLOCKED_MIN_COVERAGE`."""
    layer, owb = problem.layer, tuning.lanes(problem.dtype)
    sample, out = view(problem)
    pads = problem.padding
    rows = sym.interior_range(sample[1], out[1], layer.kernel_size[0], layer.stride[0],
                              layer.dilation[0], pads[0][0])
    cols = sym.interior_range(sample[2], out[2], layer.kernel_size[1], layer.stride[1],
                              layer.dilation[1], pads[1][0])
    return (rows[1] - rows[0]) * ((cols[1] - cols[0]) // owb * owb), out[1] * out[2]


@dataclass(frozen=True)
class BlockedParams:
    ocb: int
    owb: int
    blocks: int
    cv: int
    vector_start: str
    vector_raw: str
    overhang: bool
    size: int
    contiguous: bool
    group: str
    width: str
    lanes_inside: str
    column: str
    column_inside: str
    acc_init: str
    x_index: str
    x_row: str
    x_guarded: str
    w_index: str
    y_index: str
    y_row: str


@dataclass(frozen=True)
class BlockedContext(ConvContext):
    blocked: BlockedParams


def build(problem: Problem) -> Built:
    """The reference conv context (on the blocked view) plus the register-blocked loops."""
    layer = problem.layer
    sample, out = view(problem)
    base = conv_context(problem, sample, out).context
    (c_in, *spatial) = sample
    cg_in, cg_out = problem.cg_in, problem.cg_out
    ocb = channel_block(cg_out)
    owb = tuning.lanes(problem.dtype)
    cv = column_vectors(ocb, out[2], owb)
    pads = problem.padding
    (_, s1), (_, d1), (kn0, kn1) = layer.stride, layer.dilation, layer.kernel_size
    ob, oc0, j, i, width = (sympy.Symbol(v, integer=True, nonnegative=True)
                            for v in ("ob", "oc0", "j", "i", "width"))
    o, k = symbols("o", 2), symbols("k", 2)
    p, q1 = symbols("p", 2, False), sympy.Symbol("q1", integer=True)
    group = sympy.floor(oc0 / cg_out)
    last = sym.tap_index(o[1] + owb - 1, k[1], s1, d1, pads[1][0])  # the last lane's column
    lanes_inside = sympy.And(sympy.Ge(p[1], 0), sympy.Lt(last, spatial[1]))
    column = sym.tap_index(o[1] + i, k[1], s1, d1, pads[1][0])
    channel = G * cg_in + IC
    x_fast = sym.flat_index([N, channel, p[0], p[1] + i * s1], [None, c_in, *spatial])
    x_row = sym.flat_index([N, channel, p[0], p[1]], [None, c_in, *spatial])
    x_guarded = sym.flat_index([N, channel, p[0], q1], [None, c_in, *spatial])
    w_index = sym.flat_index([oc0 + j, IC, k[0], k[1]], list(layer.weight_shape))
    y_index = sym.flat_index([N, oc0 + j, o[0], o[1] + i], [None, *out])
    ob1, cv_ = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("ob1", "cv"))
    raw_start = ob1 + cv_ * owb  # first column of vector cv of the block at ob1
    # a row's last vector ends at the row's end, overlapping the one before (those columns
    # are computed twice, the same way: bit for bit), so no vector hangs past the output,
    # and on a row without padding every vector reads whole vectors of input
    vector_start = sym.block_start(raw_start, owb, out[2]) \
        if out[2] > owb and out[2] % owb else raw_start
    block = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(ob, layer.out_channels // ocb),
             sympy.Eq(oc0, ob * ocb), sympy.Eq(G, group), *loop(o[0], out[1]),
             *loop(ob1, out[2]), sympy.Eq(sympy.Mod(ob1, cv * owb), 0), *loop(cv_, cv),
             sympy.Lt(raw_start, out[2]), sympy.Eq(o[1], vector_start),
             sympy.Eq(width, sym.block_extent(o[1], owb, out[2])), *loop(j, ocb)]
    # the row and column the template prints (dims[i].tap) and its row test (dims[0].inside)
    taps = [*block, *loop(IC, cg_in), *loop(k[0], kn0), *loop(k[1], kn1), *loop(i, owb),
            sympy.Eq(p[0], base.dims[0].tap_expr), base.dims[0].inside_expr,
            sympy.Eq(p[1], base.dims[1].tap_expr)]
    x_size, y_size = BATCH * sym.prod(sample), BATCH * sym.prod(out)
    accesses = [
        Access("x", x_fast, x_size, "blocked: x, whole vectors", tuple(taps + [lanes_inside])),
        Access("x", x_guarded, x_size, "blocked: x, lane by lane", tuple(
            taps + [sympy.Eq(q1, column), sym.inside(q1, spatial[1])])),
        Access("w", w_index, sym.prod(layer.weight_shape), "blocked: w", tuple(taps)),
        Access("y", y_index, y_size, "blocked: y", tuple(block + [*loop(i, owb),
                                                                   sympy.Lt(i, width)]))]
    # the kernel copies whole vectors with memcpy (from x at x_row where the stride is 1, to
    # y at y_row where a vector is whole): lanes i = 0 .. owb - 1 of the x and y accesses
    # above are exactly the elements each copy touches
    if layer.bias:
        accesses.append(Access("b", oc0 + j, layer.out_channels, "blocked: b", tuple(block)))
    params = BlockedParams(
        ocb=ocb, owb=owb, blocks=layer.out_channels // ocb, cv=cv,
        vector_start=ccode(vector_start), vector_raw=ccode(raw_start),
        overhang=-(-out[2] // (cv * owb)) * cv * owb - out[2] >= owb,
        size=problem.size, contiguous=s1 == 1, group=ccode(group),
        width=ccode(sym.block_extent(o[1], owb, out[2])),
        lanes_inside={sympy.true: "always", sympy.false: "never"}.get(lanes_inside) or
        ccode(lanes_inside),
        column=ccode(column), column_inside=ccode(sym.inside(q1, spatial[1])),
        acc_init="b[oc0 + j]" if layer.bias else "0",
        x_index=ccode(x_fast), x_row=ccode(x_row), x_guarded=ccode(x_guarded),
        w_index=ccode(w_index), y_index=ccode(y_index),
        y_row=ccode(sym.flat_index([N, oc0 + j, o[0], o[1]], [None, *out])))
    return Built(BlockedContext(**variables(base), blocked=params), tuple(accesses))


SCHEDULE = register(Schedule(
    name="blocked", target="c", families=("conv",), template="c/conv_blocked.c.j2",
    applies=applies, build=build,
    doc="register blocks of output channels x vectors of output columns; bit for bit the "
        "reference"))
