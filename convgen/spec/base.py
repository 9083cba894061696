"""The base of the layer specs: validation helpers, shapes, constraints and :class:`Layer`.

Every concrete spec class carries its *family* (see :data:`FAMILIES` and :func:`family_of`):
the reference, the Toeplitz operator, the proofs, the ONNX bridge and the code generator pick
their behaviour from it, never from the class name.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
import reprlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sympy

from .. import symbolic as sym
from ..errors import ConvgenError, SpecError

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("valid", "same", "same_lower")
DTYPE_SIZES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
               "int8": 1, "uint8": 1, "int32": 4, "int64": 8}
INDEX_DTYPE = "int64"

#: The layer families, one per template family of the code generator: convolutions,
#: transposed convolutions, window pools (max, average, LP), adaptive/global pools and
#: quantized convolutions (QLinearConv, ConvInteger).
FAMILIES = ("conv", "conv_transpose", "pool", "adaptive_pool", "qconv")
#: What a pool (window, adaptive or global) computes over a window.
REDUCTIONS = ("max", "avg", "lp")
#: The families whose layers pool, and so carry a reduction.
POOL_FAMILIES = ("pool", "adaptive_pool")

Padding = tuple[tuple[int, int], ...] | str

# --------------------------------------------------------------------------- validation helpers


#: The largest size, stride, padding, dilation, channel count or divisor a spec takes: every
#: parameter fits a 32-bit int, so that the generated C, which prints them as literals and
#: multiplies them in 64-bit ``long`` arithmetic, cannot overflow on them.
MAX_SIZE = sym.INT_MAX


#: Longest quotation of a value in a message, in characters; a longer one is shortened.
QUOTE_LIMIT = 100


class _Shortened(reprlib.Repr):
    """``repr`` shortened for messages; an int too long to print (Python refuses to convert
    one of more than 4,300 digits to text) is described by its number of digits."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother, self.maxlong = 3, 40, 60, 40
        self.maxtuple = self.maxlist = self.maxset = self.maxfrozenset = 8
        self.maxdict = 4

    def repr1(self, x, level):
        if isinstance(x, numbers.Integral) and not isinstance(x, bool):
            try:
                text = repr(x)
            except ValueError:  # past sys.get_int_max_str_digits()
                return f"<an int of about {int(math.log10(abs(int(x)))) + 1:,} digits>"
            if len(text) <= self.maxlong:
                return text
            return f"{text[:20]}...{text[-10:]} ({len(text):,} characters)"
        return super().repr1(x, level)


_SHORTENED = _Shortened()


def quote(value: object) -> str:
    """``repr(value)`` for an error message: as is when short, else shortened (long
    sequences, strings and ints cut, deep nesting elided), never an exception of its own."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int over 4,300 digits; a list nested too deeply
        text = None
    if text is not None and len(text) <= QUOTE_LIMIT:
        return text
    try:
        return _SHORTENED.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__; the type still names the value
        return f"<a {type(value).__name__}>"


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _sequence(value: object) -> bool:
    """A sequence of entries: not text or a bytes-like object (whose entries are characters
    or byte values: ``padding=b'ab'`` would otherwise read as ``(97, 98)``)."""
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray,
                                                                  memoryview))


def _int(owner: str, name: str, value: object, minimum: int) -> int:
    if not _is_int(value) or value < minimum or value > MAX_SIZE:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise SpecError(f"{owner}: {name}={quote(value)} must be {what} and at most "
                        f"{MAX_SIZE:,}")
    return int(value)


def _bool(owner: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{owner}: {name}={quote(value)} must be True or False")
    return value


def _per_dim(owner: str, name: str, value: object, ndim: int, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of ``ndim`` ints, each ``>= minimum``, as a tuple."""
    noun = {0: "non-negative int", 1: "positive int"}.get(minimum, f"int >= {minimum}")
    allowed = f"a {noun} or a sequence of {ndim} {noun}s, each at most {MAX_SIZE:,}"
    if _is_int(value):
        items = [value] * ndim
    elif _sequence(value):
        items = list(value)
        if len(items) != ndim:
            raise SpecError(f"{owner}: {name}={quote(value)} has {len(items)} entries; "
                            f"{owner} has {ndim} spatial dimension(s), so {name} must be "
                            f"{allowed}")
    else:
        raise SpecError(f"{owner}: {name}={quote(value)} must be {allowed}")
    if not all(_is_int(v) and minimum <= v <= MAX_SIZE for v in items):
        raise SpecError(f"{owner}: {name}={quote(value)} must be {allowed}")
    return tuple(int(v) for v in items)


