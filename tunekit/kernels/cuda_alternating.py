"""cuda-alternating runtime: configurations, rendered programs, launch shapes, and the public function.

Per time step the kernels alternate (DESIGN §4.2): a tensor-core GEMM ``g = R·y`` per head, then one
fused pointwise kernel printed from the cell's declaration. The backward runs in reverse time
(pointwise backward, then ``Rᵀ·dg`` into the previous step's hidden gradient) and ends with one GEMM
launch over all B·T pairs for ``[dR | db]``. Kernels: ``templates/cuda/alternating_{forward,
backward,gemm}.cu.j2``. Buffers, launch sequences and autograd: the host module rendered per
configuration from ``templates/generate/cuda_alternating_host.py.j2`` and imported from memory
(:mod:`tunekit.kernels.host`); a generated package ships the same text as its ``_host.py``.

This module satisfies :class:`tunekit.kernels.CudaFamily` (``FAMILY``, :func:`programs`,
:func:`launch_dims`, :func:`predicted`) and packages (:func:`package_runtime`): what the validator
compiles is what :func:`alternating_rnn` launches. On CUDA tensors the programs run through NVRTC;
on CPU tensors with ``TUNEKIT_CUDA_EMULATOR=1`` the same source runs in tunekit's CPU emulator.

Tensor dtypes: ``Wx``, ``R``, ``b`` and the initial states share one input dtype (float32 runs its
products as tf32 on tensor cores, float16, bfloat16); products accumulate in fp32, states and
gradients are carried in fp32, the GEMM operands (y, dg) are rounded to the input dtype, and every
output comes back in the input dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

import tunekit
from tunekit.cells import get_cell
from tunekit.cells.printers import CUDA_PRELUDE
from tunekit.codegen import cell_context, header_context, render_template
from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims
from tunekit.problem import DTYPE_BYTES, KernelConfig, Problem
from tunekit.solvers import ceil_div, round_up

__all__ = [
    "FAMILY",
    "TUNABLES",
    "Geometry",
    "alternating_rnn",
    "check_config",
    "gemm_shared_bytes",
    "host_source",
    "launch_dims",
    "package_runtime",
    "predicted",
    "programs",
]

FAMILY = "cuda-alternating"
TUNABLES = ("tile_m", "tile_n", "tile_k", "warps_m", "warps_n", "stages", "pointwise_threads")
# input dtype -> (C++ type in the kernels, tk:: mma primitive, its k): PTX ISA mma.sync shapes
# .bf16/.f16 m16n8k16, .tf32 m16n8k8 (fp32 inputs run their products as tf32)
DTYPES: dict[str, tuple[str, str, int]] = {
    "float32": ("float", "mma_m16n8k8_tf32", 8),
    "float16": ("tk::f16", "mma_m16n8k16_f16", 16),
    "bfloat16": ("tk::bf16", "mma_m16n8k16_bf16", 16),
}
MMA_M, MMA_N = 16, 8
MAX_STAGES = 8  # the pipeline's groups: cp.async.wait_group takes an immediate, any depth works

# ---- entry points: names and parameters, in the order of the templates' signatures ---------------

_PACK_WEIGHTS = KernelEntry("pack_weights", (("r", "ptr"), ("r_pad", "ptr"), ("N", "i32"), ("D", "i32")))
_PACK_HIDDEN = KernelEntry(
    "pack_hidden", (("s0", "ptr"), ("y", "ptr"), ("B", "i32"), ("N", "i32"), ("D", "i32"), ("y_head", "i64"))
)
_GEMM_FORWARD = KernelEntry(
    "gemm_forward",
    (("r_pad", "ptr"), ("y", "ptr"), ("g", "ptr"), ("k_slices", "i32"), ("r_head", "i64"),
     ("y_offset", "i64"), ("y_head", "i64"), ("g_offset", "i64"), ("g_head", "i64")),
)  # fmt: skip
_POINTWISE_FORWARD = KernelEntry(
    "pointwise_forward",
    (("wx", "ptr"), ("g", "ptr"), ("bias", "ptr"), ("carry", "ptr"), ("out", "ptr"), ("last", "ptr"),
     ("y", "ptr"), ("B", "i32"), ("T_steps", "i32"), ("N", "i32"), ("D", "i32"), ("t", "i32"),
     ("g_offset", "i64"), ("g_head", "i64"), ("y_offset", "i64"), ("y_head", "i64")),
)  # fmt: skip
_GEMM_BACKWARD = KernelEntry(
    "gemm_backward",
    (("r_pad", "ptr"), ("dg", "ptr"), ("dh", "ptr"), ("k_slices", "i32"), ("r_head", "i64"),
     ("dg_row", "i64"), ("dg_head", "i64"), ("dh_head", "i64")),
)  # fmt: skip
_GEMM_WEIGHT_GRAD = KernelEntry(
    "gemm_weight_grad",
    (("dg", "ptr"), ("y", "ptr"), ("dbias", "ptr"), ("ones", "ptr"), ("w", "ptr"), ("k_slices", "i32"),
     ("m_tiles", "i32"), ("m_tiles_bias", "i32"), ("n_tiles", "i32"),
     ("dg_head", "i64"), ("y_head", "i64"), ("dbias_head", "i64"), ("w_head", "i64")),
)  # fmt: skip
_POINTWISE_BACKWARD = KernelEntry(
    "pointwise_backward",
    (("wx", "ptr"), ("bias", "ptr"), ("g", "ptr"), ("states", "ptr"), ("s0", "ptr"), ("dstates", "ptr"),
     ("dcarry", "ptr"), ("dh", "ptr"), ("dwx", "ptr"), ("dg", "ptr"), ("dbias", "ptr"),
     ("B", "i32"), ("T_steps", "i32"), ("N", "i32"), ("D", "i32"), ("t", "i32"),
     ("has_s0", "i32"), ("has_dstates", "i32"), ("has_dh", "i32"),
     ("g_offset", "i64"), ("g_head", "i64"), ("dh_head", "i64"),
     ("dg_row", "i64"), ("dg_head", "i64"), ("dbias_head", "i64")),
)  # fmt: skip
# program role -> its entries (one .cu source each)
ROLES: dict[str, tuple[KernelEntry, ...]] = {
    "forward": (_PACK_WEIGHTS, _PACK_HIDDEN, _GEMM_FORWARD, _POINTWISE_FORWARD),
    "backward": (_GEMM_BACKWARD, _GEMM_WEIGHT_GRAD, _POINTWISE_BACKWARD),
}
GEMM_ENTRIES = ("gemm_forward", "gemm_backward", "gemm_weight_grad")
# one thread per element, pointwise_threads a block: the launch bounds and budget of the pointwise step
POINTWISE_ENTRIES = ("pack_weights", "pack_hidden", "pointwise_forward", "pointwise_backward")


# ---- configurations -------------------------------------------------------------------------------


def _is_pow2(value: int) -> bool:
    return value >= 1 and value & (value - 1) == 0


def check_params(params: Mapping[str, Any], dtype: str) -> dict[str, int]:
    """The tunables of a configuration, checked against what the kernels need (ValueError naming the
    key). The model's heuristic constraints (tile areas, warp splits) are not required here: any
    configuration the kernels compute correctly is accepted."""
    unknown = sorted(set(params) - set(TUNABLES))
    if unknown:
        raise ValueError(f"config: unknown key(s) {unknown}; expected exactly {list(TUNABLES)}")
    missing = [k for k in TUNABLES if k not in params]
    if missing:
        raise ValueError(f"config: missing key(s) {missing}; expected exactly {list(TUNABLES)}")
    for key in TUNABLES:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"config {key}: got {value!r}, expected a positive int")
    v = {k: int(params[k]) for k in TUNABLES}
    mma_k = DTYPES[dtype][2]
    for key in ("tile_m", "tile_n", "tile_k"):
        if not _is_pow2(v[key]):
            raise ValueError(f"config {key}: got {v[key]}, expected a power of two (swizzled shared tiles)")
    if v["tile_m"] % (MMA_M * v["warps_m"]):
        raise ValueError(f"config tile_m: got {v['tile_m']}, expected a multiple of 16 * warps_m = "
                         f"{MMA_M * v['warps_m']} (whole m16 mma tiles per warp)")  # fmt: skip
    if v["tile_n"] % (MMA_N * v["warps_n"]):
        raise ValueError(f"config tile_n: got {v['tile_n']}, expected a multiple of 8 * warps_n = "
                         f"{MMA_N * v['warps_n']} (whole n8 mma tiles per warp)")  # fmt: skip
    if v["tile_k"] % mma_k:
        raise ValueError(f"config tile_k: got {v['tile_k']}, expected a multiple of {mma_k} ({dtype} mma k)")
    if 32 * v["warps_m"] * v["warps_n"] > 1024:
        warps = f"{v['warps_m']} x {v['warps_n']}"
        raise ValueError(f"config warps_m x warps_n: got {warps}, expected at most 32 warps (1024 threads)")
    if not 2 <= v["stages"] <= MAX_STAGES:
        stages = v["stages"]
        raise ValueError(f"config stages: got {stages}, expected 2..{MAX_STAGES} (cp.async pipeline depth)")
    if v["pointwise_threads"] % 32 or v["pointwise_threads"] > 1024:
        raise ValueError(
            f"config pointwise_threads: got {v['pointwise_threads']}, expected a multiple of 32 up to 1024"
        )
    return v


def check_config(config: Any, problem: Problem, gpu: str) -> KernelConfig:
    """A KernelConfig of this family for ``problem``: a KernelConfig (its family, cell and shape
    must match) or a mapping of exactly the tunables (then for ``gpu``, a profile name)."""
    if isinstance(config, KernelConfig):
        if config.family != FAMILY:
            raise ValueError(f"config family: got {config.family!r}, expected {FAMILY!r}")
        for key in ("cell", "batch", "heads", "head_dim", "dtype"):
            got, want = getattr(config.problem, key), getattr(problem, key)
            if got != want:
                raise ValueError(f"config {key}: the configuration is for {got!r}, the inputs are {want!r}")
        check_params(config.params, problem.dtype)
        return config
    if isinstance(config, Mapping):
        params = check_params(config, problem.dtype)
        return KernelConfig(FAMILY, problem, gpu, tuple((k, params[k]) for k in TUNABLES))
    raise ValueError(
        f"config: got {type(config).__name__}, expected None, a KernelConfig or a mapping of {list(TUNABLES)}"
    )


@dataclass(frozen=True)
class Geometry:
    """Padded sizes of one problem under one configuration: every buffer the kernels index.

    The host zero-pads every GEMM operand to whole tiles; the pads (reported by the model as
    ``padding_m``, ``padding_k``, ``padding_b``) are read as zeros and never written. The sizes that
    grow with the sequence length (the y history, the weight GEMM's K) are the host module's
    (``templates/generate/cuda_alternating_host.py.j2``: ``k_rows``, ``y_rows``).
    """

    problem: Problem
    tm: int
    tn: int
    tk: int

    @classmethod
    def of(cls, config: KernelConfig) -> Geometry:
        p = config.params
        return cls(config.problem, p["tile_m"], p["tile_n"], p["tile_k"])

    @property
    def gates(self) -> int:
        """G_r * D: the forward GEMM's M, the backward's K."""
        return self.problem.g_r * self.problem.head_dim

    @property
    def bias_gates(self) -> int:
        """G_t * D: rows of the db column."""
        return len(get_cell(self.problem.cell).b_gates) * self.problem.head_dim

    @property
    def gate_ld(self) -> int:
        """Rows of R_pad, row length of g and dg: G_r*D in whole M tiles (forward), K slices (backward)."""
        return round_up(self.gates, max(self.tm, self.tk))

    @property
    def r_ld(self) -> int:
        """Row length of R_pad: D in whole K slices (forward) and M tiles (backward)."""
        return round_up(self.problem.head_dim, max(self.tm, self.tk))

    @property
    def b_pad(self) -> int:
        return round_up(self.problem.batch, self.tn)

    @property
    def y_ld(self) -> int:
        """Row length of the y history: D in whole K slices (forward) and N tiles (weight GEMM)."""
        return round_up(self.problem.head_dim, max(self.tk, self.tn))

    @property
    def dh_ld(self) -> int:
        return round_up(self.problem.head_dim, self.tm)

    @property
    def dbias_ld(self) -> int:
        return round_up(self.bias_gates, self.tm)

    @property
    def w_rows(self) -> int:
        return max(round_up(self.gates, self.tm), self.dbias_ld)

    @property
    def dr_columns(self) -> int:
        """dR's columns in whole N tiles: where the db column of ``w`` starts."""
        return round_up(self.problem.head_dim, self.tn)

    @property
    def w_ld(self) -> int:
        """dR's columns in whole N tiles, then one N tile for the db column."""
        return self.dr_columns + self.tn

    def grid(self, entry: str) -> tuple[int, int, int]:
        p = self.problem
        if entry == "gemm_forward":
            return ceil_div(self.gates, self.tm), self.b_pad // self.tn, p.heads
        if entry == "gemm_backward":
            return ceil_div(p.head_dim, self.tm), self.b_pad // self.tn, p.heads
        if entry == "gemm_weight_grad":
            m_tiles = max(ceil_div(self.gates, self.tm), ceil_div(self.bias_gates, self.tm))
            return m_tiles, ceil_div(p.head_dim, self.tn) + 1, p.heads
        raise ValueError(f"entry: got {entry!r}, expected one of {GEMM_ENTRIES}")


def gemm_shared_bytes(params: Mapping[str, int], dtype: str) -> int:
    """Dynamic shared memory of every GEMM entry: the template's STAGES x (A slice + B slice)."""
    slices = params["tile_m"] * params["tile_k"] + params["tile_k"] * params["tile_n"]
    return params["stages"] * slices * DTYPE_BYTES[dtype]


# ---- the CudaFamily protocol ----------------------------------------------------------------------


def _entry_role(entry: str) -> str:
    for role, entries in ROLES.items():
        if entry in (e.name for e in entries):
            return role
    raise ValueError(f"entry: got {entry!r}, expected one of {[e.name for es in ROLES.values() for e in es]}")


@functools.lru_cache(maxsize=128)
def model_resources(config: KernelConfig) -> dict[str, int]:
    """The constraint model's resources at ``config`` (on the GPU profile it names)."""
    from tunekit.constraints import build_space

    return build_space(FAMILY, config.problem, config.gpu).resources(config)


def render(config: KernelConfig, role: str) -> str:
    """The .cu source of ``role`` ("forward" or "backward") for ``config``.

    Launch bounds: the GEMMs ask for the model's ``blocks_per_sm``, the pointwise kernels for
    ``pointwise_blocks_per_sm``, so ptxas keeps registers within the model's budgets."""
    if role not in ROLES:
        raise ValueError(f"role: got {role!r}, expected one of {sorted(ROLES)}")
    p = config.problem
    resources = model_resources(config)
    ctype, mma_name, mma_k = DTYPES[p.dtype]
    template = f"alternating_{role}.cu.j2"
    context = cell_context(get_cell(p.cell), "cuda", backward=role == "backward")
    context |= header_context(template, role, config)
    context |= dict(config.params) | {
        "prelude": CUDA_PRELUDE,
        "dtype": p.dtype,
        "ctype": ctype,
        "mma_name": mma_name,
        "mma_k": mma_k,
        "geo": Geometry.of(config),
        "gemm_min_blocks": max(1, int(resources["blocks_per_sm"])),
        "pointwise_min_blocks": max(1, int(resources["pointwise_blocks_per_sm"])),
    }
    return render_template(f"cuda/{template}", context)


@functools.lru_cache(maxsize=128)
def _program(config: KernelConfig, role: str) -> CudaProgram:
    return CudaProgram(name=f"{config.name}-{role}", source=render(config, role), entries=ROLES[role])


def programs(config: KernelConfig) -> tuple[CudaProgram, ...]:
    """The forward and/or backward program of ``config`` (its problem's directions), rendered."""
    config = _family_config(config)
    return tuple(_program(config, role) for role in config.problem.directions)


def launch_dims(config: KernelConfig, entry: str) -> LaunchDims:
    """Grid, block and dynamic shared memory of ``entry`` (what the runtime launches with)."""
    config = _family_config(config)
    _entry_role(entry)
    params = config.params
    if entry in POINTWISE_ENTRIES:
        p = config.problem
        threads = params["pointwise_threads"]
        elements = p.g_r * p.heads * p.head_dim**2 if entry == "pack_weights" else p.batch * p.hidden
        return LaunchDims((ceil_div(elements, threads), 1, 1), (threads, 1, 1), 0)
    threads = 32 * params["warps_m"] * params["warps_n"]
    shared = gemm_shared_bytes(params, config.problem.dtype)
    return LaunchDims(Geometry.of(config).grid(entry), (threads, 1, 1), shared)


def predicted(config: KernelConfig, entry: str) -> dict[str, int]:
    """The constraint model's registers per thread (a bound) and shared memory (exact) of ``entry``."""
    config = _family_config(config)
    _entry_role(entry)
    resources = model_resources(config)
    prefix = "pointwise_" if entry in POINTWISE_ENTRIES else ""
    return {
        "registers_per_thread": int(resources[f"{prefix}registers_per_thread"]),
        "shared_memory_bytes_per_block": int(resources[f"{prefix}shared_memory_bytes_per_block"]),
    }


def _family_config(config: Any) -> KernelConfig:
    if not isinstance(config, KernelConfig) or config.family != FAMILY:
        raise ValueError(f"config: got {config!r}, expected a KernelConfig of family {FAMILY!r}")
    check_params(config.params, config.problem.dtype)
    return config


# ---- host code: rendered once per configuration, shared with generated packages -----------------


def host_context(config: KernelConfig) -> dict[str, Any]:
    """What ``templates/generate/cuda_alternating_host.py.j2`` reads: the header's fields, the padded
    sizes (:class:`Geometry`) and every entry's parameter names."""
    from tunekit.hardware import load_profile
    from tunekit.kernels.host import literal

    config = _family_config(config)
    p = config.problem
    cell = get_cell(p.cell)
    params = {e.name: tuple(n for n, _ in e.params) for role in p.directions for e in ROLES[role]}
    no_grad = tuple(cell.states.index(st) for st in cell.no_grad_states)
    return {
        "version": tunekit.__version__,
        "name": config.name,
        "gpu": config.gpu,
        "arch": load_profile(config.gpu).sm,
        "directions": p.directions,
        "geo": Geometry.of(config),
        "n_states": len(cell.states),
        "r_gates": len(cell.r_gates),
        "b_gates": len(cell.b_gates),
        "py": {"params": literal(params), "no_grad_states": literal(no_grad)},
    }


def host_source(config: KernelConfig) -> str:
    """The host module of ``config``: what tunekit's runtime runs and a package ships as ``_host.py``."""
    return render_template("generate/cuda_alternating_host.py.j2", host_context(config))


@functools.lru_cache(maxsize=128)
def host_module(config: KernelConfig) -> Any:
    """The imported host module of ``config`` (cached: rendering takes ~0.3 ms a call)."""
    from tunekit.kernels.host import load

    return load(host_source(config), config.name)


def _launcher(config: KernelConfig, runner: Any):
    """``launch(entry, args)`` for the host module: the entry's program, on :func:`launch_dims`."""

    def launch(entry: str, args: list) -> None:
        runner.launch(_program(config, _entry_role(entry)), entry, launch_dims(config, entry), args)

    return launch


def package_runtime(config: KernelConfig, context: dict[str, Any]) -> dict[str, str]:
    """The package's host modules (``tunekit generate``): ``_host.py``, the very text tunekit runs,
    and ``_runtime.py``, its ``rnn`` (checks of the shapes the package was generated for)."""
    return {
        "_host.py": host_source(config),
        "_runtime.py": render_template("generate/cuda_runtime.py.j2", context),
    }


# ---- public entry point ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def tuned_config(cell: str, batch: int, heads: int, head_dim: int, dtype: str, gpu: str) -> KernelConfig:
    """The tuner's best cuda-alternating configuration (forward and backward) on profile ``gpu``."""
    from tunekit.tuning import tune

    problem = Problem(cell=cell, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, direction="both")
    return tune(problem, gpu, backend=FAMILY).config


def _profile_for(device: torch.device) -> Any:
    """The local GPU's profile on CUDA tensors; the a100 profile in the emulator."""
    from tunekit.hardware import detect_profile, load_profile

    return detect_profile() if device.type == "cuda" else load_profile("a100")


@functools.lru_cache(maxsize=16)
def _runner(device: str, gpu: str | None) -> Any:
    """One runner per device (and, in the emulator, per GPU profile: it enforces the limits of the GPU
    the configuration is for); a runner keeps the programs it has loaded."""
    from tunekit.cuda import runner_for
    from tunekit.hardware import load_profile

    return runner_for(torch.device(device), None if gpu is None else load_profile(gpu))


def alternating_rnn(
    Wx: torch.Tensor,
    R: torch.Tensor,
    b: torch.Tensor,
    states: torch.Tensor | None = None,
    *,
    cell: str,
    config: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``cell`` over a sequence with the cuda-alternating kernels; differentiable once.

    Args:
        Wx: [B, T, G_w, N, D] input contributions; R: [G_r, N, D, D] (output index first);
            b: [G_t, N, D]; states: [S, B, 1, N, D] initial states or None (zeros). One dtype
            (float32, float16, bfloat16) and device for all.
        cell: a registered cell's name.
        config: None (the tuner's best for the local GPU; the a100 profile in the emulator), a
            KernelConfig of this family for this shape, or a mapping of exactly :data:`TUNABLES`.
    Returns:
        (all_states [S, B, T, N, D], last [S, B, 1, N, D]) in the input dtype.

    Example (CPU, emulator)::

        os.environ["TUNEKIT_CUDA_EMULATOR"] = "1"
        states, last = alternating_rnn(Wx, R, b, cell="lstm")
    """
    from tunekit.checks import check_rnn_inputs
    from tunekit.cuda import emulator_enabled, runner_for

    declaration = get_cell(cell)
    batch, _, heads, head_dim = check_rnn_inputs(declaration, Wx, R, b, states)
    dtype = str(Wx.dtype).removeprefix("torch.")
    if dtype not in DTYPES:
        raise ValueError(f"Wx: got dtype {Wx.dtype}, expected one of {sorted(DTYPES)}")
    if Wx.device.type != "cuda" and not emulator_enabled():
        runner_for(Wx.device)  # raises CudaUnavailableError naming both ways to run, before any tuning
    if config is None:
        config = tuned_config(declaration.name, batch, heads, head_dim, dtype, _profile_for(Wx.device).name)
    problem = Problem(declaration.name, batch, heads, head_dim, dtype, direction="both")
    config = check_config(config, problem, _profile_for(Wx.device).name)
    runner = _runner(str(Wx.device), None if Wx.device.type == "cuda" else config.gpu)
    inputs = (Wx, R, b) if states is None else (Wx, R, b, states)
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    s0 = None if states is None else states.contiguous()
    host = host_module(config)
    return host.run(_launcher(config, runner), Wx.contiguous(), R.contiguous(), b.contiguous(), s0, keep)
