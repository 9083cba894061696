"""Verify a network's C: :func:`verify_network` builds it and checks it five ways.

1. The memory plan is proved (:func:`convgen.netgen.prove_plan`, z3).
2. End to end: on seeded random inputs, every output within the running error bound of the
   float64 oracle (:func:`convgen.netcheck.evaluate`).
3. Node by node: a traced build writes every intermediate tensor; each node's oracle runs on
   the C's own inputs, so its bound is that node's rounding alone (:func:`convgen.netcheck.
   check_nodes`).  The traced and the planned C agree bit for bit on the outputs (same
   kernels, same order: only the memory differs).
4. The fused C (epilogues in the convolutions' stores) equals the unfused C bit for bit.
5. With the ONNX model and onnxruntime at hand: ONNX Runtime's outputs within the same bound
   of the oracle (its float32 arithmetic obeys the same error analysis), and the largest
   difference between it and the C.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .netcheck import NodeCheck, check_nodes, evaluate
from .netcheck import ratio as _ratio
from .netgen import NetworkC, generate_network, prove_plan
from .runtime.cbuild import DEFAULT_FLAGS, build_modules
from .runtime.network import NetworkCall
from .spec.network import Network

__all__ = ["NetworkOutcome", "verify_network"]


@dataclass
class NetworkOutcome:
    """What :func:`verify_network` found; ``passed`` when every check held."""

    name: str
    cases: int
    batch: int
    plan: str = ""
    max_error: float = 0.0          # |C - oracle|, end to end
    max_ratio: float = 0.0          # the largest |C - oracle| / bound, end to end
    max_bound: float = 0.0
    nodes: list[NodeCheck] = field(default_factory=list)
    traced_identical: bool = True
    fused_identical: bool = True
    ort_max_error: float | None = None   # |ORT - oracle|
    ort_ratio: float | None = None
    ort_vs_c: float | None = None        # |ORT - C|
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def node_ratio(self) -> float:
        return max((c.ratio for c in self.nodes), default=0.0)


def _inputs(network: Network, batch: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch, *shape)).astype(np.float32)
            for _, shape in network.inputs]


def verify_network(network: Network, cases: int = 2, batch: int = 2, onnx_model=None,
                   flags: Sequence[str] = DEFAULT_FLAGS, seed: int = 0,
                   params=None, planned: NetworkC | None = None) -> NetworkOutcome:
    """Build ``network``'s C (fused, planned), its traced and unfused variants, and check
    them on ``cases`` seeded batches of ``batch`` standard-normal inputs (see the module
    docstring); ``onnx_model`` (a ModelProto) adds the ONNX Runtime comparison; ``planned``
    is the C to check (default: generated now; a folder's files as they are on disk)."""
    outcome = NetworkOutcome(network.name, cases, batch)
    planned = planned or generate_network(network)
    outcome.plan = prove_plan(planned.plan)
    fused = planned.network
    traced_c = generate_network(fused.traced(), fuse=False)
    unfused_c = generate_network(network, fuse=False)
    calls = [NetworkCall(c, build_modules([c], flags)) for c in (planned, traced_c, unfused_c)]
    call, traced, unfused = calls
    session = None
    if onnx_model is not None:
        try:
            import onnxruntime
        except ImportError:
            outcome.problems.append("onnxruntime is not installed: no ONNX Runtime check")
        else:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1
            session = onnxruntime.InferenceSession(onnx_model.SerializeToString(), options,
                                                   providers=["CPUExecutionProvider"])
    worst: dict = {}
    for case in range(cases):
        inputs = _inputs(network, batch, seed + case)
        got = call(*inputs, params=params)
        got = got if isinstance(got, tuple) else (got,)
        oracle = evaluate(network, inputs, params)
        for index, y in enumerate(got):
            error = np.abs(y - oracle.output(index))
            outcome.max_error = max(outcome.max_error, float(error.max()))
            outcome.max_ratio = max(outcome.max_ratio, _ratio(error, oracle.bound(index)))
            outcome.max_bound = max(outcome.max_bound, float(oracle.bound(index).max()))
        every = traced(*inputs, params=params)
        every = every if isinstance(every, tuple) else (every,)
        computed = dict(zip(fused.traced().outputs, every))
        for index, tensor in enumerate(network.outputs):
            mine = computed[fused.storage(tensor)].reshape(got[index].shape)
            outcome.traced_identical &= bool(np.array_equal(mine, got[index]))
        plain = unfused(*inputs, params=params)
        plain = plain if isinstance(plain, tuple) else (plain,)
        outcome.fused_identical &= all(np.array_equal(a, b) for a, b in zip(plain, got))
        for check in check_nodes(fused, inputs, computed, params):
            if check.node not in worst or check.ratio > worst[check.node].ratio:
                worst[check.node] = check
        if session is not None:
            names = [value.name for value in session.get_inputs()]
            theirs = session.run(None, dict(zip(names, inputs)))
            for index, y in enumerate(theirs):
                error = np.abs(y - oracle.output(index))
                outcome.ort_max_error = max(outcome.ort_max_error or 0.0, float(error.max()))
                outcome.ort_ratio = max(outcome.ort_ratio or 0.0,
                                        _ratio(error, oracle.bound(index)))
                outcome.ort_vs_c = max(outcome.ort_vs_c or 0.0,
                                       float(np.abs(y - got[index]).max()))
    outcome.nodes = list(worst.values())
    if outcome.max_ratio > 1:
        outcome.problems.append(f"an output is {outcome.max_ratio:.3g}x its error bound from "
                                "the oracle")
    for check in outcome.nodes:
        if not check.passed:
            outcome.problems.append(f"node {check.node} ({check.op}): {check.ratio:.3g}x its "
                                    f"bound (error {check.max_error:.3g})")
    if not outcome.traced_identical:
        outcome.problems.append("the traced C's outputs differ from the planned C's: the "
                                "memory plan changes results")
    if not outcome.fused_identical:
        outcome.problems.append("the fused C's outputs differ from the unfused C's")
    if outcome.ort_ratio is not None and outcome.ort_ratio > 1:
        outcome.problems.append(f"ONNX Runtime's output is {outcome.ort_ratio:.3g}x the error "
                                "bound from the oracle")
    return outcome
