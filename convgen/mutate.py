"""How many wrong generators would the verification let through: mutation testing.

``convgen mutate`` plants each mutant of :mod:`convgen.mutants` (one small mistake in a
template or a formula module) in a scratch copy of the sources, regenerates, and runs the
fast verification on what changed, stopping at the first failure:

1. **bundled**: every kernel of the bundled layer files (``convgen/examples``), C with its
   recorded schedule (built for this machine and for the x86-64 baseline, so code under
   every rung of the ISA table runs), and the CUDA text on the CPU (PoCL);
2. **properties**: a fixed seed of random layers of every family, each with every C schedule
   that applies to it (:mod:`convgen.strategies`);
3. **onnx**: ONNX's conformance cases (Conv, ConvTranspose and every pool), against ONNX's
   expected outputs as well as the exact oracle;
4. **bounds**: for a formula mutant, the z3 proof of every array access of every kernel
   (C, and each CUDA text's entry points) whose accesses changed, and, on small configs,
   that the proofs' model still reaches every element the operator reads or writes, and
   every element of a scratch array (Winograd's, the tiled CUDA kernel's shared tiles)
   read only where it is written (:func:`convgen.bounds.uncovered`): a model that
   describes other accesses than the kernel makes proves nothing about it;
5. **tests**: every mutant the kernels let through runs the quick tier's formula tests
   (``pytest -m quick -x``, :data:`FORMULA_TESTS`) on the mutated copy: what no kernel of
   the suite shows (a report's count, a proof's assumption, a header's check for a target
   this machine is not), the formula tests judge.

A kernel is judged as ``convgen verify`` judges it (:func:`convgen.verify.check_kernel`: bit
for bit against the exact oracle); a kernel that no longer builds under the strict flags, or
a generator that raises where it did not, is a kill too, and so is a finding of the
address and undefined-behaviour sanitizers (:mod:`convgen.sanitize`) on the first
:data:`SANITIZED` small changed kernels of a mutant: a write past a kernel's own stack
array changes no value, yet is a bug.  Likewise the CUDA text: every launch on the CPU
strides over the batch (the grid's z axis is held to one block, as a batch past
``CUDA_MAX_GRID_Z`` runs on a GPU), and Oclgrind checks the first :data:`RACED` small
changed CUDA texts of a mutant in each stage for out-of-bounds accesses and data races (a
block that reads past its staged taps and writes another block's output passes on PoCL
when the right block happens to store last), and nvcc builds the first
:data:`NVCC_CHECKED` under its strict flags, where it is installed (an unused variable or
an array indexed past its end shows).
Only kernels whose text differs from the unmutated generator's are built, so a mutant costs
what it changes.

Outcomes: ``killed`` (with the stage and the config or test that caught it), ``timeout``
(the mutant made something hang: counted as killed, as mutation tools do), ``survived``, and
``equivalent``: a survivor whose key is listed, with the argument, in ``mutation.toml``.
Score = killed / (total - equivalent).
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .errors import ConvgenError
from .mutants import Mutant, Place, apply, mutants
from .progress import track

__all__ = ["Result", "Run", "document", "from_log", "load_equivalents", "markdown", "read_log",
           "rerun", "run", "score_table", "source_root"]

STAGES = ("bundled", "properties", "onnx", "bounds", "tests")
#: Seconds one config of a mutant may take (a hang: a timeout), and the tests stage (30 s
#: when nothing fails, on a loaded core a few times that; a mutant that makes a formula
#: loop forever must not hold a worker for long).
TIMEOUT = 60
TESTS_TIMEOUT = 300
#: Random layers of the properties stage: how many, from which seed.
PROPERTY_CASES = 40
PROPERTY_SEED = 20261201
#: Schedules documented to sum in the reference schedule's order, bit for bit on any data.
SAME_ORDER = ("blocked",)
#: Compile flags of the mutants' kernels: strict, lightly optimized (a kill must not wait
#: for -O3, nor a big layer for -O0 code).
FLAGS = ("-O1", "-march=native")
#: Every changed kernel is also built for the x86-64 baseline: code under another rung of
#: the ISA table (``#if __AVX512F__ ... #else``) is judged too, not compiled out.
PORTABLE_FLAGS = ("-O1",)
#: Bundled kernels of at most this many FLOPs a sample are in the suite (the ResNet and
#: MobileNet blocks' big layers take seconds each at -O1; the random layers run the same
#: schedules and templates small).
BUNDLED_WORK = 5 * 10**7
#: The CUDA text is run on the CPU (PoCL), and a changed C kernel is built with the
#: sanitizers, for configs of at most this many FLOPs a sample ...
CUDA_WORK = 5 * 10**6
#: ... the sanitizers on the first this many changed kernels of a mutant (a template's
#: memory error shows on most kernels rendered from it).
SANITIZED = 4
#: The bounds stage's coverage check (z3 enumerates every index an access takes: about a
#: millisecond each) on configs of at most this many elements (x and y of two samples, and
#: w), and on at most :data:`COVERED` changed configs a mutant: enough for every small
#: pinned layer a schedule takes, in both C types (the packed schedule has 32 of them; a
#: model that loses the rows of a plane taller than wide shows only on the 31st), a second
#: or two each, paid in full only by the mutants that survive.
COVER_ELEMENTS = 3000
COVERED = 40
#: Oclgrind (a simulator: seconds for a small kernel) on the first this many changed CUDA
#: texts of a mutant whose configs take at most :data:`RACE_WORK` FLOPs a sample, in each
#: stage: the bundled lecture layers come first, but only the pinned layers have several
#: blocks of output channels (a store loop one past its block shows there).
RACED = 2
RACE_WORK = 2 * 10**5
#: nvcc's strict check (no warning, no spill, no local memory; where nvcc is installed) on
#: the first this many changed CUDA texts of a mutant (a second or so each): enough to
#: reach the pinned one-element axis with circular padding past the other padding modes.
NVCC_CHECKED = 12
EQUIVALENTS = "mutation.toml"
#: The tests stage: the quick tier's modules that test formulas, shapes, operators, proofs
#: and the schedule registry directly (the tier's kernel-building tests build what the
#: earlier stages build; 30 s on one core when nothing fails).
FORMULA_TESTS = ("test_shapes.py", "test_toeplitz.py", "test_proofs.py", "test_reference.py",
                 "test_summary.py", "test_spec.py", "test_lecture.py", "test_simplify.py",
                 "test_registry.py", "test_large_sizes.py", "test_formulas.py")
#: ... but for three that take half its time and judge no formula a smaller test does not:
#: a big operator's exactness (test_toeplitz's small ones judge the same code) and model
#: mistakes planted by hand (they plant their own; the bounds stage judges the models).
FORMULA_TESTS_LEFT_OUT = ("test_stem_operator_is_sparse_and_exact_on_a_sample",
                          "test_a_model_that_misses_an_access_is_named",
                          "test_a_cuda_entry_point_whose_model_misses_an_access_is_named")


@dataclass(frozen=True)
class Result(Place):
    """The verdict on one mutant."""

    outcome: str            # killed, timeout, survived, equivalent
    stage: str = ""         # the stage that killed it
    by: str = ""            # the config or test that killed it, and how
    seconds: float = 0.0
    why: str = ""           # equivalent: the argument


@dataclass
class Run:
    """A finished run: the results and how they were chosen."""

    results: list[Result]
    total: int              # mutants there are
    sample: int | None
    seed: int
    seconds: float
    stages: tuple = STAGES
    notes: list = field(default_factory=list)
    existing: dict = field(default_factory=dict)   # mutants there are, by source


def source_root() -> Path:
    """The source checkout convgen runs from (templates, tests and ``pyproject.toml`` beside
    the package); mutation testing needs the sources and the tests."""
    root = Path(__file__).resolve().parent.parent
    missing = [p for p in ("pyproject.toml", "tests", "templates") if not (root / p).exists()]
    if missing:
        raise ConvgenError(f"convgen mutate needs a source checkout (pyproject.toml, tests/ and "
                           f"templates/ beside the convgen package); {root} lacks "
                           f"{', '.join(missing)}: run it from a clone of the repository")
    return root


def load_equivalents(root: Path) -> dict[str, str]:
    """``key -> argument`` of the mutants shown equivalent (``mutation.toml``)."""
    import tomllib

    path = root / EQUIVALENTS
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return {key: entry["why"] for key, entry in data.get("equivalent", {}).items()}


# --------------------------------------------------------------------------- the suite


def _bundled_items() -> list[tuple]:
    from .config import load
    from .lower import lower
    from .resources import examples_dir
    from .schedules import resolve

    items = []
    for path in sorted(examples_dir().glob("*.toml")):
        for network in load(path):
            for index, (name, layer, shape) in enumerate(network.model.walk(
                    network.input_shape)):
                if int(layer.flops(shape)) <= BUNDLED_WORK:
                    # the schedule the network's profile gives (mcu: scalar), by name
                    schedule = resolve(lower(layer, shape, network.dtype), "c",
                                       network.schedule_of(index), network.profile)[0].name
                    items.append(("bundled", f"{network.name}.{name}", layer, tuple(shape),
                                  network.dtype, schedule, None))
    return items


def _draw(strategy, count: int, seed: int) -> list:
    """``count`` examples of a Hypothesis strategy, the same ones for the same ``seed``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as seeded

    drawn: list = []

    @seeded(seed)
    @settings(max_examples=count, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(case):
        drawn.append(case)

    collect()
    return drawn[:count]


def _pinned() -> list[tuple]:
    """Layers whose special paths random draws reach rarely: every padding mode with taps
    past both edges, the blocked global pools' register transposes (a whole plane of at
    least one vector), channel tails; and layers where the two axes, or the two sides of
    an axis, differ in every parameter a formula could take from the wrong one (padding
    per axis and per side, a plane that is not square, a column stride, odd tile counts,
    groups), so that mixing them up shows."""
    from .spec import LAYER_TYPES as L

    modes = [(L["Conv2d"](2, 3, 3, padding=2, padding_mode=mode), (2, 5, 6))
             for mode in ("reflect", "replicate", "circular")]
    # first, for the sanitizers (they judge a mutant's first few small changed kernels):
    # Winograd blocks of several vectors of output channels (the sums M are read past
    # their skew if a loop over tiles runs one too far) whose last lanes are padding (49
    # channels: 32 + 17 floats, 3 x 16 + 1 doubles)
    return [(L["Conv2d"](2, 49, 3, padding=1), (2, 4, 6)), *modes,
            (L["Conv1d"](1, 2, 3, padding=1, padding_mode="reflect"), (1, 4)),
            (L["GlobalAvgPool"](ndim=2), (12, 5, 5)),
            (L["GlobalMaxPool"](ndim=2), (20, 3, 4)),
            (L["AdaptiveAvgPool2d"]((1, 1)), (9, 4, 6)),
            (L["Conv2d"](3, 8, 3, padding=(1, 2)), (3, 6, 11)),
            (L["Conv2d"](2, 8, (2, 4), padding="same"), (2, 6, 19)),
            (L["Conv2d"](4, 6, 1), (4, 3, 10)),
            (L["Conv2d"](2, 4, 1, padding=1), (2, 5, 7)),
            (L["Conv2d"](2, 8, 3, stride=(1, 2)), (2, 6, 21)),
            (L["Conv2d"](3, 8, 3, padding=1), (3, 7, 9)),
            (L["Conv2d"](4, 8, 3, padding=1, groups=2), (4, 6, 10)),
            (L["LPPool2d"](1, 2), (2, 4, 6)),
            (L["AvgPool2d"](3, stride=1, padding=(0, 1)), (3, 5, 20)),
            (L["MaxPool2d"]((2, 3), stride=1, padding=(1, 0)), (3, 5, 20)),
            # the blocked conv's rows of whole vectors that blocks of equal size overrun
            # (5, 10 or 20 vectors of 16, 8 or 4 lanes in blocks of 3 or 4), and a plane
            # whose height, not its width, is a whole number of vectors
            (L["Conv2d"](1, 3, 3, padding=1), (1, 2, 80)),
            (L["Conv2d"](1, 3, 3, padding=1), (1, 2, 40)),
            (L["Conv2d"](1, 4, 3, padding=1), (1, 16, 19)),
            # windows that tile the rows without overlap (a stride of the kernel's height,
            # taller than wide): a tap range cut short leaves whole input rows unread
            (L["Conv2d"](2, 8, (3, 2), stride=(3, 1), padding=(0, 1)), (2, 9, 20)),
            (L["MaxPool2d"]((3, 2), stride=(3, 1), padding=(1, 0)), (3, 9, 20)),
            (L["AvgPool2d"]((3, 2), stride=(3, 1)), (2, 9, 20)),
            # 1x1-like layers that must keep their plane (not the GEMM view)
            (L["Conv2d"](2, 4, (2, 1)), (2, 5, 7)),
            (L["Conv2d"](2, 4, 1, stride=(2, 1)), (2, 6, 7)),
            (L["Conv2d"](2, 4, 1, stride=(1, 2)), (2, 6, 7)),
            (L["Conv2d"](2, 4, 1, padding=((1, 0), (0, 0))), (2, 4, 5)),
            # blocked pools: rows of interior outputs one past whole blocks of vectors, or
            # several blocks; windows past the padded input (ceil mode) that count padding
            *[(L["AvgPool2d"](3, stride=1, padding=1), (1, 3, width))
              for width in (11, 19, 35, 67, 131)],
            (L["MaxPool2d"](3, stride=1, padding=1), (1, 3, 67)),
            # ... and rows whose last block of 12 vectors starts at the last interior output
            # (132 vectors and one output: 8 floats, 4 doubles a vector)
            (L["MaxPool2d"](3, stride=1, padding=1), (1, 2, 132 * 8 + 3)),
            (L["AvgPool2d"](3, stride=1, padding=1), (1, 2, 132 * 4 + 3)),
            # circular padding of a one-element axis: every tap reads its only element
            (L["Conv2d"](1, 2, 3, padding=1, padding_mode="circular"), (1, 1, 4)),
            (L["AvgPool2d"](3, stride=(2, 1), padding=1, ceil_mode=True), (2, 8, 40)),
            # Winograd rows of several blocks of tiles (a block holds 1024 / C_in of them)
            (L["Conv2d"](64, 8, 3, padding=1), (64, 4, 70)),
            # the packed schedule: padding only on one side of a row (its interior outputs
            # start where the left padding says), and input channels in two chunks, the
            # second one short (float64: 301 channels of 3x3 taps exceed PACK_BYTES)
            (L["Conv2d"](3, 8, 3, padding=((0, 0), (0, 2))), (3, 5, 20)),
            (L["Conv2d"](301, 8, 3), (301, 3, 4)),
            # ... and planes taller than wide: small enough for the coverage check, and with
            # rows of whole register blocks (24 columns: 2 of 12, 3 of 8), whose last block
            # ends at the right padding's column
            (L["Conv2d"](2, 8, 3, padding=1), (2, 12, 9)),
            (L["Conv2d"](2, 8, 3, padding=1), (2, 26, 24)),
            # a grouped transposed convolution, small enough for the coverage check: each
            # group's output channels reach their own weights
            (L["ConvTranspose2d"](4, 6, 3, stride=(2, 1), padding=1, groups=2), (4, 3, 4))]


def _property_items(count: int, seed: int) -> list[tuple]:
    """About ``count`` random layers (fixed ``seed``): every family and dimension, and the
    2-D layers the fast schedules take; each with every C schedule that applies."""
    from . import strategies as st
    from .lower import lower
    from .schedules import applicable

    share = max(1, count // 8)
    general = _draw(st.layers_with_inputs(families=st.FAMILIES), count - 4 * share, seed)
    fast = (_draw(st.blocked_convs(), share, seed) + _draw(st.blocked_pools(), share, seed)
            + _draw(st.winograd_convs(), share, seed)
            + _draw(st.blocked_adaptive_pools(), share, seed))
    # the pinned layers first (the sanitizers judge only the first few changed kernels);
    # the other C type too: every third general layer, and every pinned and fast one in
    # both (their vectors hold 8 floats or 4 doubles: different code)
    cases = [(case, dtype) for case in _pinned() for dtype in ("float32", "float64")]
    cases += [(case, "float64" if i % 3 == 2 else "float32") for i, case in enumerate(general)]
    cases += [(case, dtype) for case in fast for dtype in ("float32", "float64")]
    items = []
    for number, ((layer, shape), dtype) in enumerate(cases):
        for schedule, reason in sorted(applicable(lower(layer, shape, dtype), "c").items()):
            if reason is None:
                items.append(("properties", f"case{number}_{schedule}", layer, tuple(shape),
                              dtype, schedule, None))
    return items


def _onnx_items() -> list[tuple]:
    import warnings

    import numpy as np
    from onnx.backend.test.case import node as onnx_cases

    from .errors import SpecError
    from .onnx_bridge import CONFORMANCE_OPS, ONNX_DTYPES, layer_from_onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = onnx_cases.collect_testcases(None)
    items = []
    for case in cases:
        node = case.model.graph.node[0] if case.model.graph.node else None
        if node is None or node.op_type not in CONFORMANCE_OPS:
            continue
        inputs, expected = case.data_sets[0]
        try:
            layer = layer_from_onnx(node, [np.shape(a) for a in inputs])
        except SpecError:
            continue
        data = ([np.ascontiguousarray(a) for a in inputs], list(expected),
                next((a.i for a in node.attribute if a.name == "storage_order"), 0))
        items.append(("onnx", case.name, layer, tuple(np.shape(inputs[0])[1:]),
                      ONNX_DTYPES[str(np.asarray(inputs[0]).dtype)], "auto", data))
    return items


def suite(property_cases: int = PROPERTY_CASES, seed: int = PROPERTY_SEED) -> list[tuple]:
    """Every config the stages check: ``(stage, name, layer, input_shape, dtype, schedule,
    onnx data)``."""
    return _bundled_items() + _property_items(property_cases, seed) + _onnx_items()


# --------------------------------------------------------------------------- one config


def _texts(item: tuple) -> dict:
    """What the generator writes for a config: the C text, the CUDA text and the accesses
    (or the error it raises, as text)."""
    from .codegen import generate
    from .cudagen import generate_cuda
    from .errors import ConvgenError

    _, name, layer, shape, dtype, schedule, _ = item
    kernel = f"m_{zlib.crc32(name.encode()):08x}"  # stable across processes
    texts: dict = {}
    try:
        texts["c"] = generate(layer, shape, dtype, kernel, schedule=schedule)
    except ConvgenError as error:
        texts["c"] = f"error: {error}"
    if item[0] == "properties" and schedule != "reference":
        # the CUDA text does not depend on the C schedule: judged once a layer, with the
        # reference schedule's item (every layer has one), so each budget reaches further
        texts["cuda"] = "judged with the reference schedule's item"
        return texts
    try:
        texts["cuda"] = generate_cuda(layer, shape, dtype, kernel)
    except ConvgenError as error:
        texts["cuda"] = f"error: {error}"
    return texts


def code(text: str) -> str:
    """C or CUDA text without its comments and with its whitespace runs made one space:
    two texts with the same code are the same program."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return " ".join(text.split())


def fingerprint(texts: dict) -> dict:
    """Comparable text of each part: sources, header, accesses."""
    out = {}
    for part, value in texts.items():
        if isinstance(value, str):
            out[part] = value
            continue
        out[part] = value.source + getattr(value, "header", "")
        # what the bounds proofs prove (not how they are described)
        out["accesses" if part == "c" else f"{part}_accesses"] = repr(
            [(a.array, a.index, a.size, a.domain, a.scratch_read) for a in value.accesses])
    return out


def _cases(kernel) -> list[tuple]:
    """The seeded inputs of a config (as ``convgen verify`` draws them) with the outputs of
    a kernel that passed the exact oracle on them."""
    import numpy as np

    from .verify import random_case

    rng = np.random.default_rng(0)
    return [(args, kernel(*args)) for args in (random_case(kernel, rng, 2) for _ in range(2))]


def _same(got, want) -> bool:
    """Equal bits: values, NaN where NaN, and the sign of every zero."""
    import numpy as np

    got, want = (got if isinstance(got, tuple) else (got,)), \
        (want if isinstance(want, tuple) else (want,))
    for g, w in zip(got, want):
        if g.dtype.kind != "f":
            if not np.array_equal(g, w):
                return False
        elif not (np.array_equal(g, w, equal_nan=True)
                  and np.array_equal(np.signbit(g) | np.isnan(g), np.signbit(w) | np.isnan(w))):
            return False
    return True


def _run_cases(kernel, cases: list) -> str:
    """Judge a mutant's kernel on the config's cases: "" when it passes.

    Convolutions, max pooling and average pooling have one right answer on these inputs
    (exact sums; the correctly rounded quotient), which the unmutated kernel produced and
    the exact oracle checked: equal bits are the oracle's verdict without running it again.
    LP pooling (within LP_ULPS of the root) asks the oracle itself."""
    from .verify import check_kernel

    if kernel.generated.layer.reduction == "lp":
        outcome = check_kernel(kernel, cases=2, seed=0, batch=2)
        return "" if outcome.passed else f"values wrong: {outcome.detail}"
    for args, want in cases:
        if not _same(kernel(*args), want):
            return "values differ from the exact oracle's"
    return ""


def _check_c(item: tuple, kernel_text, cases: list) -> str:
    """Build the C text and judge it; "" when it passes, else what went wrong."""
    from .errors import BuildError
    from .runtime.cbuild import Kernel, build_modules

    rungs = "#if defined(__AVX" in kernel_text.source or "#if __AVX" in kernel_text.source
    for flags in (FLAGS, PORTABLE_FLAGS) if rungs else (FLAGS,):
        try:
            kernel = Kernel(kernel_text, build_modules([kernel_text], flags=flags))
        except BuildError as error:
            return f"does not build ({' '.join(flags)}): " + str(error).splitlines()[-1][:200]
        problem = _run_cases(kernel, cases)
        if problem:
            return f"C kernel ({kernel_text.schedule}, {' '.join(flags)}): {problem}"
    data = item[6]
    if data is not None:
        from .onnx_bridge import compare_with_onnx

        inputs, expected, storage_order = data
        problem = compare_with_onnx(kernel(*inputs), expected, storage_order, inputs[0].shape)
        if problem:
            return f"differs from ONNX's expected output: {problem}"
    return ""


def _check_cuda(item: tuple, kernel_text, cases: list) -> str:
    from .errors import BuildError
    from .runtime.pocl import compile_cpu

    try:
        kernels = compile_cpu([kernel_text])
    except BuildError as error:
        return "CUDA text does not build: " + str(error).splitlines()[-1][:200]
    for kernel in kernels:
        problem = _run_cases(kernel, cases)
        if problem:
            return f"CUDA text ({kernel.schedule}) on the CPU: {problem}"
    return ""


def _check_bounds(kernel_text) -> str:
    from .bounds import prove_bounds

    for result in prove_bounds(kernel_text):
        if result.status != "proved":
            return f"access not proved in bounds: {result.name} ({result.status})"
    return ""


def _coverable(kernel_text) -> bool:
    from .bounds import elements

    return elements(kernel_text) <= COVER_ELEMENTS


def _check_cover(kernel_text) -> str:
    from .bounds import uncovered

    problems = uncovered(kernel_text)
    return f"the bounds proofs' model misses accesses: {problems[0]}" if problems else ""


def _sanitized(kernel_text) -> str:
    """The sanitizer build of a changed C kernel, in a scratch folder: "" when clean."""
    from .sanitize import findings

    with tempfile.TemporaryDirectory(prefix="convgen-sanitize-") as folder:
        return findings(kernel_text, Path(folder))


def _raced(kernel_text) -> str:
    """Oclgrind's verdict on a changed CUDA text: "" when every entry point is clean and
    right; skipped (also "") where Oclgrind is not installed."""
    from .runtime.pocl import available
    from .verify import race_check

    if available("oclgrind") is not None:
        return ""
    try:
        findings = race_check([kernel_text], timeout=TIMEOUT)
    except ConvgenError as error:
        return "Oclgrind: " + str(error)[:200]
    for finding in findings:
        if finding.diagnostics or not finding.passed:
            said = (finding.diagnostics or "values wrong").strip().splitlines()[0]
            return f"Oclgrind ({finding.schedule}): {said[:200]}"
    return ""


def _nvcc_clean(kernel_text) -> str:
    """nvcc's verdict on a changed CUDA text under the strict flags: "" when it builds clean;
    skipped (also "") where nvcc is not installed."""
    from .errors import BuildError
    from .runtime import nvcc

    try:
        nvcc.nvcc()
    except BuildError:
        return ""
    try:
        nvcc.check(kernel_text)
    except BuildError as error:
        return "nvcc: " + " ".join(str(error).split())[:200]
    return ""


def _judge(item: tuple, texts: dict, base: dict, budget: dict | None = None
           ) -> tuple[str, str]:
    """``(stage, problem)`` of one config whose texts differ from ``base``; ("", "") when
    every changed part passes."""
    now = fingerprint(texts)
    stage = item[0]
    for part in ("c", "cuda"):
        if code(now[part]) == code(base[part]):
            continue  # the same program: at most its comments changed
        if isinstance(texts[part], str) or base[part].startswith("error: "):
            return stage, f"the generator now says {now[part][:200]!r} (before: " \
                          f"{base[part][:120]!r})"
        if part == "cuda" and int(item[2].flops(item[3])) > CUDA_WORK:
            continue  # slow under PoCL; smaller configs of the same schedules judge it
        cases = base["cases"] + base["real"] if part == "c" else base["cases"]
        problem = (_check_c if part == "c" else _check_cuda)(item, texts[part], cases)
        if not problem and part == "c" and budget is not None and budget["sanitize"] > 0 \
                and int(item[2].flops(item[3])) <= CUDA_WORK:
            budget["sanitize"] -= 1
            problem = _sanitized(texts[part])
        race = f"race_{stage}"  # the bundled layers' and the suite's own, each
        if not problem and part == "cuda" and budget is not None and budget[race] > 0 \
                and int(item[2].flops(item[3])) <= RACE_WORK:
            budget[race] -= 1
            problem = _raced(texts[part])
        if not problem and part == "cuda" and budget is not None and budget["nvcc"] > 0:
            budget["nvcc"] -= 1
            problem = _nvcc_clean(texts[part])
        if problem:
            return stage, problem
    for part, accesses in (("c", "accesses"), ("cuda", "cuda_accesses")):
        if now.get(accesses) == base.get(accesses) or isinstance(texts[part], str) \
                or stage == "onnx":  # the bundled and random layers prove the same accesses
            continue
        problem = _check_bounds(texts[part])
        cover = "cover" if part == "c" else "cover_cuda"
        if not problem and base.get(cover) and budget is not None and budget[cover] > 0:
            budget[cover] -= 1
            problem = _check_cover(texts[part])
        if problem:
            return "bounds", f"{part.upper()}: {problem}" if part == "cuda" else problem
    return "", ""


# --------------------------------------------------------------------------- the worker


_PROGRESS = "."  # what a child writes after each config it has judged


def _fresh_convgen() -> None:
    """Forget every convgen module, so the next import reads the (mutated) files."""
    for name in [n for n in sys.modules if n == "convgen" or n.startswith("convgen.")]:
        del sys.modules[name]


def _affected(job: dict, configs: list, uses: list) -> list[int]:
    """The configs a mutant can change: those whose kernels are rendered from templates
    that include the mutated one, or whose generation called the mutated function (a
    mutant outside any function, at module level, can change every config)."""
    if job["source"].endswith(".py"):
        if job["function"] is None:
            return list(range(len(configs)))
        unit = (job["source"], job["function"])
    else:
        unit = job["source"].removeprefix("templates/")
    return [i for i, used in enumerate(uses) if unit in used]


def _child(job: dict, suite_file: str, base: list, uses: list, out) -> None:
    """In a forked process: import the mutated sources afresh (a template: read it afresh)
    and run the stages."""
    if job["source"].endswith(".py"):
        _fresh_convgen()
    else:
        from .targets.base import environment

        environment.cache_clear()
    import convgen.codegen  # noqa: F401  (the mutated generator)
    import convgen.cudagen

    # every CUDA launch strides over the batch, as a batch past the grid's z limit does
    convgen.cudagen.MAX_GRID_Z = 1

    with open(suite_file, "rb") as stream:
        configs = pickle.load(stream)
    budget = dict(sanitize=SANITIZED, cover=COVERED, cover_cuda=COVERED, nvcc=NVCC_CHECKED,
                  **{f"race_{stage}": RACED for stage in STAGES})
    for index in _affected(job, configs, uses):
        item = configs[index]
        stage, problem = _judge(item, _texts(item), base[index], budget)
        out.write(_PROGRESS)
        out.flush()
        if problem:
            out.write(json.dumps(dict(outcome="killed", stage=stage,
                                      by=f"{item[1]}: {problem}")))
            return
    out.write(json.dumps(dict(outcome="survived")))


def _run_forked(job: dict, suite_file: str, base: list, uses: list, timeout: float) -> dict:
    """The stages for one mutant in a forked child; a crash is a kill, and so is a hang:
    no progress (the child reports each config it has judged) for ``timeout`` seconds."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, in a process group of its own (with what it starts)
        os.setpgid(0, 0)
        os.close(read)
        try:
            with os.fdopen(write, "w") as out:
                try:
                    _child(job, suite_file, base, uses, out)
                except Exception as error:  # the mutated generator crashed: a kill
                    out.write(json.dumps(dict(outcome="killed", stage="bundled",
                                              by=f"the generator raises "
                                                 f"{type(error).__name__}: {error}"[:400])))
        finally:
            os._exit(0)
    os.close(write)
    try:  # the child's own group, whichever of the two gets there first
        os.setpgid(pid, pid)
    except OSError:
        pass
    _GROUPS.add(pid)
    chunks, finished = [], False
    try:
        while True:
            ready, _, _ = select.select([read], [], [], timeout)
            if not ready:
                break
            chunk = os.read(read, 1 << 16)
            if not chunk:
                finished = True
                break
            chunks.append(chunk)
    finally:
        os.close(read)
        if finished:  # wait for its exit (not reaping it), so the kill below cannot be it
            os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        _kill_group(pid)  # what it started and left behind, or the hung child itself
        _, status = os.waitpid(pid, 0)
    if not finished:
        return dict(outcome="timeout", stage="",
                    by=f"one config made no progress in {timeout:g} s")
    text = b"".join(chunks).decode().lstrip(_PROGRESS)
    if not text:
        how = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else \
            f"exit {os.WEXITSTATUS(status)}"
        return dict(outcome="killed", stage="bundled", by=f"a kernel crashed the checker ({how})")
    return json.loads(text)


def _tests(copy: Path, timeout: float) -> dict:
    """The quick tier's formula tests on the mutated copy, stopping at the first failure."""
    env = dict(os.environ, PYTHONPATH=str(copy), CONVGEN_CACHE_DIR=str(copy / ".cache"))
    command = [sys.executable, "-m", "pytest", "-m", "quick", "-x", "-q", "-p",
               "no:cacheprovider", "-n", "0", "--no-header", "-W", "ignore",
               "-k", " and ".join(f"not {name}" for name in FORMULA_TESTS_LEFT_OUT),
               *[f"tests/{name}" for name in FORMULA_TESTS]]
    process = subprocess.Popen(command, cwd=copy, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    _GROUPS.add(process.pid)
    try:
        stdout, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(outcome="timeout", stage="tests", by=f"the quick tier took over {timeout} s")
    finally:  # pytest and whatever it started (a compiler, a hung kernel's process)
        _kill_group(process.pid)
        process.wait()
    done = subprocess.CompletedProcess(command, process.returncode, stdout)
    if done.returncode == 0:
        return dict(outcome="survived")
    failed = [line for line in done.stdout.splitlines() if line.startswith(("FAILED", "ERROR"))]
    return dict(outcome="killed", stage="tests",
                by=(failed[0] if failed else done.stdout.strip().splitlines()[-1])[:300])


#: The process groups a worker has started (a mutant's forked child, the tests stage's
#: pytest): killed when done, and all of them when the run that started the worker dies.
_GROUPS: set[int] = set()


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    _GROUPS.discard(pid)


def _orphan_watch(parent: int, every: float = 1.0) -> None:
    """Kill every group this worker started, and the worker, once the run that started it
    is gone (killed, not closed): nothing of a mutation run outlives it."""
    while os.getppid() == parent:
        time.sleep(every)
    for pid in list(_GROUPS):
        _kill_group(pid)
    os._exit(1)


def worker_main() -> None:
    """``python -m convgen.mutate`` in a scratch copy: read jobs (JSON lines) on stdin, plant
    each mutant in the copy, judge it, restore the file, answer one JSON line each."""
    import threading

    run = int(os.environ.get("CONVGEN_MUTATE_RUN", os.getppid()))  # gone already: exit
    threading.Thread(target=_orphan_watch, args=(run,), daemon=True).start()
    setup = json.loads(sys.stdin.readline())
    copy = Path(setup["copy"])
    with open(setup["base"], "rb") as stream:
        base, uses = pickle.load(stream)
    try:
        for line in sys.stdin:
            job = json.loads(line)
            path = copy / job["source"]
            original = path.read_text(encoding="utf-8")
            started = time.monotonic()
            try:
                path.write_text(job["text"], encoding="utf-8")
                verdict = _run_forked(job, setup["suite"], base, uses, setup["timeout"])
                if verdict["outcome"] == "survived" and setup["tests"]:
                    verdict = _tests(copy, setup["tests_timeout"])
            finally:
                path.write_text(original, encoding="utf-8")
            verdict["seconds"] = round(time.monotonic() - started, 2)
            print(json.dumps(verdict), flush=True)
    finally:  # the worker stopping for any reason: nothing it started goes on
        for pid in list(_GROUPS):
            _kill_group(pid)


# --------------------------------------------------------------------------- the run


def functions(text: str) -> list[tuple[int, int]]:
    """``(first, last)`` lines of every function of a module (its decorators included)."""
    import ast

    return sorted((min([n.lineno] + [d.lineno for d in n.decorator_list]), n.end_lineno)
                  for n in ast.walk(ast.parse(text))
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))


def innermost(ranges: list[tuple[int, int]], line: int) -> int | None:
    """The first line of the innermost function containing ``line``; None at module
    level."""
    inside = [r for r in ranges if r[0] <= line <= r[1]]
    return max(inside)[0] if inside else None


class _Calls:
    """The functions of the mutated Python modules that run while generating a config
    (``sys.setprofile``: call events only, so SymPy's lines cost nothing)."""

    def __init__(self, root: Path, sources: list[str]):
        self.files = {str((root / s).resolve()): s for s in sources}
        self.ranges = {s: functions((root / s).read_text(encoding="utf-8")) for s in sources}
        self.seen: set = set()

    def _profile(self, frame, event, arg):
        if event == "call":
            source = self.files.get(frame.f_code.co_filename)
            if source is not None:
                start = innermost(self.ranges[source], frame.f_code.co_firstlineno)
                if start is not None:
                    self.seen.add((source, start))

    def during(self, action, *args):
        self.seen = set()
        sys.setprofile(self._profile)
        try:
            result = action(*args)
        finally:
            sys.setprofile(None)
        return result, self.seen


def _template_closure(root: Path) -> dict[str, set]:
    """For each template, the templates it imports or includes, transitively."""
    import re

    folder = root / "templates"
    direct = {p.relative_to(folder).as_posix(): set(re.findall(
        r"\{%-?\s*(?:import|include|from|extends)\s+\"([^\"]+)\"", p.read_text()))
        for p in folder.rglob("*.j2")}
    closure = {}
    for name in direct:
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo += direct.get(current, ())
        closure[name] = seen
    return closure


def _verified(item: tuple, kernel_text) -> tuple[list, list]:
    """Build the unmutated kernel of a config, judge it against the exact oracle (and
    ONNX's expected outputs, its bounds proofs, and on a small config that the proofs'
    model covers the operator), and return its cases; for a schedule
    that sums in the reference schedule's order (``blocked``), also real-valued cases that
    the reference schedule's kernel computes to the same bits."""
    from .runtime.cbuild import Kernel, build_modules
    from .verify import check_kernel

    kernel = Kernel(kernel_text, build_modules([kernel_text], flags=FLAGS))
    outcome = check_kernel(kernel, cases=2, seed=0, batch=2)
    cases = _cases(kernel)
    problem = "" if outcome.passed else outcome.detail
    problem = problem or _check_c(item, kernel_text, cases) or _check_model(item, kernel_text)
    real = _real_cases(item, kernel) if kernel_text.schedule in SAME_ORDER else []
    if real is None:
        problem = problem or "the blocked kernel and the reference differ on real data"
    if problem:
        raise ConvgenError(f"the unmutated generator fails {item[0]} config {item[1]}: "
                           f"{problem}; fix that before measuring mutants")
    return cases, real


def _verified_cuda(item: tuple, kernel_text) -> None:
    """The unmutated CUDA text's bounds proofs, and on a small config that each entry
    point's model covers the operator: what the bounds stage judges its mutants by."""
    problem = _check_model(item, kernel_text)
    if problem:
        raise ConvgenError(f"the unmutated generator fails {item[0]} config {item[1]} (CUDA "
                           f"text): {problem}; fix that before measuring mutants")


def _check_model(item: tuple, kernel_text) -> str:
    """The problem with a kernel text's proof model, or "": its bounds proofs, then, on a
    small config that is not one of ONNX's cases, that the model covers the operator."""
    problem = _check_bounds(kernel_text)
    if item[0] != "onnx" and _coverable(kernel_text):
        problem = problem or _check_cover(kernel_text)
    return problem


def _real_cases(item: tuple, kernel) -> list | None:
    """Real-valued inputs (normal deviates: every sum rounds; about 5 % NaN, signed zeros
    and infinities: ties and NaN decide the maximum; then -1 and signed zeros only, so
    which of equal maxima a pool keeps shows in the sign) with the kernel's outputs, when
    the reference schedule's kernel computes the same bits on them; None if not."""
    import numpy as np

    from .codegen import generate
    from .runtime.cbuild import Kernel, build_modules
    from .strategies import with_specials

    g = kernel.generated
    reference = generate(g.layer, g.input_shape, g.dtype, g.name + "_ref",
                         schedule="reference")
    oracle = Kernel(reference, build_modules([reference], flags=FLAGS))
    rng = np.random.default_rng(1)
    real = []
    shapes = [a.shape for a in _cases(kernel)[0][0]]
    for draw in range(3):
        if draw < 2:
            args = [with_specials(rng.standard_normal(shape).astype(g.dtype), rng)
                    for shape in shapes]
        else:  # ties at zero: the maxima are signed zeros, so the first of equals shows
            args = [rng.choice(np.array([-1.0, -0.0, 0.0], g.dtype), shape) for shape in shapes]
        want = kernel(*args)
        if not _same(oracle(*args), want):
            return None
        real.append((args, want))
    return real


def _baseline(configs: list, root: Path) -> tuple[list, list]:
    """The unmutated generator's fingerprints and verified cases of every config, and the
    templates and the functions of the mutated modules each config's kernels come from."""
    from .mutants import python_sources

    closure = _template_closure(root)
    calls = _Calls(root, python_sources(root))
    base, uses = [], []
    for item in track(configs, "baseline", lambda item: item[1]):
        texts, called = calls.during(_texts, item)
        record, used = fingerprint(texts), set(called)
        record["cases"], record["real"] = [], []
        if not isinstance(texts["c"], str):
            used |= closure[texts["c"].template] | closure["c/header.h.j2"]
            record["cases"], record["real"] = _verified(item, texts["c"])
            record["cover"] = item[0] != "onnx" and _coverable(texts["c"])
        if not isinstance(texts["cuda"], str):
            used |= closure["cuda/kernel.cu.j2"]
            _verified_cuda(item, texts["cuda"])
            record["cover_cuda"] = item[0] != "onnx" and _coverable(texts["cuda"])
        base.append(record)
        uses.append(used)
    return base, uses


def _cached_baseline(root: Path, property_cases: int) -> tuple[list, list, list]:
    """The suite and its baseline, kept in the kernel cache under a key of the generator's
    sources, the suite's parameters and this module (minutes to compute: every config
    against the exact oracle)."""
    from .codegen import generator_hash
    from .runtime.cache import content_key, entry_path

    # this module's text stands for the suite's definition (the pinned layers, the stages)
    key = content_key("mutate-baseline", generator_hash(), str(property_cases),
                      str(PROPERTY_SEED), " ".join(FLAGS), sys.version,
                      Path(__file__).read_text(encoding="utf-8"))
    path = entry_path(key).with_suffix(".mutate.pickle")
    if path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:  # unreadable: computed again below
            pass
    configs = suite(property_cases)
    base, uses = _baseline(configs, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp")
    partial.write_bytes(pickle.dumps((configs, base, uses)))
    os.replace(partial, path)
    return configs, base, uses


def _scratch_copy(root: Path, folder: Path) -> Path:
    copy = folder / "tree"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", ".venv", "out", ".git", "generated")
    for name in ("convgen", "templates", "tests", "pyproject.toml", "README.md", "examples"):
        source = root / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, copy / name)
    return copy


def choose(all_mutants: Sequence[Mutant], sample: int | None, seed: int) -> list[Mutant]:
    """All mutants, or ``sample`` of them drawn with ``seed`` (kept in file order)."""
    if sample is None or sample >= len(all_mutants):
        return list(all_mutants)
    picked = set(random.Random(seed).sample(range(len(all_mutants)), sample))
    return [m for i, m in enumerate(all_mutants) if i in picked]


class _Worker:
    """One worker process on its own scratch copy."""

    def __init__(self, root: Path, folder: Path, setup: dict):
        self.copy = _scratch_copy(root, folder)
        env = dict(os.environ, PYTHONPATH=str(self.copy),
                   CONVGEN_CACHE_DIR=str(folder / "cache"), CONVGEN_MUTATE_RUN=str(os.getpid()))
        self.process = subprocess.Popen([sys.executable, "-m", "convgen.mutate"],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, env=env, cwd=self.copy)
        self.process.stdin.write(json.dumps(dict(setup, copy=str(self.copy))) + "\n")

    def judge(self, mutant: Mutant, text: str, function: int | None) -> dict:
        job = dict(source=mutant.source, text=text, function=function)
        self.process.stdin.write(json.dumps(job) + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise ConvgenError(f"the mutation worker stopped (exit {self.process.wait()}) "
                               f"on {mutant.describe()}")
        return json.loads(answer)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def run(sample: int | None = None, seed: int = 0, jobs: int = 1, tests: bool = True,
        property_cases: int = PROPERTY_CASES, root: Path | None = None,
        only: Sequence[str] = (), keys: Sequence[str] = (),
        extra: Sequence[Mutant] = (), log: Path | None = None,
        resume: Sequence[Result] = ()) -> Run:
    """Judge every mutant (or a ``sample`` drawn with ``seed``; ``only``: sources whose path
    contains one of these strings; ``keys``: just these mutants) and return the results.
    ``extra`` mutants (made by hand: tests) are judged after the chosen ones; ``log``: a file
    that gets each result as a JSON line as soon as it is known; ``resume``: results of an
    interrupted run (its log) whose kills stand (the stages only ever get stronger), so
    only the rest are judged."""
    from concurrent.futures import ThreadPoolExecutor

    started = time.monotonic()
    root = root or source_root()
    everything = [m for m in mutants(root) if (not only or any(s in m.source for s in only))
                  and (not keys or m.key in keys)]
    chosen = choose(everything, sample, seed) + list(extra)
    standing = {r.key: r for r in resume if r.outcome in ("killed", "timeout")}
    kept = [standing[m.key] for m in chosen if m.key in standing]
    chosen = [m for m in chosen if m.key not in standing]
    equivalents = load_equivalents(root)
    with tempfile.TemporaryDirectory(prefix="convgen-mutate-") as scratch:
        folder = Path(scratch)
        configs, base, uses = _cached_baseline(root, property_cases)
        (folder / "suite.pickle").write_bytes(pickle.dumps(configs))
        (folder / "base.pickle").write_bytes(pickle.dumps((base, uses)))
        setup = dict(suite=str(folder / "suite.pickle"), base=str(folder / "base.pickle"),
                     timeout=TIMEOUT, tests=tests, tests_timeout=TESTS_TIMEOUT)
        workers = [_Worker(root, folder / f"worker{i}", setup) for i in range(max(1, jobs))]
        free = list(workers)
        texts = {m.source: (root / m.source).read_text(encoding="utf-8") for m in chosen}
        ranges = {source: functions(text) for source, text in texts.items()
                  if source.endswith(".py")}

        def judge(mutant: Mutant) -> Result:
            worker = free.pop()
            try:
                planted = apply(mutant, texts[mutant.source])
                function = innermost(ranges[mutant.source], mutant.line) \
                    if mutant.kind == "python" else None
                verdict = worker.judge(mutant, planted, function)
            finally:
                free.append(worker)
            after = planted.splitlines()[mutant.line - 1] \
                if mutant.line <= len(planted.splitlines()) else ""
            outcome, why = verdict["outcome"], ""
            if outcome == "survived" and mutant.key in equivalents:
                outcome, why = "equivalent", equivalents[mutant.key]
            result = Result(mutant.key, mutant.source, mutant.line, mutant.operator,
                            mutant.before, after, outcome, verdict.get("stage", ""),
                            verdict.get("by", ""), verdict.get("seconds", 0.0), why)
            if log is not None:
                with open(log, "a", encoding="utf-8") as stream:
                    stream.write(json.dumps(asdict(result)) + "\n")
            return result

        try:
            with ThreadPoolExecutor(len(workers)) as pool:
                # judged in a random order (reported in file order): a run stopped early
                # has judged a uniform sample of every file
                order = random.Random(seed).sample(chosen, len(chosen))
                futures = {m.key: pool.submit(judge, m) for m in order}
                done = {key: f.result() for key, f in track(list(futures.items()),
                                                               "judge mutants", lambda e: "")}
                results = kept + [done[m.key] for m in chosen]
        finally:
            for worker in workers:
                worker.close()
    return Run(results, len(everything), sample, seed, time.monotonic() - started,
               existing=_by_source(everything))


def _by_source(found: Sequence) -> dict:
    counts: dict = {}
    for m in found:
        counts[m.source] = counts.get(m.source, 0) + 1
    return counts


def read_log(path: str, option: str = "--log") -> list[Result]:
    """The results a ``--log`` file holds (one JSON object a line)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [Result(**json.loads(line)) for line in lines if line.strip()]
    except (OSError, ValueError, TypeError) as error:
        raise ConvgenError(f"{option} {path}: not a convgen mutate --log file ({error})") \
            from None


def from_log(results: Sequence[Result], root: Path | None = None) -> Run:
    """A report of the results a ``--log`` holds (the last verdict of each mutant that is
    still a mutant of the sources), without judging anything: what a stopped run judged,
    against every mutant there is."""
    root = root or source_root()
    everything = mutants(root)
    keys, equivalents = {m.key for m in everything}, load_equivalents(root)
    latest = {r.key: r for r in results if r.key in keys}
    chosen = []
    for m in everything:
        r = latest.get(m.key)
        if r is not None and r.outcome == "survived" and m.key in equivalents:
            r = replace(r, outcome="equivalent", why=equivalents[m.key])
        if r is not None:
            chosen.append(r)
    notes = [] if len(chosen) == len(everything) else [
        f"the run was stopped after {len(chosen)} of {len(everything)} mutants, judged in a "
        "random order: each file's figures are of a uniform sample of its mutants"]
    return Run(chosen, len(everything), None, 0, 0.0, notes=notes,
               existing=_by_source(everything))


# --------------------------------------------------------------------------- reporting


def score_table(results: Sequence[Result], existing: dict | None = None) -> list[dict]:
    """Per source file: judged, killed, timeout, survived, equivalent, score (killed +
    timeout over judged - equivalent), and the totals of templates and of Python modules;
    ``existing``: the mutants there are, by source (``mutants``; else the judged ones)."""
    groups: dict = {}
    for r in results:
        kind = "templates" if r.source.startswith("templates/") else "formulas"
        for name in (r.source, f"all {kind}"):
            groups.setdefault(name, []).append(r)
    rows = []
    for name in sorted(groups, key=lambda n: (n.startswith("all "), n)):
        members = groups[name]
        count = {o: sum(r.outcome == o for r in members)
                 for o in ("killed", "timeout", "survived", "equivalent")}
        judged = len(members) - count["equivalent"]
        score = (count["killed"] + count["timeout"]) / judged if judged else 1.0
        there = _existing(name, existing) if existing else len(members)
        rows.append(dict(source=name, total=len(members), mutants=there, **count,
                         score=score))
    return rows


def _existing(name: str, existing: dict) -> int:
    if not name.startswith("all "):
        return existing.get(name, 0)
    templates = name == "all templates"
    return sum(n for source, n in existing.items()
               if source.startswith("templates/") == templates)


def document(result: Run) -> dict:
    """The run as JSON-ready data."""
    return dict(schema="convgen-mutate/1", total=result.total, sample=result.sample,
                seed=result.seed, seconds=round(result.seconds, 1), stages=list(result.stages),
                notes=list(result.notes),
                scores=score_table(result.results, result.existing),
                mutants=[asdict(r) for r in result.results])


def rerun(previous: dict, jobs: int = 1, tests: bool = True, log: Path | None = None) -> Run:
    """Judge again the survivors of an earlier run (its :func:`document`) and keep its
    other verdicts: after new tests or a fix, this confirms the survivors are now killed
    without judging everything again.  A survivor whose line has changed since is no
    mutant any more and is dropped (the full run is the authority: run it again)."""
    if previous.get("schema") != "convgen-mutate/1":
        raise ConvgenError("--rerun: not a convgen mutate --json document (schema "
                           f"{previous.get('schema')!r})")
    old = [Result(**entry) for entry in previous["mutants"]]
    again = [r.key for r in old if r.outcome in ("survived", "equivalent")]
    fresh = run(jobs=jobs, tests=tests, keys=again, log=log) if again else \
        Run([], previous["total"], None, previous["seed"], 0.0)
    judged = {r.key: r for r in fresh.results}
    merged = [judged.get(r.key, r) for r in old
              if r.outcome not in ("survived", "equivalent") or r.key in judged]
    notes = [f"survivors of the full run judged again: {len(again)}, of which "
             f"{len(again) - len(judged)} are no mutants any more"]
    return Run(merged, previous["total"], previous["sample"], previous["seed"],
               previous["seconds"] + fresh.seconds, notes=notes)


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def markdown(result: Run, command: str) -> str:
    """``MUTATION.md``: the scores per template and module, the stages that killed, and every
    survivor with its justification."""
    rows = score_table(result.results, result.existing)
    lines = ["# Mutation score", "",
             f"`{command}`: {len(result.results)} of {result.total} mutants"
             + (f" (a sample, seed {result.seed})" if result.sample else "")
             + f", {result.seconds / 60:.0f} min. Score = (killed + timeout) / (total - "
             "equivalent). How each is made and judged: `convgen/mutants.py`, "
             "`convgen/mutate.py`; equivalent mutants and why: `mutation.toml`.",
             *(["", *[f"Note: {note}." for note in result.notes]] if result.notes else []), "",
             "| source | mutants | judged | killed | timeout | survived | equivalent | score |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        name = f"**{row['source']}**" if row["source"].startswith("all ") else \
            f"`{row['source']}`"
        lines.append(f"| {name} | {row['mutants']} | {row['total']} | {row['killed']} | "
                     f"{row['timeout']} | {row['survived']} | {row['equivalent']} | "
                     f"{_percent(row['score'])} |")
    stages: dict = {}
    for r in result.results:
        if r.outcome == "killed":
            stages[r.stage] = stages.get(r.stage, 0) + 1
    lines += ["", "Killed by stage: " + ", ".join(f"{stage} {stages.get(stage, 0)}"
                                                  for stage in STAGES) + ".", ""]
    for outcome, title in (("survived", "Survivors (not yet killed or justified)"),
                           ("equivalent", "Equivalent mutants")):
        chosen = [r for r in result.results if r.outcome == outcome]
        lines += [f"## {title}: {len(chosen)}", ""]
        for r in chosen:
            lines.append(f"- `{r.key}` `{r.source}:{r.line}` {r.operator}: "
                         f"`{r.before.strip()}` → `{r.after.strip()}`"
                         + (f"  \n  {r.why}" if r.why else ""))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    worker_main()
