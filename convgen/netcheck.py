"""The exact oracle of a network and the error bound of its float32 C.

:func:`evaluate` runs a :class:`~convgen.spec.network.Network` node by node in float64 with
:func:`convgen.reference.forward` for every convolution and pool (the per-layer oracle) and
NumPy for the elementwise nodes, on the model as written: a folded BatchNorm is applied as
``y*scale + shift`` after the unfolded convolution.  Alongside each value it carries a
running error bound ``e`` such that any float32 evaluation of the network in the C's
operations (any summation order, with or without FMA; no Winograd) lies within ``e`` of the
oracle, element by element.  With ``u = 2**-24`` and ``g(k) = k*u / (1 - k*u)``:

- convolution, ``n`` products an output (``C_in/groups * prod(kernel)``) and the bias:
  ``e_y = |W| * e_x + g(n + 3) * (|W| * (|x| + e_x) + |b|)`` (``*`` the convolution itself;
  the ``+3`` covers rounding a folded weight and bias to float32 once);
- max pools: the largest input error of the window; average pools (``k`` taps):
  ``avg(e_x) + g(k + 1) * avg(|x| + e_x)``; LP pools (Minkowski):
  ``lp(e_x) + g(k + 2p + 4) * lp(|x| + e_x)``;
- ReLU, Clip: ``e_x`` (1-Lipschitz, exact); LeakyRelu ``max(1, |a|) e_x + u |a| (|x| + e_x)``;
  HardSigmoid ``|a| e_x + g(3) (|a| (|x| + e_x) + |b| + 1)``; HardSwish ``1.5 e_x +
  g(4) (|x| + e_x)``; Sigmoid ``e_x / 4 + 8u`` (``expf`` within 2 ulp, a division, an add);
- add: ``e_a + e_b + u (|a| + |b| + e_a + e_b)``; mul: ``|a| e_b + |b| e_a + e_a e_b +
  u (|a| + e_a) (|b| + e_b)``; per-channel affine: ``|s| e_x + g(3) (|s| (|x| + e_x) + |t|)``;
- concat and views carry their errors unchanged.

The bound is computed in float64; its own rounding (relative ``2**-52``) is far below the
margins it adds.  Graph inputs are float32 and exact (``e = 0``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from . import reference
from .errors import SpecError
from .spec.network import ACTIVATIONS, Network, Node

__all__ = ["MARGIN", "Evaluation", "NodeCheck", "UNIT_ROUNDOFF", "check_nodes", "evaluate",
           "gamma", "ratio"]

#: float32's unit roundoff.
UNIT_ROUNDOFF = 2.0 ** -24


def gamma(k: int) -> float:
    """``k u / (1 - k u)``: the relative error bound of ``k`` float32 roundings."""
    ku = k * UNIT_ROUNDOFF
    if ku >= 1:
        raise SpecError(f"{k} roundings leave no float32 error bound")
    return ku / (1 - ku)


@dataclass
class Evaluation:
    """Every tensor's float64 value (batch first) and its error bound, and the outputs."""

    values: dict
    bounds: dict
    outputs: tuple

    def output(self, index: int = 0) -> np.ndarray:
        return self.values[self.outputs[index]]

    def bound(self, index: int = 0) -> np.ndarray:
        return self.bounds[self.outputs[index]]


def _inputs(network: Network, inputs) -> dict:
    if not isinstance(inputs, Mapping):
        inputs = (inputs,) if isinstance(inputs, np.ndarray) else tuple(inputs)
        if len(inputs) != len(network.inputs):
            raise SpecError(f"the network takes {len(network.inputs)} input(s) "
                            f"{[n for n, _ in network.inputs]}; got {len(inputs)}")
        inputs = dict(zip((n for n, _ in network.inputs), inputs))
    found = {}
    for name, shape in network.inputs:
        if name not in inputs:
            raise SpecError(f"input {name!r} is not given")
        x = np.asarray(inputs[name])
        if x.shape[1:] != shape or x.ndim != len(shape) + 1:
            raise SpecError(f"input {name!r} has shape {x.shape}; expected (N, "
                            f"{', '.join(map(str, shape))})")
        found[name] = x.astype(np.float32).astype(np.float64)
    return found


def _taps(layer) -> int:
    if layer.family in ("conv", "conv_transpose"):
        return layer.in_channels // layer.groups * int(np.prod(layer.kernel_size))
    return 0


