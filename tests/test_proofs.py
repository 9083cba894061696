"""Proofs: the catalogue, refutations re-checked numerically, unknown never called proved,
layer statements, and bounds safety of generated kernels (with an injected off-by-one)."""

import itertools

import numpy as np
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
    assert numbers == set(range(1, 10))
    assert [r.name for _, r in results if not r.as_expected] == []
    assert sum(r.status == "proved" for _, r in results) >= 15


def test_the_smallest_overflowing_accumulators_hold_numerically():
    worst, centred = proofs.accumulator_overflow()
    for result, largest in ((worst, 255 * 255), (centred, 255 * 128)):
        taps = result.counterexample["taps"]
        assert result.status == "refuted" == result.expected
        assert taps * largest > 2**31 - 1 >= (taps - 1) * largest  # the smallest
    assert (worst.counterexample, centred.counterexample) == ({"taps": 33026},
                                                              {"taps": 65794})


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
    # the kernels' reports (a network's NAME.md sits beside its NAME.network, not a .toml)
    reports = [r for r in sorted((ROOT / "generated").rglob("*.md"))
               if not r.with_suffix(".network").exists()]
    assert len(reports) == len(kernels)
    assert all("array accesses proved within their buffers" in r.read_text() for r in reports)


def test_every_c_template_has_a_kernel_in_generated(bundled_plan):
    """A change to any C kernel template shows up as a diff in generated/.  Not the test
    program of verify --arch (c/harness.c.j2): it is the verifier's, and tests/test_cross.py
    and CI's verify --arch of every bundled kernel build it."""
    from convgen.resources import templates_dir

    used = {item.kernel.template for item in bundled_plan}
    # the network template: the bundled networks' C (convgen/examples/*.onnx)
    used |= {f"c/{line.split('templates/c/')[1].split(';')[0]}"
             for path in (ROOT / "generated").rglob("*.c") if path.with_suffix(".network").exists()
             for line in path.read_text().splitlines()[1:2]}
    templates = {f"c/{p.name}" for p in (templates_dir() / "c").glob("*.c.j2")}
    assert templates - {"c/harness.c.j2"} <= used, sorted(templates - used)


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


# --------------------------------------------------------------------------- proof domains

_DOMAIN_LAYERS = [
    (convgen.Conv2d(3, 16, 3, padding=1), (3, 9, 20)),
    (convgen.Conv2d(4, 6, (2, 3), stride=(2, 1), padding=((1, 0), (2, 1)), groups=2),
     (4, 7, 19)),
    (convgen.ConvTranspose2d(2, 3, 3, stride=2, padding=1), (2, 4, 5)),
    (convgen.MaxPool2d(3, stride=(2, 1), padding=1, ceil_mode=True), (2, 7, 20)),
    (convgen.AvgPool2d(2, padding=1, count_include_pad=False), (3, 6, 18)),
    (convgen.AdaptiveAvgPool2d((2, 3)), (12, 5, 7)),
    (convgen.GlobalAvgPool(2), (12, 3, 4)),
    (convgen.GlobalMaxPool(2), (20, 3, 3)),
]


def _loop_stops(domain) -> dict:
    """``{s: stop}`` of every loop counter ``0 <= s < stop`` of an access's domain."""
    starts = {c.lhs for c in domain if isinstance(c, sympy.GreaterThan) and c.rhs == 0}
    return {c.lhs: c.rhs for c in domain
            if isinstance(c, sympy.StrictLessThan) and c.lhs in starts}


def _kernels_of_every_schedule():
    from convgen.lower import lower
    from convgen.schedules import applicable

    for layer, shape in _DOMAIN_LAYERS:
        for dtype in ("float32", "float64"):
            for schedule, reason in applicable(lower(layer, shape, dtype), "c").items():
                if reason is None:
                    yield codegen.generate(layer, shape, dtype, schedule=schedule)


