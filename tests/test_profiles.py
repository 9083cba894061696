"""The portable profile: strict ISO C99 with no extensions for every family and dtype, built
by gcc, clang and tcc and exact against the oracle, with a stack of a few scalars; asked for
through Python, layer files and the command line, and refused where it cannot hold.  The mcu
profile: the same C, the scalar schedule for 2-D float convolutions with a caller's scratch
buffer (its size in the header), and its flash and RAM in the report."""

import json
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import convgen
from convgen import codegen, profiles
from convgen.config import loads
from convgen.errors import SpecError
from convgen.runtime.cross import ARCHES, ProgramKernel, Toolchain
from convgen.verify import check_kernel
from tests.helpers import NET_TOML, ONE_TOML, ROOT

#: One layer of every family and dtype, with the options that change the loops.
LAYERS = [
    (convgen.Conv1d(2, 3, 3, stride=2, padding=1), (2, 11), "float32"),
    (convgen.Conv2d(3, 16, 3, padding=1), (3, 9, 10), "float32"),
    (convgen.Conv2d(4, 4, 3, padding="same", dilation=2, groups=4, bias=False), (4, 8, 7),
     "float64"),
    (convgen.Conv2d(2, 8, 3, padding=1, padding_mode="reflect"), (2, 6, 6), "float32"),
    (convgen.Conv3d(2, 2, 2), (2, 4, 4, 3), "float32"),
    (convgen.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1), (3, 4, 5),
     "float32"),
    (convgen.MaxPool2d(3, 2, padding=1, return_indices=True), (3, 9, 9), "float32"),
    (convgen.MaxPool2d(2, ceil_mode=True), (2, 7, 7), "int8"),
    (convgen.MaxPool1d(3), (2, 12), "uint8"),
    (convgen.AvgPool2d(3, 2, padding=1, count_include_pad=False), (2, 9, 8), "float32"),
    (convgen.LPPool1d(2, 3), (2, 10), "float64"),
    (convgen.AdaptiveAvgPool2d((3, 2)), (2, 7, 5), "float32"),
    (convgen.AdaptiveMaxPool3d(2), (1, 5, 4, 3), "float32"),
    (convgen.GlobalAvgPool(), (16, 5, 5), "float32"),
]

_STRICT = ("-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic")


def _portable(layer, shape, dtype, **more):
    return codegen.generate(layer, shape, dtype, profile="portable", **more)


def test_every_family_gets_a_portable_schedule_with_no_extension_in_its_text():
    defaults = set()
    for layer, shape, dtype in LAYERS:
        kernel = _portable(layer, shape, dtype)
        assert kernel.profile == "portable" and kernel.schedule == "reference"
        for text in (kernel.source, kernel.header):
            for extension in ("__attribute__", "vector_size", "__builtin", "immintrin",
                              "typeof", "asm"):
                assert extension not in text, (layer, extension)
        assert "Profile portable: strict ISO C99" in kernel.source
        defaults.add(codegen.generate(layer, shape, dtype).schedule)
    assert defaults - {"reference"}, "the default profile would be portable anyway: no test"


def test_the_default_profile_keeps_its_schedules_and_text():
    layer, shape = convgen.Conv2d(3, 16, 3, padding=1), (3, 9, 10)
    assert codegen.generate(layer, shape).source == \
        codegen.generate(layer, shape, profile="default").source
    assert "Profile" not in codegen.generate(layer, shape).source


def test_a_vector_schedule_asked_for_under_the_portable_profile_is_refused_by_name():
    layer, shape = convgen.Conv2d(3, 16, 3, padding=1), (3, 9, 10)
    with pytest.raises(SpecError, match=r"schedule='packed' uses GCC/Clang vector "
                       r"extensions; profile='portable' allows 'reference'"):
        _portable(layer, shape, "float32", schedule="packed")
    assert _portable(layer, shape, "float32", schedule="reference").schedule == "reference"
    with pytest.raises(SpecError, match=r"schedule='scalar' takes a caller's scratch buffer, "
                       r"which only profile 'mcu' \(or 'default'\) adds; profile='portable' "
                       r"allows 'reference'"):
        _portable(layer, shape, "float32", schedule="scalar")
    with pytest.raises(SpecError, match=r"schedule='packed' uses GCC/Clang vector "
                       r"extensions; profile='mcu' allows 'reference', 'scalar'"):
        codegen.generate(layer, shape, profile="mcu", schedule="packed")
    with pytest.raises(SpecError, match=r"profile='tiny' must be one of 'default', "
                       r"'portable', 'mcu'"):
        codegen.generate(layer, shape, profile="tiny")


