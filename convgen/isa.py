"""The instruction sets the generated C is tuned for: one table, printed into the preprocessor.

Generated C never requires an instruction set: each entry is a rung of a ``#if`` ladder that
picks a register block for the machine the kernel is compiled for, and the last rung (no
condition) is the portable fallback.  Schedules read the vector register count of each rung
(their register blocks are proved for every rung); the C target prints the ladder.  Adding an
instruction set (NEON, say) is one entry here and its register blocks in
:mod:`convgen.schedules.tuning`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CUDA_MAX_GRID_X", "CUDA_MAX_GRID_Z", "CUDA_SHARED_LIMIT", "FMA", "ISAS", "Isa",
           "VECTOR_BYTES"]

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
    Isa("other", None, 16, "16 vector registers (AVX2, SSE, NEON: 2 x 16 bytes)"),
)


@dataclass(frozen=True)
class Fma:
    """The fused multiply-add of 32-byte vectors, where the target has one."""

    condition: str
    header: str
    intrinsics: dict


FMA = Fma("defined(__FMA__) && defined(__AVX__)", "immintrin.h",
          {"float32": "_mm256_fmadd_ps", "float64": "_mm256_fmadd_pd"})


# --------------------------------------------------------------------------- CUDA devices

#: CUDA's static shared-memory limit per block, which every tiled kernel stays within.
CUDA_SHARED_LIMIT = 48 * 1024
#: gridDim.x's limit.
CUDA_MAX_GRID_X = 2**31 - 1
#: gridDim.y's and gridDim.z's limit: larger batches are covered by each block looping.
CUDA_MAX_GRID_Z = 65535
