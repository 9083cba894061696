"""Generated CUDA: nvcc checks, the exact CUDA text run on the CPU against the exact oracle,
Oclgrind race and bounds checks, bounds proofs, and the GPU path (marked ``cuda``)."""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st

import convgen
from convgen import codegen, cudagen
from convgen import symbolic as sym
from convgen.bounds import prove_bounds
from convgen.config import load
from convgen.cudagen import generate_cuda
from convgen.emit import named_layers
from convgen.errors import BuildError, ConvgenError, SpecError
from convgen.runtime import nvcc, pocl
from convgen.runtime.cbuild import compile_kernels
from convgen.strategies import FAMILIES, layers_with_inputs
from convgen.verify import check_kernel, race_check
from tests.conftest import BULK, BULK_EXAMPLES, CUDA_EXAMPLES
from tests.helpers import ROOT, cuda_kernels
from tests.test_codegen import FAMILY_EXAMPLES, _sample, _shape

GENERATED = sorted((ROOT / "generated").rglob("*.cu"))


def _needs_nvcc():
    try:
        nvcc.nvcc()
    except BuildError as error:
        pytest.skip(str(error))


def _needs_pocl(device="pocl"):
    reason = pocl.available(device)
    if reason:
        pytest.skip(reason)


def _generated_kernel(path: Path):
    """The CUDA kernel that ``generated/.../NAME.cu`` must be, from its ``NAME.toml``."""
    spec = path.with_suffix(".toml")
    (network,) = load(spec)
    ((name, _, _, layer, shape, _),) = named_layers([network], spec.parent.name)
    return generate_cuda(layer, shape, dtype=network.dtype, name=name)


# --------------------------------------------------------------------------- generation


def test_cuda_text_has_no_include_and_no_extern_c():
    for layer in FAMILY_EXAMPLES:
        source = generate_cuda(layer, _shape(layer)).source
        code = re.sub(r"/\*[\s\S]*?\*/", "", source)  # the comments may mention them
        assert "#include" not in code and 'extern "C"' not in code
        assert re.search(r"__global__ void CONVGEN_BLOCK\(\d+\) \w+_direct\(", source)


def test_direct_kernel_work_is_the_c_template_macro():
    """The per-output code of the direct CUDA kernel is the C kernel's, line for line."""
    layer = convgen.Conv2d(3, 4, 3, stride=2, padding=1, padding_mode="reflect")
    c = codegen.generate(layer, (3, 9, 9)).source
    cuda = generate_cuda(layer, (3, 9, 9)).source
    for line in c.splitlines():
        if "acc +=" in line or "const long q" in line or "const long p" in line:
            assert line.strip() in cuda


def test_tiled_kernel_for_every_convolution_that_fits():
    kernel = generate_cuda(convgen.Conv2d(64, 64, 3, padding=1), (64, 56, 56))
    tiled, direct = kernel.launches
    assert (tiled.schedule, direct.schedule) == ("tiled", "direct")
    assert tiled.shared_bytes <= cudagen.SHARED_LIMIT
    assert "__shared__" in kernel.source and "__syncthreads()" in kernel.source
    # a halo too large for shared memory: the generator shrinks the channel block and tile
    big = generate_cuda(convgen.Conv2d(1, 16, 40, dilation=2), (1, 100, 100))
    assert big.launches[0].schedule == "tiled" and big.launches[0].block >= 32
    assert big.launches[0].shared_bytes <= cudagen.SHARED_LIMIT
    # ... but not below 32 positions a block: then the direct kernel alone
    huge = generate_cuda(convgen.Conv2d(1, 3, 25, dilation=3), (1, 90, 90), "float64")
    assert [x.schedule for x in huge.launches] == ["direct"]
    # pools and transposed convolutions have the direct kernel only
    assert [x.schedule for x in generate_cuda(convgen.MaxPool2d(2), (1, 4, 4)).launches] == \
        ["direct"]


