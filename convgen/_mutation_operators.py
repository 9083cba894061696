"""Two mutation operators Cosmic Ray lacks, in its ``Operator`` interface (parso trees):
``floor`` <-> ``ceiling`` and swapped operands of a non-commutative binary operator."""

from __future__ import annotations

import parso
from cosmic_ray.operators.operator import Example, Operator

__all__ = ["FloorCeiling", "SwapOperands"]

_PAIRS = {"floor": "ceiling", "ceiling": "floor", "floor_div": "ceil_div",
          "ceil_div": "floor_div", "ceil": "floor"}
_NOT_A_USE = ("funcdef", "classdef", "import_from", "import_as_names", "import_as_name",
              "dotted_as_name", "import_name")


class FloorCeiling(Operator):
    """A use of ``floor`` becomes ``ceiling`` and the other way round (also the exact
    divisions ``floor_div``/``ceil_div`` of :mod:`convgen.symbolic`)."""

    def mutation_positions(self, node):
        if node.type == "name" and node.value in _PAIRS \
                and node.parent.type not in _NOT_A_USE \
                and not (node.parent.type == "expr_stmt" and node.parent.children[0] is node):
            yield (node.start_pos, node.end_pos)

    def mutate(self, node, index):
        return parso.python.tree.Name(_PAIRS[node.value], node.start_pos, node.prefix)

    @classmethod
    def examples(cls):
        return (Example("y = sympy.floor(a / b)", "y = sympy.ceiling(a / b)"),
                Example("y = ceil_div(a, b)", "y = floor_div(a, b)"))


_ORDERED = ("-", "/", "//", "%", "**")


class SwapOperands(Operator):
    """``a - b`` becomes ``b - a`` (likewise ``/``, ``//``, ``%``, ``**``)."""

    def mutation_positions(self, node):
        if node.type in ("arith_expr", "term", "power") and len(node.children) == 3 \
                and getattr(node.children[1], "value", None) in _ORDERED:
            yield (node.start_pos, node.end_pos)

    def mutate(self, node, index):
        left, op, right = node.children
        first_left, first_right = left.get_first_leaf(), right.get_first_leaf()
        first_left.prefix, first_right.prefix = first_right.prefix, first_left.prefix
        node.children = [right, op, left]
        right.parent = left.parent = node
        return node

    @classmethod
    def examples(cls):
        return (Example("y = a - b", "y = b - a"), Example("y = (n + 1) // s", "y = s // (n + 1)"))
