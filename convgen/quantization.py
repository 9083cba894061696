"""Quantized arithmetic, each operation written once: integer ranges, the accumulator's bound,
the two requantizations and the fixed-point multiplier.

The oracle (:mod:`convgen.reference`), the specs' validation, the proofs and the docs call
these functions; the C templates print the same operations, and the proofs check them.

Two requantizations of an int32 accumulator ``acc`` of output channel ``c`` to the output
type, both ending with ``+ y_zero_point`` and a clamp to the activation's range:

``float`` (ONNX Runtime's, MLAS's ``MlasRequantizeOutput``)
    ``S = fl(fl(x_scale * w_scale[c]) / y_scale)`` in binary32, then
    ``round_half_even(fl(fl(acc) * S))``: every step one IEEE binary32 operation, so the
    result is defined to the bit (``fl(acc)`` is exact while ``|acc| <= 2**24``).  The ONNX
    operator writes ``round(acc * x_scale * w_scale / y_scale)``; the float steps differ
    from the real product's rounding only where that product lies within a few binary32
    ULP of a half-integer.
``fixed_point`` (TFLite's and CMSIS-NN's, gemmlowp's)
    ``M = double(x_scale) * double(w_scale[c]) / double(y_scale)`` becomes an int32
    multiplier ``m`` in ``[2**30, 2**31)`` and a shift ``s <= 0`` with ``M ~= m * 2**(s-31)``
    (:func:`quantize_multiplier`, TFLite's ``QuantizeMultiplier``); then
    ``rounding_divide_by_pot(srdhm(acc, m), -s)``: a saturating rounding doubling high
    multiply (to nearest, ties toward +infinity) and a rounding arithmetic right shift (to
    nearest, ties away from zero).  Two roundings: the result is within 1 of the single
    rounding of ``acc * m * 2**(s-31)``, and the proofs give the exact set where it differs.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

__all__ = ["ACTIVATIONS", "INT32", "MAX_POOL_TAPS", "POOL_ROUNDINGS", "QUANT_DTYPES",
           "ROUNDINGS", "Scale", "accumulator_bound", "activation_range", "average_global_float",
           "average_global_float_exact", "average_integer", "average_integer_exact",
           "average_window_float", "average_window_float_exact", "float32", "float32_text",
           "float_scale", "global_scale", "quantize_multiplier",
           "requantize", "requantize_exact", "requantize_fixed", "requantize_float",
           "round_half_away", "round_half_even", "round_to_float32", "rounding_divide_by_pot",
           "srdhm", "term_bound", "type_range"]

#: The 8-bit types of quantized activations and weights.
QUANT_DTYPES = ("int8", "uint8")
#: The accumulator's range.
INT32 = (-2**31, 2**31 - 1)
#: Requantizations (see the module's docstring).
ROUNDINGS = ("float", "fixed_point")
#: Activations fused into the requantization as a clamp of the output.
ACTIVATIONS = ("none", "relu", "relu6")

_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int32": INT32}


def type_range(dtype: str) -> tuple[int, int]:
    """``(lowest, highest)`` value of an integer dtype."""
    return _RANGES[dtype]


# --------------------------------------------------------------------------- binary32


def float32(value: float) -> float:
    """``value`` rounded to binary32 (round to nearest even), as a Python float."""
    return float(np.float32(value))


class Scale(float):
    """A binary32 scale: a float whose ``repr`` is the shortest decimal that rounds back to
    the same binary32 value (``0.02``, not ``0.019999999552965164``)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return float32_text(self)

    __str__ = __repr__


def float32_text(value: float) -> str:
    """The shortest decimal that rounds to the binary32 ``value``."""
    return np.format_float_positional(np.float32(value), unique=True, trim="-") \
        if 1e-4 <= abs(value) < 1e16 else np.format_float_scientific(np.float32(value),
                                                                      unique=True, trim="-")


def round_to_float32(value: Fraction) -> Fraction:
    """The exact rational ``value`` rounded to the nearest binary32 (ties to even), exactly,
    without floating point: the second implementation the oracle checks the first against.
    Overflow is not handled: every value rounded here is far below binary32's largest."""
    if value == 0:
        return Fraction(0)
    sign, magnitude = (-1 if value < 0 else 1), abs(value)
    exponent = math.floor(math.log2(magnitude.numerator) - math.log2(magnitude.denominator))
    while Fraction(2) ** exponent > magnitude:      # the log estimate may be one off
        exponent -= 1
    while Fraction(2) ** (exponent + 1) <= magnitude:
        exponent += 1
    quantum = Fraction(2) ** (max(exponent, -126) - 23)   # 24 significant bits; subnormals
    return sign * round_half_even(magnitude / quantum) * quantum


def round_half_even(value: Fraction) -> int:
    """The integer nearest ``value``, ties to even (Python's ``round`` on a Fraction)."""
    return round(Fraction(value))


def float_scale(x_scale: float, w_scale: float, y_scale: float) -> float:
    """The ``float`` requantization's scale ``fl(fl(x_scale * w_scale) / y_scale)``."""
    return float(np.float32(np.float32(x_scale) * np.float32(w_scale)) / np.float32(y_scale))


