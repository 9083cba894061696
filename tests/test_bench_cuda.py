"""The GPU benchmark's harness without a GPU: the timing helper on a fake event clock, the
tables on made-up measurements, and the whole measurement through a PyCUDA stand-in
(tests/fake_pycuda.py, which runs each launch on PoCL).  Speed is never asserted."""

import atexit
import contextlib
import json
import sys
import types

import numpy as np
import pytest

from convgen import bench_cuda
from convgen.bench import SUITE
from convgen.cli import main
from convgen.cudagen import generate_cuda
from convgen.errors import BuildError, SpecError
from convgen.runtime import gpu, nvcc, pocl
from convgen.spec import family_of
from convgen.verify import check_kernel

SUITE_BY_NAME = {name: (layer, shape) for name, layer, shape in SUITE}


class _Clock:
    """A device clock in milliseconds that the timed function advances."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, iter(durations), 0

    def work(self):
        self.calls += 1
        self.now += next(self.durations)

    def mark(self):
        return self.now

    @staticmethod
    def elapsed_ms(start, end):
        return end - start


def test_median_ms_warms_up_sizes_the_window_and_takes_the_median():
    # 2 warm-up calls (slow: not counted), 1 sizing call of 0.5 ms -> 4 calls per 2 ms window
    durations = [50.0, 50.0, 0.5] + [1.0] * 4 + [0.25] * 4 + [0.5] * 4
    clock = _Clock(durations)
    ms = bench_cuda.median_ms(clock, clock.work, repeats=3, warmup=2, window_ms=2.0)
    assert clock.calls == 2 + 1 + 3 * 4
    assert ms == 0.5  # the median of 1.0, 0.25 and 0.5 per call


def test_median_ms_bounds_the_calls_per_timing():
    clock = _Clock([0.0] * (1 + bench_cuda.MOST_LAUNCHES))  # too fast to see: the most calls
    assert bench_cuda.median_ms(clock, clock.work, repeats=1, warmup=0) == 0.0
    assert clock.calls == 1 + bench_cuda.MOST_LAUNCHES
    slow = _Clock([100.0] * 4)  # slower than the window: one call per timing
    assert bench_cuda.median_ms(slow, slow.work, repeats=2, warmup=1, window_ms=1.0) == 100.0
    assert slow.calls == 4


def _result(layer, batch, schedule, seconds, agrees=True):
    return dict(layer=layer, describe="", batch=batch, flops=2 * 10**9, bytes=10**6,
                schedule=schedule, agrees=agrees, seconds=seconds)


def test_tables_per_batch_on_made_up_measurements():
    run = dict(target="cuda", device="Made-up GPU", capability="9.0", peak_gflops=4000.0,
               bandwidth_gbs=1000.0, torch="2.9.0", cudnn="91000", results=[
                   _result("resnet_3x3", 1, "tiled", {"convgen": 1e-3, "cudnn": 2e-3}),
                   _result("resnet_3x3", 1, "direct", {"convgen": 4e-3, "cudnn": 2e-3},
                           agrees=False),
                   _result("resnet_3x3", 8, "tiled", {"convgen": 1e-3}, agrees=None)])
    text = bench_cuda.format_cuda_tables(run)
    lines = text.splitlines()
    assert lines[0] == ("Made-up GPU (compute capability 9.0): FP32 peak 4000 GFLOP/s "
                        "(torch.matmul 8192x8192, TF32 off), copy bandwidth 1000 GB/s; "
                        "PyTorch 2.9.0, cuDNN 91000")
    assert lines[1:4] == ["", "batch 1:", "layer                  N  schedule    time ms "
                          "  GFLOP/s  % peak   x bw  x cuDNN  agrees"]
    # 2 GFLOP in 1 ms: 2000 GFLOP/s, half the peak; 1 MB at 1000 GB/s takes 1 us: x 1000
    assert lines[4].split() == ["resnet_3x3", "1", "tiled", "1.0000", "2000.0", "50.0%",
                                "1000.0", "2.00", "yes"]
    assert lines[5].split() == ["resnet_3x3", "1", "direct", "4.0000", "500.0", "12.5%",
                                "4000.0", "0.50", "NO"]
    assert lines[6:8] == ["", "batch 8:"]
    assert lines[9].split()[-2:] == ["-", "-"]  # no peer time, not judged: the columns say so
    assert "x cuDNN = PyTorch's time / convgen's (above 1: convgen is faster" in text
    unknown = bench_cuda.format_cuda_tables(dict(run, peak_gflops=None, bandwidth_gbs=None,
                                                 torch="not installed", cudnn=None))
    assert "FP32 peak and copy bandwidth unknown" in unknown
    assert "PyTorch not installed, cuDNN -" in unknown
    assert unknown.splitlines()[4].split()[5:8] == ["-", "-", "2.00"]


def _needs_nvcc_and_pocl():
    try:
        nvcc.nvcc()
    except BuildError as error:
        pytest.skip(str(error))
    reason = pocl.available("pocl")
    if reason:
        pytest.skip(reason)


@pytest.fixture
def fake_gpu(monkeypatch):
    """The suite's first and last layers' kernels behind a PyCUDA stand-in."""
    _needs_nvcc_and_pocl()
    from tests import fake_pycuda

    chosen = [SUITE_BY_NAME[name] for name in ("lenet_conv1", "global_avgpool")]
    fake_pycuda.install(monkeypatch, [generate_cuda(layer, shape) for layer, shape in chosen])
    gpu._primary.cache_clear()
    yield fake_pycuda
    gpu._primary.cache_clear()
    atexit.unregister(fake_pycuda._Context.pop)  # the fake's context stack is gone by then


class _Peers:
    """PyTorch's side, made up: every peer call takes 0.5 ms of its own clock."""

    version, cudnn = "0.0-fake", "1"

    def __init__(self):
        self.clock, self.given = _Clock(iter(lambda: 0.5, None)), []

    def mark(self):
        return self.clock.mark()

    def elapsed_ms(self, start, end):
        return self.clock.elapsed_ms(start, end)

    def peer(self, layer, arrays):
        self.given.append((family_of(layer), [a.shape for a in arrays]))
        return self.clock.work

    @staticmethod
    def roofs():
        return 1000.0, 100.0


