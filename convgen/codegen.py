"""Spec -> specialized C source text.  Renders templates; never compiles.

Every size is a compile-time constant and every index expression comes from
:mod:`convgen.symbolic`, printed to C by :class:`IndexPrinter` (SymPy's C99 printer with
integer ``floor``/``ceiling``, ``Min``/``Max`` and ``Piecewise`` as C expressions).  The
templates in ``templates/c/`` hold only structure: loops, the interior/border split, the
reduction of each family.
"""

from __future__ import annotations

import hashlib
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import jinja2
import sympy
from sympy.printing.c import C99CodePrinter

from . import __version__
from . import symbolic as sym
from .errors import SpecError
from .resources import templates_dir
from .spec import DTYPE_SIZES, Layer

__all__ = ["Access", "C_TYPES", "GeneratedKernel", "IndexPrinter", "ccode", "family", "generate",
           "generator_hash", "kernel_name"]

C_TYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "uint8": "uint8_t"}
_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern
float for goto if inline int long register restrict return short signed sizeof static struct
switch typedef union unsigned void volatile while _Bool _Complex _Imaginary""".split())
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}\Z")


# --------------------------------------------------------------------------- printing


class IndexPrinter(C99CodePrinter):
    """C for integer index arithmetic.

    ``floor(a/b)`` and ``ceiling(a/b)`` of a non-negative integer ``a`` and a positive
    integer ``b`` become C integer division; ``Min``/``Max``/``Piecewise`` become ternaries;
    ``Mod`` becomes a floor modulo (C's ``%`` truncates towards zero).
    """

    def _fraction(self, expr):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        if not (denominator.is_Integer and denominator > 0 and numerator.is_nonnegative):
            raise SpecError(f"cannot print {expr} as C integer division: the numerator must "
                            "be a non-negative integer and the denominator a positive constant")
        return self._print(numerator), self._print(denominator)

    def _print_floor(self, expr):
        numerator, denominator = self._fraction(expr)
        return f"(({numerator}) / {denominator})"

    def _print_ceiling(self, expr):
        numerator, denominator = self._fraction(expr)
        return f"(({numerator} + {denominator} - 1) / {denominator})"

    def _print_Min(self, expr):
        a, b = self._print(expr.args[0]), self._print(sympy.Min(*expr.args[1:]))
        return f"(({a}) < ({b}) ? ({a}) : ({b}))"

    def _print_Max(self, expr):
        a, b = self._print(expr.args[0]), self._print(sympy.Max(*expr.args[1:]))
        return f"(({a}) > ({b}) ? ({a}) : ({b}))"

    def _print_Piecewise(self, expr):
        *pieces, (last, _) = expr.args
        text = self._print(last)
        for value, condition in reversed(pieces):
            text = f"(({self._print(condition)}) ? ({self._print(value)}) : ({text}))"
        return text

    def _print_Mod(self, expr):
        a, b = (self._print(arg) for arg in expr.args)
        if expr.args[0].is_nonnegative:
            return f"(({a}) % {b})"
        return f"(((({a}) % {b}) + {b}) % {b})"  # floor modulo, as SymPy means it


def ccode(expr) -> str:
    """Print an index expression (or condition) as C."""
    return IndexPrinter().doprint(sympy.sympify(expr))


def _symbols(prefix: str, count: int, nonnegative: bool = True) -> list[sympy.Symbol]:
    """Loop counters (non-negative) or input positions (may fall on the padding)."""
    return [sympy.Symbol(f"{prefix}{i}", integer=True, nonnegative=nonnegative or None)
            for i in range(count)]


_N, _C, _OC, _IC, _G = (sympy.Symbol(s, integer=True, nonnegative=True)
                        for s in ("n", "c", "oc", "ic", "g"))
_BATCH = sympy.Symbol("batch", integer=True, positive=True)


@dataclass(frozen=True)
class Access:
    """One array access of a kernel, as the bounds proof sees it.

    ``index`` must lie in ``[0, size)`` whenever every condition of ``domain`` holds: the
    loop ranges, the branch guards, and the definitions of the kernel's local variables
    (``p0 == k0 + o0 - 1``, ...), all the same SymPy expressions the template prints.
    """

    array: str
    index: sympy.Expr
    size: sympy.Expr
    where: str
    domain: tuple


def _loop(symbol, stop) -> list:
    return [sympy.Ge(symbol, 0), sympy.Lt(symbol, stop)]


def _loops(symbols, stops) -> list:
    return [c for symbol, stop in zip(symbols, stops) for c in _loop(symbol, stop)]
_AXES = {1: ["width"], 2: ["height", "width"], 3: ["depth", "height", "width"]}


# --------------------------------------------------------------------------- naming


def family(layer: Layer) -> str:
    """Template family: conv, conv_transpose, pool (window) or adaptive_pool."""
    kind = type(layer).__name__
    if kind.startswith("ConvTranspose"):
        return "conv_transpose"
    if kind.startswith("Conv"):
        return "conv"
    if kind.startswith(("Adaptive", "Global")):
        return "adaptive_pool"
    return "pool"


def kernel_name(layer: Layer, input_shape: Sequence, dtype: str, name: str | None = None) -> str:
    """A C identifier for the kernel: ``name`` when given (validated), else derived."""
    if name is not None:
        if not isinstance(name, str) or not _NAME.match(name) or name in _C_KEYWORDS \
                or keyword.iskeyword(name) or name.startswith("__"):
            raise SpecError(f"name={name!r} must be a C identifier: a letter or '_' then "
                            "letters, digits or '_', at most 63 characters, not a C keyword "
                            "and not starting with '__'")
        return name
    spec = f"{layer!r}|{tuple(input_shape)!r}|{dtype}"
    digest = hashlib.sha256(spec.encode()).hexdigest()[:10]
    return f"{type(layer).__name__.lower()}_{digest}_{dtype}"


@cache
def generator_hash() -> str:
    """sha256 over the templates and the generator's code: part of every cache key."""
    digest = hashlib.sha256(__version__.encode())
    here = Path(__file__).resolve().parent
    for path in sorted(templates_dir().rglob("*.j2")) + [here / "codegen.py",
                                                          here / "symbolic.py"]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())),
                              undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True,
                              autoescape=False)


# --------------------------------------------------------------------------- the product


@dataclass(frozen=True)
class GeneratedKernel:
    """The text of one kernel and what a caller needs to use it."""

    name: str
    layer: Layer
    input_shape: tuple          # (C, *spatial), one sample
    output_shape: tuple         # (C_out, *spatial_out), one sample
    dtype: str
    source: str                 # the .c file
    header: str                 # the .h file
    cdef: str                   # the prototype, for cffi
    arguments: tuple            # argument names in order: x, [w], [b], y, [indices], batch
    family: str
    accesses: tuple = ()        # every array access, for the bounds proof (convgen.bounds)
    schedule: str = "reference"
    schedule_reason: str = ""   # why this schedule (convgen.codegen.choose_schedule)


#: Work a call needs before OpenMP threads pay for their start (about 1 us to wake a thread
#: here, more than a small layer's whole kernel with two of them): operations plus 4 per
#: element read or written, since pools are bound by memory, not arithmetic.
PARALLEL_WORK = 2**19


def _parallel_if(layer: Layer, sample: tuple) -> str:
    """The OpenMP ``if`` clause: run serially when the whole batch is under
    :data:`PARALLEL_WORK`; nothing when one sample is over."""
    elements = sym.prod(sample) + sym.prod(layer.output_shape(sample))
    per_sample = int(layer.flops((1, *sample))) + 4 * int(elements)
    if per_sample >= PARALLEL_WORK:
        return ""
    return f" if(batch >= {-(-PARALLEL_WORK // max(1, per_sample))})"


