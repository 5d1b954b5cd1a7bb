"""Baselines of the solver benchmark: missing tools give results (never exceptions), the Kernel Tuner
restrictions mean what they say, and small real calls when flashrnn / kernel_tuner are installed."""

import dataclasses
import importlib.util
import sys

import pytest

from tunekit.bench import baselines as bl
from tunekit.bench import baselines_report
from tunekit.hardware import load_profile

HAS_FLASHRNN = importlib.util.find_spec("flashrnn") is not None
HAS_KERNEL_TUNER = importlib.util.find_spec("kernel_tuner") is not None
SHAPE = ("lstm", 64, 1, 16, "bfloat16", "a100")


def _satisfies(restrictions: list[str], config: dict[str, int]) -> list[str]:
    """The restriction strings that ``config`` violates (evaluated as the Python they are)."""
    return [r for r in restrictions if not eval(r, {}, dict(config))]  # noqa: S307 - our own strings


@pytest.mark.parametrize(
    ("module", "inner"), [("flashrnn", "autotune.constrint"), ("kernel_tuner", "searchspace")]
)
def test_missing_package_is_a_result_not_an_error(monkeypatch, module, inner):
    for name in (module, f"{module}.{inner}"):
        monkeypatch.setitem(sys.modules, name, None)  # every import of the package fails, as when missing
    timer = bl.time_flashrnn if module == "flashrnn" else bl.time_kernel_tuner
    res = timer(*SHAPE)
    assert res.installed is False
    assert res.note.startswith(f"not installed: pip install {module}")
    assert (res.seconds, res.solutions_found, res.first_solution) == (0.0, 0, None)


def test_unknown_gpu_is_a_result_not_an_error():
    for timer in (bl.time_flashrnn, bl.time_kernel_tuner):
        res = timer("lstm", 64, 1, 16, "bfloat16", "no-such-gpu")
        assert res.solutions_found == 0 and res.first_solution is None
        assert "unknown GPU" in res.note
        assert res.installed is (HAS_FLASHRNN if res.tool == "flashrnn" else HAS_KERNEL_TUNER)


def test_limits_from_profile_and_mapping():
    p = load_profile("a100")
    lim = bl.gpu_limits("a100")
    assert (lim.sm_count, lim.shared_memory_per_block_optin, lim.registers_per_sm) == (
        p.sm_count,
        p.shared_memory_per_block_optin,
        p.registers_per_sm,
    )
    info = bl.flashrnn_gpu_info(
        {
            "sm_count": 7,
            "shared_memory_per_block_optin": 9000,
            "registers_per_sm": 4096,
            "max_registers_per_thread": 255,
            "max_threads_per_block": 512,
        }
    )
    assert info == {
        "maxThreadsPerBlock": 512,
        "regsPerMultiprocessor": 4096,
        "multiProcessorCount": 7,
        "sharedMemPerBlockOptin": 9000,
    }


def test_kernel_tuner_restrictions_accept_and_reject_by_hand():
    # LSTM D=64 bf16 B=16: rows = 4*64 = 256, cols = 64, batch padded to 16.
    params, restrictions = bl.kernel_tuner_space(*SHAPE)
    assert not any(name in r.split() for r in restrictions for name in ("rows", "cols", "bp", "n"))
    ok = {
        "block_size_x": 128,
        "blocks_gate": 4,
        "blocks_hidden": 1,
        "blocks_batch": 1,
        "head_groups": 1,
        "warp_loop": 1,
        "cached_tiles": 4,
    }  # 4 warps x 1 tile x 16 rows = 256 / 4; smem 6144 B; 56 regs
    assert all(ok[k] in params[k] for k in ok)
    assert _satisfies(restrictions, ok) == []
    assert len(_satisfies(restrictions, {**ok, "block_size_x": 256})) == 1  # 8 warps cover 128 rows, not 64
    assert len(_satisfies(restrictions, {**ok, "cached_tiles": 5})) == 1  # a warp owns only 4 tiles
    assert _satisfies(restrictions, {**ok, "blocks_gate": 3, "block_size_x": 32}) != []  # 256 % 48 != 0
    # A GPU with 3 SMs cannot co-host the 4 blocks.
    small = {**dataclasses.asdict(bl.gpu_limits("a100")), "sm_count": 3}
    _, on_small = bl.kernel_tuner_space("lstm", 64, 1, 16, "bfloat16", small)
    assert len(_satisfies(on_small, ok)) == 1


