"""The cuda-alternating model: GEMM tiles on tensor-core multiples, occupancy re-verified, padding."""

from __future__ import annotations

import itertools

import pytest
from test_constraints_occupancy import GPUS, plain_fits

from tunekit.constraints import build_space
from tunekit.constraints.cuda_alternating import POINTWISE_REGISTERS, pointwise_min_blocks
from tunekit.constraints.occupancy import register_budget
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import enumerate_all

CASES = [
    Problem("lstm", batch=5, heads=1, head_dim=48),
    Problem("gru", batch=33, heads=3, head_dim=100, dtype="float16"),
    Problem("elman", batch=7, heads=2, head_dim=24, dtype="float32", direction="both"),
    Problem("slstm", batch=64, heads=4, head_dim=256, direction="backward"),
]
IDS = [f"{p.cell}-B{p.batch}-N{p.heads}-D{p.head_dim}-{p.dtype}-{p.direction}" for p in CASES]
MMA = {"bfloat16": (16, 8, 16), "float16": (16, 8, 16), "float32": (16, 8, 8)}


def plain_gemm_registers(tm: int, tn: int, tk: int, wm: int, wn: int, problem: Problem) -> int:
    """40 overhead + fp32 accumulators (4 per m16n8 tile) + two k steps of A (4) and B (2) fragments,
    a third set for fp32 backward programs with 4 tf32 k steps a slice (32-bit transposed loads)."""
    m_tiles, n_tiles = tm // wm // 16, tn // wn // 8
    sets = 2 + (problem.dtype == "float32" and "backward" in problem.directions and tk >= 32)
    return 40 + 4 * m_tiles * n_tiles + sets * (4 * m_tiles + 2 * n_tiles)


