"""cuda-fused on a real GPU (skipped without CUDA): numbers vs the emulator's reference and timings
against torch.nn.LSTM (cuDNN), the shape of FlashRNN's README figure (LSTM bf16, B=16, T=1024)."""

from __future__ import annotations

import pytest
import torch

import tunekit
from tunekit.reference import rnn as reference

pytestmark = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _time_ms(fn, repeat: int = 5) -> float:
    fn()  # compile, warm up
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeat):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / repeat


@needs_gpu
@pytest.mark.parametrize("cell", ["lstm", "gru", "slstm", "elman"])
def test_gpu_states_and_gradients_match_the_reference(cell):
    from tunekit.cells import get_cell

    c = get_cell(cell)
    g = torch.Generator(device="cuda").manual_seed(0)
    B, T, N, D = 5, 17, 2, 96
    wx = torch.randn(B, T, len(c.w_gates), N, D, device="cuda", generator=g).bfloat16().requires_grad_()
    r = (
        (torch.randn(len(c.r_gates), N, D, D, device="cuda", generator=g) / D**0.5)
        .bfloat16()
        .requires_grad_()
    )
    b = torch.zeros(len(c.b_gates), N, D, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    states, _ = tunekit.rnn(wx, r, b, cell=cell, backend="cuda-fused")
    want, _ = reference(wx.detach().double(), r.detach().double(), b.detach().double(), cell=cell)
    assert float((states.double() - want).abs().max() / want.abs().max()) < 3e-2
    states.float().sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in (wx, r, b))


@needs_gpu
@pytest.mark.parametrize("hidden", [256, 768])
def test_gpu_timing_against_cudnn(hidden, record_property):
    B, T = 16, 1024
    lstm = torch.nn.LSTM(hidden, hidden, batch_first=True).cuda().half()
    x = torch.randn(B, T, hidden, device="cuda", dtype=torch.half)
    cudnn_fwd = _time_ms(lambda: lstm(x))
    wx = torch.randn(B, T, 4, 1, hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    r = (torch.randn(4, 1, hidden, hidden, device="cuda") / hidden**0.5).bfloat16().requires_grad_()
    b = torch.zeros(4, 1, hidden, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    with torch.no_grad():
        fused_fwd = _time_ms(lambda: tunekit.rnn(wx, r, b, cell="lstm", backend="cuda-fused"))
    fused_both = _time_ms(
        lambda: tunekit.rnn(wx, r, b, cell="lstm", backend="cuda-fused")[0].float().sum().backward()
    )
    record_property("cudnn_forward_ms", cudnn_fwd)
    record_property("cuda_fused_forward_ms", fused_fwd)
    record_property("cuda_fused_forward_backward_ms", fused_both)
    print(f"D={hidden}: cuDNN forward {cudnn_fwd:.2f} ms; cuda-fused forward {fused_fwd:.2f} ms, "
          f"forward+backward {fused_both:.2f} ms")  # fmt: skip
    assert fused_fwd > 0 and fused_both > 0
