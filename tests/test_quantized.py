"""Quantized convolutions (QLinearConv, ConvInteger): specs, the quantization arithmetic, the
two oracles, the C and CUDA kernels bit for bit, sanitizers, strict compilers, bounds
proofs, the ONNX bridge and ONNX Runtime as a peer."""

import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import ConvgenError, SpecError
from convgen import quantization as q
from convgen.bounds import prove_bounds
from convgen.codegen import generate
from convgen.proofs import layer_statements, quantized_statements
from convgen.reference import forward, toeplitz_forward
from convgen.runtime.cbuild import compile_kernels
from convgen.sanitize import findings
from convgen.strategies import input_shape_for, quantized_layers
from convgen.verify import check_kernel, check_kernels
from tests.conftest import BULK, BULK_EXAMPLES
from tests.helpers import compile_strict, cuda_kernels, needs_compiler

QLinearConv2d, ConvInteger2d = convgen.QLinearConv2d, convgen.ConvInteger2d

#: A per-channel fixed-point layer and a per-tensor float one, ReLU6, int8 and uint8.
FIXED = QLinearConv2d(4, 6, 3, padding=1, groups=2, x_scale=0.05, x_zero_point=-3,
                      w_scale=[0.01, 0.02, 0.013, 0.01, 0.5, 0.1], w_zero_point=[0, 1, 2, 3, 4, 5],
                      y_scale=0.07, y_zero_point=4, rounding="fixed_point",
                      activation="relu6")
FLOAT = QLinearConv2d(3, 5, (3, 2), stride=(2, 1), padding="same", dtype="uint8",
                      weight_dtype="uint8", x_scale=0.02, x_zero_point=128, w_scale=0.004,
                      w_zero_point=120, y_scale=0.05, y_zero_point=100)
INTEGER = convgen.ConvInteger1d(3, 4, 4, stride=2, dilation=2, padding=((2, 1),), dtype="int8",
                                weight_dtype="uint8", x_zero_point=7, w_zero_point=[128, 0, 255, 3])
#: Wide enough for the fast schedule: 16 output channels (2 vectors of int32 lanes), an odd
#: number of input channels (the last pair half empty), asymmetric padding and a stride.
WIDE = QLinearConv2d(5, 16, (3, 2), stride=(2, 1), dilation=(1, 2), padding=((2, 0), (1, 3)),
                     dtype="uint8", weight_dtype="int8", x_scale=0.1, x_zero_point=128,
                     w_scale=[0.01 + 0.001 * i for i in range(16)], y_scale=0.2,
                     y_zero_point=5, rounding="fixed_point")
#: WIDE with uint8 weights and a weight zero point: qpacked's int16 pair form (WIDE, with
#: int8 weights of zero point 0, takes the 8-bit form).
WIDE_PAIRS = QLinearConv2d(5, 16, (3, 2), stride=(2, 1), dilation=(1, 2),
                           padding=((2, 0), (1, 3)), dtype="uint8", weight_dtype="uint8",
                           x_scale=0.1, x_zero_point=128, w_scale=0.01, w_zero_point=3,
                           y_scale=0.2, y_zero_point=5)
#: Depthwise with a channel multiplier of 2, strides, dilation and asymmetric padding, per
#: channel weight zero points, fixed point: the qdepthwise schedule.
DEPTHWISE = QLinearConv2d(6, 12, (3, 2), stride=(2, 3), dilation=(1, 2),
                          padding=((2, 0), (1, 3)), groups=6, x_scale=0.1, x_zero_point=-5,
                          w_scale=0.01, w_zero_point=list(range(1, 13)), y_scale=0.07,
                          rounding="fixed_point", activation="relu6")
LAYERS = [(FIXED, (4, 7, 6)), (FLOAT, (3, 9, 8)), (INTEGER, (3, 17)), (WIDE, (5, 9, 11)),
          (DEPTHWISE, (6, 11, 37))]
IDS = ["fixed", "float", "integer", "wide", "depthwise"]


def _random_arrays(layer, shape, rng, batch=2):
    arrays = []
    for dtype, size in ((layer.dtype, (batch, *shape)), (layer.weight_dtype, layer.weight_shape)):
        low, high = q.type_range(dtype)
        arrays.append(rng.integers(low, high + 1, size=size).astype(dtype))
    if layer.bias:
        arrays.append(rng.integers(-2**16, 2**16, size=layer.out_channels).astype(np.int32))
    return arrays


