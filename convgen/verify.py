"""Kernel vs oracle: compile generated kernels and compare them with the exact reference.

Inputs are seeded small integers stored in the kernel's dtype, so every sum a kernel forms is
exact: convolutions and max pooling must match :func:`convgen.reference.forward` bit for bit
(the oracle runs in float64, exact on such inputs); average pooling must equal the exact
rational quotient correctly rounded (one division; the oracle runs in exact arithmetic); LP
pooling must lie within :data:`LP_ULPS` ULP of the root.

:func:`race_check` runs the CUDA text under Oclgrind (OpenCL on a simulated device) in a
subprocess, ``python -m convgen.verify``, and collects its race and bounds diagnostics along
with each kernel's verdict.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import sympy

from . import quantization as q
from ._version import __version__
from .codegen import GeneratedKernel, generate
from .config import Network, load
from .cudagen import generate_cuda
from .errors import BuildError, ConvgenError, RunError
from .exhaustive import validate
from .netemit import is_network_spec, load_spec_model, network_files, read_network_spec
from .netgen import generate_network
from .netverify import verify_network
from .onnx_import import load_onnx
from .progress import track
from .reference import forward
from .runtime.call import KernelCall
from .runtime.cbuild import DEFAULT_FLAGS, Kernel, build_modules, compile_kernels
from .runtime.cross import ProgramKernel, toolchain
from .runtime.gpu import compile_gpu
from .runtime.pocl import compile_cpu
from .spec import family_of

__all__ = ["LP_ULPS", "Outcome", "RaceFinding", "check_arch", "check_kernel", "is_shipped",
           "race_check", "random_case", "validated", "verify_folder", "verify_layers",
           "verify_spec"]

LP_ULPS = 4
_MARK = "convgen-oclgrind-run:"


@dataclass(frozen=True)
class Outcome:
    """The verdict on one kernel."""

    name: str
    description: str
    dtype: str
    cases: int
    worst_ulps: float
    passed: bool
    detail: str = ""
    exhaustive: str = ""    # translation validation's verdict (verify --exhaustive), else ""
    footprint: object = None  # convgen.runtime.cross.Footprint, measured for --arch builds


def _quantized_case(g, rng: np.random.Generator, batch: int) -> list:
    """A quantized layer's arrays: x (and a convolution's weights) over their types' whole
    range, an int32 bias of the size a real one has (a few accumulator steps), and now and
    then an extreme one (the saturating add)."""
    layer = g.layer
    arrays = []
    shapes = [("x", (batch, *g.input_shape))] + ([("w", layer.weight_shape)]
                                                 if "w" in g.arguments else [])
    for argument, shape in shapes:
        low, high = q.type_range(g.dtype_of(argument))
        arrays.append(rng.integers(low, high + 1, size=shape).astype(g.dtype_of(argument)))
    if "b" in g.arguments:
        bias = rng.integers(-2**15, 2**15, size=layer.out_channels)
        extreme = rng.random(layer.out_channels) < 0.1
        bias[extreme] = rng.choice(q.INT32, size=int(extreme.sum()))
        arrays.append(bias.astype(np.int32))
    return arrays


def random_case(kernel: KernelCall, rng: np.random.Generator, batch: int = 2):
    """Integer-valued ``x`` (and ``weight``, ``bias``) in the kernel's dtype; quantized
    convolutions' over their types' range."""
    g = kernel.generated
    if g.layer.quantized:
        return _quantized_case(g, rng, batch)
    low, high = (0, 9) if g.dtype == "uint8" else (-4, 5)
    x = rng.integers(low, high, size=(batch, *g.input_shape)).astype(g.dtype)
    args = [x]
    if "w" in g.arguments:
        args.append(rng.integers(-3, 4, size=g.layer.weight_shape).astype(g.dtype))
    if "b" in g.arguments:
        args.append(rng.integers(-9, 10, size=g.layer.out_channels).astype(g.dtype))
    return args


def _ulps(got: np.ndarray, exact: np.ndarray, dtype: str) -> float:
    """Largest distance from the exact values, in ULPs of the exact values' magnitude."""
    exact_float = np.array([float(sympy.N(v, 40)) if isinstance(v, sympy.Basic) else float(v)
                            for v in exact.flat]).reshape(exact.shape)
    if dtype in ("int8", "uint8"):
        return 0.0 if np.array_equal(got, exact_float) else float("inf")
    unit = np.spacing(np.abs(exact_float).astype(dtype)).astype(np.float64)
    # a broken kernel's garbage (huge values, NaN) is a failure to report, not a warning
    with np.errstate(over="ignore", invalid="ignore"):
        distance = np.abs(got.astype(np.float64) - exact_float) / unit
    if np.isnan(distance).any():
        return float("inf")
    return float(np.max(distance, initial=0.0))


