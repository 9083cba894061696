"""C schedule ``winograd`` F(2x2, 3x3) for 3x3 stride-1 2-D float convolutions
(``conv_winograd.c.j2``; Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
CVPR 2016).  Opt-in only: not exact in general (error bound in :mod:`convgen.winograd`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import sympy

from .. import symbolic as sym
from .. import winograd
from ..lower import BATCH, N, Problem
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, loop, register, variables
from .conv_packed import blocks as packed_blocks
from .reference import ConvContext, conv_context

__all__ = ["WinogradParams", "applies", "blocks", "build"]


def weight_bytes(problem: Problem, vectors: int, cg_in: int) -> int:
    """The bytes of a block's transformed weights: 16 matrices of ``vectors`` vectors of
    output channels for each of ``cg_in`` input channels."""
    return 16 * cg_in * vectors * tuning.lanes(problem.dtype) * problem.size


def blocks(problem: Problem) -> tuple[int, int] | None:
    """(vectors per block, blocks per group), or None where a block of even one vector of
    output channels would exceed :data:`~convgen.schedules.tuning.WINOGRAD_BYTES`."""
    for most in range(tuning.PACKED_VECTORS, 0, -1):
        if weight_bytes(problem, most, problem.cg_in) <= tuning.WINOGRAD_BYTES:
            return packed_blocks(problem.cg_out, tuning.lanes(problem.dtype), most)
    return None


def applies(problem: Problem) -> str | None:
    """``None`` for 3x3, stride 1, undilated, zero-padded 2-D float convolutions with at
    least 2 output channels and a block's transformed weights within budget."""
    layer = problem.layer
    if (problem.family != "conv" or problem.ndim != 2
            or problem.dtype not in tuning.VECTOR_DTYPES
            or layer.kernel_size != (3, 3) or layer.stride != (1, 1)
            or layer.dilation != (1, 1) or layer.padding_mode != "zeros"
            or problem.cg_out < 2):
        return ("the winograd schedule covers 2-D float convolutions with a 3x3 kernel, "
                "stride 1, no dilation, zero padding and at least 2 output channels")
    if blocks(problem) is None:
        most = tuning.WINOGRAD_BYTES // weight_bytes(problem, 1, 1)
        return (f"a block's transformed weights (16 matrices of one vector of output channels) "
                f"exceed {tuning.WINOGRAD_BYTES} bytes past {most} input channels a group")
    return None


def columns(tiles):
    """The input columns a block of ``tiles`` 2x2 output tiles reads: 2 a tile and the 2
    the last tile's 4x4 input overlaps past it."""
    return 2 * tiles + 2


@dataclass(frozen=True)
class WinogradParams:
    transforms: Callable    # transforms(ctype) -> the statements of the transforms
    amplification: Fraction
    bias: bool
    cg_in: int
    cg_out: int
    lanes: int
    size: int
    ocv: int
    nb: int
    blocks: int
    columns: dict
    most_columns: int
    every_lane: bool
    th: int
    tw: int
    tb: int
    tblocks: int
    tile_rows: int
    tasks: int
    u_size: int
    v_size: int
    m_size: int
    d_row: int          # each of the 4 padded input rows of a block: 2 tb + 2 columns
    stack_kib: int
    local: str
    valid: str          # the lane holds one of the group's output channels
    oc: str
    tile_row: str
    tw0: str
    tbn: str
    row: str
    col: str
    row_inside: str
    x_index: str
    w_index: str
    u_index: str
    qlo: str
    qhi: str
    x_row: str
    u_vector: str
    v_index: str
    v_rows: tuple
    m_index: str
    m_vector: str
    y_index: str
    y_inside: str


@dataclass(frozen=True)
class WinogradContext(ConvContext):
    wino: WinogradParams


