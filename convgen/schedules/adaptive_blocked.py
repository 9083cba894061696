"""C schedule ``blocked`` for float adaptive (and global) average and max pools: a vector of
channels at a time, independent sums instead of one dependent chain
(``adaptive_pool_blocked.c.j2``); bit for bit the reference."""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy

from .. import symbolic as sym
from ..lower import BATCH, C, N, Problem
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, loop, register, variables
from .reference import AdaptiveContext, adaptive_context

__all__ = ["AdaptiveBlockedParams", "applies", "build", "transpose"]


def applies(problem: Problem) -> str | None:
    if (problem.family != "adaptive_pool" or problem.dtype not in tuning.VECTOR_DTYPES
            or problem.reduction == "lp" or problem.indices or problem.layer.quantized
            or problem.channels < tuning.lanes(problem.dtype)):
        return ("the blocked adaptive pool schedule covers float average and max pools (no "
                "indices, not quantized) with a vector of channels")
    return None


@dataclass(frozen=True)
class AdaptiveBlockedParams:
    lanes: int
    blocks: int
    tail: int
    channel: str
    channel_row: str
    size: int
    whole: bool         # global pooling: one window, the whole plane
    plane: int
    flat: str
    transpose: tuple


@dataclass(frozen=True)
class AdaptiveBlockedContext(AdaptiveContext):
    blocked: AdaptiveBlockedParams


def build(problem: Problem) -> Built:
    """The reference adaptive pool context plus the channel vectors."""
    built = adaptive_context(problem)
    lanes, channels = tuning.lanes(problem.dtype), problem.channels
    cb, lane = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("cb", "l"))
    blocks = channels // lanes
    vector = [sympy.Eq(C, cb * lanes + lane), *loop(cb, blocks), *loop(lane, lanes)]
    # the reference code runs for the last channels only (past the whole vectors)
    tail = sympy.Ge(C, blocks * lanes)
    accesses = [
        *[replace(a, domain=(*a.domain, tail)) for a in built.accesses],
        *[Access(a.array, a.index, a.size, f"blocked, {lanes} channels a vector: {a.where}",
                 tuple([c for c in a.domain if not (isinstance(c, sympy.Lt) and
                                                    c.lhs == C)] + vector))
          for a in built.accesses]]
    plane = sym.prod(problem.spatial)
    whole = all(o == 1 for o in problem.out_spatial)
    flat = None
    if whole:
        e, j = (sympy.Symbol(v, integer=True, nonnegative=True) for v in ("e", "j"))
        flat = sym.flat_index([N, C, e], [None, channels, plane])
        x_size = BATCH * sym.prod(problem.sample)
        accesses.append(Access(
            "x", flat.subs(e, e + j), x_size,
            f"blocked, {lanes} elements of {lanes} channels a step (transposed)",
            tuple([sympy.Ge(BATCH, 1), *loop(N, BATCH), *vector, *loop(e, plane),
                   sympy.Le(e + lanes, plane), *loop(j, lanes)])))
        accesses.append(Access(
            "x", flat, x_size, "blocked, the last elements (gathered)",
            tuple([sympy.Ge(BATCH, 1), *loop(N, BATCH), *vector, *loop(e, plane)])))
    params = AdaptiveBlockedParams(
        lanes=lanes, blocks=blocks, tail=channels % lanes,
        channel=ccode(cb * lanes + lane),
        channel_row=ccode(cb * lanes + sympy.Symbol("j", integer=True)),
        size=problem.size, whole=whole, plane=plane,
        flat=ccode(flat) if whole else "",
        transpose=tuple(transpose(lanes)) if whole else ())
    return Built(AdaptiveBlockedContext(**variables(built.context), blocked=params),
                 tuple(accesses))


def transpose(lanes: int) -> list[str]:
    """C statements turning vectors ``r[i]`` (row i: ``lanes`` elements of channel i) into
    ``t[j]`` (element j of every channel) with ``__builtin_shufflevector`` (Clang, GCC 12+):
    the unpack / 64-bit / 128-bit steps of the classic register transpose."""
    def shuffle(a, b, idx):
        return f"__builtin_shufflevector({a}, {b}, {', '.join(map(str, idx))})"

    if lanes == 4:
        lines = []
        for i in range(4):  # unpack pairs of rows
            rows = f"r[{2 * (i // 2)}]", f"r[{2 * (i // 2) + 1}]"
            idx = [0, 4, 2, 6] if i % 2 == 0 else [1, 5, 3, 7]
            lines.append(f"const {{vec}} u{i} = {shuffle(*rows, idx)};")
        lines += [f"t[{k}] = {shuffle(f'u{a}', f'u{b}', idx)};" for k, (a, b, idx) in enumerate(
            [(0, 2, [0, 1, 4, 5]), (1, 3, [0, 1, 4, 5]), (0, 2, [2, 3, 6, 7]),
             (1, 3, [2, 3, 6, 7])])]
        return lines
    lo, hi = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
    even, odd = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
    first, second = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]
    lines = []
    for i in range(4):  # unpack pairs of rows: u(2i) low halves, u(2i+1) high halves
        rows = f"r[{2 * i}]", f"r[{2 * i + 1}]"
        lines.append(f"const {{vec}} u{2 * i} = {shuffle(*rows, lo)};")
        lines.append(f"const {{vec}} u{2 * i + 1} = {shuffle(*rows, hi)};")
    for half in range(2):  # 64-bit pairs: s(4 half + k) holds elements k and k + 4 of 4 rows
        base = 4 * half
        for k, (a, idx) in enumerate([(0, even), (0, odd), (1, even), (1, odd)]):
            lines.append(f"const {{vec}} s{base + k} = "
                         f"{shuffle(f'u{base + a}', f'u{base + a + 2}', idx)};")
    for k in range(4):  # 128-bit halves: element k, then element k + 4
        lines.append(f"t[{k}] = {shuffle(f's{k}', f's{k + 4}', first)};")
        lines.append(f"t[{k + 4}] = {shuffle(f's{k}', f's{k + 4}', second)};")
    return lines


SCHEDULE = register(Schedule(
    name="blocked", target="c", families=("adaptive_pool",),
    template="c/adaptive_pool_blocked.c.j2", applies=applies, build=build,
    doc="a vector of channels at a time: independent sums instead of one dependent chain"))
