"""write_atomic: readers see the old file or the new one, never a half-written one."""

from __future__ import annotations

import os

import pytest

from tunekit.files import write_atomic


def test_writes_and_replaces_creating_folders(tmp_path):
    target = tmp_path / "deep" / "er" / "profile.toml"
    write_atomic(target, "first")
    write_atomic(target, "second")
    assert target.read_text() == "second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["profile.toml"]


def test_a_crash_before_the_rename_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "cache.json"
    write_atomic(target, "old")

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.json"]
