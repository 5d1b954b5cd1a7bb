"""The numeric tests' shared helpers: seeded inputs of a cell, and the check of a result against the
float64 reference (``atol + rtol * max|reference|``, the bound every kernel test uses)."""

from __future__ import annotations

import torch

from tunekit.cells import get_cell

DTYPE_IDS = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def make_inputs(cell_name: str, B: int, T: int, N: int, D: int, dtype: torch.dtype, with_s0: bool, seed: int):
    """Wx, R, b, initial states (or None) in ``dtype``; R scaled so the recurrence stays well-conditioned."""
    cell = get_cell(cell_name)
    gen = torch.Generator().manual_seed(seed)
    wx = torch.randn(B, T, len(cell.w_gates), N, D, generator=gen)
    r = torch.randn(len(cell.r_gates), N, D, D, generator=gen) / D**0.5
    b = 0.1 * torch.randn(len(cell.b_gates), N, D, generator=gen)
    s0 = None
    if with_s0:
        s0 = 0.5 * torch.randn(len(cell.states), B, 1, N, D, generator=gen)
        if cell_name == "slstm":  # a reachable sLSTM state: normalizer n >= 1 after any step
            s0[cell.states.index("n")] = 1.0 + s0[cell.states.index("n")].abs()
    return [None if x is None else x.to(dtype) for x in (wx, r, b, s0)]


def assert_within(
    actual: torch.Tensor, expected: torch.Tensor, tol: tuple[float, float], what: str, label: object = ""
) -> None:
    """``actual`` (any dtype) has ``expected``'s shape and is within ``atol + rtol * max|expected|`` of
    it, ``tol`` = (rtol, atol); ``label`` (the dtype) goes into the message."""
    rtol, atol = tol
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    error = (actual.double() - expected).abs().max().item()
    bound = atol + rtol * expected.abs().max().item()
    assert error <= bound, f"{what}: max error {error:.3e} > {bound:.3e} ({label})"