def _correctly_rounded(got: np.ndarray, exact: np.ndarray) -> bool:
    """Every value is the exact rational rounded to the nearest representable one."""
    for value, truth in zip(got.flat, exact.flat):
        truth = Fraction(truth)
        candidates = [np.nextafter(value, -np.inf), value, np.nextafter(value, np.inf)]
        if min(abs(Fraction(float(c)) - truth) for c in candidates) != abs(
                Fraction(float(value)) - truth):
            return False
    return True


def _oracle_input(array: np.ndarray, reduction: str | None) -> np.ndarray:
    """Exact arithmetic where a kernel divides (average pooling); float64 elsewhere, which is
    exact on these small integers and far faster on big layers."""
    return array.astype(np.int64 if reduction == "avg" else np.float64)


def check_kernel(kernel: KernelCall, cases: int = 2, seed: int = 0, batch: int = 2) -> Outcome:
    """Run ``kernel`` on ``cases`` seeded inputs and judge it against the exact oracle."""
    g = kernel.generated
    rng = np.random.default_rng(seed)
    family_of(g.layer)  # refuses a layer without a known family before any work
    reduction = g.layer.reduction
    worst, passed, detail = 0.0, True, ""
    for _ in range(cases):
        args = random_case(kernel, rng, batch)
        try:
            got = kernel(*args)
        except RunError as error:  # a test program that died: the kernel fails, named
            passed, detail, worst = False, str(error), float("inf")
            break
        if g.layer.quantized:  # integers in, integers out: equal or not
            exact = forward(g.layer, *args)
            ok = np.array_equal(got.astype(np.int64), exact.astype(np.int64))
            worst = worst if ok else float("inf")
            if not ok:
                passed, detail = False, detail or \
                    f"{np.count_nonzero(got != exact.astype(np.int64))} values differ"
            continue
        exact = forward(g.layer, *[_oracle_input(a, reduction) for a in args])
        if isinstance(got, tuple):
            if not np.array_equal(got[1], exact[1]):
                passed, detail = False, "indices differ"
            got, exact = got[0], exact[0]
        ulps = _ulps(got, exact, g.dtype)
        worst = max(worst, ulps)
        if reduction == "lp":
            ok = ulps <= LP_ULPS
        elif reduction == "avg":
            ok = _correctly_rounded(got, exact)
        else:
            ok = ulps == 0
        if not ok:
            passed, detail = False, detail or f"values differ ({ulps:.3g} ULP)"
    schedule = getattr(kernel, "schedule", None)
    name = f"{g.name} ({schedule})" if schedule else g.name
    return Outcome(name, g.layer.describe(), g.dtype, cases, worst, passed, detail,
                   footprint=getattr(kernel, "footprint", None))


# --------------------------------------------------------------------------- shipped folders

