"""Every tuning constant of every schedule, in one place, with the measurement behind it.

Schedules read these; :func:`convgen.schedules.choose` picks a schedule per layer with them.
Changing one changes generated code (``convgen generate --check`` shows where) but never
correctness: the bounds proofs and the verification cover whatever value is set here.
"""

from __future__ import annotations

from ..isa import VECTOR_BYTES
from ..spec import DTYPE_SIZES

# --------------------------------------------------------------------------- C, all schedules

#: Work a call needs before OpenMP threads pay for their start (about 1 us to wake a thread
#: here, more than a small layer's whole kernel with two of them): operations plus 4 per
#: element read or written, since pools are bound by memory, not arithmetic.
PARALLEL_WORK = 2**19

#: Floating dtypes the vector schedules cover: ``VECTOR_BYTES`` / element size lanes a vector.
VECTOR_DTYPES = ("float32", "float64")


def lanes(dtype: str) -> int:
    """Elements of one vector: 8 floats, 4 doubles."""
    return VECTOR_BYTES // DTYPE_SIZES[dtype]


# --------------------------------------------------------------------------- C, blocked conv

#: Output channels of a blocked register block: the largest divisor of a group's output
#: channels up to this, so that blocks never straddle groups and need no remainder loop.
BLOCKED_CHANNELS = 16
#: Accumulator vectors (channels x column vectors) a blocked register block aims at; the
#: row's vectors are split into equal blocks, so a block may hold more (up to 16 when one
#: channel block spans a whole row).
BLOCKED_ACCUMULATORS = 12
#: ``choose``: blocked only where whole register blocks cover at least this share of the
#: output positions (else the per-output border code dominates and the reference wins).
BLOCKED_MIN_COVERAGE = (1, 2)

# --------------------------------------------------------------------------- C, packed conv

#: Vectors of output channels a packed block holds at most.
PACKED_VECTORS = 4
#: Output columns of a packed register block, by ISA rung (:data:`convgen.isa.ISAS`) and
#: vectors of channels: accumulators + weight vectors + one broadcast fill 25 to 29 of 32
#: registers with AVX-512; with 16 registers, measured on ResNet 3x3 built for AVX2 only, 2
#: columns gave 84 GFLOP/s and 5 gave 65 (spills).  NEON (derived, not measured: QEMU's
#: speed means nothing): a 32-byte vector is 2 of its 32 registers of 16 bytes, so
#: accumulators 2 x vectors x columns + weights 2 x vectors + one broadcast stay within 25
#: to 29 of 32 (1 vector: 12 columns, 27 registers; 2: 6, 29; 3: 3, 25; 4: 2, 25).  AVX2
#: with FMA (``avx2``, 16 registers) with 4 vectors: 3 columns (12 accumulators and the
#: broadcast; the weights are the FMA's memory operand), measured on an AMD EPYC
#: (2026-12-02) built with ``-march=x86-64-v3`` (``convgen bench --march x86-64-v3``, three
#: runs each): pointwise 1x1 87, 72, 91 GFLOP/s against 54, 57, 52 with 2 columns; ResNet
#: 3x3 and the stem within the run-to-run noise (72-79 against 62-79, 62-65 against 62-74).
#: ``other`` (AVX without FMA, SSE: 2 registers a vector there) keeps 2.
PACKED_COLUMNS = {"avx512": {1: 12, 2: 8, 3: 6, 4: 5}, "neon": {1: 12, 2: 6, 3: 3, 4: 2},
                  "avx2": {1: 8, 2: 4, 3: 3, 4: 3}, "other": {1: 8, 2: 4, 3: 3, 4: 2}}
#: Packed weights of one block and one chunk of input channels (on the stack).
PACK_BYTES = 128 * 1024
#: Output columns a packed weight serves per task, at least: packing then costs about 1 % of
#: the task (measured: 64 columns a packed weight cost the ResNet 3x3 20 %).
PACKED_COLUMNS_PER_TASK = 2048

# --------------------------------------------------------------------------- C, int8 packed

