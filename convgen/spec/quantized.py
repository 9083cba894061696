"""Quantized convolutions: ONNX's ``QLinearConv`` and ``ConvInteger``, in 1, 2 and 3 dimensions.

Every option of the float convolutions carries over (stride, dilation, groups and depthwise,
asymmetric and ``'same'`` padding) except ``padding_mode``: a padded tap stands for a real
zero, i.e. the input's zero point, so it adds nothing to the accumulator.

The quantization parameters are part of the spec (fixed configs are the point): scales are
rounded to binary32 (ONNX's ``float``) and must be positive and finite, zero points lie in
their type's range, a per-channel ``w_scale``/``w_zero_point`` has one entry per output
channel.  Canonical form: a per-channel tuple whose entries are all equal is its one value.
The arithmetic lives in :mod:`convgen.quantization`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import quantization as q
from .. import symbolic as sym
from ..errors import SpecError
from .base import DTYPE_SIZES, Footprint, _choice, _sequence, quote
from .conv import Conv1d, Conv2d, Conv3d, _ConvNd

__all__ = ["ConvInteger1d", "ConvInteger2d", "ConvInteger3d", "QLinearConv1d",
           "QLinearConv2d", "QLinearConv3d"]


def _scale(owner: str, name: str, value: object) -> float:
    """A positive finite scale, as its binary32 value."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok:
        value = float(value)
        ok = math.isfinite(value) and value > 0
        rounded = q.float32(value) if ok else 0.0
        ok = ok and math.isfinite(rounded) and rounded > 0
    if not ok:
        raise SpecError(f"{owner}: {name}={quote(value)} must be a positive finite number "
                        "(a binary32 scale: between about 1.4e-45 and 3.4e38)")
    return q.Scale(rounded)


def _zero_point(owner: str, name: str, value: object, dtype: str) -> int:
    low, high = q.type_range(dtype)
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) \
            or not low <= value <= high:
        raise SpecError(f"{owner}: {name}={quote(value)} must be an int in [{low}, {high}] "
                        f"(the range of {dtype})")
    return int(value)


def _per_channel(owner: str, name: str, value: object, channels: int, check):
    """A value or one per output channel, checked by ``check(name, entry)``; all equal
    entries become that value."""
    if not _sequence(value):
        return check(name, value)
    items = list(value)
    if len(items) != channels:
        raise SpecError(f"{owner}: {name}={quote(value)} has {len(items)} entries; a "
                        f"per-channel {name} has one per output channel "
                        f"(out_channels={channels})")
    items = [check(f"{name}[{i}]", v) for i, v in enumerate(items)]
    return items[0] if len(set(items)) == 1 else tuple(items)


