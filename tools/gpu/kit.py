"""What the GPU kit carries and runs: one source for ``tools/gpu/prepare`` (run here) and
``tools/gpu/run`` (run on the GPU machine), and for the tests of both.

The GPU machine (its published description: one H200, x86-64, Python 3.12 with numpy, scipy,
sympy, jinja2, hypothesis, pytest, pytest-xdist, onnx, onnxruntime, torch, cupy; nvcc 13,
compute-sanitizer, ncu; no network) lacks PyCUDA (an sdist: built there), convgen's own
dependencies cffi, z3-solver and tqdm, and jsonschema for the tests.  At most 64 MiB travels
with the working tree.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: where ``prepare`` puts the packages by default (ignored by git; carried by the device tool)
DEFAULT_DIR = ROOT / "tools" / "gpu" / "packages"
#: everything that may travel with the working tree, in bytes
CARRY_LIMIT = 64 * 2**20
#: the GPU machine's Python, for which the binary wheels are chosen
PYTHON = "3.12"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64",
             "manylinux_2_34_x86_64")
#: built there from its sdist (no binary wheel exists)
SDISTS = ("pycuda",)
#: wheels (with their dependencies): PyCUDA's pure-Python dependencies and its build
#: backend, convgen's dependencies the machine lacks, the tests' jsonschema
WHEELS = ("pytools", "platformdirs", "mako", "setuptools", "wheel",
          "cffi", "z3-solver", "tqdm", "jsonschema")
#: the packages the GPU machine is published to have (never carried)
ON_THE_MACHINE = ("numpy", "scipy", "sympy", "jinja2", "hypothesis", "pytest", "pytest-xdist",
                  "onnx", "onnxruntime", "torch", "cupy")
#: the test files holding every test marked ``cuda`` (tests/test_gpu_kit.py checks it)
CUDA_TEST_FILES = ("tests/test_cuda.py", "tests/test_onnx_conformance.py")
MANIFEST = "manifest.json"
#: wall-clock limit of the whole run on the GPU machine, in seconds (the device tool allows
#: 10 minutes a command; 8 leave room for the machine's start and the transfers)
RUN_LIMIT = 480


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def sha256(path: Path) -> str:
    """The file's sha256, as the manifest records it."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
