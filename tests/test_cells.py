"""Cells are declared once (DESIGN §3); their pointwise backward is derived, not hand-written.

Specs: the declared slots and states of the four built-in cells; the derived backward (printed as
PyTorch) equals autograd of the reference step for every cell, including two declared in
``cellcases.py`` the way a user declares a fifth cell; the sLSTM's stabilizer m gets no gradient and
none flows through it; bad declarations are rejected with a clear message; derivation is fast.
"""

from __future__ import annotations

import time

import pytest
import sympy
import torch
from cellcases import ALL_CELLS, CELL_IDS, MGU, incoming_grads, step_inputs

import tunekit
from tunekit.cells import CELLS, Cell, StepVars, derive, get_cell, printers, register_cell
from tunekit.cells.spec import no_grad, sigmoid, tanh
from tunekit.layers import RecurrentLayer
from tunekit.reference import backward_step, forward_step

SLOTS = [
    # name, r_gates (G_r), w_gates (G_w), b_gates (G_t), states (S), no-gradient states
    ("elman", ("g",), ("g",), ("g",), ("y",), ()),
    ("lstm", ("i", "f", "z", "o"), ("i", "f", "z", "o"), ("i", "f", "z", "o"), ("h", "c"), ()),
    ("gru", ("n_rec", "r", "z"), ("r", "z", "n_in"), ("n_rec", "r", "z", "n_in"), ("y",), ()),
    ("slstm", ("i", "f", "z", "o"), ("i", "f", "z", "o"), ("i", "f", "z", "o"), ("y", "c", "n", "m"), ("m",)),
]


@pytest.mark.parametrize(("name", "r_gates", "w_gates", "b_gates", "states", "no_grad_states"), SLOTS,
                         ids=[row[0] for row in SLOTS])  # fmt: skip
def test_built_in_cells_declare_design_slots(name, r_gates, w_gates, b_gates, states, no_grad_states):
    cell = get_cell(name)
    assert (cell.name, cell.r_gates, cell.w_gates, cell.b_gates) == (name, r_gates, w_gates, b_gates)
    assert (cell.states, cell.no_grad_states) == (states, no_grad_states)
    assert cell.grad_states == tuple(st for st in states if st not in no_grad_states)
    assert get_cell(name.upper()) is cell and get_cell(cell) is cell


@pytest.mark.parametrize("bad", ["lstmm", "", 3, ["lstm"]], ids=["typo", "empty", "int", "list"])
def test_unknown_cell_lists_the_known_ones(bad):
    with pytest.raises(ValueError, match=r"cell: got .*expected a Cell or one of \['elman', 'gru', 'lstm'"):
        get_cell(bad)


@pytest.mark.parametrize("cell", ALL_CELLS, ids=CELL_IDS)
def test_printed_code_follows_the_naming_contract(cell: Cell):
    """docs/interfaces.md: forward assigns s_<st>_new; backward dwx/dry/db per slot and ds per grad state."""
    forward = [target for target, _ in cell.forward_code("torch")]
    backward = [target for target, _ in cell.backward_code("torch")]
    assert [t for t in forward if not t.startswith("_t")] == [f"s_{st}_new" for st in cell.states]
    expected = (
        [f"dwx_{g}" for g in cell.w_gates]
        + [f"dry_{g}" for g in cell.r_gates]
        + [f"db_{g}" for g in cell.b_gates]
        + [f"ds_{st}" for st in cell.grad_states]
    )
    assert [t for t in backward if not t.startswith("_t")] == expected
    for lang in ("triton", "cuda"):
        assert [t for t, _ in cell.forward_code(lang)] == forward
        assert [t for t, _ in cell.backward_code(lang)] == backward


def autograd_step_grads(cell: Cell, size: int) -> tuple[dict, dict]:
    """(derived backward outputs, autograd of the torch forward step) on the same random inputs."""
    inputs = step_inputs(cell, size, torch.float64)
    seeds = incoming_grads(cell, size, torch.float64)
    derived = dict(zip(derive.backward_outputs(cell), backward_step(cell)(**inputs, **seeds), strict=True))
    leaves = {name: value.clone().requires_grad_() for name, value in inputs.items()}
    new = dict(zip(cell.states, forward_step(cell)(**leaves), strict=True))
    loss = sum((seeds[f"ds_{st}_new"] * new[st]).sum() for st in cell.grad_states)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    auto = {f"d{name}": g for name, g in zip(leaves, grads, strict=True)}
    return derived, auto


@pytest.mark.parametrize("cell", ALL_CELLS, ids=CELL_IDS)
def test_derived_backward_equals_autograd_of_the_step(cell: Cell):
    derived, auto = autograd_step_grads(cell, size=257)
    assert set(derived) == {
        name for name in auto if not any(name == f"ds_{st}" for st in cell.no_grad_states)
    }
    for name, value in derived.items():
        expected = auto[name] if auto[name] is not None else torch.zeros(257, dtype=torch.float64)
        actual = torch.broadcast_to(torch.as_tensor(value, dtype=torch.float64), expected.shape)
        torch.testing.assert_close(
            actual, expected, rtol=1e-12, atol=1e-12, msg=lambda m, n=name: f"{n}: {m}"
        )


