"""C schedule ``qpacked`` for 2-D quantized convolutions: output channels in the int32 lanes
of a vector, the zero-point differences of two input channels as an int16 pair, multiplied
and added in pairs (``pmaddwd``, VNNI's ``vpdpwssd``, or portable vector extensions, from
:data:`convgen.isa.MADD`), weights packed per block and row (``qconv_packed.c.j2``).

Its 8-bit form (:func:`quads`: int8 weights with zero point 0, ONNX Runtime's and TFLite's
usual weights) puts four input channels in a word instead, the input as unsigned bytes (the
padding as the zero point) and the weights as themselves, multiplied and added four at a
time (VNNI's ``vpdpbusd``, or the even and odd bytes through the ``MADD`` ladder,
:data:`convgen.isa.DOT`); the input zero point's share ``za * sum w`` of each output channel
is taken out at the store, in wrapping arithmetic that leaves the exact sum.

Integer arithmetic: every sum is exact (the accumulator proofs bound every partial sum of
any subset of the products), so the order differs from the reference's and the result is
bit for bit the same."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import symbolic as sym
from ..isa import DOT, ISAS, MADD
from ..lower import BATCH, N, Problem, symbols
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, loop, register, variables
from .conv_packed import blocks
from .reference import QConvContext, _c_float, qconv_context

__all__ = ["QPackedParams", "applies", "build", "pack_bytes", "quads"]


def quads(problem: Problem) -> bool:
    """Whether the 8-bit form applies: int8 weights with zero point 0 (their values are the
    differences), four input channels' bytes a 32-bit word multiplied by ``vpdpbusd`` (the
    input as unsigned bytes: uint8 as is, int8 plus 128), the input's zero point taken out
    as ``za * sum w`` per output channel; the raw sums must fit int32 (every product of an
    unsigned byte and a signed one lies within 255 * 128)."""
    layer = problem.layer
    return (layer.weight_dtype == "int8" and set(layer.w_zero_points) == {0}
            and layer.taps * 255 * 128 <= 2**31 - 1)


def _blocking(problem: Problem) -> tuple[int, int, int, int]:
    """(vectors of channels a block, blocks a group, input-channel pairs, row width): the
    row buffer spans the padded input columns every block of columns reaches, for the
    widest block of any rung."""
    lanes, layer = tuning.QPACKED_LANES, problem.layer
    ocv, nb = blocks(problem.cg_out, lanes, tuning.QPACKED_VECTORS)
    most = max(tuning.QPACKED_COLUMNS[isa.name][ocv] for isa in ISAS)
    width = (problem.out[2] + most - 2) * layer.stride[1] + \
        (layer.kernel_size[1] - 1) * layer.dilation[1] + 1
    return ocv, nb, -(-problem.cg_in // _per_word(problem)), width


def _per_word(problem: Problem) -> int:
    """Input channels a 32-bit word of the row buffer holds: 4 bytes or 2 int16s."""
    return 4 if quads(problem) else 2


def pack_bytes(problem: Problem) -> tuple[int, int]:
    """Bytes of the packed weights (all blocks) and of one task's row buffer."""
    ocv, nb, pairs, width = _blocking(problem)
    layer, lanes = problem.layer, tuning.QPACKED_LANES
    weights = layer.groups * nb * pairs * sym.prod(layer.kernel_size) * ocv * lanes * 4
    return weights, layer.kernel_size[0] * width * pairs * 4


def applies(problem: Problem) -> str | None:
    """``None`` for 2-D quantized convolutions whose packed weights and row buffer fit,
    else why not."""
    if problem.family != "qconv" or problem.ndim != 2:
        return "qpacked covers 2-D quantized convolutions only"
    weights, row = pack_bytes(problem)
    if weights > tuning.QPACK_BYTES or row > tuning.QROW_BYTES:
        return (f"its packed weights ({weights:,} bytes) or row buffer ({row:,} bytes) would "
                f"exceed {tuning.QPACK_BYTES:,} or {tuning.QROW_BYTES:,} bytes of stack")
    return None


