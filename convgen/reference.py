"""Exact reference implementations: the oracles that judge every generated kernel.

:func:`forward` computes each layer straight from its definition, as the lecture writes it,
``y[a, b, c] = bias[a] + sum_i sum_j sum_k x[i, b*s + j*d, c*s + k*d] * w[a, i, j, k]`` over the
*padded* input (built with ``numpy.pad``: zeros, or modes ``reflect``/``edge``/``wrap``),
generalized to every option of the specs.  It works

* exactly, when ``x`` holds integers or is an ``object`` array (Python ints, ``Fraction``):
  sums are exact, average pooling gives ``Fraction``, LP pooling gives exact SymPy numbers;
* in float64 when ``x`` is floating.

:func:`toeplitz_forward` is the second, independent oracle: the product with the operator
of :mod:`convgen.toeplitz` (linear layers only).  The two share no index code: this module
slices the padded input, the Toeplitz entries come from ``convgen.symbolic`` expressions.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import product

import numpy as np
import sympy

from . import quantization as q
from . import symbolic as sym
from .errors import SpecError
from .spec import Layer, family_of
from .toeplitz import apply_entries, entries, is_linear

__all__ = ["forward", "is_exact", "toeplitz_forward"]

_NUMPY_PAD = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
              "circular": "wrap"}


# --------------------------------------------------------------------------- arrays


def is_exact(x: np.ndarray) -> bool:
    """Exact arithmetic for integer and object arrays, float64 for floating ones."""
    return np.asarray(x).dtype.kind in "iubO"


def _exact(a) -> np.ndarray:
    """An object array of Python ints / Fractions (floats become their exact Fraction)."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        return np.vectorize(lambda v: Fraction(float(v)), otypes=[object])(a)
    if a.dtype.kind in "iub":
        return a.astype(object) * 1  # numpy ints -> Python ints
    return a


_CONVOLUTIONS = ("conv", "conv_transpose", "qconv")


def _prepare(layer: Layer, x, weight, bias):
    """Batch the input, check shapes, and put everything in one arithmetic."""
    family = family_of(layer)
    x = np.asarray(x)
    single = x.ndim == layer.ndim + 1
    if single:
        x = x[None]
    layer.output_shape(x.shape)  # validates rank, channels and sizes
    exact = is_exact(x)
    convert = _exact if exact else (lambda a: np.asarray(a, dtype=np.float64))
    x = convert(x)
    if family in _CONVOLUTIONS:
        if weight is None:
            raise SpecError(f"{type(layer).__name__}: forward needs weight of shape "
                            f"{tuple(layer.weight_shape)}")
        weight = np.asarray(weight)
        if weight.shape != tuple(layer.weight_shape):
            raise SpecError(f"{type(layer).__name__}: weight has shape {weight.shape}; "
                            f"expected {tuple(layer.weight_shape)}")
        weight = convert(weight)
        if bias is not None:
            bias = np.asarray(bias)
            if not layer.bias or bias.shape != (layer.out_channels,):
                raise SpecError(f"{type(layer).__name__}: bias must be None"
                                + ("" if not layer.bias else
                                   f" or of shape ({layer.out_channels},)")
                                + f", got shape {bias.shape}")
            bias = convert(bias)
    elif weight is not None or bias is not None:
        raise SpecError(f"{type(layer).__name__} has no weight or bias")
    return x, weight, bias, single, exact


def _zeros(shape, exact: bool) -> np.ndarray:
    if exact:
        out = np.empty(shape, dtype=object)
        out[...] = 0
        return out
    return np.zeros(shape)


def _window(starts, strides, dilations, kernel):
    """Index of the window taps ``start + j*dilation`` in padded coordinates."""
    return tuple(slice(sym.window_start(p, s, 0), sym.tap_index(p, k - 1, s, d, 0) + 1, d)
                 for p, s, d, k in zip(starts, strides, dilations, kernel))


# --------------------------------------------------------------------------- convolution


