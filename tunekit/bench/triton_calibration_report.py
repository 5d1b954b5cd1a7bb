"""The calibration report: the triton-fused model next to ptxas and Triton on a random sample.

Each :class:`Row` is one compiled kernel with what the model predicts for it twice: the *model*
(the measured table where it has the configuration, the formulas elsewhere, as ``tune`` sees it)
and the *bound* (the formulas alone, what an unmeasured configuration gets). Written as
``reports/triton_calibration.{md,csv,json}``.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunekit.files import write_atomic
from tunekit.kernels.triton_fused_aot import ARCH_PROFILES, Compiled, CompileJob


@dataclass(frozen=True)
class Row:
    """One sampled kernel: the compiler's answer and the model's predictions."""

    job: CompileJob
    compiled: Compiled
    registers: int  # the model (table where measured, else the bound)
    shared: int
    bound_registers: int  # the formulas alone
    bound_shared: int
    register_limit: int
    shared_limit: int
    from_table: bool

    @property
    def accepted(self) -> bool:
        return self.registers <= self.register_limit and self.shared <= self.shared_limit

    @property
    def bound_accepted(self) -> bool:
        return self.bound_registers <= self.register_limit and self.bound_shared <= self.shared_limit

    @property
    def compiler_ok(self) -> bool:
        """Compiled without spilling and within the GPU's opt-in shared memory."""
        return self.compiled.clean and self.compiled.shared <= self.shared_limit


def row(job: CompileJob, compiled: Compiled) -> Row:
    """The model's and the bound's predictions for ``job`` next to its compile."""
    from tunekit.constraints.triton_fused import kernel_resources
    from tunekit.constraints.triton_kernel import register_cap
    from tunekit.constraints.triton_registers import measured
    from tunekit.hardware import load_profile

    gpu = load_profile(ARCH_PROFILES[job.arch])
    point = {"block_b": job.block_b, "num_warps": job.num_warps, "num_stages": job.num_stages,
             "r_once": job.r_once}  # fmt: skip
    args = (job.cell, job.direction, job.dtype, job.head_dim, point, gpu)
    regs, shared = kernel_resources(*args)
    bound_regs, bound_shared = kernel_resources(*args, use_table=False)
    entries = measured(job.cell, job.direction, job.dtype, job.arch, job.d_pad, job.head_dim == job.d_pad)
    here = (job.block_b, job.num_warps, job.num_stages, job.r_once)
    return Row(job, compiled, int(regs), int(shared), int(bound_regs), int(bound_shared),
               register_cap(job.num_warps, gpu), gpu.shared_memory_per_block_optin,
               any(e.point == here for e in entries))  # fmt: skip


@dataclass(frozen=True)
class Summary:
    """The figures of one architecture (for the model, or for the bound alone)."""

    arch: int
    which: str  # "model" or "bound"
    configs: int
    compiled: int
    accepted: int
    accepted_spilling: int  # must be 0
    compiler_ok: int
    refused_clean: int  # refused although ptxas compiles them cleanly within the limits
    register_error_median: float  # (model - ptxas) registers over accepted clean compiles
    register_error_max: float
    shared_exact: int
    shared_under: int  # must be 0
    shared_error_max_accepted: float  # largest (model - compiler) / compiler among accepted

    def line(self) -> str:
        return (
            f"sm_{self.arch}, {self.which}: {self.configs} configurations ({self.compiled} compiled, "
            f"{self.compiler_ok} clean within the limits); {self.accepted} accepted, "
            f"{self.accepted_spilling} of them spill; {self.refused_clean} clean ones refused; register "
            f"error (model - ptxas) over accepted: median {self.register_error_median:+.0f}, max "
            f"{self.register_error_max:+.0f}; shared exact on {self.shared_exact}, under the compiler "
            f"on {self.shared_under}, max error among accepted {100 * self.shared_error_max_accepted:.1f}%"
        )


def summarize(rows: Sequence[Row], arch: int, which: str) -> Summary:
    mine = [r for r in rows if r.job.arch == arch and not r.compiled.error]
    model = which == "model"

    def regs(r: Row) -> int:
        return r.registers if model else r.bound_registers

    def shared(r: Row) -> int:
        return r.shared if model else r.bound_shared

    accepted = [r for r in mine if (r.accepted if model else r.bound_accepted)]
    errors = sorted(regs(r) - r.compiled.registers for r in accepted if r.compiler_ok)
    shared_errors = [
        (shared(r) - r.compiled.shared) / r.compiled.shared for r in accepted if r.compiled.shared
    ]
    return Summary(
        arch=arch,
        which=which,
        configs=sum(r.job.arch == arch for r in rows),
        compiled=len(mine),
        accepted=len(accepted),
        accepted_spilling=sum(not r.compiler_ok for r in accepted),
        compiler_ok=sum(r.compiler_ok for r in mine),
        refused_clean=sum(r.compiler_ok for r in mine if r not in accepted),
        register_error_median=statistics.median(errors) if errors else 0.0,
        register_error_max=max(errors, default=0),
        shared_exact=sum(shared(r) == r.compiled.shared for r in mine),
        shared_under=sum(shared(r) < r.compiled.shared for r in mine),
        shared_error_max_accepted=max(shared_errors, default=0.0),
    )


