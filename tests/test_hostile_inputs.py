"""The catalogue of bad and hostile inputs: each entry names where the input enters, the input, and
the exact outcome (the error class itself, not a subclass, and the words that name the problem).

Grouped by where the input enters: the CLI, the Python API, hardware profiles, kernel
configurations, caches and files, and the tuning database.
Keep it growing with every feature: a new way in gets its group, a new check its entries.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from dbcases import ranked, synthetic  # noqa: E402  (tests/ is on sys.path)

import tunekit
from tunekit import cache
from tunekit.cells import Cell, get_cell, register_cell
from tunekit.cli import main as cli_main
from tunekit.config_check import check_config
from tunekit.db import EXPORT_FORMAT, ExportFormatError, TuningDB, TuningDBError
from tunekit.files import write_atomic
from tunekit.hardware import load_profile, load_profile_file, profile_to_toml
from tunekit.kernels.triton_fused import SECOND_DERIVATIVE_ERROR, fused_rnn
from tunekit.problem import PARAM_TAGS, KernelConfig, Problem
from tunekit.tuning import tune


@dataclass(frozen=True)
class Case:
    """One hostile input: ``call`` must raise exactly ``error`` with a message matching ``words``."""

    id: str
    call: Callable[[], Any]
    error: type[BaseException]
    words: str


def raised(case: Case) -> BaseException:
    """What ``case.call()`` raised (the test fails when it returns)."""
    with pytest.raises(BaseException) as caught:
        case.call()
    return caught.value


def mismatch(case: Case, error: BaseException) -> str | None:
    """Why ``error`` is not the case's expected error, or None when it is (type and message words)."""
    if type(error) is not case.error:
        return f"{case.id}: {type(error).__name__}: {error}"
    if not re.search(case.words, str(error)):
        return f"{case.id}: {error}"
    return None


def cases(group: list[Case]):
    return pytest.mark.parametrize("case", group, ids=[c.id for c in group])


# ---- 1. the CLI: one `Error:` line (or one JSON object), exit 2 bad input, 1 nothing/failed ----

TUNE = ["tune", "--gpu", "a100", "--cell", "lstm", "--head-dim", "64"]
CLI: list[tuple[str, list[str], int, str]] = [
    ("tune-missing-gpu", ["tune", "--cell", "lstm", "--head-dim", "64"], 2, "Missing option '--gpu'"),
    ("tune-unknown-gpu", ["tune", "--gpu", "a1000", "--cell", "lstm", "--head-dim", "8"], 2,
     "unknown GPU 'a1000'.*Did you mean 'a100'"),
    ("tune-empty-gpu", ["tune", "--gpu", "", "--cell", "lstm", "--head-dim", "8"], 2, "unknown GPU ''"),
    ("tune-unknown-cell", ["tune", "--gpu", "a100", "--cell", "lsmt", "--head-dim", "8"], 2,
         "cell: got 'lsmt'"),
    ("tune-head-dim-0", [*TUNE[:5], "--head-dim", "0"], 2, r"head_dim: got 0, expected an int in 1\.\.65536"),
    ("tune-head-dim-negative", [*TUNE[:5], "--head-dim", "-5"], 2, "head_dim: got -5"),
    ("tune-head-dim-huge", [*TUNE[:5], "--head-dim", "99999999"], 2, "head_dim: got 99999999"),
    ("tune-head-dim-text", [*TUNE[:5], "--head-dim", "abc"], 2, "'abc' is not a valid integer"),
    ("tune-head-dim-float", [*TUNE[:5], "--head-dim", "16.9"], 2, "'16.9' is not a valid integer"),
    ("tune-batch-0", [*TUNE, "--batch", "0"], 2, "batch: got 0"),
    ("tune-heads-5000", [*TUNE, "--heads", "5000"], 2, r"heads: got 5000, expected an int in 1\.\.4096"),
    ("tune-dtype-float64", [*TUNE, "--dtype", "float64"], 2, "dtype: got 'float64'"),
    ("tune-direction", [*TUNE, "--direction", "sideways"], 2, "direction: got 'sideways'"),
    ("tune-backend", [*TUNE, "--backend", "cuda"], 2, "backend: got 'cuda'"),
    ("tune-solver", [*TUNE, "--solver", "gurobi"], 2, "solver: got 'gurobi'"),
    ("tune-top-0", [*TUNE, "--top", "0"], 2, "top: got 0"),
    ("tune-unknown-option", [*TUNE, "--frobnicate"], 2, "No such option '--frobnicate'"),
    ("tune-nothing-fits", [*TUNE[:5], "--head-dim", "65536", "--backend", "triton-fused"], 1, None),
    ("explain-unknown-cell", ["explain", "--gpu", "l4", "--cell", "xyz", "--head-dim", "8"], 2,
         "cell: got 'xyz'"),
    ("unknown-command", ["frobnicate"], 2, "No such command 'frobnicate'"),
    ("hw-show-unknown", ["hw", "show", "tpu-v5"], 2, "unknown GPU 'tpu-v5'"),
    ("hw-detect-device-negative", ["hw", "detect", "--device", "-1"], 2, "Invalid value for '--device'"),
    ("hw-detect-out-empty", ["hw", "detect", "--out", ""], 2, "--out: path: got an empty path"),
    ("hw-detect-out-missing-folder", ["hw", "detect", "--out", "/nonexistent-tk/x.toml"], 2,
     "its folder /nonexistent-tk does not exist"),
    ("hw-detect-out-child-of-file", ["hw", "detect", "--out", "/etc/hostname/x.toml"], 2,
     "a parent of it is a file, not a folder"),
    ("hw-detect-out-folder", ["hw", "detect", "--out", "/tmp"], 2, "/tmp is a directory"),
    ("hw-detect-out-dev-full", ["hw", "detect", "--out", "/dev/full"], 2, "/dev/full is a device or socket"),
    ("hw-detect-without-cuda", ["hw", "detect"], 1, "cannot detect a GPU"),
    ("calibrate-count-0", ["bench", "calibrate-triton", "--count", "0"], 2, "0 is not in the range x>=1"),
    ("calibrate-count-negative", ["bench", "calibrate-triton", "--count", "-1"], 2, "-1 is not in the range"),
    ("bench-out-proc", ["bench", "solvers", "--out", "/proc/tk-x"], 2, "cannot create the folder /proc/tk-x"),
    ("bench-solver-brute", ["bench", "solvers", "--solver", "brute"], 2, "'brute' is not one of"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "code", "words"), [c[1:] for c in CLI], ids=[c[0] for c in CLI])
