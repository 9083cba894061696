"""The integer branches of convgen.symbolic's helpers against brute force.

Most helpers of :mod:`convgen.symbolic` have two branches: plain Python integers (what the
kernels and the reports use) and SymPy expressions (symbolic sizes).  Each test here checks
a helper's integer branch against a count or a search written out in the test, and its
symbolic branch against the integer one, on a grid of small sizes.  The mutation run
(``convgen mutate``) runs this module in its formula stage.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy

import convgen
from convgen import symbolic as sym
from convgen.toeplitz import entries

N = sympy.Symbol("n", integer=True, positive=True)


def _windows(n: int, out: int) -> list[range]:
    """Adaptive pooling's windows, PyTorch's rule written out with exact fractions."""
    import math
    from fractions import Fraction

    return [range(math.floor(Fraction(i * n, out)), math.ceil(Fraction((i + 1) * n, out)))
            for i in range(out)]


def test_adaptive_window_sizes_and_their_total_are_the_windows_counted():
    for n, out in itertools.product(range(1, 16), range(1, 9)):
        sizes = [len(w) for w in _windows(n, out)]
        assert sym.adaptive_window_taps(n, out) == sizes, (n, out)
        assert sym.adaptive_total_taps(n, out) == sum(sizes), (n, out)
        assert sym.adaptive_total_taps(N, out).subs(N, n) == sum(sizes), (n, out)


def test_interior_range_is_the_windows_whose_taps_all_read_the_input():
    for n, k, s, d, lo in itertools.product(range(1, 8), range(1, 4), range(1, 4), (1, 2),
                                            range(0, 3)):
        out = sym.conv_output_size(n, k, s, d, lo, lo)
        if out < 1:
            continue
        inside = [o for o in range(out)
                  if all(0 <= sym.tap_index(o, j, s, d, lo) < n for j in range(k))]
        got = sym.interior_range(n, out, k, s, d, lo)
        if inside:  # a run of windows: [first, stop)
            assert got == (inside[0], inside[-1] + 1), (n, k, s, d, lo)
        else:
            assert got == (0, 0), (n, k, s, d, lo)


def test_tap_range_is_the_lowest_and_highest_tap_of_every_window():
    for out, k, s, d, lo in itertools.product(range(1, 5), range(1, 4), range(1, 3), (1, 2),
                                              range(0, 3)):
        taps = [o * s - lo + j * d for o in range(out) for j in range(k)]
        assert sym.tap_range(out, k, s, d, lo) == (min(taps), max(taps))


def test_unflatten_is_numpys_unravel_index():
    for shape in [(3, 4), (2, 3, 5), (4, 1, 2, 3)]:
        for offset in range(int(np.prod(shape))):
            assert sym.unflatten(offset, shape) == list(np.unravel_index(offset, shape))


def test_block_start_and_extent_keep_a_block_inside_the_row():
    start, block, n = sympy.symbols("start block n", integer=True, nonnegative=True)
    for b, row in itertools.product(range(1, 6), range(1, 14)):
        for first in range(0, row, b):
            begin = sym.block_start(first, b, row) if row >= b else None
            if begin is not None:
                assert 0 <= begin <= first and begin + b <= row
                assert begin == (first if first + b <= row else row - b)
                assert sym.block_start(start, block, n).subs(
                    {start: first, block: b, n: row}) == begin
            extent = sym.block_extent(first, b, row)
            assert extent == len(range(first, min(first + b, row)))
            assert sym.block_extent(start, block, n).subs(
                {start: first, block: b, n: row}) == extent


def test_output_padding_is_the_one_that_returns_the_size():
    for m, k, s, d, lo, hi in itertools.product(range(1, 12), range(1, 4), range(1, 4), (1, 2),
                                                range(0, 2), range(0, 2)):
        n = sym.conv_output_size(m, k, s, d, lo, hi)
        if n < 1:
            continue
        pad = sym.conv_transpose_output_padding(m, k, s, d, lo, hi)
        assert 0 <= pad < s and sym.conv_transpose_output_size(n, k, s, d, lo, hi, pad) == m
        symbolic = sympy.sympify(sym.conv_transpose_output_padding(N, k, s, d, lo, hi))
        assert symbolic.subs(N, m) == pad


def test_a_transposed_convolution_costs_the_macs_of_its_convolution():
    """The scatter of ConvTranspose(a -> b) is the gather of Conv(b -> a), transposed."""
    for cin, cout, groups, kernel, spatial in [(2, 6, 1, (3, 3), (4, 5)), (4, 6, 2, (2, 3), (3, 3)),
                                               (3, 3, 3, (5,), (7,))]:
        transposed = sym.conv_transpose_macs(2, cin, spatial, cout, groups, kernel)
        assert transposed == sym.conv_macs(2, cin, spatial, cout, groups, kernel)
        assert transposed == 2 * cin * int(np.prod(spatial)) * (cout // groups) \
            * int(np.prod(kernel))


def test_pool_flops_count_the_taps_the_operator_visits():
    """Max: one comparison per tap; LP: a power and an add per tap and a root per output;
    average: an add per tap (the padded ones too when they count) and a divide per output."""
    shape = (2, 5, 7)
    cases = [(convgen.MaxPool2d(2), lambda taps, outs: taps),
             (convgen.LPPool2d(2, 2), lambda taps, outs: 2 * taps + outs),
             (convgen.AdaptiveAvgPool2d((2, 3)), lambda taps, outs: taps + outs),
             (convgen.AvgPool2d(3, stride=2, padding=1, count_include_pad=False),
              lambda taps, outs: 9 * outs + outs)]
    for layer, count in cases:
        taps = len(entries(layer, shape).rows)
        outputs = int(np.prod(layer.output_shape((1, *shape))))
        assert layer.flops((1, *shape)) == count(taps, outputs), layer.describe()


def test_the_c_limits_are_the_lp64_types():
    assert sym.INT_MAX == np.iinfo(np.int32).max
    assert sym.LONG_MAX == np.iinfo(np.int64).max


def _blocked_problems():
    from convgen.lower import lower

    for layer, shape in [(convgen.Conv2d(2, 4, 3, padding=(1, 2)), (2, 9, 37)),
                         (convgen.Conv2d(2, 4, (2, 5), stride=(2, 1), padding=(0, 1),
                                         dilation=(1, 2)), (2, 11, 40)),
                         (convgen.Conv2d(2, 4, (3, 1), stride=(1, 3)), (2, 7, 50)),
                         (convgen.Conv2d(2, 4, (3, 2), dilation=(1, 3), padding=(1, 0)),
                          (2, 7, 40)),
                         (convgen.Conv2d(2, 4, (2, 3), dilation=(3, 1), padding=(0, 1)),
                          (2, 9, 40)),
                         (convgen.Conv2d(2, 4, 3, padding=((2, 0), (0, 1))), (2, 9, 37)),
                         (convgen.Conv2d(2, 4, (3, 2), padding=((0, 1), (2, 0))), (2, 8, 40)),
                         # stride 2: which side is padded decides how many windows fit
                         (convgen.Conv2d(2, 4, 3, stride=2, padding=((1, 0), (0, 1))),
                          (2, 9, 33)),
                         (convgen.Conv2d(2, 4, 3), (2, 30, 10)),  # taller than wide
                         (convgen.Conv2d(4, 6, 1), (4, 3, 10)),
                         (convgen.Conv2d(3, 3, 5, padding=2, groups=3), (3, 6, 6))]:
        for dtype in ("float32", "float64"):
            yield layer, lower(layer, shape, dtype)


def test_blocked_coverage_counts_the_outputs_whole_register_blocks_hold():
    """The outputs the blocked schedule computes in whole register blocks: rows whose taps
    all read the input, times the columns whose taps all do, in whole vectors, counted here
    tap by tap (a 1x1 convolution's plane is one row)."""
    from convgen.schedules import conv_blocked, tuning

    for layer, problem in _blocked_problems():
        (_, *sizes), (_, *outs) = problem.sample, problem.out
        pads = problem.padding
        if conv_blocked.pointwise(problem):
            sizes, outs, pads = [1, sizes[0] * sizes[1]], [1, outs[0] * outs[1]], ((0, 0),) * 2
        inside = [sum(all(0 <= sym.tap_index(o, j, s, d, lo) < n for j in range(k))
                      for o in range(m))
                  for n, m, k, s, d, (lo, _) in zip(sizes, outs, layer.kernel_size,
                                                    layer.stride, layer.dilation, pads)]
        owb = tuning.lanes(problem.dtype)
        assert conv_blocked.coverage(problem) == (inside[0] * (inside[1] // owb * owb),
                                                  outs[0] * outs[1]), layer.describe()


def test_a_1x1_convolution_runs_as_a_gemm_over_its_plane_and_nothing_else_does():
    """The blocked and packed schedules view a 1x1 convolution with stride 1 and no padding
    as one row of H*W columns (the reports say so); any other layer keeps its plane."""
    from convgen.lower import lower
    from convgen.schedules import conv_blocked

    gemm = [(convgen.Conv2d(4, 6, 1), (4, 3, 10)), (convgen.Conv2d(2, 16, 1), (2, 5, 5))]
    planes = [(convgen.Conv2d(2, 4, (2, 1)), (2, 5, 7)), (convgen.Conv2d(2, 4, (1, 2)), (2, 5, 7)),
              (convgen.Conv2d(2, 4, 1, stride=(2, 1)), (2, 6, 7)),
              (convgen.Conv2d(2, 4, 1, stride=(1, 2)), (2, 6, 7)),
              (convgen.Conv2d(2, 4, 1, padding=((1, 0), (0, 0))), (2, 4, 5)),
              (convgen.Conv2d(2, 4, 1, padding=((0, 0), (0, 1))), (2, 4, 5)),
              (convgen.Conv1d(2, 4, 1), (2, 9))]
    for layer, shape in gemm + planes:
        problem = lower(layer, shape, "float32")
        flat = (layer, shape) in gemm
        assert conv_blocked.pointwise(problem) == flat, layer.describe()
        sample, out = conv_blocked.view(problem)
        if flat:
            assert sample == (shape[0], 1, shape[1] * shape[2])
            assert out == (layer.out_channels, 1, shape[1] * shape[2])
            kernel = convgen.codegen.generate(layer, shape)
            assert "(1x1: the plane as one row, a GEMM)" in kernel.schedule_reason
        else:
            assert (sample, out) == (problem.sample, problem.out)


def test_the_winograd_workspace_comment_is_the_stack_arrays_it_declares():
    """"Workspace: N KiB on the stack of each thread": the transform arrays U, V and M and
    the padded rows d that the kernel declares, counted from its own declarations."""
    import re

    from convgen.lower import lower
    from convgen.schedules import applicable

    checked = 0
    # the last two: workspaces just past a whole KiB (111,648 and 152,608 bytes in float32),
    # where a figure a few bytes off, or divided by a few too many, shows
    for cin, cout, shape in [(3, 8, (7, 9)), (1, 16, (6, 30)), (5, 12, (9, 17)), (8, 8, (4, 4)),
                             (2, 24, (12, 70)), (16, 16, (8, 40)), (7, 40, (5, 11)),
                             (16, 8, (4, 130)), (16, 16, (4, 130))]:
        layer = convgen.Conv2d(cin, cout, 3, padding=1)
        for dtype, size in (("float32", 4), ("float64", 8)):
            if applicable(lower(layer, (cin, *shape), dtype), "c")["winograd"] is not None:
                continue
            source = convgen.codegen.generate(layer, (cin, *shape), dtype,
                                              schedule="winograd").source
            ctype = "float" if dtype == "float32" else "double"
            declared = {name: int(a) * int(b or 1) for name, a, b in re.findall(
                rf"\b{ctype} ([UVMd])\[(\d+)\](?:\[(\d+)\])?;", source)}
            assert set(declared) == {"U", "V", "M", "d"}, declared
            stated = int(re.search(r"Workspace: (\d+) KiB", source).group(1))
            assert stated == -(-sum(declared.values()) * size // 1024), (layer, shape, dtype)
            checked += 1
    assert checked >= 10


def _staged(tile, layer) -> int:
    """Input elements a CUDA tile stages: the tile's windows, axis by axis."""
    return int(np.prod([(t - 1) * s + (k - 1) * d + 1 for t, k, s, d in
                        zip(tile, layer.kernel_size, layer.stride, layer.dilation)]))


def _cuda_tile_problems():
    from convgen.lower import lower

    layers = [(convgen.Conv1d(2, 20, 9, dilation=3), (2, 400)),
              (convgen.Conv1d(1, 1, 1), (1, 5))]
    for k, d, s, cout in itertools.product((1, 3, 9, 31, 47), (1, 4), (1, 2), (1, 2, 20)):
        extent = (k - 1) * d + 1
        layers += [(convgen.Conv2d(2, cout, k, stride=s, dilation=d),
                    (2, extent + 40, extent + 3)),
                   (convgen.Conv2d(1, cout, k, stride=s, dilation=d),
                    (1, extent + 60, extent + 6))]
    # taps that crowd out the halo: one output channel at most fits, or none does
    layers += [(convgen.Conv3d(1, 8, 13), (1, 13, 13, 13)),
               (convgen.Conv3d(1, 1, 15), (1, 15, 15, 15)),
               (convgen.Conv3d(1, 8, 3), (1, 9, 10, 12)),
               (convgen.Conv3d(1, 3, 11), (1, 11, 12, 20)),
               # a tile of 32 positions whose staged input and taps are exactly the limit
               (convgen.Conv1d(1, 1, 4086, dilation=2), (1, 8202)),
               # fits only with the widest axis halved once; only with one channel
               (convgen.Conv2d(1, 1, 46, dilation=2), (1, 98, 106)),
               (convgen.Conv1d(1, 2, 1500, dilation=7), (1, 10525))]
    for layer, shape in layers:
        for dtype in ("float32", "float64"):
            yield layer, lower(layer, shape, dtype)


def test_a_cuda_tile_fits_in_shared_memory_and_is_refused_only_where_none_fits():
    """cuda_tiled.tile_shape: a tile inside the output of at least min(CUDA_MIN_THREADS,
    the plane's positions) positions, a block of 1 .. CUDA_OC_BLOCK output channels, and the
    shared bytes of the staged input and taps, counted here, within the limit; ``None`` only
    where no tile of that many positions fits even with one channel (searched tile by tile),
    or where the output clips the starting tile (CUDA_TILES) below that many.
    The tiled schedule applies exactly where a tile is chosen and the grid holds it."""
    from convgen import isa
    from convgen.schedules import cuda_tiled, tuning

    chosen = refused = 0
    for layer, problem in _cuda_tile_problems():
        out, size = problem.out_spatial, problem.size
        taps, least = int(np.prod(layer.kernel_size)), min(tuning.CUDA_MIN_THREADS,
                                                           int(np.prod(out)))
        picked = cuda_tiled.tile_shape(problem)
        start = [min(t, m) for t, m in zip(tuning.CUDA_TILES[layer.ndim], out)]
        if picked is None and np.prod(start) < least:
            refused += 1  # the output clips the starting tile below that: stated, refused
            continue
        if picked is None:
            fitting = [tile for tile in itertools.product(*[range(1, m + 1) for m in out])
                       if np.prod(tile) >= least and
                       (_staged(tile, layer) + taps) * size <= isa.CUDA_SHARED_LIMIT]
            assert not fitting, (layer.describe(), problem.dtype, fitting[:1])
            assert cuda_tiled.applies(problem) is not None
            refused += 1
            continue
        tile, oc_block, shared = picked
        assert len(tile) == len(out) and all(1 <= t <= m for t, m in zip(tile, out))
        assert np.prod(tile) >= least, (layer.describe(), tile)
        assert 1 <= oc_block <= min(tuning.CUDA_OC_BLOCK, problem.cg_out), oc_block
        assert shared == (_staged(tile, layer) + oc_block * taps) * size
        assert shared <= isa.CUDA_SHARED_LIMIT, (layer.describe(), tile, oc_block)
        assert cuda_tiled.applies(problem) is None
        chosen += 1
    assert chosen >= 60 and refused >= 10, (chosen, refused)


def test_a_cuda_tile_too_big_halves_its_widest_axis_rounding_up():
    """tile_shape's policy, worked through: Conv2d(1, 1, 46, dilation=2) stages the tile's
    rows and columns plus 90 of halo each, and 46 x 46 taps.  On a 98 x 106 input (an 8 x
    16 output) and a 98 x 105 one (8 x 15) the whole output as one tile overruns the shared
    memory, so its widest axis halves, rounding up (16 and 15 both to 8), and 8 x 8 fits."""
    from convgen import isa
    from convgen.lower import lower
    from convgen.schedules import cuda_tiled

    layer = convgen.Conv2d(1, 1, 46, dilation=2)
    taps = 46 * 46
    for shape, start in (((1, 98, 106), (8, 16)), ((1, 98, 105), (8, 15))):
        problem = lower(layer, shape, "float32")
        assert problem.out_spatial == start
        assert (_staged(start, layer) + taps) * 4 > isa.CUDA_SHARED_LIMIT
        tile, oc_block, shared = cuda_tiled.tile_shape(problem)
        assert (tile, oc_block) == ((8, 8), 1), (shape, tile, oc_block)
        assert shared == (_staged(tile, layer) + taps) * 4 <= isa.CUDA_SHARED_LIMIT


def test_the_cuda_tiled_grid_holds_exactly_the_most_channel_blocks():
    """The tiled launch puts a block of output channels on the grid's y axis, which holds
    CUDA_MAX_GRID_Z blocks: a depthwise layer of exactly that many channels (one block each)
    takes the tiled schedule, one more channel does not.  Only sizes are computed."""
    from convgen import isa
    from convgen.lower import lower
    from convgen.schedules import cuda_tiled

    for channels, refused in ((isa.CUDA_MAX_GRID_Z, False), (isa.CUDA_MAX_GRID_Z + 1, True)):
        layer = convgen.Conv1d(channels, channels, 1, groups=channels)
        problem = lower(layer, (channels, 128), "float32")
        assert cuda_tiled.tile_shape(problem)[1] == 1
        assert (cuda_tiled.applies(problem) is not None) == refused, channels


def test_the_cuda_direct_grid_limit_is_met_exactly():
    """A launch's grid x axis holds at most CUDA_MAX_GRID_X blocks: the direct schedule takes
    a sample of exactly that many blocks of outputs and refuses one more output.  Only sizes
    are computed: nothing is allocated."""
    from convgen import isa
    from convgen.lower import lower
    from convgen.schedules import cuda_direct, tuning

    threads, length = tuning.CUDA_DIRECT_BLOCK, isa.CUDA_MAX_GRID_X
    for channels, blocks in ((threads, isa.CUDA_MAX_GRID_X), (threads + 1, None)):
        problem = lower(convgen.MaxPool1d(1), (channels, length), "float32")
        assert cuda_direct.block(problem)[0] == threads
        if blocks:
            assert cuda_direct.block(problem)[1] == blocks
            assert cuda_direct.applies(problem) is None
        else:
            assert cuda_direct.block(problem)[1] > isa.CUDA_MAX_GRID_X
            assert "blocks of 256 threads" in cuda_direct.applies(problem)


def test_the_winograd_block_is_the_most_vectors_whose_weights_fit_the_budget():
    """A Winograd block holds the transformed weights of its output channels: 16 matrices of
    cg_in x (vectors x lanes) values.  conv_winograd.blocks takes the most vectors, up to
    PACKED_VECTORS, within WINOGRAD_BYTES (searched here), and refuses a layer where even one
    vector does not fit, naming the largest input channel count that would."""
    from convgen.lower import lower
    from convgen.schedules import conv_packed, conv_winograd, tuning

    for dtype in ("float32", "float64"):
        lanes, size = tuning.lanes(dtype), np.dtype(dtype).itemsize
        limit = tuning.WINOGRAD_BYTES // (16 * lanes * size)
        cout = 2 * tuning.PACKED_VECTORS * lanes
        for cin in sorted({1, 3, *[limit // m + e for m in range(1, tuning.PACKED_VECTORS + 1)
                                   for e in (0, 1)]}):
            problem = lower(convgen.Conv2d(cin, cout, 3, padding=1), (cin, 4, 4), dtype)
            fits = [m for m in range(1, tuning.PACKED_VECTORS + 1)
                    if 16 * cin * m * lanes * size <= tuning.WINOGRAD_BYTES]
            if fits:
                assert conv_winograd.blocks(problem) == conv_packed.blocks(cout, lanes,
                                                                           max(fits)), cin
                assert conv_packed.blocks(cout, lanes, max(fits))[0] == max(fits)
                assert conv_winograd.applies(problem) is None
            else:
                assert conv_winograd.blocks(problem) is None, cin
                assert f"past {limit} input channels a group" in conv_winograd.applies(problem)


def test_packed_chunks_take_every_input_channel_once_within_the_pack_budget(monkeypatch):
    """The packed schedule packs the weights of icb input channels at a time: chunks of them
    cover the group's channels (the last one possibly short, never empty), a chunk's packed
    weights fit in PACK_BYTES unless one channel alone exceeds it (then one channel a
    chunk), and no fewer chunks would do (searched here)."""
    from convgen.lower import lower
    from convgen.schedules import conv_packed, tuning

    with monkeypatch.context() as patch:  # a budget below one channel's packed weights
        patch.setattr(tuning, "PACK_BYTES", 64)
        packed = conv_packed.build(lower(convgen.Conv2d(3, 8, 3), (3, 4, 5))).context.packed
        assert (packed.icb, packed.chunks) == (1, 3)

    checked = 0
    for cin, k, cout in itertools.product((1, 3, 40, 113, 114, 200, 227, 300, 513),
                                          (1, 3, 5), (4, 16, 40)):
        for dtype in ("float32", "float64"):
            layer = convgen.Conv2d(cin, cout, k)
            problem = lower(layer, (cin, k + 1, k + 2), dtype)
            packed = conv_packed.build(problem).context.packed
            icb, chunks = packed.icb, packed.chunks
            per = k * k * packed.ocv * packed.lanes * packed.size  # one channel's bytes
            assert (chunks - 1) * icb < cin <= chunks * icb, (cin, k, cout, dtype)
            assert icb * per <= tuning.PACK_BYTES or icb == 1, (cin, k, cout, dtype)
            fewest = next(c for c in range(1, cin + 1)
                          if -(-cin // c) * per <= tuning.PACK_BYTES or c == cin)
            assert chunks == fewest, (cin, k, cout, dtype, chunks, fewest)
            checked += chunks > 1
    assert checked >= 20
    # the kernel states the budget it was packed to
    source = convgen.codegen.generate(convgen.Conv2d(300, 16, 3), (300, 4, 5),
                                      schedule="packed").source
    assert f"chunks of at most {tuning.PACK_BYTES // 1024} KiB" in source


def test_the_register_transpose_puts_every_element_in_its_place():
    """The blocked global pools transpose lanes x lanes registers with
    __builtin_shufflevector: interpret its statements here (a shuffle picks lanes of its two
    operands, concatenated; -1 is a lane left undefined) and check that t[j] holds element j
    of every row, each exactly once."""
    import re

    from convgen.schedules.adaptive_blocked import transpose

    statement = re.compile(r"^(?:const \{vec\} )?(\S+) = __builtin_shufflevector\((\S+), (\S+), "
                           r"([-\d, ]+)\);$")
    for lanes in (4, 8):
        registers = {f"r[{i}]": [(i, j) for j in range(lanes)] for i in range(lanes)}
        for line in transpose(lanes):
            target, a, b, picks = statement.match(line).groups()
            both = registers[a] + registers[b]
            registers[target] = [both[int(p)] if int(p) >= 0 else None
                                 for p in picks.split(",")]
        for j in range(lanes):
            assert registers[f"t[{j}]"] == [(i, j) for i in range(lanes)], (lanes, j)


def test_a_direct_cuda_block_is_the_fewest_whole_warps_that_cover_a_sample():
    """One thread an output: a block is a whole number of 32-thread warps, the fewest that
    cover a sample's outputs, at most CUDA_DIRECT_BLOCK; the grid, enough blocks for all."""
    from convgen.lower import lower
    from convgen.schedules import cuda_direct, tuning

    for channels, width in itertools.product((1, 2, 3, 7), (1, 5, 16, 31, 32, 33, 100)):
        problem = lower(convgen.MaxPool1d(1), (channels, width), "float32")
        outputs = channels * width
        threads, blocks = cuda_direct.block(problem)
        warps = next(w for w in itertools.count(1)
                     if 32 * w >= outputs or 32 * w == tuning.CUDA_DIRECT_BLOCK)
        assert threads == 32 * warps, (channels, width, threads)
        assert (blocks - 1) * threads < outputs <= blocks * threads, (channels, width, blocks)


def test_same_padding_of_a_transposed_convolution_gives_n_times_stride():
    """ONNX's auto_pad SAME_UPPER / SAME_LOWER for ConvTranspose: the output is input x
    stride, whatever the output_padding; the odd unit of padding goes at the end (UPPER) or
    the start (LOWER)."""
    for n, k, s, d, op in itertools.product(range(1, 5), range(1, 5), range(1, 4), (1, 2),
                                            range(0, 3)):
        if op >= max(s, d) or sym.conv_transpose_same_total(k, s, d, op) < 0:
            continue
        for lower in (False, True):
            lo, hi = sym.conv_transpose_same_padding(k, s, d, op, lower)
            assert min(lo, hi) >= 0 and (hi - lo if not lower else lo - hi) in (0, 1)
            assert sym.conv_transpose_output_size(n, k, s, d, lo, hi, op) == n * s, \
                (n, k, s, d, op, lower)


def test_lp_powers_up_to_16_are_products_and_larger_ones_call_pow():
    """An LP pool's p-th power is printed as p products up to p = 16 (exact on small
    integers, whatever the libm), as one powf/pow call beyond."""
    import re

    for p, dtype, call in [(2, "float32", "powf"), (16, "float32", "powf"), (17, "float32", "powf"),
                           (16, "float64", "pow"), (17, "float64", "pow")]:
        source = convgen.codegen.generate(convgen.LPPool2d(p, 2), (1, 4, 4), dtype).source
        power = re.search(r"acc \+= ([^;]*);", source).group(1)
        if p <= 16:
            assert power == " * ".join(["a"] * p), (p, dtype, power)
        else:
            assert re.fullmatch(rf"{call}\(a, {p}\.0f?\)", power), (p, dtype, power)


def test_gcd_with_a_number_is_one_branch_per_residue_up_to_64_residues():
    """z3 has no gcd: symbolic.gcd(a, b) with b a number of at most 64 rewrites to one
    Piecewise branch per residue of a mod b (each branch the gcd of that residue, checked
    here for every residue), and is left alone past 64."""
    for b in (0, 1, 2, 6, 63, 64):  # 0: no residues, nothing to rewrite; gcd(a, 0) is a
        rewritten = sym.gcd(N, b).rewrite(sympy.Piecewise)
        for a in range(1, 2 * b + 6):
            assert rewritten.subs(N, a) == np.gcd(a, b), (a, b)
    assert sym.gcd(N, 65).rewrite(sympy.Piecewise) == sym.gcd(N, 65)
    assert isinstance(sym.gcd(N, 64).rewrite(sympy.Piecewise), sympy.Piecewise)


def test_gcd_evaluates_where_either_side_is_one_and_otherwise_waits_for_numbers():
    """gcd(a, 1) = gcd(1, a) = 1 for any a; with any other number on one side and a
    symbol on the other it stays unevaluated, and substituting gives math.gcd (0 and 2
    included: gcd(0, a) = a, gcd(2, a) is 1 or 2)."""
    assert sym.gcd(N, 1) == 1 and sym.gcd(1, N) == 1
    for number in (0, 2, 6):
        for pair in ((N, number), (number, N)):
            value = sym.gcd(*pair)
            assert isinstance(value, sym.gcd), pair
            for a in range(1, 13):
                assert value.subs(N, a) == np.gcd(a, number), (pair, a)


def test_kernels_split_into_many_tasks_blocks_and_chunks_compute_the_operator(monkeypatch):
    """The packed and Winograd schedules split work into tasks of rows, blocks of tiles and
    chunks of input channels only past thousands of outputs, or past the packing budget.
    With those budgets made tiny, a small layer splits into all of them, the last ones
    partial, and a block of tiles starts inside the left padding (5 columns): each kernel
    must still compute the operator exactly (convgen.verify's criteria, small integers)."""
    from convgen.codegen import generate
    from convgen.runtime.cbuild import Kernel, build_modules
    from convgen.schedules import conv_packed, conv_winograd, tuning
    from convgen.verify import check_kernel

    monkeypatch.setattr(tuning, "PACKED_COLUMNS_PER_TASK", 7)  # one row (13 columns) a task
    monkeypatch.setattr(tuning, "WINOGRAD_TILES_PER_TASK", 2)  # one row of 7 tiles a task
    monkeypatch.setattr(tuning, "WINOGRAD_TILE_BYTES", 16 * 3 * 4 * 2)  # blocks of 2, 2, 2, 1
    layer, shape = convgen.Conv2d(3, 8, 3, padding=((1, 0), (5, 2))), (3, 5, 8)
    lanes = tuning.lanes("float32")
    monkeypatch.setattr(tuning, "PACK_BYTES", 2 * 9 * lanes * 4)  # 2 input channels a chunk
    wanted = {"packed": dict(tasks=4, chunks=2, icb=2), "winograd": dict(tasks=2, tblocks=4)}
    for schedule, want in wanted.items():
        kernel = generate(layer, shape, schedule=schedule, name=f"split_{schedule}")
        build = conv_packed.build if schedule == "packed" else conv_winograd.build
        context = build(kernel.problem).context
        params = context.packed if schedule == "packed" else context.wino
        assert {f: getattr(params, f) for f in want} == want, schedule
        outcome = check_kernel(Kernel(kernel, build_modules([kernel])), cases=2, seed=0,
                               batch=2)
        assert outcome.passed, (schedule, outcome.detail)


def test_winograd_applies_from_two_output_channels_a_group():
    """The Winograd schedule's stated scope (its applies docstring and refusal): 3x3,
    stride 1, undilated, zero-padded 2-D float convolutions with at least 2 output channels
    a group; one output channel a group is refused, two are taken."""
    from convgen.lower import lower
    from convgen.schedules import conv_winograd

    def verdict(c_out, groups=1):
        layer = convgen.Conv2d(2 * groups, c_out, 3, padding=1, groups=groups)
        return conv_winograd.applies(lower(layer, (2 * groups, 6, 6), "float32"))

    assert "at least 2 output channels" in verdict(1)
    assert "at least 2 output channels" in verdict(2, groups=2)
    assert verdict(2) is None and verdict(4, groups=2) is None


def test_the_blocked_pool_applies_where_a_row_holds_a_vector_of_interior_outputs():
    """The blocked pool's stated scope: column stride 1 and at least one vector of interior
    outputs a row (outputs whose every tap lies inside the input, counted here window by
    window).  Pools straddling that limit, with rows and columns that differ (padding on
    one axis, taller than wide), are taken or refused by it."""
    from convgen.lower import lower
    from convgen.schedules import pool_blocked, tuning

    lanes = tuning.lanes("float32")
    seen = set()
    for width in range(lanes - 1, lanes + 5):
        for pads in ((0, 0), (1, 0), (0, 1), (1, 1)):
            layer = convgen.AvgPool2d(3, stride=1, padding=pads)
            problem = lower(layer, (2, 9, width), "float32")
            interior = sum(all(0 <= o - pads[1] + k < width for k in range(3))
                           for o in range(problem.out_spatial[1]))
            takes = pool_blocked.applies(problem) is None
            assert takes == (interior >= lanes), (width, pads, interior)
            seen.add(takes)
    assert seen == {True, False}
