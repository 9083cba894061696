"""The CUDA target: CUDA types and parameters, and rendering of the ``.cu`` text.

The text is plain CUDA with no ``#include`` and no ``extern "C"`` (PyCUDA adds it).  Global
pointer parameters carry the macro ``CONVGEN_GLOBAL``, 64-bit integers are ``CONVGEN_INT64``
and each kernel states its block size with ``CONVGEN_BLOCK(threads)``; all default to CUDA's
meaning (the last to nothing, so ptxas keeps its own register budget), so an OpenCL prelude
(``templates/cuda/opencl_prelude.cl``) can run the exact same text on a CPU.
"""

from __future__ import annotations

from ..lower import Problem
from ..schedules import Built, variables
from .base import Target, banner, environment

__all__ = ["CUDA", "CUDA_TYPES", "TEMPLATE", "render"]

CUDA_TYPES = {"float32": "float", "float64": "double", "int8": "signed char",
              "uint8": "unsigned char", "int32": "int"}
TEMPLATE = "cuda/kernel.cu.j2"

CUDA = Target(name="cuda", types=CUDA_TYPES,
              input_parameter="CONVGEN_GLOBAL const {type} *__restrict__ {name}",
              output_parameter="CONVGEN_GLOBAL {type} *__restrict__ {name}",
              index_type="CONVGEN_INT64")


def render(problem: Problem, name: str, body: Built, direct: Built, tiled: Built | None,
           launch_lines: list[str]) -> str:
    """The ``.cu`` text: the direct kernel (``direct``'s thread mapping around the reference
    schedule's per-output ``body``) and, when given, the tiled one."""
    ctype = CUDA_TYPES[problem.dtype]
    lines = banner(problem, TEMPLATE) + [
        "Arrays are dense and C-contiguous; indices (max pooling) are int64 offsets within "
        "each (n, c) input plane.", "Launch (block threads, grid x, y, z):", *launch_lines]
    params = ", ".join(CUDA.parameters(problem) + ["long batch"])
    return environment().get_template(TEMPLATE).render(
        name=name, banner=lines, params=params, family=problem.family, ctype=ctype,
        acc_type=CUDA_TYPES[problem.acc_dtype], out_type=CUDA_TYPES[problem.dtype_of("y")],
        i64=CUDA.index_type, bias=problem.bias,
        tiled=tiled.context if tiled is not None else None,
        **variables(direct.context), **variables(body.context))
