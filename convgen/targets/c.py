"""The C target: C99 types and parameters, the header, the ISA ladder, and rendering.

Generated C includes only the C standard library (``stdint.h``, ``string.h``, ``math.h``);
the vector schedules use GCC/Clang vector extensions and pick their register blocks and the
fused multiply-add with a preprocessor ladder printed from :data:`convgen.isa.ISAS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import isa, profiles
from .. import symbolic as sym
from ..lower import INT_MAX, Problem
from ..schedules import Built, Schedule, tuning, variables
from ..spec import DTYPE_SIZES
from .base import Target, banner, environment

__all__ = ["C", "C_TYPES", "MASK_TYPES", "RenderedC", "activation", "epilogue", "float_literal",
           "parallel_if", "render"]

C_TYPES = {"float32": "float", "float64": "double", "int8": "int8_t", "uint8": "uint8_t",
           "int32": "int32_t"}
#: Lane masks of a vector: integers of the element's width.
MASK_TYPES = {"float32": "int", "float64": "long long"}

def _clamp(v: str, lo: str | None, hi: str | None) -> str:
    """``v`` clamped by comparisons, not ``fmaxf``/``fminf``: those are library calls under
    strict IEEE flags (their NaN rule differs from the compare), and a comparison keeps a
    NaN as NumPy's ``clip`` does."""
    expr = v
    if hi is not None:
        expr = f"({v} > {hi} ? {hi} : {expr})"
    if lo is not None:
        expr = f"({v} < {lo} ? {lo} : {expr})"
    return expr


def _clip(v: str, a: dict) -> str:
    return _clamp(v, None if a["min"] == -math.inf else float_literal(a["min"]),
                  None if a["max"] == math.inf else float_literal(a["max"]))


#: The C text of each elementwise activation of a float variable ``v`` (a network's nodes
#: and fused epilogues); ``a`` holds its attributes
#: (:data:`convgen.spec.network.ACTIVATIONS`).
_ACTIVATIONS = {
    "relu": lambda v, a: f"({v} < 0.0f ? 0.0f : {v})",
    "clip": _clip,
    "leaky_relu": lambda v, a: f"({v} >= 0.0f ? {v} : {float_literal(a['alpha'])} * {v})",
    "sigmoid": lambda v, a: f"(1.0f / (1.0f + expf(-{v})))",
    "hard_sigmoid": lambda v, a: _clamp(f"({float_literal(a['alpha'])} * {v} + "
                                        f"{float_literal(a['beta'])})", "0.0f", "1.0f"),
    "hard_swish": lambda v, a: (f"({v} * " + _clamp(f"({v} * {float_literal(1 / 6)} + 0.5f)",
                                                     "0.0f", "1.0f") + ")"),
}


def float_literal(value: float) -> str:
    """``value`` rounded to float32, as an exact C99 literal (hexadecimal; the infinities
    from ``math.h``)."""
    value = float(np.float32(value))
    if math.isinf(value):
        return "INFINITY" if value > 0 else "-INFINITY"
    if value == 0:
        return "-0.0f" if math.copysign(1.0, value) < 0 else "0.0f"
    mantissa, exponent = value.hex().split("p")  # 0x1.8000000000000p+2 -> 0x1.8p+2
    return mantissa.rstrip("0").rstrip(".") + "p" + exponent + "f"


def activation(op: str, attrs: dict, v: str) -> str:
    """The C expression of activation ``op`` (attributes ``attrs``) of the float ``v``."""
    return _ACTIVATIONS[op](v, attrs)


def epilogue(steps) -> dict | None:
    """The template context of a fused epilogue: ``steps`` are ``(op, attrs)`` pairs in
    order, an activation or ``("add", ())`` (the argument ``residual``, an input like y)."""
    if not steps:
        return None
    lines = ["v = v + residual;" if op == "add" else
             f"v = {activation(op, dict(attrs), 'v')}; /* {op} */" for op, attrs in steps]
    return dict(residual=any(op == "add" for op, _ in steps), lines=lines,
                doc=", then ".join("the residual add" if op == "add" else op
                                   for op, _ in steps))


C = Target(name="c", types=C_TYPES, input_parameter="const {type} *restrict {name}",
           output_parameter="{type} *restrict {name}", index_type="int64_t")


@dataclass(frozen=True)
class RenderedC:
    source: str
    header: str
    signature: str
    cdef: str


def parallel_if(problem: Problem) -> str:
    """The OpenMP ``if`` clause: run serially when the whole batch is under
    :data:`~convgen.schedules.tuning.PARALLEL_WORK`; nothing when one sample is over."""
    elements = sym.prod(problem.sample) + sym.prod(problem.out)
    per_sample = int(problem.layer.flops((1, *problem.sample))) + 4 * int(elements)
    if per_sample >= tuning.PARALLEL_WORK:
        return ""
    return f" if(batch >= {-(-tuning.PARALLEL_WORK // max(1, per_sample))})"


