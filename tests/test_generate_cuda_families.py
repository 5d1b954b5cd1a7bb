"""``tunekit generate --backend cuda-fused|cuda-alternating``: the real kernels as packages.

Each package is generated once per module into a temporary folder (the h100 profile, sm_90
cubins by NVRTC) at an odd shape: B=3, N=2, D=21 (every tile padded), T=5. Its own ``.cu``
sources run in tunekit's CPU emulator (the package's ``_cuda.use_launcher``) against the float64
reference: all states, final states and the gradients of Wx, R, b and the initial states, for
LSTM in float32 and GRU in bfloat16. The package's ``_host.py`` is the host code tunekit's own
runtime runs for the configuration (the same bytes), so both give bit-identical results. The
package imports in a process where tunekit cannot be imported; generating twice gives the same
bytes; shapes it was not generated for are refused before any launch.

Tolerances: :data:`tunekit.validation.EMULATOR_TOL` (the kernels' roundings; tf32 for float32).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from generate_support import make_case, reference
from numerics import assert_within

import tunekit
from tunekit.generate import generate
from tunekit.kernels import cuda_family
from tunekit.problem import Problem
from tunekit.validation import EMULATOR_TOL

pytest.importorskip("cuda.core", reason="NVRTC cubins need the tunekit[cuda] extra (in the test extra)")

FAMILIES = ("cuda-fused", "cuda-alternating")
CASES = (("lstm", "float32"), ("gru", "bfloat16"))
B, N, D, T = 3, 2, 21, 5
GPU = "h100"

CHILD = r"""
import importlib, os, sys

class NoTunekit:
    def find_spec(self, name, path=None, target=None):
        if name == "tunekit" or name.startswith("tunekit."):
            raise ImportError(f"tunekit is blocked in this process (asked for {name})")
        return None

sys.meta_path.insert(0, NoTunekit())
import torch
folder = sys.argv[1]
parent, name = os.path.split(folder)
sys.path.insert(0, parent)
package = importlib.import_module(name)
for program in package._cuda.PROGRAMS.values():
    assert os.path.isfile(os.path.join(folder, program["source"]))
    for cubin in program["cubins"].values():
        assert open(os.path.join(folder, cubin), "rb").read(4) == b"\x7fELF"
gates = len(package._config.W_GATES)
shape = (gates, package._config.HEADS, package._config.HEAD_DIM)
r = torch.zeros(len(package._config.R_GATES), shape[1], shape[2], shape[2])
b = torch.zeros(len(package._config.B_GATES), shape[1], shape[2])
for batch in (package.PROBLEM["batch"], package.PROBLEM["batch"] + 1):
    try:
        with torch.no_grad():
            package.rnn(torch.zeros(batch, 4, *shape), r, b)
    except (RuntimeError, ValueError) as error:
        print(f"batch {batch} refused:", error)
layer = package.Layer(input_size=7)
print("layer:", type(layer).__name__, tuple(layer.R.shape))
print("modules:", sorted(m for m in sys.modules if m.startswith("tunekit")))
"""


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """(family, cell, dtype) -> (the generated package's folder, its KernelConfig); generated once."""
    folder = tmp_path_factory.mktemp("cuda_packages")
    built = {}
    for family in FAMILIES:
        for cell, dtype in CASES:
            problem = Problem(cell, batch=B, heads=N, head_dim=D, dtype=dtype, direction="both")
            out = folder / f"{family}-{cell}-{dtype}"
            generated = generate(
                problem, GPU, out, backend=family, db=folder / "tuning.sqlite"
            )  # not the user's
            built[family, cell, dtype] = out, generated.choice.config
    return built


def emulate(package, profile: str = GPU):
    """Route the package's launches into tunekit's CPU emulator: the package's own .cu text, with
    every entry of its program, under the profile's limits."""
    from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims
    from tunekit.cuda.emulator import EmulatorRunner

    runner = EmulatorRunner(profile, timeout_s=300)

    def launcher(name, source, entry, params, cooperative, dims, args):
        declared = package._cuda.PROGRAMS[name]["entries"]
        entries = tuple(KernelEntry(e, tuple(p), c) for e, (p, c) in sorted(declared.items()))
        runner.launch(CudaProgram(name, source, entries), entry, LaunchDims(*dims), args)

    package._cuda.use_launcher(launcher)
    return runner


def run_case(rnn, case: dict) -> dict:
    """States, final states and every gradient of the case's loss through ``rnn``."""
    leaves = [x.clone().requires_grad_() for x in case["inputs"]]
    states, last = rnn(*leaves)
    ((states.float() * case["w_all"]).sum() + (last.float() * case["w_last"]).sum()).backward()
    return {"states": states.detach(), "last": last.detach(), "grads": [x.grad for x in leaves]}


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: str, what: str) -> None:
    assert_within(actual, expected, EMULATOR_TOL[dtype], what, dtype)


