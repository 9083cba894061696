"""Translation validation of a compiled kernel: probe it until its behaviour is determined.

A convolution kernel without data-dependent control flow runs one instruction trace for
every input, and that trace computes ``y = sum_k sum_i w_k x_i A[k, i] + sum_c b_c B[c]``.
Running it on one-hot weights (one tap ``k`` at a time) and one-hot inputs (the identity as
a batch: sample ``i`` is ``e_i``) reads off ``A[k, i]`` entry by entry; every product is 0 or
1 and every sum of them is exact in floating point, so the read-off coefficients are exact
integers.  They must equal the symbolic operator (:func:`convgen.toeplitz.entries`): the
number of entries of tap ``k`` at ``(row, col)``, zero elsewhere.  The bias is probed alone
(``x = 0``, ``w = 0``, ``b = e_c``: one on every output of channel ``c``), and two cheap
probes more check that no output moves with ``x`` alone or ``w`` alone.

* Average pools: the identity batch; each output must be ``fl(1/divisor)`` in the kernel's
  dtype where the operator has an entry, exactly zero elsewhere.  The kernels divide the
  window's sum by the divisor, and with a sum of exactly 1 that is ``fl(1/n)``: the value
  NumPy's correctly rounded ``dtype(1) / dtype(n)`` gives.
* Max pools: sample ``i`` holds ``+1`` at element ``i`` and ``-1`` elsewhere (``1`` and ``0``
  for ``uint8``), so ``i`` is the unique maximum of every window that reads it: each output
  must be the high value exactly when its window contains ``i``, else the low value, and
  indices (``return_indices``) must point at ``i`` there and at the window's first element
  (the first of equal maxima) elsewhere.  A valid layer has no window of padding only.
* LP pools are not bilinear: not covered.

The premise (no data-dependent control flow) is checked on the C text by
:func:`convgen.taint.check_source`.  The cost is ``taps x input elements x work per sample``
(:func:`probe_cost`); a layer above :data:`EXHAUSTIVE_LIMIT` is refused.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import symbolic as sym
from .errors import SpecError
from .runtime.call import KernelCall
from .spec import family_of
from .taint import check_source
from .toeplitz import entries, entry_count

__all__ = ["EXHAUSTIVE_LIMIT", "Grouping", "Validation", "check_cost", "probe_cost", "validate"]

#: Most probe work :func:`validate` takes on: taps x input elements x work per sample (MACs
#: of one sample for convolutions, window reads for pools), divided by the group size when
#: screened.  Chosen so that the bundled check stays short on 2 busy cores: LeNet-5's C3
#: (6.8e11, 6.8e10 screened) runs screened in about 6 s; C5 (9.2e10 screened; its packed
#: kernel repacks 48,000 weights a sample, so it would take over 3 minutes) is skipped.
EXHAUSTIVE_LIMIT = 7 * 10**10

#: Bytes of one batch of probes (inputs and outputs); larger batches are split.
CHUNK_BYTES = 32 * 2**20

#: Wrong coefficients a failure quotes before it counts the rest.
SHOWN = 5

_LINEAR = ("conv", "conv_transpose")
NOT_COVERED = ("not covered by translation validation (LP pooling and the quantized layers' "
               "requantization are not bilinear)")


@dataclass(frozen=True)
class Validation:
    """The verdict of :func:`validate` on one kernel.

    ``status`` is ``proved`` (every probe agreed with the operator), ``screened`` (grouped
    probes agreed: see :class:`Grouping`; not a proof), ``failed`` (``detail``
    names the offending taps, inputs and outputs), ``skipped`` (too big for the limit) or
    ``not covered`` (LP pooling).
    """

    name: str
    status: str
    detail: str = ""
    probes: int = 0             # samples the kernel ran
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def __str__(self) -> str:
        if self.status == "proved":
            return f"proved ({self.probes:,} probes, {self.seconds:.2f} s)"
        if self.status == "screened":
            return f"screened ({self.probes:,} probes, {self.seconds:.2f} s): {self.detail}"
        return f"{self.status}: {self.detail}" if self.detail else self.status


def _taps(layer) -> int:
    """Weight elements a convolution is probed with; pools have one trivial tap."""
    return int(np.prod(layer.weight_shape)) if family_of(layer) in _LINEAR else 1


def probe_cost(layer, input_shape) -> int:
    """Probe work of ``layer`` on one sample of ``input_shape`` ``(C, *spatial)``: taps x
    input elements x work per sample, which is the kernel's arithmetic (the layer's MACs for
    convolutions, the window reads of :func:`convgen.toeplitz.entry_count` for pools) plus
    the outputs every probe reads back."""
    sample = tuple(input_shape)
    work = layer.macs(sample) if family_of(layer) in _LINEAR else entry_count(layer, sample)
    outputs = sym.prod(layer.output_shape(sample))
    return _taps(layer) * int(sym.prod(sample)) * int(work + outputs)


def check_cost(layer, input_shape, limit: int = EXHAUSTIVE_LIMIT) -> int:
    """:func:`probe_cost`, or a :class:`SpecError` naming the layer, its cost and ``limit``
    when the cost exceeds it."""
    cost = probe_cost(layer, input_shape)
    if cost > limit:
        raise SpecError(f"{layer.describe()} on {tuple(input_shape)}: {_too_big(cost, limit)}; "
                        "cost = taps x input elements x work per sample")
    return cost


def _too_big(cost: int, limit: int) -> str:
    return f"too big for --exhaustive (cost {cost:.3g} > limit {limit:.3g})"


# --------------------------------------------------------------------------- coordinates


def _at(label: str, flat: int, shape: tuple, batch: bool = True) -> str:
    index = [int(i) for i in np.unravel_index(int(flat), shape)]
    return f"{label}[{', '.join(map(str, ([0] if batch else []) + index))}]"


def _number(value) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else repr(value)


def _differences(got_codes, got_values, want_codes, want_values):
    """``(codes, got, want)`` wherever two sparse vectors (sorted unique codes) differ."""
    if np.array_equal(got_codes, want_codes) and np.array_equal(got_values, want_values):
        return got_codes[:0], got_values[:0], want_values[:0]
    codes = np.union1d(got_codes, want_codes)
    got = np.zeros(len(codes), dtype=np.float64)
    want = np.zeros(len(codes), dtype=np.float64)
    got[np.searchsorted(codes, got_codes)] = got_values
    want[np.searchsorted(codes, want_codes)] = want_values
    bad = got != want  # NaN differs from everything
    return codes[bad], got[bad], want[bad]


class _Findings:
    """Wrong values as they are found: the first :data:`SHOWN` described, the rest counted."""

    def __init__(self):
        self.shown: list[str] = []
        self.count = 0

    def add(self, count: int, describe) -> None:
        """Record ``count`` findings; ``describe(j)`` gives the text of the ``j``-th."""
        for j in range(min(count, SHOWN - len(self.shown))):
            self.shown.append(describe(j))
        self.count += count

    def text(self, what: str) -> str:
        more = f"; and {self.count - len(self.shown):,} more" if self.count > SHOWN else ""
        return f"{self.count:,} {what}: " + "; ".join(self.shown) + more


# --------------------------------------------------------------------------- probes


def _chunks(n_in: int, n_out: int, itemsize: int):
    """``(start, stop)`` of the identity batch's pieces, each within :data:`CHUNK_BYTES`."""
    rows = max(1, CHUNK_BYTES // (itemsize * (n_in + 2 * n_out)))
    return [(start, min(n_in, start + rows)) for start in range(0, n_in, rows)]


def _probe_inputs(start: int, stop: int, shape: tuple, dtype, low=0, high=1) -> np.ndarray:
    """Samples ``start..stop-1``: ``high`` at element ``i`` of sample ``i``, ``low`` elsewhere."""
    n_in = int(np.prod(shape))
    x = np.full((stop - start, n_in), low, dtype=dtype)
    x[np.arange(stop - start), np.arange(start, stop)] = high
    return x.reshape((stop - start, *shape))


class _Probe:
    """One kernel's sizes, dtype and expected operator, and the findings of its probes."""

    def __init__(self, kernel: KernelCall):
        g = self.generated = kernel.generated
        self.kernel, self.layer = kernel, g.layer
        self.dtype = np.dtype(g.dtype)
        self.in_shape, self.out_shape = tuple(g.input_shape), tuple(g.output_shape)
        self.n_in, self.n_out = int(np.prod(self.in_shape)), int(np.prod(self.out_shape))
        self.ops = entries(self.layer, self.in_shape)
        self.findings, self.probes = _Findings(), 0

    def run(self, x, weight=None, bias=None):
        self.probes += len(x)
        return self.kernel(x, weight, bias)

    def chunks(self):
        return _chunks(self.n_in, self.n_out, self.dtype.itemsize)

    def x_at(self, col: int) -> str:
        return _at("x", col, self.in_shape)

    def y_at(self, row: int) -> str:
        return _at("y", row, self.out_shape)


# --------------------------------------------------------------------------- convolutions


def _threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


#: Threads the taps are probed on (the compiled call releases the GIL; the kernels are built
#: without OpenMP here).
THREADS = _threads()

#: Significand bits of the float dtypes a grouped probe's sums must stay exact in.
_BITS = {"float32": 24, "float64": 53}


@dataclass(frozen=True)
class Grouping:
    """How :func:`validate` with ``screen`` packs taps: ``size`` taps a kernel call, tap ``j``
    of a group weighted ``base ** j``.  ``bound`` is the largest legal coefficient (entries
    folded onto one input); ``base = 2 * bound + 3`` gives every integer coefficient of
    magnitude ``<= bound + 1`` its own balanced base-``base`` digit, and ``size`` keeps every
    such sum below ``2 ** bits`` (exact in the dtype)."""

    size: int
    base: int
    bound: int

    @classmethod
    def of(cls, dtype, bound: int, taps: int) -> Grouping:
        bits, base = _BITS.get(np.dtype(dtype).name), 2 * bound + 3
        size = 1
        while bits and size < taps and (bound + 1) * (base ** (size + 1) - 1) // (base - 1) \
                < 2 ** bits:
            size += 1
        return cls(size, base, bound)


class _Table:
    """The operator as sorted codes ``tap * per_tap + col * outputs + row`` and their counts."""

    def __init__(self, p: _Probe):
        self.per_tap = p.n_in * p.n_out
        ops = p.ops
        self.codes, self.counts = np.unique(ops.keys.astype(np.int64) * self.per_tap
                                            + ops.cols.astype(np.int64) * p.n_out + ops.rows,
                                            return_counts=True)

    def slice(self, base: int, size: int):
        lo, hi = np.searchsorted(self.codes, [base, base + size])
        return self.codes[lo:hi], self.counts[lo:hi]


def _linear(p: _Probe, grouping: Grouping | None = None) -> None:
    """Every tap over the identity batch (``grouping``: groups of taps, each group that does
    not read back exactly re-probed tap by tap), then the weight-free, input-free and bias
    probes.  Taps run on :data:`THREADS` threads; findings are recorded in tap order."""
    weight = np.zeros(p.layer.weight_shape, dtype=p.dtype)
    bias = np.zeros(p.out_shape[0], dtype=p.dtype) if "b" in p.generated.arguments else None
    table, size = _Table(p), grouping.size if grouping else 1
    groups = [range(t, min(t + size, weight.size)) for t in range(0, weight.size, size)]
    with ThreadPoolExecutor(THREADS) as pool:
        for start, stop in p.chunks():
            x = _probe_inputs(start, stop, p.in_shape, p.dtype)
            _zero(p, p.run(x, weight, bias), lambda r: f"with every weight zero, {p.y_at(r)}")
            work = partial(_group, p, table, grouping, x, bias, start)
            for probes, found in pool.map(work, groups):
                p.probes += probes
                for codes, got, want in found:
                    _compare(p, codes, got, want, table.per_tap)
    _input_free(p, weight, bias)
    if bias is not None:
        _bias(p, weight, bias)


def _group(p: _Probe, table: _Table, grouping, x, bias, start: int, taps: range):
    """``(samples run, [(codes, got, want) of each tap that differs])`` for ``taps`` on the
    samples ``x`` from ``start``: one grouped call first when ``grouping`` and more than one
    tap, accepted only if it reads back exactly the operator's weighted sum."""
    weight = np.zeros(p.layer.weight_shape, dtype=p.dtype)
    span = len(x) * p.n_out
    if grouping and len(taps) > 1:
        want = np.zeros(span, dtype=np.float64)
        for j, tap in enumerate(taps):
            weight.flat[tap] = grouping.base ** j
            codes, counts = table.slice(tap * table.per_tap + start * p.n_out, span)
            want[codes - (tap * table.per_tap + start * p.n_out)] += counts * grouping.base ** j
        y = p.kernel(x, weight, bias).reshape(-1)
        weight[...] = 0
        if np.array_equal(y.astype(np.float64), want):
            return len(x), []
        return len(x) + len(x) * len(taps), [d for d in (_tap(p, table, weight, x, bias,
                                                              start, t) for t in taps) if len(d[0])]
    found = [_tap(p, table, weight, x, bias, start, t) for t in taps]
    return len(x) * len(taps), [d for d in found if len(d[0])]


def _tap(p: _Probe, table: _Table, weight, x, bias, start: int, tap: int):
    """The differences of one-hot tap ``tap`` from the operator on the samples ``x``."""
    weight.flat[tap] = 1
    y = p.kernel(x, weight, bias).reshape(-1)
    weight.flat[tap] = 0
    base = tap * table.per_tap + start * p.n_out
    nz = np.flatnonzero(y)
    codes, counts = table.slice(base, len(y))
    return _differences(base + nz, y[nz], codes, counts)


def _compare(p: _Probe, codes, got, want, per_tap: int) -> None:

    def describe(j: int) -> str:
        tap, rest = divmod(int(codes[j]), per_tap)
        col, row = divmod(rest, p.n_out)
        return (f"tap {_at('w', tap, tuple(p.layer.weight_shape), False)} reaches "
                f"{p.y_at(row)} from {p.x_at(col)} with coefficient {_number(got[j])}; the "
                f"operator says {_number(want[j])}")

    p.findings.add(len(codes), describe)


def _zero(p: _Probe, y, where) -> None:
    """Every output of the probe ``y`` must be zero; ``where(row)`` names one that is not."""
    flat = y.reshape(-1)
    bad = np.flatnonzero(flat)
    p.findings.add(len(bad), lambda j: f"{where(int(bad[j]) % p.n_out)} is "
                                       f"{_number(flat[bad[j]])}; it must be 0")


def _input_free(p: _Probe, weight, bias) -> None:
    """``x = 0`` with each one-hot weight: a bilinear kernel (bias zero) gives zeros."""
    x = np.zeros((1, *p.in_shape), dtype=p.dtype)
    w_shape = tuple(p.layer.weight_shape)
    for tap in range(weight.size):
        weight.flat[tap] = 1
        y = p.run(x, weight, bias)
        weight.flat[tap] = 0
        _zero(p, y, lambda r, t=tap: f"with x = 0 and only {_at('w', t, w_shape, False)} one, "
                                     f"{p.y_at(r)}")


def _bias(p: _Probe, weight, bias) -> None:
    """``x = 0``, ``w = 0``, ``b = e_c``: one on every output of channel ``c``, else zero."""
    x = np.zeros((1, *p.in_shape), dtype=p.dtype)
    per_channel = p.n_out // p.out_shape[0]
    for channel in range(p.out_shape[0]):
        bias[channel] = 1
        y = p.run(x, weight, bias).reshape(-1)
        bias[channel] = 0
        _bias_channel(p, channel, y, np.arange(p.n_out) // per_channel == channel)


def _bias_channel(p: _Probe, channel: int, y, ones) -> None:
    want = ones.astype(np.float64)
    bad = np.flatnonzero(y != want)
    p.findings.add(len(bad), lambda j: (
        f"bias b[{channel}] alone gives {p.y_at(int(bad[j]))} = {_number(y[bad[j]])}; the "
        f"operator says {_number(want[bad[j]])}"))


# --------------------------------------------------------------------------- pools


def _avg(p: _Probe) -> None:
    """The identity batch: ``fl(1/divisor)`` on the operator's entries, zero elsewhere."""
    ops = p.ops
    codes = ops.cols.astype(np.int64) * p.n_out + ops.rows
    order = np.argsort(codes, kind="stable")
    codes, divisors = codes[order], ops.keys[order]
    values = np.ones(len(codes), dtype=p.dtype) / divisors.astype(p.dtype)  # correctly rounded
    divisor_of = np.zeros(p.n_out, dtype=np.int64)
    divisor_of[ops.rows] = ops.keys
    for start, stop in p.chunks():
        y = p.run(_probe_inputs(start, stop, p.in_shape, p.dtype)).reshape(-1)
        base = start * p.n_out
        nz = np.flatnonzero(y)
        lo, hi = np.searchsorted(codes, [base, base + len(y)])
        _avg_compare(p, _differences(base + nz, y[nz].astype(np.float64), codes[lo:hi],
                                     values[lo:hi].astype(np.float64)), divisor_of)


def _avg_compare(p: _Probe, differences, divisor_of) -> None:
    bad, got, want = differences

    def describe(j: int) -> str:
        col, row = divmod(int(bad[j]), p.n_out)
        exact = f" (1/{divisor_of[row]} in {p.dtype})" if want[j] else ""
        return (f"{p.y_at(row)} from {p.x_at(col)} is {_number(got[j])}; the operator "
                f"says {_number(want[j])}{exact}")

    p.findings.add(len(bad), describe)


def _levels(dtype: np.dtype) -> tuple[int, int]:
    """The low and high values of the max-pool probes, in range of ``dtype``."""
    return (0, 1) if dtype == np.uint8 else (-1, 1)


def _max(p: _Probe) -> None:
    """Sample ``i``: ``i`` the unique maximum; high exactly where the window holds ``i``."""
    ops, (low, high) = p.ops, _levels(p.dtype)
    codes = np.sort(ops.cols.astype(np.int64) * p.n_out + ops.rows)
    starts = np.minimum(np.searchsorted(ops.rows, np.arange(p.n_out)), len(ops.rows) - 1)
    plane = p.n_in // p.in_shape[0]
    first = ops.cols[starts].astype(np.int64) % plane  # the first of equal maxima
    for start, stop in p.chunks():
        got = p.run(_probe_inputs(start, stop, p.in_shape, p.dtype, low, high))
        y, indices = got if isinstance(got, tuple) else (got, None)
        y, base = y.reshape(-1), start * p.n_out
        lo, hi = np.searchsorted(codes, [base, base + len(y)])
        _max_values(p, y, base, codes[lo:hi], low, high)
        if indices is not None:
            inside = np.zeros(len(y), dtype=bool)
            inside[codes[lo:hi] - base] = True
            inside = inside.reshape(stop - start, p.n_out)
            at = (np.arange(start, stop) % plane)[:, None]
            _max_indices(p, indices.reshape(inside.shape),
                         np.where(inside, at, first[None, :]), start)


def _max_values(p: _Probe, y, base: int, inside, low: int, high: int) -> None:
    """High exactly at the codes ``inside`` (``col * outputs + row``), low elsewhere."""
    odd = np.flatnonzero((y != high) & (y != low))
    p.findings.add(len(odd), lambda j: (
        f"{p.y_at(int(odd[j]) % p.n_out)} is {_number(y[odd[j]])} when "
        f"{p.x_at((base + int(odd[j])) // p.n_out)} is the only maximum; it must be {high} "
        f"or {low}"))
    tops = base + np.flatnonzero(y == high)
    bad, got, _ = _differences(tops, np.ones(len(tops)), inside, np.ones(len(inside)))

    def describe(j: int) -> str:
        col, row = divmod(int(bad[j]), p.n_out)
        holds = "does not contain" if got[j] else "contains"
        return (f"{p.y_at(row)} is {_number(high if got[j] else y[bad[j] - base])} when "
                f"{p.x_at(col)} is the only maximum; its window {holds} that element "
                f"(expected {low if got[j] else high})")

    p.findings.add(len(bad), describe)


def _max_indices(p: _Probe, got, want, start: int) -> None:
    bad = np.argwhere(got != want)

    def describe(j: int) -> str:
        b, row = (int(v) for v in bad[j])
        return (f"{_at('indices', row, p.out_shape)} is {int(got[b, row])} when "
                f"{p.x_at(start + b)} is the only maximum; expected {int(want[b, row])}")

    p.findings.add(len(bad), describe)


# --------------------------------------------------------------------------- the verdict


def _kind(layer) -> str:
    if layer.quantized:  # the requantization is not linear
        return "quantized"
    if family_of(layer) in _LINEAR:
        return "linear"
    return layer.reduction


def validate(kernel: KernelCall, limit: int = EXHAUSTIVE_LIMIT,
             screen: bool | None = None) -> Validation:
    """Translation validation of a compiled C kernel (see the module's docstring).

    Parameters
    ----------
    kernel : KernelCall
        A kernel of the C target (its ``generated.source`` is the C text the static check
        reads; the probes run the compiled binary).
    limit : int
        Most probe work (:func:`probe_cost`); a bigger layer is ``skipped``, or ``screened``
        (a convolution whose grouped probes, :func:`screen_cost`, fit the limit).
    screen : bool, optional
        ``True``: grouped probes (a ``screened`` verdict, not a proof) whatever the cost;
        ``False``: never; ``None``: only where the proof is over the limit.

    Returns
    -------
    Validation
        ``proved``, ``screened``, ``failed`` (naming the first wrong taps, inputs and outputs
        and counting the rest), ``skipped`` or ``not covered``.
    """
    g = kernel.generated
    if kernel.target != "c":
        raise SpecError(f"{g.name}: translation validation reads the C text; target "
                        f"{kernel.target!r} is not supported (only 'c')")
    kind = _kind(g.layer)
    if kind not in _PROBES:
        return Validation(g.name, "not covered", NOT_COVERED)
    cost = probe_cost(g.layer, g.input_shape)
    if screen is None:
        screen = cost > limit and kind == "linear" and _fits(g, cost, limit)
    if cost > limit and not screen:
        return Validation(g.name, "skipped", _too_big(cost, limit))
    began = time.perf_counter()
    report = check_source(g.source, g.name, selecting=kind == "max")
    if not report.passed:
        return Validation(g.name, "failed", "data-dependent control flow (the premise of the "
                          "probes): " + "; ".join(report.violations[:SHOWN]))
    probe = _Probe(kernel)
    grouping = _grouping(probe) if screen and kind == "linear" else None
    if grouping is not None and grouping.size > 1 and cost // grouping.size > limit:
        return Validation(g.name, "skipped", _too_big(cost // grouping.size, limit)
                          + f" even screened ({grouping.size} taps a probe)")
    if grouping is not None:
        _linear(probe, grouping)
    else:
        _PROBES[kind](probe)
    seconds = time.perf_counter() - began
    if probe.findings.count:
        return Validation(g.name, "failed", probe.findings.text("wrong values"),
                          probe.probes, seconds)
    if grouping is not None and grouping.size > 1:
        return Validation(g.name, "screened", _screened(grouping), probe.probes, seconds)
    return Validation(g.name, "proved", "", probe.probes, seconds)


def _grouping(p: _Probe) -> Grouping:
    counts = np.unique(p.ops.keys.astype(np.int64) * p.n_in * p.n_out
                       + p.ops.cols.astype(np.int64) * p.n_out + p.ops.rows,
                       return_counts=True)[1]
    return Grouping.of(p.dtype, int(counts.max()) if len(counts) else 1, _taps(p.layer))


def _fits(g, cost: int, limit: int) -> bool:
    """Whether grouped probes could fit ``limit``: the largest group (bound 1) is an upper
    bound, decided before the operator is built."""
    return cost // Grouping.of(g.dtype, 1, _taps(g.layer)).size <= limit


def _screened(grouping: Grouping) -> str:
    return (f"{grouping.size} taps a probe weighted by powers of {grouping.base}; exact for "
            f"every kernel whose coefficients are integers of magnitude <= "
            f"{grouping.bound + 1}, not a proof")


_PROBES = {"linear": _linear, "avg": _avg, "max": _max}
