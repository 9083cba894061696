"""Packaging: the wheel ships the templates and examples; CI runs the README's test command."""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from convgen.resources import examples_dir, templates_dir
from tests.helpers import ROOT


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n# [^\n]*\n([^\n]+)\n```", quick)


def test_readme_has_exactly_two_quick_start_commands_and_ci_runs_the_test_one():
    commands = _readme_commands()
    assert len(commands) == 2
    assert "convgen generate" in commands[0] and "convgen verify" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[1] in ci  # verbatim, on a line of its own
    assert commands[0] in ci
    assert "set -euo pipefail" in ci


def test_templates_and_examples_found_from_the_source_tree():
    assert (templates_dir() / "README.md").is_file()
    assert {p.name for p in examples_dir().glob("*.toml")} >= {"lenet5.toml", "lecture.toml"}


@pytest.mark.slow
def test_wheel_ships_templates_and_examples(tmp_path):
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps",
                            "-q", "-w", str(tmp_path)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    (wheel,) = tmp_path.glob("convgen-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "convgen/templates/README.md" in names
    # the test program and the Cortex-M4 board files verify --arch builds with
    assert {"convgen/templates/c/harness.c.j2", "convgen/templates/boards/mps2-an386/startup.c",
            "convgen/templates/boards/mps2-an386/link.ld"} <= set(names)
    assert "convgen/examples/lenet5.toml" in names
    # the bundled model its network folder is generated from, and the model summary's schema
    assert {"convgen/examples/lenet5_network.onnx",
            "convgen/schemas/model-summary.schema.json"} <= set(names)
    assert "convgen/spec/__init__.py" in names and "convgen/spec/base.py" in names
    assert not any(n.startswith("tests/") for n in names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("from convgen.resources import templates_dir, examples_dir; "
             "print(templates_dir()); print(len(list(examples_dir().glob('*.toml'))))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": ""})
    assert result.returncode == 0, result.stderr
    folder, count = result.stdout.split()
    assert Path(folder) == site / "convgen" / "templates"
    assert int(count) == len(list(examples_dir().glob("*.toml")))