def _product(sizes) -> str:
    """``a * b * c`` as C ``long`` arithmetic (an ``int`` product could overflow)."""
    return " * ".join(f"{n}L" for n in sizes)


def sizes(problem: Problem) -> list[dict]:
    """The header's size macros: each array's ``name`` suffix, value, layout check and
    comment, the ``argument`` it sizes and whether per sample (``batched``)."""
    sample, out, layer = problem.sample, problem.out, problem.layer
    found = [dict(name="X_SAMPLE", value=sym.prod(sample), check=_product(sample),
                  doc=f"x: (N, {', '.join(map(str, sample))}) per sample", argument="x",
                  batched=True),
             dict(name="Y_SAMPLE", value=sym.prod(out), check=_product(out),
                  doc=f"y: (N, {', '.join(map(str, out))}) per sample", argument="y",
                  batched=True)]
    if "residual" in problem.arguments:
        found.append(dict(name="RESIDUAL_SAMPLE", value=sym.prod(out), check=None,
                          doc="residual: what the epilogue adds, like y", argument="residual",
                          batched=True))
    if "w" in problem.arguments:
        found.append(dict(name="W_SIZE", value=sym.prod(layer.weight_shape),
                          check=_product(layer.weight_shape),
                          doc=f"w: {tuple(layer.weight_shape)}, PyTorch's layout",
                          argument="w", batched=False))
    if problem.bias:
        found.append(dict(name="B_SIZE", value=layer.out_channels, check=None,
                          doc=f"b: ({layer.out_channels},)", argument="b", batched=False))
    if problem.indices:
        found.append(dict(name="INDICES_SAMPLE", value=sym.prod(out), check=None,
                          doc="indices: like y, int64, flat within each (n, c) input plane",
                          argument="indices", batched=True))
    if "scratch" in problem.arguments:
        found.append(dict(name="SCRATCH_SIZE", value=problem.scratch, check=None,
                          doc=f"scratch: the caller's workspace, "
                              f"{problem.scratch * DTYPE_SIZES[problem.dtype]} bytes, any "
                              "contents (overwritten)", argument="scratch", batched=False))
    return found


def needs_wide_long(problem: Problem) -> bool:
    """Whether the kernel's sizes per sample need more than a 32-bit ``long``."""
    weight = sym.prod(problem.weight_shape) if "w" in problem.arguments else 0
    return max(sym.prod(problem.sample), sym.prod(problem.out), weight) > INT_MAX


def render(problem: Problem, schedule: Schedule, built: Built, name: str,
           openmp: bool, profile: str = profiles.DEFAULT, linkage: str = "",
           fused: tuple = ()) -> RenderedC:
    """The ``.c`` and ``.h`` text of ``built`` (a schedule's context) for ``problem``; the
    banner names a profile other than the default (:mod:`convgen.profiles`).  ``linkage``
    ``"static"`` makes the kernel a file's own function (a network's C holds its kernels);
    ``fused`` is the epilogue of a float convolution's stores (:func:`epilogue`)."""
    ctype = C_TYPES[problem.dtype]
    parameters = ", ".join(C.parameters(problem) + ["long batch"])
    signature = f"{linkage + ' ' if linkage else ''}void {name}({parameters})"
    lines = banner(problem, schedule.template)
    if profile != profiles.DEFAULT:
        lines.append(f"Profile {profile}: {profiles.PROFILES[profile]}.")
    source = environment().get_template(schedule.template).render(
        name=name, banner=lines, signature=signature, ctype=ctype,
        acc_type=C_TYPES[problem.acc_dtype], out_type=C_TYPES[problem.dtype_of("y")],
        i64=C.index_type, openmp=openmp,
        omp_if=parallel_if(problem), isas=isa.ISAS, fma=isa.FMA.intrinsics.get(problem.dtype),
        fma_condition=isa.FMA.condition, fma_header=isa.FMA.header,
        mask_type=MASK_TYPES.get(problem.dtype), epilogue=epilogue(fused),
        **variables(built.context))
    # C++ has no restrict; a parameter's own qualifiers are not part of a function's type,
    # so the prototype without them declares the same function (C++ callers, cffi)
    plain = signature.replace("restrict ", "")
    header = environment().get_template("c/header.h.j2").render(
        name=name, banner=lines + ["Call: " + plain + ";"], signature=signature,
        plain_signature=plain, sizes=sizes(problem), includes=["stdint.h"],
        wide_long=needs_wide_long(problem))
    return RenderedC(source, header, signature, plain + ";")
