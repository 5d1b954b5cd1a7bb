"""Runner and report of the baselines benchmark: ``python -m tunekit.bench.baselines``.

:func:`run` times FlashRNN's solver, Kernel Tuner's search-space builder (both from
:mod:`tunekit.bench.baselines`) and tunekit's tuner for each head dim, and writes ``<out>.json`` and
``<out>.md`` (a markdown table; hand-written notes below the ``_NOTES`` marker are kept across runs).
:func:`main` is the command line.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from tunekit.bench.baselines import (
    _version,
    flashrnn_gpu_info,
    gpu_limits,
    time_flashrnn,
    time_kernel_tuner,
)

__all__ = ["main", "run"]


def _time_tunekit(cell: str, head_dim: int, heads: int, batch: int, dtype: str, gpu: Any) -> dict[str, Any]:
    """Wall time of ``tunekit.tuning.tune`` (cuda-fused family, else "auto"), when that module exists."""
    try:
        from tunekit.problem import Problem
        from tunekit.tuning import NoFeasibleConfig, tune
    except ImportError as err:
        return {"available": False, "seconds": None, "note": f"tunekit.tuning not importable: {err}"}
    problem = Problem(cell=cell, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype)
    note = ""
    for backend in ("cuda-fused", "auto"):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            res = tune(problem, gpu, backend=backend)
        except NoFeasibleConfig as err:
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            out = {
                "seconds": seconds,
                "cpu_seconds": cpu,
                "feasible": 0,
                "config": None,
                "note": str(err)[:300],
            }
            return {"available": True, "backend": backend, **out}
        except Exception as err:  # e.g. a family that is not written yet: try the next backend
            note += f"{backend}: {type(err).__name__}: {str(err)[:200]}; "
            continue
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        count = int(res.feasible_count.get("total", sum(res.feasible_count.values())))
        out = {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "feasible": count,
            "config": res.config.name,
            "note": note,
        }
        return {"available": True, "backend": backend, **out}
    return {"available": True, "seconds": None, "note": note}


def _cached_flashrnn(rows: list[dict[str, Any]], key: dict[str, Any]) -> dict[str, Any] | None:
    for row in rows:
        fr = row.get("flashrnn") or {}
        if (
            all(row.get(k) == v for k, v in key.items())
            and fr.get("installed")
            and "timeout" not in fr["note"]
        ):
            return fr
    return None


def run(
    head_dims: list[int],
    gpu: str = "a100",
    cell: str = "lstm",
    heads: int = 1,
    batch: int = 16,
    dtype: str = "bfloat16",
    timeout_s: float = 600.0,
    out: str = "reports/baselines",
    fresh: bool = False,
) -> dict[str, Any]:
    """Time both baselines (and tunekit's tuner) for each head dim; write ``<out>.json`` and ``<out>.md``.

    FlashRNN results already in ``<out>.json`` for the same shape and versions are reused unless ``fresh``.
    """
    import json
    import os
    import platform
    from dataclasses import asdict
    from datetime import datetime, timezone

    path_json = f"{out}.json"
    old: list[dict[str, Any]] = []
    if os.path.exists(path_json) and not fresh:
        with open(path_json) as fh:
            old = json.load(fh).get("rows", [])
    lim = gpu_limits(gpu)
    rows = []
    for d in head_dims:
        key = {
            "gpu": lim.name,
            "cell": cell,
            "head_dim": d,
            "heads": heads,
            "batch": batch,
            "dtype": dtype,
            "flashrnn_version": _version("flashrnn"),
        }
        fr = _cached_flashrnn(old, key)
        cached = fr is not None
        if fr is None:
            fr = asdict(time_flashrnn(cell, d, heads, batch, dtype, lim, timeout_s=timeout_s))
        kt = asdict(time_kernel_tuner(cell, d, heads, batch, dtype, lim))
        tk = _time_tunekit(cell, d, heads, batch, dtype, gpu)
        ratio = fr["seconds"] / tk["seconds"] if fr["seconds"] and tk.get("seconds") else None
        fr_cpu, tk_cpu = fr["details"].get("cpu_seconds"), tk.get("cpu_seconds")
        cpu_ratio = fr_cpu / tk_cpu if fr_cpu and tk_cpu else None
        rows.append(
            {
                **key,
                "flashrnn_cached": cached,
                "flashrnn": fr,
                "kernel_tuner": kt,
                "tunekit": tk,
                "ratio_flashrnn_over_tunekit": ratio,
                "cpu_ratio_flashrnn_over_tunekit": cpu_ratio,
            }
        )
        print(
            f"D={d}: flashrnn {fr['seconds']:.2f} s ({fr['solutions_found']} found, cached={cached})"
            f", kernel_tuner {kt['seconds']:.2f} s ({kt['solutions_found']} configs)"
            f", tunekit {tk.get('seconds')}",
            flush=True,
        )
    report = {
        "generated_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}",
        "gpu": lim.name,
        "flashrnn_gpu_info_passed": flashrnn_gpu_info(lim),
        "rows": rows,
    }
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(path_json, "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    notes = ""  # hand-written reading of the figures, kept across runs below the marker
    if os.path.exists(f"{out}.md"):
        with open(f"{out}.md") as fh:
            text = fh.read()
        notes = text[text.index(_NOTES) :] if _NOTES in text else ""
    with open(f"{out}.md", "w") as fh:
        fh.write(_markdown(report) + ("\n" + notes if notes else ""))
    return report


_NOTES = "<!-- notes: kept by the runner -->"


def _blocks(sol: Mapping[str, int] | None, part: str) -> int | str:
    """Blocks of FlashRNN's forward/backward grid: its NUM_BLOCKS product (gate x hidden x batch x heads)."""
    if not sol:
        return "—"
    p = f"FLASHRNN_{part}_"
    names = ("RECURRENT_TILING_COUNT_GATE", "RECURRENT_TILING_COUNT_HIDDEN", "BLOCK_TILING_COUNT_BATCH")
    return sol[p + "MULTIHEAD_TILING_COUNT"] * sol[p + names[0]] * sol[p + names[1]] * sol[p + names[2]]


def _secs(wall: float, cpu: float | None) -> str:
    """``wall (cpu)`` seconds, with more digits for sub-0.1 s figures."""
    digits = 2 if wall >= 0.1 else 4
    return f"{wall:.{digits}f}" + (f" ({cpu:.{digits}f})" if cpu is not None else "")


# FlashRNN forward variables shown in the report (the full solution is in the JSON), short label first.
_PICK = (
    ("rt_gate", "RECURRENT_TILING_COUNT_GATE"),
    ("rt_hidden", "RECURRENT_TILING_COUNT_HIDDEN"),
    ("bt_batch", "BLOCK_TILING_COUNT_BATCH"),
    ("wt_hidden", "WARP_TILING_COUNT_HIDDEN"),
    ("wtile_b", "WARP_TILING_DIM_BATCH"),
    ("wtile_g", "WARP_TILING_DIM_GATE"),
    ("cached", "WARP_RECURRENT_CACHED_HIDDEN"),
)


def _short(sol: Mapping[str, int] | None) -> str:
    if not sol:
        return "—"
    return " ".join(f"{label}={sol['FLASHRNN_FORWARD_' + name]}" for label, name in _PICK)


def _markdown(report: dict[str, Any]) -> str:
    rows = report["rows"]
    r0 = rows[0]
    lines = [
        "# Baselines: FlashRNN's ConstrINT and Kernel Tuner's search space",
        "",
        f"Generated {report['generated_utc']} by `python -m tunekit.bench.baselines` on {report['machine']}.",
        f"Shape: {r0['cell']} {r0['dtype']}, N={r0['heads']}, B={r0['batch']} on `{report['gpu']}`; "
        f"FlashRNN {r0['flashrnn_version']}, Kernel Tuner {r0['kernel_tuner']['details'].get('version')}.",
        "",
        f"FlashRNN's `get_gpu_info` was replaced by the profile's numbers: "
        f"`{report['flashrnn_gpu_info_passed']}`.",
        "Timed: FlashRNN's `parse_expression` + `solve_constrint(..., 1)` for its fused kernel (cold, "
        "on-disk cache bypassed; its later compile-and-bisect solves on a GPU are not counted, so this is "
        "a lower bound); "
        "Kernel Tuner's `Searchspace(...)` construction for restrictions that tunekit writes; "
        "tunekit's `tune(problem, gpu, backend='cuda-fused')`.",
        "",
        "Seconds are wall (CPU) seconds of this process; the host is a shared 2-core machine, so wall time "
        "includes waiting for other jobs and CPU time is the steadier figure.",
        "",
        "| D | FlashRNN s | found | fwd / bwd blocks | FlashRNN forward pick | Kernel Tuner s | KT configs | "
        "tunekit s | tunekit feasible | FlashRNN / tunekit, wall / cpu |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        fr, kt, tk = r["flashrnn"], r["kernel_tuner"], r["tunekit"]
        found = str(fr["solutions_found"]) if fr["installed"] else "not installed"
        if fr["note"]:
            found += f" ({fr['note'][:60]})"
        tk_s = (
            _secs(tk["seconds"], tk.get("cpu_seconds")) if tk.get("seconds") is not None else tk["note"][:50]
        )
        ratio = " / ".join(
            f"{r[k]:.0f}x" if r.get(k) else "—"
            for k in ("ratio_flashrnn_over_tunekit", "cpu_ratio_flashrnn_over_tunekit")
        )
        fr_s = _secs(fr["seconds"], fr["details"].get("cpu_seconds")) + ("*" if r["flashrnn_cached"] else "")
        kt_s = _secs(kt["seconds"], kt["details"].get("cpu_seconds"))
        sol = fr["first_solution"]
        blocks = f"{_blocks(sol, 'FORWARD')} / {_blocks(sol, 'BACKWARD')}"
        lines.append(
            f"| {r['head_dim']} | {fr_s} | {found} | {blocks} | {_short(sol)} | {kt_s} | "
            f"{kt['solutions_found']} | {tk_s} | {tk.get('feasible', '—')} | {ratio} |"
        )
    lines.append("\n`*`: FlashRNN figure reused from the previous run's JSON (same shape, GPU and version).")
    ok = [r["head_dim"] for r in rows if r["flashrnn"]["solutions_found"]]
    empty = [
        r["head_dim"] for r in rows if r["flashrnn"]["installed"] and not r["flashrnn"]["solutions_found"]
    ]
    lines += [
        "",
        "## FlashRNN feasibility vs head dim",
        "",
        f"FlashRNN found a fused configuration for D = {ok or 'none'}; none for D = {empty or 'none'}.",
    ]
    by_d = {r["head_dim"]: r["flashrnn"]["solutions_found"] for r in rows}
    if 2048 in by_d and 2304 in by_d:
        seen = not by_d[2048] and by_d[2304]
        lines.append(
            f"D=2048 {'has no' if not by_d[2048] else 'has a'} solution and D=2304 "
            f"{'has one' if by_d[2304] else 'has none'}: the non-monotone hole is "
            f"{'reproduced' if seen else 'not reproduced'} here."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m tunekit.bench.baselines [--gpu a100] [--head-dims 64,256] ...``."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tunekit.bench.baselines", description=main.__doc__)
    ap.add_argument("--gpu", default="a100")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--head-dims", default="64,256,768,1024,2048,2304")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per FlashRNN solve")
    ap.add_argument("--out", default="reports/baselines")
    ap.add_argument("--fresh", action="store_true", help="re-solve FlashRNN shapes cached in <out>.json")
    a = ap.parse_args(argv)
    dims = [int(x) for x in a.head_dims.split(",")]
    run(dims, a.gpu, a.cell, a.heads, a.batch, a.dtype, a.timeout, a.out, a.fresh)


if __name__ == "__main__":
    main()
