"""The code passes ruff with the project's settings (pyproject.toml)."""

import importlib.util
import subprocess
import sys

import pytest

from tests.helpers import ROOT


def test_ruff_clean():
    if importlib.util.find_spec("ruff") is None:
        pytest.skip("ruff is not installed (it comes with the 'test' extra)")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "convgen", "tests",
                             "benchmarks", "tools/gpu/kit.py", "tools/gpu/prepare",
                             "tools/gpu/run", "tools/gpu/parallel_setup.py"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
