"""cuda-fused runtime: one persistent cooperative kernel per direction, launched through tunekit.cuda.

Kernel file anatomy: the kernels are rendered from ``templates/cuda/fused_*.cu.j2``
(:mod:`tunekit.kernels.cuda_fused_render`) with the geometry of
:mod:`tunekit.kernels.cuda_fused_plan`; this module holds the :class:`tunekit.kernels.CudaFamily`
functions the validator, the compile benchmark and ``tunekit generate`` read (``programs``,
``launch_dims``, ``predicted``, ``package_runtime``) and the public :func:`fused_rnn`. The host code
(buffers, launches, the once-differentiable ``autograd.Function``) is rendered per configuration
from ``templates/generate/cuda_fused_host.py.j2`` and imported from memory
(:mod:`tunekit.kernels.host`); a generated package ships the same text as its ``_host.py``.
On CUDA tensors the kernels run through NVRTC (cooperative launch); on CPU tensors with
``TUNEKIT_CUDA_EMULATOR=1`` the same source runs in tunekit's CPU emulator.

Tensor dtypes: ``Wx``, ``R``, ``b`` and the initial states share one input dtype (float32 as tf32
on tensor cores, float16, bfloat16); the kernels accumulate and carry states in float32 and write
``all_states`` and ``last`` in the input dtype.
"""

from __future__ import annotations

from typing import Any

import torch

import tunekit
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
    entries,
    entry_names,
    program,
)
from tunekit.problem import KernelConfig, Problem

__all__ = [
    "FAMILY",
    "fused_rnn",
    "host_source",
    "launch_dims",
    "package_runtime",
    "plan_of",
    "predicted",
    "programs",
    "tuned_config",
]

FAMILY = "cuda-fused"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}

_PLANS: dict[tuple[KernelConfig, str], Plan] = {}
_HOSTS: dict[tuple[KernelConfig, str], tuple[Plan, Any]] = {}  # (config, GPU) -> (its plan, host module)
_PROGRAMS: dict[tuple[KernelConfig, str, str], tuple[Plan, Any]] = {}  # (config, GPU, direction)


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


def _program_of(pl: Plan, direction: str) -> Any:
    """``program(pl, direction)``, rendered once per plan (a render takes ~2.6 ms: too slow for
    every call of the runtime)."""
    key = (pl.config, pl.space.gpu.name, direction)
    found = _PROGRAMS.get(key)
    if found is None or found[0] is not pl:
        found = _PROGRAMS[key] = (pl, program(pl, direction))
    return found[1]


def programs(config: KernelConfig, gpu: Any = None) -> tuple[Any, ...]:
    """The CudaPrograms of ``config``: the forward, and the backward where the configuration serves it."""
    pl = plan_of(config, gpu)
    return tuple(_program_of(pl, d) for d in pl.directions)


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
    """The model's figures for ``entry``: ``registers_per_thread`` is the bound ptxas is held to
    (``__maxnreg__``: for the recurrent kernels the registers a thread of the co-resident grid may
    use), ``registers_estimate`` what the model expects ptxas to use (the R tiles it holds in
    registers plus the measured overheads), ``shared_memory_bytes_per_block`` exact."""
    pl = plan_of(config, gpu)
    role = _role(pl, entry)
    if role in ("forward", "backward"):
        res = pl.resources
        return {
            "registers_per_thread": pl.directions[role].budget,
            "registers_estimate": res[f"registers_per_thread_{role}"],
            "shared_memory_bytes_per_block": res[f"shared_memory_bytes_per_block_{role}"],
        }
    # the post-loop kernels are outside the constraint model: their fixed tiles' own figures
    if role == "dr":
        return {"registers_per_thread": DR_REGISTERS, "registers_estimate": DR_REGISTERS,
                "shared_memory_bytes_per_block": DR_SHARED_BYTES}  # fmt: skip
    return {"registers_per_thread": DB_REGISTERS, "registers_estimate": DB_REGISTERS,
            "shared_memory_bytes_per_block": 0}  # fmt: skip


# ---- host code: rendered once per configuration, shared with generated packages -----------------


