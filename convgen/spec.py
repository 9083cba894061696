"""Layer specs: frozen, canonical, validated once at construction.

Names, argument order, defaults and meanings follow PyTorch (``torch.nn.Conv2d`` and friends),
extended where ONNX defines more: dilation in average and LP pooling, padding in LP pooling,
asymmetric padding everywhere, ``'same'``/``'same_lower'`` for every window layer (ONNX's
``auto_pad`` values, see :func:`padding_from_onnx`).

Canonical form (the fields after construction):

* ``kernel_size``, ``stride``, ``dilation``, ``output_padding``: tuples with one int per
  spatial dimension (a pooling ``stride=None`` becomes ``kernel_size``);
* ``padding``: a tuple of ``(lo, hi)`` pairs, one per spatial dimension, or the string
  ``'same'``/``'same_lower'`` (resolved once the input size is known, see
  :meth:`Conv2d.resolved_padding`); ``'valid'`` becomes zero pairs;
* flags are bools, ``padding_mode`` one of ``zeros, reflect, replicate, circular``.

Two specs are equal (and hash equal) exactly when they describe the same layer, so
``Conv2d(3, 8, 3, padding=1) == Conv2d(3, 8, (3, 3), padding=((1, 1), (1, 1)))``.

LP pooling is the true Lp norm of the window, ``(sum |x|^p)^(1/p)``, as in ONNX ``LpPool``.
PyTorch's ``LPPool`` computes ``(sum x^p)^(1/p)`` without the absolute value, which differs for
odd ``p`` when the window holds negative values (PyTorch may then return NaN or a smaller
value); for even ``p`` the two agree.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import sympy

from . import symbolic as sym
from .errors import SpecError

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "Constraint", "Conv1d", "Conv2d", "Conv3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "DTYPE_SIZES", "Footprint", "GlobalAvgPool", "GlobalMaxPool", "InputShape",
    "LAYER_TYPES", "LPPool1d", "LPPool2d", "LPPool3d", "Layer",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "PADDING_MODES", "Sequential",
    "padding_from_onnx",
]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("valid", "same", "same_lower")
DTYPE_SIZES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
               "int8": 1, "uint8": 1, "int32": 4, "int64": 8}
INDEX_DTYPE = "int64"

Padding = tuple[tuple[int, int], ...] | str


# --------------------------------------------------------------------------- validation helpers


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _int(owner: str, name: str, value: object, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise SpecError(f"{owner}: {name}={value!r} must be {what}")
    return int(value)


def _bool(owner: str, name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SpecError(f"{owner}: {name}={value!r} must be True or False")
    return value


def _per_dim(owner: str, name: str, value: object, ndim: int, minimum: int) -> tuple[int, ...]:
    """An int or a sequence of ``ndim`` ints, each ``>= minimum``, as a tuple."""
    noun = {0: "non-negative int", 1: "positive int"}.get(minimum, f"int >= {minimum}")
    allowed = f"a {noun} or a sequence of {ndim} {noun}s"
    if _is_int(value):
        items = [value] * ndim
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = list(value)
        if len(items) != ndim:
            raise SpecError(f"{owner}: {name}={value!r} has {len(items)} entries; "
                            f"{owner} has {ndim} spatial dimension(s), so {name} must be "
                            f"{allowed}")
    else:
        raise SpecError(f"{owner}: {name}={value!r} must be {allowed}")
    if not all(_is_int(v) and v >= minimum for v in items):
        raise SpecError(f"{owner}: {name}={value!r} must be {allowed}")
    return tuple(int(v) for v in items)


def _pad_pair(owner: str, value: object, entry: object, ndim: int) -> tuple[int, int]:
    if _is_int(entry) and entry >= 0:
        return int(entry), int(entry)
    if isinstance(entry, Sequence) and not isinstance(entry, str) and len(entry) == 2 \
            and all(_is_int(v) and v >= 0 for v in entry):
        return int(entry[0]), int(entry[1])
    raise SpecError(_padding_message(owner, value, ndim))


def _padding_message(owner: str, value: object, ndim: int) -> str:
    return (f"{owner}: padding={value!r} must be an int >= 0, a sequence of {ndim} such ints, "
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
    if isinstance(value, Sequence) and len(value) == ndim:
        return tuple(_pad_pair(owner, value, entry, ndim) for entry in value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        raise SpecError(f"{owner}: padding={value!r} has {len(value)} entries but {owner} has "
                        f"{ndim} spatial dimension(s); "
                        + _padding_message(owner, value, ndim).split(": ", 1)[1])
    raise SpecError(_padding_message(owner, value, ndim))


def _choice(owner: str, name: str, value: object, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise SpecError(f"{owner}: {name}={value!r} must be one of "
                        f"{', '.join(map(repr, allowed))}")
    return str(value)


def _size(owner: str, name: str, value: object) -> sym.Size:
    """A size of an input shape: a positive int, a SymPy expression, or a symbol name."""
    if _is_int(value):
        if value < 1:
            raise SpecError(f"{owner}: {name}={value!r} must be a positive int or a SymPy "
                            "expression")
        return int(value)
    if isinstance(value, str) and value.isidentifier():
        return sympy.Symbol(value, integer=True, positive=True)
    if isinstance(value, sympy.Expr) and value.is_integer is not False \
            and value.is_positive is not False:
        return sym._plain(value)
    raise SpecError(f"{owner}: {name}={value!r} must be a positive int, a SymPy expression "
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
        raise SpecError(f"auto_pad={auto_pad!r} must be one of 'NOTSET', 'VALID', "
                        "'SAME_UPPER', 'SAME_LOWER'")
    if pads is None:
        if ndim is None:
            raise SpecError("pads=None with auto_pad='NOTSET' needs ndim to build zero padding")
        return 0
    pads = list(pads)
    if len(pads) % 2 or not pads:
        raise SpecError(f"pads={pads!r} must hold 2*ndim entries (begins, then ends)")
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

    def __str__(self) -> str:
        return f"{self.condition}    ({self.requirement})"


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


class Layer(abc.ABC):
    """Behaviour shared by every layer spec.  Subclasses are frozen dataclasses."""

    ndim: ClassVar[int]

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
            raise SpecError(f"{self._owner}: input_shape={input_shape!r} must be a sequence "
                            f"(C, *spatial) or (N, C, *spatial)")
        ndim = self.ndim
        if len(input_shape) not in (ndim + 1, ndim + 2):
            raise SpecError(
                f"{self._owner}: input_shape={tuple(input_shape)!r} has {len(input_shape)} "
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

    def constraints(self, input_shape: Sequence) -> tuple[Constraint, ...]:
        """The side conditions under which :meth:`output_shape` is valid for this input."""
        return tuple(self._constraints(self.split_input(input_shape)))

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
            raise SpecError(f"dtype={dtype!r} must be one of {', '.join(DTYPE_SIZES)}")
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
        from .toeplitz import toeplitz
        return toeplitz(self, input_shape, weight=weight, symbolic=symbolic)

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


def _dimensions(prefix: str, base: type, doc: str) -> tuple[type, type, type]:
    """The 1-d, 2-d and 3-d classes of a layer family: ``base`` with ``ndim`` fixed."""
    classes = []
    for ndim in (1, 2, 3):
        name = f"{prefix}{ndim}d"
        classes.append(type(base)(name, (base,), {
            "ndim": ndim, "__doc__": doc.format(n=ndim), "__module__": __name__,
            "__qualname__": name}))
    return tuple(classes)


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


# --------------------------------------------------------------------------- convolution


class _ConvMixin(_Windowed):
    """Checks and counts shared by convolutions and transposed convolutions."""

    def _init_conv(self) -> None:
        owner = self._owner
        self._set("in_channels", _int(owner, "in_channels", self.in_channels, 1))
        self._set("out_channels", _int(owner, "out_channels", self.out_channels, 1))
        self._set("groups", _int(owner, "groups", self.groups, 1))
        self._set("bias", _bool(owner, "bias", self.bias))
        self._set("padding_mode", _choice(owner, "padding_mode", self.padding_mode,
                                          PADDING_MODES))
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise SpecError(f"{owner}: groups={self.groups} must divide "
                            f"in_channels={self.in_channels} and "
                            f"out_channels={self.out_channels}")
        self._init_window(stride_default_kernel=False)

    def _channel_constraint(self, shape: InputShape) -> Constraint:
        return _constraint(
            sympy.Eq(shape.channels, self.in_channels),
            f"input channels {shape.channels} equal in_channels={self.in_channels}",
            f"{self._owner}: input_shape has {shape.channels} channels but "
            f"in_channels={self.in_channels}")

    @property
    def num_weights(self) -> int:
        return sym.conv_weight_count(self.in_channels, self.out_channels, self.groups,
                                     self.kernel_size)

    @property
    def num_bias(self) -> int:
        return self.out_channels if self.bias else 0

    def _extra_flops(self, shape: InputShape) -> sym.Size:
        """One add per output element for the bias."""
        if not self.bias:
            return 0
        out = self._out_spatial(shape)
        return sym.prod([shape.batch_or_one, self.out_channels, *out])


class _ConvNd(_ConvMixin):
    def __post_init__(self) -> None:
        self._init_conv()

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(C_out, C_in/groups, *kernel_size)``, PyTorch's layout."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _constraints(self, shape: InputShape) -> list[Constraint]:
        result = [self._channel_constraint(shape), *self._fit_constraints(shape)]
        if self.padding_mode in ("reflect", "circular"):
            result += self._wrap_constraints(shape)
        return result

    def _wrap_constraints(self, shape: InputShape) -> list[Constraint]:
        """Reflect padding needs ``pad < n``; circular padding ``pad <= n``."""
        reflect = self.padding_mode == "reflect"
        result = []
        pads = self.resolved_padding(shape.spatial)
        for dim, (n, pair) in enumerate(zip(shape.spatial, pads)):
            for side, pad in zip(("lo", "hi"), pair):
                cond = sympy.sympify(pad) < n if reflect else sympy.sympify(pad) <= n
                rel = "<" if reflect else "<="
                result.append(_constraint(
                    cond, f"{self.padding_mode} padding {pad} {rel} input size {n} in dim {dim}",
                    f"{self._owner}: padding_mode={self.padding_mode!r} needs padding {rel} "
                    f"input size in every dim, but {side} padding {pad} meets input size {n} in "
                    f"dim {dim}"))
        return result

    def _out_channels(self, shape: InputShape) -> int:
        return self.out_channels

    def _out_spatial(self, shape: InputShape) -> tuple:
        if isinstance(self.padding, str):
            return tuple(sym.same_output_size(n, s) for n, s in zip(shape.spatial, self.stride))
        return tuple(sym.conv_output_size(n, k, s, d, lo, hi) for n, k, s, d, (lo, hi) in
                     zip(shape.spatial, self.kernel_size, self.stride, self.dilation,
                         self.padding))

    def macs(self, input_shape: Sequence) -> sym.Size:
        shape = self.split_input(input_shape)
        self._check(shape)
        return sym.conv_macs(shape.batch_or_one, self.out_channels, self._out_spatial(shape),
                             self.in_channels, self.groups, self.kernel_size)


_CONV_DOC = """{n}-d convolution, PyTorch's ``torch.nn.Conv{n}d``.

    ``y[n, o, *p] = bias[o] + sum_{{i, j}} w[o, i, *j] * x[n, g*C_in/groups + i, *(p*stride - lo
    + j*dilation)]`` over the input channels ``i`` of the group ``g`` of ``o``, with the padding
    filled as ``padding_mode`` says.  Weight layout ``(C_out, C_in/groups, *kernel_size)``.
    """


@dataclass(frozen=True)
class _ConvFields(_ConvNd):
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True
    padding_mode: str = "zeros"


Conv1d, Conv2d, Conv3d = _dimensions(
    "Conv", _ConvFields, _CONV_DOC)


# --------------------------------------------------------------------------- transposed conv


class _ConvTransposeNd(_ConvMixin):
    def __post_init__(self) -> None:
        self._init_conv()
        owner = self._owner
        if self.padding_mode != "zeros":
            raise SpecError(f"{owner}: padding_mode={self.padding_mode!r} is not supported; "
                            "transposed convolutions allow only 'zeros' (as in PyTorch)")
        self._set("output_padding", _per_dim(owner, "output_padding", self.output_padding,
                                             self.ndim, 0))
        for dim, (op, s, d) in enumerate(zip(self.output_padding, self.stride, self.dilation)):
            if op >= max(s, d):
                raise SpecError(f"{owner}: output_padding={op} in dim {dim} must be smaller "
                                f"than stride={s} or dilation={d}")
        if isinstance(self.padding, str):
            self._check_same_total()

    def _check_same_total(self) -> None:
        for dim, (k, s, d, op) in enumerate(zip(self.kernel_size, self.stride, self.dilation,
                                                self.output_padding)):
            if sym.conv_transpose_same_total(k, s, d, op) < 0:
                raise SpecError(
                    f"{self._owner}: padding={self.padding!r} needs dilated kernel extent "
                    f"{sym.dilated_extent(k, d)} + output_padding {op} >= stride {s} in dim "
                    f"{dim} (the output n*stride would need negative padding)")

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """``(C_in, C_out/groups, *kernel_size)``, PyTorch's layout."""
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    def resolved_padding(self, spatial: Sequence[sym.Size]) -> tuple:
        """``(lo, hi)`` per dimension; ``'same'`` follows ONNX ConvTranspose (output n*stride)."""
        if isinstance(self.padding, tuple):
            return self.padding
        lower = self.padding == "same_lower"
        return tuple(sym.conv_transpose_same_padding(k, s, d, op, lower) for k, s, d, op in
                     zip(self.kernel_size, self.stride, self.dilation, self.output_padding))

    def _constraints(self, shape: InputShape) -> list[Constraint]:
        result = [self._channel_constraint(shape)]
        for dim, out in enumerate(self._out_spatial(shape)):
            result.append(_constraint(
                sympy.sympify(out) >= 1, f"output size {out} >= 1 in dim {dim}",
                f"{self._owner}: output size {out} in dim {dim} is not positive: padding "
                f"{self.resolved_padding(shape.spatial)[dim]} crops more than the transposed "
                f"convolution produces"))
        return result

    def _out_channels(self, shape: InputShape) -> int:
        return self.out_channels

    def _out_spatial(self, shape: InputShape) -> tuple:
        pads = self.resolved_padding(shape.spatial)
        return tuple(sym.conv_transpose_output_size(n, k, s, d, lo, hi, op)
                     for n, k, s, d, (lo, hi), op in
                     zip(shape.spatial, self.kernel_size, self.stride, self.dilation, pads,
                         self.output_padding))

    def macs(self, input_shape: Sequence) -> sym.Size:
        shape = self.split_input(input_shape)
        self._check(shape)
        return sym.conv_transpose_macs(shape.batch_or_one, self.in_channels, shape.spatial,
                                       self.out_channels, self.groups, self.kernel_size)

    def _rf_steps(self, shape: InputShape) -> tuple:
        return tuple((sym.transpose_tap_count(k, s, d), sympy.Rational(1, s))
                     for k, s, d in zip(self.kernel_size, self.stride, self.dilation))