IDS = [f"{f}-{c}-{d}" for f in FAMILIES for c, d in CASES]


@pytest.mark.parametrize("family, cell, dtype", [(f, c, d) for f in FAMILIES for c, d in CASES], ids=IDS)
def test_the_packaged_cu_runs_in_the_emulator_and_matches_the_float64_reference(
    packages, family, cell, dtype
):
    out, _ = packages[family, cell, dtype]
    package = tunekit.load(out)
    assert family == package.FAMILY and package.PROBLEM["direction"] == "both"
    runner = emulate(package)
    case = make_case(cell, B=B, T=T, N=N, D=D, dtype=getattr(torch, dtype), seed=5)
    got = run_case(package.rnn, case)
    assert runner.stats, "nothing ran in the emulator"
    entries = {stat.entry for stat in runner.stats}
    assert entries == {e for p in package._cuda.PROGRAMS.values() for e in p["entries"]}, entries
    want = reference(case, backward=True)
    assert got["states"].dtype == getattr(torch, dtype)
    assert_close(got["states"], want["states"], dtype, "all states")
    assert_close(got["last"], want["last"], dtype, "final states")
    for name, g, w in zip(("Wx", "R", "b", "initial states"), got["grads"], want["grads"], strict=True):
        assert g.dtype == getattr(torch, dtype), name
        assert_close(g, w, dtype, f"gradient of {name}")


@pytest.mark.parametrize("family", FAMILIES)
def test_the_package_runs_the_host_code_tunekit_runs_and_gives_the_same_bits(packages, family, monkeypatch):
    from tunekit.hardware import load_profile

    out, config = packages[family, "gru", "bfloat16"]
    package = tunekit.load(out)
    module = cuda_family(family)
    assert (out / "_host.py").read_text(encoding="utf-8") == module.host_source(config)
    emulate(package)
    case = make_case("gru", B=B, T=T, N=N, D=D, dtype=torch.bfloat16, seed=2)
    theirs = run_case(package.rnn, case)
    monkeypatch.setenv("TUNEKIT_CUDA_EMULATOR", "1")
    if family == "cuda-fused":
        ours = run_case(
            lambda *x: module.fused_rnn(*x, cell="gru", config=config, gpu=load_profile(GPU)), case
        )
    else:
        ours = run_case(lambda *x: module.alternating_rnn(*x, cell="gru", config=config), case)
    for key in ("states", "last"):
        assert torch.equal(ours[key], theirs[key]), key
    for k, (a, b) in enumerate(zip(ours["grads"], theirs["grads"], strict=True)):
        assert torch.equal(a, b), f"gradient {k}"


