"""The database file: its versioned schema, migrations, and what happens to a file that is not one.

The file is SQLite in WAL mode (readers never block the writer; a crash mid-write leaves the last
committed state, SQLite's rollback of an incomplete WAL transaction). It is marked as ours with
``PRAGMA application_id`` and carries its schema version in ``PRAGMA user_version``. Opening a file:

* missing or empty: a fresh database is created with the latest schema;
* an older schema version: migrated in one transaction (MIGRATIONS[v] takes v to v + 1);
* a newer one: refused (TuningDBError) — a newer tunekit wrote it, and it is not ours to rewrite;
* not SQLite, damaged (``PRAGMA quick_check``), another program's, or with the wrong tables: never
  trusted — moved aside as ``<name>.corrupt-<UTC time>`` (with its -wal/-shm files), reported in
  one line, and replaced by a fresh database.

The check and the recovery run under an exclusive lock on ``<name>.lock`` so that processes that
open one damaged file at once move it aside once, not each other's fresh replacement.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

__all__ = [
    "APPLICATION_ID",
    "LATEST",
    "MIGRATIONS",
    "TuningDBError",
    "columns_at",
    "connect",
    "diagnose",
    "open_checked",
]

APPLICATION_ID = 0x544B4442  # "TKDB": marks the file as a tunekit tuning database
BUSY_TIMEOUT_S = 60.0  # how long a statement waits for another process's write lock
SQLITE_HEADER = b"SQLite format 3\x00"


class TuningDBError(RuntimeError):
    """The tuning database cannot be used (a newer schema, a lock held too long, no access)."""


_KEY_COLUMNS = """
    profile TEXT NOT NULL, profile_hash TEXT NOT NULL, cell TEXT NOT NULL, cell_hash TEXT NOT NULL,
    family TEXT NOT NULL, batch INTEGER NOT NULL, heads INTEGER NOT NULL, head_dim INTEGER NOT NULL,
    dtype TEXT NOT NULL, direction TEXT NOT NULL, config_name TEXT NOT NULL, template_hash TEXT NOT NULL,
    tunekit_version TEXT NOT NULL, triton_version TEXT NOT NULL, cuda_version TEXT NOT NULL"""
_KEY = (
    "profile, profile_hash, cell, cell_hash, family, batch, heads, head_dim, dtype, direction, "
    "config_name, template_hash, tunekit_version, triton_version, cuda_version"
)

# MIGRATIONS[v] takes a database at schema version v to v + 1 (0: an empty file).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # v1: one table of records; JSON text for the nested values
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        f"""CREATE TABLE records (
            id INTEGER PRIMARY KEY,{_KEY_COLUMNS},
            params TEXT NOT NULL,
            tier TEXT NOT NULL CHECK (tier IN ('predicted', 'compiler-verified', 'measured')),
            status TEXT NOT NULL CHECK (status IN ('ok', 'rejected', 'failed')),
            predicted TEXT NOT NULL, binding TEXT NOT NULL, cost_model TEXT NOT NULL,
            compiled TEXT, samples TEXT NOT NULL, measure TEXT, numerics TEXT,
            note TEXT NOT NULL, updated_at TEXT NOT NULL,
            UNIQUE ({_KEY}))""",
    ),
    # v2: tuning runs (which command wrote a record), the model's rank of each record in its run,
    # and an index for the lookups layers make (profile + problem)
    (
        """CREATE TABLE runs (
            id INTEGER PRIMARY KEY, started_at TEXT NOT NULL, command TEXT NOT NULL,
            host TEXT NOT NULL, pid INTEGER NOT NULL)""",
        "ALTER TABLE records ADD COLUMN run_id INTEGER REFERENCES runs(id)",
        "ALTER TABLE records ADD COLUMN model_rank INTEGER",
        "CREATE INDEX records_lookup ON records (profile, cell, batch, heads, head_dim, dtype, direction)",
    ),
)
LATEST = len(MIGRATIONS)

_V1_RECORD_COLUMNS = (
    "id", *(c.strip() for c in _KEY.split(",")), "params", "tier", "status", "predicted", "binding",
    "cost_model", "compiled", "samples", "measure", "numerics", "note", "updated_at",
)  # fmt: skip


def columns_at(version: int) -> dict[str, tuple[str, ...]]:
    """The tables and their columns of schema ``version`` (what a file of that version must have)."""
    tables = {"meta": ("key", "value"), "records": _V1_RECORD_COLUMNS}
    if version >= 2:
        tables["runs"] = ("id", "started_at", "command", "host", "pid")
        tables["records"] = (*_V1_RECORD_COLUMNS, "run_id", "model_rank")
    return tables


def _is_busy(exc: sqlite3.Error) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED"))
    return "locked" in str(exc) or "busy" in str(exc)


def retrying(action: Callable[[], object], what: str, timeout_s: float = BUSY_TIMEOUT_S) -> object:
    """Run ``action``, again after a short randomised back-off while another process holds the
    lock (SQLite answers some contended calls with SQLITE_BUSY at once, without its busy wait)."""
    import random

    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            if time.monotonic() > deadline:
                raise TuningDBError(
                    f"{what}: the database stayed locked for {timeout_s:.0f} s ({exc})"
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(2 * delay, 0.25)


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, full sync, busy wait."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        mode = retrying(lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0], "journal mode")
        if str(mode).lower() != "wal":
            raise TuningDBError(f"{path}: SQLite would not use WAL mode here (got {mode!r})")
        # FULL: a commit is on disk before it returns (WAL + NORMAL could lose the last commits on
        # power loss; a crashed process loses nothing with either)
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        conn.close()
        raise
    return conn


def diagnose(path: Path) -> str | None:
    """Why ``path`` is not a usable tuning database, or None (missing, empty, or fine).

    Raises TuningDBError for a database of a newer schema (not damaged; not ours to replace)."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    if not os.access(path, os.R_OK | os.W_OK):
        raise TuningDBError(
            f"{path}: no permission to read and write it (a damaged file is moved aside; this is not)"
        )
    with open(path, "rb") as handle:
        header = handle.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        return "not an SQLite file"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise TuningDBError(f"{path}: cannot be opened ({exc})") from exc
    try:
        return _diagnose_open(conn, path)
    except sqlite3.DatabaseError as exc:
        if _is_busy(exc):
            raise TuningDBError(f"{path}: locked by another process for {BUSY_TIMEOUT_S:.0f} s") from exc
        if not _is_damage(exc):  # an I/O error, a full disk, ...: the file may be fine; leave it alone
            raise TuningDBError(f"{path}: cannot be read ({exc})") from exc
        return f"damaged ({exc})"
    finally:
        conn.close()


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLite's verdict that the bytes are not a database or are corrupt (not a transient fault)."""
    name = getattr(exc, "sqlite_errorname", "")
    if name:
        return name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
    return "malformed" in str(exc) or "not a database" in str(exc)