def test_cli(args, code, words, monkeypatch):
    import tunekit.bench.calibrate_triton
    import tunekit.bench.solver_bench

    for module in (tunekit.bench.solver_bench, tunekit.bench.calibrate_triton):
        monkeypatch.setattr(module, "run", lambda *a, **k: pytest.fail("the command ran before its checks"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # hw detect on a machine without CUDA
    result = CliRunner().invoke(cli_main, args)
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # never a traceback
    if words is None:  # "nothing fits" prints its explanation, no Error: line
        assert "no feasible configuration" in result.stdout.lower() and result.stderr == ""
        return
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert re.search(words, lines[0]), lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([*TUNE[:5], "--json"], "Missing option '--head-dim'"),
        ([*TUNE, "--dtype", "int8", "--json"], "dtype: got 'int8'"),
        (["hw", "show", "nope", "--json"], "unknown GPU 'nope'"),
        ([*TUNE, "--json", "--heads", "x"], "'x' is not a valid integer"),
    ],
    ids=["json-missing-option", "json-bad-dtype", "json-hw-show", "json-bad-int"],
)
def test_cli_json_errors_are_one_object_on_stdout(args, words):
    result = CliRunner().invoke(cli_main, args)
    data = json.loads(result.stdout)
    assert result.exit_code == 2 and data["exit_code"] == 2 and re.search(words, data["error"])
    assert result.stderr == ""


# ---- 2. the Python API --------------------------------------------------------------------------


def lstm_inputs(B=2, T=3, N=1, D=4, dtype=torch.float32):
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(B, T, 4, N, D, generator=g, dtype=dtype),
        torch.randn(4, N, D, D, generator=g, dtype=dtype) / D,
        torch.zeros(4, N, D, dtype=dtype),
    )


