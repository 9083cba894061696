"""Layer families: every spec carries its family, reduction and ONNX operator, and everything
dispatches on them (through ``family_of``), never on the class name."""

import ast
import dataclasses
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

import convgen
from convgen import SpecError, proofs, reference, toeplitz
from convgen.onnx_bridge import onnx_nodes
from convgen.spec import FAMILIES, LAYER_TYPES, REDUCTIONS, Layer, family_of
from tests.test_packaging import ROOT

#: class name prefix -> (family, reduction, onnx_op)
EXPECTED = {
    "ConvTranspose": ("conv_transpose", None, "ConvTranspose"),
    "Conv": ("conv", None, "Conv"),
    "MaxPool": ("pool", "max", "MaxPool"),
    "AvgPool": ("pool", "avg", "AveragePool"),
    "LPPool": ("pool", "lp", "LpPool"),
    "AdaptiveAvgPool": ("adaptive_pool", "avg", None),
    "AdaptiveMaxPool": ("adaptive_pool", "max", None),
    "GlobalAvgPool": ("adaptive_pool", "avg", "GlobalAveragePool"),
    "GlobalMaxPool": ("adaptive_pool", "max", "GlobalMaxPool"),
    "ConvInteger": ("qconv", None, "ConvInteger"),
    "QLinearConv": ("qconv", None, "QLinearConv"),
    "QLinearAvgPool": ("pool", "avg", "QLinearAveragePool"),
    "QLinearGlobalAvgPool": ("adaptive_pool", "avg", "QLinearGlobalAveragePool"),
}


def _expected(name: str):
    prefix = max((p for p in EXPECTED if name.startswith(p)), key=len)
    return EXPECTED[prefix]


def test_families_are_the_codegen_template_families():
    assert FAMILIES == ("conv", "conv_transpose", "pool", "adaptive_pool", "qconv")
    assert REDUCTIONS == ("max", "avg", "lp")
    assert convgen.spec.__all__.count("family_of") == 1


@pytest.mark.parametrize("name", sorted(LAYER_TYPES))
def test_every_layer_type_has_its_family_reduction_and_onnx_op(name):
    cls = LAYER_TYPES[name]
    family, reduction, onnx_op = _expected(name)
    assert (cls.family, cls.reduction, cls.onnx_op) == (family, reduction, onnx_op)
    assert cls.family in FAMILIES
    assert cls.reduction in ((None,) if "conv" in family else REDUCTIONS)
    # what the old spec module showed: module, name, and a docstring of its own
    assert (cls.__module__, cls.__qualname__, cls.__name__) == ("convgen.spec", name, name)
    assert cls.__doc__ and "__doc__" in vars(cls)
    # the class attributes are not dataclass fields (field order, equality, hash unchanged)
    assert not {"family", "reduction", "onnx_op"} & {f.name for f in dataclasses.fields(cls)}


def test_reprs_are_those_of_the_single_module():
    assert repr(convgen.Conv2d(3, 8, 3, padding=1)) == (
        "Conv2d(in_channels=3, out_channels=8, kernel_size=(3, 3), stride=(1, 1), "
        "padding=((1, 1), (1, 1)), dilation=(1, 1), groups=1, bias=True, padding_mode='zeros')")
    assert repr(convgen.MaxPool1d(2)) == (
        "MaxPool1d(kernel_size=(2,), stride=(2,), padding=((0, 0),), dilation=(1,), "
        "return_indices=False, ceil_mode=False)")
    assert repr(convgen.GlobalAvgPool(3)) == "GlobalAvgPool(ndim=3)"
    assert repr(convgen.AdaptiveMaxPool2d(2)) == (
        "AdaptiveMaxPool2d(output_size=(2, 2), return_indices=False)")


def test_family_of_reads_the_family():
    assert family_of(convgen.ConvTranspose2d(1, 1, 2)) == "conv_transpose"
    assert family_of(convgen.LPPool1d(2, 2)) == "pool"
    assert family_of(convgen.GlobalMaxPool()) == "adaptive_pool"


# --------------------------------------------------------------------------- unknown families


