"""cuda-fused runtime: one persistent cooperative kernel per direction, launched through tunekit.cuda.

Kernel file anatomy: the kernels are rendered from ``templates/cuda/fused_*.cu.j2``
(:mod:`tunekit.kernels.cuda_fused_render`) with the geometry of
:mod:`tunekit.kernels.cuda_fused_plan`; this module holds the :class:`tunekit.kernels.CudaFamily`
functions the validator and the compile benchmark read (``programs``, ``launch_dims``,
``predicted``), the host launchers, the ``autograd.Function`` and the public :func:`fused_rnn`.
On CUDA tensors the kernels run through NVRTC (cooperative launch); on CPU tensors with
``TUNEKIT_CUDA_EMULATOR=1`` the same source runs in tunekit's CPU emulator.

Tensor dtypes: ``Wx``, ``R``, ``b`` and the initial states share one input dtype (float32 as tf32
on tensor cores, float16, bfloat16); the kernels accumulate and carry states in float32 and write
``all_states`` and ``last`` in the input dtype.
"""

from __future__ import annotations

from typing import Any

import torch

from tunekit.cuda import LaunchDims
from tunekit.kernels.cuda_fused_plan import Plan, plan
from tunekit.kernels.cuda_fused_render import (
    DB_REGISTERS,
    DB_THREADS,
    DR_REGISTERS,
    DR_SHARED_BYTES,
    DR_THREADS,
    DR_TILE,
    backward_context,
    entry_names,
    program,
)
from tunekit.problem import KernelConfig, Problem

__all__ = ["FAMILY", "fused_rnn", "launch_dims", "plan_of", "predicted", "programs", "tuned_config"]

FAMILY = "cuda-fused"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

_PLANS: dict[tuple[KernelConfig, str], Plan] = {}


def plan_of(config: KernelConfig, gpu: Any = None) -> Plan:
    """The (cached) plan of ``config``; ``gpu``: its GPUProfile (default: the packaged profile it names)."""
    from tunekit.hardware import load_profile

    if not isinstance(config, KernelConfig):
        raise ValueError(f"config: got {type(config).__name__}, expected a cuda-fused KernelConfig")
    profile = load_profile(config.gpu) if gpu is None else gpu
    key = (config, profile.name)
    found = _PLANS.get(key)
    if found is None or found.space.gpu != profile:
        found = _PLANS[key] = plan(config, profile)
    return found


def _role(pl: Plan, entry: str) -> str:
    roles = {name: role for role, name in entry_names(pl.config.problem.cell).items()}
    if entry not in roles:
        raise ValueError(f"entry: got {entry!r}, expected one of {sorted(roles)}")
    role = roles[entry]
    needs = "forward" if role == "forward" else "backward"
    if needs not in pl.directions:
        raise ValueError(f"entry {entry!r}: configuration {pl.config.name} serves {list(pl.directions)} only")
    return role


def programs(config: KernelConfig, gpu: Any = None) -> tuple[Any, ...]:
    """The CudaPrograms of ``config``: the forward, and the backward where the configuration serves it."""
    pl = plan_of(config, gpu)
    return tuple(program(pl, d) for d in pl.directions)


