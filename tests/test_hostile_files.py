"""Reproducers from the hardening issue, items 3 and 4, each a regression test: ``convgen
generate`` writes only inside ``-o`` and follows no link there; ``convgen verify`` builds and
tests the files a generated folder ships, exactly as they are on disk, and fails on any file
that is missing, orphaned, inconsistent or stale."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convgen import emit
from convgen.cli import main
from convgen.config import loads
from convgen.errors import SpecError
from tests.helpers import ROOT

_POOL = ('[[layer]]\nname = "p"\ntype = "MaxPool2d"\ninput_shape = [1, 4, 4]\n'
         'kernel_size = 2\n')
_NET = ('[[model]]\nname = "net"\ninput_shape = [2, 6, 6]\nlayers = [\n'
        '  { name = "c", type = "Conv2d", in_channels = 2, out_channels = 3, kernel_size = 3, '
        'padding = 1 },\n'
        '  { name = "p", type = "AvgPool2d", kernel_size = 2 },\n]\n')


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _summary(out: str) -> str:
    return out.strip().splitlines()[-1]


# --------------------------------------------------------------------------- 3. generate


def test_a_layer_file_named_dots_cannot_write_beside_the_output(tmp_path, capsys):
    """The issue's reproducer: ``...toml`` has the stem ``..``; its kernel ``pyproject``
    overwrote the ``pyproject.toml`` beside the output folder."""
    sentinel = tmp_path / "pyproject.toml"
    sentinel.write_text("keep me")
    layers = tmp_path / "...toml"
    layers.write_text(_POOL.replace('name = "p"', 'name = "pyproject"'))
    code, _, err = _run(capsys, "generate", layers, "-o", tmp_path / "out", "--target", "c")
    assert code == 2 and "Traceback" not in err
    assert f"layer file {str(layers)!r}: output subfolder '..'" in err and "rename" in err
    assert sentinel.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["...toml", "pyproject.toml"]


@pytest.mark.parametrize("folder", ["..", ".", "", "/tmp/abs", "a/b", "a\\b", ".hidden"])
def test_a_subfolder_that_is_not_a_plain_name_is_refused(tmp_path, folder):
    planned = emit.plan(loads(_POOL), folder, ["c"])
    message = re.escape(f"kernel 'p': output subfolder {folder!r} must be letters")
    with pytest.raises(SpecError, match=message):
        emit.write(planned, tmp_path / "out")
    with pytest.raises(SpecError, match=message):
        emit.check(planned, tmp_path / "out")
    assert not (tmp_path / "out" / "p.c").exists() and not (tmp_path / "p.c").exists()


def test_a_link_inside_the_output_is_replaced_not_followed(tmp_path, capsys):
    sentinel = tmp_path / "outside.c"
    sentinel.write_text("keep me")
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    out = tmp_path / "out"
    (out / "net").mkdir(parents=True)
    (out / "net" / "p.c").symlink_to(sentinel)
    code, _, err = _run(capsys, "generate", layers, "-o", out, "--target", "c")
    assert code == 0, err
    assert sentinel.read_text() == "keep me"
    written = out / "net" / "p.c"
    assert not written.is_symlink() and written.is_file() and "void p(" in written.read_text()
    assert not list((out / "net").glob(".*"))  # no temporary file left behind


def test_a_linked_subfolder_is_refused_naming_the_layer_file(tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "net").symlink_to(elsewhere, target_is_directory=True)
    code, _, err = _run(capsys, "generate", layers, "-o", out, "--target", "c")
    assert code == 2 and "Traceback" not in err
    assert f"output subfolder {str(out / 'net')!r}" in err and "is a link" in err
    assert f"layer file {str(layers)!r}" in err
    assert list(elsewhere.iterdir()) == []


def test_check_does_not_look_through_a_linked_subfolder(tmp_path, capsys):
    """``--check`` reports the link once; it neither lists nor reads the folder behind it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.txt").write_text("private")
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    out = tmp_path / "out"
    out.mkdir()
    (out / "net").symlink_to(elsewhere, target_is_directory=True)
    code, text, _ = _run(capsys, "generate", layers, "-o", out, "--target", "c", "--check")
    assert code == 1 and f"link: {out / 'net'}" in text
    assert "secret" not in text and "elsewhere" not in text
    assert "1 file(s)" in text


