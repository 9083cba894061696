"""The seed lecture's examples, as tests."""

import sympy

import convgen
from convgen import symbolic as sym
from convgen.config import bundled_examples, load


def _network(name):
    for path in bundled_examples().values():
        for network in load(path):
            if network.name == name:
                return network
    raise KeyError(name)


def test_5x5_chain_from_3x32x32_shrinks_by_4_per_layer():
    network = _network("lecture_5x5_chain")
    shapes = network.model.shapes(network.input_shape)
    assert shapes == [(3, 32 - 4 * i, 32 - 4 * i) for i in range(1, 8)]
    assert shapes[-1] == (3, 4, 4)
    assert shapes[0] == (3, 28, 28) and shapes[1] == (3, 24, 24)


def test_stacking_n_valid_kxk_convs_shrinks_each_side_by_n_k_minus_1():
    H, W = sym.size_symbols("H W")
    for k in (3, 5):
        chain = convgen.Sequential(*[convgen.Conv2d(3, 3, k) for _ in range(4)])
        assert chain.output_shape((3, H, W)) == (3, H - 4 * (k - 1), W - 4 * (k - 1))


def test_padding_example_3x5x7():
    unpadded = convgen.Conv2d(3, 3, 3)
    padded = convgen.Conv2d(3, 3, 3, padding=1)
    same = convgen.Conv2d(3, 3, 3, padding="same")
    assert unpadded.output_shape((3, 5, 7)) == (3, 3, 5)
    assert padded.output_shape((3, 5, 7)) == (3, 5, 7)
    assert same.output_shape((3, 5, 7)) == (3, 5, 7)
    assert same.resolved_padding((5, 7)) == ((1, 1), (1, 1))


def test_output_formula_with_padding_is_H_plus_2p_minus_h_plus_1():
    H, W, p, h = sympy.symbols("H W p h", integer=True, positive=True)
    assert sym.conv_output_size(H, h, 1, 1, p, p) == H + 2 * p - h + 1


def test_parameter_counts():
    assert convgen.Conv2d(3, 3, 5).num_params == 3 * 3 * 5 * 5 + 3  # (C_o, C_i, h, w) + bias
    assert convgen.Conv2d(3, 3, 5).num_weights == 225
    assert convgen.Conv2d(3, 16, 3, padding=1).num_params == 448  # a few hundred
    assert convgen.Conv2d(4, 8, 3, groups=2).num_params == 8 * 2 * 9 + 8  # grouping shrinks it
    assert convgen.MaxPool2d(2).num_params == 0


def test_dense_layer_for_a_128x128_rgb_image_needs_about_49_million_parameters():
    m = 3 * 128 * 128
    assert m == 49152  # "~50,000 values"
    assert sym.dense_params(m, 1000) == 1000 * (m + 1) == 49_153_000
    conv = convgen.Conv2d(3, 16, 3, padding=1)
    assert conv.num_params < 1000
    assert conv.dense_equivalent_params((3, 128, 128)) == (16 * 128 * 128) * (m + 1)


def test_toeplitz_example_is_a_4x9_map():
    network = _network("lecture_toeplitz")
    layer = network.model[0]
    assert layer.output_shape(network.input_shape) == (1, 2, 2)
    assert layer.num_params == 4
    assert layer.dense_equivalent_params(network.input_shape) == 4 * (9 + 1)


def test_pooling_examples():
    assert convgen.MaxPool2d(2).output_shape((3, 128, 128)) == (3, 64, 64)
    assert convgen.AvgPool2d(2).output_shape((3, 64, 64)) == (3, 32, 32)
    assert convgen.GlobalAvgPool().output_shape((3, 32, 32)) == (3, 1, 1)
    assert convgen.Conv2d(3, 3, 3, stride=2).output_shape((3, 32, 32)) == (3, 15, 15)
