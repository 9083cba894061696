"""Shapes, parameter counts, MACs and index expressions, written once.

Every formula in convgen lives in exactly one function of this module.  Specs, tests, proofs,
templates and documentation call these functions; nothing re-derives them.

Each function accepts plain Python ints or SymPy expressions.  With ints in, ints come out
(computed with exact integer arithmetic, no SymPy overhead); with any SymPy expression in, a
SymPy expression comes out, using exact ``floor``/``ceiling``/``Max``/``Piecewise``.  Sizes
used symbolically should be declared ``integer=True, positive=True`` (see
:func:`size_symbols`), otherwise SymPy cannot simplify ``floor`` of integer expressions.

Conventions (documented in the README, "Counting conventions"):

* Positions are in *padded* coordinates unless stated otherwise: the padded input of a
  dimension with size ``n`` and padding ``(lo, hi)`` has ``n + lo + hi`` positions, and input
  element ``x`` sits at padded position ``x + lo``.
* The dilated extent of a kernel of size ``k`` with dilation ``d`` is ``d*(k - 1) + 1``.
* One MAC is one multiply-accumulate; one MAC counts as 2 FLOPs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import sympy

from .errors import SpecError
from .solver import unsatisfiable

Size = int | sympy.Expr

__all__ = [
    "block_extent",
    "tile_extent",
    "unflatten",
    "transpose_gather",
    "interior_range",
    "inside_padded",
    "inside",
    "flat_index",
    "flat_index_bound",
    "INT_MAX",
    "LONG_MAX",
    "Size",
    "adaptive_window",
    "adaptive_window_taps",
    "adaptive_total_taps",
    "adaptive_max_taps",
    "gcd",
    "cdiv",
    "conv_macs",
    "conv_output_size",
    "conv_transpose_macs",
    "conv_transpose_output_padding",
    "conv_transpose_output_size",
    "conv_transpose_same_padding",
    "conv_weight_count",
    "dense_params",
    "dilated_extent",
    "fdiv",
    "is_symbolic",
    "pool_flops",
    "pool_output_size",
    "padded_source",
    "prod",
    "prune_piecewise",
    "receptive_field_update",
    "same_output_size",
    "same_padding",
    "same_total",
    "size_symbols",
    "smax",
    "tap_index",
    "tap_range",
    "transpose_tap_count",
    "window_start",
]


# --------------------------------------------------------------------------- arithmetic helpers


def is_symbolic(*values: object) -> bool:
    """True when any value is a SymPy object that is not a plain integer."""
    return any(isinstance(v, sympy.Basic) and not v.is_Integer for v in values)


def _plain(value):
    """Turn a SymPy integer into a Python int; leave everything else alone."""
    if isinstance(value, sympy.Basic) and value.is_Integer:
        return int(value)
    return value


def _ints(*values) -> bool:
    return all(isinstance(_plain(v), int) for v in values)


def fdiv(a: Size, b: Size) -> Size:
    """Exact floor division ``floor(a / b)``."""
    if _ints(a, b):
        return int(_plain(a)) // int(_plain(b))
    return _plain(sympy.floor(sympy.sympify(a) / b))


def cdiv(a: Size, b: Size) -> Size:
    """Exact ceiling division ``ceil(a / b)``."""
    if _ints(a, b):
        return -(-int(_plain(a)) // int(_plain(b)))
    return _plain(sympy.ceiling(sympy.sympify(a) / b))


def smax(*values: Size) -> Size:
    """Maximum of ints or SymPy expressions."""
    if _ints(*values):
        return max(int(_plain(v)) for v in values)
    return _plain(sympy.Max(*values))


def prod(values: Iterable[Size]) -> Size:
    """Product of ints or SymPy expressions (1 for an empty sequence)."""
    values = list(values)
    if _ints(*values):
        return math.prod(int(_plain(v)) for v in values)
    return _plain(sympy.Mul(*values))


def prune_piecewise(expr, assumptions: Sequence = ()):
    """``expr`` with every ``Piecewise`` branch that no integer sizes reach dropped.

    A branch is dropped only when z3 proves its condition false wherever it is reached
    (``assumptions`` hold, each symbol keeps its declared sign, every earlier condition is
    false); one whose condition is proved true there becomes the last.  A ``Piecewise`` left
    with one branch is that branch's value: ceil-mode ``MaxPool2d(2)`` on ``H`` gives
    ``ceiling(H/2)``, not a ``Piecewise`` whose first branch never holds.  Anything not proved
    (non-linear terms, unknown functions) is kept as it was, so the result equals ``expr`` for
    every integer assignment satisfying ``assumptions``.
    """
    if not isinstance(expr, sympy.Basic) or not expr.has(sympy.Piecewise):
        return expr
    return _plain(expr.replace(lambda e: isinstance(e, sympy.Piecewise),
                               lambda e: _prune(e, list(assumptions))))


def _prune(piecewise: sympy.Piecewise, reached: list):
    kept = []
    for value, condition in piecewise.args:
        if condition is sympy.true or unsatisfiable([*reached, sympy.Not(condition)]):
            kept.append((value, sympy.true))
            break
        if not unsatisfiable([*reached, condition]):
            kept.append((value, condition))
            reached = [*reached, sympy.Not(condition)]
    if len(kept) == 1 and kept[0][1] is sympy.true:
        return kept[0][0]
    return sympy.Piecewise(*kept)


def size_symbols(names: str) -> tuple[sympy.Symbol, ...]:
    """Positive-integer SymPy symbols for sizes, e.g. ``H, W = size_symbols("H W")``."""
    result = sympy.symbols(names, integer=True, positive=True, seq=True)
    return tuple(result)


# --------------------------------------------------------------------------- window geometry


def dilated_extent(kernel: Size, dilation: Size) -> Size:
    """Number of input positions spanned by one window: ``dilation*(kernel - 1) + 1``."""
    return _plain(dilation * (kernel - 1) + 1)


def window_start(out_index: Size, stride: Size, pad_lo: Size) -> Size:
    """Input coordinate (unpadded) of the first tap of window ``out_index``."""
    return _plain(out_index * stride - pad_lo)


def tap_index(out_index: Size, tap: Size, stride: Size, dilation: Size, pad_lo: Size) -> Size:
    """Input coordinate (unpadded) read by tap ``tap`` of window ``out_index``.

    ``y[o] = sum_j x[o*stride - pad_lo + j*dilation] * w[j]``: the definition of the lecture
    (``X[i, b + j, c + k]``) generalized to stride, dilation and padding.  A result outside
    ``[0, n)`` is a tap on the padding.
    """
    return _plain(window_start(out_index, stride, pad_lo) + tap * dilation)


def _select(condition, if_true, if_false):
    """``if_true if condition else if_false`` for ints, NumPy arrays or SymPy expressions."""
    if isinstance(condition, np.ndarray):
        return np.where(condition, if_true, if_false)
    if isinstance(condition, (bool, np.bool_)):
        return if_true if condition else if_false
    return sympy.Piecewise((if_true, condition), (if_false, True))


def padded_source(position: Size, n: Size, padding_mode: str):
    """Input index that a tap at unpadded ``position`` reads, under ``padding_mode``.

    ``position`` may be an int, a NumPy int array or a SymPy expression; padding positions are
    ``position < 0`` or ``position >= n``.  ``'zeros'`` returns ``position`` unchanged (the tap
    reads a zero unless ``0 <= position < n``); ``'reflect'`` mirrors without repeating the
    edge (needs pad < n); ``'replicate'`` clamps; ``'circular'`` wraps (needs pad <= n).
    """
    if padding_mode == "zeros":
        return position
    if padding_mode == "circular":
        return position % n  # floor modulo in Python, NumPy and SymPy alike
    if padding_mode == "replicate":
        return _select(position < 0, 0, _select(position >= n, n - 1, position))
    if padding_mode == "reflect":
        return _select(position < 0, -position,
                       _select(position >= n, 2 * (n - 1) - position, position))
    raise SpecError(f"padding_mode={padding_mode!r} must be one of 'zeros', 'reflect', "
                    "'replicate', 'circular'")


def conv_output_size(n: Size, kernel: Size, stride: Size, dilation: Size, pad_lo: Size,
                     pad_hi: Size) -> Size:
    """Number of windows that lie entirely inside the padded input (floor mode).

    ``floor((n + lo + hi - dilation*(kernel - 1) - 1) / stride) + 1``; valid when the padded
    input holds at least one window, ``n + lo + hi >= dilated_extent(kernel, dilation)``.
    """
    room = n + pad_lo + pad_hi - dilated_extent(kernel, dilation)
    return _plain(fdiv(room, stride) + 1)


def pool_output_size(n: Size, kernel: Size, stride: Size, dilation: Size, pad_lo: Size,
                     pad_hi: Size, ceil_mode: bool) -> Size:
    """Output size of a pooling window sweep, in floor or ceil mode.

    Floor mode is :func:`conv_output_size`.  Ceil mode keeps one more, partial, window when the
    last full window stops short of the padded input's end, *except* when that window would
    start in the right padding (PyTorch's rule, also ONNX's since opset 19): the last window must
    start inside the input or the left padding, ``(out - 1)*stride < n + lo``.
    """
    if not ceil_mode:
        return conv_output_size(n, kernel, stride, dilation, pad_lo, pad_hi)
    room = n + pad_lo + pad_hi - dilated_extent(kernel, dilation)
    out = _plain(cdiv(room, stride) + 1)
    starts_in_right_pad = (out - 1) * stride >= n + pad_lo
    if _ints(out, stride, n, pad_lo):
        return out - 1 if starts_in_right_pad else out
    return prune_piecewise(sympy.Piecewise((out - 1, starts_in_right_pad), (out, True)))


def same_output_size(n: Size, stride: Size) -> Size:
    """Output size of ``'same'``/``'same_lower'`` padding: ``ceil(n / stride)``."""
    return cdiv(n, stride)


def same_total(n: Size, kernel: Size, stride: Size, dilation: Size) -> Size:
    """Padding that ``'same'`` needs in total, before clamping at 0 (ONNX's formula).

    ``(ceil(n/s) - 1)*s + dilated_extent - n``; negative when the last window ends before the
    input does (then no padding is used, and the output is still ``ceil(n/s)``).
    """
    return _plain((same_output_size(n, stride) - 1) * stride + dilated_extent(kernel, dilation)
                  - n)


def same_padding(n: Size, kernel: Size, stride: Size, dilation: Size,
                 lower: bool = False) -> tuple[Size, Size]:
    """``(lo, hi)`` padding that makes the output size ``ceil(n / stride)``.

    Total padding ``max(0, (ceil(n/s) - 1)*s + dilated_extent - n)``, split evenly; the odd
    extra position goes to the high side (``'same'``, ONNX ``SAME_UPPER``, PyTorch's
    ``'same'`` at stride 1) or to the low side (``'same_lower'``, ONNX ``SAME_LOWER``).
    """
    total = smax(0, same_total(n, kernel, stride, dilation))
    small, large = fdiv(total, 2), _plain(total - fdiv(total, 2))
    return (large, small) if lower else (small, large)


def conv_transpose_output_size(n: Size, kernel: Size, stride: Size, dilation: Size,
                               pad_lo: Size, pad_hi: Size, output_padding: Size) -> Size:
    """Output size of a transposed convolution.

    ``(n - 1)*stride - lo - hi + dilated_extent + output_padding``: the size of the input of
    the matching convolution, whose output size is ``n``; ``output_padding`` selects among the
    ``stride`` input sizes that the convolution maps to the same ``n``.
    """
    full = (n - 1) * stride + dilated_extent(kernel, dilation) + output_padding
    return _plain(full - pad_lo - pad_hi)


def conv_transpose_output_padding(m: Size, kernel: Size, stride: Size, dilation: Size,
                                  pad_lo: Size, pad_hi: Size) -> Size:
    """The ``output_padding`` that makes a transposed convolution return a size ``m`` from
    the convolution's output: ``(m + lo + hi - dilated_extent) mod stride``."""
    room = m + pad_lo + pad_hi - dilated_extent(kernel, dilation)
    if _ints(room, stride):
        return int(_plain(room)) % int(_plain(stride))
    return _plain(sympy.Mod(room, stride))


def conv_transpose_same_padding(kernel: Size, stride: Size, dilation: Size,
                                output_padding: Size, lower: bool = False) -> tuple[Size, Size]:
    """``(lo, hi)`` padding of ONNX ``auto_pad=SAME_*`` for ConvTranspose (output ``n*stride``).

    Total padding ``dilated_extent + output_padding - stride``, independent of ``n``; split as
    ONNX specifies (``SAME_UPPER``: the odd position at the end).  Negative totals are invalid;
    callers check :func:`conv_transpose_same_total` first.
    """
    total = conv_transpose_same_total(kernel, stride, dilation, output_padding)
    small, large = fdiv(total, 2), _plain(total - fdiv(total, 2))
    return (large, small) if lower else (small, large)


def conv_transpose_same_total(kernel: Size, stride: Size, dilation: Size,
                              output_padding: Size) -> Size:
    """Total padding that ONNX ``SAME_*`` needs for ConvTranspose; must be ``>= 0``."""
    return _plain(dilated_extent(kernel, dilation) + output_padding - stride)


def adaptive_window(i: Size, n: Size, out: Size) -> tuple[Size, Size]:
    """Half-open window ``[start, end)`` of adaptive pooling output ``i`` of ``out`` over ``n``.

    PyTorch's rule: ``start = floor(i*n/out)``, ``end = ceil((i + 1)*n/out)``.
    """
    return fdiv(i * n, out), cdiv((i + 1) * n, out)


def adaptive_window_taps(n: Size, out: int) -> list[Size]:
    """Sizes of the ``out`` adaptive windows over an input of size ``n`` (one per window:
    for totals and maxima use :func:`adaptive_total_taps` and :func:`adaptive_max_taps`)."""
    sizes = []
    for i in range(out):
        start, end = adaptive_window(i, n, out)
        sizes.append(_plain(end - start))
    return sizes


class gcd(sympy.Function):  # lower case: SymPy prints the class name
    """``gcd(a, b)`` of integers: :func:`math.gcd` once both are numbers, unevaluated while
    one is symbolic (:func:`sympy.gcd` is the polynomial gcd: ``gcd(n, 6)`` is 1 there)."""

    is_integer = True
    is_positive = True  # of sizes, which are positive

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return sympy.Integer(math.gcd(int(a), int(b)))
        if a == 1 or b == 1:
            return sympy.Integer(1)
        return None

    def _eval_rewrite_as_Piecewise(self, a, b, **hints):
        """With ``b`` a number, ``gcd(a, b) = gcd(a mod b, b)``: one branch per residue (how
        z3, which has no gcd, reads it); left alone past 64 residues, too many to be worth it."""
        if not (b.is_Integer and 0 < b <= 64):
            return None
        residue = sympy.Mod(a, b)
        return sympy.Piecewise(*[(math.gcd(r, int(b)), sympy.Eq(residue, r))
                                 for r in range(int(b) - 1)], (math.gcd(int(b) - 1, int(b)), True))


def adaptive_total_taps(n: Size, out: int) -> Size:
    """Taps of all ``out`` adaptive windows over ``n`` inputs: ``n + out - gcd(n, out)``.

    Window ``i`` is ``[floor(i n/out), ceil((i+1) n/out))``; summed, the floors and ceilings
    differ by ``n`` plus one for every ``j`` in ``1..out`` with ``out`` not dividing ``j n``,
    of which there are ``out - gcd(n, out)``.  For a symbolic ``n`` the same expression, with
    :class:`gcd` unevaluated until ``n`` is substituted (summing the windows one by one took
    minutes for a few hundred outputs)."""
    if _ints(n, out):
        return int(_plain(n)) + out - math.gcd(int(_plain(n)), out)
    return _plain(n + out - gcd(n, out))


def adaptive_max_taps(n: Size, out: int) -> Size:
    """The widest adaptive window over ``n`` inputs and ``out`` outputs: with ``n = q out +
    r``, ``q`` when ``r = 0``, ``q + 1`` when ``r`` divides ``out``, else ``q + 2`` (an
    integer then lies strictly inside some ``(i r/out, (i+1) r/out)``).  For a symbolic ``n``
    a ``Piecewise`` of the three cases (``r`` divides ``out`` iff ``gcd(n, out) = r``, which
    never divides by ``r = 0``); ``Max`` over the windows took minutes for 100 outputs."""
    if _ints(n, out):
        q, r = divmod(int(_plain(n)), out)
        return q if r == 0 else q + 1 if out % r == 0 else q + 2
    q, r = fdiv(n, out), sympy.Mod(n, out)
    return prune_piecewise(sympy.Piecewise((q, sympy.Eq(r, 0)),
                                           (q + 1, sympy.Eq(gcd(n, out), r)), (q + 2, True)))


def transpose_tap_count(kernel: Size, stride: Size, dilation: Size) -> Size:
    """Most input positions that feed one output position of a transposed convolution.

    Output ``o`` receives input ``i`` through tap ``j`` when ``o = i*stride - lo + j*dilation``;
    the ``i`` that do so lie in an interval of length ``dilation*(kernel - 1)/stride``, which
    holds at most ``floor(dilation*(kernel - 1)/stride) + 1`` integers.
    """
    return _plain(fdiv(dilation * (kernel - 1), stride) + 1)


def inside(position: Size, n: Size):
    """Whether an unpadded position reads a real input element: ``0 <= position < n``."""
    return sympy.And(sympy.Ge(position, 0), sympy.Lt(position, n))


def inside_padded(position: Size, n: Size, pad_lo: Size, pad_hi: Size):
    """Whether an unpadded position lies in the padded input (not in a ceil-mode overhang)."""
    return sympy.And(sympy.Ge(position, -pad_lo), sympy.Lt(position, n + pad_hi))


def interior_range(n: int, n_out: int, kernel: int, stride: int, dilation: int,
                   pad_lo: int) -> tuple[int, int]:
    """Half-open range of output positions whose every tap reads a real input element.

    Window ``o`` reads ``o*stride - lo`` up to ``o*stride - lo + dilation*(kernel - 1)``; both
    ends must lie in ``[0, n)``.  Empty (first >= stop) when no window fits inside.
    """
    first = cdiv(pad_lo, stride)
    last = fdiv(n - 1 + pad_lo - dilation * (kernel - 1), stride)
    first, stop = max(0, min(first, n_out)), max(0, min(last + 1, n_out))
    return (first, stop) if first < stop else (0, 0)


def transpose_gather(out_index: Size, tap: Size, stride: Size, dilation: Size,
                     pad_lo: Size) -> tuple[Size, Size]:
    """Which input feeds output ``out_index`` of a transposed convolution through ``tap``.

    The scatter writes input ``i`` to ``i*stride - lo + tap*dilation``; so the output reads
    input ``numerator / stride`` when ``numerator = out_index + lo - tap*dilation`` is a
    non-negative multiple of ``stride`` (and the quotient is below the input size).
    Returns ``(numerator, stride)``.
    """
    return _plain(out_index + pad_lo - tap * dilation), stride


def flat_index(indices: Sequence[Size], shape: Sequence[Size]) -> Size:
    """Row-major (C order) offset of ``indices`` in an array of ``shape``.

    ``((i0*s1 + i1)*s2 + i2)...``; ``shape[0]`` (the batch, often unknown) is not used.
    """
    if len(indices) != len(shape):
        raise SpecError(f"flat_index: {len(indices)} indices for a {len(shape)}-d shape")
    offset = indices[0]
    for index, size in zip(indices[1:], shape[1:]):
        offset = offset * size + index
    return _plain(offset)


def unflatten(offset: Size, shape: Sequence[Size]) -> list[Size]:
    """The indices whose row-major offset in ``shape`` is ``offset``: the inverse of
    :func:`flat_index` on ``0 <= offset < prod(shape)``.  Index ``i`` is
    ``floor(offset / stride_i) mod shape_i``; the outermost one is left unreduced."""
    indices, stride = [], 1
    for i in reversed(range(len(shape))):
        quotient = fdiv(offset, stride)
        if i == 0:
            indices.append(quotient)
        else:
            indices.append(quotient % shape[i] if _ints(quotient, shape[i])
                           else _plain(sympy.Mod(quotient, shape[i])))
        stride = stride * shape[i]
    return indices[::-1]


def block_start(start: Size, block: Size, n: Size) -> Size:
    """Where a block of ``block`` positions meant to start at ``start`` starts so that it ends
    inside ``[0, n)``: ``min(start, n - block)`` (a row's last vector overlaps the one
    before instead of hanging past the row; needs ``n >= block``)."""
    if _ints(start, block, n):
        return min(int(start), int(n) - int(block))
    return sympy.Min(start, n - block)


def block_extent(start: Size, block: Size, n: Size) -> Size:
    """Positions of a block of ``block`` starting at ``start`` that lie in ``[0, n)``:
    ``min(block, n - start)`` (the last block of a row may be partial)."""
    if _ints(start, block, n):
        return min(int(block), int(n) - int(start))
    return _plain(sympy.Min(block, n - start))


def tile_extent(tile: Size, kernel: Size, stride: Size, dilation: Size) -> Size:
    """Input positions that a run of ``tile`` consecutive outputs reads along one axis:
    ``(tile - 1)*stride + (kernel - 1)*dilation + 1``, the tile plus its halo."""
    return _plain((tile - 1) * stride + dilated_extent(kernel, dilation))


def receptive_field_update(field: Size, jump: Size, window: Size,
                           step: Size) -> tuple[Size, Size]:
    """Compose a layer onto a receptive field.

    A unit whose field spans ``field`` input positions, with neighbouring units ``jump`` input
    positions apart, fed into a layer whose windows cover ``window`` of its own inputs and
    move by ``step``: the new field is ``field + (window - 1)*jump`` and the new jump
    ``jump*step``.  After a transposed convolution the jump is a fraction of an input
    position; the field is then rounded up to whole positions (an upper bound).
    """
    wide = field + (window - 1) * jump
    if not _ints(wide) and sympy.sympify(wide).is_integer is not True:
        wide = sympy.ceiling(wide)  # a fractional jump, after a transposed convolution
    return _plain(wide), _plain(jump * step)


# --------------------------------------------------------------------------- counts


def conv_weight_count(in_channels: Size, out_channels: Size, groups: Size,
                      kernel: Sequence[Size]) -> Size:
    """Weights of a (transposed) convolution: ``C_out * C_in/groups * prod(kernel)``."""
    per_group = fdiv(in_channels, groups) if _ints(in_channels, groups) else \
        sympy.sympify(in_channels) / groups
    return _plain(prod([out_channels, per_group, *kernel]))


def conv_macs(batch: Size, out_channels: Size, out_spatial: Sequence[Size], in_channels: Size,
              groups: Size, kernel: Sequence[Size]) -> Size:
    """MACs of a convolution: every output element takes ``C_in/groups * prod(kernel)`` MACs.

    Taps that fall on zero padding are counted (a dense kernel performs them).
    """
    taps = conv_weight_count(in_channels, 1, groups, kernel)
    return _plain(prod([batch, out_channels, *out_spatial]) * taps)


def conv_transpose_macs(batch: Size, in_channels: Size, in_spatial: Sequence[Size],
                        out_channels: Size, groups: Size, kernel: Sequence[Size]) -> Size:
    """MACs of a transposed convolution, counted as the scatter it is.

    Every input element is multiplied into ``C_out/groups * prod(kernel)`` outputs; taps that
    land in the cropped padding are counted.  Equal to the MACs of the matching convolution.
    """
    taps = conv_weight_count(out_channels, 1, groups, kernel)
    return _plain(prod([batch, in_channels, *in_spatial]) * taps)


def pool_flops(outputs: Size, taps: Size, ops_per_tap: int, ops_per_output: int) -> Size:
    """FLOPs of pooling: ``ops_per_tap`` per window tap visited plus ``ops_per_output`` per
    output element (max: 1 and 0; average: 1 and 1; LP: 2 and 1).

    ``taps`` is the number of taps summed over all windows (``outputs * prod(kernel)`` for
    uniform windows).
    """
    return _plain(taps * ops_per_tap + outputs * ops_per_output)


def dense_params(n_in: Size, n_out: Size) -> Size:
    """Parameters of a dense layer ``f(x) = Wx + b`` with ``W`` of shape ``(n_out, n_in)``.

    ``n_out * (n_in + 1)``: the lecture's ``n x (m + 1)``.
    """
    return _plain(n_out * (n_in + 1))


# --------------------------------------------------------------------------- C limits


#: The largest C ``int`` (32 bits): every spec parameter and every size of an input shape is
#: at most this, so that a product of two of them fits a ``long``.
INT_MAX = 2**31 - 1
#: The largest C ``long`` of the LP64 model (64-bit Linux and macOS), which convgen assumes:
#: every index, position and per-sample size a kernel computes is at most this.  ``long`` is
#: 32 bits on Windows and 32-bit ARM; a kernel whose sizes need more than 32 bits checks
#: ``sizeof(long) >= 8`` in its header, so such a target refuses to compile it.
LONG_MAX = 2**63 - 1


def tap_range(out: Size, kernel: Size, stride: Size, dilation: Size,
              pad_lo: Size) -> tuple[Size, Size]:
    """The lowest and highest unpadded input position that a tap of windows ``0..out-1``
    reaches: ``-pad_lo`` (tap 0 of window 0) and the last tap of the last window (past the
    padded input in ceil mode)."""
    return _plain(-pad_lo), tap_index(out - 1, kernel - 1, stride, dilation, pad_lo)


def flat_index_bound(ranges: Sequence[tuple[Size, Size]], shape: Sequence[Size]) -> Size:
    """The largest magnitude of :func:`flat_index` over indices ``low <= i <= high`` (one
    ``(low, high)`` per axis), positions on the padding included: the flat index of each
    axis's largest magnitude.  By the triangle inequality it also bounds every partial sum
    and product of the index's Horner evaluation ``(i0*s1 + i1)*s2 + ...``, so a kernel that
    forms the index in a type holding this bound cannot overflow on the way."""
    largest = [smax(abs(_plain(low)), abs(_plain(high))) if _ints(low, high)
               else sympy.Max(sympy.Abs(low), sympy.Abs(high)) for low, high in ranges]
    return flat_index(largest, shape)
