"""README.md runs as written: every Python block, every command line, the layer file it
shows; and every ``# → value`` comment is what its line evaluates to.

Python blocks run in order in one namespace (as a reader pasting them into one session
would), in a scratch folder.  Command-line blocks run line by line with bash, in a scratch
folder holding the clone's ``examples/``, with the installed ``convgen`` first on PATH.  The
blocks that cannot run here are listed in ``NOT_RUN`` with the reason, and only those.
"""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)

#: (language, how the block's first line starts) -> why the test does not run it
NOT_RUN = {
    ("bash", "# 1. install and run the main job"):
        "the quick start: .ci/run runs both commands verbatim (tests/test_packaging.py)",
    ("bash", "# 2. install the test dependencies"):
        "the quick start: .ci/run runs both commands verbatim (tests/test_packaging.py)",
    ("bash", "# mutation runs"):
        "minutes to an hour: tests/test_mutate.py runs CI's sample",
    ("bash", "# verify on other architectures"):
        "needs the cross toolchains and QEMU: .ci/run installs them and verifies generated/ "
        "on both; tests/test_cross.py runs verify --arch on each",
    ("bash", "export CUDA_HOME="):
        "needs a GPU, its driver and PyCUDA (tests marked cuda run there)",
}


def _not_run(language: str, text: str) -> bool:
    first = text.splitlines()[0]
    return any(language == kind and first.startswith(start) for kind, start in NOT_RUN)


def blocks(language: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of every fenced block in ``language``."""
    found = []
    for match in FENCE.finditer(README):
        if match.group(1) == language:
            line = README.count("\n", 0, match.start()) + 2
            text = match.group(2)
            if not _not_run(language, text):
                found.append((line, text))
    return found


def test_every_block_is_run_or_says_why_not():
    languages = {m.group(1) for m in FENCE.finditer(README)}
    assert languages <= {"python", "bash", "toml"}, languages
    for kind, start in NOT_RUN:
        assert any(m.group(1) == kind and m.group(2).startswith(start)
                   for m in FENCE.finditer(README)), f"NOT_RUN names no block: {start!r}"


def test_the_layer_file_shown_is_the_shipped_example():
    ((_, text),) = blocks("toml")
    shipped = (ROOT / "examples" / "layers.toml").read_text(encoding="utf-8")
    body = "\n".join(line for line in shipped.splitlines()
                     if not line.startswith("#")).strip()
    assert text.strip() == body


def _expected(line: str) -> str | None:
    """The value a ``# → value`` comment states (text after two spaces is a remark)."""
    if "# → " not in line:
        return None
    return line.split("# → ", 1)[1].split("  ")[0].strip()


def _shown(value) -> str:
    import numpy as np

    if isinstance(value, np.ndarray):
        return np.array2string(value, max_line_width=10_000).replace("\n", "")
    return str(value)


def test_python_blocks_run_and_show_what_they_say(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace: dict = {"__name__": "__readme__"}
    checked = 0
    for start, text in blocks("python"):
        lines = text.splitlines()
        for statement in ast.parse(text).body:
            source = "\n".join(lines[statement.lineno - 1:statement.end_lineno])
            where = f"README.md:{start + statement.lineno - 1}"
            expected = _expected(lines[statement.end_lineno - 1])
            try:
                if expected is not None:
                    assert isinstance(statement, ast.Expr), f"{where}: '# →' on a statement"
                    value = eval(compile(ast.Expression(statement.value), where, "eval"),
                                 namespace)
                    assert _shown(value) == expected, f"{where}: {source}"
                    checked += 1
                else:
                    exec(compile(ast.Module([statement], []), where, "exec"), namespace)
            except AssertionError:
                raise
            except Exception as error:
                pytest.fail(f"{where}: {source}\n{type(error).__name__}: {error}")
    assert checked >= 10  # the comments are checked, not skipped


def _convgen_on_path() -> dict:
    script = Path(sys.executable).parent / "convgen"
    if not script.exists():
        pytest.skip(f"the convgen command is not installed beside {sys.executable}")
    return {**os.environ, "PATH": f"{script.parent}{os.pathsep}{os.environ['PATH']}",
            "MPLBACKEND": "Agg", "CI": "true"}


def _command_lines():
    for start, text in blocks("bash"):
        for offset, line in enumerate(text.splitlines()):
            if line.strip() and not line.lstrip().startswith("#"):
                yield start + offset, line


def test_command_lines_run(tmp_path):
    """Every command line, in order, in one scratch folder.  ``convgen bench`` runs with
    ``--smoke`` added (one small layer, one repeat: the full run takes minutes and is
    measured, never tested, here)."""
    env = _convgen_on_path()
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    ran = []
    for number, line in _command_lines():
        command = line.split("  #")[0] + " --smoke" if line.startswith("convgen bench") \
            else line
        done = subprocess.run(["bash", "-o", "pipefail", "-ec", command], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, (f"README.md:{number}: {line}\n{done.stdout[-3000:]}\n"
                                      f"{done.stderr[-3000:]}")
        ran.append(line.split()[1] if line.startswith("convgen ") else line)
    assert {"summary", "shape", "toeplitz", "generate", "verify", "prove", "bench",
            "examples"} <= set(ran)
    # outputs went where the README says, and only there
    assert (tmp_path / "out" / "t.png").is_file() and (tmp_path / "out" / "bench.json").is_file()
    assert (tmp_path / "out" / "verify.xml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["examples", "out"]