WX, R, B = lstm_inputs()
LSTM_PROBLEM = Problem("lstm", batch=2, heads=1, head_dim=4, dtype="float32", direction="both")
API = [
    Case("rnn-unknown-cell", lambda: tunekit.rnn(WX, R, B, cell="lsmt"), ValueError,
         r"cell: got 'lsmt', expected"),
    Case("rnn-cell-not-a-string", lambda: tunekit.rnn(WX, R, B, cell=3), ValueError, "cell: got 3"),
    Case("rnn-unknown-backend", lambda: tunekit.rnn(WX, R, B, cell="lstm", backend="cudnn"), ValueError,
         "backend: got 'cudnn'"),
    Case("rnn-backend-not-a-string", lambda: tunekit.rnn(WX, R, B, cell="lstm", backend=None), ValueError,
         "backend: got NoneType"),
    Case("rnn-wx-4-dims", lambda: tunekit.rnn(WX[0], R, B, cell="lstm"), ValueError,
         r"Wx: got shape .*4 dims"),
    Case("rnn-wx-a-list", lambda: tunekit.rnn([1.0], R, B, cell="lstm"), ValueError, "Wx: got list"),
    Case("rnn-wx-integers", lambda: tunekit.rnn(WX.long(), R, B, cell="lstm"), ValueError,
         "Wx: got dtype torch.int64, expected a floating-point dtype"),
    Case("rnn-wrong-gate-count", lambda: tunekit.rnn(WX[:, :, :3], R, B, cell="lstm"), ValueError,
         "Wx: got 3 gates .*expected G_w=4"),
    Case("rnn-zero-steps", lambda: tunekit.rnn(WX[:, :0], R, B, cell="lstm"), ValueError, "Wx: got T=0"),
    Case("rnn-R-transposed-heads", lambda: tunekit.rnn(WX, R.transpose(0, 1), B, cell="lstm"), ValueError,
         r"R: got shape \(1, 4, 4, 4\), expected \(4, 1, 4, 4\)"),
    Case("rnn-b-wrong-shape", lambda: tunekit.rnn(WX, R, B[:2], cell="lstm"), ValueError, "b: got shape"),
    Case("rnn-states-wrong-shape", lambda: tunekit.rnn(WX, R, B, torch.zeros(1, 2, 1, 1, 4), cell="lstm"),
         ValueError, "states: got shape"),
    Case("rnn-mixed-dtypes", lambda: tunekit.rnn(WX, R.double(), B, cell="lstm"), ValueError,
         "R: got dtype torch.float64, expected the dtype of Wx"),
    Case("problem-batch-float", lambda: Problem("lstm", batch=16.9, heads=1, head_dim=8), ValueError,
         "batch: got 16.9"),
    Case("problem-heads-bool", lambda: Problem("lstm", batch=1, heads=True, head_dim=8), ValueError,
         "heads: got True"),
    Case("problem-cell-number", lambda: Problem(7, batch=1, heads=1, head_dim=8), ValueError, "cell: got 7"),
    Case("tune-unknown-backend", lambda: tune(LSTM_PROBLEM, "a100", backend="opencl"), ValueError,
         "backend: got 'opencl'"),
    Case("tune-top-negative", lambda: tune(LSTM_PROBLEM, "a100", top=-1), ValueError, "top: got -1"),
    Case("tune-unknown-solver", lambda: tune(LSTM_PROBLEM, "a100", solver="z3"), ValueError,
         "solver: got 'z3'"),
    Case("load-profile-number", lambda: load_profile(80), ValueError, "must be a profile name or alias"),
    Case("get-cell-empty", lambda: get_cell(""), ValueError, "cell: got ''"),
    Case("cell-name-with-space", lambda: Cell("my cell", ("a",), ("a",), ("a",), ("y",), lambda v: {}),
         ValueError,
         "name: got 'my cell', expected an identifier"),
    Case("cell-gate-not-identifier", lambda: Cell("c", ("a-b",), ("a",), ("a",), ("y",), lambda v: {}),
         ValueError, r"r_gates: got \['a-b'\], expected identifiers"),
    Case("register-not-a-cell", lambda: register_cell("lstm"), ValueError, "cell: got str"),
    Case("kernel-config-unknown-family",
         lambda: KernelConfig("cudnn", LSTM_PROBLEM, "a100-sxm4-80gb", (("block_b", 16),)), ValueError,
         "family: got 'cudnn'"),
    Case("kernel-config-gpu-path", lambda: KernelConfig("triton-fused", LSTM_PROBLEM, "../a100", ()),
         ValueError,
         "gpu: got '../a100'"),
]  # fmt: skip


@cases(API)
def test_python_api(case):
    assert mismatch(case, raised(case)) is None


def test_a_second_derivative_through_triton_fused_raises_instead_of_being_wrong():
    """The issue's gradient penalty: |d penalty/dR| was 5.72 against the reference's 16.73, silently."""
    Wx, Rr, b = (t.clone().requires_grad_() for t in lstm_inputs(D=16))
    config = {"block_b": 16, "num_warps": 4, "num_stages": 1}
    states, _ = fused_rnn(Wx, Rr, b, cell="lstm", config=config)
    (grad,) = torch.autograd.grad(states.square().sum(), Rr, create_graph=True)
    reference, _ = tunekit.rnn(Wx, Rr, b, cell="lstm")
    (expected,) = torch.autograd.grad(reference.square().sum(), Rr, create_graph=True)
    torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-5)  # the first derivative is right
    for penalty in (grad.square().sum(), states.sum() + grad.square().sum()):
        with pytest.raises(RuntimeError) as caught:
            penalty.backward(retain_graph=True)
        assert str(caught.value) == SECOND_DERIVATIVE_ERROR


