"""``tunekit generate`` for a CUDA family: sources, header, NVRTC cubins, the cuda.core launcher.

The family is tests/package_cuda_family.py (a real recurrence kernel, forward only) standing in for
cuda-alternating, whose runtime is written elsewhere. The package's own ``.cu`` runs in tunekit's
CPU emulator (through the package's ``_cuda.use_launcher``) against the float64 reference; the
package imports in a process where tunekit cannot be imported; NVRTC builds its cubin for the
profile's architecture. Sizes are odd: D=24, 2 heads, batch 3, T=5.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from generate_support import assert_close, make_case, reference

import tunekit
import tunekit.kernels
from tunekit.generate import choose, generatable_families, generate
from tunekit.problem import Problem

pytest.importorskip("cuda.core", reason="NVRTC cubins need the tunekit[cuda] extra (in the test extra)")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
CASES = [("lstm", "float32"), ("slstm", "bfloat16")]
ELF = b"\x7fELF"

CHILD = r"""
import importlib, os, sys

class NoTunekit:
    def find_spec(self, name, path=None, target=None):
        if name == "tunekit" or name.startswith("tunekit."):
            raise ImportError(f"tunekit is blocked in this process (asked for {name})")
        return None

sys.meta_path.insert(0, NoTunekit())
import torch
parent, name = os.path.split(sys.argv[1])
sys.path.insert(0, parent)
package = importlib.import_module(name)
for program in package._cuda.PROGRAMS.values():
    assert os.path.isfile(os.path.join(sys.argv[1], program["source"]))
    for cubin in program["cubins"].values():
        assert open(os.path.join(sys.argv[1], cubin), "rb").read(4) == b"\x7fELF"
try:
    with torch.no_grad():
        package.rnn(torch.zeros(3, 2, 4, 2, 24), torch.zeros(4, 2, 24, 24), torch.zeros(4, 2, 24))
except RuntimeError as error:
    print("refused:", error)
print("modules:", sorted(m for m in sys.modules if m.startswith("tunekit")))
"""


@pytest.fixture(autouse=True)
def tuning_db(tmp_path, monkeypatch):
    """Lookups go to an empty database of the test's own, never the user's cache."""
    monkeypatch.setenv("TUNEKIT_DB", str(tmp_path / "tuning.sqlite"))


@pytest.fixture
def family(monkeypatch):
    """cuda-alternating's kernels come from tests/package_cuda_family.py."""
    monkeypatch.setitem(tunekit.kernels.CUDA_FAMILIES, "cuda-alternating", "package_cuda_family")
    assert "cuda-alternating" in generatable_families()


def _problem(cell: str, dtype: str) -> Problem:
    return Problem(cell, batch=3, heads=2, head_dim=24, dtype=dtype, direction="forward")


def _emulate(package, profile: str):
    """Route the package's launches into tunekit's CPU emulator (the package's own source)."""
    from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims
    from tunekit.cuda.emulator import EmulatorRunner

    runner = EmulatorRunner(profile, timeout_s=300)

    def launcher(name, source, entry, params, cooperative, dims, args):
        program = CudaProgram(name, source, (KernelEntry(entry, tuple(params), cooperative),))
        runner.launch(program, entry, LaunchDims(*dims), args)

    package._cuda.use_launcher(launcher)
    return runner


@pytest.mark.parametrize("cell, dtype", CASES, ids=[f"{c}-{d}" for c, d in CASES])
def test_the_packaged_cu_runs_in_the_emulator_and_matches_the_reference(tmp_path, family, cell, dtype):
    out = tmp_path / "cuda_kernels"
    generated = generate(_problem(cell, dtype), "h100", out, backend="cuda-alternating")
    name = generated.choice.config.name
    assert generated.choice.family == "cuda-alternating"
    assert {
        f"cuda/{name}-steploop.cu",
        f"cuda/{name}-steploop.sm_90.cubin",
        "cuda/tk_cuda.cuh",
        "_cuda.py",
    } <= set(generated.files)
    assert (out / "cuda" / f"{name}-steploop.sm_90.cubin").read_bytes()[:4] == ELF
    package = tunekit.load(out)
    runner = _emulate(package, "h100")
    case = make_case(cell, B=3, T=5, N=2, D=24, dtype=DTYPES[dtype], seed=5)
    with torch.no_grad():
        states, last = package.rnn(*case["inputs"])
    assert runner.last is not None and runner.last.entry == "step_loop"  # it really ran the emulator
    expected = reference(case, backward=False)
    assert_close(states, expected["states"], DTYPES[dtype], "all states")
    assert_close(last, expected["last"], DTYPES[dtype], "final states")
    readme = (out / "README.md").read_text()
    assert "cuda.core" in readme and "nvrtc" in readme and "sm_90" in readme


def test_cuda_packages_are_deterministic_and_import_without_tunekit(tmp_path, family):
    problem = _problem("lstm", "float32")
    generate(problem, "h100", tmp_path / "a", backend="cuda-alternating")
    generate(problem, "h100", tmp_path / "b", backend="cuda-alternating")
    tree = {p.relative_to(tmp_path / "a"): p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    assert tree == {
        p.relative_to(tmp_path / "b"): p.read_bytes() for p in (tmp_path / "b").rglob("*") if p.is_file()
    }
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "a")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "refused: this package's CUDA kernels got tensors on cpu" in done.stdout
    assert "modules: []" in done.stdout


def test_a_cuda_family_without_package_runtime_is_named(monkeypatch):
    monkeypatch.setitem(tunekit.kernels.CUDA_FAMILIES, "cuda-fused", "fake_cuda_family")
    with pytest.raises(
        ValueError, match="cuda-fused kernels exist but cannot be packaged yet.*package_runtime"
    ):
        choose(Problem("lstm", batch=16, heads=1, head_dim=64), "h100", backend="cuda-fused")
