"""Calibrate the cost model's constants on timings: published ones, or the database's measurements.

The only GPU timings available are FlashRNN's published figure (DESIGN §7: LSTM bf16, B=16,
T=1024, N·D=768, H100 SXM). Our triton-fused kernel has the structure of FlashRNN's Triton kernel
and our cuda-alternating the structure of its alternating one, so each published time is compared
with the fastest configuration our model predicts for that family and shape; FlashRNN's fused CUDA
kernel is another design than our cuda-fused (and cuDNN has no counterpart), so those figures are
only reported beside our predictions, never fitted.

With measured records in the tuning database (``tunekit tune --measure``), each record is a point:
the model's prediction for exactly that configuration against its measured median.

The fit minimises the mean squared log ratio predicted / measured over the points, plus a weak
pull (PRIOR_WEIGHT) of each constant towards its stated value, so that a constant the points do not
constrain stays where it was stated. It searches the log of each constant within its bounds by a
deterministic pattern search (Hooke-Jeeves: try x2 and /2 per constant, halve the step when
nothing improves), so the same points always give the same constants.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from tunekit.cost import CostConstants, breakdown

__all__ = [
    "FITTED",
    "PUBLISHED",
    "PUBLISHED_SOURCE",
    "UNCALIBRATED",
    "FitResult",
    "Point",
    "Published",
    "fit",
    "measured_points",
    "published_fit",
    "published_points",
    "render_report",
]

# The model as it stood before calibration: the stated constants, and no triton-fused step latency
# (the term the published Triton figure shows missing: 0.45 ms predicted, 1.97 ms measured).
UNCALIBRATED = replace(CostConstants(), triton_step_latency_cycles=0.0)
# constant -> (low, high) bounds of the search, and what the published points constrain in it
FITTED: dict[str, tuple[float, float]] = {
    "triton_step_latency_cycles": (10.0, 20_000.0),  # the Triton step chain: triton-fused points
    "step_latency_us": (0.05, 3.0),  # the pointwise tail: every family's points
    "load_latency_cycles": (200.0, 2_000.0),  # the GEMM k loop: cuda-alternating at D=768
}
# per constant, on log(value / stated)^2: moving a constant 2x costs as much as a 2.2% misfit on
# every point, so only a constant the points do not pin down stays near its stated value
PRIOR_WEIGHT = 0.001

MEASURED_SOURCE = "measured records of the tuning database"
PUBLISHED_SOURCE = (
    "FlashRNN README figure (NX-AI/flashrnn; Pöppel et al., arXiv 2412.07752): LSTM, B=16, T=1024, "
    "N·D=768, H100 SXM, forward / forward+backward in ms"
)


@dataclass(frozen=True)
class Published:
    """One published timing and the tunekit family it is compared with (None: no counterpart)."""

    label: str  # the published kernel
    family: str | None
    fit: bool  # False: reported beside our prediction, not fitted
    head_dim: int
    heads: int
    direction: str  # "forward" | "both"
    ms: float
    dtype: str = "bfloat16"


PUBLISHED: tuple[Published, ...] = (
    Published("FlashRNN Triton", "triton-fused", True, 16, 48, "forward", 1.97),
    Published("FlashRNN Triton", "triton-fused", True, 16, 48, "both", 3.47),
    Published("FlashRNN Triton", "triton-fused", True, 128, 6, "forward", 3.23),
    Published("FlashRNN CUDA alternating", "cuda-alternating", True, 16, 48, "forward", 7.84),
    Published("FlashRNN CUDA alternating", "cuda-alternating", True, 16, 48, "both", 17.88),
    Published("FlashRNN CUDA alternating", "cuda-alternating", True, 768, 1, "forward", 10.79),
    Published("FlashRNN CUDA alternating", "cuda-alternating", True, 768, 1, "both", 26.49),
    Published("FlashRNN CUDA fused", "cuda-fused", False, 16, 48, "forward", 3.56),
    Published("FlashRNN CUDA fused", "cuda-fused", False, 16, 48, "both", 8.22),
    Published("FlashRNN CUDA fused", "cuda-fused", False, 768, 1, "forward", 4.87),
    Published("FlashRNN CUDA fused", "cuda-fused", False, 768, 1, "both", 13.61),
    Published("cuDNN (torch.nn.LSTM, fp16)", None, False, 768, 1, "forward", 2.01, "float16"),
    Published("cuDNN (torch.nn.LSTM, fp16)", None, False, 768, 1, "both", 5.19, "float16"),
)
PUBLISHED_GPU, PUBLISHED_BATCH, PUBLISHED_STEPS = "h100", 16, 1024


@dataclass(frozen=True)
class Point:
    """A measured time and the configurations whose fastest prediction is compared with it."""

    label: str
    family: str | None
    problem: Any  # tunekit.problem.Problem
    gpu: str  # profile name
    measured_us: float  # per step
    fit: bool
    space: Any = None  # None: no tunekit counterpart (reported only)
    assignments: tuple[dict[str, int], ...] = ()
    resources: tuple[dict[str, int], ...] = ()
    steps: int = PUBLISHED_STEPS

    @functools.cached_property
    def _priced(self) -> tuple[tuple[dict[str, int], dict[str, int]], ...]:
        return tuple(
            (self.space.config(a).params, r) for a, r in zip(self.assignments, self.resources, strict=True)
        )

    def predicted_us(self, constants: CostConstants) -> float | None:
        """The fastest predicted µs per step under ``constants`` (None without a counterpart)."""
        if self.space is None or not self.assignments:
            return None
        return min(breakdown(self.space, r, par, constants).total_us_per_step for par, r in self._priced)


def _feasible(space: Any) -> list[dict[str, int]]:
    from tunekit.solvers import enumerate_all
    from tunekit.solvers.vector import vector_solutions

    found = vector_solutions(space.model)
    return found if found is not None else enumerate_all(space.model, backend="native")


def published_points() -> list[Point]:
    """DESIGN §7's figure as points; a shape a family cannot run stays a reported-only point."""
    from tunekit.constraints import build_space
    from tunekit.hardware import load_profile
    from tunekit.problem import Problem

    gpu = load_profile(PUBLISHED_GPU)
    points = []
    for pub in PUBLISHED:
        problem = Problem("lstm", PUBLISHED_BATCH, pub.heads, pub.head_dim, pub.dtype, pub.direction)
        point = Point(pub.label, pub.family, problem, gpu.name, pub.ms * 1e3 / PUBLISHED_STEPS, pub.fit)
        if pub.family is not None:
            space = build_space(pub.family, problem, gpu)
            found = _feasible(space)
            point = replace(
                point, space=space, assignments=tuple(found), resources=tuple(space.resources_of_all(found))
            )
            if not found:
                point = replace(point, fit=False)
        points.append(point)
    return points


