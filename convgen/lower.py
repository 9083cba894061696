"""Spec + input shape -> a frozen :class:`Problem`: everything a schedule needs, resolved once.

``lower`` validates what code generation needs beyond the spec itself (a concrete input shape,
a dtype the family supports, a known family), resolves the padding to ``(lo, hi)`` pairs and
fixes the output shape, the accumulator type and the kernel's arguments.  Every schedule,
target, oracle and proof reads the problem instead of re-deriving these facts (JAX resolves
padding the same way, once, before ``bind``).

The index symbols every schedule shares are defined here too, so that an expression built by
one schedule means the same thing in another's proof.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from . import symbolic as sym
from .errors import SpecError
from .spec import DTYPE_SIZES, Layer, family_of

__all__ = ["BATCH", "C", "CONVOLUTIONS", "FLOAT_DTYPES", "G", "IC", "N", "OC", "Problem",
           "default_dtype", "dtype_name", "lower", "symbols"]

#: Floating-point dtypes: every family supports them.
FLOAT_DTYPES = ("float32", "float64")
#: The families with weights: convolutions, transposed and quantized convolutions.
CONVOLUTIONS = ("conv", "conv_transpose", "qconv")
#: Integer dtypes, for the families whose result is one of their inputs (max pooling).
_SELECTING_DTYPES = ("int8", "uint8")

N, C, OC, IC, G = (sympy.Symbol(s, integer=True, nonnegative=True)
                   for s in ("n", "c", "oc", "ic", "g"))
BATCH = sympy.Symbol("batch", integer=True, positive=True)


def symbols(prefix: str, count: int, nonnegative: bool = True) -> tuple[sympy.Symbol, ...]:
    """Loop counters ``prefix0..`` (non-negative) or input positions (may fall on the
    padding: ``nonnegative=False``)."""
    return tuple(sympy.Symbol(f"{prefix}{i}", integer=True, nonnegative=nonnegative or None)
                 for i in range(count))


@dataclass(frozen=True)
class Problem:
    """One layer on one concrete sample shape, resolved: the input of every schedule.

    ``sample`` is ``(C, *spatial)`` and ``out`` is ``(C_out, *spatial_out)``; the batch size
    stays a run-time argument.  ``padding`` holds a ``(lo, hi)`` pair per spatial dimension
    (zeros for adaptive pools, which have none).  ``groups``, ``cg_in`` and ``cg_out`` are
    the convolution's groups and channels a group (1, C and C for pools).
    """

    layer: Layer
    family: str
    reduction: str | None
    ndim: int
    sample: tuple
    out: tuple
    dtype: str
    acc_dtype: str
    padding: tuple
    groups: int
    cg_in: int
    cg_out: int
    arguments: tuple
    scratch: int = 0    # elements of the caller's scratch argument (schedules that take one)
    #: ``(argument, dtype)`` for each array whose dtype is not ``dtype`` (the quantized
    #: convolutions' weights, int32 bias and output); see :meth:`dtype_of`.
    array_dtypes: tuple = ()

    def dtype_of(self, argument: str) -> str:
        """The dtype of the array ``argument``: ``dtype`` unless the family says otherwise
        (int64 indices, the quantized convolutions' weights, bias and output)."""
        if argument == "indices":
            return "int64"
        return dict(self.array_dtypes).get(argument, self.dtype)

    @property
    def spatial(self) -> tuple:
        return self.sample[1:]

    @property
    def out_spatial(self) -> tuple:
        return self.out[1:]

    @property
    def channels(self) -> int:
        return self.sample[0]

    @property
    def size(self) -> int:
        """Bytes of one element."""
        return DTYPE_SIZES[self.dtype]

    @property
    def floating(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def windowed(self) -> bool:
        """Convolutions and window pools: a kernel window slides over the padded input."""
        return self.family in ("conv", "conv_transpose", "qconv", "pool")

    @property
    def indices(self) -> bool:
        return "indices" in self.arguments

    @property
    def bias(self) -> bool:
        return "b" in self.arguments

    @property
    def weight_shape(self) -> tuple:
        return tuple(self.layer.weight_shape)

    def describe(self) -> str:
        """``Conv2d(...) on (3, 32, 32), float32``: for messages and reasons."""
        return f"{self.layer.describe()} on {self.sample}, {self.dtype}"


def allowed_dtypes(layer: Layer) -> tuple[str, ...]:
    """The dtypes code generation supports for ``layer`` (a quantized layer: its own)."""
    if family_of(layer) == "qconv" or layer.quantized:
        return (layer.dtype,)
    if family_of(layer) in ("pool", "adaptive_pool") and layer.reduction == "max":
        return FLOAT_DTYPES + _SELECTING_DTYPES
    return FLOAT_DTYPES


#: The C type of every index and size in the generated code is ``long``; convgen assumes the
#: LP64 model of 64-bit Linux and macOS, where it holds 64 bits.  A kernel whose sizes per
#: sample need more than 32 bits says so in its header (a compile-time check of
#: ``sizeof(long)``), so that an LLP64 or 32-bit target (Windows, Cortex-M) refuses to build
#: it instead of overflowing.  Both limits are defined with the formulas, in
#: :mod:`convgen.symbolic`, and the layer proofs (:mod:`convgen.proofs`) assume them.
LONG_MAX = sym.LONG_MAX
INT_MAX = sym.INT_MAX


def _check_sizes(layer: Layer, family: str, sample: tuple, out: tuple, padding: tuple) -> None:
    """Refuse, before any C is printed, a problem whose kernel would compute a value that a
    64-bit ``long`` cannot hold: one sample of x or y, the weight, or the flat index of a
    window's tap (padding positions included); and a padded extent past a 32-bit int, which
    keeps every position along an axis (``o*stride - lo + j*dilation``) far from the limit."""
    owner = type(layer).__name__
    sizes = {"input_shape (one sample)": sym.prod(sample),
             "output shape (one sample)": sym.prod(out)}
    if family in CONVOLUTIONS:
        sizes["weight_shape"] = sym.prod(layer.weight_shape)
    for what, size in sizes.items():
        if size > LONG_MAX:
            raise SpecError(f"{owner}: {what} holds {size:,} elements; a kernel indexes with "
                            f"a 64-bit long, at most {LONG_MAX:,}")
    for dim, (n, (lo, hi)) in enumerate(zip(sample[1:], padding)):
        if n + lo + hi > INT_MAX:
            raise SpecError(f"{owner}: padded extent {n + lo + hi:,} in dim {dim} (input size "
                            f"{n}, padding ({lo}, {hi})) exceeds {INT_MAX:,}: every size and "
                            "padded size is at most a 32-bit int")
    if family in ("conv", "qconv", "pool"):
        ranges = [sym.tap_range(o, k, s, d, lo) for o, k, s, d, (lo, _) in
                  zip(out[1:], layer.kernel_size, layer.stride, layer.dilation, padding)]
        bound = sym.flat_index_bound([(0, sample[0] - 1), *ranges], sample)
        if bound > LONG_MAX:
            raise SpecError(f"{owner}: the taps reach input positions "
                            f"{', '.join(f'{a}..{b}' for a, b in ranges)} (padding included), "
                            f"whose flat index into one sample of x reaches {bound:,}; a "
                            f"kernel indexes with a 64-bit long, at most {LONG_MAX:,}")


def dtype_name(dtype) -> str:
    """``dtype`` as its name: ``"float32"``, or NumPy's ``numpy.float32`` /
    ``numpy.dtype("float32")`` (the names are NumPy's, so any object NumPy names works:
    a type's ``__name__``, a dtype's ``name``)."""
    if isinstance(dtype, str):
        return dtype
    name = getattr(dtype, "name", None) if not isinstance(dtype, type) else \
        getattr(dtype, "__name__", None)
    if not isinstance(name, str):
        raise SpecError(f"dtype={dtype!r} must be a dtype name such as 'float32', a NumPy "
                        "scalar type (numpy.float32) or a numpy.dtype")
    return name


def default_dtype(layer: Layer) -> str:
    """The dtype a layer's kernel has when none is asked for: a quantized layer's own,
    float32 for the others."""
    return layer.dtype if family_of(layer) == "qconv" or layer.quantized else "float32"


def lower(layer: Layer, input_shape: Sequence, dtype: str | None = None) -> Problem:
    """Resolve ``layer`` on ``input_shape`` (``(C, *spatial)`` or ``(N, C, *spatial)``, every
    size concrete) for ``dtype`` (``None``: :func:`default_dtype`); raise :class:`SpecError`
    naming what is wrong."""
    family = family_of(layer)
    shape = layer.split_input(input_shape)
    if sym.is_symbolic(shape.channels, *shape.spatial):
        raise SpecError(f"{type(layer).__name__}: code generation needs a concrete "
                        f"input_shape, got {tuple(input_shape)!r}")
    allowed = allowed_dtypes(layer)
    dtype = default_dtype(layer) if dtype is None else dtype_name(dtype)
    if dtype not in allowed:
        raise SpecError(f"{type(layer).__name__}: dtype={dtype!r} must be one of "
                        f"{', '.join(allowed)}")
    sample = (shape.channels, *shape.spatial)
    out = tuple(layer.output_shape(sample))
    array_dtypes, acc_dtype = (), dtype
    if family in CONVOLUTIONS:
        groups = layer.groups
        cg_in, cg_out = sample[0] // groups, layer.out_channels // groups
        arguments = ("x", "w", *(("b",) if layer.bias else ()), "y")
        if family == "qconv":
            acc_dtype = "int32"
            array_dtypes = (("w", layer.weight_dtype), ("b", "int32"),
                            ("y", layer.output_dtype))
    else:
        groups, cg_in, cg_out = 1, sample[0], sample[0]
        if layer.quantized:  # a binary32 sum of dequantized taps, or an int32 one
            window_float = layer.rounding == "float" and family == "pool"
            acc_dtype = "float32" if window_float else "int32"
        arguments = ("x", "y", *(("indices",) if getattr(layer, "return_indices", False)
                                 else ()))
    padding = (tuple(layer.resolved_padding(shape.spatial)) if family != "adaptive_pool"
               else ((0, 0),) * layer.ndim)
    _check_sizes(layer, family, sample, out, padding)
    return Problem(layer=layer, family=family, reduction=layer.reduction, ndim=layer.ndim,
                   sample=sample, out=out, dtype=dtype, acc_dtype=acc_dtype, padding=padding,
                   groups=groups, cg_in=cg_in, cg_out=cg_out, arguments=arguments,
                   array_dtypes=array_dtypes)
