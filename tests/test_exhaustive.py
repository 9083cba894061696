"""Translation validation (convgen.exhaustive, convgen.taint, verify --exhaustive): bundled
and random kernels are proved; planted bugs are caught and named; the limit refuses."""

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convgen.cli import main
from convgen.config import load
from convgen.errors import SpecError
from convgen.exhaustive import (
    EXHAUSTIVE_LIMIT,
    NOT_COVERED,
    Grouping,
    check_cost,
    probe_cost,
    validate,
)
from convgen.runtime.cbuild import Kernel, build_modules, compile_kernels
from convgen.spec import AvgPool2d, Conv2d, ConvTranspose1d, LPPool1d, MaxPool2d
from convgen.strategies import input_shape_for, layers_with_inputs
from convgen.taint import check_source
from convgen.verify import verify_folder
from tests.helpers import ROOT

GENERATED = ROOT / "generated"
FOLDERS = sorted(p for p in GENERATED.iterdir() if p.is_dir())


def _kernel(layer, shape, name="k", dtype="float32", schedule="reference"):
    (kernel,) = compile_kernels([(layer, shape, name)], dtype=dtype, schedule=schedule)
    return kernel


def _mutated(kernel, old: str, new: str):
    """The kernel with one occurrence of ``old`` in its C text replaced by ``new``, built."""
    g = kernel.generated
    assert old in g.source, old
    source = g.source.replace(old, new, 1)
    mutated = replace(g, source=source)
    return Kernel(mutated, build_modules([mutated]))


# --------------------------------------------------------------------------- bundled kernels


def test_every_bundled_kernel_under_the_limit_is_proved():
    """What CI runs: each bundled folder as shipped, every kernel under the limit proved,
    convolutions over it but under it grouped screened, the others reported as skipped
    (LeNet-5: C1, F6, output, S2, S4 proved; C3 screened; C5 skipped)."""
    verdicts = {}
    for folder in FOLDERS:
        outcomes, problems = verify_folder(folder, exhaustive=True)
        assert problems == []
        assert all(o.passed for o in outcomes), [o.detail for o in outcomes if not o.passed]
        verdicts.update({o.name: o.exhaustive for o in outcomes})
    proved = {name for name, verdict in verdicts.items() if verdict.startswith("proved")}
    assert {"lenet5_c1", "lenet5_f6", "lenet5_output", "lenet5_s2", "lenet5_s4",
            "inception_maxpool", "spp_adaptive_maxpool", "resnet_global_avgpool"} <= proved
    assert verdicts["lenet5_c3"].startswith("screened (")
    assert "10 taps a probe weighted by powers of 5" in verdicts["lenet5_c3"]
    assert verdicts["lenet5_c5"].startswith("skipped: too big for --exhaustive (cost 9.24e+11")
    assert verdicts["resnet_basic_block_conv1"].startswith("skipped: too big")


def test_the_static_check_passes_every_bundled_kernel():
    for folder in FOLDERS:
        for spec in sorted(folder.glob("*.toml")):
            (network,) = load(spec)
            ((_, layer, _),) = network.model.walk(network.input_shape)
            # max pools select by the data; so do the quantized kernels' requantization
            # (its clamps and roundings), which translation validation does not cover
            report = check_source(spec.with_suffix(".c").read_text(), network.name,
                                  selecting=layer.reduction == "max" or
                                  layer.quantized)
            assert report.passed, (spec.name, report.violations)
            assert "x" in report.sources


# --------------------------------------------------------------------------- random layers


@settings(max_examples=12, deadline=None)
@given(st.data())
def test_random_layers_of_every_family_are_proved(data):
    layer, _ = data.draw(layers_with_inputs(families=("conv", "pool", "adaptive")))
    shape = data.draw(input_shape_for(layer, max_extra=3, batch=False))
    schedule = data.draw(st.sampled_from(["auto", "reference"]))
    verdict = validate(_kernel(layer, shape, schedule=schedule))
    if layer.reduction == "lp":
        assert (verdict.status, verdict.detail) == ("not covered", NOT_COVERED)
    else:
        assert verdict.status == "proved", verdict.detail
        assert verdict.probes > 0


@settings(max_examples=10, deadline=None)
@given(st.data())
def test_grouped_and_per_tap_probes_agree_on_random_convolutions(data):
    layer, _ = data.draw(layers_with_inputs(families=("conv",)))
    shape = data.draw(input_shape_for(layer, max_extra=3, batch=False))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    kernel = _kernel(layer, shape, dtype=dtype, schedule=data.draw(st.sampled_from(
        ["auto", "reference"])))
    per_tap, grouped = validate(kernel, screen=False), validate(kernel, screen=True)
    assert per_tap.status == "proved", per_tap.detail
    assert grouped.status in ("proved", "screened"), grouped.detail  # one tap: proved
    assert grouped.probes <= per_tap.probes