#: The files of one kernel in a generated folder, by the target they serve.
_KERNEL_FILES = {"c": (".c", ".h"), "cuda": (".cu",)}
_KNOWN = (".c", ".h", ".cu", ".md", ".toml")
#: The first line of every spec ``convgen generate`` writes (see ``emit._spec_toml``), and the
#: words of the banner of every kernel file it writes.
_SPEC_MARK = "# Generated by convgen"
_BANNER = "Generated by convgen"


@dataclass(frozen=True)
class FolderKernel:
    """One kernel of a generated folder as shipped: its spec, and the files on disk."""

    name: str
    spec: Path
    network: Network
    files: dict             # suffix -> Path (those present)


def _regular(path: Path) -> bool:
    return not path.is_symlink() and path.is_file()


def _irregular(path: Path) -> str:
    """The problem with a path in a generated folder that is a link or not a regular file."""
    if path.is_symlink():
        return (f"link: {path} (a generated folder holds regular files and folders only; "
                "convgen does not follow the link)")
    return (f"not a regular file: {path} (a generated folder holds regular files and "
            "folders only)")


def _entries(folder: Path) -> list[Path]:
    """Every file and folder under ``folder``; a linked folder is listed, never entered."""
    found = []
    for root, folders, files in os.walk(folder):  # followlinks=False
        found += [Path(root, name) for name in folders + files]
    return sorted(found)


def _scan_spec(spec: Path, target: str, claimed: set, problems: list) -> FolderKernel | None:
    """The kernel a generated spec describes, or None with its problem recorded.  The files
    of its stem are claimed either way: a broken spec is reported once, not its files too."""
    claimed.update(spec.with_suffix(s) for s in _KNOWN if os.path.lexists(spec.with_suffix(s)))
    if not _regular(spec):
        problems.append(_irregular(spec))
        return None
    try:
        networks = load(spec)
    except ConvgenError as error:
        problems.append(f"invalid: {spec}: {error}")
        return None
    if len(networks) != 1 or len(networks[0].model) != 1:
        problems.append(f"inconsistent: {spec} must hold exactly one layer (it describes one "
                        "kernel)")
        return None
    if networks[0].name != spec.stem:
        problems.append(f"inconsistent: {spec} names kernel {networks[0].name!r}, not "
                        f"{spec.stem!r} (its file name)")
        return None
    files = {suffix: path for suffix in _KNOWN[:-1]
             if os.path.lexists(path := spec.with_suffix(suffix))}
    problems += [_irregular(path) for path in files.values() if not _regular(path)]
    for suffix in _KERNEL_FILES[target]:
        if suffix not in files:
            problems.append(f"missing: {spec.with_suffix(suffix)} (the {suffix} file of "
                            f"kernel {spec.stem!r})")
    return FolderKernel(spec.stem, spec, networks[0], files)


def scan_folder(folder: Path, kind: str) -> tuple[list[FolderKernel], list[str]]:
    """The kernels of a generated folder (one ``NAME.toml`` each) and every problem with its
    files: a spec that names another kernel or holds more than one layer, a missing source
    or header, a file that belongs to no kernel, a link or anything but a regular file.
    No link is followed."""
    target = "c" if kind == "c" else "cuda"
    kernels, problems, claimed = [], [], set()
    entries = _entries(folder)
    for spec in [p for p in entries if p.suffix == ".network" and _regular(p)]:
        if is_network_spec(spec):  # a network's folder: verify_networks checks it
            claimed.update(spec.with_suffix(s) for s in (*_KNOWN, ".network")
                           if os.path.lexists(spec.with_suffix(s)))
    for spec in [p for p in entries if p.suffix == ".toml"]:
        kernel = _scan_spec(spec, target, claimed, problems)
        if kernel is not None:
            kernels.append(kernel)
    for path in entries:
        if path in claimed:
            continue
        if path.is_symlink():
            problems.append(_irregular(path))
        elif path.is_dir():
            continue
        elif path.suffix in _KNOWN:
            problems.append(f"orphaned: {path} belongs to no kernel (no "
                            f"{path.with_suffix('.toml').name} beside it)")
        else:
            problems.append(f"orphaned: {path} belongs to no kernel (convgen generate writes "
                            "only NAME.c, .h, .cu, .md, .toml and a network's .network)")
    return kernels, problems


