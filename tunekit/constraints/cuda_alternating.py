"""Constraint model of the cuda-alternating kernels (DESIGN §4.2): per time step, one batched GEMM
``g = R·y`` per head on tensor cores, then one fused pointwise kernel. No head-dim limit.

GEMM geometry per head (forward): M = G_r·D rows of R (gates stacked), N = batch, K = D; the
backward multiplies Rᵀ (M = D, K = G_r·D) by the gate gradients. A block computes a
``tile_m x tile_n`` tile of g, stepping over K in ``tile_k`` slices that a ``stages``-deep cp.async
pipeline stages in shared memory; its ``warps_m x warps_n`` warps each own a warp tile made of
mma.sync tiles (bf16/fp16 m16n8k16, tf32 m16n8k8 for fp32). M, N and K are padded up to whole
tiles (the pads are reported, never silent). The pointwise kernel runs ``pointwise_threads``
threads per block over the batch x heads x D hidden units.

Registers: the kernels are compiled with ``__launch_bounds__(threads, blocks_per_sm)``, so ptxas
keeps every thread within the register budget that residency leaves (``occupancy.register_budget``);
``registers_per_thread`` is that budget (ptxas's figure never exceeds it), and the budget must hold
what the GEMM needs without spilling (``registers_needed``). Shared memory is exact: the GEMMs ask
for ``stages`` x (A slice + B slice) of dynamic shared memory and declare no static shared memory.
"""

from __future__ import annotations

from typing import Any

from tunekit.constraints import Space
from tunekit.constraints.occupancy import (
    Limits,
    add_block_limits,
    add_co_residency,
    mma_shape,
    register_budget,
    warps_per_sm_by_registers,
)
from tunekit.intmath import next_pow2
from tunekit.problem import Problem
from tunekit.solvers import (
    Divides,
    Max,
    Min,
    Model,
    PowersOfTwo,
    Range,
    Values,
    ceil_div,
    floor_div,
    round_up,
)

__all__ = [
    "build_model",
    "gemm_shapes",
    "pointwise_block",
    "pointwise_min_blocks",
    "registers_per_thread",
]

FAMILY = "cuda-alternating"
MAX_TILE = 256  # CUTLASS's largest threadblock tiles on sm_80/sm_90 are 256 wide
MAX_TILE_N = 128  # N is the batch: 128 columns already cover most batches in one or two tiles
# k slices of at most one 128-byte line a row (64 bf16/fp16 elements, 32 fp32): deeper slices only
# add k steps in flight (registers) without longer cp.async rows; fp32 slices of 64 spilled
MAX_K_ROW_BYTES = 128
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
# Registers a GEMM thread needs besides fragments and accumulators (tile pointers, cp.async
# addresses, loop counters, predicates). Calibrated with ptxas (CUDA 13.0, sm_80) on the rendered
# kernels, their launch bounds replaced by -maxrregcount = registers_per_thread() rounded up to 8:
# bf16, 30 sampled configurations (tiles 16..256 x 8..128 x 16..64, 1..4 x 1..4 warps, 2..4
# stages): none spills at 40. fp32, 24 configurations (tile_k 8..32): the forward program never
# spills at 40; the backward program needs at most one more fragment set when a slice has 4 tf32
# k steps (TF32_TRANSPOSED_STEPS), e.g. 16x128x32 tile, 1x1 warps: 176 -> 200; 256x32x32, 4x2:
# 112 -> 128; 128x16x32, 2x1: 112 -> 128; with 1..2 k steps nothing more.
GEMM_OVERHEAD_REGISTERS = 40
TF32_TRANSPOSED_STEPS = 4
# The pointwise kernels' register budget: one hidden unit per thread. ptxas -v (CUDA 13.0, sm_80,
# uncapped) on the generated kernels: 26-54 registers for elman, lstm, gru, slstm and the test
# cells mgu and oddmath, forward and backward, fp32 and bf16. Rendered into the kernels' launch
# bounds (pointwise_min_blocks), so a larger user cell spills a little instead of exceeding it.
POINTWISE_REGISTERS = 64
# ptxas's register budget under __launch_bounds__(threads, min_blocks) follows the SM's four
# register-file sub-partitions (occupancy.register_budget). Measured with ptxas (CUDA 13.0, sm_80)
# on a kernel that wants 250 registers, (threads, min_blocks) -> budget: (64, 5) -> 168,
# (96, 5) -> 128, (32, 11) -> 168, (96, 7) -> 80, (128, 5) -> 96, (128, 7) -> 72, (512, 2) -> 64,
# (64, 3) -> 255; a per-SM rule would give 200, 136, 184 and 96 for the first four.


def gemm_shapes(problem: Problem) -> dict[str, tuple[int, int, int]]:
    """(M, N, K) of the per-step GEMM of each direction the configuration serves."""
    p = problem
    shapes = {
        "forward": (p.g_r * p.head_dim, p.batch, p.head_dim),
        "backward": (p.head_dim, p.batch, p.g_r * p.head_dim),
    }
    return {d: shapes[d] for d in p.directions}


