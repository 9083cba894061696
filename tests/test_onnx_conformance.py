"""ONNX's own conformance cases (onnx.backend.test.case.node) through the generated C, and
through the generated CUDA: its text on the CPU (PoCL, every schedule) and on a GPU when
one is present."""

import warnings

import numpy as np
import pytest

from convgen import SpecError
from convgen.lower import lower
from convgen.onnx_bridge import (
    CONFORMANCE_OPS,
    ONNX_DTYPES,
    QUANTIZED_INPUTS,
    _attributes,
    compare_with_onnx,
    kernel_arrays,
    layer_from_onnx,
)
from convgen.runtime.cbuild import compile_kernels
from convgen.schedules import applicable
from tests.helpers import cuda_kernels

onnx_cases = pytest.importorskip("onnx.backend.test.case.node")

OPS = CONFORMANCE_OPS


def _cases():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = onnx_cases.collect_testcases(None)
    return [c for c in cases if c.model.graph.node and c.model.graph.node[0].op_type in OPS]


CASES = _cases()


def _run(case, target="c"):
    """Compile and run one case on ``target``; return (passed, reason)."""
    node = case.model.graph.node[0]
    inputs, expected = case.data_sets[0]
    try:  # the quantized operators' scales and zero points are the spec's constants
        layer = layer_from_onnx(node, [np.shape(a) for a in inputs],
                                dict(zip(node.input, inputs)),
                                [np.asarray(a).dtype for a in inputs])
    except SpecError as error:
        return False, f"not representable: {error}"
    dtype = ONNX_DTYPES[str(np.asarray(inputs[0]).dtype)]
    item = (layer, tuple(np.shape(inputs[0])[1:]))
    if target in ("c-blocked", "c-packed", "c-winograd"):
        schedule = target[2:]
        reason = _not_applicable(lower(*item, dtype), schedule)
        if reason:  # the registry says the schedule does not take this layer, and why
            pytest.skip(reason)
        kernels = compile_kernels([item], dtype=dtype, schedule=schedule)
    elif target == "c":
        kernels = compile_kernels([item], dtype=dtype)
    else:
        kernels = cuda_kernels(target, [item], dtype)
    arrays = [np.ascontiguousarray(a) for a in kernel_arrays(node, inputs)]
    for kernel in kernels:
        passed, reason = _compare(kernel(*arrays), expected, node, inputs)
        if not passed:
            return False, f"{getattr(kernel, 'schedule', target)}: {reason}"
    return True, ""


def _not_applicable(problem, schedule: str) -> str:
    """Why ``schedule`` has no kernel for ``problem`` (its family has none, or its
    ``applies`` says no), or "" when it applies: only then is a skip right."""
    reasons = applicable(problem, "c")
    if schedule not in reasons:
        return f"{schedule} has no {problem.family} kernel"
    return reasons[schedule] or ""


def _compare(got, expected, node, inputs):
    problem = compare_with_onnx(got, expected, _attributes(node).get("storage_order", 0),
                                inputs[0].shape)
    return not problem, problem


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_onnx_conformance_case(case):
    passed, reason = _run(case)
    assert passed, reason


FAST_CASES = [c for c in CASES if c.model.graph.node[0].op_type in ("Conv", "AveragePool",
                                                                    "MaxPool")]


@pytest.mark.parametrize("schedule", ["blocked", "packed", "winograd"])
@pytest.mark.parametrize("case", FAST_CASES, ids=[c.name for c in FAST_CASES])
def test_onnx_conformance_case_through_the_fast_schedules(case, schedule):
    passed, reason = _run(case, f"c-{schedule}")
    assert passed, reason


FLOAT_CASES = [c for c in CASES if c.model.graph.node[0].op_type not in QUANTIZED_INPUTS]


@pytest.mark.parametrize("case", FLOAT_CASES, ids=[c.name for c in FLOAT_CASES])
def test_onnx_conformance_case_through_the_cuda_text_on_the_cpu(case):
    passed, reason = _run(case, "cuda-cpu")
    assert passed, reason


@pytest.mark.cuda
@pytest.mark.parametrize("case", FLOAT_CASES, ids=[c.name for c in FLOAT_CASES])
def test_onnx_conformance_case_on_the_gpu(case):
    passed, reason = _run(case, "cuda")
    assert passed, reason


def test_every_pooling_and_convolution_case_is_collected():
    assert len(CASES) >= 71  # 68 float and pooling cases, 2 ConvInteger, 1 QLinearConv
    assert {c.model.graph.node[0].op_type for c in CASES} == set(OPS)
