"""The benchmark harness (a smoke run; speed itself is never asserted in tests)."""

import json
import platform

import numpy as np
import pytest

from convgen import bench
from convgen.cli import main
from convgen.reference import forward
from convgen.runtime.cbuild import isa_rung


def test_smoke_run_writes_tables_json_and_plot(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("matplotlib")
    out, png = tmp_path / "b.json", tmp_path / "b.png"
    code = main(["bench", "--smoke", "--threads", "1", "--json", str(out), "--png", str(png)])
    text = capsys.readouterr().out
    assert code == 0 and f"the kernels' ISA rung {isa_rung()} (-march=native);" in text
    assert "sgemm peak" in text and "lenet_conv1" in text
    (run,) = json.loads(out.read_text())
    assert run["threads"] == 1 and run["sgemm_gflops"] > 0 and run["bandwidth_gbs"] > 0
    (row,) = run["results"]
    assert row["agrees"] and {"convgen", "onnxruntime", "numpy"} <= set(row["seconds"])
    assert row["bind"] > 0 and "call path (1 thread, batch 1)" in text
    assert row["flops"] == bench.SUITE[0][1].flops((1, 1, 32, 32))
    assert png.stat().st_size > 10_000


def test_march_builds_the_kernels_for_another_isa_class_and_is_checked(capsys):
    """``--march x86-64-v3`` holds the kernels to AVX2 and FMA (the other x86 class, measured
    on an AVX-512 machine), printed with its rung; a value that is no -march is refused."""
    pytest.importorskip("onnxruntime")
    code = main(["bench", "--march", "x; rm -rf /", "--smoke", "-q"])
    assert code == 2 and "--march 'x; rm -rf /' must be a -march value of the C compiler" \
        in capsys.readouterr().err
    code = main(["bench", "--target", "cuda", "--march", "x86-64-v3", "--smoke", "-q"])
    assert code == 2 and "--march applies to --target c" in capsys.readouterr().err
    if platform.machine() != "x86_64":
        pytest.skip("x86-64-v3 is an x86-64 -march")
    code = main(["bench", "--smoke", "--threads", "1", "--march", "x86-64-v3", "-q"])
    text = capsys.readouterr().out
    assert code == 0 and "the kernels' ISA rung avx2 (-march=x86-64-v3);" in text


def _row(layer, batch, convgen, bind=None):
    seconds = {"convgen": convgen, "onnxruntime": 14e-6, "numpy": 20e-6}
    return dict(layer=layer, describe="", batch=batch, flops=10**6, bytes=10**4, agrees=True,
                schedule="direct", seconds=seconds, **({"bind": bind} if bind else {}))


def test_call_path_table_shows_bound_calls_of_one_thread_and_batch_one():
    """The table code alone, on made-up times (no timing, no ONNX Runtime)."""
    run = dict(threads=1, sgemm_gflops=100.0, bandwidth_gbs=10.0, torch=None,
               onnxruntime="1.0", results=[_row("lenet_conv1", 1, 7e-6, 2e-6),
                                           _row("lenet_conv1+wino", 1, 6e-6),
                                           _row("lenet_conv1", 8, 20e-6)])
    two = dict(run, threads=2, results=[_row("lenet_conv1", 1, 5e-6, 1e-6)])
    lines = bench.call_path_table([run, two])
    assert lines[1] == "call path (1 thread, batch 1): per call from Python, microseconds"
    (row,) = [line for line in lines if line.startswith("lenet")]
    assert row.split() == ["lenet_conv1", "7.00", "2.00", "14.00", "2.00", "7.00"]
    text = bench.format_tables([run, two])
    assert "threads 2:" in text and text.endswith("\n".join(lines))
    assert bench.call_path_table([two]) == []


@pytest.mark.parametrize("name, layer, shape", bench.SUITE, ids=[s[0] for s in bench.SUITE])
def test_numpy_peer_computes_the_layer(name, layer, shape):
    """A peer that computes something else would make its ratio meaningless."""
    rng = np.random.default_rng(0)
    small = (shape[0], min(shape[1], 12), min(shape[2], 12))
    x = rng.integers(-4, 5, (2, *small)).astype(np.float32)
    weights = []
    if hasattr(layer, "weight_shape"):
        weights = [rng.integers(-3, 4, layer.weight_shape).astype(np.float32),
                   rng.integers(-9, 10, layer.out_channels).astype(np.float32)]
    got = bench._numpy_peer(layer, small)(x, *weights)
    exact = forward(layer, *[a.astype(np.float64) for a in [x, *weights]])
    assert np.allclose(got.reshape(exact.shape), exact.astype(np.float64), rtol=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--layers", "nope"], "--layers: 'nope' is not in the suite"),
    (["--threads", "0"], "--threads '0' must be a comma-separated list of positive"),
    (["--batch", "x"], "--batch 'x' must be a comma-separated list of positive"),
])
def test_bench_mistakes_name_the_option(argv, message, capsys):
    assert main(["bench", *argv]) == 2
    assert message in capsys.readouterr().err
