"""tunekit.explain: an empty space explained in words with numbers, and the nearest shapes that fit."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tunekit.constraints import build_space
from tunekit.explain import Explanation, explain, is_feasible
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import enumerate_all, solve
from tunekit.solvers import explain as conflicting_constraints
from tunekit.solvers.model import Model

A100, L4 = load_profile("a100"), load_profile("l4")


def _names(e: Explanation, group: int | None = None) -> list[str]:
    return [c.name for c in e.conflicts if group is None or c.group == group]


def _alternative(e: Explanation, kind: str):
    found = [a for a in e.alternatives if a.kind == kind]
    return found[0] if found else None


def _assert_nearest_below(e: Explanation, gpu) -> int:
    """The head-dim alternative is feasible and every multiple of 16 between it and D is not."""
    below = _alternative(e, "head_dim").problem
    assert below.head_dim < e.problem.head_dim and is_feasible(below, gpu, e.family)
    for d in range(below.head_dim + 16, e.problem.head_dim, 16):
        assert not is_feasible(dataclasses.replace(below, head_dim=d), gpu, e.family), d
    return below.head_dim


def _only(model: Model, names: list[str]) -> Model:
    sub = Model("sub")
    for v in model.variables:
        sub.int_var(v.name, v.domain)
    for name in names:
        c = model.constraint(name)
        sub.add(c.name, c.constraint, c.why)
    return sub


def test_triton_fp32_d128_shared_memory_with_numbers():
    problem = Problem("lstm", batch=16, heads=1, head_dim=128, dtype="float32")
    e = explain(problem, "a100", "triton-fused")
    assert not e.feasible and _names(e, 1) == ["shared_memory_per_block"]
    c = e.conflicts[0]
    # the least shared memory any configuration asks (4 gates x 128 x 128 fp32 R = 262,144 B + staging)
    space = build_space("triton-fused", problem, A100)
    lhs = space.model.constraint("shared_memory_per_block").constraint.lhs
    need = min(lhs.evaluate(a) for a in enumerate_all(_only(space.model, [])))
    assert need > 262_144
    assert (c.used, c.limit, c.unit) == (need, 166_912, "B")
    assert f"{need:,} B needed > 166,912 B limit on a100-sxm4-80gb" in c.text and c.why
    assert _assert_nearest_below(e, A100) <= 64  # 80..112 pad to 128 like 128 itself
    assert _alternative(e, "dtype").problem.dtype == "bfloat16"
    assert {a.family for a in e.alternatives if a.kind == "backend"} <= {"cuda-alternating", "cuda-fused"}
    for a in e.alternatives:  # every alternative offered really is feasible
        assert is_feasible(a.problem, A100, a.family), a.text


def test_triton_d1024_lists_every_resource_that_rules_it_out():
    e = explain(Problem("lstm", batch=16, heads=1, head_dim=1024), A100, "triton-fused")
    assert not e.feasible
    assert _names(e, 1) == ["shared_memory_per_block"]
    assert {"registers_per_block", "registers_per_thread"} <= set(_names(e))
    text = e.to_text()
    assert f"{e.conflicts[0].used:,} B needed > 166,912 B" in text and "Conflict 2" in text
    assert e.conflicts[0].used > 4 * 1024 * 1024 * 2  # at least R itself: 4 x 1024^2 bf16
    assert _assert_nearest_below(e, A100) <= 128  # 144 and up pad to 256: 4 x 256^2 bf16 R is 512 KB


def test_training_needs_r_and_its_transpose_forward_only_fits():
    # fp32 (tf32) keeps R twice in the backward: 128 KiB at D=64, over the L4's 99 KiB (forward: 64 KiB)
    problem = Problem("lstm", batch=16, heads=1, head_dim=64, dtype="float32", direction="both")
    e = explain(problem, L4, "triton-fused")
    assert "shared_memory_per_block_backward" in _names(e, 1)
    assert _alternative(e, "direction").problem.direction == "forward"


def test_cuda_fused_beyond_the_chip_on_l4():
    problem = Problem("lstm", batch=16, heads=1, head_dim=2976)
    e = explain(problem, L4, "cuda-fused")
    assert not e.feasible and e.conflicts
    assert all(c.used is not None and c.used > c.limit for c in e.conflicts)
    below = _alternative(e, "head_dim").problem.head_dim
    assert below < 2976 and below % 16 == 0
    assert is_feasible(dataclasses.replace(problem, head_dim=below), L4, "cuda-fused")
    assert not is_feasible(dataclasses.replace(problem, head_dim=below + 16), L4, "cuda-fused")
    assert any(a.kind == "backend" and a.family == "cuda-alternating" for a in e.alternatives)


def test_cuda_fused_too_many_heads_for_a_cooperative_grid():
    # the fewest heads of D=1024 whose R no longer fits one co-resident grid on the A100
    heads = next(
        n for n in (2, 4, 8, 16, 32) if not is_feasible(Problem("lstm", 16, n, 1024), A100, "cuda-fused")
    )
    e = explain(Problem("lstm", batch=16, heads=heads, head_dim=1024), A100, "cuda-fused")
    assert not e.feasible and e.conflicts
    fewer = _alternative(e, "heads")
    assert fewer is not None and fewer.problem.heads == heads // 2  # heads // 2 fits: the loop above
    assert is_feasible(fewer.problem, A100, "cuda-fused")


def test_conflict_sets_are_irreducible():
    space = build_space("triton-fused", Problem("gru", batch=64, heads=2, head_dim=256), A100)
    e = explain(space.problem, A100, "triton-fused")
    assert not e.feasible
    first = _names(e, 1)
    assert solve(_only(space.model, first)) is None
    for dropped in first:
        assert solve(_only(space.model, [n for n in first if n != dropped])) is not None


def test_a_feasible_space_has_nothing_to_explain():
    e = explain(Problem("lstm", batch=16, heads=1, head_dim=64), "a100", "triton-fused")
    assert e.feasible and e.conflicts == ()
    assert "feasible, nothing conflicts" in e.to_text()


def test_float64_is_refused_by_the_problem_not_explained():
    with pytest.raises(ValueError, match="dtype: got 'float64'"):
        Problem("lstm", batch=16, heads=1, head_dim=64, dtype="float64")


def test_json_round_trips():
    e = explain(Problem("elman", batch=16, heads=1, head_dim=512), "h100", "triton-fused")
    data = json.loads(json.dumps(e.to_json_dict()))
    assert data["backend"] == "triton-fused" and data["gpu"] == "h100-sxm5-80gb" and not data["feasible"]
    assert {"group", "name", "why", "text", "used", "limit", "unit", "closest"} <= set(data["conflicts"][0])
    assert all({"kind", "backend", "problem", "text"} <= set(a) for a in data["alternatives"])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("lstm", "a100", "triton-fused"), "problem: got str"),
        ((Problem("lstm", 16, 1, 64), "a100", "cuda"), "family: got 'cuda'"),
        ((Problem("lstm", 16, 1, 64), "b200", "cuda-fused"), "unknown GPU 'b200'"),
    ],
    ids=["problem", "family", "gpu"],
)
def test_bad_arguments(args: tuple, match: str):
    with pytest.raises(ValueError, match=match):
        explain(*args)


@pytest.mark.parametrize(
    ("family", "problem", "gpu"),
    [
        ("triton-fused", Problem("lstm", 16, 1, 1024), A100),
        ("triton-fused", Problem("lstm", 16, 1, 128, direction="both"), A100),
        ("cuda-fused", Problem("lstm", 16, 1, 2976), L4),
        ("cuda-fused", Problem("slstm", 64, 8, 2048, dtype="float32"), A100),
    ],
    ids=["triton-d1024", "triton-both", "cudafused-l4", "cudafused-8heads"],
)
def test_first_conflict_set_is_the_native_solvers(family: str, problem: Problem, gpu):
    # numpy answers the deletion filter's questions; the filter and its answers are the native ones
    model = build_space(family, problem, gpu).model
    e = explain(problem, gpu, family)
    assert _names(e, 1) == conflicting_constraints(model, backend="native")
