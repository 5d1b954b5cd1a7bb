"""The reference ``tunekit.rnn`` (DESIGN §3 layouts) computes the cells' recurrences and their gradients.

Specs: gradcheck passes for every cell with several heads; heads are independent blocks of R;
``last`` is the final step of ``all_states``; the sLSTM equals a plain transcription of DESIGN §3's
formulas (written below, not derived) including the first step n == 0 (an empty memory: an initial
c there is ignored), and stays finite over 2048 steps of pre-activations of magnitude 30 in float32,
forward and backward. tests/test_slstm_finite.py checks the extremes (i = -100, ±1e4, T = 8192).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import tunekit
from tunekit.cells import get_cell

CELLS = ("elman", "lstm", "gru", "slstm")


def inputs(
    cell: str, B: int, T: int, N: int, D: int, dtype=torch.float64, seed: int = 0, states: bool = True
):
    """Wx, R, b and (optionally) initial states for ``cell``; sLSTM states have n >= 1 (a later step)."""
    declared = get_cell(cell)
    g = torch.Generator().manual_seed(seed)
    Wx = torch.randn(B, T, len(declared.w_gates), N, D, generator=g, dtype=dtype)
    R = torch.randn(len(declared.r_gates), N, D, D, generator=g, dtype=dtype) / D**0.5
    b = torch.randn(len(declared.b_gates), N, D, generator=g, dtype=dtype)
    s0 = None
    if states:
        s0 = torch.randn(len(declared.states), B, 1, N, D, generator=g, dtype=dtype)
        if cell == "slstm":
            s0[2] = 1 + torch.rand(B, 1, N, D, generator=g, dtype=dtype)  # n >= 1
    return Wx, R, b, s0


@pytest.mark.parametrize("with_states", [True, False], ids=["states", "zeros"])
@pytest.mark.parametrize("cell", CELLS)
def test_gradcheck_multi_head(cell: str, with_states: bool):
    Wx, R, b, s0 = inputs(cell, B=2, T=3, N=3, D=2, states=with_states)
    stabilizer = None
    if cell == "slstm" and s0 is not None:
        # the initial m gets no gradient by design (it only rescales c and n): not a gradcheck input
        s0, stabilizer = s0[:3], s0[3:]
    leaves = tuple(t.requires_grad_() for t in (Wx, R, b, s0) if t is not None)

    def run(*args):
        if stabilizer is not None:
            args = (*args[:3], torch.cat([args[3], stabilizer]))
        all_states, last = tunekit.rnn(*args, cell=cell)
        if cell == "slstm":
            # c and n are rescaled by the stabilizer m, which carries no gradient; the hidden output
            # y = σ(o) c/n does not depend on that scale, so its gradient is the true one
            return all_states[0], last[0]
        return all_states, last

    # the full Jacobian when initial states are inputs too; torch's fast mode (random projections) otherwise
    assert torch.autograd.gradcheck(run, leaves, fast_mode=not with_states)


@pytest.mark.parametrize("cell", CELLS)
def test_heads_are_independent_blocks_and_last_is_the_final_step(cell: str):
    B, T, N, D = 5, 7, 3, 4
    Wx, R, b, s0 = inputs(cell, B, T, N, D)
    all_states, last = tunekit.rnn(Wx, R, b, s0, cell=cell)
    S = len(get_cell(cell).states)
    assert all_states.shape == (S, B, T, N, D) and last.shape == (S, B, 1, N, D)
    torch.testing.assert_close(last, all_states[:, :, -1:], rtol=0, atol=0)
    for n in range(N):
        one = tunekit.rnn(
            Wx[:, :, :, n : n + 1], R[:, n : n + 1], b[:, n : n + 1], s0[..., n : n + 1, :], cell=cell
        )
        torch.testing.assert_close(all_states[..., n : n + 1, :], one[0], rtol=1e-14, atol=1e-14)


def test_R_is_output_index_first():
    """Elman's first step by hand: y1 = tanh(Wx + R y0 + b), with R[0, n] @ y0[n] (rows are outputs)."""
    B, N, D = 2, 3, 5
    Wx, R, b, s0 = inputs("elman", B, 1, N, D)
    all_states, _ = tunekit.rnn(Wx, R, b, s0, cell="elman")
    y0 = s0[0, :, 0]  # [B, N, D]
    ry = (R[0] @ y0.unsqueeze(-1)).squeeze(-1)  # [N, D, D] @ [B, N, D, 1]
    torch.testing.assert_close(
        all_states[0, :, 0], torch.tanh(Wx[:, 0, 0] + ry + b[0]), rtol=1e-14, atol=1e-14
    )
    transposed, _ = tunekit.rnn(Wx, R.transpose(-1, -2), b, s0, cell="elman")
    assert not torch.allclose(transposed, all_states)