# ---- 3. hardware profiles (files a user writes or detect builds) --------------------------------


def profile_file(tmp_path: Path, edit: Callable[[str], str] | None = None, raw: bytes | None = None) -> Path:
    path = tmp_path / "mine.toml"
    text = profile_to_toml(load_profile("a100"))
    path.write_bytes(raw if raw is not None else edit(text).encode())
    return path


def edit(old: str, new: str) -> Callable[[str], str]:
    def apply(text: str) -> str:
        assert old in text, old
        return text.replace(old, new)

    return apply


PROFILE = [
    ("cc-7.5", edit("compute_capability = [8, 0]", "compute_capability = [7, 5]"),
     r"field 'compute_capability': 7\.5 is not supported"),
    ("cc-negative", edit("compute_capability = [8, 0]", "compute_capability = [-8, 0]"),
     "expected \\[major, minor\\] integers"),
    ("cc-three-numbers", edit("compute_capability = [8, 0]", "compute_capability = [8, 0, 1]"),
     "field 'compute_capability'"),
    ("sm-count-1e18", edit("sm_count = 108", "sm_count = 1000000000000000000"),
     "field 'sm_count': 1000000000000000000 is outside 1..1024"),
    ("sm-count-zero", edit("sm_count = 108", "sm_count = 0"), "field 'sm_count': expected a positive number"),
    ("sm-count-string", edit("sm_count = 108", 'sm_count = "108"'), "field 'sm_count': expected int"),
    ("sm-count-bool", edit("sm_count = 108", "sm_count = true"), "field 'sm_count': expected int, got True"),
    ("sm-count-float", edit("sm_count = 108", "sm_count = 108.5"), "field 'sm_count': expected int"),
    ("bandwidth-nan", edit("memory_bandwidth_gbs = 2039.0", "memory_bandwidth_gbs = nan"),
     "field 'memory_bandwidth_gbs': expected a positive number, got nan"),
    ("bandwidth-inf", edit("memory_bandwidth_gbs = 2039.0", "memory_bandwidth_gbs = inf"),
     "field 'memory_bandwidth_gbs': expected a positive number, got inf"),
    ("clock-in-hz", edit("boost_clock_mhz = 1410", "boost_clock_mhz = 1410000000"),
     "field 'boost_clock_mhz': 1410000000 is outside"),
    ("tflops-10x", edit('"bfloat16" = 312.0', '"bfloat16" = 31200.0'),
     "field 'tensor_tflops.bfloat16': 31200 TFLOP/s from 108 SMs at 1410 MHz is 2.05e\\+05 FLOP per SM"),
    ("warp-size-64", edit("warp_size = 32", "warp_size = 64"), r"field 'warp_size': 64 is outside 32\.\.32"),
    ("unknown-field", edit("warp_size = 32", "warp_size = 32\nsm_clock = 5"),
         "field 'sm_clock': unknown field"),
    ("missing-field", edit("l2_bytes = 41943040\n", ""), "field 'l2_bytes': missing"),
    ("uncited-number", edit('"l2_bytes" = ', '"l2_bytes_typo" = '), "field 'l2_bytes': has no entry under"),
    ("name-path", edit('name = "a100-sxm4-80gb"', 'name = "../../etc"'), "field 'name': got '../../etc'"),
    ("name-empty", edit('name = "a100-sxm4-80gb"', 'name = ""'), "field 'name': expected a non-empty string"),
    ("aliases-not-a-list", edit("aliases = [", 'aliases = "a100"\nx = ['),
     "field 'aliases': expected a list of strings|field 'x'"),
    ("mma-shape", edit('"float64" = ["m8n8k4"]', '"float64" = ["8x8x4"]'), "field 'mma_shapes.float64'"),
    ("invalid-toml", edit("warp_size = 32", "warp_size = = 32"), "not valid TOML"),
]  # fmt: skip


@pytest.mark.parametrize(("change", "words"), [p[1:] for p in PROFILE], ids=[p[0] for p in PROFILE])
def test_profile_fields(tmp_path, change, words):
    path = profile_file(tmp_path, change)
    with pytest.raises(ValueError) as caught:
        load_profile_file(path)
    assert type(caught.value) is ValueError
    assert str(caught.value).startswith(f"hardware profile {path}: "), caught.value
    assert re.search(words, str(caught.value)), caught.value