def test_launch_geometry_and_batch_grid_stride():
    kernel = generate_cuda(convgen.AvgPool2d(2), (3, 8, 8))
    (launch,) = kernel.launches
    assert launch.block * launch.grid_x >= 3 * 4 * 4
    assert launch.grid(10**6) == (launch.grid_x, 1, cudagen.MAX_GRID_Z)
    assert launch.grid(0)[2] == 1
    with pytest.raises(SpecError, match="schedule='tiled' must be one of 'direct'"):
        kernel.launch("tiled")


def test_unflatten_inverts_flat_index():
    shape = [3, 4, 5]
    for offset in range(60):
        assert sym.flat_index(sym.unflatten(offset, shape), shape) == offset
    t = sympy.Symbol("t", integer=True, nonnegative=True)
    assert sym.flat_index(sym.unflatten(t, shape), shape).subs(t, 37) == 37


# --------------------------------------------------------------------------- nvcc


@pytest.mark.parametrize("path", GENERATED, ids=[p.stem for p in GENERATED])
def test_generated_cu_is_current_and_compiles_clean_for_sm80_and_sm90(path):
    kernel = _generated_kernel(path)
    assert path.read_text() == kernel.source
    _needs_nvcc()
    usages = nvcc.check(kernel)
    assert {(u.entry, u.arch) for u in usages} == {
        (launch.entry, arch) for launch in kernel.launches for arch in nvcc.ARCHS}
    assert all(u.spill_stores == u.spill_loads == u.stack_bytes == 0 for u in usages)
    report = path.with_suffix(".md").read_text()
    for usage in usages:  # the report records what ptxas said
        assert f"`{usage.entry}`" in report


@settings(max_examples=max(3, BULK_EXAMPLES // 3))
@given(case=layers_with_inputs(families=FAMILIES), dtype=st.sampled_from(["float32", "float64"]))
def test_random_kernels_compile_clean_under_nvcc(case, dtype):
    _needs_nvcc()
    layer, shape = case
    nvcc.check(generate_cuda(layer, _sample(layer, shape), dtype=dtype))


def test_nvcc_rejects_warnings_and_local_memory(tmp_path, monkeypatch):
    _needs_nvcc()
    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path))
    kernel = generate_cuda(convgen.MaxPool1d(2), (1, 8), name="control")
    unused = dataclasses.replace(kernel, source=kernel.source.replace(
        "    if (t >=", "    int unused = 1;\n    if (t >=", 1))
    with pytest.raises(BuildError, match="never referenced|declared but never") as error:
        nvcc.check(unused)
    assert error.value.command[0].endswith("nvcc") and Path(error.value.source_path).is_file()
    local = dataclasses.replace(kernel, source=kernel.source.replace(
        "    if (t >=", "    float scratch[64];\n    for (int i = 0; i < 64; ++i) scratch[i] = "
        "x[i];\n    y[0] = scratch[(int)batch & 63];\n    if (t >=", 1))
    with pytest.raises(BuildError, match="[Ll]ocal memory|stack frame"):
        nvcc.check(local)


def test_missing_nvcc_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("NVCC", str(tmp_path / "nope"))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path))
    monkeypatch.setattr(nvcc, "_FALLBACK", str(tmp_path / "nvcc"))
    with pytest.raises(BuildError, match="nvcc .* was not found.*--target c"):
        nvcc.nvcc()


# --------------------------------------------------------------------------- CUDA on the CPU