def _check_dtype(layer: Layer, dtype: str) -> None:
    allowed = ["float32", "float64"]
    if type(layer).__name__.startswith(("MaxPool", "AdaptiveMaxPool", "GlobalMaxPool")):
        allowed += ["int8", "uint8"]
    if dtype not in allowed:
        raise SpecError(f"{type(layer).__name__}: dtype={dtype!r} must be one of "
                        f"{', '.join(allowed)}")


def generate(layer: Layer, input_shape: Sequence, dtype: str = "float32",
             name: str | None = None, openmp: bool = True,
             schedule: str = "auto") -> GeneratedKernel:
    """Render the C kernel of ``layer`` for inputs ``(N, C, *spatial)`` of ``input_shape``.

    ``input_shape`` is ``(C, *spatial)`` or ``(N, C, *spatial)`` with concrete sizes; the batch
    size stays a runtime argument.  ``schedule`` is ``auto`` (:func:`choose_schedule`),
    ``reference``, ``blocked`` or ``packed``; a derived name records a schedule other than
    the chosen one.
    """
    shape = layer.split_input(input_shape)
    if sym.is_symbolic(shape.channels, *shape.spatial):
        raise SpecError(f"{type(layer).__name__}: code generation needs a concrete "
                        f"input_shape, got {tuple(input_shape)!r}")
    _check_dtype(layer, dtype)
    sample = (shape.channels, *shape.spatial)
    out = tuple(layer.output_shape(sample))
    chosen, reason = choose_schedule(layer, sample, out, dtype)
    if schedule == "auto":
        schedule = chosen
    elif schedule not in SCHEDULES:
        raise SpecError(f"schedule={schedule!r} must be 'auto' or one of "
                        f"{', '.join(map(repr, SCHEDULES))}")
    elif schedule == "winograd" and _winograd_blocks(layer, sample, dtype) is None:
        most = _WINOGRAD_BYTES // (16 * _OWB.get(dtype, 1) * DTYPE_SIZES.get(dtype, 1))
        raise SpecError(f"schedule='winograd' applies to 2-D float convolutions with a 3x3 "
                        f"kernel, stride 1, no dilation, zero padding, at least 2 output "
                        f"channels and at most {most} input channels a group, not "
                        f"{layer.describe()} on {sample}")
    elif schedule == "blocked" and family(layer) == "adaptive_pool":
        if _adaptive_lanes(layer, sample, dtype) is None:
            raise SpecError(f"schedule='blocked' applies to float adaptive average and max "
                            f"pools (no indices) with at least {_OWB.get(dtype, 8)} channels, "
                            f"not {layer.describe()} on {sample} ({dtype})")
    elif schedule == "blocked" and family(layer) == "pool":
        if _pool_vector_span(layer, sample, out, dtype) is None:
            raise SpecError(f"schedule='blocked' applies to 2-D float average and max pools "
                            f"(no indices) with column stride 1 and a vector of interior "
                            f"outputs a row, not {layer.describe()} on {sample}")
    elif schedule != "reference" and (family(layer) != "conv" or layer.ndim != 2 or
                                      layer.padding_mode != "zeros"):
        raise SpecError(f"schedule={schedule!r} applies to 2-D convolutions with zero "
                        f"padding, not {layer.describe()}")
    else:
        reason = "asked for" + ("" if schedule == chosen else f" (the default would be "
                                                               f"{chosen}: {reason})")
    if name is None and schedule != chosen:
        name = kernel_name(layer, sample, dtype) + f"_{schedule}"
    name = kernel_name(layer, sample, dtype, name)
    kind = family(layer)
    fast = {("conv", "blocked"): _blocked_context, ("conv", "packed"): _packed_context,
            ("pool", "blocked"): _pool_blocked_context, ("conv", "winograd"): _winograd_context,
            ("adaptive_pool", "blocked"): _adaptive_blocked_context}
    context = fast.get((kind, schedule), _CONTEXTS[kind])(layer, sample, out, dtype)
    arguments = context.pop("arguments")
    accesses = tuple(context.pop("accesses"))
    ctype = C_TYPES[dtype]
    params = [f"const {ctype} *restrict {a}" if a in ("x", "w", "b") else
              f"int64_t *restrict {a}" if a == "indices" else
              f"{ctype} *restrict {a}" for a in arguments]
    signature = f"void {name}({', '.join(params + ['long batch'])})"
    cdef = signature.replace("restrict ", "") + ";"
    template = kind if schedule == "reference" else f"{kind}_{schedule}"
    banner = [f"Generated by convgen {__version__} from templates/c/{template}.c.j2; do not "
              "edit.",
              f"Layer: {layer.describe()}",
              f"Input (N, {', '.join(map(str, sample))}) -> output (N, "
              f"{', '.join(map(str, out))}), {dtype}, N = batch at run time."]
    common = dict(name=name, banner=banner, signature=signature, ctype=ctype, i64="int64_t",
                  openmp=openmp, omp_if=_parallel_if(layer, sample), **context)
    source = _environment().get_template(f"c/{template}.c.j2").render(**common)
    header = _render_header(name, banner, signature, layer, sample, out, arguments, kind)
    return GeneratedKernel(name, layer, sample, out, dtype, source, header, cdef,
                           tuple(arguments), kind, accesses, schedule, reason)


def _render_header(name, banner, signature, layer, sample, out, arguments, kind) -> str:
    sizes = [dict(name="X_SAMPLE", value=sym.prod(sample), check=" * ".join(map(str, sample)),
                  doc=f"x: (N, {', '.join(map(str, sample))}) per sample"),
             dict(name="Y_SAMPLE", value=sym.prod(out), check=" * ".join(map(str, out)),
                  doc=f"y: (N, {', '.join(map(str, out))}) per sample")]
    if "w" in arguments:
        sizes.append(dict(name="W_SIZE", value=sym.prod(layer.weight_shape),
                          check=" * ".join(map(str, layer.weight_shape)),
                          doc=f"w: {tuple(layer.weight_shape)}, PyTorch's layout"))
    if "b" in arguments:
        sizes.append(dict(name="B_SIZE", value=layer.out_channels, check=None,
                          doc=f"b: ({layer.out_channels},)"))
    if "indices" in arguments:
        sizes.append(dict(name="INDICES_SAMPLE", value=sym.prod(out), check=None,
                          doc="indices: like y, int64, flat within each (n, c) input plane"))
    includes = ["stdint.h"]
    banner = banner + ["Call: " + signature.replace("restrict ", "") + ";"]
    return _environment().get_template("c/header.h.j2").render(
        name=name, banner=banner, signature=signature, sizes=sizes, includes=includes)


# --------------------------------------------------------------------------- contexts


def _axes(ndim: int) -> list[str]:
    return _AXES.get(ndim, [f"dim {i}" for i in range(ndim)])


