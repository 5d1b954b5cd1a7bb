"""``tunekit db``: the tuning database's path, its records, and export/import between machines.

A thin layer over :mod:`tunekit.db`. Every subcommand takes ``--db PATH`` (default ``$TUNEKIT_DB``,
else ``tuning.sqlite`` in the user's cache directory). Reading commands never create the file.
Bad input (a missing or malformed export, an unknown GPU) is one ``Error:`` line and exit 2; a
record that is not there is exit 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from tunekit.cli import main
from tunekit.cli.errors import EXIT_FAILED, example, fail

_DB_HELP = "Tuning database file (default: $TUNEKIT_DB, else tuning.sqlite in the user's cache directory)."


def _db_option(command: Callable) -> Callable:
    return click.option("--db", "db_path", default=None, help=_DB_HELP)(command)


def _path(db_path: str | None, as_json: bool = False) -> Path:
    from tunekit.db import TuningDBError, resolve_path

    try:
        return resolve_path(db_path)
    except TuningDBError as exc:
        fail(str(exc), as_json=as_json)


def _open(path: Path, as_json: bool = False) -> Any:
    from tunekit.db import TuningDB, TuningDBError

    try:
        return TuningDB(path, report=lambda line: click.echo(line, err=True))
    except TuningDBError as exc:
        fail(str(exc), EXIT_FAILED, as_json=as_json)


def _summary(record: Any) -> dict[str, Any]:
    k = record.key
    return {
        "name": record.name,
        "backend": k.family,
        "gpu": k.profile,
        "cell": k.cell,
        "problem": {
            "batch": k.batch,
            "heads": k.heads,
            "head_dim": k.head_dim,
            "dtype": k.dtype,
            "direction": k.direction,
        },  # fmt: skip
        "tier": record.tier,
        "status": record.status,
        "predicted_us_per_step": record.predicted.get("time_us_per_step"),
        "measured_us_per_step": record.quantiles() or None,
        "updated_at": record.updated_at,
    }


@main.group(
    "db", epilog=example("tunekit db list --gpu a100 --cell lstm", "tunekit db export --out tuning.json")
)
def db_group() -> None:
    """The tuning database: where it is, what it holds, export and import."""


@db_group.command("path", epilog=example("tunekit db path", "TUNEKIT_DB=./team.sqlite tunekit db path"))
@_db_option
def path_command(db_path: str | None) -> None:
    """Print the database file's path (it may not exist yet)."""
    click.echo(str(_path(db_path)))


@db_group.command("list", epilog=example("tunekit db list --gpu h100 --tier measured --json"))
@_db_option
@click.option("--gpu", default=None, help="Only this GPU profile (name or alias).")
@click.option("--cell", default=None, help="Only this cell.")
@click.option("--backend", default=None, help="Only this kernel family.")
@click.option("--tier", default=None, help="Only predicted, compiler-verified or measured records.")
@click.option("--status", default=None, help="Only ok, rejected or failed records.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON list instead of a table.")
def list_command(
    db_path: str | None,
    gpu: str | None,
    cell: str | None,
    backend: str | None,
    tier: str | None,
    status: str | None,
    as_json: bool,
) -> None:
    """List the stored records, sorted by key."""
    from tunekit.db import STATUSES, TIERS
    from tunekit.problem import FAMILIES

    if tier is not None and tier not in TIERS:
        fail(f"--tier: got {tier!r}, expected one of {list(TIERS)}", as_json=as_json)
    if status is not None and status not in STATUSES:
        fail(f"--status: got {status!r}, expected one of {list(STATUSES)}", as_json=as_json)
    if backend is not None and backend not in FAMILIES:
        fail(f"--backend: got {backend!r}, expected one of {list(FAMILIES)}", as_json=as_json)
    profile = None
    if gpu is not None:
        from tunekit.hardware import load_profile

        try:
            profile = load_profile(gpu).name
        except ValueError as exc:
            fail(str(exc), as_json=as_json)
    path = _path(db_path, as_json)
    if not path.exists():
        if as_json:
            click.echo("[]")
        else:
            click.echo(f"No tuning database at {path} yet (`tunekit tune` creates it).")
        return
    with _open(path, as_json) as db:
        records = db.records(profile=profile, cell=cell, family=backend, tier=tier, status=status)
    if as_json:
        click.echo(json.dumps([_summary(r) for r in records]))
        return
    table = Table(title=f"{len(records)} records in {path}", title_justify="left")
    for column in ("tier", "status", "backend", "gpu", "problem", "config", "pred µs", "meas µs"):
        table.add_column(column, justify="right" if "µs" in column else "left")
    for r in records:
        k = r.key
        median = r.median_us
        table.add_row(
            r.tier,
            r.status,
            k.family,
            k.profile,
            f"{k.cell} D{k.head_dim} N{k.heads} B{k.batch} {k.dtype} {k.direction}",
            r.name,
            f"{r.predicted_us:.3f}",
            "—" if median is None else f"{median:.3f}",
        )
    Console(highlight=False).print(table)


