"""The reference schedule of every family: one output element at a time, loops in the order
of the definition.  Exact (the same operations in the same order as the oracle), portable C99,
and the per-output body the CUDA direct kernel runs too (``templates/shared/body.j2``).

Each family's context is a frozen dataclass whose fields the templates print; each builder
also records every array access the template emits, for the bounds proofs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import sympy

from .. import quantization as q
from .. import symbolic as sym
from ..lower import BATCH, IC, OC, C, G, N, Problem, symbols
from ..printing import ccode
from .base import Access, Built, Schedule, axes, loop, loops, register

__all__ = ["AdaptiveContext", "ConvContext", "ConvTransposeContext", "PoolContext",
           "QConvContext", "QuantContext", "adaptive_context", "conv_context",
           "conv_transpose_context", "pool_context", "qconv_context", "reduction"]


# --------------------------------------------------------------------------- convolution


@dataclass(frozen=True)
class ConvDim:
    axis: str
    out: int
    kernel: int
    tap: str            # input position of tap k of output o (padded coordinates)
    inside: str         # that position lies in the input
    source: str         # the input element a padded position reads (non-zero padding)
    source_reads_p: bool
    tap_expr: sympy.Expr        # tap and inside as SymPy: the code the fast schedules'
    inside_expr: sympy.Basic    # proofs model is the code printed from these


@dataclass(frozen=True)
class ConvContext:
    dims: tuple
    c_out: int
    cg_in: int
    group: str
    zeros: bool
    padding_mode: str
    interior: str       # every tap of the output position reads the input ("" if none does)
    acc_init: str
    x_interior: str
    x_border: str
    w_index: str
    y_index: str


def conv_context(problem: Problem, sample: tuple | None = None,
                 out: tuple | None = None) -> Built:
    """The reference convolution, on ``sample -> out`` (default the problem's; the blocked
    schedules pass a pointwise layer's plane viewed as one row)."""
    layer = problem.layer
    sample, out = sample or problem.sample, out or problem.out
    ndim, (c_in, *spatial) = problem.ndim, sample
    o, k = symbols("o", ndim), symbols("k", ndim)
    p, q = symbols("p", ndim, False), symbols("q", ndim, False)
    pads = problem.padding  # a pointwise view has none either
    cg_in, cg_out = problem.cg_in, problem.cg_out
    dims, ranges = [], []
    for i, (n, m, kk, s, d, (lo, _)) in enumerate(zip(spatial, out[1:], layer.kernel_size,
                                                      layer.stride, layer.dilation, pads)):
        first, stop = sym.interior_range(n, m, kk, s, d, lo)
        ranges.append(sympy.And(sympy.Ge(o[i], first), sympy.Lt(o[i], stop))
                      if stop > first else sympy.false)
        source = sym.padded_source(p[i], n, layer.padding_mode)
        tap, inside = sym.tap_index(o[i], k[i], s, d, lo), sym.inside(p[i], n)
        dims.append(ConvDim(axes(ndim)[i], m, kk, ccode(tap), ccode(inside), ccode(source),
                            sympy.sympify(source).has(p[i]), tap, inside))
    interior = sympy.And(*ranges)
    channel = G * cg_in + IC
    zeros = layer.padding_mode == "zeros"
    x_interior = sym.flat_index([N, channel, *p], [None, c_in, *spatial])
    x_border = sym.flat_index([N, channel, *(p if zeros else q)], [None, c_in, *spatial])
    w_index = sym.flat_index([OC, IC, *k], list(layer.weight_shape))
    y_index = sym.flat_index([N, OC, *o], [None, *out])
    position = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(OC, layer.out_channels),
                sympy.Eq(G, sympy.floor(OC / cg_out)), *loops(o, out[1:])]
    taps = [*position, *loop(IC, cg_in), *loops(k, layer.kernel_size),
            *[sympy.Eq(p[i], dim.tap_expr) for i, dim in enumerate(dims)]]
    border = [dim.inside_expr for dim in dims] if zeros else \
        [sympy.Eq(q[i], sym.padded_source(p[i], n, layer.padding_mode))
         for i, n in enumerate(spatial)]
    x_size, y_size = BATCH * sym.prod(sample), BATCH * sym.prod(out)
    accesses = [Access("x", x_border, x_size, "x, border taps", tuple(taps + border)),
                Access("w", w_index, sym.prod(layer.weight_shape), "w", tuple(taps)),
                Access("y", y_index, y_size, "y", tuple(position))]
    if interior is not sympy.false:
        accesses.insert(0, Access("x", x_interior, x_size, "x, interior taps",
                                  tuple(taps + [interior])))
    if layer.bias:
        accesses.append(Access("b", OC, layer.out_channels, "b", tuple(position)))
    context = ConvContext(
        dims=tuple(dims), c_out=layer.out_channels, cg_in=cg_in,
        group=ccode(sympy.floor(OC / cg_out)), zeros=zeros, padding_mode=layer.padding_mode,
        interior="" if interior is sympy.false else ccode(interior),
        acc_init="b[oc]" if layer.bias else "0",
        x_interior=ccode(x_interior), x_border=ccode(x_border), w_index=ccode(w_index),
        y_index=ccode(y_index))
    return Built(context, tuple(accesses))


