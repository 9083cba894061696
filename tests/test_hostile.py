"""Reproducers from the hardening issue, each a regression test: hostile kernel names,
builds from threads, cache tampering, paths outside the output folder, tampered generated
folders.  Crash-prone reproducers run in a subprocess, so a crash fails the test instead of
killing pytest."""

import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import convgen
from convgen.cli import main
from convgen.reference import forward
from convgen.runtime import cache as cache_module
from tests.helpers import ROOT


def _in_subprocess(code: str, cache: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, CONVGEN_CACHE_DIR=str(cache), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=env, timeout=timeout)


# --------------------------------------------------------------------------- 1. names


@pytest.mark.parametrize("name", ["errno", "time", "signal", "setjmp", "omp_get_thread_num",
                                  "omp_get_num_threads", "GOMP_parallel", "memcpy", "sqrtf",
                                  "printf", "PyObject_Call", "_Exit", "_Private", "Py_Main"])
def test_names_of_the_c_library_openmp_and_python_are_refused(name):
    with pytest.raises(convgen.SpecError, match=f"name='{name}' is reserved"):
        convgen.compile(convgen.MaxPool2d(2), (1, 4, 4), name=name, openmp=True)


def test_a_reserved_name_in_a_layer_file_is_an_error_not_a_crash(tmp_path, capsys):
    layers = tmp_path / "layers.toml"
    layers.write_text('[[layer]]\nname = "errno"\ntype = "MaxPool2d"\ninput_shape = [1, 4, 4]\n'
                      'kernel_size = 2\n')
    code = main(["verify", str(layers)])
    assert code == 2 and "name='errno' is reserved" in capsys.readouterr().err


def test_names_like_system_headers_cannot_shadow_them(tmp_path):
    """No -I of the build folder: a kernel named like a header the build includes (stdio.h,
    string.h, stdint.h, math.h) still builds and computes its layer."""
    done = _in_subprocess("""
        import numpy as np, convgen
        from convgen.reference import forward
        layer = convgen.Conv2d(1, 2, 3, padding=1)
        x = np.arange(32, dtype=np.float32).reshape(2, 1, 4, 4) % 5
        w = np.ones(layer.weight_shape, np.float32); b = np.zeros(2, np.float32)
        for name in ("stdio", "string", "stdint", "math", "stdlib", "limits", "signal_h"):
            for openmp in (False, True):
                k = convgen.compile(layer, (1, 4, 4), name=name, openmp=openmp)
                assert np.array_equal(k(x, w, b), forward(layer, x, w, b)), name
        print("ok")
    """, tmp_path / "cache")
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr[-2000:]


# --------------------------------------------------------------------------- 2. threads


def test_builds_from_twelve_threads_all_succeed_and_leave_the_cwd_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path / "cache"))
    cwd, outcomes = os.getcwd(), {}

    def build(i):
        try:
            layer = convgen.Conv2d(2, 3, 3, padding=i % 3)
            kernel = convgen.compile(layer, (2, 6 + i, 7), openmp=i % 2 == 0)
            rng = np.random.default_rng(i)
            x = rng.integers(-3, 4, (2, 2, 6 + i, 7)).astype(np.float32)
            w = rng.integers(-3, 4, layer.weight_shape).astype(np.float32)
            b = rng.integers(-3, 4, 3).astype(np.float32)
            outcomes[i] = np.array_equal(kernel(x, w, b), forward(layer, x, w, b))
        except Exception as error:  # reported below, with the thread that saw it
            outcomes[i] = repr(error)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {i: True for i in range(12)}
    assert os.getcwd() == cwd


# --------------------------------------------------------------------------- 5. the cache


def _cached_module(cache: Path) -> Path:
    (so,) = [p for p in cache.rglob("_convgen_*.so")]
    return so


_RUN = """
    import warnings, numpy as np, convgen
    warnings.simplefilter("always")
    k = convgen.compile(convgen.MaxPool2d(2), (1, 4, 4))
    y = k(np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4))
    print(y.ravel().tolist())
"""


@pytest.mark.parametrize("damage", ["truncate", "flip", "fifo", "checksum"])
def test_a_damaged_cache_entry_is_rebuilt_never_loaded(tmp_path, damage):
    cache = tmp_path / "cache"
    first = _in_subprocess(_RUN, cache)
    assert first.returncode == 0 and "[5.0, 7.0, 13.0, 15.0]" in first.stdout, first.stderr
    so = _cached_module(cache)
    data = so.read_bytes()
    if damage == "truncate":
        so.write_bytes(data[:8192])
    elif damage == "flip":  # one byte in the middle of the code
        middle = len(data) // 2
        so.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])
    elif damage == "fifo":
        so.unlink()
        os.mkfifo(so)
    else:
        Path(f"{so}.sha256").unlink()
    again = _in_subprocess(_RUN, cache, timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "[5.0, 7.0, 13.0, 15.0]" in again.stdout
    assert "is unusable" in again.stderr and "rebuilding" in again.stderr
    assert cache_module.checksum_ok(_cached_module(cache)) == ""


def test_an_unwritable_cache_falls_back_with_a_warning(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(blocked / "cache"))
    monkeypatch.setattr(cache_module, "_FALLBACK", [])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernel = convgen.compile(convgen.MaxPool2d(2), (1, 4, 4))
    assert kernel(np.ones((1, 1, 4, 4), np.float32)).shape == (1, 1, 2, 2)
    assert any("is not usable" in str(w.message) for w in caught)


def test_interrupted_and_failed_builds_do_not_pile_up(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path / "cache"))
    kernel = convgen.compile(convgen.MaxPool2d(2), (1, 4, 4))
    parent = _cached_module(tmp_path / "cache").parent.parent
    stale = parent / ".build-interrupted"
    stale.mkdir()
    old = 0  # the epoch: far older than STALE_SECONDS
    os.utime(stale, (old, old))
    fresh = parent / ".build-running"
    fresh.mkdir()
    cache_module.prune_stale(parent)
    assert not stale.exists() and fresh.exists() and kernel
    for i in range(cache_module.KEEP_FAILED + 3):
        source = tmp_path / f"k{i}.c"
        source.write_text("x")
        kept = cache_module.keep_failed(source)
        os.utime(kept, (i, i))
    failed = [p for p in (tmp_path / "cache" / "failed").iterdir()]
    assert len(failed) == cache_module.KEEP_FAILED
