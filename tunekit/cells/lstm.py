"""LSTM cell (gates i, f, z, o; states h, c), the same function as ``torch.nn.LSTM`` (z is its g)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunekit.cells.declaration import Cell

if TYPE_CHECKING:
    from tunekit.cells.spec import StepVars


def _step(v: StepVars) -> dict:
    # SymPy loads when code is derived from the step, not when the cell is registered
    from tunekit.cells.spec import sigmoid, tanh

    i, f, z, o = (v.gate(g) for g in ("i", "f", "z", "o"))
    c_new = sigmoid(f) * v.s["c"] + sigmoid(i) * tanh(z)
    return {"h": sigmoid(o) * tanh(c_new), "c": c_new}


LSTM = Cell(
    name="lstm",
    r_gates=("i", "f", "z", "o"),
    w_gates=("i", "f", "z", "o"),
    b_gates=("i", "f", "z", "o"),
    states=("h", "c"),
    step=_step,
    doc="LSTM: c' = σ(f)c + σ(i)tanh(z), h' = σ(o)tanh(c')",
)
