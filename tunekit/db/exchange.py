"""Export and import: the database as stable, sorted, versioned JSON that travels between machines.

An export is one object ``{"format": "tunekit-tuning-db", "version": 1, "records": [...]}``; the
records are sorted by key and every object's keys are sorted, so the same database always gives the
same bytes, and importing an export into an empty database and exporting again gives it back
byte for byte. Run ids stay local (they name rows of the machine that ran them). An import checks
every record before writing any, and then merges them all in one transaction, under the same rules
as a tuning run's writes (a tier is never lowered).
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tunekit.db.keys import KEY_FIELDS, RecordKey, config_head
from tunekit.db.records import STATUSES, TIERS, Record
from tunekit.problem import DIRECTIONS, DTYPE_BYTES, FAMILIES, MAX_BATCH, MAX_HEAD_DIM, MAX_HEADS, PARAM_TAGS

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "ExportFormatError",
    "dumps",
    "loads",
    "read_export",
    "record_dict",
]

EXPORT_FORMAT = "tunekit-tuning-db"
EXPORT_VERSION = 1

_PROFILE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_CELL = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_HASH = re.compile(r"[0-9a-f]{16,64}")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,63}")
_CONFIG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,255}")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
_MAX_TEXT = 4000  # characters of a note or a binding-constraint line
_MAX_SAMPLES = 100_000


class ExportFormatError(ValueError):
    """An export file that cannot be imported; the message is one line naming the record and field."""


def record_dict(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = record.key.as_dict()
    out.update(
        params=[[k, v] for k, v in record.params.items()],  # pairs: the model's order survives sort_keys
        tier=record.tier,
        status=record.status,
        predicted=dict(record.predicted),
        binding_constraints=list(record.binding_constraints),
        cost_model=record.cost_model,
        model_rank=record.model_rank,
        compiled=None if record.compiled is None else json.loads(json.dumps(record.compiled, default=dict)),
        samples_us=list(record.samples_us),
        measure=None if record.measure is None else dict(record.measure),
        numerics=None if record.numerics is None else dict(record.numerics),
        note=record.note,
        updated_at=record.updated_at,
    )
    return out


def dumps(records: list[Record]) -> str:
    """The export text of ``records`` (sorted here; stable bytes)."""
    ordered = sorted(records, key=lambda r: r.key.as_tuple())
    body = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "records": [record_dict(r) for r in ordered]}
    return json.dumps(body, indent=1, sort_keys=True, ensure_ascii=True, allow_nan=False) + "\n"


# ---- checking an import ---------------------------------------------------------------------------


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(data: Mapping[str, Any], name: str, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
    value = data.get(name)
    if not isinstance(value, str) or (pattern is not None and not pattern.fullmatch(value)):
        raise _Bad(name, f"got {_show(value)}, expected {what or 'a string'}")
    return value


def _int(data: Mapping[str, Any], name: str, hi: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
        raise _Bad(name, f"got {_show(value)}, expected an int in 1..{hi}")
    return value


def _plain_text(value: Any, name: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT or any(ord(c) < 32 and c != "\t" for c in value):
        raise _Bad(name, f"got {_show(value)}, expected one line of text under {_MAX_TEXT} characters")
    return value


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)


def _json_tree(value: Any, name: str, depth: int = 0) -> Any:
    """Plain JSON data of bounded depth with identifier keys (compiled / measure / numerics)."""
    if depth > 6:
        raise _Bad(name, "is nested too deeply")
    if isinstance(value, Mapping):
        for k in value:
            if not isinstance(k, str) or not _IDENT.fullmatch(k):
                raise _Bad(name, f"has the key {_show(k)}, expected identifiers")
        return {k: _json_tree(v, name, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_tree(v, name, depth + 1) for v in value]
    if value is None or isinstance(value, bool) or _number(value):
        return value
    if isinstance(value, str):
        return _plain_text(value, name)
    raise _Bad(name, f"holds {_show(value)}, expected JSON numbers, strings, lists or objects")


def _check_record(data: Any) -> Record:
    if not isinstance(data, Mapping):
        raise _Bad("record", f"got {type(data).__name__}, expected an object")
    unknown = sorted(set(data) - set(KEY_FIELDS) - set(_DATA_FIELDS))
    if unknown:
        raise _Bad(unknown[0], "is not a field of a tuning record")
    family = _text(data, "family", None, f"one of {list(FAMILIES)}")
    if family not in FAMILIES:
        raise _Bad("family", f"got {_show(family)}, expected one of {list(FAMILIES)}")
    dtype = _text(data, "dtype", None, f"one of {sorted(DTYPE_BYTES)}")
    if dtype not in DTYPE_BYTES:
        raise _Bad("dtype", f"got {_show(dtype)}, expected one of {sorted(DTYPE_BYTES)}")
    direction = _text(data, "direction", None, f"one of {list(DIRECTIONS)}")
    if direction not in DIRECTIONS:
        raise _Bad("direction", f"got {_show(direction)}, expected one of {list(DIRECTIONS)}")
    key = RecordKey(
        profile=_text(data, "profile", _PROFILE, "a profile name like 'h100-sxm5-80gb'"),
        profile_hash=_text(data, "profile_hash", _HASH, "a hex hash"),
        cell=_text(data, "cell", _CELL, "a cell name (an identifier)"),
        cell_hash=_text(data, "cell_hash", _HASH, "a hex hash"),
        family=family,
        batch=_int(data, "batch", MAX_BATCH),
        heads=_int(data, "heads", MAX_HEADS),
        head_dim=_int(data, "head_dim", MAX_HEAD_DIM),
        dtype=dtype,
        direction=direction,
        config_name=_text(data, "config_name", _CONFIG, "a canonical configuration name"),
        template_hash=_text(data, "template_hash", _HASH, "a hex hash"),
        tunekit_version=_text(data, "tunekit_version", _VERSION, "a version string"),
        triton_version=_text(data, "triton_version", _VERSION, "a version string"),
        cuda_version=_text(data, "cuda_version", _VERSION, "a version string"),
    )
    head = config_head(family, key.cell, key.batch, key.heads, key.head_dim, dtype, direction, key.profile)
    if not key.config_name.startswith(head):
        raise _Bad("config_name", f"got {_show(key.config_name)}, expected a name starting {head!r}")
    params = data.get("params")
    pairs = isinstance(params, list) and all(isinstance(p, list) and len(p) == 2 for p in params)
    if not pairs or not all(
        isinstance(k, str) and _IDENT.fullmatch(k) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in params
    ):
        raise _Bad("params", f"got {_show(params)}, expected a list of [tunable name, int] pairs")
    if len({k for k, _ in params}) != len(params):
        raise _Bad("params", f"got {_show(params)}, expected each tunable once")
    expected = head + "-".join(f"{PARAM_TAGS.get(k, k)}{v}" for k, v in params)
    if key.config_name != expected:
        raise _Bad("config_name", f"got {_show(key.config_name)}, but its fields name {_show(expected)}")
    _check_in_model(key, dict((k, v) for k, v in params))
    tier, status = data.get("tier"), data.get("status")
    if tier not in TIERS:
        raise _Bad("tier", f"got {_show(tier)}, expected one of {list(TIERS)}")
    if status not in STATUSES:
        raise _Bad("status", f"got {_show(status)}, expected one of {list(STATUSES)}")
    predicted = data.get("predicted")
    if not isinstance(predicted, Mapping) or not all(
        isinstance(k, str) and _IDENT.fullmatch(k) and _number(v) for k, v in predicted.items()
    ):
        raise _Bad("predicted", f"got {_show(predicted)}, expected an object of name -> finite number")
    binding = data.get("binding_constraints")
    if not isinstance(binding, list):
        raise _Bad("binding_constraints", f"got {_show(binding)}, expected a list of strings")
    samples = data.get("samples_us")
    if (
        not isinstance(samples, list)
        or len(samples) > _MAX_SAMPLES
        or not all(_number(s) and s > 0 for s in samples)
    ):
        raise _Bad("samples_us", f"got {_show(samples)}, expected a list of positive numbers")
    rank = data.get("model_rank")
    if rank is not None and (isinstance(rank, bool) or not isinstance(rank, int) or rank < 0):
        raise _Bad("model_rank", f"got {_show(rank)}, expected null or an int >= 0")
    nested = {}
    for name in ("compiled", "measure", "numerics"):
        value = data.get(name)
        if value is not None and not isinstance(value, Mapping):
            raise _Bad(name, f"got {_show(value)}, expected null or an object")
        nested[name] = None if value is None else _json_tree(value, name)
    return Record(
        key=key,
        params=dict((k, v) for k, v in params),
        tier=tier,
        status=status,
        predicted=dict(predicted),
        binding_constraints=tuple(_plain_text(b, "binding_constraints") for b in binding),
        cost_model=_text(data, "cost_model", re.compile(r"[0-9a-f]{0,64}"), "a hex hash or ''"),
        model_rank=rank,
        samples_us=tuple(float(s) for s in samples),
        note=_plain_text(data.get("note"), "note"),
        updated_at=_text(data, "updated_at", _TIME, "a UTC time like 2025-01-31T12:00:00Z"),
        **nested,
    )


@functools.cache
def _packaged_profiles() -> frozenset[str]:
    from tunekit.hardware import list_profiles

    return frozenset(p.name for p in list_profiles())


def _check_in_model(key: RecordKey, params: dict[str, int]) -> None:
    """The tunables must be a configuration the family's constraint model knows for this problem
    (every key, integral, in its domain: tunekit.config_check), when this tunekit knows the profile
    and the cell; records of other machines' profiles or of cells not registered here pass as data."""
    from tunekit.cells import CELLS
    from tunekit.config_check import check_config
    from tunekit.hardware import load_profile
    from tunekit.problem import KernelConfig, Problem

    if key.cell not in CELLS or key.profile not in _packaged_profiles():
        return
    problem = Problem(key.cell, key.batch, key.heads, key.head_dim, key.dtype, key.direction)
    config = KernelConfig(key.family, problem, key.profile, tuple(params.items()))
    try:
        check_config(config, key.family, problem, gpu=load_profile(key.profile))
    except ValueError as exc:
        raise _Bad("params", f"not a {key.family} configuration of this problem: {exc}") from exc