# --------------------------------------------------------------------------- quantized


def _c_float(value: float) -> str:
    """A binary32 value as an exact C literal: hexadecimal, with its shortest decimal in a
    comment."""
    mantissa, exponent = float(value).hex().split("p")
    mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}p{exponent}f /* {q.float32_text(value)} */"


def _c_int(value: int) -> str:
    """An int as a C literal, parenthesized when negative (``x - (-3)``)."""
    return f"({value})" if value < 0 else str(value)


@dataclass(frozen=True)
class QuantContext:
    """What the quantized convolution prints besides the convolution's loops: the zero
    points, and the requantization's constants, per tensor (one value) or per output channel
    (a ``static const`` table)."""

    x_zero_point: str
    w_zero_points: tuple        # one C literal, or one per output channel
    requantize: bool            # QLinearConv; ConvInteger stores the int32 accumulator
    rounding: str
    scales: tuple               # float: binary32 scales, C literals (one or per channel)
    multipliers: tuple          # fixed_point: int32 multipliers (one or per channel)
    shifts: tuple               # fixed_point: right shifts, >= 0 (one or per channel)
    y_zero_point: str
    low: int                    # the output's clamp
    high: int
    float_low: int              # the clamp less the zero point (the float rounding's)
    float_high: int
    bias: bool


@dataclass(frozen=True)
class QConvContext(ConvContext):
    quantized: QuantContext


def _table(values: tuple) -> tuple:
    """One value when every channel has the same, else the per-channel tuple."""
    return values[:1] if len(set(values)) == 1 else values


def qconv_context(problem: Problem) -> Built:
    """The quantized convolution: the reference convolution's loops, indices and accesses
    (a padded tap is the zero point, so it adds nothing and is skipped as zero padding is),
    integer products ``(x - x_zp) * (w - w_zp)`` into an int32 accumulator, and the
    requantization of :mod:`convgen.quantization` at the store."""
    layer = problem.layer
    built = conv_context(problem)
    requantize = layer.requantizes
    scales = multipliers = shifts = ()
    y_zero_point, low, high, zero = "0", 0, 0, 0
    if requantize:
        scales = tuple(_c_float(v) for v in _table(layer.scales))
        pairs = _table(layer.multipliers)
        multipliers = tuple(str(m) for m, _ in pairs)
        shifts = tuple(str(-shift) for _, shift in pairs)
        low, high = layer.clamp
        zero = layer.y_zero_point
        y_zero_point = _c_int(zero)
    quant = QuantContext(
        x_zero_point=_c_int(layer.x_zero_point),
        w_zero_points=tuple(_c_int(v) for v in _table(layer.w_zero_points)),
        requantize=requantize, rounding=getattr(layer, "rounding", ""), scales=scales,
        multipliers=multipliers, shifts=shifts, y_zero_point=y_zero_point, low=low,
        high=high, float_low=low - zero, float_high=high - zero, bias=layer.bias)
    fields = {f.name: getattr(built.context, f.name)
              for f in dataclasses.fields(built.context)}
    context = QConvContext(**{**fields, "acc_init": "0"}, quantized=quant)
    return Built(context, built.accesses)


# --------------------------------------------------------------------------- pools


