"""Exact numpy values of a model's expressions and constraints at many points at once.

:class:`Evaluator` walks the expression trees once per call, each node (shared subtrees too)
computed once with one numpy operation over all points; a node's type picks its rule from a table,
so a node costs a dictionary lookup, not a chain of type tests. Two layouts of the points:

* columns: each variable a 1-D int64 array of its values at N points (the tuner prices the feasible
  configurations this way);
* a grid (:func:`grid_env`): variable i varies along axis i and has length 1 on the others, so
  numpy broadcasts: a node that depends on two variables is computed over their two axes only.
  Flattened, the grid is row-major over ascending domains in declaration order, which is
  ``enumerate_all``'s order.

:func:`feasible_columns` uses both: the constraints over few variables (on the kernel models, the
structural rules: which warp and row splits make sense) are evaluated on the grid, where they are
cheap; the survivors, typically a few percent of the points, become columns on which the
constraints over (nearly) every variable (registers, shared memory, co-residency) are evaluated.

Exact or nothing: before a node is computed the first time, its interval over the variables'
domains (``Expr._domain_bounds``, interval arithmetic) must stay within 2^62, and so must its
intermediate steps (a sum's partial sums: the constant plus coefficients times the terms'
magnitudes; a product's partial products: the product of its factors' magnitudes; ceil_div's
negated dividend). Where one does not, or a node type is unknown, :class:`Inexact` is raised and
callers use the checked evaluator of :mod:`.vector`, which tests the values it meets instead.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .constraints import AllOf, AnyOf, Compare, Constraint, Divides, Implies, Not, Truth
from .expr import CeilDiv, Const, Expr, FloorDiv, MaxOf, MinOf, Prod, Sum, Var
from .model import Model, NamedConstraint

__all__ = ["MAX_POINTS", "SAFE_MAGNITUDE", "Evaluator", "Feasible", "Inexact", "feasible_columns", "grid_env"]

# Magnitudes below this keep every int64 operation exact (the bound vector.py checks as well).
SAFE_MAGNITUDE = 1 << 62
# Points in one grid at most (as vector.VECTOR_MAX_POINTS: int64 arrays of 8 MB per full node).
MAX_POINTS = 1 << 20
# A constraint is evaluated on the grid when its own variables span at most this share of it;
# the others on the columns of the points that survive those (see feasible_columns).
_NARROW_SHARE = 1 / 8

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}


_MISSING = object()


class Inexact(Exception):
    """A node could leave int64's exact range over the domains, or is of a type not known here."""


def _magnitude(e: Expr) -> int:
    lo, hi = e._domain_bounds()
    return -lo if -lo > hi else hi


def _sum_steps(e: Sum) -> int:  # every partial sum, the constant last (and every coefficient)
    return abs(e.constant) + sum(abs(c) * max(1, _magnitude(t)) for c, t in e.terms)


def _prod_steps(e: Prod) -> int:  # every partial product
    return math.prod(max(1, _magnitude(f)) for f in e.factors)


# A bound on the magnitude of every value computing a node takes, given that its operands are
# within range (each is checked as a node of its own): a quotient by a divisor >= 1 is at most its
# dividend (negated first by ceil_div; a constant divisor must fit itself), and min/max pick one
# of their arguments.
_STEPS: dict[type, Callable[[Any], int]] = {
    Const: lambda e: abs(e.value),
    Var: _magnitude,
    Sum: _sum_steps,
    Prod: _prod_steps,
    FloorDiv: lambda e: abs(e.d) if isinstance(e.d, int) else 0,
    CeilDiv: lambda e: abs(e.d) if isinstance(e.d, int) else 0,
    MinOf: lambda e: 0,
    MaxOf: lambda e: 0,
}


def _divisor(ev: _Run, d: Any) -> Any:
    return d if type(d) is int else ev.value(d)  # a constant divisor, or an expression >= 1


def _sum(ev: _Run, e: Sum) -> Any:
    terms = e.terms
    c, t = terms[0]
    v = ev.value(t)
    out = v if c == 1 else (-v if c == -1 else c * v)
    for c, t in terms[1:]:
        v = ev.value(t)
        out = out + v if c == 1 else (out - v if c == -1 else out + c * v)
    return out + e.constant if e.constant else out


def _prod(ev: _Run, e: Prod) -> Any:
    factors = e.factors
    out = ev.value(factors[0])
    for f in factors[1:]:
        out = out * ev.value(f)
    return out