@pytest.mark.slow  # 1-4 s: python-constraint walks a 291M-point product
@pytest.mark.skipif(not HAS_KERNEL_TUNER, reason="kernel_tuner not installed (pip install tunekit[bench])")
def test_kernel_tuner_real_searchspace():
    res = bl.time_kernel_tuner(*SHAPE)
    assert res.installed and res.note == "", res.note
    assert res.solutions_found > 0 and res.seconds > 0
    _, restrictions = bl.kernel_tuner_space(*SHAPE)
    assert _satisfies(restrictions, res.first_solution) == []
    assert res.details["cartesian_size"] > res.solutions_found


@pytest.mark.skipif(not HAS_FLASHRNN, reason="flashrnn not installed (pip install tunekit[bench])")
def test_flashrnn_gru_has_no_fused_kernel():
    res = bl.time_flashrnn("gru", 64, 1, 16, "bfloat16", "a100")
    assert res.installed and res.solutions_found == 0
    assert "no fused kernel for gru" in res.note
    assert res.details["gpu_info_passed"] == bl.flashrnn_gpu_info("a100")


@pytest.mark.skipif(not HAS_FLASHRNN, reason="flashrnn not installed (pip install tunekit[bench])")
def test_flashrnn_constraints_carry_our_gpu_numbers():
    gpu = {"sm_count": 7, "shared_memory_per_block_optin": 50000, "registers_per_sm": 32768,
           "max_registers_per_thread": 255, "max_threads_per_block": 512}  # fmt: skip
    _, text, refinements = bl._flashrnn_problem("lstm", 64, 1, 16, "bfloat16", bl.flashrnn_gpu_info(gpu))
    for line in ("STREAMING_MULTIPROCESSORS == 7;", "SHARED_MEMORY_PER_BLOCK == 48976;",  # 50000 - 1024
                 "MAX_THREADS_PER_BLOCK_FORWARD == 128;", "REGISTERS_PER_BLOCK_FORWARD == 65536 ;",
                 "HEAD_DIM == 64;", "BATCH_DIM == 16;"):  # fmt: skip
        assert line in text, line
    assert refinements[0].name == "FLASHRNN_HIDDEN_DIM"


@pytest.mark.slow
@pytest.mark.skipif(not HAS_FLASHRNN, reason="flashrnn not installed (pip install tunekit[bench])")
def test_flashrnn_real_solve_and_timeout():
    res = bl.time_flashrnn("elman", 32, 1, 8, "bfloat16", "a100", timeout_s=300)  # ~10 s on a busy CPU
    assert res.installed and res.note == "", res.note
    assert res.solutions_found == 1 and res.seconds > 0
    assert res.first_solution["FLASHRNN_HIDDEN_DIM"] == 32
    # FlashRNN's forward tiling must cover the head dim it solved for (its own constraint, checked back).
    sol = res.first_solution
    hidden = (
        sol["FLASHRNN_FORWARD_RECURRENT_TILING_COUNT_HIDDEN"]
        * sol["FLASHRNN_FORWARD_WARP_TILING_COUNT_HIDDEN"]
        * sol["FLASHRNN_FORWARD_WARP_TILING_DIM_HIDDEN"]
    )
    assert 32 % hidden == 0
    slow = bl.time_flashrnn("lstm", 768, 1, 16, "bfloat16", "a100", timeout_s=0.5)
    assert slow.installed and slow.solutions_found == 0 and slow.note.startswith("timeout")


@pytest.mark.slow  # imports flashrnn, kernel_tuner and tunekit.tuning when present: seconds on a busy host
def test_runner_writes_json_and_markdown_and_keeps_notes(tmp_path):
    # GRU: FlashRNN has no fused kernel for it, so even with flashrnn installed this runs in seconds.
    out = str(tmp_path / "baselines")
    report = baselines_report.run([32], gpu="a100", cell="gru", heads=1, batch=8, out=out)
    (row,) = report["rows"]
    assert (row["head_dim"], row["cell"], row["gpu"]) == (32, "gru", bl.gpu_limits("a100").name)
    assert row["flashrnn"]["solutions_found"] == 0 and row["flashrnn_cached"] is False
    md = (tmp_path / "baselines.md").read_text()
    assert "| 32 |" in md and "a100" in md
    (tmp_path / "baselines.md").write_text(md + f"\n{baselines_report._NOTES}\nour reading\n")
    again = baselines_report.run([32], gpu="a100", cell="gru", heads=1, batch=8, out=out)
    assert again["rows"][0]["flashrnn_cached"] is HAS_FLASHRNN  # a real FlashRNN result is reused
    assert (tmp_path / "baselines.md").read_text().endswith(f"{baselines_report._NOTES}\nour reading\n")
