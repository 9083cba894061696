"""C schedule ``qdepthwise`` for 2-D quantized depthwise convolutions (one input channel a
group): output columns in the int32 lanes of vectors (``qconv_depthwise.c.j2``).

A depthwise output channel reads one input plane with its own few taps, so there are no
channels to put in lanes (``qpacked``'s way): the lanes hold consecutive output columns, and
two horizontal taps are multiplied and added as an int16 pair (``qpacked``'s multiply-add
ladder, :data:`convgen.isa.MADD`).  Each task (a sample and an output channel) first lays
its input plane out as int16 differences ``x - x_zero_point``, the padding as zeros, then as
pairs of the columns one dilation apart, split by the column stride into phases (padded
column ``j * stride + phase``), so that the tap pairs of consecutive output columns are
consecutive in one phase: a pair of taps is one broadcast weight pair and one vector load,
with no bounds checks.  Integer sums are exact in any order: the result is the reference's,
bit for bit."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import symbolic as sym
from ..isa import MADD
from ..lower import BATCH, OC, N, Problem, symbols
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, loop, register, variables
from .reference import QConvContext, _c_float, qconv_context

__all__ = ["QDepthwiseParams", "applies", "build", "plane_bytes"]


def _geometry(problem: Problem) -> tuple[int, int, int, int]:
    """(rows, columns a phase, phases, difference columns): the pair buffer's padded rows the
    taps reach and, per phase of the column stride, the columns every block of lanes reads;
    the difference plane's padded columns those pairs read (one dilation past)."""
    layer = problem.layer
    (k0, k1), (s0, s1), (d0, d1) = layer.kernel_size, layer.stride, layer.dilation
    block = tuning.QPACKED_LANES * tuning.QDW_VECTORS
    blocks = -(-problem.out[2] // block)
    rows = (problem.out[1] - 1) * s0 + (k0 - 1) * d0 + 1
    width = blocks * block + (k1 - 1) * d1 // s1
    return rows, width, s1, width * s1 + d1


def plane_bytes(problem: Problem) -> int:
    """Bytes of a task's two buffers: the int16 difference plane and the int32 pairs."""
    rows, width, phases, columns = _geometry(problem)
    return rows * columns * 2 + phases * rows * width * 4


def applies(problem: Problem) -> str | None:
    """``None`` for 2-D quantized convolutions with one input channel a group whose plane
    buffers fit, else why not."""
    if problem.family != "qconv" or problem.ndim != 2 or problem.cg_in != 1:
        return "qdepthwise covers 2-D quantized depthwise convolutions (one input channel a group)"
    if plane_bytes(problem) > tuning.QDW_PLANE_BYTES:
        return (f"its plane buffers ({plane_bytes(problem):,} bytes) would exceed "
                f"{tuning.QDW_PLANE_BYTES:,} bytes of stack")
    return None


@dataclass(frozen=True)
class QDepthwiseParams:
    lanes: int
    vectors: int
    block: int          # output columns of a register block: lanes x vectors
    groups: int
    cg_out: int
    rows: int           # the pair buffer: padded rows, columns a phase, phases
    width: int
    phases: int
    columns: int        # the difference plane's padded columns
    kernel: tuple
    tap_pairs: int      # horizontal taps in pairs (the last one alone when odd)
    out_rows: int
    out_cols: int
    oc: str
    copied_rows: int    # input rows and columns some tap reads
    copied_cols: int
    x_index: str
    xd_write: str
    xd_size: int
    xb_size: int
    xb_write: str
    xd_first: str       # the pair's two differences
    xd_second: str
    w_index: str        # the weight of tap (k0, 2 kp + h)
    second_tap: str     # the pair's second tap exists ("" when it always does)
    phase: str          # the phase and offset of tap pair kp
    offset: str
    xb_vector: str      # the first lane of vector v of a tap pair
    y_index: str
    y_first: str        # the first lane of a stored vector
    madd: tuple         # convgen.isa.MADD
    vector: bool        # the float requantization runs on whole vectors
    scales: tuple       # binary32 scale of every output channel (float)


@dataclass(frozen=True)
class QDepthwiseContext(QConvContext):
    qdepthwise: QDepthwiseParams


def build(problem: Problem) -> Built:
    """The quantized reference context plus the depthwise loops and their accesses."""
    layer = problem.layer
    sample, out = problem.sample, problem.out
    base = qconv_context(problem).context
    (c_in, *spatial) = sample
    lanes, vectors = tuning.QPACKED_LANES, tuning.QDW_VECTORS
    block = lanes * vectors
    rows, width, phases, columns = _geometry(problem)
    (kn0, kn1), (s0, s1), (d0, d1) = layer.kernel_size, layer.stride, layer.dilation
    (lo0, _), (lo1, _) = problem.padding
    tap_pairs = -(-kn1 // 2)
    g, m, r, j, ph, jo, v, t, e, kp, h = (
        sympy.Symbol(s, integer=True, nonnegative=True)
        for s in ("g", "m", "r", "j", "ph", "jo", "v", "t", "e", "kp", "h"))
    o, k = symbols("o", 2), symbols("k", 2)
    p0, q1 = sympy.Symbol("p0", integer=True), sympy.Symbol("q1", integer=True)
    oc = g * problem.cg_out + m   # the task's output channel, the C's ``oc``
    x_index = sym.flat_index([N, g, p0, q1], [None, c_in, *spatial])
    xd_size, xb_size = rows * columns, phases * rows * width
    xd_write = (p0 + lo0) * columns + q1 + lo1
    copied_rows = min(spatial[0], rows - lo0)
    copied_cols = min(spatial[1], columns - lo1)
    xd_first = r * columns + j * s1 + ph
    xd_second = xd_first + d1
    xb_write = (ph * rows + r) * width + j
    w_index = sym.flat_index([OC, 0, k[0], 2 * kp + h], list(layer.weight_shape))
    tap_row = o[0] * s0 + k[0] * d0
    xb_read = (ph * rows + tap_row) * width + o[1] + v * lanes + t + jo
    vector = layer.requantizes and layer.rounding == "float"
    y_index = sym.flat_index([N, OC, o[0], o[1] + v * lanes + t], [None, *out])
    x_size, y_size = BATCH * sym.prod(sample), BATCH * sym.prod(out)
    task = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(g, layer.groups),
            *loop(m, problem.cg_out), sympy.Eq(OC, oc)]
    copy = [*task, *loop(p0, copied_rows), *loop(q1, copied_cols)]
    pairs = [*task, *loop(ph, phases), *loop(r, rows), *loop(j, width)]
    step = [*task, *loop(o[0], out[1]), *loop(o[1], out[2]), sympy.Eq(sympy.Mod(o[1], block), 0),
            *loop(k[0], kn0), *loop(kp, tap_pairs), *loop(ph, s1),
            sympy.Eq(2 * kp * d1, jo * s1 + ph), *loop(v, vectors), *loop(t, lanes)]
    stored = [*task, *loop(o[0], out[1]), *loop(o[1], out[2]),
              sympy.Eq(sympy.Mod(o[1], block), 0), *loop(v, vectors), *loop(t, lanes),
              sympy.Lt(o[1] + v * lanes + t, out[2])]
    accesses = [
        Access("xd", e, xd_size, "qdepthwise: difference plane, zeroing",
               tuple([*task, *loop(e, xd_size)])),
        Access("xd", xd_write, xd_size, "qdepthwise: difference plane, copying", tuple(copy)),
        Access("x", x_index, x_size, "qdepthwise: x", tuple(copy)),
        Access("xd", xd_first, xd_size, "qdepthwise: a pair's first column", tuple(pairs),
               scratch_read=True),
        Access("xd", xd_second, xd_size, "qdepthwise: a pair's second column", tuple(pairs),
               scratch_read=True),
        Access("xb", xb_write, xb_size, "qdepthwise: pair buffer, filling", tuple(pairs)),
        Access("w", w_index, sym.prod(layer.weight_shape), "qdepthwise: w",
               tuple([*task, *loop(k[0], kn0), *loop(kp, tap_pairs), *loop(h, 2),
                      sympy.Lt(2 * kp + h, kn1)])),
        Access("xb", xb_read, xb_size, "qdepthwise: pair buffer, a tap pair's lanes",
               tuple(step), scratch_read=True),
        Access("y", y_index, y_size, "qdepthwise: y", tuple(stored))]
    if layer.bias:
        accesses.append(Access("b", OC, layer.out_channels, "qdepthwise: b", tuple(task)))
    params = QDepthwiseParams(
        lanes=lanes, vectors=vectors, block=block, groups=layer.groups, cg_out=problem.cg_out,
        rows=rows, width=width, phases=phases, columns=columns, kernel=(kn0, kn1),
        tap_pairs=tap_pairs, out_rows=out[1], out_cols=out[2], oc=ccode(oc),
        copied_rows=copied_rows, copied_cols=copied_cols, x_index=ccode(x_index),
        xd_write=ccode(xd_write), xd_size=xd_size, xb_size=xb_size, xb_write=ccode(xb_write),
        xd_first=ccode(xd_first), xd_second=ccode(xd_second),
        w_index=ccode(w_index.subs(h, 0)),
        second_tap="" if kn1 % 2 == 0 else f"2*kp + 1 < {kn1}",
        phase=ccode(sympy.Mod(2 * kp * d1, s1)), offset=ccode(sympy.floor(2 * kp * d1 / s1)),
        xb_vector=ccode(xb_read.subs(t, 0)), y_index=ccode(y_index),
        y_first=ccode(y_index.subs(t, 0)), madd=MADD, vector=vector,
        scales=tuple(_c_float(s) for s in layer.scales) if vector else ())
    return Built(QDepthwiseContext(**variables(base), qdepthwise=params), tuple(accesses))


SCHEDULE = register(Schedule(
    name="qdepthwise", target="c", families=("qconv",), template="c/qconv_depthwise.c.j2",
    applies=applies, build=build,
    doc="quantized depthwise: output columns in int32 lanes, two horizontal taps multiplied "
        "and added as an int16 pair (pmaddwd, VNNI) over the input plane laid out as pairs"))
