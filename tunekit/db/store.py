"""The tuning database: records in, records out, one transaction per tuning run.

``TuningDB(path)`` opens (creating, migrating or replacing a damaged file: :mod:`tunekit.db.schema`)
the SQLite file at ``path``: ``--db PATH``, else ``$TUNEKIT_DB``, else ``tuning.sqlite`` in the
user's cache directory (platformdirs). Writes take SQLite's write lock up front (``BEGIN
IMMEDIATE``), wait for another process's lock (busy timeout), and retry with a randomised back-off
when SQLite answers "busy" at once; each write is one transaction, so a crash leaves either all of
it or none.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from tunekit.db.keys import KEY_FIELDS, RecordKey, context
from tunekit.db.records import Record, choose, merge, now
from tunekit.db.schema import TuningDBError, open_checked, retrying

__all__ = ["DB_ENV", "DB_NAME", "TuningDB", "default_path", "resolve_path"]

DB_ENV = "TUNEKIT_DB"
DB_NAME = "tuning.sqlite"
T = TypeVar("T")

_DATA_COLUMNS = (
    "params", "tier", "status", "predicted", "binding", "cost_model", "compiled", "samples", "measure",
    "numerics", "note", "updated_at", "model_rank",
)  # fmt: skip


def default_path() -> Path:
    """``$TUNEKIT_DB`` when set, else ``tuning.sqlite`` in the user's cache directory."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tunekit", appauthor=False)) / DB_NAME


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """The database file: ``path`` if given, else :func:`default_path`."""
    resolved = default_path() if path is None or str(path) == "" else Path(path).expanduser()
    if resolved.is_dir():
        raise TuningDBError(
            f"{resolved} is a directory; expected the database file, e.g. {resolved / DB_NAME}"
        )
    if resolved.exists() and not resolved.is_file():
        raise TuningDBError(
            f"{resolved} is not a regular file (a FIFO, device or socket); expected the database file"
        )
    return resolved


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, sort_keys=True, separators=(",", ":"), default=dict)


def _to_row(record: Record) -> dict[str, Any]:
    row = record.key.as_dict()
    row.update(
        params=json.dumps(list(record.params.items()), separators=(",", ":")),  # in the model's order
        tier=record.tier,
        status=record.status,
        predicted=_json(dict(record.predicted)),
        binding=_json(list(record.binding_constraints)),
        cost_model=record.cost_model,
        compiled=_json(record.compiled),
        samples=_json(list(record.samples_us)),
        measure=_json(record.measure),
        numerics=_json(record.numerics),
        note=record.note,
        updated_at=record.updated_at,
        model_rank=record.model_rank,
    )
    return row


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _from_row(row: sqlite3.Row) -> Record:
    names = row.keys()
    return Record(
        key=RecordKey(**{f: row[f] for f in KEY_FIELDS}),
        params=dict(_loads(row["params"])),
        tier=row["tier"],
        status=row["status"],
        predicted=_loads(row["predicted"]),
        binding_constraints=tuple(_loads(row["binding"])),
        cost_model=row["cost_model"],
        model_rank=row["model_rank"] if "model_rank" in names else None,
        compiled=_loads(row["compiled"]),
        samples_us=tuple(_loads(row["samples"])),
        measure=_loads(row["measure"]),
        numerics=_loads(row["numerics"]),
        note=row["note"],
        updated_at=row["updated_at"],
    )


