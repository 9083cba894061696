"""Machine-readable output (--format json against its schema, --junit), progress on standard
error, and a closed pipe."""

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import jsonschema
import pytest
from helpers import ROOT

import convgen
from convgen import documents, progress
from convgen.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def document(capsys, name, *argv, code=0):
    """Run a command with --format json; its stdout must be one document of its schema."""
    got, out, _ = run(capsys, *argv, "--format", "json")
    assert got == code
    value = json.loads(out)
    jsonschema.validate(value, documents.schema(name))
    assert value["schema"] == f"convgen-{name}/1" and value["convgen"] == convgen.__version__
    return value


def test_every_schema_is_a_valid_draft_2020_12_schema():
    for name in documents.NAMES:
        jsonschema.Draft202012Validator.check_schema(documents.schema(name))
    with pytest.raises(ValueError, match="must be one of summary"):
        documents.schema("nope")


def test_summary_json(capsys):
    value = document(capsys, "summary", "summary", "lenet5")
    (network,) = value["networks"]
    assert network["total_params"] == 61706
    first = network["layers"][0]
    assert first == {"index": 0, "name": "C1", "layer": "Conv2d(1, 6, 5)",
                     "output_shape": [6, 28, 28], "params": 156, "dense_params": 4821600,
                     "macs": 117600, "receptive_field": [5, 5]}


def test_summary_json_symbolic_sizes_are_strings(capsys):
    value = document(capsys, "summary", "summary", "lenet5", "--symbolic")
    layer = value["networks"][0]["layers"][0]
    assert layer["output_shape"] == [6, "H - 4", "W - 4"] and layer["params"] == 156
    assert any(c["condition"] == "H >= 5" and c["holds"] is None
               for c in value["networks"][0]["constraints"])


def test_shape_json(capsys):
    value = document(capsys, "shape", "shape", "Conv2d(3, 8, 5)", "--input-shape", "3,H,W")
    (network,) = value["networks"]
    assert network["input_shape"] == [3, "H", "W"]
    assert network["layers"][0]["output_shape"] == [8, "H - 4", "W - 4"]
    assert [c["condition"] for c in network["constraints"]] == ["H >= 5", "W >= 5"]


def test_prove_json(capsys):
    value = document(capsys, "prove", "prove", "--layer", "MaxPool2d(3, 2, ceil_mode=True)")
    assert value["results"] and value["unexpected"] == 0
    assert value["proved"] + value["refuted"] + value["unknown"] == len(value["results"])
    assert all(r["label"] == "layer" and r["as_expected"] for r in value["results"])


def test_generate_json_then_check_json(tmp_path, capsys):
    layers = tmp_path / "small.toml"
    layers.write_text('[[layer]]\nname = "c"\ntype = "Conv2d"\nin_channels = 1\n'
                      'out_channels = 2\nkernel_size = 3\ninput_shape = [1, 6, 6]\n')
    out = tmp_path / "out"
    value = document(capsys, "generate", "generate", str(layers), "-o", str(out), "--target",
                     "c", "-q")
    (kernel,) = value["kernels"]
    assert kernel["name"] == "c" and kernel["output_shape"] == [2, 4, 4]
    assert sorted(kernel["files"]) == ["c.c", "c.h", "c.md", "c.toml"]
    assert len(value["written"]) == 4 and value["check"] is False
    check = document(capsys, "generate", "generate", str(layers), "-o", str(out), "--target",
                     "c", "--check", "-q")
    assert check["matches"] is True and check["problems"] == []
    (out / "small" / "c.c").write_text("/* edited */\n")
    check = document(capsys, "generate", "generate", str(layers), "-o", str(out), "--target",
                     "c", "--check", "-q", code=1)
    assert check["matches"] is False and "c.c" in check["problems"][0]