def launch_dims(config: KernelConfig, entry: str, gpu: Any = None) -> LaunchDims:
    """Grid, block and dynamic shared memory of ``entry`` (exactly what the launcher uses)."""
    pl = plan_of(config, gpu)
    role = _role(pl, entry)
    if role in ("forward", "backward"):
        return LaunchDims((pl.blocks, 1, 1), (pl.threads, 1, 1), pl.directions[role].shared_bytes)
    p = pl.config.problem
    if role == "dr":
        grid = (-(-p.head_dim // DR_TILE), -(-(p.g_r * p.head_dim) // DR_TILE), p.heads)
        return LaunchDims(grid, (DR_THREADS, 1, 1), 0)
    outputs = len(p_cell(p).b_gates) * p.heads * p.head_dim
    return LaunchDims((-(-outputs // DB_THREADS), 1, 1), (DB_THREADS, 1, 1), 0)


def p_cell(p: Problem) -> Any:
    from tunekit.cells import get_cell

    return get_cell(p.cell)


def predicted(config: KernelConfig, entry: str, gpu: Any = None) -> dict[str, int]:
    """The model's registers per thread (a bound ptxas is held to) and shared memory (exact) of ``entry``."""
    pl = plan_of(config, gpu)
    role = _role(pl, entry)
    if role in ("forward", "backward"):
        res = pl.resources
        return {
            "registers_per_thread": res[f"registers_per_thread_{role}"],
            "shared_memory_bytes_per_block": res[f"shared_memory_bytes_per_block_{role}"],
        }
    # the post-loop kernels are outside the constraint model: their fixed tiles' own figures
    if role == "dr":
        return {"registers_per_thread": DR_REGISTERS, "shared_memory_bytes_per_block": DR_SHARED_BYTES}
    return {"registers_per_thread": DB_REGISTERS, "shared_memory_bytes_per_block": 0}


# ---- host launchers -----------------------------------------------------------------------------


def _forward(runner: Any, pl: Plan, wx, r, b, s0, store_ry: bool):
    """Run the forward kernel: (all_states, last, ry or None)."""
    p = pl.config.problem
    batch, steps, _, heads, d = wx.shape
    n_states = p.n_states
    dev, dtype = wx.device, wx.dtype
    fp32 = {"dtype": torch.float32, "device": dev}
    # fp32 carried states, a copy: the kernel overwrites them with the final states
    carry = torch.zeros(n_states, batch, heads, d, **fp32)
    if s0 is not None:
        carry.copy_(s0[:, :, 0])
    out = torch.empty(n_states, batch, steps, heads, d, dtype=dtype, device=dev)
    last = torch.empty(n_states, batch, 1, heads, d, dtype=dtype, device=dev)
    fwd = pl.directions["forward"]
    # the y exchange, [2, N, SPLIT_K, K_PAD / EPP, B_PAD, EPP]: zeros wherever no unit lies
    xbuf = torch.zeros(2 * heads * pl.split_k * fwd.k_pad * pl.b_pad, dtype=dtype, device=dev)
    part_n = (
        pl.row_blocks * pl.batch_blocks * pl.split_k * fwd.m_tiles * pl.mm * pl.block_b
        if pl.split_k > 1
        else 1
    )
    part = torch.empty(part_n, **fp32)
    ry = torch.empty(batch, steps, p.g_r, heads, d, **fp32) if store_ry else torch.empty(1, **fp32)
    prog = program(pl, "forward")
    entry = entry_names(p.cell)["forward"]
    dims = LaunchDims((pl.blocks, 1, 1), (pl.threads, 1, 1), fwd.shared_bytes)
    runner.launch(prog, entry, dims, [wx, r, b, carry, out, last, xbuf, part, ry, steps, int(store_ry)])
    return out, last, (ry if store_ry else None)


def _backward(runner: Any, pl: Plan, saved, d_states, d_last):
    """Run the backward kernel and the post-loop dR / db kernels: (dWx, dR, db, ds0 or None)."""
    wx, r, b, s0, states, ry = saved
    p = pl.config.problem
    cell = p_cell(p)
    batch, steps, _, heads, d = wx.shape
    dev = wx.device
    fp32 = {"dtype": torch.float32, "device": dev}
    n_states = p.n_states
    dstates = torch.zeros(states.shape, **fp32) if d_states is None else d_states.float().contiguous()
    carry = torch.zeros(n_states, batch, heads, d, **fp32)  # the final states' gradients, a copy
    if d_last is not None:
        carry.copy_(d_last[:, :, 0])
    s0_in = torch.zeros(n_states, batch, 1, heads, d, dtype=wx.dtype, device=dev) if s0 is None else s0
    bwd = pl.directions["backward"]
    n_dbx = len(backward_context(cell, {"backward_code": cell.backward_code("cuda")})["dbx_gates"])
    dwx = torch.empty_like(wx)
    dry = torch.empty(batch, steps, p.g_r, heads, d, **fp32)
    dbx = torch.empty(batch, steps, n_dbx, heads, d, **fp32) if n_dbx else torch.empty(1, **fp32)
    xbuf = torch.zeros(2 * heads * pl.split_k * bwd.k_pad * pl.b_pad, dtype=wx.dtype, device=dev)
    part_n = pl.row_blocks * pl.batch_blocks * pl.split_k * bwd.m_tiles * pl.mm * pl.block_b
    part = torch.empty(part_n if pl.split_k > 1 else 1, **fp32)
    ds0 = torch.zeros(n_states, batch, heads, d, **fp32)  # no-gradient states stay zero
    prog = program(pl, "backward")
    names = entry_names(p.cell)
    args = [wx, r, b, s0_in, states, ry, dstates, carry, dwx, dry, dbx, xbuf, part, ds0, steps]
    runner.launch(prog, names["backward"], launch_dims(pl.config, names["backward"], pl.space.gpu), args)
    dr = torch.empty(p.g_r, heads, d, d, **fp32)
    runner.launch(
        prog, names["dr"], launch_dims(pl.config, names["dr"], pl.space.gpu), [dry, states, s0_in, dr, steps]
    )
    db = torch.empty(len(cell.b_gates), heads, d, **fp32)
    runner.launch(prog, names["db"], launch_dims(pl.config, names["db"], pl.space.gpu), [dry, dbx, db, steps])
    ds0_out = None if s0 is None else ds0[:, :, None].to(s0.dtype)
    return dwx, dr.to(r.dtype), db.to(b.dtype), ds0_out


class _Launch:
    """What the autograd Function needs besides tensors: the plan and the runner."""

    def __init__(self, pl: Plan, runner: Any, train: bool) -> None:
        self.plan = pl
        self.runner = runner
        self.train = train  # gradients are wanted: store R·y of every step for the backward


class FusedRNNFunction(torch.autograd.Function):
    """Autograd wrapper of the fused kernels: the loss may depend on every state and on the final
    states. Once differentiable: a double backward raises torch's clear error."""

    @staticmethod
    def forward(ctx, wx, r, b, s0, launch: _Launch):  # type: ignore[override]
        states, last, ry = _forward(launch.runner, launch.plan, wx, r, b, s0, store_ry=launch.train)
        ctx.launch = launch
        if launch.train:
            ctx.save_for_backward(wx, r, b, s0, states, ry)
        return states, last

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, d_states, d_last):  # type: ignore[override]
        dwx, dr, db, ds0 = _backward(ctx.launch.runner, ctx.launch.plan, ctx.saved_tensors, d_states, d_last)
        return dwx, dr, db, ds0, None


# ---- public entry point -------------------------------------------------------------------------


def _profile_for(device: torch.device) -> Any:
    from tunekit.hardware import load_profile
    from tunekit.hardware_detect import detect_profile

    return detect_profile(device.index or 0) if device.type == "cuda" else load_profile("a100")


def tuned_config(problem: Problem, gpu: Any) -> KernelConfig:
    """The tuner's best cuda-fused configuration of ``problem`` on ``gpu`` (NoFeasibleConfig, with
    the model's explanation, where there is none)."""
    from tunekit.tuning import tune

    return tune(problem, gpu, backend=FAMILY, top=1).config


def _check_config(config: Any, problem: Problem, profile: Any) -> KernelConfig:
    if not isinstance(config, KernelConfig) or config.family != FAMILY:
        raise ValueError(f"config: got {config!r}, expected a cuda-fused KernelConfig (tunekit.tune)")
    got = config.problem
    same = (got.cell, got.batch, got.heads, got.head_dim, got.dtype) == (
        problem.cell, problem.batch, problem.heads, problem.head_dim, problem.dtype)  # fmt: skip
    if not same:
        raise ValueError(f"config: tuned for {got}, but the inputs are {problem}; tune for the inputs' shape")
    if problem.direction == "both" and "backward" not in got.directions:
        raise ValueError(
            f"config {config.name}: serves the forward only, but the inputs require gradients; "
            "tune with direction='both'"
        )
    if config.gpu != profile.name:
        raise ValueError(
            f"config {config.name}: tuned for {config.gpu}, the runner's profile is {profile.name}"
        )
    return config


def fused_rnn(
    Wx: torch.Tensor,
    R: torch.Tensor,
    b: torch.Tensor,
    states: torch.Tensor | None = None,
    *,
    cell: str,
    config: Any = None,
    gpu: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``cell`` over a sequence with the cuda-fused kernels.

    Args:
        Wx: [B, T, G_w, N, D] input contributions; R: [G_r, N, D, D] (output index first);
        b: [G_t, N, D]; states: [S, B, 1, N, D] initial states or None (zeros). One dtype
        (float32, float16, bfloat16) and device: CUDA, or CPU with ``TUNEKIT_CUDA_EMULATOR=1``.
        config: a cuda-fused KernelConfig for exactly this shape, or None (the tuner's best).
        gpu: the GPUProfile the configuration is for; default the local GPU's (a100 in the emulator).
    Returns:
        (all_states [S, B, T, N, D], last [S, B, 1, N, D]) in the input dtype.

    Example::

        states, last = fused_rnn(Wx, R, b, cell="lstm")   # CUDA tensors, or CPU in the emulator
    """
    from tunekit.cells import get_cell
    from tunekit.checks import check_rnn_inputs
    from tunekit.cuda import runner_for

    declaration = get_cell(cell)
    batch, _, heads, head_dim = check_rnn_inputs(declaration, Wx, R, b, states)
    dtype = str(Wx.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise ValueError(f"Wx: got dtype {Wx.dtype}, expected one of {sorted(DTYPES)} for cuda-fused")
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (Wx, R, b, states))
    problem = Problem(declaration.name, batch, heads, head_dim, dtype, "both" if grad else "forward")
    profile = _profile_for(Wx.device) if gpu is None else gpu
    if config is None:
        config = tuned_config(problem, profile)
    config = _check_config(config, problem, profile)
    runner = runner_for(Wx.device, profile)
    launch = _Launch(plan_of(config, profile), runner, train=grad)
    s0 = None if states is None else states.contiguous()
    return FusedRNNFunction.apply(Wx.contiguous(), R.contiguous(), b.contiguous(), s0, launch)
