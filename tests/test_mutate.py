"""Mutation testing: the operators make the mistakes they name and nothing else, keys are
stable, the pipeline kills planted mistakes (naming the stage and the config) and lets a
harmless change survive, and a sample of the real mutants (fixed seed per commit) is killed
or justified."""

import json
import subprocess
from pathlib import Path

import pytest

from convgen import mutants as mt
from convgen.cli import main
from convgen.mutate import choose, load_equivalents, markdown, run, score_table

pytest.importorskip("cosmic_ray")

ROOT = Path(__file__).resolve().parent.parent

LOOP = ("{# a comment: for (long k = 0; k < 3; ++k) #}\n"
        "#include <string.h>\n"
        "for (long k0 = 0; k0 < {{ d.kernel }}; ++k0) { /* tap, k < 2 */\n"
        "    if (!({{ d.inside }})) continue; /* zero padding */\n"
        "    acc += x[{{ x_index }}] * w[{{ w_index }}];\n"
        "}\n"
        "__syncthreads();\n")


def _made(text, operator):
    return {mt.apply(m, text).splitlines()[m.line - 1].strip()
            for m in mt.template_mutants("t.j2", text) if m.operator == operator}


def test_template_operators_make_the_named_mistakes():
    assert _made(LOOP, "comparison") == {
        "for (long k0 = 0; k0 <= {{ d.kernel }}; ++k0) { /* tap, k < 2 */"}
    assert _made(LOOP, "loop bound +1") == {
        "for (long k0 = 0; k0 < {{ d.kernel }} + 1; ++k0) { /* tap, k < 2 */",
        "for (long k0 = 0; k0 < {{ d.kernel }} - 1; ++k0) { /* tap, k < 2 */"}
    assert _made(LOOP, "loop start +1") == {
        "for (long k0 = 0 + 1; k0 < {{ d.kernel }}; ++k0) { /* tap, k < 2 */"}
    assert _made(LOOP, "drop guard") == {"/* zero padding */"}
    assert _made(LOOP, "index +1") == {
        "acc += x[{{ x_index }} + 1] * w[{{ w_index }}];",
        "acc += x[{{ x_index }} - 1] * w[{{ w_index }}];",
        "acc += x[{{ x_index }}] * w[{{ w_index }} + 1];",
        "acc += x[{{ x_index }}] * w[{{ w_index }} - 1];"}
    assert _made(LOOP, "drop __syncthreads") == {""}


def test_comments_and_preprocessor_lines_are_never_mutated():
    lines = {m.line for m in mt.template_mutants("t.j2", LOOP)}
    assert 1 not in lines and 2 not in lines  # the Jinja comment and the #include
    for m in mt.template_mutants("t.j2", LOOP):  # nor the C comment of a mutated line
        assert "/* tap, k < 2 */" in mt.apply(m, LOOP) or m.line != 3


def test_loop_bounds_of_directly_nested_loops_swap():
    text = ("for (long a = 0; a < {{ A }}; ++a) {\n"
            "    for (long b = 0; b < {{ B }}; ++b) {\n")
    (swap,) = [m for m in mt.template_mutants("t.j2", text) if m.operator == "swap loop bounds"]
    assert mt.apply(swap, text) == ("for (long a = 0; a < {{ B }}; ++a) {\n"
                                    "    for (long b = 0; b < {{ A }}; ++b) {\n")


PYTHON = '''"""Docstring: 1 + 2."""

__all__ = ["f"]


def f(n, k, s):
    """A formula, floor((n - k) / s) + 1."""
    if n < k:
        raise ValueError(f"n={n} below k + 1")
    return sympy.floor((n - k) / s) + 1


def g(n):
    return n - 1  # pragma: no mutate
'''


def _python(operator):
    return sorted(mt.apply(m, PYTHON).splitlines()[m.line - 1].strip()
                  for m in mt.python_mutants("p.py", PYTHON) if m.operator == operator)


def test_python_operators_touch_formulas_only():
    assert {m.line for m in mt.python_mutants("p.py", PYTHON)} == {8, 10}
    assert _python("FloorCeiling") == ["return sympy.ceiling((n - k) / s) + 1"]
    assert _python("SwapOperands") == ["return sympy.floor((k - n) / s) + 1",
                                       "return sympy.floor(s / (n - k)) + 1"]
    assert _python("NumberReplacer") == ["return sympy.floor((n - k) / s) + 0",
                                         "return sympy.floor((n - k) / s) + 2"]
    assert _python("ReplaceComparisonOperator_Lt_LtE") == ["if n <= k:"]


def test_keys_survive_edits_elsewhere_in_the_file():
    before = {m.key for m in mt.template_mutants("t.j2", LOOP)}
    after = {m.key for m in mt.template_mutants("t.j2", "/* new */\n\n" + LOOP)}
    assert before == after
    assert len(before) == len(mt.template_mutants("t.j2", LOOP))  # unique


