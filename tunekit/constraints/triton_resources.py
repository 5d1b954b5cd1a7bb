"""Resource formulas of the triton-fused kernels (templates/triton/fused_*.py.j2), for the constraint model.

One program per (head, batch block) keeps R of its head on chip for all T steps. What the Triton
compiler (3.9) allocates for it, read off ahead-of-time compiles (see tunekit.aot and the
calibration report reports/triton_calibration.md):

* shared memory: every ``tl.dot`` operand B (an R tile) is staged in shared memory once, before
  the time loop: G_r tiles of d_pad x d_pad in the input dtype (forward); the backward kernel
  holds R and its transpose, 2 G_r tiles. The A operand (y, or dry in the backward) is staged
  every step through a block_b x d_pad buffer, and layout conversions take scratch of the same
  size; the compiler overlaps them when their lifetimes allow, so the model counts two buffers
  (an upper bound, within a few percent of the compiler once R dominates).
* registers: the fp32 accumulators, carried states, wx tiles and pointwise temporaries are
  block_b x d_pad tiles spread over the 32 * num_warps threads; the count grows with the
  elements each thread owns. Register allocation cannot be predicted exactly, so the formula is a
  calibrated *upper bound*: a configuration it accepts (<= 255) must compile without spills.

Every function takes plain ints or ``tunekit.solvers`` expressions (only +, -, *, ``ceil_div``,
``round_up`` and ``Max`` are used), so the same formula feeds the solver and the reports.
"""

from __future__ import annotations

from tunekit.solvers import Expr, Max, ceil_div

IntLike = int | Expr

DIRECTIONS = ("forward", "backward")
DTYPE_BYTES = (2, 4)  # fp16/bf16, fp32

# Registers per thread the hardware can give (DESIGN §5: 255 on sm_80..sm_90).
MAX_REGISTERS_PER_THREAD = 255


def _check(direction: str, dtype_bytes: int, num_warps: IntLike) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, received {direction!r}")
    if dtype_bytes not in DTYPE_BYTES:
        raise ValueError(f"dtype_bytes: expected 2 (fp16/bf16) or 4 (fp32), received {dtype_bytes!r}")
    if isinstance(num_warps, int) and (num_warps < 1 or num_warps > 32 or num_warps & (num_warps - 1)):
        raise ValueError(f"num_warps: expected a power of two in 1..32, received {num_warps!r}")


def per_thread(elements: IntLike, num_warps: IntLike) -> IntLike:
    """ceil(elements / (32 * num_warps)): a tile's share of one thread, for ints and expressions.

    Division by a variable is not in the solver IR. For num_warps a power of two in 1..32, 512/w
    equals the maximum of the chords of the convex function 512/w between consecutive powers of two
    (exact at every power of two, an over-estimate in between, which only makes the bound safer).
    """
    scaled = Max(
        768 - 256 * num_warps,  # chord through w = 1, 2
        384 - 64 * num_warps,  # w = 2, 4
        192 - 16 * num_warps,  # w = 4, 8
        96 - 4 * num_warps,  # w = 8, 16
        48 - num_warps,  # w = 16, 32
    )  # = 512 / num_warps at powers of two
    return ceil_div(elements * scaled, 512 * 32)


def triton_fused_shared_bytes(
    g_r: IntLike,
    s: IntLike,
    d_pad: IntLike,
    block_b: IntLike,
    num_warps: IntLike,
    num_stages: IntLike,
    dtype_bytes: int,
    direction: str,
) -> IntLike:
    """Dynamic shared memory per program (Triton's ``metadata.shared``) in bytes."""
    _check(direction, dtype_bytes, num_warps)
    r_tiles = g_r if direction == "forward" else 2 * g_r  # backward: R and R^T
    r_bytes = r_tiles * d_pad * d_pad * dtype_bytes  # dot operand B, staged once before the loop
    staging = 2 * block_b * d_pad * dtype_bytes  # dot operand A + layout-conversion scratch
    return r_bytes + staging


def triton_fused_registers_per_thread(
    g_r: IntLike,
    s: IntLike,
    d_pad: IntLike,
    block_b: IntLike,
    num_warps: IntLike,
    num_stages: IntLike,
    dtype_bytes: int,
    direction: str,
) -> IntLike:
    """Upper bound on registers per thread; a value <= 255 means ptxas will not spill."""
    _check(direction, dtype_bytes, num_warps)
    tile = per_thread(block_b * d_pad, num_warps)  # elements of one block_b x d_pad tile per thread
    # fp32 tiles live per step: G_r accumulators + G_r wx + S states (+ their new values)
    live = 2 * g_r + 2 * s if direction == "forward" else 4 * g_r + 3 * s
    return 90 + live * tile
