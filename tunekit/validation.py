"""``tunekit validate``: numerical checks of the layers and compiler checks of the resource model.

Three kinds of check, each a list of small frozen records the CLI prints as a table:

* reference (:func:`validate_reference`): the reference layers against ``torch.nn.LSTM``/``GRU`` in
  float64 (outputs, final states, every gradient), and every cell's derived pointwise backward
  against autograd through its pointwise forward;
* triton-fused in Triton's interpreter (:func:`validate_interpreter`): the fused kernels against the
  float64 reference on a small shape, forward and every gradient (CPU only; TRITON_INTERPRET=1 must
  be set before triton is imported);
* triton-fused compiled ahead of time (:func:`validate_compile`): each kernel compiled for sm_XX
  without a GPU; registers, spills and shared memory from the compiler next to the model's prediction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from tunekit.constraints.triton_resources import triton_fused_registers_per_thread, triton_fused_shared_bytes

CELL_NAMES = ("lstm", "gru", "slstm", "elman")
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_DIR = {"forward": "fwd", "backward": "bwd"}

# Architecture -> profile whose limits judge a compile when --gpu is not given.
DEFAULT_PROFILE = {80: "a100", 86: "a10", 89: "l4", 90: "h100"}
# The shared-memory prediction must be an upper bound within this fraction of metadata.shared.
SHARED_TOLERANCE = 0.05


@dataclass(frozen=True)
class Check:
    """One numerical comparison: passed when max_error <= tolerance."""

    name: str
    passed: bool
    max_error: float
    tolerance: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cells_from(option: str) -> list[str]:
    """``"all"`` → every cell; otherwise one known cell name (ValueError naming the known ones)."""
    if option == "all":
        return list(CELL_NAMES)
    if option not in CELL_NAMES:
        raise ValueError(f"cell: expected 'all' or one of {CELL_NAMES}, received {option!r}")
    return [option]


def compare(name: str, actual: torch.Tensor, expected: torch.Tensor, rtol: float, atol: float) -> Check:
    """Check with error relative to the reference's magnitude, with an absolute floor (NaN fails)."""
    if actual.shape != expected.shape:
        raise ValueError(
            f"{name}: shape {tuple(actual.shape)} differs from reference {tuple(expected.shape)}"
        )
    actual, expected = actual.detach(), expected.detach()
    error = float((actual.double() - expected.double()).abs().max()) if actual.numel() else 0.0
    tolerance = atol + rtol * float(expected.double().abs().max()) if expected.numel() else atol
    return Check(name, error <= tolerance, error, tolerance)


# ---- reference layers ------------------------------------------------------------------------------

# float64 agreement of two exact implementations: rounding only.
REFERENCE_TOL = (1e-10, 1e-12)


