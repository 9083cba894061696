"""Layer files (TOML), layer expressions and shapes given as text, and the bundled examples.

A layer file holds named networks, each a chain of layers with an input shape, and standalone
named layers.  Layer keys are exactly the Python API's keyword names::

    [[model]]
    name = "lenet5"
    description = "LeNet-5"
    input_shape = [1, 32, 32]          # (C, *spatial) or (N, C, *spatial); "H" for a symbol

    [[model.layers]]
    name = "C1"                        # optional; defaults to the layer's index
    type = "Conv2d"
    in_channels = 1
    out_channels = 6
    kernel_size = 5
    schedule = "reference"             # optional: the C schedule (default "auto")

    [[layer]]                          # a standalone layer: a network of one
    name = "stem"
    type = "Conv2d"
    input_shape = [3, 224, 224]
    in_channels = 3
    out_channels = 64
    kernel_size = 7
    stride = 2
    padding = 3
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import sys
import tokenize
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import sympy

from . import profiles
from .errors import SpecError
from .resources import examples_dir
from .schedules import names as schedule_names
from .spec import LAYER_TYPES, Layer, Sequential
from .spec.base import MAX_SIZE, quote

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = ["Network", "bundled_examples", "layer_from_mapping", "load", "loads",
           "parse_layer", "parse_shape", "resolve_target", "symbolic_input"]

SPATIAL_SYMBOLS = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}
_MODEL_KEYS = {"name", "description", "input_shape", "layers", "dtype", "profile"}
_LAYER_META_KEYS = {"name", "type", "input_shape", "description", "dtype", "schedule",
                    "profile"}
DTYPES = ("float32", "float64", "int8", "uint8")


@dataclass(frozen=True)
class Network:
    """A named chain of layers with its input shape, as read from a layer file."""

    name: str
    input_shape: tuple
    model: Sequential
    description: str = ""
    dtype: str | None = None    # None: each layer's own (float32; a quantized layer's type)
    schedules: tuple = ()       # the C schedule asked for each layer ("auto": the default)
    profile: str = "default"    # what the C may assume of its compiler (convgen.profiles)

    def schedule_of(self, index: int) -> str:
        """The C schedule asked for layer ``index``: ``auto`` unless the file names one."""
        return self.schedules[index] if index < len(self.schedules) else "auto"

    def summary(self, symbolic: bool = False):
        """The model's :class:`~convgen.summary.Summary` (spatial sizes as symbols if asked)."""
        shape = symbolic_input(self.model, self.input_shape) if symbolic else self.input_shape
        title = f"{self.name}: {self.description}" if self.description else self.name
        return self.model.summary(shape, title=title)


def symbolic_input(model: Sequential, input_shape: Sequence) -> tuple:
    """``input_shape`` with its spatial sizes replaced by ``L`` / ``H, W`` / ``D, H, W``."""
    if not len(model):
        return tuple(input_shape)
    ndim = model[0].ndim
    names = SPATIAL_SYMBOLS.get(ndim, tuple(f"S{i}" for i in range(ndim)))
    symbols = tuple(sympy.Symbol(n, integer=True, positive=True) for n in names)
    return (*tuple(input_shape)[:-ndim], *symbols)


def _where(source: str, item: str) -> str:
    return f"{source}: {item}"


def layer_from_mapping(entry: Mapping, where: str = "layer") -> Layer:
    """Build a layer from a mapping with ``type`` plus the layer's keyword arguments."""
    kind = entry.get("type")
    if not isinstance(kind, str) or kind not in LAYER_TYPES:
        raise SpecError(f"{where}: type={quote(kind)} must be one of {', '.join(LAYER_TYPES)}")
    cls = LAYER_TYPES[kind]
    allowed = [f.name for f in dataclasses.fields(cls)]
    # a layer's own dtype (the quantized convolutions') is also the kernel's: both read it
    kwargs = {k: v for k, v in entry.items()
              if k not in _LAYER_META_KEYS or (k == "dtype" and k in allowed)}
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} for {kind}; "
                        f"allowed: {', '.join(allowed)}")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.name not in kwargs]
    if missing:
        raise SpecError(f"{where}: {kind} needs {', '.join(missing)}")
    try:
        return cls(**kwargs)
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None


def _shape(value: object, where: str) -> tuple:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, str)) and not isinstance(v, bool) for v in value):
        raise SpecError(f"{where}: input_shape={quote(value)} must be a list of ints and symbol "
                        "names, (C, *spatial) or (N, C, *spatial)")
    return tuple(value)


