"""``tunekit validate``: tables and a JSON list, exit code 1 on a failed check, 2 on bad usage; the
kernel families' numerics on the CPU (Triton's interpreter; the CUDA families in tunekit's
emulator); the tuner's top configurations compiled for triton-fused and (through a fake CudaFamily
with a real kernel) for the CUDA families."""

from __future__ import annotations

import json
from pathlib import Path

import fake_cuda_family
import pytest
from click.testing import CliRunner

import tunekit.kernels
from tunekit import validation
from tunekit.cli import main
from tunekit.cli.validate import parse_archs
from tunekit.cuda import EMULATOR_ENV
from tunekit.hardware import load_profile


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """tunekit's caches (compiles, rendered sources) in a directory of this module's own."""
    patch = pytest.MonkeyPatch()
    patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    patch.undo()


@pytest.fixture(autouse=True)
def emulator_off(monkeypatch):
    """The CUDA emulator starts off in each test; what the command turns on is undone after it."""
    monkeypatch.setenv(EMULATOR_ENV, "0")


def run(*args: str):
    return CliRunner().invoke(main, ["validate", *args], env={"COLUMNS": "220"})


def objects(result, kind: str) -> list[dict]:
    return [o for o in json.loads(result.output) if o["kind"] == kind]


def test_reference_validation_prints_a_table_and_exits_0():
    result = run("--cell", "gru")
    assert result.exit_code == 0, result.output
    assert "gru vs torch.nn: output" in result.output and "all checks passed" in result.output


