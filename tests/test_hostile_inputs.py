"""Reproducers of the hardening issue's items 7 (sizes the C types cannot hold) and 8 (parser
and spec inputs), each a regression test: every one is refused with a SpecError (on the
command line ``convgen: error: ...``, exit status 2) naming the parameter and the limit, or,
where the kernel is legal, builds and is proved with its no-overflow side conditions."""

import shutil
import subprocess

import numpy as np
import pytest
import sympy

import convgen
from convgen import proofs
from convgen import symbolic as sym
from convgen.cli import main
from convgen.codegen import generate
from convgen.config import loads, parse_layer, parse_shape
from convgen.lower import lower
from convgen.runtime.cbuild import STRICT_FLAGS

LIMIT = "at most 2,147,483,647"
LONG = "a kernel indexes with a 64-bit long, at most 9,223,372,036,854,775,807"


def _cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, *argv) -> str:
    """The error the CLI prints for ``argv``: status 2, one line, no traceback."""
    code, out, err = _cli(capsys, *argv)
    assert code == 2 and err.startswith("convgen: error: ") and "Traceback" not in err, err
    assert "proved" not in out
    return err


# --------------------------------------------------------------------------- 7. sizes


@pytest.mark.parametrize("make, named", [
    (lambda: convgen.Conv2d(1, 1, 3, stride=10**20), "stride=100000000000000000000"),
    (lambda: convgen.AvgPool2d(2, divisor_override=2**70),
     "divisor_override=1180591620717411303424"),
    (lambda: convgen.Conv2d(1, 1, 3, padding=10**12), "padding=1000000000000"),
    (lambda: convgen.Conv2d(1, 1, 3, dilation=2**31), "dilation=2147483648"),
])
def test_absurd_parameters_are_refused_at_spec_time(make, named):
    with pytest.raises(convgen.SpecError, match=LIMIT) as info:
        make()
    assert named in str(info.value)


def test_an_absurd_stride_is_an_error_of_prove_not_a_proof(capsys):
    err = _refused(capsys, "prove", "--layer", "Conv2d(1, 1, 3, stride=100000000000000000000)")
    assert "stride=100000000000000000000" in err and LIMIT in err


