"""Bounds safety of generated kernels, proved from the expressions the templates print.

Every array access a template emits is recorded by its schedule (:mod:`convgen.schedules`) as an
:class:`~convgen.schedules.Access`: the index expression, the buffer size (per batch size
``batch``, any ``batch >= 1``), and the conditions under which the access runs (loop ranges,
branch guards, the definitions of local variables).  :func:`prove_bounds` asks z3, through
:func:`convgen.proofs.prove`, for loop values that put an index outside ``[0, size)``; none
means the access is safe for every iteration, every batch size and every thread.

A proof is only as good as its model of the kernel: an access recorded with too small a
domain (a loop range cut short, a tap formula shifted) is proved safe for iterations the
kernel does not run, and says nothing of the ones it does.  :func:`uncovered` checks the
model against the operator: every element of ``x`` the exact operator reads
(:func:`convgen.toeplitz.entries`), every weight it uses, every bias and every output
(values and indices) must be the index of some recorded access, enumerated by z3 for a
concrete batch (:func:`footprint`).  It catches a model that leaves elements unreached; a
model shifted within what other accesses also reach is beyond it.  No operator defines a
kernel's scratch arrays; where a schedule records their reads as well as their writes
(Winograd's U, V and M; the packed weights; the tiled CUDA kernel's shared tiles), every
element read must be one some recorded write reaches, so a write's model cut short shows.
A CUDA text's entry points each compute the whole layer, so each one's accesses are
checked on their own.  The surest model is one that cannot drift: the convolution
schedules take each tap's input position and its inside-the-input test from the SymPy
expressions their templates print (``ConvDim.tap_expr``, ``inside_expr``); the transposed
gather its skip, input index and local channel; the tiled CUDA kernel a thread's output
position and a staged weight's channel and tap; and the blocked pools' scalar accesses run
over the very ranges their scalar loops print, so that a vector path missing from the
model leaves elements unreached.  Loop ranges and the scratch arrays' indices are still
written twice, in the template and in the model: what this check and the proofs' buffer
sizes (tests/test_proofs.py) hold together.
"""

from __future__ import annotations

import numpy as np
import sympy
import z3

from .codegen import GeneratedKernel
from .lower import BATCH
from .proofs import Result, prove
from .schedules import Access
from .solver import symbol_facts, to_z3
from .toeplitz import entries

__all__ = ["FOOTPRINT_LIMIT", "bounds_summary", "elements", "footprint", "prove_access",
           "prove_bounds", "required", "uncovered"]

#: :func:`uncovered` enumerates at most this many elements of an array (one z3 query each,
#: about a millisecond): the check is for small configs, which run the same code paths.
FOOTPRINT_LIMIT = 20_000


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


def footprint(access: Access, batch: int = 2, limit: int = FOOTPRINT_LIMIT) -> set[int]:
    """Every value ``access.index`` takes where its domain holds, for ``batch`` samples: z3
    enumerates them (each value found is excluded and the solver asked again).  More than
    ``limit`` values is a :class:`ValueError`."""
    env: dict = {}
    solver = z3.Solver()
    solver.add(*[to_z3(condition, env) for condition in access.domain])
    index = to_z3(access.index, env)
    solver.add(*symbol_facts(env))
    if BATCH in env:  # the batch size, in the domain or the index
        solver.add(env[BATCH] == batch)
    found: set[int] = set()
    while solver.check() == z3.sat:
        value = solver.model().eval(index, model_completion=True).as_long()
        found.add(value)
        if len(found) > limit:
            raise ValueError(f"{access.where}: more than {limit} elements")
        solver.add(index != value)
    return found


def elements(kernel: GeneratedKernel, batch: int = 2) -> int:
    """How many elements of x, y and w :func:`uncovered` has to reach for ``batch`` samples:
    what its cost grows with."""
    count = batch * (int(np.prod(kernel.input_shape)) + int(np.prod(kernel.output_shape)))
    return count + (int(np.prod(kernel.layer.weight_shape)) if "w" in kernel.arguments else 0)


def required(kernel: GeneratedKernel, batch: int = 2) -> dict[str, set[int]]:
    """The elements of each argument the layer's operator needs, for ``batch`` samples: the
    inputs and weights with a coefficient (or in a window), every bias, every output."""
    layer, sample = kernel.layer, kernel.input_shape
    ops = entries(layer, sample)
    x_size, y_size = int(np.prod(sample)), int(np.prod(kernel.output_shape))
    columns = np.unique(ops.cols).astype(np.int64)
    need = {"x": {int(v) for n in range(batch) for v in columns + n * x_size},
            "y": set(range(batch * y_size))}
    if "w" in kernel.arguments:
        need["w"] = {int(v) for v in np.unique(ops.keys)}
    if "b" in kernel.arguments:
        need["b"] = set(range(layer.out_channels))
    if "indices" in kernel.arguments:
        need["indices"] = set(need["y"])
    return need


def uncovered(kernel: GeneratedKernel, batch: int = 2) -> list[str]:
    """What the bounds proofs' model of ``kernel`` misses: for each argument, the elements
    the operator needs that no recorded access reaches, and for each scratch array with
    recorded reads, the elements read that no recorded write reaches (the first few
    named); [] when the recorded accesses cover them all.  A CUDA kernel's entry points
    each compute the whole layer, so each one's accesses must cover it on their own."""
    launches = getattr(kernel, "launches", None)
    if launches is None:
        return _uncovered(kernel.name, kernel.accesses, required(kernel, batch), batch)
    return [problem for launch in launches
            for problem in _uncovered(launch.entry, launch.accesses, required(kernel, batch),
                                      batch)]


def _uncovered(name: str, accesses, need_of: dict[str, set[int]], batch: int) -> list[str]:
    problems = []
    for array, need in need_of.items():
        reached: set[int] = set()
        for access in accesses:
            if access.array == array:
                reached |= footprint(access, batch)
                if need <= reached:
                    break
        missing = sorted(need - reached)
        if missing:
            problems.append(f"{name}: {len(missing)} element(s) of {array} the operator "
                            f"needs are reached by no recorded access (first: "
                            f"{', '.join(map(str, missing[:5]))}; batch {batch})")
    for array in sorted({a.array for a in accesses if a.scratch_read}):
        mine = [a for a in accesses if a.array == array]
        read = set().union(*(footprint(a, batch) for a in mine if a.scratch_read))
        written = set().union(*(footprint(a, batch) for a in mine if not a.scratch_read))
        unwritten = sorted(read - written)
        if unwritten:
            problems.append(f"{name}: {len(unwritten)} element(s) of the scratch array "
                            f"{array} are read but reached by no recorded write (first: "
                            f"{', '.join(map(str, unwritten[:5]))}; batch {batch})")
    return problems