def _diagnose_open(conn: sqlite3.Connection, path: Path) -> str | None:
    check = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    if check != ["ok"]:
        return f"damaged (quick_check: {'; '.join(check[:3])})"
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {
        name: tuple(row[0] for row in conn.execute("SELECT name FROM pragma_table_info(?)", (name,)))
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    }
    if app_id != APPLICATION_ID:
        if app_id == 0 and not tables:
            return None  # an empty SQLite file: initialised as a fresh database
        listed = ", ".join(sorted(tables)) or "none"
        return f"another program's database (application_id {app_id:#x}, tables: {listed})"
    if version > LATEST:
        raise TuningDBError(
            f"{path} has schema version {version}, newer than this tunekit's {LATEST}: upgrade tunekit, "
            "or pass --db (or TUNEKIT_DB) another file"
        )
    if version < 1:
        return f"a tunekit database without a schema version (tables: {', '.join(sorted(tables))})"
    expected = columns_at(version)
    if any(tables.get(name) != cols for name, cols in expected.items()):
        return f"its tables do not match schema version {version}"
    return None


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An advisory lock on ``<name>.lock`` beside the database (POSIX; elsewhere a no-op)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: concurrent recovery is not serialised
        yield
        return
    lock = path.with_name(path.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):  # a stale WAL must never be replayed into the fresh file
        side = path.with_name(path.name + suffix)
        if side.exists():
            os.replace(side, target.with_name(target.name + suffix))
    return target


def _migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to LATEST in one write transaction; returns the version found."""
    found = conn.execute("PRAGMA user_version").fetchone()[0]
    if found >= LATEST:
        return found  # the common case: no write lock taken
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        for step in MIGRATIONS[found:]:
            for statement in step:
                conn.execute(statement)
        if found < LATEST:
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {LATEST}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return found


def open_checked(path: Path, report: Callable[[str], None]) -> tuple[sqlite3.Connection, str | None, int]:
    """(connection, the recovery message if the file was replaced, the schema version found).

    ``report`` gets the one-line recovery message when a damaged or foreign file is moved aside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path):
        problem = diagnose(path)
        recovered = None
        if problem is not None:
            moved = _move_aside(path)
            recovered = (
                f"tunekit: the tuning database {path} was {problem}; moved it to {moved.name} "
                "and started a fresh one"
            )
            report(recovered)
        conn = connect(path)
        try:
            found = retrying(lambda: _migrate(conn), f"{path}: schema")
        except BaseException:
            conn.close()
            raise
    return conn, recovered, int(found)  # type: ignore[arg-type]
