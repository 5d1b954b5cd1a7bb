"""Why a kernel family has no feasible configuration for a problem, in words with numbers.

:func:`explain` asks the solver for a small set of named constraints that conflict
(``tunekit.solvers.explain``: dropping any one of them makes the rest feasible), then, for each
constraint of that set, finds the configuration that comes closest to satisfying it while meeting
the others (a branch-and-bound minimization of how far its two sides are apart), so the reader sees
"at least 180,224 B needed > 166,912 B limit" rather than a constraint name. It also probes the
nearest shapes that do fit: the nearest feasible head dims below and above (multiples of 16), a
smaller dtype, forward-only, a smaller batch, and the other kernel families for the exact problem.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tunekit.constraints import FAMILIES, build_space
from tunekit.hardware import GPUProfile, load_profile
from tunekit.problem import DTYPE_BYTES, MAX_HEAD_DIM, Problem
from tunekit.solvers import Compare, Max, Model, NamedConstraint, solve, top_k
from tunekit.solvers import explain as conflicting_constraints

__all__ = ["Alternative", "Conflict", "Explanation", "explain", "explain_space", "is_feasible"]

# Head dims are probed on this grid: tensor-core tiles and Triton's tl.dot both work in 16s.
HEAD_DIM_STEP = 16
# Probing: this many nearest grid points one by one, then a geometric stride (x1.5) further out,
# then a bisection back towards the problem once a feasible one is found.
_LINEAR_PROBES = 6
_MAX_HEAD_DIM_UP = 4  # probe upwards to at most 4x the problem's head dim
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
    closest: Mapping[str, int]  # values of the variables the conflicting set uses

    def to_json_dict(self) -> dict[str, Any]:
        return {
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
            lines = [f"{head}: no feasible configuration. These constraints conflict:"]
            for c in self.conflicts:
                lines.append(f"  - {c.text}")
                if c.why:
                    lines.append(f"      ({c.why})")
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
    return solve(build_space(family, problem, gpu).model) is not None


def explain(problem: Problem, gpu: str | GPUProfile, family: str) -> Explanation:
    """Explain ``family``'s space for ``problem`` on ``gpu``: the conflict and the nearest alternatives."""
    if not isinstance(problem, Problem):
        raise ValueError(f"problem: got {type(problem).__name__}, expected a tunekit.problem.Problem")
    return explain_space(build_space(_check_family(family), problem, load_profile(gpu)))


def explain_space(space: Any) -> Explanation:
    """Like :func:`explain`, for a space already built (what ``tune`` has at hand)."""
    names = conflicting_constraints(space.model)
    conflicts = tuple(_conflict(space, name, names) for name in names)
    return Explanation(
        problem=space.problem,
        gpu=space.gpu,
        family=space.family,
        feasible=not names,
        conflicts=conflicts,
        alternatives=tuple(_alternatives(space.problem, space.gpu, space.family, feasible=not names)),
    )


# ---- the closest any configuration gets to one conflicting constraint ------------------------------


def _submodel(model: Model, constraint: NamedConstraint, others: list[NamedConstraint]) -> Model:
    """The variables the constraints use (with their domains) and the other constraints."""
    used: dict[str, None] = {}
    for nc in [constraint, *others]:
        used.update(dict.fromkeys(nc.constraint.variables()))
    sub = Model(f"{model.name}:{constraint.name}")
    for var in model.variables:
        if var.name in used:
            sub.int_var(var.name, var.domain)
    for nc in others:
        sub.add(nc.name, nc.constraint, nc.why)
    return sub


def _closest(model: Model, nc: NamedConstraint, others: list[NamedConstraint]) -> dict[str, int] | None:
    """The assignment meeting ``others`` that minimizes the gap between ``nc``'s sides (None: none)."""
    sub = _submodel(model, nc, others)
    c = nc.constraint
    if isinstance(c, Compare) and sub.variables:
        gap = {
            "<=": c.lhs - c.rhs,
            "<": c.lhs - c.rhs,
            ">=": c.rhs - c.lhs,
            ">": c.rhs - c.lhs,
            "==": Max(c.lhs - c.rhs, c.rhs - c.lhs),
        }.get(c.op)
        if gap is not None:
            sub.minimize(gap)
            found = top_k(sub, 1)
            return found[0] if found else None
    return solve(sub) if sub.variables else {}