def _pad(x: np.ndarray, pads, mode: str, tail=None) -> np.ndarray:
    """Pad the spatial axes; ``tail`` adds extra room past the padding (never read)."""
    tail = tail or [0] * len(pads)
    widths = [(0, 0), (0, 0)] + [(lo, hi) for lo, hi in pads]
    padded = np.pad(x, widths, mode=_NUMPY_PAD[mode], **(
        {"constant_values": 0} if mode == "zeros" else {}))
    if any(tail):
        padded = np.pad(padded, [(0, 0), (0, 0)] + [(0, t) for t in tail], mode="constant",
                        constant_values=0)
    return padded


def _conv(layer: Layer, x, weight, bias, exact):
    n, channels, *spatial = x.shape
    out = layer.output_shape(x.shape)
    padded = _pad(x, layer.resolved_padding(spatial), layer.padding_mode)
    y = _zeros(out, exact)
    cg_in, cg_out = channels // layer.groups, layer.out_channels // layer.groups
    axes = list(range(1, layer.ndim + 2))
    for position in product(*(range(o) for o in out[2:])):
        taps = _window(position, layer.stride, layer.dilation, layer.kernel_size)
        for g in range(layer.groups):
            patch = padded[(slice(None), slice(g * cg_in, (g + 1) * cg_in), *taps)]
            w = weight[g * cg_out:(g + 1) * cg_out]
            y[(slice(None), slice(g * cg_out, (g + 1) * cg_out), *position)] = \
                np.tensordot(patch, w, axes=(axes, axes))
    if bias is not None:
        y = y + bias.reshape(1, -1, *[1] * layer.ndim)
    return y


def _conv_transpose(layer: Layer, x, weight, bias, exact):
    """The scatter: input ``i`` adds ``x[i]*w[j]`` at ``i*stride + j*dilation``, then crop."""
    n, channels, *spatial = x.shape
    full = [sym.conv_transpose_output_size(m, k, s, d, 0, 0, op) for m, s, d, k, op in
            zip(spatial, layer.stride, layer.dilation, layer.kernel_size, layer.output_padding)]
    y = _zeros((n, layer.out_channels, *full), exact)
    cg_in, cg_out = channels // layer.groups, layer.out_channels // layer.groups
    for position in product(*(range(m) for m in spatial)):
        taps = _window(position, layer.stride, layer.dilation, layer.kernel_size)
        for g in range(layer.groups):
            pixel = x[(slice(None), slice(g * cg_in, (g + 1) * cg_in), *position)]
            w = weight[g * cg_in:(g + 1) * cg_in]
            y[(slice(None), slice(g * cg_out, (g + 1) * cg_out), *taps)] += \
                np.tensordot(pixel, w, axes=([1], [0]))
    pads = layer.resolved_padding(spatial)
    y = y[(slice(None), slice(None), *(slice(lo, f - hi) for (lo, hi), f in zip(pads, full)))]
    if bias is not None:
        y = y + bias.reshape(1, -1, *[1] * layer.ndim)
    return y


# --------------------------------------------------------------------------- quantized


def _check_range(layer: Layer, name: str, array, dtype: str) -> None:
    """Refuse values outside ``dtype``'s range: the layer takes only such values."""
    low, high = q.type_range(dtype)
    if array is not None and array.size and not all(low <= int(v) <= high
                                                     for v in array.flat):
        raise SpecError(f"{type(layer).__name__}: {name} holds values outside [{low}, {high}] "
                        f"(its dtype {dtype})")


def _quantized_inputs(layer: Layer, x, weight, bias):
    """The exact zero-point differences ``x - x_zp`` and ``w - w_zp[o]``, checked."""
    _check_range(layer, "x", x, layer.dtype)
    _check_range(layer, "weight", weight, layer.weight_dtype)
    _check_range(layer, "bias", bias, "int32")
    zero_points = np.array(layer.w_zero_points, dtype=object).reshape(
        -1, *[1] * (layer.ndim + 1))
    return x - layer.x_zero_point, weight - zero_points