def test_every_template_and_formula_module_has_mutants():
    found = mt.mutants(ROOT)
    sources = {m.source for m in found}
    templates = {p.relative_to(ROOT).as_posix() for p in (ROOT / "templates").rglob("*.j2")}
    # the header prints no logic; the test program of verify --arch is the verifier's
    assert templates - {"templates/c/header.h.j2", "templates/c/harness.c.j2"} <= sources
    assert "templates/c/harness.c.j2" not in sources
    assert "convgen/symbolic.py" in sources
    assert "convgen/schedules/tuning.py" not in sources  # constants: another correct kernel
    assert [m.key for m in found] == [m.key for m in mt.mutants(ROOT)]  # deterministic
    assert len({m.key for m in found}) == len(found)


def test_a_sample_is_reproducible_and_in_file_order():
    everything = mt.mutants(ROOT)
    first, again = choose(everything, 15, 7), choose(everything, 15, 7)
    assert first == again and len(first) == 15
    assert first != choose(everything, 15, 8)
    order = {m.key: i for i, m in enumerate(everything)}
    assert [order[m.key] for m in first] == sorted(order[m.key] for m in first)


def _by_hand(source, old, new, operator):
    text = (ROOT / source).read_text()
    start = text.index(old)
    return mt._template_mutant(source, text, operator, start, start + len(old), new)


def test_equivalent_mutants_name_real_mutants_with_an_argument():
    keys = {m.key for m in mt.mutants(ROOT)}
    for key, why in load_equivalents(ROOT).items():
        assert key in keys, f"mutation.toml: {key} is no mutant of the sources now"
        assert len(why) > 20


def _commit_seed() -> int:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return 0
    return int(head[:8], 16)


def test_a_sample_is_killed_or_justified_and_planted_mistakes_are_named():
    """CI's sample: 20 mutants, the seed fixed per commit, none of which may survive where
    the recorded run (``tests/mutation_verdicts.json``, written with MUTATION.md) killed it;
    with them, five made by hand: four mistakes the pipeline must kill (naming the stage
    and the config; two in the CUDA text that only a batch past the grid's z limit and
    Oclgrind show) and a harmless change it must let survive.  One run: the baseline
    (every config against the exact oracle) is the expensive part."""
    off_by_one = _by_hand("templates/shared/body.j2", "k{{ i }} < {{ d.kernel }}",
                          "k{{ i }} < {{ d.kernel }} - 1", "loop bound +1")
    no_padding = _by_hand("templates/shared/body.j2",
                          "if (!({{ d.inside }})) continue; /* zero padding */",
                          "/* zero padding */", "drop guard")
    harmless = _by_hand("templates/shared/body.j2", "/* input channel in group */",
                        "/* the input channel within its group */", "comment")
    # CUDA: a block that skips batches past the grid's z limit, and one that stages a tap
    # past its shared array (PoCL lets it pass: the element past the end is never read)
    stride = _by_hand("templates/cuda/kernel.cu.j2", "n += gridDim.z)", "n += gridDim.z + 1)",
                      "loop step +1")
    overrun = _by_hand("templates/cuda/kernel.cu.j2", "e < {{ T.oc_block * T.taps }};",
                       "e <= {{ T.oc_block * T.taps }};", "comparison")
    made = [off_by_one, no_padding, harmless, stride, overrun]
    result = run(sample=20, seed=_commit_seed(), extra=made, jobs=2)
    sampled, made = result.results[:-len(made)], result.results[-len(made):]
    recorded = json.loads((ROOT / "tests" / "mutation_verdicts.json").read_text())
    regressions = [f"{r.key} {r.source}:{r.line} {r.operator}: {r.before.strip()!r} -> "
                   f"{r.after.strip()!r} (the recorded run: {recorded[r.key]})"
                   for r in sampled if r.outcome == "survived"
                   and recorded.get(r.key) == "killed"]  # a timeout may be the load's
    assert not regressions, regressions
    verdicts = {r.operator: r for r in made}
    assert verdicts["loop bound +1"].outcome == "killed"
    assert verdicts["loop bound +1"].stage == "bundled"
    assert "values differ" in verdicts["loop bound +1"].by
    assert verdicts["drop guard"].outcome in ("killed", "timeout")
    assert verdicts["comment"].outcome == "survived"
    assert verdicts["loop step +1"].outcome == "killed"
    assert "CUDA text" in verdicts["loop step +1"].by
    assert verdicts["comparison"].outcome == "killed"
    assert "Oclgrind" in verdicts["comparison"].by
    rows = {row["source"]: row for row in score_table(made)}
    assert rows["all templates"]["score"] == pytest.approx(4 / 5)
    assert "the input channel within its group" in markdown(result, "convgen mutate")


