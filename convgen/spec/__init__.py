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

Every spec class carries a ``family`` (one of :data:`FAMILIES`), a ``reduction`` (pools) and
an ``onnx_op``; see :class:`Layer` and :func:`family_of`.

The package: :mod:`.base` (validation, shapes, :class:`Layer`), :mod:`.conv`, :mod:`.pool`
(window pools), :mod:`.adaptive` (adaptive and global pools), :mod:`.quantized`
(``QLinearConv``, ``ConvInteger``), :mod:`.qpool`
(``QLinearAveragePool``, ``QLinearGlobalAveragePool``) and :mod:`.sequential`; every
public name is importable from ``convgen.spec``.
"""

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
from .base import (
    DTYPE_SIZES,
    FAMILIES,
    PADDING_MODES,
    REDUCTIONS,
    Constraint,
    Constraints,
    Footprint,
    InputShape,
    Layer,
    family_of,
    padding_from_onnx,
)
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
from .sequential import LAYER_TYPES, Sequential

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "Constraint", "Constraints", "Conv1d", "Conv2d", "Conv3d",
    "ConvInteger1d", "ConvInteger2d", "ConvInteger3d",
    "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d",
    "DTYPE_SIZES", "FAMILIES", "Footprint", "GlobalAvgPool", "GlobalMaxPool", "InputShape",
    "LAYER_TYPES", "LPPool1d", "LPPool2d", "LPPool3d", "Layer",
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "PADDING_MODES",
    "QLinearAvgPool1d", "QLinearAvgPool2d", "QLinearAvgPool3d", "QLinearConv1d",
    "QLinearConv2d", "QLinearConv3d", "QLinearGlobalAvgPool", "REDUCTIONS", "Sequential",
    "family_of", "padding_from_onnx",
]

# The concrete specs keep the names they had when this package was one module: their module
# is ``convgen.spec`` (pickles, documentation), their qualified name the class name (the
# dataclass repr, used in cache keys and generated banners, prints only that).
for _cls in (*LAYER_TYPES.values(), Sequential):
    _cls.__module__ = __name__
del _cls
