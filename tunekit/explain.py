"""Why a kernel family has no feasible configuration for a problem, in words with numbers.

:func:`explain` asks the solver for a small set of named constraints that conflict
(``tunekit.solvers.explain``: dropping any one of them makes the rest feasible), then for the next
set once that one is lifted, and so on (up to three disjoint sets: a shape can be ruled out for
several independent reasons). For each constraint of a set it finds the configuration that comes
closest to satisfying it while meeting the other constraints (a branch-and-bound minimization of how
far its two sides are apart), so the reader sees "at least 180,224 B needed > 101,376 B limit"
rather than a constraint name. It also probes the nearest shapes that do fit: the nearest feasible
head dims below and above (multiples of 16), a smaller dtype, forward-only, a smaller batch, fewer
heads, and the other kernel families for the exact problem.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunekit.constraints import FAMILIES, build_space
from tunekit.hardware import GPUProfile, load_profile
from tunekit.problem import DTYPE_BYTES, MAX_HEAD_DIM, Problem
from tunekit.solvers import Compare, Max, Model, NamedConstraint, ceil_div, solve, top_k
from tunekit.solvers import explain as conflicting_constraints
from tunekit.solvers.conflicts import deletion_filter
from tunekit.solvers.vector import constraint_masks, vector_minimum, vector_solutions

__all__ = ["Alternative", "Conflict", "Explanation", "explain", "explain_space", "is_feasible"]

# Head dims are probed on this grid: tensor-core tiles and Triton's tl.dot both work in 16s.
HEAD_DIM_STEP = 16
# Ratios of a need to a variable capacity are compared in 1/1024ths.
_RATIO_SCALE = 1024
_NO_ROOM = 1 << 40
# At most this many disjoint conflicting sets are reported (each found after lifting the previous).
MAX_CONFLICT_SETS = 3
# Conflicting sets come from the solvers' deletion filter: one "is this subset feasible?" per
# constraint. Where the space is small enough, numpy evaluates every constraint once over all points
# and each question is an AND of masks (the set is then exactly the native solver's, in
# microseconds). Beyond that, the native search answers on small models and CP-SAT on large ones
# (3-5x faster than native on the cuda-fused models: 0.15-0.55 s against 0.35-2.7 s).
_SMALL_MODEL = 20_000
# Smaller dtypes to try, preferred first (bfloat16 keeps float32's exponent range).
SMALLER_DTYPES = {"float32": ("bfloat16", "float16")}


@dataclass(frozen=True)
class Conflict:
    """One constraint of the conflicting set, and how close any configuration gets to it."""

    name: str
    why: str
    text: str  # in words, with the numbers of the closest configuration
    used: int | None  # lhs and rhs of the constraint at the closest configuration (None: no sides)
    limit: int | None
    unit: str
    closest: Mapping[str, int]  # the configuration that comes closest
    group: int = 1  # which conflicting set: 1 conflicts as the model stands, 2 once 1 is lifted, ...

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "name": self.name,
            "why": self.why,
            "text": self.text,
            "used": self.used,
            "limit": self.limit,
            "unit": self.unit,
            "closest": dict(self.closest),
        }


@dataclass(frozen=True)
class Alternative:
    """A nearby problem (or another family) that has a feasible configuration."""

    kind: str  # "head_dim", "dtype", "direction", "batch" or "backend"
    family: str
    problem: Problem
    text: str

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "backend": self.family,
            "problem": dataclasses.asdict(self.problem),
            "text": self.text,
        }


@dataclass(frozen=True)
class Explanation:
    """Why ``family`` has (or has not) a feasible configuration for ``problem`` on ``gpu``."""

    problem: Problem
    gpu: GPUProfile
    family: str
    feasible: bool
    conflicts: tuple[Conflict, ...]
    alternatives: tuple[Alternative, ...]

    def to_text(self) -> str:
        """A short report for people."""
        p = self.problem
        head = (
            f"{self.family} for {p.cell} D={p.head_dim} heads={p.heads} batch={p.batch} {p.dtype} "
            f"{p.direction} on {self.gpu.name}"
        )
        if self.feasible:
            lines = [f"{head}: feasible, nothing conflicts."]
        else:
            lines = [f"{head}: no feasible configuration."]
            for group in sorted({c.group for c in self.conflicts}):
                lifted = "conflict 1 is" if group == 2 else f"conflicts 1-{group - 1} are"
                lift = "" if group == 1 else f"; left when {lifted} lifted"
                lines.append(f"Conflict {group} (these constraints cannot all hold{lift}):")
                for c in self.conflicts:
                    if c.group == group:
                        lines.append(f"  - {c.text}")
                        lines += [f"      ({c.why})"] if c.why else []
        if self.alternatives:
            lines.append("Nearest alternatives that are feasible:")
            lines += [f"  - {a.text}" for a in self.alternatives]
        elif not self.feasible:
            lines.append("No nearby alternative was found feasible.")
        return "\n".join(lines)

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "backend": self.family,
            "gpu": self.gpu.name,
            "problem": dataclasses.asdict(self.problem),
            "feasible": self.feasible,
            "conflicts": [c.to_json_dict() for c in self.conflicts],
            "alternatives": [a.to_json_dict() for a in self.alternatives],
        }


def _check_family(family: object) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family: got {family!r}, expected one of {list(FAMILIES)}")
    return str(family)


def is_feasible(problem: Problem, gpu: GPUProfile, family: str) -> bool:
    """True when ``family`` has at least one feasible configuration for ``problem`` on ``gpu``."""
    model = build_space(family, problem, gpu).model
    found = vector_solutions(model)  # numpy over the whole space: fast where a proof of "none" is slow
    return bool(found) if found is not None else solve(_copy(model)) is not None


def explain(problem: Problem, gpu: str | GPUProfile, family: str) -> Explanation:
    """Explain ``family``'s space for ``problem`` on ``gpu``: the conflict and the nearest alternatives."""
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: got {type(problem).__name__}, expected a tunekit.problem.Problem")
    return explain_space(build_space(_check_family(family), problem, load_profile(gpu)))