def requantize_float(acc: int, scale: float) -> int:
    """``round_half_even(fl(fl(acc) * scale))`` in binary32 (NumPy's, IEEE)."""
    product = np.float32(np.float32(acc) * np.float32(scale))
    return int(np.rint(product))


# --------------------------------------------------------------------------- fixed point


def quantize_multiplier(real: float) -> tuple[int, int]:
    """``(m, shift)`` with ``real ~= m * 2**(shift - 31)``, ``m`` in ``[2**30, 2**31)`` (or
    0), TFLite's ``QuantizeMultiplier``: ``frexp``, ``round`` half away from zero, a mantissa
    that rounds up to ``2**31`` halved, and 0 for a multiplier below ``2**-32``.  The
    relative error ``|m * 2**(shift-31) - real| / real`` is at most ``2**-31``."""
    if real == 0:
        return 0, 0
    mantissa, shift = math.frexp(real)
    fixed = int(Fraction(mantissa) * 2**31 + Fraction(1, 2))  # half away from zero, > 0
    if fixed == 2**31:
        fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return fixed, shift


def srdhm(a: int, b: int) -> int:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``: ``a * b / 2**31`` rounded to nearest,
    ties toward +infinity (its nudge ``1 - 2**30`` for a negative product, then C's division
    toward zero), saturating the one overflowing case ``a == b == -2**31``."""
    if a == b == INT32[0]:
        return INT32[1]
    product = a * b
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    total = product + nudge
    return abs(total) // 2**31 * (1 if total >= 0 else -1)  # C's division: toward zero


def rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero
    (arithmetic shift, as the C does)."""
    mask = (1 << exponent) - 1
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if (x & mask) > threshold else 0)


def requantize_fixed(acc: int, multiplier: int, shift: int) -> int:
    """TFLite's ``MultiplyByQuantizedMultiplier`` for ``shift <= 0`` (a multiplier below 1)."""
    return rounding_divide_by_pot(srdhm(acc, multiplier), -shift)


# --------------------------------------------------------------------------- the output


def activation_range(activation: str, dtype: str, y_scale: float,
                     y_zero_point: int) -> tuple[int, int]:
    """The output's clamp: the type's range, cut below at the zero point (``relu``) and above
    at the quantized 6.0 (``relu6``: ``zero_point + round(fl(6 / y_scale))``, half away from
    zero, as TFLite's ``CalculateActivationRangeQuantized``)."""
    low, high = type_range(dtype)
    if activation in ("relu", "relu6"):
        low = max(low, y_zero_point)
    if activation == "relu6":
        six = float(np.float32(6.0) / np.float32(y_scale))
        high = min(high, y_zero_point + int(math.copysign(math.floor(abs(six) + 0.5), six)))
    return low, high


def requantize(acc: int, rounding: str, scale: float, multiplier: int, shift: int,
               zero_point: int, clamp: tuple[int, int]) -> int:
    """One output value from its accumulator: the rounding's integer, plus the zero point,
    clamped to ``clamp``."""
    acc = min(max(acc, INT32[0]), INT32[1])  # the bias is added saturating (see the README)
    value = requantize_float(acc, scale) if rounding == "float" else \
        requantize_fixed(acc, multiplier, shift)
    return min(max(value + zero_point, clamp[0]), clamp[1])


def round_half_away(value: Fraction) -> int:
    """The integer nearest ``value``, ties away from zero."""
    value = Fraction(value)
    magnitude = math.floor(abs(value) + Fraction(1, 2))
    return magnitude if value >= 0 else -magnitude


def requantize_exact(acc: int, rounding: str, x_scale: float, w_scale: float, y_scale: float,
                     multiplier: int, shift: int, zero_point: int,
                     clamp: tuple[int, int]) -> int:
    """:func:`requantize` again, in exact rationals, as the definitions read: the second
    oracle's.  ``float``: each binary32 operation is the exact result rounded by
    :func:`round_to_float32`; ``fixed_point``: two roundings, ``acc * m / 2**31`` to nearest
    with ties toward +infinity, then the quotient by ``2**-shift`` half away from zero."""
    acc = min(max(acc, INT32[0]), INT32[1])
    if rounding == "float":
        scale = round_to_float32(round_to_float32(Fraction(x_scale) * Fraction(w_scale))
                                 / Fraction(y_scale))
        value = round_to_float32(round_to_float32(Fraction(acc)) * scale)
        value = min(max(value, clamp[0] - zero_point), clamp[1] - zero_point)
        return round_half_even(value) + zero_point
    high = math.floor(Fraction(acc * multiplier, 2**31) + Fraction(1, 2))
    value = round_half_away(Fraction(high, 2**-shift))
    return min(max(value + zero_point, clamp[0]), clamp[1])


# --------------------------------------------------------------------------- average pooling