_CONVT_DOC = """{n}-d transposed convolution, PyTorch's ``torch.nn.ConvTranspose{n}d``.

    Multiplication by the transpose of the matching convolution's matrix.  Output size
    ``(n - 1)*stride - lo - hi + dilation*(kernel - 1) + 1 + output_padding``.  Weight layout
    ``(C_in, C_out/groups, *kernel_size)``.  ``padding='same'``/``'same_lower'`` follow ONNX
    ``auto_pad=SAME_UPPER``/``SAME_LOWER`` (output ``n*stride``).
    """


@dataclass(frozen=True)
class _ConvTransposeFields(_ConvTransposeNd):
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    output_padding: Any = 0
    groups: int = 1
    bias: bool = True
    dilation: Any = 1
    padding_mode: str = "zeros"


ConvTranspose1d, ConvTranspose2d, ConvTranspose3d = _dimensions(
    "ConvTranspose", _ConvTransposeFields, _CONVT_DOC)


# --------------------------------------------------------------------------- window pooling


class _PoolNd(_Windowed):
    """Max, average and LP pooling: a window sweep with floor or ceil mode."""

    def _init_pool(self) -> None:
        self._init_window(stride_default_kernel=True)
        self._set("ceil_mode", _bool(self._owner, "ceil_mode", self.ceil_mode))
        if isinstance(self.padding, tuple):
            for dim, ((lo, hi), k, d, ext) in enumerate(
                    zip(self.padding, self.kernel_size, self.dilation, self.extents)):
                if max(lo, hi) >= ext:
                    raise SpecError(
                        f"{self._owner}: padding {(lo, hi)} in dim {dim} must be smaller than "
                        f"the dilated kernel extent {ext} (kernel_size={k}, dilation={d}); "
                        "otherwise a window could lie entirely in the padding")

    def _constraints(self, shape: InputShape) -> list[Constraint]:
        """Floor mode: the window fits the padded input.  Ceil mode: at least one window,
        which may run past the padded input (PyTorch's "output size is too small" check)."""
        if not self.ceil_mode or isinstance(self.padding, str):
            return self._fit_constraints(shape)
        result = []
        for dim, (n, size, (lo, hi), k, d) in enumerate(zip(
                shape.spatial, self._out_spatial(shape), self.padding, self.kernel_size,
                self.dilation)):
            padded = sym._plain(n + lo + hi)
            what = f"ceil-mode output size {size} in dim {dim}"
            result.append(_constraint(
                sympy.sympify(size) >= 1, f"{what} >= 1",
                f"{self._owner}: {what} is not positive: dilated kernel extent "
                f"{sym.dilated_extent(k, d)} (kernel_size={k}, dilation={d}) reaches past "
                f"padded input {padded} by a stride or more"))
        return result

    def _check_concrete(self, shape: InputShape) -> None:
        """With dilation, a window can straddle a narrow input between two taps.

        Padding smaller than the extent keeps every window overlapping the input, so a window
        without a real tap needs an input narrower than the dilation; only then enumerate.
        """
        if sym.is_symbolic(*shape.spatial):
            return
        pads = self.resolved_padding(shape.spatial)
        out = self._out_spatial(shape)
        for dim, (n, (lo, _), k, s, d, size) in enumerate(
                zip(shape.spatial, pads, self.kernel_size, self.stride, self.dilation, out)):
            if n >= d:
                continue
            for o in range(size):
                taps = [sym.tap_index(o, j, s, d, lo) for j in range(k)]
                if not any(0 <= t < n for t in taps):
                    raise SpecError(
                        f"{self._owner}: window {o} in dim {dim} reads no input element "
                        f"(input size {n}, dilation={d}, padding {pads[dim]}): every tap "
                        "falls in the padding")

    def _out_spatial(self, shape: InputShape) -> tuple:
        if isinstance(self.padding, str):
            return tuple(sym.same_output_size(n, s) for n, s in zip(shape.spatial, self.stride))
        return tuple(sym.pool_output_size(n, k, s, d, lo, hi, self.ceil_mode)
                     for n, k, s, d, (lo, hi) in zip(shape.spatial, self.kernel_size,
                                                     self.stride, self.dilation, self.padding))

    def _extra_flops(self, shape: InputShape) -> sym.Size:
        self._check(shape)
        outputs = sym.prod([shape.batch_or_one, shape.channels, *self._out_spatial(shape)])
        taps = sym.prod([outputs, *self.kernel_size])
        return sym.pool_flops(outputs, taps, self._ops_per_tap, self._ops_per_output)


