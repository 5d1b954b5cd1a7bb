"""Shrinking an infeasible set of named constraints to an irreducible one (a deletion filter).

Every backend explains an empty model the same way: start from a set of constraints known to
conflict (all of them, or a smaller core a backend found) and drop each member whose removal
leaves the rest still infeasible. What remains is minimal: dropping any one member makes it
feasible. Domains always stay in force; they are part of each variable, not named constraints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .model import NamedConstraint

__all__ = ["deletion_filter"]

Feasible = Callable[[Sequence[NamedConstraint]], bool]


def deletion_filter(candidates: Sequence[NamedConstraint], feasible: Feasible) -> list[str]:
    """Names of an irreducible infeasible subset of ``candidates`` (which must be infeasible)."""
    kept = list(candidates)
    i = 0
    while i < len(kept):
        rest = kept[:i] + kept[i + 1 :]
        if feasible(rest):
            i += 1  # kept[i] is needed for the conflict
        else:
            kept = rest  # still infeasible without it: drop it for good
    return [c.name for c in kept]