def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "mine.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(bytes(range(256)))
    elif kind == "huge":
        path.write_bytes(b"#" * (2 << 20))
    elif kind == "symlink-to-dev-zero":
        path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("binary", r"not UTF-8 text \(byte 0x80 at offset 128\)"),
        ("fifo", "not a regular file"),
        ("directory", "not a regular file"),
        ("missing", r"cannot read it \(No such file or directory\)"),
        ("huge", "2097152 bytes; a profile is a small TOML file"),
        ("symlink-to-dev-zero", "not a regular file"),
    ],
    ids=["binary", "fifo", "directory", "missing", "huge", "symlink-to-dev-zero"],
)
def test_profile_files_that_are_not_profiles(tmp_path, kind, words):
    path = _special(tmp_path, kind)
    case = Case(kind, lambda: load_profile_file(path), ValueError, rf"hardware profile {path}: {words}")
    assert mismatch(case, raised(case)) is None


# ---- 4. kernel configurations (check_config, and through triton-fused's launch) ------------------

GOOD = {"block_b": 16, "num_warps": 4, "num_stages": 1}
TRITON = "triton-fused"
P = Problem("lstm", batch=6, heads=1, head_dim=40, dtype="float32", direction="both")


def _tuned(cell: str = "lstm", **changes: Any) -> KernelConfig:
    fields = {"batch": 6, "heads": 1, "head_dim": 40, "dtype": "float16", "direction": "both"} | changes
    return check_config(GOOD, TRITON, Problem(cell, **fields))  # a valid configuration for that problem


CONFIGS = [
    Case("unknown-key", lambda: check_config({**GOOD, "blockb": 32}, TRITON, P), ValueError,
         r"config: unknown key 'blockb' for triton-fused; expected only \['block_b'"),
    Case("float-truncated-before", lambda: check_config({**GOOD, "block_b": 16.9}, TRITON, P), ValueError,
         r"config block_b: got 16\.9 \(float\), expected an integer"),
    Case("integral-float", lambda: check_config({**GOOD, "num_warps": 4.0}, TRITON, P), ValueError,
         r"config num_warps: got 4\.0 \(float\)"),
    Case("string-number", lambda: check_config({**GOOD, "num_stages": "1"}, TRITON, P), ValueError,
         r"config num_stages: got '1' \(str\), expected an integer"),
    Case("bool", lambda: check_config({**GOOD, "num_stages": True}, TRITON, P), ValueError,
         r"config num_stages: got True \(bool\)"),
    Case("none", lambda: check_config({**GOOD, "block_b": None}, TRITON, P), ValueError,
         r"config block_b: got None \(NoneType\)"),
    Case("not-a-power-of-two", lambda: check_config({**GOOD, "block_b": 12}, TRITON, P), ValueError,
         r"config block_b: got 12, expected one of \[16\]"),
    Case("tile-beyond-the-batch", lambda: check_config({**GOOD, "block_b": 64}, TRITON, P), ValueError,
         r"config block_b: got 64, expected one of \[16\] \(PowersOfTwo\(16, 16\), the triton-fused model's"),
    Case("num-warps-3", lambda: check_config({**GOOD, "num_warps": 3}, TRITON, P), ValueError,
         r"config num_warps: got 3, expected one of \[1, 2, 4, 8, 16\]"),
    Case("num-stages-0", lambda: check_config({**GOOD, "num_stages": 0}, TRITON, P), ValueError,
         r"config num_stages: got 0, expected one of \[1, 2\]"),
    Case("d-pad-below-d", lambda: check_config({**GOOD, "d_pad": 32}, TRITON, P), ValueError,
         r"config d_pad: got 32, expected one of \[64\]"),
    Case("missing-key", lambda: check_config({"block_b": 16, "num_warps": 4}, TRITON, P), ValueError,
         r"config: missing \['num_stages'\]"),
    Case("dot-precision-unknown", lambda: check_config({**GOOD, "dot_precision": "fast"}, TRITON, P),
         ValueError, r"config dot_precision: got 'fast', expected one of \['ieee', 'tf32'\]"),
    Case("dot-precision-number", lambda: check_config({**GOOD, "dot_precision": 32}, TRITON, P), ValueError,
         "config dot_precision: got 32"),
    Case("name-path", lambda: check_config({**GOOD, "name": "../../outside"}, TRITON, P), ValueError,
         "config name: got '../../outside'"),
    Case("name-newline", lambda: check_config({**GOOD, "name": "x\nimport os"}, TRITON, P), ValueError,
         "config name: got 'x\\\\nimport os'"),
    Case("profile-unknown", lambda: check_config({**GOOD, "profile": "tpu"}, TRITON, P), ValueError,
         "unknown GPU 'tpu'"),
    Case("not-a-mapping", lambda: check_config([16, 4, 1], TRITON, P), ValueError,
         "config: got list, expected a KernelConfig or a mapping"),
    Case("key-not-a-string", lambda: check_config({**GOOD, 1: 16}, TRITON, P), ValueError,
         "config: got the key 1 \\(int\\)"),
    Case("gru-config-for-lstm", lambda: check_config(_tuned("gru"), TRITON, P), ValueError,
         "was tuned for cell='gru', this call has cell='lstm'"),
    Case("other-head-dim", lambda: check_config(_tuned(head_dim=48), TRITON, P), ValueError,
         "was tuned for head_dim=48, this call has head_dim=40"),
    Case("other-dtype", lambda: check_config(_tuned(dtype="float16"), TRITON, P), ValueError,
         "was tuned for dtype='float16', this call has dtype='float32'"),
    Case("other-heads", lambda: check_config(_tuned(heads=4, dtype="float32"), TRITON, P), ValueError,
         "was tuned for heads=4"),
    Case("forward-only-for-training", lambda: check_config(_tuned(direction="forward", dtype="float32"),
         TRITON, P),
         ValueError, "was tuned for direction='forward', this call needs 'both'"),
    Case("other-family", lambda: check_config(_tuned(dtype="float32"), "cuda-fused", P), ValueError,
         "is a triton-fused configuration, expected one for cuda-fused"),
    Case("unknown-family", lambda: check_config(GOOD, "cudnn", P), ValueError, "family: got 'cudnn'"),
    Case("through-fused-rnn-float", lambda: fused_rnn(*lstm_inputs(B=6, D=40), cell="lstm",
                                                     config={**GOOD, "block_b": 16.9}),
         ValueError, r"config block_b: got 16\.9 \(float\)"),
    Case("through-fused-rnn-unknown-key", lambda: fused_rnn(*lstm_inputs(B=6, D=40), cell="lstm",
                                                           config={**GOOD, "warps": 4}),
         ValueError, "config: unknown key 'warps'"),
    Case("through-fused-rnn-gru-config", lambda: fused_rnn(*lstm_inputs(B=6, D=40), cell="lstm",
                                                          config=_tuned("gru", dtype="float32")),
         ValueError, "was tuned for cell='gru'"),
]  # fmt: skip