class _MaxPoolNd(_PoolNd):
    _ops_per_tap = 1  # a comparison
    _ops_per_output = 0
    def __post_init__(self) -> None:
        self._init_pool()
        self._set("return_indices", _bool(self._owner, "return_indices", self.return_indices))


@dataclass(frozen=True)
class _MaxPoolFields(_MaxPoolNd):
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    return_indices: bool = False
    ceil_mode: bool = False


_MAXPOOL_DOC = """{n}-d max pooling, PyTorch's ``torch.nn.MaxPool{n}d``.

    Padding positions act as ``-inf``; a NaN in a window propagates.  Each pad must be smaller
    than the dilated kernel extent.
    """


MaxPool1d, MaxPool2d, MaxPool3d = _dimensions(
    "MaxPool", _MaxPoolFields, _MAXPOOL_DOC)


class _AvgPoolNd(_PoolNd):
    _ops_per_tap = 1  # an add
    _ops_per_output = 1  # a division
    def __post_init__(self) -> None:
        self._init_pool()
        owner = self._owner
        self._set("count_include_pad", _bool(owner, "count_include_pad",
                                             self.count_include_pad))
        if self.divisor_override is not None:
            self._set("divisor_override", _int(owner, "divisor_override",
                                               self.divisor_override, 1))


