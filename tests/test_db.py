"""The tuning database: keys that miss when anything changed, tiers that never drop, migrations,
damaged files moved aside, and exports another machine imports to the same lookups."""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
from dbcases import SMALL, measured, ranked, synthetic

from tunekit.cells import CELLS, Cell
from tunekit.db import SCHEMA_VERSION, TuningDB, TuningDBError, best, key_for
from tunekit.db import keys as db_keys
from tunekit.db.exchange import ExportFormatError, dumps, loads, read_export
from tunekit.db.schema import APPLICATION_ID, MIGRATIONS
from tunekit.db.store import _to_row
from tunekit.hardware import load_profile
from tunekit.problem import Problem

A100 = load_profile("a100")


@pytest.fixture
def db(tmp_path: Path):
    with TuningDB(tmp_path / "tuning.sqlite", report=pytest.fail) as opened:
        yield opened


# ---- records in and out -----------------------------------------------------------------------------


def test_a_run_is_stored_and_read_back_unchanged(tmp_path: Path):
    pairs = ranked()
    path = tmp_path / "t.sqlite"
    with TuningDB(path) as first:
        run = first.record_run([r for _, r in pairs], "tunekit tune test")
    with TuningDB(path) as again:  # another connection, as another process would open it
        assert again.count() == len(pairs)
        for config, record in pairs:
            assert again.get(key_for(config, A100)) == record
            assert again.get(record.key).config() == config  # tunables back in the model's order
        assert [r["id"] for r in again.runs()] == [run]
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
        conn.close()


def test_a_write_never_lowers_a_tier_nor_drops_what_a_higher_tier_found(db: TuningDB):
    _, record = ranked(top=1)[0]
    timed = measured(record, [10.0, 11.0, 12.0])
    db.write([timed])
    db.write([record])  # a later plain `tune` writes the same configuration as predicted
    stored = db.get(record.key)
    assert stored.tier == "measured" and stored.samples_us == (10.0, 11.0, 12.0)
    assert stored.numerics["passed"] is True and stored.predicted == record.predicted
    compiled = replace(record, tier="compiler-verified", compiled={"kernels": [{"registers": 40}]})
    db.write([compiled])
    stored = db.get(record.key)
    assert stored.tier == "measured" and stored.compiled["kernels"][0]["registers"] == 40
    assert stored.median_us == 11.0


def test_lookups_prefer_measured_then_verified_then_predicted_and_never_a_rejected_one(db: TuningDB):
    pairs = ranked(top=10)  # enough candidates that a third family is among them
    records = [r for _, r in pairs]
    db.write(records)
    assert best(A100, SMALL, db=db) == records[0]  # only predictions: the model's best
    db.write([replace(records[0], tier="compiler-verified", status="rejected", note="spills 64 B")])
    db.write([replace(records[2], tier="compiler-verified")])
    assert best(A100, SMALL, db=db).name == records[2].name  # verified beats predicted; rejected never
    db.write([measured(records[4], [5.0, 5.1, 5.2]), measured(records[3], [1.0, 1.0, 1.0], passed=False)])
    chosen = best(A100, SMALL, db=db)
    assert chosen.name == records[4].name and chosen.tier == "measured"  # the failed one is never chosen
    assert best(A100, SMALL, records[4].family, db=db).name == records[4].name
    others = [f for f in ("triton-fused", "cuda-alternating", "cuda-fused") if f != records[4].family]
    assert best(A100, SMALL, others, db=db).family in others  # the layers' seam asks for a few families


def test_lookups_miss_other_hardware_other_versions_and_stale_predictions(db: TuningDB, monkeypatch):
    records = [r for _, r in ranked()]
    db.write(records)
    other = replace(A100, sm_count=A100.sm_count - 1)  # same name, different hardware fields
    assert db_keys.profile_hash(other) != db_keys.profile_hash(A100)
    assert best(other, SMALL, db=db) is None
    assert db_keys.profile_hash(replace(A100, sources={})) == db_keys.profile_hash(A100)  # citations only
    monkeypatch.setattr(db_keys, "versions", lambda: ("0.1.0", "9.9.9", "none"))
    assert best(A100, SMALL, db=db) is None  # another triton: the kernels may differ
    monkeypatch.undo()
    stale = [replace(r, cost_model="f" * 16) for r in records]  # priced by other constants
    with TuningDB(db.path.with_name("stale.sqlite")) as other_db:
        other_db.write(stale)
        assert best(A100, SMALL, db=other_db) is None
        other_db.write([replace(stale[1], tier="compiler-verified")])  # a compile verdict does not go stale
        assert best(A100, SMALL, db=other_db).name == stale[1].name


