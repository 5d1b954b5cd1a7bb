"""The cuda-fused kernels' geometry for one configuration, as plain integers the templates read.

The constraint model (:mod:`tunekit.constraints.cuda_fused`) states the kernel's resources as
formulas; this module derives the same geometry for one configuration as the kernels build it:
which warps hold which R tiles (and which of those in registers), where each buffer lies in
shared memory, the grid, the global scratch buffers. :func:`plan` checks every number it shares
with the model against ``Space.resources`` of that configuration, so a kernel rendered from a plan
is the kernel the model priced (a disagreement is a bug in one of the two and raises).

Vocabulary (per direction; the backward runs Rᵀ over the same grid):

* a block computes ``rows x k`` (forward ``G_r·units x k_per_block``, backward
  ``units x G_r·k_per_block``), in ``m_tiles x (k_tiles·warps_k)`` mma tiles;
* each k group of ``warps_rows`` warps deals its ``m_tiles x k_tiles`` tiles in row-major order:
  warp w takes the range ``[start_w, start_w + len_w)``, by whole rows or evenly (the model's
  two deals); a warp runs its tiles chunk by chunk, k step by k step, rows inside, and holds the
  first ``min(len_w, cap)`` of them in that order in registers, the rest in shared memory;
* warps with the same ``(start_w mod k_tiles, len_w)`` run the same code (a *variant*).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tunekit.constraints import Space, build_space
from tunekit.constraints.cuda_fused import (
    ACC_REGISTERS,
    B_FRAG_REGISTERS,
    FRAGMENT_HEADROOM,
    OVERHEAD_REGISTERS,
    REG_TILE_REGISTERS,
    Y_CHUNK,
    block_tile,
    pointwise_registers,
    span_quantum,
)
from tunekit.constraints.occupancy import mma_shape, register_budget
from tunekit.problem import KernelConfig

__all__ = ["DirectionPlan", "Plan", "Variant", "plan"]

TILE_BYTES = 512  # one mma A tile: 16x16 bf16/fp16 or 16x8 tf32, 16 bytes a lane


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Variant:
    """Warps that run the same tile code: their ranges start at ``phase`` within a row of tiles."""

    warps: tuple[int, ...]  # row-warp indices (within a k group)
    phase: int  # start_w mod k_tiles
    length: int  # tiles of the range
    rows: int  # m tiles the range touches (accumulator rows)
    in_regs: int  # tiles held in registers (the first in execution order)


@dataclass(frozen=True)
class DirectionPlan:
    """Geometry of one direction's kernel (forward: R·y; backward: Rᵀ·dg)."""

    direction: str
    rows: int  # the block's rows (model "rows")
    k: int  # the block's k extent (model "k")
    m_tiles: int
    k_tiles: int  # k steps per warp
    k_pad: int  # k_tiles * mk * warps_k
    n_tiles: int  # n8 tiles of one batch pass
    row_tiles: int  # ceil(m_tiles / warps_rows)
    even: bool  # tiles dealt evenly (else by whole rows)
    acc_rows: int  # accumulator rows every warp allocates (the model's rows spanned)
    cap: int  # R tiles a warp may hold in registers
    budget: int  # registers per thread the co-resident grid leaves (ptxas is capped at it: __maxnreg__)
    registers: int  # the model's estimate of what ptxas uses (its resource registers_per_thread)
    hi_warps: int  # warps (per k group) with the longer range
    hi_len: int
    lo_len: int
    base: int  # even deal: count // warps_rows (starts are w*base + min(w, hi_warps))
    variants: tuple[Variant, ...]
    smem_tiles: int  # R tiles in shared memory, whole block
    r_smem: int  # bytes
    y_smem: int  # bytes of the y (dg) stages
    gates_smem: int  # bytes of the fp32 gate buffer (aliases the stages)
    chunks: int  # y chunks per pass
    mma_tiles_busiest: int

    @property
    def shared_bytes(self) -> int:
        """Dynamic shared memory of the kernel: R tiles, then the stages / gate buffer union."""
        return self.r_smem + max(self.y_smem, self.gates_smem)

    @property
    def shared_first_rows(self) -> bool:
        """Whether some warp's first row is shared with the previous warp (a second add turn)."""
        return any(v.phase for v in self.variants)

    def warp_start(self, w: int) -> int:
        """First tile (row-major over m_tiles x k_tiles) of row warp ``w``."""
        if self.even:
            return w * self.base + min(w, self.hi_warps)
        rows = min(w, self.hi_warps) * self.row_tiles + max(0, w - self.hi_warps) * (self.row_tiles - 1)
        return rows * self.k_tiles

    def warp_len(self, w: int) -> int:
        return self.hi_len if w < self.hi_warps else self.lo_len


