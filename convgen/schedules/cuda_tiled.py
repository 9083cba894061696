"""CUDA schedule ``tiled`` for convolutions: a block stages the input tile plus its halo of
one input channel, and the taps of a block of output channels, in ``__shared__`` memory; each
thread accumulates its output position for that block of channels in registers.

Quantized convolutions stage four input channels at a time, as the four signed bytes of an
int: x and w shifted into int8 (a uint8 value less 128), the padding as the input's zero
point, a missing fourth channel as 0.  A tap of four channels is then one ``__dp4a`` (four
byte products and the add; emulated by shifts where the architecture lacks it), and the
zero points come out of the exact identity ``sum (a - za)(b - zb) = sum ab - za sum b - zb
sum a + n za zb`` over the ``n`` channel-taps: ``sum a`` is one more ``__dp4a`` a tap with
ones, ``sum b`` a few threads' sum over the staged taps.  The raw sums of int8 products
cannot overflow (the layer's accumulator check bounds ``n`` by ``2**31 / 128**2``); the
identity is evaluated in unsigned arithmetic, whose wrap-around leaves the exact int32
result."""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from .. import isa
from .. import symbolic as sym
from ..lower import BATCH, IC, N, Problem, symbols
from ..printing import ccode
from . import tuning
from .base import Access, Built, Schedule, axes, loop, loops, register

__all__ = ["TiledParams", "applies", "build", "tile_shape"]

_T = sympy.Symbol("t", integer=True, nonnegative=True)          # thread number in the block
_TILE = sympy.Symbol("tile", integer=True, nonnegative=True)    # blockIdx.x: the tile
_OB = sympy.Symbol("ob", integer=True, nonnegative=True)        # blockIdx.y: channel block
_J = sympy.Symbol("j", integer=True, nonnegative=True)          # channel within the block
_E = sympy.Symbol("e", integer=True, nonnegative=True)          # staged element


def applies(problem: Problem) -> str | None:
    """``None`` where a tile of enough outputs fits in shared memory and the grid."""
    if problem.family not in ("conv", "qconv"):
        return "the tiled schedule covers convolutions and quantized convolutions"
    chosen = tile_shape(problem)
    if chosen is None:
        return (f"no tile of at least {tuning.CUDA_MIN_THREADS} output positions (or the "
                f"whole output) fits in {isa.CUDA_SHARED_LIMIT} bytes of shared memory")
    tile, oc_block, _ = chosen
    if problem.family == "qconv" and sym.prod(tile) < oc_block:
        return (f"a tile of {sym.prod(tile)} threads cannot sum the weights of "
                f"{oc_block} output channels (one thread each)")
    tiles = sym.prod(sym.cdiv(m, t) for m, t in zip(problem.out_spatial, tile))
    oc_blocks = problem.groups * sym.cdiv(problem.cg_out, oc_block)
    if oc_blocks > isa.CUDA_MAX_GRID_Z or tiles > isa.CUDA_MAX_GRID_X:
        return (f"{tiles} tiles x {oc_blocks} channel blocks exceed the grid's x or y axis")
    return None


@dataclass(frozen=True)
class TiledDim:
    axis: str
    tile: int
    halo: int
    kernel: int
    u: str
    t: str
    e: str
    o: str
    p: str
    inside: str
    inside_padded: str
    source: str
    source_reads_p: bool


@dataclass(frozen=True)
class TiledParams:
    threads: int
    tiles: int
    oc_blocks: int
    shared_bytes: int
    note: str
    dims: tuple
    oc_block: int
    taps: int
    halo_size: int
    cg_in: int
    zeros: bool
    padding_mode: str
    group: str
    lane: str
    active: str
    channel_ok: str
    oc: str
    x_index: str
    w_index: str
    xs_read: str
    ws_read: str
    y_index: str
    weight_j: str
    weight_kk: str
    quantized: object = None    # QuantTiled for quantized convolutions


@dataclass(frozen=True)
class QuantTiled:
    """The quantized tiled kernel's pieces: four channels a staged int."""

    quads: int          # input channels of a group in fours
    x_byte: str         # x of channel 4 icq + c4, and w of its tap
    w_byte: str
    channel_in: str     # 4 icq + c4 is one of the group's input channels
    x_shift: int        # added to x (and w) to make it int8: -128 for uint8, else 0
    w_shift: int
    x_zero: int         # za: the input's zero point so shifted (zb: w_zero_point + w_shift)
    count: int          # n: the channel-taps an output sums


