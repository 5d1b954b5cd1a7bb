"""Input checks shared by every backend and layer: each failure is a ValueError that names the
argument, says what was received (shape, dtype, device) and what was expected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tunekit.cells import Cell


def _shape(tensor: torch.Tensor) -> tuple[int, ...]:
    return tuple(tensor.shape)


def check_tensor(name: str, value: Any, layout: str, rank: int) -> torch.Tensor:
    """A floating-point tensor of ``rank`` dims; ``layout`` (e.g. "[B, T, G_w, N, D]") names them."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name}: got {type(value).__name__}, expected a torch.Tensor {layout}")
    if value.dim() != rank:
        raise ValueError(
            f"{name}: got shape {_shape(value)} ({value.dim()} dims), expected {rank} dims {layout}"
        )
    if not value.dtype.is_floating_point:
        raise ValueError(
            f"{name}: got dtype {value.dtype}, expected a floating-point dtype (float32, float64, …)"
        )
    return value


def _same_place(name: str, tensor: torch.Tensor, reference: torch.Tensor, reference_name: str) -> None:
    if tensor.device != reference.device:
        raise ValueError(
            f"{name}: got a tensor on {tensor.device}, "
            f"expected the device of {reference_name} ({reference.device})"
        )
    if tensor.dtype != reference.dtype:
        raise ValueError(
            f"{name}: got dtype {tensor.dtype}, expected the dtype of {reference_name} ({reference.dtype})"
        )


def check_rnn_inputs(cell: Cell, Wx: Any, R: Any, b: Any, states: Any = None) -> tuple[int, int, int, int]:
    """Check the functional layouts of DESIGN §3 for ``cell``; returns (B, T, N, D)."""
    g_w, g_r, g_t, n_states = len(cell.w_gates), len(cell.r_gates), len(cell.b_gates), len(cell.states)
    check_tensor("Wx", Wx, f"[B, T, G_w={g_w}, N, D]", 5)
    batch, steps, gates, heads, head_dim = Wx.shape
    if gates != g_w:
        raise ValueError(
            f"Wx: got {gates} gates (shape {_shape(Wx)}, dim 2), expected G_w={g_w} for cell "
            f"{cell.name!r} ({', '.join(cell.w_gates)})"
        )
    if steps == 0:
        raise ValueError(f"Wx: got T=0 (shape {_shape(Wx)}), expected at least one time step")
    if min(batch, heads, head_dim) == 0:
        raise ValueError(f"Wx: got shape {_shape(Wx)}, expected B, N and D of at least 1")
    expected = {
        "R": (R, (g_r, heads, head_dim, head_dim), f"[G_r={g_r}, N, D, D]", cell.r_gates),
        "b": (b, (g_t, heads, head_dim), f"[G_t={g_t}, N, D]", cell.b_gates),
    }
    if states is not None:
        expected["states"] = (
            states,
            (n_states, batch, 1, heads, head_dim),
            f"[S={n_states}, B, 1, N, D]",
            cell.states,
        )
    for name, (tensor, shape, layout, slots) in expected.items():
        check_tensor(name, tensor, layout, len(shape))
        if _shape(tensor) != shape:
            raise ValueError(
                f"{name}: got shape {_shape(tensor)}, expected {shape} = {layout} for cell {cell.name!r} "
                f"({', '.join(slots)}) with B={batch}, N={heads}, D={head_dim} taken from Wx {_shape(Wx)}"
            )
        _same_place(name, tensor, Wx, "Wx")
    return batch, steps, heads, head_dim


