"""``tunekit validate``: reference layers, triton-fused kernels in the interpreter, and (``--compile``)
the triton-fused resource model against ahead-of-time compiles. A thin layer over tunekit.validation.

Exit codes: 0 every check passed, 1 a check failed, 2 bad usage (unknown cell, GPU or architecture).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from tunekit.cli import main

EXIT_FAILED = 1
EXIT_USAGE = 2
BACKENDS = ("reference", "triton-fused")
CELL_CHOICES = ("all", "lstm", "gru", "slstm", "elman")


def _fail(message: str) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _interpreter_note() -> str:
    """Turn on Triton's interpreter for this process if triton is not imported yet; say what happened."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        return "TRITON_INTERPRET=1 was already set: triton-fused kernels run in Triton's interpreter"
    if "triton" in sys.modules:
        return "triton was imported before TRITON_INTERPRET could be set: kernels need a GPU here"
    os.environ["TRITON_INTERPRET"] = "1"  # read by triton at import time
    return "set TRITON_INTERPRET=1 for this process: triton-fused kernels run in Triton's interpreter (CPU)"


def parse_archs(text: str) -> list[int]:
    """``"sm_80,sm_90"`` (or ``"80,90"``) → [80, 90]; ValueError naming the option on anything else."""
    from tunekit.aot import SUPPORTED_ARCHS

    archs = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        digits = part.lower().removeprefix("sm_").removeprefix("sm")
        if not digits.isdigit() or int(digits) not in SUPPORTED_ARCHS:
            known = ", ".join(f"sm_{a}" for a in SUPPORTED_ARCHS)
            raise ValueError(f"--compile: received {part!r}, expected a comma-separated list of {known}")
        archs.append(int(digits))
    if not archs:
        raise ValueError(f"--compile: received {text!r}, expected e.g. sm_80,sm_90")
    return archs


def _gpus_for(archs: list[int], gpu_name: str | None) -> dict[int, Any]:
    """Profile judging each architecture: --gpu for its own arch, else tunekit.validation.DEFAULT_PROFILE."""
    from tunekit.hardware import load_profile
    from tunekit.validation import DEFAULT_PROFILE

    chosen = load_profile(gpu_name) if gpu_name else None
    return {a: chosen if chosen and chosen.arch == a else load_profile(DEFAULT_PROFILE[a]) for a in archs}


def _check_table(title: str, checks: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in ("check", "max error", "tolerance", "result"):
        table.add_column(column, justify="right" if column in ("max error", "tolerance") else "left")
    for c in checks:
        mark = "[green]pass[/green]" if c.passed else "[red]FAIL[/red]"
        table.add_row(c.name, f"{c.max_error:.2e}", f"{c.tolerance:.2e}", mark)
    return table


def _compile_table(checks: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="triton-fused: resource model vs compiler (ptxas registers, Triton metadata.shared)")
    columns = (
        "kernel",
        "arch",
        "regs model",
        "regs ptxas",
        "shared model",
        "shared compiler",
        "spills",
        "verdict",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("kernel", "verdict") else "right")
    for c in checks:
        verdict = c.verdict if c.passed else f"[red]{c.verdict}[/red]"
        table.add_row(
            c.name, f"sm_{c.arch}", str(c.predicted_registers), str(c.registers),
            str(c.predicted_shared), str(c.shared), f"{c.spill_bytes} B", verdict,
        )  # fmt: skip
    return table


@main.command("validate")
@click.option("--cell", "cell", default="all", show_default=True, type=click.Choice(CELL_CHOICES))
@click.option("--backend", default="reference", show_default=True, type=click.Choice(BACKENDS))
@click.option(
    "--compile", "compile_archs", default=None, help="Also compile ahead of time, e.g. sm_80,sm_90."
)
@click.option("--gpu", "gpu_name", default=None, help="Profile whose limits judge compiles of its arch.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of tables.")
def validate_command(
    cell: str, backend: str, compile_archs: str | None, gpu_name: str | None, as_json: bool
) -> None:
    """Check the layers numerically and the triton-fused resource model against the compiler."""
    note = _interpreter_note() if backend == "triton-fused" else ""
    from tunekit import validation

    try:
        cells = validation.cells_from(cell)
        archs = parse_archs(compile_archs) if compile_archs is not None else []
        gpus = _gpus_for(archs, gpu_name) if archs else {}
        if gpu_name and not archs:
            from tunekit.hardware import load_profile

            load_profile(gpu_name)  # an unknown name is a usage error even without --compile
    except ValueError as exc:
        _fail(str(exc))

    if backend == "reference":
        checks = validation.validate_reference(cells)
        title = "reference layers (float64) vs torch.nn and autograd"
    else:
        checks = validation.validate_interpreter(cells)
        title = "triton-fused (interpreter, fp32) vs float64 reference"
    compiled = []
    if archs:
        from rich.console import Console

        cases = validation.default_cases(cells)
        with Console(stderr=True).status(f"compiling {len(cases) * len(archs)} kernels for {compile_archs}"):
            compiled = validation.validate_compile(archs, gpus, cases)
    passed = all(c.passed for c in checks) and all(c.passed for c in compiled)

    if as_json:
        out = {"backend": backend, "cells": cells, "passed": passed, "checks": [c.as_dict() for c in checks]}
        if note:
            out["note"] = note
        if archs:
            out["compile"] = [c.as_dict() for c in compiled]
        click.echo(json.dumps(out, indent=2))
    else:
        from rich.console import Console

        console = Console()
        if note:
            console.print(note)
        console.print(_check_table(title, checks))
        if compiled:
            console.print(_compile_table(compiled))
        console.print("[green]all checks passed[/green]" if passed else "[red]some checks failed[/red]")
    if not passed:
        sys.exit(EXIT_FAILED)