def _requantized(layer: Layer, acc, bias, requantize):
    """The output from the exact accumulators: the bias, then ``requantize(acc, channel)``
    (ConvInteger: the accumulator itself)."""
    if not layer.requantizes:
        return np.vectorize(int, otypes=[object])(acc) if acc.size else acc
    if bias is not None:
        acc = acc + bias.reshape(1, -1, *[1] * layer.ndim)
    out = np.empty(acc.shape, dtype=object)
    for index in np.ndindex(*acc.shape):
        out[index] = requantize(int(acc[index]), index[1])
    return out


def _qconv(layer: Layer, x, weight, bias):
    """Quantized convolution: the float convolution of the zero-point differences, exact
    (a padded tap is the zero point, so its difference is 0: zero padding), then
    :meth:`QLinearConv2d.requantize <convgen.spec.QLinearConv2d.requantize>`."""
    if not is_exact(x) or not is_exact(weight):
        raise SpecError(f"{type(layer).__name__}: forward takes integer x and weight (the "
                        "quantized values)")
    dx, dw = _quantized_inputs(layer, x, weight, bias)
    return _requantized(layer, _conv(layer.accumulator, dx, dw, None, True), bias,
                        getattr(layer, "requantize", None))


def _qpool(layer: Layer, x):
    """Quantized average pooling: each window's real taps ``x - x_zero_point`` in scan
    order (a padded tap is the zero point: its difference adds nothing), its divisor by the
    float pool's rules, then :meth:`QLinearAvgPool2d.average
    <convgen.spec.QLinearAvgPool2d.average>`."""
    if not is_exact(x):
        raise SpecError(f"{type(layer).__name__}: forward takes integer x (the quantized "
                        "values)")
    _check_range(layer, "x", x, layer.dtype)
    out = layer.output_shape(x.shape)
    y = np.empty(out, dtype=object)
    if family_of(layer) == "adaptive_pool":  # the global pool: one window, the whole plane
        windows = [((0,) * layer.ndim, x.reshape(*x.shape[:2], -1), sym.prod(x.shape[2:]))]
    else:
        windows = ((position, values, counted)
                   for position, values, counted, _, _ in _pool_windows(layer, x))
    for position, values, counted in windows:
        for n, c in np.ndindex(*x.shape[:2]):
            differences = [int(v) - layer.x_zero_point for v in values[n, c]]
            y[(n, c, *position)] = layer.average(differences, counted)
    return y


# --------------------------------------------------------------------------- window pooling


def _pool_windows(layer: Layer, x):
    """Yield ``(position, values, counted)`` per output position.

    ``values``: ``(N, C, taps)`` of the window's real input elements, in scan order;
    ``counted``: how many taps an average pool divides by (PyTorch/ONNX rules).
    """
    spatial = x.shape[2:]
    out = layer.output_shape(x.shape)
    pads = layer.resolved_padding(spatial)
    ext = [sym.tap_index(o - 1, k - 1, s, d, 0) + 1 for o, k, s, d in
           zip(out[2:], layer.kernel_size, layer.stride, layer.dilation)]
    tail = [max(0, e - (m + lo + hi)) for e, m, (lo, hi) in zip(ext, spatial, pads)]
    padded = _pad(x, pads, "zeros", tail)
    real = _pad(np.ones((1, 1, *spatial), dtype=bool), pads, "zeros", tail)[0, 0]
    inside_pad = np.zeros(real.shape, dtype=bool)
    inside_pad[tuple(slice(0, m + lo + hi) for m, (lo, hi) in zip(spatial, pads))] = True
    for position in product(*(range(o) for o in out[2:])):
        taps = _window(position, layer.stride, layer.dilation, layer.kernel_size)
        mask = real[taps].ravel()
        values = padded[(slice(None), slice(None), *taps)].reshape(*x.shape[:2], -1)
        counted = int(inside_pad[taps].sum()) if getattr(layer, "count_include_pad", False) \
            else int(mask.sum())
        yield position, values[..., mask], counted, np.flatnonzero(mask), taps


