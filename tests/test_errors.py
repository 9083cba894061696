"""Every SpecError raise site, with the message it gives: parameter, value, what is allowed."""

import re

import numpy as np
import pytest
import sympy

import convgen
from convgen import SpecError
from convgen.config import layer_from_mapping, load, loads, parse_layer, parse_shape, resolve_target
from convgen.onnx_bridge import onnx_nodes
from convgen.spec import padding_from_onnx

C = convgen

SPEC_CASES = {
    "in_channels zero": (lambda: C.Conv2d(0, 8, 3),
                         "Conv2d: in_channels=0 must be a positive int"),
    "out_channels float": (lambda: C.Conv2d(3, 8.0, 3),
                           "Conv2d: out_channels=8.0 must be a positive int"),
    "bias not bool": (lambda: C.Conv2d(3, 8, 3, bias=1),
                      "Conv2d: bias=1 must be True or False"),
    "kernel entry zero": (lambda: C.Conv2d(3, 8, (3, 0)),
                          r"Conv2d: kernel_size=\(3, 0\) must be a positive int or a sequence "
                          "of 2 positive ints"),
    "kernel wrong ndim": (lambda: C.Conv2d(3, 8, (3, 3, 3)),
                          r"Conv2d: kernel_size=\(3, 3, 3\) has 3 entries; Conv2d has 2 "
                          "spatial dimension"),
    "kernel wrong type": (lambda: C.Conv1d(3, 8, "3"),
                          "Conv1d: kernel_size='3' must be a positive int"),
    "stride zero": (lambda: C.MaxPool2d(2, stride=0),
                    "MaxPool2d: stride=0 must be a positive int"),
    "dilation negative": (lambda: C.Conv3d(1, 1, 1, dilation=-1),
                          "Conv3d: dilation=-1 must be a positive int"),
    "padding negative": (lambda: C.Conv2d(3, 8, 3, padding=-1),
                         r"Conv2d: padding=-1 must be an int >= 0"),
    "padding bad pair": (lambda: C.Conv2d(3, 8, 3, padding=((1, 2, 3), 1)),
                         r"Conv2d: padding=\(\(1, 2, 3\), 1\) must be an int >= 0"),
    "padding bad string": (lambda: C.Conv2d(3, 8, 3, padding="full"),
                           "Conv2d: padding='full' must be .* one of 'valid', 'same', "
                           "'same_lower'"),
    "padding wrong ndim": (lambda: C.Conv1d(3, 8, 3, padding=(1, 2)),
                           r"Conv1d: padding=\(1, 2\) has 2 entries but Conv1d has 1 spatial"),
    "padding wrong type": (lambda: C.Conv1d(3, 8, 3, padding=1.5),
                           "Conv1d: padding=1.5 must be an int >= 0"),
    "padding_mode": (lambda: C.Conv2d(3, 8, 3, padding_mode="mirror"),
                     "Conv2d: padding_mode='mirror' must be one of 'zeros', 'reflect', "
                     "'replicate', 'circular'"),
    "groups": (lambda: C.Conv2d(64, 128, 3, groups=3),
               "Conv2d: groups=3 must divide in_channels=64 and out_channels=128"),
    "transpose padding_mode": (lambda: C.ConvTranspose2d(3, 8, 3, padding_mode="reflect"),
                               "ConvTranspose2d: padding_mode='reflect' is not supported; "
                               "transposed convolutions allow only 'zeros'"),
    "output_padding too big": (lambda: C.ConvTranspose2d(3, 8, 3, stride=2, output_padding=2),
                               "ConvTranspose2d: output_padding=2 in dim 0 must be smaller "
                               "than stride=2 or dilation=1"),
    "output_padding negative": (lambda: C.ConvTranspose1d(3, 8, 3, output_padding=-1),
                                "ConvTranspose1d: output_padding=-1 must be a non-negative int"),
    "transpose same negative": (lambda: C.ConvTranspose1d(1, 1, 1, stride=3, padding="same"),
                                "ConvTranspose1d: padding='same' needs dilated kernel extent "
                                "1 \\+ output_padding 0 >= stride 3 in dim 0"),
    "pool pad too big": (lambda: C.MaxPool2d(2, padding=2),
                         r"MaxPool2d: padding \(2, 2\) in dim 0 must be smaller than the "
                         r"dilated kernel extent 2 \(kernel_size=2, dilation=1\)"),
    "ceil_mode": (lambda: C.AvgPool1d(2, ceil_mode="yes"),
                  "AvgPool1d: ceil_mode='yes' must be True or False"),
    "return_indices": (lambda: C.MaxPool1d(2, return_indices=None),
                       "MaxPool1d: return_indices=None must be True or False"),
    "count_include_pad": (lambda: C.AvgPool2d(2, count_include_pad=0),
                          "AvgPool2d: count_include_pad=0 must be True or False"),
    "divisor_override": (lambda: C.AvgPool2d(2, divisor_override=0),
                         "AvgPool2d: divisor_override=0 must be a positive int"),
    "norm_type": (lambda: C.LPPool2d(0, 2), "LPPool2d: norm_type=0 must be a finite number > 0"),
    "norm_type inf": (lambda: C.LPPool1d(float("inf"), 2),
                      "LPPool1d: norm_type=inf must be a finite number > 0"),
    "adaptive output_size": (lambda: C.AdaptiveAvgPool2d((2, 0)),
                             r"AdaptiveAvgPool2d: output_size=\(2, 0\) must be a positive int "
                             "or a sequence of 2 positive ints or None"),
    "adaptive return_indices": (lambda: C.AdaptiveMaxPool1d(2, return_indices="no"),
                                "AdaptiveMaxPool1d: return_indices='no' must be True or False"),
    "global ndim": (lambda: C.GlobalAvgPool(ndim=0),
                    "GlobalAvgPool: ndim=0 must be a positive int"),
    "sequential layer": (lambda: C.Sequential(C.Conv1d(1, 1, 1), "relu"),
                         "Sequential: layer 1 is 'relu'; every layer must be a convgen layer"),
    "sequential names": (lambda: C.Sequential(C.Conv1d(1, 1, 1), names=["a", "b"]),
                         r"Sequential: names=\('a', 'b'\) must be 1 non-empty strings"),
    "sequential duplicate names": (lambda: C.Sequential(C.Conv1d(1, 1, 1), C.Conv1d(1, 1, 1),
                                                        names=["a", "a"]),
                                   r"Sequential: names=\('a', 'a'\) must be unique"),
}

