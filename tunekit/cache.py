"""tunekit's on-disk caches: one per-user private directory, entries named safely and verified.

Every cache of tunekit (rendered Triton kernels, cubins, emulator shared objects) lives under
:func:`cache_dir`. The rules, each for an attack or an accident seen before:

- **Private.** ``$XDG_CACHE_HOME/tunekit/<kind>`` (default ``~/.cache/tunekit/<kind>``), created
  with mode 0700; an existing directory must be owned by this user and writable by nobody else
  (cached kernels are imported and loaded as code). One owned by us whose mode is merely loose
  (no one else can write into it) is tightened to 0700; anything else is a :class:`CacheError`.
- **Fallback.** When that location cannot be created or written (a read-only home), the same
  layout under ``<tempdir>/tunekit-<uid>`` with the same checks: a directory another user made
  there (a 0777 one, say) is refused, never used. When neither works: :class:`CacheError`.
- **Safe names.** :func:`entry_path` accepts only canonical-name characters (letters, digits,
  ``_ - .``, no ``..``, no leading dot), so a configuration named ``../../x`` cannot leave the cache.
- **Verified entries.** A text entry starts with a header line holding the SHA-256 of the text
  after it (:func:`write_text_entry` / :func:`read_text_entry`); a binary entry (cubin, ``.so``) keeps
  its SHA-256 in a sidecar ``<file>.sha256`` (:func:`write_binary_entry` / :func:`read_binary_entry`),
  so the file itself stays loadable as is. A missing, truncated, altered or undecodable entry reads
  as None and the caller rebuilds it; :func:`cached_text` and :func:`cached_bytes` do both steps.

All writes go through :func:`tunekit.files.write_atomic`: a reader sees an old entry or a new one.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from tunekit.files import write_atomic

__all__ = [
    "CacheError",
    "cache_dir",
    "cached_bytes",
    "cached_text",
    "check_entry_name",
    "entry_path",
    "read_binary_entry",
    "read_text_entry",
    "write_binary_entry",
    "write_text_entry",
]

# letters, digits, '_', '-', '.'; starting with a letter or digit; at most 200 characters (file
# systems allow 255 bytes per name, and the caller's suffix and the atomic writer's prefix need room)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")
_KIND = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_HEADER = re.compile(rb"tunekit-cache sha256=([0-9a-f]{64})\n")


class CacheError(OSError):
    """The cache directory is unsafe or unusable, or an entry cannot be written; the message says why."""


def check_entry_name(name: str, what: str = "cache entry name") -> str:
    """``name`` if it is made of canonical-name characters, else ValueError naming it and the rule."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"{what}: got {name!r}, expected letters, digits, '_', '-' and '.' (no '..', not starting "
            "with '.' or '-', at most 200 characters), as in a canonical configuration name"
        )
    return name


def _private(path: Path) -> Path:
    """Create ``path`` (mode 0700) or check an existing one: a directory, ours, nobody else can write."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = path.stat()
    except OSError as exc:
        raise CacheError(f"cache directory {path}: cannot create it ({exc.strerror or exc})") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise CacheError(f"cache directory {path}: exists and is not a directory")
    if info.st_uid != os.getuid():
        raise CacheError(
            f"cache directory {path}: owned by uid {info.st_uid}, not by this user (uid {os.getuid()}); "
            "its files would be imported as code, so it is not used; remove it or set XDG_CACHE_HOME"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CacheError(
            f"cache directory {path}: mode {stat.S_IMODE(info.st_mode):o} lets other users write into it, "
            "so its files cannot be trusted as code; remove it (tunekit recreates it with mode 700)"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)  # ours and writable by no one else: tightening it loses nothing
    if not os.access(path, os.W_OK | os.X_OK):
        raise CacheError(f"cache directory {path}: not writable by this user")
    return path


def _roots() -> list[Path]:
    """Where caches may live, in order: the user's cache home, then a per-user temp directory."""
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return [Path(home) / "tunekit", Path(tempfile.gettempdir()) / f"tunekit-{os.getuid()}"]