def _max_scan(values: np.ndarray, exact: bool):
    """Max over the last axis and the position of the winner: the first maximum, or the
    last NaN (PyTorch's ``val > max || isnan(val)``)."""
    best = values[..., 0].copy()
    where = np.zeros(best.shape, dtype=np.int64)
    for t in range(1, values.shape[-1]):
        v = values[..., t]
        better = v > best
        if not exact:
            better |= np.isnan(v)
        best = np.where(better, v, best)
        where = np.where(better, t, where)
    return best, where


def _max_pool(layer: Layer, x, exact):
    out = layer.output_shape(x.shape)
    y, indices = _zeros(out, exact), np.zeros(out, dtype=np.int64)
    spatial = x.shape[2:]
    pads = layer.resolved_padding(spatial)
    for position, values, _, taps_real, taps in _pool_windows(layer, x):
        best, where = _max_scan(values, exact)
        y[(slice(None), slice(None), *position)] = best
        # flat index into the input plane of each winning tap
        grids = np.meshgrid(*[np.arange(t.start, t.stop, t.step) for t in taps], indexing="ij")
        coords = [g.ravel()[taps_real] - lo for g, (lo, _) in zip(grids, pads)]
        flat = np.ravel_multi_index(coords, spatial)
        indices[(slice(None), slice(None), *position)] = flat[where]
    return y, indices


def _avg_pool(layer: Layer, x, exact):
    out = layer.output_shape(x.shape)
    y = _zeros(out, exact)
    for position, values, counted, _, _ in _pool_windows(layer, x):
        divisor = layer.divisor_override or counted
        total = values.sum(axis=-1) if values.shape[-1] else _zeros(x.shape[:2], exact)
        y[(slice(None), slice(None), *position)] = \
            _divide(total, divisor, exact)
    return y


def _divide(total, divisor: int, exact: bool):
    if exact:
        return np.vectorize(lambda v: Fraction(v) / divisor, otypes=[object])(total)
    return total / divisor


def _lp_power(values, p, exact):
    if exact:
        power = sympy.nsimplify(p)
        return np.vectorize(lambda v: sympy.Abs(sympy.nsimplify(v)) ** power,
                            otypes=[object])(values)
    return np.abs(values) ** p


def _lp_root(total, p, exact):
    if exact:
        root = sympy.Integer(1) / sympy.nsimplify(p)
        return np.vectorize(lambda v: sympy.nsimplify(v) ** root, otypes=[object])(total)
    return total ** (1.0 / p)


def _lp_pool(layer: Layer, x, exact):
    out = layer.output_shape(x.shape)
    y = _zeros(out, exact)
    for position, values, _, _, _ in _pool_windows(layer, x):
        total = _lp_power(values, layer.norm_type, exact).sum(axis=-1)
        y[(slice(None), slice(None), *position)] = _lp_root(total, layer.norm_type, exact)
    return y


# --------------------------------------------------------------------------- adaptive, global


def _adaptive(layer: Layer, x, exact):
    reduce_max = layer.reduction == "max"
    if not reduce_max and layer.reduction != "avg":
        raise SpecError(f"{type(layer).__name__}: adaptive pooling with reduction="
                        f"{layer.reduction!r} has no reference implementation")
    out = layer.output_shape(x.shape)
    spatial = x.shape[2:]
    y, indices = _zeros(out, exact), np.zeros(out, dtype=np.int64)
    for position in product(*(range(o) for o in out[2:])):
        bounds = [sym.adaptive_window(i, n, o) for i, n, o in zip(position, spatial, out[2:])]
        region = x[(slice(None), slice(None), *(slice(a, b) for a, b in bounds))]
        values = region.reshape(*x.shape[:2], -1)
        where_ = (slice(None), slice(None), *position)
        if reduce_max:
            best, where = _max_scan(values, exact)
            y[where_] = best
            local = np.unravel_index(where, [b - a for a, b in bounds])
            indices[where_] = np.ravel_multi_index(
                [loc + a for loc, (a, _) in zip(local, bounds)], spatial)
        else:
            y[where_] = _divide(values.sum(axis=-1), values.shape[-1], exact)
    return y, indices


