"""Recurrent layers as ``torch.nn.Module``: an input projection, then ``tunekit.rnn`` over time.

``input -> Linear(input_size, G_w * hidden_size) -> Wx [B, T, G_w, N, D] -> rnn(Wx, R, b)``.
The projection's output features are gate-major (``g * hidden + n * D + d``), so with one head
``input_proj.weight`` is ``torch.nn.LSTM``'s ``weight_ih_l0`` as is. Outputs follow ``torch.nn``:
``(output, h_n)`` for one state, ``(output, (h_n, c_n, ...))`` for several, each final state
shaped [1, B, hidden_size].
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tunekit.api import known_backends, rnn
from tunekit.cells import Cell, get_cell
from tunekit.checks import check_initial_states, check_layer_input

State = torch.Tensor | tuple[torch.Tensor, ...]


class RecurrentLayer(nn.Module):
    """One recurrent layer of ``cell`` with ``num_heads`` heads of ``hidden_size // num_heads`` units.

    Parameters: ``input_proj`` (Linear without bias), ``R`` [G_r, N, D, D] (output index first),
    ``b`` [G_t, N, D] (absent when ``bias=False``). ``backend`` and ``config`` go to ``tunekit.rnn``.
    """

    cell_name: str = ""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_heads: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        backend: str = "reference",
        config: Any = None,
        *,
        cell: str | Cell | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.cell = get_cell(cell if cell is not None else self.cell_name)
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_heads", num_heads),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: got {value!r}, expected a positive int")
        if hidden_size % num_heads:
            raise ValueError(
                f"hidden_size: got {hidden_size}, "
                f"expected a multiple of num_heads={num_heads} (hidden = N * D)"
            )
        if backend not in known_backends():
            raise ValueError(f"backend: got {backend!r}, expected one of {known_backends()}")
        self.input_size, self.hidden_size, self.num_heads = input_size, hidden_size, num_heads
        self.head_dim = hidden_size // num_heads
        self.batch_first, self.backend, self.config = batch_first, backend, config
        factory = {"device": device, "dtype": dtype}
        cell_ = self.cell
        self.input_proj = nn.Linear(input_size, len(cell_.w_gates) * hidden_size, bias=False, **factory)
        self.R = nn.Parameter(
            torch.empty(len(cell_.r_gates), num_heads, self.head_dim, self.head_dim, **factory)
        )
        if bias:
            self.b = nn.Parameter(torch.empty(len(cell_.b_gates), num_heads, self.head_dim, **factory))
        else:
            self.register_parameter("b", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform(±1/sqrt(D)) for R and b, as torch.nn.LSTM uses ±1/sqrt(hidden) (D is R's fan-in)."""
        bound = 1.0 / math.sqrt(self.head_dim)
        nn.init.uniform_(self.R, -bound, bound)
        if self.b is not None:
            nn.init.uniform_(self.b, -bound, bound)
        self.input_proj.reset_parameters()

    def extra_repr(self) -> str:
        return (
            f"cell={self.cell.name}, input_size={self.input_size}, hidden_size={self.hidden_size}, "
            f"num_heads={self.num_heads}, bias={self.b is not None}, batch_first={self.batch_first}, "
            f"backend={self.backend!r}"
        )

    def forward(self, input: torch.Tensor, hx: State | None = None) -> tuple[torch.Tensor, State]:
        """input: [B, T, input_size] if batch_first else [T, B, input_size]; hx: initial states or None."""
        check_layer_input(input, self.input_size, self.batch_first, like=self.R)
        x = input if self.batch_first else input.transpose(0, 1)
        batch, steps, _ = x.shape
        heads, head_dim = self.num_heads, self.head_dim
        wx = self.input_proj(x).view(batch, steps, len(self.cell.w_gates), heads, head_dim)
        b = self.b if self.b is not None else wx.new_zeros(len(self.cell.b_gates), heads, head_dim)
        states = None
        if hx is not None:
            initial = check_initial_states(hx, self.cell, batch, self.hidden_size, input)
            # [1, B, N*D] per state -> [S, B, 1, N, D]
            states = torch.stack([h.reshape(batch, 1, heads, head_dim) for h in initial])
        all_states, last = rnn(
            wx, self.R, b, states, cell=self.cell, backend=self.backend, config=self.config
        )
        output = all_states[0].reshape(batch, steps, self.hidden_size)  # hidden output y of every step
        if not self.batch_first:
            output = output.transpose(0, 1)
        finals = tuple(last[k].reshape(1, batch, self.hidden_size) for k in range(len(self.cell.states)))
        return output, finals[0] if len(finals) == 1 else finals


class Elman(RecurrentLayer):
    """Elman RNN (``y' = tanh(Wx + Ry + b)``); returns ``(output, h_n)`` like ``torch.nn.RNN``."""

    cell_name = "elman"


class LSTM(RecurrentLayer):
    """Multi-head LSTM; returns ``(output, (h_n, c_n))`` like ``torch.nn.LSTM``."""

    cell_name = "lstm"


class GRU(RecurrentLayer):
    """Multi-head GRU (FlashRNN's gate slots, DESIGN §3); returns ``(output, h_n)`` like ``torch.nn.GRU``."""

    cell_name = "gru"


class SLSTM(RecurrentLayer):
    """Multi-head sLSTM; returns ``(output, (y_n, c_n, n_n, m_n))``."""

    cell_name = "slstm"
