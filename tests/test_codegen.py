"""Generated C against the exact oracle, for every family and option."""


import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import codegen
from convgen.runtime.cbuild import compile_kernels
from convgen.strategies import FAMILIES, layers_with_inputs
from convgen.verify import verify_layers
from tests.conftest import BULK, BULK_EXAMPLES
from tests.helpers import compile_strict, needs_compiler


def _sample(layer, shape):
    return tuple(shape[-layer.ndim - 1:])


@settings(max_examples=BULK_EXAMPLES)
@given(cases=st.lists(layers_with_inputs(families=FAMILIES), min_size=max(1, BULK // 2),
                      max_size=BULK),
       dtype=st.sampled_from(["float32", "float64"]))
def test_generated_kernels_match_the_exact_oracle(cases, dtype):
    """One module per example holds up to BULK kernels; each is judged on its own."""
    outcomes = verify_layers([(layer, _sample(layer, shape)) for layer, shape in cases],
                             dtype=dtype, cases=1)
    failures = [(o, case) for o, case in zip(outcomes, cases) if not o.passed]
    assert not failures, failures[0]


@settings(max_examples=10)
@given(cases=st.lists(layers_with_inputs(families=("pool", "adaptive")), min_size=1,
                      max_size=BULK),
       dtype=st.sampled_from(["int8", "uint8"]))
def test_max_pooling_kernels_for_integer_dtypes(cases, dtype):
    layers = []
    for layer, shape in cases:
        if "Max" in type(layer).__name__:
            layers.append((layer, _sample(layer, shape)))
    if layers:
        assert all(o.passed for o in verify_layers(layers, dtype=dtype, cases=1))


FAMILY_EXAMPLES = [
    convgen.Conv1d(2, 4, 3, stride=2, padding=((2, 1),), dilation=2, groups=2),
    convgen.Conv2d(3, 4, 3, padding="same", padding_mode="reflect"),
    convgen.Conv2d(2, 2, (2, 3), stride=(1, 2), padding="same_lower", padding_mode="circular"),
    convgen.Conv3d(2, 2, 2, padding=1, padding_mode="replicate", bias=False),
    convgen.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1, groups=2),
    convgen.ConvTranspose1d(2, 3, 3, stride=1, dilation=2, output_padding=1, padding="same"),
    convgen.MaxPool2d(3, stride=2, padding=1, dilation=2, ceil_mode=True, return_indices=True),
    convgen.MaxPool3d(2, return_indices=True),
    convgen.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    convgen.AvgPool1d(4, stride=3, padding=2, ceil_mode=True, divisor_override=3),
    convgen.LPPool2d(2, 3, stride=2, padding=1),
    convgen.LPPool1d(1.5, 2),
    convgen.AdaptiveAvgPool2d((3, None)),
    convgen.AdaptiveMaxPool1d(4, return_indices=True),
    convgen.GlobalAvgPool(ndim=3),
    convgen.GlobalMaxPool(),
]


def _shape(layer):
    channels = getattr(layer, "in_channels", 3)
    return (channels, *[7 + i for i in range(layer.ndim)])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_family_and_option(dtype):
    outcomes = verify_layers([(layer, _shape(layer)) for layer in FAMILY_EXAMPLES], dtype=dtype,
                             cases=2)
    assert [o.description for o in outcomes if not o.passed] == []


def test_max_pooling_nan_propagates_like_pytorch():
    layer = convgen.MaxPool1d(2, return_indices=True)
    kernel = convgen.compile(layer, (1, 6))
    x = np.array([[[1, np.nan, 3, 2, np.nan, np.nan]]], dtype=np.float32)
    y, idx = kernel(x)
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 3 and np.isnan(y[0, 0, 2])
    assert idx.tolist() == [[[1, 2, 5]]]  # the last NaN of a window wins, as in PyTorch


def test_openmp_build_gives_the_same_result():
    layer = convgen.Conv2d(3, 8, 3, padding=1)
    serial = convgen.compile(layer, (3, 9, 9))
    parallel = convgen.compile(layer, (3, 9, 9), openmp=True)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal(layer.weight_shape).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    assert np.array_equal(serial(x, w, b), parallel(x, w, b))


def test_interior_is_branch_free_and_indices_come_from_symbolic():
    kernel = codegen.generate(convgen.Conv2d(1, 1, 3, padding=1), (1, 8, 8), name="k")
    interior = kernel.source.split("no bounds checks */")[1].split("} else {")[0]
    assert "if" not in interior and "continue" not in interior
    assert "const long p0 = k0 + o0 - 1;" in kernel.source
    assert kernel.source.count("if (!(p0 >= 0 && p0 < 8)) continue;") == 1


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_every_family_compiles_clean_under_strict_flags(compiler, tmp_path):
    needs_compiler(compiler)
    for index, layer in enumerate(FAMILY_EXAMPLES):
        for dtype in ("float32", "float64"):
            kernel = codegen.generate(layer, _shape(layer), dtype=dtype, name=f"k{index}")
            compile_strict(compiler, kernel, tmp_path, [[], ["-fopenmp"]], "-O2")


def test_generation_is_deterministic_and_banners_say_where_from():
    layer = convgen.AvgPool2d(3, stride=2, padding=1)
    first = codegen.generate(layer, (2, 9, 9))
    second = codegen.generate(layer, (2, 9, 9))
    assert first.source == second.source and first.header == second.header
    assert first.source.startswith("/*\n * Generated by convgen ")
    assert "templates/c/pool.c.j2" in first.source and "/work" not in first.source


def test_kernels_in_one_module_keep_their_names():
    kernels = compile_kernels([(convgen.MaxPool1d(2), (1, 4), "first"),
                               (convgen.MaxPool1d(2), (1, 6), "second")])
    x = np.arange(6, dtype=np.float32).reshape(1, 1, 6)
    assert kernels[1](x).tolist() == [[[1, 3, 5]]] and kernels[0].name == "first"
