"""A conservative taint check of a generated C kernel: no control flow depends on the data.

Translation validation (:mod:`convgen.exhaustive`) probes a kernel with one-hot inputs and
concludes that it computes the same sums of products on every input.  That conclusion needs
the kernel to run one instruction trace whatever the data: this module checks it on the C
text (``GeneratedKernel.source``).

Taint sources are the kernel's input pointers: the ``const`` pointer parameters of its
signature (``x``, ``w``, ``b``).  Taint flows, flow-insensitively and by name (a name that is
tainted anywhere in the file is tainted everywhere: conservative, never unsound), through

* assignments and initializations (``=``, ``+=``, ...): the left side's variable is tainted
  when the right side names a tainted variable or a source (a load, or a pointer into it);
* ``memcpy``/``memmove``: the destination's variable, when the source is tainted;
* a function-like macro whose body names a source (none do today);
* for max pools only: the variables assigned inside the branches of a data-dependent ``if``
  (implicit flow: ``have``, ``best_at``).

Then, for every family, no array index, ``for``/``while``/``switch`` header may name a
tainted variable.  For linear families (convolutions, average pools), no ``if`` condition,
``?:`` condition and ``&&``/``||`` operand may either.  For max pools those may compare data,
as the selection does, under two rules: the branches of a data-dependent ``if`` hold only
assignments and declarations (a select: no loop, jump, call or nested block), and a
data-dependent ``?:`` or ``&&``/``||`` has no side effect (no assignment, ``++``, ``--``).
So data decides which value is kept, never which memory is touched or how often a loop runs.

Constructs the check cannot classify (``goto``, ``asm``, a statement calling an unknown
function with tainted arguments, a call or a nested block inside a data-dependent branch)
are failures, never passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SpecError

__all__ = ["TaintReport", "check_source"]

_TOKEN = re.compile(r"""
    (?P<id>[A-Za-z_]\w*)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[A-Za-z]*)
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')
  | (?P<op><<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|[-+*/%<>=!~&|^?:;,.(){}\[\]])
  | (?P<space>\s+)
""", re.VERBOSE)
_ASSIGN = {"=", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "<<=", ">>="}
_CONTROL = {"if", "for", "while", "switch", "do", "else", "case", "default"}
_JUMPS = {"break", "continue", "return", "goto"}
_UNCLASSIFIABLE = {"goto", "asm", "__asm__", "setjmp", "longjmp"}
_COPIES = {"memcpy", "memmove"}
_PURE = {"sizeof", "memset", "sqrt", "sqrtf", "pow", "powf", "fabs", "fabsf", "fmax", "fmaxf"}
_OPEN, _CLOSE = {"(": ")", "[": "]", "{": "}"}, {")", "]", "}"}
#: What ends the operand of ``?``, ``&&`` and ``||`` at its own nesting depth.
_BOUNDARY = _ASSIGN | {",", ";", "?", ":", "{", "}", "return"}


@dataclass(frozen=True)
class TaintReport:
    """What the check found: ``violations`` (data reaching control flow or an index, each a
    line of the C text and why) and the variables it found tainted."""

    sources: tuple[str, ...]
    tainted: frozenset
    violations: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not self.violations


def _strip(source: str) -> tuple[str, dict]:
    """The text without comments and preprocessor lines (kept: line breaks), and the
    function-like macros ``{name: the names their body uses besides its parameters}``."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group().count("\n"), source, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text).replace("\\\n", " ")
    macros, lines = {}, []
    for line in text.split("\n"):
        define = re.match(r"\s*#\s*define\s+(\w+)\((.*?)\)(.*)", line)
        if define:
            parameters = set(re.findall(r"\w+", define.group(2)))
            macros[define.group(1)] = set(re.findall(r"\w+", define.group(3))) - parameters
        lines.append("" if line.lstrip().startswith("#") else line)
    return "\n".join(lines), macros


