"""`tunekit tune` and `tunekit explain`: tables for people, one JSON object for machines, clean failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.cli import main

QUICK_START = [
    "tune",
    "--gpu",
    "a100",
    "--cell",
    "lstm",
    "--head-dim",
    "768",
    "--heads",
    "1",
    "--batch",
    "16",
]
NOTHING_FITS = ["--gpu", "a100", "--cell", "lstm", "--head-dim", "128", "--dtype", "float32"]


@pytest.fixture(autouse=True)
def tuning_db(tmp_path, monkeypatch) -> Path:
    """Every run records into a database of its own, never the user's cache."""
    path = tmp_path / "tuning.sqlite"
    monkeypatch.setenv("TUNEKIT_DB", str(path))
    return path


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_quick_start_prints_the_choice_and_the_candidates(runner: CliRunner):
    result = runner.invoke(main, QUICK_START)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "lstm D=768 heads=1 batch=16 bfloat16 forward on a100-sxm4-80gb" in out
    assert "Chosen backend:" in out and "µs per step" in out
    assert "shared memory per block" in out and "registers per thread" in out
    assert "Top" in out and "candidates" in out
    assert "Feasible configurations:" in out


def test_json_is_one_object_with_the_design_schema(runner: CliRunner):
    result = runner.invoke(main, [*QUICK_START, "--json", "--top", "3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)  # exactly one JSON document, nothing else on stdout
    keys = ("gpu", "cell", "backend", "problem", "config", "predicted", "binding_constraints", "candidates")
    assert set(keys) | {"feasible_count", "solver", "solve_seconds"} <= set(data)
    assert data["gpu"] == "a100-sxm4-80gb" and data["problem"]["head_dim"] == 768
    for key in ("threads_per_block", "blocks", "registers_per_thread", "shared_memory_bytes_per_block"):
        assert key in data["predicted"]
    assert 1 <= len(data["candidates"]) <= 3
    assert all({"config", "predicted"} <= set(c) for c in data["candidates"])


def test_a_named_backend_and_the_cpsat_solver(runner: CliRunner):
    args = ["tune", "--gpu", "h100", "--cell", "gru", "--head-dim", "64", "--backend", "triton-fused"]
    result = runner.invoke(main, [*args, "--solver", "cpsat", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["backend"] == "triton-fused" and data["solver"] == "cpsat" and data["cell"] == "gru"


def test_nothing_feasible_prints_the_explanation_and_exits_1(runner: CliRunner):
    result = runner.invoke(main, ["tune", *NOTHING_FITS, "--backend", "triton-fused"])
    assert result.exit_code == 1
    assert "no feasible configuration" in result.output
    assert "B needed > 166,912 B limit on a100-sxm4-80gb" in result.output
    assert "(nearest feasible below 128) with triton-fused" in result.output
    as_json = runner.invoke(main, ["tune", *NOTHING_FITS, "--backend", "triton-fused", "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.stdout)["error"] == "no feasible configuration"


def test_explain_command(runner: CliRunner):
    result = runner.invoke(main, ["explain", *NOTHING_FITS, "--backend", "triton-fused"])
    assert result.exit_code == 0, result.output
    assert "shared memory per block" in result.output and "dtype bfloat16" in result.output
    as_json = runner.invoke(main, ["explain", *NOTHING_FITS, "--backend", "triton-fused", "--json"])
    data = json.loads(as_json.stdout)
    assert [e["backend"] for e in data["explanations"]] == ["triton-fused"]
    conflict = data["explanations"][0]["conflicts"][0]
    assert conflict["name"] == "shared_memory_per_block" and conflict["used"] > conflict["limit"] == 166_912


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpu", "a10O", "--cell", "lstm", "--head-dim", "64"], "Did you mean 'a10'?"),
        (["--gpu", "a100", "--cell", "lstn", "--head-dim", "64"], "cell: got 'lstn'"),
        (["--gpu", "a100", "--cell", "lstm", "--head-dim", "0"], "head_dim: got 0"),
        (["--gpu", "a100", "--cell", "lstm", "--head-dim", "64", "--batch", "-3"], "batch: got -3"),
        (
            ["--gpu", "a100", "--cell", "lstm", "--head-dim", "64", "--dtype", "float64"],
            "dtype: got 'float64'",
        ),
        (["--gpu", "a100", "--cell", "lstm", "--head-dim", "64", "--backend", "cuda"], "backend: got 'cuda'"),
        (["--gpu", "a100", "--cell", "lstm", "--head-dim", "64", "--direction", "up"], "direction: got 'up'"),
    ],
    ids=["gpu", "cell", "head-dim", "batch", "dtype", "backend", "direction"],
)
@pytest.mark.parametrize("command", ["tune", "explain"])
def test_bad_input_is_one_line_and_exit_2(runner: CliRunner, command: str, args: list[str], message: str):
    result = runner.invoke(main, [command, *args])
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # no traceback
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize(("option", "value"), [("--solver", "gurobi"), ("--top", "0")])
def test_bad_tune_options_exit_2(runner: CliRunner, option: str, value: str):
    result = runner.invoke(
        main, ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "64", option, value]
    )
    assert result.exit_code == 2 and result.stderr.startswith("Error: ")


def test_tune_needs_neither_torch_nor_triton():
    # offline tuning for a named GPU: poisoning sys.modules makes any `import torch` raise ImportError
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['triton'] = None\n"
        "from tunekit.cli import main\n"
        "args = ['tune', '--gpu', 'h100', '--cell', 'slstm', '--head-dim', '256', '--json']\n"
        "main(args, standalone_mode=False)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["gpu"] == "h100-sxm5-80gb"