def _pad_pair(owner: str, value: object, entry: object, ndim: int) -> tuple[int, int]:
    if _is_int(entry) and 0 <= entry <= MAX_SIZE:
        return int(entry), int(entry)
    if _sequence(entry) and len(entry) == 2 and all(_is_int(v) and 0 <= v <= MAX_SIZE
                                                    for v in entry):
        return int(entry[0]), int(entry[1])
    raise SpecError(_padding_message(owner, value, ndim))


def _padding_message(owner: str, value: object, ndim: int) -> str:
    return (f"{owner}: padding={quote(value)} must be an int >= 0 (at most {MAX_SIZE:,}), a "
            f"sequence of {ndim} such ints, "
            f"a sequence of {ndim} (lo, hi) pairs, or one of "
            f"{', '.join(map(repr, PADDING_STRINGS))}")


def _padding(owner: str, value: object, ndim: int) -> Padding:
    """Canonical padding: ``'same'``/``'same_lower'`` or a tuple of ``(lo, hi)`` pairs."""
    if isinstance(value, str):
        if value not in PADDING_STRINGS:
            raise SpecError(_padding_message(owner, value, ndim))
        return ((0, 0),) * ndim if value == "valid" else value
    if _is_int(value):
        return (_pad_pair(owner, value, value, ndim),) * ndim
    if _sequence(value) and len(value) == ndim:
        return tuple(_pad_pair(owner, value, entry, ndim) for entry in value)
    if _sequence(value):
        raise SpecError(f"{owner}: padding={quote(value)} has {len(value)} entries but {owner} has "
                        f"{ndim} spatial dimension(s); "
                        + _padding_message(owner, value, ndim).split(": ", 1)[1])
    raise SpecError(_padding_message(owner, value, ndim))


