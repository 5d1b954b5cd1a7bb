"""Writing files so that a crash or a second process never leaves half a file behind.

:func:`write_atomic` is the one way tunekit writes a file (profiles, reports, caches, generated
packages). What it does with each kind of target, decided once:

- a missing file is created (mode from the umask, as ``open(path, "w")`` would), an existing regular
  file is replaced and keeps its permission bits;
- a **symlink is written through**: the file it points to is replaced in its own folder and the link
  stays a link (a link to a missing file creates that file);
- anything else — a directory, a FIFO, a device such as ``/dev/full`` or ``/dev/null``, a socket —
  is refused with a ValueError before anything is written, never replaced by a regular file;
- an empty path is a ValueError; a missing parent folder is a FileNotFoundError (pass
  ``make_parents=True`` to create it), a parent that is a file a NotADirectoryError;
- a failed write (a full disk, a file-size limit, no permission) is an OSError naming the path and
  the cause; the target is unchanged and no temporary file is left.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from pathlib import Path

__all__ = ["check_target", "ensure_folder", "write_atomic"]


def _error(kind: type[OSError], code: int | None, message: str) -> OSError:
    """An OSError of ``kind`` whose text is ``message`` alone (no ``[Errno N]``), errno kept."""
    error = kind(message)
    error.errno = code
    return error


def _target(path: str | os.PathLike) -> Path:
    """The file that will be replaced: ``path`` with a final symlink followed; checked."""
    if isinstance(path, str | os.PathLike) and not str(os.fspath(path)).strip():
        raise ValueError("path: got an empty path, expected a file path such as 'out/profile.toml'")
    if not isinstance(path, str | os.PathLike) or isinstance(os.fspath(path), bytes):
        raise ValueError(f"path: got {type(path).__name__}, expected a str or os.PathLike file path")
    given = Path(path)
    target = Path(os.path.realpath(given)) if given.is_symlink() else given
    try:
        info = os.stat(target)
    except FileNotFoundError:
        return target
    except NotADirectoryError:
        message = f"cannot write {given}: a parent of it is a file, not a folder"
        raise _error(NotADirectoryError, errno.ENOTDIR, message) from None
    if stat.S_ISDIR(info.st_mode):
        raise ValueError(f"path: {given} is a directory, expected a file path inside it")
    if not stat.S_ISREG(info.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a device or socket"
        raise ValueError(f"path: {given} is {kind}, not a regular file; tunekit writes regular files only")
    return target


def check_target(path: str | os.PathLike, *, make_parents: bool = False) -> Path:
    """The file :func:`write_atomic` would replace (a final symlink followed), checked without writing.

    Raises the errors of :func:`write_atomic` for the target and its folder, so a command can check
    its ``--out`` before hours of work rather than after.
    """
    target = _target(path)
    folder = target.parent
    if make_parents:
        ensure_folder(folder)
    if not folder.is_dir():
        if folder.exists():
            raise _error(NotADirectoryError, errno.ENOTDIR, f"cannot write {path}: {folder} is not a folder")
        message = f"cannot write {path}: its folder {folder} does not exist (create it first)"
        raise _error(FileNotFoundError, errno.ENOENT, message)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _error(
            PermissionError, errno.EACCES, f"cannot write {path}: its folder {folder} is not writable"
        )
    return target


def ensure_folder(path: str | os.PathLike) -> Path:
    """``path`` as an existing, writable folder (created with its parents if missing), else a clear error."""
    if isinstance(path, str | os.PathLike) and not str(os.fspath(path)).strip():
        raise ValueError("folder: got an empty path, expected a folder such as 'reports'")
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise _error(
            NotADirectoryError, errno.ENOTDIR, f"cannot use {folder} as a folder: it is a file"
        ) from None
    except OSError as exc:
        message = f"cannot create the folder {folder}: {exc.strerror or exc}"
        raise _error(type(exc), exc.errno, message) from exc
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _error(
            PermissionError, errno.EACCES, f"cannot write into the folder {folder}: permission denied"
        )
    return folder


def write_atomic(path: str | os.PathLike, data: str | bytes, *, make_parents: bool = False) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` via a temporary file and ``os.replace``.

    ``os.replace`` is atomic on POSIX and Windows when source and target share a file system
    (hence a temporary in the target's own folder): readers see the old file or the new one,
    never a mix. The data is flushed to disk (``fsync``) before the rename. See the module
    docstring for symlinks, special files and the errors.
    """
    target = check_target(path, make_parents=make_parents)
    if isinstance(data, str):
        payload = data.encode("utf-8")
    elif isinstance(data, bytes | bytearray | memoryview):
        payload = bytes(data)
    else:
        raise ValueError(f"data: got {type(data).__name__}, expected str or bytes")
    folder = target.parent
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    tmp = folder / f".{target.name}.{secrets.token_hex(4)}.tmp"
    try:
        # a new file's mode is 0o666 narrowed by the umask, as open() gives
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    except OSError as exc:
        raise _error(type(exc), exc.errno, f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            if mode is not None:
                os.chmod(tmp, mode)  # an existing file keeps its permission bits
            os.replace(tmp, target)
        except OSError as exc:
            cause = "no space left on device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            message = f"cannot write {path}: {cause}; the file is unchanged"
            raise _error(type(exc), exc.errno, message) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