SHAPE_CASES = {
    "not a sequence": (lambda: C.Conv2d(3, 8, 3).output_shape("3,32,32"),
                       "Conv2d: input_shape='3,32,32' must be a sequence"),
    "wrong rank": (lambda: C.Conv2d(3, 8, 3).output_shape((32, 32)),
                   r"Conv2d: input_shape=\(32, 32\) has 2 entries; a 2-d layer takes "
                   r"\(C, H, W\) = 3 entries or \(N, C, H, W\) = 4"),
    "size zero": (lambda: C.Conv1d(3, 8, 3).output_shape((3, 0)),
                  r"Conv1d: input_shape spatial\[0\]=0 must be a positive int"),
    "size float": (lambda: C.Conv1d(3, 8, 3).output_shape((1, 3, 7.5)),
                   r"Conv1d: input_shape spatial\[0\]=7.5 must be a positive int"),
    "size negative symbol": (lambda: C.Conv1d(3, 8, 3).output_shape(
        (3, sympy.Symbol("n", negative=True))), r"Conv1d: input_shape spatial\[0\]=n must"),
    "channels": (lambda: C.Conv2d(3, 8, 3).output_shape((4, 5, 5)),
                 "Conv2d: input_shape has 4 channels but in_channels=3"),
    "kernel exceeds padded input": (
        lambda: C.Conv1d(1, 1, 7, dilation=2, padding=3).output_shape((1, 6)),
        r"Conv1d: dilated kernel extent 13 \(kernel_size=7, dilation=2\) exceeds padded "
        r"input 12 in dim 0 \(input size 6, padding \(3, 3\)\)"),
    "pool kernel exceeds input": (
        lambda: C.MaxPool2d(3).output_shape((1, 2, 5)),
        r"MaxPool2d: dilated kernel extent 3 \(kernel_size=3, dilation=1\) exceeds padded "
        "input 2 in dim 0"),
    "reflect": (lambda: C.Conv1d(1, 1, 3, padding=3, padding_mode="reflect").output_shape((1, 3)),
                r"Conv1d: padding_mode='reflect' needs padding < input size in every dim, but "
                "lo padding 3 meets input size 3 in dim 0"),
    "circular": (lambda: C.Conv1d(1, 1, 5, padding=((4, 0),), padding_mode="circular")
                 .output_shape((1, 3)),
                 r"Conv1d: padding_mode='circular' needs padding <= input size in every dim, "
                 "but lo padding 4 meets input size 3 in dim 0"),
    "transpose crops everything": (
        lambda: C.ConvTranspose1d(1, 1, 1, padding=((1, 1),)).output_shape((1, 1)),
        r"ConvTranspose1d: output size -1 in dim 0 is not positive: padding \(1, 1\) crops "
        "more than the transposed convolution produces"),
    "ceil mode without a window": (
        lambda: C.MaxPool1d(5, 2, ceil_mode=True).output_shape((1, 2)),
        r"MaxPool1d: ceil-mode output size 0 in dim 0 is not positive: dilated kernel extent 5 "
        r"\(kernel_size=5, dilation=1\) reaches past padded input 2 by a stride or more"),
    "dilated window between taps": (
        lambda: C.MaxPool1d(2, stride=1, dilation=2, padding="same").output_shape((1, 1)),
        r"MaxPool1d: window 0 in dim 0 reads no input element \(input size 1, dilation=2, "
        r"padding \(1, 1\)\): every tap falls in the padding"),
    "memory dtype": (lambda: C.Conv1d(1, 1, 1).memory((1, 4), dtype="float8"),
                     "dtype='float8' must be one of float16, bfloat16, float32"),
    "sequential names the layer": (
        lambda: C.Sequential(C.Conv1d(1, 2, 3), C.Conv1d(3, 1, 1), names=["a", "b"])
        .output_shape((1, 8)),
        "layer 'b': Conv1d: input_shape has 2 channels but in_channels=3"),
}

