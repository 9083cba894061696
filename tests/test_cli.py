"""The convgen command: summaries, shapes, examples, and clean errors."""

import subprocess
import sys

import pytest

from convgen.cli import main
from convgen.config import bundled_examples, load


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_summary_of_every_bundled_example(capsys):
    code, out, _ = run(capsys, "summary", "--examples")
    assert code == 0
    for path in bundled_examples().values():
        for network in load(path):
            assert network.name in out
    assert "total params: 61,706" in out  # LeNet-5
    assert "(64, 56, 56)" in out  # ResNet stem


def test_bundled_examples_cover_the_lecture_lenet_resnet_mobilenet():
    assert {"lecture", "lenet5", "resnet_block", "mobilenet_block"} <= set(bundled_examples())


def test_summary_of_one_layer_markdown(capsys):
    code, out, _ = run(capsys, "summary", "Conv2d(3, 16, 3, padding=1)", "--input-shape",
                       "3,32,32", "--format", "markdown")
    assert code == 0
    assert "| 0 | Conv2d(3, 16, 3, padding=1) |" in out
    assert "(16, 32, 32)" in out and "| 448 |" in out


def test_summary_symbolic(capsys):
    code, out, _ = run(capsys, "summary", "lenet5", "--symbolic")
    assert code == 0
    assert "(6, H - 4, W - 4)" in out
    assert "valid when:" in out and "H >= 5" in out


def test_shape_of_a_layer_file(tmp_path, capsys):
    path = tmp_path / "layers.toml"
    path.write_text('[[layer]]\nname = "p"\ntype = "MaxPool2d"\nkernel_size = 2\n'
                    'ceil_mode = true\ninput_shape = [1, 5, 5]\n')
    code, out, _ = run(capsys, "shape", str(path))
    assert code == 0
    assert out.splitlines() == ["p: (1, 5, 5)", "  p: (1, 3, 3)"]


def test_shape_symbolic_prints_constraints(capsys):
    code, out, _ = run(capsys, "shape", "Conv1d(1, 1, 5, padding_mode='reflect', padding=2)",
                       "--input-shape", "1,L")
    assert code == 0
    assert "(1, L)" in out and "valid when:" in out
    assert out.count("2 < L") == 1  # lo and hi give the same condition: shown once


def test_examples_lists_files(capsys):
    code, out, _ = run(capsys, "examples")
    assert code == 0 and "lenet5:" in out and "lenet5.toml" in out


