"""The nn.Modules ``tunekit.LSTM/GRU/SLSTM/Elman``: input projection, then ``tunekit.rnn`` over heads.

Specs: outputs shaped like ``torch.nn`` (LSTM ``(output, (h_n, c_n))``, GRU/Elman ``(output, h_n)``,
sLSTM all four states); the layer is its projection followed by ``tunekit.rnn``; batch_first both
ways; feeding the final states back as ``hx`` continues a sequence exactly; gradients reach the
initial states; bad input is a ValueError naming what it got and what it expected.
"""

from __future__ import annotations

import pytest
import torch

import tunekit
from tunekit.layers import RecurrentLayer

B, T, IN, HIDDEN, HEADS = 5, 9, 7, 15, 3  # head dim 5
LAYERS = {"elman": tunekit.Elman, "lstm": tunekit.LSTM, "gru": tunekit.GRU, "slstm": tunekit.SLSTM}
N_STATES = {"elman": 1, "lstm": 2, "gru": 1, "slstm": 4}


def make(cell: str, **kwargs) -> RecurrentLayer:
    torch.manual_seed(0)
    return LAYERS[cell](IN, HIDDEN, num_heads=HEADS, dtype=torch.float64, **kwargs)


def finals_of(cell: str, final) -> tuple[torch.Tensor, ...]:
    """The final states as a tuple: a bare tensor for one state, a tuple (like torch.nn.LSTM) for more."""
    if N_STATES[cell] == 1:
        assert isinstance(final, torch.Tensor)
        return (final,)
    assert isinstance(final, tuple) and len(final) == N_STATES[cell]
    return final


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_first"])
@pytest.mark.parametrize("cell", list(LAYERS))
def test_layer_is_projection_then_rnn_and_returns_like_torch_nn(cell: str, batch_first: bool):
    layer = make(cell, batch_first=batch_first)
    x = torch.randn(B, T, IN, dtype=torch.float64)
    output, final = layer(x if batch_first else x.transpose(0, 1))
    finals = finals_of(cell, final)
    assert output.shape == ((B, T, HIDDEN) if batch_first else (T, B, HIDDEN))
    assert all(f.shape == (1, B, HIDDEN) for f in finals)

    # by hand: gate-major projection features (g * hidden + n * D + d), then the functional rnn
    cell_decl = tunekit.get_cell(cell)
    Wx = (x @ layer.input_proj.weight.T).view(B, T, len(cell_decl.w_gates), HEADS, HIDDEN // HEADS)
    all_states, last = tunekit.rnn(Wx, layer.R, layer.b, cell=cell)
    expected = all_states[0].reshape(B, T, HIDDEN)
    torch.testing.assert_close(output if batch_first else output.transpose(0, 1), expected, rtol=0, atol=0)
    for k, f in enumerate(finals):
        torch.testing.assert_close(f, last[k].reshape(1, B, HIDDEN), rtol=0, atol=0)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_final_states_fed_back_continue_the_sequence(cell: str):
    layer = make(cell, batch_first=True)
    x = torch.randn(B, T, IN, dtype=torch.float64)
    whole, whole_final = layer(x)
    first, first_final = layer(x[:, :4])
    second, second_final = layer(x[:, 4:], first_final)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-13, atol=1e-13)
    for a, e in zip(finals_of(cell, second_final), finals_of(cell, whole_final), strict=True):
        torch.testing.assert_close(a, e, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_reach_the_initial_states_and_every_parameter(cell: str):
    layer = make(cell)
    x = torch.randn(T, B, IN, dtype=torch.float64, requires_grad=True)
    hx = tuple(
        torch.randn(1, B, HIDDEN, dtype=torch.float64, requires_grad=True) for _ in range(N_STATES[cell])
    )
    output, _ = layer(x, hx if len(hx) > 1 else hx[0])
    output.square().sum().backward()
    for name, tensor in [
        ("input", x),
        *((f"hx[{k}]", h) for k, h in enumerate(hx)),
        *layer.named_parameters(),
    ]:
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name


def test_no_bias_equals_zero_bias():
    with_bias, without = make("lstm"), make("lstm", bias=False)
    assert without.b is None and "b" not in dict(without.named_parameters())
    with torch.no_grad():
        with_bias.b.zero_()
        without.R.copy_(with_bias.R)
        without.input_proj.weight.copy_(with_bias.input_proj.weight)
    x = torch.randn(T, B, IN, dtype=torch.float64)
    torch.testing.assert_close(without(x)[0], with_bias(x)[0], rtol=0, atol=0)


def test_parameters_have_the_design_layouts():
    layer = tunekit.GRU(IN, HIDDEN, num_heads=HEADS)
    assert layer.input_proj.weight.shape == (3 * HIDDEN, IN)  # G_w = 3 (r, z, n_in)
    assert layer.R.shape == (3, HEADS, 5, 5)  # [G_r, N, D, D]
    assert layer.b.shape == (4, HEADS, 5)  # [G_t, N, D]
    assert "cell=gru" in repr(layer) and "num_heads=3" in repr(layer)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_size": 16}, r"hidden_size: got 16, expected a multiple of num_heads=3"),
        ({"num_heads": 0}, r"num_heads: got 0, expected a positive int"),
        ({"input_size": 7.0}, r"input_size: got 7.0, expected a positive int"),
        ({"hidden_size": True}, r"hidden_size: got True, expected a positive int"),
        ({"cell": "lstn"}, r"cell: got 'lstn', expected a Cell or one of \['elman', 'gru', 'lstm', 'slstm'"),
        ({"backend": "fast"}, r"backend: got 'fast', expected one of \['auto', .*'reference'"),
    ],
    ids=["heads-do-not-divide", "zero-heads", "float-size", "bool-size", "unknown-cell", "unknown-backend"],
)
def test_bad_layer_arguments_are_rejected(kwargs, message):
    arguments = {"input_size": IN, "hidden_size": HIDDEN, "num_heads": HEADS} | kwargs
    with pytest.raises(ValueError, match=message):
        RecurrentLayer(**({"cell": "lstm"} | arguments))


