"""Whole networks: ONNX import, the network C (fused epilogues, memory plan), its oracle and
error bound, ONNX Runtime, the CLI, and Sequential as a network."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import convgen
from convgen.cli import main
from convgen.codegen import generate
from convgen.documents import schema
from convgen.errors import SpecError, VerificationError
from convgen.netcheck import UNIT_ROUNDOFF, check_nodes, evaluate, gamma
from convgen.netgen import Buffer, generate_network, plan_memory, prove_plan
from convgen.netverify import verify_network
from convgen.onnx_import import load_onnx
from convgen.runtime.cbuild import DEFAULT_FLAGS, STRICT_FLAGS, alias, build_modules
from convgen.spec.network import Network, Node
from convgen.targets.c import float_literal

sys.path.insert(0, str(Path(__file__).parent))
import onnx_models  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, seed: int = 0) -> tuple[Network, onnx.ModelProto]:
    model = onnx_models.MODELS[name](seed=seed)
    return load_onnx(model, name=name), model


# ----------------------------------------------------------------------------- import


def test_every_test_model_imports_with_its_ops_and_shapes():
    expected = {"lenet5": (10,), "resnet_basic_block": (10,),
                "mobilenetv2_inverted_residual": (10,), "squeezenet_fire": (10,),
                "se_block": (32, 8, 8), "densenet_transition": (18, 4, 4),
                "activations_zoo": (4, 6, 6)}
    for name, shape in expected.items():
        network, _ = _load(name)
        assert network.shapes[network.outputs[0]] == shape, name
        assert all(node.op in ("layer", "relu", "clip", "leaky_relu", "sigmoid",
                               "hard_sigmoid", "hard_swish", "add", "mul", "affine", "concat",
                               "alias") for node in network.nodes)


def test_batchnorm_after_a_convolution_is_folded_and_elsewhere_is_an_affine_node():
    resnet, _ = _load("resnet_basic_block")
    folded = [n for n in resnet.nodes if "BatchNormalization" in n.source]
    assert folded and all(n.op == "layer" and n.param("scale") for n in folded)
    assert not any(n.op == "affine" for n in resnet.nodes)
    densenet, _ = _load("densenet_transition")
    assert [n.op for n in densenet.nodes].count("affine") == 2  # BN before ReLU and conv


def test_folded_weights_are_rounded_once_from_float64():
    network, _ = _load("resnet_basic_block")
    node = next(n for n in network.nodes if n.param("scale") is not None)
    used = network.kernel_params(node, network.values())
    w = network.constants[node.param("w")].astype(np.float64)
    scale = network.constants[node.param("scale")]
    np.testing.assert_array_equal(used["w"], (w * scale[:, None, None, None]).astype(np.float32))


def _graph(nodes, inputs, outputs, initializers=()):
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, list(initializers)),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _input(name="x", shape=("N", 2, 4, 4)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def test_an_unsupported_operator_is_an_error_naming_the_node_and_op():
    model = _graph([helper.make_node("Softmax", ["x"], ["y"], name="the_softmax")],
                   [_input()], [_input("y")])
    with pytest.raises(SpecError, match=r"the_softmax.*'Softmax' is not supported"):
        load_onnx(model)


def test_weights_that_are_not_constants_are_refused():
    w = _input("w", (2, 2, 1, 1))
    model = _graph([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], [_input(), w],
                   [_input("y")])
    with pytest.raises(SpecError, match=r"W 'w' must be a constant"):
        load_onnx(model)


@pytest.mark.parametrize("node, message", [
    (helper.make_node("Concat", ["x", "x"], ["y"], axis=2, name="cat"), "axis=2 must be 1"),
    (helper.make_node("Flatten", ["x"], ["y"], axis=2, name="f"), "axis=2 must be 1"),
    (helper.make_node("Dropout", ["x"], ["y", "mask"], name="d"), "mask output"),
])
def test_operators_outside_inference_on_channels_are_refused(node, message):
    model = _graph([node], [_input()], [_input("y")])
    with pytest.raises(SpecError, match=message):
        load_onnx(model)


def test_a_symbolic_size_other_than_the_batch_needs_input_shapes():
    model = _graph([helper.make_node("Relu", ["x"], ["y"], name="r")],
                   [_input(shape=("N", 2, "H", 4))], [_input("y")])
    with pytest.raises(SpecError, match="input_shapes"):
        load_onnx(model)
    network = load_onnx(model, input_shapes={"x": (2, 3, 4)})
    assert network.shapes["y"] == (2, 3, 4)


def test_network_validation_names_the_problem():
    with pytest.raises(SpecError, match="C identifier"):
        Network("not a name", (("x", (1, 4)),), ("y",), (Node("r", "relu", ("x",), "y"),))
    with pytest.raises(SpecError, match="input 'z' is neither"):
        Network("n", (("x", (1, 4)),), ("y",), (Node("r", "relu", ("z",), "y"),))
    with pytest.raises(SpecError, match="do not broadcast"):
        Network("n", (("x", (2, 4)),), ("y",), (Node("a", "add", ("x", "c"), "y"),),
                {"c": np.zeros(3, np.float32)})
    with pytest.raises(SpecError, match="clip min=2.0 exceeds max=1.0"):
        Network("n", (("x", (2, 4)),), ("y",),
                (Node("c", "clip", ("x",), "y", attrs=(("max", 1.0), ("min", 2.0))),))


# ----------------------------------------------------------------------------- oracle


def test_the_oracle_matches_a_direct_numpy_evaluation():
    network, _ = _load("se_block")
    x = np.random.default_rng(3).standard_normal((2, 32, 8, 8)).astype(np.float32)
    values = network.values()
    result = evaluate(network, x)
    conv = next(n for n in network.nodes if n.op == "layer")
    t = np.maximum(convgen.reference.forward(conv.layer, x, values[conv.param("w")],
                                             values[conv.param("b")]), 0)
    np.testing.assert_allclose(result.values[conv.output], convgen.reference.forward(
        conv.layer, x, values[conv.param("w")], values[conv.param("b")]))
    pooled = t.mean(axis=(2, 3), keepdims=True)
    assert np.allclose(result.values[network.nodes[2].output], pooled)


def test_the_bound_grows_with_the_taps_and_is_zero_for_exact_operations():
    assert gamma(1) > UNIT_ROUNDOFF and gamma(100) > 100 * UNIT_ROUNDOFF
    network = Network("n", (("x", (2, 3)),), ("y",), (Node("r", "relu", ("x",), "y"),))
    result = evaluate(network, np.ones((1, 2, 3), np.float32))
    assert not result.bound().any()


def test_a_wrong_value_fails_the_node_check():
    network, _ = _load("lenet5")
    x = np.random.default_rng(0).standard_normal((1, 1, 32, 32)).astype(np.float32)
    traced = generate_network(network.fused().traced(), fuse=False)
    from convgen.runtime.network import NetworkCall

    call = NetworkCall(traced, build_modules([traced]))
    computed = dict(zip(traced.network.outputs, call(x)))
    fused = network.fused()
    assert all(c.passed for c in check_nodes(fused, x, computed))
    first = fused.nodes[0].output
    computed[first] = computed[first].copy()
    computed[first].flat[5] += 1e-4
    failed = [c for c in check_nodes(fused, x, computed) if not c.passed]
    assert [c.node for c in failed] == [fused.nodes[0].name]


# ----------------------------------------------------------------------------- network C


def test_lenet_verifies_against_the_oracle_and_onnx_runtime():
    network, model = _load("lenet5")
    result = verify_network(network, cases=1, batch=3, onnx_model=model)
    assert result.passed, result.problems
    assert result.ort_ratio is not None and result.ort_ratio <= 1
    assert result.traced_identical and result.fused_identical


@pytest.mark.parametrize("name", sorted(onnx_models.MODELS))
def test_every_test_model_verifies_with_onnx_runtime(name):
    network, model = _load(name, seed=1)
    result = verify_network(network, cases=2, batch=2, onnx_model=model, seed=5)
    assert result.passed, result.problems
    assert result.node_ratio <= 1 and result.max_ratio <= 1 and result.ort_ratio <= 1


def test_activations_and_residuals_fuse_into_the_convolutions():
    resnet = _load("resnet_basic_block")[0].fused()
    steps = {n.name: [op for op, _ in n.epilogue] for n in resnet.nodes if n.op == "layer"}
    assert steps["layer1_0_downsample_conv_conv"] == ["add", "relu"]
    assert steps["stem_conv_conv"] == ["relu"]
    assert not any(n.op in ("relu", "add") for n in resnet.nodes)
    mobilenet = _load("mobilenetv2_inverted_residual")[0].fused()
    assert ["add"] in [[op for op, _ in n.epilogue] for n in mobilenet.nodes]
    lenet = _load("lenet5")[0].fused()  # through the fully connected layers' views
    assert [n.op for n in lenet.nodes].count("relu") == 0


def _call_fused(kernel, x, w, b, r):
    module = build_modules([kernel])
    ffi, function = module.ffi, getattr(module.lib, alias(kernel.name))
    y = np.empty((x.shape[0], *kernel.output_shape), np.float32)
    scratch = np.empty(kernel.problem.scratch or 1, np.float32)
    arrays = {"x": x, "w": w, "b": b, "residual": r, "y": y, "scratch": scratch}
    function(*(ffi.from_buffer("float[]", arrays[a], require_writable=a in ("y", "scratch"))
               for a in kernel.arguments if a != "batch"), x.shape[0])
    return y


@pytest.mark.parametrize("layer, shape, schedule", [
    (convgen.Conv2d(4, 8, 3, padding=1), (4, 7, 9), "reference"),
    (convgen.Conv2d(4, 8, 3, padding=1), (4, 7, 9), "blocked"),
    (convgen.Conv2d(4, 8, 3, padding=1), (4, 7, 9), "packed"),
    (convgen.Conv2d(4, 8, 3, padding=1), (4, 7, 9), "scalar"),
    (convgen.Conv2d(4, 8, 3, padding=1), (4, 8, 8), "winograd"),
    (convgen.ConvTranspose2d(4, 8, 3, stride=2), (4, 4, 5), "reference"),
    # input channels packed in chunks: the partial sums wait in y, the epilogue comes last
    (convgen.Conv2d(128, 128, 3, padding=1), (128, 4, 5), "packed"),
])
def test_the_epilogue_in_every_schedule_is_the_stores_of_the_plain_kernel_then_the_steps(
        layer, shape, schedule):
    rng = np.random.default_rng(7)
    steps = (("leaky_relu", (("alpha", 0.25),)), ("add", ()), ("hard_swish", ()))
    plain = generate(layer, shape, schedule=schedule, name=f"plain_{schedule}")
    fused = generate(layer, shape, schedule=schedule, name=f"fused_{schedule}", epilogue=steps)
    assert fused.arguments[:5] == ("x", "w", "b", "residual", "y")
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    w = rng.standard_normal(layer.weight_shape).astype(np.float32)
    b = rng.standard_normal(layer.out_channels).astype(np.float32)
    y = convgen.compile(layer, shape, schedule=schedule)(x, w, b)
    r = rng.standard_normal(y.shape).astype(np.float32)
    got = _call_fused(fused, x, w, b, r)
    # the steps in float32, one rounding each, as the C does them
    v = np.where(y >= 0, y, np.float32(0.25) * y).astype(np.float32)
    v = (v + r).astype(np.float32)
    gate = np.minimum(np.float32(1), np.maximum(np.float32(0), v * np.float32(1 / 6)
                                                + np.float32(0.5)))
    np.testing.assert_array_equal(got, (v * gate).astype(np.float32))
    assert plain.source.count("_epilogue(") == 0 and fused.source.count("_epilogue(") >= 2
    chunked = "chunks of at most" in fused.source
    assert ("after the last chunk" in fused.source) == chunked
    assert chunked == (layer.in_channels == 128)


def test_the_epilogue_is_refused_outside_float_convolutions():
    with pytest.raises(SpecError, match="only float convolutions"):
        generate(convgen.MaxPool2d(2), (1, 4, 4), epilogue=(("relu", ()),))


def test_the_memory_plan_is_proved_and_shares_memory():
    network, _ = _load("mobilenetv2_inverted_residual")
    plan = generate_network(network).plan
    assert "proved" in prove_plan(plan)
    assert plan.peak < plan.naive
    assert all(b.offset % 64 == 0 for b in plan.buffers if b.offset is not None)


def test_an_overlapping_plan_is_refuted_with_the_byte():
    plan = plan_memory(_load("resnet_basic_block")[0].fused())
    scratch = [b for b in plan.buffers if b.offset is not None]
    clash = next((a, b) for a in scratch for b in scratch
                 if a is not b and a.first <= b.last and b.first <= a.last)
    broken = [dataclasses.replace(b, offset=clash[0].offset) if b is clash[1] else b
              for b in plan.buffers]
    with pytest.raises(VerificationError, match="share byte"):
        prove_plan(dataclasses.replace(plan, buffers=tuple(broken)))
    outside = [dataclasses.replace(b, offset=plan.peak) if b is scratch[0] else b
               for b in plan.buffers]
    with pytest.raises(VerificationError, match="leaves scratch"):
        prove_plan(dataclasses.replace(plan, buffers=tuple(outside)))
    assert isinstance(scratch[0], Buffer)


def test_the_network_c_builds_strictly_with_gcc_and_clang_and_from_cpp(tmp_path):
    network, _ = _load("squeezenet_fire")
    generated = generate_network(network)
    (tmp_path / f"{generated.name}.c").write_text(generated.source)
    (tmp_path / f"{generated.name}.h").write_text(generated.header)
    compilers = [c for c in ("gcc", "clang") if shutil.which(c)]
    for cc in compilers:
        subprocess.run([cc, *STRICT_FLAGS, *DEFAULT_FLAGS, "-c", f"{generated.name}.c", "-o",
                        f"net_{cc}.o"], cwd=tmp_path, check=True)
    cpp_view = generated.header.split("#ifdef __cplusplus")[2].split("#else")[0]
    assert "*restrict" not in cpp_view and "extern" not in cpp_view
    if not shutil.which("g++"):
        pytest.skip("no g++")
    main_cpp = tmp_path / "main.cpp"
    main_cpp.write_text(f"""#include "{generated.name}.h"
