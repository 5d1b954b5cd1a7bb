"""CP-SAT backend: the model translated to OR-tools CP-SAT.

Translation:
- each variable becomes an IntVar over exactly its domain's values;
- a product of several factors becomes a chain of AddMultiplicationEquality on intermediate
  variables; ceil/floor division by a constant d becomes a quotient q with ``d*q <= e <= d*q+d-1``
  (exact for negative values too, unlike AddDivisionEquality, which truncates toward zero);
  Min/Max become AddMinEquality/AddMaxEquality. Intermediate bounds come from interval arithmetic,
  so they never cut a solution. All of these are total functions of the user's variables;
- each named constraint is enforced by its own literal (``literal => constraint``); sub-constraints
  of AnyOf/Implies are fully reified (``literal <=> part``), and every auxiliary variable is pinned
  when unused, so one assignment of the user's variables is exactly one CP-SAT solution and
  ``enumerate_all_solutions`` lists each assignment once.

``explain`` assumes every named constraint's literal, reads a core from
SufficientAssumptionsForInfeasibility and shrinks it with the deletion filter (re-solving under
fewer assumptions), so the result is irreducible.
"""

from __future__ import annotations

from collections.abc import Sequence

from ortools.sat.python import cp_model

from .conflicts import deletion_filter
from .constraints import AllOf, AnyOf, Compare, Constraint, Divides, Implies, Not, Truth
from .expr import CeilDiv, Const, Expr, FloorDiv, MaxOf, MinOf, Prod, Sum, Var, _mul_bounds
from .model import Model, NamedConstraint

__all__ = ["solutions", "top_k", "explain"]