def _name(value: object, where: str, seen: set) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(f"{where}: name={quote(value)} must be a non-empty string")
    if value in seen:
        raise SpecError(f"{where}: name={quote(value)} is used twice; names must be unique")
    seen.add(value)
    return value


def _model(entry: object, where: str, seen: set) -> Network:
    if not isinstance(entry, dict):
        raise SpecError(f"{where} must be a table")
    unknown = sorted(set(entry) - _MODEL_KEYS)
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: "
                        f"{', '.join(sorted(_MODEL_KEYS))}")
    name = _name(entry.get("name"), where, seen)
    where = f"{where} {name!r}"
    shape = _shape(entry.get("input_shape"), where)
    items = entry.get("layers")
    if not isinstance(items, list) or not items:
        raise SpecError(f"{where}: layers must be a non-empty array of tables ([[model.layers]])")
    layers, names, schedules = [], [], []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise SpecError(f"{where}: layer {index} must be a table")
        for key in ("input_shape", "dtype", "profile"):
            if key in item:
                raise SpecError(f"{where}: layer {index} has {key}; in a model only the model "
                                f"has one (each layer takes the previous layer's output)")
        cls = LAYER_TYPES.get(item.get("type"))
        if "dtype" in entry and cls is not None and "dtype" in {
                f.name for f in dataclasses.fields(cls)}:  # a quantized layer: the model's
            item = {**item, "dtype": entry["dtype"]}
        label = item.get("name", str(index))
        if not isinstance(label, str) or not label:
            raise SpecError(f"{where}: layer {index} name={quote(label)} must be a non-empty "
                            "string")
        _description(item, f"{where} layer {label!r}")
        names.append(label)
        layers.append(layer_from_mapping(item, f"{where} layer {label!r}"))
        schedules.append(_schedule(item, f"{where} layer {label!r}"))
    return _network(name, shape, layers, names, entry, where, tuple(schedules))


def _schedule(entry: dict, where: str) -> str:
    """A layer's ``schedule`` key: ``auto`` (the default) or a C schedule's name; whether
    it applies to the layer is checked when the kernel is generated, with the reason."""
    value = entry.get("schedule", "auto")
    allowed = ("auto", *schedule_names("c"))
    if value not in allowed:
        raise SpecError(f"{where}: schedule={quote(value)} must be one of "
                        f"{', '.join(map(repr, allowed))}")
    return value


def _network(name, shape, layers, names, entry: dict, where,
             schedules: tuple = ()) -> Network:
    try:
        model = Sequential(*layers, names=names)
        model.shapes(shape)
    except SpecError as error:
        raise SpecError(f"{where}: {error}") from None
    dtype = entry.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise SpecError(f"{where}: dtype={quote(dtype)} must be one of {', '.join(DTYPES)}")
    profile = profiles.check(entry.get("profile", profiles.DEFAULT), f"{where}: profile")
    return Network(name, shape, model, _description(entry, where), dtype, schedules, profile)


def _description(entry: dict, where: str) -> str:
    value = entry.get("description", "")
    if not isinstance(value, str):
        raise SpecError(f"{where}: description={quote(value)} must be a string")
    return value


def _layer(entry: object, where: str, seen: set) -> Network:
    if not isinstance(entry, dict):
        raise SpecError(f"{where} must be a table")
    name = _name(entry.get("name"), where, seen)
    where = f"{where} {name!r}"
    shape = _shape(entry.get("input_shape"), where)
    layer = layer_from_mapping(entry, where)
    return _network(name, shape, [layer], [name], entry, where, (_schedule(entry, where),))