def test_slstm_stabilizer_gets_no_gradient_and_passes_none():
    slstm = get_cell("slstm")
    assert "ds_m" not in derive.backward_outputs(slstm) and "ds_m_new" not in derive.backward_inputs(slstm)
    exprs = derive.forward_expressions(slstm)
    m_new = exprs["m"]
    assert isinstance(m_new, no_grad)
    # every use of m' by c', n' and y' is detached: differentiating through it gives nothing
    for st in ("y", "c", "n"):
        assert m_new in exprs[st].atoms(no_grad), st
    # first step (c = n = 0): m' = i, i' = exp(i - m') = 1 and n' = 1, so y' = σ(o) tanh(z) whatever i
    # is; with m' held constant, dc'/di = i' tanh(z) = tanh(z) while dy'/di = 0
    ones, zeros = torch.ones(64, dtype=torch.float64), torch.zeros(64, dtype=torch.float64)
    inputs = step_inputs(slstm, 64, torch.float64) | {"s_c": zeros, "s_n": zeros}
    outputs = derive.backward_outputs(slstm)
    via_c = dict(zip(outputs, backward_step(slstm)(**inputs, ds_y_new=zeros, ds_c_new=ones, ds_n_new=zeros),
                     strict=True))  # fmt: skip
    via_y = dict(zip(outputs, backward_step(slstm)(**inputs, ds_y_new=ones, ds_c_new=zeros, ds_n_new=zeros),
                     strict=True))  # fmt: skip
    tanh_z = torch.tanh(inputs["wx_z"] + inputs["ry_z"] + inputs["b_z"])
    torch.testing.assert_close(via_c["dwx_i"], tanh_z, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(via_y["dwx_i"], zeros, rtol=0, atol=1e-13)


def test_a_fifth_cell_in_a_few_lines_runs_in_tunekit_rnn(monkeypatch):
    """MGU (tests/cellcases.py) through the reference rnn: by object, by registered name, with gradcheck."""
    torch.manual_seed(0)
    B, T, N, D = 2, 5, 3, 4
    Wx = torch.randn(B, T, 2, N, D, dtype=torch.float64, requires_grad=True)
    R = (torch.randn(2, N, D, D, dtype=torch.float64) / D).requires_grad_()
    b = torch.randn(2, N, D, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(1, B, 1, N, D, dtype=torch.float64, requires_grad=True)
    all_states, last = tunekit.rnn(Wx, R, b, y0, cell=MGU)
    assert all_states.shape == (1, B, T, N, D) and last.shape == (1, B, 1, N, D)
    # one step written out by hand: y' = (1 - σ(f)) y + σ(f) tanh(z), Ry per head with R output-first
    ry = torch.einsum("gnij,bnj->gbni", R, y0[0, :, 0])
    f = torch.sigmoid(Wx[:, 0, 0] + ry[0] + b[0])
    y1 = (1 - f) * y0[0, :, 0] + f * torch.tanh(Wx[:, 0, 1] + ry[1] + b[1])
    torch.testing.assert_close(all_states[0, :, 0], y1, rtol=1e-13, atol=1e-13)
    assert torch.autograd.gradcheck(lambda *a: tunekit.rnn(*a, cell=MGU)[0], (Wx, R, b, y0))

    monkeypatch.setitem(CELLS, "mgu", MGU)  # register_cell, undone after the test
    assert register_cell(MGU) is MGU and get_cell("mgu") is MGU
    by_name, _ = tunekit.rnn(Wx, R, b, y0, cell="mgu")
    torch.testing.assert_close(by_name, all_states, rtol=0, atol=0)
    layer = RecurrentLayer(3, 12, num_heads=3, cell="mgu", batch_first=True)
    out, h_n = layer(torch.randn(B, T, 3))
    assert out.shape == (B, T, 12) and h_n.shape == (1, B, 12)


def test_a_fifth_cell_runs_on_the_fused_triton_kernel(monkeypatch):
    """Registered, MGU gets the triton-fused backend (in Triton's interpreter here) with no kernel code."""
    monkeypatch.setitem(CELLS, "mgu", MGU)
    g = torch.Generator().manual_seed(1)
    B, T, N, D = 3, 5, 2, 16
    Wx = torch.randn(B, T, 2, N, D, generator=g, requires_grad=True)
    R = (torch.randn(2, N, D, D, generator=g) / 4).requires_grad_()
    b = torch.randn(2, N, D, generator=g, requires_grad=True)
    # config=None: the tuner's fp32 configuration, whose products run on tf32 tensor cores (the
    # interpreter truncates the operands as they do), hence tolerances of a 10-bit mantissa
    fused, _ = tunekit.rnn(Wx, R, b, cell="mgu", backend="triton-fused")
    reference, _ = tunekit.rnn(Wx.double(), R.double(), b.double(), cell="mgu")
    torch.testing.assert_close(fused.double(), reference, rtol=5e-3, atol=1e-3)
    weights = torch.randn(fused.shape, generator=g)
    grads = torch.autograd.grad((fused * weights).sum(), (Wx, R, b))
    expected = torch.autograd.grad((reference * weights.double()).sum(), (Wx, R, b))
    for name, got, want in zip(("Wx", "R", "b"), grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=5e-3, atol=1e-3, msg=lambda m, n=name: f"d{n}: {m}")


def test_register_cell_refuses_a_taken_name():
    clash = Cell("lstm", ("g",), ("g",), ("g",), ("y",), step=lambda v: {"y": tanh(v.gate("g"))})
    with pytest.raises(ValueError, match=r"cell: the name 'lstm' is taken; pass replace=True"):
        register_cell(clash)
    with pytest.raises(ValueError, match=r"cell: got str, expected a tunekit.cells.Cell"):
        register_cell("lstm")


def _ok_step(v: StepVars) -> dict:
    return {"y": tanh(v.gate("g"))}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "my cell"}, r"name: got 'my cell', expected an identifier"),
        ({"r_gates": ("g", "g")}, r"r_gates: got \('g', 'g'\), expected unique names"),
        ({"w_gates": "g"}, r"w_gates: got the string 'g', expected a sequence of names"),
        ({"states": ("y", "2x")}, r"states: got \['2x'\], expected identifiers"),
        ({"r_gates": ()}, r"expected at least one each"),
        ({"no_grad_states": ("q",)}, r"no_grad_states: got \('q',\), expected states of"),
        ({"no_grad_states": ("y",)}, r"other than the hidden output 'y'"),
        ({"step": "tanh"}, r"step: got str, expected a function of StepVars"),
    ],
    ids=["name", "duplicate-gate", "string-gates", "state-name", "no-r-gates", "unknown-no-grad",
         "no-grad-hidden", "step-not-callable"],
)  # fmt: skip
def test_bad_declarations_are_rejected(fields, message):
    declaration = {"name": "toy", "r_gates": ("g",), "w_gates": ("g",), "b_gates": ("g",), "states": ("y",),
                   "step": _ok_step} | fields  # fmt: skip
    with pytest.raises(ValueError, match=message):
        Cell(**declaration)