# --------------------------------------------------------------------------- specs


@pytest.mark.parametrize("kwargs, message", [
    (dict(x_scale=0.0), r"x_scale=0.0 must be a positive finite number"),
    (dict(x_scale=-1.0), r"x_scale=-1.0 must be a positive finite number"),
    (dict(y_scale=float("nan")), r"y_scale=nan must be a positive finite number"),
    (dict(y_scale=float("inf")), r"y_scale=inf must be a positive finite number"),
    (dict(x_scale=True), r"x_scale=True must be a positive finite number"),
    (dict(x_scale=1e-50), r"x_scale=1e-50 must be a positive finite number"),
    (dict(w_scale=[0.1, 0.2]), r"w_scale=\[0.1, 0.2\] has 2 entries; a per-channel w_scale "
                               r"has one per output channel \(out_channels=4\)"),
    (dict(w_scale=[0.1, 0.2, -0.3, 0.4]), r"w_scale\[2\]=-0.3 must be a positive"),
    (dict(x_zero_point=128), r"x_zero_point=128 must be an int in \[-128, 127\] \(the range "
                             r"of int8\)"),
    (dict(dtype="uint8", x_zero_point=-1), r"x_zero_point=-1 must be an int in \[0, 255\]"),
    (dict(w_zero_point=[0, 0, 0, 300]), r"w_zero_point\[3\]=300 must be an int in"),
    (dict(y_zero_point=1.5), r"y_zero_point=1.5 must be an int"),
    (dict(dtype="int16"), r"dtype='int16' must be one of 'int8', 'uint8'"),
    (dict(weight_dtype="float32"), r"weight_dtype='float32' must be one of"),
    (dict(rounding="nearest"), r"rounding='nearest' must be one of 'float', 'fixed_point'"),
    (dict(activation="gelu"), r"activation='gelu' must be one of 'none', 'relu', 'relu6'"),
    (dict(rounding="fixed_point", x_scale=1.0, w_scale=1.0, y_scale=0.5),
     r"x_scale\*w_scale/y_scale = 2.0 must lie in \[2\*\*-32, 1\) for rounding='fixed_point'"),
    (dict(activation="relu6", y_zero_point=127, y_scale=0.01),
     None),  # valid: the clamp is [127, 127]
])
def test_a_bad_quantization_parameter_is_refused_naming_it(kwargs, message):
    if message is None:
        assert QLinearConv2d(2, 4, 3, **kwargs).clamp == (127, 127)
        return
    with pytest.raises(SpecError, match="QLinearConv2d: " + message):
        QLinearConv2d(2, 4, 3, **kwargs)


def test_an_overflowing_accumulator_is_refused_with_its_sizes():
    with pytest.raises(SpecError, match=r"ConvInteger2d: the int32 accumulator can overflow: "
                       r"36,864 taps \(in_channels/groups=4096 x kernel_size=\(3, 3\)\) of "
                       r"products in \[0, 65,025\]"):
        ConvInteger2d(4096, 2, 3)
    # the same taps with int8 weights centred on zero: products up to 255 * 128 fit
    ConvInteger2d(4096, 2, 3, dtype="int8", weight_dtype="int8", x_zero_point=-128)


def test_specs_are_canonical():
    a = QLinearConv2d(2, 3, 3, x_scale=0.1, w_scale=[0.5, 0.5, 0.5], w_zero_point=(1, 1, 1))
    b = QLinearConv2d(2, 3, 3, x_scale=np.float32(0.1), w_scale=0.5, w_zero_point=1)
    assert a == b and hash(a) == hash(b)
    assert repr(a.x_scale) == "0.1" and a.x_scale == float(np.float32(0.1))
    assert a.describe() == ("QLinearConv2d(2, 3, 3, x_scale=0.1, w_scale=0.5, w_zero_point=1)")
    assert QLinearConv2d(2, 3, 3, w_scale=[0.5, 0.25, 0.5]).w_scale == (0.5, 0.25, 0.5)


def test_counts_and_memory_use_the_quantized_types():
    layer = QLinearConv2d(8, 16, 3, padding=1)
    memory = layer.memory((1, 8, 10, 10))
    assert (memory.input_bytes, memory.output_bytes, memory.weight_bytes,
            memory.bias_bytes) == (800, 1600, 16 * 8 * 9, 16 * 4)
    assert layer.macs((1, 8, 10, 10)) == 16 * 100 * 8 * 9
    assert ConvInteger2d(8, 16, 3).memory((8, 10, 10)).output_bytes == 16 * 64 * 4
    with pytest.raises(SpecError, match=r"dtype='float32' must be the layer's own dtype"):
        layer.memory((8, 10, 10), "float32")


