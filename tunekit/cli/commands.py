"""Registers every command module on the ``tunekit`` group (one import line per module)."""

from tunekit.cli import hw  # noqa: F401
from tunekit.cli import tune  # noqa: F401
from tunekit.cli import bench  # noqa: F401
from tunekit.cli import validate  # noqa: F401
