"""What every schedule is and shares: the registry, array accesses for the proofs, loop helpers.

A schedule is registered once with :func:`register`: its name, target, the families it
serves, its template, ``applies(problem) -> reason | None`` (``None``: it applies; else the
reason it does not, which is also the error a forced schedule raises) and
``build(problem) -> Built`` (the frozen context its template prints, and every array access
the template emits, for the bounds proofs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import sympy

from ..errors import SpecError
from ..lower import Problem

__all__ = ["Access", "Built", "Schedule", "applicable", "axes", "find", "loop", "loops",
           "names", "portable_names", "register", "variables"]


@dataclass(frozen=True)
class Access:
    """One array access of a kernel, as the bounds proof sees it.

    ``index`` must lie in ``[0, size)`` whenever every condition of ``domain`` holds: the
    loop ranges, the branch guards, and the definitions of the kernel's local variables
    (``p0 == k0 + o0 - 1``, ...), all the same SymPy expressions the template prints.
    ``scratch_read``: a read of one of the kernel's own (stack) arrays, whose other
    recorded accesses are its writes: every element it reads must be one some write
    reaches (:func:`convgen.bounds.uncovered`).
    """

    array: str
    index: sympy.Expr
    size: sympy.Expr
    where: str
    domain: tuple
    scratch_read: bool = False


@dataclass(frozen=True)
class Built:
    """A schedule's output for one problem: the template's context (a frozen dataclass
    whose fields become the template's variables) and the accesses the template emits."""

    context: object
    accesses: tuple


@dataclass(frozen=True)
class Schedule:
    """One way to compute a family on a target."""

    name: str
    target: str                                   # "c" or "cuda"
    families: tuple[str, ...]
    template: str                                 # relative to templates/
    applies: Callable[[Problem], str | None]
    build: Callable[[Problem], Built]
    doc: str
    portable: bool = False      # strict ISO C99: no vector extensions (convgen.profiles)
    #: Elements of the caller's scratch buffer the kernel takes (its last array argument,
    #: ``scratch``), or ``None``: it takes none (the ``mcu`` profile's schedules take one).
    scratch: Callable[[Problem], int] | None = None


_REGISTRY: dict[tuple[str, str, str], Schedule] = {}


def register(schedule: Schedule) -> Schedule:
    """Add ``schedule`` for each of its families; a second one of the same name is a bug."""
    for family in schedule.families:
        key = (schedule.target, family, schedule.name)
        if key in _REGISTRY:
            raise RuntimeError(f"schedule {key} is registered twice")
        _REGISTRY[key] = schedule
    return schedule


def names(target: str, family: str | None = None) -> tuple[str, ...]:
    """The schedules of ``target`` (for ``family``, when given), in registration order."""
    seen: dict[str, None] = {}
    for t, f, name in _REGISTRY:
        if t == target and (family is None or f == family):
            seen[name] = None
    return tuple(seen)


def portable_names(target: str, family: str, scratch: bool = False) -> tuple[str, ...]:
    """The schedules of ``family`` on ``target`` that are strict ISO C99 (``portable``);
    with ``scratch``, those taking a caller's scratch buffer too (the ``mcu`` profile)."""
    return tuple(n for n in names(target, family) if _REGISTRY[(target, family, n)].portable
                 and (scratch or _REGISTRY[(target, family, n)].scratch is None))


def find(problem: Problem, target: str, name: str) -> Schedule:
    """The schedule ``name`` for ``problem`` on ``target``; a :class:`SpecError` names the
    schedules there are, or says why this one does not apply."""
    if name not in names(target):
        raise SpecError(f"schedule={name!r} must be 'auto' or one of "
                        f"{', '.join(map(repr, names(target)))}")
    schedule = _REGISTRY.get((target, problem.family, name))
    if schedule is None:
        raise SpecError(f"schedule={name!r} has no {problem.family} kernel on target "
                        f"{target!r}; there: {', '.join(map(repr, names(target, problem.family)))}")
    reason = schedule.applies(problem)
    if reason is not None:
        raise SpecError(f"schedule={name!r} does not apply to {problem.layer.describe()} on "
                        f"{problem.sample} ({problem.dtype}): {reason}")
    return schedule


def applicable(problem: Problem, target: str) -> dict[str, str | None]:
    """``{schedule: None or the reason it does not apply}`` for every schedule of the
    problem's family on ``target``."""
    return {name: _REGISTRY[(target, problem.family, name)].applies(problem)
            for name in names(target, problem.family)}


def variables(context: object) -> dict:
    """A context dataclass's fields, as template variables (nested contexts stay objects)."""
    return {f.name: getattr(context, f.name) for f in dataclasses.fields(context)}


# --------------------------------------------------------------------------- loop helpers


def loop(symbol, stop) -> list:
    """``0 <= symbol < stop``: a loop counter's range, for an access's domain."""
    return [sympy.Ge(symbol, 0), sympy.Lt(symbol, stop)]


def loops(symbols: Sequence, stops: Sequence) -> list:
    return [c for symbol, stop in zip(symbols, stops) for c in loop(symbol, stop)]


_AXES = {1: ("width",), 2: ("height", "width"), 3: ("depth", "height", "width")}


def axes(ndim: int) -> tuple[str, ...]:
    """The names of the spatial axes, for the comments on loops."""
    return _AXES.get(ndim, tuple(f"dim {i}" for i in range(ndim)))