def is_shipped(path: Path) -> bool:
    """Whether a layer file is the spec of a kernel that ``convgen generate`` wrote: it starts
    with the generator's mark, or a kernel file of its stem beside it carries the generator's
    banner."""
    path = Path(path)
    if path.suffix != ".toml" or not _regular(path):
        return False
    with open(path, encoding="utf-8", errors="replace") as stream:
        if stream.readline().startswith(_SPEC_MARK):
            return True
    for suffix in _KNOWN[:3]:
        sibling = path.with_suffix(suffix)
        if _regular(sibling):
            with open(sibling, encoding="utf-8", errors="replace") as stream:
                if _BANNER in stream.read(300):
                    return True
    return False


def _read(path: Path | None, problems: list) -> str | None:
    """The text of a shipped file; None (reported) when it is not readable UTF-8 text, and
    None (already reported) when it is missing or not a regular file."""
    if path is None or not _regular(path):
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        problems.append(f"invalid: {path} is not UTF-8 text (byte {error.start})")
    except OSError as error:
        problems.append(f"invalid: cannot read {path}: {error.strerror}")
    return None


def verify_folder(folder: Path, kind: str = "c", cases: int = 2, batch: int = 2,
                  schedule: str | None = None, device: str = "pocl", exhaustive: bool = False,
                  arch: str = "native") -> tuple[list[Outcome], list[str]]:
    """Build and check exactly the files a generated folder ships (``.c`` and ``.h`` as they
    are on disk; for ``cuda``/``cuda-cpu`` the ``.cu``), and list every problem with its
    files: missing, orphaned, inconsistent, or not what the generator writes now (stale).
    A kernel whose files do not build is a failed outcome, with the compiler's message.
    ``exhaustive`` (C only): also translation validation of each built binary
    (:func:`validated`).  ``arch`` (C only): ``native`` loads each kernel into Python; another
    (:data:`convgen.runtime.cross.ARCHES`) builds it with its harness for that architecture,
    runs it under the emulator and measures its footprint."""
    check_arch(kind, arch, exhaustive)
    kernels, problems = scan_folder(Path(folder), kind)
    outcomes, more = _verify_shipped(kernels, kind, cases, batch, schedule, device, exhaustive,
                                     arch)
    if kind == "c" and arch == "native":
        found, others = verify_networks(Path(folder), cases, batch)
        outcomes, more = outcomes + found, more + others
    return outcomes, problems + more


def verify_networks(folder: Path, cases: int = 2, batch: int = 2
                    ) -> tuple[list[Outcome], list[str]]:
    """Every network folder under ``folder`` (a ``NAME.network`` spec: a TOML
    ``[network]`` table): its files compared with what the generator writes now, then its
    ``NAME.c`` and ``NAME.h`` as they are on disk built and checked
    (:func:`convgen.netverify.verify_network`).  C on this machine only: a network has no
    CUDA text, and the other architectures verify its kernels one by one."""
    outcomes, problems = [], []
    specs = [p for p in _entries(Path(folder)) if _regular(p) and is_network_spec(p)]
    for path in track(specs, "networks", lambda p: p.stem):
        try:
            spec = read_network_spec(path)
            model = load_spec_model(spec)
            files = network_files(spec.model, path.parent.name, path.parent).files
        except ConvgenError as error:
            problems.append(f"invalid: {path}: {error}")
            continue
        for name, text in files.items():
            disk = path.parent / name
            if not _regular(disk):
                problems.append(f"missing: {disk}" if not os.path.lexists(disk)
                                else _irregular(disk))
            elif disk.read_text(encoding="utf-8", errors="replace") != text:
                problems.append(f"stale: {disk} differs from what convgen generates now")
        source, header = path.with_suffix(".c"), path.with_suffix(".h")
        if not (_regular(source) and _regular(header)):
            continue
        network = load_onnx(model, name=spec.name)
        shipped = replace(generate_network(network),
                                      source=source.read_text(encoding="utf-8"),
                                      header=header.read_text(encoding="utf-8"))
        try:
            result = verify_network(network, cases, batch, onnx_model=model, planned=shipped)
        except ConvgenError as error:
            outcomes.append(Outcome(spec.name, "network", "float32", cases, math.inf, False,
                                    str(error).splitlines()[0]))
            continue
        detail = "; ".join(result.problems) or (
            f"within {result.max_ratio:.2g} of its bound end to end, every node within "
            f"{result.node_ratio:.2g} of its own; memory plan {result.plan}"
            + (f"; ONNX Runtime within {result.ort_ratio:.2g} of the bound, "
               f"|C - ORT| <= {result.ort_vs_c:.2g}" if result.ort_ratio is not None else ""))
        outcomes.append(Outcome(spec.name, f"network of {len(network.nodes)} nodes",
                                "float32", cases, 0.0, result.passed, detail))
    return outcomes, problems


