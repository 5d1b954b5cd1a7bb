"""The tuner's previous pipeline (as of commit 7b2808d), kept as the reference of the current one.

``tune_previous`` takes ``tunekit.tuning.tune``'s arguments and returns the same TuneResult by the
path tune took before it was vectorised: every solution as a dict (the vector solver's recursive,
value-checked evaluator over the Cartesian product, or a CSP solver), resources by the checked
evaluator, one ``cost.estimate`` call per feasible configuration, and the candidates' predicted
values re-derived point by point (resource closures, estimate). Model building, verification
(``holds``) and binding constraints are shared with tune.

``tunekit bench solvers`` times both side by side in one run (the machine is shared and noisy),
and tests check that both return the same feasible counts, candidates, predictions and choice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from tunekit.constraints import build_space
from tunekit.cost import estimate
from tunekit.hardware import GPUProfile, load_profile
from tunekit.problem import Problem
from tunekit.solvers import Model, enumerate_all
from tunekit.solvers.vector import VECTOR_MAX_POINTS, vector_solutions
from tunekit.tuning import (
    Candidate,
    NoFeasibleConfig,
    TuneResult,
    _check_problem,
    _verify,
    binding_constraints,
    check_backend,
    check_solver,
)

__all__ = ["tune_previous"]


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


def tune_previous(
    problem: Problem,
    gpu: str | GPUProfile,
    backend: str = "auto",
    top: int = 5,
    solver: str = "auto",
) -> TuneResult:
    """``tunekit.tuning.tune`` by the previous, point-by-point path (same arguments, same result)."""
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
                MappingProxyType(_predicted(space, assignment)),
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
