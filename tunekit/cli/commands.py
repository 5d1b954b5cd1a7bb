"""Registers every command module on the ``tunekit`` group (one import per module)."""

from tunekit.cli import bench, calibrate, db, hw, tune, validate  # noqa: F401
