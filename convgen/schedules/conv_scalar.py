"""C schedule ``scalar`` for 2-D float convolutions with zero padding, the ``mcu`` profile's:
strict ISO C99 with no extensions, register blocks of output channels x output columns held
in named scalar accumulators, the weights packed into the caller's ``scratch`` buffer once a
call so that a tap's weights for the block are neighbours (``templates/c/conv_scalar.c.j2``).
Every output sums the same products in the same order as the reference schedule: bit for
bit the same."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import symbolic as sym
from ..lower import BATCH, IC, G, N, Problem, symbols
from ..printing import ccode
from . import conv_blocked, tuning
from .base import Access, Built, Schedule, loop, register, variables
from .conv_blocked import view
from .reference import ConvContext, conv_context

__all__ = ["ScalarParams", "applies", "blocks", "build", "scratch_elements"]


def applies(problem: Problem) -> str | None:
    """``None`` for the layers ``blocked`` and ``packed`` take (2-D float convolutions with
    zero padding: :func:`convgen.schedules.conv_blocked.applies` decides), else why not."""
    reason = conv_blocked.applies(problem)
    if reason is None or (problem.family == "conv" and problem.ndim == 2 and
                          problem.dtype in tuning.VECTOR_DTYPES):
        return reason  # None, or the padding that rules the blocks out
    return "the scalar register blocks cover 2-D float convolutions only"


def blocks(problem: Problem) -> tuple[int, int]:
    """(output channels, output columns) of a register block: the largest divisor of a
    group's output channels up to :data:`~convgen.schedules.tuning.SCALAR_CHANNELS` (no
    block straddles groups, none needs a remainder), then as many columns as keep the
    accumulators at :data:`~convgen.schedules.tuning.SCALAR_ACCUMULATORS` (at most the
    row's width: a row's last block overlaps the one before instead of hanging past it)."""
    ocb = max(d for d in range(1, tuning.SCALAR_CHANNELS + 1) if problem.cg_out % d == 0)
    width = view(problem)[1][2]
    return ocb, max(1, min(width, tuning.SCALAR_ACCUMULATORS // ocb))


def scratch_elements(problem: Problem) -> int:
    """The caller's scratch: the weights, repacked (as many elements as ``w``)."""
    return sym.prod(problem.layer.weight_shape)


@dataclass(frozen=True)
class ScalarParams:
    ocb: int
    owb: int
    blocks: int
    columns: int            # output columns of a row, in the view
    scratch: int            # elements of the packed weights
    group: str
    column_start: str       # the block's first column (the row's last block ends at its end)
    pack_read: str          # w's element that scratch element ``pack_write`` holds
    pack_write: str
    weights: tuple          # per channel j of the block: its weight of the tap, in scratch
    lanes_inside: str       # "always", or every column of the block reads the input
    lanes: tuple            # per column i of the block: dict(x: its input element,
                            # inside: whether that element lies in the input, not the padding,
                            # accumulate: the statements adding w_j * v to each channel's sum)
    acc_init: tuple         # per channel j
    stores: tuple           # per channel j: per column i, y's element


@dataclass(frozen=True)
class ScalarContext(ConvContext):
    scalar: ScalarParams


