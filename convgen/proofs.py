"""Statements about convgen's formulas, proved for every size or refuted with a counterexample.

A statement is built from the very functions of :mod:`convgen.symbolic` that specs, oracles
and templates use, called with SymPy symbols, and handed to z3 through :func:`to_z3` (of
:mod:`convgen.solver`, the one place where SymPy becomes solver terms).  The solver looks for
an assignment of the integer variables that satisfies the assumptions (the domains) and
violates the claim:

* none exists: **proved** for every size in the domain;
* one exists: **refuted**, with the smallest counterexample (least sum of the variables);
* the solver gives up: **unknown**, with its reason (never reported as proved).

Polynomial inequalities that z3's integer arithmetic cannot settle are proved by
:func:`nonnegative_polynomial` (every coefficient of the expanded polynomial, in variables
shifted to start at 0, is non-negative).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import sympy
import z3

from . import quantization as q
from . import symbolic as sym
from .solver import symbol_facts, to_z3
from .spec import family_of

__all__ = ["CATALOGUE", "Result", "Statement", "layer_statements", "nonnegative_polynomial",
           "prove", "run_catalogue", "to_z3"]

TIMEOUT_MS = 20_000


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Result:
    """The outcome of one statement."""

    name: str
    statement: str
    assumptions: tuple[str, ...]
    status: str                      # "proved", "refuted" or "unknown"
    counterexample: dict = field(default_factory=dict)
    reason: str = ""
    method: str = "z3"
    seconds: float = 0.0
    expected: str = "proved"

    @property
    def as_expected(self) -> bool:
        return self.status == self.expected


def prove(claim, assumptions: Sequence, name: str = "", statement: str = "",
          minimize: bool = True) -> Result:
    """Prove ``claim`` under ``assumptions`` (SymPy conditions) for all integers, or refute it
    with the smallest counterexample."""
    start = time.perf_counter()
    env: dict = {}
    hypotheses = [to_z3(a, env) for a in assumptions]
    negated = z3.Not(to_z3(claim, env))
    hypotheses += symbol_facts(env)
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*hypotheses, negated)
    verdict = solver.check()
    texts = tuple(str(a) for a in assumptions)
    statement = statement or str(claim)
    if verdict == z3.unsat:
        return Result(name, statement, texts, "proved", seconds=time.perf_counter() - start)
    if verdict == z3.unknown:
        return Result(name, statement, texts, "unknown", reason=solver.reason_unknown(),
                      seconds=time.perf_counter() - start)
    model = _smallest(hypotheses, negated, env) if minimize else solver.model()
    example = {str(s): model.eval(v, model_completion=True).as_long() for s, v in env.items()}
    return Result(name, statement, texts, "refuted", dict(sorted(example.items())),
                  seconds=time.perf_counter() - start)


def _smallest(hypotheses, negated, env):
    optimizer = z3.Optimize()
    optimizer.set("timeout", TIMEOUT_MS)
    optimizer.add(*hypotheses, negated)
    optimizer.minimize(z3.Sum(*env.values()))
    if optimizer.check() == z3.sat:
        return optimizer.model()
    solver = z3.Solver()
    solver.add(*hypotheses, negated)
    solver.check()
    return solver.model()


def nonnegative_polynomial(expr, lower_bounds: dict) -> bool:
    """Whether ``expr >= 0`` for all integers ``v >= lower_bounds[v]``: shift every variable
    to start at 0 and check that the expanded polynomial has no negative coefficient."""
    shifted = sympy.expand(expr.subs({v: v + low for v, low in lower_bounds.items()},
                                     simultaneous=True))
    return all(c >= 0 for c in sympy.Poly(shifted, *lower_bounds).coeffs())


# --------------------------------------------------------------------------- the catalogue


def _ints(names: str) -> tuple[sympy.Symbol, ...]:
    return tuple(sympy.symbols(names, integer=True, seq=True))


N, K, S, D, LO, HI = _ints("n k s d lo hi")
DOMAIN = [N >= 1, K >= 1, S >= 1, D >= 1, LO >= 0, HI >= 0]


def _windows_claim(out, padded, extent):
    """Windows 0..out-1 fit in the padded input and window ``out`` does not."""
    return sympy.And(out >= 1, (out - 1) * S + extent <= padded, out * S + extent > padded)


def conv_window_count() -> Result:
    extent, padded = sym.dilated_extent(K, D), N + LO + HI
    out = sym.conv_output_size(N, K, S, D, LO, HI)
    return prove(_windows_claim(out, padded, extent), [*DOMAIN, padded >= extent],
                 "conv-output-size",
                 "conv_output_size(n, k, s, d, lo, hi) is the number of windows that lie "
                 "inside the padded input")


def pool_floor_window_count() -> Result:
    extent, padded = sym.dilated_extent(K, D), N + LO + HI
    out = sym.pool_output_size(N, K, S, D, LO, HI, False)
    return prove(_windows_claim(out, padded, extent), [*DOMAIN, padded >= extent],
                 "pool-floor-output-size",
                 "pooling in floor mode counts the windows inside the padded input")


def _ceil_assumptions(extent, padded):
    return [*DOMAIN, LO < extent, HI < extent, padded + S > extent]


def pool_ceil_window_count() -> Result:
    """Ceil mode: windows are kept while the previous one left the padded input uncovered,
    except one that would start in the right padding."""
    extent, padded = sym.dilated_extent(K, D), N + LO + HI
    out = sym.pool_output_size(N, K, S, D, LO, HI, True)

    def kept(i):
        return sympy.And(sympy.Or(sympy.Eq(i, 0), (i - 1) * S + extent < padded),
                         i * S < LO + N)

    claim = sympy.And(out >= 1, kept(out - 1), sympy.Not(kept(out)))
    return prove(claim, _ceil_assumptions(extent, padded), "pool-ceil-output-size",
                 "pool_output_size(ceil_mode=True) counts the windows of PyTorch's ceil rule")


def pool_ceil_never_starts_in_right_padding() -> Result:
    extent, padded = sym.dilated_extent(K, D), N + LO + HI
    out = sym.pool_output_size(N, K, S, D, LO, HI, True)
    return prove((out - 1) * S < N + LO, _ceil_assumptions(extent, padded),
                 "pool-ceil-last-window",
                 "in ceil mode the last window starts inside the input or the left padding")


def same_padding_size(lower: bool) -> Result:
    lo, hi = sym.same_padding(N, K, S, D, lower)
    out = sym.conv_output_size(N, K, S, D, lo, hi)
    claim = sympy.And(sympy.Eq(out, sym.same_output_size(N, S)), lo >= 0, hi >= 0)
    mode = "same_lower" if lower else "same"
    return prove(claim, DOMAIN[:4], f"{mode}-padding",
                 f"'{mode}' padding gives ceil(n/s) outputs with non-negative pads")


def same_padding_stride_one() -> Result:
    lo, hi = sym.same_padding(N, K, 1, D)
    return prove(sympy.Eq(sym.conv_output_size(N, K, 1, D, lo, hi), N),
                 [N >= 1, K >= 1, D >= 1], "same-padding-stride-1",
                 "at stride 1, 'same' padding keeps the size: n outputs")


def conv_transpose_inverts_conv() -> Result:
    """For every conv input m, the transposed convolution of conv(m) with the right
    output_padding gives m back, and that output_padding is below the stride."""
    (m,) = _ints("m")
    extent = sym.dilated_extent(K, D)
    n = sym.conv_output_size(m, K, S, D, LO, HI)
    op = sym.conv_transpose_output_padding(m, K, S, D, LO, HI)
    claim = sympy.And(sympy.Eq(sym.conv_transpose_output_size(n, K, S, D, LO, HI, op), m),
                      op >= 0, op < S)
    return prove(claim, [m >= 1, *DOMAIN[1:], m + LO + HI >= extent],
                 "conv-transpose-inverse",
                 "conv_transpose_output_size(conv_output_size(m), output_padding) == m with "
                 "0 <= output_padding < stride")


def weight_index_bijection() -> Result:
    """The flat weight index of (o, i, j1, j2) is a bijection onto [0, C_out*C_in/g*k1*k2): the
    Toeplitz matrix can hold at most that many distinct weights."""
    co, cg, k1, k2 = _ints("c_out cg_in k1 k2")
    a = _ints("o i j1 j2")
    b = _ints("o_ i_ j1_ j2_")
    shape = [co, cg, k1, k2]
    box = [sympy.And(0 <= x, x < size) for xs in (a, b) for x, size in zip(xs, shape)]
    fa, fb = sym.flat_index(list(a), shape), sym.flat_index(list(b), shape)
    injective = sympy.Or(sympy.Ne(fa, fb), sympy.And(*[sympy.Eq(x, y) for x, y in zip(a, b)]))
    in_range = sympy.And(fa >= 0, fa < sym.conv_weight_count(cg, co, 1, [k1, k2]))
    return prove(sympy.And(injective, in_range), [*[s >= 1 for s in shape], *box],
                 "weight-index-bijection",
                 "weights (o, i, j1, j2) have distinct flat indices in [0, C_out*C_in/g*k1*k2)")


def every_tap_reaches_the_input() -> Result:
    """Without padding each tap j of window 0 reads input j*d: every weight appears in T."""
    (j,) = _ints("j")
    position = sym.tap_index(0, j, S, D, 0)
    return prove(sympy.And(position >= 0, position < N),
                 [*DOMAIN[:4], 0 <= j, j < K, N >= sym.dilated_extent(K, D)],
                 "every-weight-in-toeplitz",
                 "with zero padding and a kernel that fits, every tap of window 0 reads the "
                 "input, so T holds every weight")


def stacked_valid_convs_shrink() -> list[Result]:
    """By induction: n valid k x k convolutions shrink a side H by n(k - 1)."""
    (h, count) = _ints("H n_layers")
    step = prove(sympy.Eq(sym.conv_output_size(h - count * (K - 1), K, 1, 1, 0, 0),
                          h - (count + 1) * (K - 1)),
                 [count >= 0, K >= 1, h - (count + 1) * (K - 1) >= 1],
                 "stacked-convs-step",
                 "induction step: one more valid k x k conv takes H - n(k-1) to H - (n+1)(k-1)")
    base = prove(sympy.Eq(sym.conv_output_size(h, K, 1, 1, 0, 0), h - (K - 1)),
                 [K >= 1, h >= K], "stacked-convs-base",
                 "base case: one valid k x k conv takes H to H - (k-1)")
    return [base, step]


def dense_versus_conv_params() -> list[Result]:
    """A dense layer with the conv's input and output sizes needs at least as many parameters
    as the conv (weights and bias) whenever the kernel fits inside the unpadded input, with
    equality exactly when the kernel covers the whole input (a 1 x 1 output)."""
    ci, co, k, h, w = _ints("C_in C_out k H W")
    out = [sym.conv_output_size(h, k, 1, 1, 0, 0), sym.conv_output_size(w, k, 1, 1, 0, 0)]
    dense = sym.dense_params(ci * h * w, co * out[0] * out[1])
    conv = sym.conv_weight_count(ci, co, 1, [k, k]) + co
    a, b = _ints("a b")  # H = k + a, W = k + b: the kernel fits when a, b >= 0
    gap = sympy.expand((dense - conv).subs({h: k + a, w: k + b}))
    bounds = {ci: 1, co: 1, k: 1, a: 0, b: 0}
    start = time.perf_counter()
    at_least = nonnegative_polynomial(gap, bounds)
    equality = sympy.expand(gap.subs({a: 0, b: 0})) == 0 and \
        nonnegative_polynomial(gap - a - b, bounds)
    seconds = time.perf_counter() - start
    assumptions = ("C_in >= 1", "C_out >= 1", "k >= 1", "H >= k", "W >= k")
    return [
        Result("dense-at-least-conv", "n(m+1) >= C_out*C_in*k^2 + C_out for a k x k conv of a "
               "C_in x H x W input (m = C_in*H*W, n = C_out*(H-k+1)*(W-k+1))", assumptions,
               "proved" if at_least else "unknown",
               reason="" if at_least else "a coefficient of the shifted polynomial is negative",
               method="sympy: non-negative coefficients", seconds=seconds),
        Result("dense-equals-conv", "n(m+1) == C_out*C_in*k^2 + C_out exactly when H == k and "
               "W == k (the gap is at least (H-k) + (W-k))", assumptions,
               "proved" if equality else "unknown",
               reason="" if equality else "the gap is not bounded below by (H-k) + (W-k)",
               method="sympy: non-negative coefficients", seconds=seconds)]


def ceil_rule_equals_plain_ceil() -> Result:
    """False on purpose: PyTorch's ceil rule is not plain ceil."""
    extent, padded = sym.dilated_extent(K, D), N + LO + HI
    plain = sym.cdiv(padded - extent, S) + 1
    result = prove(sympy.Eq(sym.pool_output_size(N, K, S, D, LO, HI, True), plain),
                   _ceil_assumptions(extent, padded), "ceil-rule-is-plain-ceil (false)",
                   "PyTorch's ceil-mode output size equals ceil((n+lo+hi-ext)/s) + 1")
    return Result(**{**result.__dict__, "expected": "refuted"})


