"""Output-size formulas against brute-force window counts, and symbolic against concrete."""

import sympy
from hypothesis import assume, given
from hypothesis import strategies as st

import convgen
from convgen import symbolic as sym
from convgen.strategies import conv_layers, input_shape_for, layers_with_inputs, pool_layers
from tests.bruteforce import count_windows, smallest_conv_input, transpose_size


def _expected_spatial(layer, spatial):
    pads = layer.resolved_padding(spatial)
    if hasattr(layer, "output_padding"):
        return tuple(transpose_size(n, k, s, d, lo, hi, op) for n, k, s, d, (lo, hi), op in
                     zip(spatial, layer.kernel_size, layer.stride, layer.dilation, pads,
                         layer.output_padding))
    ceil_mode = getattr(layer, "ceil_mode", False)
    return tuple(count_windows(n, k, s, d, lo, hi, ceil_mode) for n, k, s, d, (lo, hi) in
                 zip(spatial, layer.kernel_size, layer.stride, layer.dilation, pads))


@given(st.data())
def test_conv_shape_equals_window_count(data):
    layer = data.draw(conv_layers(kinds=("Conv",)))
    shape = data.draw(input_shape_for(layer))
    out = layer.output_shape(shape)
    assert out[-layer.ndim:] == _expected_spatial(layer, shape[-layer.ndim:])
    assert out[-layer.ndim - 1] == layer.out_channels
    assert out[:-layer.ndim - 1] == shape[:-layer.ndim - 1]


@given(st.data())
def test_pool_shape_equals_window_count_floor_and_ceil(data):
    layer = data.draw(pool_layers())
    shape = data.draw(input_shape_for(layer))
    assert layer.output_shape(shape) == (*shape[:-layer.ndim],
                                         *_expected_spatial(layer, shape[-layer.ndim:]))


@given(st.data())
def test_conv_transpose_shape_inverts_conv(data):
    layer = data.draw(conv_layers(kinds=("ConvTranspose",)))
    shape = data.draw(input_shape_for(layer))
    assert layer.output_shape(shape)[-layer.ndim:] == \
        _expected_spatial(layer, shape[-layer.ndim:])


@given(n=st.integers(1, 30), k=st.integers(1, 5), s=st.integers(1, 4), d=st.integers(1, 3),
       lo=st.integers(0, 4), hi=st.integers(0, 4))
def test_conv_transpose_inverts_conv_for_every_output_padding(n, k, s, d, lo, hi):
    """Each conv input size m with conv(m) = n is reached by exactly one output_padding < s."""
    size = sym.conv_transpose_output_size(n, k, s, d, lo, hi, 0)
    assume(size >= 1)  # else the padding crops everything and no conv input maps onto n
    layer = convgen.ConvTranspose1d(1, 1, k, stride=s, dilation=d, padding=((lo, hi),))
    base = smallest_conv_input(n, k, s, d, lo, hi)
    assert base == size == layer.output_shape((1, n))[1]
    sizes = [m for m in range(1, base + s + 2) if count_windows(m, k, s, d, lo, hi) == n]
    assert sizes == [base + op for op in range(s)]


@given(n=st.integers(1, 40), k=st.integers(1, 6), s=st.integers(1, 5), d=st.integers(1, 3),
       lower=st.booleans())
