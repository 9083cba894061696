"""The equivalent linear operator of a layer: its (block-)Toeplitz matrix.

A convolution is a linear map ``vec(y) = T @ vec(x) + b``.  Rows of ``T`` follow ``vec(y)`` and
columns follow ``vec(x)``, both in C order of ``(C, *spatial)`` for one sample: row
``(o, p_1, ..., p_n)`` is ``o*prod(out) + ravel(p)``, column ``(i, x_1, ..., x_n)`` is
``i*prod(in) + ravel(x)``.  For a 2x2 kernel ``[[a, b], [c, d]]`` on a 1x3x3 input the rows are
``[a b 0 c d 0 0 0 0]``, ``[0 a b 0 c d 0 0 0]``, ``[0 0 0 a b 0 c d 0]``, ``[0 0 0 0 a b 0 c d]``.

Every operator is first described by its :class:`Entries` (a COO list: entry ``t`` adds
``value(keys[t])`` at ``(rows[t], cols[t])``), built with vectorized NumPy from the index
expressions of :mod:`convgen.symbolic` (``tap_index``, ``padded_source``, ``adaptive_window``).
The same entries give the symbolic SymPy matrix, the numeric ``scipy.sparse`` matrix, and the
exact product used as an oracle.

* Convolution: keys are flat indices into the weight ``(C_out, C_in/groups, *kernel)``; the
  reflect/replicate/circular padding modes fold several taps onto one column, whose entry is
  then the sum of those weights.
* Transposed convolution: defined as ``T.T`` of the matching convolution (whose input is the
  transposed convolution's output), with PyTorch's weight layout ``(C_in, C_out/groups, *k)``,
  which is the matching convolution's weight layout.
* Average pooling (window, adaptive, global): keys are divisors; the entry is ``1/divisor``.
* Max pooling is not linear: :func:`selection_matrix` gives the 0/1 matrix it applies to one
  particular input, and :func:`max_pool_counterexample` shows ``f(x1 + x2) != f(x1) + f(x2)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import scipy.sparse
import sympy

from . import symbolic as sym
from .errors import SpecError
from .spec import Layer, family_of
from .spec.base import register_method

__all__ = ["Counterexample", "Entries", "Structure", "apply_entries", "bias_vector",
           "check_size", "entries", "entry_count", "is_linear", "materialized_structure",
           "max_pool_counterexample", "selection_matrix", "structure", "toeplitz"]

SYMBOLIC_LIMIT = 200_000  # entries; a SymPy matrix beyond this is too slow to be useful


@dataclass(frozen=True)
class Entries:
    """A linear operator as COO entries.

    ``kind == "weight"``: entry ``t`` holds ``weight.flat[keys[t]]``; ``kind == "divisor"``:
    it holds ``1/keys[t]``.  Entries with equal ``(row, col)`` add up.  ``canonical``: rows
    ascending and no ``(row, col)`` twice, so the CSR arrays follow without sorting.
    """

    rows: np.ndarray
    cols: np.ndarray
    keys: np.ndarray
    shape: tuple[int, int]
    kind: str
    canonical: bool

    @property
    def transpose(self) -> Entries:
        return Entries(self.cols, self.rows, self.keys, self.shape[::-1], self.kind, False)


@dataclass(frozen=True)
class Structure:
    """Shape and sparsity of an operator."""

    shape: tuple[int, int]
    nnz: int
    density: float
    distinct_weights: int | None

    def __str__(self) -> str:
        text = (f"shape {self.shape[0]:,} x {self.shape[1]:,}, {self.nnz:,} nonzeros, "
                f"density {self.density:.3g}")
        if self.distinct_weights is not None:
            text += f", {self.distinct_weights:,} distinct weights"
        return text


# --------------------------------------------------------------------------- per-dimension tables


def _tap_table(n_in: int, n_out: int, kernel: int, stride: int, dilation: int, pad_lo: int,
               padding_mode: str):
    """``(o, j, source)`` for every tap ``j`` of every window ``o`` that reads an input."""
    out = np.arange(n_out, dtype=np.int64)[:, None]
    tap = np.arange(kernel, dtype=np.int64)[None, :]
    position = sym.tap_index(out, tap, stride, dilation, pad_lo)
    source = sym.padded_source(position, n_in, padding_mode)
    real = (source >= 0) & (source < n_in)
    return (np.broadcast_to(out, real.shape)[real], np.broadcast_to(tap, real.shape)[real],
            source[real])


def _adaptive_table(n_in: int, n_out: int):
    """``(o, j, source)`` of adaptive pooling windows, and each window's size."""
    outs, taps, sources, sizes = [], [], [], []
    for o in range(n_out):
        start, end = sym.adaptive_window(o, n_in, n_out)
        outs.append(np.full(end - start, o))
        taps.append(np.arange(end - start))
        sources.append(np.arange(start, end))
        sizes.append(end - start)
    return (np.concatenate(outs), np.concatenate(taps), np.concatenate(sources),
            np.array(sizes, dtype=np.int64))


