"""How a cell is declared: gate slots, states, and the pointwise step as SymPy expressions.

A declaration is data plus one small function ``step(v) -> {state: new value}``; everything else
(reference step, pointwise backward, Triton and CUDA code) is derived from it in
:mod:`tunekit.cells.derive` and printed by :mod:`tunekit.cells.printers`. The step may use the
math below (and ``+ - * /``, integer powers, ``sympy.Eq``/``<``/``>=`` in conditions, SymPy's
``Max``/``Min``/``Abs``); printers reject anything else with a clear error. A no-gradient state's
new value that is a sum or product must be wrapped in :class:`no_grad` inside the step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sympy

from tunekit.cells.declaration import Cell  # the record, re-exported (it needs no SymPy)

__all__ = [
    "Cell",
    "at_least",
    "StepVars",
    "exp",
    "log",
    "logsigmoid",
    "maximum",
    "no_grad",
    "select",
    "sigmoid",
    "sqrt",
    "tanh",
    "where",
]

exp = sympy.exp
log = sympy.log
tanh = sympy.tanh  # derivative 1 - tanh(x)**2, as torch's autograd computes it
sqrt = sympy.sqrt


def _numbers(args: tuple[sympy.Basic, ...], prec: int) -> list[sympy.Number] | None:
    """The arguments evaluated to numbers at binary precision ``prec``, or None if one is symbolic."""
    values = [sympy.sympify(arg).evalf(prec) if arg.is_number else None for arg in args]
    return values if all(v is not None and v.is_Number for v in values) else None


class _Numeric(sympy.Function):
    """A cell function that evaluates numerically when its arguments are constants.

    SymPy folds constant subexpressions (``maximum(2, tanh(2)**3)``), and the printers turn every
    constant into a float literal with ``float(expr)``, which needs ``evalf``. SymPy finds mpmath's
    function of the same name for ``sigmoid`` only; each subclass gives its value in :meth:`value`.
    """

    @classmethod
    def value(cls, *args: sympy.Number) -> sympy.Expr:
        raise NotImplementedError

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        args = _numbers(self.args, prec)
        return None if args is None else sympy.sympify(self.value(*args)).evalf(prec)


class sigmoid(_Numeric):  # noqa: N801 (reads like the math)
    """Logistic sigmoid σ(x) = 1 / (1 + exp(-x)); σ' = σ(1 - σ) reuses the forward value."""

    nargs = 1

    @classmethod
    def value(cls, x: sympy.Number) -> sympy.Expr:
        return 1 / (1 + sympy.exp(-x))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        s = sigmoid(self.args[0])
        return s * (1 - s)


class logsigmoid(_Numeric):  # noqa: N801
    """log σ(x), printed in a stable form (min(x, 0) - log1p(exp(-|x|))); its derivative is σ(-x)."""

    nargs = 1

    @classmethod
    def value(cls, x: sympy.Number) -> sympy.Expr:
        return sympy.Min(x, 0) - sympy.log(1 + sympy.exp(-abs(x)))

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sigmoid(-self.args[0])


class maximum(_Numeric):  # noqa: N801
    """max(a, b) with its arguments kept in order; at a tie the gradient goes to ``a``.

    SymPy's ``Max`` sorts its arguments and splits a tie's gradient in halves; the sLSTM's
    ``n' = max(f'n + i', 1)`` sits exactly on the tie at its first step, where passing the
    gradient to the first argument is what keeps ``c'/n'`` invariant to the stabilizer.
    """

    nargs = 2

    @classmethod
    def eval(cls, a: sympy.Expr, b: sympy.Expr) -> sympy.Expr | None:
        if a.is_Number and b.is_Number:
            return sympy.Max(a, b)
        return None

    @classmethod
    def value(cls, a: sympy.Number, b: sympy.Number) -> sympy.Expr:
        return sympy.Max(a, b)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        a, b = self.args
        return at_least(a, b) if argindex == 1 else 1 - at_least(a, b)


class at_least(_Numeric):  # noqa: N801
    """1 where a >= b, else 0: the derivative of ``maximum``; printed as a select, never a Piecewise
    (SymPy folds a Piecewise that sits inside a comparison into an ITE no target can print)."""

    nargs = 2

    @classmethod
    def value(cls, a: sympy.Number, b: sympy.Number) -> sympy.Expr:
        return sympy.Integer(1 if a >= b else 0)

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(0)  # a step function: zero almost everywhere


class no_grad(_Numeric):  # noqa: N801
    """Identity in the forward; no gradient flows through it (torch prints ``.detach()``)."""

    nargs = 1

    @classmethod
    def value(cls, x: sympy.Number) -> sympy.Expr:
        return x

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(0)


class select(sympy.Function):  # noqa: N801
    """``if_true`` where ``condition`` holds, else ``if_false``: what :func:`where` builds.

    A plain function rather than SymPy's ``Piecewise``, which folds itself into the comparisons
    around it (into ``ITE`` conditions no target can print) and can recurse without end when
    nested. Its derivative selects the branches' derivatives, as autograd through ``torch.where`` does.
    """

    nargs = 3
    # a comparison argument leaves SymPy unsure, and it never merges powers of a non-commutative factor
    is_commutative = True

    @classmethod
    def eval(cls, condition: sympy.Basic, if_true: sympy.Expr, if_false: sympy.Expr) -> sympy.Expr | None:
        if condition is sympy.true:
            return if_true
        if condition is sympy.false:
            return if_false
        return if_true if if_true == if_false else None

    @property
    def is_number(self) -> bool:
        # Expr.is_number asks every argument, and a condition (a Boolean) never says yes
        return not self.free_symbols

    def _eval_evalf(self, prec: int) -> sympy.Expr | None:
        # a condition SymPy left open on constants (a tie such as maximum(tanh(2), 1) >= 1, which
        # it cannot decide symbolically) is decided on the numbers, so a constant select prints
        condition, if_true, if_false = self.args
        if isinstance(condition, sympy.core.relational.Relational):
            sides = _numbers(condition.args, prec)
            if sides is None:
                return None
            condition = condition.func(*sides)
        if condition not in (sympy.true, sympy.false):
            return None
        return (if_true if condition is sympy.true else if_false).evalf(prec)

    def _eval_derivative(self, symbol: sympy.Symbol) -> sympy.Expr:
        condition, if_true, if_false = self.args
        return select(condition, if_true.diff(symbol), if_false.diff(symbol))


def where(condition: Any, if_true: Any, if_false: Any) -> sympy.Expr:
    """Elementwise select; printed as ``torch.where`` / ``tl.where`` / a C ternary."""
    return select(sympy.sympify(condition), sympy.sympify(if_true), sympy.sympify(if_false))


@dataclass(frozen=True)
class StepVars:
    """Symbols a step reads: ``wx[g]``, ``ry[g]``, ``b[g]`` per gate slot, ``s[st]`` per state."""

    wx: Mapping[str, sympy.Symbol]
    ry: Mapping[str, sympy.Symbol]
    b: Mapping[str, sympy.Symbol]
    s: Mapping[str, sympy.Symbol]

    def gate(self, name: str) -> sympy.Expr:
        """Pre-activation ``wx + ry + b`` of a gate, summing the slots the cell has for it."""
        parts = [slots[name] for slots in (self.wx, self.ry, self.b) if name in slots]
        if not parts:
            known = sorted(set(self.wx) | set(self.ry) | set(self.b))
            raise ValueError(f"gate: got {name!r}, expected one of the cell's gate slots {known}")
        return sympy.Add(*parts)
