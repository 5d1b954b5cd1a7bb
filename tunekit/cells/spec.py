"""How a cell is declared: gate slots, states, and the pointwise step as SymPy expressions.

A declaration is data plus one small function ``step(v) -> {state: new value}``; everything else
(reference step, pointwise backward, Triton and CUDA code) is derived from it in
:mod:`tunekit.cells.derive` and printed by :mod:`tunekit.cells.printers`. The step may use the
math below (and ``+ - * /``, integer powers, ``sympy.Eq``/``<``/``>=`` in conditions, SymPy's
``Max``/``Min``/``Abs``); printers reject anything else with a clear error. A no-gradient state's
new value that is a sum or product must be wrapped in :class:`no_grad` inside the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sympy

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


StepFunction = Callable[[StepVars], Mapping[str, Any]]


def _names(value: Any, what: str) -> tuple[str, ...]:
    """A tuple of unique Python identifiers (they become variable names in printed code)."""
    if isinstance(value, str):
        raise ValueError(f"{what}: got the string {value!r}, expected a sequence of names")
    names = tuple(value)
    bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise ValueError(f"{what}: got {bad!r}, expected identifiers (they name variables in printed code)")
    if len(set(names)) != len(names):
        raise ValueError(f"{what}: got {names!r}, expected unique names")
    return names


@dataclass(frozen=True, eq=False)
class Cell:
    """One recurrent cell, declared once (DESIGN §3).

    ``r_gates``/``w_gates``/``b_gates`` name the slots of R, Wx and b in order (G_r, G_w, G_t);
    ``states[0]`` is the hidden output y that R multiplies; ``no_grad_states`` carry no gradient
    (their new value is detached wherever the other states use it). ``step`` maps
    :class:`StepVars` to ``{state: SymPy expression of its new value}``.
    """

    name: str
    r_gates: tuple[str, ...]
    w_gates: tuple[str, ...]
    b_gates: tuple[str, ...]
    states: tuple[str, ...]
    step: StepFunction = field(repr=False)
    no_grad_states: tuple[str, ...] = ()
    doc: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ValueError(f"name: got {self.name!r}, expected an identifier such as 'lstm'")
        for attr in ("r_gates", "w_gates", "b_gates", "states", "no_grad_states"):
            object.__setattr__(self, attr, _names(getattr(self, attr), attr))
        if not self.r_gates or not self.states:
            raise ValueError(
                f"cell {self.name!r}: got r_gates={self.r_gates}, states={self.states}; "
                "expected at least one each"
            )
        unknown = [st for st in self.no_grad_states if st not in self.states]
        if unknown or self.states[0] in self.no_grad_states:
            raise ValueError(
                f"no_grad_states: got {self.no_grad_states}, expected states of {self.states} "
                f"other than the hidden output {self.states[0]!r}"
            )
        if not callable(self.step):
            raise ValueError(f"step: got {type(self.step).__name__}, expected a function of StepVars")

    @property
    def grad_states(self) -> tuple[str, ...]:
        """States that receive a gradient (all but ``no_grad_states``)."""
        return tuple(st for st in self.states if st not in self.no_grad_states)

    def forward_code(self, lang: str) -> list[tuple[str, str]]:
        """(target, expression) assignments computing every ``s_<st>_new``, printed for ``lang``."""
        from tunekit.cells.printers import printed_code

        return printed_code(self, "forward", lang)

    def backward_code(self, lang: str) -> list[tuple[str, str]]:
        """(target, expression) assignments of ``dwx_<g>``, ``dry_<g>``, ``db_<g>``, ``ds_<st>``."""
        from tunekit.cells.printers import printed_code

        return printed_code(self, "backward", lang)

    def __repr__(self) -> str:
        return (
            f"Cell({self.name!r}, r_gates={self.r_gates}, w_gates={self.w_gates}, "
            f"b_gates={self.b_gates}, states={self.states}, no_grad_states={self.no_grad_states})"
        )
