"""``tunekit report`` (and ``tunekit tune --report``): one HTML page with PNG plots per tuning run.

A thin layer over :mod:`tunekit.report`: the page lands in ``<DIR>/<run name>/index.html`` (default
``reports/`` under the working directory). Exit codes: 0 written (also when nothing fits: the page
then explains why), 2 bad input or an ``--out`` that cannot be written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from tunekit.cli import main
from tunekit.cli.errors import example, fail
from tunekit.cli.tune import problem_options

DEFAULT_DIR = "reports"


def write_run_report(
    problem: Any, gpu: Any, backend: str, solver: str, out: str, db_path: str | None = None
) -> Path:
    """Tune ``problem`` for the report, add the tuning database's measurements, write the page;
    returns the page's path."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(
            "reports draw their plots with matplotlib, which is not installed: pip install 'tunekit[report]'"
        ) from None
    from tunekit import report
    from tunekit.db import TuningDBError

    try:
        measured = report.stored_measurements(problem, gpu, backend, db=db_path)
    except TuningDBError as exc:
        raise ValueError(str(exc)) from exc
    return report.write(report.collect(problem, gpu, backend, measurements=measured, solver=solver), out)


@main.command(
    "report",
    epilog=example(
        "tunekit report --gpu h100 --cell lstm --head-dim 768 --batch 16 --direction both",
        "tunekit tune --gpu a100 --cell gru --head-dim 64 --batch 16 --report out/",
    ),
)
@problem_options
@click.option("--out", default=DEFAULT_DIR, show_default=True, help="Folder the run's page goes under.")
@click.option("--solver", default="auto", show_default=True, help="As tunekit tune's --solver.")
@click.option(
    "--db",
    "db_path",
    default=None,
    help="Tuning database with the measurements (default: $TUNEKIT_DB, else the user's cache).",
)
def report_command(
    gpu: str,
    cell: str,
    head_dim: int,
    heads: int,
    batch: int,
    dtype: str,
    direction: str,
    backend: str,
    as_json: bool,
    out: str,
    solver: str,
    db_path: str | None,
) -> None:
    """Write an HTML page with plots for one tuning run: every family's candidates against their
    binding limit, the chosen configuration's slack on every limit, feasible counts per family, the
    cost terms stacked, and measured against predicted where the tuning database holds timings.
    """
    from tunekit.problem import Problem

    try:
        problem = Problem(
            cell=cell, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, direction=direction
        )
        page = write_run_report(problem, gpu, backend, solver, out, db_path)
    except (ValueError, OSError) as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        click.echo(json.dumps({"report": str(page), "files": sorted(p.name for p in page.parent.iterdir())}))
    else:
        click.echo(f"tunekit report: wrote {page}")