@settings(max_examples=CUDA_EXAMPLES)
@given(cases=st.lists(layers_with_inputs(families=FAMILIES), min_size=max(1, BULK // 2),
                      max_size=BULK),
       dtype=st.sampled_from(["float32", "float64"]))
def test_cuda_text_on_the_cpu_matches_the_exact_oracle(cases, dtype):
    """One OpenCL program per example; every entry point judged like the C kernels."""
    _needs_pocl()
    kernels = pocl.compile_cpu([(layer, _sample(layer, shape)) for layer, shape in cases],
                                 dtype)
    outcomes = [check_kernel(k, cases=1, seed=i) for i, k in enumerate(kernels)]
    failures = [(o, k.generated.layer, k.generated.input_shape)
                for o, k in zip(outcomes, kernels) if not o.passed]
    assert not failures, failures[0]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_family_and_option_on_the_cpu(dtype):
    _needs_pocl()
    kernels = pocl.compile_cpu([(layer, _shape(layer)) for layer in FAMILY_EXAMPLES], dtype)
    assert len(kernels) > len(FAMILY_EXAMPLES)  # the convolutions' tiled kernels too
    for index, kernel in enumerate(kernels):
        outcome = check_kernel(kernel, cases=2, seed=index, batch=3)
        assert outcome.passed, (outcome, kernel)


@pytest.mark.parametrize("dtype", ["int8", "uint8"])
def test_integer_max_pooling_on_the_cpu(dtype):
    _needs_pocl()
    layers = [convgen.MaxPool2d(3, 2, padding=1, return_indices=True),
              convgen.AdaptiveMaxPool2d(3), convgen.GlobalMaxPool()]
    for kernel in pocl.compile_cpu([(layer, (2, 7, 8)) for layer in layers], dtype):
        assert check_kernel(kernel, cases=2).passed


def test_batch_larger_than_the_grid_is_covered(monkeypatch):
    """The z axis of the grid strides over the batch: force a tiny grid limit."""
    _needs_pocl()
    monkeypatch.setattr(cudagen, "MAX_GRID_Z", 2)
    for kernel in pocl.compile_cpu([(convgen.Conv2d(2, 3, 3, padding=1), (2, 6, 6))]):
        assert kernel.launch.grid(5)[2] == 2
        assert check_kernel(kernel, cases=1, batch=5).passed


def test_the_opencl_program_is_the_prelude_and_the_exact_cuda_text():
    kernel = generate_cuda(convgen.Conv1d(2, 2, 3), (2, 9))
    text = pocl.opencl_source([kernel])
    assert text.startswith(pocl.prelude())
    assert text.endswith(kernel.source)


def test_compile_cuda_cpu_checks_arguments_like_the_c_kernel():
    _needs_pocl()
    kernel = convgen.compile(convgen.Conv2d(2, 3, 3), (2, 5, 5), target="cuda-cpu",
                             schedule="direct")
    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(SpecError, match="weight has dtype float64"):
        kernel(x, np.zeros((3, 2, 3, 3)), np.zeros(3, np.float32))
    assert kernel.schedule == "direct" and "cuda-cpu" in repr(kernel)
    empty = kernel(np.zeros((0, 2, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32),
                   np.zeros(3, np.float32))
    assert empty.shape == (0, 3, 3, 3)


# --------------------------------------------------------------------------- Oclgrind


def _oclgrind_sample():
    """Every family and option, plus the small bundled kernels of generated/."""
    items = [(layer, _shape(layer)) for layer in FAMILY_EXAMPLES]
    for path in GENERATED:
        kernel = _generated_kernel(path)
        if sym.prod(kernel.output_shape) * sym.prod(kernel.input_shape) <= 2_000_000:
            items.append(kernel)
    return items


def test_oclgrind_finds_no_race_no_out_of_bounds_access_no_divergence():
    _needs_pocl("oclgrind")
    findings = race_check(_oclgrind_sample(), batch=2)
    assert len(findings) >= 20
    bad = [f for f in findings if f.diagnostics or not f.passed]
    assert not bad, bad[0]


def test_oclgrind_reports_an_injected_race_and_an_injected_overrun():
    _needs_pocl("oclgrind")
    layer, shape = convgen.Conv2d(2, 2, 3, padding=1, bias=True), (2, 3, 5)  # few threads
    racy = generate_cuda(layer, shape, name="racy")
    racy = dataclasses.replace(racy, source=racy.source.replace(
        "__syncthreads(); /* before", "/* before"))
    over = generate_cuda(layer, shape, name="over")
    halo = over.launches[0].shared_bytes // 4 - 2 * 9  # the xs elements
    over = dataclasses.replace(over, source=over.source.replace(f"e < {halo};",
                                                                 f"e < {halo + 1};"))
    findings = {(f.kernel, f.schedule): f for f in race_check([racy, over], batch=1)}
    assert "data race" in findings["racy", "tiled"].diagnostics
    assert "racy.cu" in findings["racy", "tiled"].diagnostics
    assert "Invalid write" in findings["over", "tiled"].diagnostics
    assert not findings["racy", "direct"].diagnostics


# --------------------------------------------------------------------------- proofs


@settings(max_examples=max(5, BULK_EXAMPLES // 2))
@given(case=layers_with_inputs(families=FAMILIES))
def test_every_cuda_access_and_thread_position_is_proved_in_bounds(case):
    layer, shape = case
    kernel = generate_cuda(layer, _sample(layer, shape))
    results = prove_bounds(kernel)
    assert all(r.status == "proved" for r in results), [r for r in results
                                                        if r.status != "proved"][0]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_tiled_halo_past_the_padded_input_is_never_loaded(mode):
    """The last tile's halo can reach past the padded input, where reflect's remap would
    leave the input: the staging loop loads only inside the padded input (review finding)."""
    layer = convgen.Conv2d(1, 1, (2, 1), padding=(3, 0), padding_mode=mode)
    kernel = generate_cuda(layer, (1, 4, 4))
    assert kernel.launches[0].schedule == "tiled"
    assert all(r.status == "proved" for r in prove_bounds(kernel))
    if pocl.available("oclgrind") is None:
        findings = race_check([kernel])
        assert not [f for f in findings if f.diagnostics or not f.passed]


def test_two_kernels_under_one_name_are_refused():
    items = [(convgen.Conv1d(1, 1, 3), (1, 8), "k"), (convgen.Conv1d(1, 1, 3, padding=1),
                                                      (1, 8), "k")]
    with pytest.raises(SpecError, match="two different kernels are both named 'k'"):
        pocl.opencl_source([generate_cuda(*item[:2], name=item[2]) for item in items])
    with pytest.raises(SpecError, match="two different kernels are both named 'k'"):
        compile_kernels(items)


def test_a_tile_one_short_is_refuted(monkeypatch):
    real = sym.tile_extent
    monkeypatch.setattr(sym, "tile_extent", lambda *a: real(*a) - 1)
    kernel = generate_cuda(convgen.Conv2d(2, 2, 3), (2, 8, 8))
    refuted = [r for r in prove_bounds(kernel) if r.status == "refuted"]
    assert refuted and all("xs" in r.name for r in refuted)


# --------------------------------------------------------------------------- the GPU path


def test_compile_cuda_without_pycuda_or_gpu_is_a_clear_error():
    from convgen.runtime import gpu

    reason = gpu.available()
    if reason is None:
        pytest.skip("a GPU is present: the error path does not apply")
    with pytest.raises(ConvgenError, match="PyCUDA|driver|GPU"):
        convgen.compile(convgen.MaxPool2d(2), (1, 4, 4), target="cuda")


def test_bad_targets_and_options_name_what_is_allowed():
    with pytest.raises(SpecError, match="target='metal' must be 'c', 'cuda'"):
        convgen.compile(convgen.MaxPool2d(2), (1, 4, 4), target="metal")
    with pytest.raises(SpecError, match="flags=, openmp= and profile= apply to target='c'"):
        convgen.compile(convgen.MaxPool2d(2), (1, 4, 4), target="cuda-cpu", openmp=True)
    with pytest.raises(SpecError, match="schedule='tiled' must be 'auto' or one of"):
        convgen.compile(convgen.MaxPool2d(2), (1, 4, 4), schedule="tiled")


def test_only_the_gpu_module_imports_pycuda():
    gpu_module = ROOT / "convgen" / "runtime" / "gpu.py"
    for path in (ROOT / "convgen").rglob("*.py"):
        if path != gpu_module:
            assert "pycuda" not in re.sub(r'"""[\s\S]*?"""', "", path.read_text()), path
    code = "import convgen, convgen.cli, convgen.runtime, convgen.verify, convgen.emit, sys; " \
           "assert 'pycuda' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


def test_gpu_runtime_against_a_pycuda_stand_in(monkeypatch, tmp_path):
    """convgen.runtime.gpu end to end without a GPU: a fake PyCUDA (tests/fake_pycuda.py) runs each
    launch on PoCL and rejects what a driver would (no current context, bad geometry)."""
    _needs_nvcc()
    _needs_pocl()
    from convgen.runtime import gpu
    from tests import fake_pycuda

    monkeypatch.setenv("CONVGEN_CACHE_DIR", str(tmp_path))
    items = [(convgen.Conv2d(4, 6, 3, padding=1, groups=2), (4, 7, 9)),
             (convgen.MaxPool2d(3, 2, return_indices=True), (2, 7, 7))]
    fake_pycuda.install(monkeypatch, [generate_cuda(*item) for item in items])
    gpu._primary.cache_clear()
    try:
        assert gpu.available() is None
        kernels = gpu.compile_gpu(items)
        assert [k.schedule for k in kernels] == ["tiled", "direct", "direct"]
        assert all(k.arch == "sm_90" for k in kernels)
        for index, kernel in enumerate(kernels):
            assert check_kernel(kernel, cases=1, seed=index, batch=3).passed
        conv = kernels[0]
        rng = np.random.default_rng(1)
        x = rng.integers(-4, 5, (2, 4, 7, 9)).astype(np.float32)
        w = rng.integers(-3, 4, (6, 2, 3, 3)).astype(np.float32)
        b = rng.integers(-9, 10, 6).astype(np.float32)
        gpuarray = fake_pycuda.GPUArray
        on_device = conv(gpuarray(x), gpuarray(w), gpuarray(b))
        assert isinstance(on_device, gpuarray)
        assert np.array_equal(on_device.get(), conv(x, w, b))
        with pytest.raises(SpecError, match="x is a GPUArray, so weight must be one too"):
            conv(gpuarray(x), w, gpuarray(b))
        with pytest.raises(SpecError, match="x is a numpy.ndarray, so bias must be one too"):
            conv(x, w, gpuarray(b))
        assert conv(x[:0], w, b).shape == (0, 6, 7, 9)
        assert fake_pycuda._Context.stack  # the primary context stays current for the user
    finally:
        gpu._primary.cache_clear()


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_gpu_kernels_match_the_exact_oracle(dtype):
    kernels = cuda_kernels("cuda", [(layer, _shape(layer)) for layer in FAMILY_EXAMPLES], dtype)
    for index, kernel in enumerate(kernels):
        outcome = check_kernel(kernel, cases=2, seed=index, batch=3)
        assert outcome.passed, (outcome, kernel)


@pytest.mark.cuda
def test_gpu_kernels_take_device_arrays():
    (kernel, _) = cuda_kernels("cuda", [(convgen.Conv2d(2, 3, 3, padding=1), (2, 6, 6))],
                               "float32")
    from pycuda import gpuarray

    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, (2, 2, 6, 6)).astype(np.float32)
    w = rng.integers(-3, 4, (3, 2, 3, 3)).astype(np.float32)
    b = rng.integers(-9, 10, 3).astype(np.float32)
    on_device = kernel(gpuarray.to_gpu(x), gpuarray.to_gpu(w), gpuarray.to_gpu(b))
    assert isinstance(on_device, gpuarray.GPUArray)
    assert np.array_equal(on_device.get(), kernel(x, w, b))


def test_generate_check_explains_reports_from_another_nvcc(tmp_path):
    from convgen import emit

    path = GENERATED[0].with_suffix(".md")
    text = path.read_text()
    other = re.sub(r"nvcc \(release [^)]*\)", "nvcc (release 99.9, V99.9.1)", text)
    assert other != text
    planned = [emit.KernelFiles(None, "f", {"k.md": text})]
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "k.md").write_text(other)
    (problem,) = emit.check(planned, tmp_path)
    assert problem.startswith("differs:") and "from nvcc release 99.9, V99.9.1" in problem