def _tokens(text: str) -> list[tuple[str, int]]:
    """``(token, line)`` pairs; a character the tokenizer does not know is an error."""
    found, line, at = [], 1, 0
    while at < len(text):
        match = _TOKEN.match(text, at)
        if not match:
            raise SpecError(f"taint check: cannot read the C text at line {line}: "
                            f"{text[at:at + 20]!r}")
        token = match.group()
        if match.lastgroup != "space":
            found.append((token, line))
        line += token.count("\n")
        at = match.end()
    return found


def _match(tokens: list[str], at: int, step: int = 1) -> int:
    """The index of the bracket closing the one at ``at`` (``step=-1``: opening the one
    closing at ``at``)."""
    depth, inward, outward = 0, *((_OPEN, _CLOSE) if step > 0 else (_CLOSE, _OPEN))
    for index in range(at, len(tokens) if step > 0 else -1, step):
        if tokens[index] in inward:
            depth += 1
        elif tokens[index] in outward:
            depth -= 1
            if not depth:
                return index
    raise SpecError(f"taint check: unbalanced {tokens[at]!r} in the C text")


def _sources(tokens: list[str], name: str) -> tuple[str, ...]:
    """The ``const`` pointer parameters of kernel ``name``'s signature: its inputs."""
    for at in range(len(tokens) - 2):
        if tokens[at] == "void" and tokens[at + 1] == name and tokens[at + 2] == "(":
            end = _match(tokens, at + 2)
            params, current = [], []
            for token in tokens[at + 3:end] + [","]:
                if token == ",":
                    params.append(current)
                    current = []
                else:
                    current.append(token)
            return tuple(p[-1] for p in params if "const" in p and "*" in p)
    raise SpecError(f"taint check: no definition of kernel {name!r} (void {name}(...)) in "
                    "its C text")


def _names(tokens: list[str], start: int, stop: int) -> set[str]:
    """The variables named in ``tokens[start:stop]`` (not members after ``.`` or ``->``)."""
    return {tokens[i] for i in range(start, stop) if _TOKEN.fullmatch(tokens[i])
            and _TOKEN.fullmatch(tokens[i]).lastgroup == "id"
            and (i == 0 or tokens[i - 1] not in (".", "->"))}


def _expression_end(tokens: list[str], at: int) -> int:
    """Where the expression starting at ``at`` ends: a ``,`` or ``;`` at its own depth, or a
    bracket it did not open."""
    index = at
    while index < len(tokens):
        token = tokens[index]
        if token in _OPEN:
            index = _match(tokens, index) + 1
            continue
        if token in _CLOSE or token in (",", ";"):
            return index
        index += 1
    return index


def _lvalue_base(tokens: list[str], at: int) -> str | None:
    """The variable an assignment at ``at`` writes: the name before its subscripts."""
    index = at - 1
    while index >= 0 and tokens[index] == "]":
        depth = 0
        while True:
            depth += {"]": 1, "[": -1}.get(tokens[index], 0)
            index -= 1
            if not depth:
                break
    return tokens[index] if index >= 0 else None


def _first_name(tokens: list[str], start: int, stop: int) -> str | None:
    for index in range(start, stop):
        if tokens[index] not in ("&", "(", "*") and tokens[index] not in _CLOSE:
            return tokens[index]
    return None


