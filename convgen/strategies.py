"""Hypothesis strategies that draw valid layer specs and matching input shapes.

Valid by construction (no rejection filters), small enough for exact oracles, and shrinking
towards the simplest layer: 1-d, kernel 1, stride 1, no padding.  Needs ``hypothesis``
(the ``test`` extra)::

    from hypothesis import given
    from convgen.strategies import layers_with_inputs

    @given(layers_with_inputs())
    def test_something(case):
        layer, input_shape = case
"""

from __future__ import annotations

from hypothesis import strategies as st

from . import symbolic as sym
from .spec import LAYER_TYPES, Layer, family_of

__all__ = ["CONV_KINDS", "FAMILIES", "POOL_KINDS", "adaptive_layers", "blocked_adaptive_pools",
           "blocked_convs", "blocked_pools", "conv_layers", "input_shape_for",
           "layers_with_inputs", "pool_layers", "quantized_layers", "quantized_pools",
           "winograd_convs",
           "with_specials"]

CONV_KINDS = ("Conv", "ConvTranspose")
POOL_KINDS = ("MaxPool", "AvgPool", "LPPool")
_ADAPTIVE_KINDS = ("AdaptiveAvgPool", "AdaptiveMaxPool")
QUANT_TYPES = ("int8", "uint8")
_GLOBAL_KINDS = ("GlobalAvgPool", "GlobalMaxPool")
ANY_NDIM = st.integers(1, 3)


@st.composite
def _padding(draw, ndim: int, extents: tuple[int, ...], below_extent: bool, strings: bool):
    """Padding in one of the accepted forms; each pad ``< extent`` when ``below_extent``."""
    def pad(dim: int):
        top = extents[dim] - 1 if below_extent else extents[dim] + 1
        return st.integers(0, max(0, top))
    form = draw(st.sampled_from(["int", "tuple", "pairs", "string"] if strings
                                else ["int", "tuple", "pairs"]))
    if form == "string":
        return draw(st.sampled_from(["valid", "same", "same_lower"]))
    if form == "int":
        return draw(pad(min(range(ndim), key=lambda d: extents[d])))
    if form == "tuple":
        return tuple(draw(pad(d)) for d in range(ndim))
    return tuple((draw(pad(d)), draw(pad(d))) for d in range(ndim))


@st.composite
def _window(draw, ndim: int, max_kernel: int, max_stride: int, max_dilation: int):
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(ndim))
    stride = tuple(draw(st.integers(1, max_stride)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, max_dilation)) for _ in range(ndim))
    extents = tuple(sym.dilated_extent(k, d) for k, d in zip(kernel, dilation))
    return kernel, stride, dilation, extents