def verify_spec(spec: Path, kind: str = "c", cases: int = 2, batch: int = 2,
                schedule: str | None = None, device: str = "pocl", exhaustive: bool = False,
                arch: str = "native") -> tuple[list[Outcome], list[str]]:
    """:func:`verify_folder` for one kernel of a generated folder, named by its spec
    (``NAME.toml``): its files beside it as they are on disk."""
    check_arch(kind, arch, exhaustive)
    problems: list = []
    kernel = _scan_spec(Path(spec), "c" if kind == "c" else "cuda", set(), problems)
    outcomes, more = _verify_shipped([kernel] if kernel else [], kind, cases, batch, schedule,
                                     device, exhaustive, arch)
    return outcomes, problems + more


def check_arch(kind: str, arch: str, exhaustive: bool) -> None:
    """Refuse an ``arch`` that is not one, or with a target or option it cannot serve, and
    an architecture whose toolchain is missing (naming the packages), before any work."""
    if arch == "native":
        return
    if kind != "c":
        raise ConvgenError(f"--arch {arch} builds the C kernels; it needs --target c, not "
                           f"--target {kind}")
    if exhaustive:
        raise ConvgenError(f"--exhaustive probes the kernel loaded into Python; it runs with "
                           f"--arch native, not --arch {arch}")
    toolchain(arch)


def _c_kernel(generated: GeneratedKernel, arch: str) -> KernelCall:
    """``generated`` built for ``arch``: loaded through cffi (native), or a program run
    under the architecture's emulator."""
    if arch == "native":
        return Kernel(generated, build_modules([generated]))
    return ProgramKernel(generated, toolchain(arch))


def _verify_shipped(kernels: Sequence[FolderKernel], kind: str, cases: int, batch: int,
                    schedule: str | None, device: str, exhaustive: bool = False,
                    arch: str = "native") -> tuple[list[Outcome], list[str]]:
    """Compare each kernel's files with what the generator writes now, then build and check
    the files as they are on disk."""
    outcomes, problems = [], []
    for index, item in track(list(enumerate(kernels)), "build and check",
                             lambda entry: entry[1].name):
        network = item.network
        ((_, layer, shape),) = network.model.walk(network.input_shape)
        try:
            if kind == "c":
                expected = generate(layer, shape, network.dtype, item.name,
                                    schedule=schedule or network.schedule_of(0),
                                    profile=network.profile)
                texts = {".c": expected.source, ".h": expected.header}
            else:
                expected = generate_cuda(layer, shape, network.dtype, item.name)
                texts = {".cu": expected.source}
        except ConvgenError as error:
            if schedule is not None:  # the command line's --schedule: a usage error
                raise ConvgenError(f"--schedule {schedule}: {item.spec}: {error}") from None
            problems.append(f"invalid: {item.spec}: {error}")
            continue
        disk = {suffix: _read(item.files.get(suffix), problems) for suffix in texts}
        for suffix, text in disk.items():
            if text is not None and text != texts[suffix]:
                how = f" with --schedule {schedule}" if schedule else ""
                problems.append(f"stale: {item.spec.with_suffix(suffix)} is not what convgen "
                                f"{__version__} generates from {item.spec.name}{how} (edited, "
                                "or from another version: run convgen generate)")
        if any(text is None for text in disk.values()):
            continue  # reported above: missing, not a regular file or unreadable
        outcomes += _check_shipped(expected, disk, kind, cases, index, batch, device,
                                   exhaustive, arch)
    return outcomes, problems


