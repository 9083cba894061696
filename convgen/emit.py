"""Layer files -> kernel files: ``.c``, ``.h``, ``.cu``, the layer's ``.toml`` and a report.

``convgen generate LAYERS.toml -o DIR`` writes, for every layer of every network, into
``DIR/<file stem>/``: the kernels (``<name>.c``, ``<name>.h``, ``<name>.cu``), its spec as a
one-layer layer file (``<name>.toml``, which ``convgen verify`` reads back) and a report
(``<name>.md``).
The output is byte-deterministic, so ``convgen generate --check`` can compare a folder with
what the generator produces now.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from . import profiles
from . import symbolic as sym
from ._version import __version__
from .bounds import bounds_summary, prove_bounds
from .codegen import GeneratedKernel, generate
from .config import Network, load
from .cudagen import MAX_GRID_Z, CudaKernel, generate_cuda
from .errors import ConvgenError, SpecError
from .progress import track
from .proofs import qpool_statements, quantized_statements
from .quantization import Scale, global_scale
from .runtime import cross
from .runtime.nvcc import ARCHS, CHECK_FLAGS, nvcc, nvcc_version
from .runtime.nvcc import check as nvcc_check
from .spec import DTYPE_SIZES, Layer

__all__ = ["TARGETS", "KernelFiles", "check", "kernel_files", "named_layers", "plan",
           "toml_value", "write"]

VERIFIED_BY = ("`convgen verify` compiles the kernel with `-std=c99 -Wall -Wextra -Werror "
               "-pedantic -O3 -march=native` and compares it with `convgen.reference.forward` "
               "(exact arithmetic) on seeded integer-valued inputs: bit for bit for "
               "convolutions, max and average pooling (one correctly rounded division), within "
               "4 ULP for LP pooling (a root); CI runs it on `generated/`.")
#: What the verification of a quantized convolution compares.
VERIFIED_QUANTIZED = (
    "`convgen verify` compiles the kernel with `-std=c99 -Wall -Wextra -Werror -pedantic -O3 "
    "-march=native` and compares it with `convgen.reference.forward` (exact integers, the "
    "requantization of `convgen.quantization`) bit for bit, on seeded inputs over the whole "
    "range of the 8-bit types and int32 biases including extreme ones; CI runs it on "
    "`generated/`.")


def _quantization(layer: Layer) -> list[str]:
    """A quantized convolution's constants and the proofs about them (a report section)."""
    lines = ["## Quantization", "",
             f"- input: {layer.dtype}, zero point {layer.x_zero_point}; weights: "
             f"{layer.weight_dtype}, zero point(s) {_values(layer.w_zero_points)}",
             f"- accumulator: int32, {layer.taps:,} products a sum, each in "
             f"[{layer.term_range[0]:,}, {layer.term_range[1]:,}]; the sum in "
             f"[{layer.accumulator_range[0]:,}, {layer.accumulator_range[1]:,}]"]
    if layer.requantizes:
        lines += [f"- output: {layer.dtype}, scale {layer.y_scale!r}, zero point "
                  f"{layer.y_zero_point}, clamp [{layer.clamp[0]}, {layer.clamp[1]}] "
                  f"(activation {layer.activation})",
                  f"- scales: x {layer.x_scale!r}, w {_values(layer.w_scales)}; "
                  f"rounding {layer.rounding}"]
        if layer.rounding == "float":
            lines.append("- binary32 scale x_scale*w_scale/y_scale: "
                         f"{_values(tuple(Scale(v) for v in layer.scales))}")
        else:
            lines.append("- fixed-point multiplier, shift: "
                         f"{_values(tuple(layer.multipliers))}")
    else:
        lines.append("- output: the int32 accumulator (ConvInteger)")
    results = quantized_statements(layer)
    proved = sum(r.status == "proved" for r in results)
    lines += ["", f"Proofs (`convgen prove --layer`): {proved} of {len(results)} proved."]
    lines += [f"- {r.statement}: {r.status}" for r in results]
    return lines + [""]