def _conv_context(layer, sample, out, dtype) -> dict:
    ndim, (c_in, *spatial) = layer.ndim, sample
    o, k = _symbols("o", ndim), _symbols("k", ndim)
    p, q = _symbols("p", ndim, False), _symbols("q", ndim, False)
    pads = layer.resolved_padding(spatial)
    cg_in, cg_out = c_in // layer.groups, layer.out_channels // layer.groups
    dims, ranges = [], []
    for i, (n, m, kk, s, d, (lo, _)) in enumerate(zip(spatial, out[1:], layer.kernel_size,
                                                      layer.stride, layer.dilation, pads)):
        first, stop = sym.interior_range(n, m, kk, s, d, lo)
        ranges.append(sympy.And(sympy.Ge(o[i], first), sympy.Lt(o[i], stop))
                      if stop > first else sympy.false)
        dims.append(dict(axis=_axes(ndim)[i], out=m, kernel=kk,
                         tap=ccode(sym.tap_index(o[i], k[i], s, d, lo)),
                         inside=ccode(sym.inside(p[i], n)),
                         source=ccode(sym.padded_source(p[i], n, layer.padding_mode)),
                         source_reads_p=sympy.sympify(
                             sym.padded_source(p[i], n, layer.padding_mode)).has(p[i])))
    interior = sympy.And(*ranges)
    channel = _G * cg_in + _IC
    zeros = layer.padding_mode == "zeros"
    x_interior = sym.flat_index([_N, channel, *p], [None, c_in, *spatial])
    x_border = sym.flat_index([_N, channel, *(p if zeros else q)], [None, c_in, *spatial])
    w_index = sym.flat_index([_OC, _IC, *k], list(layer.weight_shape))
    y_index = sym.flat_index([_N, _OC, *o], [None, *out])
    position = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(_OC, layer.out_channels),
                sympy.Eq(_G, sympy.floor(_OC / cg_out)), *_loops(o, out[1:])]
    taps = [*position, *_loop(_IC, cg_in), *_loops(k, layer.kernel_size),
            *[sympy.Eq(p[i], sym.tap_index(o[i], k[i], s, d, lo)) for i, (s, d, (lo, _)) in
              enumerate(zip(layer.stride, layer.dilation, pads))]]
    border = [sym.inside(p[i], n) for i, n in enumerate(spatial)] if zeros else \
        [sympy.Eq(q[i], sym.padded_source(p[i], n, layer.padding_mode))
         for i, n in enumerate(spatial)]
    x_size, y_size = _BATCH * sym.prod(sample), _BATCH * sym.prod(out)
    accesses = [Access("x", x_border, x_size, "x, border taps", tuple(taps + border)),
                Access("w", w_index, sym.prod(layer.weight_shape), "w", tuple(taps)),
                Access("y", y_index, y_size, "y", tuple(position))]
    if interior is not sympy.false:
        accesses.insert(0, Access("x", x_interior, x_size, "x, interior taps",
                                  tuple(taps + [interior])))
    if layer.bias:
        accesses.append(Access("b", _OC, layer.out_channels, "b", tuple(position)))
    return dict(
        accesses=accesses,
        arguments=["x", "w", *(["b"] if layer.bias else []), "y"],
        dims=dims, c_out=layer.out_channels, cg_in=cg_in,
        group=ccode(sympy.floor(_OC / cg_out)), zeros=zeros, padding_mode=layer.padding_mode,
        interior="" if interior is sympy.false else ccode(interior),
        acc_type=C_TYPES[dtype], acc_init="b[oc]" if layer.bias else "0",
        x_interior=ccode(x_interior), x_border=ccode(x_border), w_index=ccode(w_index),
        y_index=ccode(y_index))


def _reduction(layer, dtype: str) -> tuple[str, dict]:
    """The pooling operation and what its C needs (NaN test, LP power and root)."""
    kind = type(layer).__name__
    floating = dtype in ("float32", "float64")
    if "Max" in kind:
        return "max", dict(nan=floating, indices=getattr(layer, "return_indices", False),
                           override=False)
    if "Avg" in kind:
        return "avg", dict(override=getattr(layer, "divisor_override", None) is not None)
    suffix = "f" if dtype == "float32" else ""
    p = layer.norm_type
    if isinstance(p, int):
        power = " * ".join(["a"] * p)
        root = {1: "acc", 2: f"sqrt{suffix}(acc)"}.get(p, f"pow{suffix}(acc, 1.0{suffix} / {p})")
    else:
        power = f"pow{suffix}(a, {p!r}{suffix})"
        root = f"pow{suffix}(acc, 1.0{suffix} / {p!r}{suffix})"
    return "lp", dict(fabs=f"fabs{suffix}", power=power, root=root)


def _pool_arguments(layer) -> list[str]:
    return ["x", "y", *(["indices"] if getattr(layer, "return_indices", False) else [])]


def _pool_context(layer, sample, out, dtype) -> dict:
    ndim, (channels, *spatial) = layer.ndim, sample
    o, k, p = _symbols("o", ndim), _symbols("k", ndim), _symbols("p", ndim, False)
    pads = layer.resolved_padding(spatial)
    dims, ranges, inside = [], [], []
    for i, (n, m, kk, s, d, (lo, hi)) in enumerate(zip(spatial, out[1:], layer.kernel_size,
                                                       layer.stride, layer.dilation, pads)):
        first, stop = sym.interior_range(n, m, kk, s, d, lo)
        ranges.append(sympy.And(sympy.Ge(o[i], first), sympy.Lt(o[i], stop))
                      if stop > first else sympy.false)
        inside.append(sym.inside(p[i], n))
        dims.append(dict(axis=_axes(ndim)[i], out=m, kernel=kk,
                         tap=ccode(sym.tap_index(o[i], k[i], s, d, lo)),
                         inside_padded=ccode(sym.inside_padded(p[i], n, lo, hi))))
    interior = sympy.And(*ranges)
    op, norm = _reduction(layer, dtype)
    override = getattr(layer, "divisor_override", None)
    x_index = sym.flat_index([_N, _C, *p], [None, channels, *spatial])
    plane = sym.flat_index(p, [None, *spatial[1:]])
    y_index = sym.flat_index([_N, _C, *o], [None, *out])
    position = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(_C, channels),
                *_loops(o, out[1:])]
    taps = [*position, *_loops(k, layer.kernel_size),
            *[sympy.Eq(p[i], sym.tap_index(o[i], k[i], s, d, lo)) for i, (s, d, (lo, _)) in
              enumerate(zip(layer.stride, layer.dilation, pads))]]
    border = [*[sym.inside_padded(p[i], n, lo, hi) for i, (n, (lo, hi)) in
                enumerate(zip(spatial, pads))], *inside]
    accesses = _pool_accesses(layer, x_index, plane, y_index, sample, out, position,
                              [taps + border] + ([taps + [interior]]
                                                 if interior is not sympy.false else []))
    return dict(
        accesses=accesses,
        arguments=_pool_arguments(layer), dims=dims, channels=channels, op=op, norm=norm,
        interior="" if interior is sympy.false else ccode(interior),
        inside=ccode(sympy.And(*inside)),
        interior_count=sym.prod(layer.kernel_size),
        count_include_pad=getattr(layer, "count_include_pad", False),
        divisor=override if override is not None else "count",
        x_index=ccode(x_index), plane_index=ccode(plane), y_index=ccode(y_index))


def _pool_accesses(layer, x_index, plane, y_index, sample, out, position, reads) -> list:
    """x under each read domain, y (and indices) per output, and the index values' range."""
    x_size, y_size = _BATCH * sym.prod(sample), _BATCH * sym.prod(out)
    accesses = []
    for domain in reads:
        accesses.append(Access("x", x_index, x_size, "x", tuple(domain)))
        if getattr(layer, "return_indices", False):
            accesses.append(Access("indices value", plane, sym.prod(sample[1:]),
                                   "the stored index, within the input plane", tuple(domain)))
    accesses.append(Access("y", y_index, y_size, "y", tuple(position)))
    if getattr(layer, "return_indices", False):
        accesses.append(Access("indices", y_index, y_size, "indices", tuple(position)))
    return accesses


