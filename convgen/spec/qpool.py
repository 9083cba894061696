"""Quantized average pooling: ONNX Runtime's ``QLinearAveragePool`` and
``QLinearGlobalAveragePool`` (com.microsoft), and TFLite's int8 average pool.

The input and output are 8-bit (``int8`` or ``uint8``) with their scales and zero points as
spec fields, validated as :mod:`.quantized`'s.  A padded tap stands for a real zero, the
input's zero point.  ``rounding`` chooses the arithmetic, each defined once in
:mod:`convgen.quantization`:

* ``'float'``: ONNX Runtime's.  The window pool dequantizes every real tap in binary32,
  ``fl(x_scale * (x - x_zero_point))``, adds them in scan order, divides by the count, then
  rounds ``fl(fl(mean / y_scale) + y_zero_point)`` half to even; the global pool sums the
  integer differences exactly and requantizes once with ``fl(x_scale / fl(y_scale * n))``.
* ``'integer'``: TFLite's (and CMSIS-NN's): the input's quantization is the output's; the
  raw sum is divided by the count, rounded half away from zero.

Either may clamp to a fused ``activation`` (``'none'``, ``'relu'``, ``'relu6'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import quantization as q
from .. import symbolic as sym
from ..errors import SpecError
from .adaptive import _GlobalNd
from .base import Footprint, InputShape, _choice, quote
from .pool import _AvgPoolNd
from .quantized import _scale, _zero_point

__all__ = ["QLinearAvgPool1d", "QLinearAvgPool2d", "QLinearAvgPool3d", "QLinearGlobalAvgPool"]

MAX_POOL_TAPS = q.MAX_POOL_TAPS


class _QuantizedPool:
    """What the quantized average pools share: dtype, scales, zero points, rounding."""

    quantized = True   # its kernel's dtype is its own (lower.default_dtype)
    reduction = "avg"

    def _init_quantization(self) -> None:
        owner = self._owner
        self._set("dtype", _choice(owner, "dtype", self.dtype, q.QUANT_DTYPES))
        self._set("x_scale", _scale(owner, "x_scale", self.x_scale))
        self._set("y_scale", _scale(owner, "y_scale", self.y_scale))
        for name in ("x_zero_point", "y_zero_point"):
            self._set(name, _zero_point(owner, name, getattr(self, name), self.dtype))
        self._set("rounding", _choice(owner, "rounding", self.rounding, q.POOL_ROUNDINGS))
        self._set("activation", _choice(owner, "activation", self.activation, q.ACTIVATIONS))
        if self.rounding == "integer" and (self.x_scale != self.y_scale
                                           or self.x_zero_point != self.y_zero_point):
            raise SpecError(
                f"{owner}: rounding='integer' (TFLite's average pool) keeps the input's "
                f"quantization: y_scale={self.y_scale!r} and y_zero_point={self.y_zero_point} "
                f"must equal x_scale={self.x_scale!r} and x_zero_point={self.x_zero_point}")
        low, high = self.clamp
        if low > high:
            raise SpecError(f"{owner}: activation={self.activation!r} leaves no output: its "
                            f"range [{low}, {high}] for y_zero_point={self.y_zero_point} and "
                            f"y_scale={self.y_scale!r} is empty")

    @property
    def output_dtype(self) -> str:
        return self.dtype

    @property
    def clamp(self) -> tuple[int, int]:
        """The output's range: the type's, cut by the activation."""
        return q.activation_range(self.activation, self.dtype, self.y_scale, self.y_zero_point)

    def average(self, differences: Sequence[int], count: int) -> int:
        """The output of one window: ``differences`` are its real taps ``x - x_zero_point``
        in scan order, ``count`` the divisor."""
        zero, clamp = self.y_zero_point, self.clamp
        if self.rounding == "integer":
            return q.average_integer(sum(differences), count, zero, clamp)
        if self.onnx_op == "QLinearGlobalAveragePool":
            return q.average_global_float(sum(differences),
                                          q.global_scale(self.x_scale, self.y_scale, count),
                                          zero, clamp)
        return q.average_window_float(differences, count, self.x_scale, self.y_scale, zero,
                                      clamp)

    def average_exact(self, differences: Sequence[int], count: int) -> int:
        """:meth:`average` in exact rationals, as the definitions read (the second oracle)."""
        zero, clamp = self.y_zero_point, self.clamp
        if self.rounding == "integer":
            return q.average_integer_exact(sum(differences), count, zero, clamp)
        if self.onnx_op == "QLinearGlobalAveragePool":
            return q.average_global_float_exact(sum(differences), self.x_scale, self.y_scale,
                                                count, zero, clamp)
        return q.average_window_float_exact(differences, count, self.x_scale, self.y_scale,
                                            zero, clamp)

    def _check_taps(self, taps: int, what: str) -> None:
        if taps > MAX_POOL_TAPS:
            raise SpecError(f"{self._owner}: {what} holds {taps:,} input elements; a quantized "
                            f"average pool adds at most {MAX_POOL_TAPS:,} (2**23: its int32 "
                            "sum and its binary32 count stay exact)")

    def memory(self, input_shape: Sequence, dtype: str | None = None) -> Footprint:
        """Bytes of the 8-bit input and output; ``dtype``, when given, must be the layer's."""
        if dtype is not None and dtype != self.dtype:
            raise SpecError(f"{self._owner}: dtype={quote(dtype)} must be the layer's own "
                            f"dtype {self.dtype!r} (or None)")
        return super().memory(input_shape, self.dtype)