def _check_shipped(expected, disk: dict, kind: str, cases: int, seed: int, batch: int,
                   device: str, exhaustive: bool = False, arch: str = "native"
                   ) -> list[Outcome]:
    """Build the files as they are on disk and judge each entry point against the oracle."""
    if kind == "c" and disk[".h"] != expected.header:
        # the header is the kernel's ABI as the test calls it (types, sizes): one that is not
        # the generator's cannot be called safely, so the kernel fails unbuilt
        return [Outcome(expected.name, expected.layer.describe(), expected.dtype, 0,
                        float("inf"), False, "its header is not the generator's (its "
                        "declarations are what a caller relies on); not built")]
    try:
        if kind == "c":
            shipped = replace(expected, source=disk[".c"], header=disk[".h"])
            kernels = [_c_kernel(shipped, arch)]
        elif kind == "cuda":
            kernels = compile_gpu([replace(expected, source=disk[".cu"])])
        else:
            kernels = compile_cpu([replace(expected, source=disk[".cu"])], device=device)
    except BuildError as error:
        detail = str(error).splitlines()[0][:300]
        return [Outcome(expected.name, expected.layer.describe(), expected.dtype, 0,
                        float("inf"), False, f"the shipped files do not build: {detail}")]
    outcomes = [check_kernel(k, cases=cases, seed=seed, batch=batch) for k in kernels]
    if exhaustive:  # the same binary the random cases ran
        outcomes = [validated(o, k) for o, k in zip(outcomes, kernels)]
    return outcomes


def verify_layers(items: Sequence[tuple], dtype: str | None = None, cases: int = 2,
                  flags: Sequence[str] = DEFAULT_FLAGS, batch: int = 2,
                  exhaustive: bool = False, profile: str = "default", arch: str = "native"
                  ) -> list[Outcome]:
    """Build ``(layer, input_shape[, name[, schedule]])`` items in one module and check each
    kernel (``exhaustive``: and validate each, see :func:`validated`; ``profile``: see
    :mod:`convgen.profiles`; ``arch``: see :func:`verify_folder`)."""
    check_arch("c", arch, exhaustive)
    if arch != "native":
        kernels = [_c_kernel(generate(item[0], item[1], dtype, item[2] if len(item) > 2 else
                                      None, schedule=item[3] if len(item) > 3 else "auto",
                                      profile=profile), arch)
                   for item in track(items, f"build for {arch}", lambda i: str(i[0]))]
        return check_kernels(kernels, cases=cases, batch=batch)
    kernels = compile_kernels(items, dtype=dtype, flags=flags, profile=profile)
    return check_kernels(kernels, cases=cases, batch=batch, exhaustive=exhaustive)


def check_kernels(kernels: Sequence[KernelCall], cases: int = 2, batch: int = 2,
                  exhaustive: bool = False) -> list[Outcome]:
    """:func:`check_kernel` on each of ``kernels`` (seeded by position); ``exhaustive``:
    then :func:`validated`."""
    outcomes = []
    for i, k in track(list(enumerate(kernels)), "check", lambda e: e[1].name):
        outcome = check_kernel(k, cases=cases, seed=i, batch=batch)
        outcomes.append(validated(outcome, k) if exhaustive else outcome)
    return outcomes