def _avg_counts(layer: Layer, n_in: int, n_out: int, dim: int, pads) -> np.ndarray:
    """Per window of one dimension, how many taps the divisor counts."""
    lo, hi = pads
    out = np.arange(n_out, dtype=np.int64)[:, None]
    tap = np.arange(layer.kernel_size[dim], dtype=np.int64)[None, :]
    position = sym.tap_index(out, tap, layer.stride[dim], layer.dilation[dim], lo)
    if layer.count_include_pad:  # padding counts, the ceil-mode overhang past it does not
        counted = (position >= -lo) & (position < n_in + hi)
    else:
        counted = (position >= 0) & (position < n_in)
    return counted.sum(axis=1)


def _product(tables, out_sizes, in_sizes, tap_sizes):
    """Combine per-dimension tables into flat (row, col, tap) over all spatial dims.

    Sorted by row, then by tap in C order (the scan order of a window).
    """
    row = col = tap = np.zeros(1, dtype=np.int64)
    for (o, j, x), n_out, n_in, k in zip(tables, out_sizes, in_sizes, tap_sizes):
        row = (row[:, None] * n_out + o[None, :]).ravel()
        col = (col[:, None] * n_in + x[None, :]).ravel()
        tap = (tap[:, None] * k + j[None, :]).ravel()
    order = np.lexsort((tap, row))
    return row[order], col[order], tap[order]


def _index_dtype(*limits: int):
    return np.int32 if max(limits) < np.iinfo(np.int32).max else np.int64


# --------------------------------------------------------------------------- operators


def _sample(layer: Layer, input_shape: Sequence) -> tuple[int, tuple[int, ...]]:
    shape = layer.split_input(input_shape)
    if sym.is_symbolic(shape.channels, *shape.spatial):
        raise SpecError(f"{type(layer).__name__}: the Toeplitz matrix needs a concrete "
                        f"input_shape, got {tuple(input_shape)!r}")
    layer.output_shape(input_shape)  # validates
    return shape.channels, shape.spatial


