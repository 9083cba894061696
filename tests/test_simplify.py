"""Symbolic output sizes in their simplest true form: ``Piecewise`` branches that no integer
sizes reach are dropped (:func:`convgen.symbolic.prune_piecewise`), live ones are kept."""

import itertools

import sympy

import convgen
from convgen import solver
from convgen import symbolic as sym
from convgen.cli import main

N = sympy.Symbol("n", integer=True, positive=True)


def _ceil_rule_bites(k, s, d, lo, hi, sizes) -> bool:
    """Whether the last-window rule changes the plain ceil-mode count for some size."""
    ext = sym.dilated_extent(k, d)
    return any(sym.pool_output_size(n, k, s, d, lo, hi, True) != sym.cdiv(n + lo + hi - ext, s) + 1
               for n in sizes)


def test_ceil_mode_max_pool_is_plain_ceiling():
    H, W = sym.size_symbols("H W")
    assert convgen.MaxPool2d(2, ceil_mode=True).output_shape((8, H, W)) == \
        (8, sympy.ceiling(H / 2), sympy.ceiling(W / 2))
    constraints = convgen.MaxPool2d(2, ceil_mode=True).constraints((8, H, W))
    assert [c.holds for c in constraints] == [True, True]  # ceiling(H/2) >= 1: decided


def test_a_live_branch_stays():
    """padding=1, kernel 2, stride 2: at odd n the last window would start in the right
    padding (n=3: 2 windows, not 3), so the Piecewise must stay."""
    out = sym.pool_output_size(N, 2, 2, 1, 1, 1, True)
    assert isinstance(out, sympy.Piecewise) and len(out.args) == 2
    assert [out.subs(N, n) for n in range(1, 8)] == [1, 2, 2, 3, 3, 4, 4]


def test_pruned_sizes_equal_the_integer_formula_and_keep_every_live_branch():
    sizes = range(1, 41)
    for k, s, d in itertools.product(range(1, 4), range(1, 4), range(1, 3)):
        ext = sym.dilated_extent(k, d)
        for lo, hi in itertools.product(range(ext), repeat=2):
            out = sym.pool_output_size(N, k, s, d, lo, hi, True)
            assert [out.subs(N, n) for n in sizes] == \
                [sym.pool_output_size(n, k, s, d, lo, hi, True) for n in sizes], (k, s, d, lo, hi)
            assert out.has(sympy.Piecewise) == _ceil_rule_bites(k, s, d, lo, hi, sizes), \
                (k, s, d, lo, hi, out)


def test_symbolic_parameters_keep_the_piecewise():
    """Strides as symbols make the arithmetic non-linear: nothing is proved, nothing dropped."""
    k, s = sympy.symbols("k s", integer=True, positive=True)
    out = sym.pool_output_size(N, k, s, 1, 0, 0, True)
    assert isinstance(out, sympy.Piecewise) and len(out.args) == 2


def test_prune_drops_dead_promotes_certain_and_respects_assumptions():
    dead = sympy.Piecewise((N - 1, 2 * sympy.floor(N / 2) > N), (N, True))
    assert sym.prune_piecewise(dead) == N
    certain = sympy.Piecewise((N, 2 * sympy.floor(N / 2) <= N), (0, True))
    assert isinstance(certain, sympy.Piecewise)  # SymPy alone does not see it
    assert sym.prune_piecewise(certain) == N
    live = sympy.Piecewise((0, N > 5), (1, True))
    assert sym.prune_piecewise(live) == live
    assert sym.prune_piecewise(live, [N <= 5]) == 1
    assert sym.prune_piecewise(live, [N >= 6]) == 0
    assert sym.prune_piecewise(3) == 3


def test_prune_needs_integer_symbols():
    """Over the reals ``2*floor(x/2) > x`` never holds either, but z3 reads symbols as integers:
    a symbol not declared integer is left alone."""
    x = sympy.Symbol("x", positive=True)
    expr = sympy.Piecewise((x - 1, 2 * sympy.floor(x / 2) > x + 1), (x, True))
    assert sym.prune_piecewise(expr) == expr
    assert not solver.unsatisfiable([2 * sympy.floor(x / 2) > x + 1])


def test_adaptive_max_taps_of_two_outputs_has_no_third_case():
    out = sym.adaptive_max_taps(N, 2)
    assert len(out.args) == 2
    for out_size in (2, 3, 5, 6):
        taps = sym.adaptive_max_taps(N, out_size)
        assert [taps.subs(N, n) for n in range(1, 30)] == \
            [sym.adaptive_max_taps(n, out_size) for n in range(1, 30)]


def test_gcd_rewrites_as_residues():
    piecewise = sym.gcd(N, 6).rewrite(sympy.Piecewise)
    assert [piecewise.subs(N, n) for n in range(1, 25)] == [sym.gcd(n, 6) for n in range(1, 25)]
    assert sym.gcd(N, 65).rewrite(sympy.Piecewise) == sym.gcd(N, 65)  # too many residues


def test_cli_shape_prints_the_simple_form(capsys):
    assert main(["shape", "MaxPool2d(2, ceil_mode=True)", "--input-shape", "8,H,W"]) in (0, None)
    out = capsys.readouterr().out
    assert "(8, ceiling(H/2), ceiling(W/2))" in out
    assert "Piecewise" not in out and "valid when" not in out