@dataclasses.dataclass(frozen=True)
class ConvInteger1d(Layer):
    """A user's layer that looks like a convolution by name but declares no family."""

    in_channels: int
    out_channels: int
    kernel_size: Any
    ndim = 1

    @property
    def weight_shape(self):
        return (self.out_channels, self.in_channels, self.kernel_size)

    def _out_channels(self, shape):
        return self.out_channels

    def _out_spatial(self, shape):
        return tuple(n - self.kernel_size + 1 for n in shape.spatial)

    def _rf_steps(self, shape):
        return ((self.kernel_size, 1),)


NO_FAMILY = (r"ConvInteger1d has no known family \(family=None\); a layer spec's family must "
             "be one of 'conv', 'conv_transpose', 'pool', 'adaptive_pool'")


def _refusals(layer):
    x, w = np.ones((1, 5)), np.ones((2, 1, 3))
    return {
        "family_of": lambda: family_of(layer),
        "reference.forward": lambda: reference.forward(layer, x, w),
        "reference.toeplitz_forward": lambda: reference.toeplitz_forward(layer, x, w),
        "toeplitz.toeplitz": lambda: toeplitz.toeplitz(layer, (1, 5)),
        "Layer.toeplitz": lambda: layer.toeplitz((1, 5)),
        "toeplitz.entries": lambda: toeplitz.entries(layer, (1, 5)),
        "toeplitz.is_linear": lambda: toeplitz.is_linear(layer),
        "toeplitz.structure": lambda: toeplitz.structure(layer, (1, 5)),
        "toeplitz.bias_vector": lambda: toeplitz.bias_vector(layer, (1, 5)),
        "toeplitz.selection_matrix": lambda: toeplitz.selection_matrix(layer, x),
        "proofs.layer_statements": lambda: proofs.layer_statements(layer),
        "onnx_nodes": lambda: onnx_nodes(layer),
    }


@pytest.mark.parametrize("entry", sorted(_refusals(None)))
def test_a_layer_without_family_is_refused_by_name_everywhere(entry):
    layer = ConvInteger1d(1, 2, 3)
    assert layer.output_shape((1, 5)) == (2, 3)  # the shape methods still work
    with pytest.raises(SpecError, match=NO_FAMILY):
        _refusals(layer)[entry]()


def test_unknown_family_unknown_reduction_and_non_layers_are_refused():
    class Dense1d(ConvInteger1d):
        family = "dense"

    class OddPool1d(ConvInteger1d):
        family = "pool"  # a pool without a reduction

    with pytest.raises(SpecError, match=r"Dense1d has no known family \(family='dense'\); "):
        family_of(Dense1d(1, 1, 1))
    with pytest.raises(SpecError, match=r"OddPool1d has family 'pool' but no known reduction "
                                        r"\(reduction=None\)"):
        reference.forward(OddPool1d(1, 1, 1), np.ones((1, 3)))
    with pytest.raises(SpecError, match=r"str has no known family \(family=None\): it is not a "
                                        "convgen layer spec"):
        family_of("relu")


# --------------------------------------------------------------------------- renamed subclasses


class MyConv(convgen.Conv2d):
    pass


def test_a_renamed_conv2d_works_like_conv2d():
    args = dict(in_channels=2, out_channels=3, kernel_size=2, padding=1, padding_mode="reflect")
    mine, theirs = MyConv(**args), convgen.Conv2d(**args)
    assert repr(mine).startswith("MyConv(in_channels=2,")
    assert family_of(mine) == "conv"
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, size=(2, 2, 4, 3))
    w = rng.integers(-3, 4, size=theirs.weight_shape)
    b = rng.integers(-3, 4, size=3)
    assert (reference.forward(mine, x, w, b) == reference.forward(theirs, x, w, b)).all()
    assert (reference.toeplitz_forward(mine, x, w, b) == reference.forward(theirs, x, w, b)).all()
    assert mine.toeplitz((2, 4, 3)) == theirs.toeplitz((2, 4, 3))
    numeric = toeplitz.toeplitz(mine, (2, 4, 3), weight=w.astype(float))
    assert (numeric != toeplitz.toeplitz(theirs, (2, 4, 3), weight=w.astype(float))).nnz == 0
    assert toeplitz.structure(mine, (2, 4, 3)) == toeplitz.structure(theirs, (2, 4, 3))
    assert onnx_nodes(mine, (1, 2, 4, 3)) == onnx_nodes(theirs, (1, 2, 4, 3))
    statuses = [r.status for r in proofs.layer_statements(mine)]
    assert statuses == [r.status for r in proofs.layer_statements(theirs)] == ["proved"] * 2


