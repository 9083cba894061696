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
        for name in ("stdio", "string", "stdint", "math", "stdlib", "limits", "signal_h",
                     "index", "select", "random", "stat", "link", "y0", "j1", "error"):
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
    monkeypatch.setattr(cache_module, "_CHECKED", {})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kernel = convgen.compile(convgen.MaxPool2d(2), (1, 4, 4), name="fallback_probe")
    assert kernel(np.ones((1, 1, 4, 4), np.float32)).shape == (1, 1, 2, 2)
    assert any("is not usable" in str(w.message) for w in caught)


def test_interrupted_and_failed_builds_do_not_pile_up(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path / "cache"))
    kernel = convgen.compile(convgen.MaxPool2d(2), (1, 4, 4), name="prune_probe")
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


# --------------------------------------------------------------------------- 3. paths

_POOL = ('[[layer]]\nname = "p"\ntype = "MaxPool2d"\ninput_shape = [1, 4, 4]\n'
         'kernel_size = 2\n')


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_layer_file_named_dots_cannot_write_beside_the_output(tmp_path, capsys):
    sentinel = tmp_path / "pyproject.toml"
    sentinel.write_text("keep me")
    layers = tmp_path / "...toml"
    layers.write_text(_POOL)
    code, _, err = _run(capsys, "generate", str(layers), "-o", str(tmp_path / "out"),
                        "--target", "c")
    assert code == 2 and "output subfolder '..'" in err
    assert sentinel.read_text() == "keep me"


def test_a_linked_subfolder_is_refused(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "net").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = _run(capsys, "generate", str(layers), "-o", str(out), "--target", "c")
    assert code == 2 and "is a link" in err
    assert list(elsewhere.iterdir()) == []
    (out / "net").unlink()
    _run(capsys, "generate", str(layers), "-o", str(out), "--target", "c")
    (out / "net" / "p.h").unlink()
    (out / "net" / "p.h").symlink_to(elsewhere / "p.h")
    code, out_text, _ = _run(capsys, "generate", str(layers), "-o", str(out), "--target", "c",
                             "--check")
    assert code == 1 and "link:" in out_text


# --------------------------------------------------------------------------- 4. verify


@pytest.fixture()
def shipped(tmp_path, capsys):
    """A generated folder of two C kernels (a convolution and a pool)."""
    layers = tmp_path / "net.toml"
    layers.write_text('[[model]]\nname = "net"\ninput_shape = [2, 6, 6]\nlayers = [\n'
                      '  { name = "c", type = "Conv2d", in_channels = 2, out_channels = 3, '
                      'kernel_size = 3, padding = 1 },\n'
                      '  { name = "p", type = "AvgPool2d", kernel_size = 2 },\n]\n')
    out = tmp_path / "out"
    assert _run(capsys, "generate", str(layers), "-o", str(out), "--target", "c")[0] == 0
    return out / "net"


def _verify(capsys, folder, *extra):
    return _run(capsys, "verify", str(folder.parent), *extra)


def test_an_untouched_folder_verifies(shipped, capsys):
    code, out, _ = _verify(capsys, shipped)
    assert code == 0 and "2 passed, 0 failed" in out


def test_an_off_by_one_under_another_name_is_caught(shipped, capsys):
    source = shipped / "net_c.c"
    source.write_text(source.read_text().replace("< 6", "< 5", 1))
    spec = shipped / "net_c.toml"
    spec.write_text(spec.read_text().replace('name = "net_c"', 'name = "other"'))
    code, out, _ = _verify(capsys, shipped)
    assert code == 1 and "inconsistent:" in out and "names kernel 'other'" in out
    spec.unlink()
    code, out, _ = _verify(capsys, shipped)
    assert code == 1 and "orphaned:" in out and "net_c.c" in out
    assert "0 failed" not in out


def test_a_deleted_header_is_missing(shipped, capsys):
    (shipped / "net_p.h").unlink()
    code, out, _ = _verify(capsys, shipped)
    assert code == 1 and "missing:" in out and "net_p.h" in out


@pytest.mark.parametrize("edit", ["size macro", "define float double", "off by one"])
def test_the_shipped_files_are_what_is_built_and_tested(shipped, capsys, edit):
    header, source = shipped / "net_c.h", shipped / "net_c.c"
    if edit == "size macro":
        text = header.read_text()
        header.write_text(text.replace("_X_SAMPLE 72L", "_X_SAMPLE 71L"))
        assert header.read_text() != text
    elif edit == "define float double":
        header.write_text(header.read_text().replace("#endif /* NET_C_H */",
                                                     "#define float double\n#endif"))
    else:
        text = source.read_text()
        source.write_text(text.replace("acc += x[", "acc -= x[", 1))
        assert source.read_text() != text
    code, out, _ = _verify(capsys, shipped)
    assert code == 1 and "stale:" in out
    summary = out.strip().splitlines()[-1]
    assert "0 failed" not in summary
    if edit != "size macro":  # the built files themselves fail: values or the build
        assert "FAIL" in out


# --------------------------------------------------------------------------- 6. hangs


def _cli_within(seconds: float, *argv) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess that must finish within ``seconds``."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "convgen", *argv], capture_output=True,
                          text=True, env=env, timeout=seconds)


