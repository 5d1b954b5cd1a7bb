"""Constraint models of the kernel families (triton-fused, cuda-alternating, cuda-fused).

``build_space(family, problem, gpu)`` returns a :class:`Space`: the solver model (every
constraint named, with the hardware fact behind it), the names of its tunables, and the resource
formulas, so that any assignment the solver returns can be turned into a ``KernelConfig``, its
resources (threads, grid, registers, shared memory, padding) and its limits (used vs. allowed).
Each family's model is one ``build_model(problem, gpu) -> Space`` in its own module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunekit.constraints.occupancy import IntLike, Limit, evaluate
from tunekit.problem import FAMILIES, KernelConfig, Problem
from tunekit.solvers import Expr, Model, enumerate_all
from tunekit.solvers.numeric import Evaluator
from tunekit.solvers.vector import expression_values

__all__ = ["FAMILIES", "Space", "build_space"]

_MODULES = {
    "triton-fused": "triton_fused",
    "cuda-alternating": "cuda_alternating",
    "cuda-fused": "cuda_fused",
}

# Resources every family reports (the tuner's "predicted" block reads them).
REQUIRED_RESOURCES = ("threads_per_block", "blocks", "registers_per_thread", "shared_memory_bytes_per_block")


@dataclass(frozen=True, eq=False)
class Space:
    """One family's configuration space for a problem on a GPU."""

    family: str
    problem: Problem
    gpu: Any  # tunekit.hardware.GPUProfile
    model: Model
    tunables: tuple[str, ...]  # the variables that form a KernelConfig, in the model's order
    resource_formulas: Mapping[str, IntLike] = field(default_factory=dict, repr=False)
    limit_items: tuple[Limit, ...] = field(default=(), repr=False)
    _formula_fns: dict | None = field(default=None, init=False, repr=False)
    _evaluator: Evaluator | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        missing = [r for r in REQUIRED_RESOURCES if r not in self.resource_formulas]
        if missing:
            raise ValueError(
                f"resource_formulas: missing {missing}; every family reports {REQUIRED_RESOURCES}"
            )
        declared = [v.name for v in self.model.variables]
        if [n for n in declared if n in self.tunables] != list(self.tunables):
            raise ValueError(f"tunables: got {self.tunables}, expected model variables in order {declared}")

    def _values(self, assignment: Mapping[str, int] | KernelConfig) -> Mapping[str, int]:
        values = assignment.params if isinstance(assignment, KernelConfig) else assignment
        missing = [n for n in self.tunables if n not in values]
        if missing:
            raise ValueError(f"assignment: no value for {missing}; expected every tunable of {self.tunables}")
        return values

    def config(self, assignment: Mapping[str, int]) -> KernelConfig:
        """The KernelConfig of a solver assignment (auxiliary variables are dropped)."""
        values = self._values(assignment)
        items = tuple((n, int(values[n])) for n in self.tunables)
        return KernelConfig(self.family, self.problem, self.gpu.name, items)

    def resources(self, assignment: Mapping[str, int] | KernelConfig) -> dict[str, int]:
        """Threads per block, grid size, registers, shared memory, padding... at ``assignment``."""
        values = self._values(assignment)
        point = [values[n] for n in self.tunables]
        return {name: fn(point) for name, fn in self._compiled().items()}

    def resources_of_all(self, assignments: Sequence[Mapping[str, int]]) -> list[dict[str, int]]:
        """``resources`` of every assignment, the formulas evaluated once over all of them (numpy,
        shared subexpressions once): the tuner prices every feasible configuration."""
        if not assignments:
            return []
        env = {n: np.array([self._values(a)[n] for a in assignments], dtype=np.int64) for n in self.tunables}
        columns = expression_values(self.resource_formulas, env)
        if columns is None:  # beyond the vector evaluator (int64 range): one point at a time
            return [self.resources(a) for a in assignments]
        names = list(columns)
        return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]

    def evaluator(self) -> Evaluator:
        """The numpy evaluator of this space's model, resource formulas and limits
        (:mod:`tunekit.solvers.numeric`), kept so that each node's range is checked once."""
        if self._evaluator is None:
            object.__setattr__(self, "_evaluator", Evaluator())
        return self._evaluator

    def reported(self) -> dict[tuple[str, str], IntLike]:
        """What the tuner reports at a configuration, as items for ``Evaluator.values``: each
        resource formula under ``("resource", name)``, each limit's two sides under ``("used",
        name)`` and ``("limit", name)``."""
        items: dict[tuple[str, str], IntLike] = {}
        for name, formula in self.resource_formulas.items():
            items["resource", name] = formula
        for c in self.limit_items:
            items["used", c.name], items["limit", c.name] = c.used, c.limit
        return items

    def _compiled(self) -> dict[str, Any]:
        """Resource formulas compiled once into closures over the tunables' values (the solver's
        own fast evaluator); the tuner calls ``resources`` for every feasible configuration."""
        if self._formula_fns is None:
            index = {n: i for i, n in enumerate(self.tunables)}
            fns = {
                name: (f._value_fn(index) if isinstance(f, Expr) else (lambda point, v=int(f): v))
                for name, f in self.resource_formulas.items()
            }
            object.__setattr__(self, "_formula_fns", fns)
        return self._formula_fns

    def limits(self, assignment: Mapping[str, int] | KernelConfig) -> list[tuple[str, int, int, str]]:
        """(constraint name, used, limit, unit) of every resource constraint at ``assignment``."""
        values = self._values(assignment)
        memo: dict = {}  # the limits share most of their subexpressions: each evaluated once
        return [
            (c.name, evaluate(c.used, values, memo), evaluate(c.limit, values, memo), c.unit)
            for c in self.limit_items
        ]

    def violated(self, assignment: Mapping[str, int] | KernelConfig) -> list[str]:
        """Names of the model's constraints that ``assignment`` breaks (empty when feasible)."""
        return self.model.check(self._values(assignment))

    def enumerate(self, backend: str = "native") -> list[dict[str, int]]:
        """Every feasible assignment (tunables in declaration order)."""
        return enumerate_all(self.model, backend)


def build_space(family: str, problem: Problem, gpu: Any) -> Space:
    """The constraint model of ``family`` for ``problem`` on ``gpu`` (a GPUProfile or a profile name)."""
    if family not in _MODULES:
        raise ValueError(f"family: got {family!r}, expected one of {list(FAMILIES)}")
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: got {type(problem).__name__}, expected a tunekit.problem.Problem")
    if isinstance(gpu, str):
        from tunekit.hardware import load_profile

        gpu = load_profile(gpu)
    if not hasattr(gpu, "sm_count") or not hasattr(gpu, "shared_memory_per_block_optin"):
        raise ValueError(f"gpu: got {type(gpu).__name__}, expected a tunekit.hardware.GPUProfile")
    module = importlib.import_module(f"{__name__}.{_MODULES[family]}")
    return module.build_model(problem, gpu)
