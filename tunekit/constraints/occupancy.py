"""Occupancy rules every kernel family shares, as formulas on ints and solver expressions.

The rules follow NVIDIA's occupancy calculator for compute capability 8.x/9.x (the numbers come
from the ``GPUProfile``, each cited in its TOML file):

* registers are allocated per warp, ``round_up(registers_per_thread * 32, 256)`` per warp, from one
  of the SM's four sub-partitions (16K registers each; a warp lives in one): an SM holds
  ``4 * floor(16K / per_warp)`` warps by registers, and a block passes the hardware's per-block
  check when ``per_warp * round_up(warps, 4) <= 64K`` (cuda_occupancy.h,
  ``cudaOccMaxBlocksPerSMRegsLimit``: "the verification logic assumes register allocations are made
  to all partitions simultaneously"); <= 255 per thread;
* shared memory is allocated in 128-byte units, plus 1 KB the runtime reserves per block; a block
  may use up to the opt-in limit, and the blocks on one SM share ``shared_memory_per_sm``;
* resident warps and blocks per SM are capped by the architecture;
* threads per block <= 1024 and a whole number of warps;
* a cooperative (persistent) grid must be co-resident: grid <= sm_count * blocks_per_sm.

``add_limit`` adds one named ``used <= limit`` constraint and records it so that a Space can list
(name, used, limit, unit) for the tuner's "binding constraints".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tunekit.solvers import Expr, Min, Model, ceil_div, floor_div, round_up

IntLike = int | Expr

__all__ = [
    "SUB_PARTITIONS",
    "Limit",
    "add_block_limits",
    "add_co_residency",
    "Limits",
    "blocks_per_sm",
    "evaluate",
    "mma_shape",
    "register_alloc_per_block",
    "register_budget",
    "registers_per_warp",
    "shared_alloc_per_block",
    "warps_per_sm_by_registers",
]

# mma.sync base shapes (m, n, k) when a profile lists none (PTX ISA, "Matrix shape" of mma.sync:
# .f16/.bf16 m16n8k16, .tf32 m16n8k8). fp32 layers run their products as tf32 on tensor cores.
_DEFAULT_MMA = {"float16": (16, 8, 16), "bfloat16": (16, 8, 16), "tfloat32": (16, 8, 8)}
_TENSOR_DTYPE = {"float32": "tfloat32", "float16": "float16", "bfloat16": "bfloat16"}
_SHAPE = re.compile(r"^m(\d+)n(\d+)k(\d+)$")


@dataclass(frozen=True)
class Limit:
    """A resource constraint ``used <= limit`` as the tuner reports it."""

    name: str
    used: IntLike
    limit: IntLike
    unit: str  # "B", "registers", "threads", "blocks"
    why: str


def evaluate(value: IntLike, assignment: Mapping[str, int], memo: dict | None = None) -> int:
    """An int stays an int; an expression is evaluated at ``assignment`` (``memo``: shared with
    other calls at the same assignment, see ``Expr.evaluate``)."""
    return value.evaluate(assignment, memo) if isinstance(value, Expr) else int(value)


class Limits:
    """Adds named ``used <= limit`` constraints to a model and remembers them for reporting."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.items: list[Limit] = []

    def add(self, name: str, used: IntLike, limit: IntLike, unit: str, why: str) -> None:
        """Add the constraint ``used <= limit`` under ``name``, with the fact ``why`` behind it."""
        self.model.add(name, used <= limit, why=why)
        self.items.append(Limit(name, used, limit, unit, why))


def tensor_dtype(dtype: str) -> str:
    """The tensor-core input type a layer of ``dtype`` uses (fp32 runs as tf32)."""
    if dtype not in _TENSOR_DTYPE:
        raise ValueError(f"dtype: got {dtype!r}, expected one of {sorted(_TENSOR_DTYPE)}")
    return _TENSOR_DTYPE[dtype]


def mma_shape(gpu: Any, dtype: str) -> tuple[int, int, int]:
    """(m, n, k) of the largest mma.sync base shape for ``dtype`` (the profile's first entry)."""
    key = tensor_dtype(dtype)
    shapes = getattr(gpu, "mma_shapes", {}) or {}
    entry = shapes.get(key)
    if not entry:
        return _DEFAULT_MMA[key]
    first = entry[0]
    if isinstance(first, str):
        match = _SHAPE.match(first)
        if match is None:
            raise ValueError(f"gpu.mma_shapes[{key!r}]: got {entry!r}, expected shapes like 'm16n8k16'")
        return int(match[1]), int(match[2]), int(match[3])
    m_, n_, k_ = (int(v) for v in entry)  # a flat [m, n, k] list
    return m_, n_, k_


# Register-file sub-partitions of an SM (cuda_occupancy.h, cudaOccSubPartitionsPerMultiprocessor:
# 4 from compute capability 7.0 on; NVIDIA A100/H100 whitepapers: four processing blocks, each with
# a 16,384 x 32-bit register file).
SUB_PARTITIONS = 4


def registers_per_warp(regs_per_thread: IntLike, gpu: Any) -> IntLike:
    """Registers one warp takes: per thread x 32, rounded up to the allocation unit (256)."""
    return round_up(regs_per_thread * gpu.warp_size, gpu.register_allocation_unit)