def _adaptive_context(layer, sample, out, dtype) -> dict:
    ndim, (channels, *spatial) = layer.ndim, sample
    o, p = _symbols("o", ndim), _symbols("p", ndim)
    dims, sizes = [], []
    for i, (n, m) in enumerate(zip(spatial, out[1:])):
        start, end = sym.adaptive_window(o[i], n, m)
        sizes.append(end - start)
        dims.append(dict(axis=_axes(ndim)[i], out=m, start=ccode(start), end=ccode(end)))
    op, norm = _reduction(layer, dtype)
    x_index = sym.flat_index([_N, _C, *p], [None, channels, *spatial])
    plane = sym.flat_index(p, [None, *spatial[1:]])
    y_index = sym.flat_index([_N, _C, *o], [None, *out])
    position = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(_C, channels),
                *_loops(o, out[1:])]
    window = [c for i, (n, m) in enumerate(zip(spatial, out[1:]))
              for c in (sympy.Ge(p[i], sym.adaptive_window(o[i], n, m)[0]),
                        sympy.Lt(p[i], sym.adaptive_window(o[i], n, m)[1]))]
    return dict(
        accesses=_pool_accesses(layer, x_index, plane, y_index, sample, out, position,
                                [position + window]),
        arguments=_pool_arguments(layer), dims=dims, channels=channels, op=op, norm=norm,
        window_size=ccode(sym.prod(sizes)), x_index=ccode(x_index), plane_index=ccode(plane),
        y_index=ccode(y_index))


def _conv_transpose_context(layer, sample, out, dtype) -> dict:
    ndim, (c_in, *spatial) = layer.ndim, sample
    o, k = _symbols("o", ndim), _symbols("k", ndim)
    r_any, r, i = _symbols("r", ndim, False), _symbols("r", ndim), _symbols("i", ndim)
    pads = layer.resolved_padding(spatial)
    cg_in, cg_out = c_in // layer.groups, layer.out_channels // layer.groups
    dims = []
    for d, (n, m, kk, s, dil, (lo, _)) in enumerate(zip(spatial, out[1:], layer.kernel_size,
                                                        layer.stride, layer.dilation, pads)):
        numerator, stride = sym.transpose_gather(o[d], k[d], s, dil, lo)
        skip = sympy.Or(sympy.Lt(r_any[d], 0), sympy.Ne(sympy.Mod(r_any[d], stride), 0))
        dims.append(dict(axis=_axes(ndim)[d], out=m, kernel=kk, numerator=ccode(numerator),
                         skip=ccode(skip), source=ccode(sympy.floor(r[d] / stride)),
                         beyond=ccode(sympy.Ge(i[d], n))))
    group = sympy.floor(_OC / cg_out)
    icl = sympy.Symbol("icl", integer=True, nonnegative=True)
    channel = _G * cg_in + icl
    ocl = sympy.Symbol("ocl", integer=True, nonnegative=True)
    x_index = sym.flat_index([_N, channel, *i], [None, c_in, *spatial])
    w_index = sym.flat_index([channel, ocl, *k], list(layer.weight_shape))
    y_index = sym.flat_index([_N, _OC, *o], [None, *out])
    position = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(_OC, layer.out_channels),
                sympy.Eq(_G, group), sympy.Eq(ocl, _OC - cg_out * _G), *_loops(o, out[1:])]
    taps = [*position, *_loop(icl, cg_in), *_loops(k, layer.kernel_size)]
    for d, (n, s, dil, (lo, _)) in enumerate(zip(spatial, layer.stride, layer.dilation, pads)):
        numerator, stride = sym.transpose_gather(o[d], k[d], s, dil, lo)
        taps += [sympy.Eq(r_any[d], numerator), sympy.Ge(r_any[d], 0),
                 sympy.Eq(sympy.Mod(r_any[d], stride), 0),
                 sympy.Eq(i[d], sympy.floor(r_any[d] / stride)), sympy.Lt(i[d], n)]
    accesses = [Access("x", x_index, _BATCH * sym.prod(sample), "x", tuple(taps)),
                Access("w", w_index, sym.prod(layer.weight_shape), "w", tuple(taps)),
                Access("y", y_index, _BATCH * sym.prod(out), "y", tuple(position))]
    if layer.bias:
        accesses.append(Access("b", _OC, layer.out_channels, "b", tuple(position)))
    return dict(
        accesses=accesses,
        arguments=["x", "w", *(["b"] if layer.bias else []), "y"],
        dims=dims, c_out=layer.out_channels, cg_in=cg_in, group=ccode(group),
        local_oc=ccode(_OC - cg_out * group),
        acc_type=C_TYPES[dtype], acc_init="b[oc]" if layer.bias else "0",
        x_index=ccode(x_index), w_index=ccode(w_index), y_index=ccode(y_index))


#: C schedules: ``reference`` (every family; the exact default for verification),
#: ``blocked`` (2-D convolutions with zero padding: register blocks of output channels x
#: output columns in vector lanes; bit for bit the reference) and ``packed`` (the same
#: layers: output channels in vector lanes, packed weights, broadcast inputs; bit for bit
#: the reference without FMA, within the dot-product error bound with it).
SCHEDULES = ("reference", "blocked", "packed", "winograd")
_OWB = {"float32": 8, "float64": 4}  # output columns a block: 32 bytes, one vector
_MASK_TYPES = {"float32": "int", "float64": "long long"}  # lane masks of a 32-byte vector
_FMA = {"float32": "_mm256_fmadd_ps", "float64": "_mm256_fmadd_pd"}  # x86 FMA, 32 bytes


def _channel_block(cg_out: int) -> int:
    """The largest divisor of the group's output channels up to 8: blocks never straddle
    groups and need no remainder loop."""
    return max(d for d in range(1, 17) if cg_out % d == 0)


