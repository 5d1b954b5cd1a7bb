"""Constraint model of the cuda-fused kernel (DESIGN §4.3): one persistent cooperative kernel.

Tiling (FlashRNN's fused kernel is the prior art; its RECURRENT_TILING_COUNT_GATE/_HIDDEN,
BLOCK_TILING_COUNT_BATCH, WARP_TILING_COUNT_* and WARP_RECURRENT_CACHED_* map onto the variables
below). Per head, R is ``G_r·D x D``; a block owns the rows of all G_r gates of ``hidden_per_block``
hidden units (gates interleaved, so the pointwise step needs no cross-block traffic), a
``k_per_block`` slice of the reduction dim, and ``block_b`` batch columns, which it serves in passes
of ``tile_b`` columns (n8 mma tiles) with the same R: a large batch loops inside the block instead
of replicating R over more blocks.

* grid = heads x ceil(D / hidden_per_block) x ceil(D / k_per_block) x ceil(B / block_b) (with
  blocks spanning heads, ceil(heads x D_q / hidden_per_block) along rows), all co-resident
  (grid.sync() once per step, twice with a cross-block reduction);
* ``warps_rows`` x ``warps_k`` warps; per pass, each warp streams y through double-buffered shared
  memory chunks and accumulates all its row tiles (m16 mma tiles) over its k tiles; the k warps add
  their partial sums into the block's fp32 gate buffer in turn;
* each warp keeps as many of its R tiles in registers as its register budget holds, as mma A
  fragments (4 registers each: 16x16 bf16 or 16x8 tf32 is 512 B per warp), the rest in shared
  memory. That count is derived, not searched: a tile in registers skips a shared-memory read
  every step, so holding fewer is never faster (it is a resource, ``r_tiles_in_registers_per_warp``);
* a k group's tiles go to its row warps by whole rows, or dealt evenly in row-major order where
  that leaves fewer tiles in shared memory (the register budget is per thread, so warps short of
  a row leave registers idle); the even deal costs one accumulator row where ranges start
  mid-row. The pair is derived too, not searched (the space is as large as before).

Padding instead of divisibility: block rows round up to whole m tiles (spread over the row warps,
the last ones may hold one tile less), the k slice to whole k steps per warp, D to whole blocks, B
to whole batch tiles; every pad is a resource.

Monotone in D: ``hidden_per_block`` takes values from one D-independent set (the most units that
fill t m tiles, t in ROW_TILE_COUNTS; capped at the first value >= D) and ``k_per_block`` is
``ceil(D / s)`` for a fixed set of split counts s. For fixed tunables every resource (grid, k
slice, tiles per warp, shared memory, the registers the co-resident grid needs) is non-decreasing
in D, so without pruning a configuration feasible at D stays feasible at every D' < D. The
dominance rules below may drop it at D', but only for a finer or cheaper counterpart that holds
less; the tests check monotonicity at every D near the edge and on a grid below it (and offline
at every D from 1 to 4096 on six shapes).

Pruning rules (named constraints, each the reason a configuration is dominated): at least 4 warps
unless another warp would idle; no idle warps; a k split over warps only with <= 2 row tiles per
warp; at most half of a block's rows padding; the finest row split that puts no more blocks on the
busiest SM; a k split over blocks only when R does not fit in registers. Domains: batch passes of
the widest tile or one n8 tile; batch blocks no narrower than the widest pass (no R copies).

:func:`physical_bound` states what any such kernel can hold: R in every SM's register file and
shared memory (raw), less the reserves no kernel avoids (usable); the tests check that every
sampled problem within 88.8% of the usable bound has a configuration (the edges measure
0.888-0.971, median 0.937; the least, L4 GRU bf16, is tile granularity: at D=860 a block of
the 58 needs 12 m tiles of rows and no k split packs them).

Heads: blocks split each head's rows (``span_heads`` = 0), or lay the heads end to end
(``span_heads`` = 1) where that takes fewer blocks: per-head splits leave SMs idle when the SM count
is no multiple of the heads (L4: 58 SMs over 4 heads). A spanning block holds a whole number of
tiles of units (:func:`span_quantum`), at most one head's worth, and stages both heads' y.

The kernel as built (templates/cuda/fused_*.cu.j2, geometry in tunekit/kernels/cuda_fused_plan.py,
which checks every number it shares with this model): a block's rows are unit-major (row
u * G_r + g is gate g of unit u; the backward's Rᵀ has one row a unit and k = (gate, unit),
gate-major); each warp runs its range of tiles chunk by chunk, k step by k step, rows inside, and
holds the first ``r_tiles_in_registers_per_warp`` of them in that order in registers, the rest
in its shared-memory slots (16 B a lane, fragment order). y (the backward's dg) is exchanged
through a zero-padded global buffer laid out so that a chunk is a contiguous copy (cp.async
16 B), in the layer's dtype; the fp32 states (state gradients) are carried in global memory; a k
split's partial sums go through global memory and each of its blocks runs the pointwise step of
a share of the units. ptxas is capped (``__maxnreg__``) at the register budget of the co-resident
grid (``occupancy.register_budget``), the model's bound, not at its estimate
(``registers_per_thread``): ptxas may use what the grid leaves, and an estimate short of ptxas
costs nothing where the budget does not bind. Where it binds (the R tiles beyond the budget are
read from shared memory), an under-count shows as spills in the compile checks
(tests/test_cuda_fused_compile.py, ``tunekit bench cuda-compile``). dR and db are formed after
the backward loop by two small fp32 kernels over the stored step gradients.

Limits: a block never holds more than one whole head, so problems with many heads of small D may
fall back to cuda-alternating when the heads exceed the co-resident grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tunekit.constraints import Space
from tunekit.constraints.occupancy import (
    Limits,
    add_block_limits,
    add_co_residency,
    mma_shape,
    register_budget,
)
from tunekit.problem import Problem
from tunekit.solvers import AllOf, AnyOf, Divides, Max, Min, Model, PowersOfTwo, Values, ceil_div, floor_div

__all__ = [
    "ROW_TILE_COUNTS",
    "SPLITS_K",
    "PhysicalBound",
    "block_tile",
    "build_model",
    "hidden_choices",
    "physical_bound",
    "pointwise_registers",
    "span_quantum",
    "r_bytes",
]

FAMILY = "cuda-fused"
# Reduction splits across blocks; each adds a cross-block reduction and a second grid sync per
# step. Splits of k shrink the atom a block holds (an m tile x k slice), so the R of the last SMs'
# worth of units can be spread evenly: with s = 8 an atom is under 2.5% of an SM at the coverage edge.
SPLITS_K = (1, 2, 3, 4, 6, 8)
# m16 tiles of rows a block may hold: every count up to 24 (the grid-filling choices at the
# coverage edge: ~5-21 tiles per SM on A100/H100 for D near the bound), then by 8 up to 64
# (1024 rows). A block of more than 64 tiles fits an SM only with a k slice under 236 (bf16 on the
# 484 KB of an H100 SM), and every such problem is also served by smaller blocks.
ROW_TILE_COUNTS = (*range(1, 25), 32, 40, 48, 56, 64)
_FINE_TILES, _COARSE_STEP = 24, 8  # ROW_TILE_COUNTS steps by 1 up to 24, then by 8
# Batch columns per pass: 8 n8 mma tiles at most; wider only multiplies accumulators (4 registers
# per n8 tile and row tile) and the y staging, and the block loops over passes instead.
MAX_TILE_B = 64
# Warps per block: up to 8 along rows (8 warps x 32 threads x 255 registers already fill the 64K
# register file) and up to 8 along k.
MAX_WARPS_ROWS, MAX_WARPS_K = 8, 8
REG_TILE_REGISTERS = 4  # an mma A fragment (512 B per warp) is 4 registers per thread
ACC_REGISTERS = 4  # fp32 accumulators of an m16n8 tile: 16 x 8 / 32 lanes
B_FRAG_REGISTERS = 2  # an mma B fragment (k16 x n8 bf16/fp16, k8 x n8 tf32): 2 registers per thread
# y (dg) staged 128 k-rows at a time (8 bf16 / 16 tf32 mma k steps a barrier), double-buffered
Y_CHUNK = 128
# Registers per thread besides R fragments, accumulators (4 per n8 tile and row tile) and
# double-buffered B fragments (2 x 2 per n8 tile) during the mma phase: addresses, loop counters,
# lane/warp ids, grid-sync state. First measured on a probe kernel (mma.sync m16n8k16 bf16 with N R
# fragments in registers, y from shared memory, cooperative grid.sync, one n8 tile; nvcc 13.0
# -Xptxas -v: 250 registers at N = 56 for sm_80, no spills, 26 beyond the fragments), and checked
# on the real kernels (templates/cuda/fused_*.cu.j2): with nvdisasm --print-life-ranges, the mma
# phase of an LSTM forward at D=768 (48 fragment registers, one n8 tile) holds 75-83 registers,
# i.e. 27-35 beyond them with the B fragments of two k steps in flight.
OVERHEAD_REGISTERS = 24
# Registers per thread besides R fragments during the pointwise step (the R fragments stay live,
# the accumulators and B fragments are dead): the cell's inputs (Wx, Ry, b, states of one unit and
# batch column), their addresses, the math functions' temporaries and the IEEE division's slow
# path (tk_sigmoid's 1 / (1 + e^-x) calls it). Measured on the real kernels: the smallest
# __maxnreg__ at which ptxas (nvcc 13.0, sm_80/sm_90) compiles the kernel without spills, less the
# fragment registers, at configurations whose pointwise phase is the peak (nvdisasm life ranges):
# forward LSTM 43-46, GRU 43, sLSTM 44, Elman 30 (D=64 and D=768, bf16 and fp32); backward LSTM
# 44, GRU 40, sLSTM 45, Elman 30 (D=64, bf16). Each entry is the largest measured + 2 (backward
# + 3-4: measured at one shape); a cell not listed (a user's) gets DEFAULT_POINTWISE_REGISTERS.
POINTWISE_REGISTERS = {
    ("lstm", "forward"): 48,
    ("gru", "forward"): 46,
    ("slstm", "forward"): 48,
    ("elman", "forward"): 32,
    ("lstm", "backward"): 48,
    ("gru", "backward"): 44,
    ("slstm", "backward"): 48,
    ("elman", "backward"): 34,
}
DEFAULT_POINTWISE_REGISTERS = 64
# Registers a warp leaves free of R fragments where the budget, not its tile count, limits how many
# it holds (it then streams the rest from shared memory). With fragments filling the budget exactly,
# ptxas (nvcc 13.0) spilled 48-72 B at 255 registers (LSTM bf16 D=1428 on an L4, 8 x 1 warps,
# forward and backward; fp32 D=1040 on an L4). With 12 left free, the tuner's picks at the coverage
# edge of six problems (LSTM bf16 training and fp32 on an L4, 4 heads on an RTX 4090, GRU fp16 on an
# A100, sLSTM bf16 on an L4) compiled without spills at 245-255 registers; with 20, at 234-253.
# 16 keeps one tile of margin over the least that compiled clean.
FRAGMENT_HEADROOM = 16


def pointwise_registers(cell: str, direction: str) -> int:
    """Registers a thread needs besides R fragments during ``cell``'s pointwise step (measured)."""
    return POINTWISE_REGISTERS.get((cell, direction), DEFAULT_POINTWISE_REGISTERS)