def test_the_kernel_dtype_is_the_layers_own():
    assert generate(FLOAT, (3, 9, 8)).dtype == "uint8"
    with pytest.raises(SpecError, match=r"QLinearConv2d: dtype='float32' must be one of uint8"):
        generate(FLOAT, (3, 9, 8), dtype="float32")


# --------------------------------------------------------------------------- arithmetic


def test_gemmlowp_and_tflite_reference_values():
    # SaturatingRoundingDoublingHighMul: ties toward +infinity; its one saturating case
    assert q.srdhm(3, 2**30) == 2 and q.srdhm(-3, 2**30) == -1
    assert q.srdhm(-2**31, -2**31) == 2**31 - 1
    assert q.srdhm(2**31 - 1, 2**31 - 1) == 2**31 - 2
    # RoundingDivideByPOT: ties away from zero
    assert [q.rounding_divide_by_pot(v, 1) for v in (-3, -2, -1, 1, 2, 3)] == \
        [-2, -1, -1, 1, 1, 2]
    # QuantizeMultiplier
    assert q.quantize_multiplier(0.5) == (2**30, 0)
    assert q.quantize_multiplier(0.25) == (2**30, -1)
    assert q.quantize_multiplier(1 - 2**-40) == (2**30, 1)  # rounds up to 2**31: halved
    assert q.quantize_multiplier(2.0**-33) == (0, 0)
    # TFLite's ReLU6 range: zero point + round(6 / scale), half away from zero
    assert q.activation_range("relu6", "int8", 0.048, -10) == (-10, 115)
    assert q.activation_range("relu", "uint8", 0.1, 3) == (3, 255)


@settings(max_examples=300)
@given(st.fractions(min_value=-2**40, max_value=2**40))
def test_binary32_rounding_agrees_with_numpy(value):
    # the exact rounding of the second oracle against NumPy's (via double: exact for
    # values NumPy reads exactly; a Fraction beyond that is compared through its double)
    double = float(value)
    if Fraction(double) == value:
        assert q.round_to_float32(value) == Fraction(float(np.float32(double)))


@settings(max_examples=300)
@given(acc=st.integers(*q.INT32), m=st.integers(2**30, 2**31 - 1), e=st.integers(0, 31),
       tie=st.booleans())
