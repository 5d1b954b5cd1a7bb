"""Tuning: from a Problem and a GPU to the fastest predicted kernel configuration, offline.

For each kernel family in question, :func:`tune` builds the family's constraint model
(``tunekit.constraints.build_space``), enumerates every feasible configuration (by default with
numpy over the whole space, :func:`tunekit.solvers.numeric.feasible_columns`, which also gives
each configuration's resources and limits; or with another CSP backend), prices them all at once
with the analytic cost model (``tunekit.cost.estimate_all``, the same numbers as ``estimate``),
and re-checks every configuration it returns with the solver IR's plain-Python evaluation of each
named constraint (a configuration that fails that check is a solver bug and raises). Nothing is
cached between calls. ``backend="auto"`` takes the fastest predicted family that has
any feasible configuration. When no family in question has one, :class:`NoFeasibleConfig` carries
the spaces and, when read, the explanation (:mod:`tunekit.explain`): the conflicting constraints
with numbers and the nearest shapes that work.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from tunekit.constraints import FAMILIES, build_space
from tunekit.cost import estimate, estimate_all
from tunekit.hardware import GPUProfile, load_profile
from tunekit.problem import KernelConfig, Problem
from tunekit.solvers import Model, enumerate_all
from tunekit.solvers.numeric import Feasible, Inexact, feasible_columns
from tunekit.solvers.vector import VECTOR_MAX_POINTS, vector_solutions

__all__ = [
    "BACKENDS",
    "BINDING_RATIO",
    "SOLVERS",
    "Candidate",
    "NoFeasibleConfig",
    "TuneResult",
    "binding_constraints",
    "check_backend",
    "check_solver",
    "tune",
]

BACKENDS: tuple[str, ...] = ("auto", *FAMILIES)
# "vector": every named constraint evaluated with numpy over the whole Cartesian product of the
# domains (exact, the same set as the solvers; spaces up to VECTOR_MAX_POINTS). "auto": "vector"
# where the space is that small, else "native".
SOLVERS: tuple[str, ...] = ("auto", "native", "cpsat", "vector", "brute")
# A constraint whose used/limit reaches this share is reported as binding: the configuration sits
# at the edge of that resource, and a slightly larger shape would need another configuration.
BINDING_RATIO = 0.95


class NoFeasibleConfig(ValueError):
    """No family in question has a feasible configuration; ``explanations`` says why, per family.

    The explanations (conflicting constraints with numbers, nearest feasible shapes: a few dozen
    solver calls) are computed when first read, so a caller that only needs "nothing fits" does not
    pay for them.
    """

    def __init__(self, problem: Problem, gpu: GPUProfile, spaces: Sequence[Any]) -> None:
        self.problem = problem
        self.gpu = gpu
        self.spaces = tuple(spaces)
        tried = ", ".join(space.family for space in self.spaces)
        super().__init__(
            f"no feasible configuration for {_describe(problem)} on {gpu.name} (tried {tried}); "
            "`tunekit explain` (or this error's .explanations) says why and what fits nearby"
        )

    @functools.cached_property
    def explanations(self) -> tuple[Any, ...]:
        """One :class:`tunekit.explain.Explanation` per family tried."""
        from tunekit.explain import explain_space

        return tuple(explain_space(space) for space in self.spaces)

    def to_text(self) -> str:
        """Every family's explanation, for people."""
        return "\n\n".join(e.to_text() for e in self.explanations)

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready: the error, the problem and each family's explanation."""
        return {
            "error": "no feasible configuration",
            "gpu": self.gpu.name,
            "cell": self.problem.cell,
            "problem": _problem_dict(self.problem),
            "explanations": [e.to_json_dict() for e in self.explanations],
        }


