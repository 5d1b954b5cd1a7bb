"""`tunekit db path|list|show|export|import`, and what `tunekit tune` writes and reads back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from dbcases import measured, ranked

from tunekit.cli import main
from tunekit.db import DB_NAME, TuningDB

TUNE = ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "48", "--heads", "3", "--batch", "5"]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("TUNEKIT_DB", str(tmp_path / "env.sqlite"))

    def run(*args: str):
        return CliRunner().invoke(main, list(args))

    return run


def test_path_follows_the_option_then_the_environment_then_the_user_cache(cli, tmp_path: Path, monkeypatch):
    assert cli("db", "path", "--db", str(tmp_path / "x.sqlite")).output.strip() == str(tmp_path / "x.sqlite")
    assert cli("db", "path").output.strip() == str(tmp_path / "env.sqlite")
    monkeypatch.delenv("TUNEKIT_DB")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cli("db", "path").output.strip() == str(tmp_path / "cache" / "tunekit" / DB_NAME)
    assert not (tmp_path / "cache").exists()  # printing the path creates nothing


def test_tune_records_its_run_and_db_list_and_show_read_it(cli, tmp_path: Path):
    tuned = cli(*TUNE, "--json")
    assert tuned.exit_code == 0, tuned.output
    data = json.loads(tuned.stdout)
    assert data["db"] == {
        "path": str(tmp_path / "env.sqlite"),
        "run_id": 1,
        "records_written": 5,
        "error": None,
    }
    assert (data["choice"]["source"], data["choice"]["tier"]) == ("fresh", "predicted")
    listed = json.loads(cli("db", "list", "--json").stdout)
    assert {r["name"] for r in listed} == {c["name"] for c in data["candidates"]}
    assert all(r["tier"] == "predicted" and r["status"] == "ok" for r in listed)
    assert (
        json.loads(cli("db", "list", "--json", "--backend", "cuda-fused", "--tier", "measured").stdout) == []
    )
    table = cli("db", "list")
    assert table.exit_code == 0 and "5 records in" in table.output
    shown = cli("db", "show", data["config_name"], "--json")
    (record,) = json.loads(shown.stdout)
    assert record["config_name"] == data["config_name"] and record["predicted"] == data["predicted"]
    text = cli("db", "show", data["config_name"])
    assert "[predicted, ok]" in text.output and "profile_hash:" in text.output


def test_export_and_import_between_two_databases(cli, tmp_path: Path):
    with TuningDB(tmp_path / "env.sqlite") as db:
        db.write([r for _, r in ranked()])
        db.write([measured(ranked()[2][1], [4.0, 4.5, 5.0])])
    exported = cli("db", "export")
    assert exported.exit_code == 0 and json.loads(exported.stdout)["version"] == 1
    out = tmp_path / "export.json"
    assert cli("db", "export", "--out", str(out)).output.strip() == f"wrote 6 records to {out}"
    assert out.read_text() == exported.stdout
    other = tmp_path / "other.sqlite"
    imported = cli("db", "import", str(out), "--db", str(other), "--json")
    assert json.loads(imported.stdout) == {"db": str(other), "records": 6, "new": 6, "merged": 0}
    assert cli("db", "export", "--db", str(other)).stdout == exported.stdout
    again = cli("db", "import", str(out), "--db", str(other))
    assert "imported 6 records" in again.output and "(0 new, 6 merged" in again.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ('{"format": "tunekit-tuning-db", "version": 99, "records": []}', "export version 99"),
        ("[", "not JSON"),
    ],
    ids=["missing", "version", "not-json"],
)
def test_bad_imports_are_one_error_line_and_exit_2(cli, tmp_path: Path, content: str | None, message: str):
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    result = cli("db", "import", str(path))
    assert result.exit_code == 2 and result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: import:") and message in line
    as_json = cli("db", "import", str(path), "--json")
    assert as_json.exit_code == 2 and message in json.loads(as_json.stdout)["error"]


def test_reading_commands_on_a_missing_database_create_nothing(cli, tmp_path: Path):
    missing = tmp_path / "missing.sqlite"
    assert "No tuning database at" in cli("db", "list", "--db", str(missing)).output
    assert json.loads(cli("db", "export", "--db", str(missing)).stdout)["records"] == []
    shown = cli("db", "show", "lstm-nothing", "--db", str(missing))
    assert shown.exit_code == 1 and "no record named 'lstm-nothing'" in shown.stderr
    assert not missing.exists()


def test_bad_list_filters_and_a_directory_as_db_are_one_line(cli, tmp_path: Path):
    assert "--tier: got 'best'" in cli("db", "list", "--tier", "best").stderr
    assert "Did you mean" in cli("db", "list", "--gpu", "a10O").stderr
    folder = cli("db", "path", "--db", str(tmp_path))
    assert folder.exit_code == 2 and "is a directory" in folder.stderr


def test_a_corrupt_database_is_reported_once_and_tune_goes_on(cli, tmp_path: Path):
    (tmp_path / "env.sqlite").write_bytes(b"\x00garbage" * 512)
    tuned = cli(*TUNE)
    assert tuned.exit_code == 0, tuned.output
    lines = [line for line in tuned.stderr.splitlines() if "tuning database" in line]
    assert len(lines) == 1 and "not an SQLite file" in lines[0] and "started a fresh one" in lines[0]
    assert "Tuning database:" in tuned.stdout and "(run 1: 5 records)" in tuned.stdout


def test_an_unusable_database_does_not_stop_tune(cli, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    tuned = cli(*TUNE, "--db", str(blocker / "tuning.sqlite"))  # its folder cannot be created
    assert tuned.exit_code == 0, tuned.output
    assert (
        "Tuning database unavailable, nothing recorded:" in tuned.output and "Chosen backend:" in tuned.output
    )
