"""Spec -> specialized CUDA source text.  Renders templates; never compiles.

Every layer gets a *direct* kernel (one thread per output element of a sample, grid-stride
over the batch) whose per-output work is the same shared template macro, with the same
index expressions, as the C kernel.  Convolutions also get a *tiled* kernel: a block stages
the input tile plus its halo of one input channel, and the taps of a block of output
channels, in ``__shared__`` memory, then each thread accumulates its output position for
that block of channels in registers.

The text is plain CUDA with no ``#include`` and no ``extern "C"`` (PyCUDA adds it).  Global
pointer parameters carry the macro ``CONVGEN_GLOBAL``, 64-bit integers are ``CONVGEN_INT64``
and each kernel states its block size with ``CONVGEN_BLOCK(threads)``; all default to CUDA's
meaning (the last to nothing, so ptxas keeps its own register budget), so an OpenCL prelude
(``templates/cuda/opencl_prelude.cl``) can run the exact same text on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from . import __version__
from . import codegen as cg
from . import symbolic as sym
from .codegen import Access, _loop, _loops
from .errors import SpecError
from .spec import DTYPE_SIZES, Layer

__all__ = ["CUDA_TYPES", "CudaKernel", "Launch", "MAX_GRID_Z", "SHARED_LIMIT",
           "generate_cuda"]

CUDA_TYPES = {"float32": "float", "float64": "double", "int8": "signed char",
              "uint8": "unsigned char"}
#: CUDA's static shared-memory limit per block, which every tiled kernel stays within.
SHARED_LIMIT = 48 * 1024
#: gridDim.z's limit: larger batches are covered by each block looping over the batch.
MAX_GRID_Z = 65535
_MAX_GRID_X = 2**31 - 1
_DIRECT_BLOCK = 256
_TILES = {1: (128,), 2: (8, 16), 3: (4, 4, 8)}
_OC_BLOCK = 8
_MIN_THREADS = 32

_T = sympy.Symbol("t", integer=True, nonnegative=True)          # thread (or element) number
_TILE = sympy.Symbol("tile", integer=True, nonnegative=True)    # blockIdx.x of a tiled kernel
_OB = sympy.Symbol("ob", integer=True, nonnegative=True)        # blockIdx.y: channel block
_J = sympy.Symbol("j", integer=True, nonnegative=True)          # channel within the block
_E = sympy.Symbol("e", integer=True, nonnegative=True)          # staged element
_IC = sympy.Symbol("ic", integer=True, nonnegative=True)
_N = sympy.Symbol("n", integer=True, nonnegative=True)
_BATCH = sympy.Symbol("batch", integer=True, positive=True)


@dataclass(frozen=True)
class Launch:
    """How to launch one entry point: ``block`` threads, and a grid whose z axis covers the
    batch (``min(batch, MAX_GRID_Z)`` blocks; each loops over the rest)."""

    entry: str
    schedule: str           # "direct" or "tiled"
    block: int
    grid_x: int
    grid_y: int
    shared_bytes: int
    note: str

    def grid(self, batch: int) -> tuple[int, int, int]:
        return (self.grid_x, self.grid_y, max(1, min(int(batch), MAX_GRID_Z)))


@dataclass(frozen=True)
class CudaKernel:
    """The ``.cu`` text of one layer and how to launch each of its entry points."""

    name: str
    layer: Layer
    input_shape: tuple
    output_shape: tuple
    dtype: str
    source: str
    arguments: tuple        # x, [w], [b], y, [indices]; then the batch size
    family: str
    launches: tuple         # Launch per entry point; the first is the default
    accesses: tuple = ()    # every array access and thread-position claim, for the proof

    def launch(self, schedule: str | None = None) -> Launch:
        """The entry point of ``schedule`` (``direct`` or ``tiled``), default the first."""
        if schedule is None:
            return self.launches[0]
        for launch in self.launches:
            if launch.schedule == schedule:
                return launch
        raise SpecError(f"{self.name}: schedule={schedule!r} must be one of "
                        f"{', '.join(repr(x.schedule) for x in self.launches)}")


def generate_cuda(layer: Layer, input_shape: Sequence, dtype: str = "float32",
                  name: str | None = None) -> CudaKernel:
    """Render the CUDA kernels of ``layer`` for inputs ``(N, C, *spatial)``."""
    kernel = cg.generate(layer, input_shape, dtype=dtype, name=name)  # validates everything
    sample, out, kind = kernel.input_shape, kernel.output_shape, kernel.family
    context = cg._CONTEXTS[kind](layer, sample, out, dtype)
    context.pop("arguments")
    c_accesses = context.pop("accesses")
    ctype = CUDA_TYPES[dtype]
    context.update(ctype=ctype, i64="CONVGEN_INT64")
    if "acc_type" in context:
        context["acc_type"] = ctype
    params = [f"CONVGEN_GLOBAL const {ctype} *__restrict__ {a}" if a in ("x", "w", "b") else
              f"CONVGEN_GLOBAL CONVGEN_INT64 *__restrict__ {a}" if a == "indices" else
              f"CONVGEN_GLOBAL {ctype} *__restrict__ {a}" for a in kernel.arguments]
    params.append("long batch")

    y_sample = sym.prod(out)
    block = min(_DIRECT_BLOCK, 32 * sym.cdiv(y_sample, 32))
    grid_x = sym.cdiv(y_sample, block)
    if grid_x > _MAX_GRID_X:
        raise SpecError(f"{type(layer).__name__}: {y_sample} outputs per sample need more "
                        f"than {_MAX_GRID_X} blocks of {block} threads")
    channel = "c" if kind.endswith("pool") else "oc"
    axes = ["channel"] + [d["axis"] for d in context["dims"]]
    coordinates = sym.unflatten(_T, list(out))
    names = [channel] + [f"o{i}" for i in range(len(out) - 1)]
    launches = [Launch(f"{kernel.name}_direct", "direct", block, grid_x, 1, 0,
                       "one thread per output element of a sample; grid z strides the batch")]
    accesses = [*(Access(f"thread position {n}", e, size, f"direct: {n} from the thread "
                         "number", (*_loop(_T, y_sample),))
                  for n, e, size in zip(names, coordinates, out)), *c_accesses]
    tiled = _tiled_context(layer, kernel, ctype) if kind == "conv" else None
    if tiled is not None and (tiled["oc_blocks"] > MAX_GRID_Z or tiled["tiles"] > _MAX_GRID_X):
        tiled = None  # more blocks than the grid's x or y axis allows: the direct kernel only
    if tiled is not None:
        launches.insert(0, Launch(f"{kernel.name}_tiled", "tiled", tiled["threads"],
                                  tiled["tiles"], tiled["oc_blocks"], tiled["shared_bytes"],
                                  tiled["note"]))
        accesses += tiled.pop("accesses")
    banner = [f"Generated by convgen {__version__} from templates/cuda/kernel.cu.j2; do not "
              "edit.", f"Layer: {layer.describe()}",
              f"Input (N, {', '.join(map(str, sample))}) -> output (N, "
              f"{', '.join(map(str, out))}), {dtype}, N = batch at run time.",
              "Arrays are dense and C-contiguous; indices (max pooling) are int64 offsets "
              "within each (n, c) input plane.", "Launch (block threads, grid x, y, z):"]
    banner += [f"  {launch.entry}: block ({launch.block}, 1, 1), grid ({launch.grid_x}, "
               f"{launch.grid_y}, min(batch, {MAX_GRID_Z})), {launch.shared_bytes} bytes of "
               f"static shared memory; {launch.note}." for launch in launches]
    source = cg._environment().get_template("cuda/kernel.cu.j2").render(
        name=kernel.name, banner=banner, params=", ".join(params), family=kind,
        y_sample=y_sample, block=block, channel=channel,
        position=[dict(name=n, axis=a, value=cg.ccode(e))
                  for n, a, e in zip(names, axes, coordinates)],
        bias="b" in kernel.arguments, tiled=tiled, **context)
    return CudaKernel(kernel.name, layer, sample, out, dtype, source, kernel.arguments, kind,
                      tuple(launches), tuple(accesses))


def _tile_shape(layer, out, cg_out, size) -> tuple | None:
    """Output tile, output-channel block and shared bytes; ``None`` when no tile of at least
    :data:`_MIN_THREADS` positions (or the whole output, if smaller) fits in shared memory:
    a smaller block would stage a big halo for a few outputs, and the direct kernel wins."""
    tile = [min(t, m) for t, m in zip(_TILES[layer.ndim], out[1:])]
    oc_block = min(_OC_BLOCK, cg_out)
    taps = sym.prod(layer.kernel_size)
    least = min(_MIN_THREADS, sym.prod(out[1:]))

    def shared(tile, oc_block):
        halo = sym.prod(sym.tile_extent(t, k, s, d) for t, k, s, d in
                        zip(tile, layer.kernel_size, layer.stride, layer.dilation))
        return (halo + oc_block * taps) * size

    while shared(tile, oc_block) > SHARED_LIMIT:
        if oc_block > 1 and oc_block * taps * size > SHARED_LIMIT // 4:
            oc_block //= 2  # the taps crowd out the halo: fewer channels first
        elif sym.prod(tile) > least:
            widest = tile.index(max(tile))
            tile[widest] = (tile[widest] + 1) // 2
        elif oc_block > 1:
            oc_block //= 2
        else:
            return None
    if sym.prod(tile) < least:
        return None
    return tuple(tile), oc_block, shared(tile, oc_block)


def _tiled_context(layer, kernel, ctype) -> dict | None:
    """The tiled convolution: what its template prints and what its proof checks."""
    (c_in, *spatial), out = kernel.input_shape, kernel.output_shape
    cg_in, cg_out = c_in // layer.groups, layer.out_channels // layer.groups
    size = DTYPE_SIZES[kernel.dtype]
    chosen = _tile_shape(layer, out, cg_out, size)
    if chosen is None:
        return None
    tile, oc_block, shared_bytes = chosen
    ndim, taps = layer.ndim, sym.prod(layer.kernel_size)
    pads = layer.resolved_padding(spatial)
    tiles_per_axis = [sym.cdiv(m, t) for m, t in zip(out[1:], tile)]
    halo = [sym.tile_extent(t, k, s, d) for t, k, s, d in
            zip(tile, layer.kernel_size, layer.stride, layer.dilation)]
    blocks_per_group = sym.cdiv(cg_out, oc_block)
    zeros = layer.padding_mode == "zeros"

    u = sym.unflatten(_TILE, tiles_per_axis)                  # tile coordinates
    local = sym.unflatten(_T, tile)                           # thread's place in the tile
    e_at = sym.unflatten(_E, halo)                            # staged element's place
    u_s = cg._symbols("u", ndim)
    t_s = cg._symbols("t", ndim)
    e_s = cg._symbols("e", ndim)
    p_s, q_s = cg._symbols("p", ndim, False), cg._symbols("q", ndim, False)
    o_s, k_s = cg._symbols("o", ndim), cg._symbols("k", ndim)
    g = sympy.floor(_OB / blocks_per_group)
    lane = sympy.Mod(_OB, blocks_per_group) * oc_block       # first channel of the block
    g_s = sympy.Symbol("g", integer=True, nonnegative=True)
    lane_s = sympy.Symbol("lane", integer=True, nonnegative=True)
    oc = g_s * cg_out + lane_s + _J
    origin = [sym.tap_index(u_s[i] * tile[i], 0, s, d, lo) for i, (s, d, (lo, _)) in
              enumerate(zip(layer.stride, layer.dilation, pads))]
    load_at = [origin[i] + e_s[i] for i in range(ndim)]
    read_at = [sym.tap_index(t_s[i], k_s[i], s, d, 0) for i, (s, d) in
               enumerate(zip(layer.stride, layer.dilation))]
    active = sympy.And(*[sympy.Lt(o_s[i], m) for i, m in enumerate(out[1:])])
    channel_ok = sympy.Lt(lane_s + _J, cg_out)
    x_source = [p_s[i] if zeros else q_s[i] for i in range(ndim)]
    x_index = sym.flat_index([_N, g_s * cg_in + _IC, *x_source], [None, c_in, *spatial])
    w_index = sym.flat_index([oc, _IC, sympy.Symbol("kk", integer=True, nonnegative=True)],
                             [layer.out_channels, cg_in, taps])
    xs_read = sym.flat_index(read_at, halo)
    ws_read = _J * taps + sym.flat_index(k_s, list(layer.kernel_size))
    y_index = sym.flat_index([_N, oc, *o_s], [None, *out])
    kk = sympy.Symbol("kk", integer=True, nonnegative=True)

    threads, n_tiles = sym.prod(tile), sym.prod(tiles_per_axis)
    block = [*_loop(_T, threads), *_loop(_TILE, n_tiles), *_loop(_OB, layer.groups *
                                                               blocks_per_group),
             sympy.Ge(_BATCH, 1), *_loop(_N, _BATCH), sympy.Eq(g_s, g), sympy.Eq(lane_s, lane),
             *[sympy.Eq(u_s[i], u[i]) for i in range(ndim)],
             *[sympy.Eq(t_s[i], local[i]) for i in range(ndim)],
             *[sympy.Eq(o_s[i], u_s[i] * tile[i] + t_s[i]) for i in range(ndim)]]
    load = [*block, *_loop(_IC, cg_in), *_loop(_E, sym.prod(halo)),
            *[sympy.Eq(e_s[i], e_at[i]) for i in range(ndim)],
            *[sympy.Eq(p_s[i], load_at[i]) for i in range(ndim)]]
    inside = [sym.inside(p_s[i], n) for i, n in enumerate(spatial)]
    padded = [sym.inside_padded(p_s[i], n, lo, hi) for i, (n, (lo, hi)) in
              enumerate(zip(spatial, pads))]
    if zeros:
        load_x = load + inside
    else:  # the last tiles' halo may reach past the padded input, where no output reads
        load_x = load + padded + [sympy.Eq(q_s[i], sym.padded_source(p_s[i], n,
                                                                     layer.padding_mode))
                                  for i, n in enumerate(spatial)]
    weights = [*block, *_loop(_IC, cg_in), *_loop(_E, oc_block * taps),
               sympy.Eq(_J, sympy.floor(_E / taps)), sympy.Eq(kk, sympy.Mod(_E, taps)),
               channel_ok]
    compute = [*block, *_loop(_IC, cg_in), active, *_loop(_J, oc_block),
               *_loops(k_s, layer.kernel_size)]
    store = [*block, active, *_loop(_J, oc_block), channel_ok]
    accesses = [
        Access("x", x_index, _BATCH * sym.prod(kernel.input_shape), "tiled: x, staging the "
               "halo", tuple(load_x)),
        Access("xs", _E, sym.prod(halo), "tiled: xs, staging", tuple(load)),
        Access("w", w_index, sym.prod(layer.weight_shape), "tiled: w, staging",
               tuple(weights)),
        Access("ws", _E, oc_block * taps, "tiled: ws, staging", tuple(
            [*block, *_loop(_IC, cg_in), *_loop(_E, oc_block * taps)])),
        Access("xs", xs_read, sym.prod(halo), "tiled: xs, taps", tuple(compute)),
        Access("ws", ws_read, oc_block * taps, "tiled: ws, taps", tuple(compute)),
        Access("y", y_index, _BATCH * sym.prod(out), "tiled: y", tuple(store))]
    if layer.bias:
        accesses.append(Access("b", oc, layer.out_channels, "tiled: b",
                               tuple([*block, *_loop(_J, oc_block), channel_ok])))
    dims = []
    for i, n in enumerate(spatial):
        dims.append(dict(
            axis=cg._axes(ndim)[i], tile=tile[i], halo=halo[i], kernel=layer.kernel_size[i],
            u=cg.ccode(u[i]), t=cg.ccode(local[i]), e=cg.ccode(e_at[i]),
            o=cg.ccode(u_s[i] * tile[i] + t_s[i]), p=cg.ccode(load_at[i]),
            inside=cg.ccode(sym.inside(p_s[i], n)), inside_padded=cg.ccode(padded[i]),
            source=cg.ccode(sym.padded_source(p_s[i], n, layer.padding_mode)),
            source_reads_p=sympy.sympify(sym.padded_source(p_s[i], n, layer.padding_mode))
            .has(p_s[i])))
    note = (f"tile {' x '.join(map(str, tile))} outputs x {oc_block} output channels per "
            f"block, input tile + halo {' x '.join(map(str, halo))} of one input channel "
            "staged in shared memory")
    return dict(
        accesses=accesses, threads=threads, tiles=n_tiles,
        oc_blocks=layer.groups * blocks_per_group, shared_bytes=shared_bytes, note=note,
        dims=dims, oc_block=oc_block, taps=taps, halo_size=sym.prod(halo), cg_in=cg_in,
        zeros=zeros, padding_mode=layer.padding_mode,
        group=cg.ccode(g), lane=cg.ccode(lane), active=cg.ccode(active),
        channel_ok=cg.ccode(channel_ok), oc=cg.ccode(oc),
        x_index=cg.ccode(x_index), w_index=cg.ccode(w_index), xs_read=cg.ccode(xs_read),
        ws_read=cg.ccode(ws_read), y_index=cg.ccode(y_index),
        weight_j=cg.ccode(sympy.floor(_E / taps)), weight_kk=cg.ccode(sympy.Mod(_E, taps)))