def test_json_output_is_one_list_of_objects_each_with_its_kind():
    result = run("--cell", "lstm", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert isinstance(data, list) and {o["kind"] for o in data} == {"numeric"}
    assert all({"name", "passed", "max_error", "tolerance"} <= set(o) and o["passed"] for o in data)


def test_a_failed_check_exits_1(monkeypatch):
    failing = [validation.Check("lstm: made up", False, 1.0, 1e-3)]
    monkeypatch.setattr(validation, "validate_reference", lambda cells: failing)
    result = run("--cell", "lstm")
    assert result.exit_code == 1
    assert "FAIL" in result.output and "some checks failed" in result.output


@pytest.mark.parametrize(
    "args,message",
    [
        (("--compile", "sm_75", "--backend", "triton-fused"), "--compile: received 'sm_75'"),
        (("--compile", ","), "--compile: received ','"),
        (("--gpu", "a1000", "--compile", "sm_80", "--backend", "triton-fused"), "a1000"),
        (("--cell", "lsmt"), "lsmt"),
        (("--backend", "cuda-fast"), "--backend: got 'cuda-fast', expected one of reference, triton-fused"),
        (("--compile", "sm_80"), "--compile: checks kernels; pick --backend"),
        (("--backend", "cuda-fused", "--tool", "nvcc"), "--tool: chooses the compiler of --compile"),
        (("--head-dim", "64"), "--head-dim: describe the problem whose tuned kernels --compile checks"),
        (("--gpu", "a100", "--backend", "triton-fused"), "--gpu: describe the problem"),
        (
            ("--backend", "triton-fused", "--compile", "sm_80", "--gpu", "h100"),
            "--gpu: 'h100' is sm_90, but --compile lists only sm_80",
        ),  # fmt: skip
        (("--backend", "triton-fused", "--compile", "sm_80", "--top", "0"), "--top: got 0"),
        (("--backend", "triton-fused", "--compile", "sm_80", "--dtype", "float64"), "dtype: got 'float64'"),
        (("--backend", "triton-fused", "--tool", "nvcc"), "--tool: chooses the CUDA compiler"),
    ],
    ids=[
        "arch",
        "empty-arch",
        "gpu",
        "cell",
        "backend",
        "reference-compile",
        "cuda-tool-alone",
        "problem-alone",
        "gpu-alone",
        "gpu-other-arch",
        "top",
        "dtype",
        "tool",
    ],  # fmt: skip
)
def test_bad_usage_exits_2_with_one_line_and_with_json_one_object(args, message):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    as_json = run(*args, "--json")
    assert as_json.exit_code == 2
    error = json.loads(as_json.output)
    assert error["exit_code"] == 2 and message in error["error"]


def test_an_out_directory_that_cannot_be_made_is_a_usage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run("--backend", "triton-fused", "--compile", "sm_80", "--out", str(blocker / "sub"), "--json")
    assert result.exit_code == 2 and "--out: cannot create" in json.loads(result.output)["error"]


def test_parse_archs_accepts_sm_prefixes_and_bare_numbers():
    assert parse_archs("sm_80, sm90,86,80") == [80, 90, 86]


def test_triton_fused_backend_runs_in_the_interpreter_and_says_so():
    result = run("--cell", "elman", "--backend", "triton-fused", "--json")
    assert result.exit_code == 0, result.output
    assert "TRITON_INTERPRET=1" in objects(result, "note")[0]["text"]
    assert objects(result, "numeric")[-1]["name"] == "elman fp32: d initial states"


@pytest.mark.parametrize(
    "backend, cell, already_on, gpu",
    [("cuda-fused", "gru", False, "h100-sxm5-80gb"), ("cuda-alternating", "lstm", True, "a100-sxm4-80gb")],
)
def test_cuda_backends_run_their_numerics_in_the_emulator_and_say_so(
    monkeypatch, backend, cell, already_on, gpu
):
    if already_on:
        monkeypatch.setenv(EMULATOR_ENV, "1")
    args = ("--backend", backend, "--cell", cell) + (("--gpu", "a100") if gpu.startswith("a100") else ())
    result = run(*args, "--json")  # without --gpu: tuned for h100
    assert result.exit_code == 0, result.output
    (note,) = objects(result, "note")
    said = "was already set" if already_on else "set TUNEKIT_CUDA_EMULATOR=1 for this process"
    assert said in note["text"] and "CPU emulator" in note["text"]
    checks = objects(result, "numeric")
    whats = ("all states", "final states", "d Wx", "d R", "d b", "d initial states")
    assert [c["name"] for c in checks] == [
        f"{backend} {cell} {t}: {w}" for t in ("fp32", "bf16") for w in whats
    ]
    assert all(c["passed"] and 0 < c["max_error"] < c["tolerance"] for c in checks), checks
    table = run(*args)
    assert table.exit_code == 0 and f"{backend} (CPU emulator, tuned for {gpu}, B=3 T=5" in table.output


def test_a_cuda_kernel_outside_its_tolerance_fails_with_exit_1(monkeypatch):
    monkeypatch.setitem(validation.EMULATOR_TOL, "float32", (1e-9, 0.0))  # tf32 products miss this
    result = run("--backend", "cuda-fused", "--cell", "elman", "--json")
    assert result.exit_code == 1, result.output
    failed = {c["name"] for c in objects(result, "numeric") if not c["passed"]}
    assert "cuda-fused elman fp32: all states" in failed and not any("bf16" in name for name in failed)


def test_an_explicit_problem_without_configurations_exits_1_with_the_reason():
    # sLSTM training at D=512: one copy of R (4 x 512 x 512 bf16, 2 MiB) exceeds any SM's shared memory
    args = (
        "--backend",
        "triton-fused",
        "--compile",
        "sm_80",
        "--cell",
        "slstm",
        "--head-dim",
        "512",
        "--json",
    )
    result = run(*args)
    assert result.exit_code == 1
    error = json.loads(result.output)
    assert error["exit_code"] == 1 and "no feasible configuration" in error["error"]


COMPILED_KEYS = {"registers", "static_shared_bytes", "dynamic_shared_bytes", "shared_memory_bytes",
                 "spill_bytes", "stack_frame_bytes"}  # fmt: skip


@pytest.mark.slow
def test_triton_fused_top_configuration_compiles_for_two_archs_with_the_cuda_json_shape(tmp_path):
    args = ("--backend", "triton-fused", "--compile", "sm_80,sm_90", "--gpu", "a100", "--cell", "lstm",
            "--head-dim", "64", "--json", "--out", str(tmp_path))  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    records = objects(result, "compile")
    # the sample's direction "both": the forward and the backward kernel, per arch
    kernels = [(r["arch"], r["kernel"]) for r in records]
    assert kernels == [(a, k) for a in ("sm_80", "sm_90") for k in ("fused_forward", "fused_backward")]
    a100, h100 = load_profile("a100").name, load_profile("h100").name  # --gpu for sm_80, default sm_90
    assert [r["gpu"] for r in records] == [a100, a100, h100, h100]
    for r in records:
        assert r["name"].startswith("lstm-both-tritonfused-D64-") and r["passed"], r
        assert set(r["predicted"]) == {"registers_per_thread", "shared_memory_bytes_per_block"}
        assert set(r["compiled"]) == COMPILED_KEYS and r["compiled"]["spill_bytes"] == 0
        assert r["compiled"]["registers"] <= r["predicted"]["registers_per_thread"]
        source = Path(r["source"])
        assert source.parent == tmp_path and "@triton.jit" in source.read_text()


@pytest.fixture
def fake_family(monkeypatch):
    """cuda-alternating's kernels come from tests/fake_cuda_family.py (a real tk_cuda.cuh kernel, no
    recurrence: the emulator numerics, checked above, are left out)."""
    monkeypatch.setitem(tunekit.kernels.CUDA_FAMILIES, "cuda-alternating", "fake_cuda_family")
    monkeypatch.setattr(validation, "validate_emulator", lambda *args, **kwargs: [])
    return fake_cuda_family


def test_cuda_family_compiles_every_entry_with_nvcc_and_nvrtc_per_arch(fake_family, tmp_path):
    args = ("--backend", "cuda-alternating", "--compile", "sm_80,sm_90", "--cell", "lstm", "--head-dim", "40",
            "--json", "--out", str(tmp_path))  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    records = objects(result, "compile")
    assert sorted((r["arch"], r["tool"].split()[0]) for r in records) == [
        ("sm_80", "nvcc"), ("sm_80", "nvrtc"), ("sm_90", "nvcc"), ("sm_90", "nvrtc")]  # fmt: skip
    static = fake_family.TILE_ROWS * 16 * 2
    dynamic = fake_family.launch_dims(None, "tile").shared_bytes
    for r in records:
        assert r["kernel"] == "tile" and r["verdict"] == "ok" and r["passed"], r
        assert r["name"].startswith("lstm-both-cudaalternating-D40-")
        assert r["predicted"]["shared_memory_bytes_per_block"] == static + dynamic
        c = r["compiled"]
        assert (c["static_shared_bytes"], c["dynamic_shared_bytes"], c["shared_memory_bytes"]) == (
            static, dynamic, static + dynamic)  # fmt: skip
        assert (c["spill_bytes"], c["stack_frame_bytes"]) == (0, 0) and 0 < c["registers"] <= 128
        assert "cuobjdump" in r["sass"]
        source = Path(r["source"])
        assert source.parent == tmp_path and '#include "tk_cuda.cuh"' in source.read_text()


def test_a_cuda_shared_memory_prediction_off_by_16_bytes_fails_with_exit_1(fake_family, monkeypatch):
    monkeypatch.setattr(fake_family, "SHARED_ERROR", 16)
    result = run("--backend", "cuda-alternating", "--compile", "sm_86", "--tool", "nvrtc", "--cell", "gru")
    assert result.exit_code == 1, result.output
    assert "MODEL WRONG" in result.output and "some checks failed" in result.output
    data = run(
        "--backend", "cuda-alternating", "--compile", "sm_86", "--tool", "nvrtc", "--cell", "gru", "--json"
    )
    (record,) = objects(data, "compile")
    assert not record["passed"] and "shared memory 2304 B != the model's 2320 B" in record["verdict"]


def test_a_stack_frame_or_registers_over_the_bound_fail(fake_family, monkeypatch):
    monkeypatch.setattr(fake_family, "USE_STACK", True)
    monkeypatch.setattr(fake_family, "REGISTER_BOUND", 8)
    result = run(
        "--backend", "cuda-alternating", "--compile", "sm_89", "--tool", "nvrtc", "--cell", "elman", "--json"
    )
    assert result.exit_code == 1
    (record,) = objects(result, "compile")
    assert "uses a 256 B stack frame" in record["verdict"] and "> the model's bound 8" in record["verdict"]


def test_a_kernel_that_does_not_compile_is_a_failed_record_not_a_crash(fake_family, monkeypatch):
    monkeypatch.setattr(
        fake_family, "_SOURCE", fake_family._SOURCE.replace("tk::mma_m16n8k16_bf16", "no_such_mma")
    )
    result = run(
        "--backend", "cuda-alternating", "--compile", "sm_80", "--tool", "nvrtc", "--cell", "elman", "--json"
    )
    assert result.exit_code == 1
    (record,) = objects(result, "compile")
    assert record["compiled"] is None and record["verdict"].startswith("COMPILE FAILED: NVRTC")


def test_a_family_missing_from_the_installation_is_named(monkeypatch):
    monkeypatch.setitem(tunekit.kernels.CUDA_FAMILIES, "cuda-fused", "tunekit.kernels.no_such_family")
    result = run("--backend", "cuda-fused", "--compile", "sm_80", "--json")
    assert result.exit_code == 2
    assert (
        "--backend cuda-fused: its kernels (tunekit.kernels.no_such_family) are not in this installation"
        in (json.loads(result.output)["error"])
    )


def test_without_nvcc_auto_compiles_with_nvrtc_and_says_so_and_an_explicit_nvcc_is_an_error(
    fake_family, monkeypatch
):
    monkeypatch.setenv("PATH", "/nonexistent")
    args = (
        "--backend",
        "cuda-alternating",
        "--compile",
        "sm_80",
        "--cell",
        "lstm",
        "--head-dim",
        "40",
        "--json",
    )
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert any("nvcc left out: nvcc is not on PATH" in n["text"] for n in objects(result, "note"))
    assert {r["tool"].split()[0] for r in objects(result, "compile")} == {"nvrtc"}
    explicit = run(*args, "--tool", "nvcc")
    assert (
        explicit.exit_code == 2
        and "--tool: nvcc: nvcc is not on PATH" in json.loads(explicit.output)["error"]
    )


def test_cuda_fused_records_give_the_register_bound_and_the_estimate(monkeypatch, tmp_path):
    # cuda-fused's recurrent kernels are capped at the co-resident grid's register budget (the
    # bound); the model's estimate rides beside it, and ptxas stays within the bound without spilling
    monkeypatch.setattr(validation, "validate_emulator", lambda *args, **kwargs: [])
    args = ("--backend", "cuda-fused", "--compile", "sm_80", "--tool", "nvcc", "--cell", "elman",
            "--head-dim", "16", "--json", "--out", str(tmp_path))  # fmt: skip
    result = run(*args)
    assert result.exit_code == 0, result.output
    records = objects(result, "compile")
    recurrent = [r for r in records if r["kernel"] in ("elman_fused_forward", "elman_fused_backward")]
    assert len(recurrent) == 2, [r["kernel"] for r in records]
    for r in records:
        assert r["passed"], r
        assert r["compiled"]["registers"] <= r["predicted"]["registers_per_thread"]
        assert (r["compiled"]["spill_bytes"], r["compiled"]["stack_frame_bytes"]) == (0, 0)
    for r in recurrent:
        assert set(r["predicted"]) == {
            "registers_per_thread",
            "registers_estimate",
            "shared_memory_bytes_per_block",
        }
        assert r["predicted"]["registers_estimate"] <= r["predicted"]["registers_per_thread"]
