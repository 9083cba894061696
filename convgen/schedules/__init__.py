"""Schedules: how a lowered problem's loops go, one module each, and :func:`choose`.

Each module registers a :class:`~convgen.schedules.base.Schedule`: its ``applies(problem)``
(``None``, or the reason it does not apply: also the error a forced schedule raises), its
context builder and its template.  :func:`choose` is the cost model, in words, with every
tuning constant in :mod:`convgen.schedules.tuning`.

C: ``reference`` (every family; exact, portable C99), ``blocked`` (2-D convolutions, window
pools and adaptive pools: vectors of outputs or channels; bit for bit the reference),
``packed`` (2-D convolutions: output channels in vector lanes; the reference's sums, with FMA
where the target has it), ``winograd`` (3x3 convolutions; opt-in, not exact), ``scalar``
(2-D convolutions, the ``mcu`` profile's: ISO C99 register blocks of scalars over weights
packed in a caller's scratch buffer; bit for bit the reference).
``qpacked`` (2-D quantized convolutions: output channels in int32 lanes, input-channel pairs
multiplied and added as int16, ``pmaddwd``/VNNI where the target has them; bit for bit),
``qdepthwise`` (2-D quantized depthwise convolutions: output columns in int32 lanes over the
input plane as int32 differences; bit for bit).
CUDA: ``direct`` (every family) and ``tiled`` (convolutions, shared memory).
"""

from __future__ import annotations

from .. import profiles
from .. import symbolic as sym
from ..errors import SpecError
from ..lower import Problem
from . import (  # noqa: F401  (each module registers its schedule)
    adaptive_blocked,
    conv_blocked,
    conv_packed,
    conv_qdepthwise,
    conv_qpacked,
    conv_scalar,
    conv_winograd,
    cuda_direct,
    cuda_tiled,
    pool_blocked,
    reference,
    tuning,
)
from .base import Access, Built, Schedule, applicable, find, names, portable_names, variables

__all__ = ["Access", "Built", "Schedule", "applicable", "choose", "find", "names", "resolve",
           "tuning", "variables"]


def _choose_conv(problem: Problem) -> tuple[str, str]:
    """2-D float convolutions with zero padding: ``packed`` wherever a group's output
    channels fill at least one vector (measured 1.5-2x faster than ``blocked`` on the ResNet,
    stem, pointwise and 3x128x128 layers); fewer channels a group (depthwise: 1 in 8 lanes;
    LeNet's 6; the 3x32x32 case's 3) go to ``blocked`` (output columns in lanes, measured
    equal or faster there) when whole register blocks cover at least half the output, so that
    the per-output border code runs on few positions; else ``reference``."""
    reason = conv_blocked.applies(problem)
    if reason is not None:
        return "reference", reason
    owb = tuning.lanes(problem.dtype)
    flat = " (1x1: the plane as one row, a GEMM)" if conv_blocked.pointwise(problem) else ""
    if flat and sym.prod(problem.out_spatial) < owb:
        return "blocked", (f"a fully connected layer ({sym.prod(problem.out_spatial)} output "
                           "position(s)): measured 2-3x faster in blocked than in packed, "
                           "which repacks every weight each call for a single column")
    if problem.cg_out >= owb:
        ocv, nb = conv_packed.blocks(problem.cg_out, owb)
        return "packed", (f"{problem.cg_out} output channels a group fill {problem.cg_out} of "
                          f"{ocv * nb * owb} lanes of {nb} packed block(s) of {ocv} vector(s); "
                          "a broadcast input serves them all" + flat)
    covered, total = conv_blocked.coverage(problem)
    share, whole = tuning.BLOCKED_MIN_COVERAGE
    if problem.groups > 1 and problem.cg_in == 1 and problem.cg_out == 1:
        return "blocked", (f"depthwise: whole register blocks cover {covered} of {total} "
                           "output positions, and even with fewer than half the vector "
                           "columns beat the per-output reference (measured 1.5-2x on "
                           "MobileNetV2's 14x14 and 7x7 depthwise layers)")
    if covered * whole < total * share:
        return "reference", (f"whole {owb}-column blocks would cover {covered} of {total} "
                             "output positions, under half")
    return "blocked", (f"whole register blocks ({conv_blocked.channel_block(problem.cg_out)} "
                       f"channels x {owb} columns) cover {covered} of {total} output "
                       "positions" + flat)


