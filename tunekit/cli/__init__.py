"""The ``tunekit`` command: a thin click layer over the library API.

Each command group lives in its own module and is registered here.
"""

from __future__ import annotations

import click

from tunekit import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="tunekit")
def main() -> None:
    """Tune, generate and validate recurrent (LSTM, GRU, sLSTM, Elman) kernels for a GPU."""


def _register() -> None:
    # Imported here, not at the top, so each command module may import heavier stages lazily.
    from tunekit.cli import commands  # noqa: F401


_register()
