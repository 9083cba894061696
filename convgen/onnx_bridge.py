"""Layer specs as ONNX nodes, so ONNX Runtime can act as a differential peer.

:func:`onnx_nodes` is pure Python (operator names and attributes); :func:`onnx_model` builds
a one-layer ``onnx.ModelProto`` and needs the ``onnx`` package (the ``test`` extra).

Mapping: ``Conv*d`` -> ``Conv`` (non-zero ``padding_mode`` -> ``Pad`` with mode
``reflect``/``edge``/``wrap`` then an unpadded ``Conv``), ``ConvTranspose*d`` ->
``ConvTranspose``, ``MaxPool*d`` -> ``MaxPool``, ``AvgPool*d`` -> ``AveragePool``,
``LPPool*d`` -> ``LpPool``, global pools -> ``GlobalAveragePool``/``GlobalMaxPool``, the
quantized layers -> ``ConvInteger``, ``QLinearConv`` and (ONNX Runtime's ``com.microsoft``
domain) ``QLinearAveragePool``, ``QLinearGlobalAveragePool``.
``'same'``/``'same_lower'`` become ``auto_pad=SAME_UPPER``/``SAME_LOWER`` so that ONNX Runtime
derives the padding itself.  Adaptive pooling and ``divisor_override`` have no ONNX form.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import symbolic as sym
from .errors import SpecError
from .spec import (
    LAYER_TYPES,
    GlobalAvgPool,
    GlobalMaxPool,
    Layer,
    QLinearGlobalAvgPool,
    family_of,
    padding_from_onnx,
)

__all__ = ["CONFORMANCE_OPS", "ONNX_DTYPES", "OPSET", "QUANTIZED_INPUTS", "OnnxNode",
           "compare_with_onnx", "kernel_arrays", "layer_from_onnx", "onnx_indices",
           "onnx_model", "onnx_nodes"]

#: The ONNX operators whose conformance cases convgen runs, and the element types of their
#: inputs by NumPy dtype.
CONFORMANCE_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool",
                   "GlobalAveragePool", "GlobalMaxPool", "ConvInteger", "QLinearConv")
ONNX_DTYPES = {"float32": "float32", "float64": "float64", "int8": "int8", "uint8": "uint8"}
#: The inputs of the quantized operators, in ONNX's order; the kernel takes those named
#: x, w and B, the others are the spec's constants.
QUANTIZED_INPUTS = {
    "ConvInteger": ("x", "w", "x_zero_point", "w_zero_point"),
    "QLinearConv": ("x", "x_scale", "x_zero_point", "w", "w_scale", "w_zero_point", "y_scale",
                    "y_zero_point", "B"),
    "QLinearAveragePool": ("x", "x_scale", "x_zero_point", "y_scale", "y_zero_point"),
    "QLinearGlobalAveragePool": ("x", "x_scale", "x_zero_point", "y_scale", "y_zero_point"),
}
#: ONNX Runtime's contrib domain, home of the quantized pools.
MS_DOMAIN = "com.microsoft"
_MS_OPS = ("QLinearAveragePool", "QLinearGlobalAveragePool")

OPSET = 21
_PAD_MODES = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}
_AUTO_PAD = {"same": "SAME_UPPER", "same_lower": "SAME_LOWER"}


@dataclass(frozen=True)
class OnnxNode:
    """One ONNX node: operator type, extra inputs (name -> int64 values) and attributes."""

    op_type: str
    attributes: dict
    constant_inputs: tuple = ()
    outputs: int = 1
    domain: str = ""


def _window_attributes(layer: Layer, input_shape) -> dict:
    """Kernel, strides, dilations and padding.

    ONNX Runtime does not honour dilation under ``auto_pad=SAME_*`` (Conv rejects it, the
    pools ignore it) and fails where ONNX's unclamped total padding is negative, so in those
    cases the resolved pads are written explicitly.
    """
    attrs = {"kernel_shape": list(layer.kernel_size), "strides": list(layer.stride),
             "dilations": list(layer.dilation)}
    pads = layer.padding
    if isinstance(pads, str) and not _onnxruntime_same_ok(layer, input_shape):
        if input_shape is None:
            raise SpecError(f"{type(layer).__name__}: padding={pads!r} with dilation needs "
                            "input_shape to write explicit ONNX pads")
        pads = layer.resolved_padding(layer.split_input(input_shape).spatial)
    if isinstance(pads, str):
        attrs["auto_pad"] = _AUTO_PAD[pads]
    else:
        attrs["pads"] = [lo for lo, _ in pads] + [hi for _, hi in pads]
    return attrs


def _onnxruntime_same_ok(layer: Layer, input_shape) -> bool:
    if max(layer.dilation) > 1:
        return False
    if layer.family == "conv_transpose" or input_shape is None:
        return True
    spatial = layer.split_input(input_shape).spatial
    return all(sym.same_total(n, k, s, d) >= 0 for n, k, s, d in
               zip(spatial, layer.kernel_size, layer.stride, layer.dilation))


def onnx_nodes(layer: Layer, input_shape: Sequence[int] | None = None) -> list[OnnxNode]:
    """The ONNX node(s) computing ``layer``.

    ``input_shape`` is needed only to resolve ``'same'`` padding for a non-zero
    ``padding_mode`` or a dilation above 1 (then the pads are written as numbers).
    """
    family, op, name = family_of(layer), layer.onnx_op, type(layer).__name__
    if op is None:
        if family == "adaptive_pool":
            raise SpecError(f"{name} has no ONNX operator (ONNX has no adaptive pooling)")
        raise SpecError(f"{name} has no ONNX mapping")
    if layer.quantized and family != "qconv" and (layer.rounding != "float"
                                                  or layer.activation != "none"):
        raise SpecError(f"{name}: rounding={layer.rounding!r}, activation="
                        f"{layer.activation!r} has no ONNX {op} form (it has "
                        "rounding='float' and activation='none' only)")
    if family == "adaptive_pool":  # a global pool: ONNX's Global*Pool takes no attributes
        return [OnnxNode(op, {}, domain=MS_DOMAIN if layer.quantized else "")]
    attrs = _window_attributes(layer, input_shape)
    if family == "qconv":
        if op == "QLinearConv" and (layer.rounding != "float" or layer.activation != "none"):
            raise SpecError(f"{name}: rounding={layer.rounding!r}, activation="
                            f"{layer.activation!r} has no ONNX QLinearConv form (it has "
                            "rounding='float' and activation='none' only)")
        attrs["group"] = layer.groups
        return [OnnxNode(op, attrs)]
    if family == "conv_transpose":
        attrs.update(group=layer.groups, output_padding=list(layer.output_padding))
        return [OnnxNode(op, attrs)]
    if family == "conv":
        attrs["group"] = layer.groups
        if layer.padding_mode == "zeros":
            return [OnnxNode(op, attrs)]
        return _padded_conv(layer, attrs, input_shape)
    attrs["ceil_mode"] = int(layer.ceil_mode)
    if layer.reduction == "max":
        return [OnnxNode(op, attrs, outputs=2 if layer.return_indices else 1)]
    if layer.quantized:  # QLinearAveragePool: no dilations
        if max(layer.dilation) > 1:
            raise SpecError(f"{name}: dilation={layer.dilation} has no ONNX {op} form (it "
                            "has no dilations)")
        del attrs["dilations"]
        attrs["count_include_pad"] = int(layer.count_include_pad)
        return [OnnxNode(op, attrs, domain=MS_DOMAIN)]
    if layer.reduction == "avg":
        if layer.divisor_override is not None:
            raise SpecError(f"{name}: divisor_override={layer.divisor_override} has no ONNX "
                            "AveragePool equivalent")
        attrs["count_include_pad"] = int(layer.count_include_pad)
        return [OnnxNode(op, attrs)]
    if not isinstance(layer.norm_type, int):  # LP pooling
        raise SpecError(f"{name}: norm_type={layer.norm_type} must be an int for ONNX LpPool")
    attrs["p"] = layer.norm_type
    return [OnnxNode(op, attrs)]


def _padded_conv(layer: Layer, attrs: dict, input_shape) -> list[OnnxNode]:
    if input_shape is None:
        raise SpecError(f"{type(layer).__name__}: padding_mode={layer.padding_mode!r} needs "
                        "input_shape to build the ONNX Pad node")
    shape = layer.split_input(input_shape)
    pads = layer.resolved_padding(shape.spatial)
    ndim = layer.ndim
    full = [0, 0] + [lo for lo, _ in pads] + [0, 0] + [hi for _, hi in pads]
    conv = dict(attrs)
    conv.pop("auto_pad", None)
    conv["pads"] = [0] * (2 * ndim)
    pad = OnnxNode("Pad", {"mode": _PAD_MODES[layer.padding_mode]},
                   constant_inputs=(("pads", full),))
    return [pad, OnnxNode("Conv", conv)]


def onnx_model(layer: Layer, input_shape: Sequence[int], dtype: str = "float32",
               weights: dict | None = None):
    """A one-layer ONNX model with inputs ``X`` (and ``W``, ``B`` for convolutions).

    ``input_shape`` is ``(N, C, *spatial)`` with ints.  Outputs ``Y`` (and ``Indices`` for
    max pooling with ``return_indices``).  ``weights`` (``{"W": array, "B": array}``) makes
    the weights constant initializers, as in a deployed model, instead of inputs.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layer.quantized:
        return _quantized_model(layer, input_shape, weights)
    elem = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[dtype]
    nodes = onnx_nodes(layer, input_shape)
    inputs = [helper.make_tensor_value_info("X", elem, list(input_shape))]
    graph_nodes, initializers, current = [], [], "X"
    for index, node in enumerate(nodes):
        names = [current]
        for name, values in node.constant_inputs:
            initializers.append(helper.make_tensor(name, TensorProto.INT64, [len(values)],
                                                   values))
            names.append(name)
        if node.op_type in ("Conv", "ConvTranspose"):  # the layer's own node, with weights
            for name, shape in [("W", list(layer.weight_shape))] + (
                    [("B", [layer.out_channels])] if layer.bias else []):
                if weights is not None:
                    initializers.append(numpy_helper.from_array(weights[name], name))
                else:
                    inputs.append(helper.make_tensor_value_info(name, elem, shape))
                names.append(name)
        last = index == len(nodes) - 1
        outs = ["Y", "Indices"][:node.outputs] if last else [f"t{index}"]
        graph_nodes.append(helper.make_node(node.op_type, names, outs, **node.attributes))
        current = outs[0]
    # Output shapes are left for ONNX Runtime to infer: it is a peer, not told the answer.
    unknown = [None] * len(input_shape)
    outputs = [helper.make_tensor_value_info("Y", elem, unknown)]
    if nodes[-1].outputs == 2:
        outputs.append(helper.make_tensor_value_info("Indices", TensorProto.INT64, unknown))
    graph = helper.make_graph(graph_nodes, type(layer).__name__, inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def _quantized_model(layer: Layer, input_shape: Sequence[int], weights: dict | None):
    """The one-node model of a quantized layer (``QLinearConv``, ``ConvInteger``, the
    ``com.microsoft`` quantized pools): the scales and zero points as initializers (typed as
    ONNX wants them), ``W`` and ``B`` as inputs or, with ``weights``, initializers."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    (node,) = onnx_nodes(layer, input_shape)
    x_type = np.dtype(layer.dtype)
    constants = {"x_zero_point": np.array(layer.x_zero_point, x_type)}
    if family_of(layer) != "qconv":  # a quantized pool
        constants.update(x_scale=np.array(layer.x_scale, np.float32),
                         y_scale=np.array(layer.y_scale, np.float32),
                         y_zero_point=np.array(layer.y_zero_point, x_type))
    else:
        w_type = np.dtype(layer.weight_dtype)
        constants["w_zero_point"] = np.array(layer.w_zero_point, w_type)
    if family_of(layer) == "qconv" and layer.requantizes:
        per_channel = (layer.out_channels,)
        constants.update(
            x_scale=np.array(layer.x_scale, np.float32),
            w_scale=np.array(layer.w_scale, np.float32).reshape(
                per_channel if isinstance(layer.w_scale, tuple) else ()),
            y_scale=np.array(layer.y_scale, np.float32),
            y_zero_point=np.array(layer.y_zero_point, x_type))
    arrays = {"x": ("X", x_type, [*input_shape])}
    if family_of(layer) == "qconv":
        arrays.update(w=("W", w_type, list(layer.weight_shape)),
                      B=("B", np.dtype(np.int32), [layer.out_channels]))
    inputs, initializers, names = [], [], []
    for name in QUANTIZED_INPUTS[node.op_type]:
        if name in constants:
            initializers.append(numpy_helper.from_array(constants[name], name))
            names.append(name)
            continue
        if name == "B" and not layer.bias:
            continue
        label, dtype, shape = arrays[name]
        elem = helper.np_dtype_to_tensor_dtype(dtype)
        if weights is not None and label in weights:
            initializers.append(numpy_helper.from_array(np.asarray(weights[label], dtype),
                                                        label))
        else:
            inputs.append(helper.make_tensor_value_info(label, elem, shape))
        names.append(label)
    y_elem = helper.np_dtype_to_tensor_dtype(np.dtype(layer.output_dtype))
    outputs = [helper.make_tensor_value_info("Y", y_elem, [None] * len(input_shape))]
    graph = helper.make_graph([helper.make_node(node.op_type, names, ["Y"], domain=node.domain,
                                                **node.attributes)],
                              type(layer).__name__, inputs, outputs, initializers)
    opsets = [helper.make_opsetid("", OPSET)]
    if node.domain:
        opsets.append(helper.make_opsetid(node.domain, 1))
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------- importing


def _attributes(node) -> dict:
    from onnx import helper
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decoded(value):
    return value.decode() if isinstance(value, bytes) else value


def _import_padding(attrs: dict, ndim: int):
    auto_pad = _decoded(attrs.get("auto_pad", "NOTSET"))
    return padding_from_onnx(auto_pad, attrs.get("pads"), ndim)


def _transpose_padding(attrs, ndim, spatial, kernel, stride, dilation):
    """ONNX ConvTranspose pads, including those implied by ``output_shape``."""
    output_padding = list(attrs.get("output_padding", [0] * ndim))
    if "output_shape" not in attrs:
        return _import_padding(attrs, ndim), tuple(output_padding)
    pads = []
    for dim, (n, k, s, d, want) in enumerate(zip(spatial, kernel, stride, dilation,
                                                 attrs["output_shape"][-ndim:])):
        total = sym.conv_transpose_output_size(n, k, s, d, 0, 0, output_padding[dim]) - want
        if total < 0:  # the requested output is longer than the scatter: pad at the end
            output_padding[dim] -= total
            total = 0
        upper = _decoded(attrs.get("auto_pad", "NOTSET")) == "SAME_UPPER"
        pads.append((total // 2, total - total // 2) if upper else
                    (total - total // 2, total // 2))
    return tuple(pads), tuple(output_padding)


def _quantized_layer(node, attrs: dict, input_shapes, constants, dtypes, common: dict):
    """``ConvInteger``, ``QLinearConv`` and the quantized pools: the zero points and
    scales must be constants (``constants``: input name -> array); x's and w's element types
    come from ``dtypes``."""
    import numpy as np

    op, ndim = node.op_type, len(input_shapes[0]) - 2
    roles = dict(zip(QUANTIZED_INPUTS[op], node.input))   # ONNX role -> the node's input name
    shapes = dict(zip(QUANTIZED_INPUTS[op], input_shapes))
    if dtypes is None or len(dtypes) < len(input_shapes):
        raise SpecError(f"{op}: importing it needs the element type of every input "
                        "(dtypes=...), for x's and w's type")
    types = dict(zip(QUANTIZED_INPUTS[op], dtypes))

    def constant(role: str, default):
        name = roles.get(role, "")
        if not name:  # an optional input left out
            return default
        if constants is None or name not in constants:
            raise SpecError(f"{op}: input {role} ({name!r}) must be a constant (an initializer "
                            "or a given value): convgen compiles it into the kernel")
        value = np.asarray(constants[name])
        if value.ndim > 1 or (value.ndim == 1 and value.size != 1 and role not in
                              ("w_scale", "w_zero_point")):
            raise SpecError(f"{op}: input {role} has shape {value.shape}; it must be a scalar"
                            + (" or one value per output channel" if role.startswith("w_")
                               else ""))
        if value.ndim == 1 and value.size == 1:
            value = value.reshape(())
        return value.tolist()

    if op in _MS_OPS:
        fields = dict(x_scale=constant("x_scale", None), y_scale=constant("y_scale", None),
                      x_zero_point=constant("x_zero_point", 0),
                      y_zero_point=constant("y_zero_point", 0),
                      dtype=ONNX_DTYPES.get(str(types["x"]), str(types["x"])))
        if attrs.get("channels_last", 0):
            raise SpecError(f"{op}: channels_last=1 (NHWC) is not supported; convgen's "
                            "layout is NCHW")
        if op == "QLinearGlobalAveragePool":
            return QLinearGlobalAvgPool(ndim=ndim, **fields)
        return LAYER_TYPES[f"QLinearAvgPool{ndim}d"](
            padding=_import_padding(attrs, ndim), ceil_mode=bool(attrs.get("ceil_mode", 0)),
            count_include_pad=bool(attrs.get("count_include_pad", 0)), **fields, **common)
    w_shape = list(shapes["w"])
    fields = dict(groups=attrs.get("group", 1), padding=_import_padding(attrs, ndim),
                  x_zero_point=constant("x_zero_point", 0),
                  w_zero_point=constant("w_zero_point", 0),
                  dtype=ONNX_DTYPES.get(str(types["x"]), str(types["x"])),
                  weight_dtype=ONNX_DTYPES.get(str(types["w"]), str(types["w"])), **common)
    if op == "ConvInteger":
        return LAYER_TYPES[f"ConvInteger{ndim}d"](input_shapes[0][1], w_shape[0], **fields)
    return LAYER_TYPES[f"QLinearConv{ndim}d"](
        input_shapes[0][1], w_shape[0], bias=bool(roles.get("B")),
        x_scale=constant("x_scale", None), w_scale=constant("w_scale", None),
        y_scale=constant("y_scale", None), y_zero_point=constant("y_zero_point", 0), **fields)


def kernel_arrays(node, arrays: Sequence) -> list:
    """Of an ONNX node's input arrays, those a convgen kernel takes, in its order: all of
    them, but only x, w and B of a quantized operator (the others are its constants)."""
    if node.op_type not in QUANTIZED_INPUTS:
        return list(arrays)
    named = dict(zip(QUANTIZED_INPUTS[node.op_type], arrays))
    return [named[role] for role in ("x", "w", "B") if role in named]


def layer_from_onnx(node, input_shapes: Sequence[Sequence[int]], constants=None,
                    dtypes: Sequence | None = None) -> Layer:
    """The layer spec of one ONNX node (Conv, ConvTranspose, MaxPool, AveragePool, LpPool,
    GlobalAveragePool, GlobalMaxPool, ConvInteger, QLinearConv, and ONNX Runtime's
    QLinearAveragePool, QLinearGlobalAveragePool) for concrete input shapes ``[X, W?, B?]``
    (every input's, in the node's order, for the quantized operators).

    The quantized operators also need ``constants`` (input name -> value) holding their
    scales and zero points, which convgen compiles into the kernel, and ``dtypes``, the
    element types of the inputs (NumPy names); the kernel takes x, w and B
    (:func:`kernel_arrays`).  MaxPool's ``storage_order`` only changes how ONNX numbers the
    indices: convert convgen's indices with :func:`onnx_indices`.
    """
    attrs, op = _attributes(node), node.op_type
    x_shape = list(input_shapes[0])
    ndim = len(x_shape) - 2
    if op in ("GlobalAveragePool", "GlobalMaxPool"):
        cls = GlobalAvgPool if op == "GlobalAveragePool" else GlobalMaxPool
        return cls(ndim=ndim)
    if op == "QLinearGlobalAveragePool":
        return _quantized_layer(node, attrs, input_shapes, constants, dtypes, {})
    if ndim not in (1, 2, 3):
        raise SpecError(f"{op}: {ndim} spatial dimensions; convgen layers have 1 to 3")
    w_index = QUANTIZED_INPUTS[op].index("w") if op in QUANTIZED_INPUTS and op not in _MS_OPS \
        else 1
    kernel = list(attrs.get("kernel_shape") or list(input_shapes[w_index])[2:])
    stride = attrs.get("strides", [1] * ndim)
    dilation = attrs.get("dilations", [1] * ndim)
    common = dict(kernel_size=kernel, stride=stride, dilation=dilation)
    if op in QUANTIZED_INPUTS:
        return _quantized_layer(node, attrs, input_shapes, constants, dtypes, common)
    if op == "Conv":
        w = list(input_shapes[1])
        return LAYER_TYPES[f"Conv{ndim}d"](
            x_shape[1], w[0], groups=attrs.get("group", 1), bias=len(input_shapes) > 2,
            padding=_import_padding(attrs, ndim), **common)
    if op == "ConvTranspose":
        w, groups = list(input_shapes[1]), attrs.get("group", 1)
        padding, output_padding = _transpose_padding(attrs, ndim, x_shape[2:], kernel, stride,
                                                     dilation)
        return LAYER_TYPES[f"ConvTranspose{ndim}d"](
            x_shape[1], w[1] * groups, groups=groups, bias=len(input_shapes) > 2,
            padding=padding, output_padding=output_padding, **common)
    pool = dict(padding=_import_padding(attrs, ndim), ceil_mode=bool(attrs.get("ceil_mode", 0)),
                **common)
    if op == "MaxPool":
        return LAYER_TYPES[f"MaxPool{ndim}d"](return_indices=len(node.output) > 1, **pool)
    if op == "AveragePool":
        return LAYER_TYPES[f"AvgPool{ndim}d"](
            count_include_pad=bool(attrs.get("count_include_pad", 0)), **pool)
    if op == "LpPool":
        return LAYER_TYPES[f"LPPool{ndim}d"](attrs.get("p", 2), **pool)
    raise SpecError(f"ONNX operator {op!r} has no convgen layer")


def onnx_indices(indices, input_shape: Sequence[int], storage_order: int = 0):
    """convgen's max-pooling indices (row-major within each ``(n, c)`` plane, as PyTorch's)
    as ONNX numbers them: flat over the whole input, row-major (``storage_order=0``) or
    column-major within the plane (``storage_order=1``)."""
    import numpy as np

    indices = np.asarray(indices)
    spatial = tuple(input_shape[2:])
    if storage_order:
        coords = np.unravel_index(indices, spatial)
        indices = np.ravel_multi_index(coords, spatial, order="F")
    planes = np.arange(int(np.prod(indices.shape[:2]))).reshape(
        *indices.shape[:2], *[1] * (indices.ndim - 2))
    return indices + planes * int(np.prod(spatial))


def compare_with_onnx(got, expected: Sequence, storage_order: int, input_shape) -> str:
    """"" when a kernel's outputs ``got`` (an array, or ``(y, indices)``) match an ONNX test
    case's ``expected`` outputs as ONNX's backend runner compares them (``rtol=1e-3``,
    ``atol=1e-7``: some expected outputs are printed to 4 decimals), else what differs.
    ONNX's indices are flat over the whole tensor, ours per plane: converted first."""
    import numpy as np

    outputs = got if isinstance(got, tuple) else (got,)
    for index, (ours, theirs) in enumerate(zip(outputs, expected)):
        if index == 1:
            ours = onnx_indices(ours, input_shape, storage_order)
        if ours.shape != theirs.shape:
            return f"output {index}: shape {ours.shape} != {theirs.shape}"
        if ours.dtype.kind in "iu":  # integers (quantized outputs) are exact
            if not np.array_equal(ours, theirs):
                return (f"output {index}: {np.count_nonzero(ours != theirs)} of {ours.size} "
                        "values differ")
            continue
        if not np.allclose(ours, theirs, rtol=1e-3, atol=1e-7, equal_nan=True):
            return f"output {index}: values differ by {np.max(np.abs(ours - theirs))}"
    return ""
