"""Solver benchmark: how long ``tunekit.tuning.tune(..., backend="auto")`` takes, per solver, over a grid.

Every shape of the grid (cells x head dims x heads x batch x dtype x GPU) is tuned end to end (problem
to ranked top-5 over all three families, or to the explanation when nothing is feasible) with tune's
default solver ("auto"), and right beside it by the previous pipeline ("previous":
:func:`tunekit.bench.solver_bench_previous.tune_previous`, the same default solver without the
vectorised pricing), the two alternating which goes first, so that both see the same load on a
shared machine; native and CP-SAT time every n-th shape. The report gives median, p90 and max
milliseconds per solver, the speedup of auto over previous shape by shape, the feasible counts per
family, whether the solvers agree (previous included: the same choice and counts everywhere), a
coverage table (cuda-fused on the A100: feasibility against head dim, holes in it, the largest
feasible head dim per dtype and cell) and, when :mod:`tunekit.bench.baselines` is present, FlashRNN's
and Kernel Tuner's figures beside tunekit's for a few shapes. The benchmark reports; it asserts
nothing. ``tunekit bench solvers`` runs it and writes ``reports/solver_bench.{md,json}`` (rendering:
:mod:`tunekit.bench.solver_bench_report`).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunekit.bench.solver_bench_previous import tune_previous
from tunekit.bench.solver_bench_report import render_markdown, write_reports  # the report, re-exported
from tunekit.constraints import FAMILIES, build_space
from tunekit.constraints.cuda_fused import physical_bound, r_bytes
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import solve
from tunekit.solvers.vector import vector_solutions
from tunekit.tuning import NoFeasibleConfig, tune

__all__ = [
    "DEFAULT_GRID",
    "PREVIOUS",
    "QUICK_GRID",
    "Grid",
    "coverage",
    "import_time",
    "render_markdown",
    "run",
    "write_reports",
]

# The name under which the previous pipeline is timed, beside the solvers (it uses the default one).
PREVIOUS = "previous"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Grid:
    """The shapes to tune: every combination of these values, on every GPU."""

    cells: tuple[str, ...]
    head_dims: tuple[int, ...]
    heads: tuple[int, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    gpus: tuple[str, ...]
    # (solver, n): that solver times every n-th shape (the slow ones sample the grid); PREVIOUS
    # is the previous pipeline with the default solver
    solvers: tuple[tuple[str, int], ...] = (("auto", 1), (PREVIOUS, 1), ("native", 1), ("cpsat", 1))
    coverage_dims: tuple[int, ...] = field(default=())  # head dims of the coverage table; () skips it
    coverage_pairs: tuple[tuple[str, str], ...] = (("lstm", "bfloat16"),)  # (cell, dtype) rows
    baseline_dims: tuple[int, ...] = ()  # head dims for the FlashRNN / Kernel Tuner side-by-side
    flashrnn_shapes: tuple[tuple[int, int], ...] = ()  # (head dim, heads): LSTM bf16 B=16, every solver

    def problems(self) -> Iterator[tuple[str, Problem]]:
        """(gpu, problem) for every shape, GPU-major then cell, dtype, head dim, heads, batch."""
        for gpu in self.gpus:
            for cell in self.cells:
                for dtype in self.dtypes:
                    for d in self.head_dims:
                        for n in self.heads:
                            for b in self.batches:
                                yield gpu, Problem(cell, batch=b, heads=n, head_dim=d, dtype=dtype)

    @property
    def size(self) -> int:
        return (
            len(self.gpus)
            * len(self.cells)
            * len(self.dtypes)
            * len(self.head_dims)
            * len(self.heads)
            * len(self.batches)
        )


HEAD_DIMS = (16, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 2304, 3072, 4096)
# FlashRNN's benchmark shapes (LSTM, bf16, B=16): head dim x heads = 768 hidden units each
FLASHRNN_SHAPES = ((16, 48), (32, 24), (64, 12), (128, 6), (256, 3), (768, 1))


DEFAULT_GRID = Grid(
    cells=("lstm", "gru", "slstm", "elman"),
    head_dims=HEAD_DIMS,
    heads=(1, 4),
    batches=(1, 16, 256),
    dtypes=("bfloat16", "float16", "float32"),
    gpus=("a100", "h100"),
    solvers=(("auto", 1), (PREVIOUS, 1), ("native", 1), ("cpsat", 1)),
    coverage_dims=tuple(range(16, 4096 + 1, 16)),
    flashrnn_shapes=FLASHRNN_SHAPES,
    coverage_pairs=(
        ("lstm", "float32"),
        ("lstm", "float16"),
        ("lstm", "bfloat16"),
        ("gru", "bfloat16"),
        ("slstm", "bfloat16"),
        ("elman", "bfloat16"),
    ),
    baseline_dims=(64, 256, 768, 1024, 2048, 2304),
)
QUICK_GRID = Grid(
    cells=("lstm",),
    head_dims=(64, 768),
    heads=(1,),
    batches=(16,),
    dtypes=("bfloat16",),
    gpus=("a100",),
    coverage_dims=(64, 768, 1024),
    coverage_pairs=(("lstm", "float32"), ("lstm", "float16"), ("lstm", "bfloat16")),
    flashrnn_shapes=((64, 12),),
)


def _time_one(gpu: str, problem: Problem, solver: str) -> dict[str, Any]:
    """One end-to-end ``tune`` call (``tune_previous`` for PREVIOUS): milliseconds, the choice,
    feasible counts per family."""
    tuner, solver = (tune_previous, "auto") if solver == PREVIOUS else (tune, solver)
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = tuner(problem, gpu, backend="auto", top=5, solver=solver)
    except NoFeasibleConfig as exc:
        ms, cpu_ms = (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3
        start = time.perf_counter()
        conflicts = {e.family: [c.name for c in e.conflicts] for e in exc.explanations}
        return {
            "ms": ms,
            "cpu_ms": cpu_ms,
            "explain_ms": (time.perf_counter() - start) * 1e3,  # the explanation, read after the raise
            "backend": None,
            "config": None,
            "time_us": None,
            "feasible": {},
            "conflicts": conflicts,
        }
    ms, cpu_ms = (time.perf_counter() - start) * 1e3, (time.process_time() - cpu) * 1e3
    return {
        "ms": ms,
        "cpu_ms": cpu_ms,
        "backend": result.backend,
        "config": result.config.name,
        "time_us": result.predicted["time_us_per_step"],
        "feasible": {k: v for k, v in result.feasible_count.items() if k != "total"},
    }


# A fresh interpreter imports the tuner: wall and CPU seconds of the import, and whether SymPy
# (which only code derivation needs) got loaded with it.
_IMPORT_PROBE = (
    "import sys, time; w, c = time.perf_counter(), time.process_time(); import tunekit.tuning; "
    "print(time.perf_counter() - w, time.process_time() - c, 'sympy' in sys.modules)"
)


def import_time(runs: int = 3) -> dict[str, Any]:
    """``import tunekit.tuning`` in ``runs`` fresh interpreters: the best wall and CPU seconds
    (the machine is shared: the least disturbed run), and whether any of them loaded SymPy."""
    out = []
    for _ in range(runs):
        command = [sys.executable, "-c", _IMPORT_PROBE]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        wall, cpu, sympy = done.stdout.split()
        out.append((float(wall), float(cpu), sympy == "True"))
    return {
        "runs": runs,
        "wall_s": min(w for w, _, _ in out),
        "cpu_s": min(c for _, c, _ in out),
        "sympy_loaded": any(s for _, _, s in out),
    }


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"n": len(values), "median": statistics.median(ordered), "p90": p90, "max": ordered[-1]}


def _speedup(rows: Sequence[dict[str, Any]], solver: str = "auto") -> dict[str, Any]:
    """Shape by shape, the previous pipeline's time over ``solver``'s (wall and CPU): > 1 is faster."""
    both = [r for r in rows if solver in r and PREVIOUS in r]
    out: dict[str, Any] = {"solver": solver, "shapes": len(both)}
    for unit in ("ms", "cpu_ms"):
        ratios = [r[PREVIOUS][unit] / r[solver][unit] for r in both if r[solver][unit] > 0]
        out[unit] = _stats(ratios) | ({"min": min(ratios)} if ratios else {})
    return out


def coverage(
    gpu: str, family: str, pairs: Sequence[tuple[str, str]], head_dims: Sequence[int], batch: int = 16
) -> list[dict[str, Any]]:
    """Per (cell, dtype): how many head dims are feasible, the largest, and the holes.

    A hole is an infeasible head dim between two feasible ones.
    """
    profile = load_profile(gpu)
    rows = []
    for cell, dtype in pairs:
        ok = [
            d
            for d in head_dims
            if _feasible(build_space(family, Problem(cell, batch, 1, d, dtype=dtype), profile))
        ]
        holes = [d for d in head_dims if ok and ok[0] < d < ok[-1] and d not in ok]
        rows.append(
            {
                "gpu": profile.name,
                "family": family,
                "cell": cell,
                "dtype": dtype,
                "batch": batch,
                "probed": [min(head_dims), max(head_dims), len(head_dims)],
                "feasible": len(ok),
                "largest_feasible": ok[-1] if ok else None,
                "monotone": not holes,
                "holes": holes,
            }
        )
    return rows


def _feasible(space: Any) -> bool:
    found = vector_solutions(space.model)
    return bool(found) if found is not None else solve(space.model) is not None


# FlashRNN's solver takes 15-320 s per shape here, so this benchmark does not re-run it: it reads the
# figures that `python -m tunekit.bench.baselines` measured and stored, for the same shapes.
BASELINES_JSON = Path("reports/baselines.json")


def _stored_flashrnn(path: Path) -> tuple[dict[tuple, dict[str, Any]], str]:
    """FlashRNN results stored by tunekit.bench.baselines, by (gpu, cell, D, heads, batch, dtype)."""
    if not path.exists():
        return {}, f"{path} not found: run `python -m tunekit.bench.baselines` to measure FlashRNN"
    data = json.loads(path.read_text())
    found = {}
    for r in data.get("rows", []):
        fr = r.get("flashrnn") or {}
        if fr.get("installed") and "timeout" not in fr.get("note", ""):
            found[(r["gpu"], r["cell"], r["head_dim"], r["heads"], r["batch"], r["dtype"])] = fr
    return found, f"FlashRNN seconds from {path} (generated {data.get('generated_utc', '?')})"


def _baselines(grid: Grid, progress: Progress, stored: Path = BASELINES_JSON) -> dict[str, Any]:
    """FlashRNN (stored) and Kernel Tuner (timed now) beside tunekit for a few shapes."""
    try:
        from tunekit.bench import baselines
    except ImportError as err:
        return {"available": False, "note": f"tunekit.bench.baselines not importable: {err}", "rows": []}
    flashrnn, note = _stored_flashrnn(stored)
    rows = []
    for d in grid.baseline_dims:
        cell, gpu = grid.cells[0], load_profile(grid.gpus[0]).name
        problem = Problem(cell, batch=16, heads=1, head_dim=d, dtype="bfloat16")
        progress(f"baselines D={d}")
        ours = _time_one(gpu, problem, "auto")
        seconds = ours["ms"] / 1e3
        fr = flashrnn.get((gpu, cell, d, 1, 16, "bfloat16"))
        fr_row = {
            "installed": False,
            "seconds": 0.0,
            "solutions_found": 0,
            "note": "not measured for this shape",
        }
        if fr:
            fr_row = {k: fr[k] for k in ("installed", "seconds", "solutions_found", "note")}
            fr_row["cpu_seconds"] = (fr.get("details") or {}).get("cpu_seconds")
        cpu_seconds = ours["cpu_ms"] / 1e3
        kt = _baseline_row(baselines.time_kernel_tuner(cell, d, 1, 16, "bfloat16", gpu))
        rows.append(
            {
                "gpu": gpu,
                "cell": cell,
                "head_dim": d,
                "tunekit_seconds": seconds,
                "tunekit_cpu_seconds": cpu_seconds,
                "tunekit_backend": ours["backend"],
                "tunekit_feasible": sum(ours["feasible"].values()),
                "flashrnn": fr_row,
                "kernel_tuner": kt,
                "ratio_flashrnn_over_tunekit": fr_row["seconds"] / seconds if fr_row["seconds"] else None,
                "cpu_ratio_flashrnn_over_tunekit": fr_row["cpu_seconds"] / cpu_seconds
                if fr_row.get("cpu_seconds")
                else None,
                "ratio_kernel_tuner_over_tunekit": kt["seconds"] / seconds if kt["seconds"] else None,
            }
        )
    return {"available": True, "note": note, "rows": rows}


def _baseline_row(result: Any) -> dict[str, Any]:
    return {
        "installed": result.installed,
        "seconds": result.seconds,
        "solutions_found": result.solutions_found,
        "note": result.note,
    }


def _bound_coverage(rows: list[dict[str, Any]], first: str) -> dict[str, Any]:
    """Share of the sweep's problems under cuda-fused's physical bound that got a configuration.

    ``raw``: R fits every SM's registers + shared memory; ``usable``: less the named reserves no
    such kernel avoids (``tunekit.constraints.cuda_fused.physical_bound``). Forward problems.
    """
    out: dict[str, Any] = {}
    for kind in ("raw", "usable"):
        under = covered = 0
        missed = []
        for r in rows:
            problem = Problem(r["cell"], r["batch"], r["heads"], r["head_dim"], r["dtype"], r["direction"])
            if r_bytes(problem) > getattr(physical_bound(problem, load_profile(r["gpu"])), kind):
                continue
            under += 1
            if r[first]["feasible"].get("cuda-fused", 0) > 0:
                covered += 1
            else:
                missed.append({k: r[k] for k in ("gpu", "cell", "dtype", "head_dim", "heads", "batch")})
        out[kind] = {
            "under_bound": under,
            "covered": covered,
            "missed": missed[:20],
            "missed_count": len(missed),
        }
    return out


def run(grid: Grid = DEFAULT_GRID, progress: Progress | None = None) -> dict[str, Any]:
    """Tune every shape of ``grid`` with each of its solvers and return the report (JSON-ready)."""
    say = progress or (lambda _: None)
    solvers = [name for name, _ in grid.solvers]
    rows = []
    # One untimed call per solver first: the one-time cost of a process (importing OR-tools, about
    # 0.4 s; numpy's first use) is reported apart instead of being charged to the first shape.
    first_call_ms = {}
    for solver in solvers:
        say(f"first call: {solver}")
        warm = Problem("lstm", batch=16, heads=1, head_dim=64)
        first_call_ms[solver] = _time_one(grid.gpus[0], warm, solver)["ms"]
    start, load_before = time.perf_counter(), os.getloadavg()
    for i, (gpu, problem) in enumerate(grid.problems()):
        say(f"[{i + 1}/{grid.size}] {gpu} {problem.cell} {problem.tag}")
        row: dict[str, Any] = {"gpu": load_profile(gpu).name, **asdict(problem)}
        # every other shape in reverse order: no solver always runs first (caches warmed by the one before)
        for solver, every in grid.solvers if i % 2 == 0 else reversed(grid.solvers):
            if i % every == 0:
                row[solver] = _time_one(gpu, problem, solver)
        rows.append(row)
    sweep = time.perf_counter() - start
    compared = [r for r in rows if all(s in r for s in solvers)]
    disagree = [
        {k: r[k] for k in ("gpu", "cell", "head_dim", "heads", "batch", "dtype")}
        for r in compared
        if len({(r[s]["config"], json.dumps(r[s]["feasible"], sort_keys=True)) for s in solvers}) > 1
    ]
    bound = _bound_coverage(rows, first=solvers[0])
    flashrnn = []
    if grid.flashrnn_shapes:
        say("FlashRNN benchmark shapes")
        flashrnn = [
            {"gpu": load_profile(gpu).name, "head_dim": d, "heads": n}
            | {s: _time_one(gpu, Problem("lstm", batch=16, heads=n, head_dim=d), s) for s in solvers}
            for gpu in grid.gpus
            for d, n in grid.flashrnn_shapes
        ]
    cov = []
    if grid.coverage_dims:
        say("coverage: cuda-fused on a100")
        cov = coverage("a100", "cuda-fused", grid.coverage_pairs, grid.coverage_dims)
    first = solvers[0]  # the solver that times every shape
    say("import time of tunekit.tuning")
    imports = import_time()
    dims = grid.coverage_dims
    no_baselines = {"available": False, "note": "not run (no baseline head dims in this grid)", "rows": []}
    return {
        "generated_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "grid": asdict(grid) | {"coverage_dims": [min(dims), max(dims), len(dims)] if dims else []},
        "shapes": len(rows),
        "sweep_seconds": sweep,
        "first_call_ms": first_call_ms,
        "import_tuning": imports,
        "load_average": {"start": load_before[0], "end": os.getloadavg()[0]},
        "summary_ms": {s: _stats([r[s]["ms"] for r in rows if s in r]) for s in solvers},
        "summary_cpu_ms": {s: _stats([r[s]["cpu_ms"] for r in rows if s in r]) for s in solvers},
        "speedup": _speedup(rows, solvers[0]) if PREVIOUS in solvers and solvers[0] != PREVIOUS else None,
        "summary_ms_by_gpu": {
            g: {s: _stats([r[s]["ms"] for r in rows if s in r and r["gpu"] == g]) for s in solvers}
            for g in dict.fromkeys(r["gpu"] for r in rows)
        },
        "summary_cpu_ms_by_gpu": {
            g: {s: _stats([r[s]["cpu_ms"] for r in rows if s in r and r["gpu"] == g]) for s in solvers}
            for g in dict.fromkeys(r["gpu"] for r in rows)
        },
        "feasible_shapes_by_family": {
            f: sum(1 for r in rows if r[first]["feasible"].get(f, 0) > 0) for f in FAMILIES
        },
        "chosen_by_family": {f: sum(1 for r in rows if r[first]["backend"] == f) for f in FAMILIES},
        "infeasible_shapes": sum(1 for r in rows if r[first]["backend"] is None),
        "explain_ms": _stats([r[first]["explain_ms"] for r in rows if "explain_ms" in r[first]]),
        "solvers_compared": len(compared),
        "solvers_disagree": disagree,
        "coverage": cov,
        "bound_coverage": bound,
        "flashrnn_shapes": flashrnn,
        "baselines": _baselines(grid, say) if grid.baseline_dims else no_baselines,
        "rows": rows,
    }