def explain_space(space: Any) -> Explanation:
    """Like :func:`explain`, for a space already built (what ``tune`` has at hand)."""
    sets = _conflict_sets(space.model)
    flagged = {name for names in sets for name in names}
    conflicts = tuple(
        _conflict(space, name, names, flagged, group) for group, names in enumerate(sets, 1) for name in names
    )
    return Explanation(
        problem=space.problem,
        gpu=space.gpu,
        family=space.family,
        feasible=not sets,
        conflicts=conflicts,
        alternatives=tuple(_alternatives(space.problem, space.gpu, space.family, feasible=not sets)),
    )


def _conflict_sets(model: Model) -> list[list[str]]:
    """Disjoint irreducible conflicting sets: the solver's, then the next once it is lifted, ..."""
    sets: list[list[str]] = []
    lifted: set[str] = set()
    masks = constraint_masks(model)
    backend = "native" if math.prod(len(v.domain) for v in model.variables) <= _SMALL_MODEL else "cpsat"
    while len(sets) < MAX_CONFLICT_SETS:
        kept = [c for c in model.constraints if c.name not in lifted]
        if masks is not None:  # the native explain's deletion filter, with numpy answering "feasible?"
            names = (
                []
                if _masks_feasible(masks, kept)
                else deletion_filter(kept, lambda s: _masks_feasible(masks, s))
            )
        else:
            names = conflicting_constraints(_copy(model, kept), backend=backend)
        if not names:
            break
        sets.append(names)
        lifted.update(names)
    return sets


def _masks_feasible(masks: Mapping[str, Any], subset: Sequence[NamedConstraint]) -> bool:
    if not subset:
        return True  # every domain has a value, so the product has a point
    return bool(np.logical_and.reduce([masks[c.name] for c in subset]).any())


# ---- the closest any configuration gets to one conflicting constraint ------------------------------


