"""triton-fused runtime: render, load and launch the fused forward/backward kernels, with autograd.

Kernel file anatomy: the kernels are rendered from ``templates/triton/fused_{forward,backward}.py.j2``
(see :mod:`tunekit.codegen`) and written to a per-user cache directory so Triton can read their
source; this module holds the host launchers, the ``autograd.Function`` and the public
:func:`fused_rnn`. On CPU the kernels run in Triton's interpreter (``TRITON_INTERPRET=1``, slow,
for validation); on a CUDA GPU they are compiled.

Tensor dtypes: ``Wx``, ``R``, ``b`` and the initial states share one input dtype (float32, float16
or bfloat16); the kernels accumulate and carry states in float32 and write ``all_states`` and
``last`` in the input dtype. Gradients come back in the dtype of the tensor they belong to.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from tunekit import cache as tunekit_cache
from tunekit.codegen import KERNEL_NAMES, KernelSpec, describe_config, render
from tunekit.config_check import call_problem, check_config, config_options
from tunekit.constraints.triton_kernel import backward_dot_forms, kernel_head_dim, register_cap

FAMILY = "triton-fused"
# config=None in the interpreter for a shape the a100 model rejects; the smallest tl.dot batch tile
DEFAULT_CONFIG: dict[str, int] = {"block_b": 16, "num_warps": 4, "num_stages": 1}

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
_TRITON_PTR = {"float32": "*fp32", "float16": "*fp16", "bfloat16": "*bf16"}
_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
_CPU_MESSAGE = "set TRITON_INTERPRET=1 (slow; for validation) or run on a CUDA GPU"


@dataclass(frozen=True)
class LaunchParams:
    """The tunables one launch uses, read from a KernelConfig or a mapping."""

    name: str  # canonical name of the configuration: cache key and generated file name
    block_b: int  # batch rows per program (power of two, >= 16 for tl.dot on a GPU)
    num_warps: int
    num_stages: int
    d_pad: int  # head dim padded to the power-of-two tile
    dot_precision: str = "ieee"  # tl.dot input_precision for float32 operands ("tf32": tensor cores)
    r_once: int = 0  # backward: 1 = both products read one copy of R (backward_dot_forms)
    arch: int = 80  # compute capability the kernels are compiled for (or emulated as, in the interpreter)


def _pow2_at_least(value: int, floor: int) -> int:
    return max(floor, 1 << max(0, (value - 1).bit_length()))


def _dtype_name(dtype: torch.dtype | str) -> str:
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype: got {dtype!r}, expected one of {sorted(DTYPES)}")
    return name


def launch_params(
    config: Any,
    cell: str,
    head_dim: int,
    dtype: torch.dtype | str,
    *,
    batch: int,
    heads: int,
    training: bool = True,
    arch: int | None = None,
) -> LaunchParams:
    """The tunables of a KernelConfig or mapping, checked strictly for this call's problem.

    :func:`tunekit.config_check.check_config` rejects unknown keys, non-integers (16.9 is never
    truncated), values outside the triton-fused model's domains, a ``dot_precision`` other than
    "ieee"/"tf32", and a KernelConfig tuned for another family, cell or shape. fp32 products run on
    tf32 tensor cores when the configuration says so (``dot_precision="tf32"``, or ``tf32`` = 1 as the
    tuner's fp32 configurations carry it), else exact IEEE FMA. ``arch`` (the GPU's, when launching
    on one) overrides the configuration's (a mapping's ``arch``, a KernelConfig's profile, else 80).
    """
    problem = call_problem(cell, batch, heads, head_dim, _dtype_name(dtype), training)
    checked = check_config(config, FAMILY, problem)
    params = checked.params
    block_b, num_warps, num_stages, d_pad = (
        params[k] for k in ("block_b", "num_warps", "num_stages", "d_pad")
    )
    written = config if isinstance(config, Mapping) else params  # a mapping's tf32 only when written
    if isinstance(config, Mapping) and "dot_precision" in config:
        precision = config_options(config, FAMILY)["dot_precision"]
        if "tf32" in config and (precision == "tf32") != bool(config["tf32"]):
            raise ValueError(
                f"config: dot_precision={precision!r} contradicts tf32={config['tf32']!r}; give one of them"
            )
    else:
        precision = "tf32" if int(written.get("tf32", 0)) else "ieee"
    r_once = int(params.get("r_once", 0))
    if arch is None:
        arch = _config_arch(config)
    name = config.get("name") if isinstance(config, Mapping) else config.name
    if name is None:
        short = _SHORT[_dtype_name(dtype)]
        name = f"{cell}-both-tritonfused-D{head_dim}-{short}-bb{block_b}-w{num_warps}-s{num_stages}-dp{d_pad}"
        name += f"-ro{r_once}-{precision}"
    return LaunchParams(str(name), block_b, num_warps, num_stages, d_pad, precision, r_once, arch)


def _config_arch(config: Any) -> int:
    """The compute capability a config was tuned for: its profile (a mapping's ``profile`` or ``gpu``
    label, a KernelConfig's GPU), else 80 (the a100 the interpreter tunes for)."""
    from tunekit.hardware import load_profile

    if isinstance(config, Mapping):
        gpu = config.get("profile") or config.get("gpu")
    else:
        gpu = getattr(config, "gpu", None)
    return load_profile(gpu).arch if gpu else 80


# ---- rendering and loading ------------------------------------------------------------------------


def cache_dir() -> Path:
    """Per-user private directory for rendered kernel files (Triton reads a kernel's source from its file)."""
    return tunekit_cache.cache_dir("triton")


def _import_source(source: str, stem: str, interpret: bool) -> ModuleType:
    """Import rendered source from the cache dir; @triton.jit interprets or compiles as asked.

    The file name is the checked ``stem`` (a canonical configuration name and role) plus the
    source's digest; the entry is verified by its header hash and rewritten when it is bad.
    """
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    path = tunekit_cache.entry_path("triton", f"{stem}-{digest}", ".py")
    if tunekit_cache.read_text_entry(path) != source:
        tunekit_cache.write_text_entry(path, source)
    safe = re.sub(r"[^A-Za-z0-9_]", "_", stem)
    module_name = f"tunekit_generated.{safe}_{digest}_{'interp' if interpret else 'jit'}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # triton.jit decides at decoration time between InterpretedFunction and JITFunction
    with triton.knobs.runtime.scope():
        triton.knobs.runtime.interpret = interpret
        spec.loader.exec_module(module)
    sys.modules[module_name] = module
    return module


@functools.cache
def _kernel_module(cell_name: str, role: str, config_name: str, profile: str, interpret: bool) -> ModuleType:
    from tunekit.cells import get_cell

    # both reach the generated file's name and header comment: canonical-name characters only
    tunekit_cache.check_entry_name(config_name, "config name")
    tunekit_cache.check_entry_name(profile, "config profile")
    source = render(KernelSpec(get_cell(cell_name), role), {"name": config_name, "profile": profile})
    return _import_source(source, f"{config_name}-{role}", interpret)


def load_kernels(cell: str, config: Any, dtype: torch.dtype | str, interpret: bool) -> tuple[Any, Any]:
    """(forward, backward) @triton.jit kernels of ``cell``, cached by the config's canonical name.

    ``config`` is a KernelConfig or a mapping; only its name and profile reach the generated
    file's header (the kernels take every size as a constexpr argument, see
    :func:`kernel_signature`). ``dtype`` is checked: the kernels are generic over the pointer
    dtype. With ``interpret=True`` the objects are Triton InterpretedFunctions, otherwise
    JITFunctions that ``triton.compile(ASTSource(fn=kernel, ...))`` accepts.
    """
    _dtype_name(dtype)
    name, profile = describe_config(config)
    forward = _kernel_module(cell, "forward", name, profile, interpret)
    backward = _kernel_module(cell, "backward", name, profile, interpret)
    return getattr(forward, KERNEL_NAMES["forward"]), getattr(backward, KERNEL_NAMES["backward"])


def kernel_signature(
    role: str,
    cell: str,
    dtype: torch.dtype | str,
    *,
    head_dim: int,
    block_b: int,
    d_pad: int | None = None,
    dot_fp32: bool = False,
    dot_precision: str = "tf32",
    arch: int = 80,
    num_warps: int = 4,
    r_once: int = 0,
    tf32_truncate: bool = False,
) -> tuple[dict[str, str], dict[str, Any]]:
    """(signature, constexprs) for ``triton.compile(ASTSource(fn=kernel, signature=..., constexprs=...))``.

    Pointers carry the input dtype except the fp32 outputs of the backward (``dry``, ``db``,
    ``ds0``) and the fp32 incoming gradients; B, T, N, D and HAS_S0 are i32 runtime values, never
    specialized (one compile serves every D of a ``d_pad`` tile). ``arch``, ``num_warps`` and
    ``r_once`` choose the backward's dot forms (:func:`backward_dot_forms`). Compile with
    :func:`compile_options`, as a launch does, so that registers and spills match it.
    """
    if role not in KERNEL_NAMES:
        raise ValueError(f"role: got {role!r}, expected one of {sorted(KERNEL_NAMES)}")
    name = _dtype_name(dtype)
    ptr = _TRITON_PTR[name]
    if role == "forward":
        pointers = {"wx_ptr": ptr, "r_ptr": ptr, "b_ptr": ptr, "s0_ptr": ptr, "out_ptr": ptr, "last_ptr": ptr}
    else:
        pointers = {"wx_ptr": ptr, "r_ptr": ptr, "b_ptr": ptr, "s0_ptr": ptr, "states_ptr": ptr}
        pointers |= {"dstates_ptr": "*fp32", "dlast_ptr": "*fp32", "dwx_ptr": ptr}
        pointers |= {"dry_ptr": "*fp32", "db_ptr": "*fp32", "ds0_ptr": "*fp32"}
    d_pad = d_pad if d_pad is not None else _pow2_at_least(head_dim, 16)
    constexprs = _constexprs(role, name, d_pad, block_b, num_warps, arch, r_once, dot_fp32, dot_precision,
                             tf32_truncate)  # fmt: skip
    constexprs = {"D": head_dim} | constexprs
    runtime = {"B": "i32", "T": "i32", "N": "i32", "HAS_S0": "i32"}
    return pointers | runtime | {k: "constexpr" for k in constexprs}, constexprs


def _constexprs(
    role: str,
    dtype: str,
    d_pad: int,
    block_b: int,
    num_warps: int,
    arch: int,
    r_once: int,
    dot_fp32: bool,
    dot_precision: str,
    tf32_truncate: bool,
) -> dict[str, Any]:
    """The constexpr arguments of one kernel (the backward also takes its dot forms)."""
    precision = dot_precision if dtype == "float32" else "ieee"  # only fp32 operands have a choice
    out = {
        "D_PAD": d_pad,
        "BLOCK_B": block_b,
        "DOT_FP32": dot_fp32,
        "DOT_PRECISION": precision,
        "TF32_TRUNCATE": tf32_truncate and precision == "tf32",
    }
    if role == "backward":
        forms = backward_dot_forms(arch, _BYTES[dtype], d_pad, block_b, num_warps, r_once)
        out |= dict(zip(("RY_UNITS", "DH_UNITS"), forms, strict=True))
    return out


def kernel_constexprs(role: str, dtype: torch.dtype | str, params: LaunchParams) -> dict[str, Any]:
    """The constexprs of a compiled ``role`` launch of ``params`` (no interpreter workarounds), for
    runtimes that launch the kernels themselves (the generated packages)."""
    p = params
    return _constexprs(role, _dtype_name(dtype), p.d_pad, p.block_b, p.num_warps, p.arch, p.r_once, False,
                       p.dot_precision, False)  # fmt: skip


def compile_options(num_warps: int, num_stages: int, gpu: Any) -> dict[str, Any]:
    """Options of ``triton.compile`` (and launch keywords) every triton-fused kernel gets.

    ``maxnreg`` is the register cap of the block (:func:`register_cap`). Without it, ptxas picks its
    own budget from the PTX's ``.reqntid`` and spills a few bytes to reach an occupancy step
    (measured with Triton 3.9's ptxas: a GRU bf16 D=56 forward at 4 warps settled at 128 registers
    and spilled 16 B; with ``.maxnreg 255`` it takes 126 and spills nothing). With it, a kernel
    spills only when it needs more registers than the cap, which is what the model checks.
    """
    return {
        "num_warps": num_warps,
        "num_stages": num_stages,
        "maxnreg": register_cap(num_warps, gpu),
        "enable_fp_fusion": True,  # Triton's default: fma contraction
    }


# ---- the interpreter's bf16 tl.dot --------------------------------------------------------------
# Triton 3.9's interpreter returns garbage (errors ~1e10) for tl.dot on bfloat16 operands. Upcasting
# bf16 operands to fp32 before the dot is exact (a bf16 x bf16 product is exact in fp32, as on
# tensor cores; only the accumulation order differs), so in the interpreter bf16 kernels run with
# DOT_FP32=True whenever this probe finds the raw bf16 dot wrong. Compiled kernels never upcast.


def _probe_dot(a_ptr, b_ptr, out_ptr, M: tl.constexpr):
    """out = a @ b for one M x M tile (run only through the interpreter, see bf16_dot_is_exact)."""
    idx = tl.arange(0, M)
    tile = idx[:, None] * M + idx[None, :]
    tl.store(out_ptr + tile, tl.dot(tl.load(a_ptr + tile), tl.load(b_ptr + tile), out_dtype=tl.float32))


def interpreter_dot_error(dtype: torch.dtype, size: int = 16) -> float:
    """Largest relative error of the interpreter's raw tl.dot on ``dtype`` operands (seeded tile)."""
    from triton.runtime.interpreter import InterpretedFunction

    generator = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=generator).to(dtype)
    b = torch.randn(size, size, generator=generator).to(dtype)
    out = torch.empty(size, size)
    InterpretedFunction(_probe_dot)[(1,)](a, b, out, M=size)
    exact = a.double() @ b.double()
    return float((out.double() - exact).abs().max() / exact.abs().max())