ONNX_CASES = {
    "auto_pad": (lambda: padding_from_onnx("SAME"),
                 "auto_pad='SAME' must be one of 'NOTSET', 'VALID', 'SAME_UPPER', 'SAME_LOWER'"),
    "pads without ndim": (lambda: padding_from_onnx("NOTSET"),
                          "pads=None with auto_pad='NOTSET' needs ndim"),
    "odd pads": (lambda: padding_from_onnx("NOTSET", [1, 2, 3]),
                 r"pads=\[1, 2, 3\] must hold 2\*ndim entries"),
    "adaptive": (lambda: onnx_nodes(C.AdaptiveAvgPool2d(1)),
                 "AdaptiveAvgPool2d has no ONNX operator"),
    "divisor_override": (lambda: onnx_nodes(C.AvgPool2d(2, divisor_override=3)),
                         "AvgPool2d: divisor_override=3 has no ONNX AveragePool equivalent"),
    "fractional p": (lambda: onnx_nodes(C.LPPool1d(1.5, 2)),
                     "LPPool1d: norm_type=1.5 must be an int for ONNX LpPool"),
    "pad mode without shape": (lambda: onnx_nodes(C.Conv1d(1, 1, 3, padding_mode="reflect")),
                               "Conv1d: padding_mode='reflect' needs input_shape"),
    "same dilation without shape": (
        lambda: onnx_nodes(C.Conv1d(1, 1, 3, dilation=2, padding="same")),
        "Conv1d: padding='same' with dilation needs input_shape"),
    "no mapping": (lambda: onnx_nodes(_Unmapped()),
                   r"_Unmapped has no known family \(family=None\); a layer spec's family "
                   "must be one of 'conv', 'conv_transpose', 'pool', 'adaptive_pool'"),
}


class _Unmapped(convgen.Layer):
    ndim = 1

    def _out_spatial(self, shape):
        return shape.spatial

    def _rf_steps(self, shape):
        return ((1, 1),)


GOOD_MODEL = """
[[model]]
name = "m"
input_shape = [1, 8]
layers = [{ type = "Conv1d", in_channels = 1, out_channels = 2, kernel_size = 3 }]
"""

