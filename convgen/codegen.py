"""Spec -> specialized C source text: lower, choose a schedule, render.  Never compiles.

``generate`` lowers the layer once (:func:`convgen.lower.lower`: shapes, dtype, padding),
picks a schedule (:func:`convgen.schedules.resolve`: the default from the cost model, or the
one asked for, refused with the reason it does not apply), builds its context and accesses,
and renders them through the C target (:mod:`convgen.targets.c`).  Every size is a
compile-time constant and every index expression comes from :mod:`convgen.symbolic`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from ._version import __version__
from .errors import SpecError
from .lower import Problem, lower
from .resources import templates_dir
from .schedules import resolve
from .spec import Layer
from .targets import c as c_target
from .targets import environment, kernel_name
from .targets.base import banner

__all__ = ["GeneratedKernel", "generate", "generator_hash", "harness"]


@cache
def generator_hash() -> str:
    """sha256 over the templates and every Python module that shapes generated text (the
    package's own sources, recursively): part of every cache key."""
    digest = hashlib.sha256(__version__.encode())
    package = Path(__file__).resolve().parent
    templates = templates_dir()
    for root, pattern in ((templates, "*.j2"), (templates, "*.cl"), (package, "*.py")):
        for path in sorted(root.rglob(pattern)):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class GeneratedKernel:
    """The text of one C kernel and what a caller needs to use it."""

    name: str
    layer: Layer
    input_shape: tuple          # (C, *spatial), one sample
    output_shape: tuple         # (C_out, *spatial_out), one sample
    dtype: str
    source: str                 # the .c file
    header: str                 # the .h file
    cdef: str                   # the prototype, for cffi
    arguments: tuple            # argument names in order: x, [w], [b], y, [indices], [scratch]
    family: str
    accesses: tuple = ()        # every array access, for the bounds proof (convgen.bounds)
    schedule: str = "reference"
    schedule_reason: str = ""   # why this schedule (convgen.schedules.choose)
    template: str = ""          # the template it was rendered from, relative to templates/
    problem: Problem | None = None
    profile: str = "default"    # convgen.profiles

    def dtype_of(self, argument: str) -> str:
        """The dtype of the array ``argument`` (see :meth:`convgen.lower.Problem.dtype_of`)."""
        return self.problem.dtype_of(argument)


def generate(layer: Layer, input_shape: Sequence, dtype: str | None = None,
             name: str | None = None, openmp: bool = True,
             schedule: str = "auto", profile: str = "default",
             linkage: str = "", epilogue: Sequence = ()) -> GeneratedKernel:
    """Render the C kernel of ``layer`` for inputs ``(N, C, *spatial)`` of ``input_shape``.

    ``input_shape`` is ``(C, *spatial)`` or ``(N, C, *spatial)`` with concrete sizes; the batch
    size stays a runtime argument.  ``schedule`` is ``auto`` (:func:`convgen.schedules.choose`)
    or a schedule's name (``reference``, ``blocked``, ``packed``, ``winograd``); a derived name
    records a schedule other than the chosen one.  ``profile`` (:mod:`convgen.profiles`):
    ``default``, ``portable`` (strict ISO C99, no extensions; the schedules it allows) or
    ``mcu`` (portable, and a caller's scratch argument where the schedule takes one).
    ``linkage="static"`` renders the kernel as a file's own function (a network's C file).
    ``epilogue``: ``(op, attrs)`` steps applied to every output of a float convolution in
    its store (the activations of :data:`convgen.spec.network.ACTIVATIONS`, and ``("add",
    ())``, a residual: the kernel then takes ``residual``, shaped like ``y``, before ``y``).
    """
    if linkage not in ("", "static"):
        raise SpecError(f"linkage={linkage!r} must be '' (external) or 'static'")
    problem = lower(layer, input_shape, dtype)
    epilogue = tuple((op, tuple(attrs)) for op, attrs in epilogue)
    if epilogue:
        if problem.family not in ("conv", "conv_transpose") or \
                problem.dtype not in ("float32", "float64"):
            raise SpecError(f"epilogue={epilogue!r}: only float convolutions fuse an epilogue")
        if any(op == "add" for op, _ in epilogue):
            at = problem.arguments.index("y")
            problem = dataclasses.replace(problem, arguments=(*problem.arguments[:at], "residual",
                                                              *problem.arguments[at:]))
    chosen, reason, default = resolve(problem, "c", schedule, profile)
    if chosen.scratch is not None:  # the caller's scratch: the last array argument
        problem = dataclasses.replace(problem, arguments=(*problem.arguments, "scratch"),
                                      scratch=chosen.scratch(problem))
    if name is None and not default:
        name = kernel_name(problem) + f"_{chosen.name}"
    name = kernel_name(problem, name)
    built = chosen.build(problem)
    text = c_target.render(problem, chosen, built, name, openmp, profile, linkage, epilogue)
    return GeneratedKernel(name, layer, problem.sample, problem.out, problem.dtype, text.source,
                           text.header, text.cdef, problem.arguments, problem.family,
                           built.accesses, chosen.name, reason, chosen.template, problem,
                           profile)


def _arrays(kernel: GeneratedKernel) -> list[dict]:
    """The harness's arrays in argument order: name, C type, the header's size macro, per
    sample or not, read from stdin (inputs), the kernel's scratch (neither) or written to
    stdout (outputs)."""
    found = {size["argument"]: size for size in c_target.sizes(kernel.problem)}
    inputs = kernel.arguments[:kernel.arguments.index("y")]
    return [dict(name=argument, size=f"{kernel.name.upper()}_{found[argument]['name']}",
                 batched=found[argument]["batched"], input=argument in inputs,
                 output=argument not in inputs and argument != "scratch",
                 ctype=c_target.C.index_type if argument == "indices"
                 else c_target.C_TYPES[kernel.dtype_of(argument)])
            for argument in kernel.arguments if argument != "batch"]


def harness(kernel: GeneratedKernel) -> str:
    """The test program's C text for ``kernel`` (see ``templates/c/harness.c.j2``)."""
    lines = banner(kernel.problem, "c/harness.c.j2")[:1] + [
        f"The test program of {kernel.name}: stdin holds the batch size (a line), then the "
        "inputs raw in argument order; stdout gets the outputs raw."]
    return environment().get_template("c/harness.c.j2").render(
        name=kernel.name, banner=lines, arrays=_arrays(kernel))