def test_every_access_domain_admits_batch_one_and_the_corners_of_its_derived_indices():
    """A bounds proof says something only about the iterations its domain admits: the
    domain of every recorded access must admit batch 1 whenever it admits any batch (an
    access on a path no iteration of this layer takes has an empty domain), and every
    corner (first and last value of each loop counter) of each variable the domain defines
    by an equation (a channel ``C = cb*lanes + lane``, a position from a block and a lane),
    so that no iteration the kernel runs is missing from what z3 proved."""
    from convgen.cudagen import generate_cuda
    from convgen.lower import BATCH
    from convgen.solver import unsatisfiable

    cuda = [generate_cuda(layer, shape, dtype) for layer, shape in _DOMAIN_LAYERS
            for dtype in ("float32", "float64")]
    for kernel in [*_kernels_of_every_schedule(), *cuda]:
        schedule = getattr(kernel, "schedule", "cuda")
        for access in kernel.accesses:
            full = [sympy.sympify(c) for c in access.domain]
            domain = [c.subs(BATCH, 1) for c in full]
            where = f"{kernel.name} ({schedule}, {kernel.dtype}): {access.where}"
            if unsatisfiable(domain):
                assert unsatisfiable(full), f"{where}: its domain excludes batch 1"
                continue
            stops = _loop_stops(domain)
            for equation in [c for c in domain if isinstance(c, sympy.Equality)]:
                counters = sorted((s for s in equation.rhs.free_symbols
                                   if s in stops and stops[s].is_number), key=str)[:3]
                for corner in itertools.product(*[(0, int(stops[s]) - 1) for s in counters]):
                    fixed = [sympy.Eq(s, v) for s, v in zip(counters, corner)]
                    assert not unsatisfiable(domain + fixed), \
                        f"{where}: {equation} excludes the iteration {dict(zip(counters, corner))}"


# --------------------------------------------------------------------------- model coverage


def _small_kernels_of_every_schedule():
    """Every C schedule of the layers the mutation suite pins (axes and sides that differ in
    every parameter) that are small enough for the mutation run's coverage check (z3
    enumerates their indices)."""
    from convgen.lower import lower
    from convgen.mutate import _coverable, _pinned
    from convgen.schedules import applicable

    for layer, shape in _pinned():
        for schedule, reason in applicable(lower(layer, shape, "float32"), "c").items():
            if reason is None:
                kernel = codegen.generate(layer, shape, "float32", schedule=schedule)
                if _coverable(kernel):
                    yield kernel


def test_every_proof_model_covers_what_the_operator_reads_and_writes():
    """The bounds proofs speak of the accesses each schedule records; those must reach every
    input the exact operator reads, every weight it uses, every bias and every output, or
    some access of the kernel is proved for iterations it does not run."""
    from convgen.bounds import uncovered

    seen = set()
    for kernel in _small_kernels_of_every_schedule():
        seen.add(kernel.schedule)
        assert uncovered(kernel) == [], (kernel.layer.describe(), kernel.schedule)
    assert seen >= {"reference", "blocked", "packed", "winograd"}


def test_proof_models_cover_the_operator_when_work_is_split_into_many_tasks(monkeypatch):
    """The packed and Winograd schedules split a plane into tasks of rows (and Winograd a
    row into blocks of tiles) only past thousands of outputs, too many for z3 to enumerate.
    With those budgets made tiny, small layers split into several tasks and blocks (the
    last ones partial), and each model must still reach everything the operator does."""
    from convgen.bounds import uncovered
    from convgen.schedules import conv_packed, conv_winograd, tuning

    monkeypatch.setattr(tuning, "PACKED_COLUMNS_PER_TASK", 7)  # one row (8 columns) a task
    monkeypatch.setattr(tuning, "WINOGRAD_TILES_PER_TASK", 2)  # one row of 4 tiles a task
    monkeypatch.setattr(tuning, "WINOGRAD_TILE_BYTES", 16 * 2 * 4 * 3)  # blocks of 3 and 1
    layer, shape = convgen.Conv2d(2, 8, 3, padding=((1, 0), (1, 2))), (2, 5, 7)
    for schedule, field, want in (("packed", "tasks", 4), ("winograd", "tasks", 2),
                                  ("winograd", "tblocks", 2)):
        kernel = codegen.generate(layer, shape, schedule=schedule, name="split")
        build = conv_packed.build if schedule == "packed" else conv_winograd.build
        context = build(kernel.problem).context
        params = context.packed if schedule == "packed" else context.wino
        assert getattr(params, field) == want, (schedule, field, getattr(params, field))
        assert uncovered(kernel) == [], schedule


