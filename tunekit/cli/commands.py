"""Registers every command module on the ``tunekit`` group (one import per module)."""

from tunekit.cli import bench, calibrate, db, generate, hw, report, tune, validate  # noqa: F401
