"""Quantized average pooling (ONNX Runtime's QLinearAveragePool and QLinearGlobalAveragePool,
TFLite's integer average pool): specs, the arithmetic against its exact definitions, the two
oracles, the C and CUDA kernels bit for bit, sanitizers, strict compilers, bounds and layer
proofs, the ONNX bridge and ONNX Runtime as a peer."""

import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import SpecError
from convgen import quantization as q
from convgen.bounds import prove_bounds
from convgen.codegen import generate
from convgen.proofs import layer_statements
from convgen.reference import forward, toeplitz_forward
from convgen.runtime.cbuild import compile_kernels
from convgen.sanitize import findings
from convgen.strategies import input_shape_for, quantized_pools
from convgen.verify import check_kernels
from tests.conftest import BULK, BULK_EXAMPLES
from tests.helpers import compile_strict, cuda_kernels, needs_compiler

QLinearAvgPool2d, QLinearGlobalAvgPool = convgen.QLinearAvgPool2d, convgen.QLinearGlobalAvgPool

#: ONNX Runtime's window pool (float), TFLite's (integer, ceil mode counting the padding,
#: ReLU), the global pool both ways, a 1-d and a 3-d one.
WINDOW = QLinearAvgPool2d(3, stride=2, padding=1, x_scale=0.3, x_zero_point=5, y_scale=0.2,
                          y_zero_point=-3)
TFLITE = QLinearAvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=True, x_scale=0.05,
                          x_zero_point=-7, y_scale=0.05, y_zero_point=-7, rounding="integer",
                          activation="relu")
GLOBAL = QLinearGlobalAvgPool(dtype="uint8", x_scale=0.052, x_zero_point=131, y_scale=0.0317,
                              y_zero_point=128)
GLOBAL_INTEGER = QLinearGlobalAvgPool(ndim=1, x_scale=0.1, x_zero_point=-128, y_scale=0.1,
                                      y_zero_point=-128, rounding="integer",
                                      activation="relu6")
DILATED = convgen.QLinearAvgPool3d((2, 1, 3), stride=(1, 2, 1), dilation=(1, 1, 2),
                                   padding="same", dtype="uint8", x_scale=0.01,
                                   x_zero_point=255, y_scale=0.02, y_zero_point=0)
LAYERS = [(WINDOW, (3, 7, 6)), (TFLITE, (2, 5, 5)), (GLOBAL, (4, 7, 7)),
          (GLOBAL_INTEGER, (3, 10)), (DILATED, (2, 3, 5, 6))]
IDS = ["window", "tflite", "global", "global_integer", "dilated"]


def _x(layer, shape, rng, batch=2):
    low, high = q.type_range(layer.dtype)
    return rng.integers(low, high + 1, size=(batch, *shape)).astype(layer.dtype)


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize("kwargs, message", [
    (dict(x_scale=0.0), r"x_scale=0.0 must be a positive finite number"),
    (dict(y_zero_point=200), r"y_zero_point=200 must be an int in \[-128, 127\]"),
    (dict(rounding="fixed_point"), r"rounding='fixed_point' must be one of 'float', 'integer'"),
    (dict(rounding="integer", x_scale=0.1, y_scale=0.2),
     r"rounding='integer' \(TFLite's average pool\) keeps the input's quantization"),
    (dict(dtype="int32"), r"dtype='int32' must be one of 'int8', 'uint8'"),
    (dict(activation="relu6", y_zero_point=127, y_scale=1e9, x_scale=1.0), None),
])
def test_a_bad_quantization_parameter_is_refused_naming_it(kwargs, message):
    if message is None:  # ReLU6 on the type's top: one value left, still a layer
        assert QLinearAvgPool2d(2, **kwargs).clamp == (127, 127)
        return
    with pytest.raises(SpecError, match=message):
        QLinearAvgPool2d(2, **kwargs)


