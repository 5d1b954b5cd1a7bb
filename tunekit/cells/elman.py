"""Elman (vanilla RNN) cell: one gate, one state, ``y' = tanh(Wx + Ry + b)``."""

from __future__ import annotations

from tunekit.cells.spec import Cell, StepVars, tanh


def _step(v: StepVars) -> dict:
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