def _pool_quantization(layer: Layer, sample: tuple) -> list[str]:
    """A quantized average pool's constants, arithmetic and proofs (a report section)."""
    glob = layer.onnx_op == "QLinearGlobalAveragePool"
    low, high = layer.clamp
    lines = ["## Quantization", "",
             f"- input: {layer.dtype}, scale {layer.x_scale!r}, zero point {layer.x_zero_point}",
             f"- output: {layer.dtype}, scale {layer.y_scale!r}, zero point "
             f"{layer.y_zero_point}, clamp [{low}, {high}] (activation {layer.activation})"]
    if layer.rounding == "integer":
        lines.append("- rounding integer (TFLite): the int32 sum of x - x_zero_point, the zero "
                     "points added back, divided by the count, ties away from zero")
    elif glob:
        count = sym.prod(sample[1:])
        lines.append(f"- rounding float (ONNX Runtime's MLAS): the int32 sum of x - "
                     f"x_zero_point times the binary32 scale fl(x_scale / fl(y_scale * "
                     f"{count})) = {Scale(global_scale(layer.x_scale, layer.y_scale, count))!r}"
                     ", to nearest, ties to even")
    else:
        lines.append("- rounding float (ONNX Runtime): the binary32 sum of the dequantized "
                     "taps in scan order, divided by the count, then fl(mean / y_scale) + "
                     "y_zero_point to nearest, ties to even")
    results = qpool_statements(layer)
    proved = sum(r.status == "proved" for r in results)
    lines += ["", f"Proofs (`convgen prove --layer`): {proved} of {len(results)} proved."]
    lines += [f"- {r.statement}: {r.status}" for r in results]
    return lines + [""]


def _values(values: tuple) -> str:
    """One value, or the per-channel list when they differ."""
    return repr(values[0]) if len(set(values)) == 1 else "per channel " + ", ".join(
        map(repr, values))


@dataclass(frozen=True)
class KernelFiles:
    """The files of one kernel, relative to the output folder."""

    kernel: GeneratedKernel
    folder: str
    files: dict  # file name -> text
    source: str = ""  # the layer file, for messages


def _identifier(*parts: str) -> str:
    text = "_".join(re.sub(r"[^0-9A-Za-z]+", "_", p).strip("_").lower() for p in parts)
    return text if re.match(r"[A-Za-z_]", text) else f"k_{text}"