def measured_points(records: Sequence[Any]) -> tuple[list[Point], list[str]]:
    """Points from measured ``ok`` records, and a note per record left out (and why)."""
    from tunekit.constraints import build_space
    from tunekit.db.keys import profile_hash
    from tunekit.hardware import load_profile
    from tunekit.problem import Problem

    points, skipped = [], []
    for r in records:
        if r.tier != "measured" or r.status != "ok" or not r.samples_us:
            continue
        k = r.key
        try:
            gpu = load_profile(k.profile)
            problem = Problem(k.cell, k.batch, k.heads, k.head_dim, k.dtype, k.direction)
        except ValueError as exc:
            skipped.append(f"{r.name}: {exc}")
            continue
        if profile_hash(gpu) != k.profile_hash:
            skipped.append(f"{r.name}: measured on another version of the {k.profile} profile")
            continue
        space = build_space(k.family, problem, gpu)
        assignment = dict(r.params)
        if set(assignment) != set(space.tunables) or space.violated(assignment):
            skipped.append(f"{r.name}: no longer a feasible configuration of {k.family}")
            continue
        points.append(
            Point(
                r.name,
                k.family,
                problem,
                gpu.name,
                float(r.median_us),
                True,
                space,
                (assignment,),
                (space.resources(assignment),),
                int((r.measure or {}).get("steps", 0)),
            )  # fmt: skip
        )
    return points, skipped


