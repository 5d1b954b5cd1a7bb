"""Reference layers: a plain PyTorch loop over time around each cell's torch-printed pointwise step.

Slow and obviously correct, with the same signature and return value as the fused backends, so a
test is one comparison. Autograd runs through it; the sLSTM's stabilizer m is detached (its
initial value and every new value), as the derived backward assumes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from tunekit.cells import Cell, get_cell
from tunekit.cells.derive import backward_inputs, backward_outputs, forward_inputs, forward_outputs
from tunekit.cells.printers import TORCH_PRELUDE
from tunekit.checks import check_rnn_inputs

StepFn = Callable[..., tuple[Any, ...]]


def _compile(cell: Cell, direction: str, inputs: list[str], outputs: list[str]) -> StepFn:
    """Turn the printed torch assignments into a Python function of keyword arguments ``inputs``."""
    code = cell.forward_code("torch") if direction == "forward" else cell.backward_code("torch")
    body = "\n".join(f"    {target} = {expr}" for target, expr in code)
    name = f"{cell.name}_{direction}"
    source = f"def {name}(*, {', '.join(inputs)}):\n{body}\n    return ({', '.join(outputs)},)\n"
    namespace: dict[str, Any] = {"torch": torch}
    exec(compile(TORCH_PRELUDE, f"<tunekit torch prelude for {name}>", "exec"), namespace)
    exec(compile(source, f"<tunekit {name}>", "exec"), namespace)
    function = namespace[name]
    function.__doc__ = f"{cell.name} {direction} step, printed from the cell's declaration:\n\n{source}"
    return function


@functools.cache
def forward_step(cell: str | Cell) -> StepFn:
    """The cell's pointwise step: keyword arguments ``wx_<g>, ry_<g>, b_<g>, s_<st>`` → new states."""
    declaration = get_cell(cell)
    return _compile(declaration, "forward", forward_inputs(declaration), forward_outputs(declaration))


@functools.cache
def backward_step(cell: str | Cell) -> StepFn:
    """The derived pointwise backward: forward inputs and ``ds_<st>_new`` → ``dwx, dry, db, ds``."""
    declaration = get_cell(cell)
    return _compile(declaration, "backward", backward_inputs(declaration), backward_outputs(declaration))


def _as_state(value: Any, like: torch.Tensor) -> torch.Tensor:
    """A step output as a tensor of the state's shape and dtype (a constant output is a Python float)."""
    if isinstance(value, torch.Tensor) and value.shape == like.shape and value.dtype == like.dtype:
        return value
    return torch.broadcast_to(torch.as_tensor(value, device=like.device), like.shape).to(like.dtype)


def rnn(
    Wx: torch.Tensor,
    R: torch.Tensor,
    b: torch.Tensor,
    states: torch.Tensor | None = None,
    *,
    cell: str | Cell,
    config: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``cell`` over a sequence with a PyTorch loop; differentiable in every input.

    Wx: [B, T, G_w, N, D] input contributions; R: [G_r, N, D, D] block-diagonal recurrence, output
    index first (``ry[g, n, i] = sum_j R[g, n, i, j] y[n, j]``); b: [G_t, N, D]; states:
    [S, B, 1, N, D] initial states, zeros when None. Returns (all_states [S, B, T, N, D],
    last [S, B, 1, N, D]); ``all_states[0]`` is the hidden output. ``config`` is ignored.
    """
    del config  # the reference has nothing to tune
    declaration = get_cell(cell)
    batch, steps, heads, head_dim = check_rnn_inputs(declaration, Wx, R, b, states)
    if states is None:
        states = Wx.new_zeros(len(declaration.states), batch, 1, heads, head_dim)
    step = forward_step(declaration)
    current = dict(zip(declaration.states, states[:, :, 0].unbind(0), strict=True))
    for st in declaration.no_grad_states:
        current[st] = current[st].detach()
    biases = {f"b_{g}": b[k] for k, g in enumerate(declaration.b_gates)}
    history: list[torch.Tensor] = []
    for t in range(steps):
        # ry[g] = R[g] y per head: [G_r, N, D_out, D_in] x [B, N, D_in] -> [G_r, B, N, D_out]
        ry = torch.einsum("gnij,bnj->gbni", R, current[declaration.states[0]])
        arguments = {f"wx_{g}": Wx[:, t, k] for k, g in enumerate(declaration.w_gates)}
        arguments |= {f"ry_{g}": ry[k] for k, g in enumerate(declaration.r_gates)}
        arguments |= biases
        arguments |= {f"s_{st}": value for st, value in current.items()}
        like = current[declaration.states[0]]
        new = step(**arguments)
        current = {st: _as_state(value, like) for st, value in zip(declaration.states, new, strict=True)}
        history.append(torch.stack([current[st] for st in declaration.states]))
    all_states = torch.stack(history, dim=2)  # [S, B, T, N, D]
    return all_states, all_states[:, :, -1:]