def validated(outcome: Outcome, kernel: KernelCall) -> Outcome:
    """``outcome`` with the verdict of translation validation
    (:func:`convgen.exhaustive.validate`) on the same built kernel: a failed validation
    fails the kernel; a skipped or uncovered one is recorded, not failed."""
    verdict = validate(kernel)
    detail = outcome.detail
    if not verdict.passed:
        detail = "; ".join(d for d in (detail, f"translation validation {verdict}") if d)
    return replace(outcome, passed=outcome.passed and verdict.passed, detail=detail,
                   exhaustive=str(verdict))


# --------------------------------------------------------------------------- Oclgrind


@dataclass(frozen=True)
class RaceFinding:
    """What Oclgrind said about one entry point (``diagnostics`` empty: nothing found)."""

    kernel: str
    schedule: str
    passed: bool            # the values also agreed with the exact oracle
    diagnostics: str


def race_check(items: Sequence[tuple], dtype: str | None = None, batch: int = 2,
               timeout: float = 600) -> list[RaceFinding]:
    """Run every entry point of each ``(layer, input_shape[, name])`` item (or
    :class:`~convgen.cudagen.CudaKernel`) on Oclgrind with data-race detection, in a
    subprocess; returns one finding per entry point.

    Oclgrind reports out-of-bounds accesses, data races on global and shared memory, and
    barrier divergence on stderr; the subprocess marks where each launch starts so every
    diagnostic is attributed to its entry point.
    """
    request = pickle.dumps((list(items), dtype, batch))
    # Oclgrind stops reporting after OCLGRIND_MAX_ERRORS for the whole process: one racy
    # kernel must not silence the next one.
    env = dict(os.environ, OCLGRIND_DATA_RACES="1", OCLGRIND_CHECK_API="1",
               OCLGRIND_MAX_ERRORS=str(10**9))
    try:
        done = subprocess.run([sys.executable, "-m", "convgen.verify"], input=request,
                              capture_output=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ConvgenError(f"Oclgrind did not finish {len(items)} kernels in {timeout} s") \
            from None
    stdout, stderr = done.stdout.decode(), done.stderr.decode(errors="replace")
    if done.returncode:
        raise ConvgenError(f"the Oclgrind run failed (exit {done.returncode}):\n{stderr}")
    verdicts = json.loads(stdout)
    said: dict = {}
    current = None
    for line in stderr.splitlines(keepends=True):
        if line.startswith(_MARK):
            current = line[len(_MARK):].strip()
            said[current] = ""
        elif current is not None:
            said[current] += line
    return [RaceFinding(v["kernel"], v["schedule"], v["passed"],
                        _shorten(said.get(f"{v['kernel']} {v['schedule']}", "").strip()))
            for v in verdicts]


def _shorten(text: str, keep: int = 8000) -> str:
    """The first ``keep`` characters of a (possibly huge) diagnostic, and how much more."""
    if len(text) <= keep:
        return text
    return text[:keep] + f"\n... and {len(text) - keep:,} more characters of diagnostics"


def _race_main() -> None:
    """Subprocess side of :func:`race_check`: run the pickled items on Oclgrind."""
    items, dtype, batch = pickle.loads(sys.stdin.buffer.read())
    verdicts = []
    for index, kernel in enumerate(compile_cpu(items, dtype, device="oclgrind")):
        print(f"{_MARK} {kernel.name} {kernel.schedule}", file=sys.stderr, flush=True)
        outcome = check_kernel(kernel, cases=1, seed=index, batch=batch)
        sys.stderr.flush()
        verdicts.append(dict(kernel=kernel.name, schedule=kernel.schedule,
                             passed=outcome.passed))
    json.dump(verdicts, sys.stdout)


if __name__ == "__main__":
    _race_main()