@pytest.mark.parametrize("family", FAMILIES)
def test_a_double_backward_and_shapes_it_was_not_generated_for_are_refused(packages, family):
    package = tunekit.load(packages[family, "lstm", "float32"][0])
    emulate(package)
    case = make_case("lstm", B=B, T=2, N=N, D=D, dtype=torch.float32, seed=3)
    wx, r, b, s0 = (x.clone().requires_grad_() for x in case["inputs"])
    states, _ = package.rnn(wx, r, b, s0)
    (grad,) = torch.autograd.grad((states**2).sum(), wx, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|twice|differentiable once"):
        grad.sum().backward()
    other = make_case("lstm", B=B + 1, T=2, N=N, D=D, dtype=torch.float32)["inputs"]
    with pytest.raises(ValueError, match=rf"batch {B}: the kernels' launch shapes are fixed"):
        package.rnn(*other)
    with pytest.raises(ValueError, match=r"dtype torch.float32"):
        package.rnn(*(x.double() for x in case["inputs"]))
    with pytest.raises(ValueError, match=r"R: got shape \(4, 2, 21, 20\)"):
        package.rnn(wx, r[..., :-1], b, s0)


def test_a_forward_only_package_refuses_gradients_and_runs_without_them(tmp_path):
    problem = Problem("gru", batch=B, heads=N, head_dim=D, dtype="float32", direction="forward")
    generate(problem, GPU, tmp_path / "pkg", backend="cuda-fused", db=tmp_path / "tuning.sqlite")
    package = tunekit.load(tmp_path / "pkg")
    assert [p for p in package._cuda.PROGRAMS] == [f"{package.NAME}-forward"]
    emulate(package)
    case = make_case("gru", B=B, T=T, N=N, D=D, dtype=torch.float32, seed=4)
    with pytest.raises(RuntimeError, match="direction 'forward'"):
        package.rnn(*(x.clone().requires_grad_() for x in case["inputs"]))
    with torch.no_grad():
        states, last = package.rnn(*case["inputs"])
    want = reference(case, backward=False)
    assert_close(states, want["states"], "float32", "all states")
    assert_close(last, want["last"], "float32", "final states")


@pytest.mark.parametrize("family", FAMILIES)
def test_cuda_packages_are_deterministic_and_import_without_tunekit(packages, family, tmp_path):
    first = packages[family, "lstm", "float32"][0]
    problem = Problem("lstm", batch=B, heads=N, head_dim=D, dtype="float32", direction="both")
    again = generate(problem, GPU, tmp_path / "again", backend=family, db=tmp_path / "tuning.sqlite").path
    tree = {p.relative_to(first): p.read_bytes() for p in sorted(first.rglob("*")) if p.is_file()}
    tree = {k: v for k, v in tree.items() if "__pycache__" not in k.parts}
    assert tree == {p.relative_to(again): p.read_bytes() for p in sorted(again.rglob("*")) if p.is_file()}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(again)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert f"batch {B} refused: this package's CUDA kernels got tensors on cpu" in done.stdout
    assert f"batch {B + 1} refused: Wx: got shape ({B + 1}, 4," in done.stdout
    assert "layer: Layer (4, 2, 21, 21)" in done.stdout
    assert "modules: []" in done.stdout


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("family", FAMILIES)
def test_on_a_gpu_the_package_runs_its_shipped_cubin_against_the_float64_reference(family, tmp_path):
    from tunekit.hardware_detect import detect_profile

    profile = detect_profile(0)  # the package's cubin is for this GPU's arch: nothing is compiled
    problem = Problem("gru", batch=B, heads=N, head_dim=D, dtype="float32", direction="both")
    generated = generate(problem, profile, tmp_path / "pkg", backend=family, db=tmp_path / "tuning.sqlite")
    package = tunekit.load(generated.path)
    case = make_case("gru", B=B, T=T, N=N, D=D, dtype=torch.float32, seed=6)
    want = reference(case, backward=True)
    on_gpu = {**case, "inputs": [x.cuda() for x in case["inputs"]]}
    on_gpu |= {"w_all": case["w_all"].cuda(), "w_last": case["w_last"].cuda()}
    got = run_case(package.rnn, on_gpu)
    runner = package._cuda._runner(torch.device("cuda", 0))
    assert all(runner.arch in program["cubins"] for program in package._cuda.PROGRAMS.values())
    assert_close(got["states"].cpu(), want["states"], "float32", "all states")
    assert_close(got["last"].cpu(), want["last"], "float32", "final states")
    for name, g, w in zip(("Wx", "R", "b", "initial states"), got["grads"], want["grads"], strict=True):
        assert_close(g.cpu(), w, "float32", f"gradient of {name}")
