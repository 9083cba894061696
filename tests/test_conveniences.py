"""What a PyTorch user expects: NumPy dtypes, the public modules as attributes."""

import subprocess
import sys

import numpy as np
import pytest

import convgen
from convgen.codegen import generate
from convgen.lower import dtype_name


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64"),
                                   np.dtype(np.float64)])
def test_a_dtype_may_be_numpys(dtype):
    kernel = generate(convgen.Conv2d(1, 2, 3), (1, 5, 5), dtype=dtype)
    assert kernel.dtype == "float64" and kernel.source == generate(
        convgen.Conv2d(1, 2, 3), (1, 5, 5), dtype="float64").source


def test_compile_takes_a_numpy_dtype():
    layer = convgen.MaxPool2d(2)
    kernel = convgen.compile(layer, (1, 4, 4), dtype=np.int8)
    x = np.arange(16, dtype=np.int8).reshape(1, 1, 4, 4)
    assert kernel.generated.dtype == "int8"
    assert kernel(x).tolist() == [[[[5, 7], [13, 15]]]]


@pytest.mark.parametrize("dtype, message", [
    (float, "dtype='float' must be one of float32, float64"),
    (np.int32, "dtype='int32' must be one of float32, float64"),
    (3, "dtype=3 must be a dtype name such as 'float32', a NumPy scalar type"),
])
def test_a_wrong_dtype_is_named(dtype, message):
    with pytest.raises(convgen.SpecError, match=message.replace("(", r"\(")):
        generate(convgen.Conv2d(1, 2, 3), (1, 5, 5), dtype=dtype)


def test_dtype_name():
    assert dtype_name("float32") == "float32" == dtype_name(np.float32)
    assert dtype_name(np.dtype("uint8")) == "uint8"


def test_the_public_modules_are_attributes_of_the_package():
    # a fresh interpreter: nothing else has imported the submodules first
    code = ("import convgen; convgen.reference.forward; convgen.symbolic.conv_output_size; "
            "convgen.codegen.generate; convgen.toeplitz.toeplitz; convgen.proofs.prove; "
            "convgen.verify.check_kernel; convgen.schedules.choose; convgen.summary.summarize")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for name in ("reference", "symbolic", "codegen", "cudagen", "toeplitz", "proofs",
                 "verify", "schedules", "runtime", "lower", "summary"):
        assert name in convgen.__all__
