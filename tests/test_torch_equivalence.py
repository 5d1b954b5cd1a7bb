"""With one head, tunekit.LSTM/GRU/RNN are torch.nn.LSTM/GRU/RNN, weights included (DESIGN §3).

A torch.nn layer's state_dict loads into the tunekit layer as it is; then outputs, final states
and the gradients of the input, the initial states and every parameter (compared by name) agree
to 1e-10 in float64: stacks of 1 and 3 layers, one or both directions, batch_first both ways,
initial states given or omitted, unbatched input, packed sequences (sorted and not), padded
batches with ``lengths=``, and dropout between layers (the same masks under the same seed).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

import tunekit

B, T, IN, H = 3, 6, 4, 5  # odd sizes: batch 3, 6 steps, input 4, hidden (= head dim, N = 1) 5
TOL = 1e-10
F64 = torch.float64
# kind -> (torch.nn class, tunekit class, extra arguments)
KINDS: dict[str, tuple[type, type, dict[str, Any]]] = {
    "lstm": (torch.nn.LSTM, tunekit.LSTM, {}),
    "gru": (torch.nn.GRU, tunekit.GRU, {}),
    "rnn_tanh": (torch.nn.RNN, tunekit.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (torch.nn.RNN, tunekit.RNN, {"nonlinearity": "relu"}),
}
LENGTHS = [4, 6, 2]  # unsorted, with the longest in the middle; T = 6


def pair(kind: str, **arguments: Any) -> tuple[torch.nn.Module, torch.nn.Module]:
    """A seeded torch.nn layer and the tunekit layer that loaded its state_dict."""
    theirs_cls, ours_cls, extra = KINDS[kind]
    torch.manual_seed(0)
    theirs = theirs_cls(IN, H, **arguments, **extra, dtype=F64)
    ours = ours_cls(IN, H, **arguments, **extra, dtype=F64)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def states_of(final: Any) -> tuple[torch.Tensor, ...]:
    return final if isinstance(final, tuple) else (final,)


def as_hx(kind: str, states: list[torch.Tensor]) -> Any:
    return tuple(states) if kind == "lstm" else states[0]


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual, expected, rtol=TOL, atol=TOL, msg=lambda m: f"{what}: {m}")


def check_gradients(
    theirs: torch.nn.Module,
    ours: torch.nn.Module,
    outputs: tuple[torch.Tensor, torch.Tensor],
    finals: tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]],
    leaves: list[tuple[str, torch.Tensor, torch.Tensor]],
) -> None:
    """A loss touching the output and every final state with different weights, backward through
    both; then every parameter's gradient by name and each (name, theirs, ours) leaf's."""
    weights = [torch.randn_like(outputs[0])] + [torch.randn_like(f) for f in finals[0]]
    for out, fin in zip(outputs, finals, strict=True):
        sum((w * v).sum() for w, v in zip(weights, (out, *fin), strict=True)).backward()
    for name, parameter in theirs.named_parameters():
        close(ours.get_parameter(name).grad, parameter.grad, f"d {name}")
    for name, theirs_leaf, ours_leaf in leaves:
        close(ours_leaf.grad, theirs_leaf.grad, f"d {name}")


def leaf(tensor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same values twice, each a leaf that records its gradient."""
    return tensor.clone().requires_grad_(), tensor.clone().requires_grad_()


