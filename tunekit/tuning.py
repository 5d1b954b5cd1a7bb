"""Tuning: from a Problem and a GPU to the fastest predicted kernel configuration, offline.

For each kernel family in question, :func:`tune` builds the family's constraint model
(``tunekit.constraints.build_space``), enumerates every feasible configuration (by default with
the "vector" solver, numpy over the whole space, or another CSP backend), ranks them with the
analytic cost model (``tunekit.cost.estimate``) and re-checks every configuration it returns with
the solver IR's plain-Python evaluation of each named constraint (a configuration that fails that
check is a solver bug and raises). ``backend="auto"`` takes the fastest predicted family that has
any feasible configuration. When no family in question has one, :class:`NoFeasibleConfig` carries
the spaces and, when read, the explanation (:mod:`tunekit.explain`): the conflicting constraints
with numbers and the nearest shapes that work.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from tunekit.constraints import FAMILIES, build_space
from tunekit.cost import estimate
from tunekit.hardware import GPUProfile, load_profile
from tunekit.problem import KernelConfig, Problem
from tunekit.solvers import Model, enumerate_all
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
    rows = []
    for name, used, limit, unit in space.limits(assignment):
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
    broken = [nc.name for nc in model.constraints if not nc.holds(assignment)]
    if outside or broken:
        raise RuntimeError(
            f"solver {solver!r} returned {dict(assignment)} for {space.family} that violates "
            f"{broken + [f'domain of {n}' for n in outside]}: this is a solver bug, please report it"
        )


def _predicted(space: Any, assignment: Mapping[str, int]) -> dict[str, float]:
    cost = estimate(space, assignment)
    predicted: dict[str, float] = dict(space.resources(assignment))
    predicted.update((k, v) for k, v in cost.terms().items() if k != "total_us_per_step")
    predicted["time_us_per_step"] = cost.total_us_per_step
    return predicted


def _solutions(model: Model, solver: str) -> tuple[list[dict[str, int]], str]:
    """Every solution and the solver that found them ("auto": vector where it applies, else native)."""
    if solver in ("auto", "vector"):
        found = vector_solutions(model)
        if found is not None:
            return found, "vector"
        if solver == "vector":
            raise ValueError(
                f"solver: 'vector' cannot take model {model.name!r} (more than {VECTOR_MAX_POINTS:,} points "
                "or an expression it does not support); use 'native' or 'cpsat'"
            )
        solver = "native"
    return enumerate_all(model, backend=solver), solver


def _time_us(space: Any, assignment: Mapping[str, int], resources: Mapping[str, int]) -> float:
    """Predicted µs per step; a cost model that fails on a point scores it infinitely slow (STYLE §7):
    the point is then either never returned or caught as infeasible by ``_verify``."""
    try:
        return estimate(space, assignment, resources).total_us_per_step
    except (ArithmeticError, ValueError):
        return math.inf


def _rank_family(
    space: Any, solver: str, top: int
) -> tuple[int, list[tuple[float, int, dict[str, int]]], str]:
    """(feasible count, the ``top`` best as (time, solver order, assignment), the solver used)."""
    solutions, used = _solutions(space.model, solver)
    resources = space.resources_of_all(solutions)
    timed = [(_time_us(space, a, r), i, a) for i, (a, r) in enumerate(zip(solutions, resources, strict=True))]
    timed.sort(key=lambda item: item[:2])  # ties: the solvers' deterministic order
    return len(solutions), timed[:top], used


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
    used: dict[str, str] = {}
    ranked: list[tuple[float, int, int, dict[str, int]]] = []
    spaces: dict[str, Any] = {}
    for f_index, family in enumerate(families):
        space = spaces[family] = build_space(family, problem, profile)
        counts[family], best, used[family] = _rank_family(space, solver, top)
        ranked += [(t, f_index, i, a) for t, i, a in best]
    counts["total"] = sum(counts.values())
    if not ranked:
        raise NoFeasibleConfig(problem, profile, [spaces[f] for f in families])

    ranked.sort(key=lambda item: item[:3])
    candidates = []
    for _, f_index, _, assignment in ranked[:top]:
        space = spaces[families[f_index]]
        _verify(space, assignment, used[space.family])
        candidates.append(
            Candidate(
                space.config(assignment),
                MappingProxyType(_predicted(space, assignment)),  # read-only: the result is a value
                binding_constraints(space, assignment),
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
        solver="+".join(dict.fromkeys(used.values())),
        solve_seconds=time.perf_counter() - start,
    )
