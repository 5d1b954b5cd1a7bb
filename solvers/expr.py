"""Integer expressions over model variables: sums, products, floor/ceil division by constants, min, max.

Expressions are trees built by operator overloading (``bb * 4 + 32``). Each node can
- ``evaluate`` itself at a full assignment (the plain-Python referee every backend is checked against;
  a shared subexpression is evaluated once per call, or once per ``memo`` passed between calls),
- compile itself into closures over a list of variable values (``_value_fn``) or over lists of
  lower/upper bounds (``_bounds_fn``, interval arithmetic), which the native solver calls in its
  inner loop.

Comparisons build constraints (see ``constraints.py``), so expressions are unhashable and refuse
to be used as booleans: ``if x < 3`` raises TypeError instead of silently being true.

Nodes are immutable, so each one keeps what it has computed about itself: its variables and its
interval over the variables' domains (which every ``ceil_div``/``floor_div`` by an expression
checks when it is built) are computed once, from its children's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Union

from .domains import Domain

if TYPE_CHECKING:
    from .constraints import Compare

__all__ = [
    "Expr",
    "Const",
    "Var",
    "Sum",
    "Prod",
    "FloorDiv",
    "CeilDiv",
    "MinOf",
    "MaxOf",
    "IntLike",
    "as_expr",
    "ceil_div",
    "floor_div",
    "round_up",
    "Min",
    "Max",
]

IntLike = Union[int, "Expr"]
Index = Mapping[str, int]
ValueFn = Callable[[list], int]
BoundsFn = Callable[[list, list], tuple]


def as_expr(value: IntLike, arg: str = "value") -> Expr:
    """Wrap an int as ``Const``; pass expressions through; anything else is a ValueError."""
    if isinstance(value, Expr):
        return value
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{arg}: expected an int or an expression, got {value!r} ({type(value).__name__})")
    return Const(value)


def _divisor(d: object, fn: str) -> int | Expr:
    """A positive int, or a non-constant expression that is >= 1 for every value of its variables."""
    if isinstance(d, Const):
        d = d.value
    if isinstance(d, Expr):
        lo = d._domain_bounds()[0]
        if lo < 1:
            raise ValueError(
                f"{fn}: divisor {d} can be {lo}; expected a positive int or an expression that is >= 1 "
                "for every value in its variables' domains"
            )
        return d
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(
            f"{fn}: divisor must be a positive int or an expression that is always >= 1, got {d!r}"
        )
    return d


def _mul_bounds(alo: int, ahi: int, blo: int, bhi: int) -> tuple[int, int]:
    if alo >= 0 and blo >= 0:  # the common case in resource formulas: all sizes are non-negative
        return alo * blo, ahi * bhi
    corners = (alo * blo, alo * bhi, ahi * blo, ahi * bhi)
    return min(corners), max(corners)


class Expr:
    """Base class of integer expressions."""

    # what a node has computed about itself, once (None until then): variables(), _domain_bounds()
    __slots__ = ("_vars", "_dom")
    __hash__ = None  # type: ignore[assignment]  # `==` builds a constraint, so hashing by value is meaningless

    # -- arithmetic -------------------------------------------------------------------------
    # A plain int operand (the common case in resource formulas) goes straight into the sum's
    # constant or coefficient, without a Const node in between; the result is the same.
    def __add__(self, other: IntLike) -> Expr:
        if type(other) is int:
            return Sum.of([(1, self)], other)
        return Sum.of([(1, self), (1, as_expr(other, "right operand of +"))])

    def __radd__(self, other: IntLike) -> Expr:
        if type(other) is int:
            return Sum.of([(1, self)], other)
        return Sum.of([(1, as_expr(other, "left operand of +")), (1, self)])

    def __sub__(self, other: IntLike) -> Expr:
        if type(other) is int:
            return Sum.of([(1, self)], -other)
        return Sum.of([(1, self), (-1, as_expr(other, "right operand of -"))])

    def __rsub__(self, other: IntLike) -> Expr:
        if type(other) is int:
            return Sum.of([(-1, self)], other)
        return Sum.of([(1, as_expr(other, "left operand of -")), (-1, self)])

    def __neg__(self) -> Expr:
        return Sum.of([(-1, self)])

    def __pos__(self) -> Expr:
        return self

    def __mul__(self, other: IntLike) -> Expr:
        if type(other) is int:
            return _times(self, other)
        return Prod.of(self, as_expr(other, "right operand of *"))

    def __rmul__(self, other: IntLike) -> Expr:
        if type(other) is int:
            return _times(self, other)
        return Prod.of(as_expr(other, "left operand of *"), self)

    def __floordiv__(self, d: IntLike) -> Expr:
        return floor_div(self, d)

    def __rfloordiv__(self, a: int) -> Expr:
        return floor_div(as_expr(a, "left operand of //"), self)

    def __mod__(self, d: IntLike) -> Expr:
        return self - floor_div(self, d) * d

    def __rmod__(self, a: int) -> Expr:
        return as_expr(a, "left operand of %") - floor_div(a, self) * self

    # -- comparisons build constraints --------------------------------------------------------
    def _cmp(self, op: str, other: IntLike) -> Compare:
        from .constraints import Compare

        return Compare(self, op, as_expr(other, f"right side of {op}"))

    def __le__(self, other: IntLike) -> Compare:
        return self._cmp("<=", other)

    def __lt__(self, other: IntLike) -> Compare:
        return self._cmp("<", other)

    def __ge__(self, other: IntLike) -> Compare:
        return self._cmp(">=", other)

    def __gt__(self, other: IntLike) -> Compare:
        return self._cmp(">", other)

    def __eq__(self, other: IntLike) -> Compare:  # type: ignore[override]
        return self._cmp("==", other)

    def __ne__(self, other: IntLike) -> Compare:  # type: ignore[override]
        return self._cmp("!=", other)

    def __bool__(self) -> bool:
        raise TypeError(
            f"the truth value of expression {self} is undefined: comparisons build constraints for "
            "Model.add(); to test a value, use .evaluate(assignment) or constraint.holds(assignment)"
        )

    # -- evaluation ---------------------------------------------------------------------------
    def evaluate(self, assignment: Mapping[str, int], memo: dict | None = None) -> int:
        """Value of the expression when each variable takes its value in ``assignment``.

        Each shared subexpression is evaluated once; ``memo`` (an empty dict, then passed again)
        shares those values between calls at the same assignment, e.g. over a model's constraints.
        """
        return self._value(assignment, {} if memo is None else memo)

    def _value(self, env: Mapping[str, int], memo: dict) -> int:
        key = id(self)  # the nodes outlive the memo, so ids stay unique meanwhile
        if key in memo:
            return memo[key]
        value = memo[key] = self._eval(env, memo)
        return value

    def variables(self) -> tuple[str, ...]:
        """Names of the variables used, in order of first appearance."""
        found = self._vars
        if found is None:
            found = ()
            for child in self._children():
                names = child.variables()
                if not found:
                    found = names
                elif names and names is not found and names != found:
                    found += tuple(n for n in names if n not in found)
            self._vars = found
        return found

    def _collect(self, found: dict) -> None:
        found.update(dict.fromkeys(self.variables()))

    def _domain_bounds(self) -> tuple[int, int]:
        """Interval over the full domains of the variables used (``bounds`` at the domains' ends,
        computed bottom-up from the children's intervals, once per node)."""
        bounds = self._dom
        if bounds is None:
            bounds = self._dom = self._node_bounds()
        return bounds

    def bounds(self, domains: Mapping[str, tuple[int, int]]) -> tuple[int, int]:
        """Interval (lo, hi) containing every value, given each variable's (lo, hi)."""
        names = self.variables()
        index = {n: i for i, n in enumerate(names)}
        return self._bounds_fn(index)([domains[n][0] for n in names], [domains[n][1] for n in names])

    # Subclasses implement these five.
    def _eval(self, env: Mapping[str, int], memo: dict) -> int:
        raise NotImplementedError

    def _children(self) -> tuple[Expr, ...]:
        raise NotImplementedError

    def _node_bounds(self) -> tuple[int, int]:
        raise NotImplementedError

    def _value_fn(self, index: Index) -> ValueFn:
        raise NotImplementedError

    def _bounds_fn(self, index: Index) -> BoundsFn:
        raise NotImplementedError


class Const(Expr):
    """An integer constant."""

    __slots__ = ("value",)

    def __init__(self, value: int) -> None:
        self.value = value
        self._vars, self._dom = (), (value, value)

    def __repr__(self) -> str:
        return str(self.value)

    def _value(self, env: Mapping[str, int], memo: dict) -> int:
        return self.value

    def _eval(self, env: Mapping[str, int], memo: dict) -> int:
        return self.value

    def _children(self) -> tuple[Expr, ...]:
        return ()

    def _node_bounds(self) -> tuple[int, int]:
        return self.value, self.value

    def _value_fn(self, index: Index) -> ValueFn:
        v = self.value
        return lambda vals: v

    def _bounds_fn(self, index: Index) -> BoundsFn:
        b = (self.value, self.value)
        return lambda lo, hi: b


class Var(Expr):
    """A decision variable; create it with ``Model.int_var(name, domain)``."""

    __slots__ = ("name", "domain")

    def __init__(self, name: str, domain: Domain) -> None:
        self.name = name
        self.domain = domain
        self._vars, self._dom = (name,), None

    def __repr__(self) -> str:
        return self.name

    def _value(self, env: Mapping[str, int], memo: dict) -> int:
        try:
            return env[self.name]
        except KeyError:
            raise ValueError(f"assignment: no value for variable {self.name!r}") from None

    def _eval(self, env: Mapping[str, int], memo: dict) -> int:
        return self._value(env, memo)

    def _children(self) -> tuple[Expr, ...]:
        return ()

    def _node_bounds(self) -> tuple[int, int]:
        return self.domain.lo, self.domain.hi

    def _value_fn(self, index: Index) -> ValueFn:
        i = index[self.name]
        return lambda vals: vals[i]

    def _bounds_fn(self, index: Index) -> BoundsFn:
        i = index[self.name]
        return lambda lo, hi: (lo[i], hi[i])


class Sum(Expr):
    """``constant + sum(coef * term)``; built by +, - and multiplication by constants."""

    __slots__ = ("terms", "constant")

    def __init__(self, terms: tuple[tuple[int, Expr], ...], constant: int = 0) -> None:
        self.terms = terms
        self.constant = constant
        self._vars = self._dom = None

    @staticmethod
    def of(items: list[tuple[int, Expr]], constant: int = 0) -> Expr:
        """Flatten nested sums, fold constants (and ``constant``) and merge repeated variables."""
        merged: dict[object, list] = {}
        for coef, e in items:
            kind = type(e)
            if kind is Const:
                constant += coef * e.value
            elif kind is Sum:
                constant += coef * e.constant
                for c, t in e.terms:
                    key = t.name if type(t) is Var else id(t)
                    if key in merged:
                        merged[key][0] += coef * c
                    else:
                        merged[key] = [coef * c, t]
            else:
                key = e.name if kind is Var else id(e)
                if key in merged:
                    merged[key][0] += coef
                else:
                    merged[key] = [coef, e]
        terms = tuple((c, t) for c, t in merged.values() if c != 0)
        if not terms:
            return Const(constant)
        if constant == 0 and len(terms) == 1 and terms[0][0] == 1:
            return terms[0][1]
        return Sum(terms, constant)

    def __repr__(self) -> str:
        text = ""
        for coef, t in self.terms:
            sign = "-" if coef < 0 else "+"
            body = repr(t) if abs(coef) == 1 else f"{abs(coef)} * {t!r}"
            if isinstance(t, Sum) and abs(coef) != 1:
                body = f"{abs(coef)} * ({t!r})"
            text = f"{text} {sign} {body}" if text else (f"-{body}" if coef < 0 else body)
        if self.constant:
            text += f" {'-' if self.constant < 0 else '+'} {abs(self.constant)}"
        return text

    def _eval(self, env: Mapping[str, int], memo: dict) -> int:
        return self.constant + sum(c * t._value(env, memo) for c, t in self.terms)

    def _children(self) -> tuple[Expr, ...]:
        return tuple(t for _, t in self.terms)

    def _node_bounds(self) -> tuple[int, int]:
        a = b = self.constant
        for c, t in self.terms:
            tlo, thi = t._domain_bounds()
            if c > 0:
                a += c * tlo
                b += c * thi
            else:
                a += c * thi
                b += c * tlo
        return a, b

    def _value_fn(self, index: Index) -> ValueFn:
        k = self.constant
        parts = [(c, t._value_fn(index)) for c, t in self.terms]
        if len(parts) == 1:
            ((c0, f0),) = parts
            return lambda vals: k + c0 * f0(vals)
        if len(parts) == 2:
            (c0, f0), (c1, f1) = parts
            return lambda vals: k + c0 * f0(vals) + c1 * f1(vals)
        return lambda vals: k + sum(c * f(vals) for c, f in parts)

    def _bounds_fn(self, index: Index) -> BoundsFn:
        k = self.constant
        parts = [(c, t._bounds_fn(index)) for c, t in self.terms]

        def bounds(lo: list, hi: list) -> tuple[int, int]:
            a = b = k
            for c, f in parts:
                tlo, thi = f(lo, hi)
                if c > 0:
                    a += c * tlo
                    b += c * thi
                else:
                    a += c * thi
                    b += c * tlo
            return a, b

        return bounds


class Prod(Expr):
    """Product of two or more non-constant factors (constant factors become Sum coefficients)."""

    __slots__ = ("factors",)

    def __init__(self, factors: tuple[Expr, ...]) -> None:
        self.factors = factors
        self._vars = self._dom = None

    @staticmethod
    def of(a: Expr, b: Expr) -> Expr:
        for x, k in ((a, b), (b, a)):  # the common case, an expression times a constant
            if type(k) is Const and type(x) is not Const and type(x) is not Prod:
                c = k.value
                return x if c == 1 else (Const(0) if c == 0 else Sum.of([(c, x)]))
        factors: list[Expr] = []
        coef = 1
        for e in (a, b):
            if isinstance(e, Const):
                coef *= e.value
            elif isinstance(e, Prod):
                factors.extend(e.factors)
            else:
                factors.append(e)
        if coef == 0 or not factors:
            return Const(coef if not factors else 0)
        body = factors[0] if len(factors) == 1 else Prod(tuple(factors))
        return body if coef == 1 else Sum.of([(coef, body)])

    def __repr__(self) -> str:
        return " * ".join(f"({f!r})" if isinstance(f, Sum) else repr(f) for f in self.factors)

    def _eval(self, env: Mapping[str, int], memo: dict) -> int:
        out = 1
        for f in self.factors:
            out *= f._value(env, memo)
        return out

    def _children(self) -> tuple[Expr, ...]:
        return self.factors

    def _node_bounds(self) -> tuple[int, int]:
        a, b = self.factors[0]._domain_bounds()
        for f in self.factors[1:]:
            a, b = _mul_bounds(a, b, *f._domain_bounds())
        return a, b

    def _value_fn(self, index: Index) -> ValueFn:
        fns = [f._value_fn(index) for f in self.factors]
        if len(fns) == 2:
            f0, f1 = fns
            return lambda vals: f0(vals) * f1(vals)

        def value(vals: list) -> int:
            out = 1
            for f in fns:
                out *= f(vals)
            return out

        return value

    def _bounds_fn(self, index: Index) -> BoundsFn:
        fns = [f._bounds_fn(index) for f in self.factors]

        def bounds(lo: list, hi: list) -> tuple[int, int]:
            a, b = fns[0](lo, hi)
            for f in fns[1:]:
                c, d = f(lo, hi)
                a, b = _mul_bounds(a, b, c, d)
            return a, b

        return bounds


def _times(e: Expr, c: int) -> Expr:
    """``e * c`` for a plain int ``c``: what ``Prod.of(e, Const(c))`` builds."""
    if c == 1:
        return e
    if c == 0:
        return Const(0)
    if type(e) is Const:
        return Const(e.value * c)
    return Sum.of([(c, e)])


def _floor(a: int, b: int) -> int:
    return a // b


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


class _Division(Expr):
    """``arg / d`` rounded by ``_round``; ``d`` is a positive int or an always-positive expression."""

    __slots__ = ("arg", "d")
    _round: Callable[[int, int], int] = _floor
    _label = ""

    def __init__(self, arg: Expr, d: int | Expr) -> None:
        self.arg = arg
        self.d = d
        self._vars = self._dom = None

    def __repr__(self) -> str:
        return f"{self._label}({self.arg!r}, {self.d!r})"

    def _eval(self, env: Mapping[str, int], memo: dict) -> int:
        d = self.d._value(env, memo) if isinstance(self.d, Expr) else self.d
        return type(self)._round(self.arg._value(env, memo), d)

    def _children(self) -> tuple[Expr, ...]:
        return (self.arg, self.d) if isinstance(self.d, Expr) else (self.arg,)

    def _node_bounds(self) -> tuple[int, int]:
        (a, b), rnd = self.arg._domain_bounds(), type(self)._round
        if isinstance(self.d, Expr):  # monotone in each argument for a divisor >= 1: the corners
            c, e = self.d._domain_bounds()
            qs = (rnd(a, c), rnd(a, e), rnd(b, c), rnd(b, e))
            return min(qs), max(qs)
        return rnd(a, self.d), rnd(b, self.d)

    def _value_fn(self, index: Index) -> ValueFn:
        f, d, rnd = self.arg._value_fn(index), self.d, type(self)._round
        if isinstance(d, Expr):
            g = d._value_fn(index)
            return lambda vals: rnd(f(vals), g(vals))
        return lambda vals: rnd(f(vals), d)

    def _bounds_fn(self, index: Index) -> BoundsFn:
        f, d, rnd = self.arg._bounds_fn(index), self.d, type(self)._round
        if isinstance(d, Expr):
            g = d._bounds_fn(index)

            def corners(lo: list, hi: list) -> tuple[int, int]:
                # With a divisor >= 1, a / b is monotone in each argument, so its extremes (and
                # those of its rounding) sit at the corners of the box.
                (a, b), (c, e) = f(lo, hi), g(lo, hi)
                qs = (rnd(a, c), rnd(a, e), rnd(b, c), rnd(b, e))
                return min(qs), max(qs)

            return corners

        def bounds(lo: list, hi: list) -> tuple[int, int]:
            a, b = f(lo, hi)
            return rnd(a, d), rnd(b, d)  # rounding a / d for a constant d >= 1 is monotone in a

        return bounds


class FloorDiv(_Division):
    """``floor(arg / d)`` (Python's ``//``)."""

    __slots__ = ()
    _round = _floor
    _label = "floor_div"


class CeilDiv(_Division):
    """``ceil(arg / d)``, e.g. registers in 256-register units."""

    __slots__ = ()
    _round = _ceil
    _label = "ceil_div"


class _Extremum(Expr):
    __slots__ = ("args",)
    _pick: Callable = min
    _label = ""

    def __init__(self, args: tuple[Expr, ...]) -> None:
        self.args = args
        self._vars = self._dom = None

    def __repr__(self) -> str:
        return f"{self._label}({', '.join(map(repr, self.args))})"

    def _eval(self, env: Mapping[str, int], memo: dict) -> int:
        return type(self)._pick(a._value(env, memo) for a in self.args)

    def _children(self) -> tuple[Expr, ...]:
        return self.args

    def _node_bounds(self) -> tuple[int, int]:
        ivs = [a._domain_bounds() for a in self.args]  # min and max are monotone in every argument
        pick = type(self)._pick
        return pick(iv[0] for iv in ivs), pick(iv[1] for iv in ivs)

    def _value_fn(self, index: Index) -> ValueFn:
        fns, pick = [a._value_fn(index) for a in self.args], type(self)._pick
        return lambda vals: pick([f(vals) for f in fns])

    def _bounds_fn(self, index: Index) -> BoundsFn:
        fns, pick = [a._bounds_fn(index) for a in self.args], type(self)._pick

        def bounds(lo: list, hi: list) -> tuple[int, int]:
            ivs = [f(lo, hi) for f in fns]  # min and max are monotone in every argument
            return pick(iv[0] for iv in ivs), pick(iv[1] for iv in ivs)

        return bounds


class MinOf(_Extremum):
    """Smallest of its arguments."""

    __slots__ = ()
    _pick = min
    _label = "Min"


class MaxOf(_Extremum):
    """Largest of its arguments."""

    __slots__ = ()
    _pick = max
    _label = "Max"


def _divide(cls: type[_Division], fn: str, a: IntLike, d: IntLike) -> IntLike:
    divisor = _divisor(d, fn)
    num = as_expr(a, f"{fn}: a")
    if isinstance(num, Const) and isinstance(divisor, int):
        return cls._round(num.value, divisor)  # plain ints in, plain int out
    return cls(num, divisor)


def floor_div(a: IntLike, d: IntLike) -> IntLike:
    """``floor(a / d)``: an int for ints, an expression node otherwise (``d`` must be >= 1)."""
    return _divide(FloorDiv, "floor_div", a, d)


def ceil_div(a: IntLike, d: IntLike) -> IntLike:
    """``ceil(a / d)``: an int for ints, an expression node otherwise (``d`` must be >= 1)."""
    return _divide(CeilDiv, "ceil_div", a, d)


def round_up(a: IntLike, d: IntLike) -> IntLike:
    """Smallest multiple of ``d`` that is ``>= a`` (allocation granularity, e.g. 128-byte units)."""
    return ceil_div(a, d) * _divisor(d, "round_up")


def _extremum(cls: type[_Extremum], fn: str, args: tuple[IntLike, ...]) -> IntLike:
    if len(args) == 1 and isinstance(args[0], (list, tuple)):
        args = tuple(args[0])
    if not args:
        raise ValueError(f"{fn}: expected at least one argument, got none")
    exprs = [as_expr(a, f"{fn} argument") for a in args]
    if all(isinstance(e, Const) for e in exprs):
        return cls._pick(e.value for e in exprs)  # plain ints in, plain int out
    return exprs[0] if len(exprs) == 1 else cls(tuple(exprs))


def Min(*args: IntLike) -> IntLike:  # noqa: N802 - reads like the math in constraint models
    """Minimum of ints and expressions (an int when every argument is an int)."""
    return _extremum(MinOf, "Min", args)


def Max(*args: IntLike) -> IntLike:  # noqa: N802
    """Maximum of ints and expressions (an int when every argument is an int)."""
    return _extremum(MaxOf, "Max", args)
