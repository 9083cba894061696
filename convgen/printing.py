"""Index expressions -> C text: the one printer every target uses.

SymPy's C99 printer with integer ``floor``/``ceiling`` as C division, ``Min``/``Max`` and
``Piecewise`` as ternaries and ``Mod`` as a floor modulo.  Schedules print the expressions
they hand to templates with :func:`ccode`; templates do no arithmetic of their own.
"""

from __future__ import annotations

import sympy
from sympy.printing.c import C99CodePrinter

from .errors import SpecError

__all__ = ["IndexPrinter", "ccode"]


class IndexPrinter(C99CodePrinter):
    """C for integer index arithmetic.

    ``floor(a/b)`` and ``ceiling(a/b)`` of a non-negative integer ``a`` and a positive
    integer ``b`` become C integer division; ``Min``/``Max``/``Piecewise`` become ternaries;
    ``Mod`` becomes a floor modulo (C's ``%`` truncates towards zero).
    """

    def _fraction(self, expr):
        numerator, denominator = sympy.fraction(sympy.together(expr.args[0]))
        if not (denominator.is_Integer and denominator > 0 and numerator.is_nonnegative):
            raise SpecError(f"cannot print {expr} as C integer division: the numerator must "
                            "be a non-negative integer and the denominator a positive constant")
        return self._print(numerator), self._print(denominator)

    def _print_floor(self, expr):
        numerator, denominator = self._fraction(expr)
        return f"(({numerator}) / {denominator})"

    def _print_ceiling(self, expr):
        numerator, denominator = self._fraction(expr)
        return f"(({numerator} + {denominator} - 1) / {denominator})"

    def _print_Min(self, expr):
        a, b = self._print(expr.args[0]), self._print(sympy.Min(*expr.args[1:]))
        return f"(({a}) < ({b}) ? ({a}) : ({b}))"

    def _print_Max(self, expr):
        a, b = self._print(expr.args[0]), self._print(sympy.Max(*expr.args[1:]))
        return f"(({a}) > ({b}) ? ({a}) : ({b}))"

    def _print_Piecewise(self, expr):
        *pieces, (last, _) = expr.args
        text = self._print(last)
        for value, condition in reversed(pieces):
            text = f"(({self._print(condition)}) ? ({self._print(value)}) : ({text}))"
        return text

    def _print_Mod(self, expr):
        a, b = (self._print(arg) for arg in expr.args)
        if expr.args[0].is_nonnegative:
            return f"(({a}) % {b})"
        return f"(((({a}) % {b}) + {b}) % {b})"  # floor modulo, as SymPy means it


def ccode(expr) -> str:
    """Print an index expression (or condition) as C."""
    return IndexPrinter().doprint(sympy.sympify(expr))
