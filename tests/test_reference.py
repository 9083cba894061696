"""The exact oracles: direct definition vs Toeplitz product, and both vs ONNX Runtime."""

import dataclasses
from fractions import Fraction

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import convgen
from convgen import reference, toeplitz
from convgen.strategies import conv_layers, input_shape_for, pool_layers
from tests.test_onnxruntime import _onnx_compatible, run_onnxruntime

SMALL = dict(max_channels=3, max_kernel=3, max_stride=2, max_dilation=2)


def _case(data, layer):
    shape = data.draw(input_shape_for(layer, max_extra=3, batch=True))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    x = rng.integers(-5, 6, size=shape)
    weight = bias = None
    if hasattr(layer, "weight_shape"):
        weight = rng.integers(-3, 4, size=layer.weight_shape)
        bias = rng.integers(-9, 10, size=layer.out_channels) if layer.bias else None
    return x, weight, bias


@given(st.data())
def test_conv_oracles_agree_exactly(data):
    layer = data.draw(conv_layers(**SMALL))
    x, weight, bias = _case(data, layer)
    direct = reference.forward(layer, x, weight, bias)
    assert direct.dtype == object
    assert (direct == reference.toeplitz_forward(layer, x, weight, bias)).all()


@given(st.data())
def test_average_pool_oracles_agree_exactly(data):
    layer = data.draw(pool_layers(kinds=("AvgPool",)))
    x, _, _ = _case(data, layer)
    direct = reference.forward(layer, x)
    assert all(isinstance(v, (int, Fraction)) for v in direct.flat)
    assert (direct == reference.toeplitz_forward(layer, x)).all()


@given(st.data())
def test_adaptive_and_global_average_oracles_agree(data):
    ndim = data.draw(st.integers(1, 3))
    spatial = [data.draw(st.integers(1, 7)) for _ in range(ndim)]
    out = [data.draw(st.one_of(st.none(), st.integers(1, 8))) for _ in range(ndim)]
    layer = getattr(convgen, f"AdaptiveAvgPool{ndim}d")(tuple(out))
    x = np.random.default_rng(0).integers(-5, 6, size=(2, 2, *spatial))
    assert (reference.forward(layer, x) == reference.toeplitz_forward(layer, x)).all()
    whole = convgen.GlobalAvgPool(ndim=ndim)
    assert (reference.forward(whole, x) == reference.toeplitz_forward(whole, x)).all()
    assert reference.forward(whole, x)[0, 0].ravel()[0] == Fraction(int(x[0, 0].sum()),
                                                                     int(np.prod(spatial)))


@given(st.data())
def test_conv_transpose_is_the_adjoint_of_conv(data):
    """<conv(x), y> == <x, conv_transpose(y)> for two independent direct implementations."""
    layer = data.draw(conv_layers(kinds=("ConvTranspose",), **SMALL))
    layer = dataclasses.replace(layer, bias=False)
    shape = data.draw(input_shape_for(layer, max_extra=3, batch=False))
    out = layer.output_shape(shape)
    conv = getattr(convgen, f"Conv{layer.ndim}d")(
        layer.out_channels, layer.in_channels, layer.kernel_size, stride=layer.stride,
        padding=layer.resolved_padding(shape[1:]), dilation=layer.dilation,
        groups=layer.groups, bias=False)
    assume(conv.output_shape(out)[1:] == tuple(shape[1:]))  # output_padding < stride
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    weight = rng.integers(-3, 4, size=layer.weight_shape)
    x, y = rng.integers(-5, 6, size=out), rng.integers(-5, 6, size=shape)
    lhs = np.sum(reference.forward(conv, x, weight) * y)
    rhs = np.sum(x * reference.forward(layer, y, weight))
    assert lhs == rhs


@given(st.data())
def test_float64_mode_equals_exact_mode_on_integer_inputs(data):
    layer = data.draw(st.one_of(conv_layers(**SMALL), pool_layers(kinds=("MaxPool", "AvgPool"))))
    x, weight, bias = _case(data, layer)
    as_float = [None if a is None else a.astype(np.float64) for a in (x, weight, bias)]
    exact = reference.forward(layer, x, weight, bias)
    approx = reference.forward(layer, *as_float)
    if isinstance(exact, tuple):
        assert (exact[1] == approx[1]).all()
        exact, approx = exact[0], approx[0]
    assert approx.dtype == np.float64
    assert np.array_equal(np.array(exact, dtype=np.float64), approx)


def test_lp_pool_is_exact_and_uses_the_absolute_value():
    layer = convgen.LPPool1d(3, 2)
    y = reference.forward(layer, np.array([[-3, 3, 2, -2]]))
    assert y[0, 0] == sympy.root(54, 3) and y[0, 1] == 2 * sympy.root(2, 3)
    y2 = reference.forward(convgen.LPPool1d(2, 2), np.array([[3, 4]]))
    assert y2[0, 0] == 5


def test_max_pool_nan_propagates_and_indices_are_per_plane():
    layer = convgen.MaxPool1d(2, return_indices=True)
    y, idx = reference.forward(layer, np.array([[[1.0, np.nan, 3.0, 2.0]]]))
    assert np.isnan(y[0, 0, 0]) and y[0, 0, 1] == 3.0
    assert idx.tolist() == [[[1, 2]]]
    y, idx = reference.forward(convgen.MaxPool1d(3, return_indices=True), np.array([[5, 5, 1]]))
    assert idx.tolist() == [[0]]  # ties: the first maximum