def test_adaptive_pool_counts_are_closed_form():
    done = _cli_within(30, "summary", "AdaptiveAvgPool2d(100000000)", "--input-shape",
                       "3,200000000,200000000")
    assert done.returncode == 0 and "FLOPs" in done.stdout, done.stderr
    done = _cli_within(30, "prove", "--layer", "AdaptiveAvgPool2d(100000000)")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("n", range(1, 40))
def test_adaptive_closed_forms_equal_the_window_by_window_sums(n):
    from convgen import symbolic as sym

    for m in range(1, 40):
        taps = sym.adaptive_window_taps(n, m)
        assert sym.adaptive_total_taps(n, m) == sum(taps)
        assert sym.adaptive_max_taps(n, m) == max(taps)


def test_toeplitz_structure_of_a_large_layer_is_computed_not_materialized():
    done = _cli_within(30, "toeplitz", "Conv2d(64,64,3,padding=1)", "--input-shape",
                       "64,56,56")
    assert done.returncode == 0 and "112,869,376 nonzeros" in done.stdout, done.stderr


def test_a_matrix_too_large_to_materialize_is_refused_with_its_size():
    from convgen import toeplitz

    layer = convgen.Conv2d(512, 512, 3, padding=1)
    with pytest.raises(convgen.SpecError, match=r"117,676,441,600 entries, at least 1,315"):
        toeplitz.toeplitz(layer, (512, 224, 224))
    done = _cli_within(60, "toeplitz", "Conv2d(512,512,3,padding=1)", "--input-shape",
                       "512,224,224", "--plot", os.devnull + ".png")
    assert done.returncode == 2 and "Traceback" not in done.stderr


# --------------------------------------------------------------------------- 7. sizes


@pytest.mark.parametrize("make", [
    lambda: convgen.Conv2d(1, 1, 3, stride=10**20),
    lambda: convgen.Conv2d(1, 1, 3, padding=10**12),
    lambda: convgen.AvgPool2d(2, divisor_override=2**70),
    lambda: convgen.AdaptiveAvgPool2d(10**10),
    lambda: convgen.Conv2d(2**31, 1, 1),
])
def test_parameters_beyond_a_32_bit_int_are_refused(make):
    with pytest.raises(convgen.SpecError, match="at most 2,147,483,647"):
        make()


def test_samples_beyond_a_64_bit_long_are_refused_before_any_c():
    from convgen.codegen import generate

    with pytest.raises(convgen.SpecError, match="a kernel indexes with a 64-bit long"):
        generate(convgen.Conv3d(2**20, 1, 1), (2**20, 2**20, 2**20, 2**20))


def test_a_sample_beyond_32_bits_builds_with_long_arithmetic(tmp_path, monkeypatch):
    """(1, 50000, 50000) overflowed the header's int size check; now it builds, and its
    header requires a 64-bit long."""
    from convgen.codegen import generate
    from tests.helpers import compile_strict

    kernel = generate(convgen.Conv2d(1, 1, 3), (1, 50000, 50000), name="big")
    assert "50000L * 50000L" in kernel.header and "sizeof(long) >= 8" in kernel.header
    compile_strict("gcc", kernel, tmp_path, [[]], "-O0")
    small = generate(convgen.Conv2d(1, 1, 3), (1, 8, 8), name="small")
    assert "sizeof(long)" not in small.header


# --------------------------------------------------------------------------- 8. inputs


@pytest.mark.parametrize("argv, message", [
    (["shape", "Conv2d(1, 1, 3" + ", 1" * 50000 + ")", "--input-shape", "1,8,8"],
     "too long"),
    (["shape", "Conv2d(1, 1, " + "+".join(["1"] * 3000) + ")", "--input-shape", "1,8,8"],
     "at most 256"),
    (["shape", "Conv2d(1, 1, 3)", "--input-shape", "3,--32,32"], "comma-separated ints"),
    (["shape", "Conv2d(3, 1, 3)", "--input-shape", "3,,32,32"], "comma-separated ints"),
    (["shape", "Conv2d(1, 1, " + "9" * 5000 + ")", "--input-shape", "1,8,8"], "digits"),
    (["shape", "Conv2d(1, 1, 3, bias=True, bias=False)", "--input-shape", "1,8,8"],
     "bias given twice"),
    (["shape", "Conv2d(1, 1, 3, padding=b'ab')", "--input-shape", "1,8,8"], "padding=b'ab'"),
])
def test_hostile_layer_expressions_and_shapes_are_clear_errors(capsys, argv, message):
    code, _, err = _run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_deeply_nested_toml_is_an_error(tmp_path, capsys):
    layers = tmp_path / "deep.toml"
    layers.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    code, _, err = _run(capsys, "summary", str(layers))
    assert code == 2 and "convgen: error:" in err


def test_values_that_are_not_sizes_are_refused():
    import sympy

    with pytest.raises(convgen.SpecError, match="spatial"):
        convgen.Conv2d(3, 1, 3).output_shape((3, sympy.nan, 32))
    with pytest.raises(convgen.SpecError, match="padding_mode"):
        convgen.Conv2d(3, 1, 3, padding_mode=np.array(["zeros", "reflect"]))
    with pytest.raises(convgen.SpecError, match="norm_type=1e\\+300"):
        convgen.LPPool2d(1e300, 2)
    with pytest.raises(convgen.SpecError, match="kernel_size=b"):
        convgen.Conv2d(1, 1, b"ab")