CONFIG_CASES = {
    "unknown type": (lambda: layer_from_mapping({"type": "Dense"}),
                     "layer: type='Dense' must be one of Conv1d, Conv2d"),
    "unknown key": (lambda: layer_from_mapping({"type": "Conv1d", "in_channels": 1,
                                                "out_channels": 1, "kernel_size": 1,
                                                "kernel": 3}),
                    "layer: unknown key\\(s\\) 'kernel' for Conv1d; allowed: in_channels,"),
    "missing key": (lambda: layer_from_mapping({"type": "Conv1d", "in_channels": 1}),
                    "layer: Conv1d needs out_channels, kernel_size"),
    "invalid value": (lambda: layer_from_mapping({"type": "MaxPool1d", "kernel_size": 0}),
                      "layer: MaxPool1d: kernel_size=0 must be a positive int"),
    "bad toml": (lambda: loads("[[model]\n"), "<string>: not valid TOML"),
    "top-level key": (lambda: loads("models = 1"), "unknown top-level key\\(s\\) 'models'"),
    "model not table": (lambda: loads("model = [1]"), "model 0 must be a table"),
    "model key": (lambda: loads(GOOD_MODEL + "shape = 1\n"),
                  "model 0: unknown key\\(s\\) 'shape'; allowed: description, dtype, input_shape"),
    "model name": (lambda: loads(GOOD_MODEL.replace('"m"', '""')),
                   "model 0: name='' must be a non-empty string"),
    "duplicate name": (lambda: loads(GOOD_MODEL + GOOD_MODEL), "name='m' is used twice"),
    "input shape": (lambda: loads(GOOD_MODEL.replace("[1, 8]", "[1, 8.5]")),
                    r"model 0 'm': input_shape=\[1, 8.5\] must be a list of ints and symbol"),
    "no layers": (lambda: loads('[[model]]\nname = "m"\ninput_shape = [1, 8]\nlayers = []'),
                  "model 0 'm': layers must be a non-empty array of tables"),
    "layer not table": (lambda: loads('[[model]]\nname="m"\ninput_shape=[1, 8]\nlayers=[1]'),
                        "model 0 'm': layer 0 must be a table"),
    "layer shape": (lambda: loads(GOOD_MODEL.replace("[1, 8]", "[2, 8]")),
                    "layer '0': Conv1d: input_shape has 2 channels but in_channels=1"),
    "standalone not table": (lambda: loads("layer = [1]"), "layer 0 must be a table"),
    "standalone name": (lambda: loads('[[layer]]\ntype = "MaxPool1d"\nkernel_size = 2\n'
                                      'input_shape = [1, 4]'),
                        "layer 0: name=None must be a non-empty string"),
    "array": (lambda: loads("[model]\nname = 1"), "model must be an array of tables"),
    "empty file": (lambda: loads("description = 'x'"), "defines no \\[\\[model\\]\\]"),
    "missing file": (lambda: load("/nonexistent/layers.toml"),
                     "cannot read layer file '/nonexistent/layers.toml'"),
    "layer syntax": (lambda: parse_layer("Conv2d 3 8"),
                     "layer 'Conv2d 3 8' must be a call such as"),
    "layer type": (lambda: parse_layer("Linear(3, 8)"), "'Linear' must be one of Conv1d"),
    "layer literal": (lambda: parse_layer("Conv2d(3, 8, k)"),
                      "arguments must be literals"),
    "layer kwargs": (lambda: parse_layer("Conv2d(3, 8, **{'kernel_size': 3})"),
                     "\\*\\*kwargs are not allowed"),
    "layer too many": (lambda: parse_layer("GlobalAvgPool(2, 3)"),
                       "GlobalAvgPool takes at most 1 arguments"),
    "layer twice": (lambda: parse_layer("Conv2d(3, 8, 3, in_channels=3)"),
                    "in_channels given twice"),
    "shape text": (lambda: parse_shape("3;32;32"), "input shape '3;32;32' must be"),
    "target": (lambda: resolve_target("nonexistent"),
               "'nonexistent' is neither a layer file nor a bundled example"),
}


