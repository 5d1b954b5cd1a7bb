"""Render the cuda-fused kernels of one configuration: templates/cuda/fused_*.cu.j2 and their entries.

A configuration has a forward program (``<cell>_fused_forward``) and, where it serves the
backward, a backward program (``<cell>_fused_backward`` plus the post-loop kernels that form dR
and db from the stored step gradients). The templates read the cell's structure and printed code
(:func:`tunekit.codegen.cell_context`), the generated-file header and the geometry of
:mod:`tunekit.kernels.cuda_fused_plan`.
"""

from __future__ import annotations

from typing import Any

from tunekit.cells import get_cell
from tunekit.codegen import cell_context, header_context, render_template
from tunekit.constraints.cuda_fused import Y_CHUNK
from tunekit.cuda import CudaProgram, KernelEntry
from tunekit.kernels.cuda_fused_plan import DirectionPlan, Plan

__all__ = [
    "DB_REGISTERS",
    "DR_REGISTERS",
    "ELEM",
    "MMA_FN",
    "direction_context",
    "entries",
    "program",
    "source",
]

# The post-loop kernels' register caps (TK_MAX_REGISTERS): dR's 4 x 4 fp32 micro-tile keeps 16
# accumulators, 8 operands and a few addresses; db one sum and its loop. The compile checks hold
# ptxas to them without spills.
DR_REGISTERS = 64
DB_REGISTERS = 32
DR_SHARED_BYTES = 2 * 16 * 64 * 4  # dR's A and B tiles of one k step, fp32 (static)
DR_TILE, DR_THREADS, DB_THREADS = 64, 256, 256

ELEM = {"float32": "float", "float16": "tk::f16", "bfloat16": "tk::bf16"}
MMA_FN = {"float32": "mma_m16n8k8_tf32", "float16": "mma_m16n8k16_f16", "bfloat16": "mma_m16n8k16_bf16"}
TEMPLATES = {"forward": "cuda/fused_forward.cu.j2", "backward": "cuda/fused_backward.cu.j2"}

FORWARD_PARAMS = (
    ("wx", "ptr"), ("r", "ptr"), ("bias", "ptr"), ("carry", "ptr"), ("out", "ptr"), ("last", "ptr"),
    ("xbuf", "ptr"), ("part", "ptr"), ("ry", "ptr"), ("steps", "i32"), ("store_ry", "i32"),
)  # fmt: skip
BACKWARD_PARAMS = (
    ("wx", "ptr"), ("r", "ptr"), ("bias", "ptr"), ("s0", "ptr"), ("states", "ptr"), ("ry", "ptr"),
    ("dstates", "ptr"), ("carry", "ptr"), ("dwx", "ptr"), ("dry", "ptr"), ("dbx", "ptr"),
    ("xbuf", "ptr"), ("part", "ptr"), ("ds0", "ptr"), ("steps", "i32"),
)  # fmt: skip
DR_PARAMS = (("dry", "ptr"), ("states", "ptr"), ("s0", "ptr"), ("dr", "ptr"), ("steps", "i32"))
DB_PARAMS = (("dry", "ptr"), ("dbx", "ptr"), ("db", "ptr"), ("steps", "i32"))


def entry_names(cell: str) -> dict[str, str]:
    """Role -> entry-point name: forward, backward, and the post-loop dR and db kernels."""
    return {
        "forward": f"{cell}_fused_forward",
        "backward": f"{cell}_fused_backward",
        "dr": f"{cell}_fused_dr",
        "db": f"{cell}_fused_db",
    }


def entries(pl: Plan, direction: str) -> tuple[KernelEntry, ...]:
    """The entry points of ``direction``'s program."""
    names = entry_names(pl.config.problem.cell)
    if direction == "forward":
        return (KernelEntry(names["forward"], FORWARD_PARAMS, cooperative=True),)
    return (
        KernelEntry(names["backward"], BACKWARD_PARAMS, cooperative=True),
        KernelEntry(names["dr"], DR_PARAMS),
        KernelEntry(names["db"], DB_PARAMS),
    )


def direction_context(pl: Plan, d: DirectionPlan) -> dict[str, Any]:
    """The geometry fields every fused template reads (templates/cuda/fused_geometry.cu.j2)."""
    p = pl.config.problem
    return {
        "elem": ELEM[p.dtype],
        "elem_bytes": p.dtype_bytes,
        "mk": pl.mk,
        "mma_fn": MMA_FN[p.dtype],
        "y_chunk": Y_CHUNK,
        "heads": pl.heads,
        "head_dim": pl.head_dim,
        "batch": pl.batch,
        "units": pl.units,
        "span": pl.span,
        "d_q": pl.d_q,
        "split_rows": pl.split_rows,
        "row_blocks": pl.row_blocks,
        "k_per_block": pl.k_per_block,
        "split_k": pl.split_k,
        "block_b": pl.block_b,
        "batch_blocks": pl.batch_blocks,
        "tile_b": pl.tile_b,
        "batch_passes": pl.batch_passes,
        "warps_rows": pl.warps_rows,
        "warps_k": pl.warps_k,
        "d": d,
        "variants": d.variants,
        "cap_alloc": max(1, *(v.in_regs for v in d.variants)),
        "group_smem_tiles": d.smem_tiles // pl.warps_k,
    }


def source(pl: Plan, direction: str) -> str:
    """The rendered .cu text of ``direction``'s program."""
    from tunekit.cells.printers import CUDA_PRELUDE

    cell = get_cell(pl.config.problem.cell)
    template = TEMPLATES[direction]
    context = cell_context(cell, "cuda", backward=direction == "backward")
    context |= header_context(template.split("/", 1)[1], direction, pl.config)
    context |= {"prelude": CUDA_PRELUDE, "entry": entry_names(cell.name)[direction]}
    context |= {"fwd" if direction == "forward" else "bwd": pl.directions[direction]}
    context |= direction_context(pl, pl.directions[direction])
    if direction == "backward":
        context |= backward_context(cell, context)
        names = entry_names(cell.name)
        context |= {"dr_entry": names["dr"], "db_entry": names["db"]}
        context |= {"dr_registers": DR_REGISTERS, "db_registers": DB_REGISTERS}
    return render_template(template, context)


def backward_context(cell: Any, context: dict[str, Any]) -> dict[str, Any]:
    """Where each bias gradient comes from: a stored dry gate (same expression) or dbx (its own).

    The printed backward assigns ``db_<g>``; where that expression is ``dry_<h>``'s (LSTM: all of
    them), db sums the stored fp32 dry; the others (GRU's n_in) are stored apart in dbx."""
    code = dict(context["backward_code"])
    dry = {code[f"dry_{g}"]: i for i, g in enumerate(cell.r_gates)}
    sources, extra = [], 0
    for g in cell.b_gates:
        expr = code[f"db_{g}"]
        if expr in dry:
            sources.append(("dry", dry[expr]))
        else:
            sources.append(("dbx", extra))
            extra += 1
    return {
        "db_sources": sources,
        "dbx_gates": [g for g, (k, _) in zip(cell.b_gates, sources, strict=True) if k == "dbx"],
    }


def program(pl: Plan, direction: str) -> CudaProgram:
    """The CudaProgram of ``direction`` for plan ``pl`` (named by the configuration and direction)."""
    name = f"{pl.config.name}-{direction}"
    return CudaProgram(name=name, source=source(pl, direction), entries=entries(pl, direction))
