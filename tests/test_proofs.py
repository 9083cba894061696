"""Proofs: the catalogue, refutations re-checked numerically, unknown never called proved,
layer statements, and bounds safety of generated kernels (with an injected off-by-one)."""

import sympy
import z3
from hypothesis import given, settings

import convgen
from convgen import SpecError, codegen, proofs
from convgen import symbolic as sym
from convgen.bounds import prove_bounds
from convgen.strategies import FAMILIES, layers_with_inputs
from tests.test_packaging import ROOT


def test_catalogue_every_item_as_expected():
    results = proofs.run_catalogue()
    numbers = {statement.number for statement, _ in results}
    assert numbers == set(range(1, 8))
    assert [r.name for _, r in results if not r.as_expected] == []
    assert sum(r.status == "proved" for _, r in results) >= 14


def test_false_statement_counterexample_holds_numerically():
    result = proofs.ceil_rule_equals_plain_ceil()
    assert result.status == "refuted" and result.expected == "refuted"
    v = result.counterexample
    rule = sym.pool_output_size(v["n"], v["k"], v["s"], v["d"], v["lo"], v["hi"], True)
    plain = sym.cdiv(v["n"] + v["lo"] + v["hi"] - sym.dilated_extent(v["k"], v["d"]),
                     v["s"]) + 1
    assert rule != plain
    assert v == {"d": 1, "hi": 0, "k": 1, "lo": 0, "n": 2, "s": 2}  # the smallest one


def test_a_broken_formula_is_refuted_with_a_counterexample(monkeypatch):
    real = sym.conv_output_size
    monkeypatch.setattr(sym, "conv_output_size",
                        lambda n, k, s, d, lo, hi: real(n, k, s, d, lo, hi + 1))
    broken = proofs.conv_window_count()
    assert broken.status == "refuted"
    v = broken.counterexample
    count = real(v["n"], v["k"], v["s"], v["d"], v["lo"], v["hi"])
    assert sym.conv_output_size(v["n"], v["k"], v["s"], v["d"], v["lo"], v["hi"]) != count


def test_unknown_is_never_reported_as_proved(monkeypatch):
    monkeypatch.setattr(proofs, "TIMEOUT_MS", 1)
    x, y, z = sympy.symbols("x y z", integer=True, positive=True)
    result = proofs.prove(sympy.Ne(x**3 + y**3, z**3), [], name="fermat 3")
    assert result.status in ("unknown", "proved")  # z3 may or may not give up in 1 ms
    if result.status == "unknown":
        assert result.reason and not result.as_expected


def test_translation_covers_the_symbolic_layer():
    n, s = sympy.symbols("n s", integer=True, positive=True)
    env: dict = {}
    for expr in (sympy.floor(n / s), sympy.ceiling((n + 1) / 3), sympy.Max(n, s),
                 sympy.Min(n, 2), sympy.Mod(n, s), sym.padded_source(n - 3, 5, "reflect"),
                 sympy.Implies(n > 1, s > 1), n**2):
        assert proofs.to_z3(expr, env) is not None
    solver = z3.Solver()
    solver.add(env[n] == 7, proofs.to_z3(sympy.ceiling(n / 2), env) != 4)
    assert solver.check() == z3.unsat
    try:
        proofs.to_z3(sympy.sin(n), env)
    except SpecError as error:
        assert "cannot translate sin(n)" in str(error)
    else:
        raise AssertionError("sin should not translate")


@settings(max_examples=30)
@given(layers_with_inputs(families=FAMILIES))
def test_layer_statements_hold_for_random_layers(case):
    layer, _ = case
    assert [r.name for r in proofs.layer_statements(layer) if not r.as_expected] == []


def test_every_kernel_in_generated_is_bounds_safe(bundled_plan):
    kernels = [item.kernel for item in bundled_plan]
    assert len(kernels) == len(list((ROOT / "generated").rglob("*.toml"))) >= 40
    for kernel in kernels:
        results = prove_bounds(kernel)
        assert results and all(r.status == "proved" for r in results), kernel.name
    reports = sorted((ROOT / "generated").rglob("*.md"))
    assert len(reports) == len(kernels)
    assert all("array accesses proved within their buffers" in r.read_text() for r in reports)


def test_every_c_template_has_a_kernel_in_generated(bundled_plan):
    """A change to any C template shows up as a diff in generated/."""
    from convgen.resources import templates_dir

    used = {item.kernel.template for item in bundled_plan}
    templates = {f"c/{p.name}" for p in (templates_dir() / "c").glob("*.c.j2")}
    assert templates <= used, sorted(templates - used)


@settings(max_examples=20)
@given(layers_with_inputs(families=FAMILIES))
def test_random_kernels_are_bounds_safe(case):
    layer, shape = case
    kernel = codegen.generate(layer, shape[-layer.ndim - 1:])
    assert [r.name for r in prove_bounds(kernel) if r.status != "proved"] == []


def test_an_off_by_one_in_an_index_expression_is_caught(monkeypatch):
    real = sym.tap_index
    monkeypatch.setattr(sym, "tap_index", lambda o, j, s, d, lo: real(o, j, s, d, lo) + 1)
    kernel = codegen.generate(convgen.Conv2d(2, 3, 3, padding=1), (2, 6, 6), name="broken",
                              schedule="reference")
    failed = [r for r in prove_bounds(kernel) if r.status != "proved"]
    assert [r.name for r in failed] == ["broken: x, interior taps"]
    example = failed[0].counterexample
    assert example["p0"] == 6 or example["p1"] == 6  # one past the last row or column
    assert set(example) >= {"n", "oc", "o0", "o1", "k0", "k1", "ic"}
