"""``tunekit calibrate``: refit the cost model's constants and write them where the model reads them.

A thin layer over :mod:`tunekit.calibrate`. ``--source auto`` (default) fits on the tuning
database's measured records when it has usable ones, else on the published timings (DESIGN §7).
The constants go to ``--out`` (default: ``$TUNEKIT_COST_CONSTANTS`` when set, else the user's data
directory: the files the cost model reads before its packaged one); the report to ``--report``.
"""

from __future__ import annotations

import json
import os

import click

from tunekit.cli import main
from tunekit.cli.errors import EXIT_FAILED, example, fail


@main.command("calibrate", epilog=example("tunekit calibrate", "tunekit calibrate --source published --json"))
@click.option(
    "--source",
    type=click.Choice(["auto", "measured", "published"]),
    default="auto",
    show_default=True,
    help="Fit on the database's measured records, the published timings, or measured when there are any.",
)
@click.option("--db", "db_path", default=None, help="Tuning database to read measured records from.")
@click.option(
    "--out",
    "out_path",
    default=None,
    type=click.Path(dir_okay=False),
    help="Constants file to write (default: $TUNEKIT_COST_CONSTANTS, else the user's data directory).",
)
@click.option(
    "--report",
    "report_path",
    default="reports/cost_calibration.md",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Markdown report of inputs, fitted values and residuals ('' for none).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def calibrate_command(
    source: str, db_path: str | None, out_path: str | None, report_path: str, as_json: bool
) -> None:
    """Fit the cost model's constants to measured or published timings."""
    from tunekit.calibrate import fit, measured_points, published_fit, render_report
    from tunekit.cost import CONSTANTS_ENV, user_constants_path, write_constants
    from tunekit.db import TuningDB, TuningDBError, resolve_path
    from tunekit.files import write_atomic

    points, skipped = [], []
    if source in ("auto", "measured"):
        try:
            path = resolve_path(db_path)
            if path.exists():
                with TuningDB(path, report=lambda line: click.echo(line, err=True)) as db:
                    points, skipped = measured_points(db.records(tier="measured", status="ok"))
        except TuningDBError as exc:
            fail(str(exc), EXIT_FAILED, as_json=as_json)
        if source == "measured" and not points:
            fail("no usable measured records in the tuning database (run `tunekit tune --measure` on a GPU)",
                 EXIT_FAILED, as_json=as_json)  # fmt: skip
    used = "measured" if points else "published"
    result = fit(points, used, skipped=skipped) if points else published_fit()
    out = out_path or os.environ.get(CONSTANTS_ENV) or str(user_constants_path())
    try:
        write_constants(out, result.fitted, result.provenance())
        if report_path:
            write_atomic(report_path, render_report(result, f"tunekit calibrate --source {used}"))
    except OSError as exc:
        fail(f"cannot write {exc.filename}: {exc.strerror or exc}", as_json=as_json)
    fitted = [p for p in result.points if p.fit]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "source": used,
                    "constants": result.fitted.as_dict(),
                    "constants_file": out,
                    "report": report_path or None,
                    "points": len(fitted),
                    "max_abs_residual": result.worst_residual,
                    "skipped": list(skipped),
                }
            )
        )
        return
    names = ", ".join(f"{k}={v:g}" for k, v in result.fitted.as_dict().items())
    click.echo(f"fitted on {len(fitted)} {used} points; largest |residual| {result.worst_residual:.1%}")
    click.echo(f"constants: {names}")
    click.echo(f"wrote {out}" + (f" and {report_path}" if report_path else ""))
    for line in skipped:
        click.echo(f"left out: {line}")
