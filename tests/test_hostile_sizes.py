"""Item 6 of the hardening issue, hangs and memory blow-ups: adaptive window sums and the
Toeplitz structure in closed form, matrices too large to materialize refused up front.

Each reproducer runs under a time limit (a subprocess ``timeout=`` or ``signal.alarm``), so a
regression fails instead of hanging; each closed form is checked against the brute force it
replaced."""

import contextlib
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import sympy
from hypothesis import given
from hypothesis import strategies as st

import convgen
from convgen import symbolic as sym
from convgen import toeplitz
from convgen.plot import PLOT_LIMIT, plot_toeplitz
from convgen.strategies import layers_with_inputs
from tests.helpers import ROOT


def _cli_within(seconds: float, *argv) -> subprocess.CompletedProcess:
    """The CLI in a subprocess that must finish within ``seconds`` (TimeoutExpired fails)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "convgen", *argv], capture_output=True,
                          text=True, env=env, timeout=seconds)


@contextlib.contextmanager
def _within(seconds: int):
    """Fail with TimeoutError when the block runs longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a closed form regressed")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# --------------------------------------------------------------------------- adaptive pools


def test_summary_of_a_huge_adaptive_pool_is_instant():
    """Was one Python iteration per window: 10^8 windows per axis."""
    done = _cli_within(60, "summary", "AdaptiveAvgPool2d(100000000)", "--input-shape",
                       "3,200000000,200000000")
    assert done.returncode == 0, done.stderr
    # per axis 2e8 + 1e8 - gcd = 2e8 taps; 3 * (2e8)^2 taps and 3 * (1e8)^2 outputs
    assert "FLOPs: 150,000,000,000,000,000" in done.stdout


def test_prove_of_a_huge_adaptive_pool_is_instant():
    done = _cli_within(60, "prove", "--layer", "AdaptiveAvgPool2d(10000000000)",
                       "--input-shape", "3,20000000000,20000000000")
    assert done.returncode == 2 and "at most 2,147,483,647" in done.stderr
    assert "Traceback" not in done.stderr
    done = _cli_within(60, "prove", "--layer", "AdaptiveAvgPool2d(100000000)")
    assert done.returncode == 0 and "0 refuted" in done.stdout, done.stderr


def test_symbolic_summary_of_an_adaptive_pool_is_instant():
    """``Max`` over 200 symbolic windows took five minutes; 100000 were refused."""
    done = _cli_within(60, "summary", "AdaptiveAvgPool2d(100000)", "--input-shape", "3,H,W")
    assert done.returncode == 0, done.stderr
    assert "gcd(H, 100000)" in done.stdout and "Traceback" not in done.stderr
    H, W = sym.size_symbols("H W")
    with _within(30):
        layer = convgen.AdaptiveMaxPool2d((200, 3))
        flops = layer.flops((1, H, W))
        field = convgen.Sequential(layer).summary((1, H, W)).rows[0].receptive_field
    for h, w in [(1, 1), (199, 2), (200, 3), (401, 7), (1000, 4), (12345, 5)]:
        assert flops.subs({H: h, W: w}) == layer.flops((1, h, w))
        assert field[0].subs(H, h) == max(sym.adaptive_window_taps(h, 200))
        assert field[1].subs(W, w) == max(sym.adaptive_window_taps(w, 3))


@given(st.integers(1, 400), st.integers(1, 400))
def test_adaptive_total_and_widest_window_equal_the_window_by_window_ones(n, out):
    taps = sym.adaptive_window_taps(n, out)
    assert sym.adaptive_total_taps(n, out) == sum(taps) == n + out - math.gcd(n, out)
    assert sym.adaptive_max_taps(n, out) == max(taps)


@given(st.integers(1, 60), st.integers(1, 60))
def test_symbolic_adaptive_closed_forms_substitute_to_the_window_by_window_ones(n, out):
    (x,) = sym.size_symbols("x")
    taps = sym.adaptive_window_taps(n, out)
    assert sym.adaptive_total_taps(x, out).subs(x, n) == sum(taps)
    assert sym.adaptive_max_taps(x, out).subs(x, n) == max(taps)


def test_the_gcd_function_evaluates_only_on_numbers():
    (x,) = sym.size_symbols("x")
    assert sym.gcd(12, 18) == 6 and sym.gcd(x, 1) == 1
    assert isinstance(sym.gcd(x, 6), sym.gcd) and sym.gcd(x, 6).subs(x, 9) == 3
    assert sympy.gcd(x, 6) == 1  # why convgen has its own: SymPy's is the polynomial gcd


# --------------------------------------------------------------------------- structure


def test_toeplitz_structure_of_a_resnet_layer_is_instant():
    """Was 120 s and 5.9 GB to materialize 112,869,376 entries."""
    done = _cli_within(60, "toeplitz", "Conv2d(64,64,3,padding=1)", "--input-shape",
                       "64,56,56")
    assert done.returncode == 0, done.stderr
    assert ("shape 200,704 x 200,704, 112,869,376 nonzeros, density 0.0028, 36,864 distinct "
            "weights") in done.stdout