#: How a quantized average pool rounds: ``"float"`` as ONNX Runtime's ``QLinearAveragePool``
#: and ``QLinearGlobalAveragePool``, ``"integer"`` as TFLite's (and CMSIS-NN's) average pool.
POOL_ROUNDINGS = ("float", "integer")
#: The most input elements a quantized window or global pool adds: the int32 sum of
#: 8-bit differences stays exact, and so does the count as a binary32 divisor.
MAX_POOL_TAPS = 2**23


def average_window_float(differences, count: int, x_scale: float, y_scale: float,
                         zero_point: int, clamp: tuple[int, int]) -> int:
    """ONNX Runtime's ``QLinearAveragePool`` of one window, in binary32 (NumPy's, IEEE).

    ``differences`` are the window's real taps ``x - x_zero_point`` in scan order (a padded
    tap adds ``fl(x_scale * 0) = 0``): each is dequantized, ``fl(x_scale * d)``, and added
    in that order; the sum is divided by ``count``, then ``fl(fl(mean / y_scale) +
    y_zero_point)`` is rounded half to even and clamped."""
    f32 = np.float32
    total = f32(0)
    for d in differences:
        total = f32(total + f32(f32(x_scale) * f32(d)))
    mean = f32(total / f32(count))
    value = f32(f32(mean / f32(y_scale)) + f32(zero_point))
    return int(min(max(np.rint(value), clamp[0]), clamp[1]))


def average_window_float_exact(differences, count: int, x_scale: float, y_scale: float,
                               zero_point: int, clamp: tuple[int, int]) -> int:
    """:func:`average_window_float` again, in exact rationals: each binary32 operation is
    the exact result rounded by :func:`round_to_float32` (the second oracle's)."""
    total, scale = Fraction(0), Fraction(x_scale)
    for d in differences:
        total = round_to_float32(total + round_to_float32(scale * d))
    mean = round_to_float32(total / count)
    value = round_to_float32(round_to_float32(mean / Fraction(y_scale)) + zero_point)
    return min(max(round_half_even(value), clamp[0]), clamp[1])


def global_scale(x_scale: float, y_scale: float, count: int) -> float:
    """ONNX Runtime's ``QLinearGlobalAveragePool`` scale ``fl(x_scale / fl(y_scale *
    count))`` (MLAS), binary32; ``count`` is exact in binary32 (below 2**24)."""
    f32 = np.float32
    return float(f32(f32(x_scale) / f32(f32(y_scale) * f32(count))))


def average_global_float(acc: int, scale: float, zero_point: int,
                         clamp: tuple[int, int]) -> int:
    """``QLinearGlobalAveragePool`` of the exact sum ``acc`` of ``x - x_zero_point``:
    ``round_half_even(fl(fl(acc) * scale)) + y_zero_point``, clamped (the float
    requantization of :func:`requantize_float`)."""
    return min(max(requantize_float(acc, scale) + zero_point, clamp[0]), clamp[1])


def average_global_float_exact(acc: int, x_scale: float, y_scale: float, count: int,
                               zero_point: int, clamp: tuple[int, int]) -> int:
    """:func:`average_global_float` with :func:`global_scale` again, in exact rationals."""
    scale = round_to_float32(Fraction(x_scale) / round_to_float32(Fraction(y_scale) * count))
    value = round_to_float32(round_to_float32(Fraction(acc)) * scale)
    value = min(max(value, clamp[0] - zero_point), clamp[1] - zero_point)
    return round_half_even(value) + zero_point


def average_integer(acc: int, count: int, zero_point: int, clamp: tuple[int, int]) -> int:
    """TFLite's integer average pool: the raw sum ``acc + count * zero_point`` (input and
    output share their quantization) divided by ``count``, rounded half away from zero
    (``(sum +- count/2) / count`` with C's truncating division), then clamped."""
    raw = acc + count * zero_point
    half = count // 2
    quotient = abs(raw + half if raw > 0 else raw - half) // count
    value = quotient if raw > 0 else -quotient
    return min(max(value, clamp[0]), clamp[1])


def average_integer_exact(acc: int, count: int, zero_point: int,
                          clamp: tuple[int, int]) -> int:
    """:func:`average_integer` as the definition reads: the mean to nearest, ties away
    from zero (with an odd ``count`` no mean is a tie)."""
    return min(max(round_half_away(Fraction(acc + count * zero_point, count)), clamp[0]),
               clamp[1])


# --------------------------------------------------------------------------- the accumulator


def term_bound(dtype: str, zero_point: int) -> tuple[int, int]:
    """The range of ``v - zero_point`` for ``v`` of ``dtype``."""
    low, high = type_range(dtype)
    return low - zero_point, high - zero_point


def accumulator_bound(taps: int, x_range: tuple[int, int],
                      w_range: tuple[int, int]) -> tuple[int, int]:
    """The range of a sum of ``taps`` products ``(x - x_zp) * (w - w_zp)`` with the
    differences in ``x_range`` and ``w_range``: the layer's accumulator before the bias."""
    corners = [a * b for a in x_range for b in w_range]
    return taps * min(0, *corners), taps * max(0, *corners)
