"""Native backend: domain propagation, then depth-first enumeration with early checks, in pure Python.

1. Propagation at the root: constraints on one variable filter its domain exactly; ``Divides``
   between two plain variables keeps only divisors that divide something and multiples that are
   divided by something; then bounds consistency: a domain's smallest or largest value is dropped
   while some constraint cannot hold with that value fixed and the other variables anywhere in
   their ranges (interval arithmetic over the expression trees), until nothing changes.
2. Search: variables ordered by smallest domain (ties: most constraints shared with the variables
   already ordered). At each depth, every constraint whose variables are all assigned is checked
   exactly, and every constraint still partly open is checked with intervals, so a subtree that
   cannot satisfy it is never entered. With an objective, ``top_k`` also prunes subtrees whose
   best possible objective is worse than the k-th solution found so far (branch and bound).

3. Vectorized leaves: instead of visiting the last variables one point at a time, the search
   stops at the depth where the remaining variables' box has at most ``_INNER_POINTS`` points
   (every depth when the whole narrowed box is that small), collects the surviving assignments of
   the outer variables, and evaluates every constraint (and the objective) with numpy over
   (those assignments x the inner box) in chunks (:mod:`.vector`, exact, int64-guarded). On the
   kernel-family models bounds prune little and a Python visit costs ~40 µs a point, so this is
   where the time goes. Where numpy cannot evaluate something exactly, the plain search of 2.
   answers instead.

The expression trees compile once into closures over two lists (lower and upper bounds; an
assigned variable has both equal to its value), which keeps the inner loop free of tree walks.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from . import vector
from .conflicts import deletion_filter
from .constraints import Divides
from .expr import Var
from .model import Model, NamedConstraint

__all__ = ["solutions", "top_k", "explain"]

# Propagation passes at the root; each pass that changes nothing ends it earlier. Bounds
# consistency on these small models settles in 2-4 passes; the cap only bounds pathological chains.
_MAX_PASSES = 50
# Vectorized leaves: the inner box (the last variables of the search order) has at most this many
# points, and numpy evaluates at most VECTOR_MAX_POINTS points at once (8 MB per int64 column).
_INNER_POINTS = 1 << 16


@dataclass
class _Entry:
    """One named constraint compiled against the model's variable index."""

    named: NamedConstraint
    vars: tuple[int, ...]
    holds: object  # (vals) -> bool, exact at a full assignment of ``vars``
    may: object  # (lo, hi) -> bool, False only if no assignment within the bounds satisfies it


def _compile(model: Model, constraints: Sequence[NamedConstraint]) -> list[_Entry]:
    index = {v.name: i for i, v in enumerate(model.variables)}
    out = []
    for nc in constraints:
        c = nc.constraint
        out.append(_Entry(nc, tuple(index[n] for n in c.variables()), c._holds_fn(index), c._may_fn(index)))
    return out


def _propagate(model: Model, entries: list[_Entry]) -> list[list[int]] | None:
    """Filtered domains (ascending lists), or None when some domain becomes empty."""
    doms = [list(v.domain.values) for v in model.variables]
    vals = [d[0] for d in doms]
    multi = []
    for e in entries:
        if len(e.vars) == 0:
            if not e.holds(vals):
                return None
        elif len(e.vars) == 1:
            (i,) = e.vars
            keep = []
            for value in doms[i]:
                vals[i] = value
                if e.holds(vals):
                    keep.append(value)
            if not keep:
                return None
            doms[i] = keep
        else:
            multi.append(e)
    if not _filter_divisors(model, entries, doms):
        return None
    lo = [d[0] for d in doms]
    hi = [d[-1] for d in doms]
    for _ in range(_MAX_PASSES):
        changed = False
        for e in multi:
            for i in e.vars:
                d = doms[i]
                start, stop = 0, len(d)
                saved = lo[i], hi[i]
                while start < stop:  # drop the smallest value while it has no support
                    lo[i] = hi[i] = d[start]
                    if e.may(lo, hi):
                        break
                    start += 1
                while stop > start + 1:  # and the largest
                    lo[i] = hi[i] = d[stop - 1]
                    if e.may(lo, hi):
                        break
                    stop -= 1
                lo[i], hi[i] = saved
                if start == stop:
                    return None
                if (start, stop) != (0, len(d)):
                    doms[i] = d[start:stop]
                    lo[i], hi[i] = doms[i][0], doms[i][-1]
                    changed = True
        if not changed:
            break
    return doms


def _filter_divisors(model: Model, entries: list[_Entry], doms: list[list[int]]) -> bool:
    """Divisor-set filtering for ``Divides(x, y)`` between two plain variables; False if one empties."""
    index = {v.name: i for i, v in enumerate(model.variables)}
    for e in entries:
        c = e.named.constraint
        if not (isinstance(c, Divides) and isinstance(c.a, Var) and isinstance(c.b, Var)):
            continue
        i, j = index[c.a.name], index[c.b.name]
        if i == j:
            continue
        ys = doms[j]
        xs = [x for x in doms[i] if any((y == 0) if x == 0 else (y % x == 0) for y in ys)]
        ys = [y for y in ys if any((y == 0) if x == 0 else (y % x == 0) for x in xs)]
        if not xs or not ys:
            return False
        doms[i], doms[j] = xs, ys
    return True


