"""Report of the solver benchmark: ``reports/solver_bench.md`` for people, ``solver_bench.json`` for machines.

:func:`render_markdown` turns the report dict of :func:`tunekit.bench.solver_bench.run` into markdown
tables (timings per solver, feasibility per family, coverage, baselines); :func:`write_reports` writes it
and the JSON, one compact line per shape.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunekit.constraints import FAMILIES

__all__ = ["render_markdown", "write_reports"]


def _ms(stats: dict[str, float], key: str) -> str:
    return f"{stats[key]:.1f}" if stats.get("n") else "—"


def _three(stats: dict[str, float]) -> tuple[str, str, str]:
    return _ms(stats, "median"), _ms(stats, "p90"), _ms(stats, "max")


def _slice(rows: list[dict[str, Any]], gpu: str) -> list[dict[str, Any]]:
    """The rows of one illustrative slice: lstm, bfloat16, one head, batch 16 on ``gpu``."""
    keep = {"cell": "lstm", "dtype": "bfloat16", "heads": 1, "batch": 16, "gpu": gpu}
    return [r for r in rows if all(r[k] == v for k, v in keep.items())]


def _first_call_note(first: dict[str, float]) -> str:
    if not first:
        return ""
    calls = ", ".join(f"{name} {ms:.0f} ms" for name, ms in first.items())
    return (
        " Before the sweep, each solver made one untimed call (LSTM D=64, B=16), which pays a"
        f" process's one-time imports (OR-tools for cpsat): {calls}."
    )


def render_markdown(report: dict[str, Any]) -> str:
    """The report for people: timings per solver, feasibility, coverage, baselines."""
    g = report["grid"]
    out = [
        '# Solver benchmark: `tune(problem, gpu, backend="auto")` end to end',
        "",
        f"Generated {report['generated_utc']} on {report['machine']} by `tunekit bench solvers`"
        f" ({report['shapes']} shapes, {report['sweep_seconds']:.0f} s). Each time is one call, with"
        " no cache, from the problem to the ranked top-5 over all three families (or to"
        " NoFeasibleConfig when nothing is feasible; its explanation is timed apart, below): model"
        " building, enumeration, cost ranking, re-verification."
        + _first_call_note(report.get("first_call_ms", {})),
        "",
        f"Grid: cells {', '.join(g['cells'])}; head dims {', '.join(map(str, g['head_dims']))}; heads"
        f" {', '.join(map(str, g['heads']))}; batch {', '.join(map(str, g['batches']))}; dtypes"
        f" {', '.join(g['dtypes'])}; GPUs {', '.join(g['gpus'])}. Solvers: "
        + ", ".join(
            f"{name} on every {n}-th shape" if n > 1 else f"{name} on every shape" for name, n in g["solvers"]
        )
        + ". `auto` is tune's default: numpy evaluation of every named constraint over the Cartesian"
        " product of the domains (`vector`) where a space has at most 2^20 points, else native, and"
        " every feasible configuration priced at once (`cost.estimate_all`). `previous` is the"
        " pipeline before that vectorisation (`tunekit.bench.solver_bench_previous.tune_previous`:"
        " a recursive value-checked evaluator, one `cost.estimate` call per configuration, predicted"
        " values re-derived point by point), with the same default solver, timed beside `auto` on"
        " the same shape (the two alternate which goes first).",
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
            wall = "met" if stats["median"] <= 10 and stats["max"] <= 100 else "NOT met"
            cpu_time = "met" if cpu["median"] <= 10 and cpu["max"] <= 100 else "NOT met"
            out.append(f"- Target (median ≤ 10 ms, max ≤ 100 ms) with {solver}: wall {wall}, CPU {cpu_time}.")
    out += _speedup_lines(report) + _import_lines(report.get("import_tuning"))
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
    bound = report.get("bound_coverage")
    if bound:
        out += [
            "",
            "## Coverage of the sweep against the physical bound (cuda-fused)",
            "",
            "A problem is under the bound when R (G_r·N·D² in its dtype) fits the GPU's on-chip memory:"
            " `raw` = every SM's register file + shared memory; `usable` = less the reserves no fused"
            " kernel avoids (registers for addresses/accumulators/B fragments, 1 KB per block, y staging;"
            " `tunekit.constraints.cuda_fused.physical_bound`).",
            "",
            "| bound | problems under it | with a cuda-fused config | share |",
            "|---|---:|---:|---:|",
        ]
        for kind, c in bound.items():
            share = f"{c['covered'] / c['under_bound']:.1%}" if c["under_bound"] else "—"
            out.append(_row(kind, c["under_bound"], c["covered"], share))
        for kind, c in bound.items():
            if c["missed"]:
                out.append(f"\nMissed under the {kind} bound ({c['missed_count']}, first ones):")
                out += [f"- {m}" for m in c["missed"][:8]]
    if report.get("flashrnn_shapes"):
        solvers_all = list(report["summary_ms"])
        out += [
            "",
            "## FlashRNN's benchmark shapes (LSTM, bfloat16, batch 16)",
            "",
            _row("GPU", "D", "heads", "chosen", "µs/step", *(f"{s} ms" for s in solvers_all)),
            "|---|---:|---:|---|---:|" + "---:|" * len(solvers_all),
        ]
        for r in report["flashrnn_shapes"]:
            n = r[solvers_all[0]]
            t = f"{n['time_us']:.2f}" if n["time_us"] is not None else "—"
            times = (f"{r[s]['ms']:.1f}" for s in solvers_all)
            out.append(_row(r["gpu"], r["head_dim"], r["heads"], n["backend"] or "none", t, *times))
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
    # by CPU time: on a loaded machine the wall time of one call mostly says when it waited
    slow = sorted(report["rows"], key=lambda r: -r[first]["cpu_ms"])[:10]
    out += [
        "",
        f"## Slowest shapes ({first}, by CPU time)",
        "",
        "| GPU | cell | D | heads | batch | dtype | CPU ms | wall ms | chosen |",
        "|---|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in slow:
        out.append(
            f"| {r['gpu']} | {r['cell']} | {r['head_dim']} | {r['heads']} | {r['batch']} | {r['dtype']} |"
            f" {r[first]['cpu_ms']:.1f} | {r[first]['ms']:.1f} | {r[first]['backend'] or 'none'} |"
        )
    return "\n".join(out) + "\n"


def _speedup_lines(report: dict[str, Any]) -> list[str]:
    """The vectorised path against the previous pipeline, shape by shape."""
    speedup = report.get("speedup")
    if not speedup or not speedup["shapes"]:
        return []
    solver, wall, cpu = speedup["solver"], speedup["ms"], speedup["cpu_ms"]

    def spread(stats: dict[str, float]) -> str:
        return (
            f"median {stats['median']:.1f}x (min {stats['min']:.1f}x, p90 {stats['p90']:.1f}x,"
            f" max {stats['max']:.1f}x)"
        )

    return [
        "",
        f"### {solver} against the previous pipeline",
        "",
        f"On each of {speedup['shapes']} shapes, timed back to back, the previous pipeline's time over"
        f" {solver}'s: wall {spread(wall)}; CPU {spread(cpu)}. Both return the same configurations"
        " and feasible counts (the comparison below includes `previous`), and tests pin the same"
        " feasible sets, rankings, predictions and binding constraints on a sample of the sweep.",
    ]


def _import_lines(imports: dict[str, Any] | None) -> list[str]:
    if not imports:
        return []
    met = "met" if imports["cpu_s"] <= 0.3 and not imports["sympy_loaded"] else "NOT met"
    sympy = "loaded" if imports["sympy_loaded"] else "not loaded"
    return [
        "",
        f"`import tunekit.tuning` in a fresh interpreter, best of {imports['runs']}:"
        f" {imports['wall_s']:.2f} s wall, {imports['cpu_s']:.2f} s CPU; SymPy {sympy} (target: no"
        f" SymPy, ≤ 0.3 s: {met} on CPU time).",
    ]


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
