"""With one head, tunekit.LSTM/GRU/Elman are torch.nn.LSTM/GRU/RNN (DESIGN §3).

Forward outputs, final states, and the gradients of the input, every weight, every bias and the
initial states agree to ~1e-10 in float64, with the weight mapping written out below.
"""

from __future__ import annotations

import pytest
import torch

import tunekit

B, T, IN, H = 5, 63, 7, 48  # odd sizes: batch 5, 63 steps, input 7, hidden (= head dim, N = 1) 48
TOL = 1e-10

# torch.nn.GRU stacks (r, z, n); tunekit's GRU R holds (n_rec, r, z): slot k of R is torch's gate
# GRU_R_FROM_TORCH[k]
GRU_R_FROM_TORCH = [2, 0, 1]


def map_same_order(theirs: torch.nn.LSTM | torch.nn.RNN, ours: tunekit.LSTM | tunekit.Elman) -> None:
    """LSTM: torch's gate order (i, f, g, o) is the cell's (i, f, z, o); Elman: one gate. Weights copy
    as they are, and the two biases add (both sit outside any gate product)."""
    gates = theirs.weight_hh_l0.shape[0] // H
    with torch.no_grad():
        ours.input_proj.weight.copy_(theirs.weight_ih_l0)  # [G*H, IN], gate-major rows
        ours.R.copy_(theirs.weight_hh_l0.view(gates, 1, H, H))  # [G*H, H] = out x in -> [G_r, N, D, D]
        ours.b.copy_((theirs.bias_ih_l0 + theirs.bias_hh_l0).view(gates, 1, H))


def map_gru(theirs: torch.nn.GRU, ours: tunekit.GRU) -> None:
    """torch (r, z, n) -> Wx (r, z, n_in), R (n_rec, r, z), b (n_rec, r, z, n_in)."""
    b_ih, b_hh = theirs.bias_ih_l0.view(3, H), theirs.bias_hh_l0.view(3, H)
    with torch.no_grad():
        ours.input_proj.weight.copy_(theirs.weight_ih_l0)  # Wx slots are torch's order (r, z, n)
        ours.R.copy_(theirs.weight_hh_l0.view(3, 1, H, H)[GRU_R_FROM_TORCH])
        # b_hn stays inside r * (W_hn h + b_hn); r and z add both biases; b_in sits outside r
        ours.b.copy_(torch.stack([b_hh[2], b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2]]).view(4, 1, H))


def mapped_grads(kind: str, theirs: torch.nn.Module) -> dict[str, torch.Tensor]:
    """torch's gradients rearranged into the shapes of tunekit's parameters."""
    w_ih, w_hh = theirs.weight_ih_l0.grad, theirs.weight_hh_l0.grad
    b_ih, b_hh = theirs.bias_ih_l0.grad, theirs.bias_hh_l0.grad
    if kind in ("lstm", "elman"):
        # b = b_ih + b_hh: dL/db equals dL/db_ih (and dL/db_hh)
        torch.testing.assert_close(b_ih, b_hh, rtol=0, atol=TOL)
        gates = w_hh.shape[0] // H
        return {"input_proj.weight": w_ih, "R": w_hh.view(gates, 1, H, H), "b": b_ih.view(gates, 1, H)}
    b_ih, b_hh = b_ih.view(3, H), b_hh.view(3, H)
    return {
        "input_proj.weight": w_ih,
        "R": w_hh.view(3, 1, H, H)[GRU_R_FROM_TORCH],
        "b": torch.stack([b_hh[2], b_ih[0], b_ih[1], b_ih[2]]).view(4, 1, H),
    }


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    torch.testing.assert_close(actual, expected, rtol=TOL, atol=TOL, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_first"])
@pytest.mark.parametrize("with_states", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("kind", ["lstm", "gru", "elman"])
def test_one_head_layer_equals_torch_nn(kind: str, with_states: bool, batch_first: bool) -> None:
    torch.manual_seed(0)
    factory = {"dtype": torch.float64}
    theirs_cls, ours_cls, mapping = {
        "lstm": (torch.nn.LSTM, tunekit.LSTM, map_same_order),
        "gru": (torch.nn.GRU, tunekit.GRU, map_gru),
        "elman": (torch.nn.RNN, tunekit.Elman, map_same_order),  # nonlinearity="tanh" by default
    }[kind]
    theirs = theirs_cls(IN, H, batch_first=batch_first, **factory)
    ours = ours_cls(IN, H, num_heads=1, batch_first=batch_first, **factory)
    mapping(theirs, ours)

    shape = (B, T, IN) if batch_first else (T, B, IN)
    x_theirs = torch.randn(shape, **factory, requires_grad=True)
    x_ours = x_theirs.detach().clone().requires_grad_()
    n_states = 2 if kind == "lstm" else 1
    hx_theirs = [torch.randn(1, B, H, **factory, requires_grad=True) for _ in range(n_states)]
    hx_ours = [h.detach().clone().requires_grad_() for h in hx_theirs]
    if with_states:
        args_theirs = (x_theirs, tuple(hx_theirs) if kind == "lstm" else hx_theirs[0])
        args_ours = (x_ours, tuple(hx_ours) if kind == "lstm" else hx_ours[0])
    else:
        args_theirs, args_ours = (x_theirs,), (x_ours,)

    out_theirs, final_theirs = theirs(*args_theirs)
    out_ours, final_ours = ours(*args_ours)
    finals_theirs = final_theirs if kind == "lstm" else (final_theirs,)
    finals_ours = final_ours if kind == "lstm" else (final_ours,)

    close(out_ours, out_theirs, "output")
    assert len(finals_ours) == n_states
    for k, (a, e) in enumerate(zip(finals_ours, finals_theirs, strict=True)):
        close(a, e, f"final state {k}")

    # a loss that touches the output and every final state with different weights
    weights = [torch.randn_like(out_theirs)] + [torch.randn_like(f) for f in finals_theirs]

    def loss(out: torch.Tensor, finals: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return sum((w * v).sum() for w, v in zip(weights, (out, *finals), strict=True))

    loss(out_theirs, finals_theirs).backward()
    loss(out_ours, finals_ours).backward()
    close(x_ours.grad, x_theirs.grad, "d input")
    for name, expected in mapped_grads(kind, theirs).items():
        close(ours.get_parameter(name).grad, expected, f"d {name}")
    if with_states:
        for k, (a, e) in enumerate(zip(hx_ours, hx_theirs, strict=True)):
            close(a.grad, e.grad, f"d initial state {k}")
