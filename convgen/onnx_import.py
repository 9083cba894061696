"""ONNX models in: :func:`load_onnx` turns a float32 ONNX model into a :class:`Network`.

Each convolution or pool node becomes its layer spec (:func:`convgen.onnx_bridge.
layer_from_onnx`, the same import as single operators), with its weights from the
initializers; the operators between them become the network's elementwise nodes:

- ``Relu``, ``Clip``, ``LeakyRelu``, ``Sigmoid``, ``HardSigmoid``, ``HardSwish``;
- ``Add`` and ``Mul`` with NumPy broadcasting (residuals, squeeze-excitation, per-channel
  constants);
- ``Concat`` on channels; ``Flatten``, ``Reshape`` keeping the batch, ``Identity`` and
  ``Dropout`` (inference) as views of the same memory;
- ``Gemm`` and ``MatMul`` with a constant matrix: a fully connected layer is a 1x1
  convolution on a 1x1 input (the seed lecture's point);
- ``BatchNormalization``: folded into the convolution before it when that convolution feeds
  only it; elsewhere a per-channel affine node;
- ``Constant`` nodes are parameters.

BatchNorm's per-channel ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean*scale``
are computed in float64 and kept so; the C multiplies the weights by them once, in float64,
and rounds each folded weight and bias to float32 once (:mod:`convgen.netgen`).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import SpecError
from .onnx_bridge import _attributes, layer_from_onnx
from .spec import Conv2d
from .spec.network import Network, Node

__all__ = ["SUPPORTED_OPS", "c_identifier", "from_torch", "load_onnx"]

_LAYER_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool",
              "GlobalAveragePool", "GlobalMaxPool")
_ACTIVATION_OPS = {"Relu": "relu", "Clip": "clip", "LeakyRelu": "leaky_relu",
                   "Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid",
                   "HardSwish": "hard_swish"}
_VIEW_OPS = ("Flatten", "Reshape", "Identity", "Dropout")
#: The ONNX operators a model may use (default domain, float32).
SUPPORTED_OPS = (*_LAYER_OPS, *_ACTIVATION_OPS, "Add", "Mul", "Concat", *_VIEW_OPS, "Gemm",
                 "MatMul", "BatchNormalization", "Constant")


def c_identifier(text: str, fallback: str) -> str:
    """A lower-case C identifier from an ONNX name."""
    word = re.sub(r"[^0-9A-Za-z]+", "_", text).strip("_").lower()
    if not word or word[0].isdigit():
        word = f"{fallback}_{word}" if word else fallback
    return word


class _Importer:
    def __init__(self, model, name: str, input_shapes: Mapping | None):
        import onnx
        from onnx import numpy_helper

        self.onnx, self.numpy_helper = onnx, numpy_helper
        self.graph = model.graph
        self.name = name
        self.constants: dict = {}
        for tensor in self.graph.initializer:
            self.constants[tensor.name] = numpy_helper.to_array(tensor)
        self.nodes: list[Node] = []
        self.shapes: dict = {}
        self.producer: dict = {}          # tensor -> index in self.nodes
        self.names: set = set()
        self.inputs = []
        given = dict(input_shapes or {})
        for value in self.graph.input:
            if value.name in self.constants:
                continue
            self.inputs.append((value.name, self._input_shape(value, given.pop(value.name,
                                                                               None))))
        if given:
            raise SpecError(f"input_shapes={sorted(given)} name no graph input "
                            f"(inputs: {[n for n, _ in self.inputs]})")
        self.shapes.update(self.inputs)

    def _input_shape(self, value, given) -> tuple[int, ...]:
        kind = value.type.tensor_type
        if kind.elem_type != self.onnx.TensorProto.FLOAT:
            raise SpecError(f"graph input {value.name!r}: element type "
                            f"{self.onnx.TensorProto.DataType.Name(kind.elem_type)}; "
                            "networks are float32 (int8 models follow)")
        if given is not None:
            return tuple(int(d) for d in given)
        dims = [d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim]
        if len(dims) < 2 or any(d is None for d in dims[1:]):
            raise SpecError(f"graph input {value.name!r} has shape {dims}: every size but the "
                            "batch must be a number (give input_shapes={name: (C, ...)})")
        return tuple(dims[1:])

    # ------------------------------------------------------------------ helpers

    def node_name(self, node, index: int) -> str:
        base = c_identifier(node.name or node.op_type, f"{node.op_type.lower()}_{index}")
        name, suffix = base, 1
        while name in self.names:
            suffix += 1
            name = f"{base}_{suffix}"
        self.names.add(name)
        return name

    def constant(self, tensor: str, node, role: str) -> np.ndarray:
        if tensor not in self.constants:
            raise SpecError(f"node {node.name!r} ({node.op_type}): {role} {tensor!r} must be "
                            "a constant (an initializer or a Constant node)")
        return self.constants[tensor]

    def add(self, node: Node) -> None:
        if node.output in self.producer or node.output in self.shapes:
            raise SpecError(f"node {node.name!r}: tensor {node.output!r} is written twice")
        probe = Network("probe", tuple((t, self.shapes[t]) for t in node.inputs
                                       if t in self.shapes),
                        (), (node,), {t: self.constants[t] for t in
                                      {*node.inputs, *(n for _, n in node.params)}
                                      if t in self.constants})
        self.shapes[node.output] = probe.shapes[node.output]
        self.producer[node.output] = len(self.nodes)
        self.nodes.append(node)

    def activation_shape(self, tensor: str, node) -> tuple[int, ...]:
        if tensor not in self.shapes:
            raise SpecError(f"node {node.name!r} ({node.op_type}): input {tensor!r} must be "
                            "an activation computed by the graph")
        return self.shapes[tensor]

    # ------------------------------------------------------------------ operators

    def run(self) -> Network:
        for index, node in enumerate(self.graph.node):
            if node.domain not in ("", "ai.onnx"):
                raise SpecError(f"node {node.name!r}: operator {node.domain}.{node.op_type} "
                                f"is not supported (supported: {', '.join(SUPPORTED_OPS)})")
            op, attrs = node.op_type, _attributes(node)
            inputs = [t for t in node.input]
            if op == "Constant":
                self.constants[node.output[0]] = self._constant_value(node, attrs)
                continue
            if op not in SUPPORTED_OPS:
                raise SpecError(f"node {node.name!r}: operator {op!r} is not supported "
                                f"(supported: {', '.join(SUPPORTED_OPS)})")
            name = self.node_name(node, index)
            out = node.output[0]
            if op in _LAYER_OPS:
                self._layer(node, name, op, attrs, inputs, out)
            elif op in _ACTIVATION_OPS:
                self._activation(node, name, op, attrs, inputs, out)
            elif op in ("Add", "Mul"):
                if len(inputs) != 2:
                    raise SpecError(f"node {node.name!r} ({op}): two inputs, got {len(inputs)}")
                self.add(Node(name, op.lower(), tuple(inputs), out, source=op))
            elif op == "Concat":
                rank = len(self.activation_shape(inputs[0], node)) + 1
                if attrs.get("axis") not in (1, 1 - rank):
                    raise SpecError(f"node {node.name!r} (Concat): axis={attrs.get('axis')} "
                                    "must be 1 (channels)")
                self.add(Node(name, "concat", tuple(inputs), out, source=op))
            elif op in _VIEW_OPS:
                self._view(node, name, op, attrs, inputs, out)
            elif op in ("Gemm", "MatMul"):
                self._dense(node, name, op, attrs, inputs, out)
            else:
                self._batch_norm(node, name, attrs, inputs, out)
        outputs = tuple(value.name for value in self.graph.output)
        used = {t for node in self.nodes for t in node.inputs} | \
            {n for node in self.nodes for _, n in node.params}
        constants = {k: v for k, v in self.constants.items() if k in used}
        return Network(self.name, tuple(self.inputs), outputs, tuple(self.nodes), constants)

    def _constant_value(self, node, attrs) -> np.ndarray:
        for key in ("value",):
            if key in attrs:
                return self.numpy_helper.to_array(attrs[key])
        for key, cast in (("value_float", float), ("value_floats", list),
                          ("value_int", int), ("value_ints", list)):
            if key in attrs:
                return np.asarray(cast(attrs[key]))
        raise SpecError(f"node {node.name!r} (Constant): only value, value_float(s) and "
                        f"value_int(s) are supported; got {sorted(attrs)}")

    def _layer(self, node, name, op, attrs, inputs, out):
        if len(node.output) > 1 and any(node.output[1:]):
            raise SpecError(f"node {node.name!r} ({op}): only the first output (no indices)")
        x = self.activation_shape(inputs[0], node)
        arrays = [self.constant(t, node, role) for t, role in zip(inputs[1:], ("W", "B")) if t]
        shapes = [(1, *x), *(a.shape for a in arrays)]
        layer = layer_from_onnx(node, shapes)
        params = tuple(zip(("w", "b"), (t for t in inputs[1:] if t)))
        self.add(Node(name, "layer", (inputs[0],), out, layer, params, source=op))

    def _activation(self, node, name, op, attrs, inputs, out):
        kind, found = _ACTIVATION_OPS[op], {}
        if op == "Clip":
            for key, tensor in zip(("min", "max"), inputs[1:]):
                if tensor:
                    found[key] = float(self.constant(tensor, node, key).reshape(()))
            for key in ("min", "max"):
                if key in attrs:
                    found[key] = float(attrs[key])
        elif op == "LeakyRelu":
            found["alpha"] = float(attrs.get("alpha", 0.01))
        elif op == "HardSigmoid":
            found = {"alpha": float(attrs.get("alpha", 0.2)), "beta": float(attrs.get("beta",
                                                                                      0.5))}
        self.add(Node(name, kind, (inputs[0],), out, attrs=tuple(sorted(found.items())),
                      source=op))

    def _view(self, node, name, op, attrs, inputs, out):
        if inputs[0] in self.constants and op in ("Identity", "Dropout"):
            # a constant under another name (PyTorch's export shares weights this way)
            self.constants[out] = self.constants[inputs[0]]
            return
        x = self.activation_shape(inputs[0], node)
        if op == "Dropout" and len(node.output) > 1 and node.output[1]:
            raise SpecError(f"node {node.name!r} (Dropout): the mask output is not supported "
                            "(inference only)")
        view = x
        if op == "Flatten":
            axis = attrs.get("axis", 1)
            if axis not in (1, -len(x)):
                raise SpecError(f"node {node.name!r} (Flatten): axis={axis} must be 1 (keep "
                                "the batch)")
            view = (math.prod(x),)
        elif op == "Reshape":
            target = [int(d) for d in self.constant(inputs[1], node, "shape")]
            rest = target[1:]
            if target[0] not in (0, -1, 1) or (target[0] == -1 and -1 in rest):
                raise SpecError(f"node {node.name!r} (Reshape): shape={target} must keep the "
                                "batch first (0, or -1 with the other sizes given)")
            if rest.count(-1) > 1 or any(d < -1 for d in rest):
                raise SpecError(f"node {node.name!r} (Reshape): shape={target} is not valid")
            if attrs.get("allowzero", 0) and 0 in rest:
                raise SpecError(f"node {node.name!r} (Reshape): allowzero=1 with a 0 in "
                                f"shape={target} is not supported")
            # a 0 copies the input's size at its position (the batch is position 0)
            rest = [x[i - 1] if d == 0 and i <= len(x) else d for i, d in enumerate(rest, 1)]
            known = math.prod(d for d in rest if d != -1)
            view = tuple(math.prod(x) // known if d == -1 else d for d in rest)
        self.add(Node(name, "alias", (inputs[0],), out, view=tuple(view), source=op))

    def _dense(self, node, name, op, attrs, inputs, out):
        x = self.activation_shape(inputs[0], node)
        if len(x) != 1:
            raise SpecError(f"node {node.name!r} ({op}): the input must be (N, K); got "
                            f"(N, {', '.join(map(str, x))}) (Flatten first)")
        if attrs.get("transA", 0):
            raise SpecError(f"node {node.name!r} (Gemm): transA=1 is not supported")
        matrix = np.asarray(self.constant(inputs[1], node, "B"), dtype=np.float32)
        if matrix.ndim != 2:
            raise SpecError(f"node {node.name!r} ({op}): B must be a matrix; shape "
                            f"{matrix.shape}")
        weight = matrix if attrs.get("transB", 0) else matrix.T
        m, k = weight.shape
        if k != x[0]:
            raise SpecError(f"node {node.name!r} ({op}): B holds {k} inputs, x has {x[0]}")
        alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
        bias = None
        if len(inputs) > 2 and inputs[2]:
            given = np.asarray(self.constant(inputs[2], node, "C"), dtype=np.float32)
            try:
                bias = np.broadcast_to(given, (1, m)).reshape(m)
            except ValueError:
                raise SpecError(f"node {node.name!r} ({op}): C of shape {given.shape} must "
                                f"broadcast to (1, {m}): one bias per output") from None
        self.constants[f"{name}.w"] = np.ascontiguousarray(weight.reshape(m, k, 1, 1))
        params = [("w", f"{name}.w")]
        if bias is not None and alpha == 1.0 and beta == 1.0:
            self.constants[f"{name}.b"] = np.ascontiguousarray(bias)
            params.append(("b", f"{name}.b"))
        elif alpha != 1.0 or bias is not None:
            self.constants[f"{name}.b"] = np.zeros(m, np.float32)
            self.constants[f"{name}.scale"] = np.full(m, alpha, np.float64)
            self.constants[f"{name}.shift"] = (beta * bias.astype(np.float64)
                                               if bias is not None else np.zeros(m))
            params += [("b", f"{name}.b"), ("scale", f"{name}.scale"),
                       ("shift", f"{name}.shift")]
        layer = Conv2d(k, m, 1, bias=any(role == "b" for role, _ in params))
        self.add(Node(f"{name}_fc", "layer", (inputs[0],), f"{out}#fc", layer,
                      tuple(params), view=(k, 1, 1), source=op))
        self.add(Node(name, "alias", (f"{out}#fc",), out, view=(m,), source=op))

    def _batch_norm(self, node, name, attrs, inputs, out):
        if len(node.output) > 1 and any(node.output[1:]):
            raise SpecError(f"node {node.name!r} (BatchNormalization): training mode outputs "
                            "are not supported")
        gamma, beta, mean, var = (np.asarray(self.constant(t, node, role), np.float64)
                                  for t, role in zip(inputs[1:],
                                                     ("scale", "B", "input_mean", "input_var")))
        epsilon = float(attrs.get("epsilon", 1e-5))
        scale = gamma / np.sqrt(var + epsilon)
        shift = beta - mean * scale
        source = inputs[0]
        index = self.producer.get(source)
        producer = self.nodes[index] if index is not None else None
        graph_outputs = {value.name for value in self.graph.output}
        others = [n for n in self.graph.node if source in n.input and n is not node]
        if producer is not None and producer.op == "layer" and \
                producer.layer.family == "conv" and \
                producer.param("scale") is None and not others and \
                source not in graph_outputs:
            params = dict(producer.params)
            if "b" not in params:
                params["b"] = f"{producer.name}.b"
                self.constants[params["b"]] = np.zeros(producer.layer.out_channels, np.float32)
            self.constants[f"{producer.name}.scale"] = scale
            self.constants[f"{producer.name}.shift"] = shift
            params["scale"], params["shift"] = f"{producer.name}.scale", \
                f"{producer.name}.shift"
            layer = dataclasses.replace(producer.layer, bias=True)
            folded = dataclasses.replace(producer, layer=layer, params=tuple(params.items()),
                                         output=out, source=f"{producer.source}+"
                                                            "BatchNormalization")
            del self.producer[source], self.shapes[source]
            self.nodes[index] = folded
            self.producer[out] = index
            self.shapes[out] = self.shapes.get(out) or self._shape_after(folded)
            return
        self.constants[f"{name}.scale"], self.constants[f"{name}.shift"] = scale, shift
        self.add(Node(name, "affine", (source,), out,
                      params=(("scale", f"{name}.scale"), ("shift", f"{name}.shift")),
                      source="BatchNormalization"))

    def _shape_after(self, node: Node) -> tuple[int, ...]:
        x = node.view or self.shapes[node.inputs[0]]
        return tuple(int(d) for d in node.layer.output_shape(x))


def load_onnx(model, name: str | None = None,
              input_shapes: Mapping[str, Sequence[int]] | None = None) -> Network:
    """The :class:`~convgen.spec.network.Network` of an ONNX model: a path or a
    ``ModelProto``.

    ``name`` is the C name of the network (default: the file's stem, or the graph's name);
    ``input_shapes`` gives per-sample shapes ``(C, *spatial)`` for inputs whose sizes the
    model leaves symbolic (the batch always stays a run-time argument).  An operator outside
    :data:`SUPPORTED_OPS` is a :class:`~convgen.errors.SpecError` naming the node and op.
    """
    import onnx

    stem = None
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise SpecError(f"model={str(model)!r}: no such file")
        stem = path.stem
        try:
            model = onnx.load(str(path))
        except Exception as error:  # noqa: BLE001 - onnx raises several kinds
            raise SpecError(f"model={str(path)!r} is not a readable ONNX file: {error}") \
                from None
    elif not isinstance(model, onnx.ModelProto):
        raise SpecError(f"model={type(model).__name__} must be a path or an onnx.ModelProto")
    if name is None:
        name = c_identifier(stem or model.graph.name or "network", "net")
    return _Importer(model, name, input_shapes).run()


def from_torch(module, input_shape: Sequence[int], name: str = "net", opset: int = 17):
    """The :class:`~convgen.spec.network.Network` of a PyTorch module, through ONNX:
    ``torch.onnx.export(module.eval(), x, f, dynamo=False)`` with ``x`` of per-sample
    ``input_shape`` ``(C, *spatial)`` and a symbolic batch, then :func:`load_onnx`.  Needs
    torch (and the ``onnx`` package); torch is never a dependency of convgen itself.
    Returns ``(network, model)``: the ONNX ``ModelProto`` too, for ONNX Runtime."""
    import io

    try:
        import torch
    except ImportError:
        raise SpecError("from_torch needs PyTorch: pip install torch") from None
    import onnx

    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d < 1 for d in shape):
        raise SpecError(f"input_shape={tuple(input_shape)} must be (C, *spatial), positive")
    buffer = io.BytesIO()
    module = module.eval()
    with torch.no_grad():
        torch.onnx.export(module, (torch.zeros((1, *shape)),), buffer, dynamo=False,
                          input_names=["x"], output_names=["y"], opset_version=opset,
                          dynamic_axes={"x": {0: "N"}, "y": {0: "N"}})
    model = onnx.load_from_string(buffer.getvalue())
    return load_onnx(model, name=name), model
