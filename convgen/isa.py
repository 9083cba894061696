"""The instruction sets the generated C is tuned for: one table, printed into the preprocessor.

Generated C never requires an instruction set: each entry is a rung of a ``#if`` ladder that
picks a register block for the machine the kernel is compiled for, and the last rung (no
condition) is the portable fallback.  Registers are counted in vectors of
:data:`VECTOR_BYTES`: AArch64's 32 NEON registers of 16 bytes hold 16, as AVX2's 16 do; its
blocks are counted in 16-byte registers (:data:`convgen.schedules.tuning.PACKED_COLUMNS`).
:func:`ladder` is the ladder as a preprocessor test, which tells the rung a compiler and its
flags pick.  Each rung's register
block is proved in bounds (every rung's accesses are in the bounds proof); the C target
prints the ladder.  Adding an instruction set is one entry here and its register blocks in
:mod:`convgen.schedules.tuning`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CUDA_MAX_GRID_X", "CUDA_MAX_GRID_Z", "CUDA_SHARED_LIMIT", "DOT", "Dot", "FMA",
           "ISAS", "Isa", "MADD", "Madd", "VECTOR_BYTES", "ladder"]

#: Bytes of one vector of the vector-extension schedules (GCC/Clang ``vector_size``): an AVX
#: register; the compiler splits it into two where registers are 16 bytes (SSE, NEON).
VECTOR_BYTES = 32


@dataclass(frozen=True)
class Isa:
    """One rung of the ladder: ``condition`` (a preprocessor test, ``None`` for the last
    rung), the vector registers the compiler can allocate there, and the comment printed."""

    name: str
    condition: str | None
    registers: int
    note: str


#: Tested top to bottom; the first whose condition holds picks the register block.
ISAS = (
    Isa("avx512", "defined(__AVX512F__)", 32, "32 vector registers"),
    Isa("neon", "defined(__aarch64__) && defined(__ARM_NEON)", 16,
        "AArch64 NEON: 32 registers of 16 bytes, 2 a vector"),
    Isa("avx2", "defined(__AVX2__) && defined(__FMA__)", 16,
        "AVX2 and FMA: 16 vector registers, the FMA takes one operand from memory"),
    Isa("other", None, 16, "16 vector registers (AVX, SSE, none)"),
)


def ladder() -> str:
    """C text that preprocesses to ``convgen_rung NAME``: the rung the compiler picks."""
    lines = []
    for index, rung in enumerate(ISAS):
        keyword = "#if" if index == 0 else "#elif" if rung.condition else "#else"
        lines += [f"{keyword} {rung.condition or ''}".rstrip(), f"convgen_rung {rung.name}"]
    return "\n".join(lines + ["#endif", ""])


@dataclass(frozen=True)
class Fma:
    """The fused multiply-add of 32-byte vectors, where the target has one."""

    condition: str
    header: str
    intrinsics: dict


FMA = Fma("defined(__FMA__) && defined(__AVX__)", "immintrin.h",
          {"float32": "_mm256_fmadd_ps", "float64": "_mm256_fmadd_pd"})


@dataclass(frozen=True)
class Madd:
    """One rung of the int16 multiply-add ladder of the ``qpacked`` schedule:
    ``acc + Σ pairs`` of 16-bit products into 32-bit lanes (``pmaddwd``), fused with the
    add where the target has AVX-512 VNNI (``vpdpwssd``); the last rung is portable vector
    extensions (each lane's two int16 halves sign-extended, multiplied and added)."""

    condition: str | None
    header: str | None
    body: str           # C for MACRO(acc, w, x): acc, the int32 vector; w, x: int16 pairs
    note: str


MADD = (
    Madd("defined(__AVX512VNNI__) && defined(__AVX512VL__)", "immintrin.h",
         "(({i32})_mm256_dpwssd_epi32((__m256i)(acc), (__m256i)(w), (__m256i)(x)))",
         "AVX-512 VNNI: vpdpwssd, 16 products and the add in one instruction"),
    Madd("defined(__AVX2__)", "immintrin.h",
         "((acc) + ({i32})_mm256_madd_epi16((__m256i)(w), (__m256i)(x)))",
         "AVX2: vpmaddwd, 16 products summed in pairs, then the add"),
    Madd(None, None,
         "((acc) + (({i32})(({u32})(w) << 16) >> 16) * (({i32})(({u32})(x) << 16) >> 16)"
         " + (({i32})(w) >> 16) * (({i32})(x) >> 16))",
         "portable vector extensions: each 32-bit lane's two int16 halves"),
)


@dataclass(frozen=True)
class Dot:
    """One rung of the 8-bit dot-product ladder of ``qpacked``'s 8-bit form: ``acc + Σ`` of
    four products of an unsigned byte of x and a signed byte of w into each 32-bit lane
    (``vpdpbusd``, non-saturating); the last rung splits them into the even and the odd
    bytes as int16 pairs for the ``MADD`` ladder (exact: each pair's sum is at most
    2 * 255 * 128)."""

    condition: str | None
    body: str           # C for MACRO(acc, w, x); {madd} names the MADD macro
    note: str
    header: str | None = None   # the MADD ladder's include serves it


DOT = (
    Dot("defined(__AVX512VNNI__) && defined(__AVX512VL__)",
        "(({i32})_mm256_dpbusd_epi32((__m256i)(acc), (__m256i)(x), (__m256i)(w)))",
        "AVX-512 VNNI: vpdpbusd, 32 byte products and the add in one instruction"),
    Dot("defined(__AVXVNNI__)",
        "(({i32})_mm256_dpbusd_avx_epi32((__m256i)(acc), (__m256i)(x), (__m256i)(w)))",
        "AVX-VNNI: the same instruction, VEX-encoded"),
    Dot(None,
        "{madd}({madd}((acc), ({i16})(({u16})(w) << 8) >> 8, ({u32})(x) & 0x00ff00ffu), "
        "({i16})(w) >> 8, (({u32})(x) >> 8) & 0x00ff00ffu)",
        "the even and the odd bytes as int16 pairs, through the MADD ladder"),
)


# --------------------------------------------------------------------------- CUDA devices

#: CUDA's static shared-memory limit per block, which every tiled kernel stays within.
CUDA_SHARED_LIMIT = 48 * 1024
#: gridDim.x's limit.
CUDA_MAX_GRID_X = 2**31 - 1
#: gridDim.y's and gridDim.z's limit: larger batches are covered by each block looping.
CUDA_MAX_GRID_Z = 65535
