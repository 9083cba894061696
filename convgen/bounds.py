"""Bounds safety of generated kernels, proved from the expressions the templates print.

Every array access a template emits is recorded by its schedule (:mod:`convgen.schedules`) as an
:class:`~convgen.schedules.Access`: the index expression, the buffer size (per batch size
``batch``, any ``batch >= 1``), and the conditions under which the access runs (loop ranges,
branch guards, the definitions of local variables).  :func:`prove_bounds` asks z3, through
:func:`convgen.proofs.prove`, for loop values that put an index outside ``[0, size)``; none
means the access is safe for every iteration, every batch size and every thread.
"""

from __future__ import annotations

import sympy

from .codegen import GeneratedKernel
from .proofs import Result, prove
from .schedules import Access

__all__ = ["bounds_summary", "prove_access", "prove_bounds"]


def prove_access(kernel_name: str, access: Access) -> Result:
    """Prove ``0 <= index < size`` wherever the access runs."""
    claim = sympy.And(sympy.Ge(access.index, 0), sympy.Lt(access.index, access.size))
    return prove(claim, access.domain, name=f"{kernel_name}: {access.where}",
                 statement=f"0 <= {access.index} < {access.size}")


def prove_bounds(kernel: GeneratedKernel) -> list[Result]:
    """One result per recorded access of ``kernel``."""
    return [prove_access(kernel.name, access) for access in kernel.accesses]


def bounds_summary(results: list[Result]) -> str:
    """One line for a kernel report."""
    proved = sum(r.status == "proved" for r in results)
    if proved == len(results):
        return (f"all {len(results)} array accesses proved within their buffers for every "
                "iteration and every batch size (z3)")
    failed = [f"{r.name} ({r.status}{': ' + str(r.counterexample) if r.counterexample else ''})"
              for r in results if r.status != "proved"]
    return f"{proved} of {len(results)} accesses proved; not proved: {'; '.join(failed)}"