def _copy(
    model: Model, keep: list[NamedConstraint] | None = None, variables: set[str] | None = None
) -> Model:
    """``model``'s variables (or only ``variables``) and ``keep`` constraints (default: all), without
    the objective: a solve then stops at the first solution."""
    copy = Model(model.name)
    for var in model.variables:
        if variables is None or var.name in variables:
            copy.int_var(var.name, var.domain)
    for nc in model.constraints if keep is None else keep:
        copy.add(nc.name, nc.constraint, nc.why)
    return copy


def _gap(c: Compare) -> Any:
    """How far ``c`` is from holding, as an expression to minimize (None for ``!=``).

    ``need <= cap``: need - cap when the cap is a constant; with a variable cap (a grid against
    SMs x blocks per SM), the ratio need/cap in 1/1024ths, so "2x too many" beats "1,000 too many".
    """
    if c.op == "==":
        return Max(c.lhs - c.rhs, c.rhs - c.lhs)
    if c.op not in ("<=", "<", ">=", ">"):
        return None
    need, cap = (c.lhs, c.rhs) if c.op in ("<=", "<") else (c.rhs, c.lhs)
    if not cap.variables():
        return need - cap
    # a capacity of 0 (not one block fits an SM) ranks behind every capacity that leaves room
    return ceil_div(need * _RATIO_SCALE, Max(1, cap)) + Max(0, 1 - cap) * _NO_ROOM


def _closest(
    model: Model, nc: NamedConstraint, others: list[NamedConstraint], flagged: set[str]
) -> dict[str, int] | None:
    """The assignment closest to satisfying ``nc`` while meeting, in order of preference: every
    constraint outside the conflicting sets plus the rest of its own set ``others``; every
    constraint outside the conflicting sets; ``others`` alone. None when none of these is feasible."""
    clean = [c for c in model.constraints if c.name not in flagged]
    used: set[str] = set(nc.constraint.variables())
    for c in others:
        used.update(c.constraint.variables())
    gap = _gap(nc.constraint) if isinstance(nc.constraint, Compare) else None
    for sub in (_copy(model, clean + others), _copy(model, clean), _copy(model, others, used)):
        if gap is not None and sub.variables:
            handled, best = vector_minimum(sub, gap)  # numpy where the space is small enough
            if handled:
                found = [best] if best is not None else []
            else:
                sub.minimize(gap)
                found = top_k(sub, 1)
        else:
            one = solve(sub)
            found = [one] if one is not None else []
        if found:
            return found[0]
    return None


def _full(model: Model, partial: Mapping[str, int]) -> dict[str, int]:
    """``partial`` completed with each remaining variable's smallest value (for evaluating limits)."""
    return {v.name: partial.get(v.name, v.domain.lo) for v in model.variables}


def _label(name: str) -> str:
    return name.replace("_", " ")


def _conflict(space: Any, name: str, names: list[str], flagged: set[str], group: int) -> Conflict:
    model = space.model
    nc = model.constraint(name)
    others = [model.constraint(n) for n in names if n != name]
    closest = _closest(model, nc, others, flagged)
    if closest is None:  # the others alone are infeasible: cannot happen for an irreducible set
        text = f"{_label(name)}: conflicts with {', '.join(n.name for n in others)}"
        return Conflict(name, nc.why, text, None, None, "", {}, group)
    full = _full(model, closest)
    unit = next((u for n, _, _, u in space.limits(full) if n == name), "")
    sides = nc.constraint.sides(full)
    if sides is None:  # a rule such as AnyOf(...) or Implies(...): no two sides to compare
        text = f"{_label(name)}: no configuration satisfies it" + (
            f" together with {', '.join(n.name for n in others)}" if others else ""
        )
        return Conflict(name, nc.why, text, None, None, unit, closest, group)
    lhs, rhs = sides
    op = nc.constraint.op if isinstance(nc.constraint, Compare) else "divides"
    u = f" {unit}" if unit else ""
    where = ", ".join(f"{k}={v}" for k, v in closest.items())
    if op in ("<=", "<") and rhs <= 0:  # no configuration leaves any room: a "closest" one says nothing
        core = f"no configuration leaves room: the limit is {rhs:,}{u} on {space.gpu.name}, not even one fits"
        where = ""
    elif op in ("<=", "<"):
        core = f"at least {lhs:,}{u} needed > {rhs:,}{u} limit on {space.gpu.name}"
    elif op in (">=", ">"):
        core = f"at most {lhs:,}{u} reachable < {rhs:,}{u} required on {space.gpu.name}"
    elif op == "divides":
        core = f"{lhs:,} does not divide {rhs:,}"
    else:
        core = f"closest is {lhs:,}{u} {'==' if op == '!=' else 'vs'} {rhs:,}{u} ({op} required)"
    text = f"{_label(name)}: {core}" + (f" (closest: {where})" if where else "")
    return Conflict(name, nc.why, text, lhs, rhs, unit, closest, group)


