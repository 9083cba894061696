"""Verification on another architecture: ``convgen verify --arch aarch64`` builds each kernel
with its generated test program for AArch64 Linux, runs it under QEMU and judges it against
the exact oracle as the host build is judged, with its footprint measured by the cross
toolchain.  Random configs of every family and every fast schedule run there too."""

import json
import os
import shutil
import subprocess

import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import codegen, documents, profiles
from convgen.errors import ConvgenError
from convgen.runtime.cbuild import isa_rung
from convgen.runtime.cross import ARCHES, ProgramKernel, Toolchain, toolchain
from convgen.schedules import tuning
from convgen.strategies import blocked_convs, layers_with_inputs
from convgen.verify import check_kernel, verify_folder, verify_layers
from tests.helpers import NET_TOML, ROOT

AARCH64, CORTEX_M4 = ARCHES["aarch64"], ARCHES["cortex-m4"]
needs_aarch64 = pytest.mark.skipif(AARCH64.missing() is not None,
                                   reason=str(AARCH64.missing()))
needs_cortex_m4 = pytest.mark.skipif(CORTEX_M4.missing() is not None,
                                     reason=str(CORTEX_M4.missing()))
#: Random configs a property test builds for AArch64 (one program each, about a second).
EXAMPLES = 100 if os.environ.get("CI") else 6

#: int8 pools, the microcontroller's common case.
POOLS_INT8 = """
[[model]]
name = "net"
input_shape = [4, 12, 12]
dtype = "int8"
[[model.layers]]
type = "MaxPool2d"
kernel_size = 3
stride = 1
[[model.layers]]
type = "MaxPool2d"
kernel_size = 2
return_indices = true
"""


def _cli(*args, cwd):
    return subprocess.run([str(ROOT / ".venv" / "bin" / "convgen"), *args], cwd=cwd,
                          capture_output=True, text=True)