def test_a_grouping_keeps_every_legal_sum_exact():
    for dtype, bits in (("float32", 24), ("float64", 53)):
        for bound in (1, 2, 5):
            g = Grouping.of(dtype, bound, 10**6)
            assert g.base == 2 * bound + 3 and g.size > 1
            top = (bound + 1) * sum(g.base ** j for j in range(g.size))
            assert top < 2 ** bits <= top + (bound + 1) * g.base ** g.size
    assert Grouping.of("float32", 1, 10) == Grouping(10, 5, 1)
    assert Grouping.of("int8", 1, 10).size == 1


@pytest.mark.parametrize("dtype", ["int8", "uint8", "float64"])
def test_max_pools_of_every_dtype_are_proved(dtype):
    layer = MaxPool2d(3, 2, padding=1, ceil_mode=True, return_indices=True)
    assert validate(_kernel(layer, (2, 6, 7), dtype=dtype)).status == "proved"


def test_the_winograd_schedule_is_proved():
    kernel = _kernel(Conv2d(2, 2, 3, padding=1), (2, 4, 6), schedule="winograd")
    assert "winograd" in kernel.generated.template
    assert validate(kernel).status == "proved"


# --------------------------------------------------------------------------- planted bugs


@pytest.fixture(scope="module")
def conv():
    return _kernel(Conv2d(2, 3, 3, padding=1), (2, 5, 6))


def test_a_swapped_weight_index_is_named(conv):
    verdict = validate(_mutated(conv, "3*k0 + k1", "k0 + 3*k1"))
    assert verdict.status == "failed"
    assert "tap w[0, 0, 0, 1] reaches y[0, 0, 1, 1] from x[0, 0, 0, 1] with coefficient 0; " \
           "the operator says 1" in verdict.detail
    assert "tap w[0, 0, 0, 1] reaches y[0, 0, 1, 1] from x[0, 0, 1, 0] with coefficient 1; " \
           "the operator says 0" in verdict.detail
    assert verdict.detail.startswith("864 wrong values: ") and "and 859 more" in verdict.detail


def test_an_off_by_one_tap_loop_is_named(conv):
    verdict = validate(_mutated(conv, "k1 < 3", "k1 < 2"))
    assert verdict.status == "failed"
    assert "tap w[0, 0, 0, 2] reaches y[0, 0, 1, 1] from x[0, 0, 0, 2] with coefficient 0; " \
           "the operator says 1" in verdict.detail


@pytest.mark.parametrize("old, new", [("3*k0 + k1", "k0 + 3*k1"), ("k1 < 3", "k1 < 2"),
                                      ("acc +=", "acc -="), ("acc += x[", "acc += 2 * x[")])
def test_grouped_probes_name_a_planted_bug_as_the_per_tap_probes_do(conv, old, new):
    """A wrong coefficient makes its group read back inexactly; the group is re-probed tap
    by tap, so the grouped path names the same taps, inputs and outputs in the same order."""
    mutated = _mutated(conv, old, new)
    grouped, per_tap = validate(mutated, screen=True), validate(mutated, screen=False)
    assert grouped.status == per_tap.status == "failed"
    assert grouped.detail == per_tap.detail and "the operator says" in grouped.detail


def test_a_wrong_bias_and_a_stray_input_term_are_named(conv):
    verdict = validate(_mutated(conv, "acc = b[oc]", "acc = b[oc] + b[0]"))
    assert "bias b[0] alone gives y[0, 0, 0, 0] = 2; the operator says 1" in verdict.detail
    verdict = validate(_mutated(conv, "acc += x[", "acc += x[0] + x["))
    assert "with every weight zero, y[0, 0, 1, 1] is 18; it must be 0" in verdict.detail


def test_a_wrong_divisor_and_a_wrong_tie_break_are_named():
    avg = _kernel(AvgPool2d(2, padding=1), (1, 3, 4))
    verdict = validate(_mutated(avg, "/ (float)(count)", "/ (float)(count + 1)"))
    assert ("y[0, 0, 0, 0] from x[0, 0, 0, 0] is 0.20000000298023224; the operator says "
            "0.25 (1/4 in float32)") in verdict.detail
    top = _kernel(MaxPool2d(2, 1, return_indices=True), (1, 3, 3))
    verdict = validate(_mutated(top, "v > best", "v >= best"))
    assert verdict.status == "failed"
    assert "indices[0, 0, 0, 1] is 5 when x[0, 0, 0, 0] is the only maximum; expected 1" \
        in verdict.detail


def test_a_data_dependent_branch_is_flagged(conv):
    planted = conv.generated.source.replace("for (long n = 0;", "if (x[0] > 0) return;\n"
                                            "    for (long n = 0;", 1)
    report = check_source(planted, conv.name)
    assert not report.passed
    assert "an if condition depends on the data (x tainted): if (x[0] > 0) return;" \
        in report.violations[0]
    verdict = validate(_mutated(conv, "for (long n = 0;", "if (x[0] > 0) return;\n"
                                "    for (long n = 0;"))
    assert verdict.status == "failed" and "data-dependent control flow" in verdict.detail