class _Builder:
    """A CpModel for ``model`` restricted to ``constraints``, each behind a named literal."""

    def __init__(self, model: Model, constraints: Sequence[NamedConstraint]) -> None:
        self.cp = cp_model.CpModel()
        self.user = [
            self.cp.new_int_var_from_domain(cp_model.Domain.from_values(list(v.domain.values)), v.name)
            for v in model.variables
        ]
        self.names = [v.name for v in model.variables]
        self.by_name = dict(zip(self.names, self.user, strict=True))
        self.ranges = {v.name: (v.domain.lo, v.domain.hi) for v in model.variables}
        self.cache: dict[int, object] = {}  # id(expression node) -> its CP-SAT linear expression
        self.intervals: dict[int, tuple[int, int]] = {}  # id(expression node) -> its (lo, hi)
        self.literals: dict[str, cp_model.IntVar] = {}
        for nc in constraints:
            lit = self.cp.new_bool_var(f"enforce[{nc.name}]")
            self.literals[nc.name] = lit
            self.enforce(nc.constraint, lit)

    # -- expressions ----------------------------------------------------------------------------
    def iv(self, e: Expr) -> tuple[int, int]:
        """Interval of ``e``, bottom-up: each node's bounds from its children's (memoised), which is
        what ``e.bounds`` computes (interval arithmetic composes), without re-walking every subtree."""
        key = id(e)  # the model's expression nodes outlive the builder, so ids stay unique
        if key not in self.intervals:
            self.intervals[key] = self._node_iv(e)
        return self.intervals[key]

    def _node_iv(self, e: Expr) -> tuple[int, int]:
        if isinstance(e, Const):
            return e.value, e.value
        if isinstance(e, Var):
            return self.ranges[e.name]
        # the node over placeholder variables that span its children's intervals
        ranges: dict[str, tuple[int, int]] = {}

        def leaf(child):
            if not isinstance(child, Expr):
                return child  # a constant divisor
            name = f"_{len(ranges)}"
            ranges[name] = self.iv(child)
            return Var(name, None)  # bounds() reads only the name; the domain is never consulted

        if isinstance(e, Sum):
            shallow = Sum(tuple((c, leaf(t)) for c, t in e.terms), e.constant)
        elif isinstance(e, Prod):
            shallow = Prod(tuple(leaf(f) for f in e.factors))
        elif isinstance(e, (FloorDiv, CeilDiv)):
            shallow = type(e)(leaf(e.arg), leaf(e.d))
        elif isinstance(e, (MinOf, MaxOf)):
            shallow = type(e)(tuple(leaf(a) for a in e.args))
        else:
            return e.bounds(self.ranges)
        return shallow.bounds(ranges)

    def new_var(self, lo: int, hi: int, name: str = "aux") -> cp_model.IntVar:
        return self.cp.new_int_var(min(lo, 0), max(hi, 0), name)  # 0 inside: unused aux vars pin to 0

    def linear(self, e: Expr):
        """The CP-SAT linear expression (or int) equal to ``e``."""
        key = id(e)
        if key not in self.cache:
            self.cache[key] = self._translate(e)
        return self.cache[key]

    def as_var(self, e: Expr):
        lin = self.linear(e)
        if isinstance(lin, (int, cp_model.IntVar)):
            return lin
        target = self.new_var(*self.iv(e))
        self.cp.add(target == lin)
        return target

    def _translate(self, e: Expr):
        if isinstance(e, Const):
            return e.value
        if isinstance(e, Var):
            return self.by_name[e.name]
        if isinstance(e, Sum):
            return sum((c * self.linear(t) for c, t in e.terms), e.constant)
        if isinstance(e, Prod):
            acc, (lo, hi) = self.as_var(e.factors[0]), self.iv(e.factors[0])
            for f in e.factors[1:]:
                flo, fhi = self.iv(f)
                lo, hi = _mul_bounds(lo, hi, flo, fhi)
                target = self.new_var(lo, hi, "prod")
                self.cp.add_multiplication_equality(target, [acc, self.as_var(f)])
                acc = target
            return acc
        if isinstance(e, (FloorDiv, CeilDiv)):
            return self.division(e)
        if isinstance(e, (MinOf, MaxOf)):
            target = self.new_var(*self.iv(e), "extremum")
            args = [self.linear(a) for a in e.args]
            (self.cp.add_min_equality if isinstance(e, MinOf) else self.cp.add_max_equality)(target, args)
            return target
        raise TypeError(f"cpsat: no translation for expression node {type(e).__name__}")

    def division(self, e: FloorDiv | CeilDiv):
        """Quotient q of arg / d with ``d*q <= arg <= d*q + d - 1`` (floor) or the mirror (ceil)."""
        arg = self.linear(e.arg)
        lo, hi = self.iv(e)
        q = self.new_var(lo, hi, "quot")
        if isinstance(e.d, Expr):  # d >= 1 everywhere (checked when the node was built)
            d = self.as_var(e.d)
            dlo, dhi = self.iv(e.d)
            dq = self.new_var(*_mul_bounds(dlo, dhi, min(lo, 0), max(hi, 0)), "dq")
            self.cp.add_multiplication_equality(dq, [d, q])
        else:
            d, dq = e.d, e.d * q
        if isinstance(e, FloorDiv):
            self.cp.add(dq <= arg)
            self.cp.add(arg <= dq + d - 1)
        else:
            self.cp.add(arg <= dq)
            self.cp.add(dq <= arg + d - 1)
        return q

    # -- constraints ----------------------------------------------------------------------------
    def forbid(self, lit) -> None:
        self.cp.add_bool_or([lit.negated()])

    def reify(self, c: Constraint):
        """A literal equivalent to ``c``."""
        lit = self.cp.new_bool_var("part")
        self.enforce(c, lit)
        self.enforce(c.negated(), lit.negated())
        return lit

    def enforce(self, c: Constraint, lit) -> None:
        """Add ``lit => c``."""
        if isinstance(c, Truth):
            if not c.value:
                self.forbid(lit)
        elif isinstance(c, Compare):
            lhs, rhs = self.linear(c.lhs), self.linear(c.rhs)
            if isinstance(lhs, int) and isinstance(rhs, int):
                self.enforce(Truth(c.holds({})), lit)
                return
            rel = {
                "<=": lambda: lhs <= rhs,
                "<": lambda: lhs < rhs,
                ">=": lambda: lhs >= rhs,
                ">": lambda: lhs > rhs,
                "==": lambda: lhs == rhs,
                "!=": lambda: lhs != rhs,
            }[c.op]()
            self.cp.add(rel).only_enforce_if(lit)
        elif isinstance(c, Divides):
            self.divides(c, lit, negate=False)
        elif isinstance(c, Not):
            if isinstance(c.inner, Divides):
                self.divides(c.inner, lit, negate=True)
            else:
                self.enforce(c.inner.negated(), lit)
        elif isinstance(c, AllOf):
            for part in c.parts:
                self.enforce(part, lit)
        elif isinstance(c, AnyOf):
            self.cp.add_bool_or([self.reify(p) for p in c.parts]).only_enforce_if(lit)
        elif isinstance(c, Implies):
            self.enforce(AnyOf(c.cond.negated(), c.then), lit)
        else:
            raise TypeError(f"cpsat: no translation for constraint {type(c).__name__}")

    def divides(self, c: Divides, lit, negate: bool) -> None:
        """``lit => |a| divides b`` (or does not): b = |a|*q (+ r with 1 <= r < |a|)."""
        a, b = self.linear(c.a), self.linear(c.b)
        alo, ahi = self.iv(c.a)
        blo, bhi = self.iv(c.b)
        amax, bmax = max(abs(alo), abs(ahi)), max(abs(blo), abs(bhi))
        abs_a = self.new_var(0, amax, "abs")
        self.cp.add_abs_equality(abs_a, a)
        q = self.new_var(-bmax, bmax, "q")
        prod = self.new_var(-amax * bmax, amax * bmax, "aq")
        self.cp.add_multiplication_equality(prod, [abs_a, q])
        a_zero = self.cp.new_bool_var("a_is_0")
        self.cp.add(abs_a == 0).only_enforce_if(a_zero)
        self.cp.add(abs_a >= 1).only_enforce_if(a_zero.negated())
        if not negate:
            self.cp.add(b == prod).only_enforce_if(lit)
            self.cp.add(q == 0).only_enforce_if(lit.negated())
            self.cp.add(q == 0).only_enforce_if(a_zero)  # 0 divides only 0: q would be free
            return
        # Not divisible: either a == 0 and b != 0, or b = |a|*q + r with 1 <= r <= |a| - 1.
        zero_case = self.cp.new_bool_var("zero_case")
        rest_case = self.cp.new_bool_var("rest_case")
        r = self.new_var(0, amax, "r")
        self.cp.add_bool_or([zero_case, rest_case]).only_enforce_if(lit)
        self.cp.add_implication(zero_case, lit)
        self.cp.add_implication(rest_case, lit)
        self.cp.add(abs_a == 0).only_enforce_if(zero_case)
        self.cp.add(b != 0).only_enforce_if(zero_case)
        self.cp.add(b == prod + r).only_enforce_if(rest_case)
        self.cp.add(r >= 1).only_enforce_if(rest_case)
        self.cp.add(r <= abs_a - 1).only_enforce_if(rest_case)
        self.cp.add(q == 0).only_enforce_if(rest_case.negated())
        self.cp.add(r == 0).only_enforce_if(rest_case.negated())

    # -- solving --------------------------------------------------------------------------------
    def require_all(self) -> None:
        for lit in self.literals.values():
            self.cp.add(lit == 1)

    def values(self, solver) -> dict[str, int]:
        return {n: int(solver.value(v)) for n, v in zip(self.names, self.user, strict=True)}


