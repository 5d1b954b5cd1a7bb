"""``tunekit tune`` and ``tunekit explain``: a thin layer over tunekit.db.tuning_run and tunekit.explain.

``tune`` ranks the feasible configurations of a problem on a named GPU offline, records them in the
tuning database, optionally compiles the top ones for the GPU's architecture (``--verify``) and
times them on a GPU (``--measure``), and prints the choice (stored or fresh, and its tier), its
configuration, predicted resources and time, binding constraints and the top-k candidates
(``--json``: one JSON object). ``explain`` says why a family has no configuration and which nearby
shapes work. Bad input exits 2 with one line; "nothing feasible" exits 1; Ctrl-C while measuring 130.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from typing import Any

import click
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from tunekit.cli import main
from tunekit.cli.errors import EXIT_FAILED, example, fail

EXIT_INTERRUPTED = 130  # Ctrl-C while measuring (128 + SIGINT), as shells report it

_RESOURCE_ROWS = (
    ("threads_per_block", "threads per block"),
    ("blocks", "blocks (grid)"),
    ("registers_per_thread", "registers per thread"),
    ("shared_memory_bytes_per_block", "shared memory per block (B)"),
)


def shape_options(required: bool = True) -> list[Callable]:
    """--gpu --cell --head-dim --heads --batch --dtype --direction: a problem and a GPU. With
    ``required=False`` (``validate``) every one defaults to None: the command fills in its own."""

    def default(value: Any) -> dict[str, Any]:
        return {"default": value, "show_default": True} if required else {"default": None}

    return [
        click.option(
            "--gpu", required=required, help="GPU profile name or alias, e.g. a100 (see `tunekit hw list`)."
        ),
        click.option("--cell", required=required, help="lstm, gru, slstm or elman."),
        click.option("--head-dim", "head_dim", type=int, required=required, help="Hidden size per head (D)."),
        click.option("--heads", type=int, help="Number of heads (N).", **default(1)),
        click.option("--batch", type=int, help="Batch size (B).", **default(16)),
        click.option("--dtype", help="float32, float16 or bfloat16.", **default("bfloat16")),
        click.option("--direction", help="forward, backward or both (training).", **default("forward")),
    ]


def problem_options(command: Callable) -> Callable:
    """The options that describe a problem and a GPU, shared by ``tune`` and ``explain``."""
    options = [
        *shape_options(),
        click.option(
            "--backend",
            default="auto",
            show_default=True,
            help="auto (every family) or one of triton-fused, cuda-alternating, cuda-fused.",
        ),
        click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of tables."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _problem(
    cell: str, batch: int, heads: int, head_dim: int, dtype: str, direction: str, as_json: bool
) -> Any:
    from tunekit.problem import Problem

    try:
        return Problem(
            cell=cell, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, direction=direction
        )
    except ValueError as exc:
        fail(str(exc), as_json=as_json)


def _gpu(name: str, as_json: bool) -> Any:
    from tunekit.hardware import load_profile

    try:
        return load_profile(name)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _params(params: Mapping[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


def _tags(params: Mapping[str, int]) -> str:
    """Compact tunables as in canonical names (``bb16 w4 s1``), for table cells."""
    from tunekit.problem import PARAM_TAGS

    return " ".join(f"{PARAM_TAGS.get(k, k)}{v}" for k, v in params.items())


def _headline(problem: Any, gpu: Any) -> str:
    p = problem
    return (
        f"{p.cell} D={p.head_dim} heads={p.heads} batch={p.batch} {p.dtype} {p.direction} "
        f"on {gpu.name} ({gpu.display_name})"
    )


def _choice_line(report: Any) -> str:
    choice = report.choice
    record = choice.record
    if choice.tier == "measured":
        q = record.quantiles()
        what = f"median {q['median']:.3f} µs per step (q25 {q['q25']:.3f}, q75 {q['q75']:.3f}; "
        what += f"{len(record.samples_us)} runs)"
    elif choice.tier == "compiler-verified":
        what = "compiled for the GPU's architecture: no spills, every limit kept"
    else:
        what = "the cost model's ranking"
    where = "this run" if choice.source == "fresh" else f"the tuning database (recorded {record.updated_at})"
    return f"Choice: {choice.source} {choice.tier} record from {where}: {what}"


def _print_chosen(console: Console, report: Any) -> None:
    result, record = report.result, report.choice.record
    predicted = record.predicted
    console.print(f"[bold]tunekit tune[/bold]: {_headline(result.problem, result.gpu)}")
    console.print(
        f"Chosen backend: [bold green]{record.family}[/bold green], predicted "
        f"[bold]{record.predicted_us:.3f} µs per step[/bold]"
    )
    console.print(_choice_line(report), soft_wrap=True)
    console.print(f"Config {record.name}", soft_wrap=True)  # whole: names are copied and pasted
    console.print(f"  {_params(record.params)}")

    table = Table(title="Predicted resources", show_header=False, title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, label in _RESOURCE_ROWS:
        table.add_row(label, _number(predicted.get(key, "—")))
    costs = Table(title="Predicted µs per step", show_header=False, title_justify="left")
    costs.add_column("term")
    costs.add_column("µs", justify="right")
    terms = [k for k in predicted if k.endswith("_us") and k != "time_us_per_step"]
    for key in terms:
        costs.add_row(key.removesuffix("_us").replace("_", " "), f"{predicted[key]:.3f}")
    costs.add_row("[bold]total[/bold]", f"[bold]{record.predicted_us:.3f}[/bold]")
    console.print(Columns([table, costs]))
    shown = {k for k, _ in _RESOURCE_ROWS} | set(terms) | {"time_us_per_step"}
    others = ", ".join(f"{k}={_number(v)}" for k, v in predicted.items() if k not in shown)
    if others:
        console.print(f"Also: {others}")
    if record.binding_constraints:
        console.print("Binding constraints (>= 95% of the limit):")
        for line in record.binding_constraints:
            console.print(f"  {line}")
    else:
        console.print("Binding constraints: none (every limit below 95%)")


def _print_candidates(console: Console, result: Any) -> None:
    top = Table(title=f"Top {len(result.candidates)} candidates (cost model)", title_justify="left")
    top.add_column("#", justify="right")
    top.add_column("backend", no_wrap=True)
    top.add_column("config")
    for column in ("µs/step", "threads", "grid", "regs", "smem B"):
        top.add_column(column, justify="right")
    for rank, c in enumerate(result.candidates, 1):
        p = c.predicted
        top.add_row(
            str(rank),
            c.backend,
            _tags(c.config.params),
            f"{p['time_us_per_step']:.3f}",
            _number(p["threads_per_block"]),
            _number(p["blocks"]),
            _number(p["registers_per_thread"]),
            _number(p["shared_memory_bytes_per_block"]),
        )
    console.print(top)
    counts = ", ".join(f"{k} {v:,}" for k, v in result.feasible_count.items() if k != "total")
    console.print(
        f"Feasible configurations: {result.feasible_count['total']:,} ({counts}); "
        f"solver {result.solver}, {result.solve_seconds * 1e3:.1f} ms"
    )


def _print_steps(console: Console, report: Any) -> None:
    if report.verified:
        console.print("Verified (compiled offline for the GPU's architecture):")
        for v in report.verified:
            console.print(f"  {v.config.name}: {v.summary()}", markup=False, soft_wrap=True)
    if report.measured is not None:
        console.print("Measured (numbers checked against the reference, then timed):")
        for r in report.measured.records:
            how = "from the database" if r.name in report.measured.reused else "timed now"
            if r.status == "ok":
                q = r.quantiles()
                line = f"median {q['median']:.3f} µs per step, q25 {q['q25']:.3f}, q75 {q['q75']:.3f} ({how})"
            else:
                line = f"failed ({how}): {r.note}"
            console.print(f"  {r.name}: {line}", markup=False, soft_wrap=True)
    for note in report.notes:
        console.print(note, markup=False, soft_wrap=True)
    if report.db_error:
        console.print(
            f"Tuning database unavailable, nothing recorded: {report.db_error}", markup=False, soft_wrap=True
        )
    elif report.db_path is not None:
        console.print(
            f"Tuning database: {report.db_path} (run {report.run_id}: {report.records_written} records)",
            markup=False,
            soft_wrap=True,
        )


def _json_report(report: Any) -> dict[str, Any]:
    data = report.result.to_json_dict()
    if report.choice is not None:
        record = report.choice.record
        data.update(
            backend=record.family,
            config=dict(record.params),
            config_name=record.name,
            predicted=dict(record.predicted),
            binding_constraints=list(record.binding_constraints),
        )
        data["choice"] = report.choice.to_json_dict()
    if report.verified:
        data["verify"] = [v.to_json_dict() for v in report.verified]
    if report.measured is not None:
        m = report.measured
        data["measure"] = {
            "records": [
                {
                    "name": r.name,
                    "backend": r.family,
                    "status": r.status,
                    "note": r.note,
                    "quantiles_us_per_step": r.quantiles(),
                    "samples": len(r.samples_us),
                    "reused": r.name in m.reused,
                }  # fmt: skip
                for r in m.records
            ],
            "winner": None if m.winner is None else m.winner.name,
        }
    data["notes"] = list(report.notes)
    data["db"] = {
        "path": None if report.db_path is None else str(report.db_path),
        "run_id": report.run_id,
        "records_written": report.records_written,
        "error": report.db_error,
    }
    return data


def _settings(steps: int, warmup: int, repeats: int, as_json: bool) -> Any:
    from tunekit.measure import MeasureSettings

    try:
        return MeasureSettings(steps=steps, warmup=warmup, repeats=repeats)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)


@main.command(
    "tune",
    epilog=example(
        "tunekit tune --gpu a100 --cell lstm --head-dim 768 --heads 1 --batch 16",
        "tunekit tune --gpu h100 --cell gru --head-dim 256 --heads 4 --batch 64 --dtype float32 \\",
        "             --direction both --backend cuda-fused --top 10 --json",
    ),
)
@problem_options
@click.option("--top", type=int, default=5, show_default=True, help="How many candidates to list.")
@click.option(
    "--solver",
    default="auto",
    show_default=True,
    help="auto (numpy over small spaces, else native), native, cpsat, vector or brute "
    "(enumerates every point: small spaces only).",
)
@click.option(
    "--db",
    "db_path",
    default=None,
    help="Tuning database file (default: $TUNEKIT_DB, else tuning.sqlite in the user's cache directory).",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Compile the top candidates for the GPU's arch offline; drop any that spill or break a limit.",
)
@click.option("--verify-top", type=int, default=3, show_default=True, help="Candidates --verify compiles.")
@click.option(
    "--measure",
    is_flag=True,
    help="On a CUDA GPU: check each family's top candidates against the reference, then time them.",
)
@click.option("--measure-top", type=int, default=3, show_default=True, help="Candidates timed per family.")
@click.option("--steps", type=int, default=256, show_default=True, help="Sequence length T of --measure.")
@click.option("--warmup", type=int, default=5, show_default=True, help="Untimed runs before timing.")
@click.option("--repeats", type=int, default=20, show_default=True, help="Timed runs per candidate.")
@click.option(
    "--simulate",
    type=click.Path(dir_okay=False),
    default=None,
    help="Measure by replaying the measured records of this `tunekit db export` file (no GPU needed).",
)
@click.option(
    "--report",
    "report_dir",
    is_flag=False,
    flag_value="reports",
    default=None,
    metavar="[DIR]",
    help="Also write this run's HTML report with plots under DIR (default reports/).",
)
def tune_command(
    gpu: str,
    cell: str,
    head_dim: int,
    heads: int,
    batch: int,
    dtype: str,
    direction: str,
    backend: str,
    as_json: bool,
    top: int,
    solver: str,
    db_path: str | None,
    verify: bool,
    verify_top: int,
    measure: bool,
    measure_top: int,
    steps: int,
    warmup: int,
    repeats: int,
    simulate: str | None,
    report_dir: str | None,
) -> None:
    """Rank the feasible kernel configurations for a recurrent layer on a GPU (offline, no GPU needed),
    record them in the tuning database and choose the most trusted best one."""
    from tunekit.db.exchange import ExportFormatError
    from tunekit.db.tuning_run import RunOptions, run_tuning
    from tunekit.tuning import NoFeasibleConfig

    problem = _problem(cell, batch, heads, head_dim, dtype, direction, as_json)
    profile = _gpu(gpu, as_json)
    for name, value in (("verify-top", verify_top), ("measure-top", measure_top)):
        if value < 1:
            fail(f"--{name}: got {value}, expected an int >= 1", as_json=as_json)
    measure = measure or simulate is not None
    options = RunOptions(
        verify=verify,
        verify_top=verify_top,
        measure=measure,
        measure_top=measure_top,
        settings=_settings(steps, warmup, repeats, as_json) if measure else None,
        simulate=simulate,
        command=" ".join(["tunekit", *sys.argv[1:]]) if sys.argv[1:2] == ["tune"] else "tunekit tune",
        progress=measure and not as_json,
    )
    try:
        report = run_tuning(
            problem, profile, backend=backend, top=top, solver=solver, db_path=db_path, options=options,
            report=lambda line: click.echo(line, err=True),
        )  # fmt: skip
    except NoFeasibleConfig as exc:
        click.echo(json.dumps(exc.to_json_dict()) if as_json else exc.to_text())
        _report(problem, profile, backend, solver, report_dir, db_path)
        sys.exit(EXIT_FAILED)
    except ExportFormatError as exc:
        fail(f"--simulate: {exc}", as_json=as_json)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    if report.interrupted:
        fail(
            "interrupted while measuring; the candidates finished before it are recorded in "
            f"{report.db_path} and the same command resumes from them",
            EXIT_INTERRUPTED,
            as_json=as_json,
        )
    if report.choice is None:
        fail(
            f"--verify dropped every one of the {len(report.result.candidates)} candidates (see above); "
            "rerun with a larger --top to verify more",
            EXIT_FAILED,
            as_json=as_json,
        )
    if as_json:
        click.echo(json.dumps(_json_report(report)))
    else:
        console = Console(highlight=False)
        _print_chosen(console, report)
        _print_steps(console, report)
        _print_candidates(console, report.result)
    _report(problem, profile, backend, solver, report_dir, db_path)


def _report(
    problem: Any, profile: Any, backend: str, solver: str, report_dir: str | None, db_path: str | None
) -> None:
    """--report: write the run's page (tunekit.cli.report) with the measurements the tuning database
    holds; its path goes to stderr, so that stdout stays the tables or the one JSON object."""
    if report_dir is None:
        return
    from tunekit.cli.report import write_run_report

    try:
        page = write_run_report(problem, profile, backend, solver, report_dir, db_path)
    except (ValueError, OSError) as exc:
        fail(str(exc))
    click.echo(f"Report: {page}", err=True)


@main.command(
    "explain",
    epilog=example(
        "tunekit explain --gpu l4 --cell lstm --head-dim 2976",
        "tunekit explain --gpu a100 --cell gru --head-dim 4096 --backend cuda-fused --json",
    ),
)
@problem_options
def explain_command(
    gpu: str,
    cell: str,
    head_dim: int,
    heads: int,
    batch: int,
    dtype: str,
    direction: str,
    backend: str,
    as_json: bool,
) -> None:
    """Why a kernel family has no configuration for a problem, and the nearest shapes that work."""
    from tunekit.explain import explain
    from tunekit.tuning import check_backend

    problem = _problem(cell, batch, heads, head_dim, dtype, direction, as_json)
    profile = _gpu(gpu, as_json)
    try:
        families = check_backend(backend)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    with Console(stderr=True).status("finding the conflicting constraints and the nearest shapes that fit"):
        explanations = [explain(problem, profile, family) for family in families]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "gpu": profile.name,
                    "cell": problem.cell,
                    "explanations": [e.to_json_dict() for e in explanations],
                }
            )
        )
    else:
        click.echo("\n\n".join(e.to_text() for e in explanations))
