"""Recurrent layers as ``torch.nn.Module``: torch.nn.LSTM/GRU/RNN's drop-in replacements, and sLSTM.

``tunekit.LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
bidirectional=False, *, num_heads=1, backend="auto", config=None, device=None, dtype=None)``,
likewise ``GRU``, ``RNN`` (``Elman``; ``nonlinearity`` its fourth argument, as torch.nn.RNN) and
``SLSTM``; ``RecurrentLayer(..., cell=...)`` takes any registered cell. Forward arguments, return
values and parameter names are torch.nn's (:mod:`tunekit.layers.weights` has the layouts,
:mod:`tunekit.layers.sequences` variable-length input, :mod:`tunekit.layer_backend` which
backend runs).
"""

from tunekit.layers.base import RecurrentLayer
from tunekit.layers.named import GRU, LSTM, RNN, SLSTM, Elman

__all__ = ["GRU", "LSTM", "RNN", "SLSTM", "Elman", "RecurrentLayer"]