def test_measure_cuda_through_a_pycuda_stand_in(fake_gpu):
    peers = _Peers()
    run = bench_cuda.measure_cuda([1, 2], ["lenet_conv1", "global_avgpool"], repeats=2,
                                  min_time=0.0, check=check_kernel, peers=peers)
    assert (run["device"], run["capability"]) == ("Fake GPU (PoCL)", "9.0")
    assert (run["peak_gflops"], run["bandwidth_gbs"], run["torch"]) == (1000.0, 100.0,
                                                                        "0.0-fake")
    rows = [(r["layer"], r["batch"], r["schedule"]) for r in run["results"]]
    assert rows == [("lenet_conv1", 1, "tiled"), ("lenet_conv1", 1, "direct"),
                    ("lenet_conv1", 2, "tiled"), ("lenet_conv1", 2, "direct"),
                    ("global_avgpool", 1, "direct"), ("global_avgpool", 2, "direct")]
    assert all(r["agrees"] for r in run["results"])
    # the events bracket the launches alone: one fake launch each, no copies in between
    assert {r["seconds"]["convgen"] for r in run["results"]} == {fake_gpu.LAUNCH_MS / 1e3}
    assert {r["seconds"]["cudnn"] for r in run["results"]} == {0.5e-3}
    assert peers.given == [("conv", [(1, 1, 32, 32), (6, 1, 5, 5), (6,)]),
                           ("conv", [(2, 1, 32, 32), (6, 1, 5, 5), (6,)]),
                           ("adaptive_pool", [(1, 512, 7, 7)]),
                           ("adaptive_pool", [(2, 512, 7, 7)])]
    assert run["results"][0]["bytes"] == 4 * (32 * 32 + 6 * 28 * 28 + 6 * 25 + 6)
    table = bench_cuda.format_cuda_tables(run).splitlines()
    assert ["lenet_conv1", "1", "tiled"] in [line.split()[:3] for line in table]


class _FailingPeers(_Peers):
    def peer(self, layer, arrays):
        raise RuntimeError("cuDNN error: CUDNN_STATUS_NOT_SUPPORTED")

    @staticmethod
    def roofs():
        raise RuntimeError("CUDA out of memory")


def test_a_failing_peer_is_reported_not_fatal(fake_gpu):
    run = bench_cuda.measure_cuda([1], ["global_avgpool"], repeats=1, min_time=0.0,
                                  peers=_FailingPeers())
    (row,) = run["results"]
    assert row["seconds"]["convgen"] > 0 and "cudnn" not in row["seconds"]
    assert row["peer_error"] == "RuntimeError: cuDNN error: CUDNN_STATUS_NOT_SUPPORTED"
    assert run["peak_gflops"] is None and row["agrees"] is None  # no check given
    assert run["torch"] == "0.0-fake (the roofs failed: RuntimeError: CUDA out of memory)"
    text = bench_cuda.format_cuda_tables(run)
    assert "  global_avgpool: PyTorch failed: RuntimeError: cuDNN error" in text
    assert text.splitlines()[4].split()[-2:] == ["-", "-"]


def test_bound_launches_take_device_arrays_only(fake_gpu):
    (kernel,) = gpu.compile_gpu([SUITE_BY_NAME["global_avgpool"]])
    x = np.arange(2 * 512 * 49, dtype=np.float32).reshape(2, 512, 7, 7) % 7
    with pytest.raises(SpecError, match="bind_async takes GPUArrays; x is a ndarray"):
        kernel.bind_async(x)
    bound = kernel.bind_async(gpu.to_device(x))
    y = bound()
    assert bound() is y and np.array_equal(y.get(), kernel(x))


