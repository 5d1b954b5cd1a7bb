"""The triton-fused model: every answer re-verified, no feasible point missed, known truths, padding."""

from __future__ import annotations

import itertools

import pytest
from test_constraints_occupancy import GPUS, plain_fits

from tunekit.constraints import build_space
from tunekit.constraints.triton_fused import kernel_resources
from tunekit.constraints.triton_kernel import kernel_head_dim
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


def plain_resources(
    p: Problem, gpu, bb: int, w: int, st: int, dp: int, ro: int, tf32: int
) -> list[dict[str, int]]:
    """Resources of each kernel a configuration serves, from the per-kernel function on ints."""
    point = {"block_b": bb, "num_warps": w, "num_stages": st, "r_once": ro}
    out = []
    for d in p.directions:
        regs, shared = kernel_resources(p.cell, d, p.dtype, kernel_head_dim(p.head_dim), point, gpu)
        out.append(
            {
                "threads_per_block": 32 * w,
                "blocks": p.heads * -(-p.batch // bb),
                "registers_per_thread": regs,
                "shared_memory_bytes_per_block": shared,
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
    point = {"block_b": 16, "num_warps": 8, "num_stages": 1, "d_pad": 128, "r_once": 0, "tf32": 0}
    # Triton's metadata.shared for this compile (sm_80, maxnreg 255): 4 R tiles + one bf16 tile
    assert space.resources(point)["shared_memory_bytes_per_block"] == 135168


def test_fp32_runs_on_tf32_and_16_bit_training_chooses_the_backward_form():
    gpu = load_profile("a100")
    domains = {
        (dtype, direction): {
            v.name: list(v.domain.values)
            for v in build_space(
                "triton-fused", Problem("gru", 16, 1, 64, dtype=dtype, direction=direction), gpu
            ).model.variables
        }
        for dtype in ("float32", "bfloat16")
        for direction in ("forward", "both")
    }
    assert domains["float32", "both"]["tf32"] == [1] and domains["float32", "both"]["r_once"] == [0]
    assert domains["bfloat16", "both"]["tf32"] == [0] and domains["bfloat16", "both"]["r_once"] == [0, 1]
    assert domains["bfloat16", "forward"]["r_once"] == [0]  # a forward has no backward form


def test_odd_head_dims_report_the_lanes_the_runtime_pads():
    space = build_space("triton-fused", Problem("lstm", batch=5, heads=1, head_dim=61), load_profile("a100"))
    res = space.resources(space.enumerate()[0])
    assert (res["d_pad"], res["padding_d"], res["host_padding_d"]) == (64, 3, 3)


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
    assert res["host_padding_d"] == 0  # 48 is a multiple of 8: the rows are aligned as they are
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
    # the forward has no backward form: a training configuration's forward is its r_once = 0 point
    assert spaces["both"].enumerate() == [a for a in bwd if {**a, "r_once": 0} in fwd]
    names = {c.name for c in spaces["both"].model.constraints}
    assert {"shared_memory_per_block_forward", "shared_memory_per_block_backward"} <= names
