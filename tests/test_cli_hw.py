"""`tunekit hw`: list, show (table and JSON), detect; unknown names and a missing GPU fail cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunekit.cli import main
from tunekit.hardware import list_profiles, load_profile, load_profile_file


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_list_shows_every_profile(runner: CliRunner):
    result = runner.invoke(main, ["hw", "list"])
    assert result.exit_code == 0, result.output
    for profile in list_profiles():
        assert profile.name in result.output
    assert "164 KB" in result.output  # sm_80 shared memory per SM
    assert "96 MB" in result.output  # L40S L2


@pytest.mark.parametrize("name", ["a100", "L4", "rtx4090-24gb"], ids=lambda n: n)
def test_show_prints_values_and_sources(runner: CliRunner, name: str):
    result = runner.invoke(main, ["hw", "show", name])
    assert result.exit_code == 0, result.output
    profile = load_profile(name)
    assert profile.name in result.output
    assert "Technical" in result.output  # the Programming Guide citation is printed beside the number
    assert str(profile.sm_count) in result.output


def test_show_json_has_every_field_and_source(runner: CliRunner):
    result = runner.invoke(main, ["hw", "show", "h100", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    profile = load_profile("h100")
    assert data["name"] == "h100-sxm5-80gb"
    assert data["sm"] == "sm_90" and data["arch"] == 90
    assert data["compute_capability"] == [9, 0]
    assert data["shared_memory_per_block_optin"] == 232448
    assert data["tensor_tflops"]["bfloat16"] == profile.tensor_tflops["bfloat16"]
    assert data["mma_shapes"]["bfloat16"][0] == "m16n8k16"
    assert set(data["sources"]) == set(profile.sources)


@pytest.mark.parametrize(
    "args", [["hw", "show", "h10"], ["hw", "show", "h10", "--json"]], ids=["table", "json"]
)
def test_unknown_gpu_exits_2_with_suggestion(runner: CliRunner, args: list[str]):
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert "unknown GPU 'h10'" in result.output
    assert "Did you mean 'h100'" in result.output
    assert "a100-sxm4-80gb" in result.output
    assert "Traceback" not in result.output


def test_detect_without_cuda_exits_1_with_message(runner: CliRunner, monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(main, ["hw", "detect"])
    assert result.exit_code == 1
    assert "no CUDA device" in result.output
    assert "Traceback" not in result.output


def test_detect_out_writes_a_loadable_profile(runner: CliRunner, monkeypatch, tmp_path: Path):
    # Stand in for a GPU: detect_profile is what touches CUDA; the command's job is to report and write.
    from tunekit import hardware

    monkeypatch.setattr(hardware, "detect_profile", lambda device=0: load_profile("l4"))
    out = tmp_path / "mine.toml"  # an existing folder: a missing one is an error (test_cli_errors.py)
    result = runner.invoke(main, ["hw", "detect", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "l4-24gb" in result.output
    assert load_profile_file(out) == load_profile("l4")
    assert [p.name for p in out.parent.iterdir()] == ["mine.toml"]  # no temporary file left behind


def test_hw_help_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from tunekit.cli import main\n"
        "main(['hw', 'list'], standalone_mode=False)\n"
        "main(['hw', 'show', 'a10', '--json'], standalone_mode=False)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