def _extremum(pick: Callable[[Any, Any], Any], plain: Callable[..., Any]) -> Callable[[_Run, Any], Any]:
    def rule(ev: _Run, e: Any) -> Any:
        values = [ev.value(a) for a in e.args]
        if all(isinstance(v, int) for v in values):
            return plain(values)
        out = values[0]
        for v in values[1:]:
            out = pick(out, v)
        return out

    return rule


def _divides(ev: _Run, c: Divides) -> Any:
    a, b = ev.value(c.a), ev.value(c.b)
    if isinstance(a, int):
        return np.equal(b, 0) if a == 0 else np.equal(b % a, 0)
    zero = np.equal(a, 0)  # 0 divides only 0
    return np.where(zero, np.equal(b, 0), np.equal(b % np.where(zero, 1, a), 0))


def _junction(join: Callable[[Any, Any], Any]) -> Callable[[_Run, Any], Any]:
    def rule(ev: _Run, c: Any) -> Any:
        parts = c.parts
        out = ev.holds(parts[0])
        for p in parts[1:]:
            out = join(out, ev.holds(p))
        return out

    return rule


_EXPR_RULES: dict[type, Callable[[_Run, Any], Any]] = {
    Const: lambda ev, e: e.value,
    Var: lambda ev, e: ev.env[e.name],
    Sum: _sum,
    Prod: _prod,
    FloorDiv: lambda ev, e: ev.value(e.arg) // _divisor(ev, e.d),
    CeilDiv: lambda ev, e: -(-ev.value(e.arg) // _divisor(ev, e.d)),
    MinOf: _extremum(np.minimum, min),
    MaxOf: _extremum(np.maximum, max),
}
_CONSTRAINT_RULES: dict[type, Callable[[_Run, Any], Any]] = {
    Compare: lambda ev, c: _COMPARE[c.op](ev.value(c.lhs), ev.value(c.rhs)),
    Divides: _divides,
    Not: lambda ev, c: np.logical_not(ev.holds(c.inner)),
    AnyOf: _junction(np.logical_or),
    AllOf: _junction(np.logical_and),
    Implies: lambda ev, c: np.logical_or(np.logical_not(ev.holds(c.cond)), ev.holds(c.then)),
    Truth: lambda ev, c: c.value,
}


class _Run:
    """One evaluation at one set of points: every node computed once (memo by node)."""

    __slots__ = ("env", "memo", "checked", "keep")

    def __init__(self, env: Mapping[str, Any], checked: set[int], keep: dict[int, Any]) -> None:
        self.env = env
        self.memo: dict[int, Any] = {}
        self.checked = checked
        self.keep = keep

    def values(self, items: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Each item (an expression, a constraint or an int) at this run's points."""
        out = {}
        for key, item in items.items():
            self.keep[id(item)] = item
            if isinstance(item, Expr):
                out[key] = self.value(item)
            elif isinstance(item, Constraint):
                out[key] = self.holds(item)
            elif isinstance(item, bool):
                out[key] = item
            else:
                out[key] = int(item)
        return out

    def value(self, e: Any) -> Any:
        key = id(e)  # the model owns its nodes, so ids stay unique meanwhile
        out = self.memo.get(key, _MISSING)
        if out is _MISSING:
            kind = type(e)
            rule = _EXPR_RULES.get(kind)
            if rule is None:
                raise Inexact(f"unknown expression node {kind.__name__}")
            if key not in self.checked:
                if _STEPS[kind](e) >= SAFE_MAGNITUDE:
                    raise Inexact(f"{e!r} can leave int64's exact range")
                self.checked.add(key)
            out = self.memo[key] = rule(self, e)
        return out

    def holds(self, c: Any) -> Any:
        key = id(c)
        memo = self.memo
        if key in memo:
            return memo[key]
        rule = _CONSTRAINT_RULES.get(type(c))
        if rule is None:
            raise Inexact(f"unknown constraint {type(c).__name__}")
        out = memo[key] = rule(self, c)
        return out


class Evaluator:
    """Exact numpy values of expressions and constraints; keep one per model, so that each node's
    range is checked once however many times it is evaluated."""

    def __init__(self) -> None:
        self._checked: set[int] = set()  # ids of the nodes whose range was checked
        self._keep: dict[int, Any] = {}  # the items evaluated, kept alive: their nodes' ids stay theirs

    def at(self, env: Mapping[str, Any]) -> _Run:
        """An evaluation at the points of ``env`` (variable name -> array, or int; arrays that
        broadcast together); its ``values(items)`` may be asked several times and computes each
        node once over all of them."""
        return _Run(env, self._checked, self._keep)

    def values(self, env: Mapping[str, Any], items: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        """Each item (an expression, a constraint or an int) at the points of ``env``: arrays, or
        an int or bool where an item is constant there. Raises Inexact where an item could leave
        int64's exact range (or is of an unknown type)."""
        return self.at(env).values(items)


def grid_env(model: Model) -> tuple[dict[str, np.ndarray], tuple[int, ...]]:
    """Each variable's domain along its own axis (length 1 on the others), and the grid's shape."""
    variables = model.variables
    shape = tuple(len(v.domain) for v in variables)
    env = {}
    for axis, v in enumerate(variables):
        view = [1] * len(variables)
        view[axis] = shape[axis]
        env[v.name] = np.asarray(v.domain.values, dtype=np.int64).reshape(view)
    return env, shape


def _all_hold(values: Any) -> Any:
    keep: Any = True
    for holds in values:
        keep = np.logical_and(keep, holds)
    return keep


@dataclass(frozen=True)
class Feasible:
    """The feasible points of a model: each variable's values as an int64 column (in
    ``enumerate_all``'s order), their number, and each requested ``extra`` item's values there (an
    int64 or bool array of ``count`` entries, or a constant)."""

    columns: dict[str, np.ndarray]
    count: int
    values: dict[Hashable, Any]


def _at(value: Any, picked: Any) -> Any:
    """``value`` (an array over the points, or a constant) at the points ``picked``: a mask or
    indices of a column, or per grid axis the indices along it."""
    if not isinstance(value, np.ndarray):
        return value
    if isinstance(picked, tuple):  # value spans the grid's axes where it is longer than 1
        out = value[tuple(ix if n > 1 else 0 for ix, n in zip(picked, value.shape, strict=True))]
        return out.item() if isinstance(out, np.generic) else out  # the same at every point
    return value[picked]


def feasible_columns(
    model: Model,
    constraints: Sequence[NamedConstraint] | None = None,
    evaluator: Evaluator | None = None,
    extra: Mapping[Hashable, Any] | None = None,
) -> Feasible | None:
    """The points of the Cartesian product that satisfy every one of ``constraints`` (default:
    all of the model's), and the values of the ``extra`` items (expressions, constraints) there;
    None when the product has more than MAX_POINTS points or an expression is beyond exact int64
    evaluation (then ask :mod:`.vector`'s checked evaluator or a solver). ``evaluator``: the one
    kept for this model, if any. The extra items are computed with the constraints, so the
    subexpressions they share are computed once."""
    variables = model.variables
    sizes = {v.name: len(v.domain) for v in variables}
    shape = tuple(sizes.values())
    total = math.prod(shape)
    if total > MAX_POINTS:
        return None
    evaluator = Evaluator() if evaluator is None else evaluator
    extra = {} if extra is None else extra
    narrow, wide = {}, {}
    for nc in model.constraints if constraints is None else constraints:
        span = math.prod(sizes[v] for v in nc.constraint.variables())
        (narrow if span <= total * _NARROW_SHARE else wide)[nc.name] = nc.constraint
    env, _ = grid_env(model)
    try:
        on_grid = evaluator.at(env)
        keep = _all_hold(on_grid.values(narrow).values())
        picked = np.flatnonzero(np.broadcast_to(keep, shape))
        index = np.unravel_index(picked, shape) if variables else ()
        columns = {v.name: env[v.name].reshape(-1)[ix] for v, ix in zip(variables, index, strict=True)}
        if not len(picked):
            return Feasible(columns, 0, {key: np.zeros(0, dtype=np.int64) for key in extra})
        if not wide:
            values = {key: _at(v, index) for key, v in on_grid.values(extra).items()}
            return Feasible(columns, len(picked), values)
        # the constraints over (nearly) all variables, on the points that survive the others
        on_columns = evaluator.at(columns)
        rest = np.broadcast_to(_all_hold(on_columns.values(wide).values()), picked.shape)
        values = {key: _at(v, rest) for key, v in on_columns.values(extra).items()}
        columns = {name: column[rest] for name, column in columns.items()}
        return Feasible(columns, int(np.count_nonzero(rest)), values)
    except Inexact:
        return None
