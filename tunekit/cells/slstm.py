"""sLSTM cell (xLSTM, arXiv 2405.04517): exponential input gate, normalizer n, stabilizer m.

Gates (i, f, z, o), states (y, c, n, m), as FlashRNN's vanilla sLSTM except that ``n == 0``
(the first step) is tested per element rather than for the whole tensor::

    lf = logσ(f) + m
    m' = i where n == 0 else max(i, lf)
    i' = exp(i - m'),  f' = exp(lf - m')
    c' = f'c + i' tanh(z),  n' = max(f'n + i', 1),  y' = σ(o) c'/n'

m only rescales c and n (it cancels in c'/n'), so it carries no gradient.
"""

from __future__ import annotations

import sympy

from tunekit.cells.spec import Cell, StepVars, exp, logsigmoid, maximum, sigmoid, tanh, where


def _step(v: StepVars) -> dict:
    i, f, z, o = (v.gate(g) for g in ("i", "f", "z", "o"))
    c, n, m = v.s["c"], v.s["n"], v.s["m"]
    lf = logsigmoid(f) + m
    m_new = where(sympy.Eq(n, 0), i, maximum(i, lf))
    i_gate = exp(i - m_new)
    f_gate = exp(lf - m_new)
    c_new = f_gate * c + i_gate * tanh(z)
    n_new = maximum(f_gate * n + i_gate, 1)
    return {"y": sigmoid(o) * c_new / n_new, "c": c_new, "n": n_new, "m": m_new}


SLSTM = Cell(
    name="slstm",
    r_gates=("i", "f", "z", "o"),
    w_gates=("i", "f", "z", "o"),
    b_gates=("i", "f", "z", "o"),
    states=("y", "c", "n", "m"),
    step=_step,
    no_grad_states=("m",),
    doc="sLSTM with exponential gating and a stabilizer state m",
)