def _layer(network: Network, node: Node, x, e, values):
    layer, view = node.layer, node.view or network.shapes[node.inputs[0]]
    batch = x.shape[0]
    x, e = x.reshape(batch, *view), e.reshape(batch, *view)
    raw = {role: np.asarray(values[name], np.float64) for role, name in node.params}
    used = network.kernel_params(node, values)
    if layer.family in ("conv", "conv_transpose"):
        y = reference.forward(layer, x, raw["w"], raw.get("b"))
        if "scale" in raw:
            shape = (1, -1, *[1] * (y.ndim - 2))
            y = y * raw["scale"].reshape(shape) + raw["shift"].reshape(shape)
        w = np.abs(used["w"].astype(np.float64))
        b = np.abs(used["b"].astype(np.float64)) if "b" in used else None
        size = reference.forward(layer, np.abs(x) + e, w, b)
        bound = reference.forward(layer, e, w, None) + gamma(_taps(layer) + 3) * size
        return y, bound
    y = reference.forward(layer, x)
    if layer.reduction == "max":
        return y, reference.forward(layer, e)
    taps = int(np.prod(getattr(layer, "kernel_size", None) or view[1:]))
    if layer.family == "adaptive_pool":
        taps = int(np.prod(view[1:]))
    if layer.reduction == "avg":
        k = taps + 1
    else:  # "lp"
        k = taps + 2 * int(np.ceil(layer.norm_type)) + 4
    return y, reference.forward(layer, e) + gamma(k) * reference.forward(layer, np.abs(x) + e)


def _activation(op: str, attrs, x, e):
    u = UNIT_ROUNDOFF
    size = np.abs(x) + e
    # the attributes as the C has them: float32 (as ONNX stores them)
    attr = {k: float(np.float32(v)) for k, v in {**ACTIVATIONS[op], **dict(attrs)}.items()}
    if op == "relu":
        return np.maximum(x, 0), e
    if op == "clip":
        return np.clip(x, attr["min"], attr["max"]), e
    if op == "leaky_relu":
        a = attr["alpha"]
        return np.where(x >= 0, x, a * x), max(1.0, abs(a)) * e + u * abs(a) * size
    if op == "sigmoid":
        return 1 / (1 + np.exp(-x)), e / 4 + 8 * u
    if op == "hard_sigmoid":
        a, b = attr["alpha"], attr["beta"]
        return (np.clip(a * x + b, 0, 1),
                abs(a) * e + gamma(3) * (abs(a) * size + abs(b) + 1))
    # hard_swish: x * clip(x/6 + 1/2, 0, 1), slope at most 1.5
    return x * np.clip(x / 6 + 0.5, 0, 1), 1.5 * e + gamma(4) * size


def _add(a, ea, b, eb):
    return a + b, ea + eb + UNIT_ROUNDOFF * (np.abs(a) + np.abs(b) + ea + eb)


def _operand(network: Network, tensor: str, values, bounds):
    """An operand as an array that broadcasts against the batch-first result."""
    if network.is_param(tensor):
        value = np.asarray(values[tensor], np.float64)
        return value, np.zeros_like(value)
    return values[tensor], bounds[tensor]


def _step(network: Network, node: Node, values: dict, bounds: dict, params: dict):
    """One node's float64 value and error bound from its inputs' (``values``/``bounds``:
    activations; ``params``: every parameter's array)."""
    u = UNIT_ROUNDOFF
    if node.op == "layer":
        y, e = _layer(network, node, values[node.inputs[0]], bounds[node.inputs[0]], params)
        for op, attrs in node.epilogue:  # fused steps, as the nodes they were
            if op == "add":
                y, e = _add(y, e, values[node.inputs[1]], bounds[node.inputs[1]])
            else:
                y, e = _activation(op, attrs, y, e)
        return y, e
    if node.op in ("add", "mul"):
        (a, ea), (b, eb) = (_operand(network, t, params | values, bounds)
                            for t in node.inputs)
        if node.op == "add":
            return _add(a, ea, b, eb)
        return a * b, (np.abs(a) * eb + np.abs(b) * ea + ea * eb +
                       u * (np.abs(a) + ea) * (np.abs(b) + eb))
    if node.op == "affine":
        x, ex = values[node.inputs[0]], bounds[node.inputs[0]]
        used = network.kernel_params(node, params)
        shape = (1, -1, *[1] * (x.ndim - 2))
        s = params[node.param("scale")].reshape(shape)
        t = params[node.param("shift")].reshape(shape)
        s32 = np.abs(used["scale"].astype(np.float64)).reshape(shape)
        return x * s + t, s32 * ex + gamma(3) * (s32 * (np.abs(x) + ex) + np.abs(t))
    if node.op == "concat":
        return (np.concatenate([values[t] for t in node.inputs], axis=1),
                np.concatenate([bounds[t] for t in node.inputs], axis=1))
    if node.op == "alias":
        return values[node.inputs[0]], bounds[node.inputs[0]]
    return _activation(node.op, node.attrs, values[node.inputs[0]], bounds[node.inputs[0]])


