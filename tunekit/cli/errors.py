"""How every command reports bad input and failed checks: one line, a documented exit code.

Without ``--json``: ``Error: <message>`` on stderr. With ``--json``: one JSON object on stdout,
``{"error": <message>, "exit_code": <code>}``, so a script parsing stdout always gets JSON.
Exit codes: 1 a check failed or nothing fits (well-formed input), 2 bad input or usage.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import NoReturn

import click

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "example", "fail", "output_file", "output_folder"]

EXIT_FAILED = 1
EXIT_USAGE = 2  # click's own code for usage errors


def fail(message: str, code: int = EXIT_USAGE, *, as_json: bool = False) -> NoReturn:
    """Report ``message`` and exit with ``code``."""
    message = " ".join(str(message).split()) or "unknown error"  # one line
    if as_json:
        click.echo(json.dumps({"error": message, "exit_code": code}))
    else:
        click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def example(*lines: str) -> str:
    """A ``--help`` epilog showing example command lines (``\\b`` keeps click from rewrapping them)."""
    return "\b\nExample:\n" + "\n".join(f"  {line}" for line in lines)


def output_file(path: str | Path | None, option: str = "--out", *, as_json: bool = False) -> Path | None:
    """``path`` checked as a file ``write_atomic`` can write (before any work), else ``fail`` (exit 2)."""
    from tunekit.files import check_target

    if path is None:
        return None
    try:
        return check_target(path)
    except (ValueError, OSError) as exc:
        fail(f"{option}: {exc}", EXIT_USAGE, as_json=as_json)


def output_folder(path: str | Path, option: str = "--out", *, as_json: bool = False) -> Path:
    """``path`` as an existing writable folder (created if missing, before any work), else ``fail``."""
    from tunekit.files import ensure_folder

    try:
        return ensure_folder(path)
    except (ValueError, OSError) as exc:
        fail(f"{option}: {exc}", EXIT_USAGE, as_json=as_json)
