"""The tuner's top configurations, compiled: ``tunekit validate --compile`` for every family.

For each architecture a GPU profile is tuned for (``--gpu`` for its own arch, else
:data:`DEFAULT_PROFILE`); each problem is tuned for it (``tunekit.tuning.tune(problem, gpu,
backend=family)``) and its top configurations are rendered, written to a source directory and
compiled for that arch. Each kernel entry gives a :class:`~tunekit.validation.records.CompileRecord`.

* triton-fused: every kernel the configuration runs (forward and/or backward) through
  :mod:`tunekit.compilers.triton`; judged by :func:`tunekit.validation.compiled.judge` (shared
  memory is Triton's own ``metadata.shared``, which the model may exceed by 5%);
* CUDA families: programs, launch shapes and predictions only through
  :func:`tunekit.kernels.cuda_family` (the CudaFamily protocol), compiled with nvcc and/or NVRTC;
  shared memory is ptxas's static bytes + the dynamic bytes ``launch_dims`` requests, and must
  equal the model's (:func:`tunekit.validation.records.cuda_verdict`).

A problem with no feasible configuration raises NoFeasibleConfig, except in the built-in sample
(``sample=True``), where it becomes a note: the model refusing a problem is nothing to compile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.validation.compiled import DEFAULT_PROFILE, Prediction, judge
from tunekit.validation.records import (
    CompileRecord,
    compiled_figures,
    cuda_verdict,
    failed_record,
    write_source,
)

__all__ = [
    "SAMPLE",
    "Target",
    "Tuned",
    "cuda_records",
    "sample_problems",
    "targets",
    "triton_records",
    "tuned",
]

# The built-in sample: each cell's training kernels (forward and backward) at a common LSTM size.
SAMPLE = {"batch": 16, "heads": 1, "head_dim": 64, "dtype": "bfloat16", "direction": "both"}


@dataclass(frozen=True)
class Target:
    """One architecture to compile for and the profile tuned for it (whose limits judge it)."""

    arch: int
    gpu: Any  # GPUProfile


def targets(archs: Sequence[int], gpu_name: str | None = None) -> list[Target]:
    """A Target per arch: ``gpu_name``'s profile for its own arch, DEFAULT_PROFILE's for the others.

    ValueError when ``gpu_name``'s arch is not among ``archs`` (it would judge nothing)."""
    from tunekit.hardware import load_profile

    chosen = load_profile(gpu_name) if gpu_name else None
    if chosen is not None and chosen.arch not in archs:
        listed = ", ".join(f"sm_{a}" for a in archs)
        raise ValueError(
            f"--gpu: {gpu_name!r} is {chosen.sm}, but --compile lists only {listed}; add {chosen.sm} to "
            "--compile or drop --gpu (each arch is tuned for its default profile)"
        )
    return [
        Target(a, chosen if chosen and chosen.arch == a else load_profile(DEFAULT_PROFILE[a])) for a in archs
    ]


def sample_problems(cells: Sequence[str], **given: Any) -> list[Any]:
    """One Problem per cell: the SAMPLE shape with the ``given`` fields (None: not given) replaced."""
    from tunekit.problem import Problem

    fields = SAMPLE | {k: v for k, v in given.items() if v is not None}
    return [Problem(cell=cell, **fields) for cell in cells]


@dataclass(frozen=True)
class Tuned:
    """The configurations to compile for one target, and notes on problems with none."""

    target: Target
    configs: tuple[Any, ...]
    notes: tuple[str, ...]


def tuned(family: str, problems: Sequence[Any], target: Target, top: int, sample: bool) -> Tuned:
    """The ``top`` configurations of ``family`` per problem on ``target.gpu``."""
    from tunekit.tuning import NoFeasibleConfig, tune

    configs, notes = [], []
    for problem in problems:
        try:
            result = tune(problem, target.gpu, backend=family, top=top)
        except NoFeasibleConfig as error:
            if not sample:
                raise
            notes.append(f"{error} (sm_{target.arch}: nothing to compile)")
            continue
        configs += [c.config for c in result.candidates]
    return Tuned(target, tuple(configs), tuple(notes))


def _predicted(registers: int, shared: int) -> dict[str, int]:
    return {"registers_per_thread": int(registers), "shared_memory_bytes_per_block": int(shared)}