#: Lanes of the ``qpacked`` schedule: int32 accumulators of one output channel each, in a
#: vector of :data:`~convgen.isa.VECTOR_BYTES`.
QPACKED_LANES = VECTOR_BYTES // 4
#: Vectors of output channels a ``qpacked`` block holds at most.
QPACKED_VECTORS = 4
#: Output columns of a ``qpacked`` register block, by ISA rung and vectors of channels:
#: accumulators (vectors x columns) + the weight vectors + the broadcast input pair.
#: AVX-512's 32 registers (256-bit operations): 1 vector, 12 columns, 14 registers; 2: 8, 19.
#: AVX2's 16: 1: 8, 10; 2: 4, 11.  NEON (a vector is 2 of its 32 registers): 1: 8, 20;
#: 2: 4, 22.  Other (SSE, 2 of 16 registers a vector): 1: 4, 12; 2: 2, 14.
QPACKED_COLUMNS = {"avx512": {1: 12, 2: 8, 3: 7, 4: 6}, "neon": {1: 8, 2: 4, 3: 3, 4: 2},
                   "avx2": {1: 8, 2: 4, 3: 3, 4: 3}, "other": {1: 4, 2: 2, 3: 1, 4: 1}}
#: The int16 packed weights of a whole layer (on the stack, packed once a call), at most:
#: a layer needing more keeps the reference schedule.
QPACK_BYTES = 256 * 1024
#: A task's row buffer (the input rows of one output row, as int16 pairs of input
#: channels, padding included), at most.
QROW_BYTES = 128 * 1024
#: ``choose``: ``qpacked`` where a group has at least this many output channels (fewer fill
#: too few of the 8 lanes; depthwise layers keep the reference).
QPACKED_MIN_CHANNELS = 4

#: Vectors of ``qpacked``'s int32 lanes in a ``qdepthwise`` register block: 4 x 8 = 32
#: consecutive output columns, 4 independent sums a tap pair.
QDW_VECTORS = 4
#: A ``qdepthwise`` task's plane buffers (its input plane as int16 differences and as int32
#: pairs, padding included), at most: a 112 x 112 MobileNet plane takes about 80 KB.
QDW_PLANE_BYTES = 128 * 1024

# --------------------------------------------------------------------------- C, scalar conv

#: Output channels of a ``scalar`` register block (the ``mcu`` profile's), at most: the
#: largest divisor of a group's output channels up to this.
SCALAR_CHANNELS = 4
#: Scalar accumulators (channels x columns) of a ``scalar`` register block: half the 32
#: single-precision registers of a Cortex-M4F's FPU (or AArch64's 32 SIMD registers), the
#: block's weights (up to 4) and one input beside them, so that none spills.
SCALAR_ACCUMULATORS = 16

# --------------------------------------------------------------------------- C, Winograd

#: The transformed weights of one block of output channels (16 matrices), at most.
WINOGRAD_BYTES = 128 * 1024
#: Transformed inputs of one block of tiles, at most.
WINOGRAD_TILE_BYTES = 64 * 1024
#: Tiles a task: the transformed weights are packed once per this many 2x2 tiles.
WINOGRAD_TILES_PER_TASK = 512
#: Padding of each of the 16 transform buffers, in elements, so that the 16 do not start at
#: the same offset modulo 4 KiB (L1 set conflicts: measured 17 % of the time).
WINOGRAD_SKEW = 16

# --------------------------------------------------------------------------- CUDA

#: Threads of a direct kernel's block (fewer for outputs under 256, a multiple of 32).
CUDA_DIRECT_BLOCK = 256
#: Output tile of a tiled convolution block, by spatial dimensions.
CUDA_TILES = {1: (128,), 2: (8, 16), 3: (4, 4, 8)}
#: Output channels of a tiled block, at most.
CUDA_OC_BLOCK = 8
#: A tiled block stages at least this many output positions (or the whole output), else the
#: halo costs more than it saves and the direct kernel runs.
CUDA_MIN_THREADS = 32