@dataclass(frozen=True)
class QPackedParams:
    lanes: int
    rows: int
    cols: int
    kernel: tuple
    ocv: int
    nb: int
    groups: int
    columns: dict       # output columns of a register block, by ISA rung and ocv
    most_columns: int
    pairs: int          # input-channel pairs of a group
    odd: bool           # the last pair has one channel
    width: int          # padded input columns of the row buffer
    every_lane: bool
    madd: tuple         # convgen.isa.MADD
    wp_size: int
    xr_size: int
    local: str
    oc: str
    block_width: str
    row: str
    row_inside: str
    column: str         # the row buffer's column of tap k1 of column c (padded coordinates)
    source: str         # the input column a row-buffer column holds
    source_inside: str
    x_a: str            # x of the pair's first channel, its second
    x_b: str
    w_index: str
    wp_scalar: str      # a packed int16 weight (block gb, lane l, half j)
    wp_vector: str      # the first of a vector's packed weights
    xr_write: str
    xr_read: str
    y_index: str
    lane_valid: str     # the lane holds one of the group's channels ("" when all do)
    second_valid: str   # the pair's second channel exists ("" when it always does)
    vector: bool        # the float requantization runs on whole vectors of channels
    lane_scales: tuple  # its binary32 scale of every lane (0 in padding lanes)
    lane_index: str     # a lane's entry in the lane tables
    lane_first: str     # the first lane of a vector
    quads: bool         # the 8-bit form: four input channels' bytes a word (vpdpbusd)
    per_word: int       # input channels a word: 4 bytes or 2 int16s
    x_j: str            # x of channel per_word * icp + j
    channel_j: str      # that channel exists ("" when it always does)
    x_unsigned: int     # the 8-bit form's input zero point, as an unsigned byte
    x_offset: int       # added to x to make it an unsigned byte (128 for int8)
    lane_count: int     # entries of a lane table
    dot: tuple          # convgen.isa.DOT


@dataclass(frozen=True)
class QPackedContext(QConvContext):
    qpacked: QPackedParams