@functools.cache
def bf16_dot_is_exact() -> bool:
    """Whether the interpreter's tl.dot on bf16 operands is right (fp32 accumulation error only)."""
    return interpreter_dot_error(torch.bfloat16) < 1e-4


def dot_fp32_for(dtype: torch.dtype, interpret: bool) -> bool:
    """DOT_FP32 for a launch: only in the interpreter, only for bf16, only while its dot is wrong."""
    return interpret and dtype == torch.bfloat16 and not bf16_dot_is_exact()


# ---- host launchers -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Launch:
    """Everything a forward or backward launch needs besides tensors."""

    cell: str
    states: int  # S
    params: LaunchParams
    profile: str
    interpret: bool
    dot_fp32: bool
    maxnreg: int  # register cap per thread (compile_options)

    def kernels(self, dtype: torch.dtype) -> tuple[Any, Any]:
        config = {"name": self.params.name, "profile": self.profile}
        return load_kernels(self.cell, config, dtype, self.interpret)

    def constexprs(self, role: str, dtype: torch.dtype, d: int, has_s0: bool) -> dict[str, Any]:
        """Keyword arguments of a ``role`` launch: D, HAS_S0, the constexprs and the compile options."""
        p = self.params
        name = _dtype_name(dtype)
        # the interpreter's tl.dot ignores input_precision: cut fp32 operands to tf32 there by hand
        truncate = self.interpret and name == "float32"
        out = _constexprs(role, name, p.d_pad, p.block_b, p.num_warps, p.arch, p.r_once, self.dot_fp32,
                          p.dot_precision, truncate)  # fmt: skip
        options = {"num_warps": p.num_warps, "num_stages": p.num_stages, "maxnreg": self.maxnreg}
        return {"D": d, "HAS_S0": int(has_s0)} | out | options


