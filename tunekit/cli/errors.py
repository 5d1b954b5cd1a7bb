"""How every command reports bad input and failed checks: one line, a documented exit code.

Without ``--json``: ``Error: <message>`` on stderr. With ``--json``: one JSON object on stdout,
``{"error": <message>, "exit_code": <code>}``, so a script parsing stdout always gets JSON.
Exit codes: 1 a check failed or nothing fits (well-formed input), 2 bad input or usage.
"""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

__all__ = ["EXIT_FAILED", "EXIT_USAGE", "fail"]

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
