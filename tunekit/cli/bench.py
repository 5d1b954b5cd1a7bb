"""``tunekit bench``: benchmarks that write reports under ``reports/`` (thin layer over tunekit.bench)."""

from __future__ import annotations

import click

from tunekit.cli import main


@main.group("bench")
def bench() -> None:
    """Benchmarks; each writes a Markdown and a JSON report under reports/."""


@bench.command("solvers")
@click.option("--quick", is_flag=True, help="A small grid (2 shapes, seconds) instead of the full sweep.")
@click.option(
    "--out",
    "out_dir",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for solver_bench.md and solver_bench.json.",
)
@click.option(
    "--solver",
    "solvers",
    multiple=True,
    type=click.Choice(["auto", "native", "cpsat", "vector"]),
    help="Solvers to time, repeatable (default: auto on every shape, native and cpsat on a sample).",
)
def solvers_command(quick: bool, out_dir: str, solvers: tuple[str, ...]) -> None:
    """Time tune(..., backend="auto") over a grid of shapes with each solver; coverage and baselines."""
    import dataclasses

    from rich.console import Console

    from tunekit.bench.solver_bench import DEFAULT_GRID, QUICK_GRID, run, write_reports

    grid = QUICK_GRID if quick else DEFAULT_GRID
    if solvers:
        every = dict(grid.solvers)
        grid = dataclasses.replace(grid, solvers=tuple((s, every.get(s, 1)) for s in dict.fromkeys(solvers)))
    console = Console(stderr=True, highlight=False)
    with console.status("starting") as status:
        report = run(grid, progress=lambda text: status.update(text))
    md, js = write_reports(report, out_dir)
    for solver, stats in report["summary_ms"].items():
        if stats.get("n"):
            click.echo(
                f"{solver}: {stats['n']} shapes, median {stats['median']:.1f} ms, p90 {stats['p90']:.1f} ms, "
                f"max {stats['max']:.1f} ms"
            )
    click.echo(f"wrote {md} and {js}")


@bench.command("calibrate-triton")
@click.option("--count", default=240, show_default=True, help="Configurations in the random sample.")
@click.option("--out", "out_dir", default="reports", show_default=True, type=click.Path(file_okay=False))
@click.option("--workers", default=1, show_default=True, help="Compile processes in parallel.")
@click.option(
    "--steps", default="table,sample,check,reach", show_default=True, help="Steps to run, comma-separated."
)
def calibrate_triton_command(count: int, out_dir: str, workers: int, steps: str) -> None:
    """triton-fused: measured register table, model vs compiler on a sample, tuner check, reach report."""
    from pathlib import Path

    from tunekit.bench.calibrate_triton import run

    chosen = [s.strip() for s in steps.split(",") if s.strip()]
    try:
        paths = run(count=count, out_dir=Path(out_dir), workers=workers, steps=chosen, progress=click.echo)
    except ValueError as error:  # a bad --steps (or --count / --workers) value, named in the message
        raise click.UsageError(str(error)) from error
    click.echo("wrote " + ", ".join(str(p) for p in paths))