def _solver() -> cp_model.CpSolver:
    solver = cp_model.CpSolver()
    # One worker: deterministic, needed for enumeration and cores, and the models are small.
    solver.parameters.num_workers = 1
    # Our models are a few divisor-domain variables under products and divisions: the LP
    # relaxation, probing and symmetry detection cost more than they prune. Turning them off made
    # the slowest benchmark enumeration (cuda-fused, 169 solutions) 1.4 s -> 0.08 s.
    solver.parameters.linearization_level = 0
    solver.parameters.cp_model_probing_level = 0
    solver.parameters.symmetry_level = 0
    return solver


def _check(status: int, builder: _Builder) -> bool:
    """True for a solution, False for proven infeasible; anything else is a bug worth raising."""
    if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return True
    if status == cp_model.INFEASIBLE:
        return False
    problem = builder.cp.validate() or "solver stopped without an answer"
    raise RuntimeError(f"cpsat: status {cp_model.CpSolver().status_name(status)}: {problem}")


class _Collector(cp_model.CpSolverSolutionCallback):
    def __init__(self, builder: _Builder, limit: int | None) -> None:
        super().__init__()
        self.builder, self.limit = builder, limit
        self.found: dict[tuple[int, ...], None] = {}

    def on_solution_callback(self) -> None:
        self.found[tuple(int(self.value(v)) for v in self.builder.user)] = None
        if self.limit is not None and len(self.found) >= self.limit:
            self.stop_search()


