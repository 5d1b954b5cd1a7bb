"""``tunekit validate``: numerical checks of the layers and kernels, and (``--compile``) the resource
models against the compilers for the tuner's top configurations. A thin layer over tunekit.validation.

Exit codes: 0 every check passed, 1 a check failed or an explicitly given problem has no feasible
configuration, 2 bad usage. With ``--json`` the output is one JSON list of objects (see the README's
``tunekit validate`` section); an error is one JSON object instead.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from tunekit.cli import main
from tunekit.cli.errors import EXIT_FAILED, example, fail
from tunekit.cli.tune import shape_options

BACKENDS = ("reference", "triton-fused", "cuda-alternating", "cuda-fused")
CUDA_BACKENDS = ("cuda-alternating", "cuda-fused")
TOOLS = ("auto", "nvcc", "nvrtc")
_PROBLEM_FIELDS = ("head_dim", "heads", "batch", "dtype", "direction")


def _interpreter_note() -> str:
    """Turn on Triton's interpreter for this process if triton is not imported yet; say what happened."""
    from tunekit.triton_interpreter import INTERPRET_ENV, interpreting

    if interpreting():
        return f"{INTERPRET_ENV}=1 was already set: triton-fused kernels run in Triton's interpreter"
    if "triton" in sys.modules:
        return f"triton was imported before {INTERPRET_ENV} could be set: kernels need a GPU here"
    os.environ[INTERPRET_ENV] = "1"  # read by triton at import time
    return f"set {INTERPRET_ENV}=1 for this process: triton-fused kernels run in Triton's interpreter (CPU)"


def _emulator_note(backend: str) -> str:
    """Turn on tunekit's CUDA emulator for this process; say what happened."""
    from tunekit.cuda import EMULATOR_ENV, emulator_enabled

    if emulator_enabled():
        return f"{EMULATOR_ENV}=1 was already set: {backend} kernels run in tunekit's CPU emulator"
    os.environ[EMULATOR_ENV] = "1"  # read at each launch (tunekit.cuda.emulator_enabled)
    return f"set {EMULATOR_ENV}=1 for this process: {backend} kernels run in tunekit's CPU emulator"


def parse_archs(text: str) -> list[int]:
    """``"sm_80,sm_90"`` (or ``"80,90"``) → [80, 90]; ValueError naming the option on anything else."""
    from tunekit.compilers.build import SUPPORTED_ARCHS, check_arch

    archs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            arch = check_arch(part)
        except ValueError:
            known = ", ".join(f"sm_{a}" for a in SUPPORTED_ARCHS)
            raise ValueError(
                f"--compile: received {part!r}, expected a comma-separated list of {known}"
            ) from None
        if arch not in archs:
            archs.append(arch)
    if not archs:
        raise ValueError(f"--compile: received {text!r}, expected e.g. sm_80,sm_90")
    return archs


def _tools(tool: str) -> tuple[list[str], list[str]]:
    """(the CUDA tools to compile with, notes on the ones left out); ValueError when none can run."""
    from tunekit.compilers.cuda import CUDA_TOOLS, tool_problem

    wanted = list(CUDA_TOOLS) if tool == "auto" else [tool]
    problems = {t: tool_problem(t) for t in wanted}
    usable = [t for t in wanted if problems[t] is None]
    if not usable:
        raise ValueError("--tool: " + "; ".join(f"{t}: {p}" for t, p in problems.items()))
    return usable, [f"{t} left out: {p}" for t, p in problems.items() if p is not None]


def _check_usage(backend: str, archs: list[int], given: dict[str, Any], gpu: str | None, tool: str) -> None:
    named = [f"--{k.replace('_', '-')}" for k, v in given.items() if v is not None]
    if backend == "reference" and archs:
        raise ValueError(
            "--compile: checks kernels; pick --backend triton-fused, cuda-alternating or cuda-fused"
        )
    # --gpu alone picks the profile the CUDA kernels are tuned for in the emulator
    if not archs and (named or (gpu and backend not in CUDA_BACKENDS)):
        options = ", ".join(named + (["--gpu"] if gpu else []))
        raise ValueError(
            f"{options}: describe the problem whose tuned kernels --compile checks; add --compile"
        )
    if tool != "auto" and backend not in CUDA_BACKENDS:
        raise ValueError(f"--tool: chooses the CUDA compiler; --backend {backend} has none to choose")
    if tool != "auto" and not archs:
        raise ValueError("--tool: chooses the compiler of --compile; add --compile (e.g. sm_80,sm_90)")


