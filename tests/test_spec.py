"""Canonical form, hashing, counts and conventions of the specs."""

import dataclasses

import pytest
import sympy

import convgen
from convgen import symbolic as sym
from convgen.spec import padding_from_onnx


def test_canonical_forms_are_equal_and_hash_equal():
    a = convgen.Conv2d(3, 8, 3, padding=1)
    b = convgen.Conv2d(3, 8, [3, 3], padding=((1, 1), [1, 1]), stride=(1, 1))
    assert a == b and hash(a) == hash(b)
    assert a.kernel_size == (3, 3) and a.padding == ((1, 1), (1, 1))
    assert convgen.Conv1d(1, 1, 3, padding="valid").padding == ((0, 0),)
    assert convgen.MaxPool2d((2, 3)).stride == (2, 3)
    assert convgen.MaxPool2d(2) != convgen.AvgPool2d(2)
    assert len({a, b, convgen.Conv2d(3, 8, 3)}) == 2
    assert convgen.LPPool1d(2.0, 2) == convgen.LPPool1d(2, 2)


def test_specs_are_frozen_and_derive_with_replace():
    layer = convgen.Conv2d(3, 8, 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        layer.stride = 2
    wider = dataclasses.replace(layer, out_channels=16, padding="same")
    assert wider.out_channels == 16 and wider.padding == "same"
    with pytest.raises(convgen.SpecError):
        dataclasses.replace(layer, groups=2)


def test_numpy_ints_are_accepted():
    np = pytest.importorskip("numpy")
    assert convgen.Conv1d(np.int64(2), 4, np.int32(3)) == convgen.Conv1d(2, 4, 3)


def test_describe_omits_defaults():
    assert convgen.Conv2d(3, 8, 3, padding=1).describe() == "Conv2d(3, 8, 3, padding=1)"
    assert convgen.MaxPool2d(3, stride=2, padding=1).describe() == \
        "MaxPool2d(3, stride=2, padding=1)"
    assert convgen.MaxPool2d(2).describe() == "MaxPool2d(2)"
    assert convgen.Conv1d(1, 1, 3, padding=((1, 2),)).describe() == \
        "Conv1d(1, 1, 3, padding=((1, 2),))"
    assert convgen.GlobalAvgPool().describe() == "GlobalAvgPool()"


def test_padding_from_onnx():
    assert padding_from_onnx("SAME_UPPER") == "same"
    assert padding_from_onnx("SAME_LOWER") == "same_lower"
    assert padding_from_onnx("VALID") == "valid"
    assert padding_from_onnx("NOTSET", [1, 2, 3, 4]) == ((1, 3), (2, 4))
    assert padding_from_onnx("NOTSET", ndim=2) == 0
    layer = convgen.Conv2d(1, 1, 3, padding=padding_from_onnx("NOTSET", [0, 1, 2, 1]))
    assert layer.padding == ((0, 2), (1, 1))


def test_same_padding_puts_the_extra_on_the_high_or_low_side():
    assert convgen.Conv1d(1, 1, 4, padding="same").resolved_padding((10,)) == ((1, 2),)
    assert convgen.Conv1d(1, 1, 4, padding="same_lower").resolved_padding((10,)) == ((2, 1),)
    # stride 2, dilation 2: extent 5, out ceil(10/2) = 5, total (5-1)*2 + 5 - 10 = 3
    strided = convgen.Conv1d(1, 1, 3, stride=2, dilation=2, padding="same")
    assert strided.resolved_padding((10,)) == ((1, 2),)
    assert strided.output_shape((1, 10)) == (1, 5)


def test_onnx_kernel_3_pad_2_accepted_pytorch_style_rejected():
    assert convgen.MaxPool1d(3, stride=1, padding=2).output_shape((1, 4)) == (1, 6)
    with pytest.raises(convgen.SpecError):
        convgen.MaxPool2d(2, padding=2)


def test_counts_and_conventions():
    conv = convgen.Conv2d(4, 6, 3, groups=2, padding=1)
    assert conv.weight_shape == (6, 2, 3, 3)
    assert conv.num_weights == 6 * 2 * 9 and conv.num_bias == 6
    assert conv.macs((2, 4, 5, 5)) == 2 * 6 * 25 * (2 * 9)  # padding taps counted
    assert conv.flops((2, 4, 5, 5)) == 2 * conv.macs((2, 4, 5, 5)) + 2 * 6 * 25  # bias adds
    convt = convgen.ConvTranspose2d(4, 6, 3, stride=2, groups=2)
    assert convt.weight_shape == (4, 3, 3, 3)
    assert convt.macs((4, 5, 5)) == 4 * 25 * 3 * 9  # every input scatters C_out/g * k taps
    assert convt.output_shape((4, 5, 5)) == (6, 11, 11)
    pool = convgen.AvgPool2d(2)
    assert pool.macs((3, 4, 4)) == 0 and pool.flops((3, 4, 4)) == 3 * 4 * (4 + 1)
    assert convgen.MaxPool1d(3).flops((1, 9)) == 3 * 3
    assert convgen.LPPool1d(2, 3).flops((1, 9)) == 3 * (2 * 3 + 1)
    assert convgen.GlobalAvgPool().flops((2, 3, 4, 5)) == 2 * 3 * (20 + 1)
    assert convgen.GlobalMaxPool().flops((3, 4, 5)) == 3 * 20


def test_memory_footprint():
    conv = convgen.Conv2d(3, 8, 3, bias=True)
    mem = conv.memory((2, 3, 10, 10), dtype="float64")
    assert mem.input_bytes == 2 * 300 * 8 and mem.output_bytes == 2 * 8 * 64 * 8
    assert mem.weight_bytes == 8 * 27 * 8 and mem.bias_bytes == 8 * 8
    assert mem.total_bytes == mem.activation_bytes + mem.parameter_bytes
    pool = convgen.MaxPool2d(2, return_indices=True)
    assert pool.memory((1, 4, 4), dtype="int8").indices_bytes == 4 * 8


def test_adaptive_pooling_windows_and_shapes():
    layer = convgen.AdaptiveAvgPool1d(3)
    assert layer.output_shape((2, 7)) == (2, 3)
    assert [sym.adaptive_window(i, 7, 3) for i in range(3)] == [(0, 3), (2, 5), (4, 7)]
    assert layer.flops((1, 7)) == (3 + 3 + 3) + 3
    assert convgen.AdaptiveMaxPool2d((None, 2)).output_shape((1, 5, 6)) == (1, 5, 2)
    (n,) = sym.size_symbols("n")
    taps = convgen.AdaptiveAvgPool1d(2).flops((1, n))
    assert [taps.subs(n, v) for v in (4, 5)] == [4 + 2, 6 + 2]


def test_receptive_field_of_a_chain():
    chain = convgen.Sequential(convgen.Conv2d(1, 1, 3), convgen.MaxPool2d(2),
                               convgen.Conv2d(1, 1, 3, dilation=2))
    rows = chain.summary((1, 32, 32)).rows
    assert [r.receptive_field for r in rows] == [(3, 3), (4, 4), (4 + 4 * 2, 12)]


def test_symbolic_input_entries_may_be_names():
    H = sympy.Symbol("H", integer=True, positive=True)
    assert convgen.Conv1d(1, 1, 3).output_shape((1, "H")) == (1, H - 2)


def test_receptive_field_through_transpose_and_adaptive_pooling():
    up = convgen.Sequential(convgen.Conv1d(1, 1, 3), convgen.ConvTranspose1d(1, 1, 4, stride=2))
    rows = up.summary((1, 16)).rows
    # each transposed output reads at most floor(3/2) + 1 = 2 inputs, which sit 1 apart
    assert [r.receptive_field for r in rows] == [(3,), (4,)]
    pooled = convgen.Sequential(convgen.AdaptiveAvgPool1d(3), convgen.Conv1d(1, 1, 2))
    rows = pooled.summary((1, 7)).rows
    # windows 3 wide whose starts lie at most 3 apart
    assert [r.receptive_field for r in rows] == [(3,), (3 + 3,)]
    (n,) = sym.size_symbols("n")
    symbolic_rows = pooled.summary((1, n)).rows
    assert symbolic_rows[1].receptive_field[0].subs(n, 7) == 6


def test_sequential_behaves_like_a_sequence_and_constraints_print():
    chain = convgen.Sequential(convgen.Conv1d(1, 1, 3), convgen.MaxPool1d(2))
    assert len(chain) == 2 and list(chain) == [chain[0], chain[1]]
    (L,) = sym.size_symbols("L")
    text = str(chain.constraints((1, L))[1])
    assert "L >= 3" in text and "fits in padded input L in dim 0" in text


def test_receptive_field_after_transposed_convolution_is_whole_positions():
    def field(*layers):
        return convgen.Sequential(*layers).summary((1, 9)).rows[-1].receptive_field[0]
    assert field(convgen.ConvTranspose1d(1, 1, 2, stride=2), convgen.Conv1d(1, 1, 2)) == 2
    assert field(convgen.ConvTranspose1d(1, 1, 4, stride=4), convgen.Conv1d(1, 1, 3)) == 2
    assert field(convgen.ConvTranspose1d(1, 1, 3, stride=2), convgen.Conv1d(1, 1, 2)) == 3


def test_describe_round_trips_through_parse_layer():
    from convgen.config import parse_layer
    for layer in (convgen.AdaptiveAvgPool2d((None, None)), convgen.AdaptiveMaxPool1d((None,)),
                  convgen.Conv2d(3, 8, (3, 1), padding=((0, 1), (2, 2)), dilation=(1, 2)),
                  convgen.LPPool1d(3, 2, padding=1, ceil_mode=True),
                  convgen.ConvTranspose2d(2, 4, 3, stride=2, output_padding=1, groups=2)):
        assert parse_layer(layer.describe()) == layer, layer.describe()