@dataclass(frozen=True)
class QuantPool:
    """A quantized average pool's arithmetic (:mod:`convgen.quantization`) as C text:
    ``dequantize`` for ONNX Runtime's window pool (a binary32 sum of dequantized taps), else
    an int32 sum of zero-point differences; ``scale``, ``float_low``/``float_high`` for the
    global pool's requantization."""

    rounding: str
    dequantize: bool
    x_zero_point: str
    x_scale: str
    y_scale: str
    y_zero_point: str
    y_zero_float: str
    low: int
    high: int
    scale: str = ""
    float_low: int = 0
    float_high: int = 0


@dataclass(frozen=True)
class Reduction:
    """What a pooling reduction's C needs: the NaN test and indices (max), whether a divisor
    override replaces the count (average), the absolute value, power and root (LP), the
    quantized average's constants."""

    nan: bool = False
    indices: bool = False
    override: bool = False
    fabs: str = ""
    power: str = ""
    root: str = ""
    quant: QuantPool | None = None


def quant_pool(problem: Problem) -> QuantPool:
    """The constants of a quantized average pool (window or global)."""
    layer = problem.layer
    low, high = layer.clamp
    zero = layer.y_zero_point
    glob = problem.family == "adaptive_pool"
    scale = _c_float(q.global_scale(layer.x_scale, layer.y_scale, sym.prod(problem.spatial))) \
        if glob and layer.rounding == "float" else ""
    return QuantPool(
        rounding=layer.rounding, dequantize=layer.rounding == "float" and not glob,
        x_zero_point=_c_int(layer.x_zero_point), x_scale=_c_float(layer.x_scale),
        y_scale=_c_float(layer.y_scale), y_zero_point=_c_int(zero),
        y_zero_float=f"{'-' if zero < 0 else '+'} {abs(zero)}.0f", low=low, high=high,
        scale=scale, float_low=low - zero, float_high=high - zero)


#: Integer LP powers up to this are printed as products (exact for small integer data);
#: larger ones call ``pow``.
_MOST_PRODUCTS = 16


def reduction(problem: Problem) -> Reduction:
    """The pooling operation's C pieces (``problem.reduction``: max, avg or lp)."""
    layer, dtype = problem.layer, problem.dtype
    if problem.reduction == "max":
        return Reduction(nan=problem.floating, indices=problem.indices)
    if problem.reduction == "avg" and layer.quantized:
        return Reduction(quant=quant_pool(problem))
    if problem.reduction == "avg":
        return Reduction(override=getattr(layer, "divisor_override", None) is not None)
    suffix = "f" if dtype == "float32" else ""
    p = layer.norm_type
    if isinstance(p, int) and p <= _MOST_PRODUCTS:
        power = " * ".join(["a"] * p)
        root = {1: "acc", 2: f"sqrt{suffix}(acc)"}.get(p, f"pow{suffix}(acc, 1.0{suffix} / {p})")
    else:
        p = float(p)
        power = f"pow{suffix}(a, {p!r}{suffix})"
        root = f"pow{suffix}(acc, 1.0{suffix} / {p!r}{suffix})"
    return Reduction(fabs=f"fabs{suffix}", power=power, root=root)


@dataclass(frozen=True)
class PoolDim:
    axis: str
    out: int
    kernel: int
    tap: str
    inside_padded: str  # the tap lies within the padded input (ceil mode reaches past it)


@dataclass(frozen=True)
class PoolContext:
    dims: tuple
    channels: int
    op: str
    norm: Reduction
    interior: str
    inside: str
    interior_count: int
    count_include_pad: bool
    divisor: object     # the divisor override, or the C variable "count"
    x_index: str
    plane_index: str
    y_index: str


def _pool_accesses(problem: Problem, x_index, plane, y_index, position, reads) -> list:
    """x under each read domain, y (and indices) per output, and the index values' range."""
    x_size, y_size = BATCH * sym.prod(problem.sample), BATCH * sym.prod(problem.out)
    accesses = []
    for domain in reads:
        accesses.append(Access("x", x_index, x_size, "x", tuple(domain)))
        if problem.indices:
            accesses.append(Access("indices value", plane, sym.prod(problem.spatial),
                                   "the stored index, within the input plane", tuple(domain)))
    accesses.append(Access("y", y_index, y_size, "y", tuple(position)))
    if problem.indices:
        accesses.append(Access("indices", y_index, y_size, "indices", tuple(position)))
    return accesses


