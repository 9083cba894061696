"""The GPU benchmark: generated CUDA kernels against PyTorch (cuDNN) on one device.

``convgen bench --target cuda`` times every CUDA schedule of each suite layer
(:data:`convgen.bench.SUITE`; ``direct``, and ``tiled`` where it applies) on data that stays
on the device, and PyTorch's convolution or pool on the same data in the same process, with
TF32 off (exact float32).  Both are timed with CUDA events on the default stream: after
warm-up launches, the median of repeated timings of back-to-back launches.  The same process
measures the device's FP32 peak (``torch.matmul`` of two 8192 x 8192 float32 matrices, TF32
off, best of several) and its copy bandwidth (a device-to-device copy of 1 GiB, bytes read +
written), which turn times into fractions of the roofs.  Each schedule is judged against the
exact oracle by the ``check`` given (the command passes :func:`convgen.verify.check_kernel`,
which sits above this module: one sample of small integers).

The timing (:func:`median_ms`) takes any clock with ``mark()`` and ``elapsed_ms(start,
end)``, and :func:`measure_cuda` takes the clock and the PyTorch side as arguments, so
everything but the CUDA calls themselves runs on a machine without a GPU.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import numpy as np

from .bench import _chosen, _torch_peer, _traffic
from .errors import ConvgenError
from .progress import track
from .runtime import gpu
from .spec import Layer, family_of

__all__ = ["format_cuda_tables", "measure_cuda", "median_ms"]

#: The peak's matrix size and the bandwidth's buffer size (float32 elements).
PEAK_SIZE = 8192
COPY_ELEMENTS = 2**28  # 1 GiB
#: Most back-to-back launches in one timing (a tiny kernel reaches the window sooner).
MOST_LAUNCHES = 10000


def median_ms(clock, function: Callable[[], object], repeats: int = 7, warmup: int = 3,
              window_ms: float = 40.0) -> float:
    """Median milliseconds of one ``function()`` on ``clock``'s device.

    ``warmup`` calls first; then one timed call sizes the timings so that each of the
    ``repeats`` lasts about ``window_ms`` (at least 1 and at most :data:`MOST_LAUNCHES`
    back-to-back calls between two marks); each timing is divided by its count of calls.
    ``clock.mark()`` records an event after the work enqueued so far, and
    ``clock.elapsed_ms(start, end)`` waits for ``end`` and returns the milliseconds between.
    """
    for _ in range(warmup):
        function()
    start = clock.mark()
    function()
    once = clock.elapsed_ms(start, clock.mark())
    count = MOST_LAUNCHES if once <= 0 else max(1, min(MOST_LAUNCHES,
                                                        math.ceil(window_ms / once)))
    times = []
    for _ in range(max(1, repeats)):
        start = clock.mark()
        for _ in range(count):
            function()
        times.append(clock.elapsed_ms(start, clock.mark()) / count)
    return statistics.median(times)


class _Torch:
    """PyTorch on the GPU: the peers (cuDNN for convolutions), the FP32 peak and the copy
    bandwidth, all timed with ``torch.cuda.Event`` on the current (default) stream."""

    def __init__(self, torch):
        self.torch = torch
        torch.backends.cudnn.allow_tf32 = False  # exact float32, as the kernels compute
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape
        self.version = torch.__version__
        self.cudnn = str(torch.backends.cudnn.version())

    def mark(self):
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    @staticmethod
    def elapsed_ms(start, end) -> float:
        end.synchronize()
        return start.elapsed_time(end)

    def peer(self, layer: Layer, arrays: list) -> Callable[[], object]:
        """PyTorch's computation of ``layer`` on device copies of the NumPy ``arrays``."""
        torch = self.torch
        tensors = [torch.from_numpy(a).to("cuda") for a in arrays]
        compute = _torch_peer(layer, torch)

        def call():
            with torch.no_grad():
                return compute(*tensors)

        return call

    def peak_gflops(self, repeats: int = 5) -> float:
        """FP32 GFLOP/s of ``torch.matmul`` on two PEAK_SIZE-square matrices, best of
        ``repeats``."""
        torch, n = self.torch, PEAK_SIZE
        a = torch.randn(n, n, device="cuda", dtype=torch.float32)
        b = torch.randn(n, n, device="cuda", dtype=torch.float32)
        return 2 * n**3 / self._best(lambda: torch.matmul(a, b), repeats) / 1e6

    def bandwidth_gbs(self, repeats: int = 5) -> float:
        """Device-to-device copy bandwidth in GB/s (bytes read + written), 1 GiB, best of
        ``repeats``."""
        torch = self.torch
        source = torch.ones(COPY_ELEMENTS, device="cuda", dtype=torch.float32)
        target = torch.empty_like(source)
        moved = 2 * source.numel() * source.element_size()
        return moved / self._best(lambda: target.copy_(source), repeats) / 1e6

    def roofs(self) -> tuple[float, float]:
        """(FP32 GFLOP/s, copy GB/s); their buffers go back to the device afterwards."""
        roofs = self.peak_gflops(), self.bandwidth_gbs()
        self.torch.cuda.empty_cache()
        return roofs

    def _best(self, function, repeats: int) -> float:
        function()
        times = []
        for _ in range(repeats):
            start = self.mark()
            function()
            times.append(self.elapsed_ms(start, self.mark()))
        return min(times)


