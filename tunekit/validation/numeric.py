"""Numerical checks: the reference layers and the triton-fused kernels against float64 truth.

* :func:`validate_reference`: the reference layers against ``torch.nn.LSTM``/``GRU`` in float64
  (outputs, final states, every gradient), and every cell's derived pointwise backward against
  autograd through its pointwise forward;
* :func:`validate_interpreter`: the fused kernels in Triton's interpreter against the float64
  reference on a small shape, forward and every gradient (CPU only; TRITON_INTERPRET=1 must be set
  before triton is imported).

Cell names come from the cell registry (:data:`tunekit.cells.CELLS`), so a registered user cell is
checked by ``--cell all`` too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from tunekit.dtypes import DTYPE_SHORT, torch_dtype

__all__ = [
    "INTERPRETER_TOL",
    "REFERENCE_TOL",
    "Check",
    "cells_from",
    "compare",
    "kernel_checks",
    "validate_interpreter",
    "validate_reference",
]


@dataclass(frozen=True)
class Check:
    """One numerical comparison: passed when max_error <= tolerance."""

    name: str
    passed: bool
    max_error: float
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready, with ``kind: "numeric"`` (the CLI's list mixes checks and compile records)."""
        return {"kind": "numeric"} | asdict(self)


def cells_from(option: str) -> list[str]:
    """``"all"`` → every registered cell (tunekit.cells.CELLS, user cells included); otherwise one
    registered cell name (ValueError naming the known ones)."""
    from tunekit.cells import CELLS

    if option == "all":
        return list(CELLS)
    if option not in CELLS:
        raise ValueError(f"cell: expected 'all' or one of {sorted(CELLS)}, received {option!r}")
    return [option]