@needs_aarch64
def test_verify_arch_aarch64_runs_a_layer_file_under_qemu_and_measures_it(tmp_path):
    (tmp_path / "net.toml").write_text(NET_TOML)
    done = _cli("verify", "net.toml", "--arch", "aarch64", "--format", "json", "-q",
                cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    jsonschema.validate(document, documents.schema("verify"))
    assert document["arch"] == "aarch64" and document["failed"] == 0
    assert len(document["kernels"]) == 2
    conv, pool = document["kernels"]
    # the conv's default schedule packs its weights on the stack; the pool keeps scalars
    assert conv["footprint"]["stack"] > 1000 > pool["footprint"]["stack"]
    assert all(k["footprint"]["text"] > 100 for k in document["kernels"])
    text = _cli("verify", "net.toml", "--arch", "aarch64", "-q", cwd=tmp_path)
    assert text.returncode == 0 and "(aarch64: code+constants" in text.stdout


@needs_aarch64
def test_a_tampered_shipped_kernel_fails_on_aarch64(tmp_path):
    (tmp_path / "net.toml").write_text(NET_TOML)
    assert _cli("generate", "net.toml", "--target", "c", "-o", "out", "-q",
                cwd=tmp_path).returncode == 0
    outcomes, problems = verify_folder(tmp_path / "out", arch="aarch64")
    assert problems == [] and len(outcomes) == 2 and all(o.passed for o in outcomes)
    assert all(o.footprint is not None for o in outcomes)
    source = tmp_path / "out" / "net" / "net_1.c"
    text = source.read_text()
    assert text.count("v > best") == 2
    source.write_text(text.replace("v > best", "v < best"))  # a minimum pool
    outcomes, problems = verify_folder(tmp_path / "out", arch="aarch64")
    assert any("stale" in p and "net_1.c" in p for p in problems)
    assert [o.passed for o in outcomes] == [True, False]


def test_a_missing_toolchain_names_the_packages_to_install(monkeypatch):
    absent = Toolchain("aarch64", "no-such-gcc", (), ("no-such-qemu",), ("gcc-x", "qemu-x"),
                       "no-such-size")
    assert absent.missing() == ("--arch aarch64 needs no-such-gcc, no-such-qemu, no-such-size, "
                                "not found on PATH; install them with: apt-get install gcc-x "
                                "qemu-x")
    monkeypatch.setitem(ARCHES, "aarch64", absent)
    with pytest.raises(ConvgenError, match="apt-get install gcc-x qemu-x"):
        verify_layers([(convgen.MaxPool2d(2), (1, 4, 4))], arch="aarch64")
    with pytest.raises(ConvgenError, match=r"--arch 'riscv' must be one of native, aarch64"):
        toolchain("riscv")


def test_arch_is_refused_with_options_it_cannot_serve(tmp_path):
    (tmp_path / "net.toml").write_text(NET_TOML)
    done = _cli("verify", "net.toml", "--arch", "aarch64", "--target", "cuda-cpu",
                cwd=tmp_path)
    assert done.returncode != 0 and "it needs --target c, not --target cuda-cpu" in done.stderr
    done = _cli("verify", "net.toml", "--arch", "aarch64", "--exhaustive", cwd=tmp_path)
    assert done.returncode != 0 and "--exhaustive probes the kernel loaded into Python" in \
        done.stderr
    done = _cli("verify", "net.toml", "--arch", "sparc", cwd=tmp_path)
    assert done.returncode != 0 and "invalid choice: 'sparc'" in done.stderr


def test_a_program_that_dies_is_a_failed_kernel_not_a_crash(tmp_path):
    """The harness's exit status and short output are errors naming the kernel; the
    verdict is a failure that says so."""
    kernel = codegen.generate(convgen.MaxPool2d(2), (1, 4, 4), name="dies")
    built = ProgramKernel(kernel, Toolchain("gcc", shutil.which("gcc") or "gcc", ("-O1",),
                                            measures=False))
    built.program.write_text("#!/bin/sh\nexit 7\n")
    with pytest.raises(ConvgenError, match=r"dies on gcc exited with status 7 \(see stderr\)"):
        built(np.zeros((1, 1, 4, 4), np.float32))
    outcome = check_kernel(built)
    assert not outcome.passed and "exited with status 7" in outcome.detail
    built.program.write_text("#!/bin/sh\nprintf abc\n")
    with pytest.raises(ConvgenError, match=r"dies on gcc wrote 3 bytes; expected 16"):
        built(np.zeros((1, 1, 4, 4), np.float32))


@needs_cortex_m4
def test_verify_arch_cortex_m4_runs_portable_kernels_on_the_mps2_board(tmp_path):
    (tmp_path / "net.toml").write_text(POOLS_INT8)
    done = _cli("verify", "net.toml", "--arch", "cortex-m4", "--profile", "portable",
                "--format", "json", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["arch"] == "cortex-m4" and document["failed"] == 0
    assert [k["dtype"] for k in document["kernels"]] == ["int8", "int8"]
    assert all(0 < k["footprint"]["stack"] <= profiles.PORTABLE_STACK_BYTES
               for k in document["kernels"])
    # float32 and float64 (software double on the M4F), the profile's kernels
    items = [(convgen.Conv2d(3, 8, 3, padding=1, groups=1), (3, 7, 6)),
             (convgen.AvgPool1d(3, 2, padding=1), (2, 9))]
    for dtype in ("float32", "float64"):
        outcomes = verify_layers(items, dtype=dtype, profile="portable", arch="cortex-m4")
        assert all(o.passed and o.footprint.text > 0 for o in outcomes), outcomes


@needs_cortex_m4
@settings(max_examples=max(3, EXAMPLES // 4))
@given(case=layers_with_inputs(families=("conv", "pool", "adaptive")),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_random_portable_configs_are_exact_on_cortex_m4(case, dtype, seed):
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype, profile="portable")
    outcome = check_kernel(ProgramKernel(kernel, CORTEX_M4), cases=1, seed=seed)
    assert outcome.passed, (layer, shape, outcome)


@needs_cortex_m4
@settings(max_examples=max(3, EXAMPLES // 4))
@given(case=blocked_convs(), dtype=st.sampled_from(["float32", "float64"]),
       seed=st.integers(0, 2**16))
def test_random_scalar_configs_of_the_mcu_profile_are_exact_on_cortex_m4(case, dtype, seed):
    """The mcu profile's scalar blocks (2-D zero-padded convolutions of every option), with
    the scratch the test program allocates at the header's size, on the MPS2 board."""
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype, profile="mcu")
    assert kernel.schedule == "scalar"
    built = ProgramKernel(kernel, CORTEX_M4)
    assert built.footprint.scratch == kernel.problem.scratch * (4 if dtype == "float32" else 8)
    outcome = check_kernel(built, cases=1, seed=seed)
    assert outcome.passed, (layer, shape, outcome)


@needs_cortex_m4
def test_an_mcu_kernels_report_gives_its_flash_and_ram_measured_on_the_cortex_m4(tmp_path):
    from convgen.emit import kernel_files, write

    (tmp_path / "net.toml").write_text(NET_TOML.replace("input_shape = [3, 12, 12]\n",
                                                        'input_shape = [3, 12, 12]\n'
                                                        'profile = "mcu"\n'))
    write(kernel_files([tmp_path / "net.toml"], ["c"]), tmp_path / "out")
    reports = {p.stem: p.read_text() for p in (tmp_path / "out").rglob("*.md")}
    for name, report in reports.items():
        assert "## Footprint on a Cortex-M4F" in report, name
        assert "Measured with arm-none-eabi-gcc" in report and "RAM in all:" in report
    scalar = [r for r in reports.values() if "- C schedule: scalar" in r]
    assert scalar and all("the caller's scratch" in r for r in scalar)
    outcomes, problems = verify_folder(tmp_path / "out", arch="cortex-m4")
    assert problems == [] and all(o.passed for o in outcomes)


@needs_aarch64
def test_aarch64_takes_the_neon_rung_and_its_register_block():
    assert isa_rung(AARCH64.flags, AARCH64.compiler) == "neon"
    assert isa_rung(("-O2", "-mavx2", "-mfma")) == "avx2"
    assert isa_rung(("-O2", "-mavx")) == "other"
    layer, shape = convgen.Conv2d(8, 8, 3, padding=1), (8, 6, 30)  # 1 vector: 12 columns
    kernel = codegen.generate(layer, shape, name="neon_block")
    assert kernel.schedule == "packed"
    built = ProgramKernel(kernel, AARCH64)
    defined = subprocess.run([AARCH64.compiler, *AARCH64.flags, "-E", "-dM", "-x", "c", "-"],
                             input=kernel.source.split('#include "neon_block.h"')[1],
                             capture_output=True, text=True, check=True).stdout
    assert f"#define NEON_BLOCK_COLUMNS {tuning.PACKED_COLUMNS['neon'][1]}" in defined
    assert check_kernel(built, cases=2).passed


@needs_aarch64
@settings(max_examples=EXAMPLES)
@given(case=layers_with_inputs(families=("conv", "pool", "adaptive")),
       dtype=st.sampled_from(["float32", "float64"]), seed=st.integers(0, 2**16))
def test_random_configs_of_every_family_are_exact_on_aarch64(case, dtype, seed):
    layer, shape = case
    kernel = codegen.generate(layer, shape, dtype)
    outcome = check_kernel(ProgramKernel(kernel, AARCH64), cases=1, seed=seed)
    assert outcome.passed, (layer, shape, kernel.schedule, outcome)


@needs_aarch64
@pytest.mark.parametrize("schedule", ["blocked", "packed"])
@settings(max_examples=max(3, EXAMPLES // 2))
@given(case=blocked_convs(), seed=st.integers(0, 2**16))
def test_the_fast_schedules_are_exact_on_aarch64(schedule, case, seed):
    layer, shape = case
    kernel = codegen.generate(layer, shape, schedule=schedule)
    outcome = check_kernel(ProgramKernel(kernel, AARCH64), cases=1, seed=seed)
    assert outcome.passed, (layer, shape, outcome)


@needs_aarch64
def test_the_emulator_counts_the_kernels_own_instructions():
    """Twice the output channels run the same loop twice as often: about twice the
    instructions; the harness's reading and writing are not counted."""
    counts = []
    for channels in (4, 8):
        layer = convgen.Conv2d(2, channels, 3)
        kernel = codegen.generate(layer, (2, 10, 10), profile="portable", name="counted")
        built = ProgramKernel(kernel, AARCH64)
        x, w, b = (np.ones(shape, np.float32) for shape in
                   ((1, 2, 10, 10), layer.weight_shape, (channels,)))
        counts.append(built.instructions(x, w, b))
        assert built.instructions(x, w, b) == counts[-1]  # deterministic
    assert 1.8 < counts[1] / counts[0] < 2.2 and counts[0] > layer.macs((2, 10, 10)) / 8
    host = ProgramKernel(kernel, Toolchain("gcc", "gcc", ("-O1",), measures=False))
    with pytest.raises(ConvgenError, match="counting instructions needs an emulator"):
        host.instructions(x, w, b)
