"""``tunekit report`` and ``tunekit tune --report``: one HTML page with PNG plots per tuning run.

A run is one problem on one hardware profile for the families in question. :func:`collect` tunes
each family (``tunekit.tuning.tune``, every feasible configuration up to :data:`MAX_POINTS`) and
keeps, per configuration, the predicted time, the cost terms and the resource that binds it (the
limit it uses the largest share of); :func:`render` turns that into the page
(``templates/report/page.html.j2``, every string HTML-escaped), the plots (:mod:`tunekit.report_plots`)
and ``report.json`` (the data behind them); :func:`write` puts them into
``<DIR>/<run name>/`` atomically. The run name is built like a canonical configuration name, so the
same run always lands in the same folder, e.g. ``lstm-fwd-auto-D768-N1-B16-bf16-a100-sxm4-80gb``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tunekit
from tunekit.generate_tree import write_tree
from tunekit.hardware import GPUProfile, load_profile
from tunekit.problem import DIRECTIONS, Problem

__all__ = [
    "MAX_POINTS",
    "Measurement",
    "Point",
    "RunReport",
    "collect",
    "render",
    "run_name",
    "stored_measurements",
    "write",
]

# configurations priced and plotted per family: the spaces of today's models hold at most a few
# thousand (the benchmark sweep's largest: 2,000-odd), and 2,000 markers still read as a cloud
MAX_POINTS = 2000
# the cost model's overlapping terms: tunekit.cost.estimate counts only their maximum (the rest of
# the terms add up), so a stacked bar shows the largest of them, then every other term
COMPUTE_TERMS = ("tensor_us", "shared_memory_us", "register_us", "load_latency_us")
REPORT_FORMAT = "tunekit-report"
REPORT_JSON = "report.json"
PAGE = "index.html"


@dataclass(frozen=True)
class Point:
    """One feasible configuration as the cost model sees it."""

    family: str
    name: str
    params: Mapping[str, int]
    time_us: float  # predicted µs per step
    terms: Mapping[str, float]  # cost terms, µs per step
    binding: str  # the limit it uses the largest share of
    binding_share: float  # used / limit of that limit


@dataclass(frozen=True)
class FamilyReport:
    """One family's feasible configurations, best first (at most MAX_POINTS), or why there are none."""

    family: str
    feasible: int
    points: tuple[Point, ...]
    explanation: str | None = None  # when nothing fits: the conflicting constraints, with numbers


@dataclass(frozen=True)
class Measurement:
    """A configuration timed on a GPU (from the tuning database): median µs per step beside the model's."""

    name: str
    family: str
    predicted_us: float
    measured_us: float

    def __post_init__(self) -> None:
        for what in ("predicted_us", "measured_us"):
            value = getattr(self, what)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
                raise ValueError(f"{what}: got {value!r} for {self.name}, expected a positive number of µs")


@dataclass(frozen=True)
class RunReport:
    """Everything one report page shows."""

    problem: Problem
    profile: GPUProfile
    backend: str  # requested: "auto" or one family
    families: tuple[FamilyReport, ...]
    winner: Point | None
    limits: tuple[tuple[str, int, int, str], ...]  # the winner's (constraint, used, limit, unit)
    binding_constraints: tuple[str, ...]
    measurements: tuple[Measurement, ...] = field(default=())

    @property
    def name(self) -> str:
        return run_name(self.problem, self.profile, self.backend)


def run_name(problem: Problem, profile: GPUProfile, backend: str) -> str:
    """The run's folder name, built like a canonical configuration name (its characters only)."""
    family = backend.replace("-", "")
    return f"{problem.cell}-{DIRECTIONS[problem.direction]}-{family}-{problem.tag}-{profile.name}"


def stored_measurements(
    problem: Problem, gpu: str | GPUProfile, backend: str = "auto", *, db: Any = None
) -> tuple[Measurement, ...]:
    """The tuning database's timed ``ok`` records for ``problem`` on ``gpu`` (valid here: the same
    profile, cell, templates and tool versions), sorted by name; none when the database file does
    not exist (nothing is created). ``db``: a path, an open TuningDB, or None for the default."""
    from tunekit.db import TuningDB, resolve_path
    from tunekit.tuning import check_backend

    profile = load_profile(gpu)
    families = check_backend(backend)
    if isinstance(db, TuningDB):
        records = db.matching(profile, problem, families)
    else:
        path = resolve_path(db)
        if not path.exists():
            return ()
        with TuningDB(path) as opened:
            records = opened.matching(profile, problem, families)
    timed = [r for r in records if r.tier == "measured" and r.status == "ok" and r.samples_us]
    return tuple(
        Measurement(r.name, r.family, r.predicted_us, float(r.median_us))
        for r in sorted(timed, key=lambda r: r.name)
        if 0 < r.predicted_us < float("inf")
    )


def _point(space: Any, candidate: Any) -> Point:
    assignment = candidate.config.params
    shares = [(used / limit, name) for name, used, limit, _ in space.limits(assignment) if limit > 0]
    share, binding = max(shares) if shares else (0.0, "none")
    terms = {k: float(v) for k, v in candidate.predicted.items() if k.endswith("_us")}
    return Point(
        family=candidate.backend,
        name=candidate.config.name,
        params=dict(assignment),
        time_us=float(candidate.predicted["time_us_per_step"]),
        terms=terms,
        binding=binding,
        binding_share=float(share),
    )