@dataclass(frozen=True)
class _AvgPoolFields(_AvgPoolNd):
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Any = None
    dilation: Any = 1


_AVGPOOL_DOC = """{n}-d average pooling, PyTorch's ``torch.nn.AvgPool{n}d`` plus ONNX's dilation.

    The divisor is ``divisor_override`` when given, else the number of taps in the window
    (counting padding taps when ``count_include_pad``; taps past the padded input in ceil mode
    never count).
    """


AvgPool1d, AvgPool2d, AvgPool3d = _dimensions(
    "AvgPool", _AvgPoolFields, _AVGPOOL_DOC)


class _LPPoolNd(_PoolNd):
    _ops_per_tap = 2  # a power and an add
    _ops_per_output = 1  # a root
    def __post_init__(self) -> None:
        p = self.norm_type
        try:
            valid = isinstance(p, numbers.Real) and not isinstance(p, bool) \
                and math.isfinite(p) and p > 0
        except OverflowError:  # an int too large for a float
            valid = False
        if not valid:
            raise SpecError(f"{self._owner}: norm_type={p!r} must be a finite number > 0")
        self._set("norm_type", int(p) if float(p).is_integer() else float(p))
        self._init_pool()


@dataclass(frozen=True)
class _LPPoolFields(_LPPoolNd):
    norm_type: Any
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    ceil_mode: bool = False


