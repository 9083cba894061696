"""A whole network as one C file: its kernels, its weights, a static memory plan.

:func:`generate_network` renders a :class:`~convgen.spec.network.Network` as ``NAME.c`` and
``NAME.h`` with one entry point::

    void NAME(const float *x, float *y, void *scratch, long batch);

(several inputs and outputs in graph order; a network whose parameters the caller passes
takes them first, as one ``const float *params`` array, laid out as the header says).  The
entry runs the batch one sample at a time, so ``scratch`` has a fixed size,
``NAME_SCRATCH_BYTES``, whatever the batch.  Every convolution and pool is its own kernel
from :func:`convgen.codegen.generate` (the schedule :func:`~convgen.schedules.choose` picks,
never Winograd), made ``static`` in the file; the elementwise nodes are loops in the entry.
Weights are ``static const`` arrays of exact hexadecimal float literals; nothing is
allocated and nothing global is written.

The memory plan (:func:`plan_memory`) gives every intermediate tensor an offset in
``scratch`` from its lifetime (first-fit, largest first; views and elementwise nodes whose
input dies there share its memory), and :func:`prove_plan` checks it with z3: no two
buffers alive at one step overlap, and every one lies inside ``scratch``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._version import __version__
from .codegen import GeneratedKernel, generate
from .errors import SpecError, VerificationError
from .spec.network import ACTIVATIONS, Network, Node
from .targets import environment
from .targets.c import activation, float_literal

__all__ = ["ALIGNMENT", "Buffer", "MemoryPlan", "NetworkC", "generate_network",
           "plan_memory", "prove_plan"]

#: Byte alignment of every buffer in ``scratch`` (a cache line).
ALIGNMENT = 64
_FLOAT = 4


@dataclass(frozen=True)
class Buffer:
    """Memory one or more tensors share (a view, an in-place elementwise node): ``kind``
    ``scratch`` (at ``offset`` bytes in the caller's scratch), ``input``/``output`` (the
    caller's array ``index``) or ``kernel`` (a kernel's own scratch, alive one step)."""

    name: str
    kind: str
    index: int
    elements: int
    first: int            # the step (node index) that writes it first
    last: int             # the last step that reads it
    offset: int | None = None

    @property
    def bytes(self) -> int:
        return self.elements * _FLOAT


@dataclass(frozen=True)
class MemoryPlan:
    buffers: tuple[Buffer, ...]
    tensors: dict           # tensor -> buffer name
    peak: int               # scratch bytes
    naive: int              # the sum of every scratch buffer's bytes, each its own memory

    def buffer(self, tensor: str) -> Buffer:
        name = self.tensors[tensor]
        return next(b for b in self.buffers if b.name == name)


_INPLACE = (*ACTIVATIONS, "affine", "add", "mul")


def _last_uses(network: Network) -> dict:
    last = {}
    for step, node in enumerate(network.nodes):
        for tensor in node.inputs:
            last[tensor] = step
    for tensor in network.outputs:
        last[tensor] = len(network.nodes)
    return last


def plan_memory(network: Network, kernels: dict | None = None) -> MemoryPlan:
    """Assign buffers and scratch offsets (see the module docstring); ``kernels`` maps node
    names to their :class:`GeneratedKernel` when a kernel takes scratch of its own."""
    last = _last_uses(network)
    groups: dict = {}          # buffer name -> [tensors]
    tensors: dict = {}
    first: dict = {}
    for index, (name, _) in enumerate(network.inputs):
        tensors[name] = f"input{index}"
        groups[f"input{index}"], first[f"input{index}"] = [name], -1
    kernel_buffers = []
    for step, node in enumerate(network.nodes):
        source = node.inputs[0]
        shared = None
        if node.op == "alias":
            shared = tensors[source]
        elif node.op in _INPLACE and not network.is_param(source) and \
                network.shapes[source] == network.shapes[node.output] and \
                not tensors[source].startswith("input") and \
                max(last.get(t, -1) for t in groups[tensors[source]]) == step and \
                all(tensors.get(t) != tensors[source] for t in node.inputs[1:]):
            shared = tensors[source]
        if shared is None:
            shared = f"t{len(groups)}"
            groups[shared], first[shared] = [], step
        groups[shared].append(node.output)
        tensors[node.output] = shared
        kernel = (kernels or {}).get(node.name)
        if kernel is not None and "scratch" in kernel.arguments:
            kernel_buffers.append(Buffer(f"k{step}", "kernel", step, kernel.problem.scratch,
                                         step, step))
    outputs = {}
    for index, tensor in enumerate(network.outputs):
        group = tensors[tensor]
        if group.startswith("input"):
            raise SpecError(f"graph output {tensor!r} is a view of graph input "
                            f"{groups[group][0]!r}: nothing computes it")
        if group in outputs:
            raise SpecError(f"graph outputs {network.outputs[outputs[group]]!r} and "
                            f"{tensor!r} share memory (views of one tensor)")
        outputs[group] = index
    buffers = []
    for group, members in groups.items():
        elements = math.prod(network.shapes[members[0]])
        end = max(last.get(t, first[group]) for t in members)
        if group.startswith("input"):
            buffers.append(Buffer(group, "input", int(group[5:]), elements, -1, end))
        elif group in outputs:
            buffers.append(Buffer(group, "output", outputs[group], elements, first[group],
                                  end))
        else:
            buffers.append(Buffer(group, "scratch", 0, elements, first[group], end))
    buffers += kernel_buffers
    placed: list[Buffer] = []
    for buffer in sorted((b for b in buffers if b.kind in ("scratch", "kernel")),
                         key=lambda b: (-b.bytes, b.first, b.name)):
        live = sorted((p for p in placed if p.first <= buffer.last and buffer.first <= p.last),
                      key=lambda p: p.offset)
        offset = 0
        for other in live:
            if offset + buffer.bytes <= other.offset:
                break
            offset = max(offset, _aligned(other.offset + other.bytes))
        placed.append(Buffer(**{**buffer.__dict__, "offset": offset}))
    order = {b.name: i for i, b in enumerate(buffers)}
    final = tuple(sorted([b for b in buffers if b.kind in ("input", "output")] + placed,
                         key=lambda b: order[b.name]))
    peak = max((b.offset + b.bytes for b in placed), default=0)
    naive = sum(_aligned(b.bytes) for b in placed)
    return MemoryPlan(final, tensors, _aligned(peak), naive)


def _aligned(size: int) -> int:
    return -(-size // ALIGNMENT) * ALIGNMENT


def prove_plan(plan: MemoryPlan) -> str:
    """Prove with z3 that no byte belongs to two scratch buffers alive at one step, and
    that every scratch buffer lies in ``[0, peak)``; returns a one-line statement, raises
    :class:`~convgen.errors.VerificationError` with the counterexample otherwise."""
    import z3

    scratch = [b for b in plan.buffers if b.offset is not None]
    solver = z3.Solver()
    byte = z3.Int("byte")
    pairs = 0
    for i, a in enumerate(scratch):
        solver.push()
        solver.add(a.offset <= byte, byte < a.offset + a.bytes,
                   z3.Or(byte < 0, byte >= plan.peak))
        if solver.check() != z3.unsat:
            raise VerificationError(f"buffer {a.name} leaves scratch at byte "
                                    f"{solver.model()[byte]}")
        solver.pop()
        for b in scratch[i + 1:]:
            if a.first > b.last or b.first > a.last:
                continue
            pairs += 1
            solver.push()
            solver.add(a.offset <= byte, byte < a.offset + a.bytes,
                       b.offset <= byte, byte < b.offset + b.bytes)
            if solver.check() != z3.unsat:
                raise VerificationError(f"buffers {a.name} and {b.name} are alive together "
                                        f"(steps {max(a.first, b.first)}.."
                                        f"{min(a.last, b.last)}) and share byte "
                                        f"{solver.model()[byte]}")
            solver.pop()
    return (f"proved (z3): {len(scratch)} scratch buffers inside {plan.peak} bytes; "
            f"{pairs} pairs alive together share no byte")


# ---------------------------------------------------------------------------- C text


@dataclass(frozen=True)
class NetworkC:
    """A network's C: the file texts, the plan, the kernels and the entry's prototype."""

    name: str
    source: str
    header: str
    cdef: str
    plan: MemoryPlan
    kernels: dict           # node name -> GeneratedKernel
    network: Network
    params_size: int        # floats of the caller's params array (0: weights are baked in)
    params_layout: tuple    # (name, offset, shape) of each parameter the caller passes
    param_values: np.ndarray | None = None   # weights="params": the array to pass

    @property
    def arguments(self) -> tuple:
        inputs = [f"x{i}" if len(self.network.inputs) > 1 else "x"
                  for i in range(len(self.network.inputs))]
        outputs = [f"y{i}" if len(self.network.outputs) > 1 else "y"
                   for i in range(len(self.network.outputs))]
        return (*(["params"] if self.params_size else []), *inputs, *outputs, "scratch",
                "batch")


def _kernels(network: Network, openmp: bool) -> dict:
    kernels = {}
    for node in network.nodes:
        if node.op != "layer":
            continue
        view = node.view or network.shapes[node.inputs[0]]
        kernels[node.name] = generate(node.layer, view, dtype="float32",
                                      name=f"{network.name}_{node.name}", openmp=openmp,
                                      linkage="static", epilogue=node.epilogue)
    return kernels


def _array_lines(values: np.ndarray) -> list[str]:
    flat = [float_literal(v) for v in np.asarray(values, np.float32).ravel().tolist()]
    return [", ".join(flat[i:i + 6]) for i in range(0, len(flat), 6)]


class _Writer:
    """The entry's statements, node by node."""

    def __init__(self, network: Network, plan: MemoryPlan, kernels: dict, arrays: dict):
        self.network, self.plan, self.kernels, self.arrays = network, plan, kernels, arrays

    def pointer(self, tensor: str, const: bool = False) -> str:
        if tensor in self.arrays:
            return self.arrays[tensor]
        buffer = self.plan.buffer(tensor)
        if buffer.kind == "input":
            return f"in{buffer.index}"
        if buffer.kind == "output":
            return f"out{buffer.index}"
        return f"(({'const ' if const else ''}float *)(s + {buffer.offset}))"

    def node(self, step: int, node: Node) -> list[str]:
        net = self.network
        out = self.pointer(node.output)
        if node.op == "layer":
            kernel: GeneratedKernel = self.kernels[node.name]
            args = {"x": self.pointer(node.inputs[0], True), "y": out,
                    "w": self.arrays.get(f"{node.name}#w"),
                    "b": self.arrays.get(f"{node.name}#b"),
                    "residual": self.pointer(node.inputs[-1], True)}
            if "scratch" in kernel.arguments:
                buffer = next(b for b in self.plan.buffers if b.name == f"k{step}")
                args["scratch"] = f"((float *)(s + {buffer.offset}))"
            names = [a for a in kernel.arguments if a != "batch"]
            return [f"{kernel.name}({', '.join(args[a] for a in names)}, 1);"]
        if node.op == "alias":
            return ["/* a view: no code */"]
        size = math.prod(net.shapes[node.output])
        x = self.pointer(node.inputs[0], True)
        if node.op in ACTIVATIONS:
            attrs = {**ACTIVATIONS[node.op], **dict(node.attrs)}
            return [f"for (long i = 0; i < {size}; ++i) {{",
                    f"    const float v = {x}[i];",
                    f"    {out}[i] = {activation(node.op, attrs, 'v')};",
                    "}"]
        if node.op == "affine":
            channels = net.shapes[node.output][0]
            plane = size // channels
            return [f"for (long c = 0; c < {channels}; ++c) {{",
                    f"    for (long i = {plane}*c; i < {plane}*(c + 1); ++i) "
                    f"{out}[i] = {x}[i] * {self.arrays[node.param('scale')]}[c] + "
                    f"{self.arrays[node.param('shift')]}[c];",
                    "}"]
        if node.op == "concat":
            lines, at = [], 0
            for tensor in node.inputs:
                count = math.prod(net.shapes[tensor])
                lines.append(f"memcpy({out} + {at}, {self.pointer(tensor, True)}, "
                             f"{count} * sizeof(float));")
                at += count
            return lines
        return self.binary(node, out, size)

    def binary(self, node: Node, out: str, size: int) -> list[str]:
        net = self.network
        shape = net.shapes[node.output]
        operator = "+" if node.op == "add" else "*"
        strides = []
        for tensor in node.inputs:
            own = tuple(net.shape_of(tensor)) if net.is_param(tensor) else \
                (1, *net.shapes[tensor])
            own = (1,) * (len(shape) + 1 - len(own)) + own
            dense = [math.prod(own[d + 1:]) for d in range(len(own))]
            strides.append([0 if own[d + 1] == 1 and shape[d] != 1 else dense[d + 1]
                            for d in range(len(shape))])
        terms = []
        dense = [math.prod(shape[d + 1:]) for d in range(len(shape))]
        if all(s == dense for s in strides):
            a, b = (f"{self.pointer(t, True)}[i]" for t in node.inputs)
            return [f"for (long i = 0; i < {size}; ++i) {out}[i] = {a} {operator} {b};"]
        lines, indent = [], ""
        for d, extent in enumerate(shape):
            lines.append(f"{indent}for (long i{d} = 0; i{d} < {extent}; ++i{d}) {{")
            indent += "    "
        for tensor, stride in zip(node.inputs, strides):
            index = " + ".join(f"{s}*i{d}" for d, s in enumerate(stride) if s) or "0"
            terms.append(f"{self.pointer(tensor, True)}[{index}]")
        out_index = " + ".join(f"{s}*i{d}" for d, s in enumerate(dense))
        lines.append(f"{indent}{out}[{out_index}] = {terms[0]} {operator} {terms[1]};")
        for _ in shape:
            indent = indent[4:]
            lines.append(f"{indent}}}")
        return lines


