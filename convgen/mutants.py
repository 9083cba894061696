"""Mutants of the generator's sources: the Jinja2 templates and the formula modules.

A mutant is one small, plausible mistake in one file (a flipped comparison, a bound off by
one, a dropped guard) that :mod:`convgen.mutate` plants in a scratch copy of the sources to
see whether the verification notices.  Each has a stable ``key`` (a hash of the file, the
text of its line, the operator and which match on the line it is), so a justification of an
equivalent mutant survives edits elsewhere in the file.

* Templates (``templates/**/*.j2``): operators on the C text and the Jinja tags, written
  here because no mutation tool reads Jinja2 (the C the templates print is not a program
  until rendered).  Comments (``{# #}``, ``/* */``) and preprocessor lines are left alone.
* Python (``convgen/symbolic.py`` and the schedule modules): Cosmic Ray's operators
  (``NumberReplacer``: a number +/- 1; comparison and binary-operator replacement) on its
  parso trees, and two operators of ours in its interface: ``floor`` <-> ``ceiling`` and
  swapped operands of a non-commutative operator.  Docstrings, error messages
  (``raise``), ``__all__`` and lines marked ``# pragma: no mutate`` are not mutated.
"""

from __future__ import annotations

import ast
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PYTHON_SOURCES", "TEMPLATE_GLOBS", "Mutant", "Place", "apply", "mutants",
           "python_mutants", "python_sources", "template_mutants"]

#: The generator's sources that are mutated, relative to the repository root.
TEMPLATE_GLOBS = ("templates/**/*.j2",)
PYTHON_SOURCES = ("convgen/symbolic.py", "convgen/schedules/*.py")
#: Not mutated: the schedules' tuning constants (a different register block is another
#: correct kernel, not a mistake), the registry's plumbing, and the test program of
#: ``verify --arch`` (the verifier's own code, not a kernel's: a mistake there fails every
#: kernel's run on that architecture, which tests/test_cross.py shows).
SKIPPED = ("convgen/schedules/tuning.py", "convgen/schedules/__init__.py",
                  "templates/c/harness.c.j2")


@dataclass(frozen=True)
class Place:
    """Which mistake, where: its stable ``key``, the file (relative to the root), the line
    and its text before and after, and the operator that made it."""

    key: str
    source: str
    line: int
    operator: str
    before: str
    after: str


@dataclass(frozen=True)
class Mutant(Place):
    """One planted mistake: ``source`` with ``after`` for ``before`` on ``line``.  ``site``
    says how to make it: ``(start, end, text)`` for a template (a character span of the
    file), ``(operator, occurrence)`` for Python (Cosmic Ray's numbering)."""

    site: tuple

    @property
    def kind(self) -> str:
        return "python" if self.source.endswith(".py") else "template"

    def describe(self, after: str | None = None) -> str:
        """``source:line operator: 'before' -> 'after'`` (Python: the line before, the
        operator says what changes in it, unless ``after`` is given)."""
        after = self.after if after is None else after
        where = f"{self.source}:{self.line} {self.operator}: {self.before.strip()!r}"
        return f"{where} -> {after.strip()!r}" if after else where


def _key(source: str, line_text: str, operator: str, nth: int, copy: int) -> str:
    """Stable over edits elsewhere: the file, the line's text (and which ``copy`` of that
    text in the file it is), the operator and which of its matches on the line."""
    text = f"{source}\0{line_text.strip()}\0{copy}\0{operator}\0{nth}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _copies(text: str) -> list[int]:
    """For each line (0-based), how many lines above it have the same stripped text."""
    seen: dict = {}
    copies = []
    for line in text.splitlines():
        copies.append(seen.get(line.strip(), 0))
        seen[line.strip()] = copies[-1] + 1
    return copies


# --------------------------------------------------------------------------- templates

_COMPARISON = {"<": "<=", "<=": "<", ">": ">=", ">=": ">", "==": "!=", "!=": "=="}
_MINMAX = {"fmaxf": "fminf", "fminf": "fmaxf", "fmax": "fmin", "fmin": "fmax",
           "max": "min", "min": "max", "MAX": "MIN", "MIN": "MAX"}
