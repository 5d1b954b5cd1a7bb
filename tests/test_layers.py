"""The nn.Modules tunekit.LSTM/GRU/RNN/SLSTM: torch.nn's signatures, weights and return values.

Specs beyond torch.nn equality (tests/test_torch_equivalence.py): positional arguments mean what
they mean in torch.nn; unknown or contradictory arguments are ValueErrors naming them; with N
heads the layer is its projection then ``tunekit.rnn`` with R a view of ``weight_hh``; dense
torch.nn weights load into a multi-head layer only when block-diagonal; the sLSTM returns its
four states like LSTM's two; final states fed back continue a sequence; ``lengths=`` equals
running each sequence alone; bad input is a ValueError naming what it got and what it expected;
the README's Python API section runs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import tunekit
from tunekit.layers import RecurrentLayer
from tunekit.problem import KernelConfig, Problem

B, T, IN, HIDDEN, HEADS = 3, 7, 4, 12, 3  # head dim 4
F64 = torch.float64
LAYERS = {"elman": tunekit.RNN, "lstm": tunekit.LSTM, "gru": tunekit.GRU, "slstm": tunekit.SLSTM}
N_STATES = {"elman": 1, "lstm": 2, "gru": 1, "slstm": 4}
G_W = {"elman": 1, "lstm": 4, "gru": 3, "slstm": 4}
PROBLEM = Problem("lstm", batch=B, heads=HEADS, head_dim=HIDDEN // HEADS)


def make(cell: str, *args, **kwargs) -> RecurrentLayer:
    torch.manual_seed(0)
    return LAYERS[cell](IN, HIDDEN, *args, num_heads=HEADS, dtype=F64, **kwargs)


def states_of(cell: str, final) -> tuple[torch.Tensor, ...]:
    """The final states as a tuple: a bare tensor for one state, a tuple (like torch.nn.LSTM) for more."""
    if N_STATES[cell] == 1:
        assert isinstance(final, torch.Tensor)
        return (final,)
    assert isinstance(final, tuple) and len(final) == N_STATES[cell]
    return final


def test_positional_arguments_are_torch_nns():
    """tunekit.LSTM(8, 12, 2) is two layers of one head, as torch.nn.LSTM(8, 12, 2)."""
    layer = tunekit.LSTM(8, 12, 2, False, True, 0.0, True)
    assert (layer.num_layers, layer.bias, layer.batch_first, layer.bidirectional) == (2, False, True, True)
    assert layer.num_heads == 1 and layer.proj_size == 0
    theirs = torch.nn.LSTM(8, 12, 2, False, True, 0.0, True)
    assert {k: v.shape for k, v in layer.state_dict().items()} == {
        k: v.shape for k, v in theirs.state_dict().items()
    }
    relu = tunekit.RNN(8, 12, 2, "relu")  # torch.nn.RNN's fourth positional argument is the nonlinearity
    assert relu.nonlinearity == "relu" and relu.cell.name == "elman_relu" and tunekit.Elman is tunekit.RNN


@pytest.mark.parametrize("cell", list(LAYERS))
def test_multi_head_parameters_hold_the_diagonal_blocks(cell: str):
    layer = make(cell, 2, bidirectional=True)
    hidden, d = HIDDEN, HIDDEN // HEADS
    g_r = 3 if cell == "gru" else G_W[cell]
    assert layer.weight_ih_l0.shape == (G_W[cell] * hidden, IN)
    assert layer.weight_ih_l1_reverse.shape == (G_W[cell] * hidden, 2 * hidden)
    assert layer.weight_hh_l1.shape == (g_r * hidden, d)  # [G·H, D]: head n's rows see head n only
    assert layer.bias_ih_l0.shape == (G_W[cell] * hidden,) and layer.bias_hh_l0.shape == (g_r * hidden,)
    r = layer.layout.recurrence(layer.weight_hh_l0)
    assert r.shape == (g_r, HEADS, d, d)
    if cell != "gru":  # R is weight_hh viewed [G_r, N, D, D]: no copy
        assert r.data_ptr() == layer.weight_hh_l0.data_ptr()
        g = g_r - 1  # the last gate: row g·H + n·D + i of weight_hh is R[g, n, i]
        torch.testing.assert_close(r[g, 2, 3], layer.weight_hh_l0[g * hidden + 2 * d + 3], rtol=0, atol=0)
    assert f"num_heads={HEADS}" in repr(layer) and "num_layers=2" in repr(layer)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_one_multi_head_layer_is_its_projection_then_rnn(cell: str):
    layer = make(cell, batch_first=True)
    x = torch.randn(B, T, IN, dtype=F64)
    output, final = layer(x)
    # by hand, with the mapping tunekit/layers/weights.py documents
    wx = (x @ layer.weight_ih_l0.T).view(B, T, G_W[cell], HEADS, HIDDEN // HEADS)
    d = HIDDEN // HEADS
    w_hh = layer.weight_hh_l0.view(-1, HEADS, d, d)
    b_ih, b_hh = layer.bias_ih_l0.view(-1, HEADS, d), layer.bias_hh_l0.view(-1, HEADS, d)
    if cell == "gru":  # torch.nn's (r, z, n) rows -> R (n_rec, r, z), b (n_rec, r, z, n_in)
        r = w_hh[[2, 0, 1]]
        b = torch.stack([b_hh[2], b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2]])
    else:
        r, b = w_hh, b_ih + b_hh
    all_states, last = tunekit.rnn(wx, r, b, cell=layer.cell)
    torch.testing.assert_close(output, all_states[0].reshape(B, T, HIDDEN), rtol=0, atol=0)
    for k, f in enumerate(states_of(cell, final)):
        torch.testing.assert_close(f, last[k].reshape(1, B, HIDDEN), rtol=0, atol=0)


@pytest.mark.parametrize("cell", list(LAYERS))
def test_final_states_fed_back_continue_the_sequence(cell: str):
    layer = make(cell, 2, batch_first=True)
    x = torch.randn(B, T, IN, dtype=F64)
    whole, whole_final = layer(x)
    first, first_final = layer(x[:, :4])
    second, second_final = layer(x[:, 4:], first_final)
    torch.testing.assert_close(torch.cat([first, second], dim=1), whole, rtol=1e-13, atol=1e-13)
    for a, e in zip(states_of(cell, second_final), states_of(cell, whole_final), strict=True):
        assert a.shape == (2, B, HIDDEN)
        torch.testing.assert_close(a, e, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("packed", [False, True], ids=["lengths", "packed"])
@pytest.mark.parametrize("cell", list(LAYERS))
def test_variable_lengths_equal_each_sequence_run_alone(cell: str, packed: bool):
    """Every cell (the sLSTM has no torch.nn to compare with), 2 heads per layer, 2 layers, both
    directions: sequence b of the batch gives what it gives alone, states at its own end."""
    layer = make(cell, 2, batch_first=True, bidirectional=True)
    lengths = [5, 7, 2]
    x = torch.randn(B, T, IN, dtype=F64)
    if packed:
        out, final = layer(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    else:
        out, final = layer(x, lengths=lengths)
    for b, length in enumerate(lengths):
        alone, alone_final = layer(x[b : b + 1, :length])
        torch.testing.assert_close(out[b : b + 1, :length], alone, rtol=1e-12, atol=1e-12)
        assert not out[b, length:].any(), "outputs past the end are zero"
        for a, e in zip(states_of(cell, final), states_of(cell, alone_final), strict=True):
            torch.testing.assert_close(a[:, b : b + 1], e, rtol=1e-12, atol=1e-12)


def test_slstm_takes_and_returns_four_states_shaped_like_lstms():
    layer = make("slstm", 2, bidirectional=True)
    x = torch.randn(T, B, IN, dtype=F64)
    hx = (
        torch.randn(4, B, HIDDEN, dtype=F64),
        torch.randn(4, B, HIDDEN, dtype=F64),
        torch.ones(4, B, HIDDEN, dtype=F64),  # normalizer n >= 1: a memory already seen
        torch.zeros(4, B, HIDDEN, dtype=F64),
    )
    output, (y_n, c_n, n_n, m_n) = layer(x, hx)
    assert output.shape == (T, B, 2 * HIDDEN)
    assert all(s.shape == (4, B, HIDDEN) for s in (y_n, c_n, n_n, m_n))
    torch.testing.assert_close(y_n[-2], output[-1, :, :HIDDEN], rtol=0, atol=0)  # last layer, forward
    torch.testing.assert_close(y_n[-1], output[0, :, HIDDEN:], rtol=0, atol=0)  # last layer, reverse
    with pytest.raises(ValueError, match=r"hx: got 2 tensors, expected a tuple of 4 tensors \(y, c, n, m\)"):
        layer(x, hx[:2])


@pytest.mark.parametrize("cell", ["lstm", "slstm"])
def test_gradients_reach_the_input_the_initial_states_and_every_parameter(cell: str):
    layer = make(cell, 2, bidirectional=True)
    x = torch.randn(T, B, IN, dtype=F64, requires_grad=True)
    hx = [torch.randn(4, B, HIDDEN, dtype=F64) for _ in range(N_STATES[cell])]
    if cell == "slstm":
        hx[2] = hx[2].abs() + 1  # n >= 1
    hx = [h.requires_grad_() for h in hx]
    output, final = layer(x, tuple(hx))
    (output.square().sum() + states_of(cell, final)[0].sum()).backward()
    grad_states = hx if cell == "lstm" else hx[:3]  # the sLSTM's stabilizer m carries no gradient
    for name, tensor in [("input", x), *((f"hx[{k}]", h) for k, h in enumerate(grad_states)),
                         *layer.named_parameters()]:  # fmt: skip
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0, name


def test_no_bias_equals_zero_bias():
    with_bias, without = make("gru", 2), make("gru", 2, bias=False)
    assert "bias_ih_l0" not in dict(without.named_parameters()) and len(list(without.parameters())) == 4
    with torch.no_grad():
        for name, parameter in with_bias.named_parameters():
            if name.startswith("bias"):
                parameter.zero_()
            else:
                parameter.copy_(without.get_parameter(name))
    x = torch.randn(T, B, IN, dtype=F64)
    torch.testing.assert_close(without(x)[0], with_bias(x)[0], rtol=0, atol=0)


def test_multi_head_layer_loads_block_diagonal_torch_weights_and_converts_back():
    torch.manual_seed(1)
    theirs = torch.nn.LSTM(IN, HIDDEN, 2, bidirectional=True, dtype=F64)
    d = HIDDEN // HEADS
    with torch.no_grad():  # zero every block between heads: the function a 3-head layer computes
        for name, p in theirs.named_parameters():
            if name.startswith("weight_hh"):
                blocks = p.view(4, HEADS, d, HEADS, d)
                mask = torch.eye(HEADS, dtype=torch.bool)[None, :, None, :, None].expand_as(blocks)
                blocks.masked_fill_(~mask, 0)
    ours = tunekit.LSTM(IN, HIDDEN, 2, bidirectional=True, num_heads=HEADS, dtype=F64)
    ours.load_state_dict(theirs.state_dict())
    assert ours.weight_hh_l0.shape == (4 * HIDDEN, d)
    x = torch.randn(T, B, IN, dtype=F64)
    torch.testing.assert_close(ours(x)[0], theirs(x)[0], rtol=1e-12, atol=1e-12)
    back = ours.to_torch()
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], value, rtol=0, atol=0)
    assert tunekit.LSTM.from_torch(theirs, num_heads=HEADS).weight_hh_l1_reverse.shape == (4 * HIDDEN, d)

    with torch.no_grad():
        theirs.weight_hh_l1_reverse[0, -1] = 0.25  # head 0's row reading head 2's unit
    message = (
        r"weight_hh_l1_reverse: got a dense \[48, 12\] recurrent matrix with nonzero entries between heads "
        r"\(largest \|entry\| 0.25\); a layer with num_heads=3"
    )
    with pytest.raises(ValueError, match=message):
        ours.load_state_dict(theirs.state_dict())


def test_torch_nn_conversions_refuse_what_they_cannot_convert():
    with pytest.raises(
        ValueError, match=r"module: got GRU, expected torch.nn.LSTM for tunekit.LSTM.from_torch"
    ):
        tunekit.LSTM.from_torch(torch.nn.GRU(3, 4))
    with pytest.raises(ValueError, match=r"module: got proj_size=2; tunekit.LSTM has no projections"):
        tunekit.LSTM.from_torch(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match=r"tunekit.SLSTM \(slstm\) has no torch.nn counterpart"):
        tunekit.SLSTM(3, 4).to_torch()
    assert type(tunekit.RNN(3, 4, nonlinearity="relu").to_torch()) is torch.nn.RNN


def test_dropout_with_one_layer_warns_like_torch_nn():
    with pytest.warns(UserWarning, match=r"non-zero dropout expects num_layers greater than 1"):
        layer, theirs = tunekit.GRU(3, 4, dropout=0.5), torch.nn.GRU(3, 4, dropout=0.5)
    assert layer.dropout == theirs.dropout == 0.5  # kept, as torch.nn keeps it


@pytest.mark.parametrize(
    ("layer", "kwargs", "message"),
    [
        ("LSTM", {"cell": "gru"}, r"cell: got 'gru' for tunekit.LSTM, whose cell is 'lstm'"),
        ("LSTM", {"heads": 2}, r"unknown argument\(s\) heads=2: tunekit.LSTM takes torch.nn's"),
        ("GRU", {"proj_size": 2}, r"unknown argument\(s\) proj_size=2: tunekit.GRU"),
        ("LSTM", {"nonlinearity": "relu"}, r"unknown argument\(s\) nonlinearity='relu'"),
        ("LSTM", {"proj_size": 3}, r"proj_size: got 3; tunekit.LSTM has no projections"),
        ("RNN", {"nonlinearity": "gelu"}, r"nonlinearity: got 'gelu', expected 'tanh' or 'relu'"),
        ("RNN", {"cell": "lstm"}, r"cell: got 'lstm' for tunekit.RNN with nonlinearity='tanh'"),
        ("LSTM", {"hidden_size": 13}, r"hidden_size: got 13, expected a multiple of num_heads=3"),
        ("LSTM", {"num_heads": 0}, r"num_heads: got 0, expected a positive int"),
        ("LSTM", {"num_layers": 0}, r"num_layers: got 0, expected a positive int"),
        ("LSTM", {"input_size": 4.0}, r"input_size: got 4.0, expected a positive int"),
        ("LSTM", {"hidden_size": True}, r"hidden_size: got True, expected a positive int"),
        ("LSTM", {"bidirectional": 1}, r"bidirectional: got 1, expected True or False"),
        ("LSTM", {"dropout": 1.5}, r"dropout: got 1.5, expected a probability in \[0, 1\]"),
        ("LSTM", {"backend": "fast"}, r"backend: got 'fast', expected one of \['auto', .*'reference'"),
        ("LSTM", {"backend": "reference", "config": {"block_b": 16}},
         r"config: got a configuration with backend='reference', which has nothing to tune"),
        ("LSTM", {"config": {"block_b": 16}}, r"config: got a configuration without a family"),
        ("LSTM", {"backend": "reference", "config": KernelConfig("cuda-fused", PROBLEM, "h100", ())},
         r"config: got a configuration with backend='reference'"),
        ("LSTM", {"backend": "triton-fused", "config": KernelConfig("cuda-fused", PROBLEM, "h100", ())},
         r"config: got a cuda-fused configuration for backend='triton-fused'; pass one or the other"),
        ("RecurrentLayer", {}, r"cell: got None, expected a cell name or a Cell"),
        ("RecurrentLayer", {"cell": "lstn"}, r"cell: got 'lstn', expected a Cell or one of \["),
    ],
    ids=["cell-on-lstm", "unknown-keyword", "proj-size-on-gru", "nonlinearity-on-lstm", "proj-size",
         "nonlinearity", "cell-on-rnn", "heads-do-not-divide", "zero-heads", "zero-layers", "float-size",
         "bool-size", "int-flag", "dropout-range", "unknown-backend", "config-for-reference",
         "config-without-family", "kernel-config-for-reference",
         "config-of-another-family", "no-cell", "unknown-cell"],
)  # fmt: skip
def test_unknown_or_contradictory_arguments_are_value_errors_naming_them(layer, kwargs, message):
    cls = RecurrentLayer if layer == "RecurrentLayer" else getattr(tunekit, layer)
    arguments = {"input_size": IN, "hidden_size": HIDDEN, "num_heads": HEADS} | kwargs
    with pytest.raises(ValueError, match=message):
        cls(**arguments)


def h(*shape: int, dtype: torch.dtype = F64) -> torch.Tensor:
    """An initial state of the given shape (float64, like the layers under test)."""
    return torch.zeros(shape, dtype=dtype)


@pytest.mark.parametrize(
    ("x", "hx", "lengths", "message"),
    [
        (torch.randn(1, B, T, IN), None, None,
         r"input: got shape \(1, 3, 7, 4\) \(4 dims\), expected \[B, T, input_size\] or unbatched"),
        (torch.randn(B, T, IN + 1), None, None,
         r"input: got shape \(3, 7, 5\), expected \[B, T, input_size\] with input_size=4"),
        (torch.randn(T, IN + 1), None, None, r"input: got shape \(7, 5\), expected \[T, input_size\]"),
        (torch.randn(B, 0, IN), None, None, r"input: got T=0 \(shape \(3, 0, 4\), layout \[B, T, "),
        (torch.ones(B, T, IN, dtype=torch.int64), None, None,
         r"input: got dtype torch.int64, expected a floating-point"),
        (torch.randn(B, T, IN, dtype=torch.float32), None, None,
         r"input: got dtype torch.float32, expected the dtype of the layer's parameters \(torch.float64\)"),
        (torch.empty(B, T, IN, dtype=F64, device="meta"), None, None,
         r"input: got a tensor on meta, expected the device of the layer's parameters \(cpu\)"),
        (None, h(2, B, HIDDEN), None,
         r"hx: got Tensor, expected a tuple of 2 tensors \(h, c\) of shape "
         r"\[num_layers \* num_directions, B, "
         r"hidden_size\] = \(2, 3, 12\)"),
        (None, (h(2, B, HIDDEN),) * 3, None, r"hx: got 3 tensors, expected a tuple of 2 tensors \(h, c\)"),
        (None, (h(1, B, HIDDEN), h(1, B, HIDDEN)), None,
         r"hx\[h\]: got shape \(1, 3, 12\), expected \(2, 3, 12\) = \[num_layers \* num_directions, B, "),
        (None, (h(2, B, HIDDEN), h(B, HIDDEN)), None,
         r"hx\[c\]: got shape \(3, 12\) \(2 dims\), expected 3 dims"),
        (torch.randn(T, IN, dtype=F64), (h(2, 1, HIDDEN), h(2, 1, HIDDEN)), None,
         r"hx\[h\]: got shape \(2, 1, 12\) \(3 dims\), expected 2 dims \[num_layers \* num_directions, h"),
        (None, (h(2, B, HIDDEN), h(2, B, HIDDEN, dtype=torch.float32)), None,
         r"hx\[c\]: got dtype torch.float32, expected the dtype of input \(torch.float64\)"),
        (None, None, [3, 4], r"lengths: got shape \(2,\), expected \(3,\): one length per sequence"),
        (None, None, [3, 0, 7], r"lengths: got values in 0..7, expected 1..7"),
        (None, None, [3, 8, 7], r"lengths: got values in 3..8, expected 1..7 \(at least one step, at most T"),
        (None, None, torch.tensor([3.0, 4.0, 5.0]), r"lengths: got dtype torch.float32, expected an integer"),
        (None, None, [3, 4.5, 5], r"lengths: got 4.5, expected integers"),
        (torch.randn(T, IN, dtype=F64), None, [3], r"lengths: got lengths with unbatched \(2-D\) input"),
        (pack_padded_sequence(torch.randn(B, T, IN, dtype=F64), [7, 6, 2], batch_first=True), None, [7, 6, 2],
         r"lengths: got lengths with a PackedSequence input, which carries its own"),
        (pack_padded_sequence(torch.randn(B, T, IN + 2, dtype=F64), [7, 6, 2], batch_first=True), None, None,
         r"input.data: got shape \(15, 6\), expected \[sum of lengths, input_size=4\]"),
    ],
    ids=["rank", "input-size", "unbatched-input-size", "T-zero", "integer", "dtype", "device",
         "bare-tensor-for-two-states", "three-states", "one-layer-states-for-two", "state-rank",
         "batched-state-for-unbatched-input", "state-dtype", "lengths-count", "length-zero", "length-above-T",
         "float-lengths", "fractional-length", "lengths-unbatched", "lengths-and-packed",
         "packed-input-size"],
)  # fmt: skip
def test_bad_input_is_a_clear_value_error(x, hx, lengths, message):
    layer = make("lstm", 2, batch_first=True)
    x = torch.randn(B, T, IN, dtype=F64) if x is None else x
    with pytest.raises(ValueError, match=message):
        layer(x, hx, lengths=lengths)


def test_describe_and_repr_say_which_backend_runs_and_why():
    layer = make("lstm", 2)
    assert "not run yet" in layer.describe() and "backend='auto'" in repr(layer)
    layer(torch.randn(T, B, IN, dtype=F64))
    text = layer.describe()
    assert "B=3 float64 on cpu, both: reference: tensors on cpu: the tuned kernels need a CUDA GPU" in text
    assert repr(layer).endswith("backend='auto' -> reference)")
    with torch.no_grad():
        layer(torch.randn(T, 5, IN, dtype=F64))
    assert "B=5 float64 on cpu, forward: reference" in layer.describe()
    assert len(layer._decisions) == 2


def test_flatten_parameters_and_all_weights_as_torch_nn():
    layer, theirs = tunekit.GRU(3, 4, 2, bidirectional=True), torch.nn.GRU(3, 4, 2, bidirectional=True)
    layer.flatten_parameters()  # a no-op kept for drop-in code
    assert [[p.shape for p in ws] for ws in layer.all_weights] == [
        [p.shape for p in ws] for ws in theirs.all_weights
    ]


def test_readme_python_api_runs():
    """Every Python block of the README's Python API section, in order, in one namespace."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("## Python API") : readme.index("\n## ", readme.index("## Python API") + 1)]
    blocks = re.findall(r"```python\n(.*?)\n```", section, flags=re.DOTALL)
    assert len(blocks) >= 2
    namespace: dict = {}
    for k, block in enumerate(blocks):
        exec(compile(block, f"README.md (Python API, block {k})", "exec"), namespace)
    assert isinstance(namespace["layer"], tunekit.LSTM)
