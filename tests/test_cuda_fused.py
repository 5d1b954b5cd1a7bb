"""cuda-fused numerics in the CPU emulator: every cell x dtype, forward and backward, against the
float64 reference (all states, final states, the gradients of Wx, R, b and the initial states).

The kernels' own source runs in tunekit's emulator (TUNEKIT_CUDA_EMULATOR=1). A real GPU's grid is
far too large to emulate quickly, so each case runs on a small test profile (an a100 with a few SMs
and a small register file and shared memory, made with dataclasses.replace) on which the solver's
own space for D around 64 needs several blocks along rows, a k split (cross-block reduction),
several batch passes, or blocks spanning two heads; each case takes the first configuration in
the solver's order that has its feature. Shapes are odd (D, B) and T=9.

Tolerances are relative to the reference's magnitude, per dtype: tf32 products (10-bit mantissa)
for float32 layers, and for 16-bit layers the rounding of every stored state (the kernels carry
fp32 states but multiply the stored 16-bit y), which compounds over the 9 steps.
"""

from __future__ import annotations

import dataclasses
import os

import pytest
import torch

from tunekit.cells import get_cell
from tunekit.constraints import build_space
from tunekit.hardware import load_profile
from tunekit.kernels import cuda_fused
from tunekit.problem import Problem
from tunekit.reference import rnn as reference

TOL = {"float32": 2e-3, "float16": 4e-3, "bfloat16": 3e-2}


@pytest.fixture(autouse=True)
def _emulator(monkeypatch):
    monkeypatch.setenv("TUNEKIT_CUDA_EMULATOR", "1")


def tiny_profile(name: str, **changes) -> object:
    """An a100 profile shrunk to a few SMs (and a small register file / shared memory)."""
    return dataclasses.replace(load_profile("a100"), name=name, **changes)


# name -> changes: small register files and shared memory force R over several blocks and k slices
PROFILES = {
    "tiny4": {"sm_count": 4, "registers_per_sm": 16384, "registers_per_block": 16384,
              "shared_memory_per_sm": 24 * 1024, "shared_memory_per_block_optin": 23 * 1024},
    "tiny8": {"sm_count": 8, "registers_per_sm": 8192, "registers_per_block": 8192,
              "shared_memory_per_sm": 16 * 1024, "shared_memory_per_block_optin": 15 * 1024},
    "tiny3": {"sm_count": 3, "registers_per_sm": 16384, "registers_per_block": 16384,
              "shared_memory_per_sm": 24 * 1024, "shared_memory_per_block_optin": 23 * 1024},
}  # fmt: skip

FEATURES = {
    "rows": lambda r, a: r["row_blocks"] > 1,
    "ksplit": lambda r, a: r["split_k"] > 1,
    "passes": lambda r, a: r["batch_passes"] > 1,
    "span": lambda r, a: a["span_heads"] == 1,
}

# (cell, dtype, B, N, D, profile, feature)
CASES = [
    ("lstm", "bfloat16", 5, 1, 64, "tiny4", "rows"),
    ("lstm", "float32", 9, 1, 63, "tiny8", "ksplit"),
    ("lstm", "float16", 17, 1, 40, "tiny4", "passes"),
    ("gru", "float32", 9, 1, 63, "tiny4", "ksplit"),
    ("gru", "bfloat16", 9, 1, 63, "tiny4", "passes"),
    ("gru", "float16", 3, 1, 33, "tiny4", "rows"),
    ("slstm", "float16", 17, 2, 48, "tiny3", "span"),
    ("slstm", "bfloat16", 7, 1, 64, "tiny4", "rows"),
    ("slstm", "float32", 5, 1, 57, "tiny8", "ksplit"),
    ("elman", "float32", 11, 1, 104, "tiny8", "ksplit"),
    ("elman", "bfloat16", 17, 2, 64, "tiny3", "span"),
    ("elman", "float16", 5, 1, 47, "tiny4", "rows"),
]
IDS = [f"{c}-{dt}-B{b}-N{n}-D{d}-{f}" for c, dt, b, n, d, _, f in CASES]


