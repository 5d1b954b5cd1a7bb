"""The on-disk cache of compile results: one JSON file per entry, checked when read.

A compile is keyed by what decides its output: the program's canonical name, the digest of its
source (and of the headers it includes), the architecture, the tool and the tool's version. The
file name is a hash of that key (never a user string), the file holds the key, the payload and a
sha256 of the payload; an entry that does not parse, belongs to another key or fails its hash is a
miss and is rebuilt. Writes are atomic (tunekit.files.write_atomic), so two processes filling the
same entry leave one whole file. Bytes (cubins) are stored base64-encoded in the payload.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunekit.cache import cache_dir
from tunekit.files import write_atomic

__all__ = ["CompileCache", "b64decode", "b64encode", "cache_dir"]

FORMAT = 1  # bump when the payload layout changes: old entries then miss


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


class CompileCache:
    """Compile results by key, in ``directory`` (default: :func:`cache_dir` ("compile"))."""

    def __init__(self, directory: str | os.PathLike | None = None) -> None:
        self.directory = Path(directory) if directory is not None else cache_dir("compile")
        self._warned = False

    def path(self, key: Mapping[str, Any]) -> Path:
        """Where the entry of ``key`` lives: a hash of the key, so no key field shapes the path."""
        return self.directory / f"{_digest(dict(key))[:40]}.json"

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The payload stored under ``key``, or None (missing, unreadable, another key, bad hash)."""
        try:
            entry = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return None
        ok = isinstance(entry, dict) and entry.get("format") == FORMAT and entry.get("key") == dict(key)
        if not ok or not isinstance(entry.get("payload"), dict):
            return None
        if entry.get("sha256") != _digest(entry["payload"]):
            return None
        return entry["payload"]

    def put(self, key: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
        """Store ``payload`` under ``key`` atomically; a directory that cannot be written is warned
        about once and skipped (the result itself is still returned to the caller)."""
        payload = dict(payload)
        entry = {"format": FORMAT, "key": dict(key), "payload": payload, "sha256": _digest(payload)}
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(self.path(key), json.dumps(entry))
        except OSError as error:
            if not self._warned:
                warnings.warn(f"compile cache {self.directory} is not writable ({error}); not caching",
                              RuntimeWarning, stacklevel=2)  # fmt: skip
                self._warned = True