def toml_value(value) -> str:
    """A TOML literal for the values specs hold: bools, ints, floats, strings, sequences."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise SpecError(f"cannot write {value!r} to TOML")


def _spec_toml(name: str, kernel: GeneratedKernel, schedule: str = "auto") -> str:
    """The one-layer layer file of a kernel; a schedule asked for and a profile other than the
    default are written too, so that ``convgen verify`` rebuilds the same kernel."""
    layer = kernel.layer
    lines = [f"# Generated by convgen {__version__}: the spec of {name}.c (convgen verify reads "
             "it).", "[[layer]]", f"name = {toml_value(name)}",
             f"type = {toml_value(type(layer).__name__)}",
             f"input_shape = {toml_value(list(kernel.input_shape))}",
             f"dtype = {toml_value(kernel.dtype)}"]
    for field in dataclasses.fields(layer):
        value = getattr(layer, field.name)
        if field.name == "dtype":  # a quantized layer's: written above
            continue
        if field.name == "output_size":  # None keeps the input size: write that size
            value = tuple(n if o is None else o for n, o in zip(kernel.input_shape[1:], value))
        if value is not None:
            lines.append(f"{field.name} = {toml_value(value)}")
    if schedule != "auto":
        lines.append(f"schedule = {toml_value(schedule)}")
    if kernel.profile != profiles.DEFAULT:
        lines.append(f"profile = {toml_value(kernel.profile)}")
    return "\n".join(lines) + "\n"


def _report(name: str, kernel: GeneratedKernel, network: Network, layer_name: str,
            footprint: str | None = None) -> str:
    """The kernel's report; ``footprint`` (:func:`_footprint`), for a C kernel: the C
    sections are written."""
    layer, sample = kernel.layer, kernel.input_shape
    size = {a: DTYPE_SIZES[kernel.dtype_of(a)] for a in ("x", "w", "b", "y")}
    kinds = {a: "" if kernel.dtype_of(a) == kernel.dtype else f"{kernel.dtype_of(a)}, "
             for a in size}
    lines = [f"# {name}", "",
             f"Generated by convgen {__version__} from `templates/{kernel.template}`.", "",
             f"- layer: `{layer.describe()}` (`{layer_name}` of `{network.name}`)",
             f"- dtype: {kernel.dtype}; batch size N at run time",
             f"- input x: (N, {', '.join(map(str, sample))}), "
             f"{sym.prod(sample) * size['x']:,} bytes per sample",
             f"- output y: (N, {', '.join(map(str, kernel.output_shape))}), {kinds['y']}"
             f"{sym.prod(kernel.output_shape) * size['y']:,} bytes per sample"]
    if "w" in kernel.arguments:
        lines.append(f"- weight w: {tuple(layer.weight_shape)} (PyTorch's layout), "
                     f"{kinds['w']}{layer.num_weights * size['w']:,} bytes")
    if "b" in kernel.arguments:
        lines.append(f"- bias b: ({layer.out_channels},), {kinds['b']}"
                     f"{layer.num_bias * size['b']:,} bytes")
    if "indices" in kernel.arguments:
        lines.append(f"- indices: like y, int64, {sym.prod(kernel.output_shape) * 8:,} bytes "
                     "per sample")
    lines += [f"- parameters: {layer.num_params:,}",
              f"- MACs per sample: {layer.macs(sample):,}; FLOPs per sample: "
              f"{layer.flops(sample):,}",
              f"- signature: `{kernel.cdef[:-1]}`",
              f"- C schedule: {kernel.schedule} ({kernel.schedule_reason})",
              f"- profile: {kernel.profile} ({profiles.PROFILES[kernel.profile]})", ""]
    if kernel.family == "qconv":
        lines += _quantization(layer)
    elif layer.quantized:
        lines += _pool_quantization(layer, sample)
    if footprint is not None:
        verified = VERIFIED_QUANTIZED if layer.quantized else VERIFIED_BY
        lines += ["## Verification", "", verified, "",
                  f"Bounds: {bounds_summary(prove_bounds(kernel))}.", "", footprint]
    return "\n".join(lines)


#: Where an ``mcu`` kernel's report measures its footprint (else: the host, its gcc).
MCU_ARCH = "cortex-m4"


def _footprint(kernel: GeneratedKernel) -> str:
    """The report's footprint section: code and constants, data, stack and scratch of
    ``kernel`` compiled alone, measured with :func:`convgen.runtime.cross.measurer`'s
    toolchain (the Cortex-M4F's for the ``mcu`` profile, else the host's gcc).  Where that
    toolchain is missing or fails, the section says why instead of failing the generation
    (the C text does not depend on it; ``convgen generate --check`` names the difference)."""
    arch = MCU_ARCH if kernel.profile == "mcu" else None
    where = "a Cortex-M4F" if arch else "this machine"
    try:
        chain = cross.measurer(arch)
        where = "a Cortex-M4F" if arch else chain.arch
        found, compiler = cross.measure(kernel, chain)
    except (ConvgenError, OSError, subprocess.SubprocessError) as error:
        said = str(error).strip().splitlines()[0].rstrip(".:")
        return "\n".join([f"## Footprint on {where}", "", f"Not measured: {said}.", ""])
    upper = kernel.name.upper()
    scratch = (f"; the caller's scratch {found.scratch:,} bytes (`{upper}_SCRATCH_SIZE` "
               "elements)" if found.scratch else "; no scratch")
    stack = f"{found.stack:,} bytes" + (" (dynamic)" if found.dynamic else "")
    arrays = ", ".join(a for a in kernel.arguments if a != "scratch")
    lines = [f"## Footprint on {where}", "",
             f"Measured with {compiler} `{' '.join(chain.flags)}` on the kernel alone: code "
             f"and constants{' (flash)' if arch else ''} {found.text:,} bytes; writable data "
             f"{found.data:,} bytes; stack of `{kernel.name}` {stack} (`-fstack-usage`)"
             f"{scratch}.  RAM in all: {found.data + found.stack + found.scratch:,} bytes "
             f"besides its arrays {arrays}."]
    if arch:
        lines[-1] += f"  `convgen verify DIR --arch {arch}` runs it there, under QEMU."
    return "\n".join(lines + [""])


TARGETS = ("c", "cuda")


def _cuda_report(kernel: CudaKernel, usages: list) -> str:
    lines = [f"## CUDA: `{kernel.name}.cu`", "",
             "Generated from `templates/cuda/kernel.cu.j2`; the direct kernel's work per "
             "output is the same template macro as the C kernel's.  nvcc "
             f"({nvcc_version(nvcc())}) compiled it for {' and '.join(ARCHS)} with "
             f"`{' '.join(CHECK_FLAGS)}`: no warnings, no spills, no local memory.", "",
             "| entry point | block | grid (x, y, z) | static shared memory | "
             + " | ".join(f"registers {a}" for a in ARCHS) + " |",
             "|---|---|---|---|" + "---|" * len(ARCHS)]
    for launch in kernel.launches:
        registers = [next((str(u.registers) for u in usages
                           if u.entry == launch.entry and u.arch == a), "?") for a in ARCHS]
        lines.append(f"| `{launch.entry}` ({launch.schedule}) | {launch.block} | "
                     f"{launch.grid_x}, {launch.grid_y}, min(N, {MAX_GRID_Z}) | "
                     f"{launch.shared_bytes:,} bytes | " + " | ".join(registers) + " |")
    lines += ["", *[f"- {launch.schedule}: {launch.note}." for launch in kernel.launches], "",
              "`convgen verify --target cuda-cpu` runs this exact text on the CPU (PyOpenCL + "
              "PoCL) against the exact oracle; `--target cuda` runs it on a GPU.", "",
              f"Bounds (thread positions, shared-memory tiles and every array access): "
              f"{bounds_summary(prove_bounds(kernel))}.", ""]
    return "\n".join(lines)


class NamedLayer(NamedTuple):
    """One layer of a layer file, as a kernel: its name, where it comes from, and the C
    schedule the file asks for (``auto`` by default)."""

    name: str
    network: Network
    layer_name: str
    layer: Layer
    shape: tuple
    schedule: str


def named_layers(networks: Iterable[Network], folder: str) -> list[NamedLayer]:
    """Every layer of ``networks``, in order; a network of one layer gives its kernel the
    network's name."""
    layers, seen = [], set()
    for network in networks:
        walk = network.model.walk(network.input_shape)
        for index, (layer_name, layer, shape) in enumerate(walk):
            name = network.name if len(network.model) == 1 else _identifier(network.name,
                                                                             layer_name)
            name = _identifier(name)
            if name in seen:
                raise SpecError(f"kernel name {name!r} (from {network.name!r}, layer "
                                f"{layer_name!r}) is used twice in {folder!r}")
            seen.add(name)
            layers.append(NamedLayer(name, network, layer_name, layer, shape,
                                     network.schedule_of(index)))
    return layers