def pick(problem: Problem, profile: object, feature: str):
    """The first configuration in the solver's order that has ``feature`` (the test's subject)."""
    space = build_space("cuda-fused", problem, profile)
    for assignment in space.enumerate():
        if FEATURES[feature](space.resources(assignment), assignment):
            return space.config(assignment)
    raise AssertionError(f"{problem} on {profile.name}: no configuration with {feature}")


def inputs(cell: str, batch: int, heads: int, d: int, steps: int, dtype: str, seed: int = 0):
    c = get_cell(cell)
    g = torch.Generator().manual_seed(seed)
    t = getattr(torch, dtype)
    wx = torch.randn(batch, steps, len(c.w_gates), heads, d, generator=g).to(t)
    r = (torch.randn(len(c.r_gates), heads, d, d, generator=g) / d**0.5).to(t)
    b = (0.1 * torch.randn(len(c.b_gates), heads, d, generator=g)).to(t)
    s0 = 0.5 * torch.randn(len(c.states), batch, 1, heads, d, generator=g)
    if cell == "slstm":  # (y, c, n, m): a normaliser >= 1 and a stabiliser, as after some steps
        s0[2] = 1 + s0[2].abs()
    return wx, r, b, s0.to(t)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.detach().double(), want.detach()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-6))


@pytest.mark.parametrize("cell,dtype,batch,heads,d,profile,feature", CASES, ids=IDS)
def test_states_and_gradients_match_the_float64_reference(cell, dtype, batch, heads, d, profile, feature):
    gpu = tiny_profile(f"test-{profile}", **PROFILES[profile])
    config = pick(Problem(cell, batch, heads, d, dtype, "both"), gpu, feature)
    leaves = [t.clone().requires_grad_() for t in inputs(cell, batch, heads, d, 9, dtype)]
    states, last = cuda_fused.fused_rnn(*leaves, cell=cell, config=config, gpu=gpu)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    want, want_last = reference(*ref_leaves, cell=cell)
    assert states.dtype == leaves[0].dtype and states.shape == want.shape and last.shape == want_last.shape
    assert rel_err(states, want) < TOL[dtype], f"{config.name}: all states"
    assert rel_err(last, want_last) < TOL[dtype], f"{config.name}: final states"
    assert torch.equal(last, states[:, :, -1:])
    # a loss on every state and on the final states (sLSTM's stabiliser m carries no gradient)
    g = torch.Generator().manual_seed(1)
    w_all, w_last = torch.randn(states.shape, generator=g), torch.randn(last.shape, generator=g)
    if cell == "slstm":
        w_all[3], w_last[3] = 0, 0
    ((states.float() * w_all).sum() + (last.float() * w_last).sum()).backward()
    ((want * w_all.double()).sum() + (want_last * w_last.double()).sum()).backward()
    for name, got, ref in zip(("Wx", "R", "b", "states"), leaves, ref_leaves, strict=True):
        assert got.grad.dtype == got.dtype
        assert rel_err(got.grad, ref.grad) < TOL[dtype], f"{config.name}: gradient of {name}"


def test_a_double_backward_is_refused():
    gpu = tiny_profile("test-tiny4", **PROFILES["tiny4"])
    config = pick(Problem("elman", 5, 1, 47, "float32", "both"), gpu, "rows")
    wx, r, b, s0 = (t.requires_grad_() for t in inputs("elman", 5, 1, 47, 2, "float32"))
    states, _ = cuda_fused.fused_rnn(wx, r, b, s0, cell="elman", config=config, gpu=gpu)
    (grad,) = torch.autograd.grad((states**2).sum(), wx, create_graph=True)  # grad_output needs grad
    with pytest.raises(RuntimeError, match="once_differentiable|twice"):
        grad.sum().backward()


