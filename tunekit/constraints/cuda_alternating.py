"""Constraint model of the cuda-alternating kernels (DESIGN §4.2): per time step, one batched GEMM
``g = R·y`` per head on tensor cores, then one fused pointwise kernel. No head-dim limit.

GEMM geometry per head (forward): M = G_r·D rows of R (gates stacked), N = batch, K = D; the
backward multiplies Rᵀ (M = D, K = G_r·D) by the gate gradients. A block computes a
``tile_m x tile_n`` tile of g, stepping over K in ``tile_k`` slices that a ``stages``-deep cp.async
pipeline stages in shared memory; its ``warps_m x warps_n`` warps each own a warp tile made of
mma.sync tiles (bf16/fp16 m16n8k16, tf32 m16n8k8 for fp32). M, N and K are padded up to whole
tiles (the pads are reported, never silent). The pointwise kernel runs ``pointwise_threads``
threads per block over the batch x heads x D hidden units.
"""

from __future__ import annotations

from typing import Any

from tunekit.constraints import Space
from tunekit.constraints.occupancy import Limits, add_block_limits, add_co_residency, mma_shape
from tunekit.constraints.triton_fused import next_pow2
from tunekit.problem import Problem
from tunekit.solvers import Divides, Max, Model, PowersOfTwo, Range, Values, ceil_div, round_up

__all__ = ["build_model", "gemm_shapes", "pointwise_block", "registers_per_thread"]

FAMILY = "cuda-alternating"
MAX_TILE = 256  # CUTLASS's largest threadblock tiles on sm_80/sm_90 are 256 wide
MAX_TILE_N = 128  # N is the batch: 128 columns already cover most batches in one or two tiles
MAX_TILE_K = 64  # 64-deep k slices already fill a 128-byte cp.async line per row in bf16
# A k slice row of at least 64 B: four 16-byte cp.async vectors per row; shorter slices waste
# load instructions and pipeline stages (CUTLASS's sm_80 tensor-op GEMMs use 32-64 element slices).
MIN_K_ROW_BYTES = 64
# Warp tiles: splitting M over warps only pays when each warp keeps >= 2 m16 tiles (each B fragment
# feeds two mma), and N likewise with >= 2 n8 tiles (CUTLASS warp tiles are 32x32 up to 64x64).
MIN_WARP_M, MIN_WARP_N = 32, 16
# Output tile area (64 x 64) that separates "small" from "large" GEMM tiles: below it a block re-reads
# R and y too often to reach tensor-core peak, above it fewer blocks than SMs may remain.
TILE_AREA = 64 * 64
# The pointwise kernel is bandwidth-bound: any block of >= 128 threads reaches HBM bandwidth once
# every SM holds a few blocks, so its size is chosen, not searched (a one-value variable, shown
# in the config): the largest that still gives every SM POINTWISE_BLOCKS_PER_SM blocks.
POINTWISE_THREADS = (128, 256, 512)
POINTWISE_BLOCKS_PER_SM = 2
# Registers a GEMM thread needs besides fragments and accumulators: tile pointers, cp.async
# addresses, loop counters and predicates (assumption, typical of CUTLASS sm_80 kernels; calibrate
# against ptxas -v).
GEMM_OVERHEAD_REGISTERS = 40
# The pointwise kernel: one hidden unit per thread, G gates + S states + temporaries live at once
# (assumption; the generated kernels' ptxas -v reports 30-60 registers).
POINTWISE_REGISTERS = 64


def gemm_shapes(problem: Problem) -> dict[str, tuple[int, int, int]]:
    """(M, N, K) of the per-step GEMM of each direction the configuration serves."""
    p = problem
    shapes = {
        "forward": (p.g_r * p.head_dim, p.batch, p.head_dim),
        "backward": (p.head_dim, p.batch, p.g_r * p.head_dim),
    }
    return {d: shapes[d] for d in p.directions}