def _arguments(tokens: list[str], open_at: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each argument of the call whose ``(`` is at ``open_at``."""
    end, parts, start, index = _match(tokens, open_at), [], open_at + 1, open_at + 1
    while index < end:
        if tokens[index] in _OPEN:
            index = _match(tokens, index) + 1
            continue
        if tokens[index] == ",":
            parts.append((start, index))
            start = index + 1
        index += 1
    parts.append((start, end))
    return parts


def _back(tokens: list[str], at: int) -> int:
    """The index of the bracket opening the one closing at ``at``."""
    return _match(tokens, at, -1)


def _operand(tokens: list[str], at: int, stops: set) -> tuple[int, int]:
    """``(start, stop)`` of the expression around ``at`` at its own depth, between the
    nearest ``stops`` (or brackets it sits in) on either side."""
    start = at - 1
    while start >= 0 and tokens[start] not in stops and tokens[start] not in _OPEN:
        start = _back(tokens, start) - 1 if tokens[start] in _CLOSE else start - 1
    stop = at + 1
    while stop < len(tokens) and tokens[stop] not in stops and tokens[stop] not in _CLOSE:
        stop = _match(tokens, stop) + 1 if tokens[stop] in _OPEN else stop + 1
    return start + 1, stop


def _body(tokens: list[str], at: int) -> tuple[int, int]:
    """``(start, stop)`` of the statement or block starting at ``at``."""
    if tokens[at] == "{":
        return at, _match(tokens, at) + 1
    if tokens[at] in _CONTROL:  # a statement that is itself control flow: the caller refuses
        return at, at + 1
    return at, _expression_end(tokens, at) + 1


def _branches(tokens: list[str], at: int) -> list[tuple[int, int]]:
    """The then- and else-branches of the ``if`` at ``at``."""
    close = _match(tokens, at + 1)
    found = [_body(tokens, close + 1)]
    if found[0][1] < len(tokens) and tokens[found[0][1]] == "else":
        found.append(_body(tokens, found[0][1] + 1))
    return found


class _Checker:
    """The taint propagation and the checks over one kernel's tokens."""

    def __init__(self, source: str, name: str, selecting: bool):
        text, self.macros = _strip(source)
        pairs = _tokens(text)
        self.tokens, self.lines = [t for t, _ in pairs], [n for _, n in pairs]
        self.source_lines, self.selecting = source.split("\n"), selecting
        self.sources = _sources(self.tokens, name)
        self.violations: list[str] = []

    def _report(self, at: int, what: str, names: set) -> None:
        line = self.lines[at]
        text = self.source_lines[line - 1].strip() if line <= len(self.source_lines) else ""
        named = ", ".join(sorted(names))
        self.violations.append(f"line {line}: {what} depends on the data ({named} tainted): "
                               f"{text[:120]}")

    def _dependent_ifs(self, tainted: set) -> list[int]:
        t = self.tokens
        return [i for i, token in enumerate(t) if token == "if" and
                _names(t, i + 2, _match(t, i + 1)) & tainted]

    def propagate(self) -> set:
        """Every variable the data reaches, to a fixed point."""
        t = self.tokens
        tainted = set(self.sources) | {m for m, body in self.macros.items()
                                       if body & set(self.sources)}
        while True:
            size = len(tainted)
            for at, token in enumerate(t):
                if token in _ASSIGN and _names(t, at + 1, _expression_end(t, at + 1)) & tainted:
                    tainted.add(_lvalue_base(t, at))
                elif token in _COPIES and at + 1 < len(t) and t[at + 1] == "(":
                    args = _arguments(t, at + 1)
                    if len(args) > 1 and _names(t, *args[1]) & tainted:
                        tainted.add(_first_name(t, *args[0]))
            if self.selecting:  # implicit flow: what a data-dependent branch assigns
                for at in self._dependent_ifs(tainted):
                    for start, stop in _branches(t, at):
                        tainted |= self._assigned(start, stop)
            if len(tainted) == size:
                return tainted

    def _assigned(self, start: int, stop: int) -> set:
        t = self.tokens
        found = {_lvalue_base(t, i) for i in range(start, stop) if t[i] in _ASSIGN}
        for i in range(start, stop):
            if t[i] in ("++", "--"):
                found |= _names(t, i - 1, i) | _names(t, i + 1, i + 2)
        return found

    def check(self, tainted: set) -> None:
        """Record every place the data reaches control flow or an index."""
        t = self.tokens
        for at, token in enumerate(t):
            if token in _UNCLASSIFIABLE:
                self.violations.append(f"line {self.lines[at]}: cannot classify {token!r} "
                                       "(the taint check knows no such construct)")
            elif token == "[" and at and (t[at - 1] in ("]", ")") or _is_name(t[at - 1])):
                self._clean(at, at + 1, _match(t, at), "an array index", tainted)
            elif token in ("for", "while", "switch"):
                self._clean(at, at + 2, _match(t, at + 1), f"a {token} header", tainted)
            elif token == "if":
                self._condition(at, at + 2, _match(t, at + 1), "an if condition", tainted)
            elif token == "?":
                start, _ = _operand(t, at, _BOUNDARY)
                self._condition(at, start, at, "a ?: condition", tainted)
            elif token in ("&&", "||"):
                start, stop = _operand(t, at, _BOUNDARY)
                self._condition(at, start, stop, f"an operand of {token}", tainted)
            elif _is_name(token) and at + 1 < len(t) and t[at + 1] == "(":
                self._call(at, tainted)

    def _clean(self, at: int, start: int, stop: int, what: str, tainted: set) -> bool:
        names = _names(self.tokens, start, stop) & tainted
        if names:
            self._report(at, what, names)
        return not names

    def _condition(self, at: int, start: int, stop: int, what: str, tainted: set) -> None:
        """Linear kernels: no data at all.  Max pools: data may select, without effects."""
        if not self.selecting:
            self._clean(at, start, stop, what, tainted)
            return
        t = self.tokens
        if not _names(t, start, stop) & tainted:
            return
        effects = [t[i] for i in range(start, stop) if t[i] in _ASSIGN | {"++", "--"}]
        if effects:
            self._report(at, f"{what} with a side effect ({effects[0]})", _names(
                t, start, stop) & tainted)
        if t[at] == "if":
            for begin, end in _branches(t, at):
                self._select(at, begin, end)

    def _select(self, at: int, start: int, stop: int) -> None:
        """A data-dependent branch of a max pool holds assignments and declarations only."""
        t = self.tokens
        for i in range(start, stop):
            if t[i] in _CONTROL | _JUMPS or (
                    _is_name(t[i]) and i + 1 < stop and t[i + 1] == "("
                    and t[i] not in _PURE and t[i] not in self.macros):
                self.violations.append(
                    f"line {self.lines[i]}: {t[i]!r} inside a data-dependent branch (line "
                    f"{self.lines[at]}): a select may only assign; cannot classify this")
                return

    def _call(self, at: int, tainted: set) -> None:
        """A statement calling an unknown function on the data: cannot classify."""
        t = self.tokens
        name = t[at]
        known = name in _COPIES | _PURE | _CONTROL | _JUMPS or name in self.macros
        statement = at == 0 or t[at - 1] in (";", "{", "}", ")", "else")
        if known or not statement or t[at - 1] == ")" and t[_back(t, at - 1) - 1] not in (
                "if", "for", "while"):
            return
        args = _names(t, at + 2, _match(t, at + 1))
        if args & tainted:
            self.violations.append(f"line {self.lines[at]}: cannot classify the call {name}(...)"
                                   " on the data (it may write through a pointer)")


def _is_name(token: str) -> bool:
    match = _TOKEN.fullmatch(token)
    return bool(match) and match.lastgroup == "id"


def check_source(source: str, name: str, selecting: bool = False) -> TaintReport:
    """Check that no control flow and no index of kernel ``name``'s C ``source`` depends on
    its input data.

    Parameters
    ----------
    source : str
        The kernel's C text (``GeneratedKernel.source``).
    name : str
        The kernel's function name; its ``const`` pointer parameters are the taint sources.
    selecting : bool
        A max pool: data may decide ``if``, ``?:`` and ``&&``/``||`` conditions whose branches
        only assign (a select), never an index or a loop.

    Returns
    -------
    TaintReport
        The sources, the tainted variables and every violation (empty: the check passed).
    """
    checker = _Checker(source, name, selecting)
    tainted = checker.propagate()
    checker.check(tainted)
    return TaintReport(checker.sources, frozenset(tainted), tuple(checker.violations))