def collect(
    problem: Problem,
    gpu: str | GPUProfile,
    backend: str = "auto",
    *,
    measurements: Sequence[Measurement] = (),
    solver: str = "auto",
) -> RunReport:
    """Tune every family in question and gather what the page plots.

    Args:
        problem: the layer's shape.
        gpu: a profile name, alias or GPUProfile.
        backend: "auto" (every family) or one family.
        measurements: configurations timed on a GPU (the tuning database's measured records).
        solver: as :func:`tunekit.tuning.tune`.

    A family without any feasible configuration is kept with its explanation; the winner is None
    when no family has one.
    """
    from tunekit.constraints import build_space
    from tunekit.tuning import NoFeasibleConfig, check_backend, tune

    profile = load_profile(gpu)
    families = []
    best = None
    for family in check_backend(backend):
        try:
            result = tune(problem, profile, backend=family, top=MAX_POINTS, solver=solver)
        except NoFeasibleConfig as exc:
            families.append(FamilyReport(family, 0, (), exc.to_text()))
            continue
        space = build_space(family, problem, profile)
        points = tuple(_point(space, c) for c in result.candidates)
        families.append(FamilyReport(family, int(result.feasible_count[family]), points))
        if best is None or points[0].time_us < best[0].time_us:
            best = (points[0], space, result)
    if best is None:
        return RunReport(problem, profile, backend, tuple(families), None, (), (), tuple(measurements))
    winner, space, result = best
    limits = tuple((n, int(u), int(lim), unit) for n, u, lim, unit in space.limits(winner.params))
    return RunReport(
        problem,
        profile,
        backend,
        tuple(families),
        winner,
        limits,
        tuple(result.binding_constraints),
        tuple(measurements),
    )


# ---- the page -------------------------------------------------------------------------------------


def _as_json(report: RunReport) -> dict[str, Any]:
    return {
        "format": REPORT_FORMAT,
        "format_version": 1,
        "tunekit": tunekit.__version__,
        "name": report.name,
        "gpu": report.profile.name,
        "backend": report.backend,
        "problem": asdict(report.problem),
        "winner": None if report.winner is None else asdict(report.winner),
        "limits": [list(row) for row in report.limits],
        "binding_constraints": list(report.binding_constraints),
        "families": [
            {
                "family": f.family,
                "feasible": f.feasible,
                "shown": len(f.points),
                "explanation": f.explanation,
                "points": [asdict(p) for p in f.points],
            }
            for f in report.families
        ],
        "measurements": [asdict(m) for m in report.measurements],
    }


def compared_points(report: RunReport, count: int = 10) -> list[Point]:
    """The best configurations of every family that has any, the same number from each (``count``
    in all, at least one each), fastest first: what the cost-term plot and table compare."""
    shown = [f for f in report.families if f.points]
    each = max(1, count // max(1, len(shown)))
    chosen = [p for f in shown for p in f.points[:each]]
    return sorted(chosen, key=lambda p: (p.time_us, p.name))


def _page_context(report: RunReport, images: Mapping[str, str]) -> dict[str, Any]:
    p = report.problem
    top = compared_points(report)
    return {
        "title": f"tunekit report: {p.cell} D={p.head_dim} N={p.heads} B={p.batch} {p.dtype} {p.direction}",
        "name": report.name,
        "version": tunekit.__version__,
        "problem": p,
        "profile": report.profile,
        "backend": report.backend,
        "winner": report.winner,
        "binding_constraints": list(report.binding_constraints),
        "limits": [
            (name, f"{used:,}", f"{limit:,}", unit, f"{100 * (1 - used / limit):.1f}" if limit else "-")
            for name, used, limit, unit in report.limits
        ],
        "families": report.families,
        "top": top,
        "measurements": report.measurements,
        "images": images,
        "max_points": MAX_POINTS,
    }


def render(report: RunReport) -> dict[str, bytes]:
    """Every file of the run's folder: ``index.html``, the PNG plots and ``report.json``."""
    from tunekit.codegen import environment
    from tunekit.report_plots import plots

    images = plots(report)
    html = environment().overlay(autoescape=True).get_template("report/page.html.j2")
    page = html.render(**_page_context(report, {name: name for name in sorted(images)}))
    files = dict(images)
    files[PAGE] = page.encode("utf-8")
    body = _as_json(report) | {"files": sorted([*images, PAGE])}
    files[REPORT_JSON] = (json.dumps(body, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
    return files


def _check_replaceable(folder: Path) -> None:
    """An existing run folder is replaced only when it holds a previous report and nothing else."""
    try:
        data = json.loads((folder / REPORT_JSON).read_text(encoding="utf-8"))
        ours = data["format"] == REPORT_FORMAT and set(data["files"]) | {REPORT_JSON}
    except (OSError, ValueError, KeyError, TypeError):
        ours = False
    if not ours:
        raise ValueError(
            f"out: {folder} exists and is not a tunekit report; move it away or choose another --out"
        )
    strangers = sorted(p.name for p in folder.iterdir() if p.name not in ours)
    if strangers:
        raise ValueError(
            f"out: {folder} holds a tunekit report and files it did not write ({', '.join(strangers[:5])}); "
            "move them away or choose another --out"
        )


def write(report: RunReport, out: str | os.PathLike = "reports") -> Path:
    """Write the run's page into ``<out>/<run name>/`` (atomically) and return the page's path."""
    folder = Path(out) / report.name
    write_tree(folder, render(report), may_replace=_check_replaceable)
    return folder / PAGE
