"""The cuda-fused model: co-residency re-verified, R fully stored, monotone coverage in D, padding."""

from __future__ import annotations

import itertools
import math

import pytest
from test_constraints_occupancy import GPUS, plain_blocks_per_sm, plain_fits

from tunekit.constraints import build_space
from tunekit.constraints.cuda_fused import physical_bound, r_bytes, span_quantum
from tunekit.cost import estimate
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import enumerate_all, solve
from tunekit.solvers.vector import vector_solutions

CASES = [
    Problem("lstm", batch=5, heads=1, head_dim=48),
    Problem("gru", batch=16, heads=2, head_dim=200, dtype="float16"),
    Problem("elman", batch=7, heads=1, head_dim=96, dtype="float32", direction="both"),
    Problem("slstm", batch=32, heads=1, head_dim=768),
]
IDS = [f"{p.cell}-B{p.batch}-N{p.heads}-D{p.head_dim}-{p.dtype}-{p.direction}" for p in CASES]
# Coverage: every sampled problem whose R needs at most this share of the usable bound (on-chip
# memory less the reserves no kernel avoids, cuda_fused.physical_bound) gets a configuration. The
# rest goes to tile granularity: whole (m16 tile x k slice) atoms per SM, accumulators of every
# row a warp spans, k padded to mma steps. Tiles dealt evenly over a block's row warps (L4 LSTM
# bf16 0.89 -> 0.93 at one head) and blocks spanning heads (L4 fp32 4 heads 0.880 -> 0.937: 58 SMs
# over 4 heads left 2 idle) raised the least edge. Measured edges over SAMPLE (B 1-256, 1 and 4
# heads): 0.888 (L4 GRU bf16, 4 heads: 3 gates fill no tile with whole units, so no spanning) to
# 0.971 of the usable bound, median 0.937.
COVERAGE_OF_USABLE = 0.888


