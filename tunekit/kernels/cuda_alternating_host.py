"""cuda-alternating host launchers: padded buffers, the per-step launch sequences, and autograd.

Buffers (per head n; ``Geometry`` gives every padded size, pads are zeros that are never written):

* ``r_pad [N, gate_ld, r_ld]``: R with its gates stacked along rows (row ``g*D + i`` is
  ``R[g, n, i, :]``); A of the forward GEMM (k contiguous) and, read transposed, of the backward's.
  Every GEMM operand is stored in the mma's format (fp32 rounded to tf32) by the kernel that
  writes it: ``pack_weights`` and ``pack_hidden`` for R and the initial hidden state.
* ``y [N, y_rows, y_ld]``: the hidden state rounded to the input dtype, one slot of ``b_pad`` rows
  per step (slot 0: the initial hidden state); B of the forward GEMM and of the weight GEMM.
  Without gradients one slot is reused.
* ``g [slots, N, b_pad, gate_ld]`` fp32: ``R·y`` of each step (kept for the backward).
* backward: ``dg``/``dbias [N, k_rows, ·]`` the rounded gradients of ``R·y`` and of the bias
  inputs, row ``t*b_pad + b``; ``dh [N, b_pad, dh_ld]`` fp32 ``Rᵀ·dg`` of the step after;
  ``w [N, w_rows, w_ld]`` fp32 ``[dR | db]`` from the one weight GEMM over all (b, t).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch

from tunekit.cells import get_cell
from tunekit.kernels.cuda_alternating import Geometry, _program, launch_dims
from tunekit.problem import KernelConfig
from tunekit.solvers import ceil_div, round_up

__all__ = ["AlternatingFunction", "Launch"]


@dataclass(frozen=True)
class Launch:
    """A configuration, the runner that launches its programs, and whether to keep the history
    the backward needs (every step's ``R·y`` and ``y``)."""

    config: KernelConfig
    runner: Any  # tunekit.cuda.CudaRunner
    keep_history: bool = True

    @functools.cached_property
    def geometry(self) -> Geometry:
        return Geometry.of(self.config)

    def __call__(self, role: str, entry: str, *args: Any) -> None:
        self.runner.launch(_program(self.config, role), entry, launch_dims(self.config, entry), list(args))


def _forward(launch: Launch, wx: torch.Tensor, r: torch.Tensor, b: torch.Tensor, s0: torch.Tensor | None):
    """(all_states, last, r_pad, g, y): the outputs and what the backward reads."""
    geo, cell = launch.geometry, get_cell(launch.config.problem.cell)
    batch, steps, _, heads, d = wx.shape
    n_states = len(cell.states)
    f32 = {"dtype": torch.float32, "device": wx.device}
    keep = launch.keep_history

    r_pad = wx.new_zeros(heads, geo.gate_ld, geo.r_ld)
    launch("forward", "pack_weights", r, r_pad, heads, d)
    y_rows = geo.y_rows(steps) if keep else geo.b_pad
    y = wx.new_zeros(heads, y_rows, geo.y_ld)
    carry = torch.zeros(n_states, batch, heads, d, **f32)
    if s0 is not None:
        launch("forward", "pack_hidden", s0, y, batch, heads, d, y_rows * geo.y_ld)
        carry.copy_(s0[:, :, 0])
    g = torch.empty(steps if keep else 1, heads, geo.b_pad, geo.gate_ld, **f32)
    out = wx.new_empty(n_states, batch, steps, heads, d)
    last = wx.new_empty(n_states, batch, 1, heads, d)

    r_head, y_head, y_slot = geo.gate_ld * geo.r_ld, y_rows * geo.y_ld, geo.b_pad * geo.y_ld
    g_head = geo.b_pad * geo.gate_ld
    for t in range(steps):
        g_offset, y_offset = (t * heads * g_head, t * y_slot) if keep else (0, 0)
        next_y = (t + 1) * y_slot if keep else 0
        launch("forward", "gemm_forward", r_pad, y, g, ceil_div(d, geo.tk), r_head, y_offset, y_head,
               g_offset, g_head)  # fmt: skip
        launch("forward", "pointwise_forward", wx, g, b, carry, out, last, y, batch, steps, heads, d, t,
               g_offset, g_head, next_y, y_head)  # fmt: skip
    return out, last, r_pad, g, y


def _backward(launch: Launch, saved: tuple[torch.Tensor, ...], d_states, d_last, need_ds0: bool):
    """(dWx, dR, db, ds0 or None) from the forward's saved tensors and the outputs' gradients."""
    wx, r, b, s0, out, r_pad, g, y = saved
    geo, cell = launch.geometry, get_cell(launch.config.problem.cell)
    batch, steps, _, heads, d = wx.shape
    n_states, g_r, g_t = len(cell.states), len(cell.r_gates), len(cell.b_gates)
    f32 = {"dtype": torch.float32, "device": wx.device}

    k_rows, y_rows = geo.k_rows(steps), geo.y_rows(steps)
    dg = wx.new_zeros(heads, k_rows, geo.gate_ld)
    dbias = wx.new_zeros(heads, k_rows, geo.dbias_ld)
    dh = torch.empty(heads, geo.b_pad, geo.dh_ld, **f32)
    dcarry = torch.zeros(n_states, batch, heads, d, **f32)
    if d_last is not None:
        dcarry.copy_(d_last[:, :, 0])
    dstates = dcarry if d_states is None else d_states.float().contiguous()  # not read when absent
    dwx = torch.empty_like(wx)

    g_head, dh_head = geo.b_pad * geo.gate_ld, geo.b_pad * geo.dh_ld
    dg_head, dbias_head = k_rows * geo.gate_ld, k_rows * geo.dbias_ld
    r_head = geo.gate_ld * geo.r_ld
    s0_arg = out if s0 is None else s0  # not read without initial states
    for t in reversed(range(steps)):
        flags = (int(s0 is not None), int(d_states is not None), int(t < steps - 1))
        launch("backward", "pointwise_backward", wx, b, g, out, s0_arg, dstates, dcarry, dh, dwx, dg, dbias,
               batch, steps, heads, d, t, *flags, t * heads * g_head, g_head, dh_head, t * geo.b_pad,
               dg_head, dbias_head)  # fmt: skip
        if t > 0 or need_ds0:  # dh of step 0 only feeds the initial hidden state's gradient
            launch("backward", "gemm_backward", r_pad, dg, dh, ceil_div(g_r * d, geo.tk), r_head,
                   t * geo.b_pad, dg_head, dh_head)  # fmt: skip

    # [dR | db] = dg^T . [y_prev | 1] over every (b, t): one launch
    ones = wx.new_ones(geo.tn)
    w = torch.empty(heads, geo.w_rows, geo.w_ld, **f32)
    launch("backward", "gemm_weight_grad", dg, y, dbias, ones, w, k_rows // geo.tk,
           ceil_div(g_r * d, geo.tm), ceil_div(g_t * d, geo.tm), ceil_div(d, geo.tn),
           dg_head, y_rows * geo.y_ld, dbias_head, geo.w_rows * geo.w_ld)  # fmt: skip
    dr = w[:, : g_r * d, :d].reshape(heads, g_r, d, d).permute(1, 0, 2, 3).to(r.dtype)
    db = w[:, : g_t * d, round_up(d, geo.tn)].reshape(heads, g_t, d).permute(1, 0, 2).to(b.dtype)

    ds0 = None
    if need_ds0:
        ds0 = dcarry.clone()
        ds0[0] += dh[:, :batch, :d].transpose(0, 1)  # the initial hidden state's path through R
        for st in cell.no_grad_states:
            ds0[cell.states.index(st)] = 0.0
        ds0 = ds0.unsqueeze(2).to(s0.dtype)
    return dwx, dr.contiguous(), db.contiguous(), ds0


SECOND_DERIVATIVE = (
    "cuda-alternating: its backward is CUDA kernels, differentiable once; a second derivative through "
    "backend='cuda-alternating' (create_graph=True, then a backward of the gradients) is not supported: "
    "use backend='reference' for higher-order gradients"
)


class _OnceDifferentiated(torch.autograd.Function):
    """Passes first-order gradients through unchanged; differentiating them again raises.

    ``torch.autograd.function.once_differentiable`` only guards when the incoming gradients require
    grad; with ``create_graph=True`` on a loss of constant weights (a gradient penalty) its
    results would silently not depend on the inputs. Anchored to an input that requires grad, these
    outputs do, and their backward says why it cannot run."""

    @staticmethod
    def forward(ctx, anchor, *grads):  # type: ignore[override]
        return tuple(None if g is None else g.detach() for g in grads)

    @staticmethod
    def backward(ctx, *_):  # type: ignore[override]
        raise RuntimeError(SECOND_DERIVATIVE)


class AlternatingFunction(torch.autograd.Function):
    """Autograd wrapper; the loss may depend on every state and on the final states. Differentiable
    once: a second derivative through it raises (:data:`SECOND_DERIVATIVE`)."""

    @staticmethod
    def forward(ctx, wx, r, b, s0, launch: Launch):  # type: ignore[override]
        out, last, r_pad, g, y = _forward(launch, wx, r, b, s0)
        ctx.launch = launch
        ctx.save_for_backward(wx, r, b, s0, out, r_pad, g, y)
        return out, last

    @staticmethod
    def backward(ctx, d_states, d_last):  # type: ignore[override]
        launch: Launch = ctx.launch
        if not launch.keep_history:
            raise RuntimeError(
                "cuda-alternating: the forward ran without gradients (torch.no_grad or no input requiring "
                "grad), so it kept no history for a backward; run it with gradients enabled"
            )
        saved = ctx.saved_tensors
        need_ds0 = saved[3] is not None and ctx.needs_input_grad[3]
        with torch.no_grad():
            grads = _backward(launch, saved, d_states, d_last, need_ds0)
        if torch.is_grad_enabled():  # create_graph=True: the gradients must not pass as constants
            anchors = [t for t in (d_states, d_last, *saved[:4]) if t is not None and t.requires_grad]
            if anchors:
                grads = _OnceDifferentiated.apply(anchors[0], *grads)
        return (*grads, None)
