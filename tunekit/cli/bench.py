"""``tunekit bench``: benchmarks that write reports under ``reports/`` (thin layer over tunekit.bench).

Each command checks its output folder (creating it if missing) before it starts: a bad ``--out``
is an ``Error:`` line and exit 2 at once, not after the whole run.
"""

from __future__ import annotations

import click

from tunekit.cli import main
from tunekit.cli.errors import example, fail, output_folder

# brute force is far too slow for the full grid; "previous" is the pipeline before the vectorised
# path (tunekit.bench.solver_bench_previous), timed beside auto
BENCH_SOLVERS = ("auto", "previous", "native", "cpsat", "vector")


@main.group("bench", epilog=example("tunekit bench solvers --quick --out /tmp/bench"))
def bench() -> None:
    """Benchmarks; each writes a Markdown and a JSON report under reports/."""


@bench.command(
    "solvers",
    epilog=example("tunekit bench solvers --quick", "tunekit bench solvers --solver native --solver cpsat"),
)
@click.option("--quick", is_flag=True, help="A small grid (2 shapes, seconds) instead of the full sweep.")
@click.option(
    "--out",
    "out_dir",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for solver_bench.md and solver_bench.json (created if missing).",
)
@click.option(
    "--solver",
    "solvers",
    multiple=True,
    type=click.Choice(BENCH_SOLVERS),
    help="Solvers to time, repeatable (default: auto, previous, native and cpsat on every shape; "
    "previous is the pipeline before the vectorised path, with the default solver; brute force is not "
    "offered: it would take hours on the grid).",
)
def solvers_command(quick: bool, out_dir: str, solvers: tuple[str, ...]) -> None:
    """Time tune(..., backend="auto") over a grid of shapes with each solver; coverage and baselines."""
    import dataclasses

    from rich.console import Console

    from tunekit.bench.solver_bench import DEFAULT_GRID, QUICK_GRID, run, write_reports

    out = output_folder(out_dir)
    grid = QUICK_GRID if quick else DEFAULT_GRID
    if solvers:
        every = dict(grid.solvers)
        grid = dataclasses.replace(grid, solvers=tuple((s, every.get(s, 1)) for s in dict.fromkeys(solvers)))
    console = Console(stderr=True, highlight=False)
    with console.status("starting") as status:
        report = run(grid, progress=lambda text: status.update(text))
    md, js = write_reports(report, out)
    for solver, stats in report["summary_ms"].items():
        if stats.get("n"):
            click.echo(
                f"{solver}: {stats['n']} shapes, median {stats['median']:.1f} ms, p90 {stats['p90']:.1f} ms, "
                f"max {stats['max']:.1f} ms"
            )
    click.echo(f"wrote {md} and {js}")


@bench.command(
    "calibrate-triton",
    epilog=example(
        "tunekit bench calibrate-triton --workers 2",
        "tunekit bench calibrate-triton --steps check,reach",
    ),
)
@click.option(
    "--count",
    default=240,
    show_default=True,
    type=click.IntRange(min=1),
    help="Configurations in the random sample (>= 1).",
)
@click.option(
    "--out",
    "out_dir",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the reports (created if missing).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Compile processes in parallel.",
)
@click.option(
    "--steps",
    default="probe,picks,check,reach",
    show_default=True,
    help="Steps to run, comma-separated (table, sample, probe, picks, check, reach).",
)
def calibrate_triton_command(count: int, out_dir: str, workers: int, steps: str) -> None:
    """triton-fused: measured register table, model vs compiler on a sample, tuner check, reach report."""
    from tunekit.bench.calibrate_triton import run

    out = output_folder(out_dir)
    chosen = [s.strip() for s in steps.split(",") if s.strip()]
    try:
        paths = run(count=count, out_dir=out, workers=workers, steps=chosen, progress=click.echo)
    except ValueError as error:  # a bad --steps value, named in the message
        raise click.UsageError(str(error)) from error
    click.echo("wrote " + ", ".join(str(p) for p in paths))


@bench.command(
    "cuda-compile",
    epilog=example("tunekit bench cuda-compile --quick", "tunekit bench cuda-compile --gpu a100 --limit 40"),
)
@click.option(
    "--quick", is_flag=True, help="One D per cell x dtype x direction (tens of kernels) instead of the sweep."
)
@click.option(
    "--gpu", "gpus", multiple=True, help="Profiles to sweep, repeatable (default a100 h100 l4 rtx4090)."
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=None, help="Compile at most this many configurations."
)
@click.option(
    "--workers", type=click.IntRange(1, 64), default=2, show_default=True, help="Parallel nvcc processes."
)
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False))
def cuda_compile_command(
    quick: bool, gpus: tuple[str, ...], limit: int | None, workers: int, out_dir: str
) -> None:
    """cuda-fused model vs ptxas over solver-chosen configurations (nvcc, cached): cuda_fused_compile.md."""
    from tunekit.bench.cuda_compile import DEFAULT_GPUS, run, write_reports
    from tunekit.hardware import load_profile

    out = output_folder(out_dir)
    for name in gpus:
        try:
            load_profile(name)
        except ValueError as exc:
            fail(f"--gpu: {exc}")
    report = run(gpus or DEFAULT_GPUS, quick=quick, limit=limit, workers=workers, progress=click.echo)
    md, js = write_reports(report, out)
    click.echo(f"{report['passed']} of {report['kernels']} kernels pass; wrote {md} and {js}")