def registers_per_thread(tile_m, tile_n, warps_m, warps_n, mma: tuple[int, int, int]):
    """Per thread: fp32 accumulators of the warp tile, double-buffered A/B fragments, overhead.

    An mma A fragment (m x k, 16 x 16 bf16 or 16 x 8 tf32) is 512 B = 4 registers per thread;
    a B fragment (k x n) is 256 B = 2 registers; an m x n fp32 accumulator tile is 4 registers.
    """
    mm, mn, _ = mma
    warp_m, warp_n = tile_m // warps_m, tile_n // warps_n
    accumulators = (warp_m // mm) * (warp_n // mn) * 4
    fragments = 2 * (4 * (warp_m // mm) + 2 * (warp_n // mn))  # two k slices in flight
    return GEMM_OVERHEAD_REGISTERS + accumulators + fragments


def pointwise_block(hidden_units: int, gpu: Any) -> int:
    """Threads per pointwise block for ``hidden_units`` = batch x heads x D elements per step."""
    fits = [t for t in POINTWISE_THREADS if -(-hidden_units // t) >= POINTWISE_BLOCKS_PER_SM * gpu.sm_count]
    return max(fits, default=POINTWISE_THREADS[0])


def build_model(problem: Problem, gpu: Any) -> Space:
    """The cuda-alternating space: GEMM tile, warp grid, pipeline stages, pointwise block size."""
    p = problem
    mm, mn, mk = mma_shape(gpu, p.dtype)
    shapes = gemm_shapes(p)
    m_max = max(s[0] for s in shapes.values())
    k_max = max(s[2] for s in shapes.values())
    m = Model(f"{FAMILY}:{p.cell}-{p.direction}-{p.tag}-{gpu.sm}")
    lim = Limits(m)

    # Variables
    tile_m = m.int_var("tile_m", PowersOfTwo(mm, max(mm, min(MAX_TILE, next_pow2(m_max)))))
    tile_n = m.int_var("tile_n", PowersOfTwo(mn, max(mn, min(MAX_TILE_N, next_pow2(p.batch)))))
    k_lo = min(max(mk, MIN_K_ROW_BYTES // p.dtype_bytes), max(mk, next_pow2(k_max)))
    tile_k = m.int_var("tile_k", PowersOfTwo(k_lo, max(k_lo, min(MAX_TILE_K, next_pow2(k_max)))))
    warps_m = m.int_var("warps_m", PowersOfTwo(1, 4))
    warps_n = m.int_var("warps_n", PowersOfTwo(1, 4))
    stages = m.int_var("stages", Range(2, 4))
    pointwise_threads = m.int_var("pointwise_threads", Values([pointwise_block(p.batch * p.hidden, gpu)]))

    # Resources
    warps = warps_m * warps_n
    regs = registers_per_thread(tile_m, tile_n, warps_m, warps_n, (mm, mn, mk))
    shared = stages * (tile_m * tile_k + tile_k * tile_n) * p.dtype_bytes  # A and B slices per stage
    grids = {d: p.heads * ceil_div(M, tile_m) * ceil_div(N, tile_n) for d, (M, N, _) in shapes.items()}
    hidden_units = p.batch * p.hidden
    grid0 = grids[p.directions[0]]

    # Constraints
    m.add("warp_tile_m_mma", Divides(warps_m * mm, tile_m),
          why=f"each warp's rows are whole m{mm} mma.sync tiles ({p.dtype} on tensor cores)")  # fmt: skip
    m.add("warp_tile_n_mma", Divides(warps_n * mn, tile_n),
          why=f"each warp's columns are whole n{mn} mma.sync tiles")  # fmt: skip
    m.add("tile_k_mma", Divides(mk, tile_k), why=f"a k slice is whole k{mk} mma.sync steps")
    m.add("warp_split_m", (warps_m == 1) | (tile_m >= MIN_WARP_M * warps_m),
          why=f"split M over warps only with >= {MIN_WARP_M} rows per warp (B reuse)")  # fmt: skip
    m.add("warp_split_n", (warps_n == 1) | (tile_n >= MIN_WARP_N * warps_n),
          why=f"split N over warps only with >= {MIN_WARP_N} columns per warp (A reuse)")  # fmt: skip
    m.add("small_tiles_fill_sms", (tile_m * tile_n >= TILE_AREA) | (grid0 <= 2 * gpu.sm_count),
          why=f"tiles under {TILE_AREA} outputs re-read R and y often: only to fill SMs")  # fmt: skip
    m.add("large_tiles_fill_sms", (tile_m * tile_n <= TILE_AREA) | (grid0 >= gpu.sm_count),
          why=f"tiles over {TILE_AREA} outputs only while the grid covers {gpu.sm_count} SMs")  # fmt: skip
    add_block_limits(lim, gpu, warps=warps, regs_per_thread=regs, smem_bytes=shared)
    per_sm = add_co_residency(
        lim,
        gpu,
        grid=grids[p.directions[0]],
        warps=warps,
        regs_per_thread=regs,
        smem_bytes=shared,
        cooperative=False,
    )
    k_slices = ceil_div(k_max, tile_k)
    m.add("pipeline_depth", stages <= Max(2, k_slices),
          why="a cp.async pipeline deeper than the K loop only holds empty stages")  # fmt: skip

    pw_blocks = ceil_div(hidden_units, pointwise_threads)

    # Objective: least padded GEMM work (the cost model ranks further)
    m.minimize(
        sum(ceil_div(M, tile_m) * tile_m * ceil_div(N, tile_n) * tile_n for M, N, _ in shapes.values())
    )

    first = p.directions[0]
    M0, N0, K0 = shapes[first]
    resources: dict = {
        "threads_per_block": warps * gpu.warp_size,
        "blocks": grids[first],
        "registers_per_thread": regs,
        "shared_memory_bytes_per_block": shared,
        "blocks_per_sm": per_sm,
        "m_pad": round_up(M0, tile_m),
        "n_pad": round_up(N0, tile_n),
        "k_pad": round_up(K0, tile_k),
        "b_pad": round_up(p.batch, tile_n),
        "padding_b": round_up(p.batch, tile_n) - p.batch,
        "padding_m": round_up(M0, tile_m) - M0,
        "padding_k": round_up(K0, tile_k) - K0,
        "pointwise_threads_per_block": pointwise_threads,
        "pointwise_blocks": pw_blocks,
        "launches_per_step": 2,
    }
    if "backward" in shapes and first != "backward":
        Mb, _, Kb = shapes["backward"]
        resources["blocks_backward"] = grids["backward"]
        resources["padding_m_backward"] = round_up(Mb, tile_m) - Mb
        resources["padding_k_backward"] = round_up(Kb, tile_k) - Kb
    tunables = ("tile_m", "tile_n", "tile_k", "warps_m", "warps_n", "stages", "pointwise_threads")
    return Space(FAMILY, p, gpu, m, tunables, resources, tuple(lim.items))