@st.composite
def conv_layers(draw, ndim=ANY_NDIM, kinds=CONV_KINDS, max_channels: int = 4,
                max_kernel: int = 3, max_stride: int = 3, max_dilation: int = 2) -> Layer:
    """A valid ``Conv*d`` or ``ConvTranspose*d`` spec."""
    n = draw(ndim)
    kind = draw(st.sampled_from(kinds))
    groups = draw(st.integers(1, 2))
    in_ch = groups * draw(st.integers(1, max(1, max_channels // groups)))
    out_ch = groups * draw(st.integers(1, max(1, max_channels // groups)))
    kernel, stride, dilation, extents = draw(_window(n, max_kernel, max_stride, max_dilation))
    kwargs = dict(in_channels=in_ch, out_channels=out_ch, kernel_size=kernel, stride=stride,
                  dilation=dilation, groups=groups, bias=draw(st.booleans()))
    if kind == "Conv":
        kwargs["padding"] = draw(_padding(n, extents, False, True))
        kwargs["padding_mode"] = draw(st.sampled_from(["zeros", "reflect", "replicate",
                                                       "circular"]))
    else:
        kwargs["output_padding"] = tuple(draw(st.integers(0, max(s, d) - 1))
                                         for s, d in zip(stride, dilation))
        same_ok = all(sym.conv_transpose_same_total(k, s, d, op) >= 0 for k, s, d, op in
                      zip(kernel, stride, dilation, kwargs["output_padding"]))
        kwargs["padding"] = draw(_padding(n, extents, True, same_ok))
    return LAYER_TYPES[f"{kind}{n}d"](**kwargs)


@st.composite
def quantized_layers(draw, ndim=ANY_NDIM, max_channels: int = 4, max_kernel: int = 3,
                     max_stride: int = 3, max_dilation: int = 2) -> Layer:
    """A valid ``QLinearConv*d`` or ``ConvInteger*d``: both 8-bit types, zero points up to
    the types' ends, per-tensor and per-channel weight scales and zero points, scales from
    tiny to large (a fixed-point multiplier below 1), both roundings, every activation."""
    n = draw(ndim)
    groups = draw(st.integers(1, 2))
    in_ch = groups * draw(st.integers(1, max(1, max_channels // groups)))
    out_ch = groups * draw(st.integers(1, max(1, max_channels // groups)))
    kernel, stride, dilation, extents = draw(_window(n, max_kernel, max_stride, max_dilation))
    x_type, w_type = draw(st.sampled_from(QUANT_TYPES)), draw(st.sampled_from(QUANT_TYPES))

    def zero_point(dtype):
        low, high = (-128, 127) if dtype == "int8" else (0, 255)
        return draw(st.one_of(st.sampled_from([low, high, (low + high + 1) // 2]),
                              st.integers(low, high)))

    def per_channel(value):
        return draw(st.one_of(value, st.lists(value, min_size=out_ch, max_size=out_ch)))

    kwargs = dict(in_channels=in_ch, out_channels=out_ch, kernel_size=kernel, stride=stride,
                  dilation=dilation, groups=groups,
                  padding=draw(_padding(n, extents, False, True)), dtype=x_type,
                  weight_dtype=w_type, x_zero_point=zero_point(x_type),
                  w_zero_point=per_channel(st.just(None).map(lambda _: zero_point(w_type))))
    if draw(st.booleans()):
        return LAYER_TYPES[f"ConvInteger{n}d"](**kwargs)
    scale = st.sampled_from([2.0**-12, 0.0007, 0.003, 0.02, 0.1, 0.5])
    x_scale, w_scale = draw(scale), per_channel(scale)
    y_scale = draw(st.sampled_from([0.004, 0.05, 0.3, 2.0, 16.0]))
    rounding = draw(st.sampled_from(["float", "fixed_point"]))
    largest = x_scale * (max(w_scale) if isinstance(w_scale, list) else w_scale)
    if rounding == "fixed_point" and y_scale <= largest:  # a multiplier below 1
        y_scale = 2 * largest
    return LAYER_TYPES[f"QLinearConv{n}d"](
        bias=draw(st.booleans()), x_scale=x_scale, w_scale=w_scale, y_scale=y_scale,
        y_zero_point=zero_point(x_type), rounding=rounding,
        activation=draw(st.sampled_from(["none", "relu", "relu6"])), **kwargs)


@st.composite
def pool_layers(draw, ndim=ANY_NDIM, kinds=POOL_KINDS, max_kernel: int = 4,
                max_stride: int = 3, max_dilation: int = 3) -> Layer:
    """A valid ``MaxPool*d``, ``AvgPool*d`` or ``LPPool*d`` spec."""
    n = draw(ndim)
    kind = draw(st.sampled_from(kinds))
    kernel, stride, dilation, extents = draw(_window(n, max_kernel, max_stride, max_dilation))
    kwargs = dict(kernel_size=kernel, stride=stride, dilation=dilation,
                  padding=draw(_padding(n, extents, True, True)),
                  ceil_mode=draw(st.booleans()))
    if kind == "AvgPool":
        kwargs["count_include_pad"] = draw(st.booleans())
        kwargs["divisor_override"] = draw(st.one_of(st.none(), st.integers(1, 9)))
    if kind == "LPPool":
        kwargs["norm_type"] = draw(st.integers(1, 4))
    if kind == "MaxPool":
        kwargs["return_indices"] = draw(st.booleans())
    return LAYER_TYPES[f"{kind}{n}d"](**kwargs)


@st.composite
def quantized_pools(draw, ndim=ANY_NDIM, max_kernel: int = 4, max_stride: int = 3,
                    max_dilation: int = 3) -> Layer:
    """A valid ``QLinearAvgPool*d`` or ``QLinearGlobalAvgPool``: both 8-bit types, zero
    points up to the types' ends, scales from tiny to large, both roundings (``'integer'``
    keeps the input's quantization), every activation; every window option of the float
    average pool but ``divisor_override``."""
    n = draw(ndim)
    dtype = draw(st.sampled_from(QUANT_TYPES))
    low, high = (-128, 127) if dtype == "int8" else (0, 255)

    def zero_point():
        return draw(st.one_of(st.sampled_from([low, high, (low + high + 1) // 2]),
                              st.integers(low, high)))

    rounding = draw(st.sampled_from(["float", "integer"]))
    scale = st.sampled_from([2.0**-12, 0.0007, 0.003, 0.02, 0.1, 0.5, 3.0])
    x_scale, x_zero_point = draw(scale), zero_point()
    y_scale, y_zero_point = (x_scale, x_zero_point) if rounding == "integer" else \
        (draw(scale), zero_point())
    quant = dict(x_scale=x_scale, x_zero_point=x_zero_point, y_scale=y_scale,
                 y_zero_point=y_zero_point, dtype=dtype, rounding=rounding,
                 activation=draw(st.sampled_from(["none", "relu", "relu6"])))
    if draw(st.integers(0, 3)) == 0:
        return LAYER_TYPES["QLinearGlobalAvgPool"](ndim=n, **quant)
    kernel, stride, dilation, extents = draw(_window(n, max_kernel, max_stride, max_dilation))
    return LAYER_TYPES[f"QLinearAvgPool{n}d"](
        kernel_size=kernel, stride=stride, dilation=dilation,
        padding=draw(_padding(n, extents, True, True)), ceil_mode=draw(st.booleans()),
        count_include_pad=draw(st.booleans()), **quant)


@st.composite
def input_shape_for(draw, layer: Layer, max_extra: int = 6, batch: bool | None = None) -> tuple:
    """An input shape ``(C, *spatial)`` or ``(N, C, *spatial)`` that ``layer`` accepts.

    Spatial sizes start at the smallest the layer allows (the window must fit the padded
    input, reflect/circular padding must fit the input, a dilated pooling window must not
    fall between taps) and grow by at most ``max_extra``.
    """
    convolution = family_of(layer) in ("conv", "conv_transpose", "qconv")
    channels = layer.in_channels if convolution else draw(st.integers(1, 3))
    spatial = []
    for dim in range(layer.ndim):
        spatial.append(_smallest_size(layer, dim) + draw(st.integers(0, max_extra)))
    with_batch = draw(st.booleans()) if batch is None else batch
    head = (draw(st.integers(1, 2)),) if with_batch else ()
    return (*head, channels, *spatial)


def _smallest_size(layer: Layer, dim: int) -> int:
    family = family_of(layer)
    if family == "adaptive_pool":
        return 1
    ext = layer.extents[dim]
    padding = layer.padding
    is_pool = family == "pool"
    if isinstance(padding, str):
        if is_pool:
            return layer.dilation[dim]  # no window between two taps
        return ext if getattr(layer, "padding_mode", "zeros") != "zeros" else 1
    lo, hi = padding[dim]
    if getattr(layer, "ceil_mode", False):  # one partial window is enough in ceil mode
        ext = max(1, ext - layer.stride[dim] + 1)
    if family == "conv_transpose":  # the cropped output must keep a position
        n, args = 1, (layer.kernel_size[dim], layer.stride[dim], layer.dilation[dim], lo, hi,
                      layer.output_padding[dim])
        while sym.conv_transpose_output_size(n, *args) < 1:
            n += 1
        return n
    smallest = max(1, ext - lo - hi)
    mode = getattr(layer, "padding_mode", "zeros")
    if mode == "reflect":
        smallest = max(smallest, lo + 1, hi + 1)
    elif mode == "circular":
        smallest = max(smallest, lo, hi)
    if is_pool and (lo or hi):
        smallest = max(smallest, layer.dilation[dim])  # no window between two taps
    return smallest


@st.composite
def adaptive_layers(draw, ndim=ANY_NDIM, max_output: int = 5) -> Layer:
    """A valid adaptive (average or max) or global pooling spec."""
    n = draw(ndim)
    kind = draw(st.sampled_from([*_ADAPTIVE_KINDS, *_GLOBAL_KINDS]))
    if kind in _GLOBAL_KINDS:
        return LAYER_TYPES[kind](ndim=n)
    cls = LAYER_TYPES[f"{kind}{n}d"]
    size = tuple(draw(st.one_of(st.none(), st.integers(1, max_output))) for _ in range(n))
    extra = {"return_indices": draw(st.booleans())} if cls.reduction == "max" else {}
    return cls(size, **extra)


def with_specials(x, rng):
    """``x`` (a float array, changed in place and returned) with about 5 % of its elements
    replaced by NaN, -0, +0, +inf or -inf: the values that decide ties and NaN handling."""
    import numpy as np

    specials = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf], x.dtype)
    where = rng.random(x.shape) < 0.05
    x[where] = rng.choice(specials, where.sum())
    return x


#: The strategy groups of :func:`layers_with_inputs` (``conv`` covers transposed convolutions,
#: ``adaptive`` the global pools); not :data:`convgen.spec.FAMILIES`, the layers' own tags.
FAMILIES = ("conv", "pool", "adaptive")


@st.composite
def layers_with_inputs(draw, families=("conv", "pool"), ndim=ANY_NDIM):
    """``(layer, input_shape)`` pairs across the requested families (see :data:`FAMILIES`)."""
    family = draw(st.sampled_from(families))
    make = {"conv": conv_layers, "pool": pool_layers, "adaptive": adaptive_layers}[family]
    layer = draw(make(ndim=ndim))
    return layer, draw(input_shape_for(layer))


# --------------------------------------------------------------------------- fast schedules


@st.composite
def blocked_convs(draw):
    """2-D zero-padded convolutions of every option the fast schedules take (up to 40 output
    channels a group: several packed blocks, padding lanes)."""
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 40))
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple((draw(st.integers(0, k - 1)), draw(st.integers(0, k - 1))) for k in kernel)
    spatial = [draw(st.integers((k - 1) * d + 1, (k - 1) * d + 40))
               for k, d in zip(kernel, dilation)]
    layer = LAYER_TYPES["Conv2d"](c_in, c_out, kernel, stride=stride, padding=padding,
                                  dilation=dilation, groups=groups, bias=draw(st.booleans()))
    return layer, (c_in, *spatial)


@st.composite
def blocked_pools(draw):
    """2-D float average and max pools (no indices) with column stride 1, every option,
    wide enough for at least one vector of interior outputs a row."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    options = dict(stride=(draw(st.integers(1, 3)), 1), dilation=dilation,
                   padding=tuple(draw(st.integers(0, k // 2)) for k in kernel),
                   ceil_mode=draw(st.booleans()))
    if draw(st.booleans()):
        layer = LAYER_TYPES["AvgPool2d"](
            kernel, count_include_pad=draw(st.booleans()),
            divisor_override=draw(st.one_of(st.none(), st.integers(1, 9))), **options)
    else:
        layer = LAYER_TYPES["MaxPool2d"](kernel, **options)
    height = draw(st.integers((kernel[0] - 1) * dilation[0] + 1, (kernel[0] - 1) * dilation[0]
                              + 9))
    width = (kernel[1] - 1) * dilation[1] + draw(st.integers(8, 40))
    return layer, (draw(st.integers(1, 3)), height, width)


@st.composite
def winograd_convs(draw):
    """2-D 3x3 stride-1 convolutions of every option the Winograd schedule takes."""
    groups = draw(st.integers(1, 3))
    c_in, c_out = groups * draw(st.integers(1, 12)), groups * draw(st.integers(2, 40))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    spatial = [draw(st.integers(3, 24)), draw(st.integers(3, 40))]
    layer = LAYER_TYPES["Conv2d"](c_in, c_out, 3, padding=padding, groups=groups,
                                  bias=draw(st.booleans()))
    return layer, (c_in, *spatial)


@st.composite
def blocked_adaptive_pools(draw):
    """Float adaptive and global average and max pools without indices, 8 to 21 channels
    (whole vectors and a tail), 1-D to 3-D."""
    layer = draw(adaptive_layers().filter(lambda a: not getattr(a, "return_indices", False)))
    spatial = [draw(st.integers(1, 9)) for _ in range(layer.ndim)]
    return layer, (draw(st.integers(8, 21)), *spatial)