#include <cstdio>
#include <vector>
int main() {{
    std::vector<float> x(2 * SQUEEZENET_FIRE_X_SAMPLE, 0.5f), y(2 * SQUEEZENET_FIRE_Y_SAMPLE);
    std::vector<unsigned char> scratch(SQUEEZENET_FIRE_SCRATCH_BYTES);
    squeezenet_fire(x.data(), y.data(), scratch.data(), 2);
    for (float v : y) std::printf("%.9g\\n", v);
}}
""")
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic", "main.cpp",
                    "net_gcc.o", "-lm", "-o", "main"], cwd=tmp_path, check=True)
    out = subprocess.run([str(tmp_path / "main")], capture_output=True, text=True, check=True)
    printed = np.array([float(v) for v in out.stdout.split()], np.float32).reshape(2, 10)
    expected = convgen.compile(network)(np.full((2, 32, 15, 15), 0.5, np.float32))
    np.testing.assert_array_equal(printed, expected)


def test_weights_are_exact_hexadecimal_literals():
    network, _ = _load("lenet5")
    source = generate_network(network).source
    weights = network.kernel_params(network.nodes[0], network.values())["w"]
    literals = [float_literal(v) for v in weights.flat[:20]]
    assert all(literal in source for literal in literals)
    assert [np.float32(float.fromhex(t[:-1])) for t in literals] == list(weights.flat[:20])


def test_a_network_call_checks_its_inputs():
    call = convgen.compile(_load("lenet5")[0])
    with pytest.raises(SpecError, match=r"input 'x': shape \(2, 1, 32\)"):
        call(np.zeros((2, 1, 32), np.float32))
    with pytest.raises(SpecError, match="takes 1 input"):
        call(np.zeros((1, 1, 32, 32), np.float32), np.zeros(1))


# ----------------------------------------------------------------------------- Sequential


def test_compile_of_a_sequential_takes_its_weights_by_name_or_at_each_call():
    model = convgen.Sequential(convgen.Conv2d(3, 8, 3, padding=1), convgen.MaxPool2d(2),
                               convgen.Conv2d(8, 4, 3, bias=False), names=["c1", "p", "c2"])
    rng = np.random.default_rng(0)
    weights = {"c1.w": rng.standard_normal((8, 3, 3, 3)), "c1.b": rng.standard_normal(8),
               "c2.w": rng.standard_normal((4, 8, 3, 3))}
    x = rng.standard_normal((2, 3, 10, 10)).astype(np.float32)
    f32 = {k: v.astype(np.float32) for k, v in weights.items()}
    expected = convgen.reference.forward(model[2], convgen.reference.forward(
        model[1], convgen.reference.forward(model[0], x, f32["c1.w"], f32["c1.b"])), f32["c2.w"])
    baked = convgen.compile(model, (3, 10, 10), weights=weights)(x)
    passed = convgen.compile(model, (3, 10, 10))
    assert [n for n, _ in passed.params] == ["c1.w", "c1.b", "c2.w"]
    at_call = passed(x, params=weights)
    np.testing.assert_array_equal(baked, at_call)
    bound = evaluate(Network.from_sequential(model, (3, 10, 10), weights=f32), x).bound()
    assert np.all(np.abs(baked - expected) <= bound)
    with pytest.raises(SpecError, match=r"'c2.w' \(4, 8, 3, 3\) is not given"):
        passed(x, params={"c1.w": weights["c1.w"], "c1.b": weights["c1.b"]})
    with pytest.raises(SpecError, match="needs input_shape"):
        convgen.compile(model)
    with pytest.raises(SpecError, match=r"weights=\['c9.w'\] name no parameter"):
        convgen.compile(model, (3, 10, 10), weights={"c9.w": np.zeros(1)})


# ----------------------------------------------------------------------------- CLI


def test_summary_of_a_model_prints_every_node_and_validates_as_json(capsys, tmp_path):
    path = tmp_path / "resnet_basic_block.onnx"
    onnx.save(onnx_models.resnet_basic_block(), path)
    assert main(["summary", str(path)]) in (0, None)
    text = capsys.readouterr().out
    assert "Conv+BatchNormalization" in text and "total MACs: 1,507,648" in text
    assert main(["summary", str(path), "--symbolic", "--format", "json"]) in (0, None)
    document = json.loads(capsys.readouterr().out)
    import jsonschema

    jsonschema.validate(document, schema("model-summary"))
    assert document["models"][0]["total_macs"] == "1507648*N"


def test_generate_and_verify_a_model_from_the_cli(capsys, tmp_path):
    path = tmp_path / "fire.onnx"
    onnx.save(onnx_models.squeezenet_fire(), path)
    out = tmp_path / "out"
    assert main(["generate", str(path), "-o", str(out), "-q"]) == 0
    folder = out / "fire"
    assert sorted(p.name for p in folder.iterdir()) == ["fire.c", "fire.h", "fire.md",
                                                        "fire.network"]
    assert "proved (z3)" in (folder / "fire.md").read_text()
    assert main(["generate", str(path), "-o", str(out), "--check", "-q"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "-q"]) == 0
    assert "1 passed, 0 failed" in capsys.readouterr().out
    assert main(["verify", str(path), "--cases", "1"]) == 0
    assert "memory plan: proved" in capsys.readouterr().out
    source = folder / "fire.c"
    text = source.read_text()
    assert text.count(", 0x1.") > 100
    source.write_text(text.replace(", 0x1.", ", -0x1.", 50))  # 50 weights change sign
    assert main(["verify", str(out), "-q"]) == 1
    printed = capsys.readouterr().out
    assert "stale" in printed and "FAIL" in printed
    path.write_bytes(onnx_models.squeezenet_fire(seed=3).SerializeToString())
    assert main(["verify", str(out), "-q"]) == 1
    assert "sha256" in capsys.readouterr().out


def test_the_bundled_network_matches_its_model():
    bundled = ROOT / "convgen" / "examples" / "lenet5_network.onnx"
    assert bundled.read_bytes() == onnx_models.lenet5(seed=0).SerializeToString()
    network = load_onnx(str(bundled))
    assert network.name == "lenet5_network"


def test_weights_from_the_callers_array_give_the_baked_network_bit_for_bit():
    network, _ = _load("mobilenetv2_inverted_residual")
    x = np.random.default_rng(4).standard_normal((2, 16, 14, 14)).astype(np.float32)
    baked = convgen.compile(network)
    passed = convgen.runtime.compile_network(network, baked=False)
    assert passed.generated.params_size == passed.generated.param_values.size > 9000
    assert "static const float" not in passed.generated.source
    np.testing.assert_array_equal(baked(x), passed(x))
    with pytest.raises(SpecError, match="weights='flash' must be"):
        generate_network(network, weights="flash")


def test_from_torch_exports_and_imports_or_says_torch_is_missing():
    try:
        import torch
    except ImportError:
        with pytest.raises(SpecError, match="needs PyTorch"):
            convgen.from_torch(object(), (3, 8, 8))
        return
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8),
                                 torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                 torch.nn.Flatten(), torch.nn.Linear(8, 4))
    network, model = convgen.from_torch(module, (3, 8, 8), name="tiny")
    result = verify_network(network, cases=1, batch=2, onnx_model=model)
    assert result.passed, result.problems
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        expected = module.eval()(x).numpy()
    got = convgen.compile(network)(x.numpy())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def _tiny(nodes, initializers, y_shape, inputs=None):
    """A small model on x (N, 2, 4, 4) with a 3-channel convolution's W and B available."""
    rng = np.random.default_rng(0)
    arrays = {"W": rng.standard_normal((3, 2, 3, 3)) * 0.3, "B": rng.standard_normal(3) * 0.1,
              **initializers}
    tensors = [numpy_helper.from_array(np.asarray(v, np.int64 if k == "shape" else np.float32),
                                       k) for k, v in arrays.items()]
    return _graph(nodes, inputs or [_input()], [_input("y", y_shape)], tensors)


