"""GRU cell with FlashRNN's slots: R holds (n_rec, r, z), Wx holds (r, z, n_in), b holds all four.

``r = σ(Wx_r + R_r y + b_r)``, ``z = σ(Wx_z + R_z y + b_z)``,
``n = tanh(Wx_n_in + b_n_in + r (R_n_rec y + b_n_rec))``, ``y' = z y + (1 - z) n``: the same
function as ``torch.nn.GRU`` (whose gate order is r, z, n) up to a permutation of its weights.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunekit.cells.declaration import Cell

if TYPE_CHECKING:
    from tunekit.cells.spec import StepVars


def _step(v: StepVars) -> dict:
    # SymPy loads when code is derived from the step, not when the cell is registered
    from tunekit.cells.spec import sigmoid, tanh

    r = sigmoid(v.gate("r"))
    z = sigmoid(v.gate("z"))
    n = tanh(v.gate("n_in") + r * v.gate("n_rec"))
    return {"y": z * v.s["y"] + (1 - z) * n}


GRU = Cell(
    name="gru",
    r_gates=("n_rec", "r", "z"),
    w_gates=("r", "z", "n_in"),
    b_gates=("n_rec", "r", "z", "n_in"),
    states=("y",),
    step=_step,
    doc="GRU: y' = z y + (1 - z) tanh(n_in + r n_rec)",
)
