"""Per-layer summary tables of a :class:`~convgen.spec.Sequential` (like torchinfo).

Rows hold shapes, parameters, the dense-layer equivalent, MACs and the cumulative receptive
field, symbolic when the input is.  Rendered as plain text, as Markdown, and in Jupyter as
Markdown with LaTeX for SymPy expressions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy

from . import symbolic as sym

if TYPE_CHECKING:  # the specs import this module (Sequential.summary), not the reverse
    from .spec import Constraint, Sequential

__all__ = ["NetworkRow", "NetworkSummary", "Summary", "SummaryRow", "format_value", "pending",
           "summarize", "summarize_network"]


@dataclass(frozen=True)
class SummaryRow:
    """One layer of a summary."""

    name: str
    layer: str
    output_shape: tuple
    params: int
    dense_params: sym.Size
    macs: sym.Size
    receptive_field: tuple


@dataclass(frozen=True)
class Summary:
    """The summary of a chain of layers for one input shape."""

    title: str | None
    input_shape: tuple
    rows: tuple[SummaryRow, ...]
    total_params: int
    total_macs: sym.Size
    total_flops: sym.Size
    constraints: tuple[Constraint, ...]

    HEADERS = ("#", "name", "layer", "output shape", "params", "dense n(m+1)", "MACs",
               "receptive field")

    def _cells(self, fmt) -> list[list[str]]:
        cells = []
        for index, row in enumerate(self.rows):
            cells.append([str(index), row.name, row.layer, fmt(row.output_shape),
                          fmt(row.params), fmt(row.dense_params), fmt(row.macs),
                          fmt(row.receptive_field)])
        return cells

    def _footer(self, fmt) -> list[str]:
        lines = [f"input shape: {fmt(self.input_shape)}",
                 f"total params: {fmt(self.total_params)}",
                 f"total MACs: {fmt(self.total_macs)}  (FLOPs: {fmt(self.total_flops)})"]
        undecided = pending(self.constraints)
        if undecided:
            lines.append("valid when:")
            lines += [f"  {_condition(c, fmt)}   ({c.requirement})" for c in undecided]
        return lines

    def to_text(self) -> str:
        """A fixed-width table."""
        out = [self.title] if self.title else []
        return "\n".join(out + _text_table(self.HEADERS, self._cells(format_value))
                         + self._footer(format_value))

    def to_markdown(self, latex: bool = False) -> str:
        """A Markdown table; with ``latex=True`` SymPy expressions render as ``$...$``."""
        fmt = _latex if latex else _markdown_code
        out = [f"### {self.title}", ""] if self.title else []
        out.append("| " + " | ".join(self.HEADERS) + " |")
        out.append("|" + "|".join("---" for _ in self.HEADERS) + "|")
        out += ["| " + " | ".join(row) + " |" for row in self._cells(fmt)]
        out.append("")
        out += [f"- {line}" if not line.startswith("  ") else f"  - {line.strip()}"
                for line in self._footer(fmt)]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_markdown_(self) -> str:
        return self.to_markdown(latex=True)


def _text_table(headers, cells) -> list[str]:
    """A fixed-width table's lines: the headers, a rule, the rows, a rule."""
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    line = "  ".join("-" * w for w in widths)
    return ["  ".join(h.ljust(w) for h, w in zip(headers, widths)), line,
            *("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells),
            line]


def pending(constraints) -> list[Constraint]:
    """The constraints that still depend on symbols, each distinct condition once."""
    seen, result = set(), []
    for constraint in constraints:
        if constraint.holds is None and constraint.condition not in seen:
            seen.add(constraint.condition)
            result.append(constraint)
    return result


def format_value(value) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    return str(value)


def _condition(constraint: Constraint, fmt) -> str:
    """A pending condition as text (``C == 3``, as ``convgen shape`` prints it, not SymPy's
    ``Eq(C, 3)``), in code in Markdown; LaTeX from the SymPy relation."""
    if fmt is format_value:
        return constraint.text
    if fmt is _markdown_code:
        return f"`{constraint.text}`"
    return fmt(constraint.condition)


def _markdown_code(value) -> str:
    text = format_value(value)
    return f"`{text}`" if isinstance(value, sympy.Basic) or (
        isinstance(value, tuple) and sym.is_symbolic(*_flatten(value))) else text


def _latex(value) -> str:
    if isinstance(value, tuple):
        return "$(" + ", ".join(_latex(v).strip("$") for v in value) + ")$"
    if isinstance(value, sympy.Basic):
        return f"${sympy.latex(value)}$"
    return format_value(value)


def _flatten(value) -> list:
    if isinstance(value, tuple):
        return [x for v in value for x in _flatten(v)]
    return [value]


def summarize(model: Sequential, input_shape: Sequence, title: str | None = None) -> Summary:
    """Build the :class:`Summary` of ``model`` for ``input_shape``."""
    model.shapes(input_shape)  # validates every layer; errors name the failing one
    shape = tuple(input_shape)
    rows, fields, jumps = [], None, None
    for name, layer in zip(model.names, model.layers):
        steps = layer.receptive_field_steps(shape)
        if fields is None:
            fields, jumps = [1] * len(steps), [1] * len(steps)
        pairs = [sym.receptive_field_update(f, j, w, s)
                 for f, j, (w, s) in zip(fields, jumps, steps)]
        fields, jumps = [p[0] for p in pairs], [p[1] for p in pairs]
        out = layer.output_shape(shape)
        rows.append(SummaryRow(name, layer.describe(), out, layer.num_params,
                               layer.dense_equivalent_params(shape), layer.macs(shape),
                               tuple(fields)))
        shape = out
    return Summary(title, tuple(input_shape), tuple(rows), model.num_params,
                   model.macs(input_shape), model.flops(input_shape),
                   model.constraints(input_shape))


@dataclass(frozen=True)
class NetworkRow:
    """One node of a network summary: its operator (the ONNX ops it came from), output
    shape (``N`` the batch), parameters, MACs and output memory."""

    name: str
    op: str
    output_shape: tuple
    params: int
    macs: sym.Size
    memory: sym.Size        # output bytes (float32; 0 for a view of its input)


@dataclass(frozen=True)
class NetworkSummary:
    """The per-node table of a :class:`~convgen.spec.network.Network`."""

    title: str
    inputs: tuple           # (name, shape with N)
    rows: tuple[NetworkRow, ...]
    total_params: int
    total_macs: sym.Size
    activation_memory: sym.Size

    HEADERS = ("#", "node", "op", "output shape", "params", "MACs", "memory (bytes)")

    def _cells(self, fmt) -> list[list[str]]:
        return [[str(i), r.name, r.op, fmt(r.output_shape), fmt(r.params), fmt(r.macs),
                 fmt(r.memory)] for i, r in enumerate(self.rows)]

    def _footer(self, fmt) -> list[str]:
        return ["inputs: " + ", ".join(f"{n} {fmt(s)}" for n, s in self.inputs),
                f"total params: {fmt(self.total_params)} "
                f"({fmt(4 * self.total_params)} bytes as float32)",
                f"total MACs: {fmt(self.total_macs)}",
                f"activation memory, every node's output its own: "
                f"{fmt(self.activation_memory)} bytes (the C's memory plan shares it: "
                "convgen generate reports the peak)"]

    def to_text(self) -> str:
        return "\n".join([self.title, *_text_table(self.HEADERS, self._cells(format_value)),
                          *self._footer(format_value)])

    def to_markdown(self) -> str:
        out = [f"### {self.title}", "", "| " + " | ".join(self.HEADERS) + " |",
               "|" + "|".join("---" for _ in self.HEADERS) + "|"]
        out += ["| " + " | ".join(row) + " |" for row in self._cells(_markdown_code)]
        return "\n".join([*out, "", *(f"- {line}" for line in
                                       self._footer(_markdown_code))])

    def __str__(self) -> str:
        return self.to_text()


def summarize_network(network, symbolic: bool = False) -> NetworkSummary:
    """The :class:`NetworkSummary` of ``network``: per sample, or with ``symbolic=True``
    for a batch of ``N`` (MACs and memory as expressions in ``N``)."""
    batch = sympy.Symbol("N", integer=True, positive=True)
    scale = batch if symbolic else 1
    rows = []
    for node in network.nodes:
        shape = network.shapes[node.output]
        elements = 1
        for d in shape:
            elements *= d
        rows.append(NetworkRow(node.name, node.source or node.op, ("N", *shape),
                               network.params_of(node),
                               sym._plain(scale * network.macs_of(node)),
                               0 if node.op == "alias" else sym._plain(scale * 4 * elements)))
    return NetworkSummary(
        f"{network.name}: {len(network.nodes)} nodes" + (" (batch N)" if symbolic else
                                                           " (per sample)"),
        tuple((n, ("N", *s)) for n, s in network.inputs), tuple(rows), network.num_params,
        sym._plain(sympy.Add(*(r.macs for r in rows))),
        sym._plain(sympy.Add(*(r.memory for r in rows))))
