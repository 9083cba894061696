"""C schedule ``packed`` for 2-D convolutions with zero padding: output channels in vector
lanes, weights packed per task, one broadcast input per column (``conv_packed.c.j2``).  Bit
for bit the reference without FMA; within the dot-product error bound with it."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import symbolic as sym
from ..isa import ISAS
from ..lower import BATCH, N, Problem, symbols
from ..printing import ccode
from . import conv_blocked, tuning
from .base import Access, Built, Schedule, loop, register, variables
from .reference import ConvContext, conv_context

__all__ = ["PackedParams", "applies", "blocks", "build"]

applies = conv_blocked.applies  # the same layers: 2-D float convolutions, zero padding


def blocks(cg_out: int, lanes: int, most: int = tuning.PACKED_VECTORS) -> tuple[int, int]:
    """(vectors per block, blocks per group): the fewest blocks of at most ``most`` vectors,
    then the fewest vectors per block, so that padding lanes are as few as possible."""
    count = -(-cg_out // (most * lanes))
    return -(-cg_out // (count * lanes)), count


@dataclass(frozen=True)
class PackedParams:
    bias: bool
    cg_out: int
    lanes: int
    size: int
    ocv: int
    nb: int
    blocks: int
    columns: dict       # output columns of a register block, by ISA rung and ocv
    most_columns: int   # the most over every rung (the unroll count)
    pack_kib: int
    icb: int
    chunks: int
    rows: int
    tasks: int
    every_lane: bool
    taps: int
    group: str
    local: str
    oc: str
    icn: str
    row_start: str
    row_stop: str
    width: str
    full: str
    row: str
    row_inside: str
    column: str
    column_inside: str
    x_index: str
    w_index: str
    wp_index: str
    y_index: str
    wp_scalar: str
    wp_scalar_v: str
    lane_valid: str     # the lane holds one of the group's channels ("" when all do)
    initial: str        # a lane's starting value: the bias, or zero
    resume: str         # a column's starting value in a later chunk: the sum so far in y


@dataclass(frozen=True)
class PackedContext(ConvContext):
    packed: PackedParams


def build(problem: Problem) -> Built:
    """The reference conv context (on the pointwise view) plus the packed loops."""
    layer, dtype = problem.layer, problem.dtype
    sample, out = conv_blocked.view(problem)
    base = conv_context(problem, sample, out).context
    (c_in, *spatial) = sample
    cg_in, cg_out = problem.cg_in, problem.cg_out
    lanes, size = tuning.lanes(dtype), problem.size
    ocv, nb = blocks(cg_out, lanes)
    (kn0, kn1), taps = layer.kernel_size, layer.kernel_size[0] * layer.kernel_size[1]
    # input channels whose packed weights fit in PACK_BYTES (one at least), then the fewest
    # chunks of them and the fewest channels a chunk
    fit = max(1, tuning.PACK_BYTES // (taps * ocv * lanes * size))
    icb = -(-cg_in // -(-cg_in // fit))
    chunks = -(-cg_in // icb)
    tasks = -(-out[1] // min(out[1], max(1, -(-tuning.PACKED_COLUMNS_PER_TASK // out[2]))))
    rows = -(-out[1] // tasks)  # the same rows in every task
    pads = problem.padding
    (s0, s1), (d0, d1) = layer.stride, layer.dilation
    names = ("gb", "rt", "ch", "icl", "v", "l", "c", "width", "cw")
    gb, rt, ch, icl, v, lane, c, width, cw = (sympy.Symbol(s, integer=True, nonnegative=True)
                                           for s in names)
    o, k = symbols("o", 2), symbols("k", 2)
    p0, q1 = sympy.Symbol("p0", integer=True), sympy.Symbol("q1", integer=True)
    group = sympy.floor(gb / nb) if layer.groups > 1 else sympy.Integer(0)
    local = (gb - nb * group) * ocv * lanes + v * lanes + lane  # output channel in the group
    oc = group * cg_out + local
    ic = ch * icb + icl
    icn = sympy.Min(icb, cg_in - ch * icb)
    first, stop = sym.interior_range(spatial[1], out[2], kn1, s1, d1, pads[1][0])
    full = sympy.And(sympy.Ge(o[1], first), sympy.Le(o[1] + cw, stop))
    row, row_inside = sym.tap_index(o[0], k[0], s0, d0, pads[0][0]), sym.inside(p0, spatial[0])
    column = sym.tap_index(o[1] + c, k[1], s1, d1, pads[1][0])
    x_index = sym.flat_index([N, group * cg_in + ic, p0, q1], [None, c_in, *spatial])
    w_index = sym.flat_index([oc, ic, k[0], k[1]], list(layer.weight_shape))
    wp_index = ((icl * kn0 + k[0]) * kn1 + k[1]) * ocv + v  # a vector of the packed weights
    y_index = sym.flat_index([N, oc, o[0], o[1] + c], [None, *out])
    row_stop = sympy.Min(out[1], rt * rows + rows)
    valid = sympy.Lt(local, cg_out)
    x_size, y_size = BATCH * sym.prod(sample), BATCH * sym.prod(out)
    w_size, wp_size = sym.prod(layer.weight_shape), icb * taps * ocv * lanes
    accesses = []
    for isa in ISAS:
        cols = tuning.PACKED_COLUMNS[isa.name][ocv]
        task = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(gb, layer.groups * nb),
                *loop(rt, tasks), *loop(ch, chunks), sympy.Eq(cw, cols),
                *loop(v, ocv), *loop(lane, lanes)]
        pack = [*task, *loop(icl, icn), *loop(k[0], kn0), *loop(k[1], kn1)]
        block = [*task, sympy.Ge(o[0], rt * rows), sympy.Lt(o[0], row_stop),
                 *loop(o[1], out[2]), sympy.Eq(sympy.Mod(o[1], cols), 0),
                 sympy.Eq(width, sym.block_extent(o[1], cols, out[2]))]
        step = [*block, *loop(icl, icn), *loop(k[0], kn0), *loop(k[1], kn1),
                *loop(c, cols), sympy.Eq(p0, row), row_inside, sympy.Eq(q1, column)]
        stored = [*block, *loop(c, cols), sympy.Lt(c, width), valid]
        where = f"packed ({isa.name}, {cols} columns)"
        accesses += [
            Access("w", w_index, w_size, f"{where}: w, packing", tuple(pack + [valid])),
            Access("wp", wp_index * lanes + lane, wp_size, f"{where}: packed weights, packing",
                   tuple(pack)),
            Access("wp", wp_index * lanes + lane, wp_size,
                   f"{where}: packed weights, every lane of a vector read", tuple(step),
                   scratch_read=True),
            Access("x", x_index, x_size, f"{where}: x, whole blocks", tuple(step + [full])),
            Access("x", x_index, x_size, f"{where}: x, border blocks",
                   tuple(step + [sympy.Lt(c, width), sym.inside(q1, spatial[1])])),
            Access("y", y_index, y_size, f"{where}: y", tuple(stored))]
        if layer.bias:
            accesses.append(Access("b", oc, layer.out_channels, f"{where}: b",
                                   tuple(task + [valid])))
    every_lane = cg_out % (ocv * lanes) == 0
    oc_text, local_text, y_text = ccode(oc), ccode(local), ccode(y_index)
    params = PackedParams(
        bias=layer.bias, cg_out=cg_out, lanes=lanes, size=size, ocv=ocv, nb=nb,
        blocks=layer.groups * nb, columns=tuning.PACKED_COLUMNS,
        most_columns=max(tuning.PACKED_COLUMNS[isa.name][ocv] for isa in ISAS),
        pack_kib=tuning.PACK_BYTES // 1024, icb=icb, chunks=chunks, rows=rows, tasks=tasks,
        every_lane=every_lane, taps=taps,
        group=ccode(group), local=local_text, oc=oc_text, icn=ccode(icn),
        row_start=ccode(rt * rows), row_stop=ccode(row_stop),
        width=ccode(sym.block_extent(o[1], cw, out[2])), full=ccode(full),
        row=ccode(row), row_inside=ccode(row_inside),
        column=ccode(column), column_inside=ccode(sym.inside(q1, spatial[1])),
        x_index=ccode(x_index), w_index=ccode(w_index), wp_index=ccode(wp_index),
        y_index=y_text, wp_scalar=ccode(wp_index * lanes + lane),
        wp_scalar_v=ccode(wp_index * lanes),
        lane_valid="" if every_lane else f"{local_text} < {cg_out}",
        initial=f"b[{oc_text}]" if layer.bias else "0", resume=f"y[{y_text}]")
    return Built(PackedContext(**variables(base), packed=params), tuple(accesses))


SCHEDULE = register(Schedule(
    name="packed", target="c", families=("conv",), template="c/conv_packed.c.j2",
    applies=applies, build=build,
    doc="output channels in vector lanes, packed weights, broadcast inputs; FMA where the "
        "target has it"))