def _conv_entries(in_channels: int, out_channels: int, groups: int, in_spatial, out_spatial,
                  layer: Layer, pads, padding_mode: str) -> Entries:
    tables = [_tap_table(n, m, k, s, d, lo, padding_mode) for n, m, k, s, d, (lo, _) in
              zip(in_spatial, out_spatial, layer.kernel_size, layer.stride, layer.dilation,
                  pads)]
    sp_row, sp_col, sp_tap = _product(tables, out_spatial, in_spatial, layer.kernel_size)
    p_out, p_in, p_k = (sym.prod(out_spatial), sym.prod(in_spatial),
                        sym.prod(layer.kernel_size))
    cg_in, cg_out = in_channels // groups, out_channels // groups
    itype = _index_dtype(out_channels * p_out, in_channels * p_in, out_channels * cg_in * p_k)
    co = np.arange(out_channels, dtype=itype)[:, None, None]
    ci = np.arange(cg_in, dtype=itype)[None, None, :]
    sp_row, sp_col, sp_tap = (a.astype(itype)[None, :, None] for a in (sp_row, sp_col, sp_tap))
    rows = co * itype(p_out) + sp_row + 0 * ci
    cols = ((co // cg_out) * cg_in + ci) * itype(p_in) + sp_col
    keys = (co * cg_in + ci) * itype(p_k) + sp_tap
    shape = (out_channels * p_out, in_channels * p_in)
    # distinct taps read distinct inputs unless the padding mode folds them together
    return Entries(rows.ravel(), cols.ravel(), keys.ravel(), shape, "weight",
                   padding_mode == "zeros")


def _pool_entries(channels: int, in_spatial, out_spatial, tables, divisors) -> Entries:
    """Depthwise entries: each channel pools itself; keys are per-window divisors."""
    taps = [int(t[1].max()) + 1 if len(t[1]) else 1 for t in tables]
    sp_row, sp_col, _ = _product(tables, out_spatial, in_spatial, taps)
    p_out, p_in = sym.prod(out_spatial), sym.prod(in_spatial)
    c = np.arange(channels, dtype=np.int64)[:, None]
    rows = (c * p_out + sp_row[None, :]).ravel()
    cols = (c * p_in + sp_col[None, :]).ravel()
    keys = np.broadcast_to(divisors[sp_row][None, :], (channels, len(sp_row))).ravel()
    return Entries(rows, cols, keys, (channels * p_out, channels * p_in), "divisor", True)


def _window_pool_tables(layer: Layer, in_spatial, out_spatial, pads):
    return [_tap_table(n, m, k, s, d, lo, "zeros") for n, m, k, s, d, (lo, _) in
            zip(in_spatial, out_spatial, layer.kernel_size, layer.stride, layer.dilation, pads)]


def _row_divisors(layer: Layer, in_spatial, out_spatial, pads) -> np.ndarray:
    if layer.divisor_override is not None:
        return np.full(sym.prod(out_spatial), layer.divisor_override, dtype=np.int64)
    counts = [_avg_counts(layer, n, m, dim, pads[dim])
              for dim, (n, m) in enumerate(zip(in_spatial, out_spatial))]
    divisor = np.ones(1, dtype=np.int64)
    for count in counts:
        divisor = (divisor[:, None] * count[None, :]).ravel()
    return divisor


def _adaptive_tables(layer: Layer, in_spatial):
    tables, divisor = [], np.ones(1, dtype=np.int64)
    sizes = layer._out_spatial(layer.split_input((1, *in_spatial)))
    for n, m in zip(in_spatial, sizes):
        o, j, x, counts = _adaptive_table(n, m)
        tables.append((o, j, x))
        divisor = (divisor[:, None] * counts[None, :]).ravel()
    return tables, sizes, divisor


#: Most entries :func:`entries` materializes (three index arrays of this length: 2.4 GB as
#: int32, 4.8 GB as int64, plus the sort); a larger operator is refused up front with the
#: size it would need.
MAX_ENTRIES = 200_000_000

#: Most (window, tap) pairs :func:`structure` examines one by one on one axis: only the border
#: windows of reflect, replicate and circular padding, whose folded taps may share an input.
MAX_BORDER_TAPS = 20_000_000


def _floor_sum(count: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*i + b) / m) for i in range(count))`` in O(log) steps, for any integers
    ``a``, ``b`` and ``m >= 1``: lattice points under a line (the Euclid-like reduction)."""
    total = 0
    if a < 0 or a >= m:  # take whole multiples of m out of the slope, then the offset
        total += count * (count - 1) // 2 * (a // m)
        a %= m
    if b < 0 or b >= m:
        total += count * (b // m)
        b %= m
    while count > 0:
        top = a * count + b  # 0 <= a, b < m here
        if top < m:
            break
        # swap the axes: count the points of the same triangle column by column
        count, b, m, a = top // m, top % m, a, m
        total += count * (count - 1) // 2 * (a // m) + count * (b // m)
        a, b = a % m, b % m
    return total


def _box_below(t: int, m: int, k: int, s: int, d: int) -> int:
    """``#{(o, j) in [0, m) x [0, k): o*s + j*d <= t}``: for each tap ``j`` the windows
    ``o <= (t - j*d)/s``, clamped to ``[0, m]`` (all ``m`` up to tap ``A``, none past ``B``)."""
    if t < 0:
        return 0
    full_until, any_until = (t - (m - 1) * s) // d, t // d  # A, B
    full = min(max(full_until + 1, 0), k)
    first, last = max(full_until + 1, 0), min(any_until, k - 1)
    count = last - first + 1
    if count <= 0:
        return full * m
    # taps last, last-1, ..., first: floor((t - last*d + i*d) / s) + 1 windows each
    return full * m + _floor_sum(count, s, d, t - last * d) + count


@dataclass(frozen=True)
class _Axis:
    """One axis of an operator's Kronecker product, counted without listing it."""

    entries: int            # (window, tap) pairs that read an input: what entries() lists
    pairs: int              # distinct (window, input) pairs among them: the nonzeros
    taps: int               # distinct taps among them: the weights used