def test_a_model_that_misses_an_access_is_named(monkeypatch):
    """Planted: the blocked schedule's model stops the output rows two short (the kernel
    text keeps its own loop); every index stays in bounds, so the proofs pass, but the last
    rows of outputs are no longer reached.  (The row each tap reads cannot drift this way:
    the model takes it from the expression the template prints.)"""
    from convgen.bounds import uncovered
    from convgen.schedules import conv_blocked

    layer, shape = convgen.Conv2d(2, 8, 3, padding=(1, 2)), (2, 5, 11)
    right = codegen.generate(layer, shape, schedule="blocked", name="planted")
    assert uncovered(right) == []
    loop = conv_blocked.loop

    def short(symbol, stop):  # the model's output rows (o0) only
        return loop(symbol, stop - 2 if str(symbol) == "o0" else stop)

    monkeypatch.setattr(conv_blocked, "loop", short)
    kernel = codegen.generate(layer, shape, schedule="blocked", name="planted")
    assert kernel.source == right.source and kernel.accesses != right.accesses
    assert all(r.status == "proved" for r in prove_bounds(kernel))
    problems = uncovered(kernel)
    # rows 3 and 4 of 5 (13 columns, 8 channels): the first output missed is y[39]
    assert any(p.startswith("planted: ") and " of y the operator needs are reached by no "
               "recorded access (first: 39," in p for p in problems), problems


def test_a_scratch_write_cut_short_in_the_model_is_named():
    """Planted: the Winograd model's write of the transformed weights (U) stops after the
    first of its 16 matrices; every index stays in bounds, but the GEMMs' recorded reads of
    U now reach elements no recorded write does: named.  The same for the packed weights'
    packing, cut to the first tap column."""
    import dataclasses

    from convgen.bounds import uncovered

    layer, shape = convgen.Conv2d(2, 8, 3, padding=1), (2, 4, 6)
    for schedule, array, cut in (("winograd", "U", "xi"), ("packed", "wp", "k1")):
        right = codegen.generate(layer, shape, schedule=schedule, name="planted")
        assert uncovered(right) == [], schedule
        reads = [a for a in right.accesses if a.scratch_read and a.array == array]
        assert reads, schedule
        symbol = next(s for s in reads[0].index.free_symbols if str(s) == cut)

        def cut_short(access, array=array, symbol=symbol):  # every write (packed: one an ISA)
            if access.array != array or access.scratch_read:
                return access
            return dataclasses.replace(access, domain=(*access.domain, symbol < 1))

        kernel = dataclasses.replace(right, accesses=tuple(map(cut_short, right.accesses)))
        assert all(r.status == "proved" for r in prove_bounds(kernel))
        problems = uncovered(kernel)
        assert any(f"of the scratch array {array} are read but reached by no recorded write"
                   in p for p in problems), (schedule, problems)


def test_every_cuda_entry_points_model_covers_the_operator():
    """Each entry point of a CUDA text (direct, and tiled where it is chosen) computes the
    whole layer, so its recorded accesses alone must reach what the operator needs, and the
    tiled kernel's reads of its shared tiles only elements it staged: the pinned layers of
    the mutation suite small enough for the check."""
    from convgen.bounds import elements, uncovered
    from convgen.cudagen import generate_cuda
    from convgen.mutate import COVER_ELEMENTS, _pinned

    tiled = 0
    for layer, shape in _pinned():
        kernel = generate_cuda(layer, shape, "float32", name="pinned")
        if elements(kernel) <= COVER_ELEMENTS:
            tiled += [launch.schedule for launch in kernel.launches] == ["tiled", "direct"]
            assert uncovered(kernel) == [], layer.describe()
    assert tiled >= 10, tiled