# --------------------------------------------------------------------------- quantized


def _decide(name: str, statement: str, assumptions: Sequence[str], hypotheses, claim,
            variables: dict, expected: str = "proved", minimize=None) -> Result:
    """Prove ``claim`` (z3) under ``hypotheses`` over ``variables`` (name -> z3 term), or
    refute it with a counterexample (the least ``minimize`` term, when given)."""
    start = time.perf_counter()
    solver = z3.Optimize() if minimize is not None else z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*hypotheses, z3.Not(claim))
    if minimize is not None:
        solver.minimize(minimize)
    verdict = solver.check()
    seconds = time.perf_counter() - start
    if verdict == z3.unsat:
        return Result(name, statement, tuple(assumptions), "proved", seconds=seconds,
                      expected=expected)
    if verdict == z3.unknown:
        return Result(name, statement, tuple(assumptions), "unknown",
                      reason=solver.reason_unknown(), seconds=seconds, expected=expected)
    model = solver.model()
    example = {k: model.eval(v, model_completion=True).as_long() for k, v in variables.items()}
    return Result(name, statement, tuple(assumptions), "refuted", example, seconds=seconds,
                  expected=expected)


def _between(term, low: int, high: int):
    return z3.And(term >= low, term <= high)


def _z3_high_mul(a, multiplier: int):
    """The C of gemmlowp's ``SaturatingRoundingDoublingHighMul`` (``templates/shared/
    requantize.j2``) in z3's integers: the nudge, then division truncating toward zero."""
    ab = a * multiplier
    total = ab + z3.If(ab >= 0, 2**30, 1 - 2**30)
    return z3.If(total >= 0, total / 2**31, -((-total) / 2**31))  # z3's / floors