def _gone(pid: int) -> bool:
    """No such process, or a zombie (killed, waiting for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _gone(pid)


def test_a_hung_tests_stage_leaves_no_process_behind(tmp_path):
    """The tests stage's pytest runs in a process group of its own: a timeout kills it
    with everything it started (here a test that starts a sleeper and hangs)."""
    import sys

    from convgen import mutate

    sleeper = tmp_path / "sleeper.pid"
    (tmp_path / "tests").mkdir()
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    quick: the quick tier\n")
    for name in mutate.FORMULA_TESTS:
        (tmp_path / "tests" / name).write_text("")
    (tmp_path / "tests" / mutate.FORMULA_TESTS[0]).write_text(
        "import subprocess, time\nimport pytest\n\n\n@pytest.mark.quick\n"
        "def test_hangs():\n"
        f"    child = subprocess.Popen([{sys.executable!r}, '-c', 'import time; "
        "time.sleep(600)'])\n"
        f"    open({str(sleeper)!r}, 'w').write(str(child.pid))\n"
        "    time.sleep(600)\n")
    verdict = mutate._tests(tmp_path, timeout=60)
    assert verdict["outcome"] == "timeout", verdict
    assert sleeper.exists(), "the hung test did not start within the stage's 60 s"
    assert _wait_gone(int(sleeper.read_text()))


def test_a_killed_run_leaves_no_worker_process_behind(tmp_path):
    """A worker watches the run that started it: once that run is killed (not closed), the
    worker kills the process groups it started and exits."""
    import select
    import signal
    import sys

    worker = ("import os, subprocess, sys\n"
              "run = os.getppid()  # before the test can kill it: it waits for the line below\n"
              "from convgen import mutate\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; "
              "time.sleep(600)'], start_new_session=True)\n"
              "mutate._GROUPS.add(child.pid)\n"
              "print(child.pid, os.getpid(), flush=True)\n"
              "mutate._orphan_watch(run, every=0.1)\n")
    run_script = (f"import subprocess, sys, time\n"
                  f"subprocess.Popen([sys.executable, '-c', {worker!r}])\n"
                  f"time.sleep(600)\n")
    started = subprocess.Popen([sys.executable, "-c", run_script], stdout=subprocess.PIPE,
                               text=True, cwd=ROOT)
    try:
        ready, _, _ = select.select([started.stdout], [], [], 60)
        assert ready, "the worker did not start"
        child, worker_pid = map(int, started.stdout.readline().split())
        assert not _gone(child) and not _gone(worker_pid)
    finally:
        started.send_signal(signal.SIGKILL)
        started.wait()
    assert _wait_gone(child) and _wait_gone(worker_pid)


def test_the_command_lists_mutants_and_refuses_bad_options(capsys):
    assert main(["mutate", "--list", "--only", "c/conv.c.j2"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed and all("templates/c/conv.c.j2" in line for line in listed)
    assert main(["mutate", "--sample", "0"]) == 2
    assert "--sample 0: must be at least 1" in capsys.readouterr().err


def _render_with(monkeypatch, mutant):
    """Generate through a Jinja environment that reads ``mutant``'s template planted."""
    import jinja2

    from convgen.resources import templates_dir
    from convgen.targets import base, c

    name = mutant.source.removeprefix("templates/")
    planted = mt.apply(mutant, (ROOT / mutant.source).read_text())
    env = base.environment()
    mutated = env.overlay(loader=jinja2.ChoiceLoader([
        jinja2.DictLoader({name: planted}), jinja2.FileSystemLoader(str(templates_dir()))]))
    monkeypatch.setattr(c, "environment", lambda: mutated)


@pytest.mark.parametrize("old", ["{{ w_index }}", "{{ d.kernel }}"])
def test_translation_validation_catches_mistakes_planted_in_a_template(monkeypatch, old):
    """A wrong weight index (``w[... - 1]``) and an off-by-one tap loop (``k < K - 1``)
    planted in the template itself, not in generated text: ``verify --exhaustive``'s probes
    name the offending tap, input and output."""
    from convgen.exhaustive import validate
    from convgen.runtime.cbuild import compile_kernels
    from convgen.spec import Conv2d

    source = "templates/shared/body.j2"
    text = (ROOT / source).read_text()
    mutant = next(m for m in mt.template_mutants(source, text)
                  if text[m.site[0]:m.site[1]] == old and m.site[2] == f"{old} - 1")
    _render_with(monkeypatch, mutant)
    (kernel,) = compile_kernels([(Conv2d(2, 2, 3, padding=1), (2, 5, 5), "planted")],
                                schedule="reference")
    assert old + " - 1" in mutant.after
    verdict = validate(kernel)
    assert verdict.status == "failed"
    assert "tap w[" in verdict.detail and "from x[" in verdict.detail \
        and "y[" in verdict.detail, verdict.detail
