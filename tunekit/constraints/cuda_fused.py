"""Constraint model of the cuda-fused kernel (DESIGN §4.3): one persistent cooperative kernel.

Tiling (FlashRNN's fused kernel is the prior art; its RECURRENT_TILING_COUNT_GATE/_HIDDEN,
BLOCK_TILING_COUNT_BATCH, WARP_TILING_COUNT_* and WARP_RECURRENT_CACHED_* map onto the variables
below). Per head, R is ``G_r·D x D``; a block owns the rows of all G_r gates of ``hidden_per_block``
hidden units (gates interleaved, so the pointwise step needs no cross-block traffic), a
``k_per_block`` slice of the reduction dim, and ``block_b`` batch columns:

* grid = heads x ceil(D / hidden_per_block) x ceil(D / k_per_block) x ceil(B / block_b), all
  co-resident (grid.sync() once per step, twice with a cross-block reduction);
* ``warps_rows`` x ``warps_k`` warps; each warp loops over its row tiles (m16 mma tiles; the count
  is a resource, fixed by the block rows and warps_rows) and over its k tiles;
* each warp keeps as many of its R tiles in registers as its register budget holds, as mma A
  fragments (4 registers each: 16x16 bf16 or 16x8 tf32 is 512 B per warp), the rest in shared
  memory. That count is derived, not searched: a tile in registers skips a shared-memory read
  every step, so holding fewer is never faster (it is a resource, ``r_tiles_in_registers_per_warp``).

Padding instead of divisibility: block rows round up to whole m tiles (spread over the row warps,
the last ones may hold one tile less), the k slice to whole k steps per warp, D to whole blocks, B
to whole batch tiles; every pad is a resource. hidden_per_block and k_per_block are ``ceil(D / s)``
for one fixed set of split counts s, so for fixed split counts and warps every resource is
non-decreasing in D: feasibility is monotone in D (no FlashRNN-style holes; the tests check it on a
sampled D grid, together with the pruning rules below).

Pruning rules (named constraints, each the reason a configuration is dominated): at least 4 warps
when the block has 4 mma tiles; no idle warps; a k split over warps only with <= 2 row tiles per
warp; a k split over blocks only at the finest row split; at most half of a block's rows padding.

Limits: one block serves one head, and batch blocks replicate R (``block_b`` <= 64), so problems
with many heads or large batch x large D fall back to cuda-alternating.
"""

from __future__ import annotations

from typing import Any

from tunekit.constraints import Space
from tunekit.constraints.occupancy import (
    Limits,
    add_block_limits,
    add_co_residency,
    mma_shape,
)
from tunekit.problem import Problem
from tunekit.solvers import AnyOf, Max, Min, Model, PowersOfTwo, Values, ceil_div, floor_div

__all__ = ["SPLITS_K", "block_tile", "build_model", "row_splits"]

FAMILY = "cuda-fused"
SPLITS_K = (1, 2, 4)  # reduction splits across blocks; each adds a cross-block reduction per step
MAX_BLOCK_B = 64  # batch columns per block: 8 n8 mma tiles; more only multiplies accumulators
# Warps per block: up to 8 along rows (8 warps x 32 threads x 255 registers already fill the 64K
# register file) and up to 8 along k.
MAX_WARPS_ROWS, MAX_WARPS_K = 8, 8
REG_TILE_REGISTERS = 4  # an mma A fragment (512 B per warp) is 4 registers per thread
Y_CHUNK = 256  # y (dg) is staged in shared memory 256 k-rows at a time, double-buffered
# Registers per thread besides R fragments and accumulators: pointwise gates and states of the
# thread's hidden units, y/dg fragment double buffers' addresses, loop counters, grid-sync state
# (assumption after FlashRNN's fused kernel; calibrate against ptxas -v).
OVERHEAD_REGISTERS = 56


def row_splits(gpu: Any) -> tuple[int, ...]:
    """Split counts of the gate x hidden rows: powers of two and the divisors of 1x/2x the SMs.

    Divisors of the SM count let split_rows x split_k fill every SM exactly (108 = 27 x 4 on A100,
    132 = 33 x 4 on H100), which powers of two alone cannot.
    """
    n = gpu.sm_count
    divisors = {d for k in (1, 2) for d in range(1, k * n + 1) if (k * n) % d == 0}
    powers = {1 << i for i in range((2 * n).bit_length())}
    return tuple(sorted(s for s in divisors | powers if s <= 2 * n))


