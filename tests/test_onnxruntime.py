"""Shapes agree with ONNX Runtime, which derives them on its own from one-node models."""

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from convgen.onnx_bridge import onnx_model
from convgen.strategies import conv_layers, input_shape_for, pool_layers

ort = pytest.importorskip("onnxruntime")


def run_onnxruntime(layer, input_shape, x=None, weight=None, bias=None):
    """Run ``layer`` in ONNX Runtime (float32); inputs default to zeros."""
    model = onnx_model(layer, input_shape)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    zeros = np.zeros
    feeds = {"X": zeros(input_shape, np.float32) if x is None else x.astype(np.float32)}
    if hasattr(layer, "weight_shape"):
        feeds["W"] = zeros(layer.weight_shape, np.float32) if weight is None \
            else weight.astype(np.float32)
        if layer.bias:
            feeds["B"] = zeros(layer.out_channels, np.float32) if bias is None \
                else bias.astype(np.float32)
    return session.run(None, feeds)


def _onnx_compatible(layer):
    """The same layer shape-wise, within what ONNX Runtime accepts.

    ONNX Runtime rejects ``output_padding >= stride`` (PyTorch allows it below the dilation
    too) and pooling pads ``>= kernel_size`` (convgen allows pads below the dilated extent);
    ``divisor_override`` has no ONNX form and does not change the shape.
    """
    if hasattr(layer, "ceil_mode") and isinstance(layer.padding, tuple):
        padding = tuple((min(lo, k - 1), min(hi, k - 1))
                        for (lo, hi), k in zip(layer.padding, layer.kernel_size))
        layer = dataclasses.replace(layer, padding=padding)
    if hasattr(layer, "output_padding"):
        padding = tuple(min(op, s - 1) for op, s in zip(layer.output_padding, layer.stride))
        layer = dataclasses.replace(layer, output_padding=padding)
    if getattr(layer, "divisor_override", None) is not None:
        layer = dataclasses.replace(layer, divisor_override=None)  # no ONNX form; same shape
    return layer


@settings(max_examples=60)
@given(st.data())
def test_conv_shapes_agree_with_onnxruntime(data):
    layer = _onnx_compatible(data.draw(conv_layers(ndim=st.integers(1, 2))))
    shape = data.draw(input_shape_for(layer, batch=True, max_extra=4))
    outputs = run_onnxruntime(layer, shape)
    assert outputs[0].shape == layer.output_shape(shape)


@settings(max_examples=60)
@given(st.data())
def test_pool_shapes_agree_with_onnxruntime(data):
    layer = _onnx_compatible(data.draw(pool_layers(ndim=st.integers(1, 2))))
    shape = data.draw(input_shape_for(layer, batch=True, max_extra=4))
    pads = layer.resolved_padding(shape[2:])
    # 'same' with dilation can need pads >= kernel_size, which ONNX Runtime refuses.
    assume(all(max(p) < k for p, k in zip(pads, layer.kernel_size)))
    outputs = run_onnxruntime(layer, shape)
    assert all(out.shape == layer.output_shape(shape) for out in outputs)


@pytest.mark.parametrize("kind", ["GlobalAvgPool", "GlobalMaxPool"])
@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 2, 4, 7), (1, 1, 2, 3, 4)])
def test_global_pool_shapes_agree_with_onnxruntime(kind, shape):
    import convgen
    layer = getattr(convgen, kind)(ndim=len(shape) - 2)
    assert run_onnxruntime(layer, shape)[0].shape == layer.output_shape(shape)


@pytest.mark.parametrize("n, kernel, stride, pad, expected", [
    (3, 2, 2, 1, 2),   # plain ceil gives 3; the third window would start in the right pad
    (4, 2, 2, 1, 3),   # the last window starts on the last input element: kept
    (5, 3, 2, 0, 2),   # ceil equals floor when the windows tile exactly
    (6, 3, 2, 0, 3),   # one partial window past the end
])
def test_ceil_mode_last_window_rule_agrees_with_onnxruntime(n, kernel, stride, pad, expected):
    import convgen
    layer = convgen.MaxPool1d(kernel, stride=stride, padding=pad, ceil_mode=True)
    assert layer.output_shape((1, 1, n)) == (1, 1, expected)
    assert run_onnxruntime(layer, (1, 1, n))[0].shape == (1, 1, expected)