# --------------------------------------------------------------------------- entry points


def forward(layer: Layer, x, weight=None, bias=None):
    """Compute ``layer`` on ``x`` (``(N, C, *spatial)`` or ``(C, *spatial)``) by definition.

    Weights use PyTorch's layouts.  Exact for integer/object inputs, float64 for floating
    ones.  Max pooling with ``return_indices`` returns ``(y, indices)``, the indices flat
    within each ``(n, c)`` input plane, as PyTorch's.
    """
    x, weight, bias, single, exact = _prepare(layer, x, weight, bias)  # checks the family
    family, reduction = layer.family, layer.reduction
    indices = None
    if family == "conv_transpose":
        y = _conv_transpose(layer, x, weight, bias, exact)
    elif family == "conv":
        y = _conv(layer, x, weight, bias, exact)
    elif family == "qconv":
        y = _qconv(layer, x, weight, bias)
    elif layer.quantized:
        y = _qpool(layer, x)
    elif family == "adaptive_pool":
        y, indices = _adaptive(layer, x, exact)
    elif reduction == "max":
        y, indices = _max_pool(layer, x, exact)
    elif reduction == "avg":
        y = _avg_pool(layer, x, exact)
    else:  # "lp", the last reduction family_of lets through
        y = _lp_pool(layer, x, exact)
    if single:
        y = y[0]
        indices = None if indices is None else indices[0]
    if getattr(layer, "return_indices", False):
        return y, indices
    return y


def toeplitz_forward(layer: Layer, x, weight=None, bias=None):
    """``T @ vec(x) + b`` per sample: the second oracle, for linear layers only."""
    x, weight, bias, single, exact = _prepare(layer, x, weight, bias)
    out = layer.output_shape(x.shape)
    if family_of(layer) == "qconv":  # the accumulator's operator, then the requantization
        dx, dw = _quantized_inputs(layer, x, weight, bias)
        ops = entries(layer, x.shape)
        acc = np.stack([apply_entries(ops, sample, dw) for sample in dx]).reshape(out)
        y = _requantized(layer, acc, bias, lambda a, c: q.requantize_exact(
            a, layer.rounding, layer.x_scale, layer.w_scales[c], layer.y_scale,
            *layer.multipliers[c], layer.y_zero_point, layer.clamp))
        return y[0] if single else y
    if layer.quantized:  # the pool's operator gives each window's taps and divisor
        _check_range(layer, "x", x, layer.dtype)
        ops = entries(layer, x.shape)
        order = np.lexsort((ops.cols, ops.rows))  # each row's taps in scan order
        rows, cols, divisors = ops.rows[order], ops.cols[order], ops.keys[order]
        y = np.empty((x.shape[0], ops.shape[0]), dtype=object)
        for n, sample in enumerate(x.reshape(x.shape[0], -1)):
            starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
            for start, stop in zip(starts, [*starts[1:], len(rows)]):
                differences = [int(sample[c]) - layer.x_zero_point for c in cols[start:stop]]
                y[n, rows[start]] = layer.average_exact(differences, int(divisors[start]))
        y = y.reshape(out)
        return y[0] if single else y
    if not is_linear(layer):
        raise SpecError(f"{type(layer).__name__} is not linear; it has no Toeplitz product")
    ops = entries(layer, x.shape)
    y = np.stack([apply_entries(ops, sample, weight) for sample in x]).reshape(out)
    if bias is not None:
        y = y + bias.reshape(1, -1, *[1] * layer.ndim)
    return y[0] if single else y