_LPPOOL_DOC = """{n}-d power-average pooling: the Lp norm ``(sum |x|^p)^(1/p)`` of each window.

    ONNX ``LpPool`` semantics (with padding and dilation).  PyTorch's ``LPPool{n}d`` omits the
    absolute value and so differs for odd ``p`` on negative inputs.
    """


LPPool1d, LPPool2d, LPPool3d = _dimensions(
    "LPPool", _LPPoolFields, _LPPOOL_DOC)


# --------------------------------------------------------------------------- adaptive pooling


class _AdaptiveNd(Layer):
    """Adaptive pooling: output ``i`` pools ``[floor(i*n/out), ceil((i+1)*n/out))``."""

    def __post_init__(self) -> None:
        owner, ndim, value = self._owner, self.ndim, self.output_size
        allowed = f"a positive int or a sequence of {ndim} positive ints or None"
        if _is_int(value) and value >= 1:
            sizes = (int(value),) * ndim
        elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == ndim \
                and all(v is None or (_is_int(v) and v >= 1) for v in value):
            sizes = tuple(None if v is None else int(v) for v in value)
        else:
            raise SpecError(f"{owner}: output_size={value!r} must be {allowed} (None keeps "
                            "that input size)")
        self._set("output_size", sizes)
        if hasattr(self, "return_indices"):
            self._set("return_indices", _bool(owner, "return_indices", self.return_indices))

    def _targets(self, shape: InputShape) -> tuple:
        return tuple(n if o is None else o for n, o in zip(shape.spatial, self.output_size))

    def _out_spatial(self, shape: InputShape) -> tuple:
        return self._targets(shape)

    def _window_taps(self, shape: InputShape) -> list[list[sym.Size]]:
        """Per dimension, the size of each window (one per output position)."""
        result = []
        for n, o in zip(shape.spatial, self.output_size):
            result.append([1] if o is None else sym.adaptive_window_taps(n, o))
        return result

    def _extra_flops(self, shape: InputShape) -> sym.Size:
        """Window taps summed over all outputs; ``output_size=None`` dims use 1-wide windows."""
        per_dim = []
        for n, o, taps in zip(shape.spatial, self.output_size, self._window_taps(shape)):
            per_dim.append(n if o is None else sym._plain(sympy.Add(*taps)))
        total_taps = sym.prod([shape.batch_or_one, shape.channels, *per_dim])
        outputs = sym.prod([shape.batch_or_one, shape.channels, *self._targets(shape)])
        return sym.pool_flops(outputs, total_taps, self._ops_per_tap, self._ops_per_output)

    def _rf_steps(self, shape: InputShape) -> tuple:
        """The widest window, and the largest distance between window starts (upper bound)."""
        steps = []
        for n, o, taps in zip(shape.spatial, self.output_size, self._window_taps(shape)):
            steps.append((1, 1) if o is None else (sym.smax(*taps), sym.cdiv(n, o)))
        return tuple(steps)