def _per_block(dim: int, splits: tuple[int, ...]) -> list[int]:
    return sorted({-(-dim // s) for s in splits if s <= dim})


def block_tile(direction: str, g_r: int, hidden_per_block, k_per_block) -> tuple:
    """(rows, k) of the product a block computes: forward R·y, backward Rᵀ·dg over the same tile."""
    if direction == "forward":
        return g_r * hidden_per_block, k_per_block
    return hidden_per_block, g_r * k_per_block


def _block(p: Problem, gpu: Any, rows, k, block_b, warps_rows, warps_k, grid) -> dict:
    """Tile geometry, registers and shared memory of one block computing a rows x k product."""
    mm, mn, mk = mma_shape(gpu, p.dtype)
    m_tiles = ceil_div(rows, mm)  # the block's rows padded to whole m tiles
    row_tiles = ceil_div(m_tiles, warps_rows)  # m tiles per warp (the last warps may have one fewer)
    k_tiles = ceil_div(k, mk * warps_k)  # k steps per warp (the k slice padded likewise)
    tiles_per_warp = row_tiles * k_tiles
    n_tiles = ceil_div(block_b, mn)  # n8 tiles of the batch block
    # one row tile's fp32 accumulators at a time (rows are looped), y fragments double-buffered
    other_regs = OVERHEAD_REGISTERS + 4 * n_tiles + 2 * 2 * n_tiles
    # Register budget per thread: the co-resident grid needs ceil(grid / SMs) blocks on some SM, and
    # they share its register file (allocated per warp in units of 256); at most 255 per thread.
    per_sm_needed = ceil_div(grid, gpu.sm_count)
    unit = gpu.register_allocation_unit
    per_warp = floor_div(gpu.registers_per_sm, per_sm_needed * warps_rows * warps_k * unit) * unit
    budget = Min(gpu.max_registers_per_thread, floor_div(per_warp, gpu.warp_size))
    # R tiles in registers: as many as the budget holds (a tile in registers skips a shared-memory
    # read every step, so fewer is never faster); the rest of each warp's tiles live in shared memory
    cap = Max(0, floor_div(budget - other_regs, REG_TILE_REGISTERS))
    in_regs = Min(tiles_per_warp, cap)
    full = Max(0, m_tiles - (row_tiles - 1) * warps_rows)  # warps with row_tiles row tiles, the rest one less
    short = Max(0, row_tiles * warps_rows - m_tiles)
    in_smem = warps_k * (full * Max(0, tiles_per_warp - cap) + short * Max(0, tiles_per_warp - k_tiles - cap))
    rows_pad, k_pad = row_tiles * mm * warps_rows, k_tiles * mk * warps_k
    r_smem = in_smem * mm * mk * p.dtype_bytes
    y_smem = Min(k_pad, 2 * Y_CHUNK) * block_b * p.dtype_bytes  # y (dg) staged in double-buffered chunks
    gates_smem = m_tiles * mm * block_b * 4  # fp32 pre-activations for the interleaved pointwise
    partial_smem = (warps_k - 1) * m_tiles * mm * block_b * 4  # partial sums of the k warps
    return {
        "rows_pad": rows_pad,
        "k_pad": k_pad,
        "m_tiles": m_tiles,
        "row_tiles": row_tiles,
        "tiles_per_warp": tiles_per_warp,
        "in_regs": in_regs,
        "regs": other_regs + REG_TILE_REGISTERS * in_regs,
        "smem": r_smem + y_smem + gates_smem + partial_smem,
    }


def build_model(problem: Problem, gpu: Any) -> Space:
    """The cuda-fused space: R split over blocks (rows, k, batch) and warps (rows, k)."""
    p = problem
    D, B = p.head_dim, p.batch
    mm, mn, mk = mma_shape(gpu, p.dtype)
    m = Model(f"{FAMILY}:{p.cell}-{p.direction}-{p.tag}-{gpu.sm}")
    lim = Limits(m)

    # Variables
    hidden_per_block = m.int_var("hidden_per_block", Values(_per_block(D, row_splits(gpu))))
    k_per_block = m.int_var("k_per_block", Values(_per_block(D, SPLITS_K)))
    block_b = m.int_var("block_b", PowersOfTwo(mn, max(mn, min(MAX_BLOCK_B, 1 << (B - 1).bit_length()))))
    warps_rows = m.int_var("warps_rows", PowersOfTwo(1, MAX_WARPS_ROWS))
    warps_k = m.int_var("warps_k", PowersOfTwo(1, MAX_WARPS_K))

    # Resources (per direction the configuration serves: the backward runs R^T over the same tile)
    split_rows, split_k = ceil_div(D, hidden_per_block), ceil_div(D, k_per_block)
    batch_blocks = ceil_div(B, block_b)
    grid = p.heads * split_rows * split_k * batch_blocks
    warps = warps_rows * warps_k
    blocks = {}
    for d in p.directions:
        rows, k = block_tile(d, p.g_r, hidden_per_block, k_per_block)
        blocks[d] = _block(p, gpu, rows, k, block_b, warps_rows, warps_k, grid) | {"rows": rows, "k": k}

    # Constraints: structural rules first (cheap, so the search rejects most points early)
    first = blocks[p.directions[0]]
    rows_pad, rows = first["rows_pad"], first["rows"]
    hb_min = min(hidden_per_block.domain.values)
    tiles_block = ceil_div(rows, mm) * ceil_div(first["k"], mk)
    m.add("warps_fill_tensor_cores", warps >= Min(4, tiles_block),
          why="an SM has 4 tensor-core sub-partitions, one per scheduler: 4 warps use them all")  # fmt: skip
    m.add("no_idle_row_warps", warps_rows <= first["m_tiles"],
          why=f"a warp along rows needs at least one m{mm} tile of the block's rows")  # fmt: skip
    m.add("no_idle_k_warps", warps_k * mk <= first["k"],
          why=f"a warp along k needs at least one k{mk} mma step of the block's k slice")  # fmt: skip
    m.add("warps_k_for_short_rows", AnyOf(warps_k == 1, first["row_tiles"] <= 2),
          why="a k split over warps adds a shared-memory reduction: only at <= 2 row tiles each")  # fmt: skip
    m.add("split_k_after_rows", AnyOf(k_per_block == D, hidden_per_block == hb_min),
          why="a k split over blocks adds a reduction and grid sync per step: split rows first")  # fmt: skip
    m.add("row_tiles_half_full", AnyOf(rows_pad <= 2 * rows, hidden_per_block == D),
          why=f"more than half of a block's m{mm} tile rows as padding wastes tensor-core work")  # fmt: skip

    # Constraints: resource limits (checked after the cheap structural rules above fail fast)
    per_sm = {}
    for d, b in blocks.items():
        sfx = "" if len(blocks) == 1 else f"_{d}"
        add_block_limits(lim, gpu, warps=warps, regs_per_thread=b["regs"], smem_bytes=b["smem"], suffix=sfx)
        per_sm[d] = add_co_residency(lim, gpu, grid=grid, warps=warps, regs_per_thread=b["regs"],
                                     smem_bytes=b["smem"], cooperative=True, suffix=sfx)  # fmt: skip

    # Objective: least padded tensor-core work per block (cost.estimate ranks further)
    m.minimize(rows_pad * first["k_pad"] * block_b)

    resources: dict = {
        "threads_per_block": warps * gpu.warp_size,
        "blocks": grid,
        "registers_per_thread": Max(*(b["regs"] for b in blocks.values())),
        "shared_memory_bytes_per_block": Max(*(b["smem"] for b in blocks.values())),
        "blocks_per_sm": Min(*per_sm.values()),
        "split_rows": split_rows,
        "split_k": split_k,
        "batch_blocks": batch_blocks,
        "grid_syncs_per_step": Min(split_k, 2),  # a reduction split adds a second sync per step
        "row_tiles_per_warp": first["row_tiles"],
        "r_tiles_per_warp": first["tiles_per_warp"],
        "r_tiles_in_registers_per_warp": first["in_regs"],
        "rows_pad_per_block": rows_pad,
        "k_pad_per_block": first["k_pad"],
        "d_pad": split_rows * hidden_per_block,
        "padding_d": split_rows * hidden_per_block - D,
        "padding_k": split_k * k_per_block - D,
        "b_pad": batch_blocks * block_b,
        "padding_b": batch_blocks * block_b - B,
        "padding_rows_per_block": rows_pad - rows,
    }
    tunables = ("hidden_per_block", "k_per_block", "block_b", "warps_rows", "warps_k")
    return Space(FAMILY, p, gpu, m, tunables, resources, tuple(lim.items))