def tile_shape(problem: Problem) -> tuple | None:
    """Output tile, output-channel block and shared bytes; ``None`` when no tile of at least
    :data:`~convgen.schedules.tuning.CUDA_MIN_THREADS` positions (or the whole output, if
    smaller) fits in shared memory, or when the output clips the starting tile
    (:data:`~convgen.schedules.tuning.CUDA_TILES`) below that many: a smaller block would
    stage a big halo for a few outputs, and the direct kernel wins."""
    layer, out = problem.layer, problem.out
    size = 4 if problem.family == "qconv" else problem.size  # four channels' bytes an int
    tile = [min(t, m) for t, m in zip(tuning.CUDA_TILES[layer.ndim], out[1:])]
    oc_block = min(tuning.CUDA_OC_BLOCK, problem.cg_out)
    taps = sym.prod(layer.kernel_size)
    least = min(tuning.CUDA_MIN_THREADS, sym.prod(out[1:]))

    def shared(tile, oc_block):
        halo = sym.prod(sym.tile_extent(t, k, s, d) for t, k, s, d in
                        zip(tile, layer.kernel_size, layer.stride, layer.dilation))
        return (halo + oc_block * taps) * size + (4 * oc_block if size == 4 and
                                                   problem.family == "qconv" else 0)

    while shared(tile, oc_block) > isa.CUDA_SHARED_LIMIT:
        if oc_block > 1 and oc_block * taps * size > isa.CUDA_SHARED_LIMIT // 4:
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