def test_the_sums_stay_exact_or_the_layer_is_refused():
    with pytest.raises(SpecError, match=r"kernel_size=\(4096, 4096\) holds 16,777,216 input "
                                        r"elements; a quantized average pool adds at most"):
        QLinearAvgPool2d(4096)
    with pytest.raises(SpecError, match=r"the input plane \(4096, 4096\) holds 16,777,216"):
        GLOBAL.output_shape((1, 4096, 4096))
    assert GLOBAL.output_shape((5, 2896, 2896)) == (5, 1, 1)


def test_counts_memory_and_the_kernel_dtype_are_the_layers_own():
    assert WINDOW.memory((2, 3, 7, 6)).input_bytes == 2 * 3 * 7 * 6
    assert GLOBAL.memory((1, 4, 7, 7)).output_bytes == 4
    with pytest.raises(SpecError, match=r"dtype='float32' must be the layer's own dtype"):
        WINDOW.memory((3, 7, 6), "float32")
    assert generate(GLOBAL, (4, 7, 7)).dtype == "uint8"
    with pytest.raises(SpecError, match=r"dtype='float32' must be one of uint8"):
        generate(GLOBAL, (4, 7, 7), dtype="float32")


# --------------------------------------------------------------------------- arithmetic


def test_the_integer_mean_is_tflites_rounding_for_every_sum():
    """Every raw sum of ``count`` int8 values, counts 1 to 40: C's truncating formula is
    round-half-away of the exact quotient (and ties exist only for even counts)."""
    for count in range(1, 41):
        for acc in range(count * -255, count * 255 + 1, 7 if count > 8 else 1):
            assert q.average_integer(acc, count, 0, (-10**9, 10**9)) == \
                q.average_integer_exact(acc, count, 0, (-10**9, 10**9)), (acc, count)
    assert q.average_integer(5, 2, 0, (-128, 127)) == 3      # 2.5 away from zero
    assert q.average_integer(-5, 2, 0, (-128, 127)) == -3
    assert q.average_integer(1, 2, -128, (-128, 127)) == -128  # the raw sum -255 rounds down


@settings(max_examples=200)
@given(st.lists(st.integers(-255, 255), min_size=1, max_size=30),
       st.sampled_from([2.0**-12, 0.0007, 0.003, 0.02, 0.1, 0.3, 3.0]),
       st.sampled_from([0.004, 0.05, 0.2, 0.7, 16.0]), st.integers(-128, 127),
       st.integers(0, 5))
def test_the_float_arithmetic_agrees_with_its_exact_definition(terms, xs, ys, zero, extra):
    xs, ys, clamp = q.float32(xs), q.float32(ys), (-128, 127)
    count = len(terms) + extra  # count_include_pad: padded taps in the divisor
    assert q.average_window_float(terms, count, xs, ys, zero, clamp) == \
        q.average_window_float_exact(terms, count, xs, ys, zero, clamp)
    scale = q.global_scale(xs, ys, count)
    assert q.average_global_float(sum(terms), scale, zero, clamp) == \
        q.average_global_float_exact(sum(terms), xs, ys, count, zero, clamp)


def test_ties_round_to_even_and_the_sum_is_rounded_tap_by_tap():
    # the mean 0.5, 1.5, 2.5 of scale 1: to even
    assert [q.average_global_float(v, q.global_scale(1.0, 1.0, 2), 0, (-128, 127))
            for v in (1, 3, 5, -1, -3)] == [0, 2, 2, 0, -2]
    # ONNX Runtime adds the dequantized taps one by one in binary32: on this window its
    # output is 28 where the exact mean, 0.02 * 77 / 8 / 0.007 = 27.499999..., rounds to 27
    terms = [46, 181, -238, -10, -131, 125, 153, -49]
    xs, ys = q.float32(0.02), q.float32(0.007)
    assert q.average_window_float(terms, 8, xs, ys, 0, (-128, 127)) == 28
    assert q.round_half_even(Fraction(xs) * sum(terms) / 8 / Fraction(ys)) == 27


# --------------------------------------------------------------------------- oracles


