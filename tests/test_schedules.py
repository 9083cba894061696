"""The fast C schedules (blocked, packed, and the mcu profile's scalar): against the exact
oracle, against the reference schedule bit for bit (packed: without FMA; with FMA within the
dot-product error bound), in bounds (z3), under the sanitizers, on targets without AVX-512 or
AVX, and as the default where they pay."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import codegen
from convgen.bench import SUITE
from convgen.bounds import prove_bounds
from convgen.reference import forward
from convgen.runtime.cbuild import compile_kernels
from convgen.strategies import (
    blocked_adaptive_pools,
    blocked_convs,
    blocked_pools,
    winograd_convs,
    with_specials,
)
from convgen.verify import check_kernel
from tests.conftest import BULK, BULK_EXAMPLES
from tests.helpers import compile_strict, needs_compiler
from tests.test_sanitizers import assert_clean_under_sanitizers

FAST = ["blocked", "packed", "scalar"]


@pytest.mark.parametrize("schedule", FAST)
@settings(max_examples=max(3, BULK_EXAMPLES // 12))
@given(cases=st.lists(blocked_convs(), min_size=max(1, BULK // 2), max_size=BULK),
       dtype=st.sampled_from(["float32", "float64"]))
def test_fast_schedule_matches_the_exact_oracle(schedule, cases, dtype):
    items = [(layer, shape, f"b{i}") for i, (layer, shape) in enumerate(cases)]
    kernels = compile_kernels(items, dtype=dtype, schedule=schedule)
    assert all(k.generated.schedule == schedule for k in kernels)
    outcomes = [check_kernel(k, cases=1, seed=i) for i, k in enumerate(kernels)]
    failures = [(o, case) for o, case in zip(outcomes, cases) if not o.passed]
    assert not failures, failures[0]


@pytest.mark.parametrize("schedule", FAST)
@settings(max_examples=max(5, BULK_EXAMPLES // 2))
@given(case=blocked_convs(), dtype=st.sampled_from(["float32", "float64"]))
def test_fast_schedule_is_proved_in_bounds(schedule, case, dtype):
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype, schedule=schedule)
    results = prove_bounds(kernel)
    assert all(r.status == "proved" for r in results), [r for r in results
                                                        if r.status != "proved"][0]


def _real_data(layer, shape, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *shape)).astype(dtype)
    w = rng.standard_normal(layer.weight_shape).astype(dtype)
    b = [rng.standard_normal(layer.out_channels).astype(dtype)] if layer.bias else []
    return x, w, b


@pytest.mark.parametrize("schedule, flags", [
    ("blocked", ("-O3", "-march=native")),
    ("scalar", ("-O3", "-march=native")),
    ("packed", ("-O3", "-march=native", "-mno-fma")),  # FMA rounds once: see the next test
])
@settings(max_examples=10)
@given(case=blocked_convs(), seed=st.integers(0, 2**16))
def test_fast_schedule_equals_reference_bit_for_bit_on_real_data(schedule, flags, case, seed):
    """Same products, same order, no contraction under the strict flags: identical floats."""
    layer, shape = case
    fast, reference = [compile_kernels([(layer, shape, f"k_{s}")], schedule=s, flags=f)[0]
                       for s, f in ((schedule, flags), ("reference", flags))]
    x, w, b = _real_data(layer, shape, seed)
    assert np.array_equal(fast(x, w, *b), reference(x, w, *b))


@pytest.mark.parametrize("layer, shape", [
    (convgen.Conv2d(1, 6, 5), (1, 32, 32)),                          # LeNet C1: 28 columns
    (convgen.Conv2d(2, 3, 3, padding=1, stride=(1, 2)), (2, 7, 41)),  # 21, padded borders
    (convgen.Conv2d(4, 4, 3, padding=(0, 2), groups=2), (4, 5, 11)),  # 13, both paths
])
def test_the_last_vector_of_a_row_overlaps_and_stays_bit_for_bit(layer, shape):
    """A row whose width is no multiple of the vector ends with a vector that overlaps the
    one before (no vector past the output); the overlapped columns are computed twice the
    same way, so the result is still the reference's, bit for bit, and proved in bounds."""
    kernel = codegen.generate(layer, shape, schedule="blocked", name="k")
    width, lanes = kernel.output_shape[2], 8
    assert width % lanes and f"(({width - lanes}) < (" in kernel.source
    assert all(r.status == "proved" for r in prove_bounds(kernel))
    flags = ("-O3", "-march=native")
    fast, reference = [compile_kernels([(layer, shape, f"k_{s}")], schedule=s, flags=flags)[0]
                       for s in ("blocked", "reference")]
    x, w, b = _real_data(layer, shape, 7)
    assert np.array_equal(fast(x, w, *b), reference(x, w, *b))