@dataclass(frozen=True)
class Candidate:
    """One ranked configuration: resources and cost terms as predicted, and its binding constraints."""

    config: KernelConfig
    predicted: Mapping[str, float]  # resources, cost terms (µs) and time_us_per_step
    binding_constraints: tuple[str, ...]

    @property
    def backend(self) -> str:
        """The kernel family of this configuration."""
        return self.config.family

    @property
    def time_us_per_step(self) -> float:
        """Predicted time of one recurrent step in microseconds."""
        return float(self.predicted["time_us_per_step"])

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready: backend, canonical name, tunables, predicted values, binding constraints."""
        return {
            "backend": self.backend,
            "name": self.config.name,
            "config": self.config.params,
            "predicted": dict(self.predicted),
            "binding_constraints": list(self.binding_constraints),
        }


@dataclass(frozen=True)
class TuneResult:
    """The chosen configuration, the ranked candidates and how many configurations were feasible."""

    problem: Problem
    gpu: GPUProfile
    backend: str  # the family chosen
    config: KernelConfig
    predicted: Mapping[str, float]
    binding_constraints: tuple[str, ...]
    candidates: tuple[Candidate, ...]  # the top-k, best first; candidates[0] is the chosen one
    feasible_count: Mapping[str, int]  # per family in question, and "total"
    solver: str  # the solver(s) used, e.g. "vector" or "vector+native"
    solve_seconds: float

    def to_json_dict(self) -> dict[str, Any]:
        """DESIGN §1's JSON object (plus the canonical name and the per-family feasible counts)."""
        return {
            "gpu": self.gpu.name,
            "cell": self.problem.cell,
            "backend": self.backend,
            "problem": _problem_dict(self.problem),
            "config": self.config.params,
            "config_name": self.config.name,
            "predicted": dict(self.predicted),
            "binding_constraints": list(self.binding_constraints),
            "candidates": [c.to_json_dict() for c in self.candidates],
            "feasible_count": self.feasible_count["total"],
            "feasible_count_by_backend": {k: v for k, v in self.feasible_count.items() if k != "total"},
            "solver": self.solver,
            "solve_seconds": self.solve_seconds,
        }


def _problem_dict(problem: Problem) -> dict[str, Any]:
    return {
        "batch": problem.batch,
        "heads": problem.heads,
        "head_dim": problem.head_dim,
        "dtype": problem.dtype,
        "direction": problem.direction,
    }


def _describe(problem: Problem) -> str:
    return (
        f"{problem.cell} D={problem.head_dim} heads={problem.heads} batch={problem.batch} "
        f"{problem.dtype} {problem.direction}"
    )


