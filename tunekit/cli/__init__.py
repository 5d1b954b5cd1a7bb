"""The ``tunekit`` command: a thin click layer over the library API.

Each command group lives in its own module and is registered here. Every failure reaches the user
as one line (``Error: ...`` on stderr, or with ``--json`` one JSON object on stdout) with a
documented exit code (:mod:`tunekit.cli.errors`): the commands report what they expect, and
:class:`TunekitGroup` turns the rest — click's usage errors, a ValueError or OSError from the
library, an unexpected exception — into the same line. ``TUNEKIT_DEBUG=1`` shows the traceback of
an unexpected exception instead.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from tunekit import __version__
from tunekit.cli.errors import EXIT_FAILED, EXIT_USAGE, example, fail


class TunekitGroup(click.Group):
    """The root group: its ``main`` keeps the CLI's one-line promise for every exception."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:  # the caller handles exceptions (click's contract)
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        argv = list(sys.argv[1:] if args is None else args)
        as_json = "--json" in argv
        try:
            result = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            fail("aborted", EXIT_FAILED, as_json=as_json)
        except click.UsageError as exc:
            command = exc.ctx.command_path if exc.ctx is not None else "tunekit"
            fail(f"{exc.format_message()} (see '{command} --help')", EXIT_USAGE, as_json=as_json)
        except click.ClickException as exc:
            fail(exc.format_message(), exc.exit_code, as_json=as_json)
        except (ValueError, OSError) as exc:  # the library's word for bad input, and bad paths
            if os.environ.get("TUNEKIT_DEBUG") == "1":
                raise
            fail(str(exc), EXIT_USAGE, as_json=as_json)
        except Exception as exc:
            if os.environ.get("TUNEKIT_DEBUG") == "1":
                raise
            message = (
                f"unexpected {type(exc).__name__}: {exc} (this is a bug in tunekit; "
                "run again with TUNEKIT_DEBUG=1 for the traceback and please report it)"
            )
            fail(message, EXIT_FAILED, as_json=as_json)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(
    "tunekit",
    cls=TunekitGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=example("tunekit tune --gpu a100 --cell lstm --head-dim 768 --heads 1 --batch 16"),
)
@click.version_option(__version__, prog_name="tunekit")
def main() -> None:
    """Tune, generate and validate recurrent (LSTM, GRU, sLSTM, Elman) kernels for a GPU."""


def _register() -> None:
    # Imported here, not at the top, so each command module may import heavier stages lazily.
    from tunekit.cli import commands  # noqa: F401


_register()