@settings(max_examples=10)
@given(case=blocked_convs(), seed=st.integers(0, 2**16))
def test_packed_with_fma_is_within_the_dot_product_error_bound(case, seed):
    """Recursive summation of K terms, the products fused or not, errs by at most
    gamma_K * sum|terms| with gamma_K = K u / (1 - K u), u = 2**-24 (Higham, Accuracy and
    Stability of Numerical Algorithms, 2nd ed., section 3.1).  The reference sum is taken in
    float64 (float32 products are exact there), whose own error gamma_K(2**-53) is added."""
    layer, shape = case
    packed = compile_kernels([(layer, shape, "k_fma")], schedule="packed")[0]
    x, w, b = _real_data(layer, shape, seed)
    got = packed(x, w, *b).astype(np.float64)
    wide = forward(layer, x, w, *b)  # float64
    magnitude = forward(layer, np.abs(x), np.abs(w), *[np.abs(a) for a in b])
    terms = (shape[0] // layer.groups) * int(np.prod(layer.kernel_size)) + 1

    def gamma(unit):
        return terms * unit / (1 - terms * unit)

    bound = (gamma(2.0**-24) + 2 * gamma(2.0**-53)) * magnitude
    assert np.all(np.abs(got - wide) <= bound), np.max(np.abs(got - wide) - bound)


def test_default_schedule_is_chosen_and_recorded():
    for name, layer, shape in SUITE:
        kernel = codegen.generate(layer, shape)
        expected = {"conv3_3x128x128": "packed", "resnet_3x3": "packed", "stem_7x7s2": "packed",
                    "pointwise_1x1": "packed", "lenet_conv1": "blocked",
                    "conv5_3x32x32": "blocked", "depthwise_3x3": "blocked",
                    "avgpool_3x3s1p1": "blocked", "global_avgpool": "blocked"}.get(
                        name, "reference")
        assert kernel.schedule == expected, (name, kernel.schedule_reason)
        assert kernel.schedule_reason
    pointwise = codegen.generate(convgen.Conv2d(128, 256, 1), (128, 28, 28))
    assert "1x1: the plane as one row" in pointwise.schedule_reason
    reflect = codegen.generate(convgen.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
                               (2, 9, 9))
    assert reflect.schedule == "reference" and "reflect padding" in reflect.schedule_reason
    with pytest.raises(convgen.SpecError, match="schedule='blocked' does not apply to MaxPool2d.*: "
                       "the blocked pool schedule covers 2-D float av"):
        codegen.generate(convgen.MaxPool2d(2), (1, 4, 4), schedule="blocked")
    with pytest.raises(convgen.SpecError,
                       match="schedule='packed' has no pool kernel on target 'c'"):
        codegen.generate(convgen.MaxPool2d(2), (1, 4, 4), schedule="packed")
    with pytest.raises(convgen.SpecError, match="schedule='fast' must be 'auto' or one of"):
        codegen.generate(convgen.Conv2d(1, 1, 3), (1, 4, 4), schedule="fast")


def test_an_explicit_non_default_schedule_gets_its_own_name():
    layer = convgen.Conv2d(4, 8, 3, padding=1)
    auto = codegen.generate(layer, (4, 32, 32))
    other = codegen.generate(layer, (4, 32, 32), schedule="reference")
    assert auto.schedule == "packed" and other.name == auto.name + "_reference"


@pytest.mark.parametrize("layer, shape, dtype", [
    (convgen.Conv2d(3, 16, 3, padding=1), (3, 13, 21), "float32"),
    (convgen.Conv2d(4, 6, (3, 2), stride=(2, 3), dilation=(1, 2), padding=((2, 0), (1, 1)),
                    groups=2), (4, 11, 29), "float64"),
    (convgen.Conv2d(8, 8, 1), (8, 5, 7), "float32"),
])
@pytest.mark.parametrize("schedule", FAST)
def test_fast_kernels_are_clean_under_the_sanitizers(schedule, layer, shape, dtype, tmp_path):
    kernel = codegen.generate(layer, shape, dtype=dtype, name="k", schedule=schedule)
    assert_clean_under_sanitizers(kernel, tmp_path)


@pytest.mark.parametrize("schedule", FAST)
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_fast_kernels_compile_clean_under_strict_flags(compiler, schedule, tmp_path):
    needs_compiler(compiler)
    for dtype in ("float32", "float64"):
        kernel = codegen.generate(convgen.Conv2d(4, 40, 3, stride=2, padding=1), (4, 17, 33),
                                  dtype=dtype, name="k", schedule=schedule)
        compile_strict(compiler, kernel, tmp_path, ([], ["-fopenmp"], ["-mavx2", "-mfma"],
                                                     ["-mavx512f", "-mfma"], ["-mno-avx"]))


@pytest.mark.parametrize("flags", [
    ("-O2", "-mavx2", "-mfma"),  # 16 vector registers: the narrower register block, FMA
    ("-O2", "-mno-avx"),  # SSE only: each 32-byte vector is two registers, no FMA
    ("-O2", "-march=native", "-mno-avx512f"),
])
@pytest.mark.parametrize("schedule", FAST)
def test_fast_schedules_are_exact_on_targets_without_avx512_or_avx(schedule, flags):
    cases = [(convgen.Conv2d(6, 40, 3, padding=1, bias=True), (6, 9, 13)),
             (convgen.Conv2d(4, 12, (2, 3), stride=(1, 2), dilation=(2, 1), padding=(1, 2),
                             groups=2), (4, 8, 19)),
             (convgen.Conv2d(8, 16, 1), (8, 5, 7))]
    for dtype in ("float32", "float64"):
        items = [(layer, shape, f"t{i}") for i, (layer, shape) in enumerate(cases)]
        kernels = compile_kernels(items, dtype=dtype, schedule=schedule, flags=flags)
        for i, kernel in enumerate(kernels):
            outcome = check_kernel(kernel, cases=1, seed=i)
            assert outcome.passed, (flags, outcome)


def test_packed_weights_are_chunked_over_input_channels_and_stay_exact():
    """A block's packed weights over 128 KiB split the input channels into chunks; the sums
    so far wait in y between chunks."""
    layer = convgen.Conv2d(300, 40, 3, padding=1, bias=True)
    kernel = codegen.generate(layer, (300, 6, 11), schedule="packed")
    # 2 blocks of 24 channels: 300 * 9 * 24 * 4 B = 253 KiB of packed weights a block
    assert "(2 chunks of at most" in kernel.source
    assert all(r.status == "proved" for r in prove_bounds(kernel))
    built = compile_kernels([(layer, (300, 6, 11), "chunked")], schedule="packed")[0]
    assert check_kernel(built, cases=1).passed


def _same_bits_or_both_nan(a, b) -> bool:
    """Equal bit for bit (so +0 and -0 differ) except that any NaN matches any NaN: which
    operand's NaN an addition propagates is up to the compiler (x86 keeps the first, and
    the compiler may swap the operands of a commutative +)."""
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and
                np.array_equal(a[~nan].view(np.int32), b[~nan].view(np.int32)))


