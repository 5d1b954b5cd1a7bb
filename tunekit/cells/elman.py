"""Elman (vanilla RNN) cell: one gate, one state, ``y' = tanh(Wx + Ry + b)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunekit.cells.declaration import Cell

if TYPE_CHECKING:
    from tunekit.cells.spec import StepVars


def _step(v: StepVars) -> dict:
    # SymPy loads when code is derived from the step, not when the cell is registered
    from tunekit.cells.spec import tanh

    return {"y": tanh(v.gate("g"))}


ELMAN = Cell(
    name="elman",
    r_gates=("g",),
    w_gates=("g",),
    b_gates=("g",),
    states=("y",),
    step=_step,
    doc="Elman RNN: y' = tanh(g)",
)