def test_the_mcu_profile_takes_scalar_blocks_and_a_scratch_buffer_where_they_apply():
    """2-D float convolutions with zero padding get the scalar schedule, whose kernel takes
    the caller's scratch (the header's SCRATCH_SIZE: the weights' count); every other layer
    gets the portable profile's kernel, the same text but its banner."""
    scalar = 0
    for layer, shape, dtype in LAYERS:
        kernel = codegen.generate(layer, shape, dtype, profile="mcu")
        for text in (kernel.source, kernel.header):
            for extension in ("__attribute__", "vector_size", "__builtin", "immintrin",
                              "typeof", "asm"):
                assert extension not in text, (layer, extension)
        portable = _portable(layer, shape, dtype)
        if kernel.schedule == "scalar":
            scalar += 1
            assert isinstance(layer, convgen.Conv2d) and layer.padding_mode == "zeros"
            assert kernel.arguments[-1] == "scratch" and kernel.problem.scratch == \
                int(np.prod(layer.weight_shape))
            assert f"_SCRATCH_SIZE {kernel.problem.scratch}L" in kernel.header
            assert "float *restrict scratch, long batch)" in kernel.header.replace(
                "double", "float")
        else:
            assert kernel.schedule == portable.schedule and "SCRATCH" not in kernel.header
            assert kernel.source.replace("Profile mcu: ", "").split("\n", 5)[5] == \
                portable.source.replace("Profile portable: ", "").split("\n", 5)[5]
    assert scalar == 2  # the zero-padded Conv2d layers of LAYERS, float32 and float64


def test_a_scalar_kernel_gives_each_call_its_own_scratch_across_threads():
    """The Python call allocates the scratch per call (and per bound call): calls from
    several threads at once never share one, and give the single-threaded result."""
    layer, shape = convgen.Conv2d(8, 16, 3, padding=1), (8, 24, 24)
    kernel = convgen.compile(layer, shape, profile="mcu")
    assert kernel.generated.schedule == "scalar"
    rng = np.random.default_rng(3)
    cases = [(rng.standard_normal((2, *shape)).astype(np.float32),
              rng.standard_normal(layer.weight_shape).astype(np.float32),
              rng.standard_normal(16).astype(np.float32)) for _ in range(8)]
    alone = [kernel(*case) for case in cases]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            together = list(pool.map(lambda case: kernel(*case), cases))
            assert all(np.array_equal(a, b) for a, b in zip(alone, together))
    bound = [kernel.bind(*case) for case in cases]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda call: call().copy(), bound))
    assert all(np.array_equal(a, b) for a, b in zip(alone, together))


def _compilers():
    """gcc, clang and tcc where installed (tcc is strict C99 only through its own checks:
    it has no -pedantic; -Werror still fails on any warning)."""
    found = [Toolchain("gcc", "gcc", (*_STRICT[1:], "-O2")),
             Toolchain("clang", "clang", ("-O2",)), Toolchain("tcc", "tcc", ("-Wall",))]
    return [t for t in found if shutil.which(t.compiler)]


@pytest.mark.parametrize("profile", ["portable", "mcu"])
@pytest.mark.parametrize("index", range(len(LAYERS)), ids=lambda i: type(LAYERS[i][0]).__name__)
def test_portable_kernels_build_strict_under_every_compiler_and_are_exact(index, profile):
    layer, shape, dtype = LAYERS[index]
    kernel = codegen.generate(layer, shape, dtype, profile=profile)
    chains = _compilers()
    assert any(t.arch == "gcc" for t in chains)
    for chain in chains:
        built = ProgramKernel(kernel, Toolchain(chain.arch, chain.compiler, chain.flags,
                                                measures=False))
        outcome = check_kernel(built, cases=2, seed=index)
        assert outcome.passed, (chain.arch, outcome)