def test_spec_error_is_a_value_error():
    with pytest.raises(ValueError):
        C.Conv2d(3, 8, 0)


MORE_CASES = {
    "huge norm_type": (lambda: C.LPPool2d(10**400, 2), "LPPool2d: norm_type=1000"),
    "dtype not a string": (lambda: C.Conv1d(1, 1, 1).memory((1, 4), dtype=["float32"]),
                           r"dtype=\['float32'\] must be one of"),
    "auto_pad not a string": (lambda: padding_from_onnx(["SAME_UPPER"]),
                              r"auto_pad=\['SAME_UPPER'\] must be one of"),
    "mixed dimensions": (lambda: C.Sequential(C.Conv2d(3, 8, 3), C.Conv1d(2, 4, 1)),
                         r"Sequential: layers have \[1, 2\] spatial dimensions"),
    "type not a string": (lambda: layer_from_mapping({"type": ["Conv2d"]}),
                          r"layer: type=\['Conv2d'\] must be one of"),
    "superscript digit": (lambda: parse_shape("3,4,\u00b2"), "must be comma-separated ints"),
    "layer input_shape in model": (
        lambda: loads(GOOD_MODEL.replace("kernel_size = 3", "kernel_size = 3, input_shape = [1]")),
        "model 0 'm': layer 0 has input_shape; in a model only the model has one"),
    "layer name not a string": (
        lambda: loads(GOOD_MODEL.replace('type = "Conv1d"', 'name = 1, type = "Conv1d"')),
        "model 0 'm': layer 0 name=1 must be a non-empty string"),
    "description not a string": (lambda: loads(GOOD_MODEL.replace('name = "m"',
                                                                  'name = "m"\ndescription = 3')),
                                 "model 0 'm': description=3 must be a string"),
    "file description": (lambda: loads("description = 3\n" + GOOD_MODEL),
                         "<string>: description=3 must be a string"),
    "shape error names the file and model": (
        lambda: loads(GOOD_MODEL.replace("[1, 8]", "[1, 0]")),
        r"<string>: model 0 'm': layer '0': Conv1d: input_shape spatial\[0\]=0"),
    "auto names collide with given names": (
        lambda: loads(GOOD_MODEL.replace(
            "layers = [", 'layers = [{ type = "MaxPool1d", kernel_size = 1 }, { name = "0", ')
            .replace('{ type = "Conv1d"', 'type = "Conv1d"')),
        r"<string>: model 0 'm': Sequential: names=\('0', '0'\) must be unique"),
    "chain constraints name the layer": (
        lambda: C.Sequential(C.Conv1d(1, 2, 3), C.Conv1d(2, 1, 9), names=["a", "b"])
        .macs((1, 8)),
        r"layer 'b': Conv1d: dilated kernel extent 9"),
}


ALL_CASES = {**SPEC_CASES, **SHAPE_CASES, **ONNX_CASES, **CONFIG_CASES, **MORE_CASES}


@pytest.mark.parametrize("case", sorted(ALL_CASES))
def test_spec_error_message(case):
    make, message = ALL_CASES[case]
    with pytest.raises(SpecError) as info:
        make()
    assert re.search(message, str(info.value)), str(info.value)


def test_non_utf8_layer_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_bytes(b"\xff\xfe[[model]]")
    with pytest.raises(SpecError, match="is not UTF-8 text"):
        load(path)