def test_a_cuda_entry_point_whose_model_misses_an_access_is_named():
    """Planted in the tiled entry point's model: its store stops one output short, or its
    staging of the input tile writes only the tile's first element.  Every index stays in
    bounds, and the direct entry point still reaches everything, but the tiled one is
    named: the last output, and the 47 elements of the 6 x 8 shared tile read but never
    staged."""
    import dataclasses

    import sympy

    from convgen.bounds import uncovered
    from convgen.cudagen import generate_cuda

    right = generate_cuda(convgen.Conv2d(2, 8, 3, padding=1), (2, 4, 6), name="planted")
    assert [launch.schedule for launch in right.launches] == ["tiled", "direct"]
    assert uncovered(right) == []
    tiled = right.launches[0]
    for where, cut, named in (
            ("tiled: y", lambda a: sympy.Lt(a.index, a.size - 1),
             "planted_tiled: 1 element(s) of y the operator needs are reached by no "
             "recorded access (first: 383;"),
            ("tiled: xs, staging", lambda a: sympy.Lt(a.index, 1),
             "planted_tiled: 47 element(s) of the scratch array xs are read but reached "
             "by no recorded write (first: 1, 2, 3, 4, 5;")):
        accesses = tuple(dataclasses.replace(a, domain=(*a.domain, cut(a)))
                         if a.where == where else a for a in tiled.accesses)
        assert accesses != tiled.accesses, where
        launch = dataclasses.replace(tiled, accesses=accesses)
        kernel = dataclasses.replace(right, launches=(launch, right.launches[1]))
        assert all(r.status == "proved" for r in prove_bounds(dataclasses.replace(
            right, accesses=accesses)))
        problems = uncovered(kernel)
        assert len(problems) == 1 and problems[0].startswith(named), (where, problems)


def test_the_proofs_buffer_sizes_are_the_arrays_the_kernel_has():
    """A bounds proof checks each index against its buffer's size: the sizes in the model
    must be the kernel's.  The arguments' sizes come from the layer (batch x its sample
    shapes, the weight shape, one bias an output channel), each scratch array's from its
    declaration in the C text (``float U[640];``, ``double d[4][18];``)."""
    import re

    from convgen.lower import BATCH

    for kernel in _kernels_of_every_schedule():
        layer, ctype = kernel.layer, "float" if kernel.dtype == "float32" else "double"
        declared = {name: int(a) * int(b or 1) for name, a, b in re.findall(
            rf"\b{ctype} (\w+)\[(\d+)\](?:\[(\d+)\])?;", kernel.source)}
        sizes = {"x": BATCH * int(np.prod(kernel.input_shape)),
                 "y": BATCH * int(np.prod(kernel.output_shape)),
                 "indices": BATCH * int(np.prod(kernel.output_shape))}
        if layer.family in ("conv", "conv_transpose"):
            sizes |= {"w": int(np.prod(layer.weight_shape)), "b": layer.out_channels}
        if "scratch" in kernel.arguments:  # the caller's, of the header's SCRATCH_SIZE
            sizes["scratch"] = kernel.problem.scratch
            assert kernel.problem.scratch == int(np.prod(layer.weight_shape))
        for access in kernel.accesses:
            if access.array in sizes:
                want = sizes[access.array]
            elif access.array in declared:
                want = declared[access.array]
            else:
                continue  # a thread position: its size is the output axis it ranges over
            assert sympy.simplify(sympy.sympify(access.size) - want) == 0, \
                (kernel.name, kernel.schedule, access.where, access.size, want)