def h(*shape: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """An initial state of the given shape (float64, like the layers under test)."""
    return torch.zeros(shape, dtype=dtype)


@pytest.mark.parametrize(
    ("x", "hx", "message"),
    [
        (torch.randn(B * T, IN), None,
         r"input: got shape \(45, 7\) \(2 dims\), expected 3 dims \[B, T, input_size\]"),
        (torch.randn(B, T, IN + 1), None,
         r"input: got shape \(5, 9, 8\), expected \[B, T, input_size\] with input_size=7"),
        (torch.randn(B, 0, IN), None, r"input: got T=0 \(shape \(5, 0, 7\), layout \[B, T, input_size\]\)"),
        (torch.ones(B, T, IN, dtype=torch.int64), None,
         r"input: got dtype torch.int64, expected a floating-point"),
        (torch.randn(B, T, IN, dtype=torch.float32), None,
         r"input: got dtype torch.float32, expected the dtype of the layer's parameters \(torch.float64\)"),
        (torch.empty(B, T, IN, dtype=torch.float64, device="meta"), None,
         r"input: got a tensor on meta, expected the device of the layer's parameters \(cpu\)"),
        (None, h(1, B, HIDDEN),
         r"hx: got 1 tensors, expected 2 tensor\(s\) \(h, c\) of shape \[1, B, hidden"),
        (None, (h(1, B, HIDDEN),) * 3, r"hx: got 3 tensors, expected 2 tensor\(s\) \(h, c\)"),
        (None, (h(1, B, HIDDEN), h(B, HIDDEN)),
         r"hx\[c\]: got shape \(5, 15\) \(2 dims\), expected 3 dims \[1, B, hidden_size\]"),
        (None, (h(1, B + 1, HIDDEN), h(1, B, HIDDEN)),
         r"hx\[h\]: got shape \(1, 6, 15\), expected \(1, 5, 15\) = \[1, B, hidden_size\]"),
        (None, (h(1, B, HIDDEN), h(1, B, HIDDEN, dtype=torch.float32)),
         r"hx\[c\]: got dtype torch.float32, expected the dtype of input \(torch.float64\)"),
    ],
    ids=["rank", "input-size", "T-zero", "integer", "dtype", "device", "bare-tensor-for-two-states",
         "three-states", "state-rank", "state-batch", "state-dtype"],
)  # fmt: skip
def test_bad_lstm_input_is_a_clear_value_error(x, hx, message):
    layer = make("lstm", batch_first=True)
    x = torch.randn(B, T, IN, dtype=torch.float64) if x is None else x
    with pytest.raises(ValueError, match=message):
        layer(x, hx)
