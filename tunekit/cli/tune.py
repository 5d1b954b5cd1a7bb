"""``tunekit tune`` and ``tunekit explain``: a thin layer over tunekit.tuning and tunekit.explain.

``tune`` ranks the feasible configurations of a problem on a named GPU offline and prints the
chosen backend, its configuration, predicted resources and time, binding constraints and the top-k
candidates (``--json``: one JSON object). ``explain`` says why a family has no configuration and
which nearby shapes work. Bad input exits 2 with one line on stderr; "nothing feasible" exits 1.
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

EXIT_NO_CONFIG = EXIT_FAILED  # well-formed input, but no configuration exists (the explanation says why)

_RESOURCE_ROWS = (
    ("threads_per_block", "threads per block"),
    ("blocks", "blocks (grid)"),
    ("registers_per_thread", "registers per thread"),
    ("shared_memory_bytes_per_block", "shared memory per block (B)"),
)


def problem_options(command: Callable) -> Callable:
    """The options that describe a problem and a GPU, shared by ``tune`` and ``explain``."""
    options = [
        click.option(
            "--gpu", required=True, help="GPU profile name or alias, e.g. a100 (see `tunekit hw list`)."
        ),
        click.option("--cell", required=True, help="lstm, gru, slstm or elman."),
        click.option("--head-dim", "head_dim", type=int, required=True, help="Hidden size per head (D)."),
        click.option("--heads", type=int, default=1, show_default=True, help="Number of heads (N)."),
        click.option("--batch", type=int, default=16, show_default=True, help="Batch size (B)."),
        click.option("--dtype", default="bfloat16", show_default=True, help="float32, float16 or bfloat16."),
        click.option(
            "--direction", default="forward", show_default=True, help="forward, backward or both (training)."
        ),
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


def _print_result(console: Console, result: Any) -> None:
    predicted = result.predicted
    console.print(f"[bold]tunekit tune[/bold]: {_headline(result.problem, result.gpu)}")
    console.print(
        f"Chosen backend: [bold green]{result.backend}[/bold green], predicted "
        f"[bold]{predicted['time_us_per_step']:.3f} µs per step[/bold]"
    )
    console.print(f"Config {result.config.name}")
    console.print(f"  {_params(result.config.params)}")

    table = Table(title="Predicted resources", show_header=False, title_justify="left")
    table.add_column("quantity")
    table.add_column("value", justify="right")
    for key, label in _RESOURCE_ROWS:
        table.add_row(label, _number(predicted[key]))
    costs = Table(title="Predicted µs per step", show_header=False, title_justify="left")
    costs.add_column("term")
    costs.add_column("µs", justify="right")
    terms = [k for k in predicted if k.endswith("_us") and k != "time_us_per_step"]
    for key in terms:
        costs.add_row(key.removesuffix("_us").replace("_", " "), f"{predicted[key]:.3f}")
    costs.add_row("[bold]total[/bold]", f"[bold]{predicted['time_us_per_step']:.3f}[/bold]")
    console.print(Columns([table, costs]))
    shown = {k for k, _ in _RESOURCE_ROWS} | set(terms) | {"time_us_per_step"}
    others = ", ".join(f"{k}={_number(v)}" for k, v in predicted.items() if k not in shown)
    if others:
        console.print(f"Also: {others}")

    if result.binding_constraints:
        console.print("Binding constraints (>= 95% of the limit):")
        for line in result.binding_constraints:
            console.print(f"  {line}")
    else:
        console.print("Binding constraints: none (every limit below 95%)")

    top = Table(title=f"Top {len(result.candidates)} candidates", title_justify="left")
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
) -> None:
    """Rank the feasible kernel configurations for a recurrent layer on a GPU (offline, no GPU needed)."""
    from tunekit.tuning import NoFeasibleConfig, tune

    problem = _problem(cell, batch, heads, head_dim, dtype, direction, as_json)
    profile = _gpu(gpu, as_json)
    try:
        result = tune(problem, profile, backend=backend, top=top, solver=solver)
    except NoFeasibleConfig as exc:
        if as_json:
            click.echo(json.dumps(exc.to_json_dict()))
        else:
            click.echo(exc.to_text())
        sys.exit(EXIT_NO_CONFIG)
    except ValueError as exc:
        fail(str(exc), as_json=as_json)
    if as_json:
        click.echo(json.dumps(result.to_json_dict()))
    else:
        _print_result(Console(highlight=False), result)


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
