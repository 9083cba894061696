"""Kernels whose sizes need 64-bit indexing: the header checks that ``long`` has 64 bits,
and the text compiles strictly (syntax only: the data would not fit in this machine)."""

import subprocess

import pytest

from convgen import codegen
from convgen.runtime.cbuild import STRICT_FLAGS, compiler
from convgen.spec import Conv2d, MaxPool2d


@pytest.mark.parametrize("layer, shape", [
    (Conv2d(1, 2, 3, padding=1), (1, 46341, 46341)),   # 2**31 + 82,681 elements a sample
    (MaxPool2d(2), (3, 30000, 30000)),
])
def test_a_kernel_over_two_billion_elements_checks_long_and_compiles(layer, shape, tmp_path):
    kernel = codegen.generate(layer, shape, name="wide")
    assert "typedef char wide_check_long[(sizeof(long) >= 8) ? 1 : -1];" in kernel.header
    (tmp_path / "wide.h").write_text(kernel.header)
    (tmp_path / "wide.c").write_text(kernel.source)
    done = subprocess.run([compiler(), *STRICT_FLAGS, "-fsyntax-only", str(tmp_path / "wide.c")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_small_kernel_has_no_long_check():
    assert "check_long" not in codegen.generate(Conv2d(1, 2, 3), (1, 8, 8), name="k").header