def pool_context(problem: Problem) -> Built:
    layer, ndim, (channels, *spatial), out = (problem.layer, problem.ndim, problem.sample,
                                              problem.out)
    o, k, p = symbols("o", ndim), symbols("k", ndim), symbols("p", ndim, False)
    pads = problem.padding
    dims, ranges, inside = [], [], []
    for i, (n, m, kk, s, d, (lo, hi)) in enumerate(zip(spatial, out[1:], layer.kernel_size,
                                                       layer.stride, layer.dilation, pads)):
        first, stop = sym.interior_range(n, m, kk, s, d, lo)
        ranges.append(sympy.And(sympy.Ge(o[i], first), sympy.Lt(o[i], stop))
                      if stop > first else sympy.false)
        inside.append(sym.inside(p[i], n))
        dims.append(PoolDim(axes(ndim)[i], m, kk, ccode(sym.tap_index(o[i], k[i], s, d, lo)),
                            ccode(sym.inside_padded(p[i], n, lo, hi))))
    interior = sympy.And(*ranges)
    override = getattr(layer, "divisor_override", None)
    x_index = sym.flat_index([N, C, *p], [None, channels, *spatial])
    plane = sym.flat_index(p, [None, *spatial[1:]])
    y_index = sym.flat_index([N, C, *o], [None, *out])
    position = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(C, channels),
                *loops(o, out[1:])]
    taps = [*position, *loops(k, layer.kernel_size),
            *[sympy.Eq(p[i], sym.tap_index(o[i], k[i], s, d, lo)) for i, (s, d, (lo, _)) in
              enumerate(zip(layer.stride, layer.dilation, pads))]]
    border = [*[sym.inside_padded(p[i], n, lo, hi) for i, (n, (lo, hi)) in
                enumerate(zip(spatial, pads))], *inside]
    accesses = _pool_accesses(problem, x_index, plane, y_index, position,
                              [taps + border] + ([taps + [interior]]
                                                 if interior is not sympy.false else []))
    context = PoolContext(
        dims=tuple(dims), channels=channels, op=problem.reduction, norm=reduction(problem),
        interior="" if interior is sympy.false else ccode(interior),
        inside=ccode(sympy.And(*inside)),
        interior_count=sym.prod(layer.kernel_size),
        count_include_pad=getattr(layer, "count_include_pad", False),
        divisor=override if override is not None else "count",
        x_index=ccode(x_index), plane_index=ccode(plane), y_index=ccode(y_index))
    return Built(context, tuple(accesses))


@dataclass(frozen=True)
class AdaptiveDim:
    axis: str
    out: int
    start: str          # the window of output o: [start, end)
    end: str


@dataclass(frozen=True)
class AdaptiveContext:
    dims: tuple
    channels: int
    op: str
    norm: Reduction
    window_size: str
    x_index: str
    plane_index: str
    y_index: str


def adaptive_context(problem: Problem) -> Built:
    ndim, (channels, *spatial), out = problem.ndim, problem.sample, problem.out
    o, p = symbols("o", ndim), symbols("p", ndim)
    dims, sizes = [], []
    for i, (n, m) in enumerate(zip(spatial, out[1:])):
        start, end = sym.adaptive_window(o[i], n, m)
        sizes.append(end - start)
        dims.append(AdaptiveDim(axes(ndim)[i], m, ccode(start), ccode(end)))
    x_index = sym.flat_index([N, C, *p], [None, channels, *spatial])
    plane = sym.flat_index(p, [None, *spatial[1:]])
    y_index = sym.flat_index([N, C, *o], [None, *out])
    position = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(C, channels),
                *loops(o, out[1:])]
    window = [c for i, (n, m) in enumerate(zip(spatial, out[1:]))
              for c in (sympy.Ge(p[i], sym.adaptive_window(o[i], n, m)[0]),
                        sympy.Lt(p[i], sym.adaptive_window(o[i], n, m)[1]))]
    accesses = _pool_accesses(problem, x_index, plane, y_index, position, [position + window])
    context = AdaptiveContext(
        dims=tuple(dims), channels=channels, op=problem.reduction, norm=reduction(problem),
        window_size=ccode(sym.prod(sizes)), x_index=ccode(x_index), plane_index=ccode(plane),
        y_index=ccode(y_index))
    return Built(context, tuple(accesses))


# --------------------------------------------------------------------------- transposed conv