def generate_network(network: Network, openmp: bool = False, fuse: bool = True,
                     profile: bool = False, weights: str = "static") -> NetworkC:
    """Render ``network`` as one C file and its header (see the module docstring);
    ``fuse`` applies each convolution's activations and residual add in its stores
    (:meth:`~convgen.spec.network.Network.fused`) rather than as passes of their own.
    ``profile`` adds the processor time of each step, read by ``void NAME_profile(double *
    seconds)`` (a benchmark build: it writes a global).  ``weights="params"`` takes every
    parameter from the caller's ``params`` array (folded as they would be baked; their
    values in :attr:`NetworkC.param_values`) instead of ``static const`` arrays: large
    models, or weights kept in a file or in flash."""
    if weights not in ("static", "params"):
        raise SpecError(f"weights={weights!r} must be 'static' (baked into the C) or "
                        "'params' (the caller's array)")
    if fuse:
        network = network.fused()
    name = network.name
    kernels = _kernels(network, openmp)
    plan = plan_memory(network, kernels)
    values = {n: v for n, v in network.constants.items() if v is not None}
    for node in network.nodes:
        if node.op == "layer" and node.param("scale") is not None and any(
                network.constants[n] is None for _, n in node.params):
            raise SpecError(f"node {node.name!r}: a folded scale needs its weights at "
                            "generation time")
    arrays, statics, layout, given = {}, [], [], []

    def place(key: str, c_name: str, array, shape: tuple, doc: str) -> None:
        """A parameter the C reads: baked in (``static const``), or at its offset in the
        caller's ``params`` (``weights="params"``, or no array: a Sequential's)."""
        if array is None or weights == "params":
            at = sum(math.prod(s) for _, _, s in layout)
            layout.append((key, at, tuple(shape)))
            given.append(array)
            arrays[key] = f"(params + {at})"
            return
        statics.append(dict(name=c_name, size=max(1, array.size), lines=_array_lines(array),
                            doc=doc))
        arrays[key] = c_name

    for node in network.nodes:
        if node.op == "layer":
            known = all(network.constants[n] is not None for _, n in node.params)
            used = network.kernel_params(node, values) if known else {
                role: None for role, _ in node.params}
            for role, tensor in node.params:
                if role not in used:
                    continue
                shape = used[role].shape if known else network.param_shapes[tensor]
                place(f"{node.name}#{role}" if known else tensor,
                      f"{name}_{node.name}_{role}", used[role], shape,
                      f"{node.name}: {role} {tuple(shape)}")
                arrays[f"{node.name}#{role}"] = arrays[f"{node.name}#{role}" if known
                                                       else tensor]
        elif node.op == "affine":
            used = network.kernel_params(node, values)
            for role in ("scale", "shift"):
                place(node.param(role), f"{name}_{node.name}_{role}", used[role],
                      used[role].shape, f"{node.name}: per-channel {role}")
        else:
            for tensor in node.inputs:
                if network.is_param(tensor) and tensor not in arrays:
                    value = values.get(tensor)
                    value = None if value is None else np.asarray(value, np.float32)
                    place(tensor, f"{name}_p{len(statics)}", value,
                          network.shape_of(tensor), f"{tensor!r} {tuple(network.shape_of(tensor))}")
    at = sum(math.prod(s) for _, _, s in layout)
    known = all(a is not None for a in given)
    param_values = np.concatenate([np.asarray(a, np.float32).ravel() for a in given]) \
        if given and known else None
    writer = _Writer(network, plan, kernels, arrays)
    steps = []
    for step, node in enumerate(network.nodes):
        shape_in = ", ".join(str(tuple(network.shape_of(t))) for t in node.inputs)
        steps.append(dict(doc=f"{step}: {node.name} ({node.source or node.op}) {shape_in} -> "
                              f"{tuple(network.shapes[node.output])}",
                          lines=writer.node(step, node)))
    arguments = NetworkC(name, "", "", "", plan, kernels, network, at, tuple(layout),
                         None).arguments
    read = {t for node in network.nodes for t in node.inputs}
    inputs = [dict(arg=a, shape=s, size=math.prod(s), macro=a.upper(), tensor=t, used=t in read)
              for a, (t, s) in zip([a for a in arguments if a.startswith("x")],
                                   network.inputs)]
    outputs = [dict(arg=a, shape=network.shapes[t], size=math.prod(network.shapes[t]),
                    macro=a.upper(), tensor=t)
               for a, t in zip([a for a in arguments if a.startswith("y")], network.outputs)]
    parameters = (["const float *restrict params"] if at else []) + \
        [f"const float *restrict {i['arg']}" for i in inputs] + \
        [f"float *restrict {o['arg']}" for o in outputs] + ["void *restrict scratch",
                                                             "long batch"]
    signature = f"void {name}({', '.join(parameters)})"
    plain = signature.replace("restrict ", "")
    counts = {"layer": sum(1 for n in network.nodes if n.op == "layer")}
    banner = [f"Generated by convgen {__version__} from templates/c/network.c.j2; do not edit.",
              f"Network {name}: {len(network.nodes)} nodes ({counts['layer']} convolution and "
              f"pool kernels), {network.num_params} parameters.",
              "Inputs: " + ", ".join(f"{i['arg']} (N, {', '.join(map(str, i['shape']))})"
                                     for i in inputs),
              "Outputs: " + ", ".join(f"{o['arg']} (N, {', '.join(map(str, o['shape']))})"
                                      for o in outputs),
              f"Scratch: {plan.peak} bytes (every intermediate its own memory: {plan.naive})."]
    env = environment()
    context = dict(name=name, banner=banner, signature=signature, plain_signature=plain,
                   inputs=inputs, outputs=outputs, plan=plan, statics=statics,
                   bodies=[kernel_body(kernels[n.name]) for n in network.nodes
                           if n.name in kernels],
                   steps=steps, layout=layout, params_size=at, alignment=ALIGNMENT,
                   profile=profile)
    source = env.get_template("c/network.c.j2").render(**context)
    header = env.get_template("c/network.h.j2").render(**context)
    return NetworkC(name, source, header, plain + ";", plan, kernels, network, at,
                    tuple(layout), param_values)


def kernel_body(kernel: GeneratedKernel) -> str:
    """A kernel's source without its own header's include (the network file holds it)."""
    include = f'#include "{kernel.name}.h"\n'
    if kernel.source.count(include) != 1:
        raise SpecError(f"kernel {kernel.name}: its source does not include its header once")
    return kernel.source.replace(include, "")
