"""SymPy conditions handed to z3: the one place where SymPy becomes solver terms.

:func:`to_z3` translates the expressions of :mod:`convgen.symbolic` (floors, ceilings and
``Mod`` of quotients, ``Min``/``Max``, ``Piecewise``, relations); :mod:`convgen.proofs` builds
its statements on it, and :func:`unsatisfiable` lets :mod:`convgen.symbolic` drop the branches
of a ``Piecewise`` that no integer sizes reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import sympy
import z3

from .errors import SpecError

__all__ = ["RLIMIT", "linear", "symbol_facts", "to_z3", "unsatisfiable"]

#: z3's resource limit for :func:`unsatisfiable`: a count of solver steps, not seconds, so the
#: answer (and every formula simplified with it) is the same on every machine and under load.
RLIMIT = 5_000_000


def _fraction(expr):
    numerator, denominator = sympy.fraction(sympy.together(expr))
    return numerator, denominator


def _integral_sides(relation, env: dict):
    """Both sides of a relation over the integers: SymPy may leave fractions such as
    ``n/2 - 1/2`` in a relation; multiplying by the positive common denominator clears them."""
    try:
        return to_z3(relation.lhs, env), to_z3(relation.rhs, env)
    except SpecError:
        pass
    numerator, denominator = sympy.fraction(sympy.together(relation.lhs - relation.rhs))
    if not (denominator.is_Integer and denominator > 0):
        raise SpecError(f"cannot translate {relation} to integer arithmetic")
    return to_z3(sympy.expand(numerator), env), z3.IntVal(0)


def to_z3(expr, env: dict):
    """Translate a SymPy integer expression or condition into z3 terms.

    ``env`` maps SymPy symbols to z3 ``Int`` terms (missing symbols are added).  Supports
    sums, products, integer powers, ``floor``/``ceiling`` of a quotient (z3's integer division
    is the floor for a positive divisor; every divisor here is a stride, a kernel size or an
    output size, positive by the domains), ``Mod``, ``Min``/``Max``, ``Piecewise``, relations
    and boolean connectives.
    """
    expr = sympy.sympify(expr)
    if expr is sympy.true:
        return z3.BoolVal(True)
    if expr is sympy.false:
        return z3.BoolVal(False)
    if expr.is_Integer:
        return z3.IntVal(int(expr))
    if expr.is_Symbol:
        if expr not in env:
            env[expr] = z3.Int(str(expr))
        return env[expr]
    args = [to_z3(a, env) for a in expr.args] if not isinstance(
        expr, (sympy.floor, sympy.ceiling, sympy.Piecewise, sympy.Rel)) else None
    if isinstance(expr, sympy.Add):
        return z3.Sum(*args)
    if isinstance(expr, sympy.Mul):
        if any(a.is_Rational and not a.is_Integer for a in expr.args):
            raise SpecError(f"cannot translate {expr} to integer arithmetic")
        return z3.Product(*args)
    if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp >= 0:
        return z3.Product(*[args[0]] * int(expr.exp)) if expr.exp else z3.IntVal(1)
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        numerator, denominator = (to_z3(e, env) for e in _fraction(expr.args[0]))
        if isinstance(expr, sympy.floor):
            return numerator / denominator
        return -((-numerator) / denominator)
    if isinstance(expr, sympy.Mod):
        return args[0] % args[1]
    if isinstance(expr, (sympy.Min, sympy.Max)):
        result = args[0]
        for a in args[1:]:
            take = a < result if isinstance(expr, sympy.Min) else a > result
            result = z3.If(take, a, result)
        return result
    if isinstance(expr, sympy.Piecewise):
        *pieces, (last, _) = expr.args
        result = to_z3(last, env)
        for value, condition in reversed(pieces):
            result = z3.If(to_z3(condition, env), to_z3(value, env), result)
        return result
    relations = {sympy.Eq: lambda a, b: a == b, sympy.Ne: lambda a, b: a != b,
                 sympy.Lt: lambda a, b: a < b, sympy.Le: lambda a, b: a <= b,
                 sympy.Gt: lambda a, b: a > b, sympy.Ge: lambda a, b: a >= b}
    for kind, make in relations.items():
        if isinstance(expr, kind):
            return make(*_integral_sides(expr, env))
    if isinstance(expr, sympy.And):
        return z3.And(*args)
    if isinstance(expr, sympy.Or):
        return z3.Or(*args)
    if isinstance(expr, sympy.Not):
        return z3.Not(*args)
    if isinstance(expr, sympy.Implies):
        return z3.Implies(*args)
    if isinstance(expr, sympy.Function):  # one that rewrites itself, e.g. symbolic.gcd
        rewritten = expr.rewrite(sympy.Piecewise)
        if rewritten != expr:
            return to_z3(rewritten, env)
    raise SpecError(f"cannot translate {expr!r} ({type(expr).__name__}) to z3")



def symbol_facts(env: dict) -> list:
    """SymPy simplifies ``n >= 0`` away for a non-negative symbol; z3 must still know it."""
    facts = []
    for symbol, variable in env.items():
        if symbol.is_positive:
            facts.append(variable >= 1)
        elif symbol.is_nonnegative:
            facts.append(variable >= 0)
    return facts


def _positive_integer(expr) -> bool:
    return bool(expr.is_Integer and expr > 0)


def linear(expr) -> bool:
    """Whether ``expr`` is integer linear arithmetic, which z3 decides: every symbol an integer,
    no product of two symbolic factors or symbolic power, and every ``floor``, ``ceiling`` and
    ``Mod`` divides by a positive integer constant (z3's integer division is the floor there)."""
    expr = sympy.sympify(expr)
    if not all(s.is_integer for s in expr.free_symbols):
        return False
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, (sympy.floor, sympy.ceiling)):
            if not _positive_integer(sympy.fraction(sympy.together(node.args[0]))[1]):
                return False
        elif isinstance(node, sympy.Mod):
            if not _positive_integer(node.args[1]):
                return False
        elif isinstance(node, sympy.Mul):
            if sum(1 for a in node.args if a.free_symbols) > 1:
                return False
        elif isinstance(node, sympy.Pow) and node.free_symbols:
            return False
    return True


def unsatisfiable(conditions: Sequence) -> bool:
    """True when z3 proves that no integers (each symbol within its declared sign) satisfy all
    ``conditions`` together; False when they can, or when that is not proved (non-linear
    terms, something :func:`to_z3` does not translate, or :data:`RLIMIT` spent)."""
    conditions = [sympy.sympify(c) for c in conditions]
    if any(c is sympy.false for c in conditions):
        return True
    if not all(linear(c) for c in conditions):
        return False
    env: dict = {}
    try:
        terms = [to_z3(c, env) for c in conditions]
    except SpecError:
        return False
    solver = z3.Solver()
    solver.set("rlimit", RLIMIT)
    solver.add(*terms, *symbol_facts(env))
    return solver.check() == z3.unsat