@db_group.command(
    "show",
    epilog=example("tunekit db show lstm-fwd-tritonfused-D64-N1-B16-bf16-a100-sxm4-80gb-bb16-w4-s1-dp64"),
)
@click.argument("name")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON (the export's fields).")
def show_command(name: str, db_path: str | None, as_json: bool) -> None:
    """Every field of the records of configuration NAME (its canonical name)."""
    from tunekit.db.exchange import record_dict

    path = _path(db_path, as_json)
    records = []
    if path.exists():
        with _open(path, as_json) as db:
            records = db.records(config_name=name)
    if not records:
        fail(
            f"no record named {name!r} in {path}; `tunekit db list` shows the names",
            EXIT_FAILED,
            as_json=as_json,
        )
    if as_json:
        click.echo(json.dumps([record_dict(r) for r in records], sort_keys=True))
        return
    for r in records:
        click.echo(f"{r.name}  [{r.tier}, {r.status}]")
        for field, value in record_dict(r).items():
            if field == "config_name":
                continue
            if isinstance(value, dict | list):
                value = json.dumps(value, sort_keys=True)
            click.echo(f"  {field}: {value}")


@db_group.command("export", epilog=example("tunekit db export --out tuning.json"))
@_db_option
@click.option(
    "--out", "out_path", default=None, type=click.Path(dir_okay=False), help="File (default: stdout)."
)
def export_command(db_path: str | None, out_path: str | None) -> None:
    """Write every record as stable, sorted, versioned JSON (what `tunekit db import` reads)."""
    from tunekit.db.exchange import dumps
    from tunekit.files import write_atomic

    path = _path(db_path)
    records = []
    if path.exists():
        with _open(path) as db:
            records = db.records()
    text = dumps(records)
    if out_path is None:
        click.echo(text, nl=False)
        return
    try:
        write_atomic(out_path, text)
    except OSError as exc:
        fail(f"--out: cannot write {out_path} ({exc.strerror or exc})")
    click.echo(f"wrote {len(records)} records to {out_path}")


@db_group.command("import", epilog=example("tunekit db import tuning.json"))
@click.argument("file", type=click.Path(dir_okay=True))
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def import_command(file: str, db_path: str | None, as_json: bool) -> None:
    """Merge the records of an export FILE into the database (all or nothing; a tier never drops)."""
    from tunekit.db import TuningDBError
    from tunekit.db.exchange import ExportFormatError, read_export

    try:
        records = read_export(file)
    except ExportFormatError as exc:
        fail(f"import: {exc}", as_json=as_json)
    path = _path(db_path, as_json)
    with _open(path, as_json) as db:
        try:
            new, merged = db.import_records(records)
        except TuningDBError as exc:
            fail(str(exc), EXIT_FAILED, as_json=as_json)
    if as_json:
        click.echo(json.dumps({"db": str(path), "records": len(records), "new": new, "merged": merged}))
    else:
        click.echo(
            f"imported {len(records)} records into {path} ({new} new, {merged} merged into stored ones)"
        )