def cache_dir(kind: str) -> Path:
    """The per-user private cache directory for ``kind`` (e.g. ``"triton"``, ``"cubin"``, ``"so"``).

    Args:
        kind: lower-case letters, digits, ``_`` and ``-``: one folder per cache.
    Returns:
        ``$XDG_CACHE_HOME/tunekit/<kind>`` (or ``~/.cache/...``), created 0700 and checked; when it
        cannot be created or written, ``<tempdir>/tunekit-<uid>/<kind>`` under the same checks.
    Raises:
        ValueError: a bad ``kind``. CacheError: neither location is safe and usable (the message
        names both and why).

    Example: ``path = entry_path("cubin", config.name, ".cubin")`` lies in ``cache_dir("cubin")``.
    """
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"cache kind: got {kind!r}, expected lower-case letters, digits, '_' or '-'")
    problems: list[str] = []
    for root in _roots():
        try:
            _private(root)
            return _private(root / kind)
        except CacheError as exc:
            problems.append(str(exc))
    raise CacheError("no usable tunekit cache directory: " + "; ".join(problems))


def entry_path(kind: str, name: str, suffix: str = "") -> Path:
    """``cache_dir(kind) / (name + suffix)``, both checked (see :func:`check_entry_name`)."""
    check_entry_name(name)
    if suffix and not re.fullmatch(r"\.[A-Za-z0-9_]{1,16}", suffix):
        raise ValueError(f"cache entry suffix: got {suffix!r}, expected '' or a dot and 1-16 letters/digits")
    return cache_dir(kind) / f"{name}{suffix}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _comment(comment: str) -> bytes:
    if comment not in ("#", "//"):
        raise ValueError(f"comment: got {comment!r}, expected '#' (Python) or '//' (C, CUDA)")
    return comment.encode() + b" "


def write_text_entry(path: str | os.PathLike, text: str, *, comment: str = "#") -> Path:
    """Write ``text`` behind a header line ``<comment> tunekit-cache sha256=<hex>`` (atomically)."""
    body = text.encode("utf-8")
    header = _comment(comment) + f"tunekit-cache sha256={_digest(body)}\n".encode()
    path = Path(path)
    try:
        write_atomic(path, header + body)
    except (OSError, ValueError) as exc:
        raise CacheError(f"cache entry {path}: cannot write it ({exc})") from exc
    return path


def read_text_entry(path: str | os.PathLike, *, comment: str = "#") -> str | None:
    """The text of a verified entry; None when it is missing, not a regular file, or fails its hash."""
    data = _read_regular(Path(path))
    prefix = _comment(comment)
    if data is None or not data.startswith(prefix):
        return None
    header_end = data.find(b"\n") + 1
    match = _HEADER.fullmatch(data[len(prefix) : header_end])
    body = data[header_end:]
    if match is None or match.group(1).decode() != _digest(body):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:  # a hash collision with bad bytes; treat as corrupt all the same
        return None


def write_binary_entry(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` unchanged and its SHA-256 to ``<path>.sha256`` (the data first, both atomically)."""
    path = Path(path)
    try:
        write_atomic(path, bytes(data))
        write_atomic(_sidecar(path), f"{_digest(bytes(data))}\n")
    except (OSError, ValueError) as exc:
        raise CacheError(f"cache entry {path}: cannot write it ({exc})") from exc
    return path


def read_binary_entry(path: str | os.PathLike) -> bytes | None:
    """The bytes of a verified binary entry; None when missing, not a regular file, or unverified."""
    path = Path(path)
    data, recorded = _read_regular(path), _read_regular(_sidecar(path))
    if data is None or recorded is None or recorded.strip() != _digest(data).encode():
        return None
    return data


def cached_text(path: str | os.PathLike, build: Callable[[], str], *, comment: str = "#") -> str:
    """The verified text at ``path``, or ``build()`` written there when the entry is missing or bad."""
    text = read_text_entry(path, comment=comment)
    if text is None:
        text = build()
        write_text_entry(path, text, comment=comment)
    return text


def cached_bytes(path: str | os.PathLike, build: Callable[[], bytes]) -> bytes:
    """The verified bytes at ``path``, or ``build()`` written there when the entry is missing or bad."""
    data = read_binary_entry(path)
    if data is None:
        data = build()
        write_binary_entry(path, data)
    return data


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _read_regular(path: Path) -> bytes | None:
    """The bytes of a regular file (symlinks not followed), or None."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError:
        return None
    finally:
        os.close(fd)