def plan(networks: Iterable[Network], folder: str, targets: Sequence[str] = TARGETS,
         schedule: str | None = None, profile: str | None = None) -> list[KernelFiles]:
    """The kernel files for every layer of ``networks``, in order.

    ``targets`` chooses the kernels: ``c`` (``.c``/``.h``) and ``cuda`` (``.cu``, checked by
    nvcc, whose resource report goes into the ``.md``; needs nvcc).  ``schedule``, when
    given, replaces every layer's C schedule (else each layer's own, ``auto`` by default);
    ``profile``, when given, every network's profile (:mod:`convgen.profiles`).
    """
    return _plan([(folder, None, named_layers(networks, folder))], targets, schedule, profile)


def kernel_files(paths: Iterable[Path], targets: Sequence[str] = TARGETS,
                 schedule: str | None = None, profile: str | None = None
                 ) -> list[KernelFiles]:
    """Plan every layer file: each goes to a folder named after the file (``schedule`` and
    ``profile``: see :func:`plan`)."""
    groups = []
    for path in paths:
        folder = _folder_name(Path(path))
        groups.append((folder, str(path), named_layers(load(path), folder)))
    return _plan(groups, targets, schedule, profile)


def _plan(groups: Sequence[tuple], targets: Sequence[str], schedule: str | None,
          profile: str | None = None) -> list[KernelFiles]:
    """:func:`plan` for ``(folder, source file or None, named layers)`` groups, as one run:
    the texts are generated in order while nvcc checks the CUDA ones and a compiler
    measures each C kernel's footprint in parallel, then the reports (with their bounds
    proofs) are written."""
    for target in targets:
        if target not in TARGETS:
            raise SpecError(f"target {target!r} must be one of {', '.join(TARGETS)}")
    items = [(folder, source, item if schedule is None else item._replace(schedule=schedule))
             for folder, source, layers in groups for item in layers]
    kernels, cuda, usages, footprints = [], [], [], []
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for folder, source, item in track(items, "C and CUDA text", lambda e: e[2].name):
            try:
                kernels.append(generate(item.layer, item.shape, dtype=item.network.dtype,
                                        name=item.name, schedule=item.schedule,
                                        profile=profile or item.network.profile))
            except SpecError as error:  # name the kernel and its file
                raise SpecError(f"kernel {item.name!r} of {source or folder}: {error}") \
                    from None
            if "c" in targets:
                footprints.append(pool.submit(_footprint, kernels[-1]))
            if "cuda" in targets:
                cuda.append(generate_cuda(item.layer, item.shape, dtype=item.network.dtype,
                                          name=item.name))
                usages.append(pool.submit(nvcc_check, cuda[-1]))
        result = []
        for index, (folder, source, item) in track(
                list(enumerate(items)), "nvcc checks, footprints, reports and bounds proofs",
                lambda entry: entry[1][2].name):
            kernel, name = kernels[index], item.name
            files = {}
            if "c" in targets:
                files.update({f"{name}.c": kernel.source, f"{name}.h": kernel.header})
            report = _report(name, kernel, item.network, item.layer_name,
                             footprints[index].result() if footprints else None)
            if cuda:
                files[f"{name}.cu"] = cuda[index].source
                report += "\n" + _cuda_report(cuda[index], usages[index].result())
            files.update({f"{name}.toml": _spec_toml(name, kernel, item.schedule),
                          f"{name}.md": report})
            planned = KernelFiles(kernel, folder, files)
            result.append(planned if source is None
                          else dataclasses.replace(planned, source=source))
    return result