def build(problem: Problem) -> Built:
    """The reference conv context plus the transforms and loops of the Winograd template."""
    layer = problem.layer
    base = conv_context(problem).context
    (c_in, *spatial), (_, oh, ow) = problem.sample, problem.out
    cg_in, cg_out = problem.cg_in, problem.cg_out
    lanes, size = tuning.lanes(problem.dtype), problem.size
    ocv, nb = blocks(problem)
    (pt, _), (pl, _) = problem.padding
    th, tw = -(-oh // 2), -(-ow // 2)  # 2x2 output tiles
    tb = max(1, min(tw, tuning.WINOGRAD_TILE_BYTES // (16 * cg_in * size)))  # tiles a block
    tblocks = -(-tw // tb)
    tile_rows = max(1, min(th, -(-tuning.WINOGRAD_TILES_PER_TASK // tw)))
    tasks = -(-th // tile_rows)
    tile_rows = -(-th // tasks)
    d_row = columns(tb)
    names = ("gb", "rt", "r", "tbk", "icl", "xi", "v", "l", "t", "q", "a", "i", "j", "cw")
    gb, rt, r, tbk, icl, xi, v, lane, t, q, a, i, j, cw = (
        sympy.Symbol(s_, integer=True, nonnegative=True) for s_ in names)
    group = sympy.floor(gb / nb) if layer.groups > 1 else sympy.Integer(0)
    local = (gb - nb * group) * ocv * lanes + v * lanes + lane
    oc = group * cg_out + local
    valid = sympy.Lt(local, cg_out)
    tile_row = rt * tile_rows + r
    tw0 = tbk * tb
    tbn = sympy.Min(tb, tw - tw0)
    row = 2 * tile_row - pt + a  # input row a of the tile row
    col = 2 * tw0 - pl + q  # input column q of the block's padded rows
    qlo = sympy.Max(0, pl - 2 * tw0)  # the block's columns inside the input: [qlo, qhi)
    qhi = sympy.Min(columns(tbn), spatial[1] + pl - 2 * tw0)
    x_index = sym.flat_index([N, group * cg_in + icl, row, col], [None, c_in, *spatial])
    w_index = sym.flat_index([oc, icl, i, j], list(layer.weight_shape))
    skew = tuning.WINOGRAD_SKEW
    u_stride, v_stride, m_stride = (cg_in * ocv * lanes + skew, cg_in * tb + skew,
                                    tb * ocv * lanes + skew)
    u_index = xi * u_stride + icl * ocv * lanes + v * lanes + lane
    v_index = xi * v_stride + icl * tb + t
    m_index = xi * m_stride + t * ocv * lanes + v * lanes + lane
    y_index = sym.flat_index([N, oc, 2 * tile_row + i, 2 * (tw0 + t) + j],
                             [None, *problem.out])
    x_size, y_size = BATCH * sym.prod(problem.sample), BATCH * sym.prod(problem.out)
    u_size, v_size, m_size = 16 * u_stride, 16 * v_stride, 16 * m_stride
    task = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(gb, layer.groups * nb),
            *loop(rt, tasks)]
    pack = [*task, *loop(icl, cg_in), *loop(v, ocv), *loop(lane, lanes), *loop(xi, 16)]
    block = [*task, *loop(r, tile_rows), sympy.Lt(tile_row, th), *loop(tbk, tblocks)]
    tiles = [*block, *loop(t, tbn)]
    accesses = [
        Access("w", w_index, sym.prod(layer.weight_shape), "winograd: w",
               tuple(pack + [valid, *loop(i, 3), *loop(j, 3)])),
        Access("U", u_index, u_size, "winograd: transformed weights", tuple(pack)),
        Access("x", x_index, x_size, "winograd: x, the rows of a tile block (memcpy)",
               tuple(block + [*loop(icl, cg_in), *loop(a, 4), sympy.Ge(q, qlo),
                              sympy.Lt(q, qhi), sym.inside(row, spatial[0])])),
        Access("d", a * d_row + q, 4 * d_row, "winograd: the padded rows",
               tuple(block + [*loop(a, 4), sympy.Ge(q, qlo), sympy.Lt(q, qhi)])),
        Access("V", v_index, v_size, "winograd: transformed inputs",
               tuple(tiles + [*loop(icl, cg_in), *loop(xi, 16)])),
        Access("M", m_index, m_size, "winograd: products summed over input channels",
               tuple(tiles + [*loop(xi, 16), *loop(v, ocv), *loop(lane, lanes)])),
        # the reads of the three: the GEMMs' (U, V), the output transform's (M)
        Access("U", u_index, u_size, "winograd: transformed weights, read", tuple(
            tiles + [*loop(icl, cg_in), *loop(xi, 16), *loop(v, ocv), *loop(lane, lanes)]),
            scratch_read=True),
        Access("V", v_index, v_size, "winograd: transformed inputs, read",
               tuple(tiles + [*loop(xi, 16), *loop(icl, cg_in)]), scratch_read=True),
        Access("M", m_index, m_size, "winograd: the sums, read", tuple(
            tiles + [*loop(v, ocv), *loop(xi, 16), *loop(lane, lanes)]), scratch_read=True),
        Access("y", y_index, y_size, "winograd: y", tuple(
            tiles + [*loop(v, ocv), *loop(lane, lanes), valid, *loop(i, 2), *loop(j, 2),
                     sympy.Lt(2 * tile_row + i, oh), sympy.Lt(2 * (tw0 + t) + j, ow)]))]
    if layer.bias:
        accesses.append(Access("b", oc, layer.out_channels, "winograd: b",
                               tuple(task + [*loop(v, ocv), *loop(lane, lanes), valid])))
    k = sympy.Symbol("k", integer=True)
    params = WinogradParams(
        transforms=functools.partial(winograd.transforms, half="half"),
        amplification=winograd.AMPLIFICATION,
        bias=layer.bias, cg_in=cg_in, cg_out=cg_out, lanes=lanes, size=size, ocv=ocv, nb=nb,
        blocks=layer.groups * nb, columns=tuning.PACKED_COLUMNS,
        most_columns=max(table[ocv] for table in tuning.PACKED_COLUMNS.values()),
        every_lane=cg_out % (ocv * lanes) == 0,
        th=th, tw=tw, tb=tb, tblocks=tblocks, tile_rows=tile_rows, tasks=tasks,
        u_size=u_size, v_size=v_size, m_size=m_size,
        d_row=d_row, stack_kib=-(-(u_size + v_size + m_size + 4 * d_row) * size // 1024),
        local=ccode(local), valid=f"{ccode(local)} < {cg_out}", oc=ccode(oc),
        tile_row=ccode(tile_row), tw0=ccode(tw0),
        tbn=ccode(tbn), row=ccode(row), col=ccode(col),
        row_inside=ccode(sym.inside(row, spatial[0])),
        x_index=ccode(x_index), w_index=ccode(w_index), u_index=ccode(u_index),
        qlo=ccode(qlo), qhi=ccode(qhi), x_row=ccode(x_index.subs(q, qlo)),
        u_vector=ccode(u_index.subs(lane, 0)), v_index=ccode(v_index),
        v_rows=tuple(ccode(v_index.subs(xi, 4 * row_ + k)) for row_ in range(4)),
        m_index=ccode(m_index), m_vector=ccode(m_index.subs(lane, 0)), y_index=ccode(y_index),
        y_inside=ccode(sympy.And(sympy.Lt(2 * tile_row + i, oh),
                                 sympy.Lt(2 * (tw0 + t) + j, ow))))
    return Built(WinogradContext(**variables(base), wino=params), tuple(accesses))


SCHEDULE = register(Schedule(
    name="winograd", target="c", families=("conv",), template="c/conv_winograd.c.j2",
    applies=applies, build=build,
    doc="F(2x2, 3x3): 16 products a tile and input channel instead of 36; not exact, opt-in"))