@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("num_layers", [1, 3], ids=["L1", "L3"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_layer_equals_torch_nn(
    kind: str, num_layers: int, bidirectional: bool, batch_first: bool, with_hx: bool
):
    theirs, ours = pair(kind, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first)
    x_theirs, x_ours = leaf(torch.randn((B, T, IN) if batch_first else (T, B, IN), dtype=F64))
    count = num_layers * (2 if bidirectional else 1)
    hx = [leaf(torch.randn(count, B, H, dtype=F64)) for _ in range(2 if kind == "lstm" else 1)]
    args_theirs = (x_theirs, as_hx(kind, [h for h, _ in hx])) if with_hx else (x_theirs,)
    args_ours = (x_ours, as_hx(kind, [h for _, h in hx])) if with_hx else (x_ours,)

    out_theirs, final_theirs = theirs(*args_theirs)
    out_ours, final_ours = ours(*args_ours)
    assert type(final_ours) is type(final_theirs)
    close(out_ours, out_theirs, "output")
    for k, (a, e) in enumerate(zip(states_of(final_ours), states_of(final_theirs), strict=True)):
        close(a, e, f"final state {k}")
    leaves = [("input", x_theirs, x_ours)]
    if with_hx:
        leaves += [(f"initial state {k}", h_theirs, h_ours) for k, (h_theirs, h_ours) in enumerate(hx)]
    check_gradients(
        theirs, ours, (out_theirs, out_ours), (states_of(final_theirs), states_of(final_ours)), leaves
    )


@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_unbatched_input_equals_torch_nn(kind: str, bidirectional: bool, with_hx: bool):
    theirs, ours = pair(kind, num_layers=2, bidirectional=bidirectional, batch_first=True)
    x_theirs, x_ours = leaf(torch.randn(T, IN, dtype=F64))  # [T, input_size]: batch_first plays no part
    hx = [
        leaf(torch.randn(2 * (2 if bidirectional else 1), H, dtype=F64))
        for _ in range(2 if kind == "lstm" else 1)
    ]
    args_theirs = (x_theirs, as_hx(kind, [h for h, _ in hx])) if with_hx else (x_theirs,)
    args_ours = (x_ours, as_hx(kind, [h for _, h in hx])) if with_hx else (x_ours,)
    out_theirs, final_theirs = theirs(*args_theirs)
    out_ours, final_ours = ours(*args_ours)
    close(out_ours, out_theirs, "output")  # [T, directions * H]
    for k, (a, e) in enumerate(zip(states_of(final_ours), states_of(final_theirs), strict=True)):
        close(a, e, f"final state {k}")  # [num_layers * directions, H]
    leaves = [("input", x_theirs, x_ours)] + [(f"h{k}", a, b) for k, (a, b) in enumerate(hx)] * with_hx
    check_gradients(
        theirs, ours, (out_theirs, out_ours), (states_of(final_theirs), states_of(final_ours)), leaves
    )


@pytest.mark.parametrize("with_hx", [True, False], ids=["hx", "no_hx"])
@pytest.mark.parametrize("order", ["sorted", "unsorted"])
@pytest.mark.parametrize(
    ("num_layers", "bidirectional"), [(1, False), (1, True), (3, True)], ids=["L1", "L1-bi", "L3-bi"]
)
@pytest.mark.parametrize("kind", list(KINDS))
def test_packed_input_equals_torch_nn(
    kind: str, num_layers: int, bidirectional: bool, order: str, with_hx: bool
):
    """A PackedSequence in, the same PackedSequence out (data, batch sizes, both permutations);
    final states at each sequence's own last step, in the caller's batch order."""
    theirs, ours = pair(kind, num_layers=num_layers, bidirectional=bidirectional)
    lengths = sorted(LENGTHS, reverse=True) if order == "sorted" else LENGTHS
    x_theirs, x_ours = leaf(torch.randn(T, B, IN, dtype=F64))
    packed = [pack_padded_sequence(x, lengths, enforce_sorted=order == "sorted") for x in (x_theirs, x_ours)]
    count = num_layers * (2 if bidirectional else 1)
    hx = [leaf(torch.randn(count, B, H, dtype=F64)) for _ in range(2 if kind == "lstm" else 1)]
    extra_theirs = (as_hx(kind, [h for h, _ in hx]),) if with_hx else ()
    extra_ours = (as_hx(kind, [h for _, h in hx]),) if with_hx else ()

    out_theirs, final_theirs = theirs(packed[0], *extra_theirs)
    out_ours, final_ours = ours(packed[1], *extra_ours)
    assert isinstance(out_ours, PackedSequence)
    for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        a, e = getattr(out_ours, field), getattr(out_theirs, field)
        assert (a is None and e is None) or torch.equal(a, e), field
    close(out_ours.data, out_theirs.data, "packed output")
    for k, (a, e) in enumerate(zip(states_of(final_ours), states_of(final_theirs), strict=True)):
        close(a, e, f"final state {k}")
    leaves = [("input", x_theirs, x_ours)] + [(f"h{k}", a, b) for k, (a, b) in enumerate(hx)] * with_hx
    check_gradients(
        theirs,
        ours,
        (out_theirs.data, out_ours.data),
        (states_of(final_theirs), states_of(final_ours)),
        leaves,
    )


@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_first"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_lengths_of_a_padded_batch_equal_torch_nn_on_the_packed_batch(kind: str, batch_first: bool):
    """``lengths=`` on a padded batch is torch.nn on the packed batch, padded back to T with zeros;
    the padding itself is never read (NaN there changes nothing and gets a zero gradient)."""
    theirs, ours = pair(kind, num_layers=3, bidirectional=True, batch_first=batch_first)
    x = torch.randn((B, T, IN) if batch_first else (T, B, IN), dtype=F64)
    x_theirs, x_ours = leaf(x)
    with torch.no_grad():
        for b, length in enumerate(LENGTHS):  # NaN past each end of our copy
            (x_ours[b, length:] if batch_first else x_ours[length:, b]).fill_(float("nan"))
    packed = pack_padded_sequence(x_theirs, LENGTHS, batch_first=batch_first, enforce_sorted=False)
    packed_out, final_theirs = theirs(packed)
    out_theirs, _ = pad_packed_sequence(packed_out, batch_first=batch_first, total_length=T)
    out_ours, final_ours = ours(x_ours, lengths=torch.tensor(LENGTHS))
    close(out_ours, out_theirs, "output (zeros past each end)")
    for k, (a, e) in enumerate(zip(states_of(final_ours), states_of(final_theirs), strict=True)):
        close(a, e, f"final state {k}")
    check_gradients(
        theirs,
        ours,
        (out_theirs, out_ours),
        (states_of(final_theirs), states_of(final_ours)),
        [("input", x_theirs, x_ours)],
    )


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("batch_first", [True, False], ids=["batch_first", "time_first"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_dropout_between_layers_draws_torch_nn_masks(kind: str, batch_first: bool, packed: bool):
    """Training: the same masks as torch.nn under the same seed (drawn in torch's own layout), so
    outputs and gradients agree; eval: no dropout, equal again; the masks do change the output."""
    theirs, ours = pair(kind, num_layers=3, bidirectional=True, batch_first=batch_first, dropout=0.4)
    x = torch.randn((B, T, IN) if batch_first else (T, B, IN), dtype=F64)

    def run(layer: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        torch.manual_seed(7)
        inp = pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False) if packed else x
        out, final = layer(inp)
        return (out.data if packed else out), states_of(final)

    x_theirs, x_ours = leaf(x)
    (out_theirs, fin_theirs), (out_ours, fin_ours) = run(theirs, x_theirs), run(ours, x_ours)
    close(out_ours, out_theirs, "training output")
    for k, (a, e) in enumerate(zip(fin_ours, fin_theirs, strict=True)):
        close(a, e, f"training final state {k}")
    check_gradients(
        theirs, ours, (out_theirs, out_ours), (fin_theirs, fin_ours), [("input", x_theirs, x_ours)]
    )

    theirs.eval(), ours.eval()
    with torch.no_grad():
        (eval_theirs, _), (eval_ours, _) = run(theirs, x), run(ours, x)
    close(eval_ours, eval_theirs, "eval output")
    assert (eval_ours - out_ours.detach()).abs().max() > 1e-3, "dropout left the training output unchanged"


def test_dropout_one_zeroes_every_layer_but_the_last_input():
    theirs, ours = pair("lstm", num_layers=2, dropout=1.0)
    x = torch.randn(T, B, IN, dtype=F64)
    out = ours(x)[0]
    close(out, theirs(x)[0], "output with dropout=1")
    # the second layer sees only zeros: the output no longer depends on the input
    assert torch.equal(out, ours(torch.randn_like(x))[0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_initialisation_draws_what_torch_nn_draws(kind: str):
    """Uniform(±1/√hidden) per parameter in torch.nn's order: one seed, the same weights."""
    theirs_cls, ours_cls, extra = KINDS[kind]
    torch.manual_seed(3)
    theirs = theirs_cls(IN, H, 2, bidirectional=True, **extra)
    torch.manual_seed(3)
    ours = ours_cls(IN, H, 2, bidirectional=True, **extra)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for name, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name
    assert max(p.abs().max() for p in ours.parameters()) <= H**-0.5


@pytest.mark.parametrize("kind", list(KINDS))
def test_from_torch_and_to_torch_round_trip(kind: str):
    theirs, _ = pair(kind, num_layers=2, bidirectional=True, batch_first=True)
    theirs.eval()
    ours = KINDS[kind][1].from_torch(theirs)
    assert not ours.training and ours.batch_first and ours.num_layers == 2 and ours.bidirectional
    back = ours.to_torch()
    assert type(back) is type(theirs) and getattr(back, "nonlinearity", None) == getattr(
        theirs, "nonlinearity", None
    )
    x = torch.randn(B, T, IN, dtype=F64)
    close(ours(x)[0], theirs(x)[0], "from_torch output")
    close(back(x)[0], theirs(x)[0], "to_torch output")
    theirs.load_state_dict(ours.state_dict())  # the other way: tunekit's state_dict into torch.nn