def _window_axis(n: int, m: int, k: int, s: int, d: int, lo: int, mode: str,
                 owner: str) -> _Axis:
    """The axis of a convolution or window pool: window ``o``'s tap ``j`` reads
    ``tap_index(o, j) = o*s + j*d - lo`` (through ``padded_source`` for non-zero padding)."""
    if mode != "zeros":  # every tap reads an input; only the border windows can fold taps
        return _Axis(m * k, _folded_pairs(n, m, k, s, d, lo, mode, owner), k if m else 0)
    # zero padding: the taps inside [0, n), each its own input
    inside = _box_below(n - 1 + lo, m, k, s, d) - _box_below(lo - 1, m, k, s, d)
    # tap j is used when some window o in [0, m) puts it in [0, n): o*s in [lo - j*d,
    # n - 1 + lo - j*d], for j from first (o = m - 1 reaches) to last (o = 0 reaches); inside
    # that range a multiple of s in the interval is one in [0, (m-1)*s] (0 or (m-1)*s is then
    # in the interval too), and an interval of n >= s integers always holds one
    first, last = max(sym.cdiv(lo - (m - 1) * s, d), 0), min(sym.fdiv(n - 1 + lo, d), k - 1)
    count = max(last - first + 1, 0)
    taps = count
    if count and n < s:  # multiples of s in (top - n, top], top = n - 1 + lo - j*d
        top = n - 1 + lo - last * d
        taps = _floor_sum(count, s, d, top) - _floor_sum(count, s, d, top - n)
    return _Axis(inside, inside, taps)


