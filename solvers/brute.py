"""Brute force: the Cartesian product of all domains, each point checked with ``holds``.

Exponential and slow on purpose: it shares no code with the other backends beyond the model's
plain-Python evaluator, so it is the referee their tests compare against.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from .conflicts import deletion_filter
from .model import Model, NamedConstraint

__all__ = ["solutions", "top_k", "explain"]


def solutions(
    model: Model, constraints: Sequence[NamedConstraint] | None = None, limit: int | None = None
) -> list[dict[str, int]]:
    """Every assignment satisfying ``constraints`` (default: all of the model's), at most ``limit``."""
    active = model.constraints if constraints is None else list(constraints)
    names = [v.name for v in model.variables]
    found: list[dict[str, int]] = []
    for values in itertools.product(*(v.domain.values for v in model.variables)):
        assignment = dict(zip(names, values, strict=True))
        if all(c.holds(assignment) for c in active):
            found.append(assignment)
            if limit is not None and len(found) >= limit:
                break
    return found


def top_k(model: Model, k: int) -> list[dict[str, int]]:
    """The ``k`` best solutions in ``model.key`` order."""
    return sorted(solutions(model), key=model.key)[:k]


def explain(model: Model) -> list[str]:
    """An irreducible conflicting set of constraint names; empty when the model is feasible."""
    if solutions(model, limit=1):
        return []
    return deletion_filter(model.constraints, lambda subset: bool(solutions(model, subset, limit=1)))
