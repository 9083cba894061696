"""Profiles: what the generated C may assume of the compiler that builds it.

``default``: GCC or Clang (their vector extensions, the ISA ladder of :mod:`convgen.isa`),
the cost model's fastest exact schedule.  ``portable``: strict ISO C99 with no extensions,
for any conforming compiler (gcc, clang, tcc, a vendor's), no OpenMP requirement, and no
stack workspace: a kernel declares no array, so its stack is its scalars and the compiler's
register spills, at most :data:`PORTABLE_STACK_BYTES` (measured with GCC's
``-fstack-usage`` at ``-O3`` on every family by the tests, for x86-64 and AArch64; the
default profile's packed weights take up to 75 KB).  ``mcu``: the portable profile's C
plus a caller-provided scratch buffer where a schedule wants one: 2-D float convolutions
take the ``scalar`` schedule (register blocks of scalar accumulators over weights packed in
``scratch``; its size is the header's ``NAME_SCRATCH_SIZE`` and the bounds proofs show every
access stays inside it), everything else the portable schedule; each kernel's report gives
its flash and RAM measured with the Cortex-M4 toolchain.  A profile allows the schedules
whose ``portable`` (and ``scratch``) flags it needs
(:class:`convgen.schedules.base.Schedule`); asking for another is a :class:`SpecError`.
"""

from __future__ import annotations

from .errors import SpecError

__all__ = ["DEFAULT", "PORTABLE", "PORTABLE_STACK_BYTES", "PROFILES", "check"]

DEFAULT = "default"

#: Each profile, and what it promises (printed into the banner of a kernel of a non-default
#: profile and into its report).
PROFILES = {
    "default": "GCC/Clang C99 with vector extensions; the cost model's fastest exact schedule",
    "portable": "strict ISO C99, no extensions, no OpenMP requirement, no stack workspace",
    "mcu": "strict ISO C99 as portable, plus a caller-provided scratch buffer for packed "
           "weights where the schedule takes one",
}

#: The profiles whose C is strict ISO C99 (no vector extensions, no stack workspace).
PORTABLE = ("portable", "mcu")

#: The most stack a ``portable`` kernel uses (bytes), on any family and dtype: the largest
#: measured is 528 B (GCC 12 at -O3 for AArch64, a 3x3 convolution whose loops it unrolls).
PORTABLE_STACK_BYTES = 1024


def check(profile: object, where: str = "profile") -> str:
    """``profile`` when it is one of :data:`PROFILES`, else a :class:`SpecError` naming them."""
    if not isinstance(profile, str) or profile not in PROFILES:
        raise SpecError(f"{where}={profile!r} must be one of "
                        f"{', '.join(map(repr, PROFILES))}")
    return profile