def test_cli_bench_cuda_through_a_pycuda_stand_in(fake_gpu, tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert main(["bench", "--target", "cuda", "--smoke", "--quiet", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Fake GPU (PoCL) (compute capability 9.0): FP32 peak and copy "
                           "bandwidth unknown")
    (run,) = json.loads(out.read_text())
    assert [(r["layer"], r["batch"]) for r in run["results"]] == [("lenet_conv1", 1)] * 2
    assert all(r["agrees"] is True for r in run["results"])  # the command judges each
    if run["torch"] == "not installed":  # no PyTorch here: its column says so, no crash
        assert "PyTorch not installed" in text and "cudnn" not in run["results"][0]["seconds"]


def test_cli_bench_cuda_without_a_gpu_is_a_clear_error(capsys):
    reason = gpu.available()
    if reason is None:
        pytest.skip("a GPU is present: the error path does not apply")
    assert main(["bench", "--target", "cuda", "--smoke"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convgen: error: the GPU benchmark (--target cuda) cannot run here: ")
    assert reason in err


@pytest.mark.parametrize("argv, message", [
    (["--png", "x.png"], "--png: the roofline plot is drawn for --target c only"),
    (["--layers", "nope"], "--layers: 'nope' is not in the suite"),
])
def test_bench_cuda_mistakes_name_the_option(argv, message, capsys):
    assert main(["bench", "--target", "cuda", *argv]) == 2
    assert message in capsys.readouterr().err


class _FakeTorch:
    """Just the PyTorch API the GPU benchmark calls, on a clock each operation advances by
    1 ms: a check of the calls' spelling and plumbing, not of PyTorch."""

    __version__, float32 = "0.0-fake", "float32"

    def __init__(self):
        self.now, self.calls = 0.0, []
        event = self._event_class()
        self.cuda = types.SimpleNamespace(is_available=lambda: True, Event=event,
                                          empty_cache=lambda: self.calls.append("empty"))
        self.backends = types.SimpleNamespace(
            cudnn=types.SimpleNamespace(allow_tf32=True, benchmark=False, version=lambda: 91000),
            cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=True)))
        self.nn = types.SimpleNamespace(functional=types.SimpleNamespace(
            conv2d=lambda *args: self._op(("conv2d", *args[3:])),
            adaptive_avg_pool2d=lambda x, size: self._op(("adaptive_avg_pool2d", size))))

    def _event_class(torch):
        class Event:
            def __init__(self, enable_timing=False):
                assert enable_timing
                self.time = None

            def record(self):
                self.time = torch.now

            def synchronize(self):
                assert self.time is not None

            def elapsed_time(self, end):
                return end.time - self.time

        return Event

    def _op(self, what):
        self.now += 1.0
        self.calls.append(what)
        return self

    def no_grad(self):
        return contextlib.nullcontext()

    def from_numpy(self, array):
        self.calls.append(("from_numpy", array.shape))
        return self

    def to(self, device):
        assert device == "cuda"
        return self

    def randn(self, *shape, device, dtype):
        assert device == "cuda" and dtype == "float32"
        return self

    def matmul(self, a, b):
        return self._op("matmul")

    ones, empty_like = randn, lambda self, tensor: self

    def numel(self):
        return bench_cuda.COPY_ELEMENTS

    def element_size(self):
        return 4

    def copy_(self, source):
        return self._op("copy_")


def test_the_pytorch_side_on_a_stand_in(monkeypatch):
    torch = _FakeTorch()
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.nn", torch.nn)
    monkeypatch.setitem(sys.modules, "torch.nn.functional", torch.nn.functional)
    side, version = bench_cuda._load_torch()
    assert version == "0.0-fake" and side.cudnn == "91000"
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    assert (cudnn.allow_tf32, matmul.allow_tf32, cudnn.benchmark) == (False, False, True)
    # 1 ms per fake matmul and per fake 1 GiB copy
    assert side.roofs() == (2 * 8192**3 / 1e9 / 1e-3, 2 * 2**30 / 1e9 / 1e-3)
    assert torch.calls[-1] == "empty"
    layer, sample = SUITE_BY_NAME["resnet_3x3"]
    arrays = bench_cuda._inputs(np.random.default_rng(0), layer, sample, 2)
    assert bench_cuda.median_ms(side, side.peer(layer, arrays), repeats=3) == 1.0
    assert torch.calls[-1] == ("conv2d", (1, 1), (1, 1), (1, 1), 1)  # stride, pad, dil, groups
    assert ("from_numpy", (2, 64, 56, 56)) in torch.calls
