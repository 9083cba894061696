"""Adaptive and global pooling: ``AdaptiveAvgPool1d/2d/3d``, ``AdaptiveMaxPool1d/2d/3d``,
``GlobalAvgPool``, ``GlobalMaxPool`` (family ``"adaptive_pool"``).

The adaptive pools have no ONNX operator (``onnx_op`` is ``None``); the global ones are ONNX's
``GlobalAveragePool``/``GlobalMaxPool``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import symbolic as sym
from ..errors import SpecError
from .base import MAX_SIZE, InputShape, Layer, _bool, _int, _is_int, quote

__all__ = ["AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
           "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "GlobalAvgPool", "GlobalMaxPool"]


class _AdaptiveNd(Layer):
    """Adaptive pooling: output ``i`` pools ``[floor(i*n/out), ceil((i+1)*n/out))``."""

    family = "adaptive_pool"

    def __post_init__(self) -> None:
        owner, ndim, value = self._owner, self.ndim, self.output_size
        allowed = (f"a positive int or a sequence of {ndim} positive ints or None, each at "
                   f"most {MAX_SIZE:,}")
        if _is_int(value) and 1 <= value <= MAX_SIZE:
            sizes = (int(value),) * ndim
        elif isinstance(value, Sequence) and not isinstance(value, (str, bytes, bytearray)) \
                and len(value) == ndim \
                and all(v is None or (_is_int(v) and 1 <= v <= MAX_SIZE) for v in value):
            sizes = tuple(None if v is None else int(v) for v in value)
        else:
            raise SpecError(f"{owner}: output_size={quote(value)} must be {allowed} (None keeps "
                            "that input size)")
        self._set("output_size", sizes)
        if hasattr(self, "return_indices"):
            self._set("return_indices", _bool(owner, "return_indices", self.return_indices))

    def _targets(self, shape: InputShape) -> tuple:
        return tuple(n if o is None else o for n, o in zip(shape.spatial, self.output_size))

    def _out_spatial(self, shape: InputShape) -> tuple:
        return self._targets(shape)

    def _extra_flops(self, shape: InputShape) -> sym.Size:
        """Window taps summed over all outputs (closed form); ``output_size=None`` dims use
        1-wide windows."""
        per_dim = [n if o is None else sym.adaptive_total_taps(n, o)
                   for n, o in zip(shape.spatial, self.output_size)]
        total_taps = sym.prod([shape.batch_or_one, shape.channels, *per_dim])
        outputs = sym.prod([shape.batch_or_one, shape.channels, *self._targets(shape)])
        return sym.pool_flops(outputs, total_taps, self._ops_per_tap, self._ops_per_output)

    def _rf_steps(self, shape: InputShape) -> tuple:
        """The widest window, and the largest distance between window starts (upper bound)."""
        return tuple((1, 1) if o is None else (sym.adaptive_max_taps(n, o), sym.cdiv(n, o))
                     for n, o in zip(shape.spatial, self.output_size))


@dataclass(frozen=True)
class _AdaptiveAvgFields(_AdaptiveNd):
    output_size: Any
    reduction = "avg"
    _ops_per_tap = 1
    _ops_per_output = 1


@dataclass(frozen=True)
class _AdaptiveMaxFields(_AdaptiveNd):
    output_size: Any
    return_indices: bool = False
    reduction = "max"
    _ops_per_tap = 1
    _ops_per_output = 0


class AdaptiveAvgPool1d(_AdaptiveAvgFields):
    """1-d adaptive average pooling, PyTorch's ``torch.nn.AdaptiveAvgPool1d``."""

    ndim = 1


class AdaptiveAvgPool2d(_AdaptiveAvgFields):
    """2-d adaptive average pooling, PyTorch's ``torch.nn.AdaptiveAvgPool2d``."""

    ndim = 2


class AdaptiveAvgPool3d(_AdaptiveAvgFields):
    """3-d adaptive average pooling, PyTorch's ``torch.nn.AdaptiveAvgPool3d``."""

    ndim = 3


class AdaptiveMaxPool1d(_AdaptiveMaxFields):
    """1-d adaptive max pooling, PyTorch's ``torch.nn.AdaptiveMaxPool1d``."""

    ndim = 1


class AdaptiveMaxPool2d(_AdaptiveMaxFields):
    """2-d adaptive max pooling, PyTorch's ``torch.nn.AdaptiveMaxPool2d``."""

    ndim = 2


class AdaptiveMaxPool3d(_AdaptiveMaxFields):
    """3-d adaptive max pooling, PyTorch's ``torch.nn.AdaptiveMaxPool3d``."""

    ndim = 3


# --------------------------------------------------------------------------- global pooling


class _GlobalNd(Layer):
    """Global pooling over all spatial positions; ONNX keeps the dims as size 1.

    The family is the adaptive pools' (a global pool is the adaptive pool to size 1); its
    ``onnx_op`` (``GlobalAveragePool``/``GlobalMaxPool``) tells it from them.
    """

    family = "adaptive_pool"

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
    reduction = "avg"
    onnx_op = "GlobalAveragePool"
    _ops_per_tap = 1
    _ops_per_output = 1


@dataclass(frozen=True)
class GlobalMaxPool(_GlobalNd):
    """Global max pooling (ONNX ``GlobalMaxPool``) over ``ndim`` spatial dims."""

    ndim: int = 2
    reduction = "max"
    onnx_op = "GlobalMaxPool"
    _ops_per_tap = 1
    _ops_per_output = 0
