"""Registers every command module on the ``tunekit`` group (one import per module)."""

from tunekit.cli import bench, generate, hw, report, tune, validate  # noqa: F401