def test_a_50000_square_input_builds_with_long_size_checks(tmp_path):
    """The header's size check overflowed ``int`` (50000 * 50000): it multiplies ``long``
    literals now, and asks for a 64-bit ``long`` since the sizes need more than 32 bits."""
    kernel = generate(convgen.Conv2d(1, 1, 3), (1, 50000, 50000), name="big")
    assert "50000L * 50000L" in kernel.header
    assert "(sizeof(long) >= 8) ? 1 : -1" in kernel.header
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    header = tmp_path / "big.h"
    header.write_text(kernel.header)
    done = subprocess.run(["gcc", *STRICT_FLAGS, "-fsyntax-only", str(header)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("layer, shape, message", [
    (convgen.Conv3d(2**20, 1, 1), (2**20, 2**20, 2**20, 2**20),
     "input_shape (one sample) holds 1,208,925,819,614,629,174,706,176 elements"),
    (convgen.ConvTranspose2d(1, 1, 3, stride=2**30), (1, 2**30, 2**30),
     "output shape (one sample) holds"),
    (convgen.Conv3d(2**20, 2**20, 2**10), (2**20, 2**10, 2**10, 2**10),
     "weight_shape holds 1,180,591,620,717,411,303,424 elements"),
    (convgen.Conv3d(2, 1, (3, 1, 1), stride=(4, 1, 1), padding=(2, 0, 0)),
     (2, 1, 2**31 - 1, 2**31 - 1), "flat index into one sample of x reaches"),
])
def test_sizes_past_a_64_bit_long_are_refused_by_lower(layer, shape, message):
    with pytest.raises(convgen.SpecError) as info:
        lower(layer, shape)
    assert message in str(info.value) and LONG in str(info.value)


def test_the_flat_index_limit_counts_the_padding():
    """The same layer on an input half as wide lowers: only the padded taps' flat index
    crossed the limit above, the sample itself (2 * (2**31 - 1)**2 elements) fits."""
    problem = lower(convgen.Conv3d(2, 1, (3, 1, 1), stride=(4, 1, 1), padding=(2, 0, 0)),
                    (2, 1, 2**31 - 1, 2**30))
    assert problem.out == (1, 1, 2**31 - 1, 2**30)
    assert sym.flat_index_bound([(0, 1), (-2, 0), (0, 9), (0, 9)], (2, 1, 10, 10)) == 399


def test_a_padded_extent_past_a_32_bit_int_is_refused():
    with pytest.raises(convgen.SpecError, match=r"padded extent 3,221,225,472 in dim 0 .*"
                       r"exceeds 2,147,483,647"):
        lower(convgen.Conv2d(1, 1, 3, padding=2**30), (1, 2**30, 8))


def test_prove_with_an_input_shape_past_the_limit_is_an_error(capsys):
    err = _refused(capsys, "prove", "--layer",
                   "Conv3d(2, 1, (3, 1, 1), stride=(4, 1, 1), padding=(2, 0, 0))",
                   "--input-shape", "2,1,2147483647,2147483647")
    assert "flat index" in err and "64-bit long" in err


def test_a_layer_no_input_within_the_limits_fits_is_refuted_not_proved(capsys):
    """Dilation 2**31 - 1 needs an input of 2**32 - 1 or more, past every size lower takes:
    the statement was proved vacuously; now it is refuted, saying why."""
    results = proofs.layer_statements(convgen.Conv2d(1, 1, 3, dilation=2**31 - 1))
    assert [r.status for r in results] == ["refuted", "refuted"]
    assert "no kernel exists" in results[0].reason
    code, out, _ = _cli(capsys, "prove", "--layer", "Conv2d(1, 1, 3, dilation=2147483647)")
    assert code == 1 and "0 proved" in out and "UNEXPECTED" in out


def test_layer_statements_claim_no_overflow_under_the_limits_of_lower(monkeypatch):
    layer = convgen.ConvTranspose1d(1, 1, 3, stride=2**31 - 1)
    (result,) = proofs.layer_statements(layer)
    assert result.status == "proved" and "fits a 64-bit long" in result.statement
    assert "n0 <= 2147483647" in result.assumptions
    # Were lower to take inputs up to 2**62, the output size (n - 1) * stride + 3 would
    # overflow: the claim is checked, not assumed.
    monkeypatch.setattr(sym, "INT_MAX", 2**62)
    (result,) = proofs.layer_statements(layer)
    assert result.status == "refuted"
    n = result.counterexample["n0"]
    assert sym.conv_transpose_output_size(n, 3, 2**31 - 1, 1, 0, 0, 0) > sym.LONG_MAX


# --------------------------------------------------------------------------- 8. inputs


@pytest.mark.parametrize("layer, message", [
    ("Conv2d(1, 1, 3" + ", 1" * 33333 + ")",
     "layer expression of 100,014 characters is too long: at most 10,000"),
    ("Conv2d(1, 1, " + "+".join(["1"] * 30000) + ")", "is too long: at most 10,000"),
    ("Conv2d(1, 1, " + "+".join(["1"] * 3000) + ")",
     "holds more than 256 terms (numbers, names, strings): at most 256"),
    ("Conv2d(1, 1, " + "9" * 5000 + ")", "holds a number of 5,000 digits: at most 12"),
    ("Conv2d(1, 1, 0x" + "f" * 5000 + ")", "holds a number of 5,000 digits: at most 12"),
    ("Conv2d(1, 1, " + "_".join(["9"] * 4000) + ")",
     "holds a number of 4,000 digits: at most 12"),
    ("Conv2d(1, 1, " + "(" * 300 + "3" + ")" * 300 + ")",
     "nests brackets more than 16 deep: at most 16"),
    ("Conv2d(1, 1, " + "[" * 20 + "3" + "]" * 20 + ")", "more than 16 deep"),
    ("Conv2d(1, 1, 3, bias=True, bias=False)", "bias given twice"),
    ("Conv2d(1, 1, 3, padding=b'ab')", "padding=b'ab' must be an int >= 0"),
    ("Conv2d(1, 1, b'ab')", "kernel_size=b'ab' must be a positive int"),
])
def test_hostile_layer_expressions_are_clear_errors(capsys, layer, message):
    with pytest.raises(convgen.SpecError) as info:
        parse_layer(layer)
    assert message in str(info.value)
    assert len(str(info.value)) < 400  # the expression is shortened, not echoed
    assert message in _refused(capsys, "shape", layer, "--input-shape", "1,8,8")


@pytest.mark.parametrize("shape, message", [
    ("3,--32,32", "entry 1 '--32' is neither"),
    ("3,,32,32", "entry 1 is empty"),
    ("3," + "9" * 5000 + ",32", "entry 1 holds a number of 5,000 digits: at most 12"),
    (",".join(["3"] * 3000), "holds 3,000 entries: at most 256"),
])
def test_hostile_input_shapes_are_clear_errors(capsys, shape, message):
    with pytest.raises(convgen.SpecError) as info:
        parse_shape(shape)
    assert message in str(info.value)
    assert message in _refused(capsys, "shape", "Conv2d(3, 1, 3)", "--input-shape", shape)


def test_a_negative_size_is_left_to_the_spec_which_names_it(capsys):
    assert parse_shape("3,-32,32") == (3, -32, 32)
    err = _refused(capsys, "shape", "Conv2d(3, 1, 3)", "--input-shape", "3,-32,32")
    assert "input_shape spatial[0]=-32 must be a positive int" in err


def test_a_shape_must_be_text():
    with pytest.raises(convgen.SpecError, match="input shape None must be a string"):
        parse_shape(None)
    with pytest.raises(convgen.SpecError, match="layer 3 must be a string"):
        parse_layer(3)


@pytest.mark.parametrize("text, message", [
    ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nest too deeply to read: at most 16 deep"),
    ("x = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n", "at most 16 deep"),
    ("x = " + "[" * 20 + "]" * 20 + "\n", "nest more than 16 deep: at most 16"),
    ('[[layer]]\nname = "a"\ntype = "Conv2d"\ninput_shape = [1, 8, 8]\nin_channels = 1\n'
     "out_channels = 1\nkernel_size = " + "[" * 30 + "3" + "]" * 30 + "\n", "at most 16"),
])
def test_deeply_nested_toml_is_a_clear_error(tmp_path, capsys, text, message):
    with pytest.raises(convgen.SpecError, match=message):
        loads(text)
    path = tmp_path / "deep.toml"
    path.write_text(text)
    assert message in _refused(capsys, "summary", str(path))


def test_toml_numbers_past_the_limits_are_clear_errors(tmp_path, capsys):
    """tomllib converts a 5,000-digit int itself, and Python refuses past 4,300 digits; a
    hex int it converts is quoted by its number of digits."""
    with pytest.raises(convgen.SpecError, match="not valid TOML: Exceeds the limit"):
        loads("x = " + "9" * 5000)
    text = ('[[layer]]\nname = "a"\ntype = "Conv2d"\ninput_shape = [1, 8, 8]\nin_channels = 1\n'
            "out_channels = 1\nkernel_size = 0x" + "f" * 5000 + "\n")
    path = tmp_path / "big.toml"
    path.write_text(text)
    assert "kernel_size=<an int of about 6,021 digits>" in _refused(capsys, "summary", str(path))


@pytest.mark.parametrize("make, message", [
    (lambda: convgen.Conv2d(3, 1, 3).output_shape((3, sympy.nan, 32)),
     "input_shape spatial[0]=nan must be a positive int"),
    (lambda: convgen.Conv2d(3, 1, 3).output_shape((3, b"a", 32)),
     "input_shape spatial[0]=b'a' must be a positive int"),
    (lambda: convgen.Conv2d(3, 1, 3, padding_mode=np.array(["zeros", "reflect"])),
     "padding_mode=array(['zeros', 'reflect'], dtype='<U7') must be one of"),
    (lambda: convgen.LPPool2d(1e300, 2), "norm_type=1e+300 must be a finite number"),
    (lambda: generate(convgen.LPPool2d(1e300, 2), (1, 4, 4)), "norm_type=1e+300"),
    (lambda: convgen.Conv2d(1, 1, b"ab"), "kernel_size=b'ab'"),
    (lambda: convgen.Conv2d(1, 1, 3, padding=b"ab"), "padding=b'ab'"),
    (lambda: convgen.Conv2d(1, 1, 3, padding=(b"a", b"b")), "padding=(b'a', b'b')"),
    (lambda: convgen.Conv2d(1, 1, bytearray(b"ab")), "kernel_size=bytearray(b'ab')"),
    (lambda: convgen.Conv2d(1, 1, memoryview(b"ab")), "kernel_size=<memory at"),
    (lambda: convgen.Conv2d(1, 1, 3, stride=10**5000),
     "stride=<an int of about 5,001 digits> must be a positive int"),
    (lambda: convgen.Conv2d(10**5000, 1, 3), "in_channels=<an int of about 5,001 digits>"),
    (lambda: convgen.LPPool2d(10**5000, 2), "norm_type=<an int of about 5,001 digits>"),
    (lambda: convgen.AdaptiveAvgPool2d((10**5000, 1)),
     "output_size=(<an int of about 5,001 digits>, 1) must be a positive int"),
    (lambda: convgen.Conv2d(1, 1, 3).output_shape((1, sympy.Integer(10**5000), 3)),
     "spatial[0]=<an int of about 5,001 digits>"),
    (lambda: convgen.Conv2d(1, 1, tuple(range(3000))),
     "kernel_size=(0, 1, 2, 3, 4, 5, 6, 7, ...) has 3000 entries"),
    (lambda: convgen.spec.padding_from_onnx("NOTSET", 5), "pads=5 must be a sequence"),
])
def test_values_that_are_not_sizes_are_spec_errors(make, message):
    with pytest.raises(convgen.SpecError) as info:
        make()
    assert message in str(info.value)


def test_an_array_subclass_that_lies_about_its_shape_is_refused():
    """The kernel would read 64 * 64 floats from a 2 * 2 buffer."""
    class Liar(np.ndarray):
        @property
        def shape(self):
            return (1, 1, 64, 64)

    kernel = convgen.compile(convgen.MaxPool2d(2), (1, 64, 64))
    small = np.zeros((1, 1, 2, 2), np.float32).view(Liar)
    with pytest.raises(convgen.SpecError, match="x must be a numpy.ndarray .not a subclass"):
        kernel(small)
    assert kernel(np.zeros((1, 1, 64, 64), np.float32)).shape == (1, 1, 32, 32)