def _load_torch() -> tuple[_Torch | None, str]:
    """(the PyTorch side, its version) or (None, why there is none)."""
    try:
        import torch
    except ImportError:
        return None, "not installed"
    if not torch.cuda.is_available():
        return None, f"{torch.__version__} sees no CUDA device"
    side = _Torch(torch)
    return side, side.version


def _inputs(rng, layer: Layer, sample: tuple, batch: int) -> list:
    """Standard-normal float32 ``x`` of shape ``(batch, *sample)``, then the weight and bias
    of a convolution."""
    x = rng.standard_normal((batch, *sample)).astype(np.float32)
    if family_of(layer) != "conv":
        return [x]
    return [x, rng.standard_normal(layer.weight_shape).astype(np.float32),
            rng.standard_normal(layer.out_channels).astype(np.float32)]


def _attempt(function: Callable, *args) -> tuple:
    """``(function(*args), None)``, or ``(None, the error)``: PyTorch failing on one layer
    must not lose a run that may be the only one on that machine."""
    try:
        return function(*args), None
    except Exception as error:  # whatever PyTorch raises, reported in the table and JSON
        return None, f"{type(error).__name__}: {error}"


def _peer_ms(side: _Torch, layer: Layer, arrays: list, timing: dict) -> float:
    return median_ms(side, side.peer(layer, arrays), **timing)


_AUTO = object()


def measure_cuda(batches: Sequence[int], names: Sequence[str] | None = None,
                 repeats: int = 7, min_time: float = 0.3, *, check=None, clock=None,
                 peers=_AUTO) -> dict:
    """Time every CUDA schedule of the suite's layers (or those ``names``) at each batch,
    against PyTorch on the same data; returns one run (the JSON ``convgen bench --target
    cuda --json`` writes, in a list).

    ``min_time`` seconds are spread over the ``repeats`` timings of each measurement.
    ``check(kernel, cases=1, seed=i, batch=1)`` (:func:`convgen.verify.check_kernel`) judges
    each schedule against the exact oracle (None: ``agrees`` is None, not judged).
    ``clock`` (default :class:`convgen.runtime.gpu.EventClock`) times the kernels;
    ``peers`` is the PyTorch side (default: PyTorch if it sees a GPU; None: no peer).
    """
    entries = _chosen(names)
    reason = gpu.available()
    if reason:
        raise ConvgenError(f"the GPU benchmark (--target cuda) cannot run here: {reason}")
    clock = clock or gpu.EventClock()
    device = gpu.describe_device()
    side, said = _load_torch() if peers is _AUTO else (peers, getattr(peers, "version",
                                                                      "not used"))
    roofs, failed = _attempt(side.roofs) if side else (None, None)
    peak, bandwidth = roofs or (None, None)
    if failed:
        said = f"{said} (the roofs failed: {failed})"
    timing = dict(repeats=repeats, window_ms=1e3 * min_time / max(1, repeats))
    rng = np.random.default_rng(0)
    results = []
    for name, layer, sample in track(entries, "GPU", lambda entry: entry[0]):
        kernels = gpu.compile_gpu([(layer, sample)])
        agrees = {k.schedule: check(k, cases=1, seed=i, batch=1).passed if check else None
                  for i, k in enumerate(kernels)}
        for batch in batches:
            arrays = _inputs(rng, layer, tuple(sample), batch)
            peer_ms, failed = _attempt(_peer_ms, side, layer, arrays, timing) if side \
                else (None, None)
            peer = {} if peer_ms is None else {"cudnn": peer_ms / 1e3}
            on_device = [gpu.to_device(a) for a in arrays]
            for kernel in kernels:
                ms = median_ms(clock, kernel.bind_async(*on_device), **timing)
                results.append(dict(
                    layer=name, describe=layer.describe(), batch=batch,
                    flops=int(layer.flops((batch, *sample))),
                    bytes=_traffic(layer, tuple(sample), batch), schedule=kernel.schedule,
                    agrees=agrees[kernel.schedule], seconds={"convgen": ms / 1e3, **peer},
                    **({"peer_error": failed} if failed else {})))
    return dict(target="cuda", device=device["name"], capability=device["capability"],
                peak_gflops=peak, bandwidth_gbs=bandwidth, torch=said,
                cudnn=getattr(side, "cudnn", None), results=results)


