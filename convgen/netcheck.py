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
from .spec.network import Network, Node

__all__ = ["Evaluation", "UNIT_ROUNDOFF", "evaluate", "gamma"]

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


def _activation(node: Node, x, e):
    u = UNIT_ROUNDOFF
    size = np.abs(x) + e
    if node.op == "relu":
        return np.maximum(x, 0), e
    if node.op == "clip":
        return np.clip(x, node.attr("min"), node.attr("max")), e
    if node.op == "leaky_relu":
        a = node.attr("alpha")
        return np.where(x >= 0, x, a * x), max(1.0, abs(a)) * e + u * abs(a) * size
    if node.op == "sigmoid":
        return 1 / (1 + np.exp(-x)), e / 4 + 8 * u
    if node.op == "hard_sigmoid":
        a, b = node.attr("alpha"), node.attr("beta")
        return (np.clip(a * x + b, 0, 1),
                abs(a) * e + gamma(3) * (abs(a) * size + abs(b) + 1))
    # hard_swish: x * clip(x/6 + 1/2, 0, 1), slope at most 1.5
    return x * np.clip(x / 6 + 0.5, 0, 1), 1.5 * e + gamma(4) * size


def _operand(network: Network, tensor: str, values, bounds, batch_rank: int):
    """An operand as an array that broadcasts against the batch-first result."""
    if network.is_param(tensor):
        value = np.asarray(values[tensor], np.float64)
        return value, np.zeros_like(value)
    return values[tensor], bounds[tensor]


def evaluate(network: Network, inputs, params: Mapping | None = None) -> Evaluation:
    """Run ``network`` on ``inputs`` (an array, a sequence in input order, or a mapping by
    name; each ``(N, *shape)``); ``params`` gives the parameters the caller passes.
    Returns every tensor's float64 value and error bound (see the module docstring)."""
    values_of_params = network.values(params)
    values, bounds = {}, {}
    for name, x in _inputs(network, inputs).items():
        values[name], bounds[name] = x, np.zeros_like(x)
    u = UNIT_ROUNDOFF
    for node in network.nodes:
        out_shape = network.shapes[node.output]
        if node.op == "layer":
            y, e = _layer(network, node, values[node.inputs[0]], bounds[node.inputs[0]],
                          values_of_params)
        elif node.op in ("add", "mul"):
            (a, ea), (b, eb) = (_operand(network, t, values_of_params | values, bounds, 0)
                                for t in node.inputs)
            if node.op == "add":
                y = a + b
                e = ea + eb + u * (np.abs(a) + np.abs(b) + ea + eb)
            else:
                y = a * b
                e = np.abs(a) * eb + np.abs(b) * ea + ea * eb + \
                    u * (np.abs(a) + ea) * (np.abs(b) + eb)
        elif node.op == "affine":
            x, ex = values[node.inputs[0]], bounds[node.inputs[0]]
            used = network.kernel_params(node, values_of_params)
            shape = (1, -1, *[1] * (x.ndim - 2))
            s = values_of_params[node.param("scale")].reshape(shape)
            t = values_of_params[node.param("shift")].reshape(shape)
            s32 = np.abs(used["scale"].astype(np.float64)).reshape(shape)
            y = x * s + t
            e = s32 * ex + gamma(3) * (s32 * (np.abs(x) + ex) + np.abs(t))
        elif node.op == "concat":
            y = np.concatenate([values[t] for t in node.inputs], axis=1)
            e = np.concatenate([bounds[t] for t in node.inputs], axis=1)
        elif node.op == "alias":
            y, e = values[node.inputs[0]], bounds[node.inputs[0]]
        else:
            y, e = _activation(node, values[node.inputs[0]], bounds[node.inputs[0]])
        batch = values[node.inputs[0]].shape[0] if node.inputs[0] in values else y.shape[0]
        full = (batch, *out_shape)
        values[node.output] = y.reshape(full) if y.size == np.prod(full) else \
            np.broadcast_to(y, full)
        bounds[node.output] = np.broadcast_to(e, y.shape).reshape(full) \
            if y.size == np.prod(full) else np.broadcast_to(e, full)
    return Evaluation(values, bounds, network.outputs)