def build(problem: Problem) -> Built:
    """The reference conv context (on the blocked view: a pointwise plane is one row) plus
    the packing loops and the unrolled register block."""
    layer = problem.layer
    sample, out = view(problem)
    base = conv_context(problem, sample, out).context
    (c_in, *spatial) = sample
    cg_in, cg_out = problem.cg_in, problem.cg_out
    ocb, owb = blocks(problem)
    (kn0, kn1), (_, s1), (_, d1) = layer.kernel_size, layer.stride, layer.dilation
    pads = problem.padding
    ob, oc0, ob1, j, i = (sympy.Symbol(v, integer=True, nonnegative=True)
                          for v in ("ob", "oc0", "ob1", "j", "i"))
    o, k = symbols("o", 2), symbols("k", 2)
    p, q1 = symbols("p", 2, False), sympy.Symbol("q1", integer=True)
    weight_size = sym.prod(layer.weight_shape)
    group = sympy.floor(oc0 / cg_out)
    packed = sym.flat_index([ob, IC, k[0], k[1], j], [None, cg_in, kn0, kn1, ocb])
    w_index = sym.flat_index([ob * ocb + j, IC, k[0], k[1]], list(layer.weight_shape))
    start = sym.block_start(ob1, owb, out[2]) if out[2] > owb else ob1
    column = sym.tap_index(o[1] + i, k[1], s1, d1, pads[1][0])
    channel = G * cg_in + IC
    x_index = sym.flat_index([N, channel, p[0], q1], [None, c_in, *spatial])
    y_index = sym.flat_index([N, oc0 + j, o[0], o[1] + i], [None, *out])
    # every column of the block reads the input (the test the template prints before the
    # unguarded reads): the first column's tap at or after 0, the last one's before the end
    all_inside = sympy.And(sympy.Ge(p[1], 0),
                           sympy.Lt(column.subs(i, owb - 1), spatial[1]))
    always = pads[1] == (0, 0)  # no padding across: every tap of every output is inside
    pack = [sympy.Ge(BATCH, 1), *loop(ob, layer.out_channels // ocb), *loop(IC, cg_in),
            *loop(k[0], kn0), *loop(k[1], kn1), *loop(j, ocb)]
    block = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(ob, layer.out_channels // ocb),
             sympy.Eq(oc0, ob * ocb), sympy.Eq(G, group), *loop(o[0], out[1]),
             *loop(ob1, out[2]), sympy.Eq(sympy.Mod(ob1, owb), 0), sympy.Eq(o[1], start)]
    taps = [*block, *loop(IC, cg_in), *loop(k[0], kn0),
            sympy.Eq(p[0], base.dims[0].tap_expr), base.dims[0].inside_expr,
            *loop(k[1], kn1), sympy.Eq(p[1], base.dims[1].tap_expr)]
    lane = [*taps, *loop(i, owb), sympy.Eq(q1, column)]
    x_size, y_size = BATCH * sym.prod(sample), BATCH * sym.prod(out)
    accesses = [
        Access("w", w_index, weight_size, "scalar: w, packing", tuple(pack)),
        Access("scratch", packed, weight_size, "scalar: scratch, packing", tuple(pack)),
        Access("scratch", packed, weight_size, "scalar: scratch, a tap's weights",
               tuple(taps + loop(j, ocb)), scratch_read=True),
        Access("x", x_index, x_size, "scalar: x, every column inside",
               tuple(lane + ([] if always else [all_inside]))),
        Access("y", y_index, y_size, "scalar: y", tuple(block + loop(j, ocb) +
                                                         loop(i, owb)))]
    if not always:
        accesses.insert(4, Access("x", x_index, x_size, "scalar: x, column by column",
                                  tuple(lane + [sym.inside(q1, spatial[1])])))
    if layer.bias:
        accesses.append(Access("b", oc0 + j, layer.out_channels, "scalar: b",
                               tuple(block + loop(j, ocb))))
    lanes = tuple(dict(x=ccode(x_index.subs(q1, column.subs(i, c))),
                       inside=ccode(sym.inside(column.subs(i, c), spatial[1])),
                       accumulate=" ".join(f"a{r}_{c} += w{r} * v;" for r in range(ocb)))
                  for c in range(owb))
    params = ScalarParams(
        ocb=ocb, owb=owb, blocks=layer.out_channels // ocb, columns=out[2],
        scratch=weight_size, group=ccode(group), column_start=ccode(start),
        pack_read=ccode(w_index), pack_write=ccode(packed),
        weights=tuple(ccode(packed.subs(j, c)) for c in range(ocb)),
        lanes_inside="always" if always else ccode(all_inside),
        lanes=lanes,
        acc_init=tuple(f"b[oc0 + {c}]" if layer.bias else "0" for c in range(ocb)),
        stores=tuple(tuple(ccode(y_index.subs({j: c, i: d})) for d in range(owb))
                     for c in range(ocb)))
    return Built(ScalarContext(**variables(base), scalar=params), tuple(accesses))


SCHEDULE = register(Schedule(
    name="scalar", target="c", families=("conv",), template="c/conv_scalar.c.j2",
    applies=applies, build=build, portable=True, scratch=scratch_elements,
    doc="the mcu profile's: register blocks of scalars, weights packed in the caller's "
        "scratch; ISO C99, bit for bit the reference"))