def registers_per_thread(
    tile_m, tile_n, warps_m, warps_n, mma: tuple[int, int, int], tile_k=None, tf32_transposed: bool = False
):
    """Registers a GEMM thread needs without spilling: fp32 accumulators of the warp tile,
    double-buffered A/B fragments (the kernel loads step k+1 while step k multiplies), overhead.

    An mma A fragment (m x k, 16 x 16 bf16 or 16 x 8 tf32) is 512 B = 4 registers per thread;
    a B fragment (k x n) is 256 B = 2 registers; an m x n fp32 accumulator tile is 4 registers.
    ``tf32_transposed``: the program has tf32 GEMMs whose operands are read by 32-bit shared loads
    (the backward's R^T, the weight GEMM's dg^T and y: ldmatrix cannot transpose 32-bit words);
    with TF32_TRANSPOSED_STEPS k steps a slice (``tile_k``) ptxas keeps a third fragment set live.
    """
    mm, mn, mk = mma
    warp_m, warp_n = tile_m // warps_m, tile_n // warps_n
    accumulators = (warp_m // mm) * (warp_n // mn) * 4
    one_set = 4 * (warp_m // mm) + 2 * (warp_n // mn)
    fragments = 2 * one_set  # two k steps in flight
    if tf32_transposed:
        fragments = fragments + one_set * Min(1, floor_div(tile_k, TF32_TRANSPOSED_STEPS * mk))
    return GEMM_OVERHEAD_REGISTERS + accumulators + fragments


def pointwise_min_blocks(threads, gpu: Any):
    """Blocks per SM the pointwise kernels' launch bounds ask for: as many as POINTWISE_REGISTERS,
    the warp limit and the block limit allow (the sub-partition rule of occupancy.register_budget)."""
    warps = floor_div(threads, gpu.warp_size)
    warps_by_registers = warps_per_sm_by_registers(POINTWISE_REGISTERS, gpu)
    by_warps = floor_div(gpu.max_warps_per_sm, warps)
    return Min(gpu.max_blocks_per_sm, by_warps, floor_div(warps_by_registers, warps))


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
    k_hi = max(k_lo, min(MAX_K_ROW_BYTES // p.dtype_bytes, next_pow2(k_max)))
    tile_k = m.int_var("tile_k", PowersOfTwo(k_lo, k_hi))
    warps_m = m.int_var("warps_m", PowersOfTwo(1, 4))
    warps_n = m.int_var("warps_n", PowersOfTwo(1, 4))
    stages = m.int_var("stages", Range(2, 4))
    pointwise_threads = m.int_var("pointwise_threads", Values([pointwise_block(p.batch * p.hidden, gpu)]))

    # Resources
    warps = warps_m * warps_n
    tf32_transposed = p.dtype == "float32" and "backward" in p.directions
    regs = registers_per_thread(tile_m, tile_n, warps_m, warps_n, (mm, mn, mk), tile_k, tf32_transposed)
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
    # the GEMMs' launch bounds ask for per_sm blocks: ptxas's budget at that residency must hold them
    budget = register_budget(warps, Max(1, per_sm), gpu)
    m.add("register_budget", regs <= budget,
          why="__launch_bounds__(threads, blocks per SM): ptxas's per-partition register budget must hold "
          "the GEMM's registers, else it spills")  # fmt: skip
    k_slices = ceil_div(k_max, tile_k)
    m.add("pipeline_depth", stages <= Max(2, k_slices),
          why="a cp.async pipeline deeper than the K loop only holds empty stages")  # fmt: skip

    pw_blocks = ceil_div(hidden_units, pointwise_threads)
    pw_min_blocks = pointwise_min_blocks(pointwise_threads, gpu)
    pw_budget = register_budget(floor_div(pointwise_threads, gpu.warp_size), pw_min_blocks, gpu)

    # Objective: least padded GEMM work (the cost model ranks further)
    m.minimize(
        sum(ceil_div(M, tile_m) * tile_m * ceil_div(N, tile_n) * tile_n for M, N, _ in shapes.values())
    )

    first = p.directions[0]
    M0, N0, K0 = shapes[first]
    resources: dict = {
        "threads_per_block": warps * gpu.warp_size,
        "blocks": grids[first],
        "registers_per_thread": budget,  # ptxas stays within it; the GEMM needs registers_needed
        "registers_needed": regs,
        "shared_memory_bytes_per_block": shared,  # dynamic shared memory only (ptxas: 0 static)
        "blocks_per_sm": per_sm,  # the GEMMs' launch bounds
        "m_pad": round_up(M0, tile_m),
        "n_pad": round_up(N0, tile_n),
        "k_pad": round_up(K0, tile_k),
        "b_pad": round_up(p.batch, tile_n),
        "padding_b": round_up(p.batch, tile_n) - p.batch,
        "padding_m": round_up(M0, tile_m) - M0,
        "padding_k": round_up(K0, tile_k) - K0,
        "pointwise_threads_per_block": pointwise_threads,
        "pointwise_blocks": pw_blocks,
        "pointwise_blocks_per_sm": pw_min_blocks,  # the pointwise kernels' launch bounds
        "pointwise_registers_per_thread": pw_budget,
        "pointwise_shared_memory_bytes_per_block": 0,
        "launches_per_step": 2,
    }
    if "backward" in shapes and first != "backward":
        Mb, _, Kb = shapes["backward"]
        resources["blocks_backward"] = grids["backward"]
        resources["padding_m_backward"] = round_up(Mb, tile_m) - Mb
        resources["padding_k_backward"] = round_up(Kb, tile_k) - Kb
    tunables = ("tile_m", "tile_n", "tile_k", "warps_m", "warps_n", "stages", "pointwise_threads")
    return Space(FAMILY, p, gpu, m, tunables, resources, tuple(lim.items))