def _order(doms: list[list[int]], entries: list[_Entry]) -> list[int]:
    """Smallest domain first; ties go to the variable sharing most constraints with those chosen."""
    chosen: list[int] = []
    left = set(range(len(doms)))
    while left:

        def key(i: int) -> tuple[int, int, int]:
            shared = sum(1 for e in entries if i in e.vars and any(j in e.vars for j in chosen))
            return len(doms[i]), -shared, i

        best = min(left, key=key)
        chosen.append(best)
        left.remove(best)
    return chosen


class _Search:
    """Depth-first enumeration over ``order`` with exact and interval checks at each depth."""

    def __init__(self, model: Model, entries: list[_Entry], doms: list[list[int]]) -> None:
        self.doms = doms
        self.order = _order(doms, entries)
        depth_of = {v: d for d, v in enumerate(self.order)}
        n = len(doms)
        self.exact: list[list] = [[] for _ in range(n)]
        self.partial: list[list] = [[] for _ in range(n)]
        for e in entries:
            if not e.vars:
                continue
            depths = sorted(depth_of[i] for i in e.vars)
            self.exact[depths[-1]].append(e.holds)
            for d in sorted(set(depths[:-1])):
                self.partial[d].append(e.may)
        self.lo = [d[0] for d in doms]
        self.hi = [d[-1] for d in doms]

    def split(self) -> int:
        """Depth where the vectorized leaves start: the variables from there on span at most
        ``_INNER_POINTS`` points (0 when the whole box is at most VECTOR_MAX_POINTS)."""
        sizes = [len(self.doms[i]) for i in self.order]
        if math.prod(sizes) <= vector.VECTOR_MAX_POINTS:
            return 0
        depth, inner = len(sizes), 1
        while depth > 0 and inner * sizes[depth - 1] <= _INNER_POINTS:
            depth -= 1
            inner *= sizes[depth]
        return depth

    def run(self, visit, prune=None, depth: int | None = None) -> None:
        """Call ``visit(values)`` at each solution (values indexed like the model's variables); stop
        when it returns True. ``prune(lo, hi)`` returning True skips a subtree. With ``depth``,
        stop at that depth instead: ``visit`` gets values whose first ``depth`` variables in the
        search order are assigned and that no constraint on those alone rules out."""
        lo, hi, order, doms, exact, partial = (
            self.lo,
            self.hi,
            self.order,
            self.doms,
            self.exact,
            self.partial,
        )
        n = len(order) if depth is None else depth
        if n == 0:
            visit([])
            return

        def descend(d: int) -> bool:
            i = order[d]
            saved = lo[i], hi[i]
            checks, mays = exact[d], partial[d]
            last = d == n - 1
            for value in doms[i]:
                lo[i] = hi[i] = value
                ok = True
                for f in checks:
                    if not f(lo):
                        ok = False
                        break
                if ok:
                    for f in mays:
                        if not f(lo, hi):
                            ok = False
                            break
                if not ok or (prune is not None and not last and prune(lo, hi)):
                    continue  # leaves skip the bound: visit() sees the exact objective anyway
                if visit(list(lo)) if last else descend(d + 1):
                    lo[i], hi[i] = saved
                    return True
            lo[i], hi[i] = saved
            return False

        descend(0)


def _feasible_domains(model: Model, entries: list[_Entry]) -> _Search | None:
    doms = _propagate(model, entries)
    return None if doms is None else _Search(model, entries, doms)