def check_backend(backend: object) -> tuple[str, ...]:
    """The families ``backend`` stands for ("auto": all of them); ValueError on anything else."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: got {backend!r}, expected one of {list(BACKENDS)}")
    return tuple(FAMILIES) if backend == "auto" else (str(backend),)


def check_solver(solver: object) -> str:
    """``solver`` if it names a solver backend; ValueError otherwise."""
    if solver not in SOLVERS:
        raise ValueError(f"solver: got {solver!r}, expected one of {list(SOLVERS)}")
    return str(solver)


def _check_problem(problem: object) -> Problem:
    if not isinstance(problem, Problem):
        raise ValueError(
            f"problem: got {type(problem).__name__}, expected a tunekit.problem.Problem "
            "(e.g. Problem('lstm', batch=16, heads=1, head_dim=768))"
        )
    return problem


def binding_constraints(space: Any, assignment: Mapping[str, int]) -> tuple[str, ...]:
    """Limits at or above BINDING_RATIO of their capacity, fullest first, as readable strings."""
    return _binding_lines(space.limits(assignment))


def _binding_lines(limits: Iterable[tuple[str, int, int, str]]) -> tuple[str, ...]:
    rows = []
    for name, used, limit, unit in limits:
        if limit > 0 and used / limit >= BINDING_RATIO:
            rows.append((-used / limit, name, used, limit, unit))
    rows.sort()
    return tuple(
        f"{name}: {used:,} / {limit:,} {unit} ({-ratio:.0%})" for ratio, name, used, limit, unit in rows
    )


def _verify(space: Any, assignment: Mapping[str, int], solver: str) -> None:
    """Re-check a solver's answer with the IR's plain-Python evaluation; a failure is a solver bug."""
    model = space.model
    outside = [v.name for v in model.variables if assignment.get(v.name) not in v.domain]
    memo: dict = {}  # shared subexpressions evaluated once, by the IR's own plain-Python evaluator
    broken = [nc.name for nc in model.constraints if not nc.holds(assignment, memo)]
    if outside or broken:
        raise RuntimeError(
            f"solver {solver!r} returned {dict(assignment)} for {space.family} that violates "
            f"{broken + [f'domain of {n}' for n in outside]}: this is a solver bug, please report it"
        )


def _solutions(model: Model, solver: str, space: Any) -> tuple[Feasible, str]:
    """Every solution (columns in ``enumerate_all``'s order) with ``space.reported()``'s values
    there where numpy can compute them exactly, and the solver that found them ("auto": vector
    where it applies, else native)."""
    if solver in ("auto", "vector"):
        # numpy over the grid, then over its survivors, with the reported values
        found = feasible_columns(model, evaluator=space.evaluator(), extra=space.reported())
        if found is not None:
            return found, "vector"
        checked = vector_solutions(model)  # values checked one by one where the static bound fails
        if checked is not None:
            return _feasible(space, checked), "vector"
        if solver == "vector":
            raise ValueError(
                f"solver: 'vector' cannot take model {model.name!r} (more than {VECTOR_MAX_POINTS:,} points "
                "or an expression it does not support); use 'native' or 'cpsat'"
            )
        solver = "native"
    return _feasible(space, enumerate_all(model, backend=solver)), solver


def _feasible(space: Any, solutions: Sequence[Mapping[str, int]]) -> Feasible:
    """A solver's solutions as columns, with the reported values (empty where numpy cannot
    compute them exactly: then they are computed point by point)."""
    names = [v.name for v in space.model.variables]
    columns = {n: np.array([s[n] for s in solutions], dtype=np.int64) for n in names}
    try:
        values = space.evaluator().values(columns, space.reported()) if solutions else {}
    except Inexact:
        values = {}
    return Feasible(columns, len(solutions), values)


def _time_us(space: Any, assignment: Mapping[str, int], resources: Mapping[str, int]) -> float:
    """Predicted µs per step; a cost model that fails on a point scores it infinitely slow (STYLE §7):
    the point is then either never returned or caught as infeasible by ``_verify``."""
    try:
        return estimate(space, assignment, resources).total_us_per_step
    except (ArithmeticError, ValueError):
        return math.inf


def _entry(values: Any, i: int) -> int:
    """Entry i of a column (array or list), or the constant itself."""
    return int(values[i]) if isinstance(values, (np.ndarray, list)) else int(values)


@dataclass(frozen=True, eq=False)
class _Priced:
    """One family's feasible configurations, priced: the tuner's working data, not a result."""

    space: Any
    solver: str
    found: Feasible  # columns of the feasible points, and the space's reported values there
    resources: Mapping[str, Any]  # each resource at every point (a column, or a constant)
    costs: Mapping[str, list[float]] | None  # estimate_all's terms per point; None: priced one by one
    times: list[float]  # µs per step at every point

    @property
    def count(self) -> int:
        return self.found.count

    def assignment(self, i: int) -> dict[str, int]:
        return {name: int(column[i]) for name, column in self.found.columns.items()}

    def resources_of(self, i: int) -> dict[str, int]:
        return {name: _entry(values, i) for name, values in self.resources.items()}

    def predicted(self, i: int) -> dict[str, float]:
        """Resources, cost terms and time_us_per_step of point i, as ``estimate`` gives them."""
        predicted: dict[str, float] = dict(self.resources_of(i))
        if self.costs is None:
            terms = estimate(self.space, self.assignment(i), self.resources_of(i)).terms()
        else:
            terms = {name: values[i] for name, values in self.costs.items()}
        predicted.update((k, v) for k, v in terms.items() if k != "total_us_per_step")
        predicted["time_us_per_step"] = terms["total_us_per_step"]
        return predicted

    def binding(self, i: int) -> tuple[str, ...]:
        """The binding constraints of point i, as ``binding_constraints`` gives them."""
        values = self.found.values
        if not values:
            return binding_constraints(self.space, self.assignment(i))
        return _binding_lines(
            (c.name, _entry(values["used", c.name], i), _entry(values["limit", c.name], i), c.unit)
            for c in self.space.limit_items
        )


def _price(space: Any, solver: str) -> _Priced:
    """Enumerate ``space`` and price every feasible configuration (cost.estimate_all over all of
    them; one at a time where that raises or meets a NaN, so each point scores as estimate scores it)."""
    found, used = _solutions(space.model, solver, space)
    count = found.count
    if count == 0:
        return _Priced(space, used, found, {}, None, [])
    if found.values:
        resources = {name: found.values["resource", name] for name in space.resource_formulas}
    else:  # beyond numpy's exact range: each value checked, or one point at a time
        points = [{n: int(c[i]) for n, c in found.columns.items()} for i in range(count)]
        rows = space.resources_of_all(points)
        resources = {name: [r[name] for r in rows] for name in space.resource_formulas}
    priced = _Priced(space, used, found, resources, None, [])
    try:
        costs = estimate_all(space, {n: found.columns[n] for n in space.tunables}, resources)
        if any(t != t for t in costs["total_us_per_step"]):  # NaN: arrays' min/max order it otherwise
            raise ValueError("a cost term is not a number")
        return _Priced(space, used, found, resources, costs, costs["total_us_per_step"])
    except (ArithmeticError, ValueError):
        times = [_time_us(space, priced.assignment(i), priced.resources_of(i)) for i in range(count)]
        return _Priced(space, used, found, resources, None, times)


def tune(
    problem: Problem,
    gpu: str | GPUProfile,
    backend: str = "auto",
    top: int = 5,
    solver: str = "auto",
) -> TuneResult:
    """Rank the feasible configurations of ``problem`` on ``gpu`` and return the fastest predicted.

    ``gpu``: a profile name or alias ("a100") or a GPUProfile. ``backend``: "auto" (every family;
    the fastest predicted feasible one wins) or one of FAMILIES. ``top``: how many candidates to
    return. ``solver``: "auto" (default: "vector" where a family's space has at most
    VECTOR_MAX_POINTS points, else "native"), "native", "cpsat", "vector" or "brute" (small models
    only); ``TuneResult.solver`` names the ones used, e.g. "vector". Raises NoFeasibleConfig
    (a ValueError) when no family in question has a feasible configuration.
    """
    start = time.perf_counter()
    problem = _check_problem(problem)
    profile = load_profile(gpu)
    families = check_backend(backend)
    solver = check_solver(solver)
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top: got {top!r}, expected a positive int")

    counts: dict[str, int] = {}
    priced: list[_Priced] = []
    ranked: list[tuple[float, int, int]] = []  # (µs per step, family index, solver order)
    for f_index, family in enumerate(families):
        family_priced = _price(build_space(family, problem, profile), solver)
        priced.append(family_priced)
        counts[family] = family_priced.count
        times = family_priced.times
        # the ``top`` fastest of the family; ties: the solvers' deterministic order (a stable sort)
        ranked += [(times[i], f_index, i) for i in sorted(range(len(times)), key=times.__getitem__)[:top]]
    counts["total"] = sum(counts.values())
    if not ranked:
        raise NoFeasibleConfig(problem, profile, [p.space for p in priced])

    ranked.sort()
    candidates = []
    for _, f_index, i in ranked[:top]:
        family_priced = priced[f_index]
        space, assignment = family_priced.space, family_priced.assignment(i)
        _verify(space, assignment, family_priced.solver)
        candidates.append(
            Candidate(
                space.config(assignment),
                MappingProxyType(family_priced.predicted(i)),  # read-only: the result is a value
                family_priced.binding(i),
            )
        )
    best = candidates[0]
    return TuneResult(
        problem=problem,
        gpu=profile,
        backend=best.backend,
        config=best.config,
        predicted=best.predicted,
        binding_constraints=best.binding_constraints,
        candidates=tuple(candidates),
        feasible_count=MappingProxyType(counts),
        solver="+".join(dict.fromkeys(p.solver for p in priced)),
        solve_seconds=time.perf_counter() - start,
    )
