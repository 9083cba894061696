"""The Toeplitz operator: the lecture's example, structure, symbolic vs numeric, adjoints."""

import dataclasses

import numpy as np
import pytest
import scipy.sparse
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import reference, toeplitz
from convgen.strategies import conv_layers, input_shape_for, pool_layers

SMALL = dict(max_channels=3, max_kernel=3, max_stride=2, max_dilation=2)


def _ints(rng, shape, low=-4, high=5):
    return rng.integers(low, high, size=shape)


def test_lecture_2x2_kernel_on_3x3_input():
    layer = convgen.Conv2d(1, 1, 2, bias=False)
    T = toeplitz.toeplitz(layer, (1, 3, 3))
    a, b, c, d = sympy.symbols("a b c d")
    w = sympy.IndexedBase("w")
    named = T.subs({w[0, 0, 0, 0]: a, w[0, 0, 0, 1]: b, w[0, 0, 1, 0]: c, w[0, 0, 1, 1]: d})
    assert named == sympy.Matrix([[a, b, 0, c, d, 0, 0, 0, 0],
                                  [0, a, b, 0, c, d, 0, 0, 0],
                                  [0, 0, 0, a, b, 0, c, d, 0],
                                  [0, 0, 0, 0, a, b, 0, c, d]])
    assert layer.toeplitz((1, 3, 3)) == T


def test_bias_vector_and_layer_method():
    layer = convgen.Conv1d(1, 2, 2)
    b = sympy.IndexedBase("b")
    assert toeplitz.bias_vector(layer, (1, 3)) == sympy.Matrix([b[0], b[0], b[1], b[1]])
    assert list(toeplitz.bias_vector(layer, (1, 3), bias=np.array([5, 7]))) == [5, 5, 7, 7]
    weight = np.ones(layer.weight_shape)
    numeric = layer.toeplitz((1, 3), weight=weight)
    assert isinstance(numeric, scipy.sparse.csr_array) and numeric.shape == (4, 3)


@settings(max_examples=30)
@given(st.data())
def test_symbolic_matrix_with_weights_substituted_equals_numeric(data):
    layer = data.draw(conv_layers(ndim=st.integers(1, 2), **SMALL))
    shape = data.draw(input_shape_for(layer, max_extra=3, batch=False))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    weight = _ints(rng, layer.weight_shape)
    T = toeplitz.toeplitz(layer, shape)
    w = sympy.IndexedBase("w")
    values = {w[idx]: int(weight[idx]) for idx in np.ndindex(*weight.shape)}
    substituted = np.array(T.xreplace(values).tolist(), dtype=np.int64)
    numeric = toeplitz.toeplitz(layer, shape, weight=weight).toarray()
    assert (substituted == numeric).all()


@settings(max_examples=30)
@given(st.data())
def test_average_pool_symbolic_rationals_equal_numeric(data):
    layer = data.draw(pool_layers(ndim=st.integers(1, 2), kinds=("AvgPool",)))
    shape = data.draw(input_shape_for(layer, max_extra=3, batch=False))
    exact = toeplitz.toeplitz(layer, shape, symbolic=True)
    numeric = toeplitz.toeplitz(layer, shape).toarray()
    assert np.array(exact.evalf(20).tolist(), dtype=np.float64).tolist() == numeric.tolist()


@given(st.data())
def test_structure_shape_and_distinct_weights(data):
    layer = data.draw(conv_layers(kinds=("Conv",), **SMALL))
    shape = data.draw(input_shape_for(layer, batch=False))
    info = toeplitz.structure(layer, shape)
    out = layer.output_shape(shape)
    assert info.shape == (int(np.prod(out)), int(np.prod(shape)))
    assert 0 <= info.density <= 1  # 0 when every tap lands on padding (a 1x1 kernel, say)
    # Every weight reaches the input unless padding pushes a tap off it everywhere.
    assert info.distinct_weights <= layer.num_params - layer.num_bias
    unpadded = dataclasses.replace(layer, padding=0, padding_mode="zeros")
    spatial = [max(n, e) for n, e in zip(shape[1:], unpadded.extents)]
    assert toeplitz.structure(unpadded, (shape[0], *spatial)).distinct_weights == \
        layer.num_params - layer.num_bias


def test_reflect_padding_folds_taps_into_sums():
    layer = convgen.Conv1d(1, 1, 3, padding=1, padding_mode="reflect", bias=False)
    T = toeplitz.toeplitz(layer, (1, 3))
    w = sympy.IndexedBase("w")
    # output 0 reads x[1], x[0], x[1]: the first and last taps fold onto column 1
    assert T[0, 1] == w[0, 0, 0] + w[0, 0, 2] and T[0, 0] == w[0, 0, 1]
    circular = convgen.Conv1d(1, 1, 3, padding=1, padding_mode="circular", bias=False)
    assert toeplitz.toeplitz(circular, (1, 3))[0, 2] == w[0, 0, 0]