def largest_d_under(share: float, cell: str, batch: int, heads: int, dtype: str, gpu) -> int:
    """The largest D whose R is at most ``share`` of the usable bound (whose y reserve depends on D)."""
    D = 1 << 16
    for _ in range(3):  # the y reserve shrinks only below 2 x Y_CHUNK: two rounds settle D
        p = Problem(cell, batch, heads, D, dtype)
        D = math.isqrt(int(share * physical_bound(p, gpu).usable) // (p.g_r * heads * p.dtype_bytes))
    return D


def feasible(p: Problem, gpu) -> bool:
    """Whether the space is non-empty (numpy evaluation of the whole space, as the tuner does)."""
    model = build_space("cuda-fused", p, gpu).model
    found = vector_solutions(model)
    return solve(model) is not None if found is None else bool(found)


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
        hb = a["hidden_per_block"]
        if a["span_heads"]:  # the heads laid end to end, each padded to whole tiles of units
            q = span_quantum(problem, g)
            row_blocks = -(-problem.heads * (-(-D // q) * q) // hb)
        else:
            row_blocks = problem.heads * -(-D // hb)
        grid = row_blocks * -(-D // a["k_per_block"]) * -(-B // a["block_b"])
        assert res["blocks"] == grid and res["row_blocks"] == row_blocks
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
    # hidden_per_block fills whole m16 tiles where it can (4 LSTM units = 16 rows); GRU's 3 gates
    # cannot: 5 units = 15 rows -> one m16 tile with a padding row
    gru = build_space("cuda-fused", Problem("gru", batch=5, heads=1, head_dim=48), load_profile("a100"))
    assert any(gru.resources(a)["padding_rows_per_block"] > 0 for a in gru.enumerate())
    odd = build_space("cuda-fused", Problem("lstm", batch=5, heads=1, head_dim=50), load_profile("a100"))
    assert any(odd.resources(a)["padding_d"] > 0 for a in odd.enumerate())  # e.g. 50 units in 3 blocks of 17


@pytest.mark.parametrize(
    "gpu,cell,dtype,batch,heads",
    [
        ("a100-sxm4-80gb", "lstm", "bfloat16", 16, 1),
        ("h100-sxm5-80gb", "gru", "float16", 16, 1),
        ("a100-sxm4-80gb", "elman", "float32", 16, 1),
        ("l4", "slstm", "bfloat16", 64, 1),
        ("h100-sxm5-80gb", "lstm", "float32", 256, 4),
    ],
)
def test_feasibility_is_monotone_in_d_and_covers_the_usable_bound(gpu, cell, dtype, batch, heads):
    g = GPUS[gpu] if gpu in GPUS else load_profile(gpu)
    step = 128
    coarse = [*range(1, 16), *range(16, 4096 + 1, step)]  # every D below one mma k step, too
    verdict = {D: feasible(Problem(cell, batch, heads, D, dtype), g) for D in coarse}
    last = max(D for D, ok in verdict.items() if ok)
    # the edge, at every D (padding of odd D included) up to the next coarse point
    verdict |= {D: feasible(Problem(cell, batch, heads, D, dtype), g) for D in range(last + 1, last + step)}
    ds = sorted(verdict)
    edge = max(D for D in ds if verdict[D])
    assert all(verdict[D] for D in ds if edge >= D), "no holes below the largest feasible D"
    assert not any(verdict[D] for D in ds if edge < D)
    assert edge >= largest_d_under(COVERAGE_OF_USABLE, cell, batch, heads, dtype, g)
    # and the model never claims to hold more R than the usable part of the chips
    assert (
        r_bytes(Problem(cell, batch, heads, edge, dtype))
        <= physical_bound(Problem(cell, 1, 1, edge, dtype), g).usable
    )


SAMPLE = list(
    itertools.product(
        ["a100", "h100", "l4"],
        ["lstm", "gru", "elman", "slstm"],
        ["bfloat16", "float32"],
        [1, 16, 64, 256],
        [1, 4],
    )
)


@pytest.mark.parametrize("gpu,cell,dtype,batch,heads", SAMPLE)
def test_every_problem_within_the_usable_bound_share_has_a_configuration(gpu, cell, dtype, batch, heads):
    g = load_profile(gpu)
    D = largest_d_under(COVERAGE_OF_USABLE, cell, batch, heads, dtype, g)
    assert feasible(Problem(cell, batch, heads, D, dtype), g), f"D={D} has no configuration"


def test_physical_bound_names_its_reserves_and_usable_is_below_raw():
    a100 = load_profile("a100")
    b = physical_bound(Problem("lstm", 16, 1, 2048), a100)
    assert b.raw == 108 * (65536 * 4 + 167936)  # every SM's register file and shared memory
    assert set(b.reserves) == {
        "registers_overhead_accumulators_fragments",
        "shared_memory_reserved_per_block",
        "y_staging",
    }
    assert b.usable == b.raw - 108 * sum(b.reserves.values())
    assert b.reserves["y_staging"] == 256 * 8 * 2  # two 128-row chunks of one n8 bf16 tile
    # 8 warps x 32 threads x 255 registers fill the file; the LSTM forward's pointwise step needs 48
    # a thread besides R (measured, POINTWISE_REGISTERS) and 16 ptxas needs to stream the rest of R
    # from shared memory (FRAGMENT_HEADROOM): 191 are left, 47 whole fragments (188)
    assert b.reserves["registers_overhead_accumulators_fragments"] == 4 * (65536 - 256 * 188)
    assert physical_bound(Problem("lstm", 16, 1, 2048, "float32"), a100).usable < b.usable  # fp32 y


def test_large_batch_loops_over_passes_instead_of_copying_r():
    space = build_space("cuda-fused", Problem("lstm", 256, 1, 2048), load_profile("a100"))
    found = space.enumerate()
    assert found
    for a in found:
        res = space.resources(a)
        assert res["batch_blocks"] * res["split_rows"] * res["split_k"] == res["blocks"]
        assert res["batch_passes"] * a["tile_b"] >= min(256, a["block_b"])
    assert any(
        space.resources(a)["batch_blocks"] == 1 and space.resources(a)["batch_passes"] > 1 for a in found
    )


def test_flashrnn_hole_is_gone_on_a100():
    g = load_profile("a100")  # FlashRNN: LSTM D=2304 feasible but D=2048 not; here any D up to the edge
    # (the edge is 2160: the pointwise step's 48 registers a thread, measured on the kernels, moved it
    # from 2208)
    ds = [1024, 1536, 1792, 1856, 1920, 2048, 2160]
    assert all(solve(build_space("cuda-fused", Problem("lstm", 16, 1, D, "float16"), g).model) for D in ds)
    # FlashRNN's D=2304 pick caches 240 registers a thread of R and leaves 15 for everything else
    # (reports/baselines.md); a compiled probe needs 26 at least. Its R is above the usable bound.
    p = Problem("lstm", 16, 1, 2304, "float16")
    assert r_bytes(p) > physical_bound(p, g).usable
    assert solve(build_space("cuda-fused", p, g).model) is None


def test_a_reduction_split_adds_a_grid_sync():
    space = build_space("cuda-fused", Problem("lstm", 16, 1, 1856), load_profile("a100"))
    for a in space.enumerate():
        res = space.resources(a)
        assert res["grid_syncs_per_step"] == (2 if res["split_k"] > 1 else 1)


def test_r_beyond_the_chips_has_an_empty_space():
    space = build_space("cuda-fused", Problem("lstm", 16, 1, 4096), load_profile("h100"))
    assert space.enumerate() == []


def test_tiles_are_dealt_evenly_when_rows_do_not_divide_over_warps():
    # L4 LSTM bf16 D=1392: 58 blocks of 48 units (12 m tiles x 44 k steps over 8 row warps). A thread
    # holds 47 fragments (255 registers less the pointwise step's 48 and the 16 of FRAGMENT_HEADROOM).
    # By whole rows, 4 warps hold 88 tiles and 4 hold 44: 164 tiles (82 KB) in shared memory. Dealt
    # evenly (66 a warp, up to 3 rows of accumulators): 152 (76 KB), plus the 6 KB gate buffer.
    p = Problem("lstm", 16, 1, 1392)
    space = build_space("cuda-fused", p, load_profile("l4"))
    a = {"hidden_per_block": 48, "k_per_block": 696, "block_b": 16, "tile_b": 8}
    a |= {"warps_rows": 8, "warps_k": 1, "span_heads": 0}
    assert space.violated(a) == []
    res = space.resources(a)
    assert res["blocks"] == 58 and res["registers_per_thread"] <= 255 - 16
    assert res["r_tiles_in_registers_per_warp"] == 47
    assert res["shared_memory_bytes_per_block"] == 152 * 512 + 12 * 16 * 8 * 4  # R tiles + gate buffer
    # 192 rows are exactly 12 m tiles (no padding); the busiest warp does 12 x 44 / 8 = 66 mma tiles
    # a pass, not the 2 whole rows (88) of the by-rows deal, and the cost model charges that:
    # 66 tiles x 8 warps of 2 x 16 x 16 x 16 flops on one SM
    assert res["rows_pad_per_block"] == 192 and res["padding_rows_per_block"] == 0
    assert res["mma_tiles_per_warp"] == 66
    l4 = load_profile("l4")
    per_sm_flops_per_us = l4.tensor_tflops["bfloat16"] * 1e6 / l4.sm_count
    assert estimate(space, a).tensor_us == pytest.approx(66 * 8 * 2 * 16 * 16 * 16 / per_sm_flops_per_us)


def test_blocks_span_heads_where_per_head_splits_leave_sms_idle():
    # L4 (58 SMs) LSTM fp32, 4 heads of D=488 (near the edge, 504): split per head, the SM count is
    # no multiple of the heads and two SMs idle; laid end to end, whole tiles of units fill all 58.
    p, l4 = Problem("lstm", 16, 4, 488, "float32"), load_profile("l4")
    space = build_space("cuda-fused", p, l4)
    found = space.enumerate()
    spanning = [a for a in found if a["span_heads"] == 1]
    assert spanning
    for a in spanning:
        res = space.resources(a)
        assert res["blocks"] <= l4.sm_count * res["blocks_per_sm"]
        assert a["hidden_per_block"] % span_quantum(p, l4) == 0 and a["hidden_per_block"] <= 488
        assert res["row_blocks"] * a["hidden_per_block"] >= 4 * 488 and res["padding_units"] >= 0


def test_spanning_blocks_hold_whole_tiles_of_units():
    a100 = load_profile("a100")
    space = build_space("cuda-fused", Problem("lstm", 16, 1, 520, "float32"), a100)
    assert space.model.variables[-1].domain.values == (0,)  # one head: nothing to span
    # units a whole number of m16 tiles holds: LSTM 4 (16 rows), GRU 16 (48 rows = 3 tiles), Elman
    # 16; with a backward, Rᵀ has one row a unit: 16
    quanta = {"lstm": 4, "slstm": 4, "gru": 16, "elman": 16}
    for cell, q in quanta.items():
        assert span_quantum(Problem(cell, 16, 4, 512), a100) == q
        assert span_quantum(Problem(cell, 16, 4, 512, direction="both"), a100) == 16