def _full(model: Model, partial: Mapping[str, int]) -> dict[str, int]:
    """``partial`` completed with each remaining variable's smallest value (for evaluating limits)."""
    return {v.name: partial.get(v.name, v.domain.lo) for v in model.variables}


def _label(name: str) -> str:
    return name.replace("_", " ")


def _conflict(space: Any, name: str, names: list[str]) -> Conflict:
    model = space.model
    nc = model.constraint(name)
    others = [model.constraint(n) for n in names if n != name]
    closest = _closest(model, nc, others)
    if closest is None:  # the others alone are infeasible: cannot happen for an irreducible set
        return Conflict(
            name,
            nc.why,
            f"{_label(name)}: conflicts with {', '.join(n.name for n in others)}",
            None,
            None,
            "",
            {},
        )
    full = _full(model, closest)
    unit = next((u for n, _, _, u in space.limits(full) if n == name), "")
    sides = nc.constraint.sides(full)
    if sides is None:
        text = f"{_label(name)}: cannot hold" + (
            f" together with {', '.join(n.name for n in others)}" if others else ""
        )
        return Conflict(name, nc.why, text, None, None, unit, closest)
    lhs, rhs = sides
    op = nc.constraint.op if isinstance(nc.constraint, Compare) else "divides"
    u = f" {unit}" if unit else ""
    where = ", ".join(f"{k}={v}" for k, v in closest.items())
    if op in ("<=", "<"):
        core = f"at least {lhs:,}{u} needed > {rhs:,}{u} limit on {space.gpu.name}"
    elif op in (">=", ">"):
        core = f"at most {lhs:,}{u} reachable < {rhs:,}{u} required on {space.gpu.name}"
    elif op == "divides":
        core = f"{lhs:,} does not divide {rhs:,}"
    else:
        core = f"closest is {lhs:,}{u} {'==' if op == '!=' else 'vs'} {rhs:,}{u} ({op} required)"
    text = f"{_label(name)}: {core}" + (f" (closest: {where})" if where else "")
    return Conflict(name, nc.why, text, lhs, rhs, unit, closest)


# ---- nearest feasible alternatives -----------------------------------------------------------------


def _probe_order(values: list[int]) -> Iterator[int]:
    """Indices into ``values`` (nearest first): a few one by one, then a geometric stride."""
    i, last = 0, -1
    while i < len(values):
        yield i
        i, last = (i + 1 if i < _LINEAR_PROBES else int(i * 1.5)), i
    if last != len(values) - 1:
        yield len(values) - 1  # the far end, so a feasible value is never missed between strides


def _nearest(values: list[int], ok: Any) -> int | None:
    """The value nearest the front of ``values`` found feasible by ``ok`` (probing, then bisecting)."""
    last_bad = -1
    for i in _probe_order(values):
        if ok(values[i]):
            lo, hi = last_bad, i  # values[lo] infeasible (or none), values[hi] feasible
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (lo, mid) if ok(values[mid]) else (mid, hi)
            return values[hi]
        last_bad = i
    return None


def _alternatives(problem: Problem, gpu: GPUProfile, family: str, feasible: bool) -> Iterator[Alternative]:
    def fits(p: Problem, f: str = family) -> bool:
        return is_feasible(p, gpu, f)

    if not feasible:
        d, step = problem.head_dim, HEAD_DIM_STEP
        below = list(range((d - 1) // step * step, 0, -step))
        above = list(range((d // step + 1) * step, min(MAX_HEAD_DIM, _MAX_HEAD_DIM_UP * d) + 1, step))
        for side, values in (("below", below), ("above", above)):
            found = _nearest(values, lambda v: fits(dataclasses.replace(problem, head_dim=v)))
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
        batches = [b for b in (problem.batch // 2**k for k in range(1, 64)) if b >= 1]
        found = _nearest(batches, lambda b: fits(dataclasses.replace(problem, batch=b)))
        if found is not None:
            p = dataclasses.replace(problem, batch=found)
            yield Alternative("batch", family, p, f"batch {found} (largest feasible power-of-two fraction)")
    for other in FAMILIES:
        if other != family and fits(problem, other):
            yield Alternative("backend", other, problem, f"backend {other} for this exact problem")