def triton_prediction(config: Any, direction: str, gpu: Any) -> Prediction:
    """The triton-fused model's prediction for one kernel of a tuned configuration (its measured
    registers where the model has them) and the limits it is judged by."""
    from tunekit.constraints.triton_fused import kernel_prediction
    from tunekit.constraints.triton_kernel import register_cap

    registers, shared = kernel_prediction(config, direction, gpu)
    return Prediction(registers, shared, register_cap(config.params["num_warps"], gpu),
                      gpu.shared_memory_per_block_optin)  # fmt: skip


def triton_records(
    problems: Sequence[Any], targets_: Sequence[Target], top: int, out_dir: Path, sample: bool = False
) -> tuple[list[CompileRecord], list[str]]:
    """Compile the top triton-fused configurations' kernels for each target: (records, notes)."""
    import triton

    from tunekit.compilers.build import CompileError
    from tunekit.compilers.triton import compile_triton_jobs
    from tunekit.kernels.triton_fused_aot import launch_compile_job

    plans, notes = [], []
    for target in targets_:
        found = tuned("triton-fused", problems, target, top, sample)
        notes += found.notes
        for config in found.configs:
            for direction in config.problem.directions:
                job, path = launch_compile_job(config, direction, target.gpu, out_dir)
                plans.append((target, config, triton_prediction(config, direction, target.gpu), job, path))
    try:
        reports = compile_triton_jobs([plan[3] for plan in plans])
    except CompileError as error:  # one child compiles them all: its failure fails every record
        reports = [error] * len(plans)
    tool = f"triton {triton.__version__}"
    records = []
    for (target, config, prediction, job, path), report in zip(plans, reports, strict=True):
        base = {"name": config.name, "kernel": job.function, "family": "triton-fused", "gpu": target.gpu.name,
                "arch": target.arch, "tool": tool, "source": str(path),
                "predicted": _predicted(prediction.registers, prediction.shared_bytes)}  # fmt: skip
        if isinstance(report, Exception):
            records.append(failed_record(base, report))
            continue
        spills = report.spill_stores_bytes + report.spill_loads_bytes
        figures = compiled_figures(report.registers, report.static_shared_bytes, report.shared_bytes, spills,
                                   report.stack_frame_bytes)  # fmt: skip
        verdict, passed = judge(prediction, report.registers, spills, figures["shared_memory_bytes"],
                                report.stack_frame_bytes)  # fmt: skip
        records.append(CompileRecord(**base, compiled=figures, verdict=verdict, passed=passed,
                                     seconds=report.seconds, cached=report.cached))  # fmt: skip
    return records, notes


def cuda_records(
    family: str,
    problems: Sequence[Any],
    targets_: Sequence[Target],
    top: int,
    tools: Sequence[str],
    out_dir: Path,
    sample: bool = False,
    workers: int | None = None,
) -> tuple[list[CompileRecord], list[str]]:
    """Compile the top configurations of a CUDA family with each tool for each target: (records, notes)."""
    from tunekit.compilers.cuda import compile_programs
    from tunekit.kernels import cuda_family

    module = cuda_family(family)
    plans, notes = [], []
    for target in targets_:
        found = tuned(family, problems, target, top, sample)
        notes += found.notes
        for config in found.configs:
            for program in module.programs(config):
                path = write_source(out_dir, program.name, ".cu", program.source)
                plans += [(target, config, program, path, tool) for tool in tools]
    results = compile_programs([(p[2], p[0].arch, p[4]) for p in plans], workers=workers)
    records = []
    for (target, config, program, path, tool), result in zip(plans, results, strict=True):
        for entry in program.entries:
            predicted = module.predicted(config, entry.name)
            base = {"name": program.name, "kernel": entry.name, "family": family, "gpu": target.gpu.name,
                    "arch": target.arch, "source": str(path),
                    "predicted": {key: int(value) for key, value in predicted.items()}}  # fmt: skip
            if isinstance(result, Exception):
                records.append(failed_record(base | {"tool": tool}, result))
                continue
            compiled = result.entry(entry.name)
            dynamic = module.launch_dims(config, entry.name).shared_bytes
            figures = compiled_figures(compiled.registers, compiled.static_shared_bytes, dynamic,
                                       compiled.spill_bytes, compiled.stack_frame_bytes)  # fmt: skip
            verdict, passed = cuda_verdict(base["predicted"], figures)
            build, extra = result.build, {"sass": result.sass_note}
            record = CompileRecord(**base, tool=result.tool, compiled=figures, verdict=verdict, passed=passed,
                                   seconds=build.seconds, cached=build.cached, extra=extra)  # fmt: skip
            records.append(record)
    return records, notes