def _folded_pairs(n: int, m: int, k: int, s: int, d: int, lo: int, mode: str,
                  owner: str) -> int:
    """Distinct (window, input) pairs under reflect/replicate/circular padding: ``k`` for every
    window inside the input (distinct positions), counted one by one at the borders."""
    first, stop = sym.interior_range(n, m, k, s, d, lo)
    borders = m - (stop - first)
    if borders * k > MAX_BORDER_TAPS:
        raise SpecError(f"{owner}: padding_mode={mode!r} may fold taps together in "
                        f"{borders:,} border windows of {k:,} taps on an axis of {n:,} "
                        f"inputs; structure() counts those one by one, at most "
                        f"{MAX_BORDER_TAPS:,} taps (use less padding or a smaller kernel)")
    border = np.concatenate([np.arange(first, dtype=np.int64),
                             np.arange(stop, m, dtype=np.int64)])
    pairs = (stop - first) * k
    chunk = max(1, 1_000_000 // k)
    taps = np.arange(k, dtype=np.int64)[None, :]
    for at in range(0, len(border), chunk):
        o = border[at:at + chunk, None]
        source = np.sort(sym.padded_source(sym.tap_index(o, taps, s, d, lo), n, mode), axis=1)
        pairs += int(len(o) + np.count_nonzero(np.diff(source, axis=1)))
    return pairs


def _operator_layer(layer: Layer) -> Layer:
    """The layer whose operator ``layer`` has: a quantized convolution's is its accumulator's,
    ``acc = T_(w - w_zero_point) @ (x - x_zero_point)``, exact (the requantization that
    follows is not linear); every other layer's is its own."""
    return layer.accumulator if family_of(layer) == "qconv" else layer


def _axes(layer: Layer, input_shape: Sequence) -> tuple[list[_Axis], int, tuple, bool]:
    """``(axes, channel pairs, shape, weights)``: the operator is the Kronecker product of
    its axes for each pair of channels that meet; ``weights``: entries carry weight keys."""
    layer = _operator_layer(layer)
    family, owner = family_of(layer), type(layer).__name__
    channels, in_spatial = _sample(layer, input_shape)
    out_spatial = tuple(layer.output_shape(input_shape)[-layer.ndim:])
    p_in, p_out = sym.prod(in_spatial), sym.prod(out_spatial)
    if family == "adaptive_pool":  # contiguous windows: every tap its own input
        totals = [sym.adaptive_total_taps(n, m) for n, m in zip(in_spatial, out_spatial)]
        axes = [_Axis(total, total, 0) for total in totals]  # taps: no weights
        return axes, channels, (channels * p_out, channels * p_in), False
    pads = layer.resolved_padding(in_spatial)
    n_in, n_out, mode = in_spatial, out_spatial, getattr(layer, "padding_mode", "zeros")
    if family == "conv_transpose":  # the transpose of the forward convolution
        n_in, n_out = out_spatial, in_spatial
    axes = [_window_axis(n, m, k, s, d, lo, mode, owner) for n, m, k, s, d, (lo, _) in
            zip(n_in, n_out, layer.kernel_size, layer.stride, layer.dilation, pads)]
    if family not in _CONVOLUTIONS:
        return axes, channels, (channels * p_out, channels * p_in), False
    c_in, c_out = layer.in_channels, layer.out_channels
    if family == "conv_transpose":
        c_in, c_out = c_out, c_in
    shape = (layer.out_channels * p_out, layer.in_channels * p_in)
    return axes, c_out * (c_in // layer.groups), shape, True


def entry_count(layer: Layer, input_shape: Sequence) -> int:
    """How many entries :func:`entries` would materialize, in closed form."""
    axes, pairs, _, _ = _axes(layer, input_shape)
    return pairs * sym.prod(axis.entries for axis in axes)


def _bytes(count: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count / size:,.1f} {unit}"
    return f"{count:,} bytes"


def check_size(layer: Layer, input_shape: Sequence, limit: int = MAX_ENTRIES,
               what: str = "its operator", bytes_per_entry: int = 12,
               instead: str = "structure() still works from formulas; use a smaller input "
                              "shape for the matrix") -> int:
    """Refuse ``what`` (something of one entry per operator entry) before anything is
    materialized when the operator has more than ``limit`` entries: the :class:`SpecError`
    states the entries, the bytes at ``bytes_per_entry``, the limit and what to do
    ``instead``.  Returns the entry count."""
    count = entry_count(layer, input_shape)
    if count > limit:
        raise SpecError(f"{type(layer).__name__} on {tuple(input_shape)}: {what} would hold "
                        f"{count:,} entries, at least {_bytes(count * bytes_per_entry)} to "
                        f"materialize; at most {limit:,} entries are allowed ({instead})")
    return count


def entries(layer: Layer, input_shape: Sequence) -> Entries:
    """The COO entries of ``layer``'s operator for one sample of ``input_shape``.

    For max pooling the entries list every (window, input) pair the window reads, in scan
    order, with ``keys`` the tap index; they are not a linear operator by themselves.  An
    operator of more than :data:`MAX_ENTRIES` entries is refused with its size.
    """
    layer = _operator_layer(layer)
    family = family_of(layer)
    check_size(layer, input_shape)
    channels, in_spatial = _sample(layer, input_shape)
    if family == "conv_transpose":
        out_spatial = layer.output_shape(input_shape)[-layer.ndim:]
        pads = layer.resolved_padding(in_spatial)
        forward = _conv_entries(layer.out_channels, layer.in_channels, layer.groups,
                                out_spatial, in_spatial, layer, pads, "zeros")
        return forward.transpose
    out_spatial = layer.output_shape(input_shape)[-layer.ndim:]
    if family == "conv":
        pads = layer.resolved_padding(in_spatial)
        return _conv_entries(layer.in_channels, layer.out_channels, layer.groups, in_spatial,
                             out_spatial, layer, pads, layer.padding_mode)
    if family == "adaptive_pool":
        tables, _, divisors = _adaptive_tables(layer, in_spatial)
        return _pool_entries(channels, in_spatial, out_spatial, tables, divisors)
    pads = layer.resolved_padding(in_spatial)
    tables = _window_pool_tables(layer, in_spatial, out_spatial, pads)
    if layer.reduction == "avg":
        divisors = _row_divisors(layer, in_spatial, out_spatial, pads)
    else:
        divisors = np.ones(sym.prod(out_spatial), dtype=np.int64)
    return _pool_entries(channels, in_spatial, out_spatial, tables, divisors)


_CONVOLUTIONS = ("conv", "conv_transpose")


def is_linear(layer: Layer) -> bool:
    """Convolutions and average pools are linear; max and LP pooling are not."""
    return family_of(layer) in _CONVOLUTIONS or layer.reduction == "avg"


def _linear_kind(layer: Layer) -> str:
    if family_of(layer) in _CONVOLUTIONS:
        return "conv"
    if layer.reduction == "avg":
        return "avg"
    raise SpecError(f"{type(layer).__name__} is not linear, so it has no Toeplitz matrix; for "
                    "max pooling use convgen.toeplitz.selection_matrix(layer, x)")


def _check_weight(layer: Layer, weight) -> np.ndarray:
    weight = np.asarray(weight)
    if weight.shape != tuple(layer.weight_shape):
        raise SpecError(f"{type(layer).__name__}: weight has shape {weight.shape}; "
                        f"expected {tuple(layer.weight_shape)}")
    if weight.dtype.kind not in "iuf":
        raise SpecError(f"{type(layer).__name__}: weight dtype {weight.dtype} must be an "
                        "integer or floating dtype for the numeric matrix")
    return weight


def toeplitz(layer: Layer, input_shape: Sequence, weight=None, symbolic: bool | None = None):
    """The matrix ``T`` of ``layer`` for one sample of ``input_shape``.

    Convolutions: without ``weight`` a SymPy matrix whose entries are the weight symbols
    ``w[o, i, *taps]`` (sums of them where padding folds taps together); with ``weight`` (in
    PyTorch's layout) a ``scipy.sparse.csr_array`` of ``weight``'s dtype (integers give
    float64).  Average pooling: a ``csr_array`` of float64, or with ``symbolic=True`` a SymPy
    matrix of exact rationals.  Add :func:`bias_vector` for the bias.  A quantized
    convolution's matrix is its int32 accumulator's: pass ``w - w_zero_point`` as ``weight``
    and multiply ``x - x_zero_point``.
    """
    layer = _operator_layer(layer)
    kind = _linear_kind(layer)
    if kind == "avg" and weight is not None:
        raise SpecError(f"{type(layer).__name__} has no weight; call toeplitz without weight")
    if symbolic is None:
        symbolic = kind == "conv" and weight is None
    count = check_size(layer, input_shape)  # the entries alone, before any of them is listed
    if symbolic and count > SYMBOLIC_LIMIT:  # about 500 bytes an entry as SymPy objects
        check_size(layer, input_shape, SYMBOLIC_LIMIT, "the symbolic matrix", 500,
                   "pass weight= for the sparse numeric matrix")
    ops = entries(layer, input_shape)
    if symbolic:
        return _symbolic_matrix(ops, layer)
    if kind == "conv":
        if weight is None:
            raise SpecError(f"{type(layer).__name__}: the numeric matrix needs weight")
        weight = _check_weight(layer, weight)
        dtype = weight.dtype if weight.dtype.kind == "f" else np.float64
        data = weight.ravel().astype(dtype)[ops.keys]
    else:
        data = 1.0 / ops.keys.astype(np.float64)
    return _csr(ops, data)


def _csr(ops: Entries, data: np.ndarray) -> scipy.sparse.csr_array:
    """CSR from entries: directly when canonical, else through COO (summing duplicates)."""
    if ops.canonical:
        counts = np.bincount(ops.rows, minlength=ops.shape[0])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(ops.cols.dtype)
        return scipy.sparse.csr_array((data, ops.cols, indptr), shape=ops.shape)
    matrix = scipy.sparse.coo_array((data, (ops.rows, ops.cols)), shape=ops.shape)
    result = matrix.tocsr()  # sums duplicate (row, col) entries: the folded padding taps
    result.sum_duplicates()
    return result


def _symbolic_matrix(ops: Entries, layer: Layer) -> sympy.ImmutableSparseMatrix:
    values = {}
    if ops.kind == "weight":
        w = sympy.IndexedBase("w")
        index = np.unravel_index(ops.keys, layer.weight_shape)
        terms = [w[tuple(int(i) for i in ix)] for ix in zip(*index)]
    else:
        terms = [sympy.Rational(1, int(k)) for k in ops.keys]
    for r, c, term in zip(ops.rows.tolist(), ops.cols.tolist(), terms):
        values[(r, c)] = values.get((r, c), 0) + term
    return sympy.ImmutableSparseMatrix(*ops.shape, values)


def bias_vector(layer: Layer, input_shape: Sequence, bias=None):
    """The bias of ``vec(y) = T @ vec(x) + b``: ``b[o]`` repeated over output positions.

    Symbolic (``b[o]`` symbols) without ``bias``, else a NumPy vector; zeros for a layer
    without bias.
    """
    has_bias = family_of(layer) in (*_CONVOLUTIONS, "qconv") and layer.bias
    out = layer.output_shape(input_shape)[-layer.ndim - 1:]
    per_channel = sym.prod(out[1:])
    if not has_bias:
        return sympy.zeros(sym.prod(out), 1) if bias is None else np.zeros(sym.prod(out))
    if bias is None:
        b = sympy.IndexedBase("b")
        return sympy.Matrix([b[o] for o in range(out[0]) for _ in range(per_channel)])
    bias = np.asarray(bias)
    if bias.shape != (layer.out_channels,):
        raise SpecError(f"{type(layer).__name__}: bias has shape {bias.shape}; expected "
                        f"({layer.out_channels},)")
    return np.repeat(bias, per_channel)


def apply_entries(ops: Entries, x: np.ndarray, weight=None) -> np.ndarray:
    """``T @ x`` for one flattened sample, exactly for object arrays (ints, Fractions).

    ``weight`` supplies the values of ``kind == "weight"`` entries; divisor entries divide.
    """
    x = np.asarray(x).ravel()
    exact = x.dtype == object
    if ops.kind == "weight":
        values = np.asarray(weight).ravel()[ops.keys] * x[ops.cols]
    elif exact:
        values = np.array([Fraction(1, int(k)) for k in ops.keys], dtype=object) * x[ops.cols]
    else:
        values = x[ops.cols] / ops.keys
    y = np.zeros(ops.shape[0], dtype=object if exact else np.result_type(values, np.float64))
    if exact:
        y[:] = 0
    np.add.at(y, ops.rows, values)
    return y


def structure(layer: Layer, input_shape: Sequence) -> Structure:
    """Shape, nonzeros, density and (convolutions) distinct weights of the operator, counted
    per axis in closed form (the operator is the Kronecker product of its axes for each pair
    of channels that meet), without materializing it: milliseconds for any size."""
    _linear_kind(_operator_layer(layer))
    axes, pairs, shape, weights = _axes(layer, input_shape)
    nnz = pairs * sym.prod(axis.pairs for axis in axes)
    distinct = pairs * sym.prod(axis.taps for axis in axes) if weights else None
    return Structure(shape, nnz, nnz / (shape[0] * shape[1]), distinct)


def materialized_structure(layer: Layer, input_shape: Sequence) -> Structure:
    """:func:`structure` counted on the materialized entries: the check of the formulas."""
    _linear_kind(_operator_layer(layer))
    ops = entries(layer, input_shape)
    flat = ops.rows.astype(np.int64) * ops.shape[1] + ops.cols
    nnz = len(np.unique(flat))
    distinct = len(np.unique(ops.keys)) if ops.kind == "weight" else None
    return Structure(ops.shape, nnz, nnz / (ops.shape[0] * ops.shape[1]), distinct)


# --------------------------------------------------------------------------- max pooling


def selection_matrix(layer: Layer, x) -> scipy.sparse.csr_array:
    """The 0/1 matrix ``S`` with ``maxpool(x) == S @ vec(x)`` for this particular ``x``.

    ``x`` has shape ``(C, *spatial)`` (one sample), real values.  Each row selects the window's
    maximum; ties go to the first element in scan order, and a NaN wins (the last NaN), as in
    PyTorch.
    """
    if family_of(layer) not in ("pool", "adaptive_pool") or layer.reduction != "max":
        raise SpecError(f"{type(layer).__name__}: selection_matrix is for max pooling layers")
    x = np.asarray(x, dtype=np.float64)
    ops = entries(layer, x.shape)
    values = x.ravel()[ops.cols]
    starts = np.searchsorted(ops.rows, np.arange(ops.shape[0]))
    position = np.arange(len(ops.rows)) - starts[ops.rows]
    best = starts.copy()
    for step in range(1, int(position.max()) + 1 if len(position) else 0):
        at = np.flatnonzero(position == step)
        rows = ops.rows[at]
        better = (values[at] > values[best[rows]]) | np.isnan(values[at])
        best[rows[better]] = at[better]
    data = np.ones(ops.shape[0])
    return scipy.sparse.csr_array((data, (np.arange(ops.shape[0]), ops.cols[best])),
                                  shape=ops.shape)


@dataclass(frozen=True)
class Counterexample:
    """Inputs with ``f(x1 + x2) != f(x1) + f(x2)``: max pooling is not additive."""

    x1: np.ndarray
    x2: np.ndarray
    f_sum: np.ndarray
    sum_f: np.ndarray

    def __str__(self) -> str:
        row = int(np.flatnonzero(self.f_sum != self.sum_f)[0])
        return (f"f(x1 + x2)[{row}] = {self.f_sum[row]:g} but f(x1)[{row}] + f(x2)[{row}] = "
                f"{self.sum_f[row]:g}: max pooling is not linear")


def max_pool_counterexample(layer: Layer, input_shape: Sequence) -> Counterexample:
    """Two one-hot inputs in one window: their sum pools to 1, their pools add to 2."""
    channels, spatial = _sample(layer, input_shape)
    ops = entries(layer, (channels, *spatial))
    starts = np.searchsorted(ops.rows, np.arange(ops.shape[0]))
    sizes = np.diff(np.append(starts, len(ops.rows)))
    wide = np.flatnonzero(sizes >= 2)
    if not len(wide):
        raise SpecError(f"{type(layer).__name__}: every window reads at most one input "
                        f"element for input_shape={tuple(input_shape)!r}, so max pooling is "
                        "linear here (a selection)")
    first = starts[wide[0]]
    x1, x2 = np.zeros(ops.shape[1]), np.zeros(ops.shape[1])
    x1[ops.cols[first]], x2[ops.cols[first + 1]] = 1.0, 1.0
    shape = (channels, *spatial)

    def pool(v):
        return selection_matrix(layer, v.reshape(shape)) @ v

    return Counterexample(x1.reshape(shape), x2.reshape(shape), pool(x1 + x2),
                          pool(x1) + pool(x2))


register_method("toeplitz", toeplitz)  # Layer.toeplitz; convgen.spec does not import this module
