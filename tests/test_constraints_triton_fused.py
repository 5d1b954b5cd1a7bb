"""The triton-fused model: every answer re-verified, no feasible point missed, known truths, padding."""

from __future__ import annotations

import itertools

import pytest
from test_constraints_occupancy import GPUS, plain_fits

from tunekit.constraints import build_space
from tunekit.constraints.triton_resources import triton_fused_registers_per_thread, triton_fused_shared_bytes
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import enumerate_all, explain

CASES = [
    Problem("lstm", batch=5, heads=1, head_dim=48),
    Problem("lstm", batch=16, heads=4, head_dim=128),
    Problem("gru", batch=33, heads=3, head_dim=64, dtype="float16"),
    Problem("slstm", batch=7, heads=2, head_dim=32, dtype="float32", direction="both"),
    Problem("elman", batch=100, heads=1, head_dim=200, direction="backward"),
    Problem("lstm", batch=64, heads=8, head_dim=64, dtype="float32", direction="both"),
]
IDS = [f"{p.cell}-B{p.batch}-N{p.heads}-D{p.head_dim}-{p.dtype}-{p.direction}" for p in CASES]


def plain_resources(p: Problem, gpu, bb: int, w: int, st: int, dp: int) -> list[dict[str, int]]:
    """Resources of each kernel a configuration serves, from the resource formulas on ints."""
    out = []
    for d in p.directions:
        args = (p.g_r, p.n_states, dp, bb, w, st, p.dtype_bytes, d)
        out.append(
            {
                "threads_per_block": 32 * w,
                "blocks": p.heads * -(-p.batch // bb),
                "registers_per_thread": triton_fused_registers_per_thread(*args),
                "shared_memory_bytes_per_block": triton_fused_shared_bytes(*args),
            }
        )
    return out


@pytest.mark.parametrize("gpu", ["a100-sxm4-80gb", "h100-sxm5-80gb"])
@pytest.mark.parametrize("problem", CASES, ids=IDS)
def test_feasible_set_equals_the_plain_occupancy_verdict_on_every_point(problem, gpu):
    g = GPUS[gpu]
    space = build_space("triton-fused", problem, g)
    found = space.enumerate()
    domains = [v.domain.values for v in space.model.variables]
    expected = []
    for point in itertools.product(*domains):
        a = dict(zip(space.tunables, point, strict=True))
        if all(plain_fits(g, r, cooperative=False) for r in plain_resources(problem, g, *point)):
            expected.append(a)
    assert found == expected
    for a in found:  # every named constraint holds by the IR's plain evaluation
        assert all(c.constraint.holds(a) for c in space.model.constraints)
        assert space.violated(a) == []


@pytest.mark.parametrize("problem", CASES[:4], ids=IDS[:4])
def test_native_and_cpsat_enumerate_the_same_configurations(problem):
    space = build_space("triton-fused", problem, load_profile("a100"))
    assert enumerate_all(space.model, "native") == enumerate_all(space.model, "cpsat")


def test_known_lstm_bf16_d128_compile_is_feasible_and_its_shared_memory_matches():
    space = build_space("triton-fused", Problem("lstm", 16, 1, 128), load_profile("a100"))
    assert space.enumerate(), "LSTM forward at D=128 in bf16 fits an A100 SM"
    shared = space.resources({"block_b": 16, "num_warps": 4, "num_stages": 1, "d_pad": 128})
    assert shared["shared_memory_bytes_per_block"] == triton_fused_shared_bytes(
        4, 2, 128, 16, 4, 1, 2, "forward"
    )
    # Triton on sm_80 for BLOCK_B=16, 4 warps asked 143,360 B (DESIGN §6; later templates ask less)
    assert abs(shared["shared_memory_bytes_per_block"] - 143360) <= 0.10 * 143360


@pytest.mark.parametrize("gpu", sorted(GPUS))
def test_fp32_lstm_at_d128_is_infeasible_on_every_gpu_because_of_shared_memory(gpu):
    space = build_space("triton-fused", Problem("lstm", 16, 1, 128, dtype="float32"), GPUS[gpu])
    assert space.enumerate() == []
    assert explain(space.model) == ["shared_memory_per_block"]


@pytest.mark.parametrize("head_dim", [1024, 4096])
def test_huge_head_dim_has_an_empty_space(head_dim):
    space = build_space("triton-fused", Problem("lstm", 16, 1, head_dim), load_profile("h100"))
    assert space.enumerate() == []


def test_padding_of_odd_d_and_b_is_reported_and_named():
    space = build_space("triton-fused", Problem("lstm", batch=5, heads=1, head_dim=48), load_profile("a100"))
    a = space.enumerate()[0]
    res = space.resources(a)
    assert (res["d_pad"], res["padding_d"], res["b_pad"], res["padding_b"]) == (64, 16, 16, 11)
    assert space.config(a).params["d_pad"] == 64 and "-dp64" in space.config(a).name


@pytest.mark.parametrize("batch,expected", [(1, [16]), (16, [16]), (17, [16, 32]), (100, [16, 32, 64, 128])])
def test_batch_block_domain_covers_the_batch_from_16(batch, expected):
    space = build_space("triton-fused", Problem("elman", batch, 1, 16), load_profile("a100"))
    assert list(space.model.var("block_b").domain.values) == expected


def test_grid_is_heads_times_batch_blocks():
    space = build_space("triton-fused", Problem("lstm", batch=40, heads=6, head_dim=32), load_profile("a100"))
    for a in space.enumerate():
        assert space.resources(a)["blocks"] == 6 * -(-40 // a["block_b"])


def test_both_directions_need_both_kernels_to_fit():
    gpu = load_profile("a100")
    spaces = {
        d: build_space("triton-fused", Problem("lstm", 16, 1, 64, direction=d), gpu)
        for d in ("forward", "backward", "both")
    }
    fwd, bwd = (spaces[d].enumerate() for d in ("forward", "backward"))
    assert spaces["both"].enumerate() == [a for a in fwd if a in bwd]
    names = {c.name for c in spaces["both"].model.constraints}
    assert {"shared_memory_per_block_forward", "shared_memory_per_block_backward"} <= names