def test_both_requantizations_agree_with_their_exact_definitions(acc, m, e, tie):
    if tie:  # land on a tie of the first rounding (a*m = k*2**31 + 2**30)
        acc = max(min((acc * 2**31 + 2**30) // m, q.INT32[1]), q.INT32[0])
    wide = (-2**40, 2**40)
    assert q.requantize_fixed(acc, m, -e) == \
        q.requantize_exact(acc, "fixed_point", 1.0, 1.0, 1.0, m, -e, 0, wide)
    scale = random.Random(acc).choice([2.0**-20, 0.0031, 0.25, 1.5])
    got = q.requantize(acc, "float", scale, 0, 0, 0, wide)
    assert got == q.requantize_exact(acc, "float", scale, 1.0, 1.0, 0, 0, 0, wide)


def test_float_requantization_is_binary32_and_not_the_real_product():
    # 2**24 + 1 is not a binary32: fl(acc) rounds it to 2**24 before the scale multiplies
    scale = 1.0
    assert q.requantize_float(2**24 + 1, scale) == 2**24
    assert q.requantize_float(5, 0.5) == 2 and q.requantize_float(7, 0.5) == 4  # ties to even


# --------------------------------------------------------------------------- oracles


@settings(max_examples=60)
@given(st.data())
def test_the_two_oracles_agree(data):
    layer = data.draw(quantized_layers())
    shape = data.draw(input_shape_for(layer, batch=False))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    arrays = _random_arrays(layer, shape, rng)
    if layer.requantizes and layer.bias and data.draw(st.booleans()):
        arrays[2][0] = q.INT32[data.draw(st.integers(0, 1))]  # the saturating bias add
    assert np.array_equal(forward(layer, *arrays), toeplitz_forward(layer, *arrays))


def test_the_oracle_is_the_onnx_definition_on_a_hand_checked_case():
    # ONNX's test_convinteger_with_padding
    layer = ConvInteger2d(1, 2, 2, padding=1, x_zero_point=1, w_zero_point=[0, 1])
    x = np.arange(2, 11, dtype=np.uint8).reshape(1, 1, 3, 3)
    y = forward(layer, x, np.ones((2, 1, 2, 2), np.uint8))
    assert y[0, 0].tolist() == [[1, 3, 5, 3], [5, 12, 16, 9], [11, 24, 28, 15], [7, 15, 17, 9]]
    assert not y[0, 1].any()  # w - w_zero_point = 0


def test_the_oracle_refuses_values_outside_the_types():
    x = np.full((1, 2, 4, 4), 300)
    with pytest.raises(SpecError, match=r"x holds values outside \[-128, 127\]"):
        forward(QLinearConv2d(2, 1, 3), x, np.zeros((1, 2, 3, 3), np.int8), np.zeros(1))
    with pytest.raises(SpecError, match="forward takes integer x and weight"):
        forward(QLinearConv2d(2, 1, 3, bias=False), np.zeros((1, 2, 4, 4)),
                np.zeros((1, 2, 3, 3)))


def test_the_toeplitz_operator_is_the_accumulators():
    layer, shape = FIXED, (4, 5, 4)
    rng = np.random.default_rng(0)
    x, w, b = _random_arrays(layer, shape, rng, batch=1)
    dw = w.astype(np.int64) - np.array(layer.w_zero_points).reshape(-1, 1, 1, 1)
    matrix = layer.toeplitz(shape, weight=dw)
    acc = matrix @ (x[0].astype(np.int64) - layer.x_zero_point).ravel()
    exact = forward(layer.accumulator, (x.astype(np.int64) - layer.x_zero_point), dw)
    assert np.array_equal(acc, exact.ravel().astype(np.float64))


# --------------------------------------------------------------------------- kernels


def test_the_kernels_match_the_oracle_bit_for_bit():
    kernels = compile_kernels(LAYERS)
    for kernel, (layer, shape) in zip(kernels, LAYERS):
        outcome = check_kernel(kernel, cases=3)
        assert outcome.passed, outcome.detail
        y = kernel(*_random_arrays(layer, shape, np.random.default_rng(1)))
        assert y.dtype == np.dtype(layer.output_dtype)


def test_a_wrong_kernel_is_caught():
    """A kernel whose requantization is off by one LSB somewhere fails the check."""
    kernel = generate(FIXED, (4, 7, 6))
    planted = kernel.source.replace("result += 4;", "result += 4 + (value % 7 == 0);")
    assert planted != kernel.source
    from dataclasses import replace

    from convgen.runtime.cbuild import Kernel, build_modules
    planted_kernel = replace(kernel, source=planted)
    built = Kernel(planted_kernel, build_modules([planted_kernel]))
    outcome = check_kernel(built, cases=3)
    assert not outcome.passed and "values differ" in outcome.detail


def test_the_call_checks_each_arrays_own_dtype():
    (kernel,) = compile_kernels([LAYERS[0]])
    x, w, b = _random_arrays(FIXED, (4, 7, 6), np.random.default_rng(2))
    with pytest.raises(SpecError, match="bias has dtype int8; expected int32"):
        kernel(x, w, b.astype(np.int8))
    with pytest.raises(SpecError, match="weight has dtype uint8; the kernel was generated for "
                                        "int8"):
        kernel(x, w.astype(np.uint8), b)
    out = np.empty((2, 6, 7, 6), np.int8)
    assert kernel(x, w, b, out=out) is out
    with pytest.raises(SpecError, match="out has dtype int32; the kernel was generated for int8"):
        kernel(x, w, b, out=out.astype(np.int32))


@settings(max_examples=BULK_EXAMPLES)
@given(st.data())
def test_random_quantized_kernels_match_the_oracle_bit_for_bit(data):
    """Random configs (every option, both roundings, per-tensor and per-channel, extreme
    zero points and scales), built into one module an example."""
    items = []
    for _ in range(max(2, BULK // 4)):
        layer = data.draw(quantized_layers())
        items.append((layer, data.draw(input_shape_for(layer, batch=False))))
    for outcome in check_kernels(compile_kernels(items), cases=2):
        assert outcome.passed, (outcome.description, outcome.detail)


def test_the_cuda_text_matches_the_oracle_on_the_cpu():
    outcomes = check_kernels(cuda_kernels("cuda-cpu", LAYERS, None), cases=2)
    for outcome in outcomes:
        assert outcome.passed, (outcome.name, outcome.detail)
    assert sum("(tiled)" in o.name for o in outcomes) >= 4  # the __dp4a kernels ran


@settings(max_examples=max(3, BULK_EXAMPLES // 4))
@given(st.data())
def test_random_quantized_cuda_tiled_kernels_match_the_oracle_on_the_cpu(data):
    """The tiled kernel's four channels an int, its zero-point identity and its emulated
    __dp4a, on random configs (both types, per-channel zero points, odd channel counts)."""
    items = []
    for _ in range(3):
        layer = data.draw(quantized_layers(max_channels=7))
        items.append((layer, data.draw(input_shape_for(layer, batch=False))))
    for outcome in check_kernels(cuda_kernels("cuda-cpu", items, None), cases=2):
        assert outcome.passed, (outcome.name, outcome.detail)


def test_the_tiled_cuda_kernel_uses_dp4a_and_nvcc_builds_it_clean():
    from convgen.cudagen import generate_cuda
    from convgen.runtime import nvcc
    kernel = generate_cuda(WIDE, (5, 9, 11))
    assert [launch.schedule for launch in kernel.launches] == ["tiled", "direct"]
    assert "#define CONVGEN_DP4A(a, b, c) __dp4a((int)(a), (int)(b), (int)(c))" in \
        kernel.source
    try:
        nvcc.nvcc()
    except ConvgenError as error:
        pytest.skip(f"no nvcc: {error}")
    per_tensor = generate_cuda(ConvInteger2d(8, 8, 3, x_zero_point=3, w_zero_point=5),
                               (8, 10, 10))  # no requantization: no channel in the store
    for item in (kernel, per_tensor):
        usages = nvcc.check(item)  # -Werror, no spills, no local memory
        assert {u.entry.rsplit("_", 1)[1] for u in usages} == {"tiled", "direct"}
        assert all(r.status == "proved" for r in prove_bounds(item))


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


# --------------------------------------------------------------------------- the fast schedule


def test_the_fast_schedule_is_chosen_where_it_pays_and_says_why():
    assert generate(WIDE, (5, 9, 11)).schedule == "qpacked"
    assert "int32 lanes" in generate(WIDE, (5, 9, 11)).schedule_reason
    depthwise = generate(QLinearConv2d(8, 8, 3, groups=8), (8, 6, 6))
    assert depthwise.schedule == "qdepthwise"
    assert "one input channel a group: output columns in int32 lanes" in \
        depthwise.schedule_reason
    narrow = generate(QLinearConv2d(8, 4, 3, groups=4), (8, 6, 6))  # 2 in, 1 out a group
    assert narrow.schedule == "reference"
    assert "1 output channel(s) a group would fill 1 of 8 int32 lanes" in \
        narrow.schedule_reason
    with pytest.raises(SpecError, match="qdepthwise covers 2-D quantized depthwise"):
        generate(WIDE, (5, 9, 11), schedule="qdepthwise")
    huge = generate(ConvInteger2d(2048, 64, 3, dtype="int8", weight_dtype="int8",
                                  x_zero_point=-128), (2048, 3, 3))
    assert huge.schedule == "reference" and "bytes of stack" in huge.schedule_reason
    with pytest.raises(SpecError, match="qpacked covers 2-D quantized convolutions only"):
        generate(INTEGER, (3, 17), schedule="qpacked")


#: The fast schedule's instruction-set rungs: VNNI, AVX2's pmaddwd, portable vector
#: extensions (compiled on this x86 machine by turning the newer instructions off).
RUNGS = [(), ("-mno-avx512vnni",), ("-mno-avx512f",), ("-mno-avx2",)]


@pytest.mark.parametrize("extra", RUNGS, ids=["native", "no-vnni", "avx2", "portable"])
def test_the_fast_schedule_is_bit_for_bit_on_every_rung(extra):
    items = [(WIDE, (5, 9, 11)), (WIDE_PAIRS, (5, 9, 11)),
             (QLinearConv2d(16, 24, 1, x_scale=0.02, w_scale=0.01, y_scale=0.05, bias=False),
              (16, 5, 7)),
             (QLinearConv2d(6, 20, 1, groups=2, x_scale=0.1, x_zero_point=-128, w_scale=0.01,
                            y_scale=0.2, rounding="fixed_point"), (6, 5, 13)),
             (QLinearConv2d(8, 32, 3, groups=2, padding="same", stride=2, x_scale=0.02,
                            w_scale=0.01, y_scale=0.05, activation="relu6"), (8, 10, 13)),
             (ConvInteger2d(3, 20, 5, padding=2, x_zero_point=7, w_zero_point=3), (3, 12, 12)),
             (QLinearConv2d(1, 6, 5, x_scale=0.0078125, w_scale=0.011, y_scale=0.023,
                            y_zero_point=-128, rounding="fixed_point"), (1, 14, 14))]
    kernels = compile_kernels(items, schedule="qpacked", flags=("-O3", "-march=native", *extra))
    for outcome in check_kernels(kernels, cases=2):
        assert outcome.passed, (outcome.description, outcome.detail)


@settings(max_examples=BULK_EXAMPLES)
@given(st.data())
def test_random_quantized_kernels_of_the_fast_schedule_match_the_oracle(data):
    items = []
    for _ in range(max(2, BULK // 4)):
        layer = data.draw(quantized_layers(ndim=st.just(2), max_channels=20))
        items.append((layer, data.draw(input_shape_for(layer, batch=False))))
    for outcome in check_kernels(compile_kernels(items, schedule="qpacked"), cases=2):
        assert outcome.passed, (outcome.description, outcome.detail)


def test_the_8_bit_form_is_taken_where_the_weights_are_their_differences():
    from convgen.lower import lower
    from convgen.schedules.conv_qpacked import quads
    assert quads(lower(WIDE, (5, 9, 11)))
    assert not quads(lower(WIDE_PAIRS, (5, 9, 11)))  # a weight zero point
    assert not quads(lower(FIXED, (4, 7, 6)))         # per-channel weight zero points
    assert "_mm256_dpbusd_epi32" in generate(WIDE, (5, 9, 11)).source
    assert "_DOT" not in generate(WIDE_PAIRS, (5, 9, 11)).source
    # the raw sums must fit int32: 65,794 taps of 255 * 128 would not
    big = QLinearConv2d(7311, 8, 3, x_scale=0.1, w_scale=0.01, y_scale=0.2)
    assert big.taps * 255 * 128 > 2**31 - 1 and not quads(lower(big, (7311, 3, 3)))


def test_the_fast_schedules_proof_model_covers_what_it_reads_and_writes():
    from convgen.bounds import uncovered
    for layer, shape in [(WIDE, (5, 9, 11)), (WIDE_PAIRS, (5, 9, 11)),
                         (DEPTHWISE, (6, 11, 37))]:
        kernel = generate(layer, shape)
        assert kernel.schedule in ("qpacked", "qdepthwise")
        assert uncovered(kernel) == []
        assert all(r.status == "proved" for r in prove_bounds(kernel))


#: Depthwise layers for the qdepthwise schedule: MobileNet's (uint8, per-channel, float,
#: ReLU6, bias), a multiplier of 2 with an odd kernel width and stride 2, LeNet's first layer
#: (one input channel), a 1 x 1.
DEPTHWISE_ITEMS = [
    (QLinearConv2d(16, 16, 3, padding=1, groups=16, dtype="uint8", weight_dtype="int8",
                   x_scale=0.02, x_zero_point=128, w_scale=[0.01 + 0.001 * i for i in range(16)],
                   y_scale=0.05, y_zero_point=3, activation="relu6"), (16, 14, 45)),
    (DEPTHWISE, (6, 11, 37)),
    (QLinearConv2d(4, 8, 5, stride=2, padding="same", groups=4, bias=False, x_scale=0.3,
                   w_scale=0.02, y_scale=0.5, y_zero_point=-7), (4, 9, 40)),
    (QLinearConv2d(1, 6, 5, x_scale=0.0078125, w_scale=0.011, y_scale=0.023,
                   y_zero_point=-128, rounding="fixed_point"), (1, 14, 14)),
    (ConvInteger2d(3, 3, 1, groups=3, x_zero_point=100, w_zero_point=7), (3, 5, 33))]


@pytest.mark.parametrize("extra", RUNGS, ids=["native", "no-vnni", "avx2", "portable"])
def test_the_depthwise_schedule_is_bit_for_bit_on_every_rung(extra):
    kernels = compile_kernels(DEPTHWISE_ITEMS, schedule="qdepthwise",
                              flags=("-O3", "-march=native", *extra))
    for outcome in check_kernels(kernels, cases=2):
        assert outcome.passed, (outcome.description, outcome.detail)


@st.composite
def _depthwise(draw):
    """A 2-D quantized convolution with one input channel a group: every window option,
    both types and roundings, per-channel weight scales and zero points."""
    groups, multiplier = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    kernel = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    low, high = q.type_range(draw(st.sampled_from(["int8", "uint8"])))
    dtype = "int8" if low < 0 else "uint8"
    out = groups * multiplier
    kwargs = dict(stride=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
                  dilation=(draw(st.integers(1, 2)), draw(st.integers(1, 2))),
                  padding=draw(st.sampled_from([0, 1, "same", ((2, 0), (0, 1))])),
                  groups=groups, dtype=dtype, weight_dtype=draw(st.sampled_from(["int8", "uint8"])),
                  x_zero_point=draw(st.integers(low, high)))
    w_low, w_high = q.type_range(kwargs["weight_dtype"])
    kwargs["w_zero_point"] = draw(st.lists(st.integers(w_low, w_high), min_size=out,
                                           max_size=out))
    if draw(st.booleans()):
        return ConvInteger2d(groups, out, kernel, **kwargs)
    return QLinearConv2d(groups, out, kernel, bias=draw(st.booleans()), x_scale=0.02,
                         w_scale=[draw(st.sampled_from([0.001, 0.01, 0.05])) for _ in range(out)],
                         y_scale=draw(st.sampled_from([0.05, 0.3, 2.0])),
                         y_zero_point=draw(st.integers(low, high)),
                         rounding=draw(st.sampled_from(["float", "fixed_point"])),
                         activation=draw(st.sampled_from(["none", "relu", "relu6"])), **kwargs)


@settings(max_examples=BULK_EXAMPLES)
@given(st.data())
def test_random_depthwise_kernels_match_the_oracle_bit_for_bit(data):
    items = []
    for _ in range(max(2, BULK // 4)):
        layer = data.draw(_depthwise())
        shape = data.draw(input_shape_for(layer, batch=False))
        items.append((layer, (shape[0], shape[1], shape[2] + data.draw(st.integers(0, 40)))))
    for outcome in check_kernels(compile_kernels(items, schedule="qdepthwise"), cases=2):
        assert outcome.passed, (outcome.description, outcome.detail)


# --------------------------------------------------------------------------- proofs


def test_the_layer_proofs_hold_and_name_the_fixed_point_roundings():
    results = layer_statements(FIXED)
    assert all(r.as_expected and r.status == "proved" for r in results), results
    texts = [r.statement for r in results]
    assert any("never overflows over the 18 taps" in t for t in texts)
    assert sum("are within 1 of round_half_away" in t for t in texts) == \
        len(set(FIXED.multipliers))
    assert any("relative error of 2**-31" in t for t in texts)


def test_the_characterised_set_is_where_the_roundings_really_differ():
    """The z3 statement's set, checked by brute force on the accumulators near ties."""
    layer = QLinearConv2d(2, 1, 1, x_scale=0.5, w_scale=0.3, y_scale=4.0,
                          rounding="fixed_point", bias=False)
    (m, shift), e = layer.multipliers[0], -layer.multipliers[0][1]
    differ = 0
    for acc in range(-3000, 3000):
        two = q.requantize_fixed(acc, m, shift)
        single = q.round_half_away(Fraction(acc * m, 2**(31 + e)))
        h = q.srdhm(acc, m)
        tie = h % 2**e == 2**(e - 1) and abs(acc * m) < abs(h) * 2**31
        assert (two != single) == tie and abs(two - single) <= 1
        differ += two != single
    assert differ  # the set is not empty here
    assert all(r.status == "proved" for r in quantized_statements(layer))


# --------------------------------------------------------------------------- ONNX


def test_onnx_import_takes_the_constants_and_export_round_trips():
    pytest.importorskip("onnx")
    from convgen.onnx_bridge import kernel_arrays, layer_from_onnx, onnx_model

    model = onnx_model(FLOAT, (2, 3, 9, 8))
    node = model.graph.node[0]
    constants = {t.name: __import__("onnx").numpy_helper.to_array(t)
                 for t in model.graph.initializer}
    shapes = {"X": (2, 3, 9, 8), "W": FLOAT.weight_shape, "B": (5,)}
    dtypes = {"X": "uint8", "W": "uint8", "B": "int32"}
    names = list(node.input)
    layer = layer_from_onnx(node, [constants[n].shape if n in constants else shapes[n]
                                   for n in names],
                            constants, [constants[n].dtype if n in constants else dtypes[n]
                                        for n in names])
    assert layer == FLOAT
    assert kernel_arrays(node, names) == ["X", "W", "B"]
    with pytest.raises(SpecError, match=r"QLinearConv: input x_zero_point \('x_zero_point'\) "
                                        r"must be a constant"):
        layer_from_onnx(node, [(1, 3, 9, 8)] * 9, {}, ["uint8"] * 9)


def test_onnx_has_no_fixed_point_qlinearconv():
    from convgen.onnx_bridge import onnx_nodes
    with pytest.raises(SpecError, match=r"rounding='fixed_point', activation='relu6' has no "
                                        "ONNX QLinearConv form"):
        onnx_nodes(FIXED)


def test_random_configs_match_onnx_runtime_bit_for_bit():
    """ONNX Runtime's QLinearConv (per-channel weight scales) and ConvInteger (its CPU kernel
    takes a per-tensor weight zero point only) against the C kernels: every value equal."""
    ort = pytest.importorskip("onnxruntime")
    from convgen.onnx_bridge import onnx_model

    rng = np.random.default_rng(7)
    pick = random.Random(7)
    items = []
    for index in range(16):
        x_type, w_type = pick.choice(["int8", "uint8"]), pick.choice(["int8", "uint8"])
        low, high = q.type_range(x_type)
        common = dict(padding=pick.choice([0, 1, "same"]), stride=pick.choice([1, 2]),
                      groups=pick.choice([1, 2]), dtype=x_type, weight_dtype=w_type,
                      x_zero_point=pick.randint(low, high))
        if index % 2:
            layer = ConvInteger2d(4, 6, 3, w_zero_point=pick.randint(*q.type_range(w_type)),
                                  **common)
        else:
            layer = QLinearConv2d(
                4, 6, 3, x_scale=pick.choice([0.01, 0.05, 0.3]),
                w_scale=[pick.choice([0.002, 0.01, 0.04]) for _ in range(6)],
                w_zero_point=0 if w_type == "int8" else pick.randint(0, 255),
                y_scale=pick.choice([0.02, 0.1, 0.7]), y_zero_point=pick.randint(low, high),
                bias=pick.random() < 0.7, **common)
        items.append((layer, (4, 9, 10)))
    for kernel, (layer, shape) in zip(compile_kernels(items), items):
        arrays = _random_arrays(layer, shape, rng, batch=3)
        model = onnx_model(layer, (3, *shape))
        session = ort.InferenceSession(model.SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        theirs = session.run(None, dict(zip(["X", "W", "B"], arrays)))[0]
        ours = kernel(*arrays)
        assert ours.dtype == theirs.dtype
        assert np.array_equal(ours, theirs), (layer.describe(),
                                              int(np.count_nonzero(ours != theirs)))


def test_a_qlinearconv_model_file_round_trips_through_the_cli(tmp_path):
    toml = tmp_path / "q.toml"
    toml.write_text("""
[[layer]]
name = "q"
type = "QLinearConv2d"
input_shape = [3, 8, 8]
dtype = "uint8"
weight_dtype = "uint8"
in_channels = 3
out_channels = 4
kernel_size = 3
x_scale = 0.02
x_zero_point = 128
w_scale = [0.01, 0.02, 0.03, 0.04]
w_zero_point = 100
y_scale = 0.05
y_zero_point = 90
rounding = "fixed_point"
activation = "relu"
""")
    from convgen.cli import main
    assert main(["generate", str(toml), "-o", str(tmp_path / "out"), "-q"]) == 0
    report = (tmp_path / "out" / "q" / "q.md").read_text()
    assert "## Quantization" in report and "fixed-point multiplier, shift" in report
    assert main(["verify", str(tmp_path / "out")]) == 0
    assert main(["verify", str(tmp_path / "out"), "--target", "cuda-cpu"]) == 0


def test_isclose_is_not_used_for_integers():
    """compare_with_onnx compares integer outputs exactly (a difference of 1 fails)."""
    from convgen.onnx_bridge import compare_with_onnx
    a = np.array([[[[3]]]], np.uint8)
    assert compare_with_onnx(a, [a.copy()], 0, a.shape) == ""
    assert "1 of 1 values differ" in compare_with_onnx(a, [a + 1], 0, a.shape)
