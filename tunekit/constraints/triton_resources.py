"""Resource formulas of the triton-fused kernels (templates/triton/fused_*.py.j2), for the constraint model.

One program per (head, batch block) keeps R of its head on chip for all T steps. What Triton 3.9
allocates for the rendered kernels, read off ahead-of-time compiles with the launch's options
(:mod:`tunekit.kernels.triton_fused_aot`; the evidence is reports/triton_calibration.md, written by
``tunekit bench calibrate-triton``). Below, a tile is block_b x d_pad elements and e = its elements
per thread (tile / (32 * num_warps)).

Shared memory (Triton's ``metadata.shared``) is the copies of R, live for the whole kernel, plus
the largest scratch any one point of the kernel needs (layout conversions and pipeline staging reuse
one region):

* R: the G_r tiles of d_pad x d_pad once, but twice in a backward whose products read R in two
  encodings (:func:`r_copies`);
* forward scratch: one 16-bit tile (y staged as the dot's A operand, the blocked <-> MMA conversions
  of wx and the stored states), or one fp32 tile when Triton converts the initial states to the MMA
  layout in fp32: at 1..2 elements a thread, or 4 with G_r >= 2, (d_pad = 16 or block_b >= 32) and
  no warpgroup MMA; fp32 layers: one fp32 tile, two with sm_90's warpgroup MMA;
* backward scratch: one fp32 tile (the conversions of the state gradients and dry; two for fp32),
  one more 16-bit tile with sm_90's warpgroup MMA over the batch rows; a second pipeline stage
  stages the next step's loads: the state gradients (fp32), the states and wx (input dtype) in the
  rows form, the state gradients and one input-dtype tile in the one-copy form.

Exact on 217 of 248 sampled compiles and never below the compiler (the larger errors are tiles of
d_pad <= 32, where scratch outweighs R); the model reads the measured value where the register
table has one (:mod:`tunekit.constraints.triton_registers`).

Registers: :func:`triton_fused_registers_per_thread` is a conservative *bound*, for configurations
the table has not measured: a configuration it accepts compiled without spilling on every sampled
compile (refusing some that do; the report gives how many). ptxas's own count is not predictable
from the tile shapes (it takes registers up to the cap when they help scheduling), which is why
the model reads the measured table where it can.

Every function takes plain ints or ``tunekit.solvers`` expressions (only +, -, *, ``ceil_div``,
``floor_div``, ``Max`` and ``Min`` are used), so the same formula feeds the solver and the reports.
"""

from __future__ import annotations

from tunekit.solvers import Expr, Max, Min, ceil_div, floor_div

IntLike = int | Expr

DIRECTIONS = ("forward", "backward")
DTYPE_BYTES = (2, 4)  # fp16/bf16, fp32
DTYPE_BYTES_OF = {"float32": 4, "float16": 2, "bfloat16": 2}

# Registers per thread the hardware can give (DESIGN §5: 255 on sm_80..sm_90).
MAX_REGISTERS_PER_THREAD = 255


def _check(direction: str, dtype_bytes: int, num_warps: IntLike, arch: int = 80) -> None:
    if not isinstance(arch, int) or arch < 80:
        raise ValueError(
            f"arch: expected a compute capability >= 80 as an int (80, 86, 89, 90), received {arch!r}"
        )
    if direction not in DIRECTIONS:
        raise ValueError(f"direction: expected one of {DIRECTIONS}, received {direction!r}")
    if dtype_bytes not in DTYPE_BYTES:
        raise ValueError(f"dtype_bytes: expected 2 (fp16/bf16) or 4 (fp32), received {dtype_bytes!r}")
    if isinstance(num_warps, int) and (num_warps < 1 or num_warps > 32 or num_warps & (num_warps - 1)):
        raise ValueError(f"num_warps: expected a power of two in 1..32, received {num_warps!r}")


def per_thread(elements: IntLike, num_warps: IntLike) -> IntLike:
    """ceil(elements / (32 * num_warps)): a tile's share of one thread, for ints and expressions."""
    return ceil_div(elements, 32 * num_warps)


def at_most(x: IntLike, y: IntLike) -> IntLike:
    """1 if x <= y else 0, for positive x, y whose ratio is a power of two (tile sizes, warps)."""
    return 1 - Min(1, floor_div(x, 2 * y))


def warpgroups(arch: int, m: IntLike, num_warps: IntLike) -> IntLike:
    """1 where Triton runs a product with ``m`` rows (a power of two) as sm_90 warpgroup MMA, else 0
    (:func:`tunekit.constraints.triton_kernel.wgmma_operands` for expressions)."""
    if arch < 90:
        return 0
    return (1 - at_most(num_warps, 2)) * (1 - at_most(m, 32))