def build(problem: Problem) -> Built:
    """The tiled convolution: what its template prints and what its proof checks."""
    layer = problem.layer
    (c_in, *spatial), out = problem.sample, problem.out
    cg_in, cg_out = problem.cg_in, problem.cg_out
    tile, oc_block, shared_bytes = tile_shape(problem)
    ndim, taps = layer.ndim, sym.prod(layer.kernel_size)
    pads = problem.padding
    tiles_per_axis = [sym.cdiv(m, t) for m, t in zip(out[1:], tile)]
    halo = [sym.tile_extent(t, k, s, d) for t, k, s, d in
            zip(tile, layer.kernel_size, layer.stride, layer.dilation)]
    blocks_per_group = sym.cdiv(cg_out, oc_block)
    zeros = layer.padding_mode == "zeros"
    quantized = problem.family == "qconv"
    c4 = sympy.Symbol("c4", integer=True, nonnegative=True)  # channel within a staged four
    channels = -(-cg_in // 4) if quantized else cg_in        # what the ``ic`` loop counts
    ic_of = 4 * IC + c4 if quantized else IC                  # the input channel in group

    u = sym.unflatten(_TILE, tiles_per_axis)                  # tile coordinates
    local = sym.unflatten(_T, tile)                           # thread's place in the tile
    e_at = sym.unflatten(_E, halo)                            # staged element's place
    u_s = symbols("u", ndim)
    t_s = symbols("t", ndim)
    e_s = symbols("e", ndim)
    p_s, q_s = symbols("p", ndim, False), symbols("q", ndim, False)
    o_s, k_s = symbols("o", ndim), symbols("k", ndim)
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
    x_index = sym.flat_index([N, g_s * cg_in + ic_of, *x_source], [None, c_in, *spatial])
    w_index = sym.flat_index([oc, ic_of, sympy.Symbol("kk", integer=True, nonnegative=True)],
                             [layer.out_channels, cg_in, taps])
    xs_read = sym.flat_index(read_at, halo)
    ws_read = _J * taps + sym.flat_index(k_s, list(layer.kernel_size))
    y_index = sym.flat_index([N, oc, *o_s], [None, *out])
    kk = sympy.Symbol("kk", integer=True, nonnegative=True)
    # one expression each for the template and the proof: a thread's output position, and
    # the channel and tap of a staged weight
    position = [u_s[i] * tile[i] + t_s[i] for i in range(ndim)]
    weight_j, weight_kk = sympy.floor(_E / taps), sympy.Mod(_E, taps)

    threads, n_tiles = sym.prod(tile), sym.prod(tiles_per_axis)
    block = [*loop(_T, threads), *loop(_TILE, n_tiles), *loop(_OB, layer.groups *
                                                               blocks_per_group),
             sympy.Ge(BATCH, 1), *loop(N, BATCH), sympy.Eq(g_s, g), sympy.Eq(lane_s, lane),
             *[sympy.Eq(u_s[i], u[i]) for i in range(ndim)],
             *[sympy.Eq(t_s[i], local[i]) for i in range(ndim)],
             *[sympy.Eq(o_s[i], position[i]) for i in range(ndim)]]
    load = [*block, *loop(IC, channels), *loop(_E, sym.prod(halo)),
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
    weights = [*block, *loop(IC, channels), *loop(_E, oc_block * taps),
               sympy.Eq(_J, weight_j), sympy.Eq(kk, weight_kk),
               channel_ok]
    if quantized:  # each of the four channels a staged int holds, when the group has it
        four = [*loop(c4, 4), sympy.Lt(ic_of, cg_in)]
        load_x, weights = load_x + four, weights + four
    compute = [*block, *loop(IC, channels), active, *loop(_J, oc_block),
               *loops(k_s, layer.kernel_size)]
    store = [*block, active, *loop(_J, oc_block), channel_ok]
    accesses = [
        Access("x", x_index, BATCH * sym.prod(problem.sample), "tiled: x, staging the "
               "halo", tuple(load_x)),
        Access("xs", _E, sym.prod(halo), "tiled: xs, staging", tuple(load)),
        Access("w", w_index, sym.prod(layer.weight_shape), "tiled: w, staging",
               tuple(weights)),
        Access("ws", _E, oc_block * taps, "tiled: ws, staging", tuple(
            [*block, *loop(IC, channels), *loop(_E, oc_block * taps)])),
        Access("xs", xs_read, sym.prod(halo), "tiled: xs, taps", tuple(compute),
               scratch_read=True),
        Access("ws", ws_read, oc_block * taps, "tiled: ws, taps", tuple(compute),
               scratch_read=True),
        Access("y", y_index, BATCH * sym.prod(out), "tiled: y", tuple(store))]
    if layer.bias:
        accesses.append(Access("b", oc, layer.out_channels, "tiled: b",
                               tuple([*block, *loop(_J, oc_block), channel_ok])))
    quant = None
    if quantized:  # the weight sums: thread t < oc_block sums channel t's staged taps
        summing = [*block, *loop(IC, channels), sympy.Lt(_T, oc_block), *loop(kk, taps)]
        accesses += [
            Access("ws", _T * taps + kk, oc_block * taps, "tiled: ws, summing a channel's "
                   "taps", tuple(summing), scratch_read=True),
            Access("sw", _T, oc_block, "tiled: sw, a channel's weight sum",
                   tuple([*block, sympy.Lt(_T, oc_block)])),
            Access("sw", _J, oc_block, "tiled: sw, read at the store", tuple(store),
                   scratch_read=True)]
        x_shift = -128 if layer.dtype == "uint8" else 0
        w_shift = -128 if layer.weight_dtype == "uint8" else 0
        quant = QuantTiled(
            quads=channels, x_byte=ccode(x_index), w_byte=ccode(w_index),
            channel_in=ccode(sympy.Lt(ic_of, cg_in)), x_shift=x_shift, w_shift=w_shift,
            x_zero=layer.x_zero_point + x_shift, count=taps * cg_in)
    dims = []
    for i, n in enumerate(spatial):
        dims.append(TiledDim(
            axis=axes(ndim)[i], tile=tile[i], halo=halo[i], kernel=layer.kernel_size[i],
            u=ccode(u[i]), t=ccode(local[i]), e=ccode(e_at[i]),
            o=ccode(position[i]), p=ccode(load_at[i]),
            inside=ccode(sym.inside(p_s[i], n)), inside_padded=ccode(padded[i]),
            source=ccode(sym.padded_source(p_s[i], n, layer.padding_mode)),
            source_reads_p=sympy.sympify(sym.padded_source(p_s[i], n, layer.padding_mode))
            .has(p_s[i])))
    note = (f"tile {' x '.join(map(str, tile))} outputs x {oc_block} output channels per "
            f"block, input tile + halo {' x '.join(map(str, halo))} of one input channel "
            "staged in shared memory")
    params = TiledParams(
        threads=threads, tiles=n_tiles,
        oc_blocks=layer.groups * blocks_per_group, shared_bytes=shared_bytes, note=note,
        dims=tuple(dims), oc_block=oc_block, taps=taps, halo_size=sym.prod(halo), cg_in=cg_in,
        zeros=zeros, padding_mode=layer.padding_mode,
        group=ccode(g), lane=ccode(lane), active=ccode(active),
        channel_ok=ccode(channel_ok), oc=ccode(oc),
        x_index=ccode(x_index), w_index=ccode(w_index), xs_read=ccode(xs_read),
        ws_read=ccode(ws_read), y_index=ccode(y_index),
        weight_j=ccode(weight_j), weight_kk=ccode(weight_kk), quantized=quant)
    return Built(params, tuple(accesses))


SCHEDULE = register(Schedule(
    name="tiled", target="cuda", families=("conv", "qconv"), template="cuda/kernel.cu.j2",
    applies=applies, build=build,
    doc="input tile + halo and a block of channels' taps staged in shared memory"))