@given(st.data())
def test_selection_matrix_reproduces_max_pooling(data):
    layer = data.draw(pool_layers(kinds=("MaxPool",)))
    layer = dataclasses.replace(layer, return_indices=True)
    x, _, _ = _case(data, layer)
    sample = x[0].astype(np.float64)
    S = toeplitz.selection_matrix(layer, sample)
    y, idx = reference.forward(layer, sample)
    assert (S.sum(axis=1) == 1).all()
    assert np.array_equal(S @ sample.ravel(), np.array(y, dtype=np.float64).ravel())
    plane = int(np.prod(sample.shape[1:]))
    channel = np.arange(sample.shape[0]).reshape(-1, *[1] * layer.ndim) * plane
    assert np.array_equal(S.indices, (idx + channel).ravel())


def test_max_pooling_is_not_linear():
    example = toeplitz.max_pool_counterexample(convgen.MaxPool2d(2), (1, 4, 4))
    assert example.f_sum[0] == 1 and example.sum_f[0] == 2
    assert "not linear" in str(example)
    with pytest.raises(convgen.SpecError, match="max pooling is linear here"):
        toeplitz.max_pool_counterexample(convgen.MaxPool1d(1), (1, 4))


# --------------------------------------------------------------------------- ONNX Runtime


def _float_case(data, layer):
    x, weight, bias = _case(data, layer)
    return [None if a is None else a.astype(np.float64) for a in (x, weight, bias)]


@settings(max_examples=50)
@given(st.data())
def test_conv_oracles_agree_with_onnxruntime(data):
    layer = _onnx_compatible(data.draw(conv_layers(ndim=st.integers(1, 2), **SMALL)))
    x, weight, bias = _float_case(data, layer)
    ours = reference.forward(layer, x, weight, bias)
    (theirs,) = run_onnxruntime(layer, x.shape, x, weight, bias)
    assert np.array_equal(ours, theirs)  # small integers: every float32 sum is exact
    assert np.array_equal(reference.toeplitz_forward(layer, x, weight, bias), theirs)


@settings(max_examples=50)
@given(st.data())
def test_pool_oracles_agree_with_onnxruntime(data):
    layer = _onnx_compatible(data.draw(pool_layers(ndim=st.integers(1, 2))))
    x, _, _ = _float_case(data, layer)
    pads = layer.resolved_padding(x.shape[2:])
    assume(all(max(p) < k for p, k in zip(pads, layer.kernel_size)))
    outputs = run_onnxruntime(layer, x.shape, x)
    exact = reference.forward(layer, x.astype(np.int64))
    if isinstance(exact, tuple):
        exact, indices = exact
        plane = int(np.prod(x.shape[2:]))
        offsets = np.arange(x.shape[0] * x.shape[1]).reshape(*x.shape[:2], *[1] * layer.ndim)
        assert np.array_equal(indices + offsets * plane, outputs[1])  # ONNX: flat over all
    expected = np.array([float(sympy.N(v, 30)) for v in exact.flat]).reshape(exact.shape)
    theirs = outputs[0].astype(np.float64)
    if type(layer).__name__.startswith("MaxPool"):
        assert np.array_equal(expected, theirs)
    else:  # a float32 division or root: within 2 ULP of the exact value
        ulp = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
        assert (np.abs(theirs - expected) <= 2 * ulp).all()
        if type(layer).__name__.startswith("AvgPool"):
            via_matrix = reference.toeplitz_forward(layer, x.astype(np.int64))
            assert (via_matrix == exact).all()


@settings(max_examples=40)
@given(st.data())
def test_conv_transpose_agrees_with_onnxruntime(data):
    layer = _onnx_compatible(data.draw(conv_layers(ndim=st.integers(1, 2),
                                                   kinds=("ConvTranspose",), **SMALL)))
    x, weight, bias = _float_case(data, layer)
    (theirs,) = run_onnxruntime(layer, x.shape, x, weight, bias)
    assert np.array_equal(reference.forward(layer, x, weight, bias), theirs)
    assert np.array_equal(reference.toeplitz_forward(layer, x, weight, bias), theirs)


def test_ceil_mode_window_larger_than_the_padded_input():
    """PyTorch and ONNX Runtime keep one partial window (values from torch 2.13)."""
    avg = convgen.AvgPool2d(3, 3, ceil_mode=True)
    x = np.arange(4).reshape(1, 1, 2, 2)
    assert reference.forward(avg, x).tolist() == [[[[Fraction(3, 2)]]]]
    assert reference.toeplitz_forward(avg, x).tolist() == [[[[Fraction(3, 2)]]]]
    pool = convgen.MaxPool1d(3, 3, padding=1, dilation=2, ceil_mode=True, return_indices=True)
    y, idx = reference.forward(pool, np.array([[[1.0, 7.0]]]))
    assert y.tolist() == [[[7.0]]] and idx.tolist() == [[[1]]]
    (theirs,) = run_onnxruntime(avg, x.shape, x.astype(np.float64))
    assert theirs.tolist() == [[[[1.5]]]]
