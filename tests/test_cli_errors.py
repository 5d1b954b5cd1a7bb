"""The CLI's promise: every failure is one line starting ``Error:`` (with ``--json``: one JSON object
on stdout), exit 2 for bad input, 1 for a failed check, never a traceback; outputs are checked
before the work starts; every ``--help`` shows an example."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from tunekit.cli import main

TUNE = ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "64"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def one_error_line(result, code: int, words: str) -> str:
    """The result failed with ``code`` and exactly one stderr line ``Error: ...`` containing ``words``."""
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert words in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def no_work(monkeypatch):
    """Make the expensive part of each command fail loudly if it is reached."""
    from tunekit import hardware
    from tunekit.bench import calibrate_triton, solver_bench

    def reached(*args, **kwargs):
        raise AssertionError("the command started its work before checking its input")

    monkeypatch.setattr(solver_bench, "run", reached)
    monkeypatch.setattr(calibrate_triton, "run", reached)
    monkeypatch.setattr(hardware, "detect_profile", reached)


@pytest.mark.parametrize("count", ["0", "-1", "many"])
def test_calibrate_triton_count_must_be_a_positive_integer(runner, no_work, count):
    result = runner.invoke(main, ["bench", "calibrate-triton", "--count", count])
    line = one_error_line(result, 2, "Invalid value for '--count'")
    assert f": {count} is not" in line or f": '{count}' is not" in line, line  # the value given is named


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("/proc/tunekit-bench", "--out: cannot create the folder /proc/tunekit-bench"),
        ("/etc/hostname", "'/etc/hostname' is a file"),
        ("", "--out: folder: got an empty path"),
    ],
    ids=["proc", "a-file", "empty"],
)
@pytest.mark.parametrize("command", ["solvers", "calibrate-triton"])
def test_bench_output_folders_are_checked_before_the_run(runner, no_work, command, out, words):
    result = runner.invoke(main, ["bench", command, "--out", out])
    one_error_line(result, 2, words)


def test_bench_creates_a_missing_output_folder_before_the_run(runner, monkeypatch, tmp_path):
    from tunekit.bench import solver_bench

    seen = []
    monkeypatch.setattr(solver_bench, "run", lambda grid, progress: seen.append(grid) or {"summary_ms": {}})
    monkeypatch.setattr(solver_bench, "write_reports", lambda report, out: (out / "a.md", out / "a.json"))
    result = runner.invoke(main, ["bench", "solvers", "--quick", "--out", str(tmp_path / "new" / "folder")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "folder").is_dir() and seen


@pytest.mark.parametrize(
    ("out", "words"),
    [
        ("{tmp}/missing/mine.toml", "its folder {tmp}/missing does not exist"),
        ("{tmp}/file.txt/mine.toml", "a parent of it is a file, not a folder"),
        ("", "got an empty path"),
        ("{tmp}", "is a directory, expected a file path inside it"),
        ("/dev/full", "/dev/full is a device or socket, not a regular file"),
    ],
    ids=["missing-folder", "child-of-a-file", "empty", "a-folder", "dev-full"],
)
def test_hw_detect_out_is_checked_before_the_device(runner, no_work, tmp_path, out, words):
    (tmp_path / "file.txt").write_text("x")
    result = runner.invoke(main, ["hw", "detect", "--out", out.replace("{tmp}", str(tmp_path))])
    one_error_line(result, 2, "--out: " if not words.startswith("--") else words)
    assert words.replace("{tmp}", str(tmp_path)) in result.stderr


def test_json_errors_are_one_object_on_stdout(runner):
    for args in (
        [*TUNE[:5], "--json"],
        [*TUNE, "--batch", "0", "--json"],
        [*TUNE, "--solver", "x", "--json"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 2, result.output
        data = json.loads(result.stdout)  # one JSON document and nothing else
        assert set(data) == {"error", "exit_code"} and data["exit_code"] == 2 and data["error"]
        assert result.stderr == ""


def test_a_usage_error_is_one_line_naming_the_help(runner):
    result = runner.invoke(main, TUNE[:5])
    line = one_error_line(result, 2, "Missing option '--head-dim'")
    assert "(see 'tunekit tune --help')" in line


def test_an_unexpected_exception_is_one_line_exit_1_and_a_traceback_only_with_tunekit_debug(
    runner, monkeypatch
):
    from tunekit import tuning

    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr(tuning, "tune", broken)
    line = one_error_line(runner.invoke(main, TUNE), 1, "unexpected KeyError: 'boom'")
    assert "TUNEKIT_DEBUG=1" in line
    monkeypatch.setenv("TUNEKIT_DEBUG", "1")
    result = runner.invoke(main, TUNE)
    assert isinstance(result.exception, KeyError)  # the traceback, for whoever debugs it


def test_an_oserror_from_the_library_is_bad_input(runner, monkeypatch):
    from tunekit import tuning

    def unreadable(*args, **kwargs):
        raise PermissionError("cannot read /root/db.sqlite")

    monkeypatch.setattr(tuning, "tune", unreadable)
    line = one_error_line(runner.invoke(main, TUNE), 2, "cannot read /root/db.sqlite")
    assert "unexpected" not in line and "TUNEKIT_DEBUG" not in line, line  # bad input, not a bug


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    yield path, group
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


COMMANDS = [path for path, _ in _commands(main)]


@pytest.mark.parametrize("path", COMMANDS, ids=[" ".join(p) or "tunekit" for p in COMMANDS])
def test_every_help_shows_an_example(runner, path):
    result = runner.invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    example = result.output.split("Example:", 1)
    assert len(example) == 2, result.output
    assert "tunekit " in example[1]


def test_every_solver_tune_accepts_is_listed_in_its_help(runner):
    from tunekit.tuning import SOLVERS

    text = " ".join(runner.invoke(main, ["tune", "--help"]).output.split())
    assert all(solver in text for solver in SOLVERS), text
    result = runner.invoke(main, [*TUNE, "--solver", "brute", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["solver"] == "brute"
