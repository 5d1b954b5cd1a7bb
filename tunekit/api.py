"""The functional entry point ``tunekit.rnn`` and the registry of backends it dispatches to.

A backend is a function ``fn(Wx, R, b, states, *, cell, config) -> (all_states, last)`` with the
layouts of DESIGN §3. Built-in backends are registered here by "module:function" path and
imported on first use (so the reference never imports Triton); another module or a user adds one
with :func:`register_backend` without editing this file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from tunekit.cells import Cell, get_cell
from tunekit.checks import check_rnn_inputs

BackendFn = Callable[..., tuple[torch.Tensor, torch.Tensor]]
# availability check: the inputs' device -> None when the backend can run there, else the reason
Availability = Callable[[torch.device], str | None]

# backends that DESIGN §1 names but that no module provides yet: known, never available
PLANNED_BACKENDS: tuple[str, ...] = ()
# what "auto" tries on a GPU when the tuner's family for the shape cannot run, best first; the
# reference always works and closes the list
AUTO_PREFERENCE = ("triton-fused", "cuda-fused", "cuda-alternating")


class BackendUnavailableError(RuntimeError):
    """A known backend that cannot run here (not installed, wrong device, not implemented yet)."""


@dataclass
class _Backend:
    target: BackendFn | str  # the function, or "module:function" imported on first use
    available: Availability | None = None

    def load(self, name: str) -> BackendFn:
        if callable(self.target):
            return self.target
        module_name, _, attr = self.target.partition(":")
        try:
            self.target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as error:
            raise BackendUnavailableError(
                f"backend {name!r} is known but unavailable here: importing {self.target} failed ({error})"
            ) from error
        return self.target

    def why_not(self, device: torch.device) -> str | None:
        return None if self.available is None else self.available(device)


_BACKENDS: dict[str, _Backend] = {}


def register_backend(
    name: str, fn: BackendFn | str, *, available: Availability | None = None, replace: bool = False
) -> None:
    """Make ``backend=name`` dispatch to ``fn`` (a function or a lazy "module:function" path).

    ``available(device)`` returns None when the backend can run on that device, else the reason.
    """
    if not isinstance(name, str) or not name or name == "auto":
        raise ValueError(f"name: got {name!r}, expected a non-empty backend name other than 'auto'")
    if not (callable(fn) or (isinstance(fn, str) and ":" in fn)):
        raise ValueError(f"fn: got {fn!r}, expected a function or a 'module:function' path")
    if name in _BACKENDS and not replace:
        raise ValueError(f"name: backend {name!r} is already registered; pass replace=True to replace it")
    _BACKENDS[name] = _Backend(fn, available)


def known_backends() -> list[str]:
    """Every name ``backend=`` accepts: "auto", the registered backends and the planned ones."""
    return ["auto", *sorted(_BACKENDS), *(p for p in PLANNED_BACKENDS if p not in _BACKENDS)]


def _triton_available(device: torch.device) -> str | None:
    """Triton runs compiled on CUDA tensors, or anywhere in its interpreter (TRITON_INTERPRET=1)."""
    if device.type == "cuda":
        return None
    try:
        import triton
    except ImportError as error:
        return f"triton is not installed ({error})"
    if triton.knobs.runtime.interpret:
        return None
    return f"tensors are on {device}: needs a CUDA GPU, or TRITON_INTERPRET=1 for the (slow) interpreter"


def _cuda_available(device: torch.device) -> str | None:
    """The CUDA families run through NVRTC on CUDA tensors (tunekit[cuda]), or their own source in
    the CPU emulator on CPU tensors (its env var)."""
    from tunekit.cuda import EMULATOR_ENV, emulator_enabled

    if device.type == "cuda":
        try:
            import cuda.core  # noqa: F401
        except ImportError as error:
            return f"cuda-python is not installed ({error}): pip install 'tunekit[cuda]'"
        return None
    if emulator_enabled():
        return None
    return (
        f"tensors are on {device}: needs a CUDA GPU (pip install 'tunekit[cuda]'), or {EMULATOR_ENV}=1 "
        "to run the kernels' own source in tunekit's CPU emulator (slow; for validation)"
    )


register_backend("reference", "tunekit.reference:rnn")
register_backend("triton-fused", "tunekit.kernels.triton_fused:fused_rnn", available=_triton_available)
register_backend("cuda-fused", "tunekit.kernels.cuda_fused:fused_rnn", available=_cuda_available)
register_backend(
    "cuda-alternating", "tunekit.kernels.cuda_alternating:alternating_rnn", available=_cuda_available
)


def _tuned_family(cell: Cell, Wx: torch.Tensor, grad: bool) -> str | None:
    """On a GPU: the family the tuner picks for this shape on the local GPU, if one exists."""
    from tunekit.hardware_detect import detect_profile
    from tunekit.problem import Problem
    from tunekit.tuning import NoFeasibleConfig, tune

    batch, _, _, heads, head_dim = Wx.shape
    dtype = str(Wx.dtype).removeprefix("torch.")
    try:
        problem = Problem(cell.name, batch, heads, head_dim, dtype, "both" if grad else "forward")
        return tune(problem, detect_profile(Wx.device.index or 0), backend="auto", top=1).backend
    except (NoFeasibleConfig, ValueError):
        return None


def resolve_backend(backend: str, device: torch.device) -> str:
    """The backend that will run: "auto" becomes the best available one (the reference on CPU)."""
    if backend == "auto":
        if device.type != "cuda":
            return "reference"
        for name in AUTO_PREFERENCE:
            if name in _BACKENDS and _BACKENDS[name].why_not(device) is None:
                return name
        return "reference"
    if backend in PLANNED_BACKENDS and backend not in _BACKENDS:
        raise BackendUnavailableError(
            f"backend {backend!r} is known but not implemented yet; use 'reference' or 'auto'"
        )
    if backend not in _BACKENDS:
        raise ValueError(f"backend: got {backend!r}, expected one of {known_backends()}")
    reason = _BACKENDS[backend].why_not(device)
    if reason is not None:
        raise BackendUnavailableError(f"backend {backend!r} is known but unavailable here: {reason}")
    return backend


def rnn(
    Wx: torch.Tensor,
    R: torch.Tensor,
    b: torch.Tensor,
    states: torch.Tensor | None = None,
    *,
    cell: str | Cell,
    backend: str = "reference",
    config: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a recurrent ``cell`` over a sequence; differentiable in Wx, R, b and states.

    Wx: [B, T, G_w, N, D] input contributions (already projected); R: [G_r, N, D, D] block-diagonal
    recurrence, output index first; b: [G_t, N, D]; states: [S, B, 1, N, D] initial states (zeros
    when None). Returns (all_states [S, B, T, N, D], last [S, B, 1, N, D]); ``all_states[0]`` is the
    hidden output. ``cell``: a name ("lstm", "gru", "slstm", "elman") or a :class:`Cell`;
    ``backend``: one of :func:`known_backends`; ``config``: the backend's tuned configuration or None.
    """
    declaration = get_cell(cell)
    check_rnn_inputs(declaration, Wx, R, b, states)
    if not isinstance(backend, str):
        raise ValueError(f"backend: got {type(backend).__name__}, expected one of {known_backends()}")
    name = resolve_backend(backend, Wx.device)
    if backend == "auto" and Wx.device.type == "cuda":
        grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (Wx, R, b, states))
        tuned = _tuned_family(declaration, Wx, grad)
        if tuned in _BACKENDS and _BACKENDS[tuned].why_not(Wx.device) is None:
            name = tuned  # the tuner's family for this shape, where it is implemented and can run
    function = _BACKENDS[name].load(name)
    if name == "reference":
        return function(Wx, R, b, states, cell=declaration, config=config)
    try:
        registered = get_cell(declaration.name) is declaration
    except ValueError:
        registered = False
    if not registered:
        raise ValueError(
            f"cell: backend {name!r} loads cells by name; got an unregistered Cell {declaration.name!r}, "
            "expected tunekit.cells.register_cell(cell) first"
        )
    if backend != "auto" or config is not None:
        return function(Wx, R, b, states, cell=declaration.name, config=config)
    from tunekit.tuning import NoFeasibleConfig

    try:
        return function(Wx, R, b, states, cell=declaration.name, config=None)
    except NoFeasibleConfig:
        # "auto" asked for the best backend that can run this shape here: the tuned kernel cannot
        # hold it on this GPU (tunekit explain says why), the reference can
        return _BACKENDS["reference"].load("reference")(Wx, R, b, states, cell=declaration, config=None)