@dataclass(frozen=True)
class ConvTransposeDim:
    axis: str
    out: int
    kernel: int
    numerator: str      # r = o + lo - k * dilation: output o reads input r / stride
    skip: str           # no input lands on (o, k)
    source: str
    beyond: str         # past the input


@dataclass(frozen=True)
class ConvTransposeContext:
    dims: tuple
    c_out: int
    cg_in: int
    group: str
    local_oc: str
    acc_init: str
    x_index: str
    w_index: str
    y_index: str


def conv_transpose_context(problem: Problem) -> Built:
    layer, ndim, (c_in, *spatial), out = (problem.layer, problem.ndim, problem.sample,
                                          problem.out)
    o, k = symbols("o", ndim), symbols("k", ndim)
    r_any, r, i = symbols("r", ndim, False), symbols("r", ndim), symbols("i", ndim)
    pads = problem.padding
    cg_in, cg_out = problem.cg_in, problem.cg_out
    group = sympy.floor(OC / cg_out)
    icl = sympy.Symbol("icl", integer=True, nonnegative=True)
    channel = G * cg_in + icl
    ocl = sympy.Symbol("ocl", integer=True, nonnegative=True)
    local_oc = OC - cg_out * G
    x_index = sym.flat_index([N, channel, *i], [None, c_in, *spatial])
    w_index = sym.flat_index([channel, ocl, *k], list(layer.weight_shape))
    y_index = sym.flat_index([N, OC, *o], [None, *out])
    position = [sympy.Ge(BATCH, 1), *loop(N, BATCH), *loop(OC, layer.out_channels),
                sympy.Eq(G, group), sympy.Eq(ocl, local_oc), *loops(o, out[1:])]
    taps = [*position, *loop(icl, cg_in), *loops(k, layer.kernel_size)]
    dims = []
    for d, (n, m, kk, s, dil, (lo, _)) in enumerate(zip(spatial, out[1:], layer.kernel_size,
                                                        layer.stride, layer.dilation, pads)):
        # each tap's facts once, for the template and the proof: r, the input it reads
        # (where r is a non-negative multiple of the stride) and whether that is past the end
        numerator, stride = sym.transpose_gather(o[d], k[d], s, dil, lo)
        skip = sympy.Or(sympy.Lt(r_any[d], 0), sympy.Ne(sympy.Mod(r_any[d], stride), 0))
        source = sympy.floor(r[d] / stride)     # printed after the skip: r >= 0 there
        beyond = sympy.Ge(i[d], n)
        dims.append(ConvTransposeDim(axes(ndim)[d], m, kk, ccode(numerator), ccode(skip),
                                     ccode(source), ccode(beyond)))
        taps += [sympy.Eq(r_any[d], numerator), sympy.Not(skip),
                 sympy.Eq(i[d], source.subs(r[d], r_any[d])), sympy.Not(beyond)]
    accesses = [Access("x", x_index, BATCH * sym.prod(problem.sample), "x", tuple(taps)),
                Access("w", w_index, sym.prod(layer.weight_shape), "w", tuple(taps)),
                Access("y", y_index, BATCH * sym.prod(out), "y", tuple(position))]
    if layer.bias:
        accesses.append(Access("b", OC, layer.out_channels, "b", tuple(position)))
    context = ConvTransposeContext(
        dims=tuple(dims), c_out=layer.out_channels, cg_in=cg_in, group=ccode(group),
        local_oc=ccode(local_oc), acc_init="b[oc]" if layer.bias else "0",
        x_index=ccode(x_index), w_index=ccode(w_index), y_index=ccode(y_index))
    return Built(context, tuple(accesses))


# --------------------------------------------------------------------------- registration

#: The reference context builder of each family: the C reference schedule and the CUDA
#: direct kernel print the same per-output body from it.
CONTEXTS = {"conv": conv_context, "conv_transpose": conv_transpose_context,
            "pool": pool_context, "adaptive_pool": adaptive_context, "qconv": qconv_context}


def _always(problem: Problem) -> None:
    return None


for _family, _build in CONTEXTS.items():
    register(Schedule(
        name="reference", target="c", families=(_family,), template=f"c/{_family}.c.j2",
        applies=_always, build=_build, portable=True,
        doc="one output element at a time in the definition's order: exact, portable C99"))