@dataclass(frozen=True)
class FitResult:
    """The fitted constants, the points, and how good the fit is."""

    source: str  # "published" or "measured"
    points: tuple[Point, ...]
    prior: CostConstants
    fitted: CostConstants
    objective: float
    evaluations: int
    skipped: tuple[str, ...] = ()

    def residual(self, point: Point, constants: CostConstants | None = None) -> float | None:
        """predicted / measured - 1 under ``constants`` (default: the fitted ones)."""
        predicted = point.predicted_us(constants or self.fitted)
        return None if predicted is None else predicted / point.measured_us - 1.0

    @property
    def worst_residual(self) -> float:
        """The largest |residual| over the fitted points."""
        return max((abs(self.residual(p) or 0.0) for p in self.points if p.fit), default=0.0)

    def provenance(self) -> dict[str, Any]:
        """What the constants file says about its origin."""
        fitted_points = [p for p in self.points if p.fit]
        return {
            "fitted_on": PUBLISHED_SOURCE if self.source == "published" else MEASURED_SOURCE,
            "source": self.source,
            "fitted": sorted(FITTED),
            "points": len(fitted_points),
            "max_abs_residual": round(self.worst_residual, 4),
        }


def _objective(points: Sequence[Point], constants: CostConstants, prior: CostConstants) -> float:
    fitted = [p for p in points if p.fit]
    if not fitted:
        return 0.0
    misfit = sum(math.log(p.predicted_us(constants) / p.measured_us) ** 2 for p in fitted) / len(fitted)
    pull = sum(math.log(getattr(constants, n) / getattr(prior, n)) ** 2 for n in FITTED)
    return misfit + PRIOR_WEIGHT * pull


def fit(
    points: Sequence[Point], source: str, prior: CostConstants | None = None, skipped: Sequence[str] = ()
) -> FitResult:
    """Fit the FITTED constants to ``points`` (pattern search in log space, deterministic)."""
    prior = prior or CostConstants()
    names = sorted(FITTED)
    low = [math.log(FITTED[n][0]) for n in names]
    high = [math.log(FITTED[n][1]) for n in names]
    x = [min(max(math.log(getattr(prior, n)), lo), hi) for n, lo, hi in zip(names, low, high, strict=True)]
    evaluations = 0

    def constants_at(point: list[float]) -> CostConstants:
        return replace(prior, **{n: math.exp(v) for n, v in zip(names, point, strict=True)})

    seen: dict[tuple[float, ...], float] = {}

    def score(point: list[float]) -> float:
        nonlocal evaluations
        if tuple(point) not in seen:  # the pattern search comes back to points it tried
            evaluations += 1
            seen[tuple(point)] = _objective(points, constants_at(point), prior)
        return seen[tuple(point)]

    best = score(x)
    step = math.log(2.0)
    while step > math.log(1.001) and evaluations < 5000:  # 0.1%: finer than the 4 digits kept
        improved = False
        for i in range(len(x)):
            for sign in (1.0, -1.0):
                trial = list(x)
                trial[i] = min(max(x[i] + sign * step, low[i]), high[i])
                value = score(trial)
                if value < best - 1e-15:
                    x, best, improved = trial, value, True
                    break
        if not improved:
            step /= 2
    rounded = {n: float(f"{math.exp(v):.4g}") for n, v in zip(names, x, strict=True)}  # 4 digits: the data's
    fitted = replace(prior, **rounded)
    return FitResult(
        source, tuple(points), prior, fitted, _objective(points, fitted, prior), evaluations, tuple(skipped)
    )


@functools.cache
def published_fit() -> FitResult:
    """The fit of the published timings (computed once per process)."""
    return fit(published_points(), "published")


# ---- the report ----------------------------------------------------------------------------------


def _ms(point: Point, us: float | None) -> str:
    return "—" if us is None else f"{us * point.steps / 1e3:.2f}"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:+.1%}"


