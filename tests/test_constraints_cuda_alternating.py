"""The cuda-alternating model: GEMM tiles on tensor-core multiples, occupancy re-verified, padding."""

from __future__ import annotations

import pytest
from test_constraints_occupancy import GPUS, plain_fits

from tunekit.constraints import build_space
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


def plain_gemm_registers(tm: int, tn: int, wm: int, wn: int) -> int:
    """40 overhead + fp32 accumulators (4 per m16n8 tile) + two k slices of A (4) and B (2) fragments."""
    m_tiles, n_tiles = tm // wm // 16, tn // wn // 8
    return 40 + 4 * m_tiles * n_tiles + 2 * (4 * m_tiles + 2 * n_tiles)


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
        assert res["registers_per_thread"] == plain_gemm_registers(tm, tn, wm, wn)
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
    assert min(space.model.var("tile_k").domain.values) == 16  # 64-byte k rows of fp32
    assert "tile_k_mma" in {c.name for c in space.model.constraints}
    assert all(a["tile_k"] % 8 == 0 for a in space.enumerate())


def test_pointwise_block_is_chosen_from_the_grid_it_gives():
    gpu = load_profile("a100")
    small = build_space("cuda-alternating", Problem("lstm", 4, 1, 64), gpu)
    large = build_space("cuda-alternating", Problem("lstm", 256, 8, 1024), gpu)
    assert small.model.var("pointwise_threads").domain.values == (128,)
    assert large.model.var("pointwise_threads").domain.values == (512,)