_FOLDER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\Z")


def _folder_name(path: Path) -> str:
    """The output subfolder of a layer file: its stem (see :func:`_safe_folder`)."""
    return _safe_folder(path.stem, f"layer file {str(path)!r}")


def _safe_folder(name: str, what: str) -> str:
    """``name`` when it is a plain folder name (no separator, not ``.``/``..``, not hidden),
    so that nothing is written outside ``-o``."""
    if not isinstance(name, str) or not _FOLDER.match(name):
        raise SpecError(f"{what}: output subfolder {name!r} must be letters, digits, '_', "
                        "'-' or '.' (not starting with '.' or '-'); rename the file")
    return name


def _inside(out: Path, path: Path) -> Path:
    """``path`` if it lies inside ``out`` once resolved (links followed), else an error."""
    resolved = path.resolve()
    if resolved != out and out not in resolved.parents:
        raise SpecError(f"{path} resolves to {resolved}, outside the output folder {out}; "
                        "convgen writes only inside -o (a link there is replaced, not "
                        "followed, but a linked folder is refused)")
    return resolved


def _real_folder(path: Path, what: str, owner: str = "") -> None:
    """Make ``path`` a real folder (not a link, not a file); a link or a file there is an
    error that says so."""
    if path.is_symlink():
        raise SpecError(f"{what} {str(path)!r}{owner} is a link; convgen writes only into real "
                        "folders inside -o (remove the link)")
    if os.path.lexists(path) and not path.is_dir():
        raise SpecError(f"{what} {str(path)!r}{owner} exists and is not a folder; convgen writes "
                        "its kernel files into a folder there (move it away)")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SpecError(f"cannot create {what} {str(path)!r}{owner}: {error.strerror}") from None


