"""Helpers of the ``tunekit generate`` tests: seeded inputs, the float64 reference, and a child
Python process in which tunekit cannot be imported.

The child gets the package folder and a ``torch.save``d case (inputs, loss weights); it puts a
finder at the front of ``sys.meta_path`` that refuses every ``tunekit`` import (so an editable
install or a stray ``sys.path`` entry cannot help), imports the package by its folder name, runs
``rnn`` (and the backward when the case asks) and ``Layer``, and saves what came out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from numerics import assert_within

from tunekit.cells import get_cell
from tunekit.reference import rnn as reference_rnn

# dtype -> (rtol relative to max|reference|, absolute floor): the Triton interpreter's own figures
# (tests/test_triton_fused.py uses the same bounds for the same kernels)
TOL = {
    torch.float32: (2e-5, 1e-6),
    torch.float16: (5e-3, 1e-4),
    torch.bfloat16: (3e-2, 1e-3),
    "tf32": (5e-3, 1e-4),  # fp32 whose products run on tf32 tensor cores (the tuner's fp32 configurations)
}

CHILD = r"""
import sys

class NoTunekit:
    "Refuses every import of tunekit: the package must not need it."
    def find_spec(self, name, path=None, target=None):
        if name == "tunekit" or name.startswith("tunekit."):
            raise ImportError(f"tunekit is blocked in this process (asked for {name})")
        return None

assert not any(m == "tunekit" or m.startswith("tunekit.") for m in sys.modules), "tunekit already imported"
sys.meta_path.insert(0, NoTunekit())
try:
    import tunekit  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker did not block tunekit")

import importlib
import os
import torch

folder, case_path, out_path = sys.argv[1:4]
parent, name = os.path.split(folder)
sys.path.insert(0, parent)
package = importlib.import_module(name)
case = torch.load(case_path)
inputs = [None if x is None else x.clone().requires_grad_(case["backward"]) for x in case["inputs"]]
result = {"name": package.NAME, "tier": package.TIER}
states, last = package.rnn(*inputs)
result["states"], result["last"] = states.detach(), last.detach()
if case["backward"]:
    loss = (states.float() * case["w_all"]).sum() + (last.float() * case["w_last"]).sum()
    loss.backward()
    result["grads"] = [None if x is None else x.grad for x in inputs]
else:
    try:
        package.rnn(*[None if x is None else x.clone().requires_grad_() for x in case["inputs"]])
    except RuntimeError as error:
        result["refused"] = str(error)
layer = package.Layer(input_size=7)
x = torch.randn(2, 3, 7, dtype=layer.R.dtype)
with torch.no_grad():
    layer_states, _ = layer(x)
result["layer_shape"] = tuple(layer_states.shape)
result["modules"] = sorted(m for m in sys.modules if m == "tunekit" or m.startswith("tunekit."))
torch.save(result, out_path)
"""


def make_case(cell_name: str, B: int, T: int, N: int, D: int, dtype: torch.dtype, seed: int = 0) -> dict:
    """Seeded inputs in ``dtype`` (initial states included) and loss weights on every state."""
    cell = get_cell(cell_name)
    gen = torch.Generator().manual_seed(seed)
    wx = torch.randn(B, T, len(cell.w_gates), N, D, generator=gen)
    r = torch.randn(len(cell.r_gates), N, D, D, generator=gen) / D**0.5
    b = 0.1 * torch.randn(len(cell.b_gates), N, D, generator=gen)
    s0 = 0.5 * torch.randn(len(cell.states), B, 1, N, D, generator=gen)
    if "n" in cell.states:  # a reachable sLSTM state: normalizer n >= 1 after any step
        s0[cell.states.index("n")] = 1.0 + s0[cell.states.index("n")].abs()
    w_all = torch.randn(len(cell.states), B, T, N, D, generator=gen)
    w_last = torch.randn(len(cell.states), B, 1, N, D, generator=gen)
    for st in cell.no_grad_states:
        w_all[cell.states.index(st)] = 0.0
        w_last[cell.states.index(st)] = 0.0
    return {
        "cell": cell_name,
        "inputs": [x.to(dtype) for x in (wx, r, b, s0)],
        "w_all": w_all,
        "w_last": w_last,
    }


def reference(case: dict, backward: bool) -> dict:
    """The float64 reference on the case's (rounded) inputs: states, final states, gradients."""
    inputs = [x.double().requires_grad_(backward) for x in case["inputs"]]
    states, last = reference_rnn(*inputs, cell=case["cell"])
    result = {"states": states.detach(), "last": last.detach()}
    if backward:
        ((states * case["w_all"].double()).sum() + (last * case["w_last"].double()).sum()).backward()
        result["grads"] = [x.grad for x in inputs]
    return result


def assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | str, what: str) -> None:
    assert_within(actual, expected, TOL[dtype], what, dtype)


def run_without_tunekit(folder: Path, case: dict, backward: bool, work: Path) -> dict:
    """Run the package in ``folder`` on ``case`` in a child process where tunekit cannot be imported."""
    case_path, out_path = work / "case.pt", work / "result.pt"
    torch.save(case | {"backward": backward}, case_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env |= {"TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder.resolve()), str(case_path), str(out_path)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"the package failed without tunekit:\n{done.stdout}\n{done.stderr}"
    return torch.load(out_path)