def register_alloc_per_block(regs_per_thread: IntLike, warps: IntLike, gpu: Any) -> IntLike:
    """Registers the hardware checks a block against its per-block limit: per warp, with the warps
    rounded up to whole sets of the 4 sub-partitions (a 5-warp block of 200 registers a thread
    counts 8 x 6,400 = 51,200)."""
    return round_up(warps, SUB_PARTITIONS) * registers_per_warp(regs_per_thread, gpu)


def warps_per_sm_by_registers(regs_per_thread: IntLike, gpu: Any) -> IntLike:
    """Warps an SM holds by registers: whole warps in each of its sub-partitions' files."""
    per_partition = gpu.registers_per_sm // SUB_PARTITIONS
    return SUB_PARTITIONS * floor_div(per_partition, registers_per_warp(regs_per_thread, gpu))


def register_budget(warps: IntLike, blocks: IntLike, gpu: Any) -> IntLike:
    """Most registers per thread with which ``blocks`` blocks of ``warps`` warps are resident on one
    SM: each sub-partition holds ``ceil(blocks * warps / 4)`` of their warps. It is also the budget
    ptxas takes under ``__launch_bounds__(32 * warps, blocks)`` (measured, CUDA 13.0 sm_80: see
    tests/test_constraints_cuda_alternating.py)."""
    per_partition = gpu.registers_per_sm // SUB_PARTITIONS
    per_warp = floor_div(per_partition, ceil_div(blocks * warps, SUB_PARTITIONS))
    units = floor_div(per_warp, gpu.register_allocation_unit)
    return Min(gpu.max_registers_per_thread, units * (gpu.register_allocation_unit // gpu.warp_size))


def shared_alloc_per_block(smem_bytes: IntLike, gpu: Any) -> IntLike:
    """Shared memory a block takes from the SM: 128-byte units plus the 1 KB reserved per block."""
    return round_up(smem_bytes, gpu.shared_memory_allocation_unit) + gpu.shared_memory_reserved_per_block


def blocks_per_sm(warps: IntLike, regs_per_thread: IntLike, smem_bytes: IntLike, gpu: Any) -> IntLike:
    """Resident blocks per SM: the smallest of the block, warp, register-file and shared-memory caps."""
    return Min(
        gpu.max_blocks_per_sm,
        floor_div(gpu.max_warps_per_sm, warps),
        floor_div(warps_per_sm_by_registers(regs_per_thread, gpu), warps),
        floor_div(gpu.shared_memory_per_sm, shared_alloc_per_block(smem_bytes, gpu)),
    )


def add_block_limits(
    lim: Limits, gpu: Any, *, warps: IntLike, regs_per_thread: IntLike, smem_bytes: IntLike, suffix: str = ""
) -> None:
    """The per-block rules: threads, registers per thread and per block, shared memory per block."""
    threads = warps * gpu.warp_size  # whole warps by construction: always a multiple of 32
    regs_block = register_alloc_per_block(regs_per_thread, warps, gpu)
    cap_t, cap_r, cap_s = (
        gpu.max_threads_per_block,
        gpu.max_registers_per_thread,
        gpu.shared_memory_per_block_optin,
    )
    lim.add(f"threads_per_block{suffix}", threads, cap_t, "threads",
            why=f"CUDA: at most {cap_t} threads per block, in whole warps of {gpu.warp_size}")  # fmt: skip
    lim.add(f"registers_per_thread{suffix}", regs_per_thread, cap_r, "registers",
            why=f"{gpu.sm}: at most {cap_r} registers per thread; more spills to local memory")  # fmt: skip
    lim.add(f"registers_per_block{suffix}", regs_block, gpu.registers_per_block, "registers",
            why=f"{gpu.sm}: {gpu.registers_per_block} registers per block, allocated per warp in units of "
            f"{gpu.register_allocation_unit}, warps rounded up to {SUB_PARTITIONS}")  # fmt: skip
    lim.add(f"shared_memory_per_block{suffix}", smem_bytes, cap_s, "B",
            why=f"{gpu.sm}: at most {cap_s} B of shared memory per block (opt-in limit)")  # fmt: skip


def add_co_residency(
    lim: Limits,
    gpu: Any,
    *,
    grid: IntLike,
    warps: IntLike,
    regs_per_thread: IntLike,
    smem_bytes: IntLike,
    cooperative: bool,
    suffix: str = "",
) -> IntLike:
    """A cooperative grid must be fully resident (grid <= sm_count x blocks per SM).

    Returns the blocks-per-SM expression (for resources and the cost model).
    """
    per_sm = blocks_per_sm(warps, regs_per_thread, smem_bytes, gpu)
    if cooperative:
        lim.add(f"co_residency{suffix}", grid, gpu.sm_count * per_sm, "blocks",
                why=f"cooperative launch: grid.sync() needs every block resident, grid <= {gpu.sm_count} SMs "
                "x blocks per SM (registers, shared memory, warps, block slots)")  # fmt: skip
    # Without a cooperative launch, one block per SM is already implied by the per-block limits:
    # warps <= 32 < max warps per SM, the block's registers <= 64K = the SM's file, and opt-in shared
    # memory + 1 KB reserved <= the SM's shared memory (checked when a profile is loaded).
    return per_sm