def check_layer_input(
    input: Any, input_size: int, batch_first: bool, like: torch.Tensor | None = None
) -> torch.Tensor:
    """A layer's input, as torch.nn's recurrent layers take it: [B, T, input_size] when
    ``batch_first`` else [T, B, input_size], or unbatched [T, input_size]; on the device and in the
    dtype of ``like`` (the layer's parameters) when given."""
    layout = "[B, T, input_size]" if batch_first else "[T, B, input_size]"
    layouts = f"{layout} or unbatched [T, input_size]"
    if isinstance(input, torch.Tensor) and input.dim() not in (2, 3):
        raise ValueError(f"input: got shape {_shape(input)} ({input.dim()} dims), expected {layouts}")
    check_tensor("input", input, layouts, input.dim() if isinstance(input, torch.Tensor) else 3)
    if input.dim() == 2:
        layout = "[T, input_size]"
    if input.shape[-1] != input_size:
        raise ValueError(f"input: got shape {_shape(input)}, expected {layout} with input_size={input_size}")
    if input.dim() == 2:
        batch, steps = 1, input.shape[0]
    else:
        batch, steps = input.shape[:2] if batch_first else input.shape[1::-1]
    if steps == 0:
        raise ValueError(
            f"input: got T=0 (shape {_shape(input)}, layout {layout}), expected at least one time step"
        )
    if batch == 0:
        raise ValueError(f"input: got B=0 (shape {_shape(input)}, layout {layout}), expected at least one")
    if like is not None:
        _same_place("input", input, like, "the layer's parameters")
    return input


def check_initial_states(
    hx: Any,
    names: Sequence[str],
    count: int,
    batch: int,
    hidden_size: int,
    like: torch.Tensor,
    unbatched: bool = False,
) -> tuple[torch.Tensor, ...]:
    """A layer's initial states, as torch.nn's: one tensor per state in ``names`` (a bare tensor when
    there is one state), each [count = num_layers * num_directions, B, hidden] or, for unbatched
    input, [count, hidden]. Returns them as [count, B, hidden] (unbatched ones with B = 1)."""
    layout = (
        "[num_layers * num_directions, hidden_size]"
        if unbatched
        else ("[num_layers * num_directions, B, hidden_size]")
    )
    expected = (count, hidden_size) if unbatched else (count, batch, hidden_size)
    if isinstance(hx, torch.Tensor) and len(names) == 1:
        hx = (hx,)
    if not isinstance(hx, (tuple, list)) or len(hx) != len(names):
        got = f"{len(hx)} tensors" if isinstance(hx, (tuple, list)) else type(hx).__name__
        raise ValueError(
            f"hx: got {got}, expected "
            + ("a tensor" if len(names) == 1 else f"a tuple of {len(names)} tensors ({', '.join(names)})")
            + f" of shape {layout} = {expected}"
        )
    for name, tensor in zip(names, hx, strict=True):
        check_tensor(f"hx[{name}]", tensor, layout, len(expected))
        if _shape(tensor) != expected:
            raise ValueError(f"hx[{name}]: got shape {_shape(tensor)}, expected {expected} = {layout}")
        _same_place(f"hx[{name}]", tensor, like, "input")
    return tuple(h.unsqueeze(1) if unbatched else h for h in hx)


def check_lengths(lengths: Any, batch: int, steps: int, device: torch.device) -> torch.Tensor:
    """Sequence lengths of a padded batch: B integers in 1..T (a list or a 1-D integer tensor);
    returned as an int64 tensor on ``device``."""
    if isinstance(lengths, torch.Tensor):
        if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
            raise ValueError(f"lengths: got dtype {lengths.dtype}, expected an integer tensor")
        values = lengths.detach()
    else:
        try:
            items = list(lengths)
        except TypeError:
            raise ValueError(
                f"lengths: got {type(lengths).__name__}, expected B={batch} integers (a list or a 1-D tensor)"
            ) from None
        bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int)]
        if bad:
            raise ValueError(f"lengths: got {bad[0]!r}, expected integers")
        values = torch.tensor(items, dtype=torch.int64)
    if values.dim() != 1 or values.numel() != batch:
        raise ValueError(f"lengths: got shape {_shape(values)}, expected ({batch},): one length per sequence")
    low, high = int(values.min()), int(values.max())
    if low < 1 or high > steps:
        raise ValueError(
            f"lengths: got values in {low}..{high}, expected 1..{steps} "
            f"(at least one step, at most T={steps})"
        )
    return values.to(device=device, dtype=torch.int64)