@settings(max_examples=60)
@given(st.data())
def test_the_two_oracles_agree(data):
    layer = data.draw(quantized_pools())
    shape = data.draw(input_shape_for(layer, batch=True))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    low, high = q.type_range(layer.dtype)
    x = rng.integers(low, high + 1, size=shape).astype(layer.dtype)
    assert np.array_equal(forward(layer, x), toeplitz_forward(layer, x))


def test_the_oracle_is_the_definition_on_hand_checked_cases():
    # TFLite: the window [[1, 2], [3, 5]] raw, mean 2.75 -> 3; with zero point -1 and a
    # padded row counted: (1 + 2 - 1 - 1) / 4 = 0.25 -> 0
    x = np.array([[[[1, 2], [3, 5]]]], dtype=np.int8)
    tflite = QLinearAvgPool2d(2, x_scale=0.5, y_scale=0.5, rounding="integer")
    assert forward(tflite, x).tolist() == [[[[3]]]]
    padded = QLinearAvgPool2d((2, 2), stride=2, padding=((1, 0), (0, 0)), count_include_pad=True,
                              x_scale=0.5, x_zero_point=-1, y_scale=0.5, y_zero_point=-1,
                              rounding="integer")
    assert forward(padded, x)[0, 0, 0, 0] == 0
    # ONNX Runtime: x_scale 0.5, four taps 1, 2, 3, 5 with zero point 0: mean 1.375; / 0.25
    # = 5.5, + 0 -> 6 (to even)
    onnx = QLinearAvgPool2d(2, x_scale=0.5, y_scale=0.25)
    assert forward(onnx, x).tolist() == [[[[6]]]]


def test_the_oracle_refuses_float_inputs_and_values_outside_the_type():
    with pytest.raises(SpecError, match="forward takes integer x"):
        forward(WINDOW, np.zeros((1, 3, 7, 6)))
    with pytest.raises(SpecError, match=r"x holds values outside \[0, 255\]"):
        forward(GLOBAL, np.full((1, 4, 7, 7), 256, dtype=np.int64))


# --------------------------------------------------------------------------- kernels


def test_the_kernels_match_the_oracle_bit_for_bit():
    for outcome in check_kernels(compile_kernels(LAYERS), cases=3):
        assert outcome.passed, (outcome.name, outcome.detail)


def test_a_wrong_kernel_is_caught():
    """The verification fails a kernel whose rounding is off (ties to zero, not even)."""
    kernel = generate(WINDOW, (3, 7, 6))
    assert "rintf(value)" in kernel.source
    rng = np.random.default_rng(3)
    built = compile_kernels([(WINDOW, (3, 7, 6))])[0]
    x = _x(WINDOW, (3, 7, 6), rng, 4)
    assert np.array_equal(built(x), forward(WINDOW, x).astype(np.int8))
    wrong = QLinearAvgPool2d(3, stride=2, padding=1, x_scale=0.3, x_zero_point=5,
                             y_scale=0.2, y_zero_point=-2)  # the zero point off by one
    assert not np.array_equal(built(x), forward(wrong, x).astype(np.int8))


def test_the_call_checks_the_dtype():
    built = compile_kernels([(GLOBAL, (4, 7, 7))])[0]
    with pytest.raises(SpecError, match=r"x has dtype int8; the kernel was generated for uint8"):
        built(np.zeros((1, 4, 7, 7), np.int8))