class _QConvNd(_ConvNd):
    """What both quantized convolutions share: dtypes, zero points, the accumulator."""

    family = "qconv"
    quantized = True
    padding_mode = "zeros"  # padded taps are the input's zero point: nothing to choose
    requantizes = False     # QLinearConv requantizes its int32 accumulator to 8 bits

    def _init_quantized(self) -> None:
        owner = self._owner
        self._init_conv()
        self._set("dtype", _choice(owner, "dtype", self.dtype, q.QUANT_DTYPES))
        self._set("weight_dtype", _choice(owner, "weight_dtype", self.weight_dtype,
                                          q.QUANT_DTYPES))
        self._set("x_zero_point", _zero_point(owner, "x_zero_point", self.x_zero_point,
                                              self.dtype))
        self._set("w_zero_point", _per_channel(
            owner, "w_zero_point", self.w_zero_point, self.out_channels,
            lambda name, v: _zero_point(owner, name, v, self.weight_dtype)))
        self._check_accumulator()

    def _check_accumulator(self) -> None:
        """Refuse a layer whose int32 accumulator could overflow (the proofs show the
        others cannot)."""
        low, high = self.accumulator_range
        if low < q.INT32[0] or high > q.INT32[1]:
            raise SpecError(
                f"{self._owner}: the int32 accumulator can overflow: {self.taps:,} taps "
                f"(in_channels/groups={self.in_channels // self.groups} x kernel_size="
                f"{self.kernel_size}) of products in [{self.term_range[0]:,}, "
                f"{self.term_range[1]:,}] reach [{low:,}, {high:,}], past int32's "
                f"[{q.INT32[0]:,}, {q.INT32[1]:,}]; use fewer input channels a group or a "
                "smaller kernel")

    @property
    def accumulator(self) -> _ConvNd:
        """The float convolution of the same geometry, without bias: the accumulator is
        ``accumulator(x - x_zero_point)`` with weights ``w - w_zero_point``, exactly; its
        Toeplitz operator is this layer's (:mod:`convgen.toeplitz`)."""
        return {1: Conv1d, 2: Conv2d, 3: Conv3d}[self.ndim](
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding,
            self.dilation, self.groups, bias=False)

    @property
    def output_dtype(self) -> str:
        return self.dtype if self.requantizes else "int32"

    @property
    def w_zero_points(self) -> tuple[int, ...]:
        """The weight zero point of every output channel."""
        zp = self.w_zero_point
        return zp if isinstance(zp, tuple) else (zp,) * self.out_channels

    @property
    def taps(self) -> int:
        """Products one output adds: input channels a group times the kernel's taps."""
        return self.in_channels // self.groups * sym.prod(self.kernel_size)

    @property
    def term_range(self) -> tuple[int, int]:
        """The range of one product ``(x - x_zp) * (w - w_zp)``."""
        x = q.term_bound(self.dtype, self.x_zero_point)
        corners = [a * b for zp in set(self.w_zero_points)
                   for a in x for b in q.term_bound(self.weight_dtype, zp)]
        return min(corners), max(corners)

    @property
    def accumulator_range(self) -> tuple[int, int]:
        """The range of an output's sum of products (before the bias)."""
        x = q.term_bound(self.dtype, self.x_zero_point)
        lows, highs = zip(*(q.accumulator_bound(self.taps, x,
                                                q.term_bound(self.weight_dtype, zp))
                            for zp in set(self.w_zero_points)))
        return min(lows), max(highs)

    def memory(self, input_shape: Sequence, dtype: str | None = None) -> Footprint:
        """Bytes of the 8-bit input and weights, the output (8-bit, or int32 for
        ConvInteger) and the int32 bias; ``dtype``, when given, must be the layer's."""
        if dtype is not None and dtype != self.dtype:
            raise SpecError(f"{self._owner}: dtype={quote(dtype)} must be the layer's own "
                            f"dtype {self.dtype!r} (or None)")
        shape = self.split_input(input_shape)
        out = sym.prod(self.output_shape(input_shape))
        inp = sym.prod([shape.batch_or_one, shape.per_sample])
        return Footprint(sym._plain(inp * DTYPE_SIZES[self.dtype]),
                         sym._plain(out * DTYPE_SIZES[self.output_dtype]),
                         self.num_weights * DTYPE_SIZES[self.weight_dtype],
                         self.num_bias * DTYPE_SIZES["int32"], 0)


# --------------------------------------------------------------------------- ConvInteger


class _ConvIntegerNd(_QConvNd):
    onnx_op = "ConvInteger"
    bias = False

    def __post_init__(self) -> None:
        self._init_quantized()


@dataclass(frozen=True)
class _ConvIntegerFields(_ConvIntegerNd):
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    x_zero_point: int = 0
    w_zero_point: Any = 0
    dtype: str = "uint8"
    weight_dtype: str = "uint8"


_CONV_INTEGER_DOC = """-d integer convolution, ONNX's ``ConvInteger``.

    ``y[n, o, *p] = sum_{i, j} (w[o, i, *j] - w_zero_point[o]) * (x[n, g*C_in/groups + i,
    *(p*stride - lo + j*dilation)] - x_zero_point)``, exact in int32; a padded tap is the
    zero point.  ``dtype`` (x) and ``weight_dtype`` are ``int8`` or ``uint8``; the output is
    ``int32``.  ``w_zero_point`` is one int or one per output channel.
    """


class ConvInteger1d(_ConvIntegerFields):
    __doc__ = "1" + _CONV_INTEGER_DOC
    ndim = 1


class ConvInteger2d(_ConvIntegerFields):
    __doc__ = "2" + _CONV_INTEGER_DOC
    ndim = 2


class ConvInteger3d(_ConvIntegerFields):
    __doc__ = "3" + _CONV_INTEGER_DOC
    ndim = 3


# --------------------------------------------------------------------------- QLinearConv