def hidden_choices(p: Problem, gpu: Any) -> list[int]:
    """Hidden units per block: the most that fill t m tiles (t in ROW_TILE_COUNTS), up to the first >= D.

    The set does not depend on D (only its cap does), which keeps feasibility monotone in D.
    """
    mm, _, _ = mma_shape(gpu, p.dtype)
    rows_per_unit = p.g_r if p.directions[0] == "forward" else 1
    values = sorted({mm * t // rows_per_unit for t in ROW_TILE_COUNTS} - {0})
    below = [v for v in values if v < p.head_dim]
    above = [v for v in values if v >= p.head_dim][:1]
    return below + above


def span_quantum(p: Problem, gpu: Any) -> int:
    """Hidden units that fill whole m tiles in every direction's block tile.

    A block that spans two heads (``span_heads``) holds the last units of one head and the first of
    the next. Its tiles stay whole only if both boundaries fall between m tiles: each head is padded
    to a multiple of this quantum and a block holds a multiple of it (LSTM forward: 4 units = 16
    rows; Elman 16; GRU 16 units = 48 rows = 3 tiles; with a backward, Rᵀ has one row a unit, so 16).
    """
    mm, _, _ = mma_shape(gpu, p.dtype)
    quantum = 1
    for d in p.directions:
        rows_per_unit = p.g_r if d == "forward" else 1
        quantum = math.lcm(quantum, mm // math.gcd(mm, rows_per_unit))
    return quantum


def block_tile(direction: str, g_r: int, hidden_per_block, k_per_block) -> tuple:
    """(rows, k) of the product a block computes: forward R·y, backward Rᵀ·dg over the same tile."""
    if direction == "forward":
        return g_r * hidden_per_block, k_per_block
    return hidden_per_block, g_r * k_per_block


def _deal(count, per_item, rows_spanned, warps_rows, warps_k, n_tiles, budget, pointwise: int) -> dict:
    """Registers and R tiles of warps dealt ``count`` items of ``per_item`` tiles each, evenly.

    Each of the warps_k groups' warps_rows warps holds tiles_per_warp tiles or per_item fewer, and
    accumulates over ``rows_spanned`` m tiles of rows.
    """
    items = ceil_div(count, warps_rows)
    tiles_per_warp = items * per_item
    # fp32 accumulators of all the rows the warp spans (the k loop runs over y chunks, rows inside),
    # B fragments double-buffered; or, where more, the pointwise step's (the fragments stay live)
    mma = OVERHEAD_REGISTERS + ACC_REGISTERS * n_tiles * rows_spanned + 2 * B_FRAG_REGISTERS * n_tiles
    other_regs = Max(mma, pointwise)
    # R tiles in registers: as many as the budget holds (a tile in registers skips a shared-memory
    # read every step, so fewer is never faster); the rest of each warp's tiles live in shared memory
    cap = Max(0, floor_div(budget - FRAGMENT_HEADROOM - other_regs, REG_TILE_REGISTERS))
    in_regs = Min(tiles_per_warp, cap)
    if isinstance(per_item, int) and per_item == 1:  # counts differ by one tile: one formula, one cap
        in_smem = warps_k * Max(0, count - warps_rows * cap)  # the tiles beyond cap a warp, if any
    else:
        full = Max(0, count - (items - 1) * warps_rows)  # warps with tiles_per_warp tiles
        short = Max(0, items * warps_rows - count)  # warps with per_item tiles fewer
        in_smem = warps_k * (
            full * Max(0, tiles_per_warp - cap) + short * Max(0, tiles_per_warp - per_item - cap)
        )
    return {
        "tiles_per_warp": tiles_per_warp,
        "in_regs": in_regs,
        "in_smem": in_smem,
        "other_regs": other_regs,
    }


def _block(p: Problem, gpu: Any, rows, k, tile_b, warps_rows, warps_k, grid, y_heads, direction: str) -> dict:
    """Tile geometry, registers and shared memory of one block computing a rows x k product.

    ``y_heads``: the heads whose y (dg) the block stages (2 where it spans a head boundary)."""
    pointwise = pointwise_registers(p.cell, direction)
    mm, mn, mk = mma_shape(gpu, p.dtype)
    m_tiles = ceil_div(rows, mm)  # the block's rows padded to whole m tiles
    row_tiles = ceil_div(m_tiles, warps_rows)  # m tiles per warp (the last warps may have one fewer)
    k_tiles = ceil_div(k, mk * warps_k)  # k steps per warp (the k slice padded likewise)
    n_tiles = ceil_div(tile_b, mn)  # n8 tiles of one batch pass
    # Register budget per thread: the co-resident grid needs ceil(grid / SMs) blocks on some SM, and
    # their warps share its four sub-partitions' register files (occupancy.register_budget).
    budget = register_budget(warps_rows * warps_k, ceil_div(grid, gpu.sm_count), gpu)
    # Two ways to deal each k group's m_tiles x k_tiles tiles to its row warps. By rows: a warp
    # holds row_tiles whole rows (the last ones one row less). Evenly, in row-major order: a warp
    # holds tiles_per_warp tiles or one less, over ceil(m_tiles / warps_rows) rows, one more where
    # its range starts inside a row (warps_rows does not divide m_tiles); rows two warps share add
    # into the gate buffer in turn, as k warps do, and a warp's range is a compile-time constant of
    # its code path (the kernel branches once on the warp id). The block takes whichever leaves
    # fewer R tiles in shared memory (by rows on a tie): the register budget is per thread, so
    # warps with fewer tiles than it holds leave registers idle that the even deal fills.
    uneven = Min(1, Max(0, m_tiles - floor_div(m_tiles, warps_rows) * warps_rows))  # warps_rows ∤ m_tiles
    by_rows = _deal(m_tiles, k_tiles, row_tiles, warps_rows, warps_k, n_tiles, budget, pointwise)
    spanned = Min(m_tiles, row_tiles + uneven)
    even = _deal(m_tiles * k_tiles, 1, spanned, warps_rows, warps_k, n_tiles, budget, pointwise)
    # reported per warp: the by-rows deal's counts, upper bounds of the even deal's (fewer tiles, and
    # no more room in registers)
    tiles_per_warp, in_regs = by_rows["tiles_per_warp"], by_rows["in_regs"]
    in_smem = Min(by_rows["in_smem"], even["in_smem"])
    # the deal taken (even only where it leaves strictly fewer tiles in shared memory) and the mma
    # tiles of its busiest warp per pass, which sets the block's tensor-core time
    dealt_even = Min(1, Max(0, by_rows["in_smem"] - even["in_smem"]))
    busiest = dealt_even * even["tiles_per_warp"] + (1 - dealt_even) * by_rows["tiles_per_warp"]
    # Registers: an upper bound of the chosen deal's that stays within the budget wherever it fits.
    # Either deal needs its other registers plus 4 a tile it holds in registers, up to the budget;
    # the even deal's other registers exceed the by-rows deal's by one accumulator row at most,
    # and it holds no more tiles; and it is chosen only where it holds tiles in registers at all.
    other = by_rows["other_regs"]
    regs = Max(
        other,
        Min(
            budget - FRAGMENT_HEADROOM,
            other + ACC_REGISTERS * n_tiles * uneven + REG_TILE_REGISTERS * row_tiles * k_tiles,
        ),
    )
    rows_pad, k_pad = row_tiles * mm * warps_rows, k_tiles * mk * warps_k
    r_smem = in_smem * mm * mk * p.dtype_bytes
    # y (dg) of one pass staged in double-buffered chunks of Y_CHUNK k-rows, of each head it serves
    # (a chunk holds the same k-rows of both heads, so every warp has work at every barrier)
    y_smem = y_heads * Min(k_pad, 2 * Y_CHUNK) * tile_b * p.dtype_bytes
    # fp32 pre-activations of one pass for the interleaved pointwise; the k warps add into it in turn.
    # It shares the y buffers: it is written after the pass's last y chunk is consumed, and the next
    # y chunk (next pass, or next step after the grid sync) is staged after the pointwise read it.
    gates_smem = m_tiles * mm * tile_b * 4
    return {
        "rows_pad": rows_pad,
        "k_pad": k_pad,
        "m_tiles": m_tiles,
        "busiest_tiles": busiest,
        "row_tiles": row_tiles,
        "tiles_per_warp": tiles_per_warp,
        "in_regs": in_regs,
        "regs": regs,
        "smem": r_smem + Max(y_smem, gates_smem),
        "r_smem": r_smem,
    }


def build_model(problem: Problem, gpu: Any) -> Space:
    """The cuda-fused space: R split over blocks (rows, k, batch) and warps (rows, k)."""
    p = problem
    D, B = p.head_dim, p.batch
    mm, mn, mk = mma_shape(gpu, p.dtype)
    m = Model(f"{FAMILY}:{p.cell}-{p.direction}-{p.tag}-{gpu.sm}")
    lim = Limits(m)

    # Variables
    hidden_per_block = m.int_var("hidden_per_block", Values(hidden_choices(p, gpu)))
    k_per_block = m.int_var("k_per_block", Values(sorted({-(-D // s) for s in SPLITS_K if s <= D})))
    b_cap = max(mn, 1 << (B - 1).bit_length())  # the smallest power of two >= B
    widest = min(b_cap, MAX_TILE_B)
    # Batch blocks no narrower than the widest pass: a batch block replicates R on more SMs, and a
    # finer row split gives the same parallelism without copies.
    block_b = m.int_var("block_b", PowersOfTwo(widest, b_cap))
    # Passes of the widest tile (R in shared memory re-read least) or of one n8 tile (the most
    # registers and the least y staging left for R); widths between trade one for the other at a loss.
    tile_b = m.int_var("tile_b", Values(sorted({mn, widest})))
    warps_rows = m.int_var("warps_rows", PowersOfTwo(1, MAX_WARPS_ROWS))
    warps_k = m.int_var("warps_k", PowersOfTwo(1, MAX_WARPS_K))
    # Blocks along rows per head (0), or over the heads laid end to end (1): with several heads the
    # per-head split leaves SMs idle (L4: 58 SMs, 4 heads of 14 blocks), spanning fills them.
    quantum = span_quantum(p, gpu)
    span_heads = m.int_var("span_heads", Values([0, 1] if p.heads > 1 else [0]))
    D_q = -(-D // quantum) * quantum  # a head padded to whole tiles of units where blocks span heads

    # Resources (per direction the configuration serves: the backward runs R^T over the same tile)
    # one head: span is the constant 0 and every formula below folds to its per-head form
    span = span_heads if p.heads > 1 else 0

    def row_blocks(u):
        """Blocks along rows over all heads for blocks of ``u`` units (u < D where spanning)."""
        blocks = (1 - span) * p.heads * ceil_div(D, u) + span * ceil_div(p.heads * D_q, u)
        # one of the two terms is 0; Max(1, .) only tells interval arithmetic the sum is >= 1
        return blocks if p.heads == 1 else Max(1, blocks)

    # the capped choice >= D is one block of all D units; a spanning block holds u < D_q units
    units = Min(hidden_per_block, D + span * p.heads * D_q)
    split_rows, split_k = ceil_div(D, units), ceil_div(D, k_per_block)
    batch_blocks = ceil_div(B, block_b)
    batch_passes = ceil_div(Min(B, block_b), tile_b)  # passes of tile_b columns over the block's batch
    n_row_blocks = row_blocks(hidden_per_block)
    grid = n_row_blocks * split_k * batch_blocks
    warps = warps_rows * warps_k
    blocks = {}
    for d in p.directions:
        rows, k = block_tile(d, p.g_r, units, k_per_block)
        blocks[d] = _block(p, gpu, rows, k, tile_b, warps_rows, warps_k, grid, 1 + span, d)
        blocks[d] |= {"rows": rows, "k": k}

    # Constraints: structural rules first (cheap, so the search rejects most points early)
    first = blocks[p.directions[0]]
    rows_pad, rows = first["rows_pad"], first["rows"]
    # the next finer row split: t - 1 m tiles (t - 8 above _FINE_TILES, ROW_TILE_COUNTS' step)
    rows_per_unit = p.g_r if p.directions[0] == "forward" else 1
    t = ceil_div(rows_per_unit * hidden_per_block, mm)
    t_finer = t - 1 - (_COARSE_STEP - 1) * Min(1, Max(0, t - _FINE_TILES))
    finer_grid = row_blocks(Max(1, floor_div(mm * t_finer, rows_per_unit))) * split_k * batch_blocks
    busiest, finer_busiest = ceil_div(grid, gpu.sm_count), ceil_div(finer_grid, gpu.sm_count)
    m.add("row_split_as_fine_as_free", AnyOf(t == 1, finer_busiest > busiest),
          why="a finer row split with as many blocks on the busiest SM does less work per SM and holds "
          "less R per block: a coarser one stays only where the finer one adds a block to an SM")  # fmt: skip
    if p.heads > 1:
        per_head_blocks = p.heads * ceil_div(D, hidden_per_block)
        m.add("span_heads_saves_blocks", AnyOf(span_heads == 0, n_row_blocks < per_head_blocks),
              why="a block spanning two heads stages both heads' y: worth it only where laying the heads "
              "end to end takes fewer blocks than splitting each head")  # fmt: skip
        m.add("span_heads_at_most_two", AnyOf(span_heads == 0, hidden_per_block <= D_q),
              why="a spanning block holds at most one head's units: it meets two heads at most")  # fmt: skip
        m.add("span_heads_whole_tiles", AnyOf(span_heads == 0, Divides(quantum, hidden_per_block)),
              why=f"head and block boundaries fall between m{mm} tiles only where a block holds whole "
              f"tiles of units ({quantum} units a tile)")  # fmt: skip
    m.add("k_split_only_for_capacity", AnyOf(split_k == 1, first["r_smem"] > 0),
          why="a k split over blocks adds a reduction and a second grid sync per step (~1.5 us): worth it "
          "only when R does not fit the registers of the row-split grid")  # fmt: skip
    no_more_warps = AllOf(2 * warps_rows > first["m_tiles"], 2 * warps_k * mk > first["k"])
    m.add("warps_fill_tensor_cores", AnyOf(warps >= 4, no_more_warps),
          why="an SM has 4 tensor-core sub-partitions, one per scheduler: 4 warps use them all "
          "(fewer only where another warp along rows or k would be idle)")  # fmt: skip
    m.add("no_idle_row_warps", warps_rows <= first["m_tiles"],
          why=f"a warp along rows needs at least one m{mm} tile of the block's rows")  # fmt: skip
    m.add("no_idle_k_warps", AnyOf(warps_k == 1, warps_k * mk <= first["k"]),
          why=f"a warp along k needs at least one k{mk} mma step of the block's k slice")  # fmt: skip
    m.add("warps_k_for_short_rows", AnyOf(warps_k == 1, first["row_tiles"] <= 2),
          why="a k split over warps adds a shared-memory reduction: only at <= 2 row tiles each")  # fmt: skip
    m.add("row_tiles_half_full", AnyOf(rows_pad <= 2 * rows, hidden_per_block >= D),
          why=f"more than half of a block's m{mm} tile rows as padding wastes tensor-core work")  # fmt: skip

    # Constraints: resource limits (checked after the cheap structural rules above fail fast)
    per_sm = {}
    for d, b in blocks.items():
        sfx = "" if len(blocks) == 1 else f"_{d}"
        add_block_limits(lim, gpu, warps=warps, regs_per_thread=b["regs"], smem_bytes=b["smem"], suffix=sfx)
        per_sm[d] = add_co_residency(lim, gpu, grid=grid, warps=warps, regs_per_thread=b["regs"],
                                     smem_bytes=b["smem"], cooperative=True, suffix=sfx)  # fmt: skip

    d_pad = (1 - span) * split_rows * units + span * D_q

    # Objective: least padded tensor-core work per block (cost.estimate ranks further)
    m.minimize(rows_pad * first["k_pad"] * batch_passes * tile_b)

    resources: dict = {
        "threads_per_block": warps * gpu.warp_size,
        "blocks": grid,
        "row_blocks": n_row_blocks,
        "registers_per_thread": Max(*(b["regs"] for b in blocks.values())),
        "shared_memory_bytes_per_block": Max(*(b["smem"] for b in blocks.values())),
        "blocks_per_sm": Min(*per_sm.values()),
        "split_rows": split_rows,
        "split_k": split_k,
        "batch_blocks": batch_blocks,
        "batch_passes": batch_passes,
        "grid_syncs_per_step": Min(split_k, 2),  # a reduction split adds a second sync per step
        "row_tiles_per_warp": first["row_tiles"],
        "r_tiles_per_warp": first["tiles_per_warp"],
        "r_tiles_in_registers_per_warp": first["in_regs"],
        "rows_pad_per_block": first["m_tiles"] * mm,  # the block's rows in whole m tiles
        "mma_tiles_per_warp": first["busiest_tiles"],  # the busiest warp's, per batch pass
        "k_pad_per_block": first["k_pad"],
        # per head: D rounded up to whole blocks, or to whole tiles where blocks span heads
        "d_pad": d_pad,
        "padding_d": d_pad - D,
        # over all heads, the tail of the last spanning block included
        "padding_units": n_row_blocks * units - p.heads * D,
        "padding_k": split_k * k_per_block - D,
        "b_pad": batch_blocks * block_b,
        "padding_b": batch_blocks * block_b - B,
        "padding_rows_per_block": first["m_tiles"] * mm - rows,
    }
    # each direction's kernel apart (the runtime's predicted(config, entry) reads these)
    for d, b in blocks.items():
        resources[f"registers_per_thread_{d}"] = b["regs"]
        resources[f"shared_memory_bytes_per_block_{d}"] = b["smem"]
    tunables = ("hidden_per_block", "k_per_block", "block_b", "tile_b", "warps_rows", "warps_k", "span_heads")
    return Space(FAMILY, p, gpu, m, tunables, resources, tuple(lim.items))


@dataclass(frozen=True)
class PhysicalBound:
    """How many bytes of R (summed over heads) any cuda-fused kernel could hold on a GPU.

    ``raw``: every SM's register file plus its shared memory. ``usable``: the same less the
    reserves no such kernel avoids, each named in ``reserves`` (bytes per SM).
    """

    raw: int
    usable: int
    reserves: dict[str, int]


def physical_bound(problem: Problem, gpu: Any) -> PhysicalBound:
    """Raw and usable on-chip bytes for R of ``problem`` on ``gpu`` (compare with ``problem`` R bytes).

    Usable, per SM (one block per SM, the layout that leaves most room for R):

    * registers: the warps that can hold 255 registers each fill the file (8 warps of 32 threads
      with 64K registers); each thread keeps OVERHEAD_REGISTERS for addresses and loop state, 4
      accumulators of one n8 tile and 2 x 2 registers of double-buffered B fragments, or the cell's
      POINTWISE_REGISTERS where more, plus the FRAGMENT_HEADROOM ptxas needs when the rest of R is
      streamed from shared memory, and holds R only in whole 4-register mma A fragments;
    * shared memory: less the 1 KB the runtime reserves per block and one pass of y for one n8
      column tile, double-buffered in chunks of Y_CHUNK k-rows.
    """
    _, mn, _ = mma_shape(gpu, problem.dtype)
    mma_reserve = OVERHEAD_REGISTERS + ACC_REGISTERS + 2 * B_FRAG_REGISTERS
    per_thread_reserve = FRAGMENT_HEADROOM + max(
        mma_reserve, *(pointwise_registers(problem.cell, d) for d in problem.directions)
    )
    best_regs = 0
    warps = 1
    while warps * gpu.warp_size <= gpu.max_threads_per_block:
        per_thread = register_budget(warps, 1, gpu)
        fragments = max(0, per_thread - per_thread_reserve) // REG_TILE_REGISTERS
        best_regs = max(best_regs, warps * gpu.warp_size * fragments * REG_TILE_REGISTERS * 4)
        warps *= 2
    register_file = gpu.registers_per_sm * 4  # 32-bit registers
    y_stage = min(problem.head_dim, 2 * Y_CHUNK) * mn * problem.dtype_bytes
    reserves = {
        "registers_overhead_accumulators_fragments": register_file - best_regs,
        "shared_memory_reserved_per_block": gpu.shared_memory_reserved_per_block,
        "y_staging": y_stage,
    }
    raw_per_sm = register_file + gpu.shared_memory_per_sm
    usable_per_sm = raw_per_sm - sum(reserves.values())
    return PhysicalBound(gpu.sm_count * raw_per_sm, gpu.sm_count * usable_per_sm, reserves)


def r_bytes(problem: Problem) -> int:
    """Bytes of R over all heads: G_r x N x D x D elements of the layer's dtype."""
    return problem.g_r * problem.heads * problem.head_dim**2 * problem.dtype_bytes
