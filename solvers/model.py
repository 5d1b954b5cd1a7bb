"""The model: named integer variables, named constraints (each with the fact behind it), an objective.

A model is plain data. Backends (``brute``, ``native``, ``cpsat``) read it; none of them changes it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .constraints import Constraint, as_constraint
from .domains import Domain
from .expr import Expr, IntLike, Var, as_expr

__all__ = ["Model", "NamedConstraint", "Objective"]


@dataclass(frozen=True)
class NamedConstraint:
    """A constraint with a unique ``name`` and ``why``: the hardware fact it encodes."""

    name: str
    constraint: Constraint
    why: str = ""

    def holds(self, assignment: Mapping[str, int], memo: dict | None = None) -> bool:
        return self.constraint.holds(assignment, memo)


@dataclass(frozen=True)
class Objective:
    """``sense`` is "min" or "max"; ``expr`` is evaluated at each solution."""

    sense: str
    expr: Expr

    def key(self, assignment: Mapping[str, int]) -> int:
        """Sort key: smaller is better for both senses."""
        value = self.expr.evaluate(assignment)
        return value if self.sense == "min" else -value


def _check_name(arg: str, name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{arg}: expected a non-empty string, got {name!r}")
    return name


class Model:
    """Integer variables with finite domains, named constraints and an optional objective."""

    def __init__(self, name: str = "model") -> None:
        self.name = _check_name("name", name)
        self._vars: dict[str, Var] = {}
        self._constraints: dict[str, NamedConstraint] = {}
        self.objective: Objective | None = None

    def __repr__(self) -> str:
        return f"Model({self.name!r}, {len(self._vars)} variables, {len(self._constraints)} constraints)"

    # -- variables ----------------------------------------------------------------------------
    def int_var(self, name: str, domain: Domain) -> Var:
        """Declare an integer variable; returns the expression that stands for it."""
        _check_name("name", name)
        if name in self._vars:
            raise ValueError(f"name: variable {name!r} is already declared in model {self.name!r}")
        if not isinstance(domain, Domain):
            raise ValueError(
                "domain: expected a Domain (Range, Values, PowersOfTwo, DivisorsOf, Multiples), "
                f"got {domain!r}"
            )
        var = Var(name, domain)
        self._vars[name] = var
        return var

    @property
    def variables(self) -> list[Var]:
        """Declared variables, in declaration order."""
        return list(self._vars.values())

    def var(self, name: str) -> Var:
        """The variable called ``name``."""
        if name not in self._vars:
            raise ValueError(
                f"name: no variable {name!r} in model {self.name!r}; known: {sorted(self._vars)}"
            )
        return self._vars[name]

    # -- constraints --------------------------------------------------------------------------
    def add(self, name: str, constraint: Constraint | bool, why: str = "") -> Constraint:
        """Add ``constraint`` under a unique ``name``; ``why`` states the fact it encodes."""
        _check_name("name", name)
        if name in self._constraints:
            raise ValueError(
                f"name: constraint {name!r} is already in model {self.name!r}; names must be unique"
            )
        if not isinstance(why, str):
            raise ValueError(f"why: expected a string, got {why!r}")
        c = as_constraint(constraint, f"constraint {name!r}")
        self._check_vars(c.variables(), f"constraint {name!r}")
        self._constraints[name] = NamedConstraint(name, c, why)
        return c

    @property
    def constraints(self) -> list[NamedConstraint]:
        """Named constraints, in the order they were added."""
        return list(self._constraints.values())

    def constraint(self, name: str) -> NamedConstraint:
        """The named constraint called ``name``."""
        if name not in self._constraints:
            raise ValueError(f"name: no constraint {name!r} in model {self.name!r}")
        return self._constraints[name]

    # -- objective ----------------------------------------------------------------------------
    def minimize(self, expr: IntLike) -> None:
        """Make ``expr`` the objective, smaller is better."""
        self._set_objective("min", expr)

    def maximize(self, expr: IntLike) -> None:
        """Make ``expr`` the objective, larger is better."""
        self._set_objective("max", expr)

    def _set_objective(self, sense: str, expr: IntLike) -> None:
        e = as_expr(expr, "objective")
        self._check_vars(e.variables(), "objective")
        self.objective = Objective(sense, e)

    # -- evaluation ---------------------------------------------------------------------------
    def check(self, assignment: Mapping[str, int]) -> list[str]:
        """Names of the constraints ``assignment`` violates (also values outside a domain, as 'domain:x')."""
        missing = [n for n in self._vars if n not in assignment]
        if missing:
            raise ValueError(f"assignment: no value for variables {missing}")
        bad = [f"domain:{n}" for n, v in self._vars.items() if assignment[n] not in v.domain]
        memo: dict = {}  # shared subexpressions evaluated once over all constraints
        return bad + [c.name for c in self._constraints.values() if not c.holds(assignment, memo)]

    def key(self, assignment: Mapping[str, int]) -> tuple[int, ...]:
        """Deterministic order of solutions: objective first (best first), then values by declaration."""
        values = tuple(assignment[n] for n in self._vars)
        return values if self.objective is None else (self.objective.key(assignment), *values)

    def _check_vars(self, names: tuple[str, ...], where: str) -> None:
        unknown = [n for n in names if n not in self._vars]
        if unknown:
            raise ValueError(f"{where}: uses variables {unknown} that model {self.name!r} does not declare")
