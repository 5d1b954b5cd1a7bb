"""Bad input to ``tunekit.rnn`` is a ValueError naming the argument, what it got and what it expected.

Each case starts from valid GRU inputs (G_w=3, G_r=3, G_t=4, S=1; B=5, T=7, N=3, D=4) and breaks
one thing; the message must name the argument and both the received and the expected shape/dtype.
"""

from __future__ import annotations

import pytest
import torch

import tunekit

B, T, N, D = 5, 7, 3, 4


def gru_inputs() -> dict[str, torch.Tensor]:
    return {
        "Wx": torch.randn(B, T, 3, N, D),
        "R": torch.randn(3, N, D, D),
        "b": torch.randn(4, N, D),
        "states": torch.randn(1, B, 1, N, D),
    }


CASES = [
    # id, what to replace, message (a regular expression)
    ("Wx-rank", {"Wx": torch.randn(B, T, 3 * N, D)},
     r"Wx: got shape \(5, 7, 9, 4\) \(4 dims\), expected 5 dims \[B, T, G_w=3, N, D\]"),
    ("R-rank", {"R": torch.randn(3, N * D, D)},
     r"R: got shape \(3, 12, 4\) \(3 dims\), expected 4 dims \[G_r=3, N, D, D\]"),
    ("b-rank", {"b": torch.randn(4, N * D)},
     r"b: got shape \(4, 12\) \(2 dims\), expected 3 dims \[G_t=4, N, D\]"),
    ("states-rank", {"states": torch.randn(1, B, N, D)},
     r"states: got shape \(1, 5, 3, 4\) \(4 dims\), expected 5 dims \[S=1, B, 1, N, D\]"),
    ("Wx-gates", {"Wx": torch.randn(B, T, 4, N, D)},
     r"Wx: got 4 gates \(shape \(5, 7, 4, 3, 4\), dim 2\), expected G_w=3 for cell 'gru' \(r, z, n_in\)"),
    ("R-gates", {"R": torch.randn(4, N, D, D)},
     r"R: got shape \(4, 3, 4, 4\), expected \(3, 3, 4, 4\) = \[G_r=3, N, D, D\] for cell 'gru' "
     r"\(n_rec, r, z\)"),
    ("b-gates", {"b": torch.randn(3, N, D)},
     r"b: got shape \(3, 3, 4\), expected \(4, 3, 4\) = \[G_t=4, N, D\] for cell 'gru' "
     r"\(n_rec, r, z, n_in\)"),
    ("state-count", {"states": torch.randn(2, B, 1, N, D)},
     r"states: got shape \(2, 5, 1, 3, 4\), expected \(1, 5, 1, 3, 4\) = \[S=1, B, 1, N, D\] "
     r"for cell 'gru' \(y\)"),
    ("states-batch", {"states": torch.randn(1, B + 1, 1, N, D)},
     r"states: got shape \(1, 6, 1, 3, 4\), expected \(1, 5, 1, 3, 4\).*B=5, N=3, D=4 taken from Wx"),
    ("states-time", {"states": torch.randn(1, B, T, N, D)},
     r"states: got shape \(1, 5, 7, 3, 4\), expected \(1, 5, 1, 3, 4\)"),
    ("R-heads", {"R": torch.randn(3, N + 1, D, D)},
     r"R: got shape \(3, 4, 4, 4\), expected \(3, 3, 4, 4\).*N=3, D=4 taken from Wx"),
    ("R-head-dim", {"R": torch.randn(3, N, D, D + 1)},
     r"R: got shape \(3, 3, 4, 5\), expected \(3, 3, 4, 4\)"),
    ("b-head-dim", {"b": torch.randn(4, N, D + 2)}, r"b: got shape \(4, 3, 6\), expected \(4, 3, 4\)"),
    ("T-zero", {"Wx": torch.randn(B, 0, 3, N, D)},
     r"Wx: got T=0 \(shape \(5, 0, 3, 3, 4\)\), expected at least one time step"),
    ("B-zero", {"Wx": torch.randn(0, T, 3, N, D)},
     r"Wx: got shape \(0, 7, 3, 3, 4\), expected B, N and D of at least 1"),
    ("Wx-int", {"Wx": torch.ones(B, T, 3, N, D, dtype=torch.int64)},
     r"Wx: got dtype torch.int64, expected a floating-point dtype"),
    ("R-int", {"R": torch.ones(3, N, D, D, dtype=torch.int32)},
     r"R: got dtype torch.int32, expected a floating-point"),
    ("b-dtype", {"b": torch.randn(4, N, D, dtype=torch.float64)},
     r"b: got dtype torch.float64, expected the dtype of Wx \(torch.float32\)"),
    ("R-device", {"R": torch.empty(3, N, D, D, device="meta")},
     r"R: got a tensor on meta, expected the device of Wx \(cpu\)"),
    ("states-device", {"states": torch.empty(1, B, 1, N, D, device="meta")},
     r"states: got a tensor on meta, expected the device of Wx \(cpu\)"),
    ("Wx-not-a-tensor", {"Wx": [[1.0]]}, r"Wx: got list, expected a torch.Tensor \[B, T, G_w=3, N, D\]"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_rnn_input_is_a_clear_value_error(change, message):
    arguments = gru_inputs() | change
    with pytest.raises(ValueError, match=message):
        tunekit.rnn(arguments["Wx"], arguments["R"], arguments["b"], arguments["states"], cell="gru")


def test_valid_inputs_pass():
    arguments = gru_inputs()
    all_states, last = tunekit.rnn(
        arguments["Wx"], arguments["R"], arguments["b"], arguments["states"], cell="gru"
    )
    assert all_states.shape == (1, B, T, N, D) and last.shape == (1, B, 1, N, D)


@pytest.mark.parametrize("cell", ["lsmt", "LSTM2", 7])
def test_unknown_cell_name_lists_the_known_cells(cell):
    arguments = gru_inputs()
    with pytest.raises(
        ValueError, match=r"cell: got .*, expected a Cell or one of \['elman', 'gru', 'lstm', 'slstm'"
    ):
        tunekit.rnn(arguments["Wx"], arguments["R"], arguments["b"], cell=cell)


def test_lstm_states_need_two_states():
    Wx, R, b = torch.randn(B, T, 4, N, D), torch.randn(4, N, D, D), torch.randn(4, N, D)
    with pytest.raises(
        ValueError, match=r"states: got shape \(1, 5, 1, 3, 4\), expected \(2, 5, 1, 3, 4\).*\(h, c\)"
    ):
        tunekit.rnn(Wx, R, b, torch.randn(1, B, 1, N, D), cell="lstm")