@dataclass(frozen=True)
class _AdaptiveAvgFields(_AdaptiveNd):
    output_size: Any
    _ops_per_tap = 1
    _ops_per_output = 1


@dataclass(frozen=True)
class _AdaptiveMaxFields(_AdaptiveNd):
    output_size: Any
    return_indices: bool = False
    _ops_per_tap = 1
    _ops_per_output = 0


AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = _dimensions(
    "AdaptiveAvgPool", _AdaptiveAvgFields,
    "{n}-d adaptive average pooling, PyTorch's ``torch.nn.AdaptiveAvgPool{n}d``.")


AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = _dimensions(
    "AdaptiveMaxPool", _AdaptiveMaxFields,
    "{n}-d adaptive max pooling, PyTorch's ``torch.nn.AdaptiveMaxPool{n}d``.")


# --------------------------------------------------------------------------- global pooling


class _GlobalNd(Layer):
    """Global pooling over all spatial positions; ONNX keeps the dims as size 1."""

    def __post_init__(self) -> None:
        self._set("ndim", _int(self._owner, "ndim", self.ndim, 1))

    def _out_spatial(self, shape: InputShape) -> tuple:
        return (1,) * self.ndim

    def _extra_flops(self, shape: InputShape) -> sym.Size:
        outputs = sym.prod([shape.batch_or_one, shape.channels])
        taps = sym.prod([outputs, *shape.spatial])
        return sym.pool_flops(outputs, taps, self._ops_per_tap, self._ops_per_output)

    def _rf_steps(self, shape: InputShape) -> tuple:
        return tuple((n, n) for n in shape.spatial)