def _choice(owner: str, name: str, value: object, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise SpecError(f"{owner}: {name}={quote(value)} must be one of "
                        f"{', '.join(map(repr, allowed))}")
    return str(value)


def _size(owner: str, name: str, value: object) -> sym.Size:
    """A size of an input shape: a positive int, a SymPy expression, or a symbol name."""
    if _is_int(value):
        if not 1 <= value <= MAX_SIZE:
            raise SpecError(f"{owner}: {name}={quote(value)} must be a positive int (at most "
                            f"{MAX_SIZE:,}) or a SymPy expression")
        return int(value)
    if isinstance(value, str) and value.isidentifier():
        return sympy.Symbol(value, integer=True, positive=True)
    if isinstance(value, sympy.Expr) and value.is_integer is not False \
            and value.is_positive is not False and value.is_finite is not False \
            and not value.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        return sym._plain(value)
    raise SpecError(f"{owner}: {name}={quote(value)} must be a positive int, a SymPy expression "
                    "that may be a positive integer, or a symbol name such as 'H'")


def padding_from_onnx(auto_pad: str = "NOTSET", pads: Sequence[int] | None = None,
                      ndim: int | None = None) -> Padding | int:
    """Map ONNX ``auto_pad``/``pads`` attributes onto convgen's ``padding`` argument.

    ``pads`` is ONNX's ``[x1_begin, x2_begin, ..., x1_end, x2_end]``.  ``NOTSET`` with no
    ``pads`` means zero padding (``ndim`` is then needed).
    """
    mapping = {"VALID": "valid", "SAME_UPPER": "same", "SAME_LOWER": "same_lower"}
    if isinstance(auto_pad, str) and auto_pad in mapping:
        return mapping[auto_pad]
    if auto_pad != "NOTSET":
        raise SpecError(f"auto_pad={quote(auto_pad)} must be one of 'NOTSET', 'VALID', "
                        "'SAME_UPPER', 'SAME_LOWER'")
    if pads is None:
        if ndim is None:
            raise SpecError("pads=None with auto_pad='NOTSET' needs ndim to build zero padding")
        return 0
    if not _sequence(pads):
        raise SpecError(f"pads={quote(pads)} must be a sequence of 2*ndim ints (begins, then "
                        "ends)")
    pads = list(pads)
    if len(pads) % 2 or not pads:
        raise SpecError(f"pads={quote(pads)} must hold 2*ndim entries (begins, then ends)")
    half = len(pads) // 2
    return tuple((pads[i], pads[i + half]) for i in range(half))


# --------------------------------------------------------------------------- shapes and results


@dataclass(frozen=True)
class InputShape:
    """An input shape split into batch (``None`` when absent), channels and spatial sizes."""

    batch: sym.Size | None
    channels: sym.Size
    spatial: tuple[sym.Size, ...]

    def join(self, channels: sym.Size, spatial: Sequence[sym.Size]) -> tuple:
        """A shape of the same form (with batch when this one has it)."""
        head = () if self.batch is None else (self.batch,)
        return (*head, channels, *spatial)

    @property
    def per_sample(self) -> sym.Size:
        """Elements in one sample: ``C * prod(spatial)``."""
        return sym.prod([self.channels, *self.spatial])

    @property
    def batch_or_one(self) -> sym.Size:
        return 1 if self.batch is None else self.batch


@dataclass(frozen=True)
class Constraint:
    """A side condition under which an output shape is valid.

    ``condition`` is a SymPy boolean: ``true``/``false`` for concrete sizes, a relation for
    symbolic ones.  ``requirement`` states the condition in words; ``violation`` is the
    :class:`SpecError` message used when it is false.
    """

    condition: Any
    requirement: str
    violation: str

    @property
    def holds(self) -> bool | None:
        """True or False when decided, None while it depends on symbols."""
        if self.condition is sympy.true:
            return True
        if self.condition is sympy.false:
            return False
        return None

    @property
    def text(self) -> str:
        """The constraint in a few words: its requirement once decided (prefixed ``not`` when
        false), its condition (``H >= 5``, ``C == 3``) while it depends on symbols."""
        if self.holds is None:
            return _relation_text(self.condition)
        return self.requirement if self.holds else f"not {self.requirement}"

    def __str__(self) -> str:
        return f"{self.condition}    ({self.requirement})"

    def __repr__(self) -> str:
        if self.holds is None:
            return f"Constraint({self.text}: {self.requirement})"
        return f"Constraint({'holds' if self.holds else 'fails'}: {self.requirement})"


def _relation_text(condition) -> str:
    """``Eq(C, 3)`` reads ``C == 3``; other conditions print as SymPy prints them."""
    if isinstance(condition, sympy.Eq):
        return f"{condition.lhs} == {condition.rhs}"
    return str(condition)


class Constraints(tuple):
    """The constraints of a layer on one input: a tuple of :class:`Constraint` that prints
    as its constraints in a few words, ``3 input channels (in_channels); H >= 5; W >= 5``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "; ".join(c.text for c in self) if self else "no constraints"

    __str__ = __repr__


def _constraint(condition, requirement: str, violation: str) -> Constraint:
    return Constraint(sympy.sympify(condition), requirement, violation)


@dataclass(frozen=True)
class Footprint:
    """Memory footprint of one layer call, in bytes."""

    input_bytes: sym.Size
    output_bytes: sym.Size
    weight_bytes: sym.Size
    bias_bytes: sym.Size
    indices_bytes: sym.Size

    @property
    def activation_bytes(self) -> sym.Size:
        return sym._plain(self.input_bytes + self.output_bytes + self.indices_bytes)

    @property
    def parameter_bytes(self) -> sym.Size:
        return sym._plain(self.weight_bytes + self.bias_bytes)

    @property
    def total_bytes(self) -> sym.Size:
        return sym._plain(self.activation_bytes + self.parameter_bytes)


# --------------------------------------------------------------------------- the layer base


#: Implementations of :class:`Layer` conveniences that live in modules built on the specs
#: (``"toeplitz"``: :func:`convgen.toeplitz.toeplitz`).  Those modules register themselves on
#: import (``import convgen`` imports them), so the specs import nothing above them.
_METHODS: dict[str, Callable[..., Any]] = {}


def register_method(name: str, function: Callable[..., Any]) -> None:
    """Provide the implementation behind the convenience method ``Layer.<name>``."""
    _METHODS[name] = function


def _method(name: str) -> Callable[..., Any]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ConvgenError(f"Layer.{name} is provided by convgen.{name}; import it (import "
                           "convgen does)") from None


class Layer(abc.ABC):
    """Behaviour shared by every layer spec.  Subclasses are frozen dataclasses.

    Every concrete spec class sets three class attributes, and everything that treats layers
    differently (reference, Toeplitz operator, proofs, ONNX bridge, code generator) dispatches
    on them through :func:`family_of`, never on the class name, so a renamed subclass
    (``class MyConv(Conv2d): pass``) behaves as its base:

    * ``family``: one of :data:`FAMILIES`, ``"conv"``, ``"conv_transpose"``, ``"pool"`` (the
      window pools: max, average, LP) or ``"adaptive_pool"`` (adaptive and global pools);
      these are the code generator's template families.  ``Layer`` declares it without a
      value: a subclass that sets none is refused by :func:`family_of`.
    * ``reduction``: ``"max"``, ``"avg"`` or ``"lp"`` on every pool (window, adaptive,
      global), ``None`` on convolutions.
    * ``onnx_op``: the ONNX operator computing the layer, ``"Conv"``, ``"ConvTranspose"``,
      ``"MaxPool"``, ``"AveragePool"``, ``"LpPool"``, ``"GlobalAveragePool"`` or
      ``"GlobalMaxPool"``; ``None`` for the adaptive pools, which ONNX lacks.  It is what tells
      a global pool (``family="adaptive_pool"`` with an operator) from an adaptive one.
    """

    ndim: ClassVar[int]
    family: ClassVar[str]
    reduction: ClassVar[str | None] = None
    onnx_op: ClassVar[str | None] = None
    #: Quantized layers (``QLinearConv``, ``ConvInteger``, the quantized average pools) have
    #: their own 8-bit dtype, and integer outputs compared exactly.
    quantized: ClassVar[bool] = False

    # -- construction ---------------------------------------------------------------------

    @property
    def _owner(self) -> str:
        return type(self).__name__

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    # -- input shapes ---------------------------------------------------------------------

    def split_input(self, input_shape: Sequence) -> InputShape:
        """Validate ``(C, *spatial)`` or ``(N, C, *spatial)`` and split it."""
        if isinstance(input_shape, (str, bytes)) or not isinstance(input_shape, Sequence):
            raise SpecError(f"{self._owner}: input_shape={quote(input_shape)} must be a sequence "
                            f"(C, *spatial) or (N, C, *spatial)")
        ndim = self.ndim
        if len(input_shape) not in (ndim + 1, ndim + 2):
            raise SpecError(
                f"{self._owner}: input_shape={quote(tuple(input_shape))} has {len(input_shape)} "
                f"entries; a {ndim}-d layer takes (C, {self._spatial_names()}) = {ndim + 1} "
                f"entries or (N, C, {self._spatial_names()}) = {ndim + 2}")
        names = ["N"] * (len(input_shape) - ndim - 1) + ["C"] + \
            [f"spatial[{i}]" for i in range(ndim)]
        sizes = [_size(self._owner, f"input_shape {n}", v) for n, v in zip(names, input_shape)]
        batch = sizes[0] if len(sizes) == ndim + 2 else None
        return InputShape(batch, sizes[-ndim - 1], tuple(sizes[-ndim:]))

    def _spatial_names(self) -> str:
        return ", ".join({1: ["L"], 2: ["H", "W"], 3: ["D", "H", "W"]}.get(
            self.ndim, [f"S{i}" for i in range(self.ndim)]))

    # -- the public derivations -----------------------------------------------------------

    def output_shape(self, input_shape: Sequence) -> tuple:
        """Output shape for ``input_shape`` (``(C, *spatial)`` or ``(N, C, *spatial)``).

        Ints in give ints out; symbols in give SymPy expressions, valid under
        :meth:`constraints`.  Raises :class:`SpecError` when a concrete constraint fails.
        """
        shape = self.split_input(input_shape)
        self._check(shape)
        return shape.join(self._out_channels(shape), self._out_spatial(shape))

    def constraints(self, input_shape: Sequence) -> Constraints:
        """The side conditions under which :meth:`output_shape` is valid for this input: a
        tuple of :class:`Constraint` printed as ``3 input channels (in_channels); H >= 5``."""
        return Constraints(self._constraints(self.split_input(input_shape)))

    def _check(self, shape: InputShape) -> None:
        for constraint in self._constraints(shape):
            if constraint.holds is False:
                raise SpecError(constraint.violation)
        self._check_concrete(shape)

    def _check_concrete(self, shape: InputShape) -> None:
        """Checks that have no closed symbolic form; run only on concrete sizes."""
        return None  # most layers have none

    def _constraints(self, shape: InputShape) -> list[Constraint]:
        return []

    def _out_channels(self, shape: InputShape) -> sym.Size:
        return shape.channels

    @abc.abstractmethod
    def _out_spatial(self, shape: InputShape) -> tuple:
        """Output spatial sizes for a validated input."""

    @property
    def num_weights(self) -> int:
        """Weights (parameters other than bias)."""
        return 0

    @property
    def num_bias(self) -> int:
        return 0

    @property
    def num_params(self) -> int:
        """Trainable parameters: weights plus bias."""
        return self.num_weights + self.num_bias

    def macs(self, input_shape: Sequence) -> sym.Size:
        """Multiply-accumulates of one call (see the README's counting conventions)."""
        return 0

    def flops(self, input_shape: Sequence) -> sym.Size:
        """FLOPs of one call: ``2 * macs`` plus the layer's other arithmetic (bias adds,
        pooling's per-tap operations), see the README's counting conventions."""
        shape = self.split_input(input_shape)
        return sym._plain(2 * self.macs(input_shape) + self._extra_flops(shape))

    def _extra_flops(self, shape: InputShape) -> sym.Size:
        return 0

    def memory(self, input_shape: Sequence, dtype: str = "float32") -> Footprint:
        """Bytes of input, output, weights, bias and (max pooling) int64 indices."""
        size = DTYPE_SIZES.get(dtype) if isinstance(dtype, str) else None
        if size is None:
            raise SpecError(f"dtype={quote(dtype)} must be one of {', '.join(DTYPE_SIZES)}")
        shape = self.split_input(input_shape)
        out = sym.prod(self.output_shape(input_shape))
        inp = sym.prod([shape.batch_or_one, shape.per_sample])
        indices = out * DTYPE_SIZES[INDEX_DTYPE] if getattr(self, "return_indices", False) \
            else 0
        return Footprint(sym._plain(inp * size), sym._plain(out * size),
                         self.num_weights * size, self.num_bias * size, sym._plain(indices))

    def dense_equivalent_params(self, input_shape: Sequence) -> sym.Size:
        """Parameters of a dense layer with this layer's per-sample input and output sizes.

        ``n * (m + 1)`` with ``m = C_in * prod(spatial_in)``, ``n = C_out * prod(spatial_out)``.
        """
        shape = self.split_input(input_shape)
        out = self.output_shape(input_shape)
        return sym.dense_params(shape.per_sample, sym.prod(out[-self.ndim - 1:]))

    def receptive_field_steps(self, input_shape: Sequence) -> tuple[tuple[sym.Size, sym.Size], ...]:
        """Per spatial dimension, ``(window, step)`` in this layer's input positions.

        Feed them to :func:`convgen.symbolic.receptive_field_update`.
        """
        shape = self.split_input(input_shape)
        self._check(shape)
        return self._rf_steps(shape)

    @abc.abstractmethod
    def _rf_steps(self, shape: InputShape) -> tuple:
        """Per dimension ``(window, step)`` for a validated input."""

    def toeplitz(self, input_shape: Sequence, weight=None, symbolic: bool | None = None):
        """The layer's matrix for one sample; see :func:`convgen.toeplitz.toeplitz`."""
        return _method("toeplitz")(self, input_shape, weight=weight, symbolic=symbolic)

    # -- presentation ---------------------------------------------------------------------

    def describe(self) -> str:
        """A short PyTorch-style form that omits arguments left at their defaults."""
        parts = []
        for field in dataclasses.fields(self):
            value = _compact(getattr(self, field.name))
            if field.default is dataclasses.MISSING:
                parts.append(repr(value))
            elif not self._is_default(field, value):
                parts.append(f"{field.name}={value!r}")
        return f"{self._owner}({', '.join(parts)})"

    def _is_default(self, field: dataclasses.Field, value: object) -> bool:
        if field.name == "stride" and field.default is None:
            return value == _compact(self.kernel_size)
        if field.name == "padding" and value == 0:
            return True
        return value == _compact(field.default)


def _compact(value: object) -> object:
    """``(3, 3)`` -> ``3``; ``((1, 1), (2, 2))`` -> ``(1, 2)``; other values unchanged."""
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) for v in value):
        if all(len(v) == 2 and v[0] == v[1] for v in value):
            return _compact(tuple(v[0] for v in value))
        return value
    if isinstance(value, tuple) and value and all(_is_int(v) and v == value[0] for v in value):
        return value[0]
    return value


