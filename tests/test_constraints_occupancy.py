"""Occupancy helpers against the occupancy calculator's arithmetic written out plainly.

``plain_blocks_per_sm`` and ``plain_fits`` are the independent referee the family tests import:
they compute residency the way NVIDIA's occupancy calculator does, step by step on ints, without
the solver IR.
"""

from __future__ import annotations

import itertools

import pytest

from tunekit.constraints import FAMILIES, build_space
from tunekit.constraints.occupancy import (
    blocks_per_sm,
    mma_shape,
    register_alloc_per_block,
    register_budget,
    shared_alloc_per_block,
)
from tunekit.hardware import list_profiles, load_profile
from tunekit.problem import PARAM_TAGS, Problem
from tunekit.solvers import Model, PowersOfTwo, Values

GPUS = {p.name: p for p in list_profiles()}


def plain_blocks_per_sm(gpu, threads: int, regs: int, smem: int) -> int:
    """Resident blocks per SM, as the occupancy calculator computes it."""
    warps = -(-threads // gpu.warp_size)
    regs_per_warp = -(-(regs * gpu.warp_size) // gpu.register_allocation_unit) * gpu.register_allocation_unit
    # cuda_occupancy.h, cudaOccMaxBlocksPerSMRegsLimit: registers are allocated in each of 4
    # sub-partitions; warps per SM = warps per sub-partition x 4 (96 registers: 20 warps, not 21)
    warps_by_regs = (gpu.registers_per_sm // 4 // regs_per_warp) * 4
    # the hardware's per-block check counts the warps rounded up to a multiple of 4
    if regs_per_warp * (-(-warps // 4) * 4) > gpu.registers_per_block:
        return 0
    by_regs = warps_by_regs // warps
    smem_alloc = -(-smem // gpu.shared_memory_allocation_unit) * gpu.shared_memory_allocation_unit
    by_smem = gpu.shared_memory_per_sm // (smem_alloc + gpu.shared_memory_reserved_per_block)
    by_warps = gpu.max_warps_per_sm // warps
    return min(gpu.max_blocks_per_sm, by_warps, by_regs, by_smem)


def plain_fits(gpu, resources: dict[str, int], *, cooperative: bool) -> bool:
    """A launch with these resources is possible (and, if cooperative, fully co-resident)."""
    threads, regs = resources["threads_per_block"], resources["registers_per_thread"]
    smem, grid = resources["shared_memory_bytes_per_block"], resources["blocks"]
    warps = threads // gpu.warp_size
    regs_per_warp = -(-(regs * gpu.warp_size) // gpu.register_allocation_unit) * gpu.register_allocation_unit
    ok = (
        threads % gpu.warp_size == 0
        and 0 < threads <= gpu.max_threads_per_block
        and regs <= gpu.max_registers_per_thread
        and -(-warps // 4) * 4 * regs_per_warp <= gpu.registers_per_block
        and smem <= gpu.shared_memory_per_block_optin
        and plain_blocks_per_sm(gpu, threads, regs, smem) >= 1
    )
    if cooperative:
        ok = ok and grid <= gpu.sm_count * plain_blocks_per_sm(gpu, threads, regs, smem)
    return ok


@pytest.mark.parametrize("gpu", sorted(GPUS), ids=str)
def test_blocks_per_sm_expression_matches_the_calculator(gpu):
    g = GPUS[gpu]
    m = Model("occupancy")
    warps = m.int_var("warps", PowersOfTwo(1, 32))
    regs = m.int_var("regs", Values([24, 32, 40, 64, 65, 96, 128, 168, 255]))
    smem = m.int_var("smem", Values([0, 1, 127, 129, 4096, 49152, 100000, 166912, 232448]))
    expr = blocks_per_sm(warps, regs, smem, g)
    for w, r, s in itertools.product(warps.domain, regs.domain, smem.domain):
        a = {"warps": w, "regs": r, "smem": s}
        assert expr.evaluate(a) == plain_blocks_per_sm(g, 32 * w, r, s), a
        assert blocks_per_sm(w, r, s, g) == expr.evaluate(a)  # the same helper on plain ints


def test_allocation_granularity_of_registers_and_shared_memory():
    a100 = load_profile("a100")
    # 33 registers x 32 threads = 1056 -> 1280 per warp (5 units of 256)
    assert register_alloc_per_block(33, 4, a100) == 4 * 1280
    # 129 B -> two 128 B units, plus 1 KB reserved
    assert shared_alloc_per_block(129, a100) == 256 + 1024
    # one block using the whole opt-in limit fills the SM
    assert blocks_per_sm(1, 32, a100.shared_memory_per_block_optin, a100) == 1


def test_registers_are_counted_per_sub_partition_as_cuda_occupancy_h_does():
    a100 = load_profile("a100")
    # 96 registers = 3,072 a warp: 5 warps in each 16K sub-partition, 20 an SM (65,536 / 3,072 = 21)
    assert blocks_per_sm(1, 96, 0, a100) == 20
    # 10 warps of 200 registers (6,400 a warp): 2 a sub-partition, so no 10-warp block fits,
    # although 10 x 6,400 = 64,000 <= 65,536
    assert blocks_per_sm(10, 200, 0, a100) == 0
    # the per-block check rounds 5 warps up to 8: 8 x 6,400 = 51,200
    assert register_alloc_per_block(200, 5, a100) == 51_200
    assert register_budget(10, 1, a100) == 168  # 16,384 / 3 -> 5,376 a warp


@pytest.mark.parametrize(
    "dtype,shape", [("bfloat16", (16, 8, 16)), ("float16", (16, 8, 16)), ("float32", (16, 8, 8))]
)
def test_tensor_core_tile_per_dtype(dtype, shape):
    assert mma_shape(load_profile("h100"), dtype) == shape


def test_build_space_rejects_unknown_family_listing_the_known_ones():
    with pytest.raises(ValueError, match="family: got 'cudnn'.*triton-fused.*cuda-alternating.*cuda-fused"):
        build_space("cudnn", Problem("lstm", 16, 1, 64), load_profile("a100"))


def test_build_space_accepts_a_profile_name():
    space = build_space("triton-fused", Problem("elman", 16, 1, 32), "a100")
    assert space.gpu.name == "a100-sxm4-80gb"


def test_every_family_reports_the_required_resources_and_named_limits():
    p = Problem("lstm", batch=5, heads=2, head_dim=48)
    for family in FAMILIES:
        space = build_space(family, p, load_profile("a100"))
        assignment = space.enumerate()[0]
        res = space.resources(assignment)
        assert {
            "threads_per_block",
            "blocks",
            "registers_per_thread",
            "shared_memory_bytes_per_block",
        } <= set(res)
        names = {c.name for c in space.model.constraints}
        for name, used, limit, unit in space.limits(assignment):
            assert name in names and used <= limit and unit in {"B", "registers", "threads", "blocks"}
        assert all(c.why for c in space.model.constraints), "every constraint states its hardware fact"
        assert all(n in PARAM_TAGS for n in space.tunables), "canonical names use short tags"
        assert space.config(assignment).params == {n: assignment[n] for n in space.tunables}
