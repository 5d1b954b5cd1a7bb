"""The named layers: torch.nn.LSTM, GRU and RNN's drop-in replacements, and the sLSTM."""

from __future__ import annotations

from typing import Any

from torch import nn

from tunekit.cells import Cell, get_cell
from tunekit.cells.elman_relu import ELMAN_RELU
from tunekit.layers.base import RecurrentLayer


class LSTM(RecurrentLayer):
    """torch.nn.LSTM's drop-in: returns ``(output, (h_n, c_n))``; ``num_heads`` heads per layer.

    ``proj_size`` (torch.nn.LSTM's projections) must be 0: tunekit's kernels take R [4, N, D, D]
    acting on the full hidden state, not on a projection of it.
    """

    cell_name = "lstm"
    torch_class = nn.LSTM

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        **kwargs: Any,
    ) -> None:
        if proj_size != 0:
            raise ValueError(
                f"proj_size: got {proj_size!r}; tunekit.LSTM has no projections (its kernels multiply R "
                "by the full hidden state), expected 0. Use torch.nn.LSTM for projected LSTMs"
            )
        super().__init__(
            input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, **kwargs
        )
        self.proj_size = 0


class GRU(RecurrentLayer):
    """torch.nn.GRU's drop-in: returns ``(output, h_n)`` (FlashRNN's gate slots inside, DESIGN §3)."""

    cell_name = "gru"
    torch_class = nn.GRU


class RNN(RecurrentLayer):
    """torch.nn.RNN's drop-in (Elman): ``nonlinearity`` "tanh" (the "elman" cell) or "relu" (run on
    the reference backend, :mod:`tunekit.cells.elman_relu`); returns ``(output, h_n)``. As in
    torch.nn.RNN, ``nonlinearity`` is the fourth positional argument."""

    torch_class = nn.RNN
    NONLINEARITIES = {"tanh": "elman", "relu": ELMAN_RELU}

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        if nonlinearity not in self.NONLINEARITIES:
            raise ValueError(f"nonlinearity: got {nonlinearity!r}, expected 'tanh' or 'relu'")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, num_layers, *args, **kwargs)

    def _cell_from(self, cell: str | Cell | None) -> Cell:
        own = get_cell(self.NONLINEARITIES[self.nonlinearity])
        if cell is not None and get_cell(cell) is not own:
            got = cell if isinstance(cell, str) else cell.name
            raise ValueError(
                f"cell: got {got!r} for tunekit.RNN with nonlinearity={self.nonlinearity!r}, whose cell is "
                f"{own.name!r}; use tunekit.layers.RecurrentLayer(..., cell={got!r}) for another cell"
            )
        return own

    def _torch_arguments(self) -> dict[str, Any]:
        return {"nonlinearity": self.nonlinearity}

    def extra_repr(self) -> str:
        text = super().extra_repr()
        return text if self.nonlinearity == "tanh" else f"{text}, nonlinearity={self.nonlinearity!r}"


Elman = RNN  # the cell's name in tunekit


class SLSTM(RecurrentLayer):
    """Multi-head sLSTM (xLSTM); returns ``(output, (y_n, c_n, n_n, m_n))``, each state
    [num_layers * num_directions, B, hidden_size] like LSTM's (h_n, c_n); ``hx`` takes the same
    four. Parameters as LSTM's (gates i, f, z, o); no torch.nn counterpart."""

    cell_name = "slstm"
