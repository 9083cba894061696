"""A network's C as a Python callable: :class:`NetworkCall`, built from the very file
:func:`convgen.netgen.generate_network` writes (through the same cached cffi build as a
kernel)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..errors import SpecError
from ..netgen import NetworkC, generate_network
from ..spec import Sequential
from ..spec.network import Network
from .cbuild import DEFAULT_FLAGS, alias, build_modules

__all__ = ["NetworkCall", "compile_network"]


class NetworkCall:
    """``call(x, ...)`` runs the network on its inputs ``(N, *shape)`` (float32, any other
    float is converted) and returns its output, or a tuple of outputs in graph order.  A
    network whose parameters the caller passes takes them as ``params=`` (a mapping by
    name; see :attr:`params`).  Scratch is allocated once a call."""

    def __init__(self, generated: NetworkC, module):
        self.generated = generated
        self.network = generated.network
        self._function = getattr(module.lib, alias(generated.name))
        self._ffi = module.ffi
        self._float = module.ffi.typeof("float[]")
        self._char = module.ffi.typeof("unsigned char[]")

    @property
    def params(self) -> list[tuple[str, tuple]]:
        """The parameters the caller passes: ``(name, shape)`` in the C's order."""
        return [(name, shape) for name, _, shape in self.generated.params_layout]

    def _params(self, params: Mapping | None) -> list:
        layout = self.generated.params_layout
        if not layout:
            if params:
                raise SpecError("params=: this network's weights are baked into its C")
            return []
        if params is None and self.generated.param_values is not None:
            return [self._ffi.from_buffer(self._float, self.generated.param_values)]
        given = dict(params or {})
        flat = np.empty(self.generated.params_size, np.float32)
        for name, offset, shape in layout:
            if name not in given:
                raise SpecError(f"params: {name!r} {shape} is not given (the network takes "
                                f"{[n for n, _, _ in layout]})")
            value = np.asarray(given.pop(name), dtype=np.float32)
            if value.shape != tuple(shape):
                raise SpecError(f"params: {name!r} has shape {value.shape}; expected "
                                f"{tuple(shape)}")
            flat[offset:offset + value.size] = value.ravel()
        if given:
            raise SpecError(f"params: {sorted(given)} are not parameters of this network")
        return [self._ffi.from_buffer(self._float, flat)]

    def bind(self, *inputs, params: Mapping | None = None):
        """A callable of no arguments that runs the network on ``inputs`` (checked once)
        into outputs and scratch allocated once, and returns the outputs: each call is the C
        function alone (benchmarks; the outputs are overwritten by the next call)."""
        arrays, outputs, scratch, batch = self._prepare(inputs)
        pointer = self._ffi.from_buffer
        arguments = [*self._params(params), *(pointer(self._float, a) for a in arrays),
                     *(pointer(self._float, y, require_writable=True) for y in outputs),
                     pointer(self._char, scratch, require_writable=True), batch]
        function, result = self._function, outputs[0] if len(outputs) == 1 else tuple(outputs)
        keep = (arrays, outputs, scratch)

        def bound():
            function(*arguments)
            return result

        bound.keep = keep  # the arrays the pointers point into live as long as the call
        return bound

    def _prepare(self, inputs):
        network = self.network
        if len(inputs) != len(network.inputs):
            raise SpecError(f"the network takes {len(network.inputs)} input(s) "
                            f"{[n for n, _ in network.inputs]}; got {len(inputs)}")
        arrays, batch = [], None
        for (name, shape), x in zip(network.inputs, inputs):
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
                raise SpecError(f"input {name!r}: shape {x.shape}; expected (N, "
                                f"{', '.join(map(str, shape))})")
            if batch is not None and x.shape[0] != batch:
                raise SpecError(f"input {name!r}: batch {x.shape[0]}; the first input's is "
                                f"{batch}")
            batch = x.shape[0]
            arrays.append(x)
        outputs = [np.empty((batch, *network.shapes[t]), np.float32) for t in network.outputs]
        scratch = np.empty(self.generated.plan.peak + 64, np.uint8)
        start = (-scratch.ctypes.data) % 64   # a cache-line-aligned start
        return arrays, outputs, scratch[start:], batch

    def __call__(self, *inputs, params: Mapping | None = None):
        arrays, outputs, scratch, batch = self._prepare(inputs)
        pointer = self._ffi.from_buffer
        self._function(*self._params(params), *(pointer(self._float, a) for a in arrays),
                       *(pointer(self._float, y, require_writable=True) for y in outputs),
                       pointer(self._char, scratch, require_writable=True), batch)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)


def compile_network(model, input_shape: Sequence[int] | None = None,
                    flags: Sequence[str] = DEFAULT_FLAGS, openmp: bool = False,
                    weights: Mapping | None = None, baked: bool = True) -> NetworkCall:
    """Generate, build (cached) and load a network's C: ``model`` is a
    :class:`~convgen.spec.network.Network` or a :class:`~convgen.spec.Sequential` with the
    per-sample ``input_shape`` ``(C, *spatial)`` (its weights from ``weights`` by
    ``"NAME.w"``/``"NAME.b"``, or passed at each call as ``params=``).  ``baked=False``
    passes the weights as an array at each call instead of compiling them in (large models
    build much faster: :func:`~convgen.netgen.generate_network`'s ``weights="params"``)."""
    if isinstance(model, Sequential):
        if input_shape is None:
            raise SpecError("compile(Sequential(...)) needs input_shape=(C, *spatial)")
        model = Network.from_sequential(model, input_shape, weights=weights)
    elif not isinstance(model, Network):
        raise SpecError(f"model={type(model).__name__} must be a Network or a Sequential")
    elif input_shape is not None or weights is not None:
        raise SpecError("input_shape= and weights= apply to a Sequential; a Network has its "
                        "own")
    generated = generate_network(model, openmp, weights="static" if baked else "params")
    return NetworkCall(generated, build_modules([generated], flags, openmp))