def test_same_padding_gives_ceil_n_over_s(n, k, s, d, lower):
    lo, hi = sym.same_padding(n, k, s, d, lower)
    assert lo >= 0 and hi >= 0
    assert abs(lo - hi) <= 1 and (lo >= hi if lower else hi >= lo)
    assert count_windows(n, k, s, d, lo, hi) == -(-n // s)
    if s == 1:
        assert count_windows(n, k, s, d, lo, hi) == n
    layer = convgen.Conv1d(1, 1, k, stride=s, dilation=d,
                           padding="same_lower" if lower else "same")
    assert layer.output_shape((1, n)) == (1, -(-n // s))
    for ceil_mode in (False, True) if n >= d else ():  # n < d: see test_errors
        pool = convgen.MaxPool1d(k, stride=s, dilation=d, ceil_mode=ceil_mode,
                                 padding="same_lower" if lower else "same")
        assert pool.output_shape((1, n)) == (1, count_windows(n, k, s, d, lo, hi, ceil_mode))


def _symbolize(layer, shape):
    symbols = sym.size_symbols(" ".join(f"n{i}" for i in range(layer.ndim)))
    return (*shape[:-layer.ndim], *symbols), symbols


@given(layers_with_inputs())
def test_substituting_numbers_into_symbolic_shape_gives_concrete_shape(case):
    layer, shape = case
    symbolic_shape, symbols = _symbolize(layer, shape)
    values = dict(zip(symbols, shape[-layer.ndim:]))
    out = layer.output_shape(symbolic_shape)
    assert tuple(sympy.sympify(o).subs(values) for o in out) == layer.output_shape(shape)
    constraints = layer.constraints(symbolic_shape)
    assert all(c.condition.subs(values) is sympy.true for c in constraints)
    for method in ("macs", "flops", "dense_equivalent_params"):
        symbolic_value = sympy.sympify(getattr(layer, method)(symbolic_shape)).subs(values)
        assert symbolic_value == getattr(layer, method)(shape), method


@given(layers_with_inputs())
def test_concrete_results_are_python_ints(case):
    layer, shape = case
    values = [*layer.output_shape(shape), layer.macs(shape), layer.flops(shape),
              layer.num_params, layer.dense_equivalent_params(shape)]
    assert all(type(v) is int for v in values)


def test_symbolic_shapes_are_exact_floor_and_ceiling():
    H, W = sym.size_symbols("H W")
    out = convgen.Conv2d(3, 8, 3, stride=2, padding=1).output_shape((3, H, W))
    assert out == (8, sympy.floor((H - 1) / 2) + 1, sympy.floor((W - 1) / 2) + 1)
    assert convgen.Conv2d(3, 8, 3, stride=2, padding="same").output_shape((3, H, W)) == \
        (8, sympy.ceiling(H / 2), sympy.ceiling(W / 2))
    pooled = convgen.MaxPool2d(2, ceil_mode=True).output_shape((1, H, W))
    assert pooled == (1, sympy.ceiling(H / 2), sympy.ceiling(W / 2))  # the ceil rule never bites
    padded = convgen.MaxPool2d(2, padding=1, ceil_mode=True).output_shape((1, H, W))
    assert isinstance(padded[1], sympy.Piecewise)  # here it does, at odd H
    assert [padded[1].subs(H, h) for h in (1, 2, 3, 4, 5)] == [1, 2, 2, 3, 3]


def test_constraints_print_in_a_few_words():
    """README: ``Conv2d(3, 8, 5).constraints((3, H, W))  # channels match; H >= 5; W >= 5``."""
    H, W, C = sym.size_symbols("H W C")
    conv = convgen.Conv2d(3, 8, 5)
    constraints = conv.constraints((3, H, W))
    assert isinstance(constraints, tuple) and isinstance(constraints, convgen.Constraints)
    assert len(constraints) == 3 and constraints == tuple(constraints)
    assert repr(constraints) == str(constraints) == \
        "3 input channels (in_channels); H >= 5; W >= 5"
    assert str(conv.constraints((C, 4, W))) == (
        "C == 3; not dilated kernel extent 5 (kernel_size=5, dilation=1) fits in padded "
        "input 4 in dim 0; W >= 5")
    assert repr(constraints[0]) == "Constraint(holds: 3 input channels (in_channels))"
    assert repr(constraints[1]) == ("Constraint(H >= 5: dilated kernel extent 5 (kernel_size=5, "
                                    "dilation=1) fits in padded input H in dim 0)")
    assert repr(conv.constraints((4, H, W))[0]) == \
        "Constraint(fails: 3 input channels (in_channels))"
    assert str(convgen.AdaptiveAvgPool2d(2).constraints((C, H, W))) == "no constraints"
    chain = convgen.Sequential(conv, convgen.MaxPool2d(2))
    assert str(chain.constraints((3, H, W))).endswith("; H - 4 >= 2; W - 4 >= 2")


def test_constraints_of_symbolic_input_are_relations():
    (H,) = sym.size_symbols("H")
    layer = convgen.Conv1d(2, 2, 3, dilation=2, padding_mode="reflect", padding=((1, 2),))
    conditions = [c.condition for c in layer.constraints((2, H))]
    assert conditions == [sympy.true, H + 3 >= 5, sympy.Lt(1, H), sympy.Lt(2, H)]
    assert [c.holds for c in layer.constraints((2, H))] == [True, None, None, None]
    assert [c.holds for c in layer.constraints((2, 2))] == [True, True, True, False]
    assert [c.holds for c in layer.constraints((3, 3))] == [False, True, True, True]
