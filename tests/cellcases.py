"""Cells and step inputs shared by the cell, printer and reference tests.

Besides the four built-in cells, two cells are declared here exactly as a user would declare a
fifth one (one short block each, no other file touched):

* ``MGU``: a minimal gated unit, ``f = σ(g_f)``, ``y' = (1 - f) y + f tanh(g_z)``;
* ``ODDMATH``: no model anyone trains, but it reaches every printer path the built-ins do not —
  ``where`` on a comparison, ``sqrt``, ``log``, integer powers, SymPy's own ``Max``/``Abs``, a gate
  without a bias slot (G_t < G_w) and a no-gradient state the user wrapped in ``no_grad``.
"""

from __future__ import annotations

import sympy
import torch

from tunekit.cells import Cell, StepVars, get_cell
from tunekit.cells.derive import forward_inputs
from tunekit.cells.spec import exp, log, maximum, no_grad, sigmoid, sqrt, tanh, where


def _mgu_step(v: StepVars) -> dict:
    f = sigmoid(v.gate("f"))
    return {"y": (1 - f) * v.s["y"] + f * tanh(v.gate("z"))}


MGU = Cell(
    name="mgu",
    r_gates=("f", "z"),
    w_gates=("f", "z"),
    b_gates=("f", "z"),
    states=("y",),
    step=_mgu_step,
    doc="minimal gated unit: y' = (1 - σ(f)) y + σ(f) tanh(z)",
)


def _oddmath_step(v: StepVars) -> dict:
    g, k = v.gate("g"), v.gate("k")
    y, a = v.s["y"], v.s["a"]
    a_new = no_grad(maximum(a, g))  # a running maximum, used as a stabilizer like the sLSTM's m
    soft = where(g > 0, sqrt(1 + g**2), log(1 + exp(g)))
    y_new = soft * tanh(k) / sympy.Max(y**2, 1) + exp(g - a_new) / 2 + sympy.Abs(k) / 4
    return {"y": y_new, "a": a_new}


ODDMATH = Cell(
    name="oddmath",
    r_gates=("g", "k"),
    w_gates=("g", "k"),
    b_gates=("g",),
    states=("y", "a"),
    step=_oddmath_step,
    no_grad_states=("a",),
    doc="printer coverage: where, sqrt, log, powers, Max, Abs, a bias-less gate, a no-grad state",
)

BUILT_IN = ("elman", "lstm", "gru", "slstm")
# every cell the derivation and printer tests run: the built-ins by name, then the user-declared ones
ALL_CELLS: tuple[Cell, ...] = (*(get_cell(name) for name in BUILT_IN), MGU, ODDMATH)
CELL_IDS = [cell.name for cell in ALL_CELLS]


def step_inputs(cell: Cell, size: int, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random inputs of the pointwise step, each a [size] tensor, inside every state's domain.

    The sLSTM's normalizer n is either exactly 0 (the first step: every fourth element, where the
    cell state c is 0 too) or >= 1 (every later step, since n' = max(f'n + i', 1)).
    """
    generator = torch.Generator().manual_seed(seed)
    values = {name: torch.randn(size, generator=generator, dtype=dtype) for name in forward_inputs(cell)}
    if cell.name == "slstm":
        n = 1 + 3 * torch.rand(size, generator=generator, dtype=dtype)
        n[::4] = 0.0
        values["s_n"] = n
        values["s_c"][::4] = 0.0
    return values


def incoming_grads(cell: Cell, size: int, dtype: torch.dtype, seed: int = 1) -> dict[str, torch.Tensor]:
    """Random ``ds_<st>_new`` for every state that carries a gradient."""
    generator = torch.Generator().manual_seed(seed)
    return {f"ds_{st}_new": torch.randn(size, generator=generator, dtype=dtype) for st in cell.grad_states}