def _each_chunk(model: Model, search: _Search, handle: Callable[[dict[str, np.ndarray]], bool]) -> None:
    """Call ``handle(columns)`` on the points left for numpy, int64 columns of at most
    VECTOR_MAX_POINTS points: surviving assignments of the outer variables (search order) times the
    inner box, in search order; stop when it returns True. The search and numpy take turns, so
    neither the outer assignments nor the points are ever all held at once."""
    depth = search.split()
    outer, inner = search.order[:depth], search.order[depth:]
    grids = np.meshgrid(*[np.asarray(search.doms[i], dtype=np.int64) for i in inner], indexing="ij")
    inner_cols = {i: g.reshape(-1) for i, g in zip(inner, grids, strict=True)}
    size = math.prod(len(search.doms[i]) for i in inner)
    step = max(1, vector.VECTOR_MAX_POINTS // size)
    where = {i: k for k, i in enumerate(outer)}
    prefixes: list[tuple[int, ...]] = []

    def flush() -> bool:
        table = np.asarray(prefixes, dtype=np.int64).reshape(len(prefixes), len(outer))
        env = {}
        for i, v in enumerate(model.variables):
            if i in inner_cols:
                env[v.name] = np.tile(inner_cols[i], len(table))
            else:
                env[v.name] = np.repeat(table[:, where[i]], size)
        prefixes.clear()
        return handle(env)

    def visit(values: list[int]) -> bool:
        prefixes.append(tuple(values[i] for i in outer))
        return len(prefixes) >= step and flush()

    search.run(visit, None, depth)
    if prefixes:
        flush()


def _vector_solutions(
    model: Model, entries: list[_Entry], search: _Search, limit: int | None
) -> list[dict[str, int]] | None:
    """Solutions by numpy over the narrowed box; None when numpy cannot evaluate it exactly."""
    constraints = [e.named for e in entries]
    found: list[dict[str, int]] = []
    exact = True

    def handle(env: dict[str, np.ndarray]) -> bool:
        nonlocal exact
        evaluated = vector.evaluate_env(env, constraints)
        if evaluated is None:
            exact = False
            return True
        picked = np.flatnonzero(evaluated[0])
        found.extend(vector.rows(model, env, picked if limit is None else picked[: limit - len(found)]))
        return limit is not None and len(found) >= limit

    _each_chunk(model, search, handle)
    return found if exact else None


def _vector_top_k(
    model: Model, entries: list[_Entry], search: _Search, k: int
) -> list[dict[str, int]] | None:
    """The ``k`` best by numpy over the narrowed box; None when numpy cannot evaluate it exactly."""
    constraints = [e.named for e in entries]
    names = [v.name for v in model.variables]
    best: list[tuple[int, tuple[int, ...]]] = []
    exact = True

    def handle(env: dict[str, np.ndarray]) -> bool:
        nonlocal best, exact
        evaluated = vector.evaluate_env(env, constraints)
        keys = None if evaluated is None else vector.objective_keys(model, env, *evaluated)
        if keys is None:
            exact = False
            return True
        feasible = np.flatnonzero(evaluated[0])
        keys = keys[feasible]
        columns = [env[n][feasible] for n in names]
        # ties: smaller values in declaration order first (np.lexsort's last key is the primary one)
        order = np.lexsort((*reversed(columns), keys))[:k]
        chunk = [(int(keys[j]), tuple(int(c[j]) for c in columns)) for j in order]
        best = sorted(best + chunk)[:k]
        return False

    _each_chunk(model, search, handle)
    return [dict(zip(names, vals, strict=True)) for _, vals in best] if exact else None


def solutions(
    model: Model, constraints: Sequence[NamedConstraint] | None = None, limit: int | None = None
) -> list[dict[str, int]]:
    """Every assignment satisfying ``constraints`` (default: all of the model's), at most ``limit``."""
    entries = _compile(model, model.constraints if constraints is None else constraints)
    return _solutions(model, entries, limit)


def _solutions(model: Model, entries: list[_Entry], limit: int | None) -> list[dict[str, int]]:
    search = _feasible_domains(model, entries)
    if search is None:
        return []
    fast = _vector_solutions(model, entries, search, limit)
    if fast is not None:
        return fast
    names = [v.name for v in model.variables]
    found: list[dict[str, int]] = []

    def visit(values: list[int]) -> bool:
        found.append(dict(zip(names, values, strict=True)))
        return limit is not None and len(found) >= limit

    search.run(visit)
    return found


def top_k(model: Model, k: int) -> list[dict[str, int]]:
    """The ``k`` best solutions in ``model.key`` order, by branch and bound on the objective."""
    objective = model.objective
    if objective is None:
        return sorted(solutions(model), key=model.key)[:k]
    entries = _compile(model, model.constraints)
    search = _feasible_domains(model, entries)
    if search is None:
        return []
    fast = _vector_top_k(model, entries, search, k)
    if fast is not None:
        return fast
    index = {v.name: i for i, v in enumerate(model.variables)}
    value_fn = objective.expr._value_fn(index)
    bounds_fn = objective.expr._bounds_fn(index)
    sign = 1 if objective.sense == "min" else -1
    best: list[tuple[int, tuple[int, ...]]] = []  # (objective key, values), best first

    def visit(values: list[int]) -> bool:
        item = (sign * value_fn(values), tuple(values))
        if len(best) < k or item < best[-1]:
            bisect.insort(best, item)
            del best[k:]
        return False

    def prune(lo: list[int], hi: list[int]) -> bool:
        if len(best) < k:
            return False
        a, b = bounds_fn(lo, hi)
        optimistic = a if sign == 1 else -b
        return optimistic > best[-1][0]  # strictly worse than the k-th: ties must still be visited

    search.run(visit, prune)
    names = list(index)
    return [dict(zip(names, values, strict=True)) for _, values in best]


def explain(model: Model) -> list[str]:
    """An irreducible conflicting set of constraint names (deletion filter); empty when feasible."""
    entries = _compile(model, model.constraints)
    if _solutions(model, entries, 1):
        return []
    by_name = {e.named.name: e for e in entries}

    def feasible(subset: Sequence[NamedConstraint]) -> bool:
        return bool(_solutions(model, [by_name[c.name] for c in subset], 1))

    return deletion_filter(model.constraints, feasible)