# ---- nearest feasible alternatives -----------------------------------------------------------------


def _nearest(values: list[int], ok: Callable[[int], bool]) -> int | None:
    """The value nearest the front of ``values`` that ``ok`` accepts, in O(log n) probes.

    The models are built so that feasibility is monotone along these lists (resources grow with
    head dim and batch): if the far end fails, nothing does; otherwise a galloping search from the
    front (indices 0, 1, 3, 7, ...) brackets the boundary and a bisection finds it.
    """
    if not values or not ok(values[-1]):
        return None
    bad, i = -1, 0
    while not ok(values[i]):
        bad, i = i, min(2 * i + 1, len(values) - 1)
    good = i
    while good - bad > 1:
        mid = (bad + good) // 2
        bad, good = (bad, mid) if ok(values[mid]) else (mid, good)
    return values[good]


def _above(d: int) -> list[int]:
    """Head dims above ``d`` worth a probe: the next grid point, the next multiple of 128 and the
    next power of two (the models pad rather than divide, so larger sizes rarely fit better)."""
    candidates = {(d // HEAD_DIM_STEP + 1) * HEAD_DIM_STEP, (d // 128 + 1) * 128, 1 << d.bit_length()}
    return sorted(v for v in candidates if v <= MAX_HEAD_DIM)


def _alternatives(problem: Problem, gpu: GPUProfile, family: str, feasible: bool) -> Iterator[Alternative]:
    def fits(p: Problem, f: str = family) -> bool:
        return is_feasible(p, gpu, f)

    if not feasible:
        d, step = problem.head_dim, HEAD_DIM_STEP
        below = list(range((d - 1) // step * step, 0, -step))
        above = _above(d)
        for side, values in (("below", below), ("above", above)):
            if side == "below":
                found = _nearest(values, lambda v: fits(dataclasses.replace(problem, head_dim=v)))
            else:  # no monotony to lean on upwards: the first of a few probes that fits
                found = next((v for v in values if fits(dataclasses.replace(problem, head_dim=v))), None)
            if found is not None:
                yield Alternative(
                    "head_dim",
                    family,
                    dataclasses.replace(problem, head_dim=found),
                    f"head_dim {found} (nearest feasible {side} {d}) with {family}",
                )
        for dtype in SMALLER_DTYPES.get(problem.dtype, ()):
            p = dataclasses.replace(problem, dtype=dtype)
            if fits(p):
                yield Alternative("dtype", family, p, f"dtype {dtype} ({DTYPE_BYTES[dtype]} B) with {family}")
                break
        if problem.direction != "forward":
            p = dataclasses.replace(problem, direction="forward")
            if fits(p):
                yield Alternative("direction", family, p, f"forward only (inference) with {family}")
        for field, label in (("batch", "batch"), ("heads", "heads")):
            value = getattr(problem, field)
            halves = [v for v in (value >> k for k in range(1, value.bit_length())) if v >= 1]
            found = _nearest(halves, lambda v, f=field: fits(dataclasses.replace(problem, **{f: v})))
            if found is not None:
                p = dataclasses.replace(problem, **{field: found})
                yield Alternative(field, family, p, f"{label} {found} (largest feasible halving of {value})")
    for other in FAMILIES:
        if other != family and fits(problem, other):
            yield Alternative("backend", other, problem, f"backend {other} for this exact problem")
