"""Registers every command module on the ``tunekit`` group (one import line per module)."""