def _forward(
    launch: _Launch, wx: torch.Tensor, r: torch.Tensor, b: torch.Tensor, s0: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    batch, steps, _, heads, d = wx.shape
    out = torch.empty(launch.states, batch, steps, heads, d, dtype=wx.dtype, device=wx.device)
    last = torch.empty(launch.states, batch, 1, heads, d, dtype=wx.dtype, device=wx.device)
    forward, _ = launch.kernels(wx.dtype)
    grid = (heads, triton.cdiv(batch, launch.params.block_b))
    forward[grid](
        wx, r, b, last if s0 is None else s0, out, last,  # s0 is not read when HAS_S0 is False
        batch, steps, heads,
        **launch.constexprs("forward", wx.dtype, d, s0 is not None),
    )  # fmt: skip
    return out, last


def _backward(
    launch: _Launch,
    saved: tuple[torch.Tensor, ...],
    s0: torch.Tensor | None,
    d_states: torch.Tensor | None,
    d_last: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    wx, r, b, states = saved
    batch, steps, _, heads, d = wx.shape
    fp32 = {"dtype": torch.float32, "device": wx.device}
    d_states = torch.zeros(states.shape, **fp32) if d_states is None else d_states.float().contiguous()
    d_last = torch.zeros(launch.states, batch, 1, heads, d, **fp32) if d_last is None else d_last.float()
    blocks = triton.cdiv(batch, launch.params.block_b)
    dwx = torch.empty_like(wx)
    dry = torch.empty(batch, steps, r.shape[0], heads, d, **fp32)
    db_blocks = torch.empty(blocks, b.shape[0], heads, d, **fp32)
    ds0 = torch.zeros(launch.states, batch, 1, heads, d, **fp32)  # no-gradient states stay zero
    _, backward = launch.kernels(wx.dtype)
    backward[(heads, blocks)](
        wx, r, b, states if s0 is None else s0, states, d_states, d_last.contiguous(),
        dwx, dry, db_blocks, ds0,
        batch, steps, heads,
        **launch.constexprs("backward", wx.dtype, d, s0 is not None),
    )  # fmt: skip
    # dR = sum over (b, t) of dry (x) y_(t-1): one GEMM over B*T per head and gate
    y0 = torch.zeros(batch, 1, heads, d, **fp32) if s0 is None else s0[0].float()
    y_prev = torch.cat([y0, states[0, :, :-1].float()], dim=1)
    dr = torch.einsum("btgni,btnj->gnij", dry, y_prev).to(r.dtype)
    db = db_blocks.sum(dim=0).to(b.dtype)
    return dwx, dr, db, None if s0 is None else ds0.to(s0.dtype)


SECOND_DERIVATIVE_ERROR = (
    "backend 'triton-fused' is once differentiable: its backward kernel has no derivative of its own, "
    "so a gradient taken with create_graph=True cannot be differentiated again (a gradient penalty, "
    "a Hessian-vector product); use backend='reference' for second derivatives"
)


class _NoSecondDerivative(torch.autograd.Function):
    """Passes first derivatives through; differentiating them raises (a clear error, never a wrong answer).

    torch's ``once_differentiable`` attaches its error only when the incoming gradients require grad,
    so a penalty on ``grad(loss.sum(), R, create_graph=True)`` would silently get no second-order
    term; here the node hangs on the inputs the derivatives depend on (Wx, R, b, states).
    """

    @staticmethod
    def forward(ctx, anchors: int, *tensors):  # type: ignore[override]
        return tuple(t.view_as(t) for t in tensors[anchors:])

    @staticmethod
    def backward(ctx, *grads):  # type: ignore[override]
        raise RuntimeError(SECOND_DERIVATIVE_ERROR)


class FusedRNNFunction(torch.autograd.Function):
    """Autograd wrapper: the loss may depend on every state and on the final states.

    Once differentiable: the backward kernel is not itself differentiated, so a second derivative
    (``torch.autograd.grad(..., create_graph=True)`` then a backward through that gradient) raises
    RuntimeError instead of returning a silently wrong answer; use ``backend="reference"`` for it.
    """

    @staticmethod
    def forward(ctx, wx, r, b, s0, launch: _Launch):  # type: ignore[override]
        states, last = _forward(launch, wx, r, b, s0)
        ctx.launch = launch
        ctx.save_for_backward(wx, r, b, states, s0)
        return states, last

    @staticmethod
    def backward(ctx, d_states, d_last):  # type: ignore[override]
        wx, r, b, states, s0 = ctx.saved_tensors
        with torch.no_grad():
            grads = _backward(ctx.launch, (wx, r, b, states), s0, d_states, d_last)
        anchors = [t for t in (wx, r, b, s0, d_states, d_last) if t is not None and t.requires_grad]
        if torch.is_grad_enabled() and anchors:  # create_graph=True: a second derivative may follow
            present = [g for g in grads if g is not None]
            it = iter(_NoSecondDerivative.apply(len(anchors), *anchors, *present))
            grads = tuple(None if g is None else next(it) for g in grads)
        return (*grads, None)


# ---- public entry point -------------------------------------------------------------------------


def _interpreting(device: torch.device) -> bool:
    """Interpreter when TRITON_INTERPRET=1; compiled kernels on CUDA; otherwise a clear error."""
    if triton.knobs.runtime.interpret:
        return True
    if device.type != "cuda":
        raise RuntimeError(f"backend 'triton-fused' got tensors on {device}: {_CPU_MESSAGE}")
    return False


@functools.lru_cache(maxsize=64)
def tuned_config(
    cell: str, batch: int, heads: int, head_dim: int, dtype: str, *, interpret: bool, gpu: str | None = None
) -> Any:
    """The tuner's best triton-fused config (forward and backward) for this shape.

    ``gpu``: a profile name; None means the local GPU, or "a100" when there is none. On a GPU a
    shape the model rejects raises :class:`tunekit.tuning.NoFeasibleConfig` (its message says how
    to see why; pass a ``config`` or use another backend). In Triton's interpreter nothing is
    limited by on-chip memory and the tile choice does not change the numbers, so such a shape runs
    with :data:`DEFAULT_CONFIG` instead.
    """
    from tunekit.hardware import detect_profile, load_profile
    from tunekit.problem import Problem
    from tunekit.tuning import NoFeasibleConfig, tune

    if gpu is not None:
        profile = load_profile(gpu)
    else:
        profile = detect_profile() if torch.cuda.is_available() else load_profile("a100")
    problem = Problem(cell=cell, batch=batch, heads=heads, head_dim=head_dim, dtype=dtype, direction="both")
    try:
        return tune(problem, profile, backend=FAMILY).config
    except NoFeasibleConfig:
        if interpret:
            return DEFAULT_CONFIG
        raise


def fused_rnn(
    Wx: torch.Tensor,
    R: torch.Tensor,
    b: torch.Tensor,
    states: torch.Tensor | None = None,
    *,
    cell: str,
    config: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``cell`` over a sequence with the fused Triton kernels; differentiable in every input.

    Wx: [B, T, G_w, N, D] input contributions; R: [G_r, N, D, D] (output index first);
    b: [G_t, N, D]; states: [S, B, 1, N, D] initial states or None (zeros). All share one dtype
    (float32, float16, bfloat16) and device. Returns (all_states [S, B, T, N, D], last
    [S, B, 1, N, D]) in that dtype. ``config``: a KernelConfig or a mapping with ``block_b``,
    ``num_warps``, ``num_stages`` (and optionally ``d_pad``, ``dot_precision``), checked strictly
    (:func:`tunekit.config_check.check_config`); None asks the tuner
    (:func:`tuned_config`: for the local GPU; for "a100" in the interpreter).
    """
    from tunekit.cells import get_cell

    declaration = get_cell(cell)
    _check_inputs(declaration, Wx, R, b, states)
    batch, _, _, heads, head_dim = Wx.shape
    dtype = _dtype_name(Wx.dtype)
    interpret = _interpreting(Wx.device)
    tensors = (Wx, R, b, states)
    training = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    if config is None:
        config = tuned_config(declaration.name, batch, heads, head_dim, dtype, interpret=interpret)
    gpu = None if interpret else _device_profile(Wx.device.index)
    params = launch_params(
        config, declaration.name, head_dim, dtype, batch=batch, heads=heads, training=training,
        arch=None if gpu is None else gpu.arch,
    )  # fmt: skip
    if params.d_pad < kernel_head_dim(head_dim):
        raise ValueError(
            f"config d_pad: got {params.d_pad}, expected >= {kernel_head_dim(head_dim)} for D={head_dim}"
        )
    launch = _Launch(
        cell=declaration.name,
        states=len(declaration.states),
        params=params,
        profile=describe_config(config)[1],
        interpret=interpret,
        dot_fp32=dot_fp32_for(Wx.dtype, interpret),
        maxnreg=register_cap(params.num_warps, gpu) if gpu is not None else 255,
    )
    d_run = kernel_head_dim(head_dim)
    if d_run == head_dim:
        s0 = None if states is None else _aligned(states)
        return FusedRNNFunction.apply(_aligned(Wx), _aligned(R), _aligned(b), s0, launch)
    # rows of D % 8 != 0 elements are not 16-byte aligned: run on zero-padded copies (D -> d_run; the
    # padded lanes never reach the real ones, R's padded rows and columns being zero) and slice
    pad = d_run - head_dim
    s0 = None if states is None else F.pad(states, (0, pad))
    out, last = FusedRNNFunction.apply(
        F.pad(Wx, (0, pad)), F.pad(R, (0, pad, 0, pad)), F.pad(b, (0, pad)), s0, launch
    )
    return out[..., :head_dim].contiguous(), last[..., :head_dim].contiguous()


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t`` contiguous and 16-byte aligned, as the kernels were compiled for (a copy only if not)."""
    t = t.contiguous()
    return t if t.data_ptr() % 16 == 0 else t.clone()


@functools.cache
def _device_profile(index: int | None) -> Any:
    """The profile of the CUDA device kernels launch on: its arch picks the dot forms, its register
    file the register cap."""
    from tunekit.hardware import detect_profile

    return detect_profile(torch.cuda.current_device() if index is None else index)


def _check_inputs(
    cell: Any, wx: torch.Tensor, r: torch.Tensor, b: torch.Tensor, s0: torch.Tensor | None
) -> None:
    """Shapes, dtypes and devices the kernels rely on."""
    if wx.dim() != 5:
        raise ValueError(f"Wx: got shape {tuple(wx.shape)}, expected [B, T, G_w, N, D]")
    batch, steps, _, heads, d = wx.shape
    expected = {
        "Wx": (wx, (batch, steps, len(cell.w_gates), heads, d)),
        "R": (r, (len(cell.r_gates), heads, d, d)),
        "b": (b, (len(cell.b_gates), heads, d)),
    }
    if s0 is not None:
        expected["states"] = (s0, (len(cell.states), batch, 1, heads, d))
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            got = tuple(tensor.shape)
            raise ValueError(f"{name}: got shape {got}, expected {shape} for cell {cell.name!r}")
        if tensor.dtype != wx.dtype or tensor.device != wx.device:
            raise ValueError(
                f"{name}: got {tensor.dtype} on {tensor.device}, expected {wx.dtype} on {wx.device} (as Wx)"
            )
    if min(batch, steps, heads, d) < 1:
        raise ValueError(f"Wx: got shape {tuple(wx.shape)}, expected B, T, N, D >= 1")