def _mgu(scale: int) -> Cell:
    from tunekit.cells.spec import sigmoid, tanh

    def step(v):
        f = sigmoid(v.gate("f"))
        return {"y": (1 - f) * v.s["y"] + f * tanh(scale * v.gate("z"))}

    return Cell("mgu", r_gates=("f", "z"), w_gates=("f", "z"), b_gates=("f", "z"), states=("y",), step=step)


def test_an_edited_user_cell_misses_its_old_records(db: TuningDB, monkeypatch):
    monkeypatch.setitem(CELLS, "mgu", _mgu(1))
    problem = Problem("mgu", batch=4, heads=2, head_dim=32)
    db.write([r for _, r in ranked(problem)])
    assert best(A100, problem, db=db) is not None
    monkeypatch.setitem(CELLS, "mgu", _mgu(2))  # the user edits the cell's step and re-registers it
    assert best(A100, problem, db=db) is None


def test_a_database_file_that_does_not_exist_gives_none_and_is_not_created(tmp_path: Path):
    missing = tmp_path / "none.sqlite"
    assert best("a100", SMALL, db=missing) is None
    assert not missing.exists()


# ---- migration, damage, foreign files -----------------------------------------------------------------


def test_a_version_1_file_is_migrated_and_keeps_its_records(tmp_path: Path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0]:  # the schema as version 1 wrote it
        conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute("PRAGMA user_version = 1")
    _, record = ranked(top=1)[0]
    row = _to_row(record)
    del row["model_rank"]  # version 1 had no such column
    conn.execute(
        f"INSERT INTO records ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values())
    )
    conn.commit()
    conn.close()
    with TuningDB(path, report=pytest.fail) as db:
        assert db.found_version == 1
        assert db.get(record.key) == replace(record, model_rank=None)
        db.record_run([record], "after migration")  # v2's runs table and columns work
        assert db.get(record.key).model_rank == 0 and len(db.runs()) == 1
    check = sqlite3.connect(path)
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    check.close()


def _filled(path: Path) -> bytes:
    with TuningDB(path) as db:
        db.write(synthetic(40, "x"))
    return path.read_bytes()  # closing checkpointed the WAL into the file