@pytest.mark.parametrize("layer", [
    convgen.ConvTranspose1d(1, 2, 3, stride=2, output_padding=1),
    convgen.MaxPool1d(3, 2, 1, return_indices=True), convgen.AvgPool1d(3, 2, 1),
    convgen.LPPool1d(2, 3, 2), convgen.AdaptiveMaxPool1d(3, return_indices=True),
    convgen.AdaptiveAvgPool1d(2), convgen.GlobalAvgPool(1), convgen.GlobalMaxPool(1),
], ids=lambda layer: type(layer).__name__)
def test_renamed_subclasses_of_every_family_work_like_their_base(layer):
    renamed = type(f"Renamed{type(layer).__name__}", (type(layer),), {})
    mine = renamed(**{f.name: getattr(layer, f.name) for f in dataclasses.fields(layer)})
    assert family_of(mine) == family_of(layer)
    transposed = family_of(layer) == "conv_transpose"
    channels = layer.in_channels if transposed else 2
    x = np.random.default_rng(1).integers(-5, 6, size=(2, channels, 7))
    weights = []
    if transposed:
        weights = [np.arange(np.prod(layer.weight_shape)).reshape(layer.weight_shape) - 2,
                   np.array([1, -1])]
    got, want = reference.forward(mine, x, *weights), reference.forward(layer, x, *weights)
    for a, b in zip(*(r if isinstance(r, tuple) else (r,) for r in (got, want))):
        assert (a == b).all()
    assert toeplitz.is_linear(mine) == toeplitz.is_linear(layer)
    if layer.reduction == "max":
        sample = x[0].astype(float)
        assert (toeplitz.selection_matrix(mine, sample)
                != toeplitz.selection_matrix(layer, sample)).nnz == 0
    if layer.onnx_op is not None:
        assert onnx_nodes(mine, x.shape) == onnx_nodes(layer, x.shape)


# --------------------------------------------------------------------------- module structure


def test_layer_toeplitz_works_after_a_plain_import_convgen():
    probe = ("import convgen; print(convgen.Conv1d(1, 1, 2).toeplitz((1, 3)).shape); "
             "print(convgen.Sequential(convgen.AvgPool1d(2)).summary((1, 4)).total_params)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["(2,", "3)", "0"]


def _imports(path):
    """(module, inside a function?, under TYPE_CHECKING?) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function, typing_only):
        for child in ast.iter_child_nodes(node):
            function = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            guarded = typing_only or (isinstance(child, ast.If)
                                      and "TYPE_CHECKING" in ast.unparse(child.test))
            if isinstance(child, ast.ImportFrom):
                dots = "." * child.level
                modules = [child.module] if child.module else [a.name for a in child.names]
                found.extend((dots + module, function, guarded) for module in modules)
            visit(child, function, guarded)

    visit(tree, False, False)
    return found


def test_the_spec_package_imports_nothing_built_on_it():
    """No spec <-> toeplitz/summary cycle: the specs import neither toeplitz nor anything at
    call time, and summary needs the specs only for type checking."""
    for path in sorted((ROOT / "convgen" / "spec").glob("*.py")):
        for module, in_function, _ in _imports(path):
            assert not in_function, (path.name, module)
            if module.startswith((".", "convgen")):
                assert module.lstrip(".").split(".")[-1] in (
                    "base", "conv", "pool", "adaptive", "quantized", "qpool", "sequential",
                    "symbolic", "quantization", "errors", "summary"), (path.name, module)
    for name in ("summary.py", "toeplitz.py"):
        for module, in_function, typing_only in _imports(ROOT / "convgen" / name):
            assert not in_function, (name, module)
            if name == "summary.py" and module.startswith(".spec"):
                assert typing_only