def _column_vectors(ocb: int, width: int, owb: int) -> int:
    """Vectors of output columns a blocked register block holds: up to 12 accumulators
    (channels x vectors), the row's vectors split into equal blocks."""
    vectors = -(-width // owb)
    blocks = -(-vectors // max(1, 12 // ocb))
    return -(-vectors // blocks)


def _pointwise(layer, sample) -> bool:
    """A 1x1 convolution with stride 1 and no padding: a GEMM over the flattened plane."""
    return (family(layer) == "conv" and layer.ndim == 2 and layer.kernel_size == (1, 1)
            and layer.stride == (1, 1)
            and layer.resolved_padding(sample[1:]) == ((0, 0), (0, 0)))


def _blocked_view(layer, sample: tuple, out: tuple) -> tuple[tuple, tuple]:
    """The (input, output) shapes the blocked loops run over: a pointwise convolution's
    H x W plane is one row of H*W columns (the same memory), so blocks run across rows."""
    if _pointwise(layer, sample):
        return (sample[0], 1, sample[1] * sample[2]), (out[0], 1, out[1] * out[2])
    return sample, out


def choose_schedule(layer: Layer, sample: tuple, out: tuple, dtype: str) -> tuple[str, str]:
    """The schedule a layer gets by default, and why (recorded in the kernel report).

    A cost model in words, for 2-D convolutions with zero padding (no remapped taps):
    ``packed`` (output channels in vector lanes) wherever a group's output channels fill at
    least one vector (8 floats, 4 doubles): measured 1.5-2x faster than ``blocked`` on the
    ResNet, stem, pointwise and 3x128x128 layers.  Fewer channels a group (depthwise: 1 in
    8 lanes; LeNet's 6; the 3x32x32 case's 3) go to ``blocked`` (output columns in lanes,
    measured equal or faster there) when whole register blocks cover most of the output,
    so that the per-output border code runs on few positions.  Pools: ``blocked`` where
    interior outputs fill a vector.  ``winograd`` is never chosen: it is not exact."""
    if family(layer) == "adaptive_pool":
        if _adaptive_lanes(layer, sample, dtype) is None:
            return "reference", ("the blocked adaptive pool schedule covers float average "
                                 "and max pools (no indices) with a vector of channels")
        return "blocked", (f"{_OWB[dtype]} channels a vector: independent sums instead of "
                           "one dependent chain")
    if family(layer) == "pool":
        if _pool_vector_span(layer, sample, out, dtype) is None:
            return "reference", ("the blocked pool schedule covers 2-D float average and max "
                                 "pools (no indices) with column stride 1 and at least one "
                                 "vector of interior outputs a row")
        return "blocked", (f"interior outputs run {_OWB[dtype]} at a time as vectors, the "
                           "border ones as in the reference schedule")
    if family(layer) != "conv" or layer.ndim != 2 or dtype not in _OWB:
        return "reference", "the fast schedules cover 2-D float convolutions and pools only"
    if layer.padding_mode != "zeros":
        return "reference", f"{layer.padding_mode} padding remaps taps; blocks assume zeros"
    cg_out = layer.out_channels // layer.groups
    owb = _OWB[dtype]
    flat = " (1x1: the plane as one row, a GEMM)" if _pointwise(layer, sample) else ""
    if cg_out >= owb:
        ocv, nb = _packed_blocks(cg_out, owb)
        return "packed", (f"{cg_out} output channels a group fill {cg_out} of "
                          f"{ocv * nb * owb} lanes of {nb} packed block(s) of {ocv} vector(s); "
                          "a broadcast input serves them all" + flat)
    sample, out = _blocked_view(layer, sample, out)
    pads = layer.resolved_padding(sample[1:])
    rows = sym.interior_range(sample[1], out[1], layer.kernel_size[0], layer.stride[0],
                              layer.dilation[0], pads[0][0])
    cols = sym.interior_range(sample[2], out[2], layer.kernel_size[1], layer.stride[1],
                              layer.dilation[1], pads[1][0])
    covered = (rows[1] - rows[0]) * ((cols[1] - cols[0]) // owb * owb)
    if covered * 2 < out[1] * out[2]:
        return "reference", (f"whole {owb}-column blocks would cover {covered} of "
                             f"{out[1] * out[2]} output positions, under half")
    return "blocked", (f"whole register blocks ({_channel_block(cg_out)} channels x {owb} "
                       f"columns) cover {covered} of {out[1] * out[2]} output positions"
                       + flat)


def _blocked_context(layer, sample, out, dtype) -> dict:
    """The reference conv context plus the register-blocked loops of ``conv_blocked.c.j2``."""
    sample, out = _blocked_view(layer, sample, out)
    context = _conv_context(layer, sample, out, dtype)
    (c_in, *spatial) = sample
    cg_in, cg_out = c_in // layer.groups, layer.out_channels // layer.groups
    ocb = _channel_block(cg_out)
    owb = _OWB[dtype]
    cv = _column_vectors(ocb, out[2], owb)
    pads = layer.resolved_padding(spatial)
    (s0, s1), (d0, d1), (kn0, kn1) = layer.stride, layer.dilation, layer.kernel_size
    ob, oc0, j, i, width = (sympy.Symbol(v, integer=True, nonnegative=True)
                            for v in ("ob", "oc0", "j", "i", "width"))
    o, k = _symbols("o", 2), _symbols("k", 2)
    p, q1 = _symbols("p", 2, False), sympy.Symbol("q1", integer=True)
    group = sympy.floor(oc0 / cg_out)
    last = sym.tap_index(o[1] + owb - 1, k[1], s1, d1, pads[1][0])  # the last lane's column
    lanes_inside = sympy.And(sympy.Ge(p[1], 0), sympy.Lt(last, spatial[1]))
    column = sym.tap_index(o[1] + i, k[1], s1, d1, pads[1][0])
    channel = _G * cg_in + _IC
    x_fast = sym.flat_index([_N, channel, p[0], p[1] + i * s1], [None, c_in, *spatial])
    x_row = sym.flat_index([_N, channel, p[0], p[1]], [None, c_in, *spatial])
    x_guarded = sym.flat_index([_N, channel, p[0], q1], [None, c_in, *spatial])
    w_index = sym.flat_index([oc0 + j, _IC, k[0], k[1]], list(layer.weight_shape))
    y_index = sym.flat_index([_N, oc0 + j, o[0], o[1] + i], [None, *out])
    ob1, cv_ = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("ob1", "cv"))
    vector_start = ob1 + cv_ * owb  # first column of vector cv of the block at ob1
    block = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(ob, layer.out_channels // ocb),
             sympy.Eq(oc0, ob * ocb), sympy.Eq(_G, group), *_loop(o[0], out[1]),
             *_loop(ob1, out[2]), sympy.Eq(sympy.Mod(ob1, cv * owb), 0), *_loop(cv_, cv),
             sympy.Eq(o[1], vector_start), sympy.Lt(o[1], out[2]),
             sympy.Eq(width, sym.block_extent(o[1], owb, out[2])), *_loop(j, ocb)]
    taps = [*block, *_loop(_IC, cg_in), *_loop(k[0], kn0), *_loop(k[1], kn1), *_loop(i, owb),
            sympy.Eq(p[0], sym.tap_index(o[0], k[0], s0, d0, pads[0][0])),
            sym.inside(p[0], spatial[0]),
            sympy.Eq(p[1], sym.tap_index(o[1], k[1], s1, d1, pads[1][0]))]
    x_size, y_size = _BATCH * sym.prod(sample), _BATCH * sym.prod(out)
    accesses = [
        Access("x", x_fast, x_size, "blocked: x, whole vectors", tuple(taps + [lanes_inside])),
        Access("x", x_guarded, x_size, "blocked: x, lane by lane", tuple(
            taps + [sympy.Eq(q1, column), sym.inside(q1, spatial[1])])),
        Access("w", w_index, sym.prod(layer.weight_shape), "blocked: w", tuple(taps)),
        Access("y", y_index, y_size, "blocked: y", tuple(block + [*_loop(i, owb),
                                                                    sympy.Lt(i, width)]))]
    if s1 == 1:  # whole vectors: the first and last elements bound the memcpy
        accesses += [Access("x", x_row + owb - 1, x_size, "blocked: x, last of a vector",
                            tuple(taps + [lanes_inside])),
                     Access("y", y_index.subs(i, owb - 1), y_size,
                            "blocked: y, last of a whole vector",
                            tuple(block + [sympy.Eq(width, owb)]))]
    if layer.bias:
        accesses.append(Access("b", oc0 + j, layer.out_channels, "blocked: b", tuple(block)))
    context["accesses"] = accesses
    context["blocked"] = dict(
        ocb=ocb, owb=owb, blocks=layer.out_channels // ocb, cv=cv,
        vector_start=ccode(vector_start),
        overhang=-(-out[2] // (cv * owb)) * cv * owb - out[2] >= owb,
        size=DTYPE_SIZES[dtype], contiguous=s1 == 1, group=ccode(group),
        mask_type=_MASK_TYPES[dtype],
        width=ccode(sym.block_extent(o[1], owb, out[2])),
        lanes_inside={sympy.true: "always", sympy.false: "never"}.get(lanes_inside) or
        ccode(lanes_inside),
        column=ccode(column), column_inside=ccode(sym.inside(q1, spatial[1])),
        acc_init="b[oc0 + j]" if layer.bias else "0",
        x_index=ccode(x_fast), x_row=ccode(x_row), x_guarded=ccode(x_guarded),
        w_index=ccode(w_index), y_index=ccode(y_index),
        y_row=ccode(sym.flat_index([_N, oc0 + j, o[0], o[1]], [None, *out])))
    return context



#: The packed schedule's register block: output channels in vector lanes (``_OWB`` lanes a
#: vector, up to 4 vectors) times ``cw`` output columns, one broadcast input per column.
#: ``cw`` is picked by the C preprocessor from the target's vector registers: 32 with
#: AVX-512 (accumulators + weight vectors + one broadcast fill 25 to 29 of them), 16 else.
_PACKED_COLUMNS = {"avx512": {1: 12, 2: 8, 3: 6, 4: 5}, "other": {1: 8, 2: 4, 3: 3, 4: 2}}
_PACK_BYTES = 128 * 1024  # packed weights of one block and one chunk of input channels


def _packed_blocks(cg_out: int, lanes: int, most: int = 4) -> tuple[int, int]:
    """(vectors per block, blocks per group): the fewest blocks of at most ``most`` vectors,
    then the fewest vectors per block, so that padding lanes are as few as possible."""
    blocks = -(-cg_out // (most * lanes))
    return -(-cg_out // (blocks * lanes)), blocks


def _packed_context(layer, sample, out, dtype) -> dict:
    """The reference conv context plus the loops of ``conv_packed.c.j2``."""
    sample, out = _blocked_view(layer, sample, out)
    context = _conv_context(layer, sample, out, dtype)
    (c_in, *spatial) = sample
    cg_in, cg_out = c_in // layer.groups, layer.out_channels // layer.groups
    lanes, size = _OWB[dtype], DTYPE_SIZES[dtype]
    ocv, nb = _packed_blocks(cg_out, lanes)
    (kn0, kn1), taps = layer.kernel_size, layer.kernel_size[0] * layer.kernel_size[1]
    chunks = -(-cg_in * taps * ocv * lanes * size // _PACK_BYTES)
    icb = -(-cg_in // chunks)
    chunks = -(-cg_in // icb)
    # Rows a task: a packed weight (one scalar copy) then serves >= 2048 columns, so packing
    # costs about 1 % of the task (measured: 64 columns a packed weight cost the ResNet 3x3 20 %).
    tasks = -(-out[1] // min(out[1], max(1, -(-2048 // out[2]))))
    rows = -(-out[1] // tasks)  # the same rows in every task
    pads = layer.resolved_padding(spatial)
    (s0, s1), (d0, d1) = layer.stride, layer.dilation
    names = ("gb", "rt", "ch", "icl", "v", "l", "c", "width", "cw")
    gb, rt, ch, icl, v, lane, c, width, cw = (sympy.Symbol(s, integer=True, nonnegative=True)
                                           for s in names)
    o, k = _symbols("o", 2), _symbols("k", 2)
    p0, q1 = sympy.Symbol("p0", integer=True), sympy.Symbol("q1", integer=True)
    group = sympy.floor(gb / nb) if layer.groups > 1 else sympy.Integer(0)
    local = (gb - nb * group) * ocv * lanes + v * lanes + lane  # output channel in the group
    oc = group * cg_out + local
    ic = ch * icb + icl
    icn = sympy.Min(icb, cg_in - ch * icb)
    first, stop = sym.interior_range(spatial[1], out[2], kn1, s1, d1, pads[1][0])
    full = sympy.And(sympy.Ge(o[1], first), sympy.Le(o[1] + cw, stop))
    column = sym.tap_index(o[1] + c, k[1], s1, d1, pads[1][0])
    x_index = sym.flat_index([_N, group * cg_in + ic, p0, q1], [None, c_in, *spatial])
    w_index = sym.flat_index([oc, ic, k[0], k[1]], list(layer.weight_shape))
    wp_index = ((icl * kn0 + k[0]) * kn1 + k[1]) * ocv + v  # a vector of the packed weights
    y_index = sym.flat_index([_N, oc, o[0], o[1] + c], [None, *out])
    row_stop = sympy.Min(out[1], rt * rows + rows)
    valid = sympy.Lt(local, cg_out)
    x_size, y_size = _BATCH * sym.prod(sample), _BATCH * sym.prod(out)
    w_size, wp_size = sym.prod(layer.weight_shape), icb * taps * ocv * lanes
    accesses = []
    for target, table in _PACKED_COLUMNS.items():
        cols = table[ocv]
        task = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(gb, layer.groups * nb),
                *_loop(rt, tasks), *_loop(ch, chunks), sympy.Eq(cw, cols),
                *_loop(v, ocv), *_loop(lane, lanes)]
        pack = [*task, *_loop(icl, icn), *_loop(k[0], kn0), *_loop(k[1], kn1)]
        block = [*task, sympy.Ge(o[0], rt * rows), sympy.Lt(o[0], row_stop),
                 *_loop(o[1], out[2]), sympy.Eq(sympy.Mod(o[1], cols), 0),
                 sympy.Eq(width, sym.block_extent(o[1], cols, out[2]))]
        step = [*block, *_loop(icl, icn), *_loop(k[0], kn0), *_loop(k[1], kn1),
                *_loop(c, cols), sympy.Eq(p0, sym.tap_index(o[0], k[0], s0, d0, pads[0][0])),
                sym.inside(p0, spatial[0]), sympy.Eq(q1, column)]
        stored = [*block, *_loop(c, cols), sympy.Lt(c, width), valid]
        where = f"packed ({target}, {cols} columns)"
        accesses += [
            Access("w", w_index, w_size, f"{where}: w, packing", tuple(pack + [valid])),
            Access("wp", wp_index * lanes + lane, wp_size, f"{where}: packed weights, packing",
                   tuple(pack)),
            Access("wp", wp_index * lanes + lane, wp_size,
                   f"{where}: packed weights, every lane of a vector read", tuple(step)),
            Access("x", x_index, x_size, f"{where}: x, whole blocks", tuple(step + [full])),
            Access("x", x_index, x_size, f"{where}: x, border blocks",
                   tuple(step + [sympy.Lt(c, width), sym.inside(q1, spatial[1])])),
            Access("y", y_index, y_size, f"{where}: y", tuple(stored))]
        if layer.bias:
            accesses.append(Access("b", oc, layer.out_channels, f"{where}: b",
                                   tuple(task + [valid])))
    context["accesses"] = accesses
    context["packed"] = dict(
        bias=layer.bias, cg_out=cg_out, lanes=lanes, size=size, ocv=ocv, nb=nb,
        blocks=layer.groups * nb,
        columns=_PACKED_COLUMNS, pack_kib=_PACK_BYTES // 1024, icb=icb, chunks=chunks,
        rows=rows, tasks=tasks,
        every_lane=cg_out % (ocv * lanes) == 0, taps=taps,
        group=ccode(group), local=ccode(local), oc=ccode(oc), icn=ccode(icn),
        row_start=ccode(rt * rows), row_stop=ccode(row_stop),
        width=ccode(sym.block_extent(o[1], cw, out[2])), full=ccode(full),
        row=ccode(sym.tap_index(o[0], k[0], s0, d0, pads[0][0])),
        row_inside=ccode(sym.inside(p0, spatial[0])),
        column=ccode(column), column_inside=ccode(sym.inside(q1, spatial[1])),
        x_index=ccode(x_index), w_index=ccode(w_index), wp_index=ccode(wp_index),
        y_index=ccode(y_index), wp_scalar=ccode(wp_index * lanes + lane),
        wp_scalar_v=ccode(wp_index * lanes),
        fma=_FMA[dtype])
    return context


def _pool_vector_span(layer, sample, out, dtype):
    """(rows, columns): the half-open interior ranges (every tap inside the input) that the
    blocked pool schedule runs as whole vectors, or None where it does not apply."""
    if family(layer) != "pool" or layer.ndim != 2 or dtype not in _OWB:
        return None
    op, norm = _reduction(layer, dtype)
    if op == "lp" or norm.get("indices") or layer.stride[1] != 1:
        return None
    pads = layer.resolved_padding(sample[1:])
    spans = [sym.interior_range(n, m, k, s, d, lo) for n, m, k, s, d, (lo, _) in
             zip(sample[1:], out[1:], layer.kernel_size, layer.stride, layer.dilation, pads)]
    if spans[1][1] - spans[1][0] < _OWB[dtype]:
        return None
    return spans


def _pool_blocked_context(layer, sample, out, dtype) -> dict:
    """The reference pool context plus the interior vectors of ``pool_blocked.c.j2``."""
    context = _pool_context(layer, sample, out, dtype)
    (_, cols), owb = _pool_vector_span(layer, sample, out, dtype), _OWB[dtype]
    channels, spatial = sample[0], sample[1:]
    pads = layer.resolved_padding(spatial)
    (s0, _), (d0, d1) = layer.stride, layer.dilation
    o, k = _symbols("o", 2), _symbols("k", 2)
    p0, i = sympy.Symbol("p0", integer=True), sympy.Symbol("i", integer=True, nonnegative=True)
    row = sym.tap_index(o[0], k[0], s0, d0, pads[0][0])
    x_row = sym.flat_index([_N, _C, p0, sym.tap_index(o[1], k[1], 1, d1, pads[1][0])],
                           [None, channels, *spatial])
    y_row = sym.flat_index([_N, _C, o[0], o[1]], [None, *out])
    vectors = _column_vectors(1, cols[1] - cols[0], owb)
    ob, cv = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("ob", "cv"))
    # vector cv of the block at ob; past the interior, the row's last whole vector again
    start = sympy.Min(ob + cv * owb, cols[1] - owb)
    vector = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(_C, channels),
              *_loop(o[0], out[1]), sympy.Ge(ob, cols[0]), sympy.Lt(ob, cols[1]),
              sympy.Eq(sympy.Mod(ob - cols[0], vectors * owb), 0), *_loop(cv, vectors),
              sympy.Eq(o[1], start), *_loop(i, owb)]
    taps = [*vector, *_loops(k, layer.kernel_size), sympy.Eq(p0, row),
            sym.inside(p0, spatial[0])]
    x_size, y_size = _BATCH * sym.prod(sample), _BATCH * sym.prod(out)
    context["accesses"] += [
        Access("x", x_row + i, x_size, "blocked: x, every lane of a vector", tuple(taps)),
        Access("y", y_row + i, y_size, "blocked: y, every lane of a vector", tuple(vector))]
    override = getattr(layer, "divisor_override", None)
    count = (None if override is not None or context["op"] != "avg" else
             "padded" if context["count_include_pad"] else "inside")
    context["blocked"] = dict(
        owb=owb, size=DTYPE_SIZES[dtype], mask_type=_MASK_TYPES[dtype],
        cols=cols, cv=vectors, start=ccode(start), row=ccode(row),
        row_inside=ccode(sym.inside(p0, spatial[0])),
        x_row=ccode(x_row), y_row=ccode(y_row), count=count,
        divisor=override if override is not None else "count")
    return context


_WINOGRAD_BYTES = 128 * 1024  # the transformed weights of one block of output channels


def _winograd_blocks(layer, sample, dtype) -> tuple[int, int] | None:
    """(vectors per block, blocks per group) of the Winograd schedule, or None where it does
    not apply: 3x3, stride 1, no dilation, zero padding, 2-D, float, two or more output
    channels a group, and a block's 16 transformed weight matrices within 128 KiB."""
    if (family(layer) != "conv" or layer.ndim != 2 or dtype not in _OWB
            or layer.kernel_size != (3, 3) or layer.stride != (1, 1)
            or layer.dilation != (1, 1) or layer.padding_mode != "zeros"):
        return None
    cg_in, cg_out = sample[0] // layer.groups, layer.out_channels // layer.groups
    lanes = _OWB[dtype]
    if cg_out < 2:
        return None
    for most in (4, 3, 2, 1):
        if 16 * cg_in * most * lanes * DTYPE_SIZES[dtype] <= _WINOGRAD_BYTES:
            return _packed_blocks(cg_out, lanes, most)
    return None


def _winograd_context(layer, sample, out, dtype) -> dict:
    """The reference conv context plus the transforms and loops of
    ``conv_winograd.c.j2``: F(2x2, 3x3), Lavin & Gray, "Fast Algorithms for Convolutional
    Neural Networks" (CVPR 2016)."""
    context = _conv_context(layer, sample, out, dtype)
    (c_in, *spatial), (_, oh, ow) = sample, out
    cg_in, cg_out = c_in // layer.groups, layer.out_channels // layer.groups
    lanes, size = _OWB[dtype], DTYPE_SIZES[dtype]
    ocv, nb = _winograd_blocks(layer, sample, dtype)
    pads = layer.resolved_padding(spatial)
    (pt, _), (pl, _) = pads
    th, tw = -(-oh // 2), -(-ow // 2)  # 2x2 output tiles
    tb = max(1, min(tw, 64 * 1024 // (16 * cg_in * size)))  # tiles a block: V <= 64 KiB
    tblocks = -(-tw // tb)
    tile_rows = max(1, min(th, -(-512 // tw)))  # tile rows a task: U packed once per 512 tiles
    tasks = -(-th // tile_rows)
    tile_rows = -(-th // tasks)
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
    qhi = sympy.Min(2 * tbn + 2, spatial[1] + pl - 2 * tw0)
    x_index = sym.flat_index([_N, group * cg_in + icl, row, col], [None, c_in, *spatial])
    w_index = sym.flat_index([oc, icl, i, j], list(layer.weight_shape))
    # [16][...] buffers: each of the 16 matrices padded by 16 elements, so that the 16 do
    # not start at the same offset modulo 4 KiB (L1 set conflicts: measured 17 % of the time)
    u_stride, v_stride, m_stride = (cg_in * ocv * lanes + 16, cg_in * tb + 16,
                                    tb * ocv * lanes + 16)
    u_index = xi * u_stride + icl * ocv * lanes + v * lanes + lane
    v_index = xi * v_stride + icl * tb + t
    m_index = xi * m_stride + t * ocv * lanes + v * lanes + lane
    y_index = sym.flat_index([_N, oc, 2 * tile_row + i, 2 * (tw0 + t) + j], [None, *out])
    x_size, y_size = _BATCH * sym.prod(sample), _BATCH * sym.prod(out)
    u_size, v_size, m_size = 16 * u_stride, 16 * v_stride, 16 * m_stride
    task = [sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *_loop(gb, layer.groups * nb),
            *_loop(rt, tasks)]
    pack = [*task, *_loop(icl, cg_in), *_loop(v, ocv), *_loop(lane, lanes), *_loop(xi, 16)]
    block = [*task, *_loop(r, tile_rows), sympy.Lt(tile_row, th), *_loop(tbk, tblocks)]
    tiles = [*block, *_loop(t, tbn)]
    accesses = [
        Access("w", w_index, sym.prod(layer.weight_shape), "winograd: w",
               tuple(pack + [valid, *_loop(i, 3), *_loop(j, 3)])),
        Access("U", u_index, u_size, "winograd: transformed weights", tuple(pack)),
        Access("x", x_index, x_size, "winograd: x, the rows of a tile block (memcpy)",
               tuple(block + [*_loop(icl, cg_in), *_loop(a, 4), sympy.Ge(q, qlo),
                              sympy.Lt(q, qhi), sym.inside(row, spatial[0])])),
        Access("d", a * (2 * tb + 2) + q, 4 * (2 * tb + 2), "winograd: the padded rows",
               tuple(block + [*_loop(a, 4), sympy.Ge(q, qlo), sympy.Lt(q, qhi)])),
        Access("V", v_index, v_size, "winograd: transformed inputs",
               tuple(tiles + [*_loop(icl, cg_in), *_loop(xi, 16)])),
        Access("M", m_index, m_size, "winograd: products summed over input channels",
               tuple(tiles + [*_loop(xi, 16), *_loop(v, ocv), *_loop(lane, lanes)])),
        Access("y", y_index, y_size, "winograd: y", tuple(
            tiles + [*_loop(v, ocv), *_loop(lane, lanes), valid, *_loop(i, 2), *_loop(j, 2),
                     sympy.Lt(2 * tile_row + i, oh), sympy.Lt(2 * (tw0 + t) + j, ow)]))]
    if layer.bias:
        accesses.append(Access("b", oc, layer.out_channels, "winograd: b",
                               tuple(task + [*_loop(v, ocv), *_loop(lane, lanes), valid])))
    context["accesses"] = accesses
    from .winograd import AMPLIFICATION, transforms

    context["wino"] = dict(
        transforms=transforms(C_TYPES[dtype], "half"), amplification=AMPLIFICATION,
        bias=layer.bias, cg_in=cg_in, cg_out=cg_out, lanes=lanes, size=size, ocv=ocv, nb=nb,
        blocks=layer.groups * nb, columns=_PACKED_COLUMNS, every_lane=cg_out % (ocv * lanes) == 0,
        th=th, tw=tw, tb=tb, tblocks=tblocks, tile_rows=tile_rows, tasks=tasks,
        u_size=u_size, v_size=v_size, m_size=m_size,
        stack_kib=-(-(u_size + v_size + m_size + 4 * (2 * tb + 2)) * size // 1024),
        local=ccode(local), oc=ccode(oc), tile_row=ccode(tile_row), tw0=ccode(tw0),
        tbn=ccode(tbn), row=ccode(row), col=ccode(col),
        row_inside=ccode(sym.inside(row, spatial[0])),
        col_inside=ccode(sym.inside(col, spatial[1])),
        x_index=ccode(x_index), w_index=ccode(w_index), u_index=ccode(u_index),
        qlo=ccode(qlo), qhi=ccode(qhi), x_row=ccode(x_index.subs(q, qlo)),
        u_vector=ccode(u_index.subs(lane, 0)), v_index=ccode(v_index),
        v_rows=[ccode(v_index.subs(xi, 4 * row + sympy.Symbol("k", integer=True)))
                for row in range(4)],
        m_index=ccode(m_index), m_vector=ccode(m_index.subs(lane, 0)), y_index=ccode(y_index),
        y_inside=ccode(sympy.And(sympy.Lt(2 * tile_row + i, oh), sympy.Lt(2 * (tw0 + t) + j, ow))),
        fma=_FMA[dtype])
    return context


def _adaptive_lanes(layer, sample, dtype) -> int | None:
    """Channels a vector of the blocked adaptive pool schedule holds, or None where it does
    not apply (float average or max pools without indices, at least one vector of channels)."""
    if family(layer) != "adaptive_pool" or dtype not in _OWB:
        return None
    op, norm = _reduction(layer, dtype)
    if norm.get("indices") or sample[0] < _OWB[dtype]:
        return None
    return _OWB[dtype]


def _adaptive_blocked_context(layer, sample, out, dtype) -> dict:
    """The reference adaptive pool context plus the channel vectors of
    ``adaptive_pool_blocked.c.j2``."""
    context = _adaptive_context(layer, sample, out, dtype)
    lanes, channels = _adaptive_lanes(layer, sample, dtype), sample[0]
    cb, lane = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("cb", "l"))
    blocks = channels // lanes
    vector = [sympy.Eq(_C, cb * lanes + lane), *_loop(cb, blocks), *_loop(lane, lanes)]
    context["accesses"] = [
        *context["accesses"],
        *[Access(a.array, a.index, a.size, f"blocked, {lanes} channels a vector: {a.where}",
                 tuple([c for c in a.domain if not (isinstance(c, sympy.Lt) and
                                                    c.lhs == _C)] + vector))
          for a in context["accesses"]]]
    plane = sym.prod(sample[1:])
    whole = all(o == 1 for o in out[1:])  # global pooling: one window, the whole plane
    if whole:
        e, j = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("e", "j"))
        flat = sym.flat_index([_N, _C, e], [None, channels, plane])
        context["accesses"].append(Access(
            "x", flat.subs(e, e + j), _BATCH * sym.prod(sample),
            f"blocked, {lanes} elements of {lanes} channels a step (transposed)",
            tuple([sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *vector, *_loop(e, plane),
                   sympy.Le(e + lanes, plane), *_loop(j, lanes)])))
        context["accesses"].append(Access(
            "x", flat, _BATCH * sym.prod(sample), "blocked, the last elements (gathered)",
            tuple([sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), *vector, *_loop(e, plane)])))
    context["blocked"] = dict(lanes=lanes, blocks=blocks, tail=channels % lanes,
                              channel=ccode(cb * lanes + lane),
                              channel_row=ccode(cb * lanes + sympy.Symbol("j", integer=True)),
                              size=DTYPE_SIZES[dtype], whole=whole, plane=plane,
                              flat=ccode(flat) if whole else "",
                              transpose=_transpose(lanes) if whole else [],
                              mask_type=_MASK_TYPES[dtype])
    return context


def _transpose(lanes: int) -> list[str]:
    """C statements turning vectors ``r[i]`` (row i: ``lanes`` elements of channel i) into
    ``t[j]`` (element j of every channel) with ``__builtin_shufflevector`` (Clang, GCC 12+):
    the unpack / 64-bit / 128-bit steps of the classic register transpose."""
    def shuffle(a, b, idx):
        return f"__builtin_shufflevector({a}, {b}, {', '.join(map(str, idx))})"

    if lanes == 4:
        lines = []
        for i in range(4):  # unpack pairs of rows
            rows = f"r[{2 * (i // 2)}]", f"r[{2 * (i // 2) + 1}]"
            idx = [0, 4, 2, 6] if i % 2 == 0 else [1, 5, 3, 7]
            lines.append(f"const {{vec}} u{i} = {shuffle(*rows, idx)};")
        lines += [f"t[{k}] = {shuffle(f'u{a}', f'u{b}', idx)};" for k, (a, b, idx) in enumerate(
            [(0, 2, [0, 1, 4, 5]), (1, 3, [0, 1, 4, 5]), (0, 2, [2, 3, 6, 7]),
             (1, 3, [2, 3, 6, 7])])]
        return lines
    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    even, odd = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    first, second = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    lines = []
    for i in range(4):  # unpack pairs of rows: u(2i) low halves, u(2i+1) high halves
        rows = f"r[{2 * i}]", f"r[{2 * i + 1}]"
        lines.append(f"const {{vec}} u{2 * i} = {shuffle(*rows, lo)};")
        lines.append(f"const {{vec}} u{2 * i + 1} = {shuffle(*rows, hi)};")
    for half in range(2):  # 64-bit pairs: s(4 half + k) holds elements k and k + 4 of 4 rows
        base = 4 * half
        for k, (a, idx) in enumerate([(0, even), (0, odd), (1, even), (1, odd)]):
            lines.append(f"const {{vec}} s{base + k} = "
                         f"{shuffle(f'u{base + a}', f'u{base + a + 2}', idx)};")
    for k in range(4):  # 128-bit halves: element k, then element k + 4
        lines.append(f"t[{k}] = {shuffle(f's{k}', f's{k + 4}', first)};")
        lines.append(f"t[{k + 4}] = {shuffle(f's{k}', f's{k + 4}', second)};")
    return lines

_CONTEXTS = {"conv": _conv_context, "pool": _pool_context, "adaptive_pool": _adaptive_context,
             "conv_transpose": _conv_transpose_context}