def _torch_layer_checks(kind: str, batch: int, steps: int, hidden: int) -> list[Check]:
    """tunekit's reference rnn vs torch.nn.LSTM/GRU (N = 1), float64, forward and every gradient."""
    from tunekit.reference import rnn

    torch.manual_seed(0)
    layer = (torch.nn.LSTM if kind == "lstm" else torch.nn.GRU)(3, hidden, batch_first=True).double()
    gates = 4 if kind == "lstm" else 3
    x = torch.randn(batch, steps, 3, dtype=torch.float64)
    h0 = [torch.randn(1, batch, hidden, dtype=torch.float64, requires_grad=True) for _ in range(gates // 2)]
    out, finals = layer(x, tuple(h0) if kind == "lstm" else h0[0])
    finals = finals if kind == "lstm" else (finals,)

    w_ih, w_hh = layer.weight_ih_l0, layer.weight_hh_l0
    b_ih, b_hh = layer.bias_ih_l0.view(gates, hidden), layer.bias_hh_l0.view(gates, hidden)
    wx = (x @ w_ih.T).view(batch, steps, gates, 1, hidden)  # Wx slots follow torch's gate order
    if kind == "lstm":  # (i, f, g=z, o); b = b_ih + b_hh
        r, b = w_hh.view(4, 1, hidden, hidden), (b_ih + b_hh).view(4, 1, hidden)
    else:  # R (n_rec, r, z) from torch (r, z, n); b (n_rec, r, z, n_in)
        r = w_hh.view(3, 1, hidden, hidden)[[2, 0, 1]]
        b = torch.stack([b_hh[2], b_ih[0] + b_hh[0], b_ih[1] + b_hh[1], b_ih[2]]).view(4, 1, hidden)
    s0 = torch.stack([h.view(batch, 1, 1, hidden) for h in h0])
    states, last = rnn(wx, r, b, s0, cell=kind)

    checks = [compare(f"{kind} vs torch.nn: output", states[0, :, :, 0], out, *REFERENCE_TOL)]
    checks += [
        compare(f"{kind} vs torch.nn: final state {k}", last[k, :, 0, 0], f[0], *REFERENCE_TOL)
        for k, f in enumerate(finals)
    ]
    weights = [torch.randn_like(out)] + [torch.randn_like(f) for f in finals]
    theirs = sum((w * v).sum() for w, v in zip(weights, (out, *finals), strict=True))
    ours = (weights[0] * states[0, :, :, 0]).sum()
    ours = ours + sum((w[0] * last[k, :, 0, 0]).sum() for k, w in enumerate(weights[1:]))
    inputs = [w_ih, w_hh, layer.bias_ih_l0, layer.bias_hh_l0, *h0]
    names = ["W_ih", "W_hh", "b_ih", "b_hh"] + [f"initial state {k}" for k in range(len(h0))]
    expected = torch.autograd.grad(theirs, inputs)
    actual = torch.autograd.grad(ours, inputs)
    checks += [
        compare(f"{kind} vs torch.nn: d {n}", a, e, *REFERENCE_TOL)
        for n, a, e in zip(names, actual, expected, strict=True)
    ]
    return checks


def _derived_backward_check(cell_name: str, size: int = 257) -> Check:
    """The cell's derived pointwise backward vs autograd through its pointwise forward (float64)."""
    from tunekit.cells import get_cell
    from tunekit.cells.derive import backward_outputs, forward_inputs
    from tunekit.reference import backward_step, forward_step

    cell = get_cell(cell_name)
    gen = torch.Generator().manual_seed(1)
    inputs = {n: torch.randn(size, generator=gen, dtype=torch.float64) for n in forward_inputs(cell)}
    if "s_n" in inputs and cell_name == "slstm":  # a reachable sLSTM state: normalizer n >= 1
        inputs["s_n"] = 1 + inputs["s_n"].abs()
    seeds = {f"ds_{st}_new": torch.randn(size, generator=gen, dtype=torch.float64) for st in cell.grad_states}
    derived = dict(zip(backward_outputs(cell), backward_step(cell)(**inputs, **seeds), strict=True))
    leaves = {n: v.clone().requires_grad_() for n, v in inputs.items()}
    new = dict(zip(cell.states, forward_step(cell)(**leaves), strict=True))
    loss = sum((seeds[f"ds_{st}_new"] * new[st]).sum() for st in cell.grad_states)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    auto = {f"d{n}": g for n, g in zip(leaves, grads, strict=True)}
    error = 0.0
    for name, value in derived.items():
        expected = auto[name] if auto[name] is not None else torch.zeros(size, dtype=torch.float64)
        actual = torch.broadcast_to(torch.as_tensor(value, dtype=torch.float64), expected.shape)
        error = max(error, float((actual - expected).abs().max()))
    return Check(f"{cell_name}: derived backward vs autograd", error <= 1e-10, error, 1e-10)


def validate_reference(cells: Sequence[str]) -> list[Check]:
    """LSTM/GRU reference vs torch.nn (float64) and every cell's derived backward vs autograd."""
    checks: list[Check] = []
    for cell in cells:
        if cell in ("lstm", "gru"):
            checks += _torch_layer_checks(cell, batch=3, steps=7, hidden=5)
        checks.append(_derived_backward_check(cell))
    return checks


# ---- triton-fused in the interpreter ---------------------------------------------------------------

# dtype -> (rtol relative to max|reference|, absolute floor), as tests/test_triton_fused.py
INTERPRETER_TOL = {"float32": (2e-5, 1e-6), "float16": (5e-3, 1e-4), "bfloat16": (3e-2, 1e-3)}


def validate_interpreter(
    cells: Sequence[str], dtype: str = "float32", batch: int = 3, steps: int = 5, head_dim: int = 24
) -> list[Check]:
    """triton-fused (interpreter) vs the float64 reference: states, final states, every gradient."""
    import triton

    from tunekit.cells import get_cell
    from tunekit.kernels.triton_fused import DTYPES, fused_rnn
    from tunekit.reference import rnn

    if not triton.knobs.runtime.interpret:
        raise RuntimeError("triton-fused validation on CPU needs TRITON_INTERPRET=1 set before triton loads")
    rtol, atol = INTERPRETER_TOL[dtype]
    checks: list[Check] = []
    for name in cells:
        cell = get_cell(name)
        gen = torch.Generator().manual_seed(0)
        g_w, g_r, g_t, s = (len(x) for x in (cell.w_gates, cell.r_gates, cell.b_gates, cell.states))
        wx = torch.randn(batch, steps, g_w, 1, head_dim, generator=gen)
        r = torch.randn(g_r, 1, head_dim, head_dim, generator=gen) / head_dim**0.5
        b = 0.1 * torch.randn(g_t, 1, head_dim, generator=gen)
        s0 = 0.5 * torch.randn(s, batch, 1, 1, head_dim, generator=gen)
        if name == "slstm":  # a reachable sLSTM state: normalizer n >= 1
            s0[cell.states.index("n")] = 1 + s0[cell.states.index("n")].abs()
        low = [x.to(DTYPES[dtype]) for x in (wx, r, b, s0)]
        mine = [x.clone().requires_grad_() for x in low]
        ref = [x.double().requires_grad_() for x in low]
        w_all = torch.randn(s, batch, steps, 1, head_dim, generator=gen)
        w_last = torch.randn(s, batch, 1, 1, head_dim, generator=gen)
        for st in cell.no_grad_states:  # no gradient flows through these: keep them out of the loss
            w_all[cell.states.index(st)] = 0
            w_last[cell.states.index(st)] = 0
        config = {"block_b": 16, "num_warps": 4, "num_stages": 1}
        got = fused_rnn(*mine, cell=name, config=config)
        want = rnn(*ref, cell=name)
        for label, a, e in zip(("all states", "final states"), got, want, strict=True):
            checks.append(compare(f"{name} {_SHORT[dtype]}: {label}", a.detach(), e.detach(), rtol, atol))
        loss = sum((w * x.float()).sum() for w, x in zip((w_all, w_last), got, strict=True))
        loss_ref = sum((w.double() * x).sum() for w, x in zip((w_all, w_last), want, strict=True))
        loss.backward()
        loss_ref.backward()
        for label, a, e in zip(("d Wx", "d R", "d b", "d initial states"), mine, ref, strict=True):
            checks.append(compare(f"{name} {_SHORT[dtype]}: {label}", a.grad, e.grad, rtol, atol))
    return checks


# ---- triton-fused compiled ahead of time -----------------------------------------------------------


@dataclass(frozen=True)
class TritonCase:
    """One triton-fused kernel to compile: a problem and the tunables of one configuration."""

    cell: str
    direction: str  # "forward" | "backward"
    dtype: str  # "float32" | "float16" | "bfloat16"
    head_dim: int
    block_b: int = 16
    num_warps: int = 4
    num_stages: int = 1
    batch: int = 16

    @property
    def d_pad(self) -> int:
        """Head dim rounded up to the power-of-two tile, at least 16 (tl.dot's smallest on a GPU)."""
        return max(16, 1 << (self.head_dim - 1).bit_length())

    def name(self, arch: int) -> str:
        """Canonical configuration name, e.g. ``lstm-fwd-tritonfused-D64-B16-bf16-sm80-bb16-w4-s1``."""
        return (
            f"{self.cell}-{_DIR[self.direction]}-tritonfused-D{self.head_dim}-B{self.batch}-"
            f"{_SHORT[self.dtype]}-sm{arch}-bb{self.block_b}-w{self.num_warps}-s{self.num_stages}"
        )


@dataclass(frozen=True)
class Prediction:
    """What the resource model says about one case on one GPU, and the limits it is judged by."""

    registers: int
    shared_bytes: int
    register_limit: int  # per thread: min(255, what the 64K-register file gives 32 * num_warps threads)
    shared_limit: int  # opt-in shared memory per block

    @property
    def violations(self) -> tuple[str, ...]:
        """Names of the violated constraints (as in tunekit.constraints.occupancy)."""
        out = []
        if self.registers > self.register_limit:
            out.append("registers_per_thread")
        if self.shared_bytes > self.shared_limit:
            out.append("shared_memory_per_block")
        return tuple(out)

    @property
    def accepted(self) -> bool:
        """The model's verdict: fits the registers without spills and the opt-in shared memory."""
        return not self.violations


def register_limit(num_warps: int, gpu: Any) -> int:
    """Registers per thread ptxas may use: <= 255, and 32 * num_warps threads share the block's 64K
    registers, allocated per warp in units of 256 (8 per thread): 128 at 16 warps, 64 at 32."""
    per_warp = gpu.registers_per_block // num_warps
    per_thread = per_warp // gpu.register_allocation_unit * gpu.register_allocation_unit // gpu.warp_size
    return min(gpu.max_registers_per_thread, per_thread)


def predict(case: TritonCase, gpu: Any) -> Prediction:
    """Evaluate the triton_resources formulas for ``case`` against the limits of ``gpu`` (a GPUProfile)."""
    from tunekit.cells import get_cell

    cell = get_cell(case.cell)
    args = (len(cell.r_gates), len(cell.states), case.d_pad, case.block_b, case.num_warps, case.num_stages)
    size = DTYPE_BYTES[case.dtype]
    regs = int(triton_fused_registers_per_thread(*args, size, case.direction))
    shared = int(triton_fused_shared_bytes(*args, size, case.direction, arch=gpu.arch))
    return Prediction(regs, shared, register_limit(case.num_warps, gpu), gpu.shared_memory_per_block_optin)


@dataclass(frozen=True)
class CompileCheck:
    """The model next to the compiler for one kernel at one architecture."""

    name: str
    arch: int
    predicted_registers: int
    registers: int
    predicted_shared: int
    shared: int
    shared_limit: int
    spill_bytes: int
    accepted: bool  # by the model
    verdict: str
    passed: bool
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(prediction: Prediction, registers: int, spill_bytes: int, shared: int) -> tuple[str, bool]:
    """(verdict, passed). A failure is the model accepting what the compiler cannot run spill-free,
    or a shared-memory prediction below the compiler's or more than SHARED_TOLERANCE above it."""
    runs = spill_bytes == 0 and registers <= prediction.register_limit and shared <= prediction.shared_limit
    if prediction.accepted and not runs:
        why = "spills" if spill_bytes or registers > prediction.register_limit else "shared over the limit"
        return f"MODEL WRONG: accepted, but {why}", False
    if not shared <= prediction.shared_bytes <= (1 + SHARED_TOLERANCE) * shared:
        return f"MODEL WRONG: shared memory off by more than {SHARED_TOLERANCE:.0%}", False
    if prediction.accepted:
        return "ok", True
    return ("rejected (compiler agrees)" if not runs else "rejected (conservative)"), True


def compile_kernel(case: TritonCase, arch: int) -> Any:
    """Render the case's kernel and compile it for ``sm_<arch>``: a tunekit.aot.CompileReport."""
    return compile_kernels([(case, arch)])[0]


def _std_lib_interpreted() -> bool:
    """True when triton was imported under TRITON_INTERPRET=1: its own @jit library functions
    (tl.sigmoid, ...) are then InterpretedFunctions that the compiler cannot lower from a helper."""
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.standard.sigmoid, InterpretedFunction)


def compile_kernels(jobs: Sequence[tuple[TritonCase, int]]) -> list[Any]:
    """Compile (case, arch) jobs; in a process whose triton interprets, in one clean child process."""
    from tunekit.aot import CompileReport, compile_triton_kernel
    from tunekit.kernels.triton_fused import kernel_signature, load_kernels

    if _std_lib_interpreted():
        return [CompileReport(**fields) for fields in _compile_in_child(jobs)]
    reports = []
    for case, arch in jobs:
        config = {"name": case.name(arch), "profile": f"sm{arch}"}
        forward, backward = load_kernels(case.cell, config, case.dtype, interpret=False)
        signature, constexprs = kernel_signature(
            case.direction,
            case.cell,
            case.dtype,
            head_dim=case.head_dim,
            block_b=case.block_b,
            d_pad=case.d_pad,
        )
        kernel = forward if case.direction == "forward" else backward
        reports.append(
            compile_triton_kernel(kernel, signature, constexprs, arch, case.num_warps, case.num_stages)
        )
    return reports


_CHILD = """
import json, sys
from dataclasses import asdict
from tunekit.validation import TritonCase, compile_kernels
jobs = [(TritonCase(**case), arch) for case, arch in json.load(sys.stdin)]
json.dump([asdict(report) for report in compile_kernels(jobs)], sys.stdout)
"""


def _compile_in_child(jobs: Sequence[tuple[TritonCase, int]]) -> list[dict[str, Any]]:
    import json
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    payload = json.dumps([(asdict(case), arch) for case, arch in jobs])
    done = subprocess.run(
        [sys.executable, "-c", _CHILD], input=payload, capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"compiling in a child process failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def compile_case(case: TritonCase, arch: int, gpu: Any) -> CompileCheck:
    """Compile the case for ``sm_<arch>`` and judge the model (limits of ``gpu``) against it."""
    return _check(case, arch, gpu, compile_kernel(case, arch))


def _check(case: TritonCase, arch: int, gpu: Any, report: Any) -> CompileCheck:
    prediction = predict(case, gpu)
    spills = report.spill_stores_bytes + report.spill_loads_bytes
    verdict, passed = judge(prediction, report.registers, spills, report.shared_bytes)
    return CompileCheck(
        name=case.name(arch),
        arch=arch,
        predicted_registers=prediction.registers,
        registers=report.registers,
        predicted_shared=prediction.shared_bytes,
        shared=report.shared_bytes,
        shared_limit=prediction.shared_limit,
        spill_bytes=spills,
        accepted=prediction.accepted,
        verdict=verdict,
        passed=passed,
        seconds=report.seconds,
    )


def default_cases(cells: Iterable[str], head_dim: int = 64, dtype: str = "bfloat16") -> list[TritonCase]:
    """Each cell's forward and backward kernel at the runtime's default configuration (bb16, 4 warps)."""
    return [TritonCase(cell, d, dtype, head_dim) for cell in cells for d in ("forward", "backward")]


def validate_compile(
    archs: Sequence[int], gpus: dict[int, Any], cases: Sequence[TritonCase]
) -> list[CompileCheck]:
    """Compile every case for every architecture; ``gpus`` maps arch -> the GPUProfile that judges it."""
    jobs = [(case, arch) for arch in archs for case in cases]
    reports = compile_kernels(jobs)
    return [
        _check(case, arch, gpus[arch], report) for (case, arch), report in zip(jobs, reports, strict=True)
    ]