def host_context(config: KernelConfig, gpu: Any = None) -> dict[str, Any]:
    """What ``templates/generate/cuda_fused_host.py.j2`` reads: the header's fields and the plan's
    numbers the host needs (entries and their parameter names, scratch buffer sizes)."""
    from tunekit.kernels.host import literal

    pl = plan_of(config, gpu)
    p = pl.config.problem
    cell = p_cell(p)
    names = entry_names(p.cell)
    roles = ("forward",) + (("backward", "dr", "db") if "backward" in pl.directions else ())
    params = {e.name: tuple(n for n, _ in e.params) for d in pl.directions for e in entries(pl, d)}
    xbuf, part = {}, {}
    for d, dp in pl.directions.items():
        xbuf[d] = 2 * pl.heads * pl.split_k * dp.k_pad * pl.b_pad
        # the k split's partial sums: [row_blocks, batch_blocks, SPLIT_K, M_TILES * MM, BLOCK_B]
        part[d] = pl.row_blocks * pl.batch_blocks * pl.split_k * dp.m_tiles * pl.mm * pl.block_b
        part[d] = part[d] if pl.split_k > 1 else 1
    n_dbx = 0
    if "backward" in pl.directions:
        n_dbx = len(backward_context(cell, {"backward_code": cell.backward_code("cuda")})["dbx_gates"])
    entry_of = {role: names[role] for role in roles}
    return {
        "version": tunekit.__version__,
        "name": config.name,
        "gpu": pl.space.gpu.name,
        "arch": pl.space.gpu.sm,
        "entries": entry_of,
        "batch": p.batch,
        "n_states": p.n_states,
        "r_gates": p.g_r,
        "b_gates": len(cell.b_gates),
        "n_dbx": n_dbx,
        "py": {k: literal(v) for k, v in {"entries": entry_of, "params": params, "xbuf": xbuf,
                                          "part": part}.items()},
    }  # fmt: skip


def host_source(config: KernelConfig, gpu: Any = None) -> str:
    """The host module of ``config``: what tunekit's runtime runs and a package ships as ``_host.py``."""
    from tunekit.codegen import render_template

    return render_template("generate/cuda_fused_host.py.j2", host_context(config, gpu))


def host_module(config: KernelConfig, gpu: Any = None) -> Any:
    """The imported host module of ``config`` (cached per plan: rendering takes ~0.3 ms a call)."""
    from tunekit.kernels.host import load

    pl = plan_of(config, gpu)
    key = (config, pl.space.gpu.name)
    found = _HOSTS.get(key)
    if found is None or found[0] is not pl:
        found = _HOSTS[key] = (pl, load(host_source(config, gpu), config.name))
    return found[1]


def _launcher(pl: Plan, runner: Any):
    """``launch(entry, args)`` for the host module: the entry's program, on ``launch_dims``."""
    by_entry = {e.name: d for d in pl.directions for e in entries(pl, d)}

    def launch(entry: str, args: list) -> None:
        program_ = _program_of(pl, by_entry[entry])
        runner.launch(program_, entry, launch_dims(pl.config, entry, pl.space.gpu), args)

    return launch


def package_runtime(config: KernelConfig, context: dict[str, Any]) -> dict[str, str]:
    """The package's host modules (``tunekit generate``): ``_host.py``, the very text tunekit runs,
    and ``_runtime.py``, its ``rnn`` (checks of the shapes the package was generated for)."""
    from tunekit.codegen import render_template

    return {
        "_host.py": host_source(config),
        "_runtime.py": render_template("generate/cuda_runtime.py.j2", context),
    }


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
        gpu: the GPUProfile the configuration is for; default the local GPU's (in the emulator: the
            profile ``config`` names, or a100 without a config).
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
    if gpu is None and isinstance(config, KernelConfig) and Wx.device.type != "cuda":
        from tunekit.hardware import load_profile

        gpu = load_profile(config.gpu)  # the emulator enforces the limits of the GPU it was tuned for
    profile = _profile_for(Wx.device) if gpu is None else gpu
    if config is None:
        config = tuned_config(problem, profile)
    config = _check_config(config, problem, profile)
    runner = runner_for(Wx.device, profile)
    launch = _launcher(plan_of(config, profile), runner)
    s0 = None if states is None else states.contiguous()
    host = host_module(config, profile)
    return host.run(launch, Wx.contiguous(), R.contiguous(), b.contiguous(), s0, grad)
