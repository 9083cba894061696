"""The benchmark: generated C kernels against ONNX Runtime, numpy (im2col + BLAS) and PyTorch.

Every thread count runs in its own subprocess with ``OMP_NUM_THREADS``,
``OPENBLAS_NUM_THREADS`` and ``MKL_NUM_THREADS`` set before anything loads, and ONNX Runtime's
``intra_op_num_threads`` and PyTorch's ``set_num_threads`` set to the same count, so every
peer gets the same cores.  Each timing is the median of repeated calls from Python after two
warm-up calls.  The same subprocess measures the machine's sgemm peak (numpy float32 matmul,
best of several) and its copy bandwidth, which turn times into fractions of the roofs.

``convgen bench`` prints one table per thread count (median time, GFLOP/s, fraction of the
sgemm peak, and the ratio of each peer's time to convgen's: above 1 means convgen is
faster), and writes JSON and a roofline plot.  With 1 thread and batch 1 it also times the
call path: the normal call (which checks its arguments and allocates the output) against
``kernel.bind(...)`` (checked once; each call is the C function alone) and ONNX Runtime's
``session.run``, the per-call cost that dominates small layers.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence

from .errors import ConvgenError
from .lower import lower
from .onnx_bridge import onnx_model
from .progress import active, reporting, track
from .runtime import compile as compile_kernel
from .runtime.cbuild import cpu_model, isa_rung
from .schedules import applicable
from .spec import (
    AvgPool2d,
    Conv2d,
    ConvInteger2d,
    GlobalAvgPool,
    Layer,
    MaxPool2d,
    QLinearConv2d,
    family_of,
)

__all__ = ["QSUITE", "SUITE", "call_path_table", "format_tables", "measure", "plot_roofline", "run"]

#: (name, layer, input shape per sample): the issue's suite, float32, PyTorch's defaults.
SUITE = [
    ("lenet_conv1", Conv2d(1, 6, 5), (1, 32, 32)),
    ("conv5_3x32x32", Conv2d(3, 3, 5), (3, 32, 32)),
    ("conv3_3x128x128", Conv2d(3, 16, 3, padding=1), (3, 128, 128)),
    ("resnet_3x3", Conv2d(64, 64, 3, padding=1), (64, 56, 56)),
    ("stem_7x7s2", Conv2d(3, 64, 7, stride=2, padding=3), (3, 224, 224)),
    ("depthwise_3x3", Conv2d(128, 128, 3, padding=1, groups=128), (128, 56, 56)),
    ("pointwise_1x1", Conv2d(128, 256, 1), (128, 28, 28)),
    ("maxpool_2x2s2", MaxPool2d(2, 2), (64, 112, 112)),
    ("avgpool_3x3s1p1", AvgPool2d(3, 1, 1), (64, 56, 56)),
    ("global_avgpool", GlobalAvgPool(), (512, 7, 7)),
]
PEERS = ("onnxruntime", "numpy", "torch", "float32")


def _quantized(c_in: int, c_out: int, kernel: int, padding: int = 0, groups: int = 1):
    """The int8 rows' layer: as ONNX Runtime's quantizer writes a QLinearConv (uint8
    activations with a zero point, int8 weights with per-channel scales, the float
    requantization ONNX Runtime computes)."""
    return QLinearConv2d(c_in, c_out, kernel, padding=padding, groups=groups, dtype="uint8",
                         weight_dtype="int8", x_scale=0.02, x_zero_point=128,
                         w_scale=[0.004 + 0.0001 * (i % 7) for i in range(c_out)],
                         y_scale=0.05, y_zero_point=120)


#: The int8 rows: the float rows' layers quantized, against ONNX Runtime's QLinearConv (or
#: ConvInteger) and convgen's own float32 kernel of the same layer (column ``x float32``).
QSUITE = [
    ("lenet_conv1_int8", _quantized(1, 6, 5), (1, 32, 32)),
    ("resnet_3x3_int8", _quantized(64, 64, 3, 1), (64, 56, 56)),
    ("depthwise_3x3_int8", _quantized(128, 128, 3, 1, 128), (128, 56, 56)),
    ("pointwise_1x1_int8", _quantized(128, 256, 1), (128, 28, 28)),
    ("resnet_3x3_convinteger", ConvInteger2d(64, 64, 3, padding=1, x_zero_point=128),
     (64, 56, 56)),
]


def _median_time(repeats: int, min_time: float, function, *args) -> float:
    """Median seconds of ``function(*args)`` over at least ``repeats`` calls and at least
    ``min_time`` seconds, after two warm-up calls."""
    function(*args)
    function(*args)
    times, start = [], time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 10000):
        begin = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def _sgemm_peak(repeats: int) -> float:
    import numpy as np

    n = 2048
    a = np.ones((n, n), np.float32)
    b = np.ones((n, n), np.float32)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def _bandwidth(repeats: int) -> float:
    """Copy bandwidth in GB/s (bytes read + bytes written), numpy on 256 MiB."""
    import numpy as np

    source = np.ones(64 * 2**20, np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)
    best = min(_timed(lambda: np.copyto(target, source)) for _ in range(repeats))
    return 2 * source.nbytes / best / 1e9


def _chosen(names: Sequence[str] | None) -> list:
    """The SUITE and QSUITE entries named (all when ``names`` is empty); an unknown name is
    an error."""
    known = {name for name, _, _ in SUITE + QSUITE}
    for name in names or ():
        if name not in known:
            raise ConvgenError(f"--layers: {name!r} is not in the suite; choose from "
                               f"{', '.join(sorted(known))}")
    return [entry for entry in SUITE + QSUITE if not names or entry[0] in names]


def _traffic(layer: Layer, sample: tuple, batch: int) -> int:
    """Bytes a layer moves at least: its input and output once, and its weights (float32;
    a quantized layer's own types)."""
    import numpy as np

    if family_of(layer) == "qconv":
        memory = layer.memory((batch, *sample))
        return int(memory.activation_bytes + memory.parameter_bytes)

    weights = (int(np.prod(layer.weight_shape)) + layer.out_channels
               if family_of(layer) == "conv" else 0)
    return 4 * (batch * (int(np.prod(sample)) + int(np.prod(layer.output_shape(sample))))
                + weights)


def _timed(function) -> float:
    begin = time.perf_counter()
    function()
    return time.perf_counter() - begin


def _peer_kind(layer: Layer) -> str:
    """What the 2-d peers compute: ``"global_avg"``, ``"max"``, ``"avg"`` or ``"conv"``."""
    family, reduction = family_of(layer), layer.reduction
    if family == "adaptive_pool" and layer.onnx_op == "GlobalAveragePool":
        return "global_avg"
    if family == "pool" and reduction in ("max", "avg"):
        return reduction
    if family == "conv":
        return "conv"
    raise ConvgenError(f"{type(layer).__name__}: the benchmark peers compute 2-d convolutions, "
                       "max and average pools and global average pools only")


def _numpy_peer(layer, shape):
    """im2col + one BLAS matmul per group (einsum for grouped convs), or window reductions."""
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    kind = _peer_kind(layer)
    if kind == "global_avg":
        return lambda x, *w: x.mean(axis=(2, 3))
    (top, bottom), (left, right) = layer.resolved_padding(shape[1:])
    kh, kw = layer.kernel_size
    (sh, sw), (dh, dw) = layer.stride, layer.dilation

    def windows(x):
        if top or bottom or left or right:
            x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
        view = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
        return view[:, :, ::sh, ::sw, ::dh, ::dw]  # (N, C, OH, OW, kh, kw)

    if kind == "max":
        return lambda x: windows(x).max(axis=(4, 5))
    if kind == "avg":
        return lambda x: windows(x).mean(axis=(4, 5), dtype=np.float32)
    groups, c_out = layer.groups, layer.out_channels

    def conv(x, w, b):
        cols = windows(x)
        n, c, oh, ow = cols.shape[:4]
        if groups == 1:
            matrix = cols.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)
            y = (matrix @ w.reshape(c_out, -1).T).reshape(n, oh, ow, c_out)
            y = y.transpose(0, 3, 1, 2)
        else:
            cols = cols.reshape(n, groups, c // groups, oh, ow, kh, kw)
            weights = w.reshape(groups, c_out // groups, c // groups, kh, kw)
            y = np.einsum("ngcxyij,gocij->ngoxy", cols, weights, optimize=True)
            y = y.reshape(n, c_out, oh, ow)
        return y + b[None, :, None, None]

    return conv


def _torch_peer(layer, torch):
    import torch.nn.functional as F

    kind = _peer_kind(layer)
    if kind == "global_avg":
        return lambda x: F.adaptive_avg_pool2d(x, 1)
    padding = tuple(lo for lo, _ in layer.padding) if isinstance(layer.padding, tuple) else 0
    if kind == "max":
        return lambda x: F.max_pool2d(x, layer.kernel_size, layer.stride, padding,
                                      layer.dilation)
    if kind == "avg":
        return lambda x: F.avg_pool2d(x, layer.kernel_size, layer.stride, padding,
                                      count_include_pad=layer.count_include_pad)
    return lambda x, w, b: F.conv2d(x, w, b, layer.stride, padding, layer.dilation,
                                    layer.groups)


def flags_for(march: str = "native") -> tuple[str, ...]:
    """The kernels' optimization flags for ``--march``: ``-O3 -march=MARCH`` (``native``: this
    CPU's every instruction; ``x86-64-v3``: AVX2 and FMA only, the other ISA class measured
    on an AVX-512 machine)."""
    if not isinstance(march, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}",
                                                      march):
        raise ConvgenError(f"--march {march!r} must be a -march value of the C compiler, "
                           "such as native or x86-64-v3")
    return ("-O3", f"-march={march}")


def measure(threads: int, batches: Sequence[int], names: Sequence[str] | None = None,
            repeats: int = 7, min_time: float = 0.3, march: str = "native") -> dict:
    """Time every implementation on this process's threads (call from a fresh process with
    the thread variables set: :func:`run` does); the kernels are built with
    :func:`flags_for` ``(march)``."""
    import numpy as np
    import onnxruntime as ort

    try:
        import torch
    except ImportError:
        torch = None
    else:
        torch.set_num_threads(threads)
    results = []
    rng = np.random.default_rng(0)
    chosen = _chosen(names)
    flags = flags_for(march)
    for name, layer, shape in track(chosen, f"{threads} thread(s)", lambda entry: entry[0]):
        if family_of(layer) == "qconv":
            results += _measure_quantized(name, layer, shape, batches, threads, flags, rng,
                                          (repeats, min_time))
            continue
        kernel = compile_kernel(layer, shape, openmp=True, flags=flags)
        # the opt-in, inexact Winograd schedule gets its own row where it applies
        winograd = (compile_kernel(layer, shape, openmp=True, schedule="winograd",
                                   flags=flags)
                    if applicable(lower(layer, shape), "c")["winograd"] is None else None)
        weights = []
        if family_of(layer) == "conv":
            weights = [rng.standard_normal(layer.weight_shape).astype(np.float32),
                       rng.standard_normal(layer.out_channels).astype(np.float32)]
        sample = tuple(shape)
        for batch in batches:
            x = rng.standard_normal((batch, *sample)).astype(np.float32)
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            model = onnx_model(layer, (batch, *sample),
                               weights=dict(zip("WB", weights)) if weights else None)
            session = ort.InferenceSession(model.SerializeToString(), options,
                                           providers=["CPUExecutionProvider"])
            ours = kernel(x, *weights)
            reference = session.run(None, {"X": x})[0]
            agrees = bool(np.allclose(ours, reference.reshape(ours.shape), rtol=1e-4,
                                      atol=1e-4))
            timing = (repeats, min_time)
            timings = {"convgen": _median_time(*timing, kernel, x, *weights),
                       "onnxruntime": _median_time(*timing, session.run, None, {"X": x}),
                       "numpy": _median_time(*timing, _numpy_peer(layer, sample), x, *weights)}
            if torch is not None:
                arrays = [torch.from_numpy(a) for a in [x, *weights]]
                with torch.no_grad():
                    timings["torch"] = _median_time(*timing, _torch_peer(layer, torch), *arrays)
            flops = layer.flops((batch, *sample))
            results.append(dict(layer=name, describe=layer.describe(), batch=batch,
                                flops=int(flops), bytes=_traffic(layer, sample, batch),
                                agrees=agrees,
                                schedule=kernel.generated.schedule, seconds=timings))
            if threads == 1 and batch == 1:  # the call path: checks once, then C alone
                bound = kernel.bind(x, *weights)
                results[-1]["bind"] = _median_time(*timing, bound)
                results[-1]["agrees"] = agrees and bool(np.array_equal(bound(), ours))
            if winograd is not None:
                fast = winograd(x, *weights)
                results.append(dict(
                    results[-1], layer=f"{name}+wino", schedule="winograd", bind=None,
                    agrees=bool(np.allclose(fast, reference.reshape(fast.shape), rtol=1e-3,
                                            atol=1e-3)),
                    seconds=dict(timings, convgen=_median_time(*timing, winograd, x,
                                                               *weights))))
    return dict(threads=threads, sgemm_gflops=_sgemm_peak(5), bandwidth_gbs=_bandwidth(5),
                isa=isa_rung(flags), cpu=cpu_model(), march=march,
                torch=None if torch is None else torch.__version__,
                onnxruntime=ort.__version__, results=results)


def _session(model, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def _measure_quantized(name, layer, shape, batches, threads, flags, rng, timing) -> list:
    """An int8 row per batch: the quantized kernel against ONNX Runtime on the same model
    (weights and bias as initializers; bit for bit: ``agrees``) and against convgen's own
    float32 kernel of the layer's geometry (with a bias)."""
    import numpy as np

    kernel = compile_kernel(layer, shape, openmp=True, flags=flags)
    geometry = layer.accumulator
    floats = compile_kernel(Conv2d(geometry.in_channels, geometry.out_channels,
                                   geometry.kernel_size, geometry.stride, geometry.padding,
                                   geometry.dilation, geometry.groups), shape, openmp=True,
                            flags=flags)
    w = rng.integers(-128, 128, layer.weight_shape).astype(np.int8 if layer.weight_dtype ==
                                                           "int8" else np.uint8)
    weights = [w] + ([rng.integers(-2**14, 2**14, layer.out_channels).astype(np.int32)]
                     if layer.bias else [])
    float_weights = [rng.standard_normal(layer.weight_shape).astype(np.float32),
                     rng.standard_normal(layer.out_channels).astype(np.float32)]
    rows = []
    for batch in batches:
        x = rng.integers(0, 256, (batch, *shape)).astype(np.uint8)
        xf = rng.standard_normal((batch, *shape)).astype(np.float32)
        session = _session(onnx_model(layer, (batch, *shape),
                                      weights=dict(zip("WB", weights))), threads)
        ours = kernel(x, *weights)
        agrees = bool(np.array_equal(ours, session.run(None, {"X": x})[0]))
        seconds = {"convgen": _median_time(*timing, kernel, x, *weights),
                   "onnxruntime": _median_time(*timing, session.run, None, {"X": x}),
                   "float32": _median_time(*timing, floats, xf, *float_weights)}
        rows.append(dict(layer=name, describe=layer.describe(), batch=batch,
                         flops=int(layer.flops((batch, *shape))),
                         bytes=_traffic(layer, shape, batch), agrees=agrees,
                         schedule=kernel.generated.schedule, seconds=seconds))
    return rows


def run(threads: Sequence[int] = (1, 2), batches: Sequence[int] = (1, 8),
        names: Sequence[str] | None = None, repeats: int = 7, min_time: float = 0.3,
        march: str = "native") -> list:
    """:func:`measure` for each thread count, each in a fresh subprocess."""
    _chosen(names)
    isa_rung(flags_for(march))  # a -march the compiler refuses fails here, named
    runs = []
    for count in threads:
        if not isinstance(count, int) or count < 1:
            raise ConvgenError(f"--threads: {count!r} must be a positive integer")
        runs.append(in_subprocess("convgen.bench", count, dict(
            threads=count, batches=list(batches), names=list(names or []), repeats=repeats,
            min_time=min_time, march=march), "the benchmark"))
    return runs


def in_subprocess(module: str, threads: int, request: dict, what: str) -> dict:
    """Run ``python -m module REQUEST`` with ``threads`` threads for every library (set before
    anything loads) and return the JSON it prints; it reports its progress on our standard
    error when we report ours."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    command = active()
    done = subprocess.run([sys.executable, "-m", module, json.dumps(request),
                           *([command] if command else [])], env=env,
                          stdout=subprocess.PIPE, text=True,
                          stderr=None if command else subprocess.PIPE)
    if done.returncode:
        said = done.stderr or "(its messages are above)"
        raise ConvgenError(f"{what} with {threads} thread(s) failed:\n{said}")
    return json.loads(done.stdout)


def format_tables(runs: list) -> str:
    """One table per thread count: times, GFLOP/s, fraction of peak, ratios to the peers."""
    lines = []
    for result in runs:
        peak = result["sgemm_gflops"]
        machine = (f"{result['cpu']}, the kernels' ISA rung {result['isa']} "
                   f"(-march={result.get('march', 'native')}); " if "isa" in result else "")
        lines += [f"threads {result['threads']}: {machine}sgemm peak {peak:.1f} GFLOP/s, copy "
                  f"bandwidth {result['bandwidth_gbs']:.1f} GB/s; ONNX Runtime "
                  f"{result['onnxruntime']}, PyTorch {result['torch'] or 'not installed'}",
                  f"{'layer':20} {'N':>2} {'schedule':>9} {'convgen ms':>11} {'GFLOP/s':>8} "
                  f"{'% peak':>7} {'x bw':>6} " + " ".join(f"{'x ' + p:>13}" for p in PEERS)
                  + "  agrees"]
        for row in result["results"]:
            ours = row["seconds"]["convgen"]
            gflops = row["flops"] / ours / 1e9
            bandwidth_time = row["bytes"] / (result["bandwidth_gbs"] * 1e9)
            ratios = " ".join(f"{row['seconds'][p] / ours:13.2f}" if p in row["seconds"]
                              else f"{'-':>13}" for p in PEERS)
            lines.append(f"{row['layer']:20} {row['batch']:2} {row.get('schedule', '?'):>9} "
                         f"{ours * 1e3:11.3f} "
                         f"{gflops:8.2f} {100 * gflops / peak:6.1f}% "
                         f"{ours / bandwidth_time:6.1f} {ratios}  "
                         f"{'yes' if row['agrees'] else 'NO'}")
        lines.append("")
    lines.append("x peer = peer time / convgen time (above 1: convgen is faster); x bw = "
                 "convgen time / time to move the layer's bytes at copy bandwidth; GFLOP/s "
                 "counts the direct convolution's operations (for +wino rows too; integer "
                 "operations for the int8 rows).  +wino: the opt-in Winograd F(2x2,3x3) "
                 "schedule (not exact: error bound in the README); the peers' times are those "
                 "of the row above.  int8 rows: onnxruntime runs QLinearConv (ConvInteger) on "
                 "the same model, bit for bit (agrees); x float32 is convgen's own float32 "
                 "kernel of the same layer.")
    return "\n".join(lines + call_path_table(runs))


def call_path_table(runs: list) -> list[str]:
    """Lines of the call-path table (1 thread, batch 1; none without such rows): the
    normal call's and the bound call's time from Python against ONNX Runtime's."""
    rows = [row for result in runs if result["threads"] == 1 for row in result["results"]
            if row["batch"] == 1 and row.get("bind")]
    if not rows:
        return []
    lines = ["", "call path (1 thread, batch 1): per call from Python, microseconds",
             f"{'layer':20} {'call us':>9} {'bind us':>9} {'ORT us':>9} {'x ORT/call':>10} "
             f"{'x ORT/bind':>10}"]
    for row in rows:
        call, bind, ort = (row["seconds"]["convgen"], row["bind"],
                           row["seconds"]["onnxruntime"])
        lines.append(f"{row['layer']:20} {call * 1e6:9.2f} {bind * 1e6:9.2f} "
                     f"{ort * 1e6:9.2f} {ort / call:10.2f} {ort / bind:10.2f}")
    lines.append("call: kernel(x, w, b) (checks, allocates y); bind: kernel.bind(x, w, b) "
                 "made once, then bound() (the C function alone); ORT: session.run.")
    return lines


def plot_roofline(runs: list, path: str) -> None:
    """GFLOP/s against arithmetic intensity per implementation, under the sgemm and
    bandwidth roofs (one panel per thread count)."""
    try:
        import matplotlib
    except ImportError:
        raise ConvgenError("--png needs matplotlib: pip install 'convgen[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(runs), figsize=(7 * len(runs), 5.5), squeeze=False)
    markers = {"convgen": "o", "onnxruntime": "s", "numpy": "^", "torch": "D"}
    for axis, result in zip(axes[0], runs):
        intensities = [r["flops"] / r["bytes"] for r in result["results"]]
        low, high = min(intensities) / 2, max(intensities) * 2
        xs = [low * (high / low) ** (i / 100) for i in range(101)]
        axis.plot(xs, [min(result["sgemm_gflops"], x * result["bandwidth_gbs"]) for x in xs],
                  "k-", label="roof: sgemm peak / copy bandwidth")
        for impl, marker in markers.items():
            points = [(r["flops"] / r["bytes"], r["flops"] / r["seconds"][impl] / 1e9)
                      for r in result["results"] if impl in r["seconds"]]
            if points:
                axis.scatter(*zip(*points), marker=marker, label=impl, alpha=0.8)
        for r, x in zip(result["results"], intensities):
            axis.annotate(f"{r['layer']} N{r['batch']}", (x, r["flops"] / r["seconds"]
                                                           ["convgen"] / 1e9), fontsize=6)
        axis.set(xscale="log", yscale="log", xlabel="FLOPs per byte moved",
                 ylabel="GFLOP/s", title=f"{result['threads']} thread(s)")
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    request = json.loads(sys.argv[1])
    with reporting(sys.argv[2] if len(sys.argv) > 2 else "bench", enabled=len(sys.argv) > 2):
        json.dump(measure(**request), sys.stdout)
