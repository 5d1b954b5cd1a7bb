"""The cost model: non-negative terms and orderings a GPU person agrees with."""

from __future__ import annotations

import pytest

from tunekit.constraints import FAMILIES, build_space
from tunekit.cost import SM_BANDWIDTH_SHARE, CostBreakdown, estimate
from tunekit.hardware import load_profile
from tunekit.problem import Problem

A100 = load_profile("a100")
PROBLEMS = [
    Problem("lstm", batch=5, heads=1, head_dim=48),
    Problem("gru", batch=16, heads=4, head_dim=64, dtype="float16", direction="both"),
    Problem("slstm", batch=32, heads=1, head_dim=512, dtype="float32"),
]


def best(family: str, problem: Problem, gpu=A100) -> float:
    space = build_space(family, problem, gpu)
    return min(estimate(space, a).total_us_per_step for a in space.enumerate())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: f"{p.cell}-D{p.head_dim}-{p.dtype}-{p.direction}")
def test_every_term_is_non_negative_and_the_total_combines_them(family, problem):
    space = build_space(family, problem, A100)
    for a in space.enumerate():
        c = estimate(space, a)
        terms = c.terms()
        assert all(v >= 0 for v in terms.values()), terms
        overlap = max(c.tensor_us, c.shared_memory_us, c.register_us, c.load_latency_us)
        rest = c.reduction_us + c.sync_us + c.pointwise_us + c.hbm_us + c.launch_us + c.step_latency_us
        assert c.total_us_per_step == pytest.approx(overlap + rest)
        assert c.register_us <= c.tensor_us + 1e-12


@pytest.mark.parametrize("family", ["triton-fused", "cuda-fused"])
def test_more_blocks_with_the_same_tiles_are_not_slower_while_sms_idle(family):
    # D=32: cuda-fused keeps only the finest row split that fills no SM twice (8 blocks a head), so
    # four heads stay below the bandwidth cut-off (at D=64, 16 blocks a head, they would not)
    few = build_space(family, Problem("lstm", 16, 1, 32), A100)
    many = build_space(family, Problem("lstm", 16, 4, 32), A100)
    checked = 0
    for a in few.enumerate():
        # idle SMs, and HBM not yet saturated (one SM draws up to twice its share of bandwidth)
        if many.violated(a) or many.resources(a)["blocks"] > A100.sm_count // SM_BANDWIDTH_SHARE:
            continue
        assert many.resources(a)["blocks"] == 4 * few.resources(a)["blocks"]
        assert estimate(many, a).total_us_per_step <= estimate(few, a).total_us_per_step * (1 + 1e-9)
        checked += 1
    assert checked


def test_cuda_alternating_pays_two_launches_per_step_and_direction():
    space = build_space("cuda-alternating", Problem("lstm", 16, 1, 256), A100)
    both = build_space("cuda-alternating", Problem("lstm", 16, 1, 256, direction="both"), A100)
    a = space.enumerate()[0]
    assert estimate(space, a).launch_us == pytest.approx(2 * A100.kernel_launch_latency_us)
    assert estimate(both, both.enumerate()[0]).launch_us == pytest.approx(4 * A100.kernel_launch_latency_us)
    for family in ("triton-fused", "cuda-fused"):
        fused = build_space(family, Problem("lstm", 16, 1, 64), A100)
        assert estimate(fused, fused.enumerate()[0]).launch_us == 0.0  # one launch per sequence


@pytest.mark.parametrize("family", ["cuda-alternating", "cuda-fused"])
def test_bigger_head_dim_costs_more(family):
    costs = [best(family, Problem("lstm", 16, 1, D)) for D in (128, 512, 1024)]
    assert costs == sorted(costs) and costs[0] < costs[-1]


def test_bigger_head_dim_costs_more_for_triton_fused():
    assert best("triton-fused", Problem("lstm", 16, 1, 32)) < best("triton-fused", Problem("lstm", 16, 1, 64))


def geometry(space, a) -> dict[str, int]:
    """Grid, threads and every padded size (not the byte counts, which depend on the dtype)."""
    res = space.resources(a)
    return {k: v for k, v in res.items() if k in ("blocks", "threads_per_block") or "pad" in k}


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_tensor_time_is_below_fp32_tf32_for_the_same_configuration(family):
    # cuda-fused at D=64: at D=32 its one-tile blocks have 2 bf16 k steps (2 warps) but 4 tf32 ones (4 warps)
    d = 64 if family == "cuda-fused" else 32
    bf16 = build_space(family, Problem("lstm", 16, 1, d), A100)
    fp32 = build_space(family, Problem("lstm", 16, 1, d, dtype="float32"), A100)
    # the same tunables and the same padded tile sizes (bf16 pads k to 16-steps, tf32 to 8-steps)
    # (triton-fused: fp32 configurations carry tf32 = 1, 16-bit ones tf32 = 0)
    pairs = [(a, {**a, "tf32": 1} if "tf32" in a else a) for a in bf16.enumerate()]
    shared = [(a, f) for a, f in pairs if not fp32.violated(f) and geometry(bf16, a) == geometry(fp32, f)]
    assert shared
    for a, f in shared:
        assert estimate(bf16, a).tensor_us < estimate(fp32, f).tensor_us


def test_a_deeper_pipeline_hides_load_latency_of_the_gemm_k_loop():
    space = build_space("cuda-alternating", Problem("lstm", 16, 1, 1024), A100)
    by_stages = {}
    for a in space.enumerate():
        key = tuple((k, v) for k, v in a.items() if k != "stages")
        by_stages.setdefault(key, {})[a["stages"]] = estimate(space, a).load_latency_us
    deep = [v for v in by_stages.values() if {2, 4} <= set(v)]
    assert deep and all(v[4] < v[2] for v in deep)


def test_a_reduction_split_pays_a_second_grid_sync():
    space = build_space("cuda-fused", Problem("lstm", 16, 1, 1856), A100)
    for a in space.enumerate():
        c = estimate(space, a)
        syncs = space.resources(a)["grid_syncs_per_step"]
        assert c.sync_us == pytest.approx(syncs * A100.grid_sync_latency_us)


def test_h100_is_faster_than_a100_for_the_same_problem():
    p = Problem("lstm", 16, 1, 768)
    assert best("cuda-fused", p, load_profile("h100")) < best("cuda-fused", p, A100)


def test_breakdown_is_frozen_and_bad_space_is_a_value_error():
    terms = dict(tensor_us=1.0, shared_memory_us=0.5, register_us=0.0, load_latency_us=0.0, reduction_us=0.0)
    terms |= dict(sync_us=1.5, pointwise_us=0.3, hbm_us=0.2, launch_us=0.0, step_latency_us=0.0)
    c = CostBreakdown(**terms, total_us_per_step=3.0)
    with pytest.raises(AttributeError):
        c.total_us_per_step = 0.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="space: got dict"):
        estimate({}, {})  # type: ignore[arg-type]