def _damage(kind: str, path: Path) -> str:
    """Make ``path`` a bad database of ``kind``; returns the words the report must use."""
    rng = random.Random(11)
    if kind == "truncated":
        data = _filled(path)
        path.write_bytes(data[: len(data) // 2])
        return "damaged"
    if kind == "random bytes":
        path.write_bytes(bytes(rng.randrange(256) for _ in range(8192)))
        return "not an SQLite file"
    if kind == "garbage after the header":
        path.write_bytes(b"SQLite format 3\x00" + bytes(rng.randrange(256) for _ in range(8192)))
        return "damaged"
    if kind == "foreign schema":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.commit()
        conn.close()
        return "another program's database"
    if kind == "tunekit id, wrong tables":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY)")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("PRAGMA user_version = 2")
        conn.commit()
        conn.close()
        return "do not match schema version 2"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["truncated", "random bytes", "garbage after the header", "foreign schema", "tunekit id, wrong tables"],
)
def test_a_bad_file_is_moved_aside_reported_in_one_line_and_replaced(tmp_path: Path, kind: str):
    path = tmp_path / "tuning.sqlite"
    words = _damage(kind, path)
    original = path.read_bytes()
    lines: list[str] = []
    with TuningDB(path, report=lines.append) as db:
        assert db.count() == 0  # fresh, never the damaged content
        db.write(synthetic(3, "new"))
        assert db.count() == 3
    assert len(lines) == 1 and "\n" not in lines[0]
    assert words in lines[0] and str(path) in lines[0] and "started a fresh one" in lines[0]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("tuning.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].name in lines[0]
    assert aside[0].read_bytes() == original  # kept for inspection, byte for byte
    with TuningDB(path, report=pytest.fail) as reopened:  # the replacement is healthy: no second report
        assert reopened.count() == 3


def test_an_empty_file_becomes_a_fresh_database_without_a_report(tmp_path: Path):
    path = tmp_path / "empty.sqlite"
    path.write_bytes(b"")
    with TuningDB(path, report=pytest.fail) as db:
        assert db.count() == 0


def test_a_newer_schema_is_refused_and_left_alone(tmp_path: Path):
    path = tmp_path / "new.sqlite"
    with TuningDB(path):
        pass
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(TuningDBError, match=f"schema version {SCHEMA_VERSION + 1}, newer than"):
        TuningDB(path, report=pytest.fail)
    assert path.read_bytes() == before


def test_a_directory_is_not_a_database(tmp_path: Path):
    with pytest.raises(TuningDBError, match="is a directory"):
        TuningDB(tmp_path)


# ---- export and import --------------------------------------------------------------------------------


def _mixed(db: TuningDB) -> None:
    records = [r for _, r in ranked()]
    db.write(records)
    db.write(
        [replace(records[1], tier="compiler-verified", compiled={"compiler": "nvcc 13.0", "kernels": []})]
    )
    db.write([measured(records[2], [3.5, 3.25, 3.75]), measured(records[3], [9.0], passed=False)])


def test_an_export_imported_elsewhere_gives_the_same_bytes_and_lookups(tmp_path: Path):
    with TuningDB(tmp_path / "here.sqlite") as here:
        _mixed(here)
        text = here.export_text()
        assert text == here.export_text()  # stable
        chosen = best(A100, SMALL, db=here)
    (tmp_path / "there").mkdir()
    with TuningDB(tmp_path / "there" / "tuning.sqlite") as there:
        assert there.import_records(loads(text)) == (len(loads(text)), 0)
        assert there.export_text() == text
        assert best(A100, SMALL, db=there) == chosen and chosen.tier == "measured"
        assert there.import_records(loads(text)) == (0, len(loads(text)))  # importing twice changes nothing
        assert there.export_text() == text
    data = json.loads(text)
    assert data["format"] == "tunekit-tuning-db" and data["version"] == 1
    keys = [tuple(r[k] for k in db_keys.KEY_FIELDS) for r in data["records"]]
    assert keys == sorted(keys)


def _export_with(**fields) -> str:
    record = json.loads(dumps([r for _, r in ranked(top=1)]))
    record["records"][0].update(fields)
    return json.dumps(record)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"profile": "../../etc/passwd"}, "field 'profile'"),
        ({"cell": "lstm; DROP TABLE records"}, "field 'cell'"),
        ({"config_name": "lstm-fwd\n-rm -rf"}, "field 'config_name'"),
        (
            {"config_name": "gru-fwd-tritonfused-D48-N3-B5-bf16-a100-sxm4-80gb-bb16"},
            "expected a name starting",
        ),
        ({"note": "line one\x1b[31mred"}, "field 'note'"),
        ({"samples_us": [1.0, -2.0]}, "field 'samples_us'"),
        ({"batch": True}, "field 'batch'"),
        ({"tier": "trusted"}, "field 'tier'"),
        ({"compiled": {"bad key!": 1}}, "field 'compiled'"),
        ({"extra": 1}, "field 'extra'"),
        ({"params": [["block_b", 99999]]}, "but its fields name"),
        ({"params": {"block_b": 16}}, "field 'params'"),
    ],
    ids=[
        "path-profile",
        "sql-cell",
        "newline-name",
        "name-of-another-problem",
        "escape-note",
        "negative-sample",
        "bool-batch",
        "unknown-tier",
        "hostile-key",
        "unknown-field",
        "params-not-the-name",
        "params-object",
    ],
)
def test_hostile_or_malformed_records_are_refused_in_one_line(fields: dict, message: str):
    with pytest.raises(ExportFormatError) as info:
        loads(_export_with(**fields), "x.json")
    text = str(info.value)
    assert "\n" not in text and text.startswith("x.json: record 0") and message in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("{not json", "not JSON"),
        ('{"format": "something-else", "version": 1, "records": []}', "not a tunekit tuning-database export"),
        ('{"format": "tunekit-tuning-db", "version": 2, "records": []}', "export version 2"),
        ('{"format": "tunekit-tuning-db", "version": 1, "records": {}}', "expected a list"),
        ('{"format": "tunekit-tuning-db", "version": 1, "records": [1]}', "expected an object"),
        ('{"format": "tunekit-tuning-db", "version": 1, "records": [{"samples_us": NaN}]}', "record 0"),
    ],
    ids=[
        "missing",
        "not-json",
        "other-format",
        "wrong-version",
        "records-not-a-list",
        "record-not-object",
        "nan",
    ],
)
def test_bad_export_files_are_one_line_errors(tmp_path: Path, content: str | None, message: str):
    path = tmp_path / "export.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ExportFormatError) as info:
        read_export(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_import_is_all_or_nothing(db: TuningDB):
    good = json.loads(dumps([r for _, r in ranked(top=3)]))
    good["records"][2]["head_dim"] = 0  # the last record is bad
    with pytest.raises(ExportFormatError, match="record 2, field 'head_dim'"):
        db.import_records(loads(json.dumps(good)))
    assert db.count() == 0
    duplicate = json.loads(dumps([r for _, r in ranked(top=1)]))
    duplicate["records"] *= 2
    with pytest.raises(ExportFormatError, match="record 1 repeats the key"):
        loads(json.dumps(duplicate))


def test_cell_hashes_are_stable_across_processes():
    import subprocess
    import sys

    code = "from tunekit.cells import get_cell; from tunekit.db.keys import cell_hash\n"
    code += "print(cell_hash(get_cell('slstm')))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    from tunekit.cells import get_cell

    assert other.stdout.strip() == db_keys.cell_hash(get_cell("slstm"))