@settings(max_examples=BULK_EXAMPLES)
@given(st.data())
def test_random_quantized_pools_match_the_oracle_bit_for_bit(data):
    """Random configs (every window option, both roundings, both types, extreme zero points
    and scales, every activation), built into one module an example."""
    items = []
    for _ in range(max(2, BULK // 4)):
        layer = data.draw(quantized_pools())
        items.append((layer, data.draw(input_shape_for(layer, batch=False))))
    for outcome in check_kernels(compile_kernels(items), cases=2):
        assert outcome.passed, (outcome.description, outcome.detail)


def test_fused_multiply_add_cannot_change_the_float_pool(tmp_path):
    """GCC's GNU modes fuse across statements (``-ffp-contract=fast``): the kernel turns it
    off for itself, so it stays bit for bit with ``-std=gnu99 -march=native``."""
    flags = ("-std=gnu99", "-O3", "-march=native", "-ffp-contract=fast")
    built = compile_kernels([(WINDOW, (3, 7, 6))], flags=flags)[0]
    rng = np.random.default_rng(5)
    for _ in range(4):
        x = _x(WINDOW, (3, 7, 6), rng, 8)
        assert np.array_equal(built(x), forward(WINDOW, x).astype(np.int8))


def test_the_cuda_text_matches_the_oracle_on_the_cpu():
    for outcome in check_kernels(cuda_kernels("cuda-cpu", LAYERS, None), cases=2):
        assert outcome.passed, (outcome.name, outcome.detail)


def test_the_cuda_text_never_fuses_the_dequantization():
    from convgen.cudagen import generate_cuda
    source = generate_cuda(WINDOW, (3, 7, 6)).source
    assert "__fmul_rn(0x1.333334p-2f /* 0.3 */, difference)" in source


@pytest.mark.parametrize("layer, shape", LAYERS, ids=IDS)
def test_the_kernels_are_clean_under_the_sanitizers(layer, shape, tmp_path):
    assert findings(generate(layer, shape), tmp_path) == ""


@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_kernels_compile_clean_under_strict_flags(compiler, tmp_path):
    needs_compiler(compiler)
    for layer, shape in LAYERS:
        for profile in ("default", "portable"):
            compile_strict(compiler, generate(layer, shape, profile=profile), tmp_path,
                           [[], ["-fopenmp"] if compiler == "gcc" else []])


@pytest.mark.parametrize("layer, shape", LAYERS, ids=IDS)
def test_every_access_is_proved_in_bounds(layer, shape):
    results = prove_bounds(generate(layer, shape))
    assert results and all(r.status == "proved" for r in results), \
        [r for r in results if r.status != "proved"]


def test_the_reference_schedule_is_chosen_and_says_why():
    for layer, shape in LAYERS:
        kernel = generate(layer, shape)
        assert kernel.schedule == "reference"
        assert "not quantized" in kernel.schedule_reason
    with pytest.raises(SpecError, match="not quantized"):
        generate(WINDOW, (3, 7, 20), schedule="blocked")


def test_the_layer_proofs_hold_and_name_the_integer_mean():
    results = layer_statements(TFLITE)
    assert all(r.status == "proved" for r in results), results
    statements = " ".join(r.statement for r in results)
    assert "is raw / c rounded to nearest, ties away from zero" in statements
    assert "the int32 sum never overflows over up to 4 taps" in statements
    glob = " ".join(r.statement for r in layer_statements(GLOBAL))
    assert "over up to 8,388,608 taps" in glob


def test_the_report_states_the_arithmetic(tmp_path):
    from convgen import emit
    from convgen.config import loads
    networks = loads('[[layer]]\nname = "gap"\ntype = "QLinearGlobalAvgPool"\n'
                     'input_shape = [4, 7, 7]\nx_scale = 0.052\nx_zero_point = 131\n'
                     'y_scale = 0.0317\ny_zero_point = 128\ndtype = "uint8"\n')
    emit.write(emit.plan(networks, "q", ["c"]), tmp_path)
    report = next(tmp_path.rglob("gap.md")).read_text()
    assert "fl(x_scale / fl(y_scale * 49))" in report
    assert "Proofs (`convgen prove --layer`): 1 of 1 proved." in report


# --------------------------------------------------------------------------- ONNX


def _session(model):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_onnx_import_takes_the_constants_and_export_round_trips():
    onnx = pytest.importorskip("onnx")
    from convgen.onnx_bridge import kernel_arrays, layer_from_onnx, onnx_model

    for layer, shape in [(WINDOW, (2, 3, 7, 6)), (GLOBAL, (2, 4, 7, 7))]:
        model = onnx_model(layer, shape)
        node = model.graph.node[0]
        assert node.domain == "com.microsoft"
        constants = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
        names = list(node.input)
        shapes = [constants[n].shape if n in constants else shape for n in names]
        dtypes = [constants[n].dtype if n in constants else layer.dtype for n in names]
        assert layer_from_onnx(node, shapes, constants, dtypes) == layer
        assert kernel_arrays(node, names) == ["X"]
    with pytest.raises(SpecError, match=r"rounding='integer', activation='relu' has no ONNX "
                                        "QLinearAveragePool form"):
        onnx_model(TFLITE, (1, 2, 5, 5))
    with pytest.raises(SpecError, match=r"dilation=\(1, 1, 2\) has no ONNX QLinearAveragePool"):
        onnx_model(DILATED, (1, 2, 3, 5, 6))


def test_random_configs_match_onnx_runtime_bit_for_bit():
    """ONNX Runtime's QLinearAveragePool and QLinearGlobalAveragePool (1-, 2- and 3-d, both
    types, padding, stride, count_include_pad, ceil mode) against the C kernels.  Every value
    equal, except where ONNX Runtime's divisor differs by a documented rule: in ceil mode with
    count_include_pad it divides a window running past the padded input by the whole kernel
    size; convgen divides by its taps within the padded input (AveragePool's rule).  Those
    windows are counted and every difference lies in one of them."""
    from convgen.onnx_bridge import onnx_model

    rng = np.random.default_rng(11)
    pick = random.Random(11)
    items = []
    for index in range(24):
        dtype = pick.choice(["int8", "uint8"])
        low, high = q.type_range(dtype)
        quant = dict(dtype=dtype, x_scale=pick.choice([0.003, 0.02, 0.1, 0.7]),
                     y_scale=pick.choice([0.004, 0.05, 0.3]),
                     x_zero_point=pick.randint(low, high), y_zero_point=pick.randint(low, high))
        ndim = 1 + index % 3
        if index % 4 == 0:
            layer = QLinearGlobalAvgPool(ndim=ndim, **quant)
        else:
            kernel = pick.randint(2, 3)
            layer = convgen.spec.LAYER_TYPES[f"QLinearAvgPool{ndim}d"](
                kernel, stride=pick.randint(1, 2), padding=pick.randint(0, kernel - 1),
                ceil_mode=pick.random() < 0.4, count_include_pad=pick.random() < 0.5, **quant)
        items.append((layer, (3, *[pick.randint(4, 9) for _ in range(ndim)])))
    differing = outputs = 0
    for kernel, (layer, shape) in zip(compile_kernels(items), items):
        x = _x(layer, shape, rng, batch=2)
        theirs = _session(onnx_model(layer, (2, *shape))).run(None, {"X": x})[0]
        ours = kernel(x)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
        outputs += ours.size
        if np.array_equal(ours, theirs):
            continue
        assert getattr(layer, "ceil_mode", False) and layer.count_include_pad, layer.describe()
        beyond = _past_the_padded_input(layer, shape)
        assert not np.any((ours != theirs) & ~beyond), layer.describe()
        differing += int(np.count_nonzero(ours != theirs))
    assert outputs > 10_000 and differing < outputs // 20


def _past_the_padded_input(layer, shape):
    """Outputs whose window runs past the padded input (ceil mode)."""
    out = layer.output_shape(shape)
    masks = []
    for n, m, k, s, (lo, hi) in zip(shape[1:], out[1:], layer.kernel_size, layer.stride,
                                    layer.padding):
        masks.append(np.array([o * s + k > n + lo + hi for o in range(m)]))
    mask = np.zeros(out[1:], dtype=bool)
    for dim, m in enumerate(masks):
        mask |= m.reshape([-1 if d == dim else 1 for d in range(len(masks))])
    return np.broadcast_to(mask, (2, out[0], *out[1:]))