@cases(CONFIGS)
def test_configurations(case):
    assert mismatch(case, raised(case)) is None


# ---- 5. caches and files ------------------------------------------------------------------------


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-home"))
    monkeypatch.setattr(cache.tempfile, "gettempdir", lambda: str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    return tmp_path


def _fifo(tmp_path: Path) -> Path:
    os.mkfifo(tmp_path / "fifo")
    return tmp_path / "fifo"


FILES = [
    ("write-empty-path", lambda t: write_atomic("", "x"), ValueError, "got an empty path"),
    ("write-dev-full", lambda t: write_atomic("/dev/full", "x"), ValueError,
         "/dev/full is a device or socket"),
    ("write-dev-null", lambda t: write_atomic("/dev/null", "x"), ValueError,
         "/dev/null is a device or socket"),
    ("write-a-folder", lambda t: write_atomic(t, "x"), ValueError, "is a directory"),
    ("write-a-fifo", lambda t: write_atomic(_fifo(t), "x"), ValueError, "is a FIFO, not a regular file"),
    ("write-missing-folder", lambda t: write_atomic(t / "no" / "x", "x"), FileNotFoundError,
         "does not exist"),
    ("write-child-of-a-file", lambda t: write_atomic("/etc/hostname/x", "x"), NotADirectoryError,
     "a parent of it is a file"),
    ("write-a-number", lambda t: write_atomic(t / "x", 42), ValueError,
         "data: got int, expected str or bytes"),
    ("write-path-none", lambda t: write_atomic(None, "x"), ValueError, "path: got NoneType"),
    ("entry-dotdot", lambda t: cache.entry_path("triton", "../../x", ".py"), ValueError,
     "cache entry name: got '../../x'"),
    ("entry-slash", lambda t: cache.entry_path("triton", "a/b", ".py"), ValueError,
         "cache entry name: got 'a/b'"),
    ("entry-hidden", lambda t: cache.entry_path("triton", ".bashrc"), ValueError,
         "cache entry name: got '.bashrc'"),
    ("entry-suffix-path", lambda t: cache.entry_path("triton", "x", "/../y"), ValueError,
         "cache entry suffix"),
    ("kind-dotdot", lambda t: cache.cache_dir(".."), ValueError, "cache kind: got '..'"),
    ("kind-upper", lambda t: cache.cache_dir("Triton"), ValueError, "cache kind: got 'Triton'"),
    ("text-entry-bad-comment", lambda t: cache.write_text_entry(t / "x", "x", comment=";"), ValueError,
     "comment: got ';'"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "words"), [f[1:] for f in FILES], ids=[f[0] for f in FILES])
def test_files_and_cache_names(private_cache, call, error, words):
    case = Case("files", lambda: call(private_cache), error, words)
    assert mismatch(case, raised(case)) is None


def test_a_world_writable_cache_directory_is_refused(private_cache):
    for root in (private_cache / "cache-home" / "tunekit", private_cache / "tmp" / f"tunekit-{os.getuid()}"):
        root.mkdir(parents=True)
        root.chmod(0o777)
    case = Case("777", lambda: cache.cache_dir("triton"), cache.CacheError, "mode 777 lets other users write")
    assert mismatch(case, raised(case)) is None


def test_a_config_named_like_a_path_writes_nothing_outside_the_cache(private_cache):
    config = {**GOOD, "name": "../../../escaped"}
    case = Case("path", lambda: fused_rnn(*lstm_inputs(D=16), cell="lstm", config=config), ValueError,
                "config name: got '../../../escaped'")  # fmt: skip
    assert mismatch(case, raised(case)) is None
    assert not list(private_cache.rglob("escaped*"))


def test_a_corrupt_cached_kernel_is_rebuilt(private_cache):
    """A cached kernel file with non-UTF-8 bytes (a crash, a full disk) used to fail every later run."""
    inputs = lstm_inputs(D=16)
    config = {**GOOD, "name": "corrupt-me"}
    first, _ = fused_rnn(*inputs, cell="lstm", config=config)
    files = sorted((private_cache / "cache-home" / "tunekit" / "triton").glob("corrupt-me-*.py"))
    assert len(files) == 2  # forward and backward
    for path in files:
        path.write_bytes(b"\xff\xfe\x00 half a kernel")
    from tunekit.kernels import triton_fused

    triton_fused._kernel_module.cache_clear()  # as a new process would
    again, _ = fused_rnn(*inputs, cell="lstm", config=config)
    torch.testing.assert_close(again, first, rtol=0, atol=0)
    assert all(cache.read_text_entry(path) is not None for path in files)


# ---- 6. the tuning database (issue 11) ----------------------------------------------------------
# A damaged or foreign file is never trusted: moved aside (kept byte for byte) with one reported
# line, and a fresh database is used. Paths that cannot be a database, exports from elsewhere or
# tampered with, and records naming what does not exist are one-line errors that name the problem.


def _db_file(tmp: Path, kind: str) -> Path:
    """A database path prepared as ``kind``."""
    import sqlite3

    path = tmp / "tuning.sqlite"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "random-bytes":
        path.write_bytes(bytes(range(256)) * 20)
    elif kind == "truncated-sqlite":
        with TuningDB(path) as db:
            db.record_run(synthetic(3, "t"), "test")
        path.write_bytes(path.read_bytes()[:700])
        for side in ("-wal", "-shm"):
            Path(f"{path}{side}").unlink(missing_ok=True)
    elif kind == "foreign-schema":
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
        conn.close()
    elif kind == "newer-schema":
        with TuningDB(path):
            pass
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA user_version = 999")
        conn.commit()
        conn.close()
    return path


def _db_opens(tmp: Path, kind: str) -> None:
    TuningDB(_db_file(tmp, kind), report=lambda line: None).close()


DATABASE_REFUSED = [
    ("folder", TuningDBError, r"is a directory; expected the database file, e\.g\. .*/tuning\.sqlite"),
    ("fifo", TuningDBError, r"is not a regular file \(a FIFO, device or socket\)"),
    ("newer-schema", TuningDBError, r"schema version 999|newer"),
]


@pytest.mark.parametrize(("kind", "error", "words"), DATABASE_REFUSED, ids=[d[0] for d in DATABASE_REFUSED])
def test_database_paths_that_cannot_be_used(tmp_path, kind, error, words):
    with pytest.raises(BaseException) as caught:
        _db_opens(tmp_path, kind)
    assert type(caught.value) is error and re.search(words, str(caught.value)), caught.value


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("random-bytes", r"was not an SQLite file; moved it to tuning\.sqlite\.corrupt-\d{8}T\d{6}Z"),
        ("truncated-sqlite", r"moved it to tuning\.sqlite\.corrupt-"),
        ("foreign-schema", r"was another program's database .*tables: users.*; moved it to"),
    ],
    ids=["random-bytes", "truncated-sqlite", "foreign-schema"],
)
def test_damaged_databases_are_moved_aside_reported_once_and_replaced(tmp_path, kind, words):
    path = _db_file(tmp_path, kind)
    before = path.read_bytes()
    lines: list[str] = []
    with TuningDB(path, report=lines.append) as db:
        assert db.count() == 0  # a fresh database, nothing trusted from the damaged one
    assert len(lines) == 1 and re.search(words, lines[0]), lines
    (kept,) = tmp_path.glob("tuning.sqlite.corrupt-*")
    assert kept.read_bytes() == before  # moved aside byte for byte, never deleted