def family_of(layer: object) -> str:
    """``layer.family``, checked: one of :data:`FAMILIES` (and, for pools, a reduction in
    :data:`REDUCTIONS`).

    Raises :class:`SpecError` naming the class when ``layer`` is not a :class:`Layer` or its
    family is missing or unknown, so that a user subclass without a family is refused
    clearly instead of failing deep inside a dispatch.
    """
    name = type(layer).__name__
    family = getattr(layer, "family", None)
    allowed = ", ".join(map(repr, FAMILIES))
    if not isinstance(layer, Layer):
        raise SpecError(f"{name} has no known family (family={quote(family)}): it is not a convgen "
                        f"layer spec (a convgen.spec.Layer, whose family is one of {allowed})")
    if family not in FAMILIES:
        raise SpecError(f"{name} has no known family (family={quote(family)}); a layer spec's "
                        f"family must be one of {allowed}")
    if family in POOL_FAMILIES and layer.reduction not in REDUCTIONS:
        raise SpecError(f"{name} has family {family!r} but no known reduction "
                        f"(reduction={quote(layer.reduction)}); a pool's reduction must be one of "
                        f"{', '.join(map(repr, REDUCTIONS))}")
    return family


# --------------------------------------------------------------------------- sliding windows


class _Windowed(Layer):
    """A layer that slides a (dilated, strided, padded) window: convs and window pools."""

    def _init_window(self, stride_default_kernel: bool) -> None:
        owner, ndim = self._owner, self.ndim
        self._set("kernel_size", _per_dim(owner, "kernel_size", self.kernel_size, ndim, 1))
        stride = self.kernel_size if stride_default_kernel and self.stride is None \
            else self.stride
        self._set("stride", _per_dim(owner, "stride", stride, ndim, 1))
        self._set("dilation", _per_dim(owner, "dilation", self.dilation, ndim, 1))
        self._set("padding", _padding(owner, self.padding, ndim))

    @property
    def extents(self) -> tuple[int, ...]:
        """Dilated kernel extent per dimension."""
        return tuple(sym.dilated_extent(k, d) for k, d in zip(self.kernel_size, self.dilation))

    def resolved_padding(self, spatial: Sequence[sym.Size]) -> tuple:
        """``(lo, hi)`` per dimension, with ``'same'``/``'same_lower'`` resolved for ``spatial``."""
        if isinstance(self.padding, tuple):
            return self.padding
        lower = self.padding == "same_lower"
        return tuple(sym.same_padding(n, k, s, d, lower) for n, k, s, d in
                     zip(spatial, self.kernel_size, self.stride, self.dilation))

    def _fit_constraints(self, shape: InputShape) -> list[Constraint]:
        result = []
        pads = self.resolved_padding(shape.spatial)
        for dim, (n, (lo, hi), k, d, ext) in enumerate(
                zip(shape.spatial, pads, self.kernel_size, self.dilation, self.extents)):
            padded = sym._plain(n + lo + hi)
            what = f"dilated kernel extent {ext} (kernel_size={k}, dilation={d})"
            result.append(_constraint(
                sympy.sympify(padded) >= ext,
                f"{what} fits in padded input {padded} in dim {dim}",
                f"{self._owner}: {what} exceeds padded input {padded} in dim {dim} "
                f"(input size {n}, padding ({lo}, {hi}))"))
        return result

    def _rf_steps(self, shape: InputShape) -> tuple:
        return tuple(zip(self.extents, self.stride))