def test_verify_json_and_junit(tmp_path, capsys):
    folder = tmp_path / "lenet5"
    shutil.copytree(ROOT / "generated" / "lenet5", folder)
    for path in folder.iterdir():  # two kernels are enough: keep one stale, one sound
        if not path.name.startswith(("lenet5_c1.", "lenet5_s2.")):
            path.unlink()
    c1 = folder / "lenet5_c1.c"
    c1.write_text(c1.read_text() + "/* edited */\n")
    junit = tmp_path / "report.xml"
    value = document(capsys, "verify", "verify", str(folder), "--junit", str(junit), "-q",
                     "--cases", "1", code=1)
    assert [k["name"] for k in value["kernels"]] == ["lenet5_c1", "lenet5_s2"]
    assert all(k["passed"] for k in value["kernels"])  # the edit is a comment: still right
    assert len(value["problems"]) == 1 and value["problems"][0].startswith("stale:")
    assert value["passed"] == 2 and value["failed"] == 1 and value["target"] == "c"
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and suite.get("tests") == "3" and suite.get("failures") == "1"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases[:2]] == ["lenet5_c1", "lenet5_s2"]
    assert cases[2].find("failure") is not None and "stale" in cases[2].find("failure").text


def test_junit_records_a_failed_kernel():
    from convgen.verify import Outcome

    xml = documents.junit_xml([Outcome("k", "Conv2d(1, 1, 1)", "float32", 1, float("inf"),
                                       False, "does not build")], [], "c")
    case = ET.fromstring(xml.split("\n", 1)[1]).find("testcase")
    assert case.get("name") == "k" and case.find("failure").get("message") == "does not build"


def test_junit_file_that_cannot_be_written_is_a_clear_error(tmp_path, capsys):
    code, _, err = run(capsys, "verify", str(tmp_path), "--junit",
                       str(tmp_path / "missing" / "r.xml"))
    assert code == 2 and "holds no layer files" in err  # checked before anything is written


# --------------------------------------------------------------------------- progress


def test_progress_is_silent_for_library_callers(capsys):
    assert list(progress.track([1, 2], "stage")) == [1, 2]
    assert capsys.readouterr() == ("", "")


def test_plain_progress_lines_name_the_item_and_the_time_left(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 0.0)
    monkeypatch.setenv("CI", "true")
    with progress.reporting("verify"):
        assert list(progress.track(["a", "b", "c"], "check", str.upper)) == ["a", "b", "c"]
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert out == ""
    assert lines[0] == "convgen verify: check: [1/3] A, 0:00 elapsed"
    assert lines[1].startswith("convgen verify: check: [2/3] B, 0:00 elapsed, ")
    assert lines[1].endswith(" left")
    assert lines[-1] == "convgen verify: check: 3 done in 0:00"


def test_plain_progress_is_throttled(capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 3600.0)
    monkeypatch.setenv("CI", "true")
    with progress.reporting("generate"):
        list(progress.track(range(50), "stage"))
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "[1/50]" in lines[0] and "50 done" in lines[1]


def test_terminal_progress_is_a_tqdm_bar_with_the_item(monkeypatch):
    import io

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.delenv("CI", raising=False)
    with progress.reporting("bench"):
        list(progress.track(["alpha", "beta"], "layers"))
    text = stream.getvalue()
    assert "convgen bench: layers" in text and "/2 [" in text and "beta" in text


def test_the_cli_reports_progress_unless_quiet(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_INTERVAL", 0.0)
    monkeypatch.setenv("CI", "true")
    args = ["generate", "lenet5", "--target", "c", "-o", str(tmp_path)]
    code, out, err = run(capsys, *args)
    assert code == 0 and "[1/7] lenet5_c1" in err and "convgen generate: C and CUDA text" in err
    assert out.startswith("wrote 7 kernels")
    code, out, err = run(capsys, *args, "--check", "--quiet")
    assert code == 0 and err == "" and "matches the generator" in out


# --------------------------------------------------------------------------- pipes


@pytest.mark.skipif(not shutil.which("head"), reason="needs head")
def test_a_closed_pipe_ends_quietly():
    # far more than a pipe buffers (64 KiB), so the writer is still writing when it closes
    command = [sys.executable, "-m", "convgen.cli", "summary", *["lenet5"] * 300]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}) as process:
        process.stdout.readline()
        process.stdout.close()  # what head does after its first line
        err = process.stderr.read().decode()
        code = process.wait()
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert code == 141  # what a shell reports for a writer stopped by SIGPIPE