@pytest.mark.parametrize(
    ("step", "message"),
    [
        (lambda v: {"h": tanh(v.gate("g"))},
         r"step returned \['h'\], expected a mapping with keys \('y', 'a'\)"),
        (lambda v: {"y": v.gate("q"), "a": v.s["a"]},
         r"gate: got 'q', expected one of the cell's gate slots"),
        (lambda v: {"y": sympy.Symbol("x"), "a": v.s["a"]}, r"state 'y' uses unknown symbols \['x'\]"),
        # a bare sum would be merged by SymPy into its users; the message asks for no_grad(...)
        (lambda v: {"y": tanh(v.gate("g") - v.s["a"]), "a": v.s["a"] + v.gate("g")},
         r"no-gradient state 'a' is .*expected it wrapped as no_grad"),
    ],
    ids=["wrong-states", "unknown-gate", "stray-symbol", "unwrapped-no-grad-sum"],
)  # fmt: skip
def test_bad_steps_are_rejected_when_derived(step, message):
    cell = Cell("toy", ("g",), ("g",), ("g",), ("y", "a"), step=step, no_grad_states=("a",))
    with pytest.raises(ValueError, match=message):
        cell.backward_code("torch")


def test_a_wrapped_no_grad_sum_is_cut_where_it_is_used():
    def step(v: StepVars) -> dict:
        a_new = no_grad(v.s["a"] + v.gate("g"))
        return {"y": sigmoid(v.gate("g") - a_new), "a": a_new}

    cell = Cell("toy", ("g",), ("g",), ("g",), ("y", "a"), step=step, no_grad_states=("a",))
    derived, auto = autograd_step_grads(cell, size=33)
    torch.testing.assert_close(derived["dwx_g"], auto["dwx_g"], rtol=1e-12, atol=1e-12)


def test_four_cells_derive_and_print_in_under_two_seconds_and_then_come_from_the_cache():
    cached = (derive.forward_expressions, derive.backward_expressions, derive.forward_program,
              derive.backward_program, printers._printed)  # fmt: skip
    for function in cached:
        function.cache_clear()
    start = time.process_time()  # CPU time: other processes on a shared machine do not count
    for name in ("elman", "lstm", "gru", "slstm"):
        for lang in printers.LANGS:
            get_cell(name).forward_code(lang)
            get_cell(name).backward_code(lang)
    elapsed = time.process_time() - start
    assert elapsed < 2.0, f"deriving and printing the four cells took {elapsed:.2f} s of CPU"
    misses = derive.backward_program.cache_info().misses
    get_cell("slstm").backward_code("cuda")
    assert derive.backward_program.cache_info().misses == misses
    assert printers._printed.cache_info().hits >= 1