def test_check_reports_a_link_even_to_a_matching_file(tmp_path, capsys):
    """A link to a file outside with exactly the expected text: followed, it would match."""
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    out = tmp_path / "out"
    assert _run(capsys, "generate", layers, "-o", out, "--target", "c")[0] == 0
    copy = tmp_path / "copy.h"
    copy.write_text((out / "net" / "p.h").read_text())
    (out / "net" / "p.h").unlink()
    (out / "net" / "p.h").symlink_to(copy)
    code, text, _ = _run(capsys, "generate", layers, "-o", out, "--target", "c", "--check")
    assert code == 1 and f"link: {out / 'net' / 'p.h'}" in text


def test_check_reports_what_is_not_a_regular_file(tmp_path, capsys):
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    out = tmp_path / "out"
    assert _run(capsys, "generate", layers, "-o", out, "--target", "c")[0] == 0
    (out / "net" / "p.md").unlink()
    (out / "net" / "p.md").mkdir()
    code, text, _ = _run(capsys, "generate", layers, "-o", out, "--target", "c", "--check")
    assert code == 1 and f"not a regular file: {out / 'net' / 'p.md'}" in text
    # and generate refuses to replace a folder with a kernel file
    code, _, err = _run(capsys, "generate", layers, "-o", out, "--target", "c")
    assert code == 2 and f"{str(out / 'net' / 'p.md')!r} is a folder" in err


def test_check_of_a_folder_never_written_lists_the_missing_files(tmp_path, capsys):
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    code, text, _ = _run(capsys, "generate", layers, "-o", tmp_path / "out", "--target", "c",
                         "--check")
    assert code == 1 and text.count("missing: ") == 4 and "4 file(s)" in text


def test_a_file_where_a_folder_goes_is_an_error(tmp_path, capsys):
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    taken = tmp_path / "taken"
    taken.write_text("keep me")
    code, _, err = _run(capsys, "generate", layers, "-o", taken, "--target", "c")
    assert code == 2 and f"output folder {str(taken)!r} exists and is not a folder" in err
    out = tmp_path / "out"
    out.mkdir()
    (out / "net").write_text("keep me")
    code, _, err = _run(capsys, "generate", layers, "-o", out, "--target", "c")
    assert code == 2 and f"output subfolder {str(out / 'net')!r}" in err
    assert "exists and is not a folder" in err and f"layer file {str(layers)!r}" in err
    assert taken.read_text() == "keep me" and (out / "net").read_text() == "keep me"


def test_a_dangling_link_as_output_folder_is_an_error(tmp_path, capsys):
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "nowhere")
    code, _, err = _run(capsys, "generate", layers, "-o", out, "--target", "c")
    assert code == 2 and f"output folder {str(out)!r} is a link to no folder" in err


def test_a_linked_output_folder_is_the_users_choice(tmp_path, capsys):
    real = tmp_path / "real"
    real.mkdir()
    layers = tmp_path / "net.toml"
    layers.write_text(_POOL)
    (tmp_path / "out").symlink_to(real, target_is_directory=True)
    code, _, err = _run(capsys, "generate", layers, "-o", tmp_path / "out", "--target", "c")
    assert code == 0, err
    assert (real / "net" / "p.c").is_file()


