"""Pictures of operators: the structure of a layer's Toeplitz matrix.

Needs matplotlib (the ``plot`` extra); nothing else in convgen imports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import symbolic as sym
from .errors import ConvgenError
from .spec import Layer
from .toeplitz import check_size, entries, is_linear, structure

__all__ = ["MAX_PIXELS", "PLOT_LIMIT", "plot_toeplitz", "toeplitz_figure"]

MAX_PIXELS = 1200  # per side; larger matrices are binned

#: Most operator entries a picture materializes: the entries and the binning's temporaries
#: take about 48 bytes each (1 GB here); the picture of a larger operator is refused up front.
PLOT_LIMIT = 20_000_000


def _binned(rows, cols, keys, shape):
    """Image of the matrix, at most MAX_PIXELS per side: key + 1 per pixel, 0 for zero."""
    scale = max(1, -(-max(shape) // MAX_PIXELS))
    size = (-(-shape[0] // scale), -(-shape[1] // scale))
    image = np.zeros(size, dtype=np.int64)
    image[rows // scale, cols // scale] = keys + 1
    return image, scale


def plot_toeplitz(layer: Layer, input_shape: Sequence, path: str | Path) -> Path:
    """Draw ``layer``'s matrix for ``input_shape`` into a PNG at ``path``
    (:func:`toeplitz_figure`)."""
    plt = _pyplot()
    figure = toeplitz_figure(layer, input_shape)
    path = Path(path)
    try:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ConvgenError("--plot needs matplotlib: pip install 'convgen[plot]'") from error
    return plt


def toeplitz_figure(layer: Layer, input_shape: Sequence):
    """A matplotlib figure of ``layer``'s matrix for ``input_shape`` (close it when done).

    Each nonzero is coloured by the weight it holds (its flat index in PyTorch's weight
    layout; for average pooling, by its divisor); white is zero.  Grey lines separate the
    blocks of each (output channel, input channel) pair.  Axes and colour bar tick whole
    numbers only: both are indices (or divisors).  Matrices wider than :data:`MAX_PIXELS` are
    binned, and the title says by how much.
    """
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    if not is_linear(layer):
        raise ConvgenError(f"{type(layer).__name__} is not linear: it has no matrix to draw")
    check_size(layer, input_shape, PLOT_LIMIT, "its picture", 48,
               "draw it for a smaller input shape; structure() works at any size")
    ops = entries(layer, input_shape)
    image, scale = _binned(ops.rows, ops.cols, ops.keys, ops.shape)
    figure, axes = plt.subplots(figsize=(8, 8 * min(2.0, max(0.25, image.shape[0] /
                                                              image.shape[1]))))
    masked = np.ma.masked_array(image - 1, mask=image == 0)  # the key itself; zero is white
    colours = plt.get_cmap("turbo").with_extremes(bad="white")
    # Index i is the cell [i - 1/2, i + 1/2), so an integer tick sits on its centre.
    shown = axes.imshow(masked, cmap=colours, interpolation="nearest", aspect="auto",
                        extent=(-0.5, ops.shape[1] - 0.5, ops.shape[0] - 0.5, -0.5))
    out_block = sym.prod(layer.output_shape(input_shape)[-layer.ndim:])
    in_block = ops.shape[1] // layer.split_input(input_shape).channels
    for row in range(out_block, ops.shape[0], out_block):
        axes.axhline(row - 0.5, color="0.6", linewidth=0.6)
    for col in range(in_block, ops.shape[1], in_block):
        axes.axvline(col - 0.5, color="0.6", linewidth=0.6)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    label = "divisor" if ops.kind == "divisor" else "weight index (PyTorch layout)"
    figure.colorbar(shown, ax=axes, label=label, shrink=0.8,
                    ticks=MaxNLocator(integer=True))
    binned = f", binned {scale}x{scale}" if scale > 1 else ""
    axes.set_title(f"{layer.describe()} on {tuple(input_shape)}\n"
                   f"{structure(layer, input_shape)}{binned}", fontsize=9)
    axes.set_xlabel("input index (C order of (C, *spatial))")
    axes.set_ylabel("output index (C order of (C, *spatial))")
    return figure