def r_copies(
    arch: int, dtype_bytes: int, d_pad: int, block_b: IntLike, num_warps: IntLike, r_once: IntLike
) -> IntLike:
    """Copies of R a backward keeps in shared memory (1 or 2; the forward keeps one).

    fp32 (tf32): 2. 16-bit, rows form (``r_once = 0``): R and R^T, except with warpgroup MMA over the
    batch rows (R^T a view of R). One-copy form: 1, except on sm_90 below 64 hidden units with
    warpgroup MMA over the batch rows (one product on each kind of MMA reads its own encoding)."""
    if dtype_bytes == 4:
        return 2
    rows_wgmma = warpgroups(arch, block_b, num_warps)
    units_wgmma = warpgroups(arch, d_pad, num_warps)
    return (1 - r_once) * (2 - rows_wgmma) + r_once * (1 + (1 - units_wgmma) * rows_wgmma)


def triton_fused_shared_bytes(
    g_r: IntLike,
    s: IntLike,
    d_pad: IntLike,
    block_b: IntLike,
    num_warps: IntLike,
    num_stages: IntLike,
    dtype_bytes: int,
    direction: str,
    *,
    arch: int = 80,
    r_once: IntLike = 0,
    grad_states: IntLike | None = None,
    w_gates: IntLike | None = None,
) -> IntLike:
    """Dynamic shared memory per program (Triton's ``metadata.shared``) in bytes.

    ``s`` counts the states, ``grad_states`` those that carry a gradient (default: all), ``w_gates``
    the gates of Wx (default: ``g_r``); ``arch`` the compute capability (sm_90 has warpgroup MMA);
    ``r_once`` the backward's form (:func:`r_copies`). ``d_pad`` must be an int.
    """
    _check(direction, dtype_bytes, num_warps, arch)
    grad_states = s if grad_states is None else grad_states
    w_gates = g_r if w_gates is None else w_gates
    tile = block_b * d_pad  # elements of one batch tile
    r_tile = d_pad * d_pad * dtype_bytes
    rows_wgmma = warpgroups(arch, block_b, num_warps)
    if direction == "forward":
        if dtype_bytes == 4:
            return g_r * r_tile + 4 * tile * (1 + rows_wgmma)
        # the initial states are converted in fp32 (one fp32 tile instead of a 16-bit one) when threads
        # hold 1..2 elements, or 4 with >= 2 gates, (d_pad 16 or block_b >= 32) and no warpgroup MMA
        one_or_two = at_most(tile, 64 * num_warps) * (1 - at_most(tile, 16 * num_warps))
        four = at_most(tile, 128 * num_warps) - at_most(tile, 64 * num_warps)
        wide = Max(at_most(d_pad, 16), 1 - at_most(block_b, 16)) * Min(1, floor_div(g_r, 2))
        fp32_states = Max(one_or_two, four * wide * (1 - rows_wgmma))
        return g_r * r_tile + 2 * tile * (1 + fp32_states)
    copies = r_copies(arch, dtype_bytes, d_pad, block_b, num_warps, r_once)
    one_stage = 4 * tile * (2 if dtype_bytes == 4 else 1) + 2 * tile * rows_wgmma
    # per extra pipeline stage: the next step's state gradients (fp32) and, in the rows form, the
    # states and wx (input dtype); in the one-copy form one input-dtype tile
    rows_form = 4 * grad_states + dtype_bytes * (s + w_gates)
    staged = tile * ((1 - r_once) * rows_form + r_once * (4 * grad_states + dtype_bytes))
    staging = 4 * tile + (num_stages - 1) * staged + 2 * tile * rows_wgmma
    return copies * g_r * r_tile + Max(one_stage, staging)


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
    """Conservative bound on registers per thread, for configurations the register table lacks.

    ``const + live * e (+ terms)``, with e the elements of one block_b x d_pad tile per thread
    (at least num_warps / 2: warps beyond the tile's work replicate it) and ``live`` the fp32 tiles
    alive across a step (forward: G_r accumulators and wx, S states and their new values, a few
    temporaries; fp32 four more; plus per gate 16 rows of d_pad, the bias broadcast to an MMA
    tile; backward: recomputed ry, dry, dwx, wx, and states with their gradients, at least
    num_warps elements a thread). The constants are the smallest that accept no sampled
    configuration that spills (reports/triton_calibration.md: none accepted spills, and how many
    clean ones it refuses).
    """
    _check(direction, dtype_bytes, num_warps)
    e = Max(per_thread(block_b * d_pad, num_warps), floor_div(num_warps, 2))
    fp32 = 1 if dtype_bytes == 4 else 0
    if direction == "forward":
        rows16 = per_thread(16 * d_pad, num_warps)
        return 64 + (2 * g_r + 2 * s + 4 + 3 * fp32) * e + g_r * rows16
    e = Max(e, num_warps) + floor_div(num_warps, 8)
    extra_states = 33 * Max(0, s - 2)  # sLSTM's four states
    return 50 + 4 * (4 - g_r) + extra_states + (4 * g_r + 3 * s + 1 + 2 * fp32) * e + 30 * (num_stages - 1)