def test_os_errors_are_reported_and_leave_no_temporary(tmp_path, monkeypatch):
    planned = emit.plan(loads(_POOL), "net", ["c"])

    def refuse(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(emit.os, "replace", refuse)
    with pytest.raises(SpecError, match=r"cannot write '.*p\.c': No space left on device"):
        emit.write(planned, tmp_path)
    assert list((tmp_path / "net").iterdir()) == []
    monkeypatch.undo()
    (tmp_path / "other").mkdir()

    def no_mkdir(self, *args, **kwargs):
        if not self.is_dir():
            raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", no_mkdir)
    with pytest.raises(SpecError, match=r"cannot create output subfolder '.*net' \(for kernel "
                                        r"'p'\): Permission denied"):
        emit.write(planned, tmp_path / "other")


def test_a_path_resolving_outside_the_output_is_refused(tmp_path):
    """The last guard of :func:`emit.write` (the checks before it leave it nothing to catch;
    it stays for a folder swapped for a link between them)."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "net").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(SpecError, match="outside the output folder"):
        emit._inside((tmp_path / "out").resolve(), tmp_path / "out" / "net")


# --------------------------------------------------------------------------- 4. verify


def _generate(tmp_path, capsys, targets="c"):
    layers = tmp_path / "net.toml"
    layers.write_text(_NET)
    out = tmp_path / "out"
    code, _, err = _run(capsys, "generate", layers, "-o", out, "--target", targets)
    assert code == 0, err
    return out


@pytest.fixture()
def shipped(tmp_path, capsys):
    """A generated folder of two C kernels (``net_c``, a convolution; ``net_p``, a pool):
    ``out``, with the kernels in ``out/net``."""
    return _generate(tmp_path, capsys)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} is not in {path}"
    path.write_text(text.replace(old, new))


def _off_by_one(source: Path) -> None:
    """The last tap of every row is skipped."""
    _edit(source, "k1 < 3; ++k1", "k1 < 2; ++k1")


def test_an_untouched_c_folder_verifies(shipped, capsys):
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 0 and _summary(out) == "2 passed, 0 failed"
    assert "stale" not in out and "orphaned" not in out


def test_an_untouched_c_and_cuda_folder_verifies(tmp_path, capsys):
    out = _generate(tmp_path, capsys, "c,cuda")
    code, text, _ = _run(capsys, "verify", out)
    assert code == 0 and _summary(text) == "2 passed, 0 failed", text
    code, text, _ = _run(capsys, "verify", out, "--target", "cuda-cpu")
    assert code == 0 and _summary(text) == "3 passed, 0 failed", text
    # the CUDA text on disk is what runs: an off-by-one there is stale and fails
    _edit(out / "net" / "net_c.cu", "acc[j] += v", "acc[j] -= v")
    code, text, _ = _run(capsys, "verify", out, "--target", "cuda-cpu")
    assert code == 1 and f"stale: {out / 'net' / 'net_c.cu'}" in text
    assert "FAIL: values differ" in text and "0 failed" not in _summary(text)
    (out / "net" / "net_p.cu").unlink()
    code, text, _ = _run(capsys, "verify", out, "--target", "cuda-cpu")
    assert code == 1 and f"missing: {out / 'net' / 'net_p.cu'}" in text
    code, text, _ = _run(capsys, "verify", out)  # the C kernels need no .cu
    assert code == 0 and _summary(text) == "2 passed, 0 failed", text


def test_an_off_by_one_with_a_renamed_spec_is_inconsistent(shipped, capsys):
    """Reproducer 1: the ``.c`` off by one and ``name`` changed in its ``.toml``."""
    _off_by_one(shipped / "net" / "net_c.c")
    _edit(shipped / "net" / "net_c.toml", 'name = "net_c"', 'name = "other"')
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1
    assert (f"inconsistent: {shipped / 'net' / 'net_c.toml'} names kernel 'other', not "
            "'net_c'") in out
    assert _summary(out).startswith("1 passed, 1 failed")


def test_an_off_by_one_without_its_spec_is_orphaned(shipped, capsys):
    """Reproducer 2: the same with the ``.toml`` deleted."""
    _off_by_one(shipped / "net" / "net_c.c")
    (shipped / "net" / "net_c.toml").unlink()
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1
    for suffix in (".c", ".h", ".md"):
        assert (f"orphaned: {shipped / 'net' / ('net_c' + suffix)} belongs to no kernel "
                "(no net_c.toml beside it)") in out
    assert _summary(out).startswith("1 passed, 3 failed")


def test_a_deleted_header_is_missing(shipped, capsys):
    """Reproducer 3."""
    (shipped / "net" / "net_p.h").unlink()
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1 and f"missing: {shipped / 'net' / 'net_p.h'}" in out
    assert _summary(out).startswith("1 passed, 1 failed")


def test_a_changed_size_macro_is_stale_and_does_not_build(shipped, capsys):
    """Reproducer 4: the header's size macro is what the build sees (its check fails)."""
    _edit(shipped / "net" / "net_c.h", "NET_C_X_SAMPLE 72L", "NET_C_X_SAMPLE 71L")
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1 and f"stale: {shipped / 'net' / 'net_c.h'} is not what convgen" in out
    assert "FAIL: its header is not the generator's" in out and "not built" in out
    assert _summary(out).startswith("1 passed, 2 failed")


def test_define_float_double_in_a_header_is_stale_and_does_not_build(shipped, capsys):
    """Reproducer 5: ``#define float double`` appended to a header."""
    header = shipped / "net" / "net_c.h"
    header.write_text(header.read_text() + "#define float double\n")
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1 and f"stale: {header}" in out
    assert "FAIL: its header is not the generator's" in out  # never called: its ABI changed
    assert _summary(out).startswith("1 passed, 2 failed")


def test_the_source_on_disk_is_what_is_built_and_tested(shipped, capsys):
    _off_by_one(shipped / "net" / "net_c.c")
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1 and f"stale: {shipped / 'net' / 'net_c.c'}" in out
    assert "FAIL: values differ" in out and _summary(out).startswith("1 passed, 2 failed")


def test_files_that_belong_to_no_kernel_and_links_fail(shipped, capsys, tmp_path):
    folder = shipped / "net"
    (folder / "notes.txt").write_text("hi")
    (folder / "extra.c").write_text("int x;\n")
    (folder / "lib.so").symlink_to(tmp_path / "net.toml")
    (shipped / "more").symlink_to(tmp_path, target_is_directory=True)
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1
    assert f"orphaned: {folder / 'notes.txt'} belongs to no kernel (convgen generate" in out
    assert f"orphaned: {folder / 'extra.c'} belongs to no kernel (no extra.toml" in out
    assert f"link: {folder / 'lib.so'}" in out and f"link: {shipped / 'more'}" in out
    assert out.count("net.toml") == 0  # the linked folder is not entered
    assert _summary(out) == "2 passed, 4 failed (4 file problem(s))"


def test_a_linked_kernel_file_is_neither_followed_nor_built(shipped, capsys, tmp_path):
    source = shipped / "net" / "net_p.c"
    copy = tmp_path / "copy.c"
    copy.write_text(source.read_text())
    source.unlink()
    source.symlink_to(copy)
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1 and f"link: {source}" in out
    assert _summary(out).startswith("1 passed, 1 failed")


def test_a_spec_that_is_no_regular_file_is_not_read(tmp_path):
    """A FIFO named like a spec: reading it would wait forever (a subprocess, so that a
    regression fails instead of hanging the suite)."""
    (tmp_path / "out" / "net").mkdir(parents=True)
    os.mkfifo(tmp_path / "out" / "net" / "q.toml")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-m", "convgen", "verify", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    assert f"not a regular file: {tmp_path / 'out' / 'net' / 'q.toml'}" in done.stdout


def test_unreadable_and_invalid_files_are_problems(shipped, capsys):
    (shipped / "net" / "net_p.h").write_bytes(b"\xff\xfe")
    (shipped / "bad.toml").write_text("[[layer]]\nname = 3\n")
    (shipped / "two.toml").write_text(_NET)
    code, out, _ = _run(capsys, "verify", shipped)
    assert code == 1
    assert f"invalid: {shipped / 'net' / 'net_p.h'} is not UTF-8 text (byte 0)" in out
    assert f"invalid: {shipped / 'bad.toml'}: " in out
    assert f"inconsistent: {shipped / 'two.toml'} must hold exactly one layer" in out


def test_a_spec_asking_for_a_schedule_that_does_not_apply_is_invalid(shipped, capsys):
    _edit(shipped / "net" / "net_p.toml", "kernel_size = ", 'schedule = "packed"\n'
          "kernel_size = ")
    code, out, err = _run(capsys, "verify", shipped)
    assert code == 1 and f"invalid: {shipped / 'net' / 'net_p.toml'}: " in out, err
    assert "has no pool kernel" in out


def test_schedules_of_the_files_and_the_command_line(tmp_path, capsys):
    """A folder generated with ``--schedule`` records it in its specs; verify with the same
    ``--schedule`` (or none) passes, with another reports every file it changes as stale."""
    layers = tmp_path / "net.toml"
    layers.write_text(_NET.replace("padding = 1 }", 'padding = 1, schedule = "blocked" }'))
    out = tmp_path / "out"
    assert _run(capsys, "generate", layers, "-o", out, "--target", "c")[0] == 0
    code, text, _ = _run(capsys, "verify", out)
    assert code == 0 and _summary(text) == "2 passed, 0 failed", text
    code, text, _ = _run(capsys, "verify", out, "--schedule", "reference")
    assert code == 1 and f"stale: {out / 'net' / 'net_c.c'}" in text
    assert "with --schedule reference" in text and "net_p.c" not in text
    code, _, err = _run(capsys, "verify", out, "--schedule", "winograd")
    assert code == 2 and f"--schedule winograd: {out / 'net' / 'net_p.toml'}: " in err
    assert "Traceback" not in err


def test_one_kernel_spec_of_a_generated_folder_is_verified_as_shipped(shipped, capsys):
    spec = shipped / "net" / "net_c.toml"
    code, out, _ = _run(capsys, "verify", spec)
    assert code == 0 and _summary(out) == "1 passed, 0 failed"
    _off_by_one(shipped / "net" / "net_c.c")
    code, out, _ = _run(capsys, "verify", spec)
    assert code == 1 and f"stale: {shipped / 'net' / 'net_c.c'}" in out
    assert "FAIL: values differ" in out
    # without the generator's first line it is still known by the banner of its files
    spec.write_text("\n".join(spec.read_text().splitlines()[1:]) + "\n")
    code, out, _ = _run(capsys, "verify", spec)
    assert code == 1 and "stale:" in out


def test_a_plain_layer_file_is_generated_and_verified_as_before(tmp_path, capsys):
    layers = tmp_path / "net.toml"
    layers.write_text(_NET)
    (tmp_path / "net.c").write_text("/* the user's own file, nothing convgen wrote */\n")
    code, out, _ = _run(capsys, "verify", layers)
    assert code == 0 and _summary(out) == "2 passed, 0 failed"
    assert "stale" not in out


def test_an_empty_folder_holds_nothing_to_verify(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, "verify", tmp_path / "empty")
    assert code == 2 and "holds no layer files (.toml)" in err


def test_the_cuda_text_on_disk_is_what_runs_on_a_gpu(tmp_path, capsys):
    from convgen.runtime import gpu

    reason = gpu.available()
    if reason is not None:
        pytest.skip(f"no GPU: {reason}")
    out = _generate(tmp_path, capsys, "c,cuda")
    code, text, _ = _run(capsys, "verify", out, "--target", "cuda")
    assert code == 0 and _summary(text) == "3 passed, 0 failed", text
    _edit(out / "net" / "net_c.cu", "acc[j] += v", "acc[j] -= v")
    code, text, _ = _run(capsys, "verify", out, "--target", "cuda")
    assert code == 1 and f"stale: {out / 'net' / 'net_c.cu'}" in text
    assert "FAIL: values differ" in text
