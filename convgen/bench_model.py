"""``convgen bench --model MODEL.onnx``: a whole network's C against ONNX Runtime on the same
file, end to end, with each step's share of the network's time.

Each thread count runs in its own subprocess with ``OMP_NUM_THREADS`` set before anything
loads (as :mod:`convgen.bench`); ONNX Runtime gets the same ``intra_op_num_threads``.  The
network C is built with OpenMP when more than one thread is asked for (a kernel parallelizes
its channels and rows; the samples run one at a time).  Times are medians of repeated calls
after two warm-up calls, each the C function alone (inputs, outputs and scratch allocated
once).  The shares come from a profiling build of the same C (processor time per step,
``clock()``), run separately so its timers do not touch the timed build.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .bench import _median_time, flags_for, in_subprocess
from .errors import ConvgenError
from .netgen import generate_network
from .onnx_import import load_onnx
from .runtime.cbuild import STRICT_FLAGS, build_modules, compiler, cpu_model, isa_rung
from .runtime.network import NetworkCall

__all__ = ["BAKED_LIMIT", "format_model_tables", "measure_model", "run_model"]

#: Models with more parameters are timed with their weights in the caller's array.
BAKED_LIMIT = 1_000_000


def _profiled(generated, flags, openmp: bool):
    """The profiling build of a network's C as a ctypes library (and its folder)."""
    folder = Path(tempfile.mkdtemp(prefix="convgen-profile-"))
    (folder / f"{generated.name}.c").write_text(generated.source)
    (folder / f"{generated.name}.h").write_text(generated.header)
    library = folder / f"lib{generated.name}.so"
    command = [compiler(), *STRICT_FLAGS, *flags, *(["-fopenmp"] if openmp else []), "-fPIC",
               "-shared", str(folder / f"{generated.name}.c"), "-o", str(library), "-lm"]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise ConvgenError(f"building the profiling network failed:\n{done.stderr}")
    return ctypes.CDLL(str(library)), folder


def measure_model(path: str, threads: int, batches: Sequence[int], repeats: int = 7,
                  min_time: float = 0.3, name: str | None = None) -> dict:
    """Time the network C of the model at ``path`` and ONNX Runtime (call in a process with
    the thread variables set: :func:`run_model` does)."""
    import shutil

    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    network = load_onnx(model, name=name or "network")
    flags, openmp = flags_for("native"), threads > 1
    # past BAKED_LIMIT parameters the weights go in the caller's array (the same kernels;
    # millions of literals would take the compiler minutes)
    weights = "static" if network.num_params <= BAKED_LIMIT else "params"
    generated = generate_network(network, openmp=openmp, weights=weights)
    call = NetworkCall(generated, build_modules([generated], flags, openmp))
    profiled = generate_network(network, openmp=openmp, profile=True, weights=weights)
    library, folder = _profiled(profiled, flags, openmp)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    rng = np.random.default_rng(0)
    results = []
    try:
        for batch in batches:
            x = rng.standard_normal((batch, *network.inputs[0][1])).astype(np.float32)
            bound = call.bind(x)
            ours = bound()
            theirs = session.run(None, {input_name: x})[0].reshape(ours.shape)
            timing = (repeats, min_time)
            seconds = {"convgen": _median_time(*timing, bound),
                       "onnxruntime": _median_time(*timing, session.run, None,
                                                   {input_name: x})}
            # the shares: the profiling build, run as often as the timed one
            y = np.empty_like(ours)
            scratch = np.empty(max(profiled.plan.peak, 64), np.uint8)
            pointer = ctypes.c_void_p
            entry = getattr(library, generated.name)
            entry.argtypes = [pointer] * (4 if weights == "params" else 3) + [ctypes.c_long]
            head = [profiled.param_values.ctypes.data] if weights == "params" else []
            steps = np.zeros(len(profiled.network.nodes), np.float64)
            getattr(library, f"{generated.name}_profile").argtypes = [pointer]
            getattr(library, f"{generated.name}_profile")(steps.ctypes.data)  # reset
            runs = max(3, int(min_time / max(seconds["convgen"], 1e-6)))
            for _ in range(runs):
                entry(*head, x.ctypes.data, y.ctypes.data, scratch.ctypes.data, batch)
            getattr(library, f"{generated.name}_profile")(steps.ctypes.data)
            total = steps.sum() or 1.0
            shares = [dict(node=node.name, op=node.source or node.op,
                           share=float(t / total))
                      for node, t in zip(profiled.network.nodes, steps)]
            results.append(dict(batch=batch, seconds=seconds,
                                max_difference=float(np.abs(ours - theirs).max()),
                                scale=float(np.abs(theirs).max()), shares=shares))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return dict(model=str(path), network=network.name, threads=threads,
                nodes=len(network.nodes), params=network.num_params,
                macs=sum(network.macs_of(n) for n in network.nodes),
                isa=isa_rung(flags), cpu=cpu_model(), onnxruntime=ort.__version__,
                weights=weights,
                schedules={n: k.schedule for n, k in generated.kernels.items()},
                results=results)


def run_model(path: str, threads: Sequence[int] = (1, 2), batches: Sequence[int] = (1, 8),
              repeats: int = 7, min_time: float = 0.3, name: str | None = None) -> list:
    """:func:`measure_model` for each thread count, each in a fresh subprocess."""
    if not Path(path).is_file():
        raise ConvgenError(f"--model {path!r}: no such file")
    return [in_subprocess("convgen.bench_model", count, dict(
        path=str(path), threads=count, batches=list(batches), repeats=repeats,
        min_time=min_time, name=name), "the model benchmark") for count in threads]


def format_model_tables(runs: list, top: int = 8) -> str:
    """The end-to-end table (times and the ratio ONNX Runtime / convgen: above 1 means
    convgen is faster) and, per run, the steps that take most of the time."""
    if not runs:
        return ""
    first = runs[0]
    lines = [f"model {first['model']} ({first['network']}: {first['nodes']} nodes, "
             f"{first['params']:,} parameters, {first['macs']:,} MACs a sample)",
             f"CPU: {first['cpu']}; ISA rung: {first['isa']}; ONNX Runtime "
             f"{first['onnxruntime']}; weights: {first['weights']}", "",
             "| threads | batch | convgen ms | ONNX Runtime ms | x ORT | max |C - ORT| |",
             "|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        for r in run["results"]:
            ours, theirs = r["seconds"]["convgen"], r["seconds"]["onnxruntime"]
            lines.append(f"| {run['threads']} | {r['batch']} | {ours * 1e3:.3f} | "
                         f"{theirs * 1e3:.3f} | {theirs / ours:.2f} | "
                         f"{r['max_difference']:.2g} (of {r['scale']:.3g}) |")
    for run in runs:
        for r in run["results"]:
            ranked = sorted(r["shares"], key=lambda s: -s["share"])[:top]
            lines += ["", f"time shares, {run['threads']} thread(s), batch {r['batch']}: "
                      + ", ".join(f"{s['node']} ({s['op']}) {s['share']:.0%}" for s in ranked)]
    return "\n".join(lines)


if __name__ == "__main__":  # one thread count, in a fresh process (run_model)
    from .progress import reporting

    request = json.loads(sys.argv[1])
    with reporting(sys.argv[2] if len(sys.argv) > 2 else "bench", enabled=len(sys.argv) > 2):
        print(json.dumps(measure_model(**request)))