def plain_budget(warps: int, blocks: int) -> int:
    """ptxas's budget under __launch_bounds__(32 * warps, blocks): 16K registers per SM partition,
    ceil(blocks * warps / 4) warps in the fullest, whole 256-register units a warp, <= 255."""
    per_warp = 16384 // -(-(blocks * warps) // 4)
    return min(255, per_warp // 256 * 8)


@pytest.mark.parametrize("gpu", ["a100-sxm4-80gb", "h100-sxm5-80gb"])
@pytest.mark.parametrize("problem", CASES, ids=IDS)
def test_every_configuration_is_valid_by_plain_occupancy_and_tensor_core_shapes(problem, gpu):
    g = GPUS[gpu]
    space = build_space("cuda-alternating", problem, g)
    found = space.enumerate()
    assert found
    mm, mn, mk = MMA[problem.dtype]
    for a in found:
        assert all(c.constraint.holds(a) for c in space.model.constraints)
        tm, tn, tk, wm, wn, st = (
            a[k] for k in ("tile_m", "tile_n", "tile_k", "warps_m", "warps_n", "stages")
        )
        assert tm % (wm * mm) == 0 and tn % (wn * mn) == 0 and tk % mk == 0
        res = space.resources(a)
        assert res["registers_needed"] == plain_gemm_registers(tm, tn, a["tile_k"], wm, wn, problem)
        assert res["registers_per_thread"] == plain_budget(wm * wn, max(1, res["blocks_per_sm"]))
        assert res["registers_per_thread"] >= res["registers_needed"]
        assert (
            res["pointwise_registers_per_thread"] >= 64
            and res["pointwise_shared_memory_bytes_per_block"] == 0
        )
        assert res["shared_memory_bytes_per_block"] == st * (tm * tk + tk * tn) * problem.dtype_bytes
        assert res["threads_per_block"] == 32 * wm * wn
        assert plain_fits(g, res, cooperative=False)
        M = problem.g_r * problem.head_dim if problem.directions[0] == "forward" else problem.head_dim
        assert res["blocks"] == problem.heads * -(-M // tm) * -(-problem.batch // tn)
        assert res["launches_per_step"] == 2


@pytest.mark.parametrize("problem", CASES[:3], ids=IDS[:3])
def test_native_and_cpsat_enumerate_the_same_configurations(problem):
    space = build_space("cuda-alternating", problem, load_profile("a100"))
    assert enumerate_all(space.model, "native") == enumerate_all(space.model, "cpsat")


def test_padding_of_odd_d_and_b_is_reported():
    space = build_space(
        "cuda-alternating", Problem("lstm", batch=5, heads=1, head_dim=48), load_profile("a100")
    )
    for a in space.enumerate():
        res = space.resources(a)
        assert res["padding_b"] == res["n_pad"] - 5 == -(-5 // a["tile_n"]) * a["tile_n"] - 5
        assert res["padding_m"] == res["m_pad"] - 4 * 48 and res["m_pad"] % a["tile_m"] == 0
        assert res["padding_k"] == res["k_pad"] - 48 and res["k_pad"] % a["tile_k"] == 0
    assert any(space.resources(a)["padding_k"] > 0 for a in space.enumerate())  # 48 = 32 + 16 pads to 64


@pytest.mark.parametrize("head_dim", [4096, 8192])
def test_no_head_dim_limit(head_dim):
    space = build_space("cuda-alternating", Problem("lstm", 16, 1, head_dim), load_profile("a100"))
    assert space.enumerate()


def test_fp32_runs_as_tf32_with_k8_steps():
    space = build_space("cuda-alternating", Problem("lstm", 16, 1, 64, dtype="float32"), load_profile("a100"))
    assert space.model.var("tile_k").domain.values == (16, 32)  # 64- to 128-byte k rows of fp32
    assert "tile_k_mma" in {c.name for c in space.model.constraints}
    assert all(a["tile_k"] % 8 == 0 for a in space.enumerate())


def test_pointwise_block_is_chosen_from_the_grid_it_gives():
    gpu = load_profile("a100")
    small = build_space("cuda-alternating", Problem("lstm", 4, 1, 64), gpu)
    large = build_space("cuda-alternating", Problem("lstm", 256, 8, 1024), gpu)
    assert small.model.var("pointwise_threads").domain.values == (128,)
    assert large.model.var("pointwise_threads").domain.values == (512,)


# (threads, min_blocks) -> registers ptxas allowed a kernel wanting 250 (CUDA 13.0, sm_80, -v)
PTXAS_BUDGETS = {(64, 5): 168, (64, 3): 255, (96, 5): 128, (128, 3): 168, (128, 5): 96, (160, 3): 128,
                 (256, 2): 128, (384, 1): 168, (128, 7): 72, (32, 11): 168, (128, 8): 64, (512, 2): 64,
                 (96, 7): 80}  # fmt: skip


@pytest.mark.parametrize("threads,blocks", list(PTXAS_BUDGETS), ids=[f"{t}x{b}" for t, b in PTXAS_BUDGETS])
def test_register_budget_is_what_ptxas_allows_under_launch_bounds(threads, blocks):
    warps = -(-threads // 32)
    assert register_budget(warps, blocks, load_profile("a100")) == PTXAS_BUDGETS[(threads, blocks)]


def test_pointwise_launch_bounds_give_at_least_the_pointwise_registers():
    for gpu in ("a100", "h100", "l4", "rtx3090"):
        profile = load_profile(gpu)
        for threads in (128, 256, 512):
            blocks = pointwise_min_blocks(threads, profile)
            assert blocks >= 1 and blocks * threads <= profile.max_threads_per_sm
            assert register_budget(threads // 32, blocks, profile) >= POINTWISE_REGISTERS


@pytest.mark.parametrize("problem", CASES[:3], ids=IDS[:3])
def test_residency_and_ptxas_budget_follow_the_same_sub_partition_rule(problem):
    # residency counted per SM (65,536 / registers a block) once exceeded what ptxas's per-partition
    # budget leaves for one- and two-warp blocks, so their GEMMs spilled; counted per sub-partition
    # (cuda_occupancy.h) it never does, and a point that breaks the budget is rejected by name
    space = build_space("cuda-alternating", problem, load_profile("a100"))
    names = [v.name for v in space.model.variables]
    undercut = 0
    for values in itertools.product(*(space.model.var(n).domain.values for n in names)):
        point = dict(zip(names, values, strict=True))
        res = space.resources(point)
        short = res["registers_per_thread"] < res["registers_needed"]
        assert short == ("register_budget" in space.violated(point)), point
        # beyond 255 registers a thread the block is refused anyway (registers_per_thread)
        undercut += short and res["registers_needed"] <= 255
    assert undercut == 0