@given(st.data())
def test_inner_product_adjoint_identity_is_exact(data):
    layer = data.draw(conv_layers(**SMALL))
    shape = data.draw(input_shape_for(layer, batch=False))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    ops = toeplitz.entries(layer, shape)
    weight = _ints(rng, layer.weight_shape).astype(object)
    x = _ints(rng, ops.shape[1]).astype(object)
    y = _ints(rng, ops.shape[0]).astype(object)
    Tx = toeplitz.apply_entries(ops, x, weight)
    Tty = toeplitz.apply_entries(ops.transpose, y, weight)
    assert int(np.dot(Tx, y)) == int(np.dot(x, Tty))


@given(st.data())
def test_conv_transpose_matrix_is_the_transpose_of_the_matching_conv(data):
    layer = data.draw(conv_layers(kinds=("ConvTranspose",), **SMALL))
    shape = data.draw(input_shape_for(layer, batch=False))
    out = layer.output_shape(shape)
    conv = getattr(convgen, f"Conv{layer.ndim}d")(
        layer.out_channels, layer.in_channels, layer.kernel_size, stride=layer.stride,
        padding=layer.resolved_padding(shape[1:]), dilation=layer.dilation,
        groups=layer.groups)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    weight = _ints(rng, layer.weight_shape)
    T = toeplitz.toeplitz(layer, shape, weight=weight).toarray()
    if conv.output_shape(out)[1:] == tuple(shape[1:]):  # output_padding < stride
        assert (T == toeplitz.toeplitz(conv, out, weight=weight).toarray().T).all()
    assert T.shape == (int(np.prod(out)), int(np.prod(shape)))


def test_stem_operator_is_sparse_and_exact_on_a_sample():
    layer = convgen.Conv2d(3, 64, 7, stride=2, padding=3)
    weight = np.random.default_rng(1).integers(-2, 3, layer.weight_shape).astype(np.float32)
    T = layer.toeplitz((3, 224, 224), weight=weight)
    assert T.shape == (64 * 112 * 112, 3 * 224 * 224)
    assert T.nnz == 116_214_528  # 64*3*49 taps per output, minus those on padding
    assert T.indices.dtype == np.int32 and T.data.dtype == np.float32
    x = np.random.default_rng(2).integers(-3, 4, (1, 3, 224, 224))
    sample = np.zeros((64, 112, 112), dtype=bool)
    sample[::17, ::13, ::11] = True
    y = (T @ x.ravel().astype(np.float32)).reshape(64, 112, 112)
    small = convgen.Conv2d(3, 64, 7, stride=2, padding=3)
    direct = reference.forward(small, x.astype(np.float64), weight.astype(np.float64),
                               np.zeros(64))
    assert (y[sample] == direct[0][sample]).all()


@settings(max_examples=25)
@given(st.data())
def test_distinct_weight_symbols_equal_num_params_minus_bias(data):
    layer = data.draw(conv_layers(ndim=st.integers(1, 2), kinds=("Conv",), **SMALL))
    layer = dataclasses.replace(layer, padding=0, padding_mode="zeros")
    spatial = [e + data.draw(st.integers(0, 2)) for e in layer.extents]
    T = toeplitz.toeplitz(layer, (layer.in_channels, *spatial))
    assert len(T.atoms(sympy.Indexed)) == layer.num_params - layer.num_bias
    out = layer.output_shape((layer.in_channels, *spatial))
    assert T.shape == (int(np.prod(out)), layer.in_channels * int(np.prod(spatial)))


@pytest.mark.parametrize("layer, shape, colours", [
    (convgen.Conv2d(1, 2, 2, bias=False), (1, 3, 3), (0, 7)),  # 8 x 9; weights 0..7
    (convgen.AvgPool1d(3, padding=1, count_include_pad=False), (1, 5), (2, 3)),  # divisors
])
def test_plot_ticks_whole_indices(layer, shape, colours):
    """Rows, columns, weight indices and divisors are integers: so is every tick."""
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from convgen.plot import toeplitz_figure

    figure = toeplitz_figure(layer, shape)
    try:
        figure.canvas.draw()
        axes, colorbar = figure.axes
        for ticks in (axes.get_xticks(), axes.get_yticks(), colorbar.get_yticks()):
            assert len(ticks) >= 2 and all(float(t).is_integer() for t in ticks), ticks
        assert colorbar.get_ylim() == colours  # the keys themselves, not keys + 1
    finally:
        plt.close(figure)