_DATA_FIELDS = (
    "params", "tier", "status", "predicted", "binding_constraints", "cost_model", "model_rank", "compiled",
    "samples_us", "measure", "numerics", "note", "updated_at",
)  # fmt: skip


def loads(text: str, source: str = "input") -> list[Record]:
    """The records of an export text, every one checked; ExportFormatError (one line) on the first fault."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportFormatError(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise ExportFormatError(
            f'{source}: not a tunekit tuning-database export (no "format": {EXPORT_FORMAT!r})'
        )
    version = data.get("version")
    if version != EXPORT_VERSION:
        raise ExportFormatError(
            f"{source}: export version {_show(version)}; this tunekit reads version {EXPORT_VERSION} "
            "(export it again with this tunekit's version, or upgrade)"
        )
    rows = data.get("records")
    if not isinstance(rows, list):
        raise ExportFormatError(f'{source}: "records" is {type(rows).__name__}, expected a list')
    records, seen = [], set()
    for index, row in enumerate(rows):
        try:
            record = _check_record(row)
        except _Bad as bad:
            raise ExportFormatError(f"{source}: record {index}, field {bad.field!r}: {bad}") from None
        if record.key in seen:
            raise ExportFormatError(
                f"{source}: record {index} repeats the key of an earlier one ({record.name})"
            )
        seen.add(record.key)
        records.append(record)
    return records


def read_export(path: str | Path) -> list[Record]:
    """:func:`loads` of a file; a missing or unreadable file is one ExportFormatError line too."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ExportFormatError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ExportFormatError(f"{path}: is a directory, expected an export file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportFormatError(f"{path}: cannot be read ({exc})") from None
    return loads(text, str(path))
