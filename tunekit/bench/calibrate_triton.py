"""``tunekit bench calibrate-triton``: the triton-fused resource model against the compiler.

One run, every compile cached (``reports/triton_compile_cache.json``, keyed by the kernel's source
hash, so a second run only compiles what is new):

1. **table**: walks the configurations of every kernel, tile and architecture of its scope
   (:mod:`tunekit.bench.triton_sweep`) and writes the measured register table the model reads
   (``tunekit/constraints/triton_registers.json``, :mod:`tunekit.bench.triton_table`);
2. **sample**: compiles a seeded sample of the whole space and compares the model with ptxas and
   Triton (registers, spills, shared memory; the bound alone and the model with its table):
   ``reports/triton_calibration.{md,csv,json}`` (:mod:`tunekit.bench.triton_calibration_report`);
2b. **probe**: compiles, for the reach problems at each class of D, the fastest configuration the
   model refuses for registers alone (where the conservative bound may be wrong) that is most likely
   to compile clean (8 warps, small blocks), and records it;
2c. **picks**: tunes the check problems and compiles what the tuner returns until every returned
   configuration has been compiled (a spill refuses its point; :mod:`tunekit.bench.triton_picks`),
   after compiling seed points at issue 14's training targets;
3. **check**: tunes the fixed problem set and compiles every returned configuration, and measures
   how many configurations the model refuses although they compile cleanly:
   ``reports/triton_tuned_check.json`` (:mod:`tunekit.bench.triton_check`; CI re-reads it);
4. **reach**: the largest head dim per cell, dtype and GPU for inference and training:
   ``reports/triton_headdim.md`` (:mod:`tunekit.bench.triton_headdim`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from tunekit.bench import triton_calibration_report as report
from tunekit.bench import triton_check, triton_headdim, triton_picks, triton_table
from tunekit.bench.triton_compile import CompileRunner
from tunekit.bench.triton_sweep import groups, sample_jobs
from tunekit.files import write_atomic

REPORTS = Path("reports")
DEFAULT_CACHE = REPORTS / "triton_compile_cache.json"
CHECK_REPORT = "triton_tuned_check.json"
TABLE_ARCHS = (80, 89, 90)
# What the table walks: "standard": every tile with D = d_pad, and tiles 64 and 128 with padded lanes
# (D = 33..56, 65..120: common head dims) on sm_80 and sm_90; "all": padded lanes everywhere
SCOPES = ("standard", "all")
PART_TILES, PART_ARCHS = (64, 128), (80, 90)
SAMPLE_SEED = 1
STEPS = ("table", "sample", "probe", "picks", "check", "reach")
# one GPU per register architecture of the reach table (l4 stands for sm_89, also the rtx4090's)
PROBE_GPUS = ("a100", "h100", "l4")
# the refused points the check compiles to measure how many of them would have compiled clean
REFUSED_SAMPLE = 60


def _reset_model_caches() -> None:
    """The model reads the table once per process: re-read it after writing a new one."""
    from tunekit.constraints import triton_registers

    triton_registers.reload()


def _in_scope(group: object, scope: str) -> bool:
    if group.full or scope == "all":
        return True
    return group.d_pad in PART_TILES and group.arch in PART_ARCHS


def run(
    count: int = 240,
    archs: Sequence[int] = TABLE_ARCHS,
    cache: Path = DEFAULT_CACHE,
    out_dir: Path = REPORTS,
    table_path: Path = triton_table.DEFAULT_TABLE,
    scope: str = "standard",
    workers: int = 1,
    steps: Sequence[str] = ("probe", "picks", "check", "reach"),
    progress: Callable[[str], None] | None = None,
    top: int = triton_check.CHECK_TOP,
) -> list[Path]:
    """Run the steps (in order) and return the paths written; ``top``: how many configurations per
    problem ``tune`` returns to the picks and the check (the best and ``top - 1`` candidates)."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count: got {count!r}, expected a positive number of sampled configurations")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: got {workers!r}, expected a positive number of compile processes")
    if scope not in SCOPES:
        raise ValueError(f"scope: got {scope!r}, expected one of {SCOPES}")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"steps: unknown {unknown}; expected some of {', '.join(STEPS)}")
    paths: list[Path] = []
    runner = CompileRunner(cache, workers=workers)
    try:
        if "table" in steps:
            chosen = [g for g in groups(archs, triton_table.shared_limit) if _in_scope(g, scope)]
            walked = triton_table.measure(chosen, runner, progress)
            paths.append(triton_table.write_table(walked, table_path))
            _reset_model_caches()
        if "sample" in steps:
            jobs = sample_jobs(count, seed=SAMPLE_SEED, archs=archs)
            results = runner.compile_all(jobs, progress)
            rows = [report.row(job, result) for job, result in zip(jobs, results, strict=True)]
            paths += report.write(rows, archs, out_dir)
        if "probe" in steps:
            # points each reach problem refuses for registers alone, judged by ptxas
            pairs = triton_picks.reach_pairs(PROBE_GPUS)
            # the refused point most likely to compile clean (an earlier run probed the fastest ones,
            # which mostly spilled: reports/triton_compile_cache.json keeps them)
            probes = triton_picks.probe_jobs(pairs, likely=True)
            if progress:
                progress(f"probe: {len(probes)} compiles")
            triton_picks.record(zip(probes, runner.compile_all(probes, progress), strict=True), table_path)
            _reset_model_caches()
            paths.append(table_path)
        if "picks" in steps:
            # every compile of the current kernels the cache holds (earlier checks' refused samples,
            # reach studies) is a measurement too
            triton_picks.record(triton_picks.cached_results(runner.cache_results()), table_path)
            seeds = triton_picks.seed_jobs()
            triton_picks.record(zip(seeds, runner.compile_all(seeds, progress), strict=True), table_path)
            pairs = [(p, g) for g in triton_check.CHECK_GPUS for p in triton_check.CHECK_PROBLEMS]
            summary = triton_picks.close_loop(
                lambda jobs: runner.compile_all(jobs, progress), pairs, table_path, top, progress
            )
            if progress:
                progress(f"picks: {summary}")
            paths.append(table_path)
        if "check" in steps:
            checked, empty = triton_check.check(runner.compile_all, top=top)
            data = triton_check.as_json(checked, empty) | {"top": top}
            data["refused_clean"] = triton_check.refused_clean(runner.compile_all, sample=REFUSED_SAMPLE)
            data["bound_vs_ptxas"] = triton_check.bound_vs_ptxas(runner.cache_results())
            path = out_dir / CHECK_REPORT
            write_atomic(path, json.dumps(data, indent=1, sort_keys=True) + "\n")
            paths.append(path)
        if "reach" in steps:
            # a largest entry whose compile spills is recorded (its point refused) and studied again
            for _ in range(triton_picks.MAX_ROUNDS):
                _reset_model_caches()
                entries = triton_headdim.study(runner.compile_all, progress)
                compiled = [(job, c) for e in entries for job, c in e.jobs]
                verified = all(e.verified for e in entries if e.feasible)
                if not triton_picks.record(compiled, table_path) and verified:
                    break
            _reset_model_caches()
            paths.append(triton_headdim.write(entries, out_dir))
    finally:
        runner.close()
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m tunekit.bench.calibrate_triton", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--count", type=int, default=240, help="configurations sampled (step sample)")
    parser.add_argument("--archs", default="80,89,90", help="comma-separated compute capabilities")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="JSON cache of compile results")
    parser.add_argument("--out", type=Path, default=REPORTS, help="folder for the reports")
    parser.add_argument("--scope", choices=SCOPES, default="standard", help="what the table walks")
    parser.add_argument("--workers", type=int, default=1, help="compile processes in parallel")
    parser.add_argument("--steps", default="probe,picks,check,reach", help="which steps, comma-separated")
    parser.add_argument("--top", type=int, default=triton_check.CHECK_TOP, help="configurations per problem")
    args = parser.parse_args(argv)
    try:
        archs = [int(a) for a in args.archs.split(",") if a.strip()]
        if not archs or any(a not in TABLE_ARCHS for a in archs):
            raise ValueError
    except ValueError:
        parser.error(f"--archs: received {args.archs!r}, expected a comma-separated list of {TABLE_ARCHS}")
    if args.count < 1 or args.workers < 1:
        parser.error("--count and --workers: expected >= 1")
    start = time.perf_counter()

    def progress(text: str) -> None:
        print(f"{time.perf_counter() - start:7.1f} s  {text}", flush=True)

    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    paths = run(args.count, archs, args.cache, args.out, scope=args.scope, workers=args.workers,
                steps=steps, progress=progress, top=args.top)  # fmt: skip
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