def _choose_c(problem: Problem) -> tuple[str, str]:
    if problem.family == "adaptive_pool":
        reason = adaptive_blocked.applies(problem)
        if reason is not None:
            return "reference", reason
        return "blocked", (f"{tuning.lanes(problem.dtype)} channels a vector: independent "
                           "sums instead of one dependent chain")
    if problem.family == "pool":
        reason = pool_blocked.applies(problem)
        if reason is not None:
            return "reference", reason
        return "blocked", (f"interior outputs run {tuning.lanes(problem.dtype)} at a time as "
                           "vectors, the border ones as in the reference schedule")
    if problem.family == "conv":
        return _choose_conv(problem)
    if problem.family == "qconv":
        if conv_qdepthwise.applies(problem) is None:
            return "qdepthwise", ("one input channel a group: output columns in int32 lanes, "
                                  "the input plane laid out as int32 differences")
        reason = conv_qpacked.applies(problem)
        if reason is not None:
            return "reference", reason
        if problem.cg_out < tuning.QPACKED_MIN_CHANNELS:
            return "reference", (f"{problem.cg_out} output channel(s) a group would fill "
                                 f"{problem.cg_out} of {tuning.QPACKED_LANES} int32 lanes")
        return "qpacked", (f"{problem.cg_out} output channels a group in int32 lanes, input "
                           "channels in int16 pairs (pmaddwd, VNNI)")
    return "reference", "the fast schedules cover 2-D float convolutions and pools only"


def choose(problem: Problem, target: str = "c") -> tuple[str, str]:
    """The schedule ``problem`` gets by default on ``target``, and why (the reason is
    recorded in every kernel report).  ``winograd`` is never chosen: it is not exact.
    CUDA: ``tiled`` where it applies (convolutions whose tile fits), else ``direct``."""
    if target == "c":
        return _choose_c(problem)
    if target == "cuda":
        reason = cuda_tiled.applies(problem)
        if reason is None:
            return "tiled", "input tiles and taps staged in shared memory"
        return "direct", reason
    raise SpecError(f"target={target!r} must be 'c' or 'cuda'")


def _portable(problem: Problem, target: str, chosen: str, reason: str,
              profile: str) -> tuple[str, str]:
    """The portable profiles' choice.  ``mcu``: ``scalar`` where it applies (a caller's
    scratch holds the packed weights).  Then, and for ``portable``: the cost model's when
    that schedule is portable C99 without scratch, else ``reference``, the one portable C
    schedule of every family."""
    if target != "c":
        return chosen, reason
    if profile == "mcu" and conv_scalar.applies(problem) is None:
        ocb, owb = conv_scalar.blocks(problem)
        return "scalar", (f"profile mcu: register blocks of {ocb} channel(s) x {owb} "
                          f"column(s) of scalars over weights packed in the caller's scratch "
                          f"({conv_scalar.scratch_elements(problem)} elements)")
    found = find(problem, target, chosen)
    if found.portable and found.scratch is None:
        return chosen, reason
    return "reference", (f"profile {profile}: ISO C99 without extensions (the default "
                         f"profile's {chosen} uses vector extensions)")


def resolve(problem: Problem, target: str, schedule: str = "auto",
            profile: str = profiles.DEFAULT) -> tuple[Schedule, str, bool]:
    """The schedule to render, why, and whether it is the profile's default:
    :func:`choose`'s for ``"auto"`` (for the portable profiles, theirs), else the one asked
    for, refused with the reason it does not apply or that the profile forbids it."""
    chosen, reason = choose(problem, target)
    if profiles.check(profile) in profiles.PORTABLE:
        chosen, reason = _portable(problem, target, chosen, reason, profile)
    if schedule in ("auto", None):
        return find(problem, target, chosen), reason, True
    found = find(problem, target, schedule)
    if profile in profiles.PORTABLE and target == "c" and not (
            found.portable and (profile == "mcu" or found.scratch is None)):
        allowed = portable_names(target, problem.family, scratch=profile == "mcu")
        why = ("takes a caller's scratch buffer, which only profile 'mcu' (or 'default') "
               "adds" if found.portable else "uses GCC/Clang vector extensions")
        raise SpecError(f"schedule={schedule!r} {why}; profile={profile!r} allows "
                        f"{', '.join(map(repr, allowed))}")
    return found, "asked for" + ("" if schedule == chosen else
                                 f" (the default would be {chosen}: {reason})"), \
        schedule == chosen