@pytest.mark.skipif(shutil.which("tcc") is None, reason="tcc is not installed")
def test_tcc_refuses_the_default_profiles_vector_schedules_but_not_the_portable_one(tmp_path):
    """The premise of the profile: tcc has no vector extensions."""
    layer, shape = convgen.Conv2d(3, 16, 3, padding=1), (3, 9, 10)
    for profile, builds in (("default", False), ("portable", True), ("mcu", True)):
        kernel = codegen.generate(layer, shape, profile=profile, name=f"k_{profile}")
        (tmp_path / f"{kernel.name}.c").write_text(kernel.source)
        (tmp_path / f"{kernel.name}.h").write_text(kernel.header)
        done = subprocess.run(["tcc", "-std=c99", "-Wall", "-Werror", "-c",
                               str(tmp_path / f"{kernel.name}.c"), "-o",
                               str(tmp_path / f"{kernel.name}.o")], capture_output=True)
        assert (done.returncode == 0) == builds, (profile, done.stderr)


def _measuring():
    chains = [Toolchain("x86-64", "gcc", ("-O3",))]
    if ARCHES["aarch64"].missing() is None:
        chains.append(ARCHES["aarch64"])
    return chains


@pytest.mark.parametrize("profile", ["portable", "mcu"])
def test_a_portable_kernel_keeps_its_stack_under_the_stated_bound(profile):
    for layer, shape, dtype in LAYERS:
        kernel = codegen.generate(layer, shape, dtype, profile=profile)
        for chain in _measuring():
            used = ProgramKernel(kernel, chain).footprint
            assert not used.dynamic and used.stack <= profiles.PORTABLE_STACK_BYTES, \
                (layer, chain.arch, used)
    # the default profile's packed weights are what the bound rules out
    packed = codegen.generate(convgen.Conv2d(16, 64, 3, padding=1), (16, 8, 8))
    assert packed.schedule == "packed"
    assert ProgramKernel(packed, _measuring()[0]).footprint.stack > \
        profiles.PORTABLE_STACK_BYTES


def test_the_profile_key_of_a_layer_file_is_validated_and_kept():
    text = ONE_TOML + 'profile = "portable"\n'
    (network,) = loads(text)
    assert network.profile == "portable"
    with pytest.raises(SpecError, match=r"layer 0 'one': profile='fast' must be one of "
                       r"'default', 'portable', 'mcu'"):
        loads(text.replace('"portable"', '"fast"'))
    model = """
[[model]]
name = "m"
input_shape = [3, 8, 8]
profile = "portable"
[[model.layers]]
type = "Conv2d"
in_channels = 3
out_channels = 16
kernel_size = 3
"""
    assert loads(model)[0].profile == "portable"
    with pytest.raises(SpecError, match=r"layer 0 has profile; in a model only the model"):
        loads(model.replace('profile = "portable"\n', "") + 'profile = "portable"\n')


def _cli(*args, cwd):
    return subprocess.run([str(ROOT / ".venv" / "bin" / "convgen"), *args], cwd=cwd,
                          capture_output=True, text=True)


def test_generate_profile_portable_writes_kernels_that_verify_and_are_not_stale(tmp_path):
    from convgen.emit import kernel_files, write
    from convgen.verify import verify_folder

    layers = tmp_path / "net.toml"
    layers.write_text(NET_TOML)
    planned = kernel_files([layers], ["c"], profile="portable")
    write(planned, tmp_path / "out")
    specs = sorted((tmp_path / "out").rglob("*.toml"))
    assert len(specs) == 2 and all('profile = "portable"' in s.read_text() for s in specs)
    for spec in specs:
        report = spec.with_suffix(".md").read_text()
        assert "- profile: portable" in report and "- C schedule: reference" in report
    outcomes, problems = verify_folder(tmp_path / "out")
    assert problems == [] and len(outcomes) == 2 and all(o.passed for o in outcomes)