_ACCUMULATORS = r"acc|best|best_at|count|have|sum|total"
#: A ``for`` header's condition; the loop variable may be templated (``k{{ i }}``).
_LOOP = r"for \([^;]*;\s*[^;<>=]+?\s*(?:<|<=)\s*(?P<m>[^;]+?)\s*;"
#: (operator, pattern, replacements): each match of ``pattern`` (group ``m`` is replaced,
#: or the whole match) gives one mutant per replacement, a function of the matched text.
_TEMPLATE_RULES = (
    ("comparison", re.compile(r"(?<=\s)(?P<m><=|>=|<|>|==|!=)(?=\s)"),
     (lambda m: _COMPARISON[m],)),
    ("loop bound +1", re.compile(_LOOP),
     (lambda m: f"{m} + 1", lambda m: f"{m} - 1")),
    ("loop start +1", re.compile(r"for \((?:long|int) [^=;]+? = (?P<m>[^;]+);"),
     (lambda m: f"{m} + 1",)),
    ("loop step +1", re.compile(r"\w+ \+= (?P<m>[^)]+)\)"), (lambda m: f"{m} + 1",)),
    ("index +1", re.compile(r"\b(?:x|w|y|b|indices)\[(?P<m>[^\[\]]+)\]"),
     (lambda m: f"{m} + 1", lambda m: f"{m} - 1")),
    ("min/max swap", re.compile(r"\b(?P<m>fmaxf?|fminf?|max|min|MAX|MIN)(?=\s*\()"),
     (lambda m: _MINMAX[m],)),
    ("drop guard", re.compile(r"(?P<m>if \((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\) continue;)"),
     (lambda m: "",)),
    ("guard always true", re.compile(
        r"if \((?P<m>(?:[^()]|\((?:[^()]|\([^()]*\))*\))*)\) \{"), (lambda m: "1",)),
    ("accumulator init", re.compile(
        rf"(?:long|int|{{{{ \w+ }}}}|_vec\)\{{0\}} \+)\s*(?:\b(?:{_ACCUMULATORS})\b\s*=\s*)?"
        rf"(?P<m>(?<== )[^;,]+|{{{{ [\w.]+ }}}})(?=;)"),
     (lambda m: f"{m} + 1",)),
    ("drop __syncthreads", re.compile(r"(?P<m>__syncthreads\(\);)"), (lambda m: "",)),
    ("jinja condition", re.compile(r"\{% (?:el)?if (?P<m>[^%]+?) %\}"),
     (lambda m: f"not ({m})",)),
)


def _masked(text: str) -> str:
    """``text`` with comments and preprocessor lines blanked out (same length), so no rule
    matches inside them."""
    def blank(match: re.Match) -> str:
        return re.sub(r"[^\n]", " ", match.group(0))
    text = re.sub(r"\{#.*?#\}", blank, text, flags=re.S)
    text = re.sub(r"/\*.*?\*/", blank, text, flags=re.S)
    return re.sub(r"(?m)^[ \t]*#(?!\s*\{).*$", blank, text)


def _loop_swaps(source: str, text: str, masked: str) -> Iterator[Mutant]:
    """Swap the bounds of two loops nested directly one in the other (consecutive ``for``
    lines)."""
    loops = list(re.finditer(_LOOP, masked))
    for first, second in zip(loops, loops[1:]):
        if text.count("\n", first.end(), second.start()) != 1:
            continue
        a, b = first.group("m"), second.group("m")
        if a == b:
            continue
        start, end = first.start("m"), second.end("m")
        middle = text[first.end("m"):second.start("m")]
        yield _template_mutant(source, text, "swap loop bounds", start, end, b + middle + a)


def _template_mutant(source: str, text: str, operator: str, start: int, end: int,
                     new: str, nth: int = 0, copies: list | None = None) -> Mutant:
    line = text.count("\n", 0, start) + 1
    first = text.rfind("\n", 0, start) + 1
    last = text.find("\n", end)
    last = len(text) if last < 0 else last
    before = text[first:last]
    after = text[first:start] + new + text[end:last]
    copy = (copies or _copies(text))[line - 1]
    return Mutant(_key(source, before, operator, nth, copy), source, line, operator, before,
                  after, (start, end, new))


def template_mutants(source: str, text: str) -> list[Mutant]:
    """Every mutant of one template's text (``source``: its path relative to the root)."""
    masked, copies = _masked(text), _copies(text)
    found: list[Mutant] = []
    for operator, pattern, replacements in _TEMPLATE_RULES:
        seen: dict = {}
        for match in pattern.finditer(masked):
            old = text[match.start("m"):match.end("m")]
            for make in replacements:
                line = text.count("\n", 0, match.start("m"))
                nth = seen[line] = seen.get(line, -1) + 1
                found.append(_template_mutant(source, text, operator, match.start("m"),
                                              match.end("m"), make(old), nth, copies))
    found += _loop_swaps(source, text, masked)
    return sorted(found, key=lambda m: (m.line, m.site[0], m.operator, m.key))


# --------------------------------------------------------------------------- Python


