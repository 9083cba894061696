"""convgen: convolution and pooling layers from one symbolic spec.

The pipeline is ``spec -> symbolic -> codegen -> runtime -> verify``.  This package exposes
the layer specs (PyTorch's names and meanings), their symbolic shapes, parameter counts and
MACs, and :func:`compile` (:mod:`convgen.runtime`).
"""

# the public modules, as attributes (convgen.reference.forward, convgen.symbolic....);
# toeplitz also provides Layer.toeplitz (spec cannot import it)
from . import (
    bounds,
    codegen,
    config,
    cudagen,
    documents,
    lower,
    netcheck,
    netgen,
    onnx_bridge,
    onnx_import,
    printing,
    proofs,
    quantization,
    reference,
    runtime,
    schedules,
    summary,
    symbolic,
    toeplitz,
    verify,
)
from ._version import __version__
from .errors import BuildError, ConvgenError, SpecError, VerificationError
from .onnx_import import from_torch, load_onnx
from .runtime import compile
from .spec import (
    AdaptiveAvgPool1d,
    AdaptiveAvgPool2d,
    AdaptiveAvgPool3d,
    AdaptiveMaxPool1d,
    AdaptiveMaxPool2d,
    AdaptiveMaxPool3d,
    AvgPool1d,
    AvgPool2d,
    AvgPool3d,
    Constraint,
    Constraints,
    Conv1d,
    Conv2d,
    Conv3d,
    ConvInteger1d,
    ConvInteger2d,
    ConvInteger3d,
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    GlobalAvgPool,
    GlobalMaxPool,
    Layer,
    LPPool1d,
    LPPool2d,
    LPPool3d,
    MaxPool1d,
    MaxPool2d,
    MaxPool3d,
    QLinearAvgPool1d,
    QLinearAvgPool2d,
    QLinearAvgPool3d,
    QLinearConv1d,
    QLinearConv2d,
    QLinearConv3d,
    QLinearGlobalAvgPool,
    Sequential,
    padding_from_onnx,
)
from .spec.network import Network
from .symbolic import size_symbols

__all__ = [
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d", "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d", "AdaptiveMaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "BuildError", "Constraint", "Constraints", "Conv1d", "Conv2d", "Conv3d", "ConvInteger1d",
    "ConvInteger2d", "ConvInteger3d", "ConvTranspose1d",
    "ConvTranspose2d", "ConvTranspose3d", "ConvgenError", "GlobalAvgPool", "GlobalMaxPool",
    "LPPool1d", "LPPool2d", "LPPool3d", "Layer", "Network", "MaxPool1d", "MaxPool2d", "MaxPool3d",
    "QLinearAvgPool1d", "QLinearAvgPool2d", "QLinearAvgPool3d", "QLinearConv1d",
    "QLinearConv2d", "QLinearConv3d", "QLinearGlobalAvgPool", "Sequential", "SpecError",
    "VerificationError", "__version__", "padding_from_onnx", "compile", "size_symbols",
    "from_torch", "load_onnx",
    # modules
    "bounds", "codegen", "config", "cudagen", "documents", "lower", "netcheck", "netgen",
    "onnx_bridge", "onnx_import", "printing",
    "proofs", "quantization", "reference", "runtime", "schedules", "summary", "symbolic",
    "toeplitz", "verify",
]