@settings(max_examples=max(3, BULK_EXAMPLES // 12))
@given(cases=st.lists(blocked_pools(), min_size=max(1, BULK // 2), max_size=BULK),
       dtype=st.sampled_from(["float32", "float64"]))
def test_blocked_pools_match_the_exact_oracle(cases, dtype):
    items = [(layer, shape, f"p{i}") for i, (layer, shape) in enumerate(cases)]
    kernels = compile_kernels(items, dtype=dtype, schedule="blocked")
    outcomes = [check_kernel(k, cases=1, seed=i) for i, k in enumerate(kernels)]
    failures = [(o, case) for o, case in zip(outcomes, cases) if not o.passed]
    assert not failures, failures[0]


@settings(max_examples=10)
@given(case=blocked_pools(), seed=st.integers(0, 2**16))
def test_blocked_pools_equal_reference_bit_for_bit_with_nans_and_signed_zeros(case, seed):
    layer, shape = case
    rng = np.random.default_rng(seed)
    x = with_specials(rng.standard_normal((2, *shape)).astype(np.float32), rng)
    blocked, reference = [compile_kernels([(layer, shape, f"pool_{s}")], schedule=s)[0]
                          for s in ("blocked", "reference")]
    assert _same_bits_or_both_nan(blocked(x), reference(x))


@settings(max_examples=max(5, BULK_EXAMPLES // 2))
@given(case=blocked_pools(), dtype=st.sampled_from(["float32", "float64"]))
def test_blocked_pools_are_proved_in_bounds(case, dtype):
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype, schedule="blocked")
    results = prove_bounds(kernel)
    assert all(r.status == "proved" for r in results), [r for r in results
                                                        if r.status != "proved"][0]


@pytest.mark.parametrize("layer, shape, dtype", [
    (convgen.AvgPool2d(3, 1, 1), (3, 9, 21), "float32"),
    (convgen.AvgPool2d((3, 2), (2, 1), (1, 1), ceil_mode=True, count_include_pad=False),
     (2, 10, 19), "float64"),
    (convgen.MaxPool2d((2, 3), (1, 1), (1, 1), dilation=(2, 1)), (2, 8, 23), "float32"),
])
def test_blocked_pools_are_clean_under_the_sanitizers(layer, shape, dtype, tmp_path):
    kernel = codegen.generate(layer, shape, dtype=dtype, name="k", schedule="blocked")
    assert kernel.schedule == "blocked"
    assert_clean_under_sanitizers(kernel, tmp_path)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_blocked_pools_compile_clean_under_strict_flags(compiler, tmp_path):
    """Window pools and adaptive pools alike."""
    needs_compiler(compiler)
    for layer in (convgen.AvgPool2d(3, (2, 1), 1, count_include_pad=False),
                  convgen.MaxPool2d(3, (1, 1), 1), convgen.GlobalAvgPool(),
                  convgen.AdaptiveMaxPool2d((4, 3))):
        for dtype in ("float32", "float64"):
            kernel = codegen.generate(layer, (9, 9, 30), dtype=dtype, name="k",
                                      schedule="blocked")
            compile_strict(compiler, kernel, tmp_path,
                            ([], ["-fopenmp"], ["-mavx2"], ["-mno-avx"]))


@settings(max_examples=max(2, BULK_EXAMPLES // 12))
@given(cases=st.lists(winograd_convs(), min_size=max(1, BULK // 4), max_size=max(1, BULK // 2)),
       dtype=st.sampled_from(["float32", "float64"]))
def test_winograd_is_exact_on_small_integers(cases, dtype):
    """The transforms' 1/2 and 1/4 are exact: small integer data gives the exact result."""
    items = [(layer, shape, f"w{i}") for i, (layer, shape) in enumerate(cases)]
    kernels = compile_kernels(items, dtype=dtype, schedule="winograd")
    outcomes = [check_kernel(k, cases=1, seed=i) for i, k in enumerate(kernels)]
    failures = [(o, case) for o, case in zip(outcomes, cases) if not o.passed]
    assert not failures, failures[0]


@settings(max_examples=max(5, BULK_EXAMPLES // 3))
@given(case=winograd_convs(), dtype=st.sampled_from(["float32", "float64"]))
def test_winograd_is_proved_in_bounds(case, dtype):
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype, schedule="winograd")
    results = prove_bounds(kernel)
    assert all(r.status == "proved" for r in results), [r for r in results
                                                        if r.status != "proved"][0]


@settings(max_examples=10)
@given(case=winograd_convs(), seed=st.integers(0, 2**16))
def test_winograd_is_within_its_error_bound_on_real_data(case, seed):
    """|y~ - y| <= gamma_(C+11) * T + |b| u (convgen.winograd.error_bound), T the Winograd
    magnitudes."""
    from convgen.winograd import error_bound
    layer, shape = case
    kernel = compile_kernels([(layer, shape, "k_wino")], schedule="winograd")[0]
    x, w, b = _real_data(layer, shape, seed)
    got = kernel(x, w, *b).astype(np.float64)
    wide = forward(layer, x, w, *b)
    bound = error_bound(layer, x, w, *b, unit=2.0**-24)
    assert np.all(np.abs(got - wide) <= bound), np.max(np.abs(got - wide) - bound)


def test_winograd_matrices_compute_the_correlation_and_weigh_products_at_most_4x():
    from convgen import winograd
    assert winograd.identity()
    assert winograd.amplification() == winograd.AMPLIFICATION == 4


@pytest.mark.parametrize("layer, shape, dtype", [
    (convgen.Conv2d(3, 40, 3, padding=1), (3, 9, 21), "float32"),
    (convgen.Conv2d(4, 6, 3, padding=(2, 0), groups=2, bias=False), (4, 7, 10), "float64"),
    (convgen.Conv2d(200, 10, 3), (200, 5, 6), "float32"),  # blocks of 1 vector: 128 KiB
])
def test_winograd_kernels_are_clean_under_the_sanitizers(layer, shape, dtype, tmp_path):
    kernel = codegen.generate(layer, shape, dtype=dtype, name="k", schedule="winograd")
    assert_clean_under_sanitizers(kernel, tmp_path)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_winograd_kernels_compile_clean_and_stay_exact_everywhere(compiler, tmp_path):
    needs_compiler(compiler)
    layer = convgen.Conv2d(4, 40, 3, padding=1)
    for dtype in ("float32", "float64"):
        kernel = codegen.generate(layer, (4, 17, 33), dtype=dtype, name="k",
                                  schedule="winograd")
        compile_strict(compiler, kernel, tmp_path, ([], ["-fopenmp"], ["-mavx2", "-mfma"],
                                                     ["-mavx512f", "-mfma"], ["-mno-avx"]))
    for flags in (("-O2", "-mavx2", "-mfma"), ("-O2", "-mno-avx")):
        built = compile_kernels([(layer, (4, 9, 13), "wino_t")], schedule="winograd",
                                flags=flags)[0]
        assert check_kernel(built, cases=1).passed, flags


def test_winograd_is_refused_where_it_does_not_apply():
    covers = "the winograd schedule covers"
    for layer, shape, why in [(convgen.Conv2d(2, 4, 3, stride=2), (2, 9, 9), covers),
                              (convgen.Conv2d(2, 4, 5), (2, 9, 9), covers),
                              (convgen.Conv2d(4, 4, 3, groups=4), (4, 9, 9), covers),
                              (convgen.Conv2d(2000, 4, 3), (2000, 5, 5),
                               "a block's transformed weights .* exceed 131072 bytes past")]:
        with pytest.raises(convgen.SpecError, match="schedule='winograd' does not apply to "
                           f".*: {why}"):
            codegen.generate(layer, shape, schedule="winograd")


@settings(max_examples=max(3, BULK_EXAMPLES // 12))
@given(cases=st.lists(blocked_adaptive_pools(), min_size=max(1, BULK // 2), max_size=BULK),
       dtype=st.sampled_from(["float32", "float64"]))
def test_blocked_adaptive_pools_match_the_exact_oracle(cases, dtype):
    items = [(layer, shape, f"a{i}") for i, (layer, shape) in enumerate(cases)]
    kernels = compile_kernels(items, dtype=dtype, schedule="blocked")
    outcomes = [check_kernel(k, cases=1, seed=i) for i, k in enumerate(kernels)]
    failures = [(o, case) for o, case in zip(outcomes, cases) if not o.passed]
    assert not failures, failures[0]


@settings(max_examples=10)
@given(case=blocked_adaptive_pools(), seed=st.integers(0, 2**16))
def test_blocked_adaptive_pools_equal_reference_bit_for_bit_with_nans(case, seed):
    layer, shape = case
    rng = np.random.default_rng(seed)
    x = with_specials(rng.standard_normal((2, *shape)).astype(np.float32), rng)
    blocked, reference = [compile_kernels([(layer, shape, f"adaptive_{s}")], schedule=s)[0]
                          for s in ("blocked", "reference")]
    assert _same_bits_or_both_nan(blocked(x), reference(x))


@settings(max_examples=max(5, BULK_EXAMPLES // 2))
@given(case=blocked_adaptive_pools(), dtype=st.sampled_from(["float32", "float64"]))
def test_blocked_adaptive_pools_are_proved_in_bounds(case, dtype):
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype, schedule="blocked")
    results = prove_bounds(kernel)
    assert all(r.status == "proved" for r in results), [r for r in results
                                                        if r.status != "proved"][0]


@pytest.mark.parametrize("layer, shape, dtype", [
    (convgen.GlobalAvgPool(), (19, 5, 7), "float32"),
    (convgen.AdaptiveMaxPool2d((3, 2)), (9, 7, 5), "float64"),
])
def test_blocked_adaptive_pools_are_clean_under_the_sanitizers(layer, shape, dtype, tmp_path):
    kernel = codegen.generate(layer, shape, dtype=dtype, name="k", schedule="blocked")
    assert kernel.schedule == "blocked"
    assert_clean_under_sanitizers(kernel, tmp_path)


@pytest.mark.parametrize("schedule, layer, shape", [
    # GCC 12.2 at -O3 -march=native miscompiled (float64) a loop of strided zero stores
    # into the packed weights' padding lanes, and an element-wise copy into Winograd's
    # padded rows; both became memset/memcpy.  These are the configs that exposed them.
    ("packed", convgen.Conv2d(3, 93, (1, 2), stride=(3, 2), padding=((0, 0), (1, 0)),
                              dilation=(2, 1), groups=3), (3, 14, 36)),
    ("winograd", convgen.Conv2d(10, 32, 3, padding=(2, 0), groups=2, bias=False),
     (10, 18, 9)),
])
def test_configs_that_exposed_compiler_bugs_stay_exact(schedule, layer, shape):
    for flags in (("-O3", "-march=native"), ("-O3", "-mavx2", "-mfma")):
        kernel = compile_kernels([(layer, shape, "regression")], dtype="float64",
                                 schedule=schedule, flags=flags)[0]
        assert check_kernel(kernel, cases=2, seed=59).passed, flags


@pytest.mark.parametrize("flags", [("-O3", "-march=native"), ("-O2", "-DCONVGEN_NO_SHUFFLE"),
                                   ("-O2", "-mno-avx")])
def test_global_pools_transposed_or_gathered_are_exact(flags):
    """The whole-plane path transposes 8x8 (4x4) blocks in registers; without
    __builtin_shufflevector it gathers.  Both, and SSE-only builds, match the oracle."""
    cases = [(convgen.GlobalAvgPool(), (19, 7, 7)), (convgen.GlobalMaxPool(), (16, 3, 5)),
             (convgen.GlobalAvgPool(ndim=1), (8, 21))]
    for dtype in ("float32", "float64"):
        items = [(layer, shape, f"g{i}") for i, (layer, shape) in enumerate(cases)]
        kernels = compile_kernels(items, dtype=dtype, flags=flags)
        assert all(k.generated.schedule == "blocked" for k in kernels)
        for i, kernel in enumerate(kernels):
            assert check_kernel(kernel, cases=2, seed=i).passed, (flags, kernel.generated.name)


def test_blocked_keeps_a_bias_of_minus_zero_as_the_reference_does():
    """Found by mutation testing's real-data cases: the blocked schedule started its
    accumulators at +0 + b, which turns a bias of -0 into +0 where every product is zero;
    -0 + b is b for every b, so it now starts there and stays the reference's bits."""
    layer, shape = convgen.Conv2d(2, 8, (1, 3), padding=(0, 2), bias=True), (2, 5, 12)
    blocked, reference = compile_kernels([(layer, shape, "zb", "blocked"),
                                          (layer, shape, "zr", "reference")])
    rng = np.random.default_rng(0)
    zeros = np.array([-1.0, -0.0, 0.0], np.float32)
    x = rng.choice(zeros, (2, *shape))
    w = rng.choice(zeros, layer.weight_shape)
    b = np.full(layer.out_channels, -0.0, np.float32)
    got, want = blocked(x, w, b), reference(x, w, b)
    assert np.array_equal(got, want) and np.array_equal(np.signbit(got), np.signbit(want))
    assert np.signbit(want).any()  # the case is there
