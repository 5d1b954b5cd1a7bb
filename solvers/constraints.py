"""Constraints over integer expressions: comparisons, divisibility, implication and boolean combinations.

Each constraint can
- ``holds(assignment)``: plain-Python truth at a full assignment (the referee; a ``memo`` dict
  passed to several calls at the same assignment evaluates shared subexpressions once),
- ``sides(assignment)``: the values of its two sides, so a tuner can say how close it is to its
  limit and an explainer can print "needed X > limit Y",
- ``negated()``: its logical negation, pushed down to comparisons (CP-SAT reification uses it),
- compile into closures for the native solver: ``_holds_fn`` (exact, all variables fixed) and
  ``_may_fn``/``_must_fn`` (interval tests: may it still hold / must it hold, given bounds).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping

from .expr import IntLike, as_expr

__all__ = ["Constraint", "Compare", "Divides", "Implies", "AnyOf", "AllOf", "Not", "Truth", "as_constraint"]

Index = Mapping[str, int]
HoldsFn = Callable[[list], bool]
MayFn = Callable[[list, list], bool]

_OPS: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_NEGATED = {"==": "!=", "!=": "==", "<=": ">", "<": ">=", ">=": "<", ">": "<="}


def as_constraint(value: object, arg: str = "constraint") -> Constraint:
    """Pass constraints through; wrap a bool (a comparison of plain ints) as ``Truth``."""
    if isinstance(value, Constraint):
        return value
    if isinstance(value, bool):
        return Truth(value)
    raise ValueError(f"{arg}: expected a constraint (e.g. x * 4 <= 1024) or a bool, got {value!r}")


class Constraint:
    """Base class of constraints."""

    __slots__ = ("_vars",)  # variables(), once (constraints are immutable)

    def __bool__(self) -> bool:
        raise TypeError(
            f"the truth value of constraint {self} is undefined: add it with Model.add(name, ...), "
            "or test it with .holds(assignment)"
        )

    def __and__(self, other: Constraint) -> Constraint:
        return AllOf(self, other)

    def __or__(self, other: Constraint) -> Constraint:
        return AnyOf(self, other)

    def __invert__(self) -> Constraint:
        return Not(self)

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        """True when the constraint is satisfied by the full ``assignment``.

        ``memo``: an empty dict, then passed to every call at the same assignment, shares the
        values of subexpressions between them (see ``Expr.evaluate``)."""
        raise NotImplementedError

    def sides(self, assignment: Mapping[str, int]) -> tuple[int, int] | None:
        """Values (lhs, rhs) of a two-sided constraint at ``assignment``; None when it has no sides."""
        return None

    def negated(self) -> Constraint:
        """A constraint that holds exactly when this one does not."""
        raise NotImplementedError

    def variables(self) -> tuple[str, ...]:
        """Names of the variables used, in order of first appearance."""
        names = getattr(self, "_vars", None)
        if names is None:
            found: dict = {}
            self._collect(found)
            names = self._vars = tuple(found)
        return names

    def _collect(self, found: dict) -> None:
        raise NotImplementedError

    def _holds_fn(self, index: Index) -> HoldsFn:
        raise NotImplementedError

    def _may_fn(self, index: Index) -> MayFn:
        raise NotImplementedError

    def _must_fn(self, index: Index) -> MayFn:
        raise NotImplementedError


class Compare(Constraint):
    """``lhs op rhs`` with op one of ``== != <= < >= >``; built by comparing expressions."""

    __slots__ = ("lhs", "op", "rhs")

    def __init__(self, lhs: IntLike, op: str, rhs: IntLike) -> None:
        if op not in _OPS:
            raise ValueError(f"op: expected one of {sorted(_OPS)}, got {op!r}")
        self.lhs, self.op, self.rhs = as_expr(lhs, "lhs"), op, as_expr(rhs, "rhs")

    def __repr__(self) -> str:
        return f"{self.lhs!r} {self.op} {self.rhs!r}"

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        memo = {} if memo is None else memo
        return _OPS[self.op](self.lhs.evaluate(assignment, memo), self.rhs.evaluate(assignment, memo))

    def sides(self, assignment: Mapping[str, int]) -> tuple[int, int]:
        return self.lhs.evaluate(assignment), self.rhs.evaluate(assignment)

    def negated(self) -> Constraint:
        return Compare(self.lhs, _NEGATED[self.op], self.rhs)

    def _collect(self, found: dict) -> None:
        self.lhs._collect(found)
        self.rhs._collect(found)

    def _holds_fn(self, index: Index) -> HoldsFn:
        f, g, op = self.lhs._value_fn(index), self.rhs._value_fn(index), _OPS[self.op]
        return lambda vals: op(f(vals), g(vals))

    def _interval_fn(self, index: Index, must: bool) -> MayFn:
        f, g, op = self.lhs._bounds_fn(index), self.rhs._bounds_fn(index), self.op

        def test(lo: list, hi: list) -> bool:
            (a, b), (c, d) = f(lo, hi), g(lo, hi)  # lhs in [a, b], rhs in [c, d]
            if op == "<=":
                return b <= c if must else a <= d
            if op == "<":
                return b < c if must else a < d
            if op == ">=":
                return a >= d if must else b >= c
            if op == ">":
                return a > d if must else b > c
            single = a == b == c == d
            if op == "==":
                return single if must else (a <= d and c <= b)
            return (b < c or d < a) if must else not single

        return test

    def _may_fn(self, index: Index) -> MayFn:
        return self._interval_fn(index, must=False)

    def _must_fn(self, index: Index) -> MayFn:
        return self._interval_fn(index, must=True)


def _divides(a: int, b: int) -> bool:
    return b == 0 if a == 0 else b % a == 0


class Divides(Constraint):
    """``a`` divides ``b`` (some integer q has ``b == a * q``; 0 divides only 0)."""

    __slots__ = ("a", "b")

    def __init__(self, a: IntLike, b: IntLike) -> None:
        self.a, self.b = as_expr(a, "Divides: a"), as_expr(b, "Divides: b")

    def __repr__(self) -> str:
        return f"Divides({self.a!r}, {self.b!r})"

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        memo = {} if memo is None else memo
        return _divides(self.a.evaluate(assignment, memo), self.b.evaluate(assignment, memo))

    def sides(self, assignment: Mapping[str, int]) -> tuple[int, int]:
        return self.a.evaluate(assignment), self.b.evaluate(assignment)

    def negated(self) -> Constraint:
        return Not(self)

    def _collect(self, found: dict) -> None:
        self.a._collect(found)
        self.b._collect(found)

    def _holds_fn(self, index: Index) -> HoldsFn:
        f, g = self.a._value_fn(index), self.b._value_fn(index)
        return lambda vals: _divides(f(vals), g(vals))

    def _may_fn(self, index: Index) -> MayFn:
        f, g = self.a._bounds_fn(index), self.b._bounds_fn(index)

        def may(lo: list, hi: list) -> bool:
            (a, a_hi), (b, b_hi) = f(lo, hi), g(lo, hi)
            if a != a_hi:
                return True
            if a == 0:
                return b <= 0 <= b_hi
            step = abs(a)
            return (b_hi // step) * step >= b  # some multiple of |a| lies in [b, b_hi]

        return may

    def _must_fn(self, index: Index) -> MayFn:
        f, g = self.a._bounds_fn(index), self.b._bounds_fn(index)

        def must(lo: list, hi: list) -> bool:
            (a, a_hi), (b, b_hi) = f(lo, hi), g(lo, hi)
            return a == a_hi and b == b_hi and _divides(a, b)

        return must


class Not(Constraint):
    """Holds when ``inner`` does not."""

    __slots__ = ("inner",)

    def __init__(self, inner: Constraint) -> None:
        self.inner = as_constraint(inner, "Not: inner")

    def __repr__(self) -> str:
        return f"Not({self.inner!r})"

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        return not self.inner.holds(assignment, memo)

    def sides(self, assignment: Mapping[str, int]) -> tuple[int, int] | None:
        return self.inner.sides(assignment)

    def negated(self) -> Constraint:
        return self.inner

    def _collect(self, found: dict) -> None:
        self.inner._collect(found)

    def _holds_fn(self, index: Index) -> HoldsFn:
        f = self.inner._holds_fn(index)
        return lambda vals: not f(vals)

    def _may_fn(self, index: Index) -> MayFn:
        f = self.inner._must_fn(index)
        return lambda lo, hi: not f(lo, hi)

    def _must_fn(self, index: Index) -> MayFn:
        f = self.inner._may_fn(index)
        return lambda lo, hi: not f(lo, hi)


class _Junction(Constraint):
    __slots__ = ("parts",)
    _label = ""
    _any = False

    def __init__(self, *parts: Constraint) -> None:
        if len(parts) == 1 and isinstance(parts[0], (list, tuple)):
            parts = tuple(parts[0])
        if not parts:
            raise ValueError(f"{self._label}: expected at least one constraint, got none")
        self.parts = tuple(as_constraint(p, f"{self._label} part") for p in parts)

    def __repr__(self) -> str:
        return f"{self._label}({', '.join(map(repr, self.parts))})"

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        test, memo = (any if self._any else all), ({} if memo is None else memo)
        return test(p.holds(assignment, memo) for p in self.parts)

    def _collect(self, found: dict) -> None:
        for p in self.parts:
            p._collect(found)

    def _combine(self, fns: list, any_: bool) -> Callable:
        if any_:
            return lambda *args: any(f(*args) for f in fns)
        return lambda *args: all(f(*args) for f in fns)

    def _holds_fn(self, index: Index) -> HoldsFn:
        return self._combine([p._holds_fn(index) for p in self.parts], self._any)

    def _may_fn(self, index: Index) -> MayFn:
        return self._combine([p._may_fn(index) for p in self.parts], self._any)

    def _must_fn(self, index: Index) -> MayFn:
        return self._combine([p._must_fn(index) for p in self.parts], self._any)


class AnyOf(_Junction):
    """Holds when at least one part holds."""

    __slots__ = ()
    _label = "AnyOf"
    _any = True

    def negated(self) -> Constraint:
        return AllOf(*(p.negated() for p in self.parts))


class AllOf(_Junction):
    """Holds when every part holds."""

    __slots__ = ()
    _label = "AllOf"
    _any = False

    def negated(self) -> Constraint:
        return AnyOf(*(p.negated() for p in self.parts))


class Implies(Constraint):
    """``then`` must hold whenever ``cond`` holds, e.g. "a hidden split needs a reduction buffer"."""

    __slots__ = ("cond", "then")

    def __init__(self, cond: Constraint | bool, then: Constraint | bool) -> None:
        self.cond = as_constraint(cond, "Implies: cond")
        self.then = as_constraint(then, "Implies: then")

    def __repr__(self) -> str:
        return f"Implies({self.cond!r}, {self.then!r})"

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        memo = {} if memo is None else memo
        return not self.cond.holds(assignment, memo) or self.then.holds(assignment, memo)

    def sides(self, assignment: Mapping[str, int]) -> tuple[int, int] | None:
        return self.then.sides(assignment)

    def negated(self) -> Constraint:
        return AllOf(self.cond, self.then.negated())

    def _collect(self, found: dict) -> None:
        self.cond._collect(found)
        self.then._collect(found)

    def _holds_fn(self, index: Index) -> HoldsFn:
        c, t = self.cond._holds_fn(index), self.then._holds_fn(index)
        return lambda vals: not c(vals) or t(vals)

    def _may_fn(self, index: Index) -> MayFn:
        c, t = self.cond._must_fn(index), self.then._may_fn(index)
        return lambda lo, hi: not c(lo, hi) or t(lo, hi)

    def _must_fn(self, index: Index) -> MayFn:
        c, t = self.cond._may_fn(index), self.then._must_fn(index)
        return lambda lo, hi: not c(lo, hi) or t(lo, hi)


class Truth(Constraint):
    """A constant constraint: what a comparison of plain ints folds to (``ceil_div(300, 256) <= 1``)."""

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = bool(value)

    def __repr__(self) -> str:
        return f"Truth({self.value})"

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        return self.value

    def negated(self) -> Constraint:
        return Truth(not self.value)

    def _collect(self, found: dict) -> None:
        pass

    def _holds_fn(self, index: Index) -> HoldsFn:
        v = self.value
        return lambda vals: v

    def _may_fn(self, index: Index) -> MayFn:
        v = self.value
        return lambda lo, hi: v

    def _must_fn(self, index: Index) -> MayFn:
        return self._may_fn(index)