def slstm_by_hand(Wx, R, b, states):
    """DESIGN §3's sLSTM, transcribed: gates (i, f, z, o), states (y, c, n, m); n == 0 is an empty
    memory (f'c = f'n = 0 there). Forward only, in float64: exp(lf - i) may be huge where n == 0."""
    y, c, n, m = states[:, :, 0]
    history = []
    for t in range(Wx.shape[1]):
        i, f, z, o = ((R[k] @ y.unsqueeze(-1)).squeeze(-1) + Wx[:, t, k] + b[k] for k in range(4))
        lf = F.logsigmoid(f) + m
        m_new = torch.where(n == 0, i, torch.maximum(i, lf))
        i_gate = torch.exp(i - m_new)
        f_gate = torch.where(n == 0, 0.0, torch.exp(lf - m_new))
        c = f_gate * c + i_gate * torch.tanh(z)
        n = torch.maximum(f_gate * n + i_gate, torch.ones_like(n))
        y = torch.sigmoid(o) * c / n
        m = m_new
        history.append(torch.stack([y, c, n, m]))
    return torch.stack(history, dim=2)


@pytest.mark.parametrize("start", ["zeros", "mixed"], ids=["first-step-zeros", "n-zero-and-positive"])
def test_slstm_equals_a_plain_transcription_of_design(start: str):
    B, T, N, D = 5, 63, 3, 48
    Wx, R, b, s0 = inputs("slstm", B, T, N, D, seed=3)
    Wx = 3 * Wx  # pre-activations of a few units, so both branches of max(i, lf) occur
    if start == "zeros":
        s0 = torch.zeros_like(s0)
    else:
        # batch row 0 starts a sequence (n == 0, its c is ignored); the others continue one (n >= 1)
        s0[2, 0] = 0.0
    expected = slstm_by_hand(Wx, R, b, s0)
    all_states, _ = tunekit.rnn(Wx, R, b, None if start == "zeros" else s0, cell="slstm")
    torch.testing.assert_close(all_states, expected, rtol=1e-12, atol=1e-12)
    m = expected[3]
    lf_branch = m[:, 1:] != (
        Wx[:, 1:, 0] + torch.einsum("gnij,btnj->gbtni", R, expected[0, :, :-1])[0] + b[0]
    )
    assert lf_branch.any() and (~lf_branch).any(), "both branches of m' = max(i, lf) should occur"


def test_slstm_stays_finite_over_long_sequences_of_large_preactivations():
    B, T, N, D = 2, 2048, 1, 8
    g = torch.Generator().manual_seed(5)
    Wx = 30 * torch.randn(B, T, 4, N, D, generator=g).sign()  # |pre-activation| = 30: exp(30) ~ 1e13
    Wx.requires_grad_()
    R = (torch.randn(4, N, D, D, generator=g) / D**0.5).requires_grad_()
    b = torch.zeros(4, N, D, requires_grad=True)
    all_states, last = tunekit.rnn(Wx, R, b, cell="slstm")
    assert torch.isfinite(all_states).all()
    # |c| <= n holds at every step (c' = f'c + i'tanh z, n' >= f'n + i'), so |y| = σ(o)|c|/n <= 1
    assert all_states[0].abs().max() <= 1 + 1e-5
    (all_states[0].sum() + last[0].square().sum()).backward()
    for name, tensor in (("Wx", Wx), ("R", R), ("b", b)):
        assert torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name


@pytest.mark.parametrize("cell", CELLS)
def test_zero_initial_states_equal_no_initial_states(cell: str):
    Wx, R, b, s0 = inputs(cell, 3, 4, 2, 5)
    without, _ = tunekit.rnn(Wx, R, b, cell=cell)
    with_zeros, _ = tunekit.rnn(Wx, R, b, torch.zeros_like(s0), cell=cell)
    torch.testing.assert_close(without, with_zeros, rtol=0, atol=0)
