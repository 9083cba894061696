"""A sample of kernels built with -fsanitize=address,undefined into a C program: no findings.

Buffers are allocated at exactly the sizes the header declares, so any read or write past
them is an AddressSanitizer finding; UndefinedBehaviorSanitizer watches the index arithmetic.
"""

import subprocess

import pytest

import convgen
from convgen import codegen
from convgen.targets.c import C_TYPES
from tests.test_codegen import FAMILY_EXAMPLES, _shape

HARNESS = """#include <stdio.h>
#include <stdlib.h>
#include "{name}.h"

static {ctype} *filled(long count)
{{
    {ctype} *p = malloc(sizeof *p * (size_t)count);
    for (long i = 0; p && i < count; ++i) p[i] = ({ctype})(i % 7) - ({ctype})3;
    return p;
}}

int main(void)
{{
    const long batch = 2;
{allocations}
    {name}({arguments}, batch);
    double sum = 0;
    for (long i = 0; i < batch * {upper}_Y_SAMPLE; ++i) sum += (double)y[i];
    printf("%g\\n", sum);
{frees}
    return 0;
}}
"""


def _harness(kernel) -> str:
    upper, ctype = kernel.name.upper(), C_TYPES[kernel.dtype]
    sizes = {"x": f"batch * {upper}_X_SAMPLE", "w": f"{upper}_W_SIZE", "b": f"{upper}_B_SIZE",
             "y": f"batch * {upper}_Y_SAMPLE", "indices": f"batch * {upper}_INDICES_SAMPLE"}
    lines = []
    for arg in kernel.arguments:
        if arg == "indices":
            lines.append("    int64_t *indices = malloc(sizeof(int64_t) * "
                         f"(size_t)({sizes[arg]}));")
        else:
            lines.append(f"    {ctype} *{arg} = filled({sizes[arg]});")
    frees = "\n".join(f"    free({arg});" for arg in kernel.arguments)
    return HARNESS.format(name=kernel.name, ctype=ctype, upper=upper,
                          allocations="\n".join(lines), arguments=", ".join(kernel.arguments),
                          frees=frees)


SAMPLE = [(layer, "float32") for layer in FAMILY_EXAMPLES] + [
    (convgen.MaxPool2d(3, stride=2, padding=1, ceil_mode=True, return_indices=True), "int8"),
    (convgen.AdaptiveMaxPool2d((2, 3), return_indices=True), "uint8"),
    (convgen.Conv2d(2, 4, 3, stride=2, padding=((0, 2), (1, 0)), dilation=2, groups=2),
     "float64"),
]


def assert_clean_under_sanitizers(kernel, tmp_path):
    """Build ``kernel`` (named ``k``) with ASan and UBSan into the harness and run it."""
    (tmp_path / "k.c").write_text(kernel.source)
    (tmp_path / "k.h").write_text(kernel.header)
    (tmp_path / "main.c").write_text(_harness(kernel))
    program = tmp_path / "main"
    command = ["gcc", "-std=c99", "-g", "-O1", "-fsanitize=address,undefined",
               "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-I", str(tmp_path),
               str(tmp_path / "main.c"), str(tmp_path / "k.c"), "-lm", "-o", str(program)]
    built = subprocess.run(command, capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stderr == "", run.stderr


@pytest.mark.parametrize("layer, dtype", SAMPLE,
                         ids=[f"{layer.describe()}-{d}" for layer, d in SAMPLE])
def test_kernel_is_clean_under_address_and_undefined_sanitizers(layer, dtype, tmp_path):
    assert_clean_under_sanitizers(codegen.generate(layer, _shape(layer), dtype=dtype, name="k"),
                                  tmp_path)


def test_the_harness_catches_a_buffer_one_element_short(tmp_path):
    """Negative control: the same build flags report a write past a short output buffer."""
    kernel = codegen.generate(convgen.Conv2d(2, 3, 3, padding=1), (2, 5, 5), name="k")
    (tmp_path / "k.c").write_text(kernel.source)
    (tmp_path / "k.h").write_text(kernel.header)
    short = _harness(kernel).replace("filled(batch * K_Y_SAMPLE)", "filled(batch * K_Y_SAMPLE - 1)")
    (tmp_path / "main.c").write_text(short)
    program = tmp_path / "main"
    subprocess.run(["gcc", "-std=c99", "-g", "-O1", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-I", str(tmp_path), str(tmp_path / "main.c"),
                    str(tmp_path / "k.c"), "-lm", "-o", str(program)], check=True)
    run = subprocess.run([str(program)], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "heap-buffer-overflow" in run.stderr