def _number(value, spec: str, width: int, unit: str = "") -> str:
    """``value`` formatted in ``width`` characters (plus ``unit``); ``-`` when unknown."""
    if value is None:
        return f"{'-':>{width + len(unit)}}"
    return f"{value:{width}{spec}}{unit}"


_VERDICT = {True: "yes", False: "NO", None: "-"}


def _row(row: dict, peak, bandwidth) -> str:
    ours = row["seconds"]["convgen"]
    gflops = row["flops"] / ours / 1e9
    percent = None if not peak else 100 * gflops / peak
    over_bw = None if not bandwidth else ours / (row["bytes"] / (bandwidth * 1e9))
    peer = row["seconds"].get("cudnn")
    versus = None if peer is None else peer / ours
    return (f"{row['layer']:20} {row['batch']:3} {row['schedule']:>9} {ours * 1e3:10.4f} "
            f"{gflops:9.1f} {_number(percent, '.1f', 6, '%')} {_number(over_bw, '.1f', 6)} "
            f"{_number(versus, '.2f', 8)}  {_VERDICT[row['agrees']]}")


def format_cuda_tables(run: dict) -> str:
    """A header naming the device, its roofs and PyTorch's versions, then one table per
    batch: time, GFLOP/s, fraction of the FP32 peak, multiple of the copy time, and
    PyTorch's time over convgen's."""
    peak, bandwidth = run["peak_gflops"], run["bandwidth_gbs"]
    roofs = ("FP32 peak and copy bandwidth unknown (they are measured with PyTorch)"
             if peak is None else
             f"FP32 peak {peak:.0f} GFLOP/s (torch.matmul {PEAK_SIZE}x{PEAK_SIZE}, TF32 off), "
             f"copy bandwidth {bandwidth:.0f} GB/s")
    lines = [f"{run['device']} (compute capability {run['capability']}): {roofs}; PyTorch "
             f"{run['torch']}, cuDNN {run['cudnn'] or '-'}"]
    for batch in dict.fromkeys(row["batch"] for row in run["results"]):
        rows = [row for row in run["results"] if row["batch"] == batch]
        lines += ["", f"batch {batch}:",
                  f"{'layer':20} {'N':>3} {'schedule':>9} {'time ms':>10} {'GFLOP/s':>9} "
                  f"{'% peak':>7} {'x bw':>6} {'x cuDNN':>8}  agrees"]
        lines += [_row(row, peak, bandwidth) for row in rows]
        lines += [f"  {row['layer']}: PyTorch failed: {row['peer_error']}"
                  for row in dict((r["layer"], r) for r in rows if "peer_error" in r).values()]
    lines += ["", "time: median per launch (CUDA events around back-to-back launches, data "
              "on the device); x cuDNN = PyTorch's time / convgen's (above 1: convgen is "
              "faster; cuDNN computes the convolutions, PyTorch's own kernels the pools; TF32 "
              "off); x bw = convgen's time / time to move the layer's bytes at copy "
              "bandwidth; agrees: the schedule matches the exact oracle."]
    return "\n".join(lines)
