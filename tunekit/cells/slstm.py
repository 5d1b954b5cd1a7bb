"""sLSTM cell (xLSTM, arXiv 2405.04517): exponential input gate, normalizer n, stabilizer m.

Gates (i, f, z, o), states (y, c, n, m), as FlashRNN's vanilla sLSTM except that ``n == 0`` is
tested per element rather than for the whole tensor, and means an empty memory::

    lf = logσ(f) + m
    m' = i where n == 0 else max(i, lf)
    i' = exp(i - m'),  f' = 0 where n == 0 else exp(lf - m')
    c' = f'c + i' tanh(z),  n' = max(f'n + i', 1),  y' = σ(o) c'/n'

m only rescales c and n (it cancels in c'/n'), so it carries no gradient.

**n == 0 is an empty memory** (DESIGN §3): there the ``f'c`` and ``f'n`` terms are exactly 0, so an
initial c given with n == 0 is ignored and receives a zero gradient, and the step is
``c' = tanh(z)``, ``n' = 1``, ``y' = σ(o) tanh(z)`` whatever i and f are. FlashRNN's formula takes
``f' = exp(lf - i)`` there, which overflows once ``i < lf - 88.7`` in float32 (``- 709`` in
float64) and turns ``inf · c = inf · 0`` into NaN for the rest of the sequence.

Nothing overflows for any finite input: where n != 0, ``m' >= i`` and ``m' >= lf``, so both
exponents are <= 0; where n == 0 the exponent of f' is replaced by 0 *before* ``exp`` (the inner
``where``), so no ``exp`` ever sees a large argument — not in the forward, and not in a backward
(autograd through the outer ``where`` alone would multiply its zero by ``exp(lf - i) = inf``).
Since n' >= 1 and |c'| <= n' once |c| <= n, the output |y'| <= 1. Every backend prints this one
declaration (reference, Triton, CUDA), so all of them get these semantics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tunekit.cells.declaration import Cell

if TYPE_CHECKING:
    from tunekit.cells.spec import StepVars


def _step(v: StepVars) -> dict:
    # SymPy loads when code is derived from the step, not when the cell is registered
    import sympy

    from tunekit.cells.spec import exp, logsigmoid, maximum, sigmoid, tanh, where

    i, f, z, o = (v.gate(g) for g in ("i", "f", "z", "o"))
    c, n, m = v.s["c"], v.s["n"], v.s["m"]
    empty = sympy.Eq(n, 0)  # n == 0: an empty memory (the first step of a sequence)
    lf = logsigmoid(f) + m
    m_new = where(empty, i, maximum(i, lf))
    i_gate = exp(i - m_new)
    # exactly 0 on an empty memory; the exponent is 0 there first, so exp never overflows
    f_gate = where(empty, 0, exp(where(empty, 0, lf - m_new)))
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
    doc="sLSTM with exponential gating and a stabilizer state m; n == 0 is an empty memory",
)
