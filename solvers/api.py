"""One contract over every backend: ``solve``, ``top_k``, ``enumerate_all``, ``explain``.

Backends are modules with ``solutions(model, constraints, limit)``, ``top_k(model, k)`` and
``explain(model)``; this module picks one by name, checks arguments and puts results in a
deterministic order (``Model.key``: objective best first, then values in declaration order), so
every backend returns the same lists.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .model import Model

__all__ = ["BACKENDS", "solve", "top_k", "enumerate_all", "explain"]

BACKENDS = ("native", "cpsat", "vector", "brute")


def _backend(name: object) -> ModuleType:
    if name not in BACKENDS:
        raise ValueError(f"backend: expected one of {list(BACKENDS)}, got {name!r}")
    # Imported on first use so that `import tunekit.solvers` does not load OR-tools.
    return importlib.import_module(f"{__package__}.{name}")


def _check_model(model: object) -> Model:
    if not isinstance(model, Model):
        raise ValueError(f"model: expected a tunekit.solvers.Model, got {type(model).__name__}")
    return model


def enumerate_all(model: Model, backend: str = "native") -> list[dict[str, int]]:
    """Every solution, sorted by values in declaration order (the objective is ignored)."""
    _check_model(model)
    order = [v.name for v in model.variables]
    found = _backend(backend).solutions(model, model.constraints, None)
    return sorted(found, key=lambda s: tuple(s[n] for n in order))


def top_k(model: Model, k: int, backend: str = "native") -> list[dict[str, int]]:
    """The ``k`` best solutions by objective (ties: smaller values in declaration order first).

    Without an objective: the first ``k`` of ``enumerate_all``.
    """
    _check_model(model)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k: expected a positive int, got {k!r}")
    if model.objective is None:
        return enumerate_all(model, backend)[:k]
    return sorted(_backend(backend).top_k(model, k), key=model.key)[:k]


def solve(model: Model, backend: str = "native") -> dict[str, int] | None:
    """The optimum (with an objective; the first in ``top_k`` order) or any solution; None if none."""
    _check_model(model)
    if model.objective is not None:
        best = top_k(model, 1, backend)
        return best[0] if best else None
    found = _backend(backend).solutions(model, model.constraints, 1)
    return found[0] if found else None


def explain(model: Model, backend: str = "native") -> list[str]:
    """Names of a small set of constraints that conflict on their own; empty when feasible.

    For every backend the set is irreducible: dropping any one name makes the rest feasible.
    """
    _check_model(model)
    return _backend(backend).explain(model)
