"""The GPU kit (tools/gpu): what prepare downloads and checks, and run end to end with every
GPU step replaced by its CPU stand-in (--stub); budgets, failures and the summary."""

import json
import re
import subprocess
import sys
import zipfile
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path

import pytest
from helpers import ROOT

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

TOOLS = ROOT / "tools" / "gpu"


def _script(name: str):
    """A kit script (no .py suffix) as a module."""
    sys.path.insert(0, str(TOOLS))
    loader = SourceFileLoader(f"gpu_{name}", str(TOOLS / name))
    module = module_from_spec(spec_from_loader(loader.name, loader))
    sys.modules[loader.name] = module  # dataclasses look their module up
    loader.exec_module(module)
    return module


prepare, run = _script("prepare"), _script("run")
kit = prepare.kit  # the module the scripts share


def _name(requirement: str) -> str:
    return re.split(r"[<>=;\[ ]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def test_every_cuda_marked_test_is_in_the_files_the_kit_runs():
    marked = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                    if re.search(r"^@pytest\.mark\.cuda$", p.read_text(encoding="utf-8"),
                                 re.M))
    assert marked == sorted(kit.CUDA_TEST_FILES)


def test_the_kit_carries_every_dependency_the_gpu_machine_lacks():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    needed = {_name(r) for r in project["dependencies"] if "python_version <" not in r}
    carried = {_name(w) for w in kit.WHEELS} | set(kit.ON_THE_MACHINE)
    assert needed <= carried, needed - carried
    assert "pycuda" in kit.SDISTS and "jsonschema" in kit.WHEELS  # the cuda extra, the tests


def test_prepare_dry_run_prints_the_downloads_and_the_limit():
    done = subprocess.run([sys.executable, str(TOOLS / "prepare"), "--dry-run"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "--no-binary pycuda" in lines[0] and lines[0].endswith(" pycuda")
    assert "--python-version 3.12" in lines[1] and "--only-binary=:all:" in lines[1]
    assert all(name in lines[1].split() for name in kit.WHEELS)
    assert lines[2].startswith("limit: 64 MiB with the repository")


def test_prepare_refuses_a_kit_over_the_limit(tmp_path, monkeypatch):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "big.whl").write_bytes(b"\0" * 4096)
    assert prepare.check_size(tmp_path, 1000) is None
    monkeypatch.setattr(kit, "CARRY_LIMIT", 4096)
    problem = prepare.check_size(tmp_path, 1000)
    assert problem and "more than the 0 MiB that travel with the working tree" in problem


def _packages(folder: Path) -> Path:
    """A carried folder with one tiny wheel and its manifest."""
    wheels = folder / "wheels"
    wheels.mkdir(parents=True)
    with zipfile.ZipFile(wheels / "kitprobe-1.0-py3-none-any.whl", "w") as archive:
        archive.writestr("kitprobe.py", "VALUE = 42\n")
    (folder / "manifest.json").write_text(json.dumps(prepare.manifest(folder)))
    return folder


def _steps(out: Path) -> dict:
    return {s["name"]: s for s in json.loads((out / "summary.json").read_text())["steps"]}


def test_a_step_over_its_budget_is_stopped_and_the_run_goes_on(tmp_path):
    packages = _packages(tmp_path / "packages")
    runner = run.Run(tmp_path / "out", packages, stub=True, limit=120)
    runner.plan = lambda: [
        (run.Step("slow", 1.5, [sys.executable, "-c", "import time; time.sleep(60)"]), None),
        (run.Step("broken", 10, [sys.executable, "-c", "raise SystemExit('no device')"]), None),
        (run.Step("install", 10, what="unpack"), runner.install),
        (run.Step("probe", 10, [sys.executable, "-c", "import kitprobe; print(kitprobe.VALUE)"]),
         None)]
    assert runner.execute() == 1
    steps = _steps(tmp_path / "out")
    assert steps["slow"]["status"] == "timeout" and steps["slow"]["seconds"] < 10
    assert steps["broken"]["status"] == "failed" and "no device" in steps["broken"]["detail"]
    assert steps["install"]["status"] == "passed"
    assert steps["probe"]["status"] == "passed" and steps["probe"]["detail"] == "42"
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert "| slow |" in summary and "**timeout**" in summary
    assert (tmp_path / "out" / "logs" / "probe.log").read_text().endswith("42\n")


def test_a_tampered_carried_package_fails_the_install(tmp_path):
    packages = _packages(tmp_path / "packages")
    (packages / "wheels" / "kitprobe-1.0-py3-none-any.whl").write_bytes(b"PK\x05\x06" + b"\0" * 18)
    runner = run.Run(tmp_path / "out", packages, stub=True)
    step = runner.run(run.Step("install", 10), runner.install)
    assert step.status == "failed" and "differs from the manifest" in step.detail


def test_no_time_left_skips_the_step(tmp_path):
    runner = run.Run(tmp_path / "out", tmp_path, stub=True, limit=run.RESERVE + 1)
    step = runner.run(run.Step("late", 60, [sys.executable, "-c", "pass"]))
    assert step.status == "skipped" and "no time left" in step.detail


def test_the_whole_run_with_the_gpu_stubbed(tmp_path):
    """tools/gpu/run --stub end to end: every step, its CPU stand-in, the summary."""
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(TOOLS / "run"), str(out), "--stub",
                           "--packages", str(_packages(tmp_path / "packages"))],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    steps = _steps(out)
    assert list(steps) == ["machine", "install", "build-pycuda", "import", "pytest-cuda",
                           "verify-cuda", "memcheck", "racecheck", "bench-cuda"]
    assert steps["build-pycuda"]["status"] == "skipped"
    assert all(s["status"] == "passed" for n, s in steps.items() if n != "build-pycuda")
    assert steps["pytest-cuda"]["facts"]["tests"] == 1 and steps["pytest-cuda"]["facts"][
        "failures"] == 0
    assert steps["verify-cuda"]["facts"]["failed"] == 0 and steps["verify-cuda"]["facts"][
        "passed"] >= 7
    for name in ("summary.md", "summary.json", "verify-cuda.json", "verify-cuda.xml",
                 "pytest-cuda.xml", "bench-cuda.json"):
        assert (out / name).is_file(), name
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# convgen on a GPU (stub: no GPU)") and "## Benchmark" in summary