def compare(name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> Check:
    """Check with error relative to the reference's magnitude, with an absolute floor (NaN fails)."""
    if actual.shape != expected.shape:
        raise ValueError(
            f"{name}: shape {tuple(actual.shape)} differs from reference {tuple(expected.shape)}"
        )
    actual, expected = actual.detach(), expected.detach()
    error = float((actual.double() - expected.double()).abs().max()) if actual.numel() else 0.0
    tolerance = atol + rtol * float(expected.double().abs().max()) if expected.numel() else atol
    return Check(name, error <= tolerance, error, tolerance)


# ---- reference layers ------------------------------------------------------------------------------

# float64 agreement of two exact implementations: rounding only.
REFERENCE_TOL = (1e-10, 1e-12)


def _torch_layer_checks(kind: str, batch: int, steps: int, hidden: int) -> list[Check]:
    """tunekit's reference rnn vs torch.nn.LSTM/GRU (N = 1), float64, forward and every gradient."""
    from tunekit.reference import rnn

    torch.manual_seed(0)
    layer = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(3, hidden, batch_first=True).double()
    gates = 4 if kind == "lstm" else 3
    x = torch.randn(batch, steps, 3, dtype=torch.float64)
    h0 = [torch.randn(1, batch, hidden, dtype=torch.float64, requires_grad=True) for _ in range(gates // 2)]
    out, finals = layer(x, tuple(h0) if kind == "lstm" else h0[0])
    finals = finals if kind == "lstm" else (finals,)

    w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
    b_ih, b_hh = layer.bias_ih_l0.view(gates, hidden), layer.bias_hh_l0.view(gates, hidden)
    wx = (x @ w_ih.T).view(batch, steps, gates, 1, hidden)  # Wx slots follow torch's gate order
    if kind == "lstm":  # (i, f, g=z, o); b = b_ih + b_hh
        r, b = w_hh.view(4, 1, hidden, hidden), (b_ih + b_hh).view(4, 1, hidden)
    else:  # R (n_rec, r, z) from torch (r, z, n); b (n_rec, r, z, n_in)
        r = w_hh.view(3, 1, hidden, hidden)[[2, 0, 1]]
        b = torch.stack([b_hh[2], b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2]]).view(4, 1, hidden)
    s0 = torch.stack([h.view(batch, 1, 1, hidden) for h in h0])
    states, last = rnn(wx, r, b, s0, cell=kind)

    checks = [compare(f"{kind} vs torch.nn: output", states[0, :, :, 0], out, *REFERENCE_TOL)]
    checks += [
        compare(f"{kind} vs torch.nn: final state {k}", last[k, :, 0, 0], f[0], *REFERENCE_TOL)
        for k, f in enumerate(finals)
    ]
    weights = [torch.randn_like(out)] + [torch.randn_like(f) for f in finals]
    theirs = sum((w * v).sum() for w, v in zip(weights, (out, *finals), strict=True))
    ours = (weights[0] * states[0, :, :, 0]).sum()
    ours = ours + sum((w[0] * last[k, :, 0, 0]).sum() for k, w in enumerate(weights[1:]))
    inputs = [w_ih, w_hh, layer.bias_ih_l0, layer.bias_hh_l0, *h0]
    names = ["W_ih", "W_hh", "b_ih", "b_hh"] + [f"initial state {k}" for k in range(len(h0))]
    expected = torch.autograd.grad(theirs, inputs)
    actual = torch.autograd.grad(ours, inputs)
    checks += [
        compare(f"{kind} vs torch.nn: d {n}", a, e, *REFERENCE_TOL)
        for n, a, e in zip(names, actual, expected, strict=True)
    ]
    return checks


def _derived_backward_check(cell_name: str, size: int = 257) -> Check:
    """The cell's derived pointwise backward vs autograd through its pointwise forward (float64)."""
    from tunekit.cells import get_cell
    from tunekit.cells.derive import backward_outputs, forward_inputs
    from tunekit.reference import backward_step, forward_step

    cell = get_cell(cell_name)
    gen = torch.Generator().manual_seed(1)
    inputs = {n: torch.randn(size, generator=gen, dtype=torch.float64) for n in forward_inputs(cell)}
    if "s_n" in inputs and cell_name == "slstm":  # a reachable sLSTM state: normalizer n >= 1
        inputs["s_n"] = 1 + inputs["s_n"].abs()
    seeds = {f"ds_{st}_new": torch.randn(size, generator=gen, dtype=torch.float64) for st in cell.grad_states}
    derived = dict(zip(backward_outputs(cell), backward_step(cell)(**inputs, **seeds), strict=True))
    leaves = {n: v.clone().requires_grad_() for n, v in inputs.items()}
    new = dict(zip(cell.states, forward_step(cell)(**leaves), strict=True))
    loss = sum((seeds[f"ds_{st}_new"] * new[st]).sum() for st in cell.grad_states)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    auto = {f"d{n}": g for n, g in zip(leaves, grads, strict=True)}
    error = 0.0
    for name, value in derived.items():
        expected = auto[name] if auto[name] is not None else torch.zeros(size, dtype=torch.float64)
        actual = torch.broadcast_to(torch.as_tensor(value, dtype=torch.float64), expected.shape)
        error = max(error, float((actual - expected).abs().max()))
    return Check(f"{cell_name}: derived backward vs autograd", error <= 1e-10, error, 1e-10)


def validate_reference(cells: Sequence[str]) -> list[Check]:
    """LSTM/GRU reference vs torch.nn (float64) and every cell's derived backward vs autograd."""
    checks: list[Check] = []
    for cell in cells:
        if cell in ("lstm", "gru"):
            checks += _torch_layer_checks(cell, batch=3, steps=7, hidden=5)
        checks.append(_derived_backward_check(cell))
    return checks


# ---- kernels against the float64 reference ----------------------------------------------------------


def kernel_checks(
    label: str, cell_name: str, dtype: str, run: Any, tol: tuple[float, float], *, batch: int, steps: int,
    heads: int, head_dim: int,
) -> list[Check]:  # fmt: skip
    """``run(Wx, R, b, states)`` (a kernel) vs the float64 reference on one seeded case: all states,
    final states and the gradients of Wx, R, b and the initial states of a loss weighting every
    state (the no-gradient states left out). Check names are ``"<label> <cell> <dtype>: <what>"``."""
    from tunekit.cells import get_cell
    from tunekit.reference import rnn

    rtol, atol = tol
    cell = get_cell(cell_name)
    gen = torch.Generator().manual_seed(0)
    g_w, g_r, g_t, s = (len(x) for x in (cell.w_gates, cell.r_gates, cell.b_gates, cell.states))
    wx = torch.randn(batch, steps, g_w, heads, head_dim, generator=gen)
    r = torch.randn(g_r, heads, head_dim, head_dim, generator=gen) / head_dim**0.5
    b = 0.1 * torch.randn(g_t, heads, head_dim, generator=gen)
    s0 = 0.5 * torch.randn(s, batch, 1, heads, head_dim, generator=gen)
    if cell_name == "slstm":  # a reachable sLSTM state: normalizer n >= 1
        s0[cell.states.index("n")] = 1 + s0[cell.states.index("n")].abs()
    low = [x.to(torch_dtype(dtype)) for x in (wx, r, b, s0)]
    mine = [x.clone().requires_grad_() for x in low]
    ref = [x.double().requires_grad_() for x in low]
    w_all = torch.randn(s, batch, steps, heads, head_dim, generator=gen)
    w_last = torch.randn(s, batch, 1, heads, head_dim, generator=gen)
    for st in cell.no_grad_states:  # no gradient flows through these: keep them out of the loss
        w_all[cell.states.index(st)] = 0
        w_last[cell.states.index(st)] = 0
    got = run(*mine)
    want = rnn(*ref, cell=cell_name)
    prefix = f"{label} {cell_name} {DTYPE_SHORT[dtype]}".strip()
    checks = [
        compare(f"{prefix}: {what}", a.detach(), e.detach(), rtol, atol)
        for what, a, e in zip(("all states", "final states"), got, want, strict=True)
    ]
    loss = sum((w * x.float()).sum() for w, x in zip((w_all, w_last), got, strict=True))
    loss_ref = sum((w.double() * x).sum() for w, x in zip((w_all, w_last), want, strict=True))
    loss.backward()
    loss_ref.backward()
    for what, a, e in zip(("d Wx", "d R", "d b", "d initial states"), mine, ref, strict=True):
        checks.append(compare(f"{prefix}: {what}", a.grad, e.grad, rtol, atol))
    return checks


# ---- triton-fused in the interpreter ---------------------------------------------------------------

# dtype -> (rtol relative to max|reference|, absolute floor), as tests/test_triton_fused.py
INTERPRETER_TOL = {"float32": (2e-5, 1e-6), "float16": (5e-3, 1e-4), "bfloat16": (3e-2, 1e-3)}


def validate_interpreter(
    cells: Sequence[str], dtype: str = "float32", batch: int = 3, steps: int = 5, head_dim: int = 24
) -> list[Check]:
    """triton-fused (interpreter) vs the float64 reference: states, final states, every gradient."""
    import triton

    from tunekit.kernels.triton_fused import fused_rnn

    if not triton.knobs.runtime.interpret:
        raise RuntimeError("triton-fused validation on CPU needs TRITON_INTERPRET=1 set before triton loads")
    config = {"block_b": 16, "num_warps": 4, "num_stages": 1}
    checks: list[Check] = []
    for name in cells:
        run = functools.partial(fused_rnn, cell=name, config=config)
        checks += kernel_checks(
            "", name, dtype, run, INTERPRETER_TOL[dtype], batch=batch, steps=steps, heads=1, head_dim=head_dim
        )
    return checks
