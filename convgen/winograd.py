"""Winograd's minimal filtering F(2x2, 3x3): the matrices, their proof, the C they print to,
and the schedule's rounding-error bound.

A 2x2 tile of outputs of a 3x3 correlation is ``A^T [(G g G^T) . (B^T d B)] A`` with ``g`` the
3x3 filter, ``d`` the 4x4 input tile and ``.`` the elementwise product (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016): 16 multiplications instead of 36.
The sums over input channels happen between the transforms, on 16 matrices, so a layer costs
16 GEMMs plus transforms.  :func:`identity` proves the matrices right for symbolic ``g`` and
``d``; ``templates/c/conv_winograd.c.j2`` prints its transforms from :func:`combination`.

Rounding.  Every transform stage sums at most 3 terms whose coefficients are 1, -1 or 1/2
(exact scalings), so by the standard bound for sums (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., section 3.1) the computed output satisfies, with ``u`` the unit
roundoff, ``C`` the input channels of a group and ``gamma_k = k u / (1 - k u)``::

    |y~ - y| <= gamma_(C + 11) * T + u |b|,
    T = A^T| [sum over input channels of (|G| |g| |G^T|) . (|B^T| |d| |B|)] |A|  (elementwise)

(4 roundings in G g G^T, 2 in B^T d B, 1 per product, C - 1 in the channel sum, 4 in A^T M A,
1 for the bias).  ``T`` is not ``sum |w x|`` of the direct bound: the transforms add and
subtract inputs, so ``T`` is larger, by at most :data:`AMPLIFICATION` times the largest
``|g| |d|`` product (see :func:`amplification`), and cancellation can make the relative error
large where the output is small.  Small integer data is exact (the 1/2 and 1/4 are exact).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import sympy

__all__ = ["A_T", "B_T", "G", "amplification", "combination", "error_bound", "identity",
           "magnitudes", "transforms"]

_HALF = sympy.Rational(1, 2)
#: Filter transform (4x3), input transform (4x4) and output transform (2x4) of F(2x2, 3x3).
G = sympy.Matrix([[1, 0, 0], [_HALF, _HALF, _HALF], [_HALF, -_HALF, _HALF], [0, 0, 1]])
B_T = sympy.Matrix([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
A_T = sympy.Matrix([[1, 1, 1, 0], [0, 1, -1, -1]])


def identity() -> bool:
    """Whether ``A^T [(G g G^T) . (B^T d B)] A`` equals the 3x3 correlation of the 4x4 tile
    ``d`` with ``g`` for symbolic ``g`` and ``d`` (expanded and compared term by term)."""
    g = sympy.Matrix(3, 3, sympy.symbols("g0:9"))
    d = sympy.Matrix(4, 4, sympy.symbols("d0:16"))
    winograd = A_T * (G * g * G.T).multiply_elementwise(B_T * d * B_T.T) * A_T.T
    direct = sympy.Matrix(2, 2, lambda i, j: sum(g[a, b] * d[i + a, j + b]
                                                 for a in range(3) for b in range(3)))
    return all(sympy.expand(e) == 0 for e in winograd - direct)


def combination(row, terms: list[str], ctype: str) -> str:
    """C text of ``sum_k row[k] * terms[k]``: signs as + and -, a common factor 1/2 applied
    once to the sum (an exact scaling), zero coefficients left out."""
    pairs = [(sympy.Rational(c), t) for c, t in zip(row, terms) if c != 0]
    scale = abs(pairs[0][0])
    if any(abs(c) != scale for c, _ in pairs):
        raise ValueError(f"coefficients {list(row)} differ in magnitude")
    text = pairs[0][1] if pairs[0][0] > 0 else f"-{pairs[0][1]}"
    for c, t in pairs[1:]:
        text += f" {'+' if c > 0 else '-'} {t}"
    if scale == 1:
        return text
    return f"({text}) * ({ctype}){float(scale)!r}"


def transforms(ctype: str, half: str) -> dict:
    """The statements of the template's transforms, printed from the matrices.

    ``filter_columns``: ``s[i][j]`` from ``g[.][j]`` (G g); ``filter_rows``: ``u[4 i + k]``
    from ``s[i][.]`` ((G g) G^T), with ``half`` the vector of 1/2; ``input_columns``:
    ``e[a][k]`` from ``d[a][2 t + .]`` (d B); ``input_rows``: the value of ``V[4 i + k]``
    from ``e[.][k]`` (B^T (d B)); ``output_columns``: ``s<i>[k]`` from ``m[4 p + k]``
    (A^T M); ``output_rows``: ``out[i][j]`` from ``s<i>[.]`` ((A^T M) A)."""
    def filtered(row, terms):
        text = combination(row, terms, ctype)
        return text.replace(f"({ctype}){0.5!r}", half)

    return dict(
        filter_columns=[filtered(G.row(i), [f"g[{a}][j]" for a in range(3)])
                        for i in range(4)],
        filter_rows=[filtered(G.row(k), [f"s[i][{c}]" for c in range(3)]) for k in range(4)],
        input_columns=[combination(B_T.row(k), ["d[a][2 * t]"] +
                                   [f"d[a][2 * t + {c}]" for c in range(1, 4)], ctype)
                       for k in range(4)],
        input_rows=[combination(B_T.row(i), [f"e[{a}][k]" for a in range(4)], ctype)
                    for i in range(4)],
        output_columns=[combination(A_T.row(i), ["m[k]"] + [f"m[{4 * p} + k]"
                                                            for p in range(1, 4)], ctype)
                        for i in range(2)],
        output_rows=[[combination(A_T.row(j), [f"s{i}[{k}]" for k in range(4)], ctype)
                      for j in range(2)] for i in range(2)])


def _numeric(matrix) -> np.ndarray:
    return np.array(matrix.tolist(), dtype=np.float64)


def magnitudes(layer, x, weight, bias=None) -> np.ndarray:
    """``T`` of the module docstring for every output, float64: the Winograd schedule's
    computation on ``|x|``, ``|w|`` with ``|G|``, ``|B^T|``, ``|A^T|``, plus ``|b|``."""
    x, w = np.abs(np.asarray(x, np.float64)), np.abs(np.asarray(weight, np.float64))
    g_abs, b_abs, a_abs = (np.abs(_numeric(m)) for m in (G, B_T, A_T))
    batch, c_in, h, wd = x.shape
    (pt, _), (pl, _) = layer.resolved_padding((h, wd))
    _, oh, ow = layer.output_shape((c_in, h, wd))
    th, tw = -(-oh // 2), -(-ow // 2)
    padded = np.zeros((batch, c_in, 2 * th + 2, 2 * tw + 2))
    rows, cols = min(h, 2 * th + 2 - pt), min(wd, 2 * tw + 2 - pl)
    padded[:, :, pt:pt + rows, pl:pl + cols] = x[:, :, :rows, :cols]
    # tiles[n, c, i, j, a, b]: the 4x4 input tile of output tile (i, j)
    tiles = np.lib.stride_tricks.sliding_window_view(padded, (4, 4), axis=(2, 3))[
        :, :, ::2, ::2][:, :, :th, :tw]
    v = np.einsum("pa,ncijab,qb->ncijpq", b_abs, tiles, b_abs)
    u = np.einsum("pa,ocab,qb->ocpq", g_abs, w.reshape(layer.out_channels, -1, 3, 3), g_abs)
    groups, cg_in = layer.groups, c_in // layer.groups
    cg_out = layer.out_channels // groups
    m = np.concatenate([
        np.einsum("ocpq,ncijpq->noijpq", u[k * cg_out:(k + 1) * cg_out],
                  v[:, k * cg_in:(k + 1) * cg_in]) for k in range(groups)], axis=1)
    t = np.einsum("rp,noijpq,sq->noirjs", a_abs, m, a_abs).reshape(
        batch, layer.out_channels, 2 * th, 2 * tw)[:, :, :oh, :ow]
    if bias is not None:
        t = t + np.abs(np.asarray(bias, np.float64))[None, :, None, None]
    return t


def error_bound(layer, x, weight, bias=None, unit: float = 2.0**-24) -> np.ndarray:
    """The bound of the module docstring on ``|y~ - y|`` for every output (float64), with
    ``unit`` the unit roundoff (2**-24 for float32, 2**-53 for float64).  Computed in float64,
    whose own rounding is covered by a further ``2 gamma_k(2**-53)``."""
    k = x.shape[1] // layer.groups + 11

    def gamma(unit_):
        return k * unit_ / (1 - k * unit_)

    bias_term = 0.0 if bias is None else \
        unit * np.abs(np.asarray(bias, np.float64))[None, :, None, None]
    return (gamma(unit) + 2 * gamma(2.0**-53)) * magnitudes(layer, x, weight, bias) + bias_term


def amplification() -> Fraction:
    """The largest coefficient of a ``|g_ab| |d_cd|`` product in ``T`` (over the four outputs
    of a tile): how much more one product can weigh in the Winograd bound than in the direct
    one, where every coefficient is 1."""
    g_abs, b_abs, a_abs = (m.applyfunc(abs) for m in (G, B_T, A_T))
    best = Fraction(0)
    for i in range(2):
        for j in range(2):
            for a in range(3):
                for b in range(3):
                    for c in range(4):
                        for d in range(4):
                            coefficient = sum(a_abs[i, p] * a_abs[j, q] * g_abs[p, a] *
                                              g_abs[q, b] * b_abs[p, c] * b_abs[q, d]
                                              for p in range(4) for q in range(4))
                            best = max(best, Fraction(str(coefficient)))
    return best


#: :func:`amplification`, evaluated once (documented in the README and the kernel banner).
AMPLIFICATION = Fraction(4)