def build(problem: Problem) -> Built:
    """The quantized reference context plus the packed loops and their accesses."""
    layer = problem.layer
    sample, out = problem.sample, problem.out
    base = qconv_context(problem).context
    (c_in, *spatial) = sample
    cg_in, cg_out = problem.cg_in, problem.cg_out
    lanes = tuning.QPACKED_LANES
    ocv, nb, pairs, width_b = _blocking(problem)
    (kn0, kn1), taps = layer.kernel_size, sym.prod(layer.kernel_size)
    pads = problem.padding
    (s0, s1), (d0, d1) = layer.stride, layer.dilation
    g, bl, icp, v, lane, j, c, width, cw, qq = (
        sympy.Symbol(s, integer=True, nonnegative=True)
        for s in ("g", "bl", "icp", "v", "l", "j", "c", "width", "cw", "qq"))
    o, k = symbols("o", 2), symbols("k", 2)
    p0, q1 = sympy.Symbol("p0", integer=True), sympy.Symbol("q1", integer=True)
    gb = g * nb + bl
    local = bl * ocv * lanes + v * lanes + lane  # output channel in the group
    oc = g * cg_out + local
    row, row_inside = sym.tap_index(o[0], k[0], s0, d0, pads[0][0]), sym.inside(p0, spatial[0])
    column = sym.tap_index(o[1] + c, k[1], s1, d1, 0)  # padded: the buffer starts at -lo
    source, source_inside = qq - pads[1][0], sym.inside(q1, spatial[1])

    def x_of(ic):
        return sym.flat_index([N, g * cg_in + ic, p0, q1], [None, c_in, *spatial])

    per_word = _per_word(problem)
    x_a, x_b, x_j = x_of(2 * icp), x_of(2 * icp + 1), x_of(per_word * icp + j)
    w_index = sym.flat_index([g * cg_out + local, per_word * icp + j, k[0], k[1]],
                             list(layer.weight_shape))
    wp_vector = ((((gb * kn0 + k[0]) * kn1 + k[1]) * pairs + icp) * ocv + v) * lanes * per_word
    wp_scalar = wp_vector + lane * per_word + j
    xr_write = sym.flat_index([k[0], qq, icp], [kn0, width_b, pairs])
    xr_read = sym.flat_index([k[0], column, icp], [kn0, width_b, pairs])
    y_index = sym.flat_index([N, oc, o[0], o[1] + c], [None, *out])
    valid = sympy.Lt(local, cg_out)
    second = sympy.Lt(2 * icp + 1, cg_in)
    channel_j = sympy.Lt(per_word * icp + j, cg_in)
    x_size, y_size = BATCH * sym.prod(sample), BATCH * sym.prod(out)
    w_size = sym.prod(layer.weight_shape)
    wp_size = layer.groups * nb * taps * pairs * ocv * lanes * per_word
    xr_size = kn0 * width_b * pairs
    pack = [*loop(g, layer.groups), *loop(bl, nb), *loop(v, ocv), *loop(lane, lanes),
            *loop(icp, pairs), *loop(j, per_word), *loop(k[0], kn0), *loop(k[1], kn1)]
    task = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(o[0], out[1]), *loop(g, layer.groups)]
    fill = [*task, *loop(k[0], kn0), sympy.Eq(p0, row), *loop(qq, width_b),
            sympy.Eq(q1, source), *loop(icp, pairs)]
    vector = layer.requantizes and layer.rounding == "float"
    lane_index = ((g * nb + bl) * ocv + v) * lanes + lane
    lane_count = layer.groups * nb * ocv * lanes
    accesses = [
        Access("w", w_index, w_size, "qpacked: w, packing",
               tuple(pack + [valid, channel_j])),
        Access("wp", wp_scalar, wp_size, "qpacked: packed weights, packing", tuple(pack)),
        Access("xr", xr_write, xr_size, "qpacked: row buffer, filling", tuple(fill))]
    if per_word == 4:
        accesses.append(Access("x", x_j, x_size, "qpacked: x, a byte of a word",
                               tuple(fill + [row_inside, source_inside, *loop(j, 4),
                                             channel_j])))
    else:
        accesses += [
            Access("x", x_a, x_size, "qpacked: x, first of a pair",
                   tuple(fill + [row_inside, source_inside])),
            Access("x", x_b, x_size, "qpacked: x, second of a pair",
                   tuple(fill + [row_inside, source_inside, second]))]
    lanes_domain = [*loop(g, layer.groups), *loop(bl, nb), *loop(v, ocv), *loop(lane, lanes)]
    if per_word == 4:  # the input zero point's share, za * sum w, a table of every lane
        accesses.append(Access("corr_lanes", lane_index, lane_count,
                               "qpacked: the zero point's lane table",
                               tuple(lanes_domain)))
    if vector and layer.bias:  # the bias, copied into a table of every lane
        accesses += [
            Access("b", oc, layer.out_channels, "qpacked: b, into the lane table",
                   tuple(lanes_domain + [valid])),
            Access("bias_lanes", lane_index, lane_count, "qpacked: the bias's lane table",
                   tuple(lanes_domain))]
    for isa in ISAS:
        cols = tuning.QPACKED_COLUMNS[isa.name][ocv]
        block = [*task, *loop(bl, nb), sympy.Eq(cw, cols), *loop(o[1], out[2]),
                 sympy.Eq(sympy.Mod(o[1], cols), 0),
                 sympy.Eq(width, sym.block_extent(o[1], cols, out[2]))]
        step = [*block, *loop(k[0], kn0), *loop(k[1], kn1), *loop(icp, pairs), *loop(c, cols)]
        reads = [*step, *loop(v, ocv), *loop(lane, lanes), *loop(j, 2)]
        stored = [*block, *loop(v, ocv), *loop(lane, lanes), *loop(c, cols),
                  sympy.Lt(c, width), valid]
        where = f"qpacked ({isa.name}, {cols} columns)"
        accesses += [
            Access("wp", wp_scalar, wp_size, f"{where}: packed weights, every lane read",
                   tuple(reads), scratch_read=True),
            Access("xr", xr_read, xr_size, f"{where}: row buffer, read", tuple(step),
                   scratch_read=True),
            Access("y", y_index, y_size, f"{where}: y", tuple(stored))]
        if layer.bias and not vector:
            accesses.append(Access("b", oc, layer.out_channels, f"{where}: b",
                                   tuple(stored)))
        if layer.bias and vector:
            accesses.append(Access(
                "bias_lanes", lane_index, lane_count, f"{where}: a vector of the bias's lanes",
                tuple([*block, *loop(v, ocv), *loop(lane, lanes)]), scratch_read=True))
        if per_word == 4:
            accesses.append(Access(
                "corr_lanes", lane_index, lane_count, f"{where}: the zero point's lanes",
                tuple([*block, *loop(v, ocv), *loop(lane, lanes)]), scratch_read=True))
    every_lane = cg_out % (ocv * lanes) == 0
    local_text = ccode(local)
    lane_scales = ()
    if vector:
        lane_scales = tuple(
            _c_float(layer.scales[gi * cg_out + (bi * ocv + vi) * lanes + li])
            if (bi * ocv + vi) * lanes + li < cg_out else "0.0f"
            for gi in range(layer.groups) for bi in range(nb) for vi in range(ocv)
            for li in range(lanes))
    params = QPackedParams(
        lanes=lanes, rows=out[1], cols=out[2], kernel=(kn0, kn1), ocv=ocv, nb=nb,
        groups=layer.groups, columns=tuning.QPACKED_COLUMNS,
        most_columns=max(tuning.QPACKED_COLUMNS[isa.name][ocv] for isa in ISAS),
        pairs=pairs, odd=cg_in % 2 == 1, width=width_b, every_lane=every_lane, madd=MADD,
        wp_size=wp_size, xr_size=xr_size, local=local_text, oc=ccode(oc),
        block_width=ccode(sym.block_extent(o[1], cw, out[2])), row=ccode(row),
        row_inside=ccode(row_inside), column=ccode(column), source=ccode(source),
        source_inside=ccode(source_inside), x_a=ccode(x_a), x_b=ccode(x_b),
        w_index=ccode(w_index), wp_scalar=ccode(wp_scalar), wp_vector=ccode(wp_vector),
        xr_write=ccode(xr_write), xr_read=ccode(xr_read), y_index=ccode(y_index),
        lane_valid="" if every_lane else f"{local_text} < {cg_out}",
        second_valid=("0" if second is sympy.false else ccode(second)) if cg_in % 2 else "",
        vector=vector, lane_scales=lane_scales, lane_index=ccode(lane_index),
        lane_first=ccode(lane_index.subs(lane, 0)), quads=per_word == 4,
        per_word=per_word, x_j=ccode(x_j),
        channel_j="" if cg_in % per_word == 0 else ccode(channel_j),
        x_unsigned=(layer.x_zero_point + 128) if layer.dtype == "int8" else layer.x_zero_point,
        x_offset=128 if layer.dtype == "int8" else 0, lane_count=lane_count, dot=DOT)
    return Built(QPackedContext(**variables(base), qpacked=params), tuple(accesses))


SCHEDULE = register(Schedule(
    name="qpacked", target="c", families=("qconv",), template="c/qconv_packed.c.j2",
    applies=applies, build=build,
    doc="quantized: output channels in int32 lanes, input-channel pairs multiplied and added "
        "as int16 (pmaddwd, VNNI), packed weights, a row buffer of the input's pairs"))
