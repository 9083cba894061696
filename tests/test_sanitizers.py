"""A sample of kernels built with -fsanitize=address,undefined into a C program: no findings.

Buffers are allocated at exactly the sizes the header declares, so any read or write past
them is an AddressSanitizer finding; UndefinedBehaviorSanitizer watches the index arithmetic.
"""

from dataclasses import replace

import pytest

import convgen
from convgen import codegen
from convgen.sanitize import findings, harness
from tests.test_codegen import FAMILY_EXAMPLES, _shape

SAMPLE = [(layer, "float32") for layer in FAMILY_EXAMPLES] + [
    (convgen.MaxPool2d(3, stride=2, padding=1, ceil_mode=True, return_indices=True), "int8"),
    (convgen.AdaptiveMaxPool2d((2, 3), return_indices=True), "uint8"),
    (convgen.Conv2d(2, 4, 3, stride=2, padding=((0, 2), (1, 0)), dilation=2, groups=2),
     "float64"),
]


def assert_clean_under_sanitizers(kernel, tmp_path):
    """Build ``kernel`` with ASan and UBSan into the harness and run it: no findings."""
    assert findings(kernel, tmp_path) == ""


@pytest.mark.parametrize("layer, dtype", SAMPLE,
                         ids=[f"{layer.describe()}-{d}" for layer, d in SAMPLE])
def test_kernel_is_clean_under_address_and_undefined_sanitizers(layer, dtype, tmp_path):
    assert_clean_under_sanitizers(codegen.generate(layer, _shape(layer), dtype=dtype, name="k"),
                                  tmp_path)


def test_the_harness_catches_a_buffer_one_element_short(tmp_path):
    """Negative control: the same build flags report a write past a short output buffer."""
    kernel = codegen.generate(convgen.Conv2d(2, 3, 3, padding=1), (2, 5, 5), name="k")
    short = harness(kernel).replace("filled_float(batch * K_Y_SAMPLE)",
                                    "filled_float(batch * K_Y_SAMPLE - 1)")
    assert short != harness(kernel)
    found = findings(kernel, tmp_path, short)
    assert "heap-buffer-overflow" in found, found


def test_the_harness_catches_a_write_past_a_kernel_s_own_array(tmp_path):
    """The packed schedule's accumulators live on the stack: one column too many is found."""
    kernel = codegen.generate(convgen.Conv2d(3, 16, 3, padding=1), (3, 9, 20), name="k",
                              schedule="packed")
    assert "for (long c = 0; c < cw; ++c) {" in kernel.source
    broken = replace(kernel, source=kernel.source.replace(
        "for (long c = 0; c < cw; ++c) {", "for (long c = 0; c <= cw; ++c) {"))
    found = findings(broken, tmp_path)
    assert "stack-buffer-overflow" in found or "out of bounds" in found, found