def test_a_named_database_in_a_missing_folder_is_refused_not_created(tmp_path):
    with pytest.raises(TuningDBError, match=r"its folder .*/missing does not exist; create it"):
        TuningDB(tmp_path / "missing" / "tuning.sqlite")
    assert not (tmp_path / "missing").exists()


def _export(tmp: Path, text: str) -> Path:
    path = tmp / "export.json"
    path.write_text(text)
    return path


def _one_record(**change: Any) -> str:
    from tunekit.db.exchange import dumps

    data = json.loads(dumps([ranked(top=1)[0][1]]))  # a real record: its name matches its fields
    data["records"][0].update(change)
    return json.dumps(data)


IMPORTS = [
    ("not-json", "{nope", r"export\.json: not JSON"),
    ("empty", "", r"export\.json: not JSON"),
    ("other-format", json.dumps({"format": "x", "version": 1, "records": []}),
     r"not a tunekit tuning-database export \(no \"format\": 'tunekit-tuning-db'\)"),
    ("newer-version", json.dumps({"format": EXPORT_FORMAT, "version": 999, "records": []}), r"export version "
     r"999; this tunekit reads version 1"),
    ("unknown-family", _one_record(family="cuda-magic"), r"record 0, field 'family': got 'cuda-magic'"),
    ("unknown-tier", _one_record(tier="trusted-by-me"), r"record 0, field 'tier'"),
    ("negative-batch", _one_record(batch=-3), r"record 0, field 'batch'"),
    ("path-as-config-name", _one_record(config_name="../../etc/passwd"), r"record 0, field 'config_name'"),
]  # fmt: skip