@pytest.mark.parametrize("old, new, what", [
    ("acc += x[", "acc += w[(long)x[0]] * x[", "an array index"),
    ("n < batch", "n < (long)w[0]", "a for header"),
    ("acc += x[", "acc += x[0] > 0 ? 1 : x[", "a ?: condition"),
    ("acc += x[", "acc += (w[1] && 1) + x[", "an operand of &&"),
])
def test_data_in_an_index_a_loop_or_a_condition_is_flagged(conv, old, new, what):
    report = check_source(conv.generated.source.replace(old, new, 1), conv.name)
    assert any(f": {what} depends on the data" in v for v in report.violations), report.violations


def test_a_max_pool_may_only_select_on_data():
    top = _kernel(MaxPool2d(3, 2, padding=1), (1, 5, 5))
    source = top.generated.source
    assert check_source(source, top.name, selecting=True).passed
    assert not check_source(source, top.name).passed  # a linear kernel may not compare data
    jump = check_source(source.replace("best = v;", "best = v; continue;", 1), top.name, True)
    assert "'continue' inside a data-dependent branch" in jump.violations[0]
    index = check_source(source.replace("y[", "y[have + ", 1), top.name, True)
    assert "an array index depends on the data (have tainted)" in index.violations[0]
    call = check_source(source.replace("have = 1;", "have = 1; f(best);", 1), top.name, True)
    assert "cannot classify" in call.violations[0]


def test_unknown_text_is_refused():
    with pytest.raises(SpecError, match="no definition of kernel 'k'"):
        check_source("int main(void) { return 0; }", "k")
    with pytest.raises(SpecError, match="cannot read the C text at line 1"):
        check_source("void k(const float *restrict x) { @ }", "k")


# --------------------------------------------------------------------------- the limit


def test_the_limit_refuses_big_layers_with_their_cost():
    layer = Conv2d(64, 64, 3, padding=1, bias=False)
    cost = probe_cost(layer, (64, 56, 56))
    assert cost > EXHAUSTIVE_LIMIT
    with pytest.raises(SpecError, match=r"Conv2d\(64, 64, 3, padding=1, bias=False\) on "
                       r"\(64, 56, 56\): too big for --exhaustive \(cost 8.57e\+17 > limit "
                       r"7e\+10\)"):
        check_cost(layer, (64, 56, 56))
    small = Conv2d(1, 1, 2)
    assert check_cost(small, (1, 3, 3)) == probe_cost(small, (1, 3, 3)) == 4 * 9 * (4 * 4 + 4)
    verdict = validate(_kernel(small, (1, 3, 3)), limit=100)
    assert (verdict.status, verdict.detail) == ("skipped", "too big for --exhaustive (cost "
                                                "720 > limit 100)")
    assert verdict.passed


def test_lp_pools_are_not_covered_and_other_targets_are_refused():
    verdict = validate(_kernel(LPPool1d(2, 2), (1, 6)))
    assert str(verdict) == f"not covered: {NOT_COVERED}"

    class Other:
        target, generated = "cuda-cpu", _kernel(ConvTranspose1d(1, 1, 2), (1, 3)).generated
    with pytest.raises(SpecError, match="target 'cuda-cpu' is not supported"):
        validate(Other())


# --------------------------------------------------------------------------- the command


def test_verify_exhaustive_end_to_end(tmp_path, capsys):
    layers = tmp_path / "small.toml"
    layers.write_text('[[model]]\nname = "net"\ninput_shape = [2, 6, 6]\n'
                      'layers = [\n  { name = "c", type = "Conv2d", in_channels = 2, '
                      'out_channels = 2, kernel_size = 3, padding_mode = "circular", '
                      'padding = 1 },\n'
                      '  { name = "p", type = "MaxPool2d", kernel_size = 2, '
                      'return_indices = true },\n]\n')
    out_dir = tmp_path / "out"
    assert main(["generate", str(layers), "-o", str(out_dir), "--target", "c"]) == 0
    capsys.readouterr()
    assert main(["verify", str(out_dir), "--exhaustive"]) == 0
    out = capsys.readouterr().out
    assert out.count("exhaustive: proved") == 2 and "2 passed, 0 failed" in out
    assert main(["verify", str(out_dir / "small" / "net_c.toml"), "--exhaustive", "--format",
                 "json"]) == 0
    (kernel,) = json.loads(capsys.readouterr().out)["kernels"]
    assert kernel["exhaustive"].startswith("proved (")
    source = out_dir / "small" / "net_c.c"
    source.write_text(source.read_text().replace("acc +=", "acc -=", 1))
    assert main(["verify", str(out_dir), "--exhaustive"]) == 1
    out = capsys.readouterr().out
    assert "translation validation failed:" in out and "the operator says" in out
    assert main(["verify", str(layers), "--exhaustive", "--target", "cuda-cpu"]) == 2
    assert "--exhaustive reads the C text" in capsys.readouterr().err
