"""Writing a whole folder of files at once, so that a crash never leaves half of it behind.

``tunekit generate`` (a Python package) and ``tunekit report`` (an HTML page and its plots) write
several files that only make sense together. :func:`write_tree` writes them all into a temporary
sibling of the target folder and then renames it into place: a reader (or a crash) sees the old
folder or the new one, never a mix. Relative paths are checked first: canonical-name characters
only, no ``..``, no leading dot, so nothing is written outside the folder.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from tunekit.files import ensure_folder

__all__ = ["check_relative_path", "write_tree"]

# one path component: letters, digits, '_', '-', '.'; starting with a letter, digit or '_' (so no
# hidden files and no '..'); 200 characters leave room for the temporary prefixes under the
# 255-byte limit of common file systems
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


def check_relative_path(path: str) -> str:
    """``path`` (``/``-separated) if every component is made of canonical-name characters."""
    parts = path.split("/") if isinstance(path, str) else [None]
    bad = [p for p in parts if not isinstance(p, str) or not _PART.fullmatch(p) or ".." in p]
    if bad:
        raise ValueError(
            f"path: got {path!r}, expected '/'-separated names of letters, digits, '_', '-' and '.' "
            "(no '..', none starting with '.' or '-')"
        )
    return path


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fill(folder: Path, files: Mapping[str, bytes]) -> None:
    for relative in sorted(files):
        target = folder.joinpath(*relative.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(files[relative])
            handle.flush()
            os.fsync(handle.fileno())


def write_tree(
    target: str | os.PathLike,
    files: Mapping[str, bytes],
    *,
    may_replace: Callable[[Path], None] | None = None,
) -> Path:
    """Make folder ``target`` hold exactly ``files`` (relative path -> bytes), atomically.

    A missing or empty ``target`` is created. An existing non-empty one is replaced only when
    ``may_replace(target)`` returns without raising (it raises a ValueError saying why not);
    without ``may_replace`` it is refused. The files are written (and fsynced) into a temporary
    sibling folder, then renamed into place; the old folder is first renamed aside and deleted once
    the new one is in place (a crash between the two renames leaves both complete folders as
    hidden siblings, never a half-written one). Returns the target path.
    """
    for relative in files:
        check_relative_path(relative)
        if not isinstance(files[relative], bytes):
            raise ValueError(f"files[{relative!r}]: got {type(files[relative]).__name__}, expected bytes")
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise ValueError(f"out: {target} exists and is not a folder; choose a folder path")
    parent = ensure_folder(target.absolute().parent)  # a clear error for a file or no permission
    if target.is_dir() and any(target.iterdir()):
        if may_replace is None:
            raise ValueError(f"out: {target} exists and is not empty; choose a new or empty folder")
        may_replace(target)
    staging = parent / f".{target.name}.{secrets.token_hex(4)}.new"
    staging.mkdir(mode=0o777)  # narrowed by the umask, as any new folder
    try:
        _fill(staging, files)
        _swap_in(staging, target, parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _fsync_folder(parent)
    return target


def _swap_in(staging: Path, target: Path, parent: Path) -> None:
    """Rename ``staging`` to ``target``; an existing ``target`` is moved aside first, then deleted."""
    if not target.exists():
        os.rename(staging, target)
        return
    if not any(target.iterdir()):
        os.replace(staging, target)  # POSIX rename replaces an empty folder
        return
    aside = parent / f".{target.name}.{secrets.token_hex(4)}.old"
    os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(aside, target)  # put the old folder back
        raise
    shutil.rmtree(aside, ignore_errors=True)