@pytest.mark.skipif(not (TOOLS / "packages" / "manifest.json").is_file(),
                    reason="run tools/gpu/prepare first (downloads about 32 MiB)")
def test_the_prepared_kit_fits_and_matches_its_manifest():
    folder = TOOLS / "packages"
    manifest = kit.read_manifest(folder)
    assert prepare.check_size(folder, prepare.repository_bytes()) is None
    names = {item["path"].split("/")[-1].split("-")[0].lower().replace("_", "-")
             for item in manifest["files"]}
    assert {_name(w) for w in kit.WHEELS} | {"pycuda"} <= names
    assert all(item["path"].endswith((".tar.gz", "-any.whl")) or "cp312" in item["path"]
               or "py3-none-manylinux" in item["path"] for item in manifest["files"])


def test_the_driver_library_gets_the_name_the_linker_wants(tmp_path):
    runner = run.Run(tmp_path / "out", tmp_path, stub=True)
    driver = tmp_path / "libcuda.so.1"
    driver.write_bytes(b"")
    only_driver = (f"\tlibcuda.so.1 (libc6,x86-64) => {driver}\n"
                   "\tlibc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6\n")
    folder = runner.driver_library_dir(str(tmp_path / "cuda"), only_driver)
    assert Path(folder, "libcuda.so").resolve() == driver
    both = only_driver + f"\tlibcuda.so (libc6,x86-64) => {tmp_path / 'libcuda.so'}\n"
    assert runner.driver_library_dir(str(tmp_path / "cuda"), both) is None
    assert runner.driver_library_dir(str(tmp_path / "cuda"), "") is None
    stubs = tmp_path / "cuda" / "lib64" / "stubs"
    stubs.mkdir(parents=True)
    (stubs / "libcuda.so").write_bytes(b"")
    assert runner.driver_library_dir(str(tmp_path / "cuda"), only_driver) is None


def test_parallel_setup_builds_an_extension_from_several_files(tmp_path):
    """tools/gpu/parallel_setup.py: each extension's files compiled in parallel, then the
    extension built as setup.py would (PyCUDA's build on the GPU machine uses it)."""
    for index in range(3):
        (tmp_path / f"part{index}.c").write_text(f"int part{index}(void) {{ return {index}; }}\n")
    (tmp_path / "main.c").write_text(
        "#include <Python.h>\nint part0(void); int part1(void); int part2(void);\n"
        "static PyObject *total(PyObject *s, PyObject *a) {\n"
        "    return PyLong_FromLong(part0() + part1() + part2()); }\n"
        "static PyMethodDef methods[] = {{\"total\", total, METH_NOARGS, \"\"}, {0}};\n"
        "static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, \"probe\", \"\", -1,"
        " methods};\nPyMODINIT_FUNC PyInit_probe(void) { return PyModule_Create(&module); }\n")
    (tmp_path / "helper_module.py").write_text("NAME = 'probe'\n")  # setup.py's neighbour
    (tmp_path / "setup.py").write_text(
        "from setuptools import Extension, setup\nfrom helper_module import NAME\n"
        "setup(name=NAME, ext_modules=[Extension(NAME, ['main.c', 'part0.c', 'part1.c',"
        " 'part2.c'])])\n")
    done = subprocess.run([sys.executable, str(TOOLS / "parallel_setup.py"), "3", "build_ext",
                           "--inplace"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    probe = subprocess.run([sys.executable, "-c", "import probe; print(probe.total())"],
                           cwd=tmp_path, capture_output=True, text=True)
    assert probe.stdout.strip() == "3", probe.stderr