def fields(r: Row) -> dict[str, Any]:
    j, c = r.job, r.compiled
    return {
        "name": j.key, "arch": f"sm_{j.arch}", "cell": j.cell, "direction": j.direction, "dtype": j.dtype,
        "head_dim": j.head_dim, "d_pad": j.d_pad, "block_b": j.block_b, "num_warps": j.num_warps,
        "num_stages": j.num_stages, "r_once": j.r_once, "from_table": r.from_table,
        "model_registers": r.registers, "bound_registers": r.bound_registers, "registers": c.registers,
        "register_limit": r.register_limit, "spill_bytes": c.spill_bytes, "model_shared": r.shared,
        "bound_shared": r.bound_shared, "shared": c.shared, "shared_limit": r.shared_limit,
        "model": "accepted" if r.accepted else "refused",
        "bound": "accepted" if r.bound_accepted else "refused",
        "compiler": c.error or ("ok" if r.compiler_ok else f"spills {c.spill_bytes} B" if c.spill_bytes
                                else "shared over the limit"),
        "compile_seconds": c.seconds,
    }  # fmt: skip


def _table(header: Sequence[str], lines: Iterable[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(str(x) for x in line) + " |" for line in lines])


NOTES = """## What ptxas does, and what the model does about it

- **Why ptxas settled below 255 registers and spilled.** Triton 3.9 writes `.reqntid <threads>`
  into the PTX and, unless a launch passes `maxnreg`, no `.maxnreg`. With the block size fixed by
  `.reqntid` and no register limit, ptxas chooses its own register budget, aiming at an occupancy
  step, and accepts a few bytes of spills to reach it: the GRU bf16 D=56 forward (block_b 16,
  4 warps, sm_80) settled at 128 registers and spilled 16 B, and takes 126 registers without a
  spill when the same PTX carries `.maxnreg 255`; the sLSTM fp16 D=24 forward went from 80
  registers and 16 B spilled to 100 and none. `-maxrregcount=255` alone does not change it
  (ptxas gives the directive precedence); `-maxrregcount=255 --override-directive-values` does.
  Every triton-fused kernel is therefore compiled and launched with `maxnreg` = the block's
  register cap (255 up to 8 warps, 128 at 16: `tunekit.kernels.triton_fused.compile_options`), and
  ptxas spills only when a kernel needs more than the cap.
- **What it needs below the cap is not a formula of the tile shapes.** With room, ptxas takes
  registers for scheduling (a clean kernel reads 254 at one block size and 171 in another form);
  a linear fit over tile elements, gates, states and stages leaves residuals of +-100 registers.
  So the model reads ptxas's answer: the measured table (every configuration of every built-in
  cell, role, dtype, tile with D = d_pad, block_b 16..64 and architecture, walked until the first
  spill) and, elsewhere, a conservative bound that accepted no spilling configuration of this
  sample (and refuses the clean ones counted below).
- **Head dims that are not a multiple of 8** made rows unaligned and Triton fell back to
  per-element addresses (an LSTM bf16 backward at d_pad 128 spills 3304 B at D = 65, none at any
  multiple of 8): the runtime runs them on copies padded to the next multiple of 8.
"""


def write(rows: Sequence[Row], archs: Sequence[int], out_dir: Path) -> list[Path]:
    """reports/triton_calibration.{md,csv,json}; returns the paths written."""
    import triton

    summaries = [summarize(rows, a, w) for a in archs for w in ("model", "bound")]
    header = ("configuration", "table", "regs model", "regs bound", "regs ptxas", "spill B", "shared model",
              "shared compiler", "model", "bound", "compiler")  # fmt: skip
    lines = [
        (f["name"], "yes" if f["from_table"] else "", f["model_registers"], f["bound_registers"],
         f["registers"], f["spill_bytes"], f["model_shared"], f["shared"], f["model"], f["bound"],
         f["compiler"])
        for f in map(fields, rows)
    ]  # fmt: skip
    md = [
        "# triton-fused resource model vs the compiler",
        "",
        f"Generated by `tunekit bench calibrate-triton` (triton {triton.__version__} and its ptxas; "
        "no GPU). Each row is one rendered kernel (`templates/triton/fused_*.py.j2`) compiled ahead "
        "of time as a launch compiles it, for a seeded sample of the whole space. *Model*: what `tune` "
        "reads (the measured table where it has the configuration, else the formulas of "
        "`tunekit/constraints/triton_resources.py`); *bound*: the formulas alone. Limits: registers "
        "per thread <= the cap the kernel was compiled with, shared memory <= the GPU's opt-in limit "
        "(a100, l4, h100).",
        "",
        "## Summary",
        "",
        *[f"- {s.line()}" for s in summaries],
        "",
        NOTES,
        "## Configurations",
        "",
        _table(header, lines),
        "",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"triton_calibration.{ext}" for ext in ("md", "csv", "json")]
    write_atomic(paths[0], "\n".join(md))
    with paths[1].open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(fields(rows[0])) if rows else ["name"])
        writer.writeheader()
        writer.writerows(fields(r) for r in rows)
    data = {"summary": [s.__dict__ for s in summaries], "rows": [fields(r) for r in rows]}
    write_atomic(paths[2], json.dumps(data, indent=1) + "\n")
    return paths