def _enumerate(builder: _Builder, limit: int | None) -> list[dict[str, int]]:
    solver = _solver()
    solver.parameters.enumerate_all_solutions = True
    # Every auxiliary variable is a function of the user's variables, so branching on those alone
    # (in declaration order, smallest value first) is a plain depth-first search that propagation
    # completes at each leaf; presolve only costs time when every solution must be kept.
    builder.cp.add_decision_strategy(builder.user, cp_model.CHOOSE_FIRST, cp_model.SELECT_MIN_VALUE)
    solver.parameters.search_branching = cp_model.FIXED_SEARCH
    solver.parameters.cp_model_presolve = False
    collector = _Collector(builder, limit)
    _check(solver.solve(builder.cp, collector), builder)
    return [dict(zip(builder.names, vals, strict=True)) for vals in collector.found]


def solutions(
    model: Model, constraints: Sequence[NamedConstraint] | None = None, limit: int | None = None
) -> list[dict[str, int]]:
    """Every assignment satisfying ``constraints`` (default: all of the model's), at most ``limit``."""
    builder = _Builder(model, model.constraints if constraints is None else constraints)
    builder.require_all()
    if limit == 1:
        solver = _solver()
        return [builder.values(solver)] if _check(solver.solve(builder.cp), builder) else []
    return _enumerate(builder, limit)


def top_k(model: Model, k: int) -> list[dict[str, int]]:
    """The ``k`` best solutions: optimise, list every solution at that value, step past it, repeat."""
    objective = model.objective
    if objective is None:
        return sorted(solutions(model), key=model.key)[:k]
    found: list[dict[str, int]] = []
    previous: int | None = None
    while len(found) < k:
        builder = _Builder(model, model.constraints)
        builder.require_all()
        obj = builder.linear(objective.expr)
        if previous is not None:  # strictly worse than the level already listed
            builder.cp.add(obj > previous if objective.sense == "min" else obj < previous)
        (builder.cp.minimize if objective.sense == "min" else builder.cp.maximize)(obj)
        solver = _solver()
        if not _check(solver.solve(builder.cp), builder):
            break
        previous = round(solver.objective_value)
        level = _Builder(model, model.constraints)
        level.require_all()
        level.cp.add(level.linear(objective.expr) == previous)
        found.extend(sorted(_enumerate(level, None), key=model.key))
    return found[:k]


def explain(model: Model) -> list[str]:
    """An irreducible conflicting set of constraint names; empty when the model is feasible."""
    builder = _Builder(model, model.constraints)

    last_core: list[int] = []  # literal indices of the last infeasible solve's core

    def feasible(subset: Sequence[NamedConstraint]) -> bool:
        builder.cp.clear_assumptions()
        builder.cp.add_assumptions([builder.literals[c.name] for c in subset])
        solver = _solver()
        ok = _check(solver.solve(builder.cp), builder)
        if not ok:
            last_core[:] = solver.sufficient_assumptions_for_infeasibility()
        return ok

    if feasible(model.constraints):
        return []
    in_core = set(last_core)
    core = [c for c in model.constraints if builder.literals[c.name].index in in_core]
    if not core or feasible(core):  # the core is a hint; fall back to every constraint if it is not one
        core = model.constraints
    return deletion_filter(core, feasible)
