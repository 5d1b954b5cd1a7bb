"""A small CUDA kernel family that ``tunekit generate`` can package, for its tests.

The cuda-alternating and cuda-fused runtimes are written elsewhere; this one is complete enough to
prove the packaging path end to end: :func:`programs` renders a real recurrence kernel for any
registered cell (the cell's printed CUDA code, tk_cuda.cuh, one block per (head, batch row), one
thread per unit, R·y as a loop over shared memory, forward only), :func:`launch_dims` its shape, and
:func:`package_runtime` the package's ``_runtime.py`` that launches it through the package's
``_cuda.launch``. The tests put this module in place of ``cuda-alternating``.
"""

from __future__ import annotations

from typing import Any

import jinja2

from tunekit.cells import get_cell
from tunekit.cells.printers import CUDA_PRELUDE
from tunekit.codegen import cell_context
from tunekit.cuda import CudaProgram, KernelEntry, LaunchDims

FAMILY = "cuda-alternating"
CTYPES = {"float32": "float", "float16": "tk::f16", "bfloat16": "tk::bf16"}

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

_KERNEL = _ENV.from_string("""\
// test family kernel for {{ name }}
#include "tk_cuda.cuh"

{{ prelude }}

TK_KERNEL void TK_LAUNCH_BOUNDS({{ D }}, 1)
step_loop(tk::ptr<const {{ T }}> wx,    // [B, T, {{ w_gates | length }}, N, D]
          tk::ptr<const {{ T }}> r,     // [{{ r_gates | length }}, N, D, D]
          tk::ptr<const {{ T }}> b,     // [{{ b_gates | length }}, N, D]
          tk::ptr<const {{ T }}> s0,    // [{{ states | length }}, B, 1, N, D], read when has_s0
          tk::ptr<{{ T }}> out,         // [{{ states | length }}, B, T, N, D]
          tk::ptr<{{ T }}> last,        // [{{ states | length }}, B, 1, N, D]
          int B, int steps, int has_s0) {
  constexpr int N = {{ N }}, D = {{ D }}, GW = {{ w_gates | length }};
  const int n = blockIdx.x, row = blockIdx.y, i = threadIdx.x;
  TK_SHARED(float, y_s, D);
{% for st in states %}
  float s_{{ st }} = has_s0 ? tk::to_float(s0[(({{ loop.index0 }} * B + row) * N + n) * D + i]) : 0.0f;
{% endfor %}
{% for g in b_gates %}
  const float b_{{ g }} = tk::to_float(b[({{ loop.index0 }} * N + n) * D + i]);
{% endfor %}
  y_s[i] = s_{{ hidden }};
  __syncthreads();
  for (int t = 0; t < steps; ++t) {
{% for g in r_gates %}
    float ry_{{ g }} = 0.0f;
    auto r_{{ g }} = r + (({{ loop.index0 }} * N + n) * D + i) * D;
    for (int j = 0; j < D; ++j) ry_{{ g }} += tk::to_float(r_{{ g }}[j]) * y_s[j];
{% endfor %}
{% for g in w_gates %}
    const int wx_{{ g }}_at = (((row * steps + t) * GW + {{ loop.index0 }}) * N + n) * D + i;
    const float wx_{{ g }} = tk::to_float(wx[wx_{{ g }}_at]);
{% endfor %}
{% for target, expr in forward_code %}
    const float {{ target }} = {{ expr }};
{% endfor %}
{% for st in states %}
    s_{{ st }} = s_{{ st }}_new;
    const int out_{{ st }}_at = (({{ loop.index0 }} * B + row) * steps + t) * N * D + n * D + i;
    out[out_{{ st }}_at] = tk::from_float<{{ T }}>(s_{{ st }});
{% endfor %}
    __syncthreads();  // every thread has read y_s
    y_s[i] = s_{{ hidden }};
    __syncthreads();
  }
{% for st in states %}
  last[(({{ loop.index0 }} * B + row) * N + n) * D + i] = tk::from_float<{{ T }}>(s_{{ st }});
{% endfor %}
}
""")

_RUNTIME = _ENV.from_string('''\
"""Host code of the test family: one launch of step_loop (forward only)."""

import torch

from . import _config, _cuda

DTYPE = getattr(torch, _config.DTYPE)
BATCH = {{ problem.batch }}  # the launch shape fixes the batch


def rnn(Wx, R, b, states=None):
    """Forward only, batch {{ problem.batch }}: (all_states [S, B, T, N, D], last [S, B, 1, N, D])."""
    batch, steps, _, heads, d = Wx.shape
    if batch != BATCH or heads != _config.HEADS or d != _config.HEAD_DIM or Wx.dtype != DTYPE:
        raise ValueError(f"Wx: got {tuple(Wx.shape)} {Wx.dtype}, expected [{BATCH}, T, G, {_config.HEADS}, "
                         f"{_config.HEAD_DIM}] {DTYPE}")
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (Wx, R, b, states)):
        raise RuntimeError("forward only: run under torch.no_grad()")
    s = len(_config.STATES)
    out = torch.empty(s, batch, steps, heads, d, dtype=DTYPE, device=Wx.device)
    last = torch.empty(s, batch, 1, heads, d, dtype=DTYPE, device=Wx.device)
    s0 = last if states is None else states.contiguous()
    _cuda.launch("step_loop", [Wx.contiguous(), R.contiguous(), b.contiguous(), s0, out, last, batch, steps,
                               int(states is not None)])
    return out, last
''')

PARAMS = (
    ("wx", "ptr"),
    ("r", "ptr"),
    ("b", "ptr"),
    ("s0", "ptr"),
    ("out", "ptr"),
    ("last", "ptr"),
    ("B", "i32"),
    ("steps", "i32"),
    ("has_s0", "i32"),
)


def programs(config: Any) -> tuple[CudaProgram, ...]:
    """One program: the step loop, rendered for the configuration's cell, dtype and shape."""
    p = config.problem
    context = cell_context(get_cell(p.cell), "cuda", backward=False)
    source = _KERNEL.render(
        **context, name=config.name, prelude=CUDA_PRELUDE, T=CTYPES[p.dtype], N=p.heads, D=p.head_dim
    )
    return (CudaProgram(f"{config.name}-steploop", source, (KernelEntry("step_loop", PARAMS),)),)


def launch_dims(config: Any, entry: str) -> LaunchDims:
    """A block per (head, batch row), a thread per unit."""
    p = config.problem
    return LaunchDims(grid=(p.heads, p.batch, 1), block=(p.head_dim, 1, 1), shared_bytes=0)


def predicted(config: Any, entry: str) -> dict[str, int]:
    return {"registers_per_thread": 64, "shared_memory_bytes_per_block": 4 * config.problem.head_dim}


def package_runtime(config: Any, context: dict) -> str:
    """The package's _runtime.py for this family."""
    return _RUNTIME.render(problem=config.problem)
