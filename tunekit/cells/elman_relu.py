"""Elman cell with a ReLU, ``y' = max(g, 0)``: torch.nn.RNN(nonlinearity="relu").

Not registered by name: ``tunekit.RNN(..., nonlinearity="relu")`` passes the declaration itself,
so it runs on the reference backend (the kernel backends load registered cells by name).
At ``g == 0`` its derived gradient is 1 (``maximum`` gives a tie to its first argument) where
torch's ReLU gives 0: a set of measure zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunekit.cells.declaration import Cell

if TYPE_CHECKING:
    from tunekit.cells.spec import StepVars


def _step(v: StepVars) -> dict:
    # SymPy loads when code is derived from the step, not when the cell is registered
    from tunekit.cells.spec import maximum

    return {"y": maximum(v.gate("g"), 0)}


ELMAN_RELU = Cell(
    name="elman_relu",
    r_gates=("g",),
    w_gates=("g",),
    b_gates=("g",),
    states=("y",),
    step=_step,
    doc="Elman RNN with a ReLU: y' = max(g, 0)",
)
