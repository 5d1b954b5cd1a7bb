"""The tuning database: what was predicted, compiled and measured for each configuration, kept.

SQLite (the standard library's ``sqlite3``) in WAL mode at ``--db PATH``, ``$TUNEKIT_DB`` or
``tuning.sqlite`` in the user's cache directory. A record is keyed by hardware profile (name +
hash), cell (name + declaration hash), family, problem, configuration name, template hash and the
tunekit/triton/CUDA versions (:mod:`tunekit.db.keys`); it carries one of three tiers of trust
(:mod:`tunekit.db.records`). Damaged or foreign files are moved aside, never trusted
(:mod:`tunekit.db.schema`); exports are stable JSON (:mod:`tunekit.db.exchange`).

For layers, one lookup::

    from tunekit.db import best
    record = best("h100", Problem("lstm", batch=16, heads=1, head_dim=768))   # Record | None
    record.family, record.tier, record.median_us, record.config()   # a KernelConfig to run
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from tunekit.db.exchange import EXPORT_FORMAT, EXPORT_VERSION, ExportFormatError
from tunekit.db.keys import RecordKey, key_for
from tunekit.db.records import STATUSES, TIERS, Record, choose, choose_measured, predicted_record
from tunekit.db.schema import LATEST as SCHEMA_VERSION
from tunekit.db.schema import TuningDBError
from tunekit.db.store import DB_ENV, DB_NAME, TuningDB, default_path, resolve_path

__all__ = [
    "DB_ENV",
    "DB_NAME",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "SCHEMA_VERSION",
    "STATUSES",
    "TIERS",
    "ExportFormatError",
    "Record",
    "RecordKey",
    "TuningDB",
    "TuningDBError",
    "best",
    "choose",
    "choose_measured",
    "default_path",
    "key_for",
    "predicted_record",
    "resolve_path",
]


def best(
    profile: Any,
    problem: Any,
    family: str | Sequence[str] | None = None,
    *,
    db: TuningDB | str | os.PathLike | None = None,
) -> Record | None:
    """The most trusted best stored record for ``problem`` on ``profile``, or None.

    Args:
        profile: a GPUProfile or a profile name/alias ("h100").
        problem: a tunekit.problem.Problem.
        family: one kernel family, several, or None for every family.
        db: an open TuningDB, a database path, or None for the default (``$TUNEKIT_DB`` or the
            user's cache). A database file that does not exist yet gives None (nothing is created).

    Returns:
        A measured winner if any configuration was timed (fastest median; within the noise band
        the model's order, then the name); else the compiler-verified ``ok`` record the model ranks
        first;
        else the fastest current prediction; None when nothing valid here is stored (other
        hardware, an edited cell, other templates or tool versions all miss).
    """
    from tunekit.hardware import load_profile

    profile = load_profile(profile) if isinstance(profile, str) else profile
    if isinstance(db, TuningDB):
        return db.best(profile, problem, family)
    path = resolve_path(db)
    if not path.exists():
        return None
    with TuningDB(path) as opened:
        return opened.best(profile, problem, family)