@dataclass(frozen=True)
class Plan:
    """Everything the cuda-fused templates and launchers read for one configuration."""

    config: KernelConfig
    space: Space
    mm: int
    mn: int
    mk: int
    heads: int
    head_dim: int
    batch: int
    g_r: int
    hidden_per_block: int
    units: int  # units a block holds (the model's "units": hidden_per_block capped at D)
    k_per_block: int
    block_b: int
    tile_b: int
    warps_rows: int
    warps_k: int
    span: int
    d_q: int  # a head's units padded to the span quantum (span only)
    row_blocks: int
    split_rows: int  # row blocks per head (span 0)
    split_k: int
    batch_blocks: int
    batch_passes: int
    blocks: int
    threads: int
    b_pad: int
    directions: dict[str, DirectionPlan]
    resources: dict[str, int]

    @property
    def y_heads(self) -> int:
        return 1 + self.span


def _direction(cfg: dict, p: Any, gpu: Any, d: str, units: int, grid: int, y_heads: int) -> DirectionPlan:
    mm, mn, mk = mma_shape(gpu, p.dtype)
    rows, k = block_tile(d, p.g_r, units, cfg["k_per_block"])
    wr, wk, tile_b = cfg["warps_rows"], cfg["warps_k"], cfg["tile_b"]
    m_tiles = _cdiv(rows, mm)
    row_tiles = _cdiv(m_tiles, wr)
    k_tiles = _cdiv(k, mk * wk)
    n_tiles = _cdiv(tile_b, mn)
    budget = register_budget(wr * wk, _cdiv(grid, gpu.sm_count), gpu)
    uneven = 1 if m_tiles % wr else 0

    def deal(count: int, per_item: int, spanned: int) -> dict:
        items = _cdiv(count, wr)
        tpw = items * per_item
        mma = OVERHEAD_REGISTERS + ACC_REGISTERS * n_tiles * spanned + 2 * B_FRAG_REGISTERS * n_tiles
        other = max(mma, pointwise_registers(p.cell, d))
        cap = max(0, (budget - FRAGMENT_HEADROOM - other) // REG_TILE_REGISTERS)
        full = max(0, count - (items - 1) * wr)
        short = max(0, items * wr - count)
        in_smem = wk * (full * max(0, tpw - cap) + short * max(0, tpw - per_item - cap))
        return {
            "tpw": tpw,
            "cap": cap,
            "other": other,
            "in_smem": in_smem,
            "full": full,
            "per_item": per_item,
        }

    by_rows = deal(m_tiles, k_tiles, row_tiles)
    spanned_even = min(m_tiles, row_tiles + uneven)
    even_d = deal(m_tiles * k_tiles, 1, spanned_even)
    even = by_rows["in_smem"] > even_d["in_smem"]
    chosen = even_d if even else by_rows
    cap = chosen["cap"]
    count = m_tiles * k_tiles
    if even:  # the first count % wr warps hold one tile more (none where wr divides count)
        base, hi_warps = count // wr, count % wr
        hi_len, lo_len = base + 1, base
        acc_rows = spanned_even
    else:
        base = 0
        hi_warps = chosen["full"]
        hi_len, lo_len = row_tiles * k_tiles, (row_tiles - 1) * k_tiles
        acc_rows = row_tiles
    other = by_rows["other"]
    headroom = budget - FRAGMENT_HEADROOM
    registers = max(other, min(headroom, other + ACC_REGISTERS * n_tiles * uneven + 4 * row_tiles * k_tiles))

    dp = DirectionPlan(
        direction=d, rows=rows, k=k, m_tiles=m_tiles, k_tiles=k_tiles, k_pad=k_tiles * mk * wk,
        n_tiles=n_tiles, row_tiles=row_tiles, even=even, acc_rows=acc_rows, cap=cap, budget=budget,
        registers=registers, hi_warps=hi_warps, hi_len=hi_len, lo_len=lo_len, base=base, variants=(),
        smem_tiles=chosen["in_smem"], r_smem=chosen["in_smem"] * mm * mk * p.dtype_bytes,
        y_smem=y_heads * min(k_tiles * mk * wk, 2 * Y_CHUNK) * tile_b * p.dtype_bytes,
        gates_smem=m_tiles * mm * tile_b * 4, chunks=_cdiv(k_tiles * mk * wk, Y_CHUNK),
        mma_tiles_busiest=chosen["tpw"],
    )  # fmt: skip
    # variants: warps by (phase, length); each range's rows and its tiles held in registers
    groups: dict[tuple[int, int], list[int]] = {}
    for w in range(wr):
        start, length = dp.warp_start(w), dp.warp_len(w)
        groups.setdefault((start % k_tiles, length), []).append(w)
    variants = []
    smem_tiles = 0
    for (phase, length), warps in sorted(groups.items(), key=lambda item: item[1][0]):
        # a warp may hold no tile: the backward's rows are one a unit, and the model keeps row warps
        # busy in the first direction only
        spans = _cdiv(phase + length, k_tiles) - phase // k_tiles
        if length < 0 or spans > acc_rows:
            raise AssertionError(f"{d}: warps {warps} span {spans} rows, the model allows {acc_rows}")
        variants.append(Variant(tuple(warps), phase, length, spans, min(length, cap)))
        smem_tiles += len(warps) * max(0, length - cap)
    if smem_tiles * wk != dp.smem_tiles:
        raise AssertionError(
            f"{d}: {smem_tiles * wk} R tiles in shared memory, the model says {dp.smem_tiles}"
        )
    return DirectionPlan(**{**dp.__dict__, "variants": tuple(variants)})


def plan(config: KernelConfig, gpu: Any) -> Plan:
    """The geometry of ``config`` (a cuda-fused KernelConfig) on ``gpu`` (a GPUProfile).

    Raises ValueError when the model rejects the configuration (with the violated constraints),
    AssertionError when the geometry disagrees with the model's resources (a bug)."""
    if not isinstance(config, KernelConfig) or config.family != "cuda-fused":
        raise ValueError(f"config: got {config!r}, expected a cuda-fused KernelConfig")
    if getattr(gpu, "name", None) != config.gpu:
        raise ValueError(f"gpu: got {getattr(gpu, 'name', gpu)!r}, the configuration is for {config.gpu!r}")
    p = config.problem
    space = build_space("cuda-fused", p, gpu)
    violated = space.violated(config)
    if violated:
        raise ValueError(
            f"config {config.name}: the cuda-fused model rejects it ({', '.join(violated)}); "
            "tunekit.explain names the constraints, tunekit.tune lists the accepted configurations"
        )
    res = space.resources(config)
    cfg = config.params
    mm, mn, mk = mma_shape(gpu, p.dtype)
    D, B, N = p.head_dim, p.batch, p.heads
    span = cfg["span_heads"] if N > 1 else 0
    quantum = span_quantum(p, gpu)
    d_q = _cdiv(D, quantum) * quantum
    hpb = cfg["hidden_per_block"]
    units = min(hpb, D + span * N * d_q)
    split_rows = _cdiv(D, units)
    split_k = _cdiv(D, cfg["k_per_block"])
    batch_blocks = _cdiv(B, cfg["block_b"])
    row_blocks = _cdiv(N * d_q, hpb) if span else N * split_rows
    grid = row_blocks * split_k * batch_blocks
    threads = cfg["warps_rows"] * cfg["warps_k"] * gpu.warp_size
    directions = {d: _direction(cfg, p, gpu, d, units, grid, 1 + span) for d in p.directions}
    out = Plan(
        config=config, space=space, mm=mm, mn=mn, mk=mk, heads=N, head_dim=D, batch=B, g_r=p.g_r,
        hidden_per_block=hpb, units=units, k_per_block=cfg["k_per_block"], block_b=cfg["block_b"],
        tile_b=cfg["tile_b"], warps_rows=cfg["warps_rows"], warps_k=cfg["warps_k"], span=span, d_q=d_q,
        row_blocks=row_blocks, split_rows=split_rows, split_k=split_k, batch_blocks=batch_blocks,
        batch_passes=_cdiv(min(B, cfg["block_b"]), cfg["tile_b"]), blocks=grid, threads=threads,
        b_pad=batch_blocks * cfg["block_b"], directions=directions, resources=res,
    )  # fmt: skip
    _check_against_model(out)
    return out


def _check_against_model(pl: Plan) -> None:
    """Every number the plan shares with the model must be the model's (AssertionError otherwise)."""
    res = pl.resources
    first = pl.directions[pl.config.problem.directions[0]]
    pairs = {
        "blocks": pl.blocks,
        "row_blocks": pl.row_blocks,
        "threads_per_block": pl.threads,
        "split_k": pl.split_k,
        "batch_passes": pl.batch_passes,
        "b_pad": pl.b_pad,
        "rows_pad_per_block": first.m_tiles * pl.mm,
        "k_pad_per_block": first.k_pad,
        "row_tiles_per_warp": first.row_tiles,
        "mma_tiles_per_warp": first.mma_tiles_busiest,
        "registers_per_thread": max(d.registers for d in pl.directions.values()),
        "shared_memory_bytes_per_block": max(d.shared_bytes for d in pl.directions.values()),
    }
    for d, dp in pl.directions.items():
        pairs[f"registers_per_thread_{d}"] = dp.registers
        pairs[f"shared_memory_bytes_per_block_{d}"] = dp.shared_bytes
    wrong = {k: (v, res[k]) for k, v in pairs.items() if k in res and res[k] != v}
    if wrong:
        raise AssertionError(f"{pl.config.name}: plan vs model (plan, model): {wrong}")
