"""C schedule ``qpacked`` for 2-D quantized convolutions: output channels in the int32 lanes
of a vector, the zero-point differences of two input channels as an int16 pair, multiplied
and added in pairs (``pmaddwd``, VNNI's ``vpdpwssd``, or portable vector extensions, from
:data:`convgen.isa.MADD`), weights packed per block and row (``qconv_packed.c.j2``).

Integer arithmetic: every sum is exact (the accumulator proofs bound every partial sum of
any subset of the products), so the order differs from the reference's and the result is
bit for bit the same."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import symbolic as sym
from ..isa import ISAS, MADD
from ..lower import BATCH, N, Problem, symbols
from ..printing import ccode
from . import conv_blocked, tuning
from .base import Access, Built, Schedule, loop, register, variables
from .conv_packed import blocks
from .reference import QConvContext, qconv_context

__all__ = ["QPackedParams", "applies", "build", "pack_bytes"]


def pack_bytes(problem: Problem) -> int:
    """Bytes of one block's packed int16 weights: channel pairs x taps x lanes x 2."""
    lanes = tuning.QPACKED_LANES
    ocv, _ = blocks(problem.cg_out, lanes, tuning.QPACKED_VECTORS)
    pairs = -(-problem.cg_in // 2)
    return pairs * sym.prod(problem.layer.kernel_size) * ocv * lanes * 2 * 2


def applies(problem: Problem) -> str | None:
    """``None`` for 2-D quantized convolutions whose packed weights fit, else why not."""
    if problem.family != "qconv" or problem.ndim != 2:
        return "qpacked covers 2-D quantized convolutions only"
    if pack_bytes(problem) > tuning.QPACK_BYTES:
        return (f"its packed weights would take {pack_bytes(problem):,} bytes of stack, over "
                f"{tuning.QPACK_BYTES:,}")
    return None


@dataclass(frozen=True)
class QPackedParams:
    lanes: int
    rows: int           # output rows and columns (a pointwise layer: its plane as one row)
    cols: int
    kernel: tuple
    ocv: int
    nb: int
    blocks: int
    columns: dict       # output columns of a register block, by ISA rung and ocv
    most_columns: int
    pairs: int          # input-channel pairs of a group
    odd: bool           # the last pair has one channel
    taps: int
    every_lane: bool
    madd: tuple         # convgen.isa.MADD
    group: str
    local: str
    oc: str
    width: str
    full: str
    row: str
    row_inside: str
    column: str
    column_inside: str
    x_a: str            # x of the pair's first channel, its second
    x_b: str
    w_index: str
    wp_scalar: str      # a packed int16 weight (lane l, half j)
    wp_vector: str      # the first of a vector's packed weights
    y_index: str
    lane_valid: str     # the lane holds one of the group's channels ("" when all do)
    second_valid: str   # the pair's second channel exists ("" when it always does)


@dataclass(frozen=True)
class QPackedContext(QConvContext):
    qpacked: QPackedParams


def build(problem: Problem) -> Built:
    """The quantized reference context (on the pointwise view) plus the packed loops."""
    layer = problem.layer
    sample, out = conv_blocked.view(problem)
    base = qconv_context(problem).context
    (c_in, *spatial) = sample
    cg_in, cg_out = problem.cg_in, problem.cg_out
    lanes = tuning.QPACKED_LANES
    ocv, nb = blocks(cg_out, lanes, tuning.QPACKED_VECTORS)
    (kn0, kn1), taps = layer.kernel_size, sym.prod(layer.kernel_size)
    pairs = -(-cg_in // 2)
    pads = problem.padding
    (s0, s1), (d0, d1) = layer.stride, layer.dilation
    gb, icp, v, lane, j, c, width, cw = (sympy.Symbol(s, integer=True, nonnegative=True)
                                         for s in ("gb", "icp", "v", "l", "j", "c", "width",
                                                   "cw"))
    o, k = symbols("o", 2), symbols("k", 2)
    p0, q1 = sympy.Symbol("p0", integer=True), sympy.Symbol("q1", integer=True)
    group = sympy.floor(gb / nb) if layer.groups > 1 else sympy.Integer(0)
    local = (gb - nb * group) * ocv * lanes + v * lanes + lane  # output channel in the group
    oc = group * cg_out + local
    first, stop = sym.interior_range(spatial[1], out[2], kn1, s1, d1, pads[1][0])
    full = sympy.And(sympy.Ge(o[1], first), sympy.Le(o[1] + cw, stop))
    row, row_inside = sym.tap_index(o[0], k[0], s0, d0, pads[0][0]), sym.inside(p0, spatial[0])
    column = sym.tap_index(o[1] + c, k[1], s1, d1, pads[1][0])

    def x_of(ic):
        return sym.flat_index([N, group * cg_in + ic, p0, q1], [None, c_in, *spatial])

    x_a, x_b = x_of(2 * icp), x_of(2 * icp + 1)
    w_index = sym.flat_index([oc, 2 * icp + j, k[0], k[1]], list(layer.weight_shape))
    wp_vector = ((icp * kn0 + k[0]) * kn1 + k[1]) * ocv * lanes * 2 + v * lanes * 2
    wp_scalar = wp_vector + lane * 2 + j
    y_index = sym.flat_index([N, oc, o[0], o[1] + c], [None, *out])
    valid = sympy.Lt(local, cg_out)
    second = sympy.Lt(2 * icp + 1, cg_in)
    x_size, y_size = BATCH * sym.prod(sample), BATCH * sym.prod(out)
    w_size, wp_size = sym.prod(layer.weight_shape), pairs * taps * ocv * lanes * 2
    accesses = []
    for isa in ISAS:
        cols = tuning.QPACKED_COLUMNS[isa.name][ocv]
        task = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(gb, layer.groups * nb),
                *loop(o[0], out[1]), sympy.Eq(cw, cols)]
        pack = [*task, *loop(v, ocv), *loop(lane, lanes), *loop(icp, pairs), *loop(j, 2),
                *loop(k[0], kn0), *loop(k[1], kn1)]
        block = [*task, *loop(o[1], out[2]), sympy.Eq(sympy.Mod(o[1], cols), 0),
                 sympy.Eq(width, sym.block_extent(o[1], cols, out[2]))]
        step = [*block, *loop(icp, pairs), *loop(k[0], kn0), *loop(k[1], kn1),
                *loop(c, cols), sympy.Eq(p0, row), row_inside, sympy.Eq(q1, column)]
        reads = [*step, *loop(v, ocv), *loop(lane, lanes), *loop(j, 2)]
        stored = [*block, *loop(v, ocv), *loop(lane, lanes), *loop(c, cols),
                  sympy.Lt(c, width), valid]
        where = f"qpacked ({isa.name}, {cols} columns)"
        accesses += [
            Access("w", w_index, w_size, f"{where}: w, packing",
                   tuple(pack + [valid, sympy.Lt(2 * icp + j, cg_in)])),
            Access("wp", wp_scalar, wp_size, f"{where}: packed weights, packing",
                   tuple(pack)),
            Access("wp", wp_scalar, wp_size, f"{where}: packed weights, every lane read",
                   tuple(reads), scratch_read=True)]
        for name, index, extra in (("first", x_a, []), ("second", x_b, [second])):
            accesses += [
                Access("x", index, x_size, f"{where}: x, {name} of a pair, whole blocks",
                       tuple(step + extra + [full])),
                Access("x", index, x_size, f"{where}: x, {name} of a pair, border blocks",
                       tuple(step + extra + [sympy.Lt(c, width),
                                             sym.inside(q1, spatial[1])]))]
        accesses.append(Access("y", y_index, y_size, f"{where}: y", tuple(stored)))
        if layer.bias:
            accesses.append(Access("b", oc, layer.out_channels, f"{where}: b",
                                   tuple(stored)))
    every_lane = cg_out % (ocv * lanes) == 0
    local_text = ccode(local)
    params = QPackedParams(
        lanes=lanes, rows=out[1], cols=out[2], kernel=(kn0, kn1), ocv=ocv, nb=nb,
        blocks=layer.groups * nb,
        columns=tuning.QPACKED_COLUMNS,
        most_columns=max(tuning.QPACKED_COLUMNS[isa.name][ocv] for isa in ISAS),
        pairs=pairs, odd=cg_in % 2 == 1, taps=taps, every_lane=every_lane, madd=MADD,
        group=ccode(group), local=local_text, oc=ccode(oc),
        width=ccode(sym.block_extent(o[1], cw, out[2])), full=ccode(full), row=ccode(row),
        row_inside=ccode(row_inside), column=ccode(column),
        column_inside=ccode(sym.inside(q1, spatial[1])), x_a=ccode(x_a), x_b=ccode(x_b),
        w_index=ccode(w_index), wp_scalar=ccode(wp_scalar), wp_vector=ccode(wp_vector),
        y_index=ccode(y_index), lane_valid="" if every_lane else f"{local_text} < {cg_out}",
        second_valid=("0" if second is sympy.false else ccode(second)) if cg_in % 2 else "")
    return Built(QPackedContext(**variables(base), qpacked=params), tuple(accesses))


SCHEDULE = register(Schedule(
    name="qpacked", target="c", families=("qconv",), template="c/qconv_packed.c.j2",
    applies=applies, build=build,
    doc="quantized: output channels in int32 lanes, input-channel pairs multiplied and added "
        "as int16 (pmaddwd, VNNI), packed weights"))
