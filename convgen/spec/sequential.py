"""Chains of layers (:class:`Sequential`) and the table of concrete layer specs by name."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from .. import symbolic as sym
from ..errors import SpecError
from ..summary import Summary, summarize
from .adaptive import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
    GlobalAvgPool,
    GlobalMaxPool,
)
from .base import Constraints, Layer
from .conv import Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d
from .pool import (
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    LPPool1d,
    LPPool2d,
    LPPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
)
from .qpool import QLinearAvgPool1d, QLinearAvgPool2d, QLinearAvgPool3d, QLinearGlobalAvgPool
from .quantized import (
    ConvInteger1d,
    ConvInteger2d,
    ConvInteger3d,
    QLinearConv1d,
    QLinearConv2d,
    QLinearConv3d,
)

__all__ = ["LAYER_TYPES", "Sequential"]

#: The concrete layer specs by class name: TOML ``type = "Conv2d"``, layer strings, ONNX
#: import.  Construction by name only; behaviour is chosen by ``family`` (see
#: :func:`convgen.spec.family_of`).
LAYER_TYPES = {cls.__name__: cls for cls in (
    Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d,
    MaxPool1d, MaxPool2d, MaxPool3d, AvgPool1d, AvgPool2d, AvgPool3d,
    LPPool1d, LPPool2d, LPPool3d, AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d,
    AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d, GlobalAvgPool, GlobalMaxPool,
    QLinearConv1d, QLinearConv2d, QLinearConv3d, ConvInteger1d, ConvInteger2d, ConvInteger3d,
    QLinearAvgPool1d, QLinearAvgPool2d, QLinearAvgPool3d, QLinearGlobalAvgPool)}


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

    def constraints(self, input_shape: Sequence) -> Constraints:
        """The constraints of every layer, on the shape that reaches it."""
        return Constraints(c for group in self._each("constraints", input_shape) for c in group)

    @property
    def num_params(self) -> int:
        return sum(layer.num_params for layer in self.layers)

    def macs(self, input_shape: Sequence) -> sym.Size:
        return sym._plain(sympy.Add(*self._each("macs", input_shape)))

    def flops(self, input_shape: Sequence) -> sym.Size:
        return sym._plain(sympy.Add(*self._each("flops", input_shape)))

    def summary(self, input_shape: Sequence, title: str | None = None) -> Summary:
        """A per-layer table of shapes, params, MACs and receptive field (see
        :class:`convgen.summary.Summary`)."""
        return summarize(self, input_shape, title)