def _operator_cases():
    from convgen import reference, toeplitz
    from convgen.plot import plot_toeplitz
    from convgen.symbolic import padded_source, size_symbols

    (H,) = size_symbols("H")
    conv = C.Conv1d(1, 2, 3)
    return {
        "symbolic input": (lambda: toeplitz.toeplitz(conv, (1, H)),
                           r"Conv1d: the Toeplitz matrix needs a concrete input_shape"),
        "not linear": (lambda: toeplitz.toeplitz(C.LPPool1d(2, 2), (1, 4)),
                       "LPPool1d is not linear, so it has no Toeplitz matrix"),
        "weight shape": (lambda: toeplitz.toeplitz(conv, (1, 5), weight=np.ones((2, 1, 2))),
                         r"Conv1d: weight has shape \(2, 1, 2\); expected \(2, 1, 3\)"),
        "weight dtype": (lambda: toeplitz.toeplitz(conv, (1, 5),
                                                   weight=np.full((2, 1, 3), "a")),
                         "Conv1d: weight dtype <U1 must be an integer or floating dtype"),
        "pool weight": (lambda: toeplitz.toeplitz(C.AvgPool1d(2), (1, 4), weight=np.ones(2)),
                        "AvgPool1d has no weight"),
        "numeric without weight": (lambda: toeplitz.toeplitz(conv, (1, 5), symbolic=False),
                                   "Conv1d: the numeric matrix needs weight"),
        "symbolic too large": (lambda: toeplitz.toeplitz(C.Conv2d(3, 64, 7), (3, 64, 64)),
                               "the symbolic matrix would hold .* entries"),
        "bias shape": (lambda: toeplitz.bias_vector(conv, (1, 5), bias=np.ones(3)),
                       r"Conv1d: bias has shape \(3,\); expected \(2,\)"),
        "selection of a conv": (lambda: toeplitz.selection_matrix(conv, np.ones((1, 5))),
                                "Conv1d: selection_matrix is for max pooling layers"),
        "forward without weight": (lambda: reference.forward(conv, np.ones((1, 5))),
                                   r"Conv1d: forward needs weight of shape \(2, 1, 3\)"),
        "forward weight shape": (lambda: reference.forward(conv, np.ones((1, 5)), np.ones(3)),
                                 r"Conv1d: weight has shape \(3,\); expected \(2, 1, 3\)"),
        "forward bias shape": (lambda: reference.forward(conv, np.ones((1, 5)),
                                                         np.ones((2, 1, 3)), np.ones(1)),
                               r"Conv1d: bias must be None or of shape \(2,\), got shape"),
        "forward bias without bias": (
            lambda: reference.forward(C.Conv1d(1, 2, 3, bias=False), np.ones((1, 5)),
                                      np.ones((2, 1, 3)), np.ones(2)),
            r"Conv1d: bias must be None, got shape \(2,\)"),
        "forward pool weight": (lambda: reference.forward(C.MaxPool1d(2), np.ones((1, 4)),
                                                          np.ones(2)),
                                "MaxPool1d has no weight or bias"),
        "forward input shape": (lambda: reference.forward(conv, np.ones((2, 5))),
                                "Conv1d: input_shape has 2 channels but in_channels=1"),
        "forward unknown layer": (lambda: reference.forward(_Unmapped(), np.ones((1, 4))),
                                  r"_Unmapped has no known family \(family=None\)"),
        "toeplitz_forward nonlinear": (
            lambda: reference.toeplitz_forward(C.MaxPool1d(2), np.ones((1, 4))),
            "MaxPool1d is not linear; it has no Toeplitz product"),
        "plot nonlinear": (lambda: plot_toeplitz(C.MaxPool1d(2), (1, 4), "x.png"),
                           "MaxPool1d is not linear: it has no matrix to draw"),
        "padding mode": (lambda: padded_source(0, 4, "mirror"),
                         "padding_mode='mirror' must be one of"),
    }


@pytest.mark.parametrize("case", sorted(_operator_cases()))
def test_operator_error_messages(case):
    make, message = _operator_cases()[case]
    with pytest.raises(convgen.ConvgenError) as info:
        make()
    assert re.search(message, str(info.value)), str(info.value)


def test_plot_without_matplotlib_says_how_to_install(monkeypatch):
    import sys

    from convgen.plot import plot_toeplitz
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(convgen.ConvgenError, match=r"pip install 'convgen\[plot\]'"):
        plot_toeplitz(C.Conv1d(1, 1, 2), (1, 4), "x.png")


def test_layer_file_dtype_errors():
    with pytest.raises(SpecError, match="model 0 'm': dtype='float16' must be one of float32"):
        loads(GOOD_MODEL.replace('name = "m"', 'name = "m"\ndtype = "float16"'))
    with pytest.raises(SpecError, match="layer 0 has dtype; in a model only the model has one"):
        loads(GOOD_MODEL.replace("kernel_size = 3", 'kernel_size = 3, dtype = "float64"'))
