"""The build: cache, errors, flags, names, and the callable's argument checks."""

import dataclasses
import multiprocessing
import os
import re
import warnings

import numpy as np
import pytest

import convgen
from convgen import BuildError, SpecError, codegen
from convgen.runtime import cbuild


def _entries(root):
    return [p for p in root.glob("??/*") if p.is_dir()]


def test_cache_location_and_reuse(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path))
    layer = convgen.MaxPool1d(2)
    convgen.compile(layer, (1, 8), flags=("-O1",))
    (entry,) = _entries(tmp_path)
    stamp = {p: p.stat().st_mtime_ns for p in entry.iterdir()}
    kernel = convgen.compile(layer, (1, 8), flags=("-O1",))
    assert {p: p.stat().st_mtime_ns for p in entry.iterdir()} == stamp  # reused, not rebuilt
    x = np.arange(8, dtype=np.float32).reshape(1, 1, 8)
    assert kernel(x).tolist() == [[[1, 3, 5, 7]]]
    convgen.compile(layer, (1, 8), flags=("-O2",))
    assert len(_entries(tmp_path)) == 2  # other flags, other key


def test_corrupt_entry_is_rebuilt_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path))
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_build_in_child, args=(str(tmp_path), queue))
    child.start()
    queue.get(timeout=120)
    child.join(timeout=120)
    (entry,) = _entries(tmp_path)
    for so in entry.glob("*.so"):  # a new file: never map over a loaded library
        so.unlink()
        so.write_bytes(b"not a shared object")
    with pytest.warns(RuntimeWarning, match="is unusable .* rebuilding"):
        kernel = convgen.compile(convgen.AvgPool1d(2), (1, 6), flags=("-O1",))
    assert kernel(np.arange(6, dtype=np.float32).reshape(1, 1, 6)).tolist() == \
        [[[0.5, 2.5, 4.5]]]


def _build_in_child(cache, queue):
    os.environ["CONVGEN_CACHE_DIR"] = cache
    kernel = convgen.compile(convgen.AvgPool1d(2), (1, 6), flags=("-O1",))
    queue.put(kernel(np.arange(6, dtype=np.float32).reshape(1, 1, 6)).tolist())


def test_concurrent_builds_of_one_kernel(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_build_in_child, args=(str(tmp_path), queue))
                for _ in range(3)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=120)
    assert results == [[[[0.5, 2.5, 4.5]]]] * 3
    assert len(_entries(tmp_path)) == 1
    assert not list(tmp_path.glob("??/.build-*"))  # no leftovers from the losers


def test_compile_error_keeps_command_stderr_and_source(monkeypatch):
    real = codegen.generate

    def broken(*args, **kwargs):
        kernel = real(*args, **kwargs)
        return dataclasses.replace(kernel, source=kernel.source + "\nint broken = ;\n")

    monkeypatch.setattr(cbuild, "generate", broken)  # what compile() generates with
    with pytest.raises(BuildError) as info:
        convgen.compile(convgen.MaxPool1d(2), (1, 4), flags=("-O0",))
    error = info.value
    assert "-Werror" in error.command and "-pedantic" in error.command
    assert "error" in error.stderr and os.path.isfile(error.source_path)
    assert "int broken = ;" in open(error.source_path).read()
    assert error.source_path in str(error)


def test_fast_math_is_refused():
    with pytest.raises(BuildError, match="break IEEE semantics"):
        convgen.compile(convgen.MaxPool1d(2), (1, 4), flags=("-O3", "-ffast-math"))


@pytest.mark.parametrize("name", ["1abc", "a-b", "int", "x; system(\"rm\")", "a" * 64,
                                  "__reserved", "", "café"])
def test_kernel_names_must_be_c_identifiers(name):
    with pytest.raises(SpecError, match=re.escape(f"name={name!r} must be a C identifier")):
        codegen.generate(convgen.MaxPool1d(2), (1, 4), name=name)


def test_target_and_dtype_checks():
    with pytest.raises(SpecError, match="target='opencl' must be 'c'"):
        convgen.compile(convgen.MaxPool1d(2), (1, 4), target="opencl")
    with pytest.raises(SpecError, match="Conv1d: dtype='int8' must be one of float32, float64"):
        codegen.generate(convgen.Conv1d(1, 1, 2), (1, 4), dtype="int8")
    with pytest.raises(SpecError, match="code generation needs a concrete input_shape"):
        codegen.generate(convgen.Conv1d(1, 1, 2), (1, "L"))


@pytest.fixture(scope="module")
def conv_kernel():
    return convgen.compile(convgen.Conv2d(2, 3, 3, padding=1), (2, 5, 5), flags=("-O1",))


def _good(kernel):
    x = np.zeros((2, 2, 5, 5), np.float32)
    return x, np.zeros((3, 2, 3, 3), np.float32), np.zeros(3, np.float32)


@pytest.mark.parametrize("mutate, message", [
    (lambda x, w, b: (x.astype(np.float64), w, b), "x has dtype float64; the kernel was "
                                                  "generated for float32"),
    (lambda x, w, b: (x[:, :, :4], w, b), r"x has shape \(2, 2, 4, 5\); expected \(2, 2, 5, 5\)"),
    (lambda x, w, b: (np.asfortranarray(x), w, b), "x is not C-contiguous"),
    (lambda x, w, b: (x.tolist(), w, b), r"x must be a numpy.ndarray of shape \(N, 2, 5, 5\)"),
    (lambda x, w, b: (x, w[:, :1], b), r"weight has shape \(3, 1, 3, 3\); expected"),
    (lambda x, w, b: (x, w, None), r"the layer has a bias; pass bias of shape \(3,\)"),
    (lambda x, w, b: (x, w, b[:2]), r"bias has shape \(2,\); expected \(3,\)"),
    (lambda x, w, b: (x, None, b), "weight must be a numpy.ndarray, got NoneType"),
])
def test_callable_rejects_wrong_arrays(conv_kernel, mutate, message):
    with pytest.raises(SpecError, match=message):
        conv_kernel(*mutate(*_good(conv_kernel)))


def test_callable_pool_arguments_and_empty_batch():
    pool = convgen.compile(convgen.MaxPool1d(2, return_indices=True), (1, 4), flags=("-O1",))
    with pytest.raises(SpecError, match="MaxPool1d takes no weight"):
        pool(np.zeros((1, 1, 4), np.float32), np.zeros(1, np.float32))
    y, idx = pool(np.zeros((0, 1, 4), np.float32))
    assert y.shape == (0, 1, 2) and idx.dtype == np.int64
    nobias = convgen.compile(convgen.Conv1d(1, 1, 2, bias=False), (1, 4), flags=("-O1",))
    with pytest.raises(SpecError, match=r"the layer has no bias \(bias=False\)"):
        nobias(np.zeros((1, 1, 4), np.float32), np.zeros((1, 1, 2), np.float32),
               np.zeros(1, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        readonly = np.zeros((1, 1, 4), np.float32)
        readonly.flags.writeable = False
        assert nobias(readonly, np.ones((1, 1, 2), np.float32)).shape == (1, 1, 3)