@pytest.mark.parametrize("argv, message", [
    (["summary"], "give a layer file"),
    (["summary", "Conv2d(3, 8, 3)"], "needs --input-shape"),
    (["summary", "lenet5", "--input-shape", "1,32,32"], "--input-shape applies to a layer"),
    (["summary", "Conv2d(3, 8, 0)", "--input-shape", "3,8,8"], "kernel_size=0"),
    (["shape", "Conv2d(3, 8, 3)", "--input-shape", "4,8,8"], "4 channels but in_channels=3"),
    (["shape", "nosuchfile.toml"], "neither a layer file nor a bundled example"),
])
def test_user_mistakes_exit_2_without_traceback(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("convgen: error: ") and message in err
    assert "Traceback" not in err and out == ""


def test_console_script_runs_as_module():
    result = subprocess.run([sys.executable, "-m", "convgen", "shape", "Conv2d(3, 8, 3)",
                             "--input-shape", "3,8,8"], capture_output=True, text=True)
    assert result.returncode == 0 and "(8, 6, 6)" in result.stdout
    bad = subprocess.run([sys.executable, "-m", "convgen", "shape", "Conv2d(3, 8, 3)",
                          "--input-shape", "3,2,2"], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "exceeds padded input 2" in bad.stderr


def test_toeplitz_latex_and_plot(tmp_path, capsys):
    path = tmp_path / "t.png"
    code, out, _ = run(capsys, "toeplitz", "Conv2d(1, 1, 2, bias=False)", "--input-shape",
                       "1,3,3", "--latex", "--plot", str(path))
    assert code == 0
    assert "shape 4 x 9, 16 nonzeros" in out and "4 distinct weights" in out
    assert r"{w}_{0,0,0,0} & {w}_{0,0,0,1} & 0 & {w}_{0,0,1,0}" in out
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


@pytest.mark.parametrize("argv, message", [
    (["toeplitz", "MaxPool2d(2)", "--input-shape", "1,4,4"], "not linear"),
    (["toeplitz", "Conv2d(3, 8, 3)", "--input-shape", "3,32,32", "--latex"],
     "more than 4,096; use a smaller --input-shape or --plot"),
])
def test_toeplitz_mistakes(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and "Traceback" not in err


def test_generated_folder_matches_the_generator(bundled_plan):
    from convgen.emit import check
    from tests.test_packaging import ROOT

    assert check(bundled_plan, ROOT / "generated") == []


def test_generate_check_and_verify_a_layer_file(tmp_path, capsys):
    layers = tmp_path / "layers.toml"
    layers.write_text('[[model]]\nname = "net"\ninput_shape = [2, 9, 9]\ndtype = "float64"\n'
                      'layers = [\n  { name = "c", type = "Conv2d", in_channels = 2, '
                      'out_channels = 3, kernel_size = 3, padding = "same", '
                      'padding_mode = "reflect" },\n'
                      '  { name = "p", type = "MaxPool2d", kernel_size = 2, '
                      'return_indices = true },\n]\n')
    out_dir = tmp_path / "out"
    code, out, _ = run(capsys, "generate", str(layers), "-o", str(out_dir))
    assert code == 0 and "wrote 2 kernels (10 files)" in out
    names = sorted(p.name for p in (out_dir / "layers").iterdir())
    assert names == ["net_c.c", "net_c.cu", "net_c.h", "net_c.md", "net_c.toml",
                     "net_p.c", "net_p.cu", "net_p.h", "net_p.md", "net_p.toml"]
    report = (out_dir / "layers" / "net_c.md").read_text()
    assert "MACs per sample: 4,374" in report and "## Verification" in report
    assert "## CUDA: `net_c.cu`" in report and "| `net_c_tiled` (tiled) |" in report
    assert run(capsys, "generate", str(layers), "-o", str(out_dir), "--check")[0] == 0
    code, out, _ = run(capsys, "verify", str(out_dir))
    assert code == 0 and "2 passed, 0 failed" in out and "float64" in out
    code, out, _ = run(capsys, "verify", str(out_dir), "--target", "cuda-cpu")
    assert code == 0 and "3 passed, 0 failed" in out and "net_c (tiled)" in out
    cu = out_dir / "layers" / "net_c.cu"
    cu.write_text(cu.read_text().replace("acc[j] += v", "acc[j] -= v"))
    code, out, _ = run(capsys, "verify", str(out_dir), "--target", "cuda-cpu")
    assert code == 1 and "stale:" in out and "net_c.cu" in out
    # a hand edit is caught by both --check and verify
    source = out_dir / "layers" / "net_p.c"
    source.write_text(source.read_text().replace("v > best", "v >= best"))
    code, out, _ = run(capsys, "generate", str(layers), "-o", str(out_dir), "--check")
    assert code == 1 and "differs:" in out and "net_p.c" in out
    code, out, _ = run(capsys, "verify", str(out_dir))
    assert code == 1 and "stale:" in out
    (out_dir / "layers" / "extra.c").write_text("")
    assert "unexpected:" in run(capsys, "generate", str(layers), "-o", str(out_dir),
                                "--check")[1]


def test_generate_c_only_needs_no_nvcc_and_gpu_verify_explains(tmp_path, capsys,
                                                                monkeypatch):
    monkeypatch.setenv("NVCC", str(tmp_path / "missing"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("convgen.runtime.nvcc._FALLBACK", str(tmp_path / "nvcc"))
    code, _, err = run(capsys, "generate", "lecture", "-o", str(tmp_path / "out"))
    assert code == 2 and "nvcc (the CUDA compiler) was not found" in err and "--target c" in err
    code, out, _ = run(capsys, "generate", "lecture", "-o", str(tmp_path / "out"),
                       "--target", "c")
    assert code == 0 and not list((tmp_path / "out").rglob("*.cu"))
    code, _, err = run(capsys, "generate", "lecture", "--target", "c,metal")
    assert code == 2 and "--target 'c,metal' must be a comma-separated list of c, cuda" in err
    from convgen.runtime import gpu
    if gpu.available() is None:
        return
    code, _, err = run(capsys, "verify", "lecture", "--target", "cuda")
    assert code == 2 and "target='cuda'" in err


def test_verify_reports_a_wrong_kernel(monkeypatch, capsys):
    """A kernel that disagrees with the oracle makes verify fail (an output off by one)."""
    import dataclasses

    from convgen.runtime import cbuild
    real = cbuild.generate

    def off_by_one(*args, **kwargs):
        kernel = real(*args, **kwargs)
        return dataclasses.replace(kernel, source=kernel.source.replace("= acc;", "= acc + 1;"))

    monkeypatch.setattr(cbuild, "generate", off_by_one)  # what verify builds with
    code, out, _ = run(capsys, "verify", "lecture", "--cases", "1")
    assert code == 1
    assert "lecture_toeplitz" in out and "FAIL: values differ" in out
    assert "lecture_pooling_max" in out and out.count(" pass\n") >= 1  # pools untouched


def test_prove_catalogue_and_layer(capsys):
    code, out, _ = run(capsys, "prove")
    assert code == 0 and "15 proved, 3 refuted, 0 unknown; 0 not as expected" in out
    assert "counterexample: d=1, hi=0, k=1, lo=0, n=2, s=2" in out
    code, out, _ = run(capsys, "prove", "--format", "markdown")
    assert code == 0 and out.startswith("| # | statement |")
    code, out, _ = run(capsys, "prove", "--layer", "MaxPool2d(3, 2, ceil_mode=True)",
                       "--input-shape", "4,9,9")
    assert code == 0 and "[bounds]" in out and "8 proved, 0 refuted" in out
    assert out.count("[cuda]") == 3 and "direct: c from the thread number" in out
    code, _, err = run(capsys, "prove", "--input-shape", "4,9,9")
    assert code == 2 and "--input-shape needs --layer" in err


def test_layer_files_and_the_cli_choose_schedules(tmp_path, capsys):
    layers = tmp_path / "layers.toml"
    layers.write_text('[[model]]\nname = "net"\ninput_shape = [8, 12, 12]\n'
                      'layers = [\n  { name = "c", type = "Conv2d", in_channels = 8, '
                      'out_channels = 8, kernel_size = 3, padding = 1, '
                      'schedule = "reference" },\n'
                      '  { name = "w", type = "Conv2d", in_channels = 8, out_channels = 8, '
                      'kernel_size = 3, padding = 1, schedule = "winograd" },\n]\n')
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "generate", str(layers), "-o", str(out_dir), "--target", "c")
    assert code == 0, err
    report = (out_dir / "layers" / "net_c.md").read_text()
    assert "- C schedule: reference (asked for (the default would be packed" in report
    assert "templates/c/conv.c.j2" in report
    assert 'schedule = "reference"' in (out_dir / "layers" / "net_c.toml").read_text()
    assert "templates/c/conv_winograd.c.j2" in (out_dir / "layers" / "net_w.md").read_text()
    code, out, _ = run(capsys, "verify", str(out_dir))  # rebuilds the schedules asked for
    assert code == 0 and "2 passed, 0 failed" in out and "stale" not in out
    # --schedule overrides the files' choice; one that does not apply says why
    code, out, err = run(capsys, "generate", str(layers), "-o", str(out_dir), "--target", "c",
                         "--schedule", "blocked")
    assert code == 0, err
    assert "- C schedule: blocked (asked for" in (out_dir / "layers" / "net_w.md").read_text()
    pool = tmp_path / "pool.toml"
    pool.write_text('[[layer]]\nname = "p"\ntype = "MaxPool2d"\ninput_shape = [1, 4, 4]\n'
                    'kernel_size = 2\nschedule = "packed"\n')
    code, _, err = run(capsys, "generate", str(pool), "-o", str(out_dir), "--target", "c")
    assert code == 2 and "schedule='packed' has no pool kernel" in err
    pool.write_text('[[layer]]\nname = "p"\ntype = "MaxPool2d"\ninput_shape = [1, 4, 4]\n'
                    'kernel_size = 2\nschedule = "fast"\n')
    code, _, err = run(capsys, "generate", str(pool), "-o", str(out_dir), "--target", "c")
    assert code == 2 and "schedule='fast' must be one of 'auto', 'reference'" in err
