"""Window pooling: ``MaxPool1d/2d/3d``, ``AvgPool1d/2d/3d``, ``LPPool1d/2d/3d``."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import sympy

from .. import symbolic as sym
from ..errors import SpecError
from .base import Constraint, InputShape, _bool, _constraint, _int, _Windowed, quote

__all__ = ["AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d", "LPPool2d", "LPPool3d",
           "MaxPool1d", "MaxPool2d", "MaxPool3d"]


class _PoolNd(_Windowed):
    """Max, average and LP pooling: a window sweep with floor or ceil mode."""

    family = "pool"

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
    reduction = "max"
    onnx_op = "MaxPool"
    _ops_per_tap = 1  # a comparison
    _ops_per_output = 0

    def __post_init__(self) -> None:
        self._init_pool()
        self._set("return_indices", _bool(self._owner, "return_indices", self.return_indices))


#: The largest LP pooling power.
MAX_NORM = 1024


@dataclass(frozen=True)
class _MaxPoolFields(_MaxPoolNd):
    kernel_size: Any
    stride: Any = None
    padding: Any = 0
    dilation: Any = 1
    return_indices: bool = False
    ceil_mode: bool = False


class MaxPool1d(_MaxPoolFields):
    """1-d max pooling, PyTorch's ``torch.nn.MaxPool1d``.

    Padding positions act as ``-inf``; a NaN in a window propagates.  Each pad must be smaller
    than the dilated kernel extent.
    """

    ndim = 1


class MaxPool2d(_MaxPoolFields):
    """2-d max pooling, PyTorch's ``torch.nn.MaxPool2d``.

    Padding positions act as ``-inf``; a NaN in a window propagates.  Each pad must be smaller
    than the dilated kernel extent.
    """

    ndim = 2


class MaxPool3d(_MaxPoolFields):
    """3-d max pooling, PyTorch's ``torch.nn.MaxPool3d``.

    Padding positions act as ``-inf``; a NaN in a window propagates.  Each pad must be smaller
    than the dilated kernel extent.
    """

    ndim = 3


class _AvgPoolNd(_PoolNd):
    reduction = "avg"
    onnx_op = "AveragePool"
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


class AvgPool1d(_AvgPoolFields):
    """1-d average pooling, PyTorch's ``torch.nn.AvgPool1d`` plus ONNX's dilation.

    The divisor is ``divisor_override`` when given, else the number of taps in the window
    (counting padding taps when ``count_include_pad``; taps past the padded input in ceil mode
    never count).
    """

    ndim = 1


class AvgPool2d(_AvgPoolFields):
    """2-d average pooling, PyTorch's ``torch.nn.AvgPool2d`` plus ONNX's dilation.

    The divisor is ``divisor_override`` when given, else the number of taps in the window
    (counting padding taps when ``count_include_pad``; taps past the padded input in ceil mode
    never count).
    """

    ndim = 2


class AvgPool3d(_AvgPoolFields):
    """3-d average pooling, PyTorch's ``torch.nn.AvgPool3d`` plus ONNX's dilation.

    The divisor is ``divisor_override`` when given, else the number of taps in the window
    (counting padding taps when ``count_include_pad``; taps past the padded input in ceil mode
    never count).
    """

    ndim = 3


class _LPPoolNd(_PoolNd):
    reduction = "lp"
    onnx_op = "LpPool"
    _ops_per_tap = 2  # a power and an add
    _ops_per_output = 1  # a root

    def __post_init__(self) -> None:
        p = self.norm_type
        try:
            valid = isinstance(p, numbers.Real) and not isinstance(p, bool) \
                and math.isfinite(p) and 0 < p <= MAX_NORM
        except OverflowError:  # an int too large for a float
            valid = False
        if not valid:
            raise SpecError(f"{self._owner}: norm_type={quote(p)} must be a finite number > 0 and "
                            f"at most {MAX_NORM} (|x|^p overflows float64 beyond, for |x| >= 2)")
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


class LPPool1d(_LPPoolFields):
    """1-d power-average pooling: the Lp norm ``(sum |x|^p)^(1/p)`` of each window.

    ONNX ``LpPool`` semantics (with padding and dilation).  PyTorch's ``LPPool1d`` omits the
    absolute value and so differs for odd ``p`` on negative inputs.
    """

    ndim = 1


class LPPool2d(_LPPoolFields):
    """2-d power-average pooling: the Lp norm ``(sum |x|^p)^(1/p)`` of each window.

    ONNX ``LpPool`` semantics (with padding and dilation).  PyTorch's ``LPPool2d`` omits the
    absolute value and so differs for odd ``p`` on negative inputs.
    """

    ndim = 2


class LPPool3d(_LPPoolFields):
    """3-d power-average pooling: the Lp norm ``(sum |x|^p)^(1/p)`` of each window.

    ONNX ``LpPool`` semantics (with padding and dilation).  PyTorch's ``LPPool3d`` omits the
    absolute value and so differs for odd ``p`` on negative inputs.
    """

    ndim = 3