class _QLinearAvgPoolNd(_QuantizedPool, _AvgPoolNd):
    onnx_op = "QLinearAveragePool"
    divisor_override = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self._init_quantization()
        self._check_taps(sym.prod(self.kernel_size), f"kernel_size={self.kernel_size}")


@dataclass(frozen=True)
class _QLinearAvgPoolFields(_QLinearAvgPoolNd):
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    ceil_mode: bool = False
    count_include_pad: bool = False
    dilation: Any = 1
    x_scale: float = 1.0
    x_zero_point: int = 0
    y_scale: float = 1.0
    y_zero_point: int = 0
    dtype: str = "int8"
    rounding: str = "float"
    activation: str = "none"


_QAVG_DOC = """-d quantized average pooling, ONNX Runtime's ``QLinearAveragePool`` (com.microsoft)
    and TFLite's int8 average pool.

    The window and its divisor are :class:`AvgPool{n}d`'s (``count_include_pad``, ceil mode,
    dilation; no ``divisor_override``); a padded tap is the input's zero point.  ``rounding``
    ``'float'`` is ONNX Runtime's binary32 arithmetic, ``'integer'`` TFLite's (which needs
    ``y_scale == x_scale`` and ``y_zero_point == x_zero_point``); see
    :mod:`convgen.spec.qpool`.  ``count_include_pad`` defaults to ``False``, as ONNX's.
    """


class QLinearAvgPool1d(_QLinearAvgPoolFields):
    __doc__ = "1" + _QAVG_DOC.replace("{n}", "1")
    ndim = 1


class QLinearAvgPool2d(_QLinearAvgPoolFields):
    __doc__ = "2" + _QAVG_DOC.replace("{n}", "2")
    ndim = 2


class QLinearAvgPool3d(_QLinearAvgPoolFields):
    __doc__ = "3" + _QAVG_DOC.replace("{n}", "3")
    ndim = 3


@dataclass(frozen=True)
class QLinearGlobalAvgPool(_QuantizedPool, _GlobalNd):
    """Quantized global average pooling, ONNX Runtime's ``QLinearGlobalAveragePool``
    (com.microsoft), over ``ndim`` spatial dims.

    ``rounding='float'``: the exact sum ``acc`` of ``x - x_zero_point`` over the ``n``
    positions, then ``round_half_even(fl(fl(acc) * fl(x_scale / fl(y_scale * n)))) +
    y_zero_point`` (MLAS); ``'integer'``: TFLite's mean, as :class:`QLinearAvgPool2d`'s.
    """

    ndim: int = 2
    x_scale: float = 1.0
    x_zero_point: int = 0
    y_scale: float = 1.0
    y_zero_point: int = 0
    dtype: str = "int8"
    rounding: str = "float"
    activation: str = "none"
    onnx_op = "QLinearGlobalAveragePool"
    _ops_per_tap = 1
    _ops_per_output = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        self._init_quantization()

    def _check_concrete(self, shape: InputShape) -> None:
        if not sym.is_symbolic(*shape.spatial):
            self._check_taps(sym.prod(shape.spatial), f"the input plane {shape.spatial}")