class TuningDB:
    """An open tuning database. Use as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike | None = None, *, report: Callable[[str], None] | None = None):
        self.path = resolve_path(path)
        if path is not None and str(path) and not self.path.parent.is_dir():
            # a path the caller named: its folder is theirs to create (the default one is ours)
            raise TuningDBError(
                f"{self.path}: its folder {self.path.parent} does not exist; create it or choose another path"
            )
        try:
            conn, self.recovered, self.found_version = open_checked(self.path, report or _stderr)
        except OSError as exc:
            raise TuningDBError(
                f"{self.path}: cannot open the tuning database ({exc.strerror or exc})"
            ) from exc
        except sqlite3.Error as exc:
            raise TuningDBError(f"{self.path}: cannot open the tuning database ({exc})") from exc
        conn.row_factory = sqlite3.Row
        self._conn = conn

    # ---- plumbing -------------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TuningDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, work: Callable[[sqlite3.Connection], T], what: str) -> T:
        """Run ``work`` in one write transaction (retried whole while another process writes)."""
        conn = self._conn

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        try:
            return retrying(attempt, f"{self.path}: {what}")  # type: ignore[return-value]
        except sqlite3.Error as exc:
            raise TuningDBError(f"{self.path}: {what} failed ({exc})") from exc

    def _select(self, where: str = "", args: Sequence[Any] = ()) -> list[Record]:
        sql = f"SELECT * FROM records {where}"
        try:
            rows = retrying(lambda: self._conn.execute(sql, tuple(args)).fetchall(), f"{self.path}: read")
        except sqlite3.Error as exc:
            raise TuningDBError(f"{self.path}: reading records failed ({exc})") from exc
        return sorted((_from_row(r) for r in rows), key=lambda r: r.key.as_tuple())  # type: ignore[union-attr]

    @staticmethod
    def _upsert(conn: sqlite3.Connection, record: Record, run_id: int | None) -> bool:
        """Merge ``record`` into the stored one with its key; True when it was new."""
        where = " AND ".join(f"{f} = ?" for f in KEY_FIELDS)
        key = record.key.as_tuple()
        found = conn.execute(f"SELECT * FROM records WHERE {where}", key).fetchone()
        old = None if found is None else _from_row(found)
        row = _to_row(merge(old, record))
        if old is None:
            row["run_id"] = run_id
            names = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            conn.execute(f"INSERT INTO records ({names}) VALUES ({marks})", tuple(row.values()))
            return True
        updates = {c: row[c] for c in _DATA_COLUMNS}
        if run_id is not None:
            updates["run_id"] = run_id
        sets = ", ".join(f"{c} = ?" for c in updates)
        conn.execute(f"UPDATE records SET {sets} WHERE id = ?", (*updates.values(), found["id"]))
        return False

    # ---- writing --------------------------------------------------------------------------------

    def record_run(self, records: Iterable[Record], command: str) -> int:
        """Store a tuning run and its records in one transaction; returns the run's id."""
        records = list(records)

        def work(conn: sqlite3.Connection) -> int:
            run_id = conn.execute(
                "INSERT INTO runs (started_at, command, host, pid) VALUES (?, ?, ?, ?)",
                (now(), command, socket.gethostname(), os.getpid()),
            ).lastrowid
            for record in records:
                self._upsert(conn, record, run_id)
            return int(run_id)

        return self._write(work, "recording a tuning run")

    def write(self, records: Iterable[Record], run_id: int | None = None) -> int:
        """Merge ``records`` in one transaction (attached to ``run_id`` if given); returns how many
        were new."""
        records = list(records)
        return self._write(
            lambda conn: sum(self._upsert(conn, r, run_id) for r in records), "writing records"
        )

    # ---- reading --------------------------------------------------------------------------------

    def get(self, key: RecordKey) -> Record | None:
        """The record stored under ``key``, or None."""
        where = " AND ".join(f"{f} = ?" for f in KEY_FIELDS)
        found = self._select(f"WHERE {where}", key.as_tuple())
        return found[0] if found else None

    def records(self, **equal: Any) -> list[Record]:
        """Every record whose columns equal the given values (e.g. ``profile="h100-sxm5-80gb"``,
        ``tier="measured"``, ``config_name=...``), sorted by key."""
        allowed = set(KEY_FIELDS) | {"tier", "status"}
        unknown = sorted(set(equal) - allowed)
        if unknown:
            raise ValueError(f"filter: unknown column(s) {unknown}; expected some of {sorted(allowed)}")
        given = {k: v for k, v in equal.items() if v is not None}
        where = " AND ".join(f"{k} = ?" for k in given)
        return self._select(f"WHERE {where}" if where else "", list(given.values()))

    def count(self) -> int:
        """How many records are stored."""
        return int(
            retrying(lambda: self._conn.execute("SELECT COUNT(*) FROM records").fetchone()[0], "count")
        )

    def runs(self) -> list[dict[str, Any]]:
        """Every tuning run (id, started_at, command, host, pid), oldest first."""
        rows = self._conn.execute("SELECT * FROM runs ORDER BY id").fetchall()
        return [dict(r) for r in rows]

    def matching(self, profile: Any, problem: Any, families: Sequence[str]) -> list[Record]:
        """The records valid here and now for ``problem`` on ``profile`` in ``families``: the same
        profile and cell hashes, templates and tool versions."""
        found: list[Record] = []
        for family in families:
            ctx = context(profile, problem, family)
            where = " AND ".join(f"{k} = ?" for k in ctx)
            found += self._select(f"WHERE {where}", list(ctx.values()))
        return found

    def best(self, profile: Any, problem: Any, family: str | Sequence[str] | None = None) -> Record | None:
        """The most trusted best record for ``problem`` on ``profile`` among ``family`` (one name,
        several, or None for all), see records.choose; None when nothing valid is stored."""
        from tunekit.cost import active_constants
        from tunekit.problem import FAMILIES

        families = (
            tuple(FAMILIES) if family is None else (family,) if isinstance(family, str) else tuple(family)
        )
        unknown = [f for f in families if f not in FAMILIES]
        if unknown:
            raise ValueError(f"family: got {unknown}, expected None or some of {list(FAMILIES)}")
        return choose(self.matching(profile, problem, families), active_constants().digest)

    # ---- exchange -------------------------------------------------------------------------------

    def export_text(self) -> str:
        """Every record as the stable, sorted, versioned JSON of :mod:`tunekit.db.exchange`."""
        from tunekit.db.exchange import dumps

        return dumps(self.records())

    def import_records(self, records: Iterable[Record]) -> tuple[int, int]:
        """Merge checked records (``exchange.loads``) in one transaction: (new, merged into stored)."""
        records = list(records)
        new = self._write(lambda conn: sum(self._upsert(conn, r, None) for r in records), "importing records")
        return new, len(records) - new
