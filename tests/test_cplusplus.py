"""Generated headers are includable from C++ (an ``extern "C"`` guard; ``restrict``, which C++
does not have, only in the C view), and a C++ program that calls a generated kernel gets
the bits the kernel gives through Python."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

import convgen
from convgen import codegen
from convgen.runtime.cbuild import STRICT_FLAGS, Kernel, build_modules

ROOT = Path(__file__).resolve().parent.parent
CXX_FLAGS = ("-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic")


def _compilers() -> list[str]:
    return [cxx for cxx in ("g++", "clang++") if shutil.which(cxx)]


@pytest.mark.skipif(not _compilers(), reason="no C++ compiler (g++ or clang++)")
def test_every_bundled_header_compiles_as_cpp_without_restrict(tmp_path):
    headers = sorted((ROOT / "generated").rglob("*.h"))
    assert len(headers) >= 30
    main = tmp_path / "all.cpp"
    main.write_text("".join(f'#include "{h}"\n' for h in headers) + "int main() { return 0; }\n")
    for cxx in _compilers():
        done = subprocess.run([cxx, *CXX_FLAGS, "-fsyntax-only", str(main)],
                              capture_output=True, text=True)
        assert done.returncode == 0, (cxx, done.stderr[-2000:])
    # what C++ sees: the prototypes without restrict, inside extern "C"
    seen = subprocess.run([_compilers()[0], "-std=c++11", "-E", "-P", str(main)],
                          capture_output=True, text=True, check=True).stdout
    assert "restrict" not in seen and seen.count('extern "C"') == len(headers)
    # ... and C still sees restrict
    c_view = subprocess.run(["gcc", "-std=c99", "-E", "-P", "-x", "c", str(main)],
                            capture_output=True, text=True, check=True).stdout
    assert c_view.count("*restrict x") == len(headers) and 'extern "C"' not in c_view


@pytest.mark.skipif(not _compilers(), reason="no C++ compiler (g++ or clang++)")
def test_a_cpp_program_calls_a_kernel_and_gets_its_bits(tmp_path):
    layer, shape = convgen.Conv2d(2, 3, 3, padding=1), (2, 5, 6)
    kernel = codegen.generate(layer, shape, name="cxx_conv")
    (tmp_path / "cxx_conv.c").write_text(kernel.source)
    (tmp_path / "cxx_conv.h").write_text(kernel.header)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, *shape)).astype(np.float32)
    w = rng.standard_normal(layer.weight_shape).astype(np.float32)
    b = rng.standard_normal(layer.out_channels).astype(np.float32)
    want = Kernel(kernel, build_modules([kernel]))(x, w, b)

    def array(name, values):
        return (f"static const float {name}[] = {{" +
                ", ".join(float(v).hex() for v in values.ravel()) + "};\n")

    (tmp_path / "main.cpp").write_text(
        '#include <cstdio>\n#include <vector>\n#include "cxx_conv.h"\n' +
        array("x", x) + array("w", w) + array("b", b) +
        "int main() {\n"
        "    std::vector<float> y(2 * CXX_CONV_Y_SAMPLE);\n"
        "    cxx_conv(x, w, b, y.data(), 2);\n"
        "    for (float v : y) std::printf(\"%a\\n\", (double)v);\n"
        "    return 0;\n}\n")
    subprocess.run(["gcc", *STRICT_FLAGS, "-O2", "-c", "cxx_conv.c", "-o", "cxx_conv.o"],
                   cwd=tmp_path, check=True)
    for cxx in _compilers():
        # C++17 for the hexadecimal float literals of the data, not for the header
        subprocess.run([cxx, *CXX_FLAGS, "-std=c++17", "-O2", "main.cpp", "cxx_conv.o", "-o",
                        "main"],
                       cwd=tmp_path, check=True)
        out = subprocess.run(["./main"], cwd=tmp_path, capture_output=True, text=True,
                             check=True).stdout.split()
        got = np.array([float.fromhex(v) for v in out], np.float32).reshape(want.shape)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), cxx