def test_the_command_line_takes_profile_and_refuses_it_for_a_generated_folder(tmp_path):
    (tmp_path / "one.toml").write_text(ONE_TOML)
    done = _cli("generate", "one.toml", "--profile", "portable", "--target", "c", "-o", "out",
                "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Profile portable" in (tmp_path / "out" / "one" / "one.c").read_text()
    done = _cli("verify", "one.toml", "--profile", "portable", "--format", "json", "-q",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [(k["name"], k["passed"]) for k in json.loads(done.stdout)["kernels"]] == \
        [("one", True)]
    done = _cli("verify", "out", "--profile", "portable", cwd=tmp_path)
    assert done.returncode != 0 and "--profile applies to layer files" in done.stderr
    done = _cli("generate", "one.toml", "--profile", "tiny", cwd=tmp_path)
    assert done.returncode != 0 and "invalid choice: 'tiny'" in done.stderr


def test_compile_takes_the_profile_for_c_only():
    layer, shape = convgen.Conv2d(3, 16, 3, padding=1), (3, 9, 10)
    kernel = convgen.compile(layer, shape, profile="portable")
    assert kernel.generated.schedule == "reference"
    x = np.ones((1, *shape), np.float32)
    w = np.ones(layer.weight_shape, np.float32)
    b = np.zeros(16, np.float32)
    assert kernel(x, w, b)[0, 0, 4, 4] == 27
    with pytest.raises(SpecError, match="profile= apply to target='c'"):
        convgen.compile(layer, shape, target="cuda-cpu", profile="portable")


def test_the_readmes_c_caller_of_an_mcu_kernel_prints_the_oracles_sum(tmp_path):
    """examples/kws_main.c, as the README builds it, against the exact oracle."""
    from convgen.config import bundled_examples, load
    from convgen.emit import kernel_files, write
    from convgen.reference import forward

    write(kernel_files([bundled_examples()["mcu"]], ["c"]), tmp_path)
    program = tmp_path / "kws"
    subprocess.run(["gcc", *_STRICT, "-O2", "-I", str(tmp_path / "mcu"),
                    str(ROOT / "examples" / "kws_main.c"), str(tmp_path / "mcu" / "kws_conv1.c"),
                    "-o", str(program)], check=True)
    printed = subprocess.run([str(program)], capture_output=True, text=True, check=True).stdout
    network = load(bundled_examples()["mcu"])[0]
    _, layer, shape = next(iter(network.model.walk(network.input_shape)))
    x = (np.arange(np.prod(shape)) % 7 - 3).reshape(1, *shape).astype(np.float64)
    w = (np.arange(np.prod(layer.weight_shape)) % 5 - 2).reshape(layer.weight_shape)
    b = np.arange(layer.out_channels, dtype=np.float64)
    assert float(printed) == forward(layer, x, w.astype(np.float64), b).sum()
    assert "15128.0" in (ROOT / "README.md").read_text()  # what the README says it prints
    assert printed.strip() == "15128.0"


def test_a_report_measures_its_footprint_or_says_why_it_could_not(tmp_path, monkeypatch):
    """The default profile's report: measured with the host's gcc (the stack of a packed
    kernel's weights is what an embedded user must know).  Without the mcu profile's
    toolchain, its report says what is missing instead of failing the generation; --check
    names a footprint measured by another compiler."""
    import dataclasses
    import platform

    from convgen.emit import check, kernel_files, write
    from convgen.runtime import cross

    (tmp_path / "one.toml").write_text(ONE_TOML)
    (planned,) = kernel_files([tmp_path / "one.toml"], ["c"])
    report = planned.files["one.md"]
    assert f"## Footprint on {platform.machine()}\n\nMeasured with gcc " in report
    assert "(`-fstack-usage`); no scratch.  RAM in all: " in report
    assert report.rstrip().endswith("besides its arrays x, w, b, y.")
    write([planned], tmp_path / "out")
    version = report.split("Measured with gcc ")[1].split()[0]
    stale = tmp_path / "out" / "one" / "one.md"
    stale.write_text(report.replace(f"Measured with gcc {version}", "Measured with gcc 9.9.9"))
    (problem,) = check([planned], tmp_path / "out")
    assert problem.endswith(f"(its footprint was measured on {platform.machine()} with "
                            f"gcc 9.9.9; here: gcc {version} on {platform.machine()})")

    chain = cross.ARCHES["cortex-m4"]
    monkeypatch.setitem(cross.ARCHES, "cortex-m4",
                        dataclasses.replace(chain, compiler="no-such-arm-gcc"))
    (tmp_path / "one.toml").write_text(ONE_TOML + 'profile = "mcu"\n')
    (planned,) = kernel_files([tmp_path / "one.toml"], ["c"])
    assert "## Footprint on a Cortex-M4F\n\nNot measured: measuring a kernel's footprint on " \
        "cortex-m4 needs no-such-arm-gcc, not found on PATH; install them with: apt-get " \
        "install gcc-arm-none-eabi libnewlib-arm-none-eabi." in planned.files["one.md"]
