"""The cuda-fused model: co-residency re-verified, R fully stored, monotone coverage in D, padding."""

from __future__ import annotations

import pytest
from test_constraints_occupancy import GPUS, plain_blocks_per_sm, plain_fits

from tunekit.constraints import build_space
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import enumerate_all, solve

CASES = [
    Problem("lstm", batch=5, heads=1, head_dim=48),
    Problem("gru", batch=16, heads=2, head_dim=200, dtype="float16"),
    Problem("elman", batch=7, heads=1, head_dim=96, dtype="float32", direction="both"),
    Problem("slstm", batch=32, heads=1, head_dim=768),
]
IDS = [f"{p.cell}-B{p.batch}-N{p.heads}-D{p.head_dim}-{p.dtype}-{p.direction}" for p in CASES]
# Coverage margin: every problem whose R needs at most this fraction of the grid's register file
# plus shared memory gets a configuration. The rest of the on-chip memory goes to accumulators,
# y staging, pointwise state, addresses (56 registers a thread are reserved) and tile padding.
COVERAGE_MARGIN = 0.45


def r_bytes(p: Problem) -> int:
    return p.g_r * p.heads * p.head_dim**2 * p.dtype_bytes


def on_chip_bytes(gpu) -> int:
    return gpu.sm_count * (4 * gpu.registers_per_sm + gpu.shared_memory_per_sm)


@pytest.mark.parametrize("gpu", ["a100-sxm4-80gb", "h100-sxm5-80gb"])
@pytest.mark.parametrize("problem", CASES, ids=IDS)
def test_every_configuration_is_co_resident_and_stores_all_of_r(problem, gpu):
    g = GPUS[gpu]
    space = build_space("cuda-fused", problem, g)
    found = space.enumerate()
    assert found
    for a in found:
        assert all(c.constraint.holds(a) for c in space.model.constraints)
        res = space.resources(a)
        D, B = problem.head_dim, problem.batch
        grid = (
            problem.heads * -(-D // a["hidden_per_block"]) * -(-D // a["k_per_block"]) * -(-B // a["block_b"])
        )
        assert res["blocks"] == grid
        assert res["threads_per_block"] == 32 * a["warps_rows"] * a["warps_k"]
        assert plain_fits(g, res, cooperative=True)
        per_sm = plain_blocks_per_sm(
            g, res["threads_per_block"], res["registers_per_thread"], res["shared_memory_bytes_per_block"]
        )
        assert grid <= g.sm_count * per_sm
        # the block's tiles cover its share of R: rows of all gates of its hidden units x its k slice
        rows = (
            problem.g_r * a["hidden_per_block"]
            if problem.directions[0] == "forward"
            else a["hidden_per_block"]
        )
        assert res["rows_pad_per_block"] >= rows and res["rows_pad_per_block"] % 16 == 0
        assert res["r_tiles_per_warp"] * res["threads_per_block"] // 32 * 512 >= rows * a["k_per_block"] * 2
        assert res["d_pad"] >= D and res["padding_d"] == res["d_pad"] - D
        assert res["b_pad"] >= B and res["padding_b"] == res["b_pad"] - B


@pytest.mark.parametrize(
    "problem",
    [Problem("lstm", 5, 1, 32), Problem("gru", 3, 1, 40, dtype="float32"), Problem("elman", 9, 2, 64)],
    ids=["lstm-D32", "gru-D40-fp32", "elman-N2-D64"],
)
def test_native_and_cpsat_enumerate_the_same_configurations(problem):
    space = build_space("cuda-fused", problem, load_profile("a100"))
    assert enumerate_all(space.model, "native") == enumerate_all(space.model, "cpsat")


def test_padding_of_odd_d_and_b_is_reported():
    space = build_space("cuda-fused", Problem("lstm", batch=5, heads=1, head_dim=48), load_profile("a100"))
    padded = [space.resources(a) for a in space.enumerate()]
    assert all(r["padding_b"] == r["b_pad"] - 5 > 0 for r in padded)  # batch tiles are n8 multiples
    assert any(r["padding_rows_per_block"] > 0 for r in padded)  # e.g. 3 LSTM units = 12 rows -> one m16 tile
    odd = build_space("cuda-fused", Problem("lstm", batch=5, heads=1, head_dim=50), load_profile("a100"))
    assert any(odd.resources(a)["padding_d"] > 0 for a in odd.enumerate())  # e.g. 50 units in 3 blocks of 17


@pytest.mark.parametrize(
    "gpu,cell,dtype",
    [
        ("a100-sxm4-80gb", "lstm", "bfloat16"),
        ("h100-sxm5-80gb", "gru", "float16"),
        ("a100-sxm4-80gb", "elman", "float32"),
    ],
)
def test_feasibility_is_monotone_in_d_and_covers_the_physical_bound(gpu, cell, dtype):
    g = GPUS[gpu]

    def feasible(D: int) -> bool:
        return solve(build_space("cuda-fused", Problem(cell, 16, 1, D, dtype), g).model) is not None

    step = 128
    coarse = list(range(16, 4096 + 1, step))
    verdict = {D: feasible(D) for D in coarse}
    last = max(D for D, ok in verdict.items() if ok)
    verdict |= {D: feasible(D) for D in range(last + 16, last + step, 16)}  # the edge, finely
    ds = sorted(verdict)
    edge = max(D for D in ds if verdict[D])
    assert all(verdict[D] for D in ds if edge >= D), "no holes below the largest feasible D"
    assert not any(verdict[D] for D in ds if edge < D)
    bound = max(
        D for D in ds if r_bytes(Problem(cell, 16, 1, D, dtype)) <= COVERAGE_MARGIN * on_chip_bytes(g)
    )
    assert edge >= bound
    # and the model never claims to hold more R than the chips have
    assert r_bytes(Problem(cell, 16, 1, edge, dtype)) <= on_chip_bytes(g)


def test_flashrnn_hole_is_gone_on_a100():
    g = load_profile("a100")  # FlashRNN: LSTM D=2304 feasible but D=2048 not; here any D up to the edge
    ds = [1024, 1536, 1792, 1856]
    assert all(solve(build_space("cuda-fused", Problem("lstm", 16, 1, D, "float16"), g).model) for D in ds)


def test_a_reduction_split_adds_a_grid_sync():
    space = build_space("cuda-fused", Problem("lstm", 16, 1, 1856), load_profile("a100"))
    for a in space.enumerate():
        res = space.resources(a)
        assert res["grid_syncs_per_step"] == (2 if res["split_k"] > 1 else 1)


def test_r_beyond_the_chips_has_an_empty_space():
    space = build_space("cuda-fused", Problem("lstm", 16, 1, 4096), load_profile("h100"))
    assert space.enumerate() == []