def test_a_forward_only_configuration_is_refused_when_gradients_are_wanted():
    gpu = tiny_profile("test-tiny4", **PROFILES["tiny4"])
    config = pick(Problem("lstm", 5, 1, 64, "bfloat16", "forward"), gpu, "rows")
    wx, r, b, s0 = inputs("lstm", 5, 1, 64, 3, "bfloat16")
    with pytest.raises(ValueError, match="direction='both'"):
        cuda_fused.fused_rnn(wx.requires_grad_(), r, b, s0, cell="lstm", config=config, gpu=gpu)


def test_initial_states_are_not_modified_and_default_to_zero():
    gpu = tiny_profile("test-tiny4", **PROFILES["tiny4"])
    config = pick(Problem("lstm", 5, 1, 64, "bfloat16", "forward"), gpu, "rows")
    wx, r, b, s0 = inputs("lstm", 5, 1, 64, 3, "bfloat16")
    kept = s0.clone()
    cuda_fused.fused_rnn(wx, r, b, s0, cell="lstm", config=config, gpu=gpu)
    assert torch.equal(s0, kept)
    zeros, _ = cuda_fused.fused_rnn(wx, r, b, torch.zeros_like(s0), cell="lstm", config=config, gpu=gpu)
    none, _ = cuda_fused.fused_rnn(wx, r, b, None, cell="lstm", config=config, gpu=gpu)
    assert torch.equal(zeros, none)


def test_the_runtime_renders_each_kernel_program_once_per_configuration(monkeypatch):
    gpu = tiny_profile("test-tiny4", **PROFILES["tiny4"])
    config = pick(Problem("elman", 3, 1, 24, "float32", "forward"), gpu, "rows")
    wx, r, b, _ = inputs("elman", 3, 1, 24, 2, "float32")
    first, _ = cuda_fused.fused_rnn(wx, r, b, cell="elman", config=config, gpu=gpu)
    renders = []
    monkeypatch.setattr(cuda_fused, "program", lambda *a: renders.append(a) or pytest.fail("re-rendered"))
    again, _ = cuda_fused.fused_rnn(wx, r, b, cell="elman", config=config, gpu=gpu)
    assert renders == [] and torch.equal(first, again)


def test_a_configuration_for_another_shape_is_refused_before_anything_runs():
    gpu = tiny_profile("test-tiny4", **PROFILES["tiny4"])
    config = pick(Problem("lstm", 5, 1, 64, "bfloat16", "forward"), gpu, "rows")
    wx, r, b, s0 = inputs("lstm", 6, 1, 64, 3, "bfloat16")
    with pytest.raises(ValueError, match="tune for the inputs' shape"):
        cuda_fused.fused_rnn(wx, r, b, s0, cell="lstm", config=config, gpu=gpu)


def test_without_the_emulator_cpu_tensors_get_an_error_naming_both_ways(monkeypatch):
    from tunekit.cuda import CudaUnavailableError

    monkeypatch.delenv("TUNEKIT_CUDA_EMULATOR", raising=False)
    assert "TUNEKIT_CUDA_EMULATOR" not in os.environ
    gpu = tiny_profile("test-tiny4", **PROFILES["tiny4"])
    config = pick(Problem("lstm", 5, 1, 64, "bfloat16", "forward"), gpu, "rows")
    wx, r, b, s0 = inputs("lstm", 5, 1, 64, 3, "bfloat16")
    with pytest.raises(CudaUnavailableError, match="TUNEKIT_CUDA_EMULATOR"):
        cuda_fused.fused_rnn(wx, r, b, s0, cell="lstm", config=config, gpu=gpu)


def test_tunekit_rnn_runs_cuda_fused_in_the_emulator():
    import tunekit

    wx, r, b, _ = inputs("lstm", 5, 1, 40, 4, "float32")
    states, last = tunekit.rnn(wx, r, b, cell="lstm", backend="cuda-fused")  # tuned for the a100 profile
    want, _ = reference(wx.double(), r.double(), b.double(), cell="lstm")
    assert rel_err(states, want) < TOL["float32"]
