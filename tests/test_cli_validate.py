"""``tunekit validate``: tables and JSON, exit code 1 on a failed check, 2 on bad usage."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from tunekit import validation
from tunekit.cli import main
from tunekit.cli.validate import parse_archs


def run(*args: str):
    return CliRunner().invoke(main, ["validate", *args], env={"COLUMNS": "220"})


def test_reference_validation_prints_a_table_and_exits_0():
    result = run("--cell", "gru")
    assert result.exit_code == 0, result.output
    assert "gru vs torch.nn: output" in result.output and "all checks passed" in result.output


def test_json_output_is_one_object_with_every_check():
    result = run("--cell", "lstm", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["passed"] is True and data["cells"] == ["lstm"]
    assert {"name", "passed", "max_error", "tolerance"} <= set(data["checks"][0])


def test_a_failed_check_exits_1(monkeypatch):
    failing = [validation.Check("lstm: made up", False, 1.0, 1e-3)]
    monkeypatch.setattr(validation, "validate_reference", lambda cells: failing)
    result = run("--cell", "lstm")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "some checks failed" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (("--compile", "sm_75"), "--compile: received 'sm_75'"),
        (("--compile", ","), "--compile: received ','"),
        (("--gpu", "a1000"), "a1000"),
        (("--cell", "lsmt"), "lsmt"),
    ],
)
def test_bad_usage_exits_2_with_a_message_and_no_traceback(args, message):
    result = run(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_parse_archs_accepts_sm_prefixes_and_bare_numbers():
    assert parse_archs("sm_80, sm90,86") == [80, 90, 86]


def test_triton_fused_backend_runs_in_the_interpreter_and_says_so():
    result = run("--cell", "elman", "--backend", "triton-fused", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert "TRITON_INTERPRET=1" in data["note"]
    assert [c["name"] for c in data["checks"]][-1] == "elman fp32: d initial states"


@pytest.mark.slow
def test_triton_fused_backend_in_the_interpreter_with_a_compile_table():
    result = run("--cell", "elman", "--backend", "triton-fused", "--compile", "sm_80")
    assert result.exit_code == 0, result.output
    assert "TRITON_INTERPRET=1" in result.output
    assert "elman fp32: d R" in result.output
    for kernel in ("elman-fwd-tritonfused-D64-B16-bf16-sm80", "elman-bwd-tritonfused-D64-B16-bf16-sm80"):
        assert kernel in result.output