class _QLinearConvNd(_QConvNd):
    onnx_op = "QLinearConv"
    requantizes = True

    def __post_init__(self) -> None:
        owner = self._owner
        self._init_quantized()
        self._set("x_scale", _scale(owner, "x_scale", self.x_scale))
        self._set("y_scale", _scale(owner, "y_scale", self.y_scale))
        self._set("w_scale", _per_channel(owner, "w_scale", self.w_scale, self.out_channels,
                                          lambda name, v: _scale(owner, name, v)))
        self._set("y_zero_point", _zero_point(owner, "y_zero_point", self.y_zero_point,
                                              self.dtype))
        self._set("rounding", _choice(owner, "rounding", self.rounding, q.ROUNDINGS))
        self._set("activation", _choice(owner, "activation", self.activation, q.ACTIVATIONS))
        for channel, (scale, real) in enumerate(zip(self.scales, self.real_multipliers)):
            where = f" of output channel {channel}" if isinstance(self.w_scale, tuple) else ""
            if self.rounding == "float" and not 0 < scale < math.inf:
                raise SpecError(f"{owner}: x_scale*w_scale/y_scale{where} is {scale!r} in "
                                "binary32; it must be positive and finite")
            if self.rounding == "fixed_point" and not 2.0**-32 <= real < 1:
                raise SpecError(f"{owner}: x_scale*w_scale/y_scale{where} = {real!r} must "
                                "lie in [2**-32, 1) for rounding='fixed_point' (a multiplier "
                                "in [2**30, 2**31) and a right shift)")
        low, high = self.clamp
        if low > high:
            raise SpecError(f"{owner}: activation={self.activation!r} leaves no output: its "
                            f"range [{low}, {high}] for y_zero_point={self.y_zero_point} and "
                            f"y_scale={self.y_scale!r} is empty")

    @property
    def w_scales(self) -> tuple[float, ...]:
        """The weight scale of every output channel."""
        s = self.w_scale
        return s if isinstance(s, tuple) else (s,) * self.out_channels

    @property
    def per_channel(self) -> bool:
        """Whether a weight scale or zero point differs between output channels."""
        return isinstance(self.w_scale, tuple) or isinstance(self.w_zero_point, tuple)

    @property
    def scales(self) -> tuple[float, ...]:
        """The ``float`` requantization's binary32 scale of every output channel."""
        return tuple(q.float_scale(self.x_scale, w, self.y_scale) for w in self.w_scales)

    @property
    def real_multipliers(self) -> tuple[float, ...]:
        """``x_scale * w_scale / y_scale`` in double, per output channel (TFLite's)."""
        return tuple(self.x_scale * w / self.y_scale for w in self.w_scales)

    @property
    def multipliers(self) -> tuple[tuple[int, int], ...]:
        """The ``fixed_point`` requantization's ``(multiplier, shift)`` per output channel."""
        return tuple(q.quantize_multiplier(m) for m in self.real_multipliers)

    @property
    def clamp(self) -> tuple[int, int]:
        """The output's range: the type's, cut by the activation."""
        return q.activation_range(self.activation, self.dtype, self.y_scale, self.y_zero_point)

    def requantize(self, acc: int, channel: int) -> int:
        """The output value of accumulator ``acc`` (bias included) in ``channel``."""
        multiplier, shift = self.multipliers[channel]
        return q.requantize(acc, self.rounding, self.scales[channel], multiplier, shift,
                            self.y_zero_point, self.clamp)


@dataclass(frozen=True)
class _QLinearConvFields(_QLinearConvNd):
    in_channels: int
    out_channels: int
    kernel_size: Any
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: int = 1
    bias: bool = True
    x_scale: float = 1.0
    x_zero_point: int = 0
    w_scale: Any = 1.0
    w_zero_point: Any = 0
    y_scale: float = 1.0
    y_zero_point: int = 0
    dtype: str = "int8"
    weight_dtype: str = "int8"
    rounding: str = "float"
    activation: str = "none"


_QLINEAR_DOC = """-d quantized convolution, ONNX's ``QLinearConv`` (TFLite's quantized conv).

    The int32 accumulator ``acc = bias[o] + sum (w - w_zero_point[o]) * (x - x_zero_point)``
    (as :class:`ConvInteger{n}d`, plus an int32 bias added saturating) is requantized to
    ``dtype`` (x and y: ``int8`` or ``uint8``): ``clamp(R(acc) + y_zero_point)``, where ``R``
    is ``rounding``'s (``'float'``: ONNX Runtime's binary32 ``round_half_even(acc * x_scale *
    w_scale / y_scale)``; ``'fixed_point'``: TFLite's int32 multiplier and shift) and the
    clamp is the type's range cut by ``activation`` (``'none'``, ``'relu'``, ``'relu6'``).
    ``w_scale`` and ``w_zero_point`` are one value or one per output channel.
    """


class QLinearConv1d(_QLinearConvFields):
    __doc__ = "1" + _QLINEAR_DOC.replace("{n}", "1")
    ndim = 1


class QLinearConv2d(_QLinearConvFields):
    __doc__ = "2" + _QLINEAR_DOC.replace("{n}", "2")
    ndim = 2


class QLinearConv3d(_QLinearConvFields):
    __doc__ = "3" + _QLINEAR_DOC.replace("{n}", "3")
    ndim = 3
