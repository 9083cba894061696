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

from .codegen import generate
from .config import Network, load
from .cudagen import generate_cuda
from .errors import BuildError, ConvgenError
from .reference import forward
from .runtime.call import KernelCall
from .runtime.cbuild import DEFAULT_FLAGS, Kernel, build_modules, compile_kernels
from .runtime.gpu import compile_gpu
from .runtime.pocl import compile_cpu
from .spec import family_of

__all__ = ["LP_ULPS", "Outcome", "RaceFinding", "check_kernel", "race_check", "random_case",
           "verify_layers"]

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


def random_case(kernel: KernelCall, rng: np.random.Generator, batch: int = 2):
    """Integer-valued ``x`` (and ``weight``, ``bias``) in the kernel's dtype."""
    g = kernel.generated
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
    return float(np.max(np.abs(got.astype(np.float64) - exact_float) / unit, initial=0.0))


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
        got = kernel(*args)
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
    return Outcome(name, g.layer.describe(), g.dtype, cases, worst, passed, detail)


# --------------------------------------------------------------------------- shipped folders

#: The files of one kernel in a generated folder, by the target they serve.
_KERNEL_FILES = {"c": (".c", ".h"), "cuda": (".cu",)}
_KNOWN = (".c", ".h", ".cu", ".md", ".toml")


@dataclass(frozen=True)
class FolderKernel:
    """One kernel of a generated folder as shipped: its spec, and the files on disk."""

    name: str
    spec: Path
    network: Network
    files: dict             # suffix -> Path (those present)


def scan_folder(folder: Path, kind: str) -> tuple[list[FolderKernel], list[str]]:
    """The kernels of a generated folder (one ``NAME.toml`` each) and every problem with its
    files: a spec that names another kernel or holds more than one layer, a missing source
    or header, a file that belongs to no kernel, a link or anything but a regular file."""
    target = "c" if kind == "c" else "cuda"
    kernels, problems, claimed = [], [], set()
    for spec in sorted(folder.rglob("*.toml")):
        claimed.add(spec)
        try:
            networks = load(spec)
        except ConvgenError as error:
            problems.append(f"invalid: {spec}: {error}")
            continue
        if len(networks) != 1 or len(networks[0].model) != 1:
            problems.append(f"inconsistent: {spec} must hold exactly one layer")
            continue
        if networks[0].name != spec.stem:
            problems.append(f"inconsistent: {spec} names kernel {networks[0].name!r}, not "
                            f"{spec.stem!r}")
            continue
        files = {}
        for suffix in _KNOWN[:-1]:
            path = spec.with_suffix(suffix)
            if os.path.lexists(path):
                claimed.add(path)
                files[suffix] = path
        for suffix in _KERNEL_FILES[target]:
            if suffix not in files:
                problems.append(f"missing: {spec.with_suffix(suffix)}")
        kernels.append(FolderKernel(spec.stem, spec, networks[0], files))
    for path in sorted(folder.rglob("*")):
        if path.suffix in _KNOWN and path not in claimed:
            problems.append(f"orphaned: {path} belongs to no kernel (no "
                            f"{path.with_suffix('.toml').name})")
        elif path in claimed and (path.is_symlink() or not path.is_file()):
            problems.append(f"not a regular file: {path}")
    return kernels, problems


def _read(path: Path | None) -> str | None:
    if path is None or path.is_symlink() or not path.is_file():
        return None
    return path.read_text(encoding="utf-8")


def verify_folder(folder: Path, kind: str = "c", cases: int = 2, batch: int = 2,
                  schedule: str | None = None, device: str = "pocl"
                  ) -> tuple[list[Outcome], list[str]]:
    """Build and check exactly the files a generated folder ships (``.c`` and ``.h`` as they
    are on disk; for ``cuda``/``cuda-cpu`` the ``.cu``), and list every problem with its
    files: missing, orphaned, inconsistent, or not what the generator writes now (stale).
    A kernel whose files do not build is a failed outcome, with the compiler's message."""
    kernels, problems = scan_folder(folder, kind)
    outcomes = []
    for index, item in enumerate(kernels):
        network = item.network
        ((_, layer, shape),) = network.model.walk(network.input_shape)
        asked = schedule or network.schedule_of(0)
        if kind == "c":
            expected = generate(layer, shape, network.dtype, item.name, schedule=asked)
            disk = {s: _read(item.files.get(s)) for s in (".c", ".h")}
            texts = {".c": expected.source, ".h": expected.header}
        else:
            expected = generate_cuda(layer, shape, network.dtype, item.name)
            disk = {".cu": _read(item.files.get(".cu"))}
            texts = {".cu": expected.source}
        for suffix, text in disk.items():
            if text is not None and text != texts[suffix]:
                problems.append(f"stale: {item.spec.with_suffix(suffix)} is not what the "
                                "generator produces now (run convgen generate)")
        if any(text is None for text in disk.values()):
            continue  # reported as missing
        outcomes += _check_shipped(expected, disk, kind, cases, index, batch, device)
    return outcomes, problems


def _check_shipped(expected, disk: dict, kind: str, cases: int, seed: int, batch: int,
                   device: str) -> list[Outcome]:
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
            kernels = [Kernel(shipped, build_modules([shipped]))]
        elif kind == "cuda":
            kernels = compile_gpu([replace(expected, source=disk[".cu"])])
        else:
            kernels = compile_cpu([replace(expected, source=disk[".cu"])], device=device)
    except BuildError as error:
        detail = str(error).splitlines()[0][:300]
        return [Outcome(expected.name, expected.layer.describe(), expected.dtype, 0,
                        float("inf"), False, f"the shipped files do not build: {detail}")]
    return [check_kernel(k, cases=cases, seed=seed, batch=batch) for k in kernels]


def verify_layers(items: Sequence[tuple], dtype: str = "float32", cases: int = 2,
                  flags: Sequence[str] = DEFAULT_FLAGS, batch: int = 2) -> list[Outcome]:
    """Build ``(layer, input_shape[, name[, schedule]])`` items in one module and check each
    kernel."""
    kernels = compile_kernels(items, dtype=dtype, flags=flags)
    return [check_kernel(k, cases=cases, seed=i, batch=batch) for i, k in enumerate(kernels)]


# --------------------------------------------------------------------------- Oclgrind


@dataclass(frozen=True)
class RaceFinding:
    """What Oclgrind said about one entry point (``diagnostics`` empty: nothing found)."""

    kernel: str
    schedule: str
    passed: bool            # the values also agreed with the exact oracle
    diagnostics: str


def race_check(items: Sequence[tuple], dtype: str = "float32", batch: int = 2,
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
