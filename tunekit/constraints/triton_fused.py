"""Constraint model of the triton-fused kernel (templates/triton/fused_*.py.j2, DESIGN §4.1).

One program per (head, batch block) keeps the G_r tiles of its head's R (d_pad x d_pad, padded to
the power of two Triton block shapes need) in shared memory for all T steps and runs ``tl.dot``
per gate; the batch block is padded to ``block_b``. fp32 layers run their products on tf32 tensor
cores (``tf32`` = 1, as cuDNN's RNNs under PyTorch's defaults); 16-bit layers that train choose
the backward's form (``r_once``: one copy of R in shared memory, or the rows form with fewer
registers, tunekit.constraints.triton_kernel.backward_dot_forms).

Registers and shared memory are what ptxas and Triton reported for the configuration where the
measured table has it (tunekit.constraints.triton_registers), else the formulas of
tunekit.constraints.triton_resources: shared memory exact or above the compiler, registers a
conservative bound. Every kernel is compiled with ``maxnreg`` = the block's register cap, so
"registers <= cap" means "compiles without spills".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tunekit.cells import get_cell
from tunekit.constraints import Space
from tunekit.constraints.occupancy import Limits, add_block_limits, add_co_residency
from tunekit.constraints.triton_kernel import kernel_head_dim, register_cap
from tunekit.constraints.triton_registers import bound_margin, measured, override
from tunekit.constraints.triton_resources import (
    DTYPE_BYTES_OF,
    IntLike,
    triton_fused_registers_per_thread,
    triton_fused_shared_bytes,
)
from tunekit.problem import Problem
from tunekit.solvers import Max, Model, PowersOfTwo, Range, Values, ceil_div

__all__ = ["build_model", "next_pow2"]

FAMILY = "triton-fused"
MIN_BLOCK_B = 16  # tl.dot needs every operand dimension >= 16 on a GPU


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << max(0, (n - 1).bit_length())


def build_model(problem: Problem, gpu: Any) -> Space:
    """The triton-fused space: block_b, num_warps, num_stages, d_pad, r_once, tf32."""
    p = problem
    m = Model(f"{FAMILY}:{p.cell}-{p.direction}-{p.tag}-{gpu.sm}")
    lim = Limits(m)
    fp32 = p.dtype_bytes == 4
    d_run = kernel_head_dim(p.head_dim)  # the D the kernels run with (rows 16-byte aligned)
    tile = max(16, next_pow2(d_run))

    # Variables
    block_b = m.int_var("block_b", PowersOfTwo(MIN_BLOCK_B, max(MIN_BLOCK_B, next_pow2(p.batch))))
    num_warps = m.int_var("num_warps", PowersOfTwo(1, 16))
    num_stages = m.int_var("num_stages", Range(1, 2))
    # Triton block shapes are powers of two: D is padded to one tile (a fixed value, shown in the config)
    d_pad = m.int_var("d_pad", Values([tile]))
    # the backward's form; fp32 keeps two copies of R whatever the form, a forward has none
    r_once = m.int_var("r_once", Values([0, 1] if "backward" in p.directions and not fp32 else [0]))
    m.int_var("tf32", Values([1 if fp32 else 0]))  # fp32 products on tf32 tensor cores
    variables = {"block_b": block_b, "num_warps": num_warps, "num_stages": num_stages, "r_once": r_once}

    # Resources (one formula per direction the configuration must serve), measured where measured
    shared, regs = {}, {}
    for d in p.directions:
        regs[d], shared[d] = kernel_resources(p.cell, d, p.dtype, d_run, variables, gpu)
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

    worst = p.directions[-1]  # the backward holds more than the forward
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
        "host_padding_d": d_run - p.head_dim,  # lanes the runtime pads on copies (rows 16-byte aligned)
        "r_once": r_once,
    }
    tunables = ("block_b", "num_warps", "num_stages", "d_pad", "r_once", "tf32")
    return Space(FAMILY, p, gpu, m, tunables, resources, tuple(lim.items))


def kernel_resources(
    cell_name: str,
    role: str,
    dtype: str,
    d_run: int,
    variables: Mapping[str, IntLike],
    gpu: Any,
    use_table: bool = True,
) -> tuple[IntLike, IntLike]:
    """(registers per thread, shared bytes) of one kernel: measured where the table has the point,
    else the bound (plus the kernel's margin, :func:`tunekit.constraints.triton_registers.bound_margin`)
    and the formula. ``variables`` maps block_b, num_warps, num_stages, r_once to
    solver variables or ints; ``d_run`` is the D the kernel runs with (kernel_head_dim);
    ``use_table`` False gives the formulas alone."""
    cell = get_cell(cell_name)
    tile = max(16, next_pow2(d_run))
    g_r, size = len(cell.r_gates), DTYPE_BYTES_OF[dtype]
    v = variables
    form = v["r_once"] if role == "backward" else 0
    args = (g_r, len(cell.states), tile, v["block_b"], v["num_warps"], v["num_stages"], size, role)
    extra = {"grad_states": len(cell.states) - len(cell.no_grad_states), "w_gates": len(cell.w_gates)}
    shared = triton_fused_shared_bytes(*args, arch=gpu.arch, r_once=form, **extra)
    regs = triton_fused_registers_per_thread(*args)
    if not use_table:
        return regs, shared
    # where ptxas has not been asked: the bound plus how far it fell below ptxas on this kernel
    margin = bound_margin(cell_name, role)
    regs = regs + margin
    entries = measured(cell_name, role, dtype, gpu.arch, tile, d_run == tile)
    if not entries:
        return regs, shared
    shared_at, regs_at = {}, {}
    for e in entries:
        point = {
            "block_b": e.block_b,
            "num_warps": e.num_warps,
            "num_stages": e.num_stages,
            "r_once": e.r_once,
        }
        was_regs, was_shared = kernel_resources(cell_name, role, dtype, d_run, point, gpu, use_table=False)
        if e.shared:
            shared_at[e.point] = (int(was_shared), e.shared)
        # a spilling configuration reads one register over its cap
        value = register_cap(e.num_warps, gpu) + 1 if e.spills else e.registers
        regs_at[e.point] = (int(was_regs) + margin, value)
    with_form = role == "backward"
    return override(regs, regs_at, v, with_form), override(shared, shared_at, v, with_form)


def kernel_prediction(config: Any, role: str, gpu: Any) -> tuple[int, int]:
    """(registers per thread, shared bytes) the model predicts for the ``role`` kernel of a
    triton-fused KernelConfig on ``gpu``: the measured table's values where it has the point, else
    the bound and the formula (as the tuner judged it)."""
    p, params = config.problem, config.params
    point = {k: int(params.get(k, 0)) for k in ("block_b", "num_warps", "num_stages", "r_once")}
    regs, shared = kernel_resources(p.cell, role, p.dtype, kernel_head_dim(p.head_dim), point, gpu)
    return int(regs), int(shared)