def loads(text: str, source: str = "<string>") -> list[Network]:
    """Parse a layer file's text into its networks (models first, then standalone layers)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise SpecError(f"{source}: not valid TOML: {error}") from None
    except (RecursionError, MemoryError):
        raise SpecError(f"{source}: its tables or arrays nest too deeply to read: at most "
                        f"{MAX_DEPTH} deep") from None
    except ValueError as error:  # an int past Python's 4,300-digit conversion limit
        raise SpecError(f"{source}: not valid TOML: {error}") from None
    _check_depth(data, source)
    _description(data, source)
    unknown = sorted(set(data) - {"model", "layer", "description"})
    if unknown:
        raise SpecError(f"{source}: unknown top-level key(s) {', '.join(map(repr, unknown))}; "
                        "allowed: model, layer, description")
    seen: set = set()
    networks = [_model(e, _where(source, f"model {i}"), seen)
                for i, e in enumerate(_array(data, "model", source))]
    networks += [_layer(e, _where(source, f"layer {i}"), seen)
                 for i, e in enumerate(_array(data, "layer", source))]
    if not networks:
        raise SpecError(f"{source}: defines no [[model]] and no [[layer]]")
    return networks


def _check_depth(data: dict, source: str) -> None:
    """Refuse tables and arrays nested deeper than :data:`MAX_DEPTH` (walked without
    recursion): a value that deep is never a layer argument, and printing it would recurse."""
    level = [data]
    for depth in range(1, MAX_DEPTH + 2):
        level = [v for item in level
                 for v in (item.values() if isinstance(item, dict) else item)
                 if isinstance(v, (dict, list))]
        if not level:
            return
        if depth > MAX_DEPTH:
            break
    raise SpecError(f"{source}: its tables or arrays nest more than {MAX_DEPTH} deep: at most "
                    f"{MAX_DEPTH}")


def _array(data: dict, key: str, source: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise SpecError(f"{source}: {key} must be an array of tables ([[{key}]])")
    return value


def load(path: str | Path) -> list[Network]:
    """Read a layer file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"cannot read layer file {str(path)!r}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise SpecError(f"layer file {str(path)!r} is not UTF-8 text (byte {error.start})") \
            from None
    return loads(text, source=str(path))


#: Longest layer expression or shape text the parsers take, in characters.
MAX_EXPRESSION = 10_000
#: Most digits of a number in a layer expression or shape (sizes are at most 2,147,483,647).
MAX_DIGITS = 12
#: Most terms (numbers, names, strings) in a layer expression: a 3-d transposed convolution
#: with every argument spelled out holds about 40.
MAX_TERMS = 256
#: Deepest nesting of brackets in a layer expression, and of tables and arrays in a layer file
#: (a model's layer's padding pairs sit 6 deep).
MAX_DEPTH = 16


def bundled_examples() -> dict[str, Path]:
    """The bundled example layer files, by name (file stem)."""
    return {p.stem: p for p in sorted(examples_dir().glob("*.toml"))}


def _shown(text: str) -> str:
    """``text`` for a message: cut to 60 characters past 80."""
    return text if len(text) <= 80 else text[:60] + f"... ({len(text):,} characters)"


def _check_tokens(text: str, what: str) -> None:
    """Refuse a layer expression past :data:`MAX_DIGITS`, :data:`MAX_TERMS` or
    :data:`MAX_DEPTH`, stating the limit; a syntax error is left to the parser's message."""
    tokens = []
    try:  # the tokens up to the first error: the parser then reports that error
        tokens.extend(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, ValueError):  # unbalanced, a stray character
        pass
    terms = depth = 0
    for token in tokens:
        if token.type == tokenize.NUMBER:
            digits = max(map(len, re.findall(r"[0-9a-fA-F]+", token.string.replace("_", ""))),
                         default=0)
            if digits > MAX_DIGITS:
                raise SpecError(f"{what} holds a number of {digits:,} digits: at most "
                                f"{MAX_DIGITS} (sizes are at most {MAX_SIZE:,})")
        if token.type in (tokenize.NUMBER, tokenize.NAME, tokenize.STRING):
            terms += 1
            if terms > MAX_TERMS:
                raise SpecError(f"{what} holds more than {MAX_TERMS} terms (numbers, names, "
                                f"strings): at most {MAX_TERMS}")
        elif token.type == tokenize.OP and token.string in ("(", "[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise SpecError(f"{what} nests brackets more than {MAX_DEPTH} deep: at most "
                                f"{MAX_DEPTH}")
        elif token.type == tokenize.OP and token.string in (")", "]", "}"):
            depth -= 1


def _checked_text(text, what: str, sized: str, example: str) -> str:
    """``text`` shortened for messages, once it is known to be a string of at most
    :data:`MAX_EXPRESSION` characters (``what``/``sized`` name it in the errors)."""
    if not isinstance(text, str):
        raise SpecError(f"{what} {quote(text)} must be a string such as {example!r}")
    if len(text) > MAX_EXPRESSION:
        raise SpecError(f"{sized} of {len(text):,} characters is too long: at most "
                        f"{MAX_EXPRESSION:,}")
    return _shown(text)


