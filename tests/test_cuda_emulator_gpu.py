"""The emulator against the hardware: the primitive kernels of tests/cuda run on the GPU (NVRTC) and
in the emulator on the same inputs, and their outputs are compared (bit for bit where the emulator
models the hardware exactly: conversions, ldmatrix, shuffles, votes, integer mma; within the fp32
accumulation bound where it does not: mma of random values, docs/cuda.md §2).

Marked ``gpu`` and skipped without CUDA: CI has no GPU, users with one run these.
"""

from __future__ import annotations

import pytest
import torch
from test_cuda_emulator import STEPS
from test_cuda_emulator_numerics import MMA, PRIMITIVES, WARP, _test_floats

from tunekit.cuda import LaunchDims, runner_for
from tunekit.cuda.emulator import EmulatorRunner

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


def both(program, entry, dims, args):
    """Run on the emulator and on the GPU; per argument, the two results (tensors on the CPU)."""
    emu = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    gpu = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    EmulatorRunner(timeout_s=120).launch(program, entry, dims, emu)
    runner_for(torch.device("cuda")).launch(program, entry, dims, gpu)
    torch.cuda.synchronize()
    return [(e, g.cpu()) for e, g in zip(emu, gpu, strict=True) if isinstance(e, torch.Tensor)]


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def test_conversions_are_bit_identical_on_the_gpu():
    x = torch.from_numpy(_test_floats(seed=21).copy())
    n = x.numel()
    outs = both(
        PRIMITIVES,
        "convert",
        LaunchDims((64, 1, 1), (128, 1, 1)),
        [x, torch.zeros(n, dtype=torch.bfloat16), torch.zeros(n, dtype=torch.float16),
         torch.zeros(n, dtype=torch.uint32), torch.zeros(2 * n), n],
    )  # fmt: skip
    for name, (emu, gpu) in zip(["x", "bf16", "fp16", "tf32", "back"], outs, strict=True):
        assert torch.equal(bits(emu), bits(gpu)), name


def test_pack2_and_load_pair_match_the_gpu():
    x = torch.randn(2 * 37, generator=torch.Generator().manual_seed(22))
    args = [x, torch.zeros(74, dtype=torch.bfloat16), torch.zeros(74, dtype=torch.float16)]
    outs = both(PRIMITIVES, "pairs", WARP, [*args, torch.zeros(4 * 37, dtype=torch.uint32), 37])
    assert all(torch.equal(bits(e), bits(g)) for e, g in outs)


@pytest.mark.parametrize("kind", ["bf16", "f16", "tf32", "bf16-ldmatrix"])
def test_mma_of_integers_is_exact_on_both(kind):
    entry, dtype, K = MMA[kind.split("-")[0]]
    entry = "mma_bf16_ldmatrix" if kind.endswith("ldmatrix") else entry
    g = torch.Generator().manual_seed(23)
    A = torch.randint(-8, 9, (16, K), generator=g).float().to(dtype)
    B = torch.randint(-8, 9, (K, 8), generator=g).float().to(dtype)
    C = torch.randint(-64, 65, (16, 8), generator=g).float()
    (_, _), (_, _), (_, _), (emu, gpu) = both(PRIMITIVES, entry, WARP, [A, B, C, torch.zeros(16, 8)])
    assert torch.equal(emu, gpu)


@pytest.mark.parametrize("kind", ["bf16", "f16", "tf32"])
def test_mma_of_random_values_agrees_within_the_fp32_accumulation_bound(kind):
    entry, dtype, K = MMA[kind]
    g = torch.Generator().manual_seed(24)
    A, B, C = torch.randn(16, K, generator=g), torch.randn(K, 8, generator=g), torch.randn(16, 8, generator=g)
    A, B = A.to(dtype), B.to(dtype)
    (_, _), (_, _), (_, _), (emu, gpu) = both(PRIMITIVES, entry, WARP, [A, B, C, torch.zeros(16, 8)])
    a, b = A.double(), B.double()
    bound = K * 2.0**-24 * (C.double().abs() + a.abs() @ b.abs())  # each is within it of the exact sum
    assert ((emu.double() - gpu.double()).abs() <= 2 * bound).all()


def test_ldmatrix_shuffles_and_votes_match_the_gpu():
    src = torch.arange(256, dtype=torch.int16) * 7 + 3
    perm = ((torch.arange(32) * 5 + 3) % 32).to(torch.int32)
    outs = both(PRIMITIVES, "ldmatrix_forms", WARP, [src, perm, torch.zeros(6 * 32 * 4, dtype=torch.uint32)])
    assert torch.equal(bits(outs[2][0]), bits(outs[2][1]))
    args = torch.tensor([0, 1, 3, 8, 17, 31], dtype=torch.int32)
    outs = both(PRIMITIVES, "shuffles", WARP, [args, torch.zeros(4 * 6 * 6 * 32, dtype=torch.int32), 6])
    assert torch.equal(outs[1][0], outs[1][1])
    outs = both(
        PRIMITIVES, "shuffle_types", WARP,
        [torch.zeros(32), torch.zeros(32, dtype=torch.float64), torch.zeros(32, dtype=torch.int64)],
    )  # fmt: skip
    assert all(torch.equal(e, g) for e, g in outs)
    patterns = torch.tensor([1, 0, 3, 0, 3, 1, 0, 1, 5, 2], dtype=torch.int32)
    outs = both(PRIMITIVES, "votes", WARP, [patterns, torch.zeros(15, dtype=torch.uint32), 5])
    assert torch.equal(bits(outs[1][0]), bits(outs[1][1]))


def test_cp_async_tile_matches_the_gpu():
    src = torch.arange(256, dtype=torch.float32) + 1
    (_, _), (emu, gpu), _ = both(PRIMITIVES, "copies", WARP, [src, torch.zeros(256), torch.zeros(256)])
    assert torch.equal(emu, gpu)  # `early` differs by design: the GPU may have copied group 1 already


def test_persistent_step_loop_matches_the_gpu():
    D, B, T = 32, 16, 8
    g = torch.Generator().manual_seed(25)
    r = (torch.randn(4 * D, D, generator=g) / D**0.5).to(torch.bfloat16)
    args = [r, torch.randn(4 * D, generator=g) * 0.1, torch.randn(B, D, generator=g).to(torch.bfloat16)]
    args += [torch.randn(B, D, generator=g), torch.zeros(4 * D, B), torch.zeros(T, B, D), T]
    outs = both(STEPS, "lstm_steps", LaunchDims((4, 1, 1), (128, 1, 1)), args)
    emu, gpu = outs[5]
    assert ((emu - gpu).abs() <= 1e-4 * (1 + gpu.abs())).all()