@dataclass(frozen=True)
class GlobalAvgPool(_GlobalNd):
    """Global average pooling (ONNX ``GlobalAveragePool``) over ``ndim`` spatial dims."""

    ndim: int = 2
    _ops_per_tap = 1
    _ops_per_output = 1


@dataclass(frozen=True)
class GlobalMaxPool(_GlobalNd):
    """Global max pooling (ONNX ``GlobalMaxPool``) over ``ndim`` spatial dims."""

    ndim: int = 2
    _ops_per_tap = 1
    _ops_per_output = 0


# --------------------------------------------------------------------------- chains


@dataclass(frozen=True, init=False)
class Sequential:
    """A chain of layers, applied in order; optional names label them in summaries."""

    layers: tuple[Layer, ...]
    names: tuple[str, ...]

    def __init__(self, *layers: Layer, names: Sequence[str] | None = None):
        for index, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise SpecError(f"Sequential: layer {index} is {layer!r}; every layer must be "
                                f"a convgen layer spec ({', '.join(LAYER_TYPES)})")
        if names is None:
            names = [f"{index}" for index in range(len(layers))]
        names = tuple(names)
        if len(names) != len(layers) or not all(isinstance(n, str) and n for n in names):
            raise SpecError(f"Sequential: names={names!r} must be {len(layers)} non-empty "
                            "strings, one per layer")
        if len(set(names)) != len(names):
            raise SpecError(f"Sequential: names={names!r} must be unique")
        dims = sorted({layer.ndim for layer in layers})
        if len(dims) > 1:
            raise SpecError(f"Sequential: layers have {dims} spatial dimensions; a chain must "
                            "keep one (give global pools the chain's ndim)")
        object.__setattr__(self, "layers", tuple(layers))
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, index: int) -> Layer:
        return self.layers[index]

    def walk(self, input_shape: Sequence):
        """Yield ``(name, layer, input_shape_of_layer)``; errors name the failing layer."""
        shape = tuple(input_shape)
        for name, layer in zip(self.names, self.layers):
            yield name, layer, shape
            try:
                shape = layer.output_shape(shape)
            except SpecError as error:
                raise SpecError(f"layer {name!r}: {error}") from None

    def _each(self, method: str, input_shape: Sequence) -> list:
        result = []
        for name, layer, shape in self.walk(input_shape):
            try:
                result.append(getattr(layer, method)(shape))
            except SpecError as error:
                raise SpecError(f"layer {name!r}: {error}") from None
        return result

    def shapes(self, input_shape: Sequence) -> list[tuple]:
        """Output shape after each layer."""
        return self._each("output_shape", input_shape)

    def output_shape(self, input_shape: Sequence) -> tuple:
        """Output shape of the whole chain."""
        shapes = self.shapes(input_shape)
        return shapes[-1] if shapes else tuple(input_shape)

    def constraints(self, input_shape: Sequence) -> tuple[Constraint, ...]:
        """The constraints of every layer, on the shape that reaches it."""
        return tuple(c for group in self._each("constraints", input_shape) for c in group)

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    def macs(self, input_shape: Sequence) -> sym.Size:
        return sym._plain(sympy.Add(*self._each("macs", input_shape)))

    def flops(self, input_shape: Sequence) -> sym.Size:
        return sym._plain(sympy.Add(*self._each("flops", input_shape)))

    def summary(self, input_shape: Sequence, title: str | None = None):
        """A per-layer table of shapes, params, MACs and receptive field (see
        :class:`convgen.summary.Summary`)."""
        from .summary import summarize
        return summarize(self, input_shape, title)


LAYER_TYPES = {cls.__name__: cls for cls in (
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,
    MaxPool1d, MaxPool2d, MaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d,
    LPPool1d, LPPool2d, LPPool3d, AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d,
    AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d, GlobalAvgPool, GlobalMaxPool)}