def _family(name: str) -> Any:
    """The CudaFamily module of ``name``; ValueError when it is not part of this installation."""
    from tunekit.kernels import CUDA_FAMILIES, cuda_family

    try:
        return cuda_family(name)
    except ImportError as error:
        raise ValueError(
            f"--backend {name}: its kernels ({CUDA_FAMILIES[name]}) are not in this installation ({error})"
        ) from None


def _writable(directory: Path) -> None:
    """Create ``directory`` (for --out) and check it can be written; ValueError naming it otherwise."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--out: cannot create {directory}: {error.strerror or error}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"--out: {directory} is not writable")


def _check_table(title: str, checks: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("check", "max error", "tolerance", "result"):
        table.add_column(column, justify="right" if column in ("max error", "tolerance") else "left")
    for c in checks:
        mark = "[green]pass[/green]" if c.passed else "[red]FAIL[/red]"
        table.add_row(c.name, f"{c.max_error:.2e}", f"{c.tolerance:.2e}", mark)
    return table


def _compile_table(backend: str, records: list[Any]) -> Any:
    from rich.table import Table

    title = f"{backend}: model vs compiler (shared = ptxas static + launcher dynamic)"
    table = Table(title=title)
    columns = ("configuration / kernel", "arch", "tool", "regs model", "regs", "shared model", "shared",
               "spills", "stack", "verdict")  # fmt: skip
    for column in columns:
        table.add_column(
            column, justify="left" if column in ("configuration / kernel", "tool", "verdict") else "right"
        )
    for r in records:
        c = r.compiled or {}
        verdict = r.verdict if r.passed else f"[red]{r.verdict}[/red]"
        table.add_row(
            f"{r.name}\n  {r.kernel}", f"sm_{r.arch}", r.tool,
            str(r.predicted["registers_per_thread"]), str(c.get("registers", "-")),
            str(r.predicted["shared_memory_bytes_per_block"]), str(c.get("shared_memory_bytes", "-")),
            f"{c.get('spill_bytes', '-')} B", f"{c.get('stack_frame_bytes', '-')} B", verdict,
        )  # fmt: skip
    return table


def _compile(backend: str, cells: list[str], given: dict[str, Any], archs: list[int], gpu: str | None,
             top: int, tools: list[str], out: Path) -> tuple[list[Any], list[str]]:  # fmt: skip
    from tunekit import validation

    sample = all(v is None for v in given.values())
    problems = validation.sample_problems(cells, **given)
    targets = validation.targets(archs, gpu)
    if backend == "triton-fused":
        return validation.triton_records(problems, targets, top, out, sample)
    return validation.cuda_records(backend, problems, targets, top, tools, out, sample)


def _emulated(backend: str, cells: list[str], gpu: str | None, as_json: bool) -> tuple[list[Any], str]:
    """The CUDA family's numerics in the emulator, and the table's title; exit 1 when the kernels
    fault or no configuration fits the emulated problem on the profile."""
    from tunekit import validation
    from tunekit.cuda import KernelFault
    from tunekit.hardware import load_profile
    from tunekit.tuning import NoFeasibleConfig

    profile = load_profile(gpu or validation.EMULATOR_PROFILE)
    size = validation.EMULATED
    try:
        checks = validation.validate_emulator(backend, cells, gpu=profile)
    except (NoFeasibleConfig, KernelFault) as exc:
        fail(str(exc), EXIT_FAILED, as_json=as_json)
    shape = f"B={size['batch']} T={size['steps']} N={size['heads']} D={size['head_dim']}"
    return checks, f"{backend} (CPU emulator, tuned for {profile.name}, {shape}) vs float64 reference"


def _with_shape_options(command: Any) -> Any:
    for option in reversed(shape_options(required=False)):
        command = option(command)
    return command


@main.command(
    "validate",
    epilog=example(
        "tunekit validate",
        "tunekit validate --backend cuda-fused --cell gru",
        "tunekit validate --backend triton-fused --compile sm_80,sm_90 --gpu a100 --cell lstm \\",
        "                 --head-dim 64 --json",
        "tunekit validate --backend cuda-fused --compile sm_80 --gpu a100 --cell slstm --head-dim 512",
        "tunekit validate --backend cuda-alternating --compile sm_80,sm_86,sm_89,sm_90 --json",
    ),
)
@_with_shape_options
@click.option("--backend", default="reference", show_default=True, metavar="|".join(BACKENDS),
              help="What to check: the reference layers, or a kernel family.")  # fmt: skip
@click.option("--compile", "compile_archs", default=None,
              help="Compile the tuner's top configurations for these archs, e.g. sm_80,sm_90.")  # fmt: skip
@click.option("--top", type=int, default=1, show_default=True, help="Configurations per problem and arch.")
@click.option("--tool", default="auto", show_default=True, metavar="|".join(TOOLS),
              help="CUDA compiler: nvcc, NVRTC, or every one available (auto).")  # fmt: skip
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Directory for the rendered kernel sources (default: tunekit's cache).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="One JSON list of objects instead of tables.")
def validate_command(
    backend: str,
    compile_archs: str | None,
    top: int,
    tool: str,
    out_dir: str | None,
    as_json: bool,
    **shape: Any,
) -> None:
    """Check the layers and kernels numerically and the resource models against the compilers.

    --cell defaults to every registered cell. Without problem options, --compile checks a built-in
    sample (each cell at D=64, B=16, one head, bf16, forward and backward); options given replace
    those fields. Each arch is tuned for --gpu when it has that arch, else for a100 (sm_80), a10
    (sm_86), l4 (sm_89) or h100 (sm_90).

    The kernel backends also check their numbers on the CPU against the float64 reference: forward
    and every gradient of each cell at a small odd shape. triton-fused runs in Triton's interpreter
    (fp32); the CUDA families, tuned for --gpu (default h100), run their CUDA source in tunekit's
    emulator in fp32 and bf16. The command turns either on for itself and says so.
    """
    gpu, cell = shape.pop("gpu"), shape.pop("cell")
    given = {k: shape[k] for k in _PROBLEM_FIELDS}
    try:
        from tunekit.compilers.cache import cache_dir
        from tunekit.validation.numeric import cells_from

        for option, value, allowed in (("--backend", backend, BACKENDS), ("--tool", tool, TOOLS)):
            if value not in allowed:
                raise ValueError(f"{option}: got {value!r}, expected one of {', '.join(allowed)}")
        cells = cells_from(cell or "all")
        archs = parse_archs(compile_archs) if compile_archs is not None else []
        _check_usage(backend, archs, given, gpu, tool)
        if top < 1:
            raise ValueError(f"--top: got {top}, expected a positive int")
        if gpu:
            from tunekit.hardware import load_profile

            load_profile(gpu)
        if archs:
            from tunekit.validation.tuned import sample_problems, targets

            sample_problems(cells, **given)  # a bad --dtype or --head-dim is a usage error now
            targets(archs, gpu)
        if backend in CUDA_BACKENDS:
            _family(backend)
        tools, notes = _tools(tool) if backend in CUDA_BACKENDS and archs else ([], [])
        out = Path(out_dir) if out_dir else cache_dir("sources")
        if archs:
            _writable(out)
    except (ValueError, RuntimeError) as exc:
        fail(str(exc), as_json=as_json)

    if backend == "triton-fused":
        notes.insert(0, _interpreter_note())
    elif backend in CUDA_BACKENDS:
        notes.insert(0, _emulator_note(backend))
    records: list[Any] = []
    if archs:
        from rich.console import Console

        from tunekit.tuning import NoFeasibleConfig

        try:
            with Console(stderr=True).status(f"tuning and compiling {backend} for {compile_archs}"):
                records, more = _compile(backend, cells, given, archs, gpu, top, tools, out)
        except NoFeasibleConfig as exc:
            fail(str(exc), EXIT_FAILED, as_json=as_json)
        except OSError as exc:  # e.g. a full disk while writing sources or the cache
            fail(str(exc), EXIT_FAILED, as_json=as_json)
        notes += more
    from tunekit import validation

    checks: list[Any] = []
    title = ""
    if backend == "reference":
        checks = validation.validate_reference(cells)
        title = "reference layers (float64) vs torch.nn and autograd"
    elif backend == "triton-fused":
        checks = validation.validate_interpreter(cells)
        title = "triton-fused (interpreter, fp32) vs float64 reference"
    elif backend in CUDA_BACKENDS:
        checks, title = _emulated(backend, cells, gpu, as_json)
    passed = all(c.passed for c in checks) and all(r.passed for r in records)

    if as_json:
        objects = [{"kind": "note", "text": n} for n in notes]
        objects += [c.as_dict() for c in checks] + [r.as_dict() for r in records]
        click.echo(json.dumps(objects, indent=2))
    else:
        from rich.console import Console

        console = Console()
        for note in notes:
            console.print(note)
        if checks:
            console.print(_check_table(title, checks))
        if records:
            console.print(_compile_table(backend, records))
            console.print(f"sources: {out}")
        console.print("[green]all checks passed[/green]" if passed else "[red]some checks failed[/red]")
    if not passed:
        sys.exit(EXIT_FAILED)
