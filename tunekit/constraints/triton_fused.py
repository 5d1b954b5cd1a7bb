"""Constraint model of the triton-fused kernel (templates/triton/fused_*.py.j2, DESIGN §4.1).

One program per (head, batch block) keeps the G_r tiles of its head's R (d_pad x d_pad, padded to
the power of two Triton block shapes need) in shared memory for all T steps and runs ``tl.dot``
per gate; the batch block is padded to ``block_b``. Resource formulas come from
``tunekit.constraints.triton_resources`` (calibrated against ahead-of-time compiles); the register
formula is an upper bound, so ``<= 255`` means "compiles without spills".
"""

from __future__ import annotations

from typing import Any

from tunekit.constraints import Space
from tunekit.constraints.occupancy import Limits, add_block_limits, add_co_residency
from tunekit.constraints.triton_resources import triton_fused_registers_per_thread, triton_fused_shared_bytes
from tunekit.problem import Problem
from tunekit.solvers import Max, Model, PowersOfTwo, Range, Values, ceil_div

__all__ = ["build_model", "next_pow2"]

FAMILY = "triton-fused"
MIN_BLOCK_B = 16  # tl.dot needs every operand dimension >= 16 on a GPU


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, (n - 1).bit_length())


def build_model(problem: Problem, gpu: Any) -> Space:
    """The triton-fused space: block_b, num_warps, num_stages, d_pad."""
    p = problem
    m = Model(f"{FAMILY}:{p.cell}-{p.direction}-{p.tag}-{gpu.sm}")
    lim = Limits(m)

    # Variables
    block_b = m.int_var("block_b", PowersOfTwo(MIN_BLOCK_B, max(MIN_BLOCK_B, next_pow2(p.batch))))
    num_warps = m.int_var("num_warps", PowersOfTwo(1, 16))
    num_stages = m.int_var("num_stages", Range(1, 2))
    # Triton block shapes are powers of two: D is padded to one tile (a fixed value, shown in the config)
    d_pad = m.int_var("d_pad", Values([max(16, next_pow2(p.head_dim))]))

    # Resources (one formula per direction the configuration must serve)
    def args(direction: str) -> tuple:
        return (p.g_r, p.n_states, d_pad, block_b, num_warps, num_stages, p.dtype_bytes, direction)

    # sm_90's warpgroup MMA changes what the backward stages in shared memory (triton_resources)
    shared = {d: triton_fused_shared_bytes(*args(d), arch=gpu.arch) for d in p.directions}
    regs = {d: triton_fused_registers_per_thread(*args(d)) for d in p.directions}
    batch_blocks = ceil_div(p.batch, block_b)
    grid = p.heads * batch_blocks

    # Constraints
    per_sm = {}
    for d in p.directions:
        suffix = "" if len(p.directions) == 1 else f"_{d}"
        add_block_limits(
            lim, gpu, warps=num_warps, regs_per_thread=regs[d], smem_bytes=shared[d], suffix=suffix
        )
        per_sm[d] = add_co_residency(lim, gpu, grid=grid, warps=num_warps, regs_per_thread=regs[d],
                                     smem_bytes=shared[d], cooperative=False, suffix=suffix)  # fmt: skip

    # Objective: fewest padded batch rows, then most parallel programs (the cost model ranks further)
    m.minimize(batch_blocks * block_b * 64 - grid)

    worst = p.directions[-1] if len(p.directions) == 1 else "backward"  # the backward holds R and R^T
    resources = {
        "threads_per_block": num_warps * gpu.warp_size,
        "blocks": grid,
        "registers_per_thread": Max(*regs.values()) if len(regs) > 1 else regs[worst],
        "shared_memory_bytes_per_block": Max(*shared.values()) if len(shared) > 1 else shared[worst],
        "blocks_per_sm": per_sm[worst],
        "batch_blocks": batch_blocks,
        "d_pad": d_pad,
        "b_pad": batch_blocks * block_b,
        "padding_d": d_pad - p.head_dim,
        "padding_b": batch_blocks * block_b - p.batch,
    }
    tunables = ("block_b", "num_warps", "num_stages", "d_pad")
    return Space(FAMILY, p, gpu, m, tunables, resources, tuple(lim.items))