def _replace(folder: Path, file_name: str, text: str) -> Path:
    """Write ``text`` to ``folder/file_name`` through a temporary file in the same folder and
    ``os.replace``, which replaces a link or a file there instead of following it."""
    path = folder / file_name
    if path.is_dir() and not path.is_symlink():
        raise SpecError(f"{str(path)!r} is a folder; it is in the way of a kernel file")
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{file_name}.")
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.chmod(temporary, 0o644)  # mkstemp's 0600 is for secrets, not sources
        os.replace(temporary, path)
    except OSError as error:
        if temporary is not None and os.path.lexists(temporary):
            os.unlink(temporary)  # no half-written leftovers beside the kernels
        raise SpecError(f"cannot write {str(path)!r}: {error.strerror or error}") from None
    return path


def _what(item: KernelFiles) -> str:
    """The kernel of a planned item, and its layer file where known."""
    what = f"kernel {item.kernel.name!r}" if item.kernel is not None else "a planned kernel"
    return what + (f" of layer file {item.source!r}" if item.source else "")


def write(planned: Iterable[KernelFiles], out: Path) -> list[Path]:
    """Write the planned files under ``out``; returns the paths written.

    Every path must lie inside ``out``: a subfolder must have a plain name and must not be a
    link (a link could lead anywhere), and each file is written to a temporary file beside it
    and moved into place with ``os.replace``, which replaces a link or a file there instead
    of following it."""
    out = Path(out)
    if not out.is_symlink():
        _real_folder(out, "output folder")
    elif not out.is_dir():  # -o itself may be a link (the user's choice); below it, none
        raise SpecError(f"output folder {str(out)!r} is a link to no folder")
    root = out.resolve()
    written = []
    for item in planned:
        folder = out / _safe_folder(item.folder, _what(item))
        _real_folder(folder, "output subfolder", f" (for {_what(item)})")
        _inside(root, folder)
        written += [_replace(folder, file_name, text) for file_name, text in item.files.items()]
    return written


_NVCC = re.compile(r"nvcc \(([^)]*)\) compiled it")


_MEASURED = re.compile(r"^## Footprint on (.*)\n\n(?:Measured with (\S+ \S+) |"
                       r"(Not measured: .*))", re.M)


def _why(old: str, new: str) -> str:
    """An explanation for a differing report whose CUDA resources came from another nvcc,
    or whose footprint another compiler measured (or none could, here)."""
    said = []
    before, now = _NVCC.search(old), _NVCC.search(new)
    if before and now and before.group(1) != now.group(1):
        said.append(f"its CUDA resource table is from nvcc {before.group(1)}; this machine "
                    f"has nvcc {now.group(1)}, whose ptxas may allocate registers differently")
    before, now = _MEASURED.search(old), _MEASURED.search(new)
    if before and now and before.group(1, 2, 3) != now.group(1, 2, 3):
        said.append(f"its footprint was measured on {before.group(1)} with "
                    f"{before.group(2) or 'no compiler'}; here: "
                    + (now.group(3) or f"{now.group(2)} on {now.group(1)}"))
    return f" ({'; '.join(said)})" if said else ""


def check(planned: Iterable[KernelFiles], out: Path) -> list[str]:
    """Differences between ``out`` and the planned files (empty when they match).  No link is
    followed: a linked file or subfolder is reported as a link, and a linked subfolder is not
    looked into."""
    out, problems = Path(out), []
    folders: dict = {}  # subfolder name -> {file name: text}, in planned order
    for item in planned:
        name = _safe_folder(item.folder, _what(item))
        folders.setdefault(name, {}).update(item.files)
    for name, files in folders.items():
        folder = out / name
        if folder.is_symlink():
            problems.append(f"link: {folder} (convgen writes into real folders only; the link "
                            "is not followed)")
            continue
        if not folder.is_dir():
            problems += [f"missing: {folder / file_name}" for file_name in files]
            continue
        for file_name, text in files.items():
            path = folder / file_name
            if path.is_symlink():
                problems.append(f"link: {path} (convgen writes regular files only)")
            elif not os.path.lexists(path):
                problems.append(f"missing: {path}")
            elif not path.is_file():
                problems.append(f"not a regular file: {path}")
            else:
                old = path.read_text(encoding="utf-8", errors="replace")
                if old != text:
                    problems.append(f"differs: {path}{_why(old, text)}")
        problems += [f"unexpected: {path}" for path in sorted(folder.iterdir())
                     if path.name not in files]
    return problems