def _tampered_consistently() -> str:
    """A record whose tunable is outside the model's domain, its name rewritten to match."""
    from tunekit.db.exchange import dumps

    data = json.loads(dumps([ranked(top=1)[0][1]]))
    record = data["records"][0]
    old = "-".join(f"{PARAM_TAGS.get(k, k)}{v}" for k, v in record["params"])
    record["params"][0][1] = 999983  # in no family's domain
    new = "-".join(f"{PARAM_TAGS.get(k, k)}{v}" for k, v in record["params"])
    record["config_name"] = record["config_name"].replace(old, new)
    return json.dumps(data)


IMPORTS.append(
    ("tunable-outside-the-model", _tampered_consistently(), r"record 0, field 'params': not a [a-z-]+ "
     r"configuration of this problem: config \w+: got 999983, expected one of")
)  # fmt: skip


@pytest.mark.parametrize(("text", "words"), [i[1:] for i in IMPORTS], ids=[i[0] for i in IMPORTS])
def test_hostile_exports_are_refused_whole(tmp_path, text, words):
    from tunekit.db.exchange import read_export

    with pytest.raises(BaseException) as caught:
        read_export(_export(tmp_path, text))
    assert type(caught.value) is ExportFormatError, caught.value
    assert re.search(words, str(caught.value)), caught.value


def test_db_import_of_a_hostile_file_is_one_error_line_and_changes_nothing(tmp_path):
    db = tmp_path / "tuning.sqlite"
    with TuningDB(db) as opened:
        opened.record_run(synthetic(2, "keep"), "test")
    bad = _export(tmp_path, _one_record(family="cuda-magic"))
    result = CliRunner().invoke(cli_main, ["db", "import", str(bad), "--db", str(db)])
    assert (
        result.exit_code == 2 and result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1
    )
    with TuningDB(db) as opened:
        assert opened.count() == 2  # all or nothing