def parse_layer(text: str) -> Layer:
    """Parse a layer written as a Python call, e.g. ``"Conv2d(3, 16, 3, padding=1)"``.

    Only literal arguments are accepted; nothing is evaluated.  A layer is at most
    :data:`MAX_EXPRESSION` characters and :data:`MAX_TERMS` terms, its numbers at most
    :data:`MAX_DIGITS` digits, its brackets at most :data:`MAX_DEPTH` deep: each limit is
    checked on the tokens before the text is parsed, so no input reaches a recursion or an
    int conversion that Python itself limits (4,300 digits).
    """
    shown = _checked_text(text, "layer", "layer expression", "Conv2d(3, 16, 3)")
    _check_tokens(text, f"layer {shown!r}")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, RecursionError, MemoryError, ValueError):
        tree = None
    if not isinstance(tree, ast.Call) or not isinstance(tree.func, ast.Name):
        raise SpecError(f"layer {shown!r} must be a call such as 'Conv2d(3, 16, 3, padding=1)'")
    kind = tree.func.id
    if kind not in LAYER_TYPES:
        raise SpecError(f"layer {shown!r}: {kind!r} must be one of {', '.join(LAYER_TYPES)}")
    if any(k.arg is None for k in tree.keywords):
        raise SpecError(f"layer {shown!r}: **kwargs are not allowed")
    repeated = sorted({k.arg for k in tree.keywords
                       if [j.arg for j in tree.keywords].count(k.arg) > 1})
    if repeated:
        raise SpecError(f"layer {shown!r}: {', '.join(repeated)} given twice")
    try:
        args = [ast.literal_eval(a) for a in tree.args]
        kwargs = {k.arg: ast.literal_eval(k.value) for k in tree.keywords}
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        raise SpecError(f"layer {shown!r}: arguments must be literals (numbers, strings, "
                        "tuples, True/False/None)") from None
    fields = [f.name for f in dataclasses.fields(LAYER_TYPES[kind])]
    if len(args) > len(fields):
        raise SpecError(f"layer {shown!r}: {kind} takes at most {len(fields)} arguments "
                        f"({', '.join(fields)})")
    clash = sorted(set(fields[:len(args)]) & set(kwargs))
    if clash:
        raise SpecError(f"layer {shown!r}: {', '.join(clash)} given twice")
    return layer_from_mapping({"type": kind, **dict(zip(fields, args)), **kwargs},
                              f"layer {shown!r}")


def parse_shape(text: str) -> tuple:
    """Parse ``"3,32,32"``, ``"(3, H, W)"`` or ``"[1, 3, 32, 32]"`` into a shape tuple.

    At most :data:`MAX_EXPRESSION` characters and :data:`MAX_TERMS` entries, each an int of
    at most :data:`MAX_DIGITS` digits (a leading ``-`` is left for the spec to refuse, with
    the entry's name) or a symbol name.
    """
    shown = _checked_text(text, "input shape", "input shape", "3,32,32")
    body = text.strip().strip("()[]")
    items = [item.strip() for item in body.split(",")]
    if len(items) > 1 and not items[-1]:  # one trailing comma: "(3,)"
        items.pop()
    if len(items) > MAX_TERMS:
        raise SpecError(f"input shape {shown!r} holds {len(items):,} entries: at most "
                        f"{MAX_TERMS}")
    allowed = "must be comma-separated ints or symbol names, e.g. '3,32,32' or '3,H,W'"
    shape = []
    for index, item in enumerate(items):
        number = item[1:] if item.startswith("-") else item
        if number.isdecimal() and number.isascii():
            if len(number) > MAX_DIGITS:
                raise SpecError(f"input shape {shown!r}: entry {index} holds a number of "
                                f"{len(number):,} digits: at most {MAX_DIGITS} (sizes are at "
                                f"most {MAX_SIZE:,})")
            shape.append(int(item))
        elif item.isidentifier():
            shape.append(item)
        else:
            what = "is empty" if not item else f"{quote(item)} is neither"
            raise SpecError(f"input shape {shown!r} {allowed}; entry {index} {what}")
    return tuple(shape)


def resolve_target(target: str) -> Path:
    """A layer file given as a path or as the name of a bundled example."""
    path = Path(target)
    if path.is_file():
        return path
    examples = bundled_examples()
    if target in examples:
        return examples[target]
    raise SpecError(f"{target!r} is neither a layer file nor a bundled example "
                    f"({', '.join(examples)}) nor a layer such as 'Conv2d(3, 16, 3)'")
