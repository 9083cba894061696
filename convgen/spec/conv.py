"""Convolutions and transposed convolutions: ``Conv1d/2d/3d``, ``ConvTranspose1d/2d/3d``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sympy

from .. import symbolic as sym
from ..errors import SpecError
from .base import (
    PADDING_MODES,
    Constraint,
    InputShape,
    _bool,
    _choice,
    _constraint,
    _int,
    _per_dim,
    _Windowed,
)

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
           "ConvTranspose3d"]


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
            f"{self.in_channels} input channels (in_channels)",
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
    family = "conv"
    onnx_op = "Conv"

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


class Conv1d(_ConvFields):
    """1-d convolution, PyTorch's ``torch.nn.Conv1d``.

    ``y[n, o, *p] = bias[o] + sum_{i, j} w[o, i, *j] * x[n, g*C_in/groups + i, *(p*stride - lo
    + j*dilation)]`` over the input channels ``i`` of the group ``g`` of ``o``, with the padding
    filled as ``padding_mode`` says.  Weight layout ``(C_out, C_in/groups, *kernel_size)``.
    """

    ndim = 1


class Conv2d(_ConvFields):
    """2-d convolution, PyTorch's ``torch.nn.Conv2d``.

    ``y[n, o, *p] = bias[o] + sum_{i, j} w[o, i, *j] * x[n, g*C_in/groups + i, *(p*stride - lo
    + j*dilation)]`` over the input channels ``i`` of the group ``g`` of ``o``, with the padding
    filled as ``padding_mode`` says.  Weight layout ``(C_out, C_in/groups, *kernel_size)``.
    """

    ndim = 2


class Conv3d(_ConvFields):
    """3-d convolution, PyTorch's ``torch.nn.Conv3d``.

    ``y[n, o, *p] = bias[o] + sum_{i, j} w[o, i, *j] * x[n, g*C_in/groups + i, *(p*stride - lo
    + j*dilation)]`` over the input channels ``i`` of the group ``g`` of ``o``, with the padding
    filled as ``padding_mode`` says.  Weight layout ``(C_out, C_in/groups, *kernel_size)``.
    """

    ndim = 3


# --------------------------------------------------------------------------- transposed conv


class _ConvTransposeNd(_ConvMixin):
    family = "conv_transpose"
    onnx_op = "ConvTranspose"

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


class ConvTranspose1d(_ConvTransposeFields):
    """1-d transposed convolution, PyTorch's ``torch.nn.ConvTranspose1d``.

    Multiplication by the transpose of the matching convolution's matrix.  Output size
    ``(n - 1)*stride - lo - hi + dilation*(kernel - 1) + 1 + output_padding``.  Weight layout
    ``(C_in, C_out/groups, *kernel_size)``.  ``padding='same'``/``'same_lower'`` follow ONNX
    ``auto_pad=SAME_UPPER``/``SAME_LOWER`` (output ``n*stride``).
    """

    ndim = 1


class ConvTranspose2d(_ConvTransposeFields):
    """2-d transposed convolution, PyTorch's ``torch.nn.ConvTranspose2d``.

    Multiplication by the transpose of the matching convolution's matrix.  Output size
    ``(n - 1)*stride - lo - hi + dilation*(kernel - 1) + 1 + output_padding``.  Weight layout
    ``(C_in, C_out/groups, *kernel_size)``.  ``padding='same'``/``'same_lower'`` follow ONNX
    ``auto_pad=SAME_UPPER``/``SAME_LOWER`` (output ``n*stride``).
    """

    ndim = 2


class ConvTranspose3d(_ConvTransposeFields):
    """3-d transposed convolution, PyTorch's ``torch.nn.ConvTranspose3d``.

    Multiplication by the transpose of the matching convolution's matrix.  Output size
    ``(n - 1)*stride - lo - hi + dilation*(kernel - 1) + 1 + output_padding``.  Weight layout
    ``(C_in, C_out/groups, *kernel_size)``.  ``padding='same'``/``'same_lower'`` follow ONNX
    ``auto_pad=SAME_UPPER``/``SAME_LOWER`` (output ``n*stride``).
    """

    ndim = 3

