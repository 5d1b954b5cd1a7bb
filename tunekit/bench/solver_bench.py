"""Solver benchmark: how long ``tunekit.tuning.tune(..., backend="auto")`` takes, per solver, over a grid.

Every shape of the grid (cells x head dims x heads x batch x dtype x GPU) is tuned end to end (problem
to ranked top-5 over all three families, or to the explanation when nothing is feasible) with tune's
default solver ("auto"); native and CP-SAT, slower, time every n-th shape. The report gives median,
p90 and max milliseconds per solver, the feasible counts per family, whether the solvers agree, a
coverage table (cuda-fused on the A100: feasibility against head dim, holes in it, the largest
feasible head dim per dtype and cell) and, when :mod:`tunekit.bench.baselines` is present, FlashRNN's
and Kernel Tuner's figures beside tunekit's for a few shapes. The benchmark reports; it asserts
nothing. ``tunekit bench solvers`` runs it and writes ``reports/solver_bench.{md,json}``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tunekit.constraints import FAMILIES, build_space
from tunekit.hardware import load_profile
from tunekit.problem import Problem
from tunekit.solvers import solve
from tunekit.solvers.vector import vector_solutions
from tunekit.tuning import NoFeasibleConfig, tune

__all__ = ["DEFAULT_GRID", "QUICK_GRID", "Grid", "coverage", "render_markdown", "run", "write_reports"]

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
    # (solver, n): that solver times every n-th shape (the slow ones sample the grid)
    solvers: tuple[tuple[str, int], ...] = (("auto", 1), ("native", 1), ("cpsat", 1))
    coverage_dims: tuple[int, ...] = field(default=())  # head dims of the coverage table; () skips it
    coverage_pairs: tuple[tuple[str, str], ...] = (("lstm", "bfloat16"),)  # (cell, dtype) rows
    baseline_dims: tuple[int, ...] = ()  # head dims for the FlashRNN / Kernel Tuner side-by-side

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


HEAD_DIMS = (32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 2304, 3072, 4096)
DEFAULT_GRID = Grid(
    cells=("lstm", "gru", "slstm", "elman"),
    head_dims=HEAD_DIMS,
    heads=(1, 4),
    batches=(1, 16, 64),
    dtypes=("bfloat16", "float32"),
    gpus=("a100", "h100"),
    solvers=(("auto", 1), ("native", 16), ("cpsat", 32)),
    coverage_dims=tuple(range(16, 4096 + 1, 16)),
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
)


def _time_one(gpu: str, problem: Problem, solver: str) -> dict[str, Any]:
    """One end-to-end ``tune`` call: milliseconds, the choice, feasible counts per family."""
    start, cpu = time.perf_counter(), time.process_time()
    try:
        result = tune(problem, gpu, backend="auto", top=5, solver=solver)
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


def _stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return {"n": len(values), "median": statistics.median(ordered), "p90": p90, "max": ordered[-1]}


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


def run(grid: Grid = DEFAULT_GRID, progress: Progress | None = None) -> dict[str, Any]:
    """Tune every shape of ``grid`` with each of its solvers and return the report (JSON-ready)."""
    say = progress or (lambda _: None)
    solvers = [name for name, _ in grid.solvers]
    rows = []
    start, load_before = time.perf_counter(), os.getloadavg()
    for i, (gpu, problem) in enumerate(grid.problems()):
        say(f"[{i + 1}/{grid.size}] {gpu} {problem.cell} {problem.tag}")
        row: dict[str, Any] = {"gpu": load_profile(gpu).name, **asdict(problem)}
        for solver, every in grid.solvers:
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
    cov = []
    if grid.coverage_dims:
        say("coverage: cuda-fused on a100")
        cov = coverage("a100", "cuda-fused", grid.coverage_pairs, grid.coverage_dims)
    first = solvers[0]  # the solver that times every shape
    dims = grid.coverage_dims
    no_baselines = {"available": False, "note": "not run (no baseline head dims in this grid)", "rows": []}
    return {
        "generated_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "grid": asdict(grid) | {"coverage_dims": [min(dims), max(dims), len(dims)] if dims else []},
        "shapes": len(rows),
        "sweep_seconds": sweep,
        "load_average": {"start": load_before[0], "end": os.getloadavg()[0]},
        "summary_ms": {s: _stats([r[s]["ms"] for r in rows if s in r]) for s in solvers},
        "summary_cpu_ms": {s: _stats([r[s]["cpu_ms"] for r in rows if s in r]) for s in solvers},
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
        "baselines": _baselines(grid, say) if grid.baseline_dims else no_baselines,
        "rows": rows,
    }


def _ms(stats: dict[str, float], key: str) -> str:
    return f"{stats[key]:.1f}" if stats.get("n") else "—"


def _three(stats: dict[str, float]) -> tuple[str, str, str]:
    return _ms(stats, "median"), _ms(stats, "p90"), _ms(stats, "max")


def _slice(rows: list[dict[str, Any]], gpu: str) -> list[dict[str, Any]]:
    """The rows of one illustrative slice: lstm, bfloat16, one head, batch 16 on ``gpu``."""
    keep = {"cell": "lstm", "dtype": "bfloat16", "heads": 1, "batch": 16, "gpu": gpu}
    return [r for r in rows if all(r[k] == v for k, v in keep.items())]


def render_markdown(report: dict[str, Any]) -> str:
    """The report for people: timings per solver, feasibility, coverage, baselines."""
    g = report["grid"]
    out = [
        '# Solver benchmark: `tune(problem, gpu, backend="auto")` end to end',
        "",
        f"Generated {report['generated_utc']} on {report['machine']} by `tunekit bench solvers`"
        f" ({report['shapes']} shapes, {report['sweep_seconds']:.0f} s). Each time is one cold call"
        " from the problem to the ranked top-5 over all three families (or to NoFeasibleConfig when"
        " nothing is feasible; its explanation is timed apart, below): model building, enumeration,"
        " cost ranking, re-verification.",
        "",
        f"Grid: cells {', '.join(g['cells'])}; head dims {', '.join(map(str, g['head_dims']))}; heads"
        f" {', '.join(map(str, g['heads']))}; batch {', '.join(map(str, g['batches']))}; dtypes"
        f" {', '.join(g['dtypes'])}; GPUs {', '.join(g['gpus'])}. Solvers: "
        + ", ".join(
            f"{name} on every {n}-th shape" if n > 1 else f"{name} on every shape" for name, n in g["solvers"]
        )
        + ". `auto` is tune's default: numpy evaluation of every named constraint over the Cartesian"
        " product of the domains (`vector`) where a space has at most 2^20 points, else native.",
        "",
        "## Time per problem (ms)",
        "",
        "Wall time, and the CPU time of this process (the machine is shared: its 1-minute load average"
        f" was {report['load_average']['start']:.1f} at the start and {report['load_average']['end']:.1f}"
        " at the end of the sweep on 2 cores, so wall times include waiting for other jobs).",
        "",
        "| solver | GPU | shapes | median | p90 | max | CPU median | CPU p90 | CPU max |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by_gpu_cpu = report.get("summary_cpu_ms_by_gpu", {})
    for solver, stats in report["summary_ms"].items():
        cpu = report["summary_cpu_ms"][solver]
        out.append(_row(solver, "all", stats["n"], *_three(stats), *_three(cpu)))
        for gpu, by_solver in report["summary_ms_by_gpu"].items():
            cpu_gpu = by_gpu_cpu.get(gpu, {}).get(solver, {})
            out.append(
                _row(solver, gpu, by_solver[solver]["n"], *_three(by_solver[solver]), *_three(cpu_gpu))
            )
    out.append("")
    for solver, stats in report["summary_ms"].items():
        if stats.get("n"):
            cpu = report["summary_cpu_ms"][solver]
            wall = "met" if stats["median"] <= 50 and stats["max"] <= 500 else "NOT met"
            cpu_time = "met" if cpu["median"] <= 50 and cpu["max"] <= 500 else "NOT met"
            out.append(f"- Target (median ≤ 50 ms, max ≤ 500 ms) with {solver}: wall {wall}, CPU {cpu_time}.")
    out += [
        "",
        "## Feasibility",
        "",
        "Shapes with at least one feasible configuration, per family: "
        + ", ".join(f"{f} {n}" for f, n in report["feasible_shapes_by_family"].items())
        + ". Chosen by `auto`: "
        + ", ".join(f"{f} {n}" for f, n in report["chosen_by_family"].items())
        + f"; nothing feasible: {report['infeasible_shapes']}."
        + _explain_note(report["explain_ms"]),
        "",
        f"All solvers compared on {report['solvers_compared']} shapes (same chosen configuration and"
        f" same feasible counts per family): {len(report['solvers_disagree'])} disagreements."
        + "".join(f"\n- {d}" for d in report["solvers_disagree"]),
    ]
    solvers = list(report["summary_ms"])
    first = solvers[0]
    for gpu in report["summary_ms_by_gpu"]:
        rows = _slice(report["rows"], gpu)
        if not rows:
            continue
        out += [
            "",
            f"### lstm, bfloat16, heads 1, batch 16 on {gpu}: feasible configurations per family",
            "",
            _row("D", *FAMILIES, "chosen", "µs/step", *(f"{s} ms" for s in solvers)),
            "|---:|" + "---:|" * len(FAMILIES) + "---|---:|" + "---:|" * len(solvers),
        ]
        for r in rows:
            n = r[first]
            t = f"{n['time_us']:.2f}" if n["time_us"] is not None else "—"
            times = (f"{r[s]['ms']:.1f}" if s in r else "—" for s in solvers)
            counts = (n["feasible"].get(f, 0) for f in FAMILIES)
            out.append(_row(r["head_dim"], *counts, n["backend"] or "none", t, *times))
    if report["coverage"]:
        out += [
            "",
            "## Coverage: cuda-fused on the A100 against head dim",
            "",
            "Feasibility of cuda-fused (batch 16, one head) for every probed head dim; a hole is an"
            " infeasible head dim between two feasible ones (FlashRNN's solver has one at D=2048).",
            "",
            "| cell | dtype | feasible / probed | largest feasible D | monotone | holes |",
            "|---|---|---:|---:|---|---|",
        ]
        for c in report["coverage"]:
            holes = ", ".join(map(str, c["holes"][:12])) + (" …" if len(c["holes"]) > 12 else "") or "none"
            feasible = f"{c['feasible']} / {c['probed'][2]}"
            monotone = "yes" if c["monotone"] else "no"
            out.append(_row(c["cell"], c["dtype"], feasible, c["largest_feasible"], monotone, holes))
        lo, hi, _ = report["coverage"][0]["probed"]
        out.append(f"\nProbed head dims: multiples of 16 from {lo} to {hi} (as in the grid).")
    b = report["baselines"]
    out += ["", "## Baselines side by side", ""]
    if not b["available"] or not b["rows"]:
        out.append(f"**Baseline columns empty:** {b['note']}")
    else:
        out += [
            "Seconds to a configuration for one shape (lstm, bfloat16, heads 1, batch 16). FlashRNN: its"
            " ConstrINT solve of the fused kernel's constraints (one solution, cold, no compile); Kernel"
            " Tuner: building its search space from restrictions written for it (it has no hardware"
            ' model); tunekit: `tune(..., backend="auto")`, every family enumerated and ranked, timed'
            " in this run. Ratios > 1: tunekit is faster. FlashRNN finds one configuration (the first in"
            " its value order, untimed); tunekit counts and ranks all of them. " + b["note"] + ".",
            "",
            _row(
                "GPU",
                "D",
                "tunekit s",
                "chosen (feasible)",
                "FlashRNN s",
                "FlashRNN / tunekit (wall, cpu)",
                "Kernel Tuner s (configs)",
                "Kernel Tuner / tunekit",
            ),
            "|---|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in b["rows"]:
            fr, kt = r["flashrnn"], r["kernel_tuner"]
            ours = f"{r['tunekit_seconds']:.3f}"
            chosen = f"{r['tunekit_backend'] or 'none'} ({r['tunekit_feasible']})"
            fr_ratio = (
                f"{_ratio(r['ratio_flashrnn_over_tunekit'])}, {_ratio(r['cpu_ratio_flashrnn_over_tunekit'])}"
            )
            kt_ratio = _ratio(r["ratio_kernel_tuner_over_tunekit"])
            out.append(
                _row(
                    r["gpu"],
                    r["head_dim"],
                    ours,
                    chosen,
                    _baseline_cell(fr),
                    fr_ratio,
                    _baseline_cell(kt),
                    kt_ratio,
                )
            )
    slow = sorted(report["rows"], key=lambda r: -r[first]["ms"])[:10]
    out += [
        "",
        f"## Slowest shapes ({first})",
        "",
        "| GPU | cell | D | heads | batch | dtype | ms | chosen |",
        "|---|---|---:|---:|---:|---|---:|---|",
    ]
    for r in slow:
        out.append(
            f"| {r['gpu']} | {r['cell']} | {r['head_dim']} | {r['heads']} | {r['batch']} | {r['dtype']} |"
            f" {r[first]['ms']:.1f} | {r[first]['backend'] or 'none'} |"
        )
    return "\n".join(out) + "\n"


def _explain_note(stats: dict[str, float]) -> str:
    if not stats.get("n"):
        return ""
    return (
        " Where nothing is feasible, `tune` raises at once and the explanation (conflicting"
        " constraints, nearest feasible shapes) is computed when read: median"
        f" {stats['median']:.0f} ms, max {stats['max']:.0f} ms more, not counted in the times above."
    )


def _row(*cells: Any) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _baseline_cell(result: dict[str, Any]) -> str:
    if not result["installed"]:
        return result["note"] or "not installed"
    found = f"{result['solutions_found']:,} found" + (f", {result['note']}" if result["note"] else "")
    return f"{result['seconds']:.3f} ({found})"


def _ratio(value: float | None) -> str:
    return f"{value:,.0f}x" if value is not None else "—"


def _columns(solvers: list[str]) -> list[str]:
    first = solvers[0]
    head = ["gpu", "cell", "head_dim", "heads", "batch", "dtype", "direction", "config", "backend", "time_us"]
    head += [f"feasible_{f}" for f in FAMILIES] + [f"{first}_ms", f"{first}_cpu_ms"]
    return head + [f"{s}_{unit}" for s in solvers[1:] for unit in ("ms", "cpu_ms")]


def _compact(row: dict[str, Any], solvers: list[str]) -> list[Any]:
    """One shape as a list in ``_columns`` order (times rounded to 0.01 ms)."""
    first = row[solvers[0]]
    time_us = None if first["time_us"] is None else round(first["time_us"], 3)
    out = [row[k] for k in ("gpu", "cell", "head_dim", "heads", "batch", "dtype", "direction")]
    out += [first["config"], first["backend"], time_us, *(first["feasible"].get(f, 0) for f in FAMILIES)]
    for s in solvers:
        out += [round(row[s]["ms"], 2), round(row[s]["cpu_ms"], 2)] if s in row else [None, None]
    return out


def write_reports(
    report: dict[str, Any], out_dir: str | Path = "reports", stem: str = "solver_bench"
) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` under ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(render_markdown(report))
    # one short line per shape keeps the file small and still readable
    solvers = list(report["summary_ms"])
    head = {k: v for k, v in report.items() if k != "rows"}
    head["row_columns"] = _columns(solvers)  # each row below is a list in this order; null: not run
    head = json.dumps(head, indent=1, default=str)
    rows = ",\n  ".join(json.dumps(_compact(r, solvers), separators=(",", ":")) for r in report["rows"])
    js.write_text(head[:-2] + ',\n "rows": [\n  ' + rows + "\n ]\n}\n")
    return md, js