def _z3_divide_pot(x, exponent: int):
    """The C of ``RoundingDivideByPOT``: the arithmetic shift floors, ``x & mask`` is the
    non-negative remainder (two's complement)."""
    mask = 2**exponent - 1
    threshold = (mask >> 1) + z3.If(x < 0, 1, 0)
    return x / 2**exponent + z3.If(x % 2**exponent > threshold, 1, 0)


def _half_away(numerator, denominator: int):
    """``numerator / denominator`` (an even constant) rounded to nearest, ties away from
    zero, in z3's integers."""
    magnitude = (z3.If(numerator >= 0, numerator, -numerator) + denominator // 2) / denominator
    return z3.If(numerator >= 0, magnitude, -magnitude)


def _sum_statement(name: str, words: str, taps: int, t_low: int, t_high: int,
                   term: str) -> Result:
    """An int32 sum of ``taps`` terms in ``[t_low, t_high]`` never overflows, by induction
    over the taps: after ``k`` of them it lies in ``[k*t_low, k*t_high]`` within int32, so
    every partial sum of any order is safe."""
    acc, k, value = z3.Int("acc"), z3.Int("k"), z3.Int("term")
    step = z3.And(_between(acc + value, (k + 1) * t_low, (k + 1) * t_high),
                  _between(acc + value, *q.INT32))
    return _decide(
        f"{name}: accumulator", f"{words}: after k taps it lies in [k*{t_low:,}, "
        f"k*{t_high:,}] within int32", [f"0 <= k < {taps:,}", "acc in [k*low, k*high]", term],
        [k >= 0, k < taps, _between(acc, k * t_low, k * t_high),
         _between(value, t_low, t_high)], step, {"k": k, "acc": acc, "term": value})


def quantized_statements(layer) -> list[Result]:
    """A quantized convolution's own statements, on its constants:

    * every product ``(x - x_zp) * (w - w_zp)`` of its operand types lies in the layer's
      term range (the int32 arithmetic of the kernel's products cannot overflow);
    * the int32 accumulator cannot overflow: after ``k`` of its taps the sum lies within
      ``k`` times the term range (induction: base and step over every ``k`` below the
      tap count), inside int32 at the last tap;
    * QLinearConv with ``rounding='fixed_point'``, per distinct multiplier and shift: over
      every reachable accumulator (all of int32 with a bias, which is added saturating;
      else the accumulator's range) the two roundings of the C are within 1 of the single
      rounding of ``acc * m * 2**(shift-31)`` (half away from zero), and they differ exactly
      where the first rounding went away from zero onto a tie of the second; and the
      multipliers and shifts represent ``x_scale * w_scale / y_scale`` within a relative
      error of ``2**-31`` (exact rational arithmetic).
    """
    name, results = layer.describe(), []
    x_low, x_high = q.type_range(layer.dtype)
    w_low, w_high = q.type_range(layer.weight_dtype)
    t_low, t_high = layer.term_range
    x, w = z3.Int("x"), z3.Int("w")
    for zp in sorted(set(layer.w_zero_points)):
        product = (x - layer.x_zero_point) * (w - zp)
        results.append(_decide(
            f"{name}: products", f"(x - ({layer.x_zero_point})) * (w - ({zp})) lies in "
            f"[{t_low:,}, {t_high:,}] and in int32", [f"x in {layer.dtype}",
                                                     f"w in {layer.weight_dtype}"],
            [_between(x, x_low, x_high), _between(w, w_low, w_high)],
            z3.And(_between(product, t_low, t_high), _between(product, *q.INT32)),
            {"x": x, "w": w}))
    results.append(_sum_statement(name, "the int32 accumulator never overflows over the "
                                  f"{layer.taps:,} taps", layer.taps, t_low, t_high,
                                  "term in the product range"))
    if layer.requantizes and layer.rounding == "fixed_point":
        low, high = q.INT32 if layer.bias else layer.accumulator_range
        for multiplier, shift in sorted(set(layer.multipliers)):
            results += _fixed_point_statements(name, multiplier, -shift, low, high)
        results.append(_multiplier_statement(layer))
    return results


def qpool_statements(layer) -> list[Result]:
    """A quantized average pool's own statements, on its constants (``taps``: the most a
    window adds, the kernel's size, or for the global pool the most any input plane may
    hold, :data:`convgen.quantization.MAX_POOL_TAPS`):

    * the int32 sum of ``x - x_zero_point`` never overflows (induction over the taps, as the
      convolutions' accumulator), where the kernel sums integers (``rounding='integer'``
      and the global pool);
    * ``rounding='integer'``: for every count ``c`` up to ``taps`` and every raw sum of
      ``c`` 8-bit values, the C's ``(raw > 0 ? raw + c/2 : raw - c/2) / c`` (C's truncating
      division) is the nearest integer to ``raw / c``, ties away from zero, by the
      definition: ``|raw - m*c| <= c/2``, and at a tie ``m`` is the one farther from zero.
    """
    name, results = layer.describe(), []
    glob = family_of(layer) == "adaptive_pool"
    taps = q.MAX_POOL_TAPS if glob else sym.prod(layer.kernel_size)
    x_low, x_high = q.type_range(layer.dtype)
    t_low, t_high = q.term_bound(layer.dtype, layer.x_zero_point)
    if layer.rounding == "integer" or glob:
        results.append(_sum_statement(name, f"the int32 sum never overflows over up to "
                                      f"{taps:,} taps", taps, t_low, t_high,
                                      "term = x - x_zero_point"))
    if layer.rounding == "integer":
        raw, c = z3.Int("raw"), z3.Int("count")
        half = c / 2
        numerator = z3.If(raw > 0, raw + half, raw - half)
        mean = z3.If(numerator >= 0, numerator / c, -((-numerator) / c))  # C truncates
        error = 2 * (raw - mean * c)
        nearest = z3.And(error <= c, error >= -c,
                         z3.Implies(error == c, raw < 0), z3.Implies(error == -c, raw > 0))
        results.append(_decide(
            f"{name}: integer mean", "the C's (raw > 0 ? raw + c/2 : raw - c/2) / c is "
            "raw / c rounded to nearest, ties away from zero",
            [f"1 <= c <= {taps:,}", f"raw in [c*{x_low}, c*{x_high}]"],
            [c >= 1, c <= taps, _between(raw, c * x_low, c * x_high)], nearest,
            {"raw": raw, "count": c}))
    return results


def _fixed_point_statements(name: str, multiplier: int, exponent: int, low: int,
                            high: int) -> list[Result]:
    a = z3.Int("acc")
    high_mul = _z3_high_mul(a, multiplier)
    two_step = _z3_divide_pot(high_mul, exponent)
    single = _half_away(a * multiplier, 2**(31 + exponent))
    domain = [_between(a, low, high)]
    words = f"acc in [{low:,}, {high:,}]"
    near = _decide(
        f"{name}: fixed point m={multiplier}, shift=-{exponent}",
        f"the C's two roundings are within 1 of round_half_away(acc * {multiplier} / "
        f"2**{31 + exponent})", [words], domain,
        z3.And(two_step - single <= 1, single - two_step <= 1), {"acc": a})
    tie = z3.BoolVal(False) if exponent == 0 else z3.And(
        high_mul % 2**exponent == 2**(exponent - 1),
        z3.If(a >= 0, a * multiplier, -a * multiplier)
        < z3.If(high_mul >= 0, high_mul, -high_mul) * 2**31)
    where = _decide(
        f"{name}: fixed point m={multiplier}, shift=-{exponent}",
        "they differ exactly where h = high_mul(acc, m) is a tie of the shift (h mod "
        f"2**{exponent} == 2**{max(exponent - 1, 0)}) reached by rounding acc*m/2**31 away "
        "from zero", [words], domain, (two_step != single) == tie, {"acc": a})
    return [near, where]


def _multiplier_statement(layer) -> Result:
    """Each channel's ``(m, shift)`` against TFLite's double ``M``: exact rationals."""
    start = time.perf_counter()
    worst, failing = Fraction(0), {}
    for channel, (real, (m, shift)) in enumerate(zip(layer.real_multipliers,
                                                     layer.multipliers)):
        error = abs(Fraction(m) * Fraction(2) ** (shift - 31) - Fraction(real)) / Fraction(real)
        worst = max(worst, error)
        if error > Fraction(1, 2**31) and not failing:
            failing = {"channel": channel, "multiplier": m, "shift": shift}
    return Result(f"{layer.describe()}: multipliers",
                  "every channel's m * 2**(shift-31) is x_scale*w_scale/y_scale (in double) "
                  f"within a relative error of 2**-31 (largest: {float(worst):.3g})", (),
                  "refuted" if failing else "proved", failing, method="exact rationals",
                  seconds=time.perf_counter() - start)


def accumulator_overflow() -> list[Result]:
    """Catalogue: the smallest tap count whose int32 accumulator can overflow (refuted on
    purpose: :class:`~convgen.spec.QLinearConv2d` refuses the layers past it), for 8-bit
    operands with any zero points (differences up to 255 each way), and for TFLite's
    common case, int8 weights with zero point 0 (differences up to 128)."""
    results = []
    for words, largest in (("int8 or uint8 operands, any zero points", 255 * 255),
                           ("any 8-bit activations, int8 weights with zero point 0",
                            255 * 128)):
        k = z3.Int("taps")
        results.append(_decide(
            words, f"a sum of `taps` products, each of magnitude up to {largest:,}, never "
            "leaves int32", ["taps >= 1"], [k >= 1], k * largest <= q.INT32[1], {"taps": k},
            expected="refuted", minimize=k))
    return results


def multiplier_error() -> Result:
    """Catalogue: TFLite's ``QuantizeMultiplier`` (:func:`convgen.quantization.
    quantize_multiplier`) has relative error at most ``2**-31``: with ``M = f * 2**shift``,
    ``f`` in ``[1/2, 1)``, ``m = round(f * 2**31)`` lies within 1/2 of ``f * 2**31 >= 2**30``
    (the case ``m == 2**31``, halved with ``shift + 1``, is the same value)."""
    f, m = z3.Real("f"), z3.Int("m")
    scaled = f * 2**31
    return _decide("quantize_multiplier", "m = round(f * 2**31) gives |m / 2**31 - f| <= "
                   "f * 2**-31 for every mantissa f in [1/2, 1)",
                   ["1/2 <= f < 1", "m - 1/2 <= f * 2**31 < m + 1/2"],
                   [f >= 0.5, f < 1, m - 0.5 <= scaled, scaled < m + 0.5],
                   z3.And(m - scaled <= f, scaled - m <= f), {"m": m})


@dataclass(frozen=True)
class Statement:
    """A catalogue entry: a number, a title and the function that decides it."""

    number: int
    title: str
    decide: Callable[[], Result | list[Result]]


CATALOGUE = (
    Statement(1, "conv output size = windows allowed by the definition", conv_window_count),
    Statement(2, "pooling output size, floor and ceil mode", lambda: [
        pool_floor_window_count(), pool_ceil_window_count(),
        pool_ceil_never_starts_in_right_padding()]),
    Statement(3, "'same' and 'same_lower' padding", lambda: [
        same_padding_size(False), same_padding_size(True), same_padding_stride_one()]),
    Statement(4, "ConvTranspose inverts conv", conv_transpose_inverts_conv),
    Statement(5, "parameter count = distinct weights of the Toeplitz matrix", lambda: [
        weight_index_bijection(), every_tap_reaches_the_input()]),
    Statement(6, "the seed lecture's claims", lambda: [
        *stacked_valid_convs_shrink(), *dense_versus_conv_params()]),
    Statement(7, "a false statement, refuted on purpose", ceil_rule_equals_plain_ceil),
    Statement(8, "the smallest int32 accumulator that can overflow (refuted on purpose)",
              accumulator_overflow),
    Statement(9, "the fixed-point multiplier's relative error", multiplier_error),
)


def run_catalogue() -> list[tuple[Statement, Result]]:
    """Decide every statement of the catalogue."""
    results = []
    for statement in CATALOGUE:
        decided = statement.decide()
        for result in decided if isinstance(decided, list) else [decided]:
            results.append((statement, result))
    return results


# --------------------------------------------------------------------------- one layer


def layer_statements(layer) -> list[Result]:
    """Statements about one layer spec, for symbolic input sizes ``n0, n1, ...``.

    Window layers: the output size counts the windows of the definition (floor or ceil rule,
    resolved 'same' padding included).  Transposed convolution: the matching convolution maps
    the output size back to ``n`` (when ``output_padding < stride``).  Adaptive and global
    pools: the windows start at 0, end at ``n`` and leave no gap.  Each under the layer's own
    constraints on the symbolic shape and the C limits that :func:`convgen.lower.lower`
    enforces (``n`` and the padded extent at most a 32-bit int), and each also claims that
    every position and size the kernel computes along the axis fits a 64-bit ``long``.  When
    no input size within those limits satisfies the constraints, the statement is refuted
    (a kernel cannot exist), never proved vacuously.
    """
    family = family_of(layer)
    statement = {"conv": _window_statement, "qconv": _window_statement,
                 "pool": _window_statement,
                 "conv_transpose": _transpose_statement,
                 "adaptive_pool": _adaptive_statement}[family]
    ndim = layer.ndim
    sizes = [sympy.Symbol(f"n{i}", integer=True, positive=True) for i in range(ndim)]
    channels = layer.in_channels if family in ("conv", "conv_transpose", "qconv") else 1
    shape = (channels, *sizes)
    domain = [c.condition for c in layer.constraints(shape)]
    results = []
    for dim, n in enumerate(sizes):
        limits, fits = _c_limits(layer, family, shape, dim, n)
        # decided conditions (True) and repeats (no padding: n + 0 + 0 is n) say nothing
        assumptions = list(dict.fromkeys(a for a in (n >= 1, *limits, *domain)
                                         if a is not sympy.true))
        name = f"{layer.describe()}: dim {dim}"
        if _satisfiable(assumptions) is False:
            results.append(Result(
                name, "some input size within the C limits satisfies the layer's constraints",
                tuple(map(str, assumptions)), "refuted",
                reason=f"no input size n{dim} with 1 <= n{dim} and padded extent <= "
                f"{sym.INT_MAX:,} (the C limits of convgen.lower) satisfies the layer's "
                "constraints: no kernel exists for it"))
        else:
            results.append(statement(layer, shape, dim, n, assumptions, fits))
    if family == "qconv":
        results += quantized_statements(layer)
    elif layer.quantized:
        results += qpool_statements(layer)
    return results


def _c_limits(layer, family: str, shape, dim: int, n) -> tuple[list, object]:
    """The C side of a statement about axis ``dim``: the sizes that :func:`convgen.lower.lower`
    accepts (assumptions: ``n`` and the padded extent at most :data:`~convgen.symbolic.INT_MAX`)
    and a claim that every value the kernel computes along the axis from them (the output
    size, the positions its taps or windows reach, the products forming them) fits a 64-bit
    ``long``."""
    out = layer.output_shape(shape)[dim + 1]
    lo, hi = (0, 0) if family == "adaptive_pool" else layer.resolved_padding(shape[1:])[dim]
    limits = [n <= sym.INT_MAX, n + lo + hi <= sym.INT_MAX]
    if family in ("conv", "qconv", "pool"):
        k, s, d = layer.kernel_size[dim], layer.stride[dim], layer.dilation[dim]
        values = [*sym.tap_range(out, k, s, d, lo), (out - 1) * s, (k - 1) * d]
    elif family == "conv_transpose":
        k, s, d = layer.kernel_size[dim], layer.stride[dim], layer.dilation[dim]
        full = sym.conv_transpose_output_size(n, k, s, d, 0, 0, layer.output_padding[dim])
        # the numerator o + lo - j*d of every output o and tap j, and the uncropped extent
        values = [lo - (k - 1) * d, out - 1 + lo, (k - 1) * d, full]
    else:  # the window [floor(i n/out), ceil((i + 1) n/out)) of every output i < out
        values = [out * n + out]
    values.append(out)
    fits = sympy.And(*[sympy.And(v >= -sym.LONG_MAX - 1, v <= sym.LONG_MAX) for v in values])
    return limits, fits


def _satisfiable(assumptions: Sequence) -> bool | None:
    """Whether some integers satisfy ``assumptions`` (None when the solver gives up)."""
    env: dict = {}
    solver = z3.Solver()
    solver.set("timeout", TIMEOUT_MS)
    solver.add(*[to_z3(a, env) for a in assumptions])
    solver.add(*symbol_facts(env))
    verdict = solver.check()
    return None if verdict == z3.unknown else verdict == z3.sat


_FITS = "and every position the kernel computes along it fits a 64-bit long"


def _window_statement(layer, shape, dim, n, assumptions, fits) -> Result:
    out = layer.output_shape(shape)[dim + 1]
    lo, hi = layer.resolved_padding(shape[1:])[dim]
    stride, extent = layer.stride[dim], layer.extents[dim]
    padded = n + lo + hi
    if getattr(layer, "ceil_mode", False) and not isinstance(layer.padding, str):
        def kept(i):
            return sympy.And(sympy.Or(sympy.Eq(i, 0), (i - 1) * stride + extent < padded),
                             i * stride < lo + n)
        claim = sympy.And(out >= 1, kept(out - 1), sympy.Not(kept(out)))
        words = "counts the windows of PyTorch's ceil rule"
    else:
        claim = sympy.And(out >= 1, (out - 1) * stride + extent <= padded,
                          out * stride + extent > padded)
        words = "counts the windows inside the padded input"
    return prove(sympy.And(claim, fits), assumptions, f"{layer.describe()}: dim {dim}",
                 f"output size {out} {words} (input size {n}), {_FITS}")


def _transpose_statement(layer, shape, dim, n, assumptions, fits) -> Result:
    out = layer.output_shape(shape)[dim + 1]
    lo, hi = layer.resolved_padding(shape[1:])[dim]
    k, s, d = layer.kernel_size[dim], layer.stride[dim], layer.dilation[dim]
    name = f"{layer.describe()}: dim {dim}"
    if layer.output_padding[dim] >= s:
        return Result(name, "the matching convolution inverts the output size",
                      tuple(map(str, assumptions)), "unknown",
                      reason=f"output_padding {layer.output_padding[dim]} >= stride {s}: the "
                      "extra positions lie past every window of the matching convolution",
                      expected="unknown")
    claim = sympy.Eq(sym.conv_output_size(out, k, s, d, lo, hi), n)
    return prove(sympy.And(claim, fits), assumptions, name,
                 f"the matching convolution maps the output size {out} back to {n}, {_FITS}")


def _adaptive_statement(layer, shape, dim, n, assumptions, fits) -> Result:
    out = layer.output_shape(shape)[dim + 1]
    (i,) = _ints("i")
    first, _ = sym.adaptive_window(0, n, out)
    _, last = sym.adaptive_window(out - 1, n, out)
    start_next, _ = sym.adaptive_window(i + 1, n, out)
    _, end = sym.adaptive_window(i, n, out)
    claim = sympy.And(sympy.Eq(first, 0), sympy.Eq(last, n),
                      sympy.Implies(sympy.And(i >= 0, i + 1 < out), start_next <= end))
    return prove(sympy.And(claim, fits), assumptions, f"{layer.describe()}: dim {dim}",
                 f"the {out} windows cover [0, {n}) without a gap, {_FITS}")
