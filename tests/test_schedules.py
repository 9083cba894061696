"""The C schedules: the blocked schedule against the exact oracle, against the reference
schedule bit for bit, in bounds (z3), under the sanitizers, and as the default where it pays."""

import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import codegen
from convgen.bench import SUITE
from convgen.bounds import prove_bounds
from convgen.build import compile_kernels
from convgen.verify import check_kernel
from tests.conftest import BULK, BULK_EXAMPLES
from tests.test_sanitizers import assert_clean_under_sanitizers


@st.composite
def blocked_convs(draw):
    """2-D zero-padded convolutions of every option the blocked schedule takes."""
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 20))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in kernel)
    spatial = [draw(st.integers((k - 1) * d + 1, (k - 1) * d + 40))
               for k, d in zip(kernel, dilation)]
    layer = convgen.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding,
                           dilation=dilation, groups=groups, bias=draw(st.booleans()))
    return layer, (c_in, *spatial)


@settings(max_examples=max(3, BULK_EXAMPLES // 3))
@given(cases=st.lists(blocked_convs(), min_size=max(1, BULK // 2), max_size=BULK),
       dtype=st.sampled_from(["float32", "float64"]))
def test_blocked_schedule_matches_the_exact_oracle(cases, dtype):
    items = [(layer, shape, f"b{i}") for i, (layer, shape) in enumerate(cases)]
    kernels = compile_kernels(items, dtype=dtype, schedule="blocked")
    assert all(k.generated.schedule == "blocked" for k in kernels)
    outcomes = [check_kernel(k, cases=1, seed=i) for i, k in enumerate(kernels)]
    failures = [(o, case) for o, case in zip(outcomes, cases) if not o.passed]
    assert not failures, failures[0]


@settings(max_examples=max(5, BULK_EXAMPLES))
@given(case=blocked_convs(), dtype=st.sampled_from(["float32", "float64"]))
def test_blocked_schedule_is_proved_in_bounds(case, dtype):
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype, schedule="blocked")
    results = prove_bounds(kernel)
    assert all(r.status == "proved" for r in results), [r for r in results
                                                        if r.status != "proved"][0]


@settings(max_examples=10)
@given(case=blocked_convs(), seed=st.integers(0, 2**16))
def test_blocked_equals_reference_bit_for_bit_on_real_data(case, seed):
    """Same products, same order, no contraction under the strict flags: identical floats."""
    layer, shape = case
    rng = np.random.default_rng(seed)
    blocked, reference = [compile_kernels([(layer, shape, f"k_{s}")], schedule=s)[0]
                          for s in ("blocked", "reference")]
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    w = rng.standard_normal(layer.weight_shape).astype(np.float32)
    b = [rng.standard_normal(layer.out_channels).astype(np.float32)] if layer.bias else []
    assert np.array_equal(blocked(x, w, *b), reference(x, w, *b))


def test_default_schedule_is_chosen_and_recorded():
    for name, layer, shape in SUITE:
        kernel = codegen.generate(layer, shape)
        expected = "blocked" if name in ("conv3_3x128x128", "resnet_3x3", "stem_7x7s2",
                                         "depthwise_3x3", "pointwise_1x1", "lenet_conv1",
                                         "conv5_3x32x32") else "reference"
        assert kernel.schedule == expected, (name, kernel.schedule_reason)
        assert kernel.schedule_reason
    pointwise = codegen.generate(convgen.Conv2d(128, 256, 1), (128, 28, 28))
    assert "1x1: the plane as one row" in pointwise.schedule_reason
    reflect = codegen.generate(convgen.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"),
                               (2, 9, 9))
    assert reflect.schedule == "reference" and "reflect padding" in reflect.schedule_reason
    with pytest.raises(convgen.SpecError, match="schedule='blocked' applies to 2-D conv"):
        codegen.generate(convgen.MaxPool2d(2), (1, 4, 4), schedule="blocked")
    with pytest.raises(convgen.SpecError, match="schedule='fast' must be 'auto' or one of"):
        codegen.generate(convgen.Conv2d(1, 1, 3), (1, 4, 4), schedule="fast")


def test_an_explicit_non_default_schedule_gets_its_own_name():
    layer = convgen.Conv2d(4, 8, 3, padding=1)
    auto = codegen.generate(layer, (4, 32, 32))
    other = codegen.generate(layer, (4, 32, 32), schedule="reference")
    assert auto.schedule == "blocked" and other.name == auto.name + "_reference"


@pytest.mark.parametrize("layer, shape, dtype", [
    (convgen.Conv2d(3, 16, 3, padding=1), (3, 13, 21), "float32"),
    (convgen.Conv2d(4, 6, (3, 2), stride=(2, 3), dilation=(1, 2), padding=((2, 0), (1, 1)),
                    groups=2), (4, 11, 29), "float64"),
    (convgen.Conv2d(8, 8, 1), (8, 5, 7), "float32"),
])
def test_blocked_kernels_are_clean_under_the_sanitizers(layer, shape, dtype, tmp_path):
    kernel = codegen.generate(layer, shape, dtype=dtype, name="k", schedule="blocked")
    assert_clean_under_sanitizers(kernel, tmp_path)


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_blocked_kernels_compile_clean_under_strict_flags(compiler, tmp_path):
    if subprocess.run(["which", compiler], capture_output=True).returncode:
        pytest.skip(f"{compiler} is not installed")
    for dtype in ("float32", "float64"):
        kernel = codegen.generate(convgen.Conv2d(4, 8, 3, stride=2, padding=1), (4, 17, 33),
                                  dtype=dtype, name="k", schedule="blocked")
        (tmp_path / "k.c").write_text(kernel.source)
        (tmp_path / "k.h").write_text(kernel.header)
        for extra in ([], ["-fopenmp"], ["-mavx2", "-mfma"], ["-mno-avx"]):
            command = [compiler, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O3",
                       *extra, "-c", str(tmp_path / "k.c"), "-o", str(tmp_path / "k.o")]
            done = subprocess.run(command, capture_output=True, text=True)
            assert done.returncode == 0, (extra, done.stderr)
