"""Whole networks: a graph of layer specs and the elementwise operators between them.

A :class:`Network` is what an imported ONNX model (:func:`convgen.onnx_import.load_onnx`)
or a :class:`~convgen.spec.Sequential` becomes: named tensors, nodes in a topological
order, per-sample shapes inferred once (the batch size stays a run-time argument), and the
parameters (weights, biases, folded BatchNorm, broadcast operands) by name.  Every node is
one of :data:`OPS`; a convolution or pool node holds its layer spec, the others an operator
name and its attributes.  The network C (:mod:`convgen.netgen`), its oracle and error bound
(:mod:`convgen.netcheck`) and its summary all read this one description.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import SpecError
from .base import Layer

__all__ = ["ACTIVATIONS", "OPS", "Network", "Node"]

#: Elementwise activations and their attributes (defaults are ONNX's).
ACTIVATIONS = {
    "relu": {},
    "clip": {"min": -math.inf, "max": math.inf},
    "leaky_relu": {"alpha": 0.01},
    "sigmoid": {},
    "hard_sigmoid": {"alpha": 0.2, "beta": 0.5},
    "hard_swish": {},
}

#: Every node operator: ``layer`` (a convolution or pool spec with its weight and bias),
#: the activations, ``add``/``mul`` (NumPy broadcasting; an operand may be a parameter),
#: ``affine`` (a per-channel ``x*scale + shift``: BatchNormalization not after a
#: convolution), ``concat`` (on channels) and ``alias`` (the same memory under another
#: shape: Flatten, Identity, Dropout at inference, a fully connected layer's 1x1 view).
OPS = ("layer", *ACTIVATIONS, "add", "mul", "affine", "concat", "alias")


@dataclass(frozen=True)
class Node:
    """One operator of a network.

    ``inputs`` name tensors (activations or parameters), ``output`` the tensor it writes.
    A ``layer`` node reads ``inputs[0]`` viewed as the layer's input shape ``view`` (a
    fully connected layer's ``(K, 1, 1)``) and holds its weight and bias parameter names in
    ``params`` (``("w", name)``, ``("b", name)``), and, for a folded BatchNorm, the per-
    channel ``("scale", name)`` and ``("shift", name)`` the weights were multiplied by.
    ``attrs`` are the operator's attributes as sorted ``(key, value)`` pairs.  A float
    convolution's ``epilogue`` (from :meth:`Network.fused`) lists the elementwise steps its
    stores apply, in order: activations ``(op, attrs)`` and at most one ``("add", ())``, the
    residual ``inputs[1]``.
    """

    name: str
    op: str
    inputs: tuple[str, ...]
    output: str
    layer: Layer | None = None
    params: tuple[tuple[str, str], ...] = ()
    attrs: tuple[tuple[str, float], ...] = ()
    view: tuple[int, ...] | None = None
    source: str = ""            # what it came from (the ONNX op types), for summaries
    epilogue: tuple = ()        # a convolution's fused steps: (activation, attrs), ("add", ())

    def attr(self, key: str) -> float:
        found = dict(self.attrs)
        if key in found:
            return found[key]
        return ACTIVATIONS[self.op][key]

    def param(self, role: str) -> str | None:
        return dict(self.params).get(role)


@dataclass(eq=False)
class Network:
    """A graph of nodes over named tensors; see the module docstring.

    ``inputs`` are ``(name, per-sample shape)`` pairs in the entry point's order,
    ``outputs`` tensor names, ``constants`` the parameter arrays by name (float32;
    ``None`` for a parameter the caller passes, as a :class:`Sequential`'s weights, with its
    shape in ``param_shapes``), and
    ``shapes`` every tensor's per-sample shape (filled by validation).
    """

    name: str
    inputs: tuple[tuple[str, tuple[int, ...]], ...]
    outputs: tuple[str, ...]
    nodes: tuple[Node, ...]
    constants: dict = field(default_factory=dict)
    param_shapes: dict = field(default_factory=dict)   # of parameters given as None
    shapes: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.name.isidentifier() or not self.name.isascii():
            raise SpecError(f"network name={self.name!r} must be a C identifier "
                            "(ASCII letters, digits, '_', not starting with a digit)")
        self.inputs = tuple((n, tuple(int(d) for d in s)) for n, s in self.inputs)
        self.outputs, self.nodes = tuple(self.outputs), tuple(self.nodes)
        self.shapes = dict(self.inputs)
        for name, value in self.constants.items():
            if value is not None:
                self.constants[name] = np.ascontiguousarray(value, dtype=np.float64
                                                            if value.dtype == np.float64
                                                            else np.float32)
        seen = set()
        for node in self.nodes:
            if node.name in seen:
                raise SpecError(f"node names must be unique: {node.name!r} repeats")
            seen.add(node.name)
            if node.op not in OPS:
                raise SpecError(f"node {node.name!r}: op={node.op!r} must be one of {OPS}")
            if node.output in self.shapes or node.output in self.constants:
                raise SpecError(f"node {node.name!r}: tensor {node.output!r} is written twice")
            for tensor in node.inputs:
                if tensor not in self.shapes and tensor not in self.constants:
                    raise SpecError(f"node {node.name!r}: input {tensor!r} is neither a graph "
                                    "input, a parameter nor an earlier node's output")
            try:
                self.shapes[node.output] = self._infer(node)
            except SpecError as error:
                raise SpecError(f"node {node.name!r} ({node.source or node.op}): {error}") \
                    from None
        for tensor in self.outputs:
            if tensor not in self.shapes:
                raise SpecError(f"graph output {tensor!r} is not computed by any node")

    # ------------------------------------------------------------------ shapes

    def shape_of(self, tensor: str) -> tuple[int, ...]:
        """A tensor's per-sample shape; a parameter's own shape (it has no batch)."""
        if tensor in self.shapes:
            return self.shapes[tensor]
        value = self.constants[tensor]
        return tuple(self.param_shapes[tensor]) if value is None else value.shape

    def is_param(self, tensor: str) -> bool:
        return tensor in self.constants

    def _operand(self, tensor: str) -> tuple[int, ...]:
        """The shape an operand broadcasts with: an activation's ``(1, *sample)`` (batch 1
        stands for any batch), a parameter as it is."""
        if self.is_param(tensor):
            return tuple(self.shape_of(tensor))
        return (1, *self.shapes[tensor])

    def _infer(self, node: Node) -> tuple[int, ...]:
        if node.op == "layer":
            x = self.shapes.get(node.inputs[0])
            if x is None:
                raise SpecError("a layer's input must be an activation, not a parameter")
            view = node.view or x
            if math.prod(view) != math.prod(x):
                raise SpecError(f"view {view} has {math.prod(view)} elements; the input "
                                f"{x} has {math.prod(x)}")
            for role, expected in (("w", node.layer.weight_shape if node.layer.family in
                                    ("conv", "conv_transpose") else None),
                                   ("b", (node.layer.out_channels,)
                                    if getattr(node.layer, "bias", False) else None)):
                name = node.param(role)
                if (name is None) != (expected is None):
                    raise SpecError(f"parameter {role!r} is "
                                    f"{'missing' if name is None else 'not taken'}")
                if name is not None:
                    self._check_param(name, tuple(expected), role)
            if node.param("scale") is not None and (node.layer.family != "conv" or
                                                    node.param("b") is None):
                raise SpecError("a folded scale and shift need a convolution with a bias")
            for role in ("scale", "shift"):
                if node.param(role) is not None:
                    self._check_param(node.param(role), (node.layer.out_channels,), role)
            out = tuple(int(d) for d in node.layer.output_shape(view))
            self._check_epilogue(node, out)
            return out
        operands = [self._operand(t) for t in node.inputs]
        if node.op in ACTIVATIONS or node.op == "alias":
            if len(operands) != 1 or self.is_param(node.inputs[0]):
                raise SpecError(f"{node.op} takes one activation")
            if node.op == "alias":
                shape = node.view or operands[0][1:]
                if math.prod(shape) != math.prod(operands[0]):
                    raise SpecError(f"cannot view {operands[0][1:]} as {shape}")
                return tuple(shape)
            self._check_attrs(node)
            return operands[0][1:]
        if node.op == "affine":
            x = operands[0][1:]
            for role in ("scale", "shift"):
                self._check_param(node.param(role), (x[0],), role)
            return x
        if node.op == "concat":
            shapes = [s[1:] for s in operands]
            if any(self.is_param(t) for t in node.inputs) or \
                    any(len(s) != len(shapes[0]) or s[1:] != shapes[0][1:] for s in shapes):
                raise SpecError(f"concat on channels needs activations that agree but for "
                                f"channels; got {shapes}")
            return (sum(s[0] for s in shapes), *shapes[0][1:])
        # add, mul: NumPy broadcasting, and the result keeps the batch as its first axis
        if len(operands) != 2 or all(self.is_param(t) for t in node.inputs):
            raise SpecError(f"{node.op} takes two operands, at least one an activation")
        try:
            shape = np.broadcast_shapes(*operands)
        except ValueError:
            raise SpecError(f"operands {operands} do not broadcast") from None
        rank = max(len(s) for s in operands)
        batched = [len(s) == rank and not self.is_param(t)
                   for s, t in zip(operands, node.inputs)]
        if not any(batched) or shape[0] != 1:
            raise SpecError(f"operands {operands}: the result must keep the batch axis first")
        return tuple(int(d) for d in shape[1:])

    def _check_epilogue(self, node: Node, out: tuple) -> None:
        adds = [op for op, _ in node.epilogue if op == "add"]
        if node.epilogue and node.layer.family not in ("conv", "conv_transpose"):
            raise SpecError("only a convolution fuses an epilogue")
        if len(adds) != len(node.inputs) - 1 or len(adds) > 1:
            raise SpecError(f"epilogue {node.epilogue}: one residual input a fused add; "
                            f"inputs {node.inputs}")
        if adds and (self.is_param(node.inputs[1]) or self.shapes[node.inputs[1]] != out):
            raise SpecError(f"the residual {node.inputs[1]!r} must be an activation of the "
                            f"output's shape {out}")
        for op, attrs in node.epilogue:
            if op != "add":
                self._check_attrs(Node(node.name, op, node.inputs[:1], node.output,
                                       attrs=tuple(attrs)))

    def _check_param(self, name: str | None, expected: tuple, role: str) -> None:
        if name is None or name not in self.constants:
            raise SpecError(f"parameter {role!r} ({name!r}) is not given")
        shape = tuple(self.shape_of(name))
        if shape != tuple(expected):
            raise SpecError(f"parameter {role!r} ({name!r}) has shape {shape}; "
                            f"expected {tuple(expected)}")

    @staticmethod
    def _check_attrs(node: Node) -> None:
        allowed = ACTIVATIONS[node.op]
        for key, value in node.attrs:
            if key not in allowed:
                raise SpecError(f"attribute {key!r} is not one of {sorted(allowed)}")
            if not isinstance(value, float) or math.isnan(value):
                raise SpecError(f"attribute {key}={value!r} must be a float, not NaN")
        if node.op == "clip" and node.attr("min") > node.attr("max"):
            raise SpecError(f"clip min={node.attr('min')} exceeds max={node.attr('max')}")

    # ------------------------------------------------------------------ counts

    def params_of(self, node: Node) -> int:
        """Parameters a node holds (its weights, bias, per-channel affine)."""
        names = [n for role, n in node.params if role in ("w", "b")] if node.op == "layer" \
            else [t for t in node.inputs if self.is_param(t)] + [n for _, n in node.params]
        return sum(math.prod(self.shape_of(n)) for n in names)

    def macs_of(self, node: Node) -> int:
        """Multiply-accumulates a sample (a layer's; one an element for the others)."""
        if node.op == "layer":
            x = node.view or self.shapes[node.inputs[0]]
            return int(node.layer.macs((1, *x)))
        if node.op in ("mul", "affine"):
            return math.prod(self.shapes[node.output])
        return 0

    @property
    def num_params(self) -> int:
        return sum(self.params_of(node) for node in self.nodes)

    def traced(self) -> Network:
        """This network with every node's output a graph output (views excepted: they
        are their input's memory), in node order: its C writes every intermediate tensor
        for a node-by-node check (:func:`convgen.netcheck.check_nodes`)."""
        outputs = tuple(node.output for node in self.nodes if node.op != "alias")
        return Network(self.name, self.inputs, outputs, self.nodes, dict(self.constants),
                       dict(self.param_shapes))

    def storage(self, tensor: str) -> str:
        """The tensor whose memory ``tensor`` is (through views)."""
        by_output = {node.output: node for node in self.nodes}
        while tensor in by_output and by_output[tensor].op == "alias":
            tensor = by_output[tensor].inputs[0]
        return tensor

    def fused(self) -> Network:
        """This network with each float convolution's following activations and residual
        add fused into its stores (:attr:`Node.epilogue`): a chain of nodes each the only
        reader of the tensor before it, none a graph output, the residual an activation of
        the same shape computed before the convolution runs.  The same arithmetic in the
        same order: the fused C's outputs equal the unfused C's bit for bit."""
        nodes = list(self.nodes)
        readers: dict = {}
        for index, node in enumerate(nodes):
            for tensor in set(node.inputs):
                readers.setdefault(tensor, []).append(index)
        produced = {node.output: index for index, node in enumerate(nodes)}
        absorbed, result = set(), []
        for index, node in enumerate(nodes):
            if index in absorbed:
                continue
            if node.op != "layer" or node.layer.family not in ("conv", "conv_transpose") \
                    or node.epilogue:
                result.append(node)
                continue
            steps, tensor, residual, sources = [], node.output, None, [node.source]
            view = None    # the first view the chain passes through (a Gemm's)
            candidate = []
            while tensor not in self.outputs and len(readers.get(tensor, ())) == 1:
                following = nodes[readers[tensor][0]]
                if following.op == "alias":  # a view: fuse through it, view the result
                    candidate.append(readers[tensor][0])
                    tensor = following.output
                    continue
                if following.op in ACTIVATIONS:
                    steps.append((following.op, following.attrs))
                elif following.op == "add" and residual is None and view is None:
                    other = [t for t in following.inputs if t != tensor]
                    if len(other) != 1 or self.is_param(other[0]) or \
                            self.shapes[other[0]] != self.shapes[tensor] or \
                            produced.get(other[0], -1) >= index:
                        break
                    residual = other[0]
                    steps.append(("add", ()))
                else:
                    break
                absorbed.update([*candidate, readers[tensor][0]])
                view = view or (nodes[candidate[0]] if candidate else None)
                candidate = []
                sources.append(following.source or following.op)
                tensor = following.output
            if candidate:  # views after the last fused step stay where they are
                tensor = nodes[candidate[0]].inputs[0]
            if not steps:
                result.append(node)
                continue
            through = view is not None  # a view was fused through: one view at the end
            result.append(dataclasses.replace(
                node, inputs=(node.inputs[0], *([residual] if residual else [])),
                output=node.output if through else tensor, epilogue=tuple(steps),
                source="+".join(sources)))
            if through:  # one view from the convolution's output to the chain's end
                result.append(dataclasses.replace(view, inputs=(node.output,), output=tensor,
                                                  view=self.shapes[tensor]))
        return Network(self.name, self.inputs, self.outputs, tuple(result),
                       dict(self.constants), dict(self.param_shapes))

    # ------------------------------------------------------------------ sequential

    @classmethod
    def from_sequential(cls, model, input_shape: Sequence[int], name: str = "net",
                        weights: Mapping | None = None) -> Network:
        """The linear chain of a :class:`~convgen.spec.Sequential` for a per-sample
        ``input_shape`` ``(C, *spatial)``.  Each layer ``NAME`` with weights takes the
        parameters ``NAME.w`` (and ``NAME.b``): arrays from ``weights`` when given, else
        left to the caller (``None``)."""
        shape = tuple(input_shape)
        if len(shape) != model[0].ndim + 1 if len(model) else False:
            raise SpecError(f"input_shape={shape} must be (C, *spatial) with "
                            f"{model[0].ndim} spatial sizes, one sample")
        weights = dict(weights or {})
        nodes, constants, param_shapes, tensor = [], {}, {}, "x"
        for index, (label, layer, _) in enumerate(model.walk(shape)):
            params = []
            if layer.family in ("conv", "conv_transpose") or layer.quantized:
                roles = [("w", layer.weight_shape)]
                if getattr(layer, "bias", False):
                    roles.append(("b", (layer.out_channels,)))
                for role, role_shape in roles:
                    key = f"{label}.{role}"
                    constants[key] = weights.pop(key, None)
                    param_shapes[key] = tuple(role_shape)
                    params.append((role, key))
            out = "y" if index == len(model) - 1 else f"t{index}"
            nodes.append(Node(label if label.isidentifier() else f"layer{label}", "layer",
                              (tensor,), out, layer, tuple(params),
                              source=type(layer).__name__))
            tensor = out
        if weights:
            raise SpecError(f"weights={sorted(weights)} name no parameter of the chain "
                            f"(parameters: {sorted(constants)})")
        return cls(name, (("x", shape),), (tensor,), tuple(nodes), constants, param_shapes)

    @property
    def external(self) -> list[str]:
        """Parameters the caller passes (no array given), in node order."""
        return [n for n in self.param_order if self.constants[n] is None]

    @property
    def param_order(self) -> list[str]:
        """Every parameter once, in the order nodes first read it."""
        order = []
        for node in self.nodes:
            for tensor in [*(n for _, n in node.params), *node.inputs]:
                if self.is_param(tensor) and tensor not in order:
                    order.append(tensor)
        return order

    # ------------------------------------------------------------------ values

    def values(self, params: Mapping | None = None) -> dict:
        """Every parameter's array: the given ``constants``, and for the caller's (``None``)
        the arrays in ``params`` (checked against their shapes)."""
        params = dict(params or {})
        found = {}
        for name, value in self.constants.items():
            if value is None:
                if name not in params:
                    raise SpecError(f"parameter {name!r} is not given (this network takes "
                                    f"{self.external} from the caller)")
                value = np.asarray(params.pop(name), dtype=np.float32)
                expected = tuple(self.param_shapes[name])
                if value.shape != expected:
                    raise SpecError(f"parameter {name!r} has shape {value.shape}; "
                                    f"expected {expected}")
            found[name] = value
        if params:
            raise SpecError(f"params={sorted(params)} are not parameters the caller gives "
                            f"(those are {self.external})")
        return found

    def kernel_params(self, node: Node, values: Mapping) -> dict:
        """The float32 arrays a node's C takes (``w``, ``b`` of a layer; ``scale``, ``shift``
        of an affine node): a folded BatchNorm's or Gemm's ``w*scale`` and ``b*scale +
        shift`` are computed in float64 and rounded to float32 once, each element."""
        found = {role: np.asarray(values[name]) for role, name in node.params}
        if node.op == "affine":
            return {role: found[role].astype(np.float32) for role in ("scale", "shift")}
        out = {}
        scale, shift = found.get("scale"), found.get("shift")
        if "w" in found:
            w = found["w"].astype(np.float64)
            if scale is not None:  # a convolution's weights: (out_channels, ...)
                w = w * scale.reshape(-1, *[1] * (w.ndim - 1))
            out["w"] = w.astype(np.float32)
        if "b" in found:
            b = found["b"].astype(np.float64)
            if scale is not None:
                b = b * scale + shift
            out["b"] = b.astype(np.float32)
        return out