@pytest.mark.parametrize("layer, nnz", [
    (convgen.Conv1d(1, 1, 3), 3 * (2_000_000_000 - 2)),
    (convgen.Conv1d(1, 1, 3, padding=1), 3 * 2_000_000_000 - 2),
    (convgen.Conv1d(1, 1, 3, padding=1, padding_mode="reflect"), 3 * 2_000_000_000 - 2),
    (convgen.Conv1d(1, 1, 3, padding=1, padding_mode="circular"), 3 * 2_000_000_000),
    (convgen.ConvTranspose1d(1, 1, 3, stride=2), 3 * 2_000_000_000),
    (convgen.AvgPool1d(3, stride=1, padding=1), 3 * 2_000_000_000 - 2),
    (convgen.AdaptiveAvgPool1d(1_999_999_999), 2_000_000_000 + 1_999_999_999 - 1),
])
def test_structure_of_a_two_billion_wide_axis_is_counted_not_listed(layer, nnz):
    """The per-axis tables alone would be 6 billion entries (48 GB)."""
    with _within(20):
        info = toeplitz.structure(layer, (1, 2_000_000_000))
    assert info.nnz == nnz


def test_structure_counts_border_windows_one_by_one_only_up_to_a_limit():
    layer = convgen.Conv1d(1, 1, 3, padding=100_000_000, padding_mode="reflect")
    with _within(20), pytest.raises(convgen.SpecError,
                                    match=r"padding_mode='reflect' may fold taps together in "
                                          r"200,000,000 border windows .* at most 20,000,000"):
        toeplitz.structure(layer, (1, 200_000_001))


@given(layers_with_inputs(families=("conv", "pool", "adaptive")))
def test_structure_from_formulas_equals_the_materialized_one(case):
    layer, shape = case
    sample = shape[-layer.ndim - 1:]
    ops = toeplitz.entries(layer, sample)
    assert toeplitz.entry_count(layer, sample) == len(ops.rows)
    if toeplitz.is_linear(layer):
        assert toeplitz.structure(layer, sample) == toeplitz.materialized_structure(layer,
                                                                                    sample)


@given(st.integers(0, 40), st.integers(1, 30), st.integers(-60, 60), st.integers(-200, 200))
def test_floor_sum_equals_the_sum_of_floors(count, m, a, b):
    assert toeplitz._floor_sum(count, m, a, b) == sum((a * i + b) // m for i in range(count))


@given(n=st.integers(1, 20), m=st.integers(1, 20), k=st.integers(1, 7), s=st.integers(1, 8),
       d=st.integers(1, 6), lo=st.integers(0, 30))
def test_an_axis_with_zero_padding_counts_as_its_table(n, m, k, s, d, lo):
    """Any window geometry, also ones no layer produces (windows wholly in the padding)."""
    o, j, x = toeplitz._tap_table(n, m, k, s, d, lo, "zeros")
    axis = toeplitz._window_axis(n, m, k, s, d, lo, "zeros", "L")
    assert (axis.entries, axis.pairs, axis.taps) == (len(o), len(np.unique(o * n + x)),
                                                      len(np.unique(j)))


# --------------------------------------------------------------------------- refusals


def test_a_matrix_too_large_is_refused_up_front_with_its_size():
    """Was a MemoryError traceback after minutes."""
    layer, shape = convgen.Conv2d(512, 512, 3, padding=1), (512, 224, 224)
    entries = r"117,676,441,600 entries, at least 1,315.1 GiB to materialize; at most "
    with _within(20):
        with pytest.raises(convgen.SpecError, match=entries + "200,000,000"):
            toeplitz.toeplitz(layer, shape, weight=np.zeros((512, 512, 3, 3)))
        with pytest.raises(convgen.SpecError, match=entries + "200,000,000"):
            toeplitz.toeplitz(layer, shape)  # symbolic
        with pytest.raises(convgen.SpecError, match=entries + "200,000,000"):
            toeplitz.entries(layer, shape)
    done = _cli_within(60, "toeplitz", "Conv2d(512,512,3,padding=1)", "--input-shape",
                       "512,224,224", "--plot", os.devnull + ".png")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "117,676,441,600 nonzeros" in done.stdout  # the structure still prints
    assert "its picture would hold 117,676,441,600 entries" in done.stderr
    assert f"at most {PLOT_LIMIT:,} entries" in done.stderr


def test_the_symbolic_matrix_is_refused_before_any_entry_is_listed():
    """Was 113 million entries materialized, then refused for being over 200,000."""
    layer, shape = convgen.Conv2d(64, 64, 3, padding=1), (64, 56, 56)
    with _within(10), pytest.raises(convgen.SpecError,
                                    match=r"the symbolic matrix would hold 112,869,376 "
                                          r"entries, at least 52.6 GiB .* at most 200,000 "
                                          r"entries .*pass weight="):
        toeplitz.toeplitz(layer, shape)


def test_a_picture_is_refused_before_any_entry_is_listed(tmp_path):
    layer, shape = convgen.Conv2d(64, 64, 3, padding=1), (64, 56, 56)
    with _within(10), pytest.raises(convgen.SpecError,
                                    match=r"its picture would hold 112,869,376 entries, at "
                                          r"least 5.0 GiB to materialize; at most 20,000,000"):
        plot_toeplitz(layer, shape, tmp_path / "big.png")
    assert not (tmp_path / "big.png").exists()
