"""cuda-alternating on the local GPU (NVRTC-compiled kernels) against the float64 reference and
against the same kernels' source in the CPU emulator.

Marked ``gpu`` and skipped without CUDA: CI has no GPU, users with one run these. The emulator
models the tensor core as exact products added in k order in fp32; the hardware adds several
products before rounding, so GPU and emulator agree within the per-dtype tolerance, not bit for bit.
"""

from __future__ import annotations

import pytest
import torch

# emulator: the autouse fixture of the CPU tests (emulator for CPU tensors, the test cells registered)
from test_cuda_alternating import CELLS, DTYPE_IDS, assert_close, check, config_for, emulator  # noqa: F401

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.mark.parametrize("dtype", list(DTYPE_IDS), ids=list(DTYPE_IDS.values()))
@pytest.mark.parametrize("cell", CELLS)
def test_gpu_matches_reference(cell, dtype):
    check(cell, B=5, T=33, N=3, D=40, dtype=dtype, config=config_for(dtype), seed=21, device="cuda")


@pytest.mark.parametrize(
    "cell,dtype", [("lstm", torch.bfloat16), ("gru", torch.float32), ("slstm", torch.float16)],
    ids=["lstm-bf16", "gru-fp32", "slstm-fp16"],
)  # fmt: skip
def test_gpu_matches_the_emulator(cell, dtype):
    config = config_for(dtype)
    _, gpu_states, gpu_last, gpu_grads = check(cell, 5, 13, 3, 40, dtype, config, seed=22, device="cuda")
    _, emu_states, emu_last, emu_grads = check(cell, 5, 13, 3, 40, dtype, config, seed=22, device="cpu")
    assert_close(gpu_states, emu_states.double(), dtype, "all states: GPU vs emulator")
    assert_close(gpu_last, emu_last.double(), dtype, "final states: GPU vs emulator")
    for name, a, b in zip(("dWx", "dR", "db", "dstates0"), gpu_grads, emu_grads, strict=True):
        assert_close(a, b.double(), dtype, f"{name}: GPU vs emulator")


@pytest.mark.parametrize("head_dim", [64, 768])
def test_tuned_config_runs_when_no_config_is_given(head_dim):
    # config=None asks the tuner for the local GPU's profile; D=768 is past any fused kernel's reach
    check("lstm", B=16, T=9, N=1, D=head_dim, dtype=torch.bfloat16, config=None, seed=23, device="cuda")
