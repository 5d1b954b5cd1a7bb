"""A package written by ``tunekit generate`` on disk: its manifest, and loading it back.

Every generated package holds ``tunekit_package.json``: the format, the configuration, the problem,
the profile, the versions and the SHA-256 of every other file. It is what marks a folder as a
tunekit package (so ``generate --out`` may replace it, and nothing else), and what
:func:`load` checks before it imports the package: a file that was edited, truncated or removed is
reported by name instead of running.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST",
    "PackageError",
    "check_replaceable",
    "load",
    "manifest_bytes",
    "package_name",
    "read_manifest",
]

MANIFEST = "tunekit_package.json"
FORMAT = "tunekit-package"
FORMAT_VERSION = 1
# what importing a package leaves beside its files: byte-code caches, never needed again
_BYTECODE_DIR = "__pycache__"


class PackageError(ValueError):
    """A folder is not a (complete, unedited) tunekit package; the message names the file and the fix."""


def package_name(canonical_name: str) -> str:
    """The package's Python name from a configuration's canonical name: ``tk_`` + the name, lower
    case, with '-' and '.' as '_' (e.g. ``tk_lstm_fwd_tritonfused_d64_n1_b16_bf16_...``)."""
    from tunekit.cache import check_entry_name

    return "tk_" + re.sub(r"[.-]", "_", check_entry_name(canonical_name, "configuration name").lower())


def digest(data: bytes) -> str:
    """SHA-256 of ``data`` in hex, as the manifest records every file."""
    return hashlib.sha256(data).hexdigest()


def manifest_bytes(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """The manifest as stable JSON (sorted keys, two-space indent, a final newline), with the
    SHA-256 of every file under ``"files"``."""
    body = dict(manifest) | {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "files": {path: digest(files[path]) for path in sorted(files)},
    }
    return (json.dumps(body, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of the package in ``folder``; PackageError when there is none or it is not ours."""
    path = Path(folder) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(
            f"{folder}: no {MANIFEST}, so not a package written by `tunekit generate`"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackageError(
            f"{path}: unreadable ({exc}); regenerate the package with `tunekit generate`"
        ) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("files"), dict):
        raise PackageError(f"{path}: not a tunekit package manifest (format {FORMAT!r} expected)")
    if data.get("format_version") != FORMAT_VERSION:
        raise PackageError(
            f"{path}: format version {data.get('format_version')!r}, this tunekit reads {FORMAT_VERSION}; "
            "regenerate the package with this tunekit"
        )
    return data


def _entries(folder: Path) -> list[str]:
    """Every file under ``folder`` as a '/'-separated relative path, byte-code caches left out."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != _BYTECODE_DIR)
        base = Path(root).relative_to(folder)
        found += [(base / name).as_posix() for name in sorted(names)]
    return found


def check_replaceable(folder: str | os.PathLike) -> None:
    """Return when ``folder`` holds a previous tunekit package and nothing else (so replacing it loses
    nothing); otherwise PackageError saying what is there and what to do."""
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except PackageError as exc:
        raise PackageError(
            f"out: {folder} is not empty and not a tunekit package ({exc}); choose a new or empty folder"
        ) from None
    known = set(manifest["files"]) | {MANIFEST}
    strangers = [entry for entry in _entries(folder) if entry not in known]
    if strangers:
        shown = ", ".join(strangers[:5]) + (f" and {len(strangers) - 5} more" if len(strangers) > 5 else "")
        raise PackageError(
            f"out: {folder} holds a tunekit package and files it did not write ({shown}); "
            "move them away or choose another folder, so that regenerating does not delete them"
        )


def verify(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest, after checking that every file it lists is there with its recorded SHA-256."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    for relative, expected in sorted(manifest["files"].items()):
        path = folder.joinpath(*relative.split("/"))
        try:
            actual = digest(path.read_bytes())
        except OSError:
            raise PackageError(f"{path}: missing; regenerate the package (its README says how)") from None
        if actual != expected:
            raise PackageError(
                f"{path}: changed since `tunekit generate` wrote it (SHA-256 {actual[:12]}…, expected "
                f"{expected[:12]}…); regenerate the package (its README says how)"
            )
    return manifest


def load(path: str | os.PathLike) -> ModuleType:
    """Import the package that ``tunekit generate`` wrote into ``path``, checked, and return it.

    Args:
        path: the folder given to ``tunekit generate --out``.

    Returns:
        The package module: ``rnn(Wx, R, b, states=None)`` (tunekit's functional layouts), the
        ``Layer`` nn.Module and the metadata (``NAME``, ``FAMILY``, ``PROBLEM``, ``CONFIG``, ``TIER``).
        Loading the same folder twice returns the same module.

    Example::

        lstm = tunekit.load("my_project/kernels")
        all_states, last = lstm.rnn(Wx, R, b)
        layer = lstm.Layer(input_size=64)

    Raises PackageError (a ValueError) when the folder is not a tunekit package or a file in it
    was changed; the package imports torch and triton (or cuda.core), never tunekit.
    """
    folder = Path(path).resolve()
    manifest = verify(folder)
    init = folder / "__init__.py"
    for module in list(sys.modules.values()):
        if getattr(module, "__file__", None) == str(init):
            return module
    name = str(manifest.get("package", ""))
    if not re.fullmatch(r"tk_[a-z0-9_]+", name):
        raise PackageError(f"{folder / MANIFEST}: package name {name!r} is not one tunekit writes")
    if name in sys.modules:  # the same configuration loaded from another folder: keep both apart
        name += "_" + digest(str(folder).encode())[:8]
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise PackageError(f"{init}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