def _store(network: Network, node: Node, y, e, batch: int, values: dict, bounds: dict):
    full = (batch, *network.shapes[node.output])
    if y.size == np.prod(full):
        values[node.output] = y.reshape(full)
        bounds[node.output] = np.broadcast_to(e, y.shape).reshape(full)
    else:  # a broadcast result
        values[node.output] = np.broadcast_to(y, full)
        bounds[node.output] = np.broadcast_to(e, full)


def evaluate(network: Network, inputs, params: Mapping | None = None) -> Evaluation:
    """Run ``network`` on ``inputs`` (an array, a sequence in input order, or a mapping by
    name; each ``(N, *shape)``); ``params`` gives the parameters the caller passes.
    Returns every tensor's float64 value and error bound (see the module docstring)."""
    arrays = network.values(params)
    values, bounds = {}, {}
    for name, x in _inputs(network, inputs).items():
        values[name], bounds[name] = x, np.zeros_like(x)
    batch = next(iter(values.values())).shape[0]
    for node in network.nodes:
        y, e = _step(network, node, values, bounds, arrays)
        _store(network, node, y, e, batch, values, bounds)
    return Evaluation(values, bounds, network.outputs)


#: The bounds are computed in float64: a relative margin of 2**-40 covers their own rounding.
MARGIN = 1 + 2.0 ** -40


def ratio(error, bound) -> float:
    """The largest ``error / bound`` (0 where the error is 0; infinite where a bound of 0
    is exceeded), the bound widened by :data:`MARGIN`: at most 1 when within the bound."""
    error, bound = np.asarray(error, np.float64), np.asarray(bound, np.float64) * MARGIN
    with np.errstate(divide="ignore", invalid="ignore"):
        found = np.where(error == 0, 0.0, error / bound)
    return float(np.nan_to_num(found, nan=np.inf, posinf=np.inf).max(initial=0.0))


@dataclass(frozen=True)
class NodeCheck:
    """One node of :func:`check_nodes`: the largest error, the largest error over its
    bound (at most 1 to pass), and the bound's largest value."""

    node: str
    op: str
    max_error: float
    ratio: float
    max_bound: float

    @property
    def passed(self) -> bool:
        return self.ratio <= 1


def check_nodes(network: Network, inputs, computed: Mapping, params: Mapping | None = None
                ) -> list[NodeCheck]:
    """Check every node of ``network`` on the values a C computed (``computed``: tensor ->
    array, every node's output, as :meth:`~convgen.spec.network.Network.traced` C writes
    them): each node's oracle runs on the C's own inputs, exact (error 0), so its bound is
    the node's rounding alone, far tighter than the end-to-end one."""
    arrays = network.values(params)
    values = {n: x for n, x in _inputs(network, inputs).items()}
    for tensor, value in computed.items():
        values[tensor] = np.asarray(value, np.float64)
    zeros = {t: np.zeros_like(v) for t, v in values.items()}
    batch = next(iter(values.values())).shape[0]
    checks = []
    for node in network.nodes:
        if node.op == "alias":
            values[node.output] = values[node.inputs[0]].reshape(
                batch, *network.shapes[node.output])
            zeros[node.output] = np.zeros_like(values[node.output])
            continue
        expected, bound = {}, {}
        y, e = _step(network, node, values, zeros, arrays)
        _store(network, node, y, e, batch, expected, bound)
        error = np.abs(values[node.output] - expected[node.output])
        checks.append(NodeCheck(node.name, node.source or node.op, float(error.max()),
                                ratio(error, bound[node.output]),
                                float(bound[node.output].max())))
    return checks