@pytest.mark.parametrize("case", ["view_after_activation", "dead_view", "reshape_zero",
                                  "default_alpha", "unread_input", "identity_of_a_weight"])
def test_review_findings_stay_fixed(case):
    conv = helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], name="conv")
    inputs = None
    if case == "view_after_activation":  # the fused convolution keeps its own shape
        nodes = [conv, helper.make_node("Relu", ["c"], ["r"], name="r"),
                 helper.make_node("Flatten", ["r"], ["f"], name="f"),
                 helper.make_node("Sigmoid", ["f"], ["y"], name="s")]
        model, shape = _tiny(nodes, {}, ("N", 48)), (48,)
    elif case == "dead_view":  # a view nobody reads
        nodes = [conv, helper.make_node("Flatten", ["c"], ["dead"], name="f"),
                 helper.make_node("Relu", ["c"], ["y"], name="r")]
        model, shape = _tiny(nodes, {}, ("N", 3, 4, 4)), (3, 4, 4)
    elif case == "reshape_zero":  # a 0 copies the size at its own position
        nodes = [conv, helper.make_node("Reshape", ["c", "shape"], ["y"], name="rs")]
        model, shape = _tiny(nodes, {"shape": [0, 0, -1]}, ("N", 3, 16)), (3, 16)
    elif case == "default_alpha":  # LeakyRelu's default alpha, as float32 in C and oracle
        nodes = [helper.make_node("LeakyRelu", ["x"], ["y"], name="lr")]
        model, shape = _tiny(nodes, {}, ("N", 2, 4, 4)), (2, 4, 4)
    elif case == "identity_of_a_weight":  # torch.onnx.export shares weights through Identity
        nodes = [helper.make_node("Identity", ["W"], ["W2"], name="i"),
                 helper.make_node("Conv", ["x", "W2", "B"], ["y"], name="conv")]
        model, shape = _tiny(nodes, {}, ("N", 3, 2, 2)), (3, 2, 2)
    else:  # a graph input no node reads still builds under -Werror
        inputs = [_input(), _input("z", ("N", 2))]
        nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
        model, shape = _tiny(nodes, {}, ("N", 2, 4, 4), inputs), (2, 4, 4)
    network = load_onnx(model)
    assert network.shapes["y"] == shape
    assert network.fused().shapes["y"] == shape
    result = verify_network(network, cases=1, onnx_model=model)
    assert result.passed, result.problems