def _excluded_lines(text: str) -> set[int]:
    """Lines no operator touches: docstrings, ``raise`` statements (error messages),
    ``__all__`` and lines marked ``# pragma: no mutate``."""
    tree = ast.parse(text)
    lines: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            lines.update(range(body[0].lineno, body[0].end_lineno + 1))
        if isinstance(node, ast.Raise) or (
                isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)):
            lines.update(range(node.lineno, node.end_lineno + 1))
    lines.update(i for i, line in enumerate(text.splitlines(), 1)
                 if "pragma: no mutate" in line)
    return lines


def _python_operators() -> dict:
    """The operators by name: Cosmic Ray's, chosen for index arithmetic, and ours."""
    try:
        import cosmic_ray  # noqa: F401
    except ImportError:
        from .errors import ConvgenError

        raise ConvgenError("mutating the Python modules needs Cosmic Ray: pip install "
                           "'convgen[mutate]' (or the test extra)") from None
    from cosmic_ray.operators import binary_operator_replacement as binary
    from cosmic_ray.operators import comparison_operator_replacement as comparison
    from cosmic_ray.operators.number_replacer import NumberReplacer

    from ._mutation_operators import FloorCeiling, SwapOperands

    chosen = {"NumberReplacer": NumberReplacer, "FloorCeiling": FloorCeiling,
              "SwapOperands": SwapOperands}
    wanted = {("Add", "Sub"), ("Sub", "Add"), ("Lt", "LtE"), ("LtE", "Lt"), ("Gt", "GtE"),
              ("GtE", "Gt"), ("Eq", "NotEq"), ("NotEq", "Eq")}
    for module, prefix in ((binary, "ReplaceBinaryOperator"),
                           (comparison, "ReplaceComparisonOperator")):
        for name in dir(module):
            parts = name.split("_")
            if parts[0] == prefix and len(parts) == 3 and tuple(parts[1:]) in wanted:
                chosen[name] = getattr(module, name)
    return chosen


def _positions(text: str, operator) -> list[tuple[int, tuple]]:
    """``(occurrence, (line, column))`` of every place ``operator`` can mutate, numbered as
    Cosmic Ray's ``MutationVisitor`` numbers them."""
    from cosmic_ray.ast import Visitor, get_ast

    found = []

    class Positions(Visitor):
        def visit(self, node):
            for start, _ in operator.mutation_positions(node):
                found.append((len(found), start))
            return node

    Positions().walk(get_ast(text))
    return found


def python_mutants(source: str, text: str) -> list[Mutant]:
    """Every mutant of one Python module's text (``after`` is the line as the operator
    leaves it: known once the mutant is planted, see :func:`apply`)."""
    excluded, copies = _excluded_lines(text), _copies(text)
    lines = text.splitlines()
    found = []
    for name, operator_class in sorted(_python_operators().items()):
        seen: dict = {}
        for occurrence, (line, _column) in _positions(text, operator_class()):
            if line in excluded:
                continue
            nth = seen[line] = seen.get(line, -1) + 1
            before = lines[line - 1]
            found.append(Mutant(_key(source, before, name, nth, copies[line - 1]), source, line,
                                name, before, "", (name, occurrence)))
    return sorted(found, key=lambda m: (m.line, m.operator, m.key))


# --------------------------------------------------------------------------- both


def _sources(root: Path) -> list[Path]:
    paths = {p for pattern in TEMPLATE_GLOBS + PYTHON_SOURCES for p in root.glob(pattern)}
    skipped = {root / p for p in SKIPPED}
    return sorted(paths - skipped)


def python_sources(root: Path) -> list[str]:
    """The mutated Python modules, relative to ``root``."""
    return [p.relative_to(root).as_posix() for p in _sources(root) if p.suffix == ".py"]


def mutants(root: Path) -> list[Mutant]:
    """Every mutant of the generator's sources under ``root`` (a source checkout): the
    templates, then ``symbolic.py``, then the schedule modules, each in file order."""
    found = []
    order = {"templates": 0, "convgen/symbolic.py": 1}
    for path in sorted(_sources(root), key=lambda p: (
            order.get(p.relative_to(root).parts[0], order.get(
                p.relative_to(root).as_posix(), 2)), p)):
        source = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8")
        found += python_mutants(source, text) if path.suffix == ".py" \
            else template_mutants(source, text)
    return found


def apply(mutant: Mutant, text: str) -> str:
    """The text of ``mutant.source`` with the mutant planted (``text``: the original)."""
    if mutant.kind == "template":
        start, end, new = mutant.site
        return text[:start] + new + text[end:]
    from cosmic_ray.mutating import mutate_code

    name, occurrence = mutant.site
    mutated = mutate_code(text, _python_operators()[name](), occurrence)
    if mutated is None:
        raise ValueError(f"{mutant.describe()}: Cosmic Ray made no mutation")
    return mutated
