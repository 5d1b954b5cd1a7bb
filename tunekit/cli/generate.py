"""``tunekit generate``: write a tuned kernel as a self-contained Python package (tunekit.generate).

Exit codes: 0 written, 1 no configuration fits (the explanation is printed, nothing is written),
2 bad input (an unknown GPU or cell, a family this tunekit cannot package, an ``--out`` folder that
holds anything but a previous tunekit package).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from tunekit.cli import main
from tunekit.cli.errors import EXIT_FAILED, example, fail
from tunekit.cli.tune import problem_options


def _summary(generated: Any) -> dict[str, Any]:
    choice = generated.choice
    return {
        "path": str(generated.path),
        "package": choice.package,
        "name": choice.config.name,
        "family": choice.family,
        "gpu": choice.profile.name,
        "tier": choice.tier,
        "reason": choice.reason,
        "predicted_us_per_step": float(choice.predicted["time_us_per_step"]),
        "files": list(generated.files),
        "replaced": generated.replaced,
    }


@main.command(
    "generate",
    epilog=example(
        "tunekit generate --gpu h100 --cell lstm --head-dim 64 --heads 4 --direction both --out kernels"
    ),
)
@problem_options
@click.option("--out", required=True, help="Package folder: new, empty, or a previous tunekit package.")
@click.option(
    "--db",
    "db_path",
    default=None,
    help="Tuning database to take the configuration from (default: $TUNEKIT_DB, else the user's cache).",
)
def generate_command(
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
    db_path: str | None,
) -> None:
    """Write the tuned kernels of a recurrent layer as a Python package that needs no tunekit.

    The package holds the kernel sources, a loader (rnn(Wx, R, b, states=None) and a Layer
    nn.Module) and a README; --direction both includes the backward kernel (training). The
    configuration is the tuning database's most trusted best (measured, compiler-verified,
    predicted), else the cost model's.
    """
    from tunekit.db import TuningDBError
    from tunekit.generate import generate, left_out_note
    from tunekit.problem import Problem
    from tunekit.tuning import NoFeasibleConfig

    try:
        problem = Problem(
            cell=cell, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, direction=direction
        )
        generated = generate(problem, gpu, out, backend=backend, db=db_path)
    except NoFeasibleConfig as exc:
        note = left_out_note(backend)
        if as_json:
            click.echo(json.dumps(exc.to_json_dict() | {"not_packaged": note}))
        else:
            click.echo(exc.to_text())
            if note:
                click.echo(f"Not packaged by this tunekit (so not tried): {note}")
        sys.exit(EXIT_FAILED)
    except (ValueError, OSError, TuningDBError) as exc:
        fail(str(exc), as_json=as_json)
    summary = _summary(generated)
    if as_json:
        click.echo(json.dumps(summary))
        return
    verb = "replaced the package in" if generated.replaced else "wrote"
    click.echo(f"tunekit generate: {verb} {generated.path} ({len(generated.files)} files)")
    click.echo(f"  configuration {summary['name']}")
    click.echo(
        f"  {summary['family']} on {summary['gpu']}: {summary['predicted_us_per_step']:.3f} µs per step "
        f"predicted; trust: {summary['tier']}"
    )
    click.echo(
        f"  import it by its folder name, or tunekit.load({str(generated.path)!r}); README.md has the rest"
    )