def _what(name: str) -> str:
    for f in fields(CostConstants):
        if f.name == name:
            return {
                "triton_step_latency_cycles": "triton-fused: SM cycles of one step's dependent chain",
                "step_latency_us": "every family: dependent latency of a step's pointwise tail (µs)",
                "load_latency_cycles": "cuda-alternating: global-load latency a GEMM k slice waits (cycles)",
            }.get(name, name)
    raise KeyError(name)


def render_report(result: FitResult, command: str) -> str:
    """``reports/cost_calibration.md``: inputs, fitted constants, residuals, unfitted comparisons."""
    from tunekit import __version__

    lines = [
        "# Cost-model calibration",
        "",
        f"Generated by `{command}` (tunekit {__version__}, `tunekit/calibrate.py`); do not edit by hand.",
        "",
        f"Data: {PUBLISHED_SOURCE if result.source == 'published' else MEASURED_SOURCE}.",
        "Each published time is compared with the fastest configuration the model predicts for the tunekit "
        "family of the same structure (triton-fused for FlashRNN's Triton kernel, cuda-alternating for its "
        "alternating CUDA kernel) on the `h100` profile (H100 SXM5). FlashRNN's fused CUDA kernel is a "
        "different design from tunekit's cuda-fused and cuDNN has no tunekit counterpart: both are reported "
        "beside the model's predictions and not fitted.",
        "",
        "Fit: minimise the mean squared log(predicted / measured) over the fitted points plus "
        f"{PRIOR_WEIGHT} x the squared log distance of each constant from its stated value; deterministic "
        f"pattern search in log space within the bounds below ({result.evaluations} evaluations; "
        f"objective {result.objective:.5f}).",
        "",
        "## Fitted constants",
        "",
        "| constant | what it is | stated | before calibration | fitted | bounds |",
        "|---|---|---:|---:|---:|---|",
    ]
    for name in sorted(FITTED):
        lo, hi = FITTED[name]
        lines.append(
            f"| `{name}` | {_what(name)} | {getattr(result.prior, name):g} | "
            f"{getattr(UNCALIBRATED, name):g} | "
            f"**{getattr(result.fitted, name):g}** | {lo:g} .. {hi:g} |"
        )
    others = [
        f"`{f.name}` = {getattr(result.fitted, f.name):g}"
        for f in fields(CostConstants)
        if f.name not in FITTED
    ]
    lines += ["", "Not fitted (stated values kept): " + ", ".join(others) + ".", ""]
    lines += [
        "## Inputs and residuals",
        "",
        "Times in ms for the whole sequence; residual = predicted / measured - 1.",
        "",
        "| kernel | tunekit family | D (heads) | direction | measured | before | residual before | fitted "
        "| residual | fitted? |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for p in result.points:
        before, after = p.predicted_us(UNCALIBRATED), p.predicted_us(result.fitted)
        fam = p.family or "—"
        if p.family is not None and not p.assignments:
            fam += " (infeasible)"
        lines.append(
            f"| {p.label} | {fam} | {p.problem.head_dim} ({p.problem.heads}) | {p.problem.direction} | "
            f"{_ms(p, p.measured_us)} | {_ms(p, before)} | {_pct(result.residual(p, UNCALIBRATED))} | "
            f"{_ms(p, after)} | {_pct(result.residual(p))} | {'yes' if p.fit else 'no'} |"
        )
    lines += [
        "",
        f"Largest |residual| over the fitted points: **{result.worst_residual:.1%}** (target: 25%).",
        "",
        "The triton-fused step latency is the term the uncalibrated model lacked: one step of the kernel "
        "is a dependent chain (load Wx, the gates' `tl.dot`s with their layout conversions through shared "
        "memory, the pointwise step, the state store) that nothing overlaps, so it adds to every step "
        "however small the tiles.",
    ]
    if result.skipped:
        lines += ["", "Records left out:", "", *(f"- {s}" for s in result.skipped)]
    return "\n".join(lines) + "\n"
